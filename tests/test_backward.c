/* Suite "backward": softmax and log_softmax gradients in float32 against the
 * double formula over shapes and dims, against central finite differences of
 * the forward pass computed in double (which catches the known wrong
 * log_softmax gradient dy - sum(y * dy)), safe mode, in place, strided views.
 * CTest runs it once per kernel family. */
#include "testutil.h"

/* Allowed error: RTOL relative, plus a few float roundings of the terms that
 * cancel (`scale`), plus 2e-38 for subnormal results. */
#define RTOL 4e-6
#define CANCEL 8 * 1.2e-7
#define TINY 2e-38

typedef struct bcase {
  int rank;
  int64_t shape[4];
  int dim;
} bcase;

static const bcase cases[] = {
    {1, {1}, 0},          {1, {7}, 0},           {1, {4099}, -1},      {2, {64, 80}, 1},
    {2, {64, 80}, 0},     {2, {3, 1}, 1},        {2, {5, 1031}, -1},   {2, {2, 5000}, 1},
    {2, {0, 5}, 1},       {3, {2, 3, 4}, 0},     {3, {2, 3, 4}, 1},    {3, {2, 3, 4}, -1},
    {3, {3, 17, 33}, 1},  {3, {4, 5, 130}, 1},   {3, {4, 5, 130}, 0},  {3, {2, 257, 5}, -2},
    {4, {2, 3, 4, 5}, 2}, {4, {2, 3, 4, 5}, -4}, {0, {0}, 0},
    {3, {3, 7, 600}, 1}, /* 512-wide inner blocks and a tail */
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* y = softmax or log_softmax of random x in double (then float), dy random. */
static void make_inputs(const bcase *bc, int log, uint64_t seed, float *y, float *dy, double *yd,
                        double *dyd) {
  int64_t n = shape_numel(bc->rank, bc->shape);
  float *x = malloc(sizeof(float) * (size_t)(n + 1));
  double *ref = malloc(sizeof(double) * (size_t)(n + 1));
  ck_assert(x && ref);
  fill_random(x, n, seed);
  int r = bc->rank ? bc->rank : 1;
  ref_softmax(x, ref, bc->rank, bc->shape, bc->dim < 0 ? bc->dim + r : bc->dim, log, 0);
  fill_random(dy, n, seed + 99);
  for (int64_t i = 0; i < n; ++i) {
    y[i] = (float)ref[i];
    yd[i] = y[i];
    dyd[i] = dy[i];
  }
  free(x);
  free(ref);
}

START_TEST(test_backward_reference) {
  const bcase *bc = &cases[_i / 2];
  int log = _i % 2;
  uint64_t seed = 500 + (uint64_t)_i;
  printf("backward case %d: %s rank %d dim %d seed %llu\n", _i / 2, log ? "log_softmax" : "softmax",
         bc->rank, bc->dim, (unsigned long long)seed);
  clsm_context *ctx = test_context();
  int64_t n = shape_numel(bc->rank, bc->shape);
  size_t nb = (size_t)(n + 1);
  float *y = malloc(nb * 4), *dy = malloc(nb * 4), *dx = malloc(nb * 4);
  double *yd = malloc(nb * 8), *dyd = malloc(nb * 8), *ref = malloc(nb * 8), *sc = malloc(nb * 8);
  ck_assert(y && dy && dx && yd && dyd && ref && sc);
  make_inputs(bc, log, seed, y, dy, yd, dyd);
  CK_STATUS(ctx, (log ? clsm_log_softmax_backward_host : clsm_softmax_backward_host)(
                     ctx, CLSM_FLOAT32, bc->rank, bc->shape, bc->dim, 0, y, dy, dx));
  int r = bc->rank ? bc->rank : 1;
  ref_softmax_backward(yd, dyd, ref, sc, bc->rank, bc->shape, bc->dim < 0 ? bc->dim + r : bc->dim,
                       log);
  for (int64_t i = 0; i < n; ++i)
    ck_assert_msg(fabs(dx[i] - ref[i]) <= RTOL * fabs(ref[i]) + CANCEL * sc[i] + TINY,
                  "element %lld: %.9g vs %.12g (scale %.3g)", (long long)i, (double)dx[i], ref[i],
                  sc[i]);
  free(y), free(dy), free(dx), free(yd), free(dyd), free(ref), free(sc);
  clsm_context_destroy(ctx);
}
END_TEST

/* Forward in double over one row: softmax or log_softmax of x[0..C). */
static void row_forward(const double *x, double *y, int C, int log) {
  double m = -INFINITY, s = 0.0;
  for (int c = 0; c < C; ++c) m = fmax(m, x[c]);
  for (int c = 0; c < C; ++c) s += exp(x[c] - m);
  for (int c = 0; c < C; ++c) y[c] = log ? x[c] - m - log1p(s - 1.0) : exp(x[c] - m) / s;
}

/* dL/dx of L(x) = sum_i g_i f(x)_i by central differences in double, against
 * the device gradient from y = f(x) and dy = g. */
START_TEST(test_backward_finite_differences) {
  int log = _i % 2, C = (_i / 2) ? 37 : 5;
  clsm_context *ctx = test_context();
  enum { R = 3, CMAX = 37 };
  double x[R * CMAX], yd[R * CMAX], xp[CMAX], yp[CMAX], ym[CMAX];
  float y[R * CMAX], g[R * CMAX], dx[R * CMAX];
  rng rr = {777 + (uint64_t)_i};
  for (int i = 0; i < R * C; ++i) {
    x[i] = rng_unit(&rr) * 6.0 - 3.0;
    g[i] = (float)(rng_unit(&rr) * 2.0 - 1.0);
  }
  for (int r = 0; r < R; ++r) row_forward(x + r * C, yd + r * C, C, log);
  for (int i = 0; i < R * C; ++i) y[i] = (float)yd[i];
  const int64_t shape[2] = {R, C};
  CK_STATUS(ctx, (log ? clsm_log_softmax_backward_host : clsm_softmax_backward_host)(
                     ctx, CLSM_FLOAT32, 2, shape, 1, 0, y, g, dx));
  const double h = 1e-6;
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < C; ++k) {
      memcpy(xp, x + r * C, sizeof(double) * (size_t)C);
      xp[k] += h;
      row_forward(xp, yp, C, log);
      xp[k] -= 2 * h;
      row_forward(xp, ym, C, log);
      double fd = 0.0;
      for (int c = 0; c < C; ++c) fd += g[r * C + c] * (yp[c] - ym[c]) / (2 * h);
      ck_assert_msg(fabs(dx[r * C + k] - fd) <= 2e-5 * fmax(1.0, fabs(fd)),
                    "%s row %d k %d: device %.9g, finite differences %.9g",
                    log ? "log_softmax" : "softmax", r, k, (double)dx[r * C + k], fd);
    }
  clsm_context_destroy(ctx);
}
END_TEST

