/* Suite "cross_entropy": the loss, its fused gradient and its backward for
 * every option combination over a table of shapes, against the double
 * reference written from SEMANTICS.md; the reference's gradient against
 * central finite differences; PyTorch's corner cases; out-of-range targets;
 * in place; the large-vocabulary extensions. CTest runs it per kernel family. */
#include "testutil.h"

#include <float.h>
#include <stdint.h>

#define LOSS_RTOL 1e-5
#define LOSS_MAG 2e-7 /* float roundings of the terms that cancel */
#define GRAD_ATOL 1e-6

typedef struct ce_shape {
  int rank;
  int64_t shape[5];
} ce_shape;

static const ce_shape shapes[] = {
    {1, {7}},           {2, {5, 11}},          {2, {64, 80}}, {3, {3, 6, 4}},
    {5, {2, 5, 3, 2, 2}}, {2, {4, 300}},       {2, {2, 5000}}, {2, {0, 5}},
    /* Class axis not last, positions contiguous: blocks of 1, 2, 4 and 32
     * 16-wide vectors, with scalar tails (test_ce_inner_no_keep: a block too
     * large to keep exp in the gradient). */
    {3, {2, 7, 37}},      {4, {2, 40, 5, 16}}, {3, {1, 9, 64}}, {3, {3, 11, 20}},
    {3, {2, 5, 520}},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static const clsm_ce_options defaults = CLSM_CE_OPTIONS_INIT;

/* Target kinds: int64, int32, uint8 indices, float32 probabilities. */
static const clsm_dtype tkinds[4] = {CLSM_INT64, CLSM_INT32, CLSM_UINT8, CLSM_FLOAT32};

/* Option variants run inside one test (one context): weight x eps x extras. */
typedef struct variant {
  int weight;     /* 0 none; 1 weights in [-0.5, 2] with a zero */
  double eps;
  int extra;      /* 0 plain; 1 some targets ignored + z-loss; 2 softcap + ignore_index outside [0, C) */
} variant;

static int n_variants(void) { return 2 * 3 * 3; }
static variant variant_at(int k) {
  static const double epss[3] = {0.0, 0.1, 1.0};
  variant v = {k % 2, epss[(k / 2) % 3], k / 6};
  return v;
}

typedef struct problem {
  int rank;
  int64_t shape[5];
  int64_t outer, C, inner, P, n;
  float *x;        /* logits */
  double *xd;
  int64_t *tidx;   /* index targets (or NULL) */
  float *q;        /* probabilities (or NULL) */
  double *qd;
  float w[5000];
  double wd[5000];
} problem;

static void problem_make(problem *pb, const ce_shape *s, int prob, int extra, uint64_t seed) {
  memset(pb, 0, sizeof *pb);
  pb->rank = s->rank;
  memcpy(pb->shape, s->shape, sizeof s->shape);
  int axis = s->rank == 1 ? 0 : 1;
  pb->C = s->shape[axis];
  pb->outer = s->rank >= 2 ? s->shape[0] : 1;
  pb->inner = 1;
  for (int d = 2; d < s->rank; ++d) pb->inner *= s->shape[d];
  pb->P = pb->outer * pb->inner;
  pb->n = pb->P * pb->C;
  size_t n1 = (size_t)pb->n + 1;
  pb->x = malloc(n1 * 4);
  pb->xd = malloc(n1 * 8);
  ck_assert(pb->x && pb->xd);
  fill_random(pb->x, pb->n, seed);
  for (int64_t i = 0; i < pb->n; ++i) pb->xd[i] = pb->x[i];
  rng r = {seed * 31 + 7};
  if (prob) {
    pb->q = malloc(n1 * 4);
    pb->qd = malloc(n1 * 8);
    ck_assert(pb->q && pb->qd);
    /* Non-negative, unnormalised: each row sums to 1.3. */
    for (int64_t o = 0; o < pb->outer; ++o)
      for (int64_t i = 0; i < pb->inner; ++i) {
        double sum = 0.0;
        for (int64_t c = 0; c < pb->C; ++c) sum += pb->qd[(o * pb->C + c) * pb->inner + i] = rng_unit(&r);
        for (int64_t c = 0; c < pb->C; ++c) {
          int64_t k = (o * pb->C + c) * pb->inner + i;
          pb->q[k] = (float)(pb->qd[k] * 1.3 / sum);
          pb->qd[k] = pb->q[k];
        }
      }
  } else {
    pb->tidx = malloc(sizeof(int64_t) * (size_t)(pb->P + 1));
    ck_assert(pb->tidx != NULL);
    for (int64_t p = 0; p < pb->P; ++p) {
      pb->tidx[p] = (int64_t)(rng_next(&r) % (uint64_t)(pb->C > 255 ? 255 : pb->C));
      if (extra == 1 && p % 3 == 1) pb->tidx[p] = 3 < pb->C ? 3 : 0; /* ignore_index 3 */
    }
  }
  for (int64_t c = 0; c < pb->C; ++c) {
    pb->w[c] = (float)(rng_unit(&r) * 2.5 - 0.5);
    if (c == 1) pb->w[c] = 0.0f;
    pb->wd[c] = pb->w[c];
  }
}

static void problem_free(problem *pb) {
  free(pb->x), free(pb->xd), free(pb->tidx), free(pb->q), free(pb->qd);
}

/* Target array in the given index dtype (or the float32 probabilities). */
static void *target_array(const problem *pb, clsm_dtype dt) {
  if (dt == CLSM_FLOAT32) return pb->q;
  void *t = malloc((size_t)(pb->P + 1) * 8);
  ck_assert(t != NULL);
  for (int64_t p = 0; p < pb->P; ++p) {
    if (dt == CLSM_INT64) ((int64_t *)t)[p] = pb->tidx[p];
    else if (dt == CLSM_INT32) ((int32_t *)t)[p] = (int32_t)pb->tidx[p];
    else ((uint8_t *)t)[p] = (uint8_t)pb->tidx[p];
  }
  return t;
}

/* Runs one (shape, reduction, target kind, variant) through the host API with
 * the fused gradient (g = 0.75, or per position for none), lse and total
 * weight, and checks all of them against the reference. */
static void check_case(clsm_context *ctx, const ce_shape *s, int reduction, int tk, variant v,
                       uint64_t seed) {
  int prob = tk == 3;
  problem pb;
  problem_make(&pb, s, prob, v.extra, seed);
  ref_ce_opts ro = {reduction, -100, v.eps, 0.0, 0.0, v.weight ? pb.wd : NULL};
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  opt.reduction = (clsm_reduction)reduction;
  opt.label_smoothing = v.eps;
  if (v.extra == 1) {
    ro.ignore_index = opt.ignore_index = prob ? -1 : 3;
    ro.z = opt.z_loss = 1e-3;
  } else if (v.extra == 2) {
    ro.ignore_index = opt.ignore_index = prob ? -7 : 1000;
    ro.cap = opt.softcap = 5.0;
  }
  const int64_t P = pb.P, L = reduction == 2 ? P : 1;
  size_t n1 = (size_t)pb.n + 1, p1 = (size_t)P + 1;
  float *grad = malloc(n1 * 4), *loss = malloc(p1 * 4), *lse = malloc(p1 * 4), *gs = malloc(p1 * 4);
  double *rgrad = malloc(n1 * 8), *rl = malloc(p1 * 8), *rlse = malloc(p1 * 8), *mag = malloc(p1 * 8);
  double *gd = malloc(p1 * 8);
  ck_assert(grad && loss && lse && gs && rgrad && rl && rlse && mag && gd);
  for (int64_t i = 0; i < L; ++i) {
    gs[i] = reduction == 2 ? (float)(0.5 + 0.25 * (double)(i % 4)) : 0.75f;
    gd[i] = gs[i];
  }
  float tw = -1.0f;
  void *tgt = target_array(&pb, tkinds[tk]);
  CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, s->rank, s->shape, pb.x, tkinds[tk],
                                         tgt, &opt, v.weight ? pb.w : NULL, loss, grad, gs, lse,
                                         &tw));
  double total = 0.0, W = 0.0;
  ref_cross_entropy(pb.xd, pb.outer, pb.C, pb.inner, pb.tidx, pb.qd, &ro, rl, &total, &W, rlse,
                    mag, gd, rgrad);
  const char *rn[3] = {"mean", "sum", "none"};
  char ctxs[160];
  snprintf(ctxs, sizeof ctxs, "%s %s w%d eps %g extra %d seed %llu", rn[reduction],
           clsm_dtype_name(tkinds[tk]), v.weight, v.eps, v.extra, (unsigned long long)seed);
