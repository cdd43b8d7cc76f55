/* Suite "shard": a class axis split into 1-5 uneven contiguous shards
 * (partial per shard -> clsm_shard_merge in a host loop -> finish per
 * shard), against the same call unsharded and against the double
 * reference; every cross-entropy option, reduction, target kind and dtype;
 * special values in one shard; the built-in-collective merge recipe; a
 * softmax axis split the same way, forward and backward; errors. CTest runs
 * it per kernel family. */
#include "testutil.h"

#include <float.h>
#include <stdint.h>

#define LOSS_RTOL 1e-5
#define LOSS_MAG 2e-7
#define GRAD_ATOL 1e-6

static const clsm_dtype dtypes[4] = {CLSM_FLOAT32, CLSM_FLOAT16, CLSM_BFLOAT16, CLSM_FLOAT64};

/* Storage of `n` doubles in dtype, and one value back. */
static void *pack(clsm_dtype dt, const double *v, int64_t n) {
  const size_t es = clsm_dtype_size(dt);
  unsigned char *p = malloc((size_t)(n + 1) * es);
  ck_assert(p != NULL);
  for (int64_t i = 0; i < n; ++i) {
    if (dt == CLSM_FLOAT32) ((float *)p)[i] = (float)v[i];
    else if (dt == CLSM_FLOAT64) ((double *)p)[i] = v[i];
    else if (dt == CLSM_FLOAT16) ((uint16_t *)p)[i] = ref_f32_to_f16((float)v[i]);
    else ((uint16_t *)p)[i] = ref_f32_to_bf16((float)v[i]);
  }
  return p;
}
static double unpack(clsm_dtype dt, const void *p, int64_t i) {
  if (dt == CLSM_FLOAT32) return ((const float *)p)[i];
  if (dt == CLSM_FLOAT64) return ((const double *)p)[i];
  if (dt == CLSM_FLOAT16) return ref_f16_to_f32(((const uint16_t *)p)[i]);
  return ref_bf16_to_f32(((const uint16_t *)p)[i]);
}
/* The unit roundoff of dtype's storage. */
static double ulp_of(clsm_dtype dt) {
  return dt == CLSM_FLOAT64 ? DBL_EPSILON : dt == CLSM_FLOAT16 ? 0x1p-10 : dt == CLSM_BFLOAT16 ? 0x1p-7 : FLT_EPSILON;
}
/* Rounds v to dtype's storage, as pack does. */
static double round_to(clsm_dtype dt, double v) {
  void *p = pack(dt, &v, 1);
  double r = unpack(dt, p, 0);
  free(p);
  return r;
}

static int has_fp64(clsm_context *ctx) {
  cl_device_fp_config cfg = 0;
  clGetDeviceInfo(clsm_context_device(ctx), CL_DEVICE_DOUBLE_FP_CONFIG, sizeof cfg, &cfg, NULL);
  if (!cfg) printf("SKIPPED: %s has no cl_khr_fp64; float64 cases not run\n", clsm_context_device_name(ctx));
  return cfg != 0;
}

/* Shard boundaries of C classes into k shards: uneven, the first a single
 * class when k > 1 and C allows it. b[0] = 0, b[k] = C. */
static void split(int64_t C, int k, int64_t *b) {
  static const int weights[5] = {1, 4, 2, 6, 3};
  b[0] = 0;
  if (k == 1) {
    b[1] = C;
    return;
  }
  int64_t wsum = 0;
  for (int r = 1; r < k; ++r) wsum += weights[r];
  b[1] = C > 1 ? 1 : C;
  int64_t acc = 0;
  for (int r = 1; r < k; ++r) {
    acc += weights[r];
    b[r + 1] = b[1] + (C - b[1]) * acc / wsum;
  }
  b[k] = C;
}

/* Columns [c0, c1) of an (outer, C, inner) array of element size es. */
static void *columns(const void *src, size_t es, int64_t outer, int64_t C, int64_t inner,
                     int64_t c0, int64_t c1) {
  const int64_t w = c1 - c0;
  unsigned char *d = malloc((size_t)(outer * w * inner + 1) * es);
  ck_assert(d != NULL);
  for (int64_t o = 0; o < outer; ++o)
    memcpy(d + (size_t)(o * w * inner) * es, (const unsigned char *)src + (size_t)((o * C + c0) * inner) * es,
           (size_t)(w * inner) * es);
  return d;
}
static void put_columns(void *dst, const void *src, size_t es, int64_t outer, int64_t C,
                        int64_t inner, int64_t c0, int64_t c1) {
  const int64_t w = c1 - c0;
  for (int64_t o = 0; o < outer; ++o)
    memcpy((unsigned char *)dst + (size_t)((o * C + c0) * inner) * es,
           (const unsigned char *)src + (size_t)(o * w * inner) * es, (size_t)(w * inner) * es);
}

/* A cross-entropy problem: logits (outer, C, inner) in double (the stored
 * dtype's values), index targets or probabilities, weights. */
typedef struct problem {
  int rank;
  int64_t shape[4];
  int64_t outer, C, inner, P, n;
  double *x, *q, *w;
  int64_t *t;
} problem;

