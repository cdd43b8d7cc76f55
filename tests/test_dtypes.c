/* Suite "dtypes": float16, bfloat16 and float64 storage for every softmax op
 * (forward, backward, 16-bit in with float32 out), against the double
 * reference on the values the dtype can hold; the storage conversions at the
 * bit level, in the test's reference and in the kernels' own helpers. */
#include "testutil.h"

#include <stdint.h>

typedef struct dtype_tol {
  clsm_dtype dtype;
  double rtol, atol; /* atol: subnormal results */
} dtype_tol;

static const dtype_tol dtypes[] = {
    {CLSM_FLOAT16, 1e-3, 6e-8},
    {CLSM_BFLOAT16, 8e-3, 1e-38},
    {CLSM_FLOAT64, 1e-12, 1e-300},
};

/* Storage bytes <-> double. */
static void to_storage(clsm_dtype dt, const double *v, void *out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) switch (dt) {
    case CLSM_FLOAT16: ((uint16_t *)out)[i] = ref_f32_to_f16((float)v[i]); break;
    case CLSM_BFLOAT16: ((uint16_t *)out)[i] = ref_f32_to_bf16((float)v[i]); break;
    case CLSM_FLOAT64: ((double *)out)[i] = v[i]; break;
    default: ((float *)out)[i] = (float)v[i]; break;
    }
}
static void from_storage(clsm_dtype dt, const void *in, double *v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) switch (dt) {
    case CLSM_FLOAT16: v[i] = ref_f16_to_f32(((const uint16_t *)in)[i]); break;
    case CLSM_BFLOAT16: v[i] = ref_bf16_to_f32(((const uint16_t *)in)[i]); break;
    case CLSM_FLOAT64: v[i] = ((const double *)in)[i]; break;
    default: v[i] = ((const float *)in)[i]; break;
    }
}
/* Rounds values to what dtype holds. */
static void round_to(clsm_dtype dt, double *v, int64_t n) {
  void *tmp = malloc((size_t)n * 8 + 8);
  ck_assert(tmp != NULL);
  to_storage(dt, v, tmp, n);
  from_storage(dt, tmp, v, n);
  free(tmp);
}

static int has_fp64(clsm_context *ctx, const dtype_tol *t);

typedef struct op_shape {
  int rank;
  int64_t shape[3];
  int dim;
} op_shape;

static const op_shape op_shapes[] = {
    {2, {64, 80}, 1}, {2, {5, 1031}, -1}, {3, {3, 17, 33}, 1}, {3, {4, 5, 130}, 0},
    {1, {3}, 0},      {2, {37, 19}, 0},   {2, {21, 2100}, 0}, /* rows 4 KB apart: a tile */
};
#define NSHAPES ((int)(sizeof op_shapes / sizeof op_shapes[0]))
#define NOPS 4 /* softmax, log_softmax, their backward */

/* Runs op (0..3) on the device with inputs in `dt` storage and output in
 * `out_dt` storage; returns the output as double. */
static void run_op(clsm_context *ctx, int op, clsm_dtype dt, clsm_dtype out_dt,
                   const op_shape *s, const double *a, const double *b, double *out) {
  int64_t n = shape_numel(s->rank, s->shape);
  size_t es = clsm_dtype_size(dt), eo = clsm_dtype_size(out_dt);
  void *ha = malloc((size_t)n * es), *hb = malloc((size_t)n * es), *ho = malloc((size_t)n * eo);
  ck_assert(ha && hb && ho);
  to_storage(dt, a, ha, n);
  to_storage(dt, b, hb, n);
  cl_mem ma = test_buffer(ctx, (size_t)n * es, ha), mb = test_buffer(ctx, (size_t)n * es, hb);
  cl_mem mo = test_buffer(ctx, (size_t)n * eo, NULL);
  clsm_tensor ta = clsm_tensor_contiguous(ma, 0, dt, s->rank, s->shape);
  clsm_tensor tb = clsm_tensor_contiguous(mb, 0, dt, s->rank, s->shape);
  clsm_tensor to = clsm_tensor_contiguous(mo, 0, out_dt, s->rank, s->shape);
  switch (op) {
  case 0: CK_STATUS(ctx, clsm_softmax(ctx, &ta, &to, s->dim, 0, 0, NULL, NULL)); break;
  case 1: CK_STATUS(ctx, clsm_log_softmax(ctx, &ta, &to, s->dim, 0, 0, NULL, NULL)); break;
  case 2: CK_STATUS(ctx, clsm_softmax_backward(ctx, &ta, &tb, &to, s->dim, 0, 0, NULL, NULL)); break;
  default: CK_STATUS(ctx, clsm_log_softmax_backward(ctx, &ta, &tb, &to, s->dim, 0, 0, NULL, NULL)); break;
  }
  test_read(ctx, mo, 0, (size_t)n * eo, ho);
  from_storage(out_dt, ho, out, n);
  clReleaseMemObject(ma);
  clReleaseMemObject(mb);
  clReleaseMemObject(mo);
  free(ha), free(hb), free(ho);
}