#define CTX "%s"
  if (reduction == 2) {
    for (int64_t p = 0; p < P; ++p)
      ck_assert_msg(isinf(rl[p]) ? loss[p] == rl[p] : fabs(loss[p] - rl[p]) <= LOSS_RTOL * fabs(rl[p]) + LOSS_MAG * mag[p],
                    "loss[%lld] %.9g vs %.12g: " CTX, (long long)p, (double)loss[p], rl[p], ctxs);
  } else {
    double msum = 0.0;
    for (int64_t p = 0; p < P; ++p) msum += mag[p];
    if (reduction == 0) msum /= fabs(W) > 0 ? fabs(W) : 1.0;
    if (isnan(total))
      ck_assert_msg(isnan(loss[0]), "loss %.9g, reference NaN: " CTX, (double)loss[0], ctxs);
    else if (isinf(total)) /* a total weight of 0 with weights */
      ck_assert_msg(loss[0] == total, "loss %.9g, reference %g: " CTX, (double)loss[0], total, ctxs);
    else
      ck_assert_msg(fabs(loss[0] - total) <= LOSS_RTOL * fabs(total) + LOSS_MAG * msum,
                    "loss %.9g vs %.12g: " CTX, (double)loss[0], total, ctxs);
  }
  ck_assert_msg(fabs(tw - W) <= 1e-6 * fmax(1.0, fabs(W)), "total weight %g vs %g", (double)tw, W);
  for (int64_t p = 0; p < P; ++p)
    ck_assert_msg(fabs(lse[p] - rlse[p]) <= 4e-7 * fmax(1.0, fabs(rlse[p])), "lse[%lld]", (long long)p);
  for (int64_t i = 0; i < pb.n; ++i) {
    if (!isfinite(rgrad[i])) { /* a total weight of 0: inf or NaN, by evaluation order */
      ck_assert_msg(!isfinite(grad[i]), "grad[%lld] should not be finite: " CTX, (long long)i, ctxs);
      continue;
    }
    ck_assert_msg(fabs(grad[i] - rgrad[i]) <= GRAD_ATOL * fmax(1.0, fabs(rgrad[i])),
                  "grad[%lld] %.9g vs %.12g: " CTX, (long long)i, (double)grad[i], rgrad[i], ctxs);
  }
#undef CTX
  if (tgt != pb.q) free(tgt);
  free(grad), free(loss), free(lse), free(gs), free(rgrad), free(rl), free(rlse), free(mag), free(gd);
  problem_free(&pb);
}

START_TEST(test_ce_options) {
  int k = _i;
  const ce_shape *s = &shapes[k % NSHAPES];
  k /= NSHAPES;
  int tk = k % 4, reduction = k / 4;
  if (tk == 2 && s->shape[s->rank == 1 ? 0 : 1] > 256) tk = 0; /* uint8 holds classes < 256 */
  printf("ce %d: rank %d reduction %d target %s\n", _i, s->rank, reduction, clsm_dtype_name(tkinds[tk]));
  clsm_context *ctx = test_context();
  for (int v = 0; v < n_variants(); ++v) check_case(ctx, s, reduction, tk, variant_at(v), 3000 + (uint64_t)(_i * 64 + v));
  clsm_context_destroy(ctx);
}
END_TEST

/* The reference's analytic gradient against central finite differences of
 * the reference loss, for every option, and the device's gradient against
 * the same differences. */