typedef struct ce_case {
  int rank;
  int64_t shape[4];
} ce_case;
static const ce_case cases[] = {
    {1, {7}}, {2, {5, 11}}, {2, {64, 80}}, {3, {3, 6, 4}}, {2, {4, 300}}, {2, {3, 1500}},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static void problem_make(problem *pb, const ce_case *c, clsm_dtype dt, int prob, uint64_t seed,
                         int64_t ignore, const int64_t *bounds, int k) {
  memset(pb, 0, sizeof *pb);
  pb->rank = c->rank;
  memcpy(pb->shape, c->shape, sizeof c->shape);
  pb->C = c->shape[c->rank == 1 ? 0 : 1];
  pb->outer = c->rank >= 2 ? c->shape[0] : 1;
  pb->inner = 1;
  for (int d = 2; d < c->rank; ++d) pb->inner *= c->shape[d];
  pb->P = pb->outer * pb->inner;
  pb->n = pb->P * pb->C;
  float *xf = malloc((size_t)(pb->n + 1) * 4);
  pb->x = malloc((size_t)(pb->n + 1) * 8);
  pb->w = malloc((size_t)(pb->C + 1) * 8);
  ck_assert(xf && pb->x && pb->w);
  fill_random(xf, pb->n, seed);
  for (int64_t i = 0; i < pb->n; ++i) pb->x[i] = round_to(dt, xf[i]);
  free(xf);
  rng r = {seed * 131 + 5};
  for (int64_t c = 0; c < pb->C; ++c) pb->w[c] = round_to(dt, rng_unit(&r) * 2.5 - 0.5);
  if (pb->C > 1) pb->w[1] = 0.0;
  if (prob) {
    pb->q = malloc((size_t)(pb->n + 1) * 8);
    ck_assert(pb->q != NULL);
    for (int64_t i = 0; i < pb->n; ++i) pb->q[i] = round_to(dt, rng_unit(&r) * 2.0 / (double)pb->C);
  } else {
    pb->t = malloc((size_t)(pb->P + 1) * 8);
    ck_assert(pb->t != NULL);
    for (int64_t p = 0; p < pb->P; ++p) {
      /* Targets on shard boundaries (first and last class of a shard) half
       * of the time, some ignored. */
      const int64_t s = (int64_t)(rng_next(&r) % (uint64_t)k);
      const uint64_t u = rng_next(&r) % 4;
      pb->t[p] = u == 0 ? bounds[s] : u == 1 ? bounds[s + 1] - 1
                                             : (int64_t)(rng_next(&r) % (uint64_t)pb->C);
      if (pb->t[p] < 0) pb->t[p] = 0;
      if (p % 5 == 3) pb->t[p] = ignore;
    }
  }
}

static void problem_free(problem *pb) { free(pb->x), free(pb->q), free(pb->w), free(pb->t); }

/* The outputs of one cross-entropy, sharded or not, in double. */
typedef struct ce_out {
  double *loss, *grad, *lse, tw;
  int64_t L;
} ce_out;
static void out_alloc(ce_out *o, const problem *pb, int L) {
  o->loss = calloc((size_t)L + 1, 8);
  o->grad = calloc((size_t)pb->n + 1, 8);
  o->lse = calloc((size_t)pb->P + 1, 8);
  o->L = L;
  ck_assert(o->loss && o->grad && o->lse);
}
static void out_free(ce_out *o) { free(o->loss), free(o->grad), free(o->lse); }

typedef struct run_opts {
  clsm_ce_options opt;
  int weighted, prob;
  clsm_dtype dt;
  const double *gs; /* upstream gradient: 1 value, or P for none */
} run_opts;

static void *targets_array(const problem *pb) {
  void *t = malloc((size_t)(pb->P + 1) * 8);
  ck_assert(t != NULL);
  memcpy(t, pb->t, (size_t)pb->P * 8);
  return t;
}

static void run_unsharded(clsm_context *ctx, const problem *pb, const run_opts *ro, ce_out *out) {
  const clsm_dtype dt = ro->dt;
  const size_t es = clsm_dtype_size(dt);
  void *x = pack(dt, pb->x, pb->n), *w = pack(dt, pb->w, pb->C), *gs = pack(dt, ro->gs, out->L);
  void *tg = ro->prob ? pack(dt, pb->q, pb->n) : targets_array(pb);
  void *loss = malloc((size_t)(out->L + 1) * es), *grad = malloc((size_t)(pb->n + 1) * es);
  float *lse = malloc((size_t)(pb->P + 1) * 4), tw = -1;
  ck_assert(loss && grad && lse);
  CK_STATUS(ctx, clsm_cross_entropy_host(ctx, dt, pb->rank, pb->shape, x, ro->prob ? dt : CLSM_INT64,
                                         tg, &ro->opt, ro->weighted ? w : NULL, loss, grad, gs, lse,
                                         &tw));
  for (int64_t i = 0; i < out->L; ++i) out->loss[i] = unpack(dt, loss, i);
  for (int64_t i = 0; i < pb->n; ++i) out->grad[i] = unpack(dt, grad, i);
  for (int64_t i = 0; i < pb->P; ++i) out->lse[i] = lse[i];
  out->tw = tw;
  free(x), free(w), free(gs), free(tg), free(loss), free(grad), free(lse);
}

/* k shards at `b`: partial on each, merged in shard order `order`, finish on
 * each; every shard's loss, lse and total weight must be the same. */
static void run_sharded(clsm_context *ctx, const problem *pb, const run_opts *ro, int k,
                        const int64_t *b, const int *order, ce_out *out) {
  const clsm_dtype dt = ro->dt, acc = dt == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  const size_t es = clsm_dtype_size(dt), as = clsm_dtype_size(acc);
  const size_t sbytes = (size_t)(pb->P * CLSM_SHARD_STATS + 1) * as;
  void *xall = pack(dt, pb->x, pb->n), *w = pack(dt, pb->w, pb->C), *gs = pack(dt, ro->gs, out->L);
  void *qall = ro->prob ? pack(dt, pb->q, pb->n) : NULL;
  void *tix = ro->prob ? NULL : targets_array(pb);
  void *stats[5], *xs[5], *qs[5];
  void *merged = malloc(sbytes);
  void *gradall = malloc((size_t)(pb->n + 1) * es);
  ck_assert(merged && gradall);
  for (int r = 0; r < k; ++r) {
    int64_t shape[4];
    memcpy(shape, pb->shape, sizeof shape);
    shape[pb->rank == 1 ? 0 : 1] = b[r + 1] - b[r];
    xs[r] = columns(xall, es, pb->outer, pb->C, pb->inner, b[r], b[r + 1]);
    qs[r] = ro->prob ? columns(qall, es, pb->outer, pb->C, pb->inner, b[r], b[r + 1]) : NULL;
    stats[r] = malloc(sbytes);
    ck_assert(stats[r] != NULL);
    const clsm_shard sh = {b[r], pb->C};
    CK_STATUS(ctx, clsm_cross_entropy_partial_host(ctx, dt, pb->rank, shape, xs[r],
                                                   ro->prob ? dt : CLSM_INT64,
                                                   ro->prob ? qs[r] : tix, &sh, &ro->opt,
                                                   ro->weighted ? w : NULL, stats[r]));
  }
  memcpy(merged, stats[order[0]], sbytes);
  for (int r = 1; r < k; ++r)
    ck_assert_int_eq(clsm_shard_merge(acc, CLSM_SHARD_STATS, pb->P, stats[order[r]], merged),
                     CLSM_SUCCESS);
  void *loss = malloc((size_t)(out->L + 1) * es);
  float *lse = malloc((size_t)(pb->P + 1) * 4);
  ck_assert(loss && lse);
  for (int r = 0; r < k; ++r) {
    int64_t shape[4];
    memcpy(shape, pb->shape, sizeof shape);
    shape[pb->rank == 1 ? 0 : 1] = b[r + 1] - b[r];
    const clsm_shard sh = {b[r], pb->C};
    void *g = malloc((size_t)(pb->P * (b[r + 1] - b[r]) + 1) * es);
    float tw = -1;
    ck_assert(g != NULL);
    CK_STATUS(ctx, clsm_cross_entropy_finish_host(ctx, dt, pb->rank, shape, xs[r],
                                                  ro->prob ? dt : CLSM_INT64,
                                                  ro->prob ? qs[r] : tix, &sh, &ro->opt,
                                                  ro->weighted ? w : NULL, merged, loss, g, gs,
                                                  lse, &tw));
    put_columns(gradall, g, es, pb->outer, pb->C, pb->inner, b[r], b[r + 1]);
    free(g);
    for (int64_t i = 0; i < out->L; ++i) {
      const double v = unpack(dt, loss, i);
      if (r == 0) out->loss[i] = v;
      else ck_assert_msg(v == out->loss[i] || (isnan(v) && isnan(out->loss[i])),
                         "shard %d's loss[%lld] %.9g differs from shard 0's %.9g", r,
                         (long long)i, v, out->loss[i]);
    }
    for (int64_t i = 0; i < pb->P; ++i) {
      if (r == 0) out->lse[i] = lse[i];
      else ck_assert(lse[i] == out->lse[i] || (isnan(lse[i]) && isnan(out->lse[i])));
    }
    if (r == 0) out->tw = tw;
    else ck_assert(tw == out->tw);
  }
  for (int64_t i = 0; i < pb->n; ++i) out->grad[i] = unpack(dt, gradall, i);
  for (int r = 0; r < k; ++r) free(stats[r]), free(xs[r]), free(qs[r]);
  free(xall), free(w), free(gs), free(qall), free(tix), free(merged), free(gradall), free(loss),
      free(lse);
}

/* a and b equal within `tol`, NaN where the other is NaN, infinities exact. */
static int near(double a, double b, double tol) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  if (isinf(a) || isinf(b)) return a == b;
  return fabs(a - b) <= tol;
}