/* CLSM_SAFE: a log_softmax row of y all -inf gets dx = 0; without the flag the
 * formula gives dy. A safe softmax row (y all 0) gets 0 either way. A row
 * with -inf at every odd position (whole lanes of it in the GPU family's
 * short rows) is not all -inf: its dx is the formula's, dy at the -inf. */
START_TEST(test_backward_safe) {
  clsm_context *ctx = test_context();
  enum { R = 3, C = 20 };
  float y[R * C], dy[R * C], dx[R * C];
  fill_random(dy, R * C, 9);
  for (int c = 0; c < C; ++c) {
    y[c] = -INFINITY;
    y[C + c] = (float)(-log(C));
    y[2 * C + c] = c % 2 ? -INFINITY : (float)(-log(C / 2));
  }
  const int64_t shape[2] = {R, C};
  int dim = 1;
  CK_STATUS(ctx, clsm_log_softmax_backward_host(ctx, CLSM_FLOAT32, 2, shape, dim, CLSM_SAFE, y, dy, dx));
  double sum1 = 0.0;
  for (int c = 0; c < C; ++c) sum1 += dy[C + c];
  for (int c = 0; c < C; ++c) {
    ck_assert_float_eq(dx[c], 0.0f);
    double ref = dy[C + c] - exp((double)y[C + c]) * sum1;
    ck_assert(fabs(dx[C + c] - ref) <= 1e-6 * fmax(1.0, fabs(ref)));
  }
  double sum2 = 0.0;
  for (int c = 0; c < C; ++c) sum2 += dy[2 * C + c];
  for (int c = 0; c < C; ++c) {
    double ref = dy[2 * C + c] - (c % 2 ? 0.0 : 2.0 / C) * sum2;
    ck_assert_msg(fabs(dx[2 * C + c] - ref) <= 1e-6 * fmax(1.0, fabs(ref)), "row 2 col %d: %g vs %g",
                  c, (double)dx[2 * C + c], ref);
  }
  CK_STATUS(ctx, clsm_log_softmax_backward_host(ctx, CLSM_FLOAT32, 2, shape, dim, 0, y, dy, dx));
  for (int c = 0; c < C; ++c) ck_assert_float_eq(dx[c], dy[c]);
  for (int c = 0; c < C; ++c) y[c] = 0.0f;
  CK_STATUS(ctx, clsm_softmax_backward_host(ctx, CLSM_FLOAT32, 2, shape, dim, CLSM_SAFE, y, dy, dx));
  for (int c = 0; c < C; ++c) ck_assert_float_eq(dx[c], 0.0f);
  clsm_context_destroy(ctx);
}
END_TEST