START_TEST(test_ce_finite_differences) {
  const ce_shape s = {3, {2, 5, 3}};
  int tk = _i % 2 ? 3 : 0, reduction = (_i / 2) % 3;
  clsm_context *ctx = test_context();
  for (int vi = 0; vi < n_variants(); ++vi) {
    variant v = variant_at(vi);
    problem pb;
    problem_make(&pb, &s, tk == 3, v.extra, 77 + (uint64_t)vi);
    ref_ce_opts ro = {reduction, -100, v.eps, 0.0, 0.0, v.weight ? pb.wd : NULL};
    clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
    opt.reduction = (clsm_reduction)reduction;
    opt.label_smoothing = v.eps;
    if (v.extra == 1) {
      ro.ignore_index = opt.ignore_index = tk == 3 ? -1 : 3;
      ro.z = opt.z_loss = 0.05;
    } else if (v.extra == 2) {
      ro.ignore_index = opt.ignore_index = tk == 3 ? -7 : 1000;
      ro.cap = opt.softcap = 2.0;
    }
    double g[6], rgrad[30], lp[6], lm[6], tp, tm;
    float gf[6], grad[30], loss[6];
    for (int p = 0; p < 6; ++p) gf[p] = (float)(g[p] = 0.5 + 0.3 * p);
    ref_cross_entropy(pb.xd, 2, 5, 3, pb.tidx, pb.qd, &ro, NULL, NULL, NULL, NULL, NULL, g, rgrad);
    void *tgt = target_array(&pb, tkinds[tk]);
    CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 3, s.shape, pb.x, tkinds[tk], tgt,
                                           &opt, v.weight ? pb.w : NULL, loss, grad, gf, NULL, NULL));
    const double h = 1e-6;
    for (int i = 0; i < 30; ++i) {
      double keep = pb.xd[i];
      pb.xd[i] = keep + h;
      ref_cross_entropy(pb.xd, 2, 5, 3, pb.tidx, pb.qd, &ro, lp, &tp, NULL, NULL, NULL, NULL, NULL);
      pb.xd[i] = keep - h;
      ref_cross_entropy(pb.xd, 2, 5, 3, pb.tidx, pb.qd, &ro, lm, &tm, NULL, NULL, NULL, NULL, NULL);
      pb.xd[i] = keep;
      double fd;
      if (reduction == 2) {
        fd = 0.0;
        for (int p = 0; p < 6; ++p) fd += g[p] * (lp[p] - lm[p]) / (2 * h);
      } else {
        fd = g[0] * (tp - tm) / (2 * h);
      }
      ck_assert_msg(fabs(rgrad[i] - fd) <= 1e-7 * fmax(1.0, fabs(fd)),
                    "reference gradient %d: %.12g vs finite differences %.12g (variant %d)", i,
                    rgrad[i], fd, vi);
      ck_assert_msg(fabs(grad[i] - fd) <= 2e-6 * fmax(1.0, fabs(fd)),
                    "device gradient %d: %.9g vs finite differences %.12g (variant %d)", i,
                    (double)grad[i], fd, vi);
    }
    if (tgt != pb.q) free(tgt);
    problem_free(&pb);
  }
  clsm_context_destroy(ctx);
}
END_TEST

/* The tutorial's example: batch 64, 80 classes, targets 0..63, mean. */
START_TEST(test_ce_starting_example) {
  clsm_context *ctx = test_context();
  enum { N = 64, C = 80 };
  float x[N * C];
  double xd[N * C];
  int64_t t[N];
  fill_random(x, N * C, 64);
  for (int i = 0; i < N * C; ++i) xd[i] = x[i];
  for (int n = 0; n < N; ++n) t[n] = n;
  const int64_t shape[2] = {N, C};
  clsm_ce_options opt = clsm_ce_options_default();
  float loss;
  CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &opt, NULL,
                                         &loss, NULL, NULL, NULL, NULL));
  double ref = 0.0;
  for (int n = 0; n < N; ++n) { /* the tutorial's formula, stabilised, in double */
    double m = -INFINITY, s = 0.0;
    for (int c = 0; c < C; ++c) m = fmax(m, xd[n * C + c]);
    for (int c = 0; c < C; ++c) s += exp(xd[n * C + c] - m);
    ref += m + log(s) - xd[n * C + t[n]];
  }
  ref /= N;
  ck_assert_msg(fabs(loss - ref) <= 1e-5 * ref, "loss %.9g vs %.12g", (double)loss, ref);
  clsm_context_destroy(ctx);
}
END_TEST

/* Everything ignored: mean NaN, sum 0, none zeros, zero gradient, W = 0. */
START_TEST(test_ce_all_ignored) {
  clsm_context *ctx = test_context();
  enum { N = 4, C = 6 };
  float x[N * C], grad[N * C], loss[N], tw;
  int64_t t[N] = {-100, -100, -100, -100};
  fill_random(x, N * C, 1);
  const int64_t shape[2] = {N, C};
  for (int red = 0; red < 3; ++red) {
    clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
    opt.reduction = (clsm_reduction)red;
    for (int i = 0; i < N * C; ++i) grad[i] = 99.0f;
    CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &opt,
                                           NULL, loss, grad, NULL, NULL, &tw));
    if (red == 0) ck_assert(isnan(loss[0]));
    if (red == 1) ck_assert_float_eq(loss[0], 0.0f);
    if (red == 2)
      for (int n = 0; n < N; ++n) ck_assert_float_eq(loss[n], 0.0f);
    for (int i = 0; i < N * C; ++i) ck_assert_float_eq(grad[i], 0.0f);
    ck_assert_float_eq(tw, 0.0f);
  }
  /* N = 0: mean NaN, sum 0. */
  const int64_t empty[2] = {0, C};
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, empty, x, CLSM_INT64, t, &opt, NULL,
                                         loss, NULL, NULL, NULL, NULL));
  ck_assert(isnan(loss[0]));
  opt.reduction = CLSM_REDUCTION_SUM;
  CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, empty, x, CLSM_INT64, t, &opt, NULL,
                                         loss, NULL, NULL, NULL, NULL));
  ck_assert_float_eq(loss[0], 0.0f);
  clsm_context_destroy(ctx);
}
END_TEST

/* Huge and infinite logits: +-1e4, +-1e30, a -inf non-target logit. */
START_TEST(test_ce_extreme_logits) {
  clsm_context *ctx = test_context();
  enum { N = 4, C = 20 };
  float x[N * C], grad[N * C], loss[N];
  double xd[N * C];
  int64_t t[N] = {0, 5, 19, 7};
  fill_random(x, N * C, 2);
  for (int c = 0; c < C; ++c) {
    x[0 * C + c] = (c % 2 ? 1e4f : -1e4f);
    x[1 * C + c] = (c % 3 ? -1e30f : 1e30f);
    x[3 * C + c] = (float)c;
  }
  x[2 * C + 3] = -INFINITY;
  x[3 * C + 0] = -INFINITY;
  for (int i = 0; i < N * C; ++i) xd[i] = x[i];
  const int64_t shape[2] = {N, C};
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  opt.reduction = CLSM_REDUCTION_NONE;
  float g[N] = {1, 1, 1, 1};
  CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &opt, NULL,
                                         loss, grad, g, NULL, NULL));
  ref_ce_opts ro = {2, -100, 0.0, 0.0, 0.0, NULL};
  double rl[N], rg[N * C], gd[N] = {1, 1, 1, 1};
  ref_cross_entropy(xd, N, C, 1, t, NULL, &ro, rl, NULL, NULL, NULL, NULL, gd, rg);
  for (int n = 0; n < N; ++n) {
    ck_assert_msg(isfinite(loss[n]), "loss[%d] = %g", n, (double)loss[n]);
    ck_assert_msg(fabs(loss[n] - rl[n]) <= 1e-5 * fmax(1.0, fabs(rl[n])), "loss[%d] %.9g vs %.9g", n,
                  (double)loss[n], rl[n]);
  }
  /* Row 0: target logit -1e4 against +1e4: loss 2e4 + log(10). */
  ck_assert(fabs(loss[0] - (2e4 + log(10.0))) <= 1e-5 * 2e4);
  for (int i = 0; i < N * C; ++i)
    ck_assert_msg(fabs(grad[i] - rg[i]) <= GRAD_ATOL * fmax(1.0, fabs(rg[i])), "grad %d: %.9g vs %.9g",
                  i, (double)grad[i], rg[i]);
  ck_assert_float_eq(grad[2 * C + 3], 0.0f); /* exp(-inf) */
  clsm_context_destroy(ctx);
}
END_TEST