/* The double reference of a problem. */
typedef struct ref_out {
  double *loss, *lse, *grad, *mag, total, W;
} ref_out;
static void ref_run(const problem *pb, const run_opts *ro, int reduction, ref_out *r) {
  r->loss = malloc((size_t)(pb->P + 1) * 8);
  r->lse = malloc((size_t)(pb->P + 1) * 8);
  r->mag = malloc((size_t)(pb->P + 1) * 8);
  r->grad = malloc((size_t)(pb->n + 1) * 8);
  ck_assert(r->loss && r->lse && r->mag && r->grad);
  ref_ce_opts o = {reduction, ro->opt.ignore_index, ro->opt.label_smoothing, ro->opt.z_loss,
                   ro->opt.softcap, ro->weighted ? pb->w : NULL};
  ref_cross_entropy(pb->x, pb->outer, pb->C, pb->inner, ro->prob ? NULL : pb->t,
                    ro->prob ? pb->q : NULL, &o, r->loss, &r->total, &r->W, r->lse, r->mag, ro->gs,
                    r->grad);
}
static void ref_free(ref_out *r) { free(r->loss), free(r->lse), free(r->mag), free(r->grad); }

/* The sharded result against the double reference, within test_ce's
 * bounds (16-bit storage: 2 units of its roundoff). */
static void against_reference(const problem *pb, const ce_out *sh, const run_opts *ro,
                              int reduction, const ref_out *r, const char *what) {
  const double u = ulp_of(ro->dt);
  const int wide = ro->dt == CLSM_FLOAT32 || ro->dt == CLSM_FLOAT64;
  const double rtol = wide ? LOSS_RTOL : 2 * u, mtol = wide ? LOSS_MAG : 2 * u;
  if (reduction == 2) {
    for (int64_t p = 0; p < pb->P; ++p)
      ck_assert_msg(near(sh->loss[p], r->loss[p], rtol * fabs(r->loss[p]) + mtol * r->mag[p]),
                    "%s: loss[%lld] %.9g, reference %.12g", what, (long long)p, sh->loss[p],
                    r->loss[p]);
  } else {
    double msum = 0;
    for (int64_t p = 0; p < pb->P; ++p) msum += r->mag[p];
    if (reduction == 0) msum /= fabs(r->W) > 0 ? fabs(r->W) : 1.0;
    ck_assert_msg(near(sh->loss[0], r->total, rtol * fabs(r->total) + mtol * msum),
                  "%s: loss %.9g, reference %.12g", what, sh->loss[0], r->total);
  }
  const double gtol = wide ? GRAD_ATOL : 2 * u;
  for (int64_t i = 0; i < pb->n; ++i)
    if (isfinite(r->grad[i]))
      ck_assert_msg(fabs(sh->grad[i] - r->grad[i]) <= gtol * fmax(1.0, fabs(r->grad[i])),
                    "%s: grad[%lld] %.9g, reference %.12g", what, (long long)i, sh->grad[i],
                    r->grad[i]);
}

/* The sharded result against the unsharded one, both against the double
 * reference: the sharded value's error is at most twice the unsharded
 * value's own plus 4 units of the storage's roundoff of its scale (the
 * loss: sums over the classes taken in another order, and the GPU family's
 * unsharded tree sums are tighter than a row's blocked sum; the gradient:
 * exp, 1/s and two products round on each side). Scales: the loss, its terms (|lse| and the logits
 * weighted: the reference's `mag`); the gradient, its row's coefficient
 * |g| / W times the largest |weight| (and 2 for probabilities: p_c sum w q'
 * - w_c q'_c), as p_t - 1 cancels. Specials (NaN, infinities) exactly.
 * Returns the largest difference from the unsharded value in units of the
 * scale. */