/* Finite-row softmax / log_softmax in double from double inputs (float64
 * inputs carry more digits than the float-input reference takes). */
static void ref_softmax_double(const double *x, double *y, int rank, const int64_t *shape, int dim,
                               int log) {
  int64_t outer = 1, C = rank ? shape[dim] : 1, inner = 1;
  for (int d = 0; d < dim; ++d) outer *= shape[d];
  for (int d = dim + 1; d < rank; ++d) inner *= shape[d];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double m = -INFINITY, sum = 0.0;
      for (int64_t c = 0; c < C; ++c) m = fmax(m, x[(o * C + c) * inner + i]);
      for (int64_t c = 0; c < C; ++c) sum += exp(x[(o * C + c) * inner + i] - m);
      for (int64_t c = 0; c < C; ++c) {
        double d = x[(o * C + c) * inner + i] - m;
        y[(o * C + c) * inner + i] = log ? d - log1p(sum - 1.0) : exp(d) / sum;
      }
    }
}

/* Checks op `op` in dtype `t` (output in out_dt, whose tolerance `ot` rules)
 * over one shape. */
static void check_dtype_op(clsm_context *ctx, int op, const dtype_tol *t, const dtype_tol *ot,
                           const op_shape *s, uint64_t seed) {
  int64_t n = shape_numel(s->rank, s->shape);
  int r = s->rank ? s->rank : 1, dim = s->dim < 0 ? s->dim + r : s->dim, log = op % 2;
  size_t nb = sizeof(double) * (size_t)(n + 1);
  double *a = malloc(nb), *b = malloc(nb), *out = malloc(nb), *ref = malloc(nb), *sc = malloc(nb);
  float *xf = calloc((size_t)(n + 1), sizeof(float)); /* n may be 0 */
  ck_assert(a && b && out && ref && sc && xf);
  fill_random(xf, n, seed);
  for (int64_t i = 0; i < n; ++i) a[i] = xf[i];
  if (op >= 2) { /* a = y: the forward result, rounded to the dtype */
    ref_softmax(xf, a, s->rank, s->shape, dim, log, 0);
    fill_random(xf, n, seed + 7);
    for (int64_t i = 0; i < n; ++i) b[i] = xf[i];
    round_to(t->dtype, b, n);
  }
  round_to(t->dtype, a, n);
  run_op(ctx, op, t->dtype, ot->dtype, s, a, b, out);
  if (op < 2) {
    ref_softmax_double(a, ref, s->rank, s->shape, dim, log);
    for (int64_t i = 0; i < n; ++i) {
      double err = fabs(out[i] - ref[i]);
      double bound = log ? ot->rtol * fmax(1.0, fabs(ref[i])) : ot->rtol * fabs(ref[i]) + ot->atol;
      ck_assert_msg(err <= bound, "%s %s: element %lld is %.10g, reference %.12g",
                    clsm_dtype_name(t->dtype), log ? "log_softmax" : "softmax", (long long)i,
                    out[i], ref[i]);
    }
  } else {
    ref_softmax_backward(a, b, ref, sc, s->rank, s->shape, dim, log);
    double eps = t->dtype == CLSM_FLOAT64 ? 2.3e-16 : 1.2e-7; /* compute precision */
    for (int64_t i = 0; i < n; ++i) {
      double err = fabs(out[i] - ref[i]);
      double bound = ot->rtol * fabs(ref[i]) + 8 * eps * sc[i] + ot->atol;
      ck_assert_msg(err <= bound, "%s %s backward: element %lld is %.10g, reference %.12g",
                    clsm_dtype_name(t->dtype), log ? "log_softmax" : "softmax", (long long)i,
                    out[i], ref[i]);
    }
  }
  free(a), free(b), free(out), free(ref), free(sc), free(xf);
}