/* Long rows with special values among them. Rows of 512 or more without a
 * kept exp take (max, sum) in one read (chunks folded into 16 lanes'
 * running pairs): rows whose max grows or falls in every chunk, whole lanes
 * of -inf beside values near -1000, a -inf here and there, offsets of
 * hundreds between rows, against the double reference; a NaN, a +inf or a
 * row of -inf only gives a NaN loss. Cases 0-2: forward only, C 600, 1031,
 * 4099 (chunks, whole vectors and a scalar tail); case 3: with the
 * gradient, C 33000 (too long to keep exps, so it also reads the row once).
 * Cases 4-7: the same rows split over work-items (forced on), 8 or 9 rows,
 * so two chunks a row whose pairs are merged. */
START_TEST(test_ce_long_rows_specials) {
  static const int64_t Cs[] = {600, 1031, 4099, 33000};
  if (_i >= 4) setenv("CLSM_SPLIT", "1", 1);
  const int64_t C = Cs[_i % 4], N = _i % 4 == 3 ? 9 : _i >= 4 ? 8 : 97;
  const int grad = _i % 4 == 3;
  const float inf = INFINITY;
  clsm_context *ctx = test_context();
  float *x = malloc(sizeof(float) * (size_t)(N * C)), *gr = malloc(sizeof(float) * (size_t)(N * C));
  double *xd = malloc(sizeof(double) * (size_t)(N * C)), *rg = malloc(sizeof(double) * (size_t)(N * C));
  float *loss = malloc(sizeof(float) * (size_t)N), *g = malloc(sizeof(float) * (size_t)N);
  double *rl = malloc(sizeof(double) * (size_t)N), *gd = malloc(sizeof(double) * (size_t)N);
  int64_t *t = malloc(sizeof(int64_t) * (size_t)N);
  ck_assert(x && gr && xd && rg && loss && g && rl && gd && t);
  fill_random(x, N * C, 90 + (uint64_t)_i);
  int *special = calloc((size_t)N, sizeof(int));
  for (int64_t r = 0; r < N; ++r) {
    float *row = x + r * C;
    t[r] = (r * 131) % C;
    g[r] = 1.0f;
    gd[r] = 1.0;
    for (int64_t c = 0; c < C; ++c) row[c] += (float)((r * 37) % 11) * 90.0f - 450.0f;
    switch (r % 8) {
    case 1: row[(r * 7) % C] = NAN; special[r] = 1; break;
    case 2: row[(r * 11) % C] = inf; special[r] = 1; break;
    case 3:
      if (!grad) {
        for (int64_t c = 0; c < C; ++c) row[c] = -inf;
        special[r] = 1;
      }
      break;
    case 4:
      for (int64_t c = 0; c < C; ++c) row[c] = (c % 16 < 7 && c != t[r]) ? -inf : row[c] - 1000.0f;
      break;
    case 5:
    case 6:
      for (int64_t c = 0; c < C; ++c) row[c] += (float)(c % 1500) * ((r % 8 == 5) ? 0.25f : -0.25f);
      break;
    case 7:
      for (int64_t c = 3; c < C; c += 97)
        if (c != t[r]) row[c] = -inf;
      break;
    default: break;
    }
  }
  for (int64_t i = 0; i < N * C; ++i) xd[i] = x[i];
  const int64_t shape[2] = {N, C};
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  opt.reduction = CLSM_REDUCTION_NONE;
  CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &opt, NULL,
                                         loss, grad ? gr : NULL, grad ? g : NULL, NULL, NULL));
  ref_ce_opts ro = {2, -100, 0.0, 0.0, 0.0, NULL};
  ref_cross_entropy(xd, N, C, 1, t, NULL, &ro, rl, NULL, NULL, NULL, NULL, grad ? gd : NULL,
                    grad ? rg : NULL);
  for (int64_t r = 0; r < N; ++r) {
    if (special[r]) {
      ck_assert_msg(isnan(loss[r]), "C %lld row %lld: loss %g, not NaN", (long long)C, (long long)r,
                    (double)loss[r]);
      continue;
    }
    ck_assert_msg(fabs(loss[r] - rl[r]) <= 1e-5 * fmax(1.0, fabs(rl[r])),
                  "C %lld row %lld: loss %.9g vs %.9g", (long long)C, (long long)r, (double)loss[r],
                  rl[r]);
    for (int64_t c = 0; grad && c < C; ++c) {
      const int64_t i = r * C + c;
      ck_assert_msg(fabs(gr[i] - rg[i]) <= GRAD_ATOL * fmax(1.0, fabs(rg[i])),
                    "C %lld row %lld grad %lld: %.9g vs %.9g", (long long)C, (long long)r,
                    (long long)c, (double)gr[i], rg[i]);
    }
  }
  free(special);
  free(x);
  free(gr);
  free(xd);
  free(rg);
  free(loss);
  free(g);
  free(rl);
  free(gd);
  free(t);
  clsm_context_destroy(ctx);
}
END_TEST

/* Rows held in registers (the GPU family's ce_reg; on the CPU family the
 * same calls check its kernels): every variant boundary and a partial last
 * vector, rows from element 0 (16-byte loads) and 1 (scalar), the gradient
 * beside x and over it, each row a special (NaN, +inf, all -inf, one
 * finite among -inf, -inf half, +-3e38 (smaller with smoothing), an
 * ignored target), with weights,
 * label smoothing (weighted too) and z-loss, against the double reference. */
static int ce_close(double got, double ref, double tol) {
  if (fabs(ref) > FLT_MAX) ref = copysign(INFINITY, ref); /* the float32 output's value */
  if (isnan(ref)) return isnan(got);
  if (isinf(ref)) return got == ref;
  return fabs(got - ref) <= tol;
}