static double compare(const problem *pb, const ce_out *sh, const ce_out *un, const ref_out *r,
                      const run_opts *ro, int reduction, const char *what) {
  const double u = ulp_of(ro->dt);
  double worst = 0, msum = 0, wmax = 1;
  for (int64_t p = 0; p < pb->P; ++p) msum += r->mag[p];
  if (ro->weighted)
    for (int64_t c = 0; c < pb->C; ++c) wmax = fmax(wmax, fabs(pb->w[c]));
  const double W = reduction == 0 ? fmax(fabs(un->tw), 1e-30) : 1;
  for (int64_t i = 0; i < un->L; ++i) {
    const double want = reduction == 2 ? r->loss[i] : r->total;
    const double scale = fmax(fabs(un->loss[i]), reduction == 2 ? r->mag[i] : msum / (reduction == 0 ? fmax(fabs(r->W), 1) : 1));
    if (isfinite(want) && isfinite(un->loss[i]))
      ck_assert_msg(fabs(sh->loss[i] - want) <= 2 * fabs(un->loss[i] - want) + 4 * u * scale,
                    "%s: loss[%lld] %.17g, unsharded %.17g, reference %.17g", what, (long long)i,
                    sh->loss[i], un->loss[i], want);
    else
      ck_assert_msg(near(sh->loss[i], un->loss[i], 0), "%s: loss[%lld] %.9g, unsharded %.9g",
                    what, (long long)i, sh->loss[i], un->loss[i]);
    if (isfinite(un->loss[i]) && scale > 0) worst = fmax(worst, fabs(sh->loss[i] - un->loss[i]) / (u * scale));
  }
  for (int64_t p = 0; p < pb->P; ++p)
    ck_assert_msg(near(sh->lse[p], un->lse[p], 2 * FLT_EPSILON * fmax(1, fabs(un->lse[p]))),
                  "%s: lse[%lld] %.9g, unsharded %.9g", what, (long long)p, sh->lse[p], un->lse[p]);
  ck_assert_msg(sh->tw == un->tw, "%s: total weight %g, unsharded %g", what, sh->tw, un->tw);
  for (int64_t o = 0; o < pb->outer; ++o)
    for (int64_t i = 0; i < pb->inner; ++i) {
      const int64_t p = o * pb->inner + i;
      const double g = fabs(ro->gs[reduction == 2 ? p : 0]);
      const double scale = g / W * wmax * (ro->prob ? 2 : 1);
      for (int64_t c = 0; c < pb->C; ++c) {
        const int64_t e = (o * pb->C + c) * pb->inner + i;
        if (isfinite(r->grad[e]) && isfinite(un->grad[e]))
          ck_assert_msg(fabs(sh->grad[e] - r->grad[e]) <= 2 * fabs(un->grad[e] - r->grad[e]) + 4 * u * scale,
                        "%s: grad[%lld] %.17g, unsharded %.17g, reference %.17g", what,
                        (long long)e, sh->grad[e], un->grad[e], r->grad[e]);
        else
          ck_assert_msg(near(sh->grad[e], un->grad[e], 0), "%s: grad[%lld] %.9g, unsharded %.9g",
                        what, (long long)e, sh->grad[e], un->grad[e]);
        if (isfinite(un->grad[e]) && scale > 0) worst = fmax(worst, fabs(sh->grad[e] - un->grad[e]) / (u * scale));
      }
    }
  return worst;
}

/* Loop index: case x dtype x target kind (index / probabilities); inside,
 * every reduction x option variant x shard count 1..5. */
START_TEST(test_shard_ce) {
  const int ci = _i % NCASES, di = (_i / NCASES) % 4, prob = _i / (NCASES * 4);
  const clsm_dtype dt = dtypes[di];
  clsm_context *ctx = test_context();
  if (dt == CLSM_FLOAT64 && !has_fp64(ctx)) {
    clsm_context_destroy(ctx);
    return;
  }
  double worst = 0;
  for (int v = 0; v < 6; ++v) {
    /* weights; eps 0 / 0.1 / 1; z-loss with ignore; softcap */
    const int weighted = v & 1;
    const double eps = v < 2 ? 0.0 : v < 4 ? 0.1 : 1.0;
    for (int reduction = 0; reduction < 3; ++reduction)
      for (int k = 1; k <= 5; ++k) {
        if (k > cases[ci].shape[cases[ci].rank == 1 ? 0 : 1]) continue;
        int64_t b[6];
        const int64_t C = cases[ci].shape[cases[ci].rank == 1 ? 0 : 1];
        split(C, k, b);
        run_opts ro;
        ro.opt = clsm_ce_options_default();
        ro.opt.reduction = (clsm_reduction)reduction;
        ro.opt.label_smoothing = eps;
        ro.opt.ignore_index = prob ? -100 : 2;
        if (v == 3) ro.opt.z_loss = 1e-3;
        if (v == 4) ro.opt.softcap = 5.0;
        ro.weighted = weighted, ro.prob = prob, ro.dt = dt;
        problem pb;
        problem_make(&pb, &cases[ci], dt, prob, 1000u * (uint64_t)_i + 10u * (uint64_t)v + (uint64_t)k,
                     ro.opt.ignore_index, b, k);
        const int L = reduction == 2 ? (int)pb.P : 1;
        double *g = malloc((size_t)(L + 1) * 8);
        ck_assert(g != NULL);
        for (int i = 0; i < L; ++i) g[i] = reduction == 2 ? 0.5 + 0.25 * (i % 4) : 0.75;
        ro.gs = g;
        ce_out un, sh;
        out_alloc(&un, &pb, L);
        out_alloc(&sh, &pb, L);
        /* Shards merged in reverse order: the merge is order-free. */
        const int order[5] = {k - 1, k > 2 ? 1 : 0, k > 2 ? 0 : 1, 3, 2};
        const int fwd[5] = {0, 1, 2, 3, 4};
        run_unsharded(ctx, &pb, &ro, &un);
        run_sharded(ctx, &pb, &ro, k, b, k >= 4 ? fwd : order, &sh);
        char what[200];
        snprintf(what, sizeof what, "case %d %s %s v%d red %d shards %d", ci, clsm_dtype_name(dt),
                 prob ? "probs" : "index", v, reduction, k);
        ref_out rf;
        ref_run(&pb, &ro, reduction, &rf);
        against_reference(&pb, &sh, &ro, reduction, &rf, what);
        const double wv = compare(&pb, &sh, &un, &rf, &ro, reduction, what);
        ref_free(&rf);
        worst = fmax(worst, wv);
        out_free(&un), out_free(&sh), problem_free(&pb), free(g);
      }
  }
  printf("shard ce case %d %s %s: largest difference from unsharded %.2f roundoff units\n", ci,
         clsm_dtype_name(dt), prob ? "probs" : "index", worst);
  clsm_context_destroy(ctx);
}
END_TEST

/* Special values in one shard only: a NaN, a +inf, a shard whose logits
 * are all -inf, a whole row of -inf, an ignored row; the sharded outputs
 * are exactly the unsharded ones where those are not finite, and close
 * where they are. */