/* dx written over dy (in place), and y, dy, dx as transposed / sliced views:
 * results equal the contiguous reference. */
START_TEST(test_backward_layouts) {
  clsm_context *ctx = test_context();
  int log = _i;
  enum { R = 9, C = 21 };
  const int64_t shape[2] = {R, C};
  static const bcase bc = {2, {R, C}, 1};
  float y[R * C], dy[R * C], out[R * C];
  double yd[R * C], dyd[R * C], ref[R * C], sc[R * C];
  make_inputs(&bc, log, 31, y, dy, yd, dyd);
  ref_softmax_backward(yd, dyd, ref, sc, 2, shape, 1, log);
  /* In place over dy. */
  cl_mem yb = test_buffer(ctx, sizeof y, y), gb = test_buffer(ctx, sizeof dy, dy);
  clsm_tensor yt = clsm_tensor_contiguous(yb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor gt = clsm_tensor_contiguous(gb, 0, CLSM_FLOAT32, 2, shape);
  CK_STATUS(ctx, (log ? clsm_log_softmax_backward : clsm_softmax_backward)(ctx, &yt, &gt, &gt, -1,
                                                                         0, 0, NULL, NULL));
  test_read(ctx, gb, 0, sizeof out, out);
  for (int i = 0; i < R * C; ++i)
    ck_assert_msg(fabs(out[i] - ref[i]) <= RTOL * fabs(ref[i]) + CANCEL * sc[i] + TINY, "in place %d", i);
  /* y stored transposed (C x R buffer), dy every other row of a 2R x C
   * buffer, dx transposed: all walked through their strides. */
  float yt_host[C * R], dy2[2 * R * C], dxt[C * R];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      yt_host[c * R + r] = y[r * C + c];
      dy2[(2 * r + 1) * C + c] = dy[r * C + c];
      dy2[2 * r * C + c] = 1e30f;
    }
  cl_mem ytb = test_buffer(ctx, sizeof yt_host, yt_host), g2b = test_buffer(ctx, sizeof dy2, dy2);
  cl_mem dxb = test_buffer(ctx, sizeof dxt, NULL);
  clsm_tensor yv = {ytb, 0, CLSM_FLOAT32, 2, {R, C}, {1, R}};
  clsm_tensor gv = {g2b, C, CLSM_FLOAT32, 2, {R, C}, {2 * C, 1}};
  clsm_tensor dv = {dxb, 0, CLSM_FLOAT32, 2, {R, C}, {1, R}};
  CK_STATUS(ctx, (log ? clsm_log_softmax_backward : clsm_softmax_backward)(ctx, &yv, &gv, &dv, 1,
                                                                         0, 0, NULL, NULL));
  test_read(ctx, dxb, 0, sizeof dxt, dxt);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      int i = r * C + c;
      ck_assert_msg(fabs(dxt[c * R + r] - ref[i]) <= RTOL * fabs(ref[i]) + CANCEL * sc[i] + TINY,
                    "strided %d", i);
    }
  clReleaseMemObject(yb);
  clReleaseMemObject(gb);
  clReleaseMemObject(ytb);
  clReleaseMemObject(g2b);
  clReleaseMemObject(dxb);
  clsm_context_destroy(ctx);
}
END_TEST