START_TEST(test_ce_reg_rows) {
  static const int64_t lens[] = {1, 3, 9, 128, 129, 2047, 4099, 8192, 8193};
  const int64_t C = lens[_i / 2], off = _i % 2, R = 9, n = R * C;
  clsm_context *ctx = test_context();
  float *x = malloc(sizeof(float) * (size_t)(n + off)), *gr = malloc(sizeof(float) * (size_t)n);
  float *w = malloc(sizeof(float) * (size_t)C), loss[9], lse[9], g[9];
  double *xd = malloc(sizeof(double) * (size_t)n), *rg = malloc(sizeof(double) * (size_t)n);
  double *wd = malloc(sizeof(double) * (size_t)C), rl[9], rlse[9], mag[9], gd[9];
  int64_t t[9];
  ck_assert(x && gr && w && xd && rg && wd);
  rng rw = {77};
  for (int64_t c = 0; c < C; ++c) wd[c] = w[c] = (float)(rng_unit(&rw) * 2.5 - 0.5);
  for (int64_t r = 0; r < R; ++r) {
    t[r] = r == 3 || r == 4 ? C - 1 : r == 7 ? 0 : (r * 131 + 7) % C;
    gd[r] = g[r] = 0.5f + 0.25f * (float)(r % 3);
  }
  for (int set = 0; set < 4; ++set) {
    const int weighted = set & 1;
    const double eps = set >= 2 ? 0.1 : 0.0, z = set == 3 ? 1e-3 : 0.0;
    const int64_t ignore = set == 3 ? 0 : -100; /* set 3: row 7 ignored */
    for (int in_place = 0; in_place < 2; ++in_place) {
      float *r0 = x + off;
      fill_random(x, n + off, 5000 + (uint64_t)_i);
      /* Label smoothing sums w x over the row in float (docs/design.md):
       * its huge rows keep that sum in range. */
      fill_special_rows(r0, C, eps > 0 ? 3e38f / (float)(2 * C) : 3e38f);
      for (int64_t i = 0; i < n; ++i) xd[i] = r0[i];
      const int64_t shape[2] = {R, C}, wshape[1] = {C};
      cl_mem xb = test_buffer(ctx, sizeof(float) * (size_t)(n + off), x);
      cl_mem gb = in_place ? xb : test_buffer(ctx, sizeof(float) * (size_t)(n + off), NULL);
      cl_mem tb = test_buffer(ctx, sizeof t, t), wb = test_buffer(ctx, sizeof(float) * (size_t)C, w);
      cl_mem gsb = test_buffer(ctx, sizeof g, g), lb = test_buffer(ctx, sizeof loss, NULL);
      cl_mem eb = test_buffer(ctx, sizeof lse, NULL);
      clsm_tensor xt = clsm_tensor_contiguous(xb, (uint64_t)off, CLSM_FLOAT32, 2, shape);
      clsm_tensor gt = clsm_tensor_contiguous(gb, (uint64_t)off, CLSM_FLOAT32, 2, shape);
      clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 1, shape);
      clsm_tensor wt = clsm_tensor_contiguous(wb, 0, CLSM_FLOAT32, 1, wshape);
      clsm_tensor gst = clsm_tensor_contiguous(gsb, 0, CLSM_FLOAT32, 1, shape);
      clsm_tensor lt = clsm_tensor_contiguous(lb, 0, CLSM_FLOAT32, 1, shape);
      clsm_tensor et = clsm_tensor_contiguous(eb, 0, CLSM_FLOAT32, 1, shape);
      clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
      opt.reduction = CLSM_REDUCTION_NONE;
      opt.ignore_index = ignore;
      opt.label_smoothing = eps;
      opt.z_loss = z;
      opt.weight = weighted ? &wt : NULL;
      opt.grad = &gt;
      opt.grad_scale = &gst;
      opt.lse = &et;
      CK_STATUS(ctx, clsm_cross_entropy(ctx, &xt, &tt, &lt, &opt, 0, NULL, NULL));
      CK_STATUS(ctx, clsm_finish(ctx));
      test_read(ctx, gb, sizeof(float) * (size_t)off, sizeof(float) * (size_t)n, gr);
      test_read(ctx, lb, 0, sizeof loss, loss);
      test_read(ctx, eb, 0, sizeof lse, lse);
      ref_ce_opts ro = {2, ignore, eps, z, 0.0, weighted ? wd : NULL};
      ref_cross_entropy(xd, R, C, 1, t, NULL, &ro, rl, NULL, NULL, rlse, mag, gd, rg);
      for (int64_t r = 0; r < R; ++r) {
        const char *what = "C %lld offset %lld set %d%s row %lld: %s %.9g, reference %.12g";
        ck_assert_msg(ce_close(loss[r], rl[r], LOSS_RTOL * fabs(rl[r]) + LOSS_MAG * mag[r]), what,
                      (long long)C, (long long)off, set, in_place ? " in place" : "", (long long)r,
                      "loss", (double)loss[r], rl[r]);
        ck_assert_msg(ce_close(lse[r], rlse[r], 4e-7 * fmax(1.0, fabs(rlse[r]))), what, (long long)C,
                      (long long)off, set, in_place ? " in place" : "", (long long)r, "lse",
                      (double)lse[r], rlse[r]);
        for (int64_t c = 0; c < C; ++c)
          ck_assert_msg(ce_close(gr[r * C + c], rg[r * C + c], GRAD_ATOL * fmax(1.0, fabs(rg[r * C + c]))),
                        "C %lld offset %lld set %d%s row %lld grad %lld: %.9g, reference %.12g",
                        (long long)C, (long long)off, set, in_place ? " in place" : "", (long long)r,
                        (long long)c, (double)gr[r * C + c], rg[r * C + c]);
      }
      if (gb != xb) clReleaseMemObject(gb);
      clReleaseMemObject(xb), clReleaseMemObject(tb), clReleaseMemObject(wb);
      clReleaseMemObject(gsb), clReleaseMemObject(lb), clReleaseMemObject(eb);
    }
  }
  free(x), free(gr), free(w), free(xd), free(rg), free(wd);
  clsm_context_destroy(ctx);
}
END_TEST

/* An out-of-range target: the call fails with its own status, names the
 * position, and neither the outputs nor in-place logits change; the context
 * works again afterwards. Asynchronously, clsm_finish reports it. */
