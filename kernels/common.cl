/* common.cl: helpers every kernel shares.
 *
 * Storage dtype: the program is built with one of CLSM_DTYPE_*; T is the
 * storage type, LOAD/STORE convert to and from the float the kernels compute
 * in. Offsets and counts are 64-bit (long/ulong) everywhere: a tensor of more
 * than 2^31 elements must work.
 *
 * Numerics: the running max starts at -INFINITY (never a sentinel), so a row of
 * -inf is seen as such; no fast-math options are ever used to build this. */

#if defined(CLSM_DTYPE_F32)
typedef float T;
#define LOAD(p, i) ((p)[i])
#define STORE(p, i, v) ((p)[i] = (v))
#define VEC_NATIVE 1 /* T is float: vload16/vstore16 apply directly */
#else
#error "no storage dtype selected"
#endif

/* Operation flags, as the host passes them. */
#define F_LOG 1u  /* log_softmax instead of softmax */
#define F_SAFE 2u /* extension: an all -inf row gives 0 / -inf instead of NaN */

/* exp(x - m) for softmax. x - m is rounded in float: for |x - m| in [64, 128)
 * by up to half an ulp, 3.8e-6, and that absolute error of the exponent is the
 * relative error of the result. TwoSum recovers the exact remainder r of the
 * subtraction, and exp(d + r) = exp(d) * (1 + r) to far below an ulp. An
 * infinite or NaN difference has no remainder (0 keeps exp(-inf) = 0 and
 * NaN NaN). */
inline float clsm_exp_sub(float x, float m) {
  float d = x - m;
  float bb = d - x;
  float r = (x - (d - bb)) + (-m - bb);
  r = isfinite(d) ? r : 0.0f;
  float e = exp(d);
  return e + e * r;
}

inline float16 clsm_exp_sub16(float16 x, float16 m) {
  float16 d = x - m;
  float16 bb = d - x;
  float16 r = (x - (d - bb)) + (-m - bb);
  r = select((float16)(0.0f), r, isfinite(d));
  float16 e = exp(d);
  return e + e * r;
}

/* The online (max, sum) pair: sum is sum_j exp(x_j - max) over the elements
 * seen. The merge (m, s) + (m', s') = (M, s*e^(m-M) + s'*e^(m'-M)), with the
 * factor taken as 1 when m == M so that two -inf maxima do not make NaN from
 * -inf - -inf. A NaN element makes the sum NaN (comparisons skip it for the
 * max); a +inf element makes the sum NaN at the end (see clsm_finish_sum). */
inline void clsm_online_add(float *m, float *s, float x) {
  if (x > *m) {
    *s = *s * exp(*m - x) + 1.0f;
    *m = x;
  } else {
    *s += (x == *m) ? 1.0f : exp(x - *m);
  }
}

inline void clsm_online_merge(float *m, float *s, float m2, float s2) {
  float M = m2 > *m ? m2 : *m;
  float a = (*m == M) ? *s : *s * exp(*m - M);
  float b = (m2 == M) ? s2 : s2 * exp(m2 - M);
  *m = M;
  *s = a + b;
}

/* PyTorch's result for a row holding +inf is all NaN: exp(inf - inf). The
 * online sum counts +inf as 1, so make that explicit. */
inline float clsm_finish_sum(float m, float s) {
  return (isinf(m) && m > 0.0f) ? NAN : s;
}

inline float clsm_hmax16(float16 v) {
  float8 a = fmax(v.lo, v.hi);
  float4 b = fmax(a.lo, a.hi);
  float2 c = fmax(b.lo, b.hi);
  return fmax(c.x, c.y);
}

inline float clsm_hsum16(float16 v) {
  float8 a = v.lo + v.hi;
  float4 b = a.lo + a.hi;
  float2 c = b.lo + b.hi;
  return c.x + c.y;
}
