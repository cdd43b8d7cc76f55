/* common.cl: helpers every kernel shares.
 *
 * Storage dtypes: a program is built for one input dtype (CLSM_X_*) and one
 * output dtype (CLSM_Y_*), each F32, F64, F16 or BF16. TX / TY are the storage
 * types; LOADX / VLOADX read one / sixteen elements as the compute type ACC /
 * ACCV, STOREY / VSTOREY round them back once. The compute type is float for
 * float32, float16 and bfloat16 storage (16-bit types are never accumulated in
 * 16 bits) and double for float64.
 *   float16: vload_half / vstore_half_rte, core OpenCL 1.2 (no cl_khr_fp16
 *            needed; `half` is only a storage type here).
 *   bfloat16: the high 16 bits of a float; stored rounded to nearest even,
 *            NaN kept NaN (quiet), overflow rounds to infinity.
 * Offsets and counts are 64-bit (long/ulong) everywhere: a tensor of more than
 * 2^31 elements must work.
 *
 * Numerics: running maxima start at -INFINITY (never a sentinel), so a row of
 * -inf is seen as such; no fast-math options are ever used to build this. */

#if defined(CLSM_X_F64) || defined(CLSM_Y_F64)
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double ACC;
typedef double16 ACCV;
#define ACC_IS_DOUBLE 1
#else
typedef float ACC;
typedef float16 ACCV;
#endif

/* Unaligned 16-wide stores. PoCL (LLVM on x86) splits vstore16 of floats
 * into four 16-byte stores and of ushorts into sixteen 2-byte ones; a store
 * through a packed struct (alignment 1) is one vector store. The host
 * defines CLSM_PACKED_STORES for CPU devices only (a GPU compiler may split
 * an alignment-1 store into bytes); elsewhere they are vstore16. */
#ifdef CLSM_PACKED_STORES
typedef struct __attribute__((packed)) { float16 val; } clsm_pk_float16;
typedef struct __attribute__((packed)) { ACCV val; } clsm_pk_accv;
typedef struct __attribute__((packed)) { ushort16 val; } clsm_pk_ushort16;
#define CLSM_VST_F32(w, p) (((__global clsm_pk_float16 *)(p))->val = (w))
#define CLSM_VST_ACC_LOCAL(w, p) (((__local clsm_pk_accv *)(p))->val = (w))
#define CLSM_VST_U16(w, p) (((__global clsm_pk_ushort16 *)(p))->val = (w))
#ifdef ACC_IS_DOUBLE
typedef struct __attribute__((packed)) { double16 val; } clsm_pk_double16;
#define CLSM_VST_F64(w, p) (((__global clsm_pk_double16 *)(p))->val = (w))
#endif
#else
#define CLSM_VST_F32(w, p) vstore16((w), 0, (p))
#define CLSM_VST_ACC_LOCAL(w, p) vstore16((w), 0, (p))
#define CLSM_VST_F64(w, p) vstore16((w), 0, (p))
#endif

/* bfloat16 <-> float. */
static inline float clsm_bf16_to_float(ushort b) { return as_float((uint)b << 16); }
static inline ushort clsm_float_to_bf16(float f) {
  uint u = as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);                                         /* ties to even */
  return (ushort)(u >> 16);
}
static inline float16 clsm_bf16_to_float16(ushort16 b) { return as_float16(convert_uint16(b) << 16); }
static inline ushort16 clsm_float16_to_bf16(float16 f) {
  uint16 u = as_uint16(f);
  uint16 r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  uint16 q = (u >> 16) | 0x40u;
  return convert_ushort16(select(r, q, (u & 0x7fffffffu) > 0x7f800000u));
}
/* Sixteen bfloat16 at p + 16 i. Without packed stores, PoCL's vstore16 of
 * ushort is sixteen scalar stores, and the same bits as eight uints take
 * far fewer stores, so a 4-byte aligned destination (every one but odd
 * element offsets) is written as uints. */
static inline void clsm_vstore_bf16(float16 v, size_t i, __global ushort *p) {
  __global ushort *q = p + i * 16;
  ushort16 b = clsm_float16_to_bf16(v);
#ifdef CLSM_PACKED_STORES
  CLSM_VST_U16(b, q);
#else
  if (((size_t)q & 3u) == 0)
    vstore8(as_uint8(b), 0, (__global uint *)q);
  else
    vstore16(b, 0, q);
#endif
}