START_TEST(test_ce_out_of_range) {
  clsm_context *ctx = test_context();
  enum { N = 5, C = 7 };
  float x[N * C], grad[N * C], loss = 123.0f, xs[N * C];
  int64_t t[N] = {1, 2, 7, 3, -100}; /* 7 is out of range (C = 7) */
  fill_random(x, N * C, 3);
  memcpy(xs, x, sizeof x);
  for (int i = 0; i < N * C; ++i) grad[i] = 5.0f;
  const int64_t shape[2] = {N, C};
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  ck_assert_int_eq(clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &opt, NULL,
                                           &loss, grad, NULL, NULL, NULL),
                   CLSM_ERR_TARGET_OUT_OF_RANGE);
  char detail[256];
  clsm_context_error(ctx, detail, sizeof detail);
  ck_assert_msg(strstr(detail, "position 2") && strstr(detail, "is 7"), "detail: %s", detail);
  ck_assert_float_eq(loss, 123.0f);
  for (int i = 0; i < N * C; ++i) ck_assert_float_eq(grad[i], 5.0f);

  /* Device API, gradient in place over the logits: logits stay intact. */
  cl_mem xb = test_buffer(ctx, sizeof x, x), tb = test_buffer(ctx, sizeof t, t);
  cl_mem lb = test_buffer(ctx, 4, &loss);
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 1, shape);
  clsm_tensor lt = clsm_tensor_contiguous(lb, 0, CLSM_FLOAT32, 0, NULL);
  opt.grad = &xt;
  CK_STATUS(ctx, clsm_cross_entropy(ctx, &xt, &tt, &lt, &opt, 0, NULL, NULL));
  ck_assert_int_eq(clsm_finish(ctx), CLSM_ERR_TARGET_OUT_OF_RANGE);
  float back[N * C], lback;
  test_read(ctx, xb, 0, sizeof back, back);
  test_read(ctx, lb, 0, 4, &lback);
  ck_assert(memcmp(back, xs, sizeof back) == 0);
  ck_assert_float_eq(lback, 123.0f);
  /* uint8 255 and int32 -1 (not ignore_index) are out of range too. */
  int32_t t32[N] = {0, 1, 2, -1, 3};
  ck_assert_int_eq(clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT32, t32, &defaults, NULL,
                                           &loss, NULL, NULL, NULL, NULL),
                   CLSM_ERR_TARGET_OUT_OF_RANGE);
  /* Fixed targets: the context works, the flag was cleared. */
  t[2] = 6;
  CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &defaults,
                                         NULL, &loss, NULL, NULL, NULL, NULL));
  ck_assert(isfinite(loss));
  CK_STATUS(ctx, clsm_finish(ctx));
  clReleaseMemObject(xb);
  clReleaseMemObject(tb);
  clReleaseMemObject(lb);
  clsm_context_destroy(ctx);
}
END_TEST

/* Forward calls with only a loss and a total weight: an out-of-range target
 * fails the call, names its position and value, and leaves the loss
 * (reduced or per position) and the total weight untouched; on contiguous
 * rows and with the class axis not last (in a full 16-position vector of the
 * block kernel and in its scalar tail). */
START_TEST(test_ce_out_of_range_forward) {
  clsm_context *ctx = test_context();
  const int inner_layout = _i / 2, none = _i % 2;
  const ce_shape s = inner_layout ? (ce_shape){3, {2, 7, 20}} : (ce_shape){2, {6, 7}};
  const int64_t P = inner_layout ? 40 : 6, C = 7;
  const int64_t bad_at[2] = {inner_layout ? 5 : 3, inner_layout ? 37 : 5};
  float x[2 * 7 * 20], loss[40], tw;
  fill_random(x, P * C, 17);
  for (int b = 0; b < 2; ++b) {
    int64_t t[40];
    for (int64_t p = 0; p < P; ++p) t[p] = (p * 3) % C;
    t[1] = -100;
    t[bad_at[b]] = b ? -3 : C;
    for (int64_t p = 0; p < P; ++p) loss[p] = 123.0f;
    tw = 77.0f;
    clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
    opt.reduction = none ? CLSM_REDUCTION_NONE : CLSM_REDUCTION_MEAN;
    ck_assert_int_eq(clsm_cross_entropy_host(ctx, CLSM_FLOAT32, s.rank, s.shape, x, CLSM_INT64, t,
                                             &opt, NULL, loss, NULL, NULL, NULL, &tw),
                     CLSM_ERR_TARGET_OUT_OF_RANGE);
    char detail[256], want[64];
    clsm_context_error(ctx, detail, sizeof detail);
    snprintf(want, sizeof want, "position %lld is %lld", (long long)bad_at[b],
             (long long)t[bad_at[b]]);
    ck_assert_msg(strstr(detail, want) != NULL, "detail: %s (want %s)", detail, want);
    for (int64_t p = 0; p < (none ? P : 1); ++p) ck_assert_float_eq(loss[p], 123.0f);
    ck_assert_float_eq(tw, 77.0f);
    /* The context works again, and the loss is finite. */
    t[bad_at[b]] = 2;
    CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, s.rank, s.shape, x, CLSM_INT64, t,
                                           &opt, NULL, loss, NULL, NULL, NULL, &tw));
    ck_assert(isfinite(loss[0]) && isfinite(loss[P - 1]) && tw == (float)(P - 1));
  }
  clsm_context_destroy(ctx);
}
END_TEST

/* Class axis not last with blocks of 600 x 512 positions (1.2 MB, past the
 * 1 MiB the block kernel keeps exp(x - m) for): the gradient computes exp
 * again. One shape for all option tests would be slow under sanitizers. */
START_TEST(test_ce_inner_no_keep) {
  clsm_context *ctx = test_context();
  const ce_shape s = {3, {1, 600, 512}};
  const variant v[2] = {{1, 0.1, 1}, {0, 0.0, 0}};
  check_case(ctx, &s, 2, 0, v[0], 4100);
  check_case(ctx, &s, 0, 1, v[1], 4101);
  clsm_context_destroy(ctx);
}
END_TEST

/* Short rows 16 to a work-item (clsm_ce_rows16_cpu, forced on: the plan
 * takes it only for enough rows per compute unit): 37 rows (two full groups
 * and one of 5) of 40 classes (two vectors and a scalar tail) and 48 rows
 * of 300 (a 256-class block), every option variant, target kind and
 * reduction. Probability targets and the softcap take the scalar row per
 * row; ignored rows are mixed with computed ones. */
START_TEST(test_ce_rows16) {
  setenv("CLSM_CE_ROWS16", "1", 1);
  const ce_shape s = _i % 2 ? (ce_shape){2, {48, 300}} : (ce_shape){2, {37, 40}};
  const int tk = (_i / 2) % 4 == 2 && _i % 2 ? 0 : (_i / 2) % 4, reduction = _i / 8;
  clsm_context *ctx = test_context();
  for (int v = 0; v < n_variants(); ++v) check_case(ctx, &s, reduction, tk, variant_at(v), 4200 + (uint64_t)(_i * 64 + v));
  clsm_context_destroy(ctx);
}
END_TEST

/* Few long rows split over work-items (clsm_ce_split_*, forced on: chunks
 * of 16 or more): 3 rows of 1000 classes (6 chunks of 176, the last 120
 * with a scalar tail) and one row of 4099 (16 chunks); every option variant
 * (label smoothing, the softcap and probability targets take the row
 * kernels instead), target kind and reduction. */
