/* Suite "attention": softmax_ex / log_softmax_ex and their backward against
 * the double reference (tools/reference.c) in every dtype: scale, each mask
 * kind and broadcast pattern, causal with offsets, ALiBi by slopes and by
 * max_bias, sinks, their combinations, lse; special rows; in place and
 * strided views; non-last dims; finite differences of the backward (d_sinks
 * included); errors; and which kernel runs. CTest runs it once per kernel
 * family. */
#include "testutil.h"

enum { M_NONE, M_F32, M_F16, M_BF16, M_BOOL };
enum { AL_NONE, AL_SLOPES, AL_BIAS };
enum { SI_NONE, SI_F32, SI_X };

typedef struct acase {
  int rank;
  int64_t shape[4];
  int dim;
  int mask, mrank;
  int64_t mshape[4];
  double scale;
  int causal;
  int64_t offset;
  int alibi, sinks;
  int head_dim; /* CLSM_HEAD_DIM_AUTO or an axis */
} acase;

#define AUTO CLSM_HEAD_DIM_AUTO
static const acase cases[] = {
    {4, {2, 3, 5, 37}, 3, M_NONE, 0, {0}, 0.125, 0, 0, AL_NONE, SI_NONE, AUTO},
    {4, {2, 3, 5, 37}, 3, M_F32, 4, {2, 3, 5, 37}, 1.0, 0, 0, AL_NONE, SI_NONE, AUTO},
    {4, {2, 3, 5, 37}, 3, M_F16, 4, {1, 1, 5, 37}, 0.5, 0, 0, AL_NONE, SI_NONE, AUTO},
    {4, {2, 3, 5, 37}, 3, M_BF16, 4, {2, 1, 1, 37}, 1.0, 0, 0, AL_NONE, SI_NONE, AUTO},
    {4, {2, 3, 5, 37}, 3, M_BOOL, 1, {37}, 1.0, 0, 0, AL_NONE, SI_NONE, AUTO},
    {4, {2, 3, 5, 37}, 3, M_BOOL, 4, {2, 3, 5, 37}, 2.0, 0, 0, AL_NONE, SI_NONE, AUTO},
    {4, {2, 3, 5, 37}, 3, M_NONE, 0, {0}, 1.0, 1, 0, AL_NONE, SI_NONE, AUTO},
    {4, {2, 3, 5, 37}, 3, M_NONE, 0, {0}, 1.0, 1, -2, AL_NONE, SI_NONE, AUTO},
    {4, {2, 3, 5, 37}, 3, M_NONE, 0, {0}, 1.0, 1, 32, AL_NONE, SI_NONE, AUTO},
    {4, {1, 8, 4, 40}, 3, M_NONE, 0, {0}, 1.0, 0, 0, AL_SLOPES, SI_NONE, AUTO},
    {4, {2, 12, 3, 33}, 3, M_NONE, 0, {0}, 1.0, 0, 30, AL_BIAS, SI_NONE, AUTO},
    {4, {1, 1, 6, 50}, 3, M_NONE, 0, {0}, 1.0, 0, 0, AL_BIAS, SI_NONE, AUTO},
    {4, {2, 3, 5, 37}, 3, M_NONE, 0, {0}, 1.0, 0, 0, AL_NONE, SI_F32, AUTO},
    {4, {2, 3, 5, 37}, 3, M_NONE, 0, {0}, 0.7, 0, 0, AL_NONE, SI_X, AUTO},
    {4, {2, 8, 16, 300}, 3, M_F16, 4, {1, 1, 16, 300}, 0.125, 1, 284, AL_BIAS, SI_F32, AUTO},
    {4, {1, 2, 4, 1000}, 3, M_BOOL, 2, {4, 1000}, 1.0, 1, 996, AL_NONE, SI_X, AUTO},
    {4, {2, 3, 7, 5}, 2, M_F32, 4, {1, 3, 7, 1}, 0.5, 0, 0, AL_NONE, SI_F32, AUTO},
    {2, {9, 70}, 1, M_NONE, 0, {0}, 1.0, 1, 0, AL_SLOPES, SI_F32, AUTO},
    {1, {20}, 0, M_NONE, 0, {0}, 3.0, 0, 0, AL_NONE, SI_F32, AUTO},
    {4, {3, 4, 5, 20}, 3, M_NONE, 0, {0}, 1.0, 0, 0, AL_SLOPES, SI_F32, 0},
    {3, {4, 6, 130}, 2, M_BF16, 3, {4, 6, 130}, 1.0, 1, 124, AL_NONE, SI_NONE, AUTO},
    /* rows too long to keep (KEEP_BYTES): z is computed again in each pass */
    {2, {3, 40000}, 1, M_F16, 1, {40000}, 0.5, 1, 39990, AL_SLOPES, SI_F32, AUTO},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static const clsm_dtype dtypes[4] = {CLSM_FLOAT32, CLSM_FLOAT16, CLSM_BFLOAT16, CLSM_FLOAT64};

/* Rounds v to dtype's values in place and stores them into out. */
static void pack(clsm_dtype dt, double *v, int64_t n, void *out) {
  for (int64_t i = 0; i < n; ++i) {
    switch (dt) {
    case CLSM_FLOAT32: ((float *)out)[i] = (float)v[i]; v[i] = (float)v[i]; break;
    case CLSM_FLOAT64: ((double *)out)[i] = v[i]; break;
    case CLSM_FLOAT16:
      ((uint16_t *)out)[i] = ref_f32_to_f16((float)v[i]);
      v[i] = ref_f16_to_f32(ref_f32_to_f16((float)v[i]));
      break;
    case CLSM_BFLOAT16:
      ((uint16_t *)out)[i] = ref_f32_to_bf16((float)v[i]);
      v[i] = ref_bf16_to_f32(ref_f32_to_bf16((float)v[i]));
      break;
    case CLSM_UINT8: ((uint8_t *)out)[i] = (uint8_t)v[i]; break;
    default: ck_abort_msg("pack: dtype %d", (int)dt);
    }
  }
}

static double unpack(clsm_dtype dt, const void *p, int64_t i) {
  switch (dt) {
  case CLSM_FLOAT32: return ((const float *)p)[i];
  case CLSM_FLOAT64: return ((const double *)p)[i];
  case CLSM_FLOAT16: return ref_f16_to_f32(((const uint16_t *)p)[i]);
  default: return ref_bf16_to_f32(((const uint16_t *)p)[i]);
  }
}

static double rtol_of(clsm_dtype dt) {
  return dt == CLSM_FLOAT64 ? 1e-12 : dt == CLSM_FLOAT32 ? 4e-6 : dt == CLSM_FLOAT16 ? 1.5e-3 : 1e-2;
}
/* The roundoff unit of a dtype's computation (float for 16-bit). */
static double unit_of(clsm_dtype dt) { return dt == CLSM_FLOAT64 ? 2.3e-16 : 1.2e-7; }

/* Compares a float/double/16-bit output with the reference. */
static int check_close(clsm_dtype dt, const void *got, const double *ref, int64_t n, int log,
                       const char *what, int tc) {
  const double rtol = rtol_of(dt);
  for (int64_t k = 0; k < n; ++k) {
    const double g = unpack(dt, got, k), r = ref[k];
    int ok;
    if (dt == CLSM_FLOAT64) {
      if (isnan(r) || isinf(r)) ok = isnan(r) ? isnan(g) : g == r;
      else ok = !isnan(g) && fabs(g - r) <= rtol * (log ? fmax(1.0, fabs(r)) : fabs(r)) + 1e-300;
    } else if (dt == CLSM_FLOAT16 && !log && fabs(r) < 6.2e-5) {
      ok = fabs(g - r) <= 3e-8 + rtol * fabs(r); /* float16 subnormals: steps of 6e-8 */
    } else {
      ok = ref_close((float)g, r, log, rtol);
    }
    if (!ok) {
      ck_abort_msg("case %d %s %s: element %lld is %.9g, reference %.9g", tc, clsm_dtype_name(dt),
                   what, (long long)k, g, r);
      return 0;
    }
  }
  return 1;
}

/* The inputs of a case: x, the mask (its own shape and the broadcast one),
 * slopes, sinks; options for the reference and the library. */
typedef struct inputs {
  int64_t n, mn, rows, H;
  int qa, hd, dim;
  double *x, *mask, *mfull, *slopes, *sinks;
  void *xs, *ms, *ss;
  float *slopes_f;
  clsm_dtype mdt, sdt;
  ref_attn_opts ro;
  clsm_attn_options o;
  clsm_attn_arrays ar;
} inputs;

static void make_inputs(const acase *c, clsm_dtype dt, uint64_t seed, inputs *in) {
  memset(in, 0, sizeof *in);
  const int r = c->rank;
  in->dim = c->dim;
  in->n = shape_numel(r, c->shape);
  in->qa = c->dim - 1;
  in->hd = c->head_dim == AUTO ? (c->dim >= 2 ? c->dim - 2 : -1) : c->head_dim;
  in->H = in->hd >= 0 ? c->shape[in->hd] : 1;
  in->rows = in->n / c->shape[c->dim];
  rng g = {seed * 0x9E3779B97F4A7C15ull + 7};
  in->x = malloc((size_t)in->n * sizeof(double));
  for (int64_t k = 0; k < in->n; ++k) {
    in->x[k] = rng_unit(&g) * 8.0 - 4.0;
    if (rng_unit(&g) < 0.02) in->x[k] = rng_unit(&g) * 60.0 - 30.0;
  }
  in->xs = malloc((size_t)in->n * 8);
  pack(dt, in->x, in->n, in->xs);
  in->o = clsm_attn_options_default();
  in->o.scale = c->scale;
  in->o.causal = c->causal;
  in->o.offset = c->offset;
  in->o.head_dim = c->head_dim;
  in->ro.scale = dt == CLSM_FLOAT64 ? c->scale : (float)c->scale;
  in->ro.causal = c->causal;
  in->ro.offset = c->offset;
  in->ro.head_dim = in->hd;
  in->ro.f64 = dt == CLSM_FLOAT64;
  if (c->mask != M_NONE) {
    in->mn = shape_numel(c->mrank, c->mshape);
    in->mask = malloc((size_t)in->mn * sizeof(double));
    for (int64_t k = 0; k < in->mn; ++k) {
      if (c->mask == M_BOOL) in->mask[k] = rng_unit(&g) < 0.8;
      else in->mask[k] = rng_unit(&g) < 0.1 ? -INFINITY : rng_unit(&g) * 4.0 - 2.0;
    }
    static const clsm_dtype mdts[] = {0, CLSM_FLOAT32, CLSM_FLOAT16, CLSM_BFLOAT16, CLSM_UINT8};
    in->mdt = mdts[c->mask];
    in->ms = malloc((size_t)in->mn * 4);
    pack(in->mdt, in->mask, in->mn, in->ms);
    /* The broadcast mask, by NumPy's rules, independently of the library. */
    in->mfull = malloc((size_t)in->n * sizeof(double));
    for (int64_t k = 0; k < in->n; ++k) {
      int64_t rem = k, mk = 0, mstride = 1;
      for (int d = r - 1; d >= 0; --d) {
        const int64_t ix = rem % c->shape[d];
        rem /= c->shape[d];
        const int md = d - (r - c->mrank);
        if (md < 0) continue;
        if (c->mshape[md] != 1) mk += ix * mstride;
        mstride *= c->mshape[md];
      }
      in->mfull[k] = in->mask[mk];
    }
    in->ro.mask = in->mfull;
    in->ro.mask_bool = c->mask == M_BOOL;
    in->ar.mask = in->ms;
    in->ar.mask_dtype = in->mdt;
    in->ar.mask_rank = c->mrank;
    in->ar.mask_shape = c->mshape;
  }
  if (c->alibi != AL_NONE) {
    in->slopes = malloc((size_t)in->H * sizeof(double));
    in->slopes_f = malloc((size_t)in->H * sizeof(float));
    if (c->alibi == AL_BIAS) {
      ref_alibi_slopes(8.0, in->H, in->slopes);
      in->o.alibi_max_bias = 8.0;
    } else {
      for (int64_t h = 0; h < in->H; ++h) in->slopes[h] = (float)(0.05 + 0.3 * rng_unit(&g));
      for (int64_t h = 0; h < in->H; ++h) in->slopes_f[h] = (float)in->slopes[h];
      in->ar.alibi_slopes = in->slopes_f;
    }
    in->ro.slopes = in->slopes;
  }
  if (c->sinks != SI_NONE) {
    in->sinks = malloc((size_t)in->H * sizeof(double));
    for (int64_t h = 0; h < in->H; ++h) in->sinks[h] = rng_unit(&g) * 4.0 - 1.0;
    in->sdt = c->sinks == SI_F32 ? CLSM_FLOAT32 : dt;
    in->ss = malloc((size_t)in->H * 8);
    pack(in->sdt, in->sinks, in->H, in->ss);
    in->ro.sinks = in->sinks;
    in->ar.sinks = in->ss;
    in->ar.sinks_dtype = in->sdt;
  }
}

static void free_inputs(inputs *in) {
  free(in->x); free(in->mask); free(in->mfull); free(in->slopes); free(in->sinks);
  free(in->xs); free(in->ms); free(in->ss); free(in->slopes_f);
}

/* Forward (softmax and log-softmax, with lse, plain and safe) and backward
 * (with dsinks) of one case in one dtype. */
START_TEST(test_attention_case) {
  const int tc = _i / 4;
  const acase *c = &cases[tc];
  const clsm_dtype dt = dtypes[_i % 4];
  clsm_context *ctx = test_context();
  inputs in;
  make_inputs(c, dt, (uint64_t)_i + 11, &in);
  const int64_t n = in.n;
  double *ref = malloc((size_t)n * sizeof(double)), *rlse = malloc((size_t)in.rows * sizeof(double));
  void *y = malloc((size_t)n * 8), *lse = malloc((size_t)in.rows * 8);
  const clsm_dtype ldt = dt == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  for (int log = 0; log < 2; ++log)
    for (int safe = 0; safe < 2; ++safe) {
      in.o.flags = safe ? CLSM_SAFE : 0;
      in.ro.safe = safe;
      in.ar.lse = lse;
      CK_STATUS(ctx, (log ? clsm_log_softmax_ex_host : clsm_softmax_ex_host)(
                         ctx, dt, c->rank, c->shape, c->dim, &in.o, &in.ar, in.xs, y));
      ref_attn_softmax(in.x, ref, rlse, c->rank, c->shape, c->dim, log, &in.ro);
      check_close(dt, y, ref, n, log, log ? "log_softmax" : "softmax", tc);
      check_close(ldt, lse, rlse, in.rows, 1, "lse", tc);
    }
  in.ar.lse = NULL;

  /* Backward from the reference's y (rounded to dt) and a random dy. */
  for (int log = 0; log < 2; ++log) {
    in.ro.safe = 1;
    ref_attn_softmax(in.x, ref, NULL, c->rank, c->shape, c->dim, log, &in.ro);
    double *dyv = malloc((size_t)n * sizeof(double)), *dx = malloc((size_t)n * sizeof(double));
    double *mag = malloc((size_t)n * sizeof(double));
    double ds[16], dsmag[16];
    void *ys = malloc((size_t)n * 8), *dys = malloc((size_t)n * 8), *dxs = malloc((size_t)n * 8);
    void *dss = malloc(16 * 8);
    rng g = {(uint64_t)_i * 31 + (uint64_t)log + 5};
    for (int64_t k = 0; k < n; ++k) dyv[k] = rng_unit(&g) * 2.0 - 1.0;
    pack(dt, ref, n, ys);
    pack(dt, dyv, n, dys);
    const int sinks = c->sinks != SI_NONE && in.H <= 16;
    clsm_attn_arrays ba = {0};
    ba.dsinks = sinks ? dss : NULL;
    CK_STATUS(ctx, (log ? clsm_log_softmax_backward_ex_host : clsm_softmax_backward_ex_host)(
                       ctx, dt, c->rank, c->shape, c->dim, &in.o, &ba, ys, dys, dxs));
    ref_attn_backward(ref, dyv, dx, mag, sinks ? ds : NULL, sinks ? dsmag : NULL, c->rank,
                      c->shape, c->dim, log, dt == CLSM_FLOAT64 ? c->scale : (float)c->scale, in.hd);
    const double rt = rtol_of(dt), u = unit_of(dt);
    for (int64_t k = 0; k < n; ++k) {
      const double got = unpack(dt, dxs, k);
      /* float16 outputs below 6.1e-5 are subnormal: steps of 6e-8. */
      const double tiny = dt == CLSM_FLOAT64 ? 1e-300 : dt == CLSM_FLOAT16 ? 3e-8 : 2e-38;
      const double tol = rt * fabs(dx[k]) + 16 * u * mag[k] + tiny;
      ck_assert_msg(fabs(got - dx[k]) <= tol, "case %d %s %s backward: dx[%lld] = %.9g, reference %.9g",
                    tc, clsm_dtype_name(dt), log ? "log_softmax" : "softmax", (long long)k, got, dx[k]);
    }
    if (sinks)
      for (int64_t h = 0; h < in.H; ++h) {
        const double got = dt == CLSM_FLOAT64 ? ((double *)dss)[h] : ((float *)dss)[h];
        const double tol = 8 * u * dsmag[h] + 1e-6 * fabs(ds[h]) * (dt != CLSM_FLOAT64);
        ck_assert_msg(fabs(got - ds[h]) <= tol, "case %d %s dsinks[%lld] = %.9g, reference %.9g (tol %.3g)",
                      tc, clsm_dtype_name(dt), (long long)h, got, ds[h], tol);
      }
    free(dyv); free(dx); free(mag); free(ys); free(dys); free(dxs); free(dss);
  }
  free(ref); free(rlse); free(y); free(lse);
  free_inputs(&in);
  clsm_context_destroy(ctx);
}
END_TEST

/* Rows that are special: fully masked (a boolean mask row of 0, causal
 * rows before the first key), with and without safe and sinks; NaN and
 * +inf in x and in the mask; -inf sinks. float32 through the device API. */
START_TEST(test_attention_special) {
  clsm_context *ctx = test_context();
  const int64_t shape[4] = {1, 2, 6, 40}, n = 480;
  float x[480], mk[480], y[480];
  double xd[480], md[480], ref[480];
  fill_random(x, n, 3);
  for (int64_t k = 0; k < n; ++k) {
    mk[k] = (k % 7 == 0) ? -INFINITY : 0.5f;
    md[k] = mk[k];
  }
  for (int j = 0; j < 40; ++j) mk[40 + j] = md[40 + j] = -INFINITY; /* row 1: fully masked */
  /* With offset -2, row i of a head sees keys 0 .. i - 2: rows 0, 1 of
   * each head none at all. */
  x[2 * 40 + 0] = NAN;                        /* row 2: NaN among its keys */
  x[3 * 40 + 1] = INFINITY;                   /* row 3: +inf */
  mk[4 * 40 + 2] = md[4 * 40 + 2] = NAN;      /* row 4: a NaN in the mask */
  mk[7 * 40 + 1] = md[7 * 40 + 1] = INFINITY; /* row 7: +inf past its causal end: no effect */
  for (int64_t k = 0; k < n; ++k) xd[k] = x[k];
  const float sinks[2] = {0.5f, -INFINITY};
  const double sinksd[2] = {0.5, -INFINITY};
  for (int variant = 0; variant < 8; ++variant) {
    const int log = variant & 1, safe = (variant >> 1) & 1, sink = (variant >> 2) & 1;
    clsm_attn_options o = CLSM_ATTN_OPTIONS_INIT;
    o.flags = safe ? CLSM_SAFE : 0;
    o.causal = 1;
    o.offset = -2;
    clsm_attn_arrays a = {.mask = mk, .mask_dtype = CLSM_FLOAT32, .mask_rank = 4, .mask_shape = shape};
    if (sink) {
      a.sinks = sinks;
      a.sinks_dtype = CLSM_FLOAT32;
    }
    float lse[12];
    double rlse[12];
    a.lse = lse;
    CK_STATUS(ctx, (log ? clsm_log_softmax_ex_host : clsm_softmax_ex_host)(ctx, CLSM_FLOAT32, 4, shape,
                                                                          3, &o, &a, x, y));
    ref_attn_opts ro = {.scale = 1, .mask = md, .causal = 1, .offset = -2, .head_dim = 1,
                        .safe = safe, .sinks = sink ? sinksd : NULL};
    ref_attn_softmax(xd, ref, rlse, 4, shape, 3, log, &ro);
    check_close(CLSM_FLOAT32, y, ref, n, log, "special", variant);
    check_close(CLSM_FLOAT32, lse, rlse, 12, 1, "special lse", variant);
    /* Spot checks of the rules themselves, not only agreement. */
    if (sink) { /* head 0 (sink 0.5): its rows with no key are 0 / -inf with lse 0.5 */
      ck_assert(y[0] == (log ? -INFINITY : 0.0f));
      ck_assert_float_eq(lse[0], 0.5f);
    }
    if (!sink && !safe) ck_assert(isnan(y[0]));
    if (!sink && safe) ck_assert(y[0] == (log ? -INFINITY : 0.0f));
    for (int row = 2; row <= 4; ++row) /* NaN rows are NaN through their causal tail */
      ck_assert(isnan(y[row * 40]) && isnan(y[row * 40 + 39]) && isnan(lse[row]));
    ck_assert(!isnan(y[7 * 40 + 39]) || !safe || sink);
  }
  clsm_context_destroy(ctx);
}
END_TEST

/* In place (y is x) and strided views (padded rows; a key stride of 2),
 * and a float16 x into float32 y, against the reference. */
START_TEST(test_attention_views) {
  clsm_context *ctx = test_context();
  const int64_t shape[4] = {2, 3, 5, 37}, n = 2 * 3 * 5 * 37;
  const int64_t pitch = 45, xn = 2 * 3 * 5 * 76 + 8;
  float *buf = malloc((size_t)xn * sizeof(float)), *out = malloc((size_t)xn * sizeof(float));
  double *xd = malloc((size_t)n * sizeof(double)), *ref = malloc((size_t)n * sizeof(double));
  fill_random(buf, xn, 9);
  uint8_t keep[37];
  for (int j = 0; j < 37; ++j) keep[j] = (j % 5) != 2;
  clsm_attn_options o = CLSM_ATTN_OPTIONS_INIT;
  o.scale = 0.25;
  o.causal = 1;
  o.offset = 32;
  const int64_t mshape[1] = {37};
  cl_mem mm = test_buffer(ctx, sizeof keep, keep);
  clsm_tensor mt = clsm_tensor_contiguous(mm, 0, CLSM_UINT8, 1, mshape);
  o.mask = &mt;
  double *mfull = malloc((size_t)n * sizeof(double));
  for (int64_t k = 0; k < n; ++k) mfull[k] = keep[k % 37];
  ref_attn_opts ro = {.scale = 0.25, .mask = mfull, .mask_bool = 1, .causal = 1, .offset = 32, .head_dim = 1};
  for (int view = 0; view < 2; ++view) {
    /* view 0: rows `pitch` apart from element 3, in place; view 1: key stride 2. */
    const int64_t ks = view ? 2 : 1, rp = view ? 2 * 37 + 1 : pitch;
    const int64_t need = 3 + 30 * rp + 1;
    ck_assert(need <= xn);
    cl_mem xm = test_buffer(ctx, (size_t)xn * sizeof(float), buf);
    clsm_tensor xt = clsm_tensor_contiguous(xm, 3, CLSM_FLOAT32, 4, shape);
    xt.strides[3] = ks;
    xt.strides[2] = rp;
    xt.strides[1] = 5 * rp;
    xt.strides[0] = 15 * rp;
    for (int64_t r = 0; r < 30; ++r)
      for (int64_t j = 0; j < 37; ++j) xd[r * 37 + j] = buf[3 + r * rp + j * ks];
    for (int log = 0; log < 2; ++log) {
      cl_mem fresh = test_buffer(ctx, (size_t)xn * sizeof(float), buf);
      xt.mem = fresh;
      CK_STATUS(ctx, (log ? clsm_log_softmax_ex : clsm_softmax_ex)(ctx, &xt, &xt, 3, &o, 0, NULL, NULL));
      test_read(ctx, fresh, 0, (size_t)xn * sizeof(float), out);
      ref_attn_softmax(xd, ref, NULL, 4, shape, 3, log, &ro);
      for (int64_t r = 0; r < 30; ++r)
        for (int64_t j = 0; j < 37; ++j)
          ck_assert_msg(ref_close(out[3 + r * rp + j * ks], ref[r * 37 + j], log, 4e-6),
                        "view %d log %d row %lld key %lld: %.9g vs %.9g", view, log, (long long)r,
                        (long long)j, out[3 + r * rp + j * ks], ref[r * 37 + j]);
      /* Elements outside the view are untouched. */
      ck_assert(out[0] == buf[0] && out[1] == buf[1] && out[2] == buf[2]);
      if (!view) ck_assert(out[3 + 37] == buf[3 + 37]);
      clReleaseMemObject(fresh);
    }
    clReleaseMemObject(xm);
  }
  /* float16 x, float32 y. */
  uint16_t *h = malloc((size_t)n * 2);
  for (int64_t k = 0; k < n; ++k) {
    h[k] = ref_f32_to_f16(buf[k]);
    xd[k] = ref_f16_to_f32(h[k]);
  }
  cl_mem hm = test_buffer(ctx, (size_t)n * 2, h), ym = test_buffer(ctx, (size_t)n * 4, NULL);
  clsm_tensor ht = clsm_tensor_contiguous(hm, 0, CLSM_FLOAT16, 4, shape);
  clsm_tensor yt = clsm_tensor_contiguous(ym, 0, CLSM_FLOAT32, 4, shape);
  CK_STATUS(ctx, clsm_softmax_ex(ctx, &ht, &yt, -1, &o, 0, NULL, NULL));
  test_read(ctx, ym, 0, (size_t)n * 4, out);
  ref_attn_softmax(xd, ref, NULL, 4, shape, 3, 0, &ro);
  check_close(CLSM_FLOAT32, out, ref, n, 0, "float16 -> float32", 0);
  clReleaseMemObject(hm);
  clReleaseMemObject(ym);
  clReleaseMemObject(mm);
  free(h); free(buf); free(out); free(xd); free(ref); free(mfull);
  clsm_context_destroy(ctx);
}
END_TEST

/* The central difference of L = sum of dy y over the entries y leaves
 * unmasked, as *v (an element of x, or a sink) moves; the forward is the
 * double reference's. */
static double central_difference(double *v, const double *x, const int64_t *shape, int log,
                                 const ref_attn_opts *ro, const double *y, const double *dy,
                                 int64_t n) {
  double yp[216], l[2];
  const double v0 = *v, h = 1e-6;
  ck_assert(n <= 216);
  for (int k = 0; k < 2; ++k) {
    *v = v0 + (k ? -h : h);
    ref_attn_softmax(x, yp, NULL, 4, shape, 3, log, ro);
    l[k] = 0;
    for (int64_t i = 0; i < n; ++i)
      if (!(log ? y[i] == -INFINITY : y[i] == 0)) l[k] += dy[i] * yp[i];
  }
  *v = v0;
  return (l[0] - l[1]) / (2 * h);
}

/* The backward against central differences of the double reference's
 * forward, dsinks included: L = sum over the unmasked entries of dy y. */
START_TEST(test_attention_finite_differences) {
  clsm_context *ctx = test_context();
  const int64_t shape[4] = {2, 3, 4, 9}, n = 216;
  const int log = _i;
  double x[216], dy[216], y[216], dxd[216], sinks[3] = {0.3, -0.5, 1.2}, slopes[3];
  double keep[216];
  uint8_t keepb[216];
  rng g = {77};
  for (int64_t k = 0; k < n; ++k) {
    x[k] = rng_unit(&g) * 4 - 2;
    dy[k] = rng_unit(&g) * 2 - 1;
    keepb[k] = rng_unit(&g) < 0.85;
    keep[k] = keepb[k];
  }
  ref_alibi_slopes(4.0, 3, slopes);
  ref_attn_opts ro = {.scale = 0.6, .mask = keep, .mask_bool = 1, .causal = 1, .offset = 5,
                      .slopes = slopes, .sinks = sinks, .head_dim = 1, .safe = 1, .f64 = 1};
  clsm_attn_options o = CLSM_ATTN_OPTIONS_INIT;
  o.scale = 0.6;
  o.causal = 1;
  o.offset = 5;
  o.alibi_max_bias = 4.0;
  o.flags = CLSM_SAFE;
  clsm_attn_arrays a = {.mask = keepb, .mask_dtype = CLSM_UINT8, .mask_rank = 4, .mask_shape = shape,
                        .sinks = sinks, .sinks_dtype = CLSM_FLOAT64};
  double ydev[216], dx[216], ds[3];
  CK_STATUS(ctx, (log ? clsm_log_softmax_ex_host : clsm_softmax_ex_host)(ctx, CLSM_FLOAT64, 4, shape, 3,
                                                                        &o, &a, x, ydev));
  clsm_attn_arrays b = {.dsinks = ds};
  CK_STATUS(ctx, (log ? clsm_log_softmax_backward_ex_host : clsm_softmax_backward_ex_host)(
                     ctx, CLSM_FLOAT64, 4, shape, 3, &o, &b, ydev, dy, dx));
  ref_attn_softmax(x, y, NULL, 4, shape, 3, log, &ro);
  for (int64_t k = 0; k < n; ++k) {
    dxd[k] = central_difference(&x[k], x, shape, log, &ro, y, dy, n);
    ck_assert_msg(fabs(dx[k] - dxd[k]) <= 1e-6 * (1 + fabs(dxd[k])),
                  "log %d: dx[%lld] = %.12g, finite difference %.12g", log, (long long)k, dx[k], dxd[k]);
  }
  for (int hh = 0; hh < 3; ++hh) {
    const double fd = central_difference(&sinks[hh], x, shape, log, &ro, y, dy, n);
    ck_assert_msg(fabs(ds[hh] - fd) <= 1e-6 * (1 + fabs(fd)), "log %d: dsinks[%d] = %.12g, finite difference %.12g",
                  log, hh, ds[hh], fd);
  }
  clsm_context_destroy(ctx);
}
END_TEST

static void expect(clsm_context *ctx, clsm_status got, clsm_status want, const char *needle) {
  char det[1024] = "";
  clsm_context_error(ctx, det, sizeof det);
  ck_assert_msg(got == want, "got %s (%s), want %s", clsm_status_name(got), det, clsm_status_name(want));
  ck_assert_msg(strstr(det, needle) != NULL, "detail \"%s\" does not name \"%s\"", det, needle);
}

START_TEST(test_attention_errors) {
  clsm_context *ctx = test_context();
  const int64_t shape[4] = {2, 3, 4, 8};
  float x[192], y[192], m[24], s[4];
  fill_random(x, 192, 1);
  memset(m, 0, sizeof m);
  memset(s, 0, sizeof s);
  for (int i = 0; i < 192; ++i) y[i] = 7;
  clsm_attn_options o = CLSM_ATTN_OPTIONS_INIT;
  clsm_attn_arrays a = {0};
  /* A mask that does not broadcast: (3, 8) against (2, 3, 4, 8). */
  const int64_t bad[2] = {3, 8};
  a.mask = m;
  a.mask_dtype = CLSM_FLOAT32;
  a.mask_rank = 2;
  a.mask_shape = bad;
  expect(ctx, clsm_softmax_ex_host(ctx, CLSM_FLOAT32, 4, shape, 3, &o, &a, x, y), CLSM_ERR_SHAPE_MISMATCH,
         "does not broadcast to x's shape (2, 3, 4, 8)");
  a.mask = NULL;
  /* Slopes and sinks of the wrong length (H = 3 along dim 1). */
  clsm_context *c2 = ctx;
  cl_mem sm = test_buffer(c2, sizeof s, s), xm = test_buffer(c2, sizeof x, x), ym = test_buffer(c2, sizeof y, y);
  const int64_t four[1] = {4};
  clsm_tensor st = clsm_tensor_contiguous(sm, 0, CLSM_FLOAT32, 1, four);
  clsm_tensor xt = clsm_tensor_contiguous(xm, 0, CLSM_FLOAT32, 4, shape);
  clsm_tensor yt = clsm_tensor_contiguous(ym, 0, CLSM_FLOAT32, 4, shape);
  o.alibi_slopes = &st;
  expect(ctx, clsm_softmax_ex(ctx, &xt, &yt, 3, &o, 0, NULL, NULL), CLSM_ERR_SHAPE_MISMATCH,
         "alibi_slopes has shape (4) but must be (3)");
  o.alibi_slopes = NULL;
  o.sinks = &st;
  expect(ctx, clsm_softmax_ex(ctx, &xt, &yt, 3, &o, 0, NULL, NULL), CLSM_ERR_SHAPE_MISMATCH,
         "sinks has shape (4) but must be (3)");
  o.sinks = NULL;
  /* Causal and ALiBi with rank 1. */
  clsm_tensor x1 = clsm_tensor_contiguous(xm, 0, CLSM_FLOAT32, 1, four);
  clsm_tensor y1 = clsm_tensor_contiguous(ym, 0, CLSM_FLOAT32, 1, four);
  o.causal = 1;
  expect(ctx, clsm_softmax_ex(ctx, &x1, &y1, 0, &o, 0, NULL, NULL), CLSM_ERR_SHAPE_MISMATCH,
         "causal masking needs a query axis");
  o.causal = 0;
  o.alibi_max_bias = 8;
  expect(ctx, clsm_softmax_ex(ctx, &x1, &y1, 0, &o, 0, NULL, NULL), CLSM_ERR_SHAPE_MISMATCH, "ALiBi needs");
  o.alibi_slopes = &st;
  expect(ctx, clsm_softmax_ex(ctx, &xt, &yt, 3, &o, 0, NULL, NULL), CLSM_ERR_INVALID_ARGUMENT,
         "alibi_max_bias and alibi_slopes");
  o = clsm_attn_options_default();
  o.scale = NAN;
  expect(ctx, clsm_softmax_ex(ctx, &xt, &yt, 3, &o, 0, NULL, NULL), CLSM_ERR_INVALID_ARGUMENT, "scale");
  o.scale = 1;
  o.head_dim = 3;
  o.causal = 1;
  expect(ctx, clsm_softmax_ex(ctx, &xt, &yt, 3, &o, 0, NULL, NULL), CLSM_ERR_INVALID_DIM, "head_dim");
  o.head_dim = AUTO;
  o.causal = 2;
  expect(ctx, clsm_softmax_ex(ctx, &xt, &yt, 3, &o, 0, NULL, NULL), CLSM_ERR_INVALID_ARGUMENT, "causal");
  o.causal = 0;
  o.dsinks = &st;
  expect(ctx, clsm_softmax_ex(ctx, &xt, &yt, 3, &o, 0, NULL, NULL), CLSM_ERR_INVALID_ARGUMENT, "dsinks");
  o.dsinks = NULL;
  o.lse = &st;
  expect(ctx, clsm_softmax_ex(ctx, &xt, &yt, 3, &o, 0, NULL, NULL), CLSM_ERR_SHAPE_MISMATCH,
         "lse has shape (4) but must be x's shape");
  o.lse = NULL;
  clsm_attn_options zero;
  memset(&zero, 0, sizeof zero);
  expect(ctx, clsm_softmax_ex(ctx, &xt, &yt, 3, &zero, 0, NULL, NULL), CLSM_ERR_INVALID_ARGUMENT,
         "CLSM_ATTN_OPTIONS_INIT");
  ck_assert_int_eq(clsm_softmax_ex(ctx, &xt, &yt, 3, NULL, 0, NULL, NULL), CLSM_ERR_NULL_ARGUMENT);
  /* Nothing was written by any of them. */
  float back[192];
  test_read(ctx, ym, 0, sizeof back, back);
  for (int i = 0; i < 192; ++i) ck_assert(back[i] == 7);
  clReleaseMemObject(sm);
  clReleaseMemObject(xm);
  clReleaseMemObject(ym);
  clsm_context_destroy(ctx);
}
END_TEST

/* The heads a call sees, for host-array callers. */
START_TEST(test_attention_heads) {
  const int64_t shape[4] = {2, 3, 4, 8};
  int64_t h = 0;
  ck_assert_int_eq(clsm_attn_heads(4, shape, -1, AUTO, &h), CLSM_SUCCESS);
  ck_assert_int_eq(h, 3);
  ck_assert_int_eq(clsm_attn_heads(4, shape, 3, 0, &h), CLSM_SUCCESS);
  ck_assert_int_eq(h, 2);
  ck_assert_int_eq(clsm_attn_heads(4, shape, 3, -2, &h), CLSM_SUCCESS);
  ck_assert_int_eq(h, 4);
  ck_assert_int_eq(clsm_attn_heads(2, shape + 2, 1, AUTO, &h), CLSM_SUCCESS); /* no head axis */
  ck_assert_int_eq(h, 1);
  ck_assert_int_eq(clsm_attn_heads(0, NULL, 0, AUTO, &h), CLSM_SUCCESS);
  ck_assert_int_eq(h, 1);
  ck_assert_int_eq(clsm_attn_heads(4, shape, 3, 3, &h), CLSM_ERR_INVALID_DIM);
  ck_assert_int_eq(clsm_attn_heads(4, shape, 3, 4, &h), CLSM_ERR_INVALID_DIM);
  ck_assert_int_eq(clsm_attn_heads(4, shape, 4, AUTO, &h), CLSM_ERR_INVALID_DIM);
  ck_assert_int_eq(clsm_attn_heads(9, shape, 0, AUTO, &h), CLSM_ERR_INVALID_RANK);
  ck_assert_int_eq(clsm_attn_heads(4, NULL, 0, AUTO, &h), CLSM_ERR_NULL_ARGUMENT);
  ck_assert_int_eq(clsm_attn_heads(4, shape, 0, AUTO, NULL), CLSM_ERR_NULL_ARGUMENT);
}
END_TEST

static void record(void *user, const clsm_plan_info *info) {
  snprintf((char *)user, 256, "%s %s", info->op, info->stages ? info->kernel[0] : "-");
}

/* Which kernel runs: the plain row kernel when no attention term is given,
 * the family's attention kernel otherwise, the head reduction after the
 * backward with dsinks. */
START_TEST(test_attention_plan) {
  clsm_context *ctx = test_context();
  char seen[256] = "";
  clsm_context_set_plan_hook(ctx, record, seen);
  const int64_t shape[2] = {4, 64};
  float x[256], y[256];
  fill_random(x, 256, 2);
  clsm_attn_options o = CLSM_ATTN_OPTIONS_INIT;
  CK_STATUS(ctx, clsm_softmax_ex_host(ctx, CLSM_FLOAT32, 2, shape, 1, &o, NULL, x, y));
  ck_assert_msg(strncmp(seen, "softmax clsm_softmax_", 21) == 0, "plain call ran %s", seen);
  o.causal = 1;
  CK_STATUS(ctx, clsm_softmax_ex_host(ctx, CLSM_FLOAT32, 2, shape, 1, &o, NULL, x, y));
  const int cpu = clsm_context_family(ctx) == CLSM_FAMILY_CPU;
  ck_assert_str_eq(seen, cpu ? "softmax_ex clsm_attn_rows_cpu" : "softmax_ex clsm_attn_rows_wg");
  CK_STATUS(ctx, clsm_log_softmax_backward_ex_host(ctx, CLSM_FLOAT32, 2, shape, 1, &o, NULL, y, x, y));
  ck_assert_str_eq(seen, cpu ? "log_softmax_backward_ex clsm_attn_bwd_rows_cpu"
                             : "log_softmax_backward_ex clsm_attn_bwd_rows_wg");
  clsm_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("attention");
  TCase *tc = tcase_create("attention");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, test_attention_case, 0, 4 * NCASES);
  tcase_add_test(tc, test_attention_special);
  tcase_add_test(tc, test_attention_views);
  tcase_add_loop_test(tc, test_attention_finite_differences, 0, 2);
  tcase_add_test(tc, test_attention_errors);
  tcase_add_test(tc, test_attention_plan);
  tcase_add_test(tc, test_attention_heads);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