START_TEST(test_dtype_ops) {
  int k = _i;
  const op_shape *s = &op_shapes[k % NSHAPES];
  k /= NSHAPES;
  int op = k % NOPS;
  const dtype_tol *t = &dtypes[k / NOPS];
  printf("dtypes %d: %s op %d shape rank %d dim %d\n", _i, clsm_dtype_name(t->dtype), op, s->rank, s->dim);
  clsm_context *ctx = test_context();
  if (!has_fp64(ctx, t)) {
    clsm_context_destroy(ctx);
    return;
  }
  check_dtype_op(ctx, op, t, t, s, 900 + (uint64_t)_i);
  clsm_context_destroy(ctx);
}
END_TEST

/* 16-bit inputs with float32 outputs (softmax and log_softmax, and the
 * backward): held to float32's tolerance on the 16-bit values. */
START_TEST(test_mixed_output) {
  static const dtype_tol f32 = {CLSM_FLOAT32, 4e-6, 2e-38};
  const dtype_tol *t = &dtypes[_i / 4]; /* float16, bfloat16 */
  int op = _i % 4;
  clsm_context *ctx = test_context();
  for (int s = 0; s < NSHAPES; ++s) check_dtype_op(ctx, op, t, &f32, &op_shapes[s], 950 + (uint64_t)s);
  clsm_context_destroy(ctx);
}
END_TEST

/* The test's own float16 conversion against the compiler's _Float16, for
 * every half and a sweep of floats (ties included). */
START_TEST(test_f16_reference_conversion) {
  for (uint32_t h = 0; h < 65536; ++h) {
    _Float16 v;
    uint16_t hb = (uint16_t)h;
    memcpy(&v, &hb, 2);
    float f = (float)v, g = ref_f16_to_f32(hb);
    ck_assert_msg((isnan(f) && isnan(g)) || memcmp(&f, &g, 4) == 0, "half 0x%04x", h);
  }
  rng r = {12345};
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = (uint32_t)rng_next(&r);
    if (i % 3 == 0) u = (u & 0xffffe000u) | 0x1000u; /* exact ties */
    float f;
    memcpy(&f, &u, 4);
    _Float16 v = (_Float16)f;
    uint16_t want, got = ref_f32_to_f16(f);
    memcpy(&want, &v, 2);
    if (isnan(f)) ck_assert((got & 0x7c00u) == 0x7c00u && (got & 0x3ffu));
    else ck_assert_msg(got == want, "float 0x%08x: 0x%04x, want 0x%04x", u, got, want);
  }
}
END_TEST

/* The kernels' bfloat16 rounding, at the bit level, scalar and vector paths:
 * a tiny program built from kernels/common.cl stores each float as bf16. */