#if defined(CLSM_X_F32)
typedef float TX;
#define LOADX(p, i) ((ACC)(p)[i])
#define VLOADX(i, p) convert_ACCV(vload16((i), (p)))
#elif defined(CLSM_X_F64)
typedef double TX;
#define LOADX(p, i) ((p)[i])
#define VLOADX(i, p) vload16((i), (p))
#elif defined(CLSM_X_F16)
typedef half TX;
#define LOADX(p, i) vload_half((i), (p))
#define VLOADX(i, p) vload_half16((i), (p))
#elif defined(CLSM_X_BF16)
typedef ushort TX;
#define LOADX(p, i) clsm_bf16_to_float((p)[i])
#define VLOADX(i, p) clsm_bf16_to_float16(vload16((i), (p)))
#else
#error "no input dtype selected"
#endif

#if defined(CLSM_Y_F32)
typedef float TY;
#define LOADY(p, i) ((ACC)(p)[i])
#define VLOADY(i, p) convert_ACCV(vload16((i), (p)))
#define STOREY(p, i, v) ((p)[i] = (float)(v))
#define VSTOREY(v, i, p) CLSM_VST_F32(convert_float16(v), (p) + 16 * (size_t)(i))
#define Y_HOLDS_ACC 1 /* y keeps an intermediate value without rounding it */
#elif defined(CLSM_Y_F64)
typedef double TY;
#define LOADY(p, i) ((p)[i])
#define VLOADY(i, p) vload16((i), (p))
#define STOREY(p, i, v) ((p)[i] = (v))
#define VSTOREY(v, i, p) CLSM_VST_F64((v), (p) + 16 * (size_t)(i))
#define Y_HOLDS_ACC 1
#elif defined(CLSM_Y_F16)
typedef half TY;
#define LOADY(p, i) vload_half((i), (p))
#define VLOADY(i, p) vload_half16((i), (p))
#define STOREY(p, i, v) vstore_half_rte((v), (i), (p))
#define VSTOREY(v, i, p) vstore_half16_rte((v), (i), (p))
#define Y_IS_16BIT 1
#elif defined(CLSM_Y_BF16)
typedef ushort TY;
#define LOADY(p, i) clsm_bf16_to_float((p)[i])
#define VLOADY(i, p) clsm_bf16_to_float16(vload16((i), (p)))
#define STOREY(p, i, v) ((p)[i] = clsm_float_to_bf16(v))
#define VSTOREY(v, i, p) clsm_vstore_bf16((v), (i), (p))
#define Y_IS_16BIT 1
#else
#error "no output dtype selected"
#endif

/* Every helper is `static inline`: a plain `inline` has C99 semantics in
 * clang (no out-of-line copy), so a call the optimiser leaves in place is
 * an unresolved symbol on NVPTX. CLSM_INLINE marks a helper that must be
 * inlined into its kernel: PoCL's compiler otherwise leaves a
 * cross-entropy row's two halves as calls, which keeps the row kernel from
 * being optimised as one body. */
#if defined(__clang__) || defined(__GNUC__)
#define CLSM_INLINE static inline __attribute__((always_inline))
#else
#define CLSM_INLINE static inline
#endif

/* CPU devices whose compiler is clang (CLSM_CPU_BUILTINS) get two of its
 * builtins. VSTOREY_NT: a non-temporal store of a whole vector (a float32 /
 * float64 / bfloat16 y): the line is written without being read first and
 * bypasses the caches, worth it only for outputs far larger than the
 * caches that nothing reads back soon (the host sets F_NT for those); a
 * destination not aligned to the vector falls back to VSTOREY, and
 * clsm_nt_fence() orders the stores before the kernel's completion is
 * signalled. CLSM_PREFETCH(p): the line at p to cache (OpenCL's prefetch
 * compiles to nothing there). Elsewhere both are plain stores and no-ops. */