/* Views the kernels cannot see as (outer, C, inner): a (2, 3, 5) slice of a
 * padded buffer whose dims 0 and 1 do not collapse, softmax along dim 2 and
 * along dim 1 (the generic kernel), forward and backward. */
START_TEST(test_generic_layout) {
  clsm_context *ctx = test_context();
  enum { A = 2, B = 3, K = 5, SA = 19, SB = 6 }; /* strides 19, 6, 1: padded */
  float buf[A * SA], dense[A * B * K], y[A * B * K], out[A * SA];
  fill_random(buf, A * SA, 44);
  for (int a = 0; a < A; ++a)
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < K; ++k) dense[(a * B + b) * K + k] = buf[a * SA + b * SB + k];
  const int64_t shape[3] = {A, B, K};
  cl_mem xb = test_buffer(ctx, sizeof buf, buf), yb = test_buffer(ctx, sizeof y, NULL);
  clsm_tensor xv = {xb, 0, CLSM_FLOAT32, 3, {A, B, K}, {SA, SB, 1}};
  clsm_tensor yv = clsm_tensor_contiguous(yb, 0, CLSM_FLOAT32, 3, shape);
  for (int dim = 1; dim <= 2; ++dim) {
    double ref[A * B * K];
    CK_STATUS(ctx, clsm_log_softmax(ctx, &xv, &yv, dim, 0, 0, NULL, NULL));
    test_read(ctx, yb, 0, sizeof y, y);
    ref_softmax(dense, ref, 3, shape, dim, 1, 0);
    for (int i = 0; i < A * B * K; ++i) ck_assert_msg(ref_close(y[i], ref[i], 1, RTOL), "dim %d %d", dim, i);
  }
  /* Backward with dx written into the padded layout in place of x. */
  float dy[A * B * K];
  fill_random(dy, A * B * K, 45);
  double yd[A * B * K], dyd[A * B * K], ref[A * B * K], sc[A * B * K];
  for (int i = 0; i < A * B * K; ++i) {
    yd[i] = y[i];
    dyd[i] = dy[i];
  }
  ref_softmax_backward(yd, dyd, ref, sc, 3, shape, 2, 1);
  cl_mem gb = test_buffer(ctx, sizeof dy, dy);
  clsm_tensor gv = clsm_tensor_contiguous(gb, 0, CLSM_FLOAT32, 3, shape);
  CK_STATUS(ctx, clsm_log_softmax_backward(ctx, &yv, &gv, &xv, 2, 0, 0, NULL, NULL));
  test_read(ctx, xb, 0, sizeof out, out);
  for (int a = 0; a < A; ++a)
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < K; ++k) {
        int i = (a * B + b) * K + k;
        ck_assert(fabs(out[a * SA + b * SB + k] - ref[i]) <= RTOL * fabs(ref[i]) + CANCEL * sc[i] + TINY);
      }
  for (int a = 0; a < A; ++a) /* padding untouched */
    for (int j = B * SB - (SB - K); j < SA; ++j) ck_assert(out[a * SA + j] == buf[a * SA + j]);
  clReleaseMemObject(xb);
  clReleaseMemObject(yb);
  clReleaseMemObject(gb);
  clsm_context_destroy(ctx);
}
END_TEST

static Suite *backward_suite(void) {
  Suite *s = suite_create("backward");
  TCase *tc = tcase_create("Reference");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_backward_reference, 0, 2 * NCASES);
  suite_add_tcase(s, tc);
  tc = tcase_create("FiniteDifferences");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_backward_finite_differences, 0, 4);
  suite_add_tcase(s, tc);
  tc = tcase_create("Layout");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_backward_safe);
  tcase_add_loop_test(tc, test_backward_layouts, 0, 2);
  tcase_add_test(tc, test_generic_layout);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(backward_suite()); }