START_TEST(test_shard_ce_specials) {
  clsm_context *ctx = test_context();
  const int64_t N = 6, C = 20, b[4] = {0, 1, 8, 20};
  double x[6 * 20];
  rng r = {77};
  for (int i = 0; i < N * C; ++i) x[i] = rng_unit(&r) * 6 - 3;
  x[0 * C + 10] = NAN;
  x[1 * C + 3] = INFINITY;
  for (int c = 1; c < 8; ++c) x[2 * C + c] = -INFINITY; /* shard 1 of row 2 */
  for (int c = 0; c < C; ++c) x[3 * C + c] = -INFINITY;
  problem pb;
  memset(&pb, 0, sizeof pb);
  pb.rank = 2, pb.shape[0] = N, pb.shape[1] = C, pb.outer = N, pb.C = C, pb.inner = 1, pb.P = N;
  pb.n = N * C;
  pb.x = x;
  int64_t t[6] = {10, 7, 12, 0, 8, -100}; /* row 4's target on a boundary */
  pb.t = t;
  double w[20];
  for (int c = 0; c < C; ++c) w[c] = 0.5 + 0.05 * c;
  pb.w = w;
  for (int v = 0; v < 4; ++v) {
    run_opts ro;
    ro.opt = clsm_ce_options_default();
    ro.opt.reduction = CLSM_REDUCTION_NONE;
    ro.opt.label_smoothing = v & 1 ? 0.2 : 0.0;
    ro.weighted = v >> 1;
    ro.prob = 0, ro.dt = CLSM_FLOAT32;
    const double gs[6] = {1, 1, 1, 1, 1, 1};
    ro.gs = gs;
    ce_out un, sh;
    out_alloc(&un, &pb, (int)N);
    out_alloc(&sh, &pb, (int)N);
    const int order[3] = {2, 0, 1};
    run_unsharded(ctx, &pb, &ro, &un);
    run_sharded(ctx, &pb, &ro, 3, b, order, &sh);
    for (int64_t p = 0; p < N; ++p) {
      ck_assert_msg(near(sh.loss[p], un.loss[p], 4e-6 * fmax(1, fabs(un.loss[p]))),
                    "v%d loss[%lld] %.9g, unsharded %.9g", v, (long long)p, sh.loss[p], un.loss[p]);
      ck_assert_msg(near(sh.lse[p], un.lse[p], 4e-7 * fmax(1, fabs(un.lse[p]))),
                    "v%d lse[%lld] %.9g, unsharded %.9g", v, (long long)p, sh.lse[p], un.lse[p]);
    }
    for (int64_t i = 0; i < N * C; ++i)
      ck_assert_msg(near(sh.grad[i], un.grad[i], 1e-6), "v%d grad[%lld] %.9g, unsharded %.9g", v,
                    (long long)i, sh.grad[i], un.grad[i]);
    /* What PyTorch gives: NaN rows for NaN, +inf and all -inf; a finite row
     * where only a shard is -inf (+inf under label smoothing); zeros for the
     * ignored row. */
    /* Row 2 under label smoothing takes -log p of its -inf logits: +inf. */
    const int row2 = ro.opt.label_smoothing > 0 ? sh.loss[2] == INFINITY : isfinite(sh.loss[2]);
    ck_assert_msg(isnan(sh.loss[0]) && isnan(sh.loss[1]) && isnan(sh.loss[3]) && row2 &&
                      isfinite(sh.loss[4]) && sh.loss[5] == 0,
                  "v%d losses %g %g %g %g %g %g", v, sh.loss[0], sh.loss[1], sh.loss[2],
                  sh.loss[3], sh.loss[4], sh.loss[5]);
    for (int c = 0; c < C; ++c) ck_assert(sh.grad[5 * C + c] == 0 && isfinite(sh.grad[2 * C + c]));
    out_free(&un), out_free(&sh);
  }
  clsm_context_destroy(ctx);
}
END_TEST

/* The built-in-collective recipe (maximum, rebase, sum, restore) gives the
 * pairwise merge's records, specials included. */