START_TEST(test_bf16_kernel_rounding) {
  static const struct {
    uint32_t in;
    uint16_t out;
  } cases[] = {
      {0x3f800000u, 0x3f80u}, /* 1.0 exact */
      {0x3f808000u, 0x3f80u}, /* tie, even below: stays */
      {0x3f818000u, 0x3f82u}, /* tie, odd below: up to even */
      {0x3f808001u, 0x3f81u}, /* just above the tie: up */
      {0x3f807fffu, 0x3f80u}, /* just below: down */
      {0xbf818000u, 0xbf82u}, /* negative tie to even */
      {0x7f7fffffu, 0x7f80u}, /* FLT_MAX rounds to +inf */
      {0xff7fffffu, 0xff80u}, /* -FLT_MAX to -inf */
      {0x7f800000u, 0x7f80u}, /* +inf */
      {0xff800000u, 0xff80u}, /* -inf */
      {0x7fc00000u, 0x7fc0u}, /* quiet NaN */
      {0x7f800001u, 0x7fc0u}, /* signalling NaN whose payload would round away: stays NaN */
      {0xffffffffu, 0xffffu}, /* NaN with all bits */
      {0x00000000u, 0x0000u}, /* +0 */
      {0x80000000u, 0x8000u}, /* -0 */
      {0x00008000u, 0x0000u}, /* subnormal tie to even (0) */
      {0x00018000u, 0x0002u}, /* subnormal tie to even (2) */
      {0x7f7f8000u, 0x7f80u}, /* tie at the top: to even = inf */
  };
  enum { N = sizeof cases / sizeof cases[0], V = 32 };
  clsm_context *ctx = test_context();
  const char *kern =
      "\n__kernel void t(__global const float *in, __global ushort *s, __global ushort *v) {\n"
      "  size_t i = get_global_id(0);\n"
      "  s[i] = clsm_float_to_bf16(in[i]);\n"
      "  if (i < 2) vstore16(clsm_float16_to_bf16(vload16(i, in)), i, v);\n"
      "}\n";
  cl_program p;
  cl_kernel k = test_common_kernel(ctx, kern, "-cl-std=CL1.2 -DCLSM_X_BF16 -DCLSM_Y_BF16", "t", &p);
  uint32_t in[V];
  for (int i = 0; i < V; ++i) in[i] = cases[i % N].in;
  cl_mem mi = test_buffer(ctx, sizeof in, in), ms = test_buffer(ctx, V * 2, NULL),
         mv = test_buffer(ctx, V * 2, NULL);
  clSetKernelArg(k, 0, sizeof mi, &mi);
  clSetKernelArg(k, 1, sizeof ms, &ms);
  clSetKernelArg(k, 2, sizeof mv, &mv);
  size_t g = V;
  ck_assert(clEnqueueNDRangeKernel(clsm_context_queue(ctx), k, 1, NULL, &g, NULL, 0, NULL, NULL) == CL_SUCCESS);
  uint16_t s[V], v[V];
  test_read(ctx, ms, 0, sizeof s, s);
  test_read(ctx, mv, 0, sizeof v, v);
  for (int i = 0; i < V; ++i) {
    ck_assert_msg(s[i] == cases[i % N].out, "scalar: 0x%08x -> 0x%04x, want 0x%04x", in[i], s[i], cases[i % N].out);
    ck_assert_msg(v[i] == cases[i % N].out, "vector: 0x%08x -> 0x%04x, want 0x%04x", in[i], v[i], cases[i % N].out);
    /* The test's reference conversion agrees. */
    float fi;
    memcpy(&fi, &in[i], 4);
    ck_assert_uint_eq(ref_f32_to_bf16(fi), cases[i % N].out);
  }
  clReleaseMemObject(mi);
  clReleaseMemObject(ms);
  clReleaseMemObject(mv);
  clReleaseKernel(k);
  clReleaseProgram(p);
  clsm_context_destroy(ctx);
}
END_TEST

/* Runs `body` (kernel t's statements over work-item i: 16 inputs in[16 i ..],
 * outputs to s and v) from a program on kernels/common.cl over n inputs (a
 * multiple of 16); s and v receive the outputs. */