START_TEST(test_ce_split) {
  setenv("CLSM_SPLIT", "1", 1);
  const ce_shape s = _i % 2 ? (ce_shape){2, {1, 4099}} : (ce_shape){2, {3, 1000}};
  const int tk = (_i / 2) % 4, reduction = _i / 8;
  clsm_context *ctx = test_context();
  for (int v = 0; v < n_variants(); ++v)
    check_case(ctx, &s, reduction, tk, variant_at(v), 4400 + (uint64_t)(_i * 64 + v));
  clsm_context_destroy(ctx);
}
END_TEST

/* The in-place gradient equals the out-of-place one bit for bit, for the
 * row path (C = 300), the strided one (C on a non-last layout, 5 positions)
 * the block one (48 positions, which keeps exp in the gradient), short
 * rows 16 to a work-item (37 rows) and rows split over work-items (3 rows
 * of 1000, without label smoothing, which the split does not take). */
START_TEST(test_ce_in_place) {
  if (_i == 3) setenv("CLSM_CE_ROWS16", "1", 1);
  if (_i == 4) setenv("CLSM_SPLIT", "1", 1);
  clsm_context *ctx = test_context();
  const ce_shape s = _i == 4 ? (ce_shape){2, {3, 1000}}
                     : _i == 3 ? (ce_shape){2, {37, 300}}
                     : _i == 2 ? (ce_shape){3, {2, 30, 48}}
                     : _i   ? (ce_shape){3, {3, 7, 5}}
                            : (ce_shape){2, {6, 300}};
  problem pb;
  problem_make(&pb, &s, 0, 0, 91);
  size_t bytes = (size_t)pb.n * 4;
  cl_mem xb = test_buffer(ctx, bytes, pb.x), x2 = test_buffer(ctx, bytes, pb.x);
  cl_mem gb = test_buffer(ctx, bytes, NULL);
  cl_mem tb = test_buffer(ctx, (size_t)pb.P * 8, pb.tidx);
  cl_mem l1 = test_buffer(ctx, 4, NULL), l2 = test_buffer(ctx, 4, NULL);
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, s.rank, s.shape);
  clsm_tensor xt2 = clsm_tensor_contiguous(x2, 0, CLSM_FLOAT32, s.rank, s.shape);
  clsm_tensor gt = clsm_tensor_contiguous(gb, 0, CLSM_FLOAT32, s.rank, s.shape);
  int64_t tshape[4];
  for (int d = 0, k = 0; d < s.rank; ++d)
    if (d != 1) tshape[k++] = s.shape[d];
  clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, s.rank - 1, tshape);
  clsm_tensor lt1 = clsm_tensor_contiguous(l1, 0, CLSM_FLOAT32, 0, NULL);
  clsm_tensor lt2 = clsm_tensor_contiguous(l2, 0, CLSM_FLOAT32, 0, NULL);
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  opt.label_smoothing = _i == 4 ? 0.0 : 0.1;
  opt.z_loss = 1e-4;
  opt.grad = &gt;
  CK_STATUS(ctx, clsm_cross_entropy(ctx, &xt, &tt, &lt1, &opt, 0, NULL, NULL));
  opt.grad = &xt2;
  CK_STATUS(ctx, clsm_cross_entropy(ctx, &xt2, &tt, &lt2, &opt, 0, NULL, NULL));
  CK_STATUS(ctx, clsm_finish(ctx));
  float *a = malloc(bytes), *b = malloc(bytes), la, lb2;
  test_read(ctx, gb, 0, bytes, a);
  test_read(ctx, x2, 0, bytes, b);
  test_read(ctx, l1, 0, 4, &la);
  test_read(ctx, l2, 0, 4, &lb2);
  ck_assert(memcmp(a, b, bytes) == 0);
  ck_assert(memcmp(&la, &lb2, 4) == 0);
  free(a), free(b);
  problem_free(&pb);
  clReleaseMemObject(xb), clReleaseMemObject(x2), clReleaseMemObject(gb), clReleaseMemObject(tb);
  clReleaseMemObject(l1), clReleaseMemObject(l2);
  clsm_context_destroy(ctx);
}
END_TEST

/* cross_entropy_backward with a per-position upstream gradient (none) and a
 * scalar one (mean) equals the fused gradient and the reference. */
START_TEST(test_ce_backward) {
  clsm_context *ctx = test_context();
  const ce_shape s = {3, {4, 9, 3}};
  int reduction = _i ? CLSM_REDUCTION_NONE : CLSM_REDUCTION_MEAN;
  problem pb;
  problem_make(&pb, &s, 0, 1, 17);
  const int64_t P = pb.P;
  float dl[12];
  double dld[12];
  for (int p = 0; p < 12; ++p) dld[p] = dl[p] = (float)(0.25 * (p + 1));
  cl_mem xb = test_buffer(ctx, (size_t)pb.n * 4, pb.x), tb = test_buffer(ctx, (size_t)P * 8, pb.tidx);
  cl_mem db = test_buffer(ctx, sizeof dl, dl), gb = test_buffer(ctx, (size_t)pb.n * 4, NULL);
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 3, s.shape);
  const int64_t tshape[2] = {4, 3};
  clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 2, tshape);
  clsm_tensor dt = clsm_tensor_contiguous(db, 0, CLSM_FLOAT32, reduction == 2 ? 2 : 0, tshape);
  clsm_tensor gt = clsm_tensor_contiguous(gb, 0, CLSM_FLOAT32, 3, s.shape);
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  opt.reduction = (clsm_reduction)reduction;
  opt.ignore_index = 3;
  opt.z_loss = 1e-3;
  CK_STATUS(ctx, clsm_cross_entropy_backward(ctx, &xt, &tt, &dt, &gt, &opt, 0, NULL, NULL));
  CK_STATUS(ctx, clsm_finish(ctx));
  float grad[4 * 9 * 3];
  test_read(ctx, gb, 0, sizeof grad, grad);
  ref_ce_opts ro = {reduction, 3, 0.0, 1e-3, 0.0, NULL};
  double rg[4 * 9 * 3];
  ref_cross_entropy(pb.xd, 4, 9, 3, pb.tidx, NULL, &ro, NULL, NULL, NULL, NULL, NULL, dld, rg);
  for (int i = 0; i < 4 * 9 * 3; ++i)
    ck_assert_msg(fabs(grad[i] - rg[i]) <= GRAD_ATOL * fmax(1.0, fabs(rg[i])), "grad %d: %g vs %g", i,
                  (double)grad[i], rg[i]);
  problem_free(&pb);
  clReleaseMemObject(xb), clReleaseMemObject(tb), clReleaseMemObject(db), clReleaseMemObject(gb);
  clsm_context_destroy(ctx);
}
END_TEST