#if defined(CLSM_CPU_BUILTINS) && defined(__clang__)
#define CLSM_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#define CLSM_PREFETCHW(p) __builtin_prefetch((p), 1, 3)
#else
#define CLSM_PREFETCH(p) ((void)0)
#define CLSM_PREFETCHW(p) ((void)0)
#endif
#if defined(CLSM_CPU_BUILTINS) && defined(__clang__) && !defined(CLSM_Y_F16)
#if defined(CLSM_Y_F32)
#define CLSM_NT_VALUE(v) convert_float16(v)
typedef float16 TY16;
#elif defined(CLSM_Y_F64)
#define CLSM_NT_VALUE(v) (v)
typedef double16 TY16;
#else
#define CLSM_NT_VALUE(v) clsm_float16_to_bf16(v)
typedef ushort16 TY16;
#endif
#define VSTOREY_NT(v, i, p)                                                                    \
  do {                                                                                         \
    __global TY *q_ = (p) + 16 * (size_t)(i);                                                  \
    if (((size_t)q_ & (sizeof(TY16) - 1)) == 0)                                                \
      __builtin_nontemporal_store(CLSM_NT_VALUE(v), (__global TY16 *)q_);                      \
    else                                                                                       \
      VSTOREY((v), 0, q_);                                                                     \
  } while (0)
#if defined(__x86_64__) || defined(__i386__)
#define clsm_nt_fence() __builtin_ia32_sfence()
#else
#define clsm_nt_fence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif
#else
#define VSTOREY_NT(v, i, p) VSTOREY((v), (i), (p))
#define clsm_nt_fence() ((void)0)
#endif

#ifdef ACC_IS_DOUBLE
#define convert_ACCV convert_double16
#else
#define convert_ACCV convert_float16
#endif

/* Flags and shared constants: abi.h, the first source of every program. */

/* exp on 16 lanes for the CPU-family kernels, d <= 88: Cody-Waite
 * reduction d = n ln2 + r (ln2 in a part of 9 bits, so n * LN2_HI is exact,
 * and the rest), Cephes' degree-7 polynomial for exp(r) on |r| <= ln2 / 2,
 * and 2^n from the exponent bits; n comes from adding and subtracting
 * 1.5 * 2^23, which vectorises where rint does not. Results below FLT_MIN
 * (d < log FLT_MIN = -87.34) are 0 instead of subnormal, as oneDNN's exp
 * does: a probability under 1.2e-38 is 0, and the term of a sum that holds
 * one of about 1 is far below its ulp. -inf gives 0 and NaN NaN. At most
 * 1.0103 ulp from exp over every float d in [log FLT_MIN, 88] (checked once
 * on the device; tests/test_dtypes.c samples it). It takes the built-in's
 * place on the CPU family because exp dominates short rows of cross-entropy
 * and softmax there, and this form is straight-line vector code that skips
 * the subnormal range. Double programs keep the built-in.
 *
 * Programs with a 16-bit output (every exp then feeds a value rounded to
 * 2^-11 or 2^-8, or a sum whose error is relative to its terms) take a
 * degree-5 polynomial instead (minimax for relative error on |r| <= ln2 / 2,
 * 1.07e-7 with float coefficients): at most 2.254 ulp from exp over every
 * float d in [log FLT_MIN, 88] (checked once on the device; the test samples
 * it), for two fewer FMAs an element in the exp-bound 16-bit softmax and
 * cross-entropy kernels. */