static void run_common_map(const char *body, const char *options, const uint32_t *in, size_t n,
                           float *s, float *v) {
  clsm_context *ctx = test_context();
  char kern[1024];
  snprintf(kern, sizeof kern,
           "\n__kernel void t(__global const float *in, __global float *s, __global float *v) {\n"
           "  size_t i = get_global_id(0);\n%s\n}\n",
           body);
  cl_program p;
  cl_kernel k = test_common_kernel(ctx, kern, options, "t", &p);
  cl_mem mi = test_buffer(ctx, n * 4, in), ms = test_buffer(ctx, n * 4, NULL),
         mv = test_buffer(ctx, n * 4, NULL);
  clSetKernelArg(k, 0, sizeof mi, &mi);
  clSetKernelArg(k, 1, sizeof ms, &ms);
  clSetKernelArg(k, 2, sizeof mv, &mv);
  size_t g = n / 16;
  ck_assert(clEnqueueNDRangeKernel(clsm_context_queue(ctx), k, 1, NULL, &g, NULL, 0, NULL, NULL) == CL_SUCCESS);
  test_read(ctx, ms, 0, n * 4, s);
  test_read(ctx, mv, 0, n * 4, v);
  clReleaseMemObject(mi), clReleaseMemObject(ms), clReleaseMemObject(mv);
  clReleaseKernel(k);
  clReleaseProgram(p);
  clsm_context_destroy(ctx);
}

/* Inputs for a sweep: every step-th float bit pattern from first to last,
 * then the specials, padded to a multiple of 16; *n gets the count. */
#define F32_PROGRAM "-cl-std=CL1.2 -DCLSM_X_F32 -DCLSM_Y_F32"

static uint32_t *sweep_inputs(uint32_t first, uint32_t last, uint32_t step, const uint32_t *specials,
                              size_t nspecials, size_t *n) {
  const size_t reg = (last - first) / step + 1;
  *n = (reg + nspecials + 15) / 16 * 16;
  uint32_t *in = malloc(*n * 4);
  ck_assert(in != NULL);
  size_t i = 0;
  for (; i < reg; ++i) in[i] = first + (uint32_t)i * step;
  for (size_t j = 0; i < *n; ++i, ++j) in[i] = specials[j % nspecials];
  return in;
}

/* |got - ref| in units of the float ulp at ref (2^-149 below FLT_MIN). */
static double ulps(float got, double ref) {
  const int e = ilogb(ref) < -126 ? -126 : ilogb(ref);
  return fabs((double)got - ref) / ldexp(1.0, e - 23);
}

/* The CPU kernels' float log of a row's sum: clsm_log16_cpu (16 rows'
 * sums at once, cross-entropy's short rows) gives the same bits as the
 * scalar clsm_log_cpu, lane by lane, and both stay within one ulp of the
 * double log: every 1021st positive normal float (each exponent, mantissas
 * spread over the halving point near sqrt(2)), and 0, subnormals, +-inf,
 * NaN and negative values, which take the built-in. */
START_TEST(test_log_cpu) {
  static const uint32_t specials[] = {
      0x00000000u, 0x00000001u, 0x007fffffu, 0x00400000u, 0x7f800000u, 0x7fc00000u,
      0xff800000u, 0xbf800000u, 0x80000000u, 0x3f800000u, 0x3fb504f3u, 0x3fb504f4u,
      0x3f3504f3u, 0x3f3504f4u, 0x7f7fffffu, 0x00800000u};
  size_t n;
  uint32_t *in = sweep_inputs(0x00800000u, 0x7f7fffffu, 1021, specials,
                              sizeof specials / sizeof specials[0], &n);
  float *s = malloc(n * 4), *v = malloc(n * 4);
  ck_assert(s && v);
  run_common_map("  for (int j = 0; j < 16; ++j) s[16 * i + j] = clsm_log_cpu(in[16 * i + j]);\n"
                 "  vstore16(clsm_log16_cpu(vload16(i, in)), i, v);",
                 F32_PROGRAM, in, n, s, v);
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    float fi;
    memcpy(&fi, &in[i], 4);
    ck_assert_msg(memcmp(&s[i], &v[i], 4) == 0 || (isnan(s[i]) && isnan(v[i])),
                  "log of 0x%08x: scalar %a, vector %a", in[i], (double)s[i], (double)v[i]);
    const double ref = log((double)fi);
    if (isnan(ref) || isinf(ref)) {
      ck_assert_msg(isnan(ref) ? isnan(s[i]) : s[i] == ref, "log of 0x%08x: %a", in[i], (double)s[i]);
      continue;
    }
    if (ref == 0) { /* log 1 */
      ck_assert_msg(s[i] == 0, "log 1 = %a", (double)s[i]);
      continue;
    }
    const double err = ulps(s[i], ref);
    if (err > worst) worst = err;
    ck_assert_msg(err <= 1.0, "log of 0x%08x (%a): %a is %.3f ulp from %a", in[i], (double)fi,
                  (double)s[i], err, ref);
  }
  printf("float log: worst %.3f ulp over %zu values\n", worst, n);
  free(in), free(s), free(v);
}
END_TEST