/* The fused in-place path allocates nothing of the logits' size: with the
 * library's own buffers capped at 64 KiB (test hook), 16 MiB of logits work. */
START_TEST(test_ce_no_logits_sized_buffer) {
  setenv("CLSM_TEST_MAX_BUFFER", "65536", 1);
  clsm_context *ctx = test_context();
  enum { N = 1024, C = 4096 };
  float *x = malloc(sizeof(float) * N * C);
  int64_t *t = malloc(sizeof(int64_t) * N);
  ck_assert(x && t);
  fill_random(x, (int64_t)N * C, 5);
  for (int n = 0; n < N; ++n) t[n] = (n * 37) % C;
  cl_mem xb = test_buffer(ctx, sizeof(float) * N * C, x), tb = test_buffer(ctx, sizeof(int64_t) * N, t);
  cl_mem lb = test_buffer(ctx, 4, NULL);
  const int64_t shape[2] = {N, C};
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 1, shape);
  clsm_tensor lt = clsm_tensor_contiguous(lb, 0, CLSM_FLOAT32, 0, NULL);
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  opt.grad = &xt;
  CK_STATUS(ctx, clsm_cross_entropy(ctx, &xt, &tt, &lt, &opt, 0, NULL, NULL));
  CK_STATUS(ctx, clsm_finish(ctx));
  /* Spot-check one row of the gradient against the reference. */
  float row[C];
  test_read(ctx, xb, (size_t)7 * C * 4, sizeof row, row);
  double xd[C], rg[C], g = 1.0;
  for (int c = 0; c < C; ++c) xd[c] = x[7 * C + c];
  ref_ce_opts ro = {1, -100, 0.0, 0.0, 0.0, NULL};
  ref_cross_entropy(xd, 1, C, 1, &t[7], NULL, &ro, NULL, NULL, NULL, NULL, NULL, &g, rg);
  for (int c = 0; c < C; ++c) ck_assert(fabs(row[c] - rg[c] / N) <= GRAD_ATOL);
  /* And the hook does bite: a 64 KiB cap with positions that need more. */
  setenv("CLSM_TEST_MAX_BUFFER", "1024", 1);
  clsm_context *small = test_context();
  ck_assert_int_eq(clsm_cross_entropy_host(small, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &defaults,
                                           NULL, x, NULL, NULL, NULL, NULL),
                   CLSM_ERR_OPENCL);
  clsm_context_destroy(small);
  free(x), free(t);
  clReleaseMemObject(xb), clReleaseMemObject(tb), clReleaseMemObject(lb);
  clsm_context_destroy(ctx);
}
END_TEST

/* Option and argument errors: found before anything runs. */
START_TEST(test_ce_errors) {
  clsm_context *ctx = test_context();
  float x[12] = {0}, loss = 7.0f, q[12] = {0};
  int64_t t[3] = {0, 1, 2};
  const int64_t shape[2] = {3, 4};
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT, zero;
  memset(&zero, 0, sizeof zero);
#define CALL(o, tdt, tg) clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, x, tdt, tg, o, NULL, &loss, NULL, NULL, NULL, NULL)
  ck_assert_int_eq(CALL(&zero, CLSM_INT64, t), CLSM_ERR_INVALID_ARGUMENT); /* zeroed options */
  ck_assert_int_eq(CALL(NULL, CLSM_INT64, t), CLSM_ERR_NULL_ARGUMENT);
  opt.label_smoothing = 1.5;
  ck_assert_int_eq(CALL(&opt, CLSM_INT64, t), CLSM_ERR_INVALID_ARGUMENT);
  opt.label_smoothing = NAN;
  ck_assert_int_eq(CALL(&opt, CLSM_INT64, t), CLSM_ERR_INVALID_ARGUMENT);
  opt.label_smoothing = -0.1;
  ck_assert_int_eq(CALL(&opt, CLSM_INT64, t), CLSM_ERR_INVALID_ARGUMENT);
  opt = clsm_ce_options_default();
  opt.z_loss = -1;
  ck_assert_int_eq(CALL(&opt, CLSM_INT64, t), CLSM_ERR_INVALID_ARGUMENT);
  opt = clsm_ce_options_default();
  opt.softcap = INFINITY;
  ck_assert_int_eq(CALL(&opt, CLSM_INT64, t), CLSM_ERR_INVALID_ARGUMENT);
  opt = clsm_ce_options_default();
  opt.reduction = (clsm_reduction)9;
  ck_assert_int_eq(CALL(&opt, CLSM_INT64, t), CLSM_ERR_INVALID_ARGUMENT);
  opt = clsm_ce_options_default();
  opt.ignore_index = 0; /* with probabilities */
  ck_assert_int_eq(CALL(&opt, CLSM_FLOAT32, q), CLSM_ERR_INVALID_ARGUMENT);
  opt = clsm_ce_options_default();
  ck_assert_int_eq(CALL(&opt, CLSM_FLOAT64, q), CLSM_ERR_SHAPE_MISMATCH); /* probs of another dtype */
  ck_assert_float_eq(loss, 7.0f);
#undef CALL
  clsm_context_destroy(ctx);
}
END_TEST

static Suite *ce_suite(void) {
  Suite *s = suite_create("cross_entropy");
  TCase *tc = tcase_create("Options");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_ce_options, 0, NSHAPES * 4 * 3);
  tcase_add_loop_test(tc, test_ce_finite_differences, 0, 6);
  suite_add_tcase(s, tc);
  tc = tcase_create("Corners");
  tcase_add_loop_test(tc, test_ce_reg_rows, 0, 18);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_ce_starting_example);
  tcase_add_test(tc, test_ce_all_ignored);
  tcase_add_test(tc, test_ce_extreme_logits);
  tcase_add_loop_test(tc, test_ce_long_rows_specials, 0, 8);
  tcase_add_test(tc, test_ce_out_of_range);
  tcase_add_loop_test(tc, test_ce_out_of_range_forward, 0, 4);
  tcase_add_test(tc, test_ce_inner_no_keep);
  tcase_add_loop_test(tc, test_ce_rows16, 0, 24);
  tcase_add_loop_test(tc, test_ce_split, 0, 24);
  tcase_add_loop_test(tc, test_ce_in_place, 0, 5);
  tcase_add_loop_test(tc, test_ce_backward, 0, 2);
  tcase_add_test(tc, test_ce_no_logits_sized_buffer);
  tcase_add_test(tc, test_ce_errors);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(ce_suite()); }