START_TEST(test_shard_recipe) {
  const int K = 4, k = CLSM_SHARD_STATS;
  const int64_t n = 9;
  float st[4][9 * CLSM_SHARD_STATS], merged[9 * CLSM_SHARD_STATS], sum[9 * CLSM_SHARD_STATS];
  float mx[9];
  rng r = {5};
  for (int sh = 0; sh < K; ++sh)
    for (int64_t p = 0; p < n; ++p) {
      float *v = st[sh] + p * k;
      v[0] = (float)(rng_unit(&r) * 40 - 20);
      v[1] = (float)(rng_unit(&r) * 30 + 1);
      for (int j = 2; j < k; ++j) v[j] = (float)(rng_unit(&r) * 10 - 5);
    }
  /* Position 1: shard 2 empty (m -inf, s 0); 2: every shard empty; 3: a
   * NaN sum in shard 0 (a NaN or +inf logit there); 4: shard 3 NaN, the
   * rest empty; 5: equal maxima. */
  st[2][1 * k] = -INFINITY, st[2][1 * k + 1] = 0;
  for (int sh = 0; sh < K; ++sh) st[sh][2 * k] = -INFINITY, st[sh][2 * k + 1] = 0;
  st[0][3 * k + 1] = NAN;
  for (int sh = 0; sh < K; ++sh) st[sh][4 * k] = -INFINITY, st[sh][4 * k + 1] = 0;
  st[3][4 * k + 1] = NAN;
  for (int sh = 0; sh < K; ++sh) st[sh][5 * k] = 3.5f;
  memcpy(merged, st[0], sizeof merged);
  for (int sh = 1; sh < K; ++sh)
    ck_assert_int_eq(clsm_shard_merge(CLSM_FLOAT32, k, n, st[sh], merged), CLSM_SUCCESS);
  for (int64_t p = 0; p < n; ++p) {
    mx[p] = -INFINITY;
    for (int sh = 0; sh < K; ++sh) mx[p] = fmaxf(mx[p], st[sh][p * k]);
  }
  memset(sum, 0, sizeof sum);
  for (int sh = 0; sh < K; ++sh) {
    float tmp[9 * CLSM_SHARD_STATS];
    memcpy(tmp, st[sh], sizeof tmp);
    ck_assert_int_eq(clsm_shard_rebase(CLSM_FLOAT32, k, n, tmp, mx), CLSM_SUCCESS);
    for (int i = 0; i < n * k; ++i) sum[i] += tmp[i];
  }
  ck_assert_int_eq(clsm_shard_restore(CLSM_FLOAT32, k, n, sum, mx), CLSM_SUCCESS);
  for (int64_t p = 0; p < n; ++p) {
    /* The pair's value exp-weighted in double, from the four shards. */
    double M = -INFINITY, S = 0;
    int nan = 0;
    for (int sh = 0; sh < K; ++sh) M = fmax(M, st[sh][p * k]);
    for (int sh = 0; sh < K; ++sh) {
      const double m = st[sh][p * k], s = st[sh][p * k + 1];
      if (isnan(s)) nan = 1;
      else if (m != -INFINITY) S += s * exp(m - M);
    }
    ck_assert_msg(merged[p * k] == (float)M && sum[p * k] == (float)M, "max of position %lld", (long long)p);
    if (nan) {
      ck_assert_msg(isnan(merged[p * k + 1]) && isnan(sum[p * k + 1]), "NaN at position %lld", (long long)p);
    } else {
      ck_assert_msg(fabs(merged[p * k + 1] - S) <= 4 * FLT_EPSILON * S, "merge sum %lld: %.9g vs %.9g",
                    (long long)p, (double)merged[p * k + 1], S);
      ck_assert_msg(fabs(sum[p * k + 1] - S) <= 4 * FLT_EPSILON * S, "recipe sum %lld: %.9g vs %.9g",
                    (long long)p, (double)sum[p * k + 1], S);
    }
    for (int j = 2; j < k; ++j) {
      double want = 0, mag = 0;
      for (int sh = 0; sh < K; ++sh) want += st[sh][p * k + j], mag += fabs(st[sh][p * k + j]);
      ck_assert(fabs(merged[p * k + j] - want) <= 4 * FLT_EPSILON * mag);
      ck_assert(fabs(sum[p * k + j] - want) <= 4 * FLT_EPSILON * mag);
    }
  }
  /* Bad arguments. */
  ck_assert_int_eq(clsm_shard_merge(CLSM_FLOAT16, k, n, st[0], merged), CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(clsm_shard_merge(CLSM_FLOAT32, 1, n, st[0], merged), CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(clsm_shard_merge(CLSM_FLOAT32, k, -1, st[0], merged), CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(clsm_shard_merge(CLSM_FLOAT32, k, n, NULL, merged), CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(clsm_shard_rebase(CLSM_FLOAT32, k, n, merged, NULL), CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(clsm_shard_merge(CLSM_FLOAT32, k, 0, NULL, NULL), CLSM_SUCCESS);
}
END_TEST

/* Softmax, log-softmax and their backward along a sharded axis: 1-4
 * shards, last and middle axes, every dtype, against the unsharded call
 * and the double reference; a row that is -inf in one shard, a row with a
 * NaN, a row of -inf (with and without CLSM_SAFE). */
typedef struct sm_case {
  int rank;
  int64_t shape[3];
  int dim;
} sm_case;
static const sm_case sm_cases[] = {{2, {6, 37}, 1}, {3, {3, 40, 4}, 1}, {2, {4, 1100}, 1}, {1, {9}, 0}};
#define NSM ((int)(sizeof sm_cases / sizeof sm_cases[0]))

START_TEST(test_shard_softmax) {
  const sm_case *c = &sm_cases[_i % NSM];
  const clsm_dtype dt = dtypes[(_i / NSM) % 4];
  const unsigned flags = (_i / (NSM * 4)) ? CLSM_SAFE : 0;
  clsm_context *ctx = test_context();
  if (dt == CLSM_FLOAT64 && !has_fp64(ctx)) {
    clsm_context_destroy(ctx);
    return;
  }
  const size_t es = clsm_dtype_size(dt), as = dt == CLSM_FLOAT64 ? 8 : 4;
  const clsm_dtype acc = dt == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  int64_t n = 1, rows = 1;
  for (int d = 0; d < c->rank; ++d) n *= c->shape[d];
  const int64_t C = c->shape[c->dim];
  rows = n / C;
  const int64_t outer = c->dim == 0 ? 1 : c->shape[0], inner = n / (outer * C);
  double *x = malloc((size_t)n * 8), *dy = malloc((size_t)n * 8), *ref = malloc((size_t)n * 8);
  double *bmag = malloc((size_t)n * 8); /* the backward's cancelling terms */
  float *xf = malloc((size_t)n * 4);
  ck_assert(x && dy && ref && bmag && xf);
  fill_random(xf, n, 40u + (uint64_t)_i);
  for (int64_t i = 0; i < n; ++i) x[i] = round_to(dt, xf[i]);
  rng r = {9u + (uint64_t)_i};
  for (int64_t i = 0; i < n; ++i) dy[i] = round_to(dt, rng_unit(&r) * 2 - 1);
  /* Row 0: -inf over the first shard's columns (1 of them); row 1 (when
   * there is one): all -inf; row 2: a NaN. */
  if (rows > 1) {
    for (int64_t k = 0; k < C; ++k) x[(1 / inner * C + k) * inner + 1 % inner] = -INFINITY;
  }
  x[0] = -INFINITY;
  if (rows > 2) x[(2 / inner * C + C / 2) * inner + 2 % inner] = NAN;
  for (int op = 0; op < 4; ++op) {
    const int backward = op >= 2, lg = op & 1;
    /* The input of a backward op: the unsharded forward's output. */
    void *xa = pack(dt, x, n), *dya = pack(dt, dy, n);
    void *a = xa;
    void *yfwd = NULL;
    if (backward) {
      yfwd = malloc((size_t)n * es);
      ck_assert(yfwd != NULL);
      CK_STATUS(ctx, (lg ? clsm_log_softmax_host : clsm_softmax_host)(ctx, dt, c->rank, c->shape,
                                                                      c->dim, flags, xa, yfwd));
      a = yfwd;
    }
    void *un = malloc((size_t)n * es), *out = malloc((size_t)n * es);
    ck_assert(un && out);
    if (!backward)
      CK_STATUS(ctx, (lg ? clsm_log_softmax_host : clsm_softmax_host)(ctx, dt, c->rank, c->shape,
                                                                      c->dim, flags, a, un));
    else
      CK_STATUS(ctx, (lg ? clsm_log_softmax_backward_host : clsm_softmax_backward_host)(
                         ctx, dt, c->rank, c->shape, c->dim, flags, a, dya, un));
    /* The double reference from the same inputs. */
    double *ad = malloc((size_t)n * 8);
    ck_assert(ad != NULL);
    for (int64_t i = 0; i < n; ++i) ad[i] = unpack(dt, a, i);
    if (!backward) {
      float *af = malloc((size_t)n * 4);
      ck_assert(af != NULL);
      for (int64_t i = 0; i < n; ++i) af[i] = (float)ad[i];
      ref_softmax(af, ref, c->rank, c->shape, c->dim, lg, (flags & CLSM_SAFE) != 0);
      free(af);
    } else {
      double *dyd = malloc((size_t)n * 8);
      ck_assert(dyd != NULL);
      for (int64_t i = 0; i < n; ++i) dyd[i] = unpack(dt, dya, i);
      ref_softmax_backward(ad, dyd, ref, bmag, c->rank, c->shape, c->dim, lg);
      free(dyd);
    }
    for (int k = 1; k <= 4 && k <= C; ++k) {
      int64_t b[6];
      split(C, k, b);
      const int sk = 2;
      double *merged = calloc((size_t)(rows * sk + 1), 8);
      void *outs[5];
      ck_assert(merged != NULL);
      for (int sh = 0; sh < k; ++sh) {
        int64_t shape[3];
        memcpy(shape, c->shape, sizeof shape);
        shape[c->dim] = b[sh + 1] - b[sh];
        void *as_ = columns(a, es, outer, C, inner, b[sh], b[sh + 1]);
        void *bs_ = columns(dya, es, outer, C, inner, b[sh], b[sh + 1]);
        void *st = malloc((size_t)(rows * sk + 1) * as);
        ck_assert(st != NULL);
        CK_STATUS(ctx, clsm_softmax_partial_host(ctx, (clsm_shard_op)op, dt, c->rank, shape, c->dim,
                                                 as_, backward ? bs_ : NULL, st));
        /* Merge: the forward's pairs by clsm_shard_merge, the backward's sums. */
        if (sh == 0) {
          for (int64_t i = 0; i < rows * sk; ++i) merged[i] = acc == CLSM_FLOAT32 ? ((float *)st)[i] : ((double *)st)[i];
        } else if (!backward) {
          double *tmp = malloc((size_t)(rows * sk + 1) * 8);
          ck_assert(tmp != NULL);
          for (int64_t i = 0; i < rows * sk; ++i) tmp[i] = acc == CLSM_FLOAT32 ? ((float *)st)[i] : ((double *)st)[i];
          ck_assert_int_eq(clsm_shard_merge(CLSM_FLOAT64, 2, rows, tmp, merged), CLSM_SUCCESS);
          free(tmp);
        } else {
          for (int64_t i = 0; i < 2 * rows; ++i) merged[i] += acc == CLSM_FLOAT32 ? ((float *)st)[i] : ((double *)st)[i];
        }
        free(st);
        outs[sh] = as_;
        free(bs_);
      }
      void *mst = malloc((size_t)(rows * sk + 1) * as);
      ck_assert(mst != NULL);
      for (int64_t i = 0; i < rows * sk; ++i) {
        if (acc == CLSM_FLOAT32) ((float *)mst)[i] = (float)merged[i];
        else ((double *)mst)[i] = merged[i];
      }
      for (int sh = 0; sh < k; ++sh) {
        int64_t shape[3];
        memcpy(shape, c->shape, sizeof shape);
        shape[c->dim] = b[sh + 1] - b[sh];
        void *bs_ = columns(dya, es, outer, C, inner, b[sh], b[sh + 1]);
        void *o = malloc((size_t)(outer * (b[sh + 1] - b[sh]) * inner + 1) * es);
        ck_assert(o != NULL);
        CK_STATUS(ctx, clsm_softmax_finish_host(ctx, (clsm_shard_op)op, dt, c->rank, shape, c->dim,
                                                flags, outs[sh], backward ? bs_ : NULL, mst, o));
        put_columns(out, o, es, outer, C, inner, b[sh], b[sh + 1]);
        free(o), free(bs_), free(outs[sh]);
      }
      const double u = ulp_of(dt);
      for (int64_t i = 0; i < n; ++i) {
        const double got = unpack(dt, out, i), want = unpack(dt, un, i);
        /* Within 4 units of the value (log-softmax: of max(1, |y|); the
         * backward: of its row's dy and y), and as near the reference as
         * twice the unsharded value is plus those units. */
        const double scale = backward ? bmag[i] : lg ? fmax(1, fabs(want)) : fabs(want);
        const double own = isfinite(want) && isfinite(ref[i]) ? fabs(want - ref[i]) : 0;
        const double tol = (isfinite(scale) ? 4 * u * scale : 0) + (dt == CLSM_FLOAT64 ? 0 : 2 * own);
        ck_assert_msg(near(got, want, tol + 1e-300),
                      "%s op %d shards %d [%lld]: %.9g, unsharded %.9g, reference %.9g",
                      clsm_dtype_name(dt), op, k, (long long)i, got, want, ref[i]);
      }
      free(merged), free(mst);
    }
    free(xa), free(dya), free(yfwd), free(un), free(out), free(ad);
  }
  free(x), free(dy), free(ref), free(bmag), free(xf);
  clsm_context_destroy(ctx);
}
END_TEST

/* Errors name the argument, and nothing is written: a shard outside the
 * axis, stats of the wrong shape, weights of the shard's classes only,
 * options the phase has no use for, an out-of-range class index (the
 * partial's stats and the finish's gradient stay as they were). */
START_TEST(test_shard_errors) {
  clsm_context *ctx = test_context();
  const int64_t shape[2] = {3, 4};
  float x[12] = {0}, stats[3 * CLSM_SHARD_STATS], grad[12], loss = 7;
  for (int i = 0; i < 3 * CLSM_SHARD_STATS; ++i) stats[i] = 42;
  for (int i = 0; i < 12; ++i) grad[i] = 42;
  int64_t t[3] = {0, 5, 9};
  float w[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  char detail[512];
  clsm_shard sh = {4, 10};
#define PART(s_, wt) clsm_cross_entropy_partial_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, s_, &opt, wt, stats)
  ck_assert_int_eq(PART(&sh, NULL), CLSM_SUCCESS);
  for (int i = 0; i < 3 * CLSM_SHARD_STATS; ++i) stats[i] = 42;
  clsm_shard bad = {8, 10};
  ck_assert_int_eq(PART(&bad, NULL), CLSM_ERR_INVALID_ARGUMENT);
  clsm_context_error(ctx, detail, sizeof detail);
  ck_assert_msg(strstr(detail, "shard") && strstr(detail, "[8, 12)"), "%s", detail);
  bad.first = -1;
  ck_assert_int_eq(PART(&bad, NULL), CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(PART(NULL, NULL), CLSM_ERR_NULL_ARGUMENT);
  ck_assert_int_eq(PART(&sh, w), CLSM_SUCCESS); /* weights of all 10 classes */
  for (int i = 0; i < 3 * CLSM_SHARD_STATS; ++i) stats[i] = 42;
  /* The weight tensor of the shard's 4 classes, on the device API. */
  {
    cl_mem xb = test_buffer(ctx, 64 * sizeof(float), NULL), tb = test_buffer(ctx, sizeof t, t);
    cl_mem wb = test_buffer(ctx, sizeof w, w), sb = test_buffer(ctx, sizeof stats, stats);
    clsm_tensor tx = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
    const int64_t n3 = 3, w4 = 4, sshape[2] = {3, CLSM_SHARD_STATS}, bshape[2] = {3, 4};
    clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 1, &n3);
    clsm_tensor tw = clsm_tensor_contiguous(wb, 0, CLSM_FLOAT32, 1, &w4);
    clsm_tensor ts = clsm_tensor_contiguous(sb, 0, CLSM_FLOAT32, 2, sshape);
    clsm_tensor tbad = clsm_tensor_contiguous(sb, 0, CLSM_FLOAT32, 2, bshape);
    clsm_ce_options o = CLSM_CE_OPTIONS_INIT;
    o.weight = &tw;
    ck_assert_int_eq(clsm_cross_entropy_partial(ctx, &tx, &tt, &sh, &ts, &o, 0, NULL, NULL),
                     CLSM_ERR_SHAPE_MISMATCH);
    clsm_context_error(ctx, detail, sizeof detail);
    ck_assert_msg(strstr(detail, "weight") && strstr(detail, "(10)"), "%s", detail);
    o.weight = NULL;
    ck_assert_int_eq(clsm_cross_entropy_partial(ctx, &tx, &tt, &sh, &tbad, &o, 0, NULL, NULL),
                     CLSM_ERR_SHAPE_MISMATCH);
    clsm_context_error(ctx, detail, sizeof detail);
    ck_assert_msg(strstr(detail, "stats") && strstr(detail, "(3, 5)"), "%s", detail);
    ck_assert_int_eq(clsm_cross_entropy_partial(ctx, &tx, &tt, &sh, NULL, &o, 0, NULL, NULL),
                     CLSM_ERR_NULL_ARGUMENT);
    o.lse = &tt;
    ck_assert_int_eq(clsm_cross_entropy_partial(ctx, &tx, &tt, &sh, &ts, &o, 0, NULL, NULL),
                     CLSM_ERR_INVALID_ARGUMENT);
    o.lse = NULL;
    /* stats as the logits' own buffer: an output over an input. */
    clsm_tensor tover = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, sshape);
    ck_assert_int_eq(clsm_cross_entropy_partial(ctx, &tx, &tt, &sh, &tover, &o, 0, NULL, NULL),
                     CLSM_ERR_OVERLAP);
    ck_assert_int_eq(clsm_cross_entropy_finish(ctx, &tx, &tt, &sh, &ts, NULL, &o, 0, NULL, NULL),
                     CLSM_ERR_NULL_ARGUMENT);
    clReleaseMemObject(xb), clReleaseMemObject(tb), clReleaseMemObject(wb), clReleaseMemObject(sb);
  }
  /* Out of range against the whole axis (10 classes): nothing written. */
  t[2] = 10;
  ck_assert_int_eq(PART(&sh, NULL), CLSM_ERR_TARGET_OUT_OF_RANGE);
  for (int i = 0; i < 3 * CLSM_SHARD_STATS; ++i) ck_assert(stats[i] == 42);
  ck_assert_int_eq(clsm_cross_entropy_finish_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &sh,
                                                  &opt, NULL, stats, &loss, grad, NULL, NULL, NULL),
                   CLSM_ERR_TARGET_OUT_OF_RANGE);
  for (int i = 0; i < 12; ++i) ck_assert(grad[i] == 42);
  ck_assert(loss == 7);
  t[2] = 9; /* a target outside this shard but inside the axis is fine */
  ck_assert_int_eq(PART(&sh, NULL), CLSM_SUCCESS);
#undef PART
  /* Softmax: stats of the wrong shape, an unknown op, dy with a forward. */
  float st2[3 * 2], y[12];
  const int64_t s3[2] = {3, 4};
  ck_assert_int_eq(clsm_softmax_partial_host(ctx, (clsm_shard_op)7, CLSM_FLOAT32, 2, s3, 1, x, NULL, st2),
                   CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(clsm_softmax_partial_host(ctx, CLSM_SHARD_SOFTMAX_BACKWARD, CLSM_FLOAT32, 2, s3, 1, x, NULL, st2),
                   CLSM_ERR_NULL_ARGUMENT);
  ck_assert_int_eq(clsm_softmax_finish_host(ctx, CLSM_SHARD_SOFTMAX, CLSM_FLOAT32, 2, s3, 1, 0x80, x, NULL, st2, y),
                   CLSM_ERR_INVALID_ARGUMENT);
  {
    cl_mem xb = test_buffer(ctx, sizeof x, x), sb = test_buffer(ctx, 64, NULL);
    clsm_tensor tx = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, s3);
    const int64_t n3 = 3;
    clsm_tensor ts = clsm_tensor_contiguous(sb, 0, CLSM_FLOAT32, 1, &n3); /* needs (3, 2) */
    ck_assert_int_eq(clsm_softmax_partial(ctx, CLSM_SHARD_SOFTMAX, &tx, NULL, 1, &ts, 0, NULL, NULL),
                     CLSM_ERR_SHAPE_MISMATCH);
    clsm_context_error(ctx, detail, sizeof detail);
    ck_assert_msg(strstr(detail, "stats") && strstr(detail, "(3, 2)"), "%s", detail);
    clReleaseMemObject(xb), clReleaseMemObject(sb);
  }
  clsm_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("shard");
  TCase *tc = tcase_create("cross_entropy");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, test_shard_ce, 0, NCASES * 4 * 2);
  tcase_add_test(tc, test_shard_ce_specials);
  tcase_add_test(tc, test_shard_recipe);
  tcase_add_test(tc, test_shard_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("softmax");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, test_shard_softmax, 0, NSM * 4 * 2);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