/* clsm_exp16_cpu, the CPU kernels' own exp: within 1.02 ulp of the double
 * exp (1.0103 over every float up to 88, checked once), every 1021st float
 * of [log FLT_MIN, 88] and of the negatives below it, which give 0 (no
 * subnormal results), and 0, -0, -inf (0), NaN (NaN), 88 and both sides
 * of the flush point. _i 1: as built for a 16-bit output (the degree-5
 * polynomial), within 2.3 ulp. */
START_TEST(test_exp_cpu) {
  const double bound = _i ? 2.3 : 1.02;
  static const uint32_t specials[] = {0x00000000u, 0x80000000u, 0xff800000u, 0x7fc00000u,
                                      0xffc00000u, 0x42b00000u, 0xc2aeac50u, 0xc2aeac4fu,
                                      0xc2aeac51u, 0x3f800000u, 0xbf800000u};
  size_t n1, n2;
  uint32_t *pos = sweep_inputs(0x00000000u, 0x42b00000u, 1021, specials,
                               sizeof specials / sizeof specials[0], &n1);
  uint32_t *neg = sweep_inputs(0x80000000u, 0xff800000u, 1021, specials,
                               sizeof specials / sizeof specials[0], &n2);
  const size_t n = n1 + n2;
  uint32_t *in = malloc(n * 4);
  float *s = malloc(n * 4), *v = malloc(n * 4);
  ck_assert(in && s && v);
  memcpy(in, pos, n1 * 4);
  memcpy(in + n1, neg, n2 * 4);
  run_common_map("  vstore16(clsm_exp16_cpu(vload16(i, in)), i, v);",
                 _i ? "-cl-std=CL1.2 -DCLSM_X_F16 -DCLSM_Y_F16" : F32_PROGRAM, in, n, s, v);
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    float fi;
    memcpy(&fi, &in[i], 4);
    if (isnan(fi)) {
      ck_assert_msg(isnan(v[i]), "exp(NaN) = %a", (double)v[i]);
      continue;
    }
    if (fi < -87.3365448f) { /* below log FLT_MIN */
      ck_assert_msg(v[i] == 0, "exp(%a) = %a, not 0", (double)fi, (double)v[i]);
      continue;
    }
    const double err = ulps(v[i], exp((double)fi));
    if (err > worst) worst = err;
    ck_assert_msg(err <= bound, "exp(%a) = %a is %.3f ulp from %a", (double)fi, (double)v[i], err,
                  exp((double)fi));
  }
  printf("exp (%s output): worst %.3f ulp over %zu values\n", _i ? "16-bit" : "float32", worst, n);
  free(pos), free(neg), free(in), free(s), free(v);
}
END_TEST

/* float16 outputs that are subnormal (tiny probabilities) and results that
 * overflow float16 in log_softmax become -inf, as rounding says. */
START_TEST(test_f16_extremes) {
  clsm_context *ctx = test_context();
  /* softmax of [0, -12, -20]: exp(-12)/s is a normal half, exp(-20)/s a subnormal. */
  double a[3] = {0.0, -12.0, -20.0}, out[3];
  const op_shape s = {1, {3}, 0};
  run_op(ctx, 0, CLSM_FLOAT16, CLSM_FLOAT16, &s, a, a, out);
  double sum = 1.0 + exp(-12.0) + exp(-20.0);
  for (int i = 0; i < 3; ++i) {
    double ref = exp(a[i]) / sum;
    ck_assert_msg(fabs(out[i] - ref) <= 1e-3 * ref + 6e-8, "%d: %g vs %g", i, out[i], ref);
  }
  /* log_softmax of [60000, -60000]: -120000 is beyond float16: -inf. */
  double b[2] = {60000.0, -60000.0};
  round_to(CLSM_FLOAT16, b, 2);
  const op_shape s2 = {1, {2}, 0};
  run_op(ctx, 1, CLSM_FLOAT16, CLSM_FLOAT16, &s2, b, b, out);
  ck_assert(out[0] == 0.0);
  ck_assert(isinf(out[1]) && out[1] < 0);
  clsm_context_destroy(ctx);
}
END_TEST