#ifdef Y_IS_16BIT
#define CLSM_EXP_POLY5 1
#endif
#ifdef ACC_IS_DOUBLE
static inline ACCV clsm_exp16_cpu(ACCV d) { return exp(d); }
#else
static inline float16 clsm_exp16_cpu(float16 d) {
  /* Lanes below log FLT_MIN (-inf included) compute garbage that the last
   * select replaces by 0. */
  const float16 t = d * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23 + n */
  const float16 n = t - 12582912.0f;
  float16 r = d - n * 0.693359375f; /* LN2_HI */
  r = r - n * -2.12194440e-4f;      /* LN2_LO */
#ifdef CLSM_EXP_POLY5
  float16 p = (float16)(8.3125373349e-3f);
  p = p * r + 4.1890028864e-2f;
  p = p * r + 1.6667114198e-1f;
  p = p * r + 4.9999231100e-1f;
#else
  float16 p = (float16)(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
#endif
  p = p * (r * r) + r + 1.0f;
  const float16 e = p * as_float16((as_int16(t) - 0x4b400000 + 127) << 23);
  return select(e, (float16)(0.0f), d < -87.3365448f);
}
#endif

/* exp(x - m) for softmax. x - m is rounded: for |x - m| in [64, 128) by up
 * to half an ulp (3.8e-6 in float), and that absolute error of the exponent
 * is the relative error of the result. TwoSum recovers the exact remainder r
 * of the subtraction, and exp(d + r) = exp(d) * (1 + r) to far below an ulp.
 * An infinite or NaN difference has no remainder (0 keeps exp(-inf) = 0 and
 * NaN NaN). With a float16 or bfloat16 output the remainder is left out:
 * its largest effect (3.8e-6 relative) is far below the output's own
 * rounding (2^-11, 2^-8), so the extra operations per element would buy
 * nothing there. */
static inline ACC clsm_exp_sub(ACC x, ACC m) {
#ifdef Y_IS_16BIT
  return exp(x - m);
#else
  ACC d = x - m;
  ACC bb = d - x;
  ACC r = (x - (d - bb)) + (-m - bb);
  r = isfinite(d) ? r : (ACC)0;
  ACC e = exp(d);
  return e + e * r;
#endif
}

/* 16 lanes: with `builtin` 0 (a constant) through clsm_exp16_cpu, whose
 * results below FLT_MIN are 0; with 1 through the built-in, for a factor
 * that can be subnormal and is multiplied up again (a tile's exp(ref - m),
 * ref up to LAZY_SLACK below the elements it scales). */
static inline ACCV clsm_exp_sub16_by(ACCV x, ACCV m, const int builtin) {
#ifdef Y_IS_16BIT
  return builtin ? exp(x - m) : clsm_exp16_cpu(x - m);
#else
  ACCV d = x - m;
  ACCV bb = d - x;
  ACCV r = (x - (d - bb)) + (-m - bb);
  r = select((ACCV)(0), r, isfinite(d));
  ACCV e = builtin ? exp(d) : clsm_exp16_cpu(d);
  return e + e * r;
#endif
}
static inline ACCV clsm_exp_sub16(ACCV x, ACCV m) { return clsm_exp_sub16_by(x, m, 0); }

/* The online (max, sum) pair: sum is sum_j exp(x_j - max) over the elements
 * seen. The merge (m, s) + (m', s') = (M, s*e^(m-M) + s'*e^(m'-M)), with the
 * factor taken as 1 when m == M so that two -inf maxima do not make NaN from
 * -inf - -inf. A NaN element makes the sum NaN (comparisons skip it for the
 * max); a +inf element makes the sum NaN at the end (see clsm_finish_sum). */
static inline void clsm_online_add(ACC *m, ACC *s, ACC x) {
  if (x > *m) {
    *s = *s * exp(*m - x) + (ACC)1;
    *m = x;
  } else {
    *s += (x == *m) ? (ACC)1 : exp(x - *m);
  }
}

static inline void clsm_online_merge(ACC *m, ACC *s, ACC m2, ACC s2) {
  ACC M = m2 > *m ? m2 : *m;
  ACC a = (*m == M) ? *s : *s * exp(*m - M);
  ACC b = (m2 == M) ? s2 : s2 * exp(m2 - M);
  *m = M;
  *s = a + b;
}

/* ROW_VPT (abi.h): values a GPU-family lane loads ahead of folding them into its pair. */

/* Folds v[0..cnt) (cnt <= ROW_VPT, the rest -inf) into the online pair with
 * one rescale, so that a lane's ROW_VPT loads are all in flight before the
 * first exp waits on one. Same results as clsm_online_add on each value. */
static inline void clsm_online_fold(ACC *m, ACC *s, const ACC *v, int cnt) {
  ACC cm = -INFINITY;
#pragma unroll
  for (int k = 0; k < ROW_VPT; ++k) cm = fmax(cm, v[k]);
  if (cm > *m) {
    *s *= exp(*m - cm);
    *m = cm;
  }
#pragma unroll
  for (int k = 0; k < ROW_VPT; ++k)
    if (k < cnt) *s += (v[k] == *m) ? (ACC)1 : exp(v[k] - *m);
}

/* The work-group row kernels' layout: rows of L lanes (L a power of two up
 * to the group size, from bits F_LANES_SHIFT.. of the flags), as many rows
 * as fit a group. Lane l of the group is lane j of row r. */
typedef struct clsm_seg {
  int l, L, j;
  long r;
} clsm_seg;
static inline clsm_seg clsm_row_seg(uint flags) {
  clsm_seg g;
  const int n = (int)get_local_size(0);
  g.l = (int)get_local_id(0);
  g.L = min(n, 1 << ((flags >> F_LANES_SHIFT) & 31u));
  g.j = g.l & (g.L - 1);
  g.r = (long)get_group_id(0) * (n / g.L) + g.l / g.L;
  return g;
}

/* Merges the (max, sum) pairs in local memory of each segment of L lanes
 * (L a power of two dividing the group; lane l is lane j = l % L of its
 * segment) into the segment's first slot, lm[l - j], ls[l - j]. Every lane
 * has stored its pair before the call, and every lane of the group calls it:
 * the barriers are the group's. */
static inline void clsm_tree_online_seg(__local ACC *lm, __local ACC *ls, int l, int j, int L) {
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int h = L / 2; h > 0; h /= 2) {
    if (j < h) {
      ACC mm = lm[l], ss = ls[l];
      clsm_online_merge(&mm, &ss, lm[l + h], ls[l + h]);
      lm[l] = mm;
      ls[l] = ss;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
}

/* The whole group as one segment: the pairs merge into lm[0], ls[0]. */
static inline void clsm_tree_online(__local ACC *lm, __local ACC *ls, int l, int n) {
  clsm_tree_online_seg(lm, ls, l, l, n);
}

/* PyTorch's result for a row holding +inf is all NaN: exp(inf - inf). The
 * online sum counts +inf as 1, so make that explicit. */
static inline ACC clsm_finish_sum(ACC m, ACC s) { return (isinf(m) && m > 0) ? (ACC)NAN : s; }

/* Each lane's pair in, its row's merged pair out, in every lane of the
 * segment (a row holding +inf gets NaN as its sum). */
static inline void clsm_seg_merge(__local ACC *lm, __local ACC *ls, int l, int j, int L, ACC *m,
                                  ACC *s) {
  lm[l] = *m;
  ls[l] = *s;
  clsm_tree_online_seg(lm, ls, l, j, L);
  *m = lm[l - j];
  *s = clsm_finish_sum(*m, ls[l - j]);
}

/* A GPU-family lane's online (m, s) over keys j, j + L, ... below n, ROW_VPT
 * loads in flight: LOAD(c) is element c's value. */
#define CLSM_FOLD_LANES(m, s, live, j, L, n, LOAD)                                          \
  for (long c0_ = (j); (live) && c0_ < (n); c0_ += (long)(L)*ROW_VPT) {                      \
    ACC v_[ROW_VPT];                                                                         \
    int cnt_ = 0;                                                                            \
    _Pragma("unroll") for (int k_ = 0; k_ < ROW_VPT; ++k_) {                                 \
      const long c_ = c0_ + (long)k_ * (L);                                                  \
      v_[k_] = c_ < (n) ? LOAD(c_) : (ACC)(-INFINITY);                                       \
      cnt_ += c_ < (n);                                                                      \
    }                                                                                        \
    clsm_online_fold(&(m), &(s), v_, cnt_);                                                  \
  }

/* A split row's `chunks` partial (max, sum) pairs at part, merged in chunk
 * order: every work-item of the row gets the same (m, s). */
static inline void clsm_merge_parts(__global const ACC *part, long chunks, ACC *m, ACC *s) {
  ACC M = -INFINITY, S = 0;
  for (long j = 0; j < chunks; ++j) clsm_online_merge(&M, &S, part[2 * j], part[2 * j + 1]);
  *m = M;
  *s = clsm_finish_sum(M, S);
}

/* log of one float in float arithmetic, for a positive normal finite v:
 * v = 2^k (1 + f) with 1 + f in [sqrt(2)/2, sqrt(2)); with s = f / (2 + f),
 * log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), R a degree-4 polynomial in
 * s^2 (|error| < 2^-34 on that range), and k ln 2 added in two parts.
 * Checked against the double log over every positive normal float: at most
 * 0.84 ulp, with or without fused multiply-adds, given a correctly rounded
 * division (a device that divides to OpenCL's 2.5 ulp adds about 0.2). */
static inline float clsm_logf_normal(float v) {
  const float ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
  const float lg1 = 0.66666662693f, lg2 = 0.40000972152f, lg3 = 0.28498786688f,
              lg4 = 0.24279078841f;
  uint ix = as_uint(v);
  int k = (int)(ix >> 23) - 127;
  ix &= 0x007fffffu;
  /* Mantissas from about sqrt(2) up are halved (and k raised by one). */
  uint i = (ix + 0x4afb20u) & 0x800000u;
  float f = as_float(ix | (i ^ 0x3f800000u)) - 1.0f;
  k += (int)(i >> 23);
  float s = f / (2.0f + f), dk = (float)k, z = s * s, w = z * z;
  float r = z * (lg1 + w * lg3) + w * (lg2 + w * lg4), hfsq = 0.5f * f * f;
  return dk * ln2_hi - ((hfsq - (s * (hfsq + r) + dk * ln2_lo)) - f);
}

/* clsm_logf_normal on 16 lanes, the same operations lane by lane. */
static inline float16 clsm_logf_normal16(float16 v) {
  const float ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
  const float lg1 = 0.66666662693f, lg2 = 0.40000972152f, lg3 = 0.28498786688f,
              lg4 = 0.24279078841f;
  uint16 ix = as_uint16(v);
  int16 k = as_int16(ix >> 23) - 127;
  ix &= 0x007fffffu;
  uint16 i = (ix + 0x4afb20u) & 0x800000u;
  float16 f = as_float16(ix | (i ^ 0x3f800000u)) - 1.0f;
  k += as_int16(i >> 23);
  float16 s = f / (2.0f + f), dk = convert_float16(k), z = s * s, w = z * z;
  float16 r = z * (lg1 + w * lg3) + w * (lg2 + w * lg4), hfsq = 0.5f * f * f;
  return dk * ln2_hi - ((hfsq - (s * (hfsq + r) + dk * ln2_lo)) - f);
}

/* log of one value in the CPU-family kernels (a row's sum, at least 1 but
 * for the safe all -inf row and NaN): on PoCL's CPU device the scalar log
 * built-in costs about as much as a whole 16-wide vector one, and with one
 * log per row it is a large share of a short row's work. Float takes
 * clsm_logf_normal for positive normal finite values (the built-in for the
 * rest); double takes one lane of the vector built-in. GPU kernels keep the
 * scalar built-in, which is one lane's work there. */
#ifdef ACC_IS_DOUBLE
static inline ACC clsm_log_cpu(ACC v) { return log((ACCV)(v)).s0; }
static inline ACCV clsm_log16_cpu(ACCV v) { return log(v); }
#else
static inline ACC clsm_log_cpu(ACC v) {
  return as_uint(v) - 0x00800000u < 0x7f000000u ? clsm_logf_normal(v) : log(v);
}
/* 16 values: lanes that are not positive normal finite floats (rows of
 * -inf, +inf or NaN only) take the vector built-in. */
static inline ACCV clsm_log16_cpu(ACCV v) {
  const int16 normal = as_uint16(v) - 0x00800000u < 0x7f000000u;
  if (all(normal)) return clsm_logf_normal16(v);
  return select(log(v), clsm_logf_normal16(v), normal);
}
#endif

/* The running max of a pass: max(m, v), skipping a NaN v as fmax does (the
 * comparison is false), for an m that is never NaN (it starts at -inf).
 * One max instruction, where fmax's NaN handling takes four. */
static inline ACCV clsm_vmax16(ACCV m, ACCV v) { return v > m ? v : m; }

/* Halving: 8, 4, 2, 1 lanes, each step one vector operation. */
static inline ACC clsm_hmax16(ACCV v) {
#ifdef ACC_IS_DOUBLE
  double8 h8 = fmax(v.lo, v.hi);
  double4 h4 = fmax(h8.lo, h8.hi);
  double2 h2 = fmax(h4.lo, h4.hi);
#else
  float8 h8 = fmax(v.lo, v.hi);
  float4 h4 = fmax(h8.lo, h8.hi);
  float2 h2 = fmax(h4.lo, h4.hi);
#endif
  return fmax(h2.lo, h2.hi);
}

/* Pairwise: the 16 lanes are folded as a tree, not one long chain. */
static inline ACC clsm_hsum16(ACCV v) {
#ifdef ACC_IS_DOUBLE
  double8 h8 = v.lo + v.hi;
  double4 h4 = h8.lo + h8.hi;
  double2 h2 = h4.lo + h4.hi;
#else
  float8 h8 = v.lo + v.hi;
  float4 h4 = h8.lo + h8.hi;
  float2 h2 = h4.lo + h4.hi;
#endif
  return h2.lo + h2.hi;
}

/* A row's normaliser: the row-op and attention programs share these. */
/* The max a row's sum is taken against: 0 for a safe all -inf row. */
static inline ACC clsm_ref_max(ACC m, uint flags) {
  return ((flags & F_SAFE) && m == -INFINITY) ? (ACC)0 : m;
}
/* 1/s, or 0 for the safe all -inf row (s == 0). */
static inline ACC clsm_inv_sum(ACC s) { return s == 0 ? (ACC)0 : (ACC)1 / s; }
/* log(s), or 0 for the safe all -inf row, so that x - m - log s = -inf. */
static inline ACC clsm_log_sum(ACC s) { return s == 0 ? (ACC)0 : log(s); }
/* The same for the CPU-family kernels (see clsm_log_cpu). */
static inline ACC clsm_log_sum_cpu(ACC s) { return s == 0 ? (ACC)0 : clsm_log_cpu(s); }

/* Row and block helpers that both programs use. */

/* Sums over C are accumulated in blocks of SUM_BLOCK terms, so the rounding
 * error grows with SUM_BLOCK + C / SUM_BLOCK instead of C. */
#define SUM_BLOCK 32

/* The blocked sum of the vector loops over contiguous elements: c runs over
 * n elements 16 at a time, TERM(i) adds elements i..i+15 into the block's
 * accumulators, and FOLD() adds the block into the totals and clears it,
 * every 256 elements and once after the last whole vector: the rounding
 * error grows with n / 256 + 16, not n. The scalar tail (c < n) is the
 * caller's. TERM and FOLD are the caller's macros. */
#define CLSM_BLOCKED16(c, n, TERM, FOLD)                                                     \
  do {                                                                                       \
    for (; (c) + 256 <= (n); (c) += 256) {                                                   \
      for (int k_ = 0; k_ < 256; k_ += 16) TERM((c) + k_);                                   \
      FOLD();                                                                                \
    }                                                                                        \
    for (; (c) + 16 <= (n); (c) += 16) TERM(c);                                              \
    FOLD();                                                                                  \
  } while (0)

/* Kept exp(x - m) of a row until it is scaled: in y (yr) when y holds ACC
 * exactly, else in local scratch (sr: C values per work-item, which the host
 * sizes; 16-bit outputs are then rounded once). */
#ifdef Y_HOLDS_ACC
#define KEEP_VSTORE(e, c) VSTOREY((e), 0, yr + (c))
#define KEEP_VLOAD(c) VLOADY(0, yr + (c))
#define KEEP_STORE(e, c) STOREY(yr, (c), (e))
#define KEEP_LOAD(c) LOADY(yr, (c))
#else
#define KEEP_VSTORE(e, c) CLSM_VST_ACC_LOCAL((e), sr + (c))
#define KEEP_VLOAD(c) vload16(0, sr + (c))
#define KEEP_STORE(e, c) (sr[c] = (e))
#define KEEP_LOAD(c) (sr[c])
#endif

/* Max of n contiguous elements, 16-wide. */
static inline ACC clsm_row_max(__global const TX *xr, long n) {
  ACCV mv = (ACCV)(-INFINITY);
  long c = 0;
  for (; c + 16 <= n; c += 16) mv = clsm_vmax16(mv, VLOADX(0, xr + c));
  ACC m = clsm_hmax16(mv);
  for (; c < n; ++c) m = fmax(m, LOADX(xr, c));
  return m;
}

/* One chunk of nv 16-wide vectors at xr (the last may be `tail`, a private
 * vector padded with -inf) folded into the lanes' running (max, sum): the
 * chunk's lane maxima move mv, lanes whose max moved rescale their sums
 * (a factor of exp(old - new), 0 from -inf, 1 when unchanged), then the
 * chunk's exps are summed against the new max, or against 0 in a lane whose
 * max is still -inf (its -inf elements then give 0, a NaN NaN). */
/* Moves the lanes' reference mv to cm in the lanes where cm passes it by
 * more than `slack`, rescaling their sums, and returns the reference the
 * new exps are taken against (0 in a lane that has seen only -inf). With
 * slack 0 the reference is the running max. */
static inline ACCV clsm_move_ref(ACCV cm, ACCV *mv, ACCV *sv, ACC slack) {
  if (any(cm > *mv + slack)) {
    const ACCV nm = select(*mv, cm, cm > *mv + slack);
    *sv *= select(exp(*mv - nm), (ACCV)(1), *mv == nm);
    *mv = nm;
  }
  return select(*mv, (ACCV)(0), *mv == (ACCV)(-INFINITY));
}
static inline ACCV clsm_online_move(ACCV cm, ACCV *mv, ACCV *sv) { return clsm_move_ref(cm, mv, sv, 0); }

static inline void clsm_online_chunk(__global const TX *xr, __global TY *yr, int nv, ACCV *mv, ACCV *sv) {
  ACCV cm = *mv;
  for (int k = 0; k < nv; ++k) cm = clsm_vmax16(cm, VLOADX(k, xr));
  const ACCV ref = clsm_online_move(cm, mv, sv);
  ACCV blk = (ACCV)(0);
  for (int k = 0; k < nv; ++k) {
    const ACCV v = VLOADX(k, xr);
    if (yr) VSTOREY(v, k, yr);
    blk += clsm_exp16_cpu(v - ref);
  }
  *sv += blk;
}

/* Max m and sum s of exp(x - m) of a contiguous row in one read: chunks of
 * ONLINE_CHUNK vectors are loaded once for their max and again (from L1)
 * for their exps, so the row's loads from memory overlap the exps of the
 * chunk before instead of waiting in a max pass of their own. The lanes'
 * pairs are merged at the end. The results are those of the two-pass form:
 * a NaN makes s NaN, a +inf makes s NaN (exp(inf - inf)), an all -inf row
 * has m = -inf and s = 0, or NaN if a NaN is among its -inf (the caller
 * applies F_SAFE or makes that row NaN). */
static inline void clsm_row_online(__global const TX *xr, __global TY *yr, long n, ACC *m, ACC *s) {
  ACCV mv = (ACCV)(-INFINITY), sv = (ACCV)(0);
  long c = 0;
  for (; c + 16 * ONLINE_CHUNK <= n; c += 16 * ONLINE_CHUNK)
    clsm_online_chunk(xr + c, yr ? yr + c : yr, ONLINE_CHUNK, &mv, &sv);
  if (c + 16 <= n) {
    const int nv = (int)((n - c) / 16);
    clsm_online_chunk(xr + c, yr ? yr + c : yr, nv, &mv, &sv);
    c += 16L * nv;
  }
  if (c < n) {
    /* The scalar tail as one vector padded with -inf (exp gives 0 there). */
    ACC t[16];
    for (int k = 0; k < 16; ++k) t[k] = c + k < n ? LOADX(xr, c + k) : (ACC)(-INFINITY);
    const ACCV v = vload16(0, t);
    const ACCV ref = clsm_online_move(clsm_vmax16(mv, v), &mv, &sv);
    sv += clsm_exp16_cpu(v - ref);
  }
  const ACC M = clsm_hmax16(mv);
  *m = M;
  *s = clsm_hsum16(sv * select(exp(mv - M), (ACCV)(1), mv == M));
}

/* Inner blocks are 16 * nv positions wide: nv float16-wide vectors, from
 * bits 8-15 of flags (the host takes the largest power of two up to
 * CLSM_INNER_VECTORS that the inner extent fills), arrays sized for the most. */
#ifndef CLSM_INNER_VECTORS /* the library's builds pass it */
#define CLSM_INNER_VECTORS INNER_VECTORS_DEFAULT
#endif
#define NV_MAX CLSM_INNER_VECTORS
static inline int clsm_nv_at(uint flags, int shift) {
  return clamp((int)((flags >> shift) & 0xffu), 1, NV_MAX);
}
static inline int clsm_inner_nv(uint flags) { return clsm_nv_at(flags, F_NV_SHIFT); }

/* Work-item w's block of inner positions: outer index *o, first position
 * *i0, width ib; 0 when w is past the last block. */
static inline int clsm_inner_block(long outer, long inner, long ib, long *o, long *i0) {
  long blocks = (inner + ib - 1) / ib;
  long w = get_global_id(0);
  if (w >= outer * blocks) return 0;
  *o = w / blocks;
  *i0 = (w - *o * blocks) * ib;
  return 1;
}