/* Whether the device can run float64 (prints why a case is skipped). */
static int has_fp64(clsm_context *ctx, const dtype_tol *t) {
  if (t->dtype != CLSM_FLOAT64) return 1;
  cl_device_fp_config cfg = 0;
  clGetDeviceInfo(clsm_context_device(ctx), CL_DEVICE_DOUBLE_FP_CONFIG, sizeof cfg, &cfg, NULL);
  if (!cfg) printf("SKIPPED: %s has no cl_khr_fp64; float64 cases not run\n", clsm_context_device_name(ctx));
  return cfg != 0;
}

/* Cross-entropy with 16-bit and float64 logits (loss and fused gradient in
 * the logits' dtype, and the float32 loss for 16-bit logits), label smoothing,
 * weights and ignored positions, against the double reference on the values
 * the dtype holds; on (6, 300), on (2, 40, 48), whose class axis is not
 * last (the CPU family's block kernel), on (2, 33000), whose rows are too
 * long to keep exp(x - m) for the gradient, and on (37, 40) with short rows
 * 16 to a work-item forced on (a 16-bit gradient keeps each row's exps in
 * local scratch; two full groups and one of 5), and again on (2, 33000)
 * with the rows split over work-items forced on (without label smoothing,
 * which the split does not take); in place over the logits as well. */
START_TEST(test_dtype_ce) {
  const dtype_tol *t = &dtypes[_i % 3];
  int f32_out = (_i / 3) % 2;
  const int layout = _i / 6, blocks = layout == 1;
  if (f32_out && t->dtype == CLSM_FLOAT64) return; /* float64 has no float32 output */
  if (layout == 3) setenv("CLSM_CE_ROWS16", "1", 1);
  if (layout == 4) setenv("CLSM_SPLIT", "1", 1);
  clsm_context *ctx = test_context();
  if (!has_fp64(ctx, t)) {
    clsm_context_destroy(ctx);
    return;
  }
  static const dtype_tol f32 = {CLSM_FLOAT32, 1e-5, 2e-38};
  const dtype_tol *ot = f32_out ? &f32 : t;
  enum { NMAX = 66000, CMAX = 33000, PMAX = 96 };
  const int N = layout == 3 ? 37 : layout ? 2 : 6, inner = blocks ? 48 : 1;
  const int C = layout == 2 || layout == 4 ? 33000 : layout == 1 || layout == 3 ? 40 : 300;
  const int n = N * C * inner, P = N * inner;
  const int64_t shape[3] = {N, C, inner}, tshape[2] = {N, inner};
  static float xf[NMAX];
  static double x[NMAX], w[CMAX], ref_grad[NMAX], rl[PMAX], grad[NMAX];
  static unsigned char xs[NMAX * 8], ws[CMAX * 8], gs_[NMAX * 8], ls[8];
  double total, W, g = 1.0;
  int64_t tg[PMAX];
  for (int p = 0; p < P; ++p) tg[p] = p % 7 == 3 ? -100 : p == 1 ? C - 1 : (p * 37) % C;
  fill_random(xf, n, 71);
  for (int i = 0; i < n; ++i) x[i] = xf[i];
  for (int c = 0; c < C; ++c) w[c] = 0.5 + (c % 7) * 0.25;
  round_to(t->dtype, x, n);
  round_to(t->dtype, w, C);
  size_t es = clsm_dtype_size(t->dtype), eo = clsm_dtype_size(ot->dtype);
  to_storage(t->dtype, x, xs, n);
  to_storage(t->dtype, w, ws, C);
  cl_mem xb = test_buffer(ctx, (size_t)n * es, xs), wb = test_buffer(ctx, (size_t)C * es, ws);
  cl_mem tb = test_buffer(ctx, (size_t)P * 8, tg), gb = test_buffer(ctx, (size_t)n * eo, NULL);
  cl_mem lb = test_buffer(ctx, eo, NULL);
  const int rank = blocks ? 3 : 2;
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, t->dtype, rank, shape);
  const int64_t cshape[1] = {C};
  clsm_tensor wt = clsm_tensor_contiguous(wb, 0, t->dtype, 1, cshape);
  clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, rank - 1, tshape);
  clsm_tensor gt = clsm_tensor_contiguous(gb, 0, ot->dtype, rank, shape);
  clsm_tensor lt = clsm_tensor_contiguous(lb, 0, ot->dtype, 0, NULL);
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  const double eps = layout == 4 ? 0.0 : 0.1; /* the split takes no smoothing */
  opt.label_smoothing = eps;
  opt.weight = &wt;
  opt.grad = &gt;
  CK_STATUS(ctx, clsm_cross_entropy(ctx, &xt, &tt, &lt, &opt, 0, NULL, NULL));
  CK_STATUS(ctx, clsm_finish(ctx));
  test_read(ctx, gb, 0, (size_t)n * eo, gs_);
  test_read(ctx, lb, 0, eo, ls);
  double loss;
  from_storage(ot->dtype, ls, &loss, 1);
  from_storage(ot->dtype, gs_, grad, n);
  ref_ce_opts ro = {0, -100, eps, 0.0, 0.0, w};
  ref_cross_entropy(x, N, C, inner, tg, NULL, &ro, rl, &total, &W, NULL, NULL, &g, ref_grad);
  double rtol = ot->rtol < 1e-5 ? 1e-5 : ot->rtol; /* float32 loss bound: 1e-5 */
  if (t->dtype == CLSM_FLOAT64) rtol = 1e-12;
  ck_assert_msg(fabs(loss - total) <= rtol * fabs(total), "%s loss %.12g vs %.12g (rank %d)",
                clsm_dtype_name(t->dtype), loss, total, rank);
  double gtol = t->dtype == CLSM_FLOAT64 ? 1e-12 : f32_out ? 1e-6 : ot->rtol;
  for (int i = 0; i < n; ++i)
    ck_assert_msg(fabs(grad[i] - ref_grad[i]) <= gtol * fmax(fabs(ref_grad[i]), 1e-3) + ot->atol,
                  "%s grad %d: %.10g vs %.12g (rank %d)", clsm_dtype_name(t->dtype), i, grad[i],
                  ref_grad[i], rank);
  if (!f32_out) {
    /* In place over the logits: the same bits as the separate gradient. */
    static unsigned char ip[NMAX * 8];
    opt.grad = &xt;
    CK_STATUS(ctx, clsm_cross_entropy(ctx, &xt, &tt, &lt, &opt, 0, NULL, NULL));
    CK_STATUS(ctx, clsm_finish(ctx));
    test_read(ctx, xb, 0, (size_t)n * es, ip);
    ck_assert_msg(memcmp(ip, gs_, (size_t)n * es) == 0, "%s in place differs (rank %d)",
                  clsm_dtype_name(t->dtype), rank);
  }
  clReleaseMemObject(xb), clReleaseMemObject(wb), clReleaseMemObject(tb), clReleaseMemObject(gb);
  clReleaseMemObject(lb);
  clsm_context_destroy(ctx);
}
END_TEST

static Suite *dtypes_suite(void) {
  Suite *s = suite_create("dtypes");
  TCase *tc = tcase_create("Ops");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_dtype_ops, 0, 3 * NOPS * NSHAPES);
  tcase_add_loop_test(tc, test_mixed_output, 0, 8);
  tcase_add_test(tc, test_f16_extremes);
  tcase_add_loop_test(tc, test_dtype_ce, 0, 30);
  suite_add_tcase(s, tc);
  tc = tcase_create("Conversions");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_f16_reference_conversion);
  tcase_add_test(tc, test_bf16_kernel_rounding);
  tcase_add_test(tc, test_log_cpu);
  tcase_add_loop_test(tc, test_exp_cpu, 0, 2);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(dtypes_suite()); }
