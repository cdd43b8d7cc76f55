/* Suite "softmax": softmax and log_softmax forward against the double
 * reference, over a table of shapes and dims, the starting examples, special
 * values, layouts (in place, offsets, strided views), events and wait lists.
 * CTest runs it once per kernel family (CLSM_FAMILY=cpu / gpu). */
#include "testutil.h"

#include <float.h>

#define RTOL 4e-6

#include "shapes.h"

/* Every (shape, dim) pair, dims counted both ways: index -> (shape, dim). */
static int n_cases(void) {
  int n = 0;
  for (int s = 0; s < NSHAPES; ++s) n += 2 * (shapes[s].rank ? shapes[s].rank : 1);
  return n;
}
static void case_at(int i, const shape_row **row, int *dim) {
  for (int s = 0; s < NSHAPES; ++s) {
    int r = shapes[s].rank ? shapes[s].rank : 1;
    if (i < 2 * r) {
      *row = &shapes[s];
      *dim = i < r ? i : i - 2 * r; /* 0..r-1, then -r..-1 */
      return;
    }
    i -= 2 * r;
  }
  ck_abort_msg("case index out of range");
}

/* Runs softmax or log_softmax of a random tensor on the device and checks
 * every element against the reference. */
static void check_op(clsm_context *ctx, int log, int rank, const int64_t *shape, int dim,
                     uint64_t seed) {
  int64_t n = shape_numel(rank, shape);
  size_t bytes = (size_t)n * sizeof(float);
  float *x = malloc(bytes + 4), *y = malloc(bytes + 4);
  double *ref = malloc(sizeof(double) * (size_t)(n + 1));
  ck_assert(x && y && ref);
  fill_random(x, n, seed);
  cl_mem xb = test_buffer(ctx, bytes, n ? x : NULL);
  cl_mem yb = test_buffer(ctx, bytes, NULL);
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, rank, shape);
  clsm_tensor yt = clsm_tensor_contiguous(yb, 0, CLSM_FLOAT32, rank, shape);
  CK_STATUS(ctx, (log ? clsm_log_softmax : clsm_softmax)(ctx, &xt, &yt, dim, 0, 0, NULL, NULL));
  CK_STATUS(ctx, clsm_finish(ctx));
  test_read(ctx, yb, 0, bytes, y);
  int r = rank ? rank : 1;
  ref_softmax(x, ref, rank, shape, dim < 0 ? dim + r : dim, log, 0);
  for (int64_t i = 0; i < n; ++i)
    ck_assert_msg(ref_close(y[i], ref[i], log, RTOL),
                  "%s seed %llu dim %d: element %lld is %.9g, reference %.12g (x = %.9g)",
                  log ? "log_softmax" : "softmax", (unsigned long long)seed, dim, (long long)i,
                  (double)y[i], ref[i], (double)x[i]);
  clReleaseMemObject(xb);
  clReleaseMemObject(yb);
  free(x);
  free(y);
  free(ref);
}

/* The plan hook's record of the last call: its first kernel, "" for none. */
static void record_kernel(void *user, const clsm_plan_info *info) {
  snprintf((char *)user, 64, "%s", info->stages ? info->kernel[0] : "");
}

/* Whether the environment forces kernels (ctest's variants): the table's
 * kernels are then not the planner's own choice. */
static int kernels_forced(void) {
  const char *vars[] = {"CLSM_SPLIT", "CLSM_KERNEL"};
  for (int i = 0; i < 2; ++i)
    if (getenv(vars[i]) && *getenv(vars[i])) return 1;
  return 0;
}

START_TEST(test_shapes) {
  const shape_row *row;
  int dim;
  case_at(_i, &row, &dim);
  uint64_t seed = 1000 + (uint64_t)_i;
  printf("shapes[%d]: rank %d dim %d seed %llu\n", _i, row->rank, dim, (unsigned long long)seed);
  clsm_context *ctx = test_context();
  char ran[64] = "?";
  CK_STATUS(ctx, clsm_context_set_plan_hook(ctx, record_kernel, ran));
  const int r = row->rank ? row->rank : 1, d = dim < 0 ? dim + r : dim;
  const char *codes = clsm_context_family(ctx) == CLSM_FAMILY_CPU ? row->cpu : row->gpu;
  for (int log = 0; log < 2; ++log) {
    const char *want = shape_kernel(codes[d], 0, log);
    check_op(ctx, log, row->rank, row->shape, dim, seed);
    if (!kernels_forced())
      ck_assert_msg(!strcmp(ran, want), "shapes[%d] dim %d: the plan ran \"%s\", the table says \"%s\"",
                    _i, dim, ran, want);
  }
  clsm_context_destroy(ctx);
}
END_TEST

/* The tutorial's first example: row softmax of a 64 x 80 matrix, rows sum to 1. */
/* Row lengths at each boundary of the GPU family's register-held variants
 * (8, 16 and 32 values a lane; 256 and 1024 lanes; a partial last vector),
 * from element 0 (16-byte loads) and from element 1 (scalar loads), out of
 * place and in place, safe and not, every row a special: NaN in one lane,
 * +inf, all -inf, -inf except one element, -inf over the first half, huge
 * finite values. The CPU family runs the same rows through its own kernels. */
START_TEST(test_reg_rows) {
  static const int64_t lens[] = {1, 3, 9, 128, 129, 2047, 4099, 8192, 8193, 20000, 32768};
  const int64_t C = lens[_i / 2], off = _i % 2, R = 9;
  const int64_t n = R * C;
  clsm_context *ctx = test_context();
  float *x = malloc(sizeof(float) * (size_t)(n + off)), *y = malloc(sizeof(float) * (size_t)n);
  double *ref = malloc(sizeof(double) * (size_t)n);
  ck_assert(x && y && ref);
  for (int variant = 0; variant < 4; ++variant) {
    const int log = variant & 1, in_place = variant >> 1;
    for (unsigned safe = 0; safe < 2; ++safe) {
      float *r0 = x + off;
      fill_random(x, n + off, 4000 + (uint64_t)_i);
      fill_special_rows(r0, C, 3e38f);
      const int64_t shape[2] = {R, C};
      cl_mem xb = test_buffer(ctx, sizeof(float) * (size_t)(n + off), x);
      cl_mem yb = in_place ? xb : test_buffer(ctx, sizeof(float) * (size_t)(n + off), NULL);
      clsm_tensor xt = clsm_tensor_contiguous(xb, (uint64_t)off, CLSM_FLOAT32, 2, shape);
      clsm_tensor yt = clsm_tensor_contiguous(yb, (uint64_t)off, CLSM_FLOAT32, 2, shape);
      CK_STATUS(ctx, (log ? clsm_log_softmax : clsm_softmax)(ctx, &xt, &yt, 1, safe ? CLSM_SAFE : 0,
                                                             0, NULL, NULL));
      CK_STATUS(ctx, clsm_finish(ctx));
      test_read(ctx, yb, sizeof(float) * (size_t)off, sizeof(float) * (size_t)n, y);
      ref_softmax(r0, ref, 2, shape, 1, log, (int)safe);
      for (int64_t i = 0; i < n; ++i)
        ck_assert_msg(ref_close(y[i], ref[i], log, RTOL),
                      "C %lld offset %lld %s%s%s: row %lld element %lld is %.9g, reference %.12g",
                      (long long)C, (long long)off, log ? "log_softmax" : "softmax",
                      in_place ? " in place" : "", safe ? " safe" : "", (long long)(i / C),
                      (long long)(i % C), (double)y[i], ref[i]);
      if (yb != xb) clReleaseMemObject(yb);
      clReleaseMemObject(xb);
    }
  }
  free(x);
  free(y);
  free(ref);
  clsm_context_destroy(ctx);
}
END_TEST

START_TEST(test_rows_64x80) {
  clsm_context *ctx = test_context();
  enum { N = 64, C = 80 };
  static float x[N * C], y[N * C];
  static double ref[N * C];
  fill_random(x, N * C, 7);
  int64_t shape[2] = {N, C};
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, x, y));
  ref_softmax(x, ref, 2, shape, 1, 0, 0);
  for (int r = 0; r < N; ++r) {
    double s = 0.0;
    for (int c = 0; c < C; ++c) {
      ck_assert_msg(ref_close(y[r * C + c], ref[r * C + c], 0, RTOL), "row %d col %d", r, c);
      s += y[r * C + c];
    }
    ck_assert_msg(fabs(s - 1.0) < 1e-5, "row %d sums to %.9g", r, s);
  }
  clsm_context_destroy(ctx);
}
END_TEST

/* 2x3x4 along each dim equals: move the dim last, row softmax, move it back. */
START_TEST(test_dims_2x3x4) {
  clsm_context *ctx = test_context();
  static const int dims[] = {0, 1, 2, -1};
  int dim = dims[_i], d = dim < 0 ? dim + 3 : dim;
  float x[24], y[24], moved[24], ymoved[24];
  fill_random(x, 24, 11);
  const int64_t shape[3] = {2, 3, 4};
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 3, shape, dim, 0, x, y));
  /* Permutation that moves dim d last; mshape is the moved shape. */
  int perm[3], k = 0;
  for (int i = 0; i < 3; ++i)
    if (i != d) perm[k++] = i;
  perm[2] = d;
  int64_t mshape[3] = {shape[perm[0]], shape[perm[1]], shape[perm[2]]};
  const int64_t strides[3] = {12, 4, 1};
  int64_t idx[3];
  for (idx[0] = 0; idx[0] < mshape[0]; ++idx[0])
    for (idx[1] = 0; idx[1] < mshape[1]; ++idx[1])
      for (idx[2] = 0; idx[2] < mshape[2]; ++idx[2]) {
        int64_t src = 0;
        for (int j = 0; j < 3; ++j) src += idx[j] * strides[perm[j]];
        moved[(idx[0] * mshape[1] + idx[1]) * mshape[2] + idx[2]] = x[src];
      }
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 3, mshape, -1, 0, moved, ymoved));
  double ref[24];
  ref_softmax(x, ref, 3, shape, d, 0, 0);
  for (idx[0] = 0; idx[0] < mshape[0]; ++idx[0])
    for (idx[1] = 0; idx[1] < mshape[1]; ++idx[1])
      for (idx[2] = 0; idx[2] < mshape[2]; ++idx[2]) {
        int64_t src = 0;
        for (int j = 0; j < 3; ++j) src += idx[j] * strides[perm[j]];
        float back = ymoved[(idx[0] * mshape[1] + idx[1]) * mshape[2] + idx[2]];
        ck_assert_msg(ref_close(back, ref[src], 0, RTOL), "moved-last result at %lld",
                      (long long)src);
        ck_assert_msg(ref_close(y[src], ref[src], 0, RTOL), "dim %d result at %lld", dim,
                      (long long)src);
        ck_assert_msg(fabsf(back - y[src]) <= 1e-6f * y[src] + 1e-37f,
                      "dim %d and moved-last differ at %lld: %.9g vs %.9g", dim, (long long)src,
                      (double)y[src], (double)back);
      }
  clsm_context_destroy(ctx);
}
END_TEST

/* Rows a naive exp(x) / sum exp(x) overflows give exact, finite results. */
START_TEST(test_overflow_rows) {
  clsm_context *ctx = test_context();
  float x[2][3] = {{1000.0f, 0.0f, -1000.0f}, {90.0f, 89.0f, 88.0f}};
  int64_t shape[2] = {2, 3};
  float y[6], ly[6];
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, -1, 0, x, y));
  CK_STATUS(ctx, clsm_log_softmax_host(ctx, CLSM_FLOAT32, 2, shape, -1, 0, x, ly));
  /* Row 0: exactly [1, 0, 0] and [0, -1000, -2000]. */
  ck_assert_float_eq(y[0], 1.0f);
  ck_assert_float_eq(y[1], 0.0f);
  ck_assert_float_eq(y[2], 0.0f);
  ck_assert_float_eq(ly[0], 0.0f);
  ck_assert_float_eq(ly[1], -1000.0f);
  ck_assert_float_eq(ly[2], -2000.0f);
  /* Row 1: softmax of [2, 1, 0] shifted, from closed forms in double. */
  double s = 1.0 + exp(-1.0) + exp(-2.0);
  for (int i = 0; i < 3; ++i) {
    ck_assert(ref_close(y[3 + i], exp(-(double)i) / s, 0, RTOL));
    ck_assert(ref_close(ly[3 + i], -(double)i - log(s), 1, RTOL));
  }
  clsm_context_destroy(ctx);
}
END_TEST

/* Probabilities near FLT_MIN: x - m at 0 down to -1000 along the axis, the
 * same in every position of the other dims (plus a per-position shift). Outputs of at least FLT_MIN are within RTOL of the reference,
 * relative (e^-87 / s = 1.5e-38 among them); smaller ones may be 0 instead
 * of subnormal (the CPU kernels' exp flushes below FLT_MIN) but no further
 * than FLT_MIN from the reference. Rows (dim 1 of 3 x 48), the tile (dim 0
 * of 48 x 1100, rows 4400 bytes apart) and the inner passes (dim 0 of
 * 48 x 512). */
START_TEST(test_tiny_probabilities) {
  static const double v[] = {0,    1,    5,    20,   60,   80,    85,  86.5, 87.0,
                             87.2, 87.3, 87.4, 87.5, 90,   100,   103, 103.5, 104,
                             110,  200,  1000};
  enum { NV = sizeof v / sizeof v[0], C = 48 };
  const int layout = _i;
  const int64_t other = layout == 0 ? 3 : layout == 1 ? 1100 : 512;
  const int64_t shape[2] = {layout == 0 ? other : C, layout == 0 ? C : other};
  const int dim = layout == 0 ? 1 : 0;
  const int64_t n = C * other;
  float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
  ck_assert(x && y);
  for (int64_t i = 0; i < other; ++i)
    for (int c = 0; c < C; ++c) {
      const float shift = 0.25f * (float)(i % 5);
      x[layout == 0 ? i * C + c : c * other + i] = shift - (float)v[c < NV ? c : NV - 1];
    }
  clsm_context *ctx = test_context();
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, dim, 0, x, y));
  for (int64_t i = 0; i < other; ++i) {
    const int64_t step = layout == 0 ? 1 : other, k0 = layout == 0 ? i * C : i;
    double m = -INFINITY, s = 0;
    for (int c = 0; c < C; ++c) m = fmax(m, (double)x[k0 + c * step]);
    for (int c = 0; c < C; ++c) s += exp((double)x[k0 + c * step] - m);
    for (int c = 0; c < C; ++c) {
      const int64_t k = k0 + c * step;
      const double ref = exp((double)x[k] - m) / s;
      const double err = fabs((double)y[k] - ref);
      ck_assert_msg(ref >= FLT_MIN ? err <= RTOL * ref : err <= FLT_MIN,
                    "layout %d position %lld class %d: %a, reference %a", layout, (long long)i, c,
                    (double)y[k], ref);
    }
  }
  free(x), free(y);
  clsm_context_destroy(ctx);
}
END_TEST

/* PyTorch's special values, each row checked element by element against the
 * table in SEMANTICS.md (written out here, not computed). */
START_TEST(test_special_values) {
  clsm_context *ctx = test_context();
  const float inf = INFINITY, nan = NAN;
  enum { C = 21 }; /* past one float16 vector, so the vector and tail paths both see them */
  float x[5][C];
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < C; ++c) x[r][c] = (float)(c % 5) - 2.0f;
  for (int c = 0; c < C; c += 3) x[0][c] = -inf; /* some -inf */
  for (int c = 0; c < C; ++c) x[1][c] = -inf;    /* all -inf */
  x[2][17] = inf;                                /* a +inf */
  x[3][4] = nan;                                 /* a NaN */
  for (int c = 0; c < C; ++c) x[4][c] = (c % 2) ? -1e38f : 1e38f; /* huge */
  int64_t shape[2] = {5, C};
  float y[5][C], ly[5][C];
  double ref[5 * C], lref[5 * C];
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, x, y));
  CK_STATUS(ctx, clsm_log_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, x, ly));
  ref_softmax(&x[0][0], ref, 2, shape, 1, 0, 0);
  ref_softmax(&x[0][0], lref, 2, shape, 1, 1, 0);
  for (int c = 0; c < C; ++c) {
    if (c % 3 == 0) {
      ck_assert_float_eq(y[0][c], 0.0f);
      ck_assert_float_eq(ly[0][c], -inf);
    } else {
      ck_assert(ref_close(y[0][c], ref[c], 0, RTOL) && y[0][c] > 0.0f);
      ck_assert(ref_close(ly[0][c], lref[c], 1, RTOL) && isfinite(ly[0][c]));
    }
    for (int r = 1; r <= 3; ++r) {
      ck_assert_msg(isnan(y[r][c]), "softmax row %d col %d is %g, not NaN", r, c, (double)y[r][c]);
      ck_assert_msg(isnan(ly[r][c]), "log_softmax row %d col %d is %g", r, c, (double)ly[r][c]);
    }
    /* 1e38 entries share the mass: 1/11 each (11 of 21), -1e38 entries 0;
     * log_softmax is -log(11) and -2e38 (finite). */
    if (c % 2) {
      ck_assert_float_eq(y[4][c], 0.0f);
      ck_assert(ref_close(ly[4][c], -2e38 - log(11.0), 1, RTOL) && isfinite(ly[4][c]));
    } else {
      ck_assert(ref_close(y[4][c], 1.0 / 11.0, 0, RTOL));
      ck_assert(ref_close(ly[4][c], -log(11.0), 1, RTOL));
    }
  }
  clsm_context_destroy(ctx);
}
END_TEST

/* Rows with special values scattered among them. Short rows: the
 * GPU-family kernel runs several rows in one work-group (a few lanes each),
 * so a NaN, +inf or all -inf row must not leak into its neighbours, and row
 * counts that do not fill the last group must still be exact. Long rows
 * (600, 1031, 4099): the CPU-family log-softmax reads them once, folding
 * chunks into 16 lanes' running (max, sum), so rows whose max grows in
 * every chunk, or falls, and rows with whole lanes of -inf beside values
 * near -1000 (where a lane's sum taken against 0 would overflow when moved
 * to the row max) are added. Row maxima move by hundreds between
 * neighbours. Both ops, with and without CLSM_SAFE. */
START_TEST(test_rows_specials) {
  static const int64_t Cs[] = {1, 2, 5, 9, 33, 65, 80, 600, 1031, 4099};
  const int64_t C = Cs[_i / 2], R = C > 100 ? 191 : 1001;
  const int safe = _i % 2;
  const float inf = INFINITY;
  clsm_context *ctx = test_context();
  float *x = malloc(sizeof(float) * (size_t)(R * C)), *y = malloc(sizeof(float) * (size_t)(R * C));
  double *ref = malloc(sizeof(double) * (size_t)(R * C));
  ck_assert(x && y && ref);
  fill_random(x, R * C, 40 + (uint64_t)_i);
  for (int64_t r = 0; r < R; ++r) {
    float *row = x + r * C;
    for (int64_t c = 0; c < C; ++c) row[c] += (float)((r * 37) % 11) * 90.0f - 450.0f;
    if (r % 13 == 0)
      for (int64_t c = 0; c < C; ++c) row[c] = -inf;
    else if (r % 7 == 0)
      row[(r / 7) % C] = NAN;
    else if (r % 11 == 0)
      row[(r / 11) % C] = inf;
    else if (r % 5 == 0)
      row[(r / 5) % C] = -inf;
    else if (r % 17 == 0)
      for (int64_t c = 0; c < C; ++c) row[c] = (c % 16 < 7) ? -inf : row[c] - 1000.0f;
    else if (r % 19 == 0)
      for (int64_t c = 0; c < C; ++c) row[c] += (float)(c % 1500) * ((r % 2) ? 0.25f : -0.25f);
  }
  int64_t shape[2] = {R, C};
  for (int log = 0; log < 2; ++log) {
    CK_STATUS(ctx, (log ? clsm_log_softmax_host : clsm_softmax_host)(
                       ctx, CLSM_FLOAT32, 2, shape, 1, safe ? CLSM_SAFE : 0, x, y));
    ref_softmax(x, ref, 2, shape, 1, log, safe);
    for (int64_t i = 0; i < R * C; ++i)
      ck_assert_msg(ref_close(y[i], ref[i], log, RTOL),
                    "%s C %lld safe %d: row %lld col %lld is %.9g, reference %.12g",
                    log ? "log_softmax" : "softmax", (long long)C, safe, (long long)(i / C),
                    (long long)(i % C), (double)y[i], ref[i]);
  }
  free(x);
  free(y);
  free(ref);
  clsm_context_destroy(ctx);
}
END_TEST

/* Along dim 0 of (C, 1040) rows lie 4160 bytes apart, so blocks of 512
 * positions go through a tile in local memory, 4 rows at a time (C 3, 8,
 * 67: a short chunk, whole chunks, both), the last 16 positions through the
 * scalar walk. Columns carry specials: all -inf, NaN, +inf, -inf, whole
 * 16-lane groups of -inf beside values near -1000, maxima that rise in
 * every chunk, a max in the first chunk far above the rest, a jump of 100
 * half-way (past softmax's lazy reference), and in place
 * (y = x) and y at an odd offset (stores that are not vector-aligned). */
START_TEST(test_tile_specials) {
  static const int64_t Cs[] = {3, 8, 67};
  const int64_t C = Cs[_i / 4], W = 1040, n = C * W;
  const int safe = _i % 2, layout = (_i / 2) % 2; /* 0: y apart at offset 0, 1: odd offset */
  const float inf = INFINITY;
  clsm_context *ctx = test_context();
  float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)(n + 3));
  double *ref = malloc(sizeof(double) * (size_t)n);
  ck_assert(x && y && ref);
  fill_random(x, n, 70 + (uint64_t)_i);
  for (int64_t i = 0; i < W; ++i)
    for (int64_t c = 0; c < C; ++c) {
      float *v = x + c * W + i;
      *v += (float)((i * 37) % 11) * 90.0f - 450.0f;
      if (i % 13 == 0)
        *v = -inf;
      else if (i % 7 == 0 && c == (i / 7) % C)
        *v = NAN;
      else if (i % 11 == 0 && c == (i / 11) % C)
        *v = inf;
      else if (i % 5 == 0 && c == (i / 5) % C)
        *v = -inf;
      else if ((i / 16) % 9 == 4)
        *v = (c % 3 == 0) ? -inf : *v - 1000.0f;
      else if (i % 17 == 0)
        *v += (float)c * 3.0f;
      else if (i % 19 == 0)
        *v = c == 0 ? 80.0f : *v - 200.0f;
      else if (i % 23 == 0)
        *v += c >= C / 2 ? 100.0f : 0.0f;
    }
  const int64_t shape[2] = {C, W};
  for (int log = 0; log < 2; ++log) {
    const uint64_t yoff = layout ? 3 : 0;
    cl_mem xb = test_buffer(ctx, sizeof(float) * (size_t)n, x);
    cl_mem yb = test_buffer(ctx, sizeof(float) * (size_t)(n + 3), NULL);
    clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
    clsm_tensor yt = clsm_tensor_contiguous(yb, yoff, CLSM_FLOAT32, 2, shape);
    CK_STATUS(ctx, (log ? clsm_log_softmax : clsm_softmax)(ctx, &xt, &yt, 0,
                                                           safe ? CLSM_SAFE : 0, 0, NULL, NULL));
    test_read(ctx, yb, 0, sizeof(float) * (size_t)(n + 3), y);
    ref_softmax(x, ref, 2, shape, 0, log, safe);
    for (int64_t i = 0; i < n; ++i)
      ck_assert_msg(ref_close(y[yoff + i], ref[i], log, RTOL),
                    "%s C %lld safe %d offset %llu: row %lld col %lld is %.9g, reference %.12g",
                    log ? "log_softmax" : "softmax", (long long)C, safe, (unsigned long long)yoff,
                    (long long)(i / W), (long long)(i % W), (double)y[yoff + i], ref[i]);
    /* In place. */
    CK_STATUS(ctx, (log ? clsm_log_softmax : clsm_softmax)(ctx, &xt, &xt, 0,
                                                           safe ? CLSM_SAFE : 0, 0, NULL, NULL));
    test_read(ctx, xb, 0, sizeof(float) * (size_t)n, y);
    for (int64_t i = 0; i < n; ++i)
      ck_assert_msg(ref_close(y[i], ref[i], log, RTOL), "in place %s C %lld: element %lld",
                    log ? "log_softmax" : "softmax", (long long)C, (long long)i);
    clReleaseMemObject(xb);
    clReleaseMemObject(yb);
  }
  free(x);
  free(y);
  free(ref);
  clsm_context_destroy(ctx);
}
END_TEST

/* CLSM_SAFE: an all -inf row gives 0 / -inf; other rows as without it. Run
 * along the last dim and along dim 0 (the inner-block and strided kernels). */
START_TEST(test_safe_mode) {
  clsm_context *ctx = test_context();
  const float inf = INFINITY;
  enum { R = 3, C = 40 };
  float x[R * C], y[R * C], ly[R * C];
  fill_random(x, R * C, 5);
  int dim = _i;
  /* Along dim 1 row 1 is all -inf; along dim 0 column 7 is all -inf, and
   * column 8 holds a NaN among -inf (stays NaN). */
  if (dim == 1)
    for (int c = 0; c < C; ++c) x[1 * C + c] = -inf;
  else
    for (int r = 0; r < R; ++r) {
      x[r * C + 7] = -inf;
      x[r * C + 8] = r == 1 ? NAN : -inf;
    }
  int64_t shape[2] = {R, C};
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, dim, CLSM_SAFE, x, y));
  CK_STATUS(ctx, clsm_log_softmax_host(ctx, CLSM_FLOAT32, 2, shape, dim, CLSM_SAFE, x, ly));
  double ref[R * C], lref[R * C];
  ref_softmax(x, ref, 2, shape, dim, 0, 1);
  ref_softmax(x, lref, 2, shape, dim, 1, 1);
  for (int i = 0; i < R * C; ++i) {
    ck_assert_msg(ref_close(y[i], ref[i], 0, RTOL), "softmax %d: %g vs %g", i, (double)y[i], ref[i]);
    ck_assert_msg(ref_close(ly[i], lref[i], 1, RTOL), "log %d: %g vs %g", i, (double)ly[i], lref[i]);
  }
  if (dim == 1) {
    ck_assert_float_eq(y[C + 5], 0.0f);
    ck_assert_float_eq(ly[C + 5], -inf);
  } else {
    ck_assert_float_eq(y[C + 7], 0.0f);
    ck_assert_float_eq(ly[C + 7], -inf);
    ck_assert(isnan(y[C + 8]) && isnan(ly[C + 8]));
  }
  clsm_context_destroy(ctx);
}
END_TEST

/* In place (y is x), and nonzero offsets: x and y in one buffer, apart. */
START_TEST(test_in_place_and_offsets) {
  clsm_context *ctx = test_context();
  int log = _i;
  enum { N = 7, C = 300 };
  const int64_t shape[2] = {N, C};
  static float x[N * C], y[N * C], all[3 * N * C];
  static double ref[N * C];
  fill_random(x, N * C, 21);
  ref_softmax(x, ref, 2, shape, 1, log, 0);
  /* In place. */
  cl_mem b = test_buffer(ctx, sizeof x, x);
  clsm_tensor t = clsm_tensor_contiguous(b, 0, CLSM_FLOAT32, 2, shape);
  CK_STATUS(ctx, (log ? clsm_log_softmax : clsm_softmax)(ctx, &t, &t, -1, 0, 0, NULL, NULL));
  test_read(ctx, b, 0, sizeof y, y);
  for (int i = 0; i < N * C; ++i) ck_assert_msg(ref_close(y[i], ref[i], log, RTOL), "in place %d", i);
  clReleaseMemObject(b);
  /* Offsets: x at element 5, y at element 5 + N*C + 3, sentinels around. */
  for (int i = 0; i < 3 * N * C; ++i) all[i] = 12345.0f;
  memcpy(all + 5, x, sizeof x);
  b = test_buffer(ctx, sizeof all, all);
  uint64_t yoff = 5 + N * C + 3;
  clsm_tensor xt = clsm_tensor_contiguous(b, 5, CLSM_FLOAT32, 2, shape);
  clsm_tensor yt = clsm_tensor_contiguous(b, yoff, CLSM_FLOAT32, 2, shape);
  CK_STATUS(ctx, (log ? clsm_log_softmax : clsm_softmax)(ctx, &xt, &yt, 1, 0, 0, NULL, NULL));
  test_read(ctx, b, 0, sizeof all, all);
  for (int i = 0; i < N * C; ++i) {
    ck_assert_msg(all[5 + i] == x[i], "input changed at %d", i);
    ck_assert_msg(ref_close(all[yoff + i], ref[i], log, RTOL), "offset result %d", i);
  }
  for (int i = 0; i < 5; ++i) ck_assert(all[i] == 12345.0f);
  for (int i = 5 + N * C; i < (int)yoff; ++i) ck_assert(all[i] == 12345.0f);
  for (int i = (int)yoff + N * C; i < 3 * N * C; ++i) ck_assert(all[i] == 12345.0f);
  clReleaseMemObject(b);
  clsm_context_destroy(ctx);
}
END_TEST

/* A transposed view (strides (1, R)) and an every-other-row view are walked
 * in place of a copy; results equal the contiguous reference. */
START_TEST(test_strided_views) {
  clsm_context *ctx = test_context();
  enum { R = 37, C = 19 };
  static float m[R * C], y[C * R], g[2 * R * C], yg[R * C];
  fill_random(m, R * C, 31);
  /* Transposed: the view is (C, R) over an R x C matrix; softmax along its
   * dim 1 walks a column of m. Output contiguous (C, R). */
  cl_mem mb = test_buffer(ctx, sizeof m, m), yb = test_buffer(ctx, sizeof y, NULL);
  clsm_tensor xt = {mb, 0, CLSM_FLOAT32, 2, {C, R}, {1, C}};
  const int64_t tshape[2] = {C, R};
  clsm_tensor yt = clsm_tensor_contiguous(yb, 0, CLSM_FLOAT32, 2, tshape);
  for (int dim = 0; dim < 2; ++dim) {
    CK_STATUS(ctx, clsm_softmax(ctx, &xt, &yt, dim, 0, 0, NULL, NULL));
    test_read(ctx, yb, 0, sizeof y, y);
    float tx[C * R];
    for (int i = 0; i < C; ++i)
      for (int j = 0; j < R; ++j) tx[i * R + j] = m[j * C + i];
    double ref[C * R];
    ref_softmax(tx, ref, 2, tshape, dim, 0, 0);
    for (int i = 0; i < C * R; ++i)
      ck_assert_msg(ref_close(y[i], ref[i], 0, RTOL), "transposed dim %d elem %d", dim, i);
  }
  clReleaseMemObject(mb);
  clReleaseMemObject(yb);
  /* Every other row of a (2R, C) buffer, log_softmax in place on the view. */
  fill_random(g, 2 * R * C, 32);
  cl_mem gb = test_buffer(ctx, sizeof g, g);
  clsm_tensor gt = {gb, C, CLSM_FLOAT32, 2, {R, C}, {2 * C, 1}};
  CK_STATUS(ctx, clsm_log_softmax(ctx, &gt, &gt, -1, 0, 0, NULL, NULL));
  static float out[2 * R * C];
  test_read(ctx, gb, 0, sizeof out, out);
  float rows[R * C];
  for (int r = 0; r < R; ++r) memcpy(rows + r * C, g + (2 * r + 1) * C, sizeof(float) * C);
  double ref[R * C];
  const int64_t rshape[2] = {R, C};
  ref_softmax(rows, ref, 2, rshape, 1, 1, 0);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      ck_assert(out[2 * r * C + c] == g[2 * r * C + c]); /* rows outside the view untouched */
      ck_assert_msg(ref_close(out[(2 * r + 1) * C + c], ref[r * C + c], 1, RTOL), "row %d", r);
    }
  (void)yg;
  clReleaseMemObject(gb);
  clsm_context_destroy(ctx);
}
END_TEST

/* A caller-owned queue: adopt it, run, release the caller's reference first. */
START_TEST(test_adopted_queue) {
  cl_platform_id p;
  cl_device_id d;
  ck_assert(clGetPlatformIDs(1, &p, NULL) == CL_SUCCESS);
  ck_assert(clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 1, &d, NULL) == CL_SUCCESS);
  cl_int err;
  cl_context c = clCreateContext(NULL, 1, &d, NULL, NULL, &err);
  ck_assert(c != NULL);
  cl_command_queue q = clCreateCommandQueue(c, d, 0, &err);
  ck_assert(q != NULL);
  clsm_context *ctx = NULL;
  char det[256];
  ck_assert_int_eq(clsm_context_adopt(&ctx, q, det, sizeof det), CLSM_SUCCESS);
  ck_assert(clsm_context_queue(ctx) == q);
  ck_assert(clsm_context_cl_context(ctx) == c);
  clReleaseCommandQueue(q);
  enum { N = 9, C = 100 };
  float x[N * C], y[N * C];
  double ref[N * C];
  fill_random(x, N * C, 41);
  cl_mem xb = clCreateBuffer(c, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x, x, &err);
  const int64_t shape[2] = {N, C};
  clsm_tensor t = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
  CK_STATUS(ctx, clsm_softmax(ctx, &t, &t, -1, 0, 0, NULL, NULL));
  test_read(ctx, xb, 0, sizeof y, y);
  ref_softmax(x, ref, 2, shape, 1, 0, 0);
  for (int i = 0; i < N * C; ++i) ck_assert(ref_close(y[i], ref[i], 0, RTOL));
  clReleaseMemObject(xb);
  clsm_context_destroy(ctx);
  clReleaseContext(c);
}
END_TEST

/* Asynchronous use: the op waits for a user event, returns an event, and an
 * empty tensor still honours both (a marker). */
START_TEST(test_events) {
  clsm_context *ctx = test_context();
  cl_int err;
  enum { N = 4, C = 50 };
  float x[N * C], y[N * C];
  double ref[N * C];
  fill_random(x, N * C, 51);
  cl_mem xb = test_buffer(ctx, sizeof x, x), yb = test_buffer(ctx, sizeof y, NULL);
  const int64_t shape[2] = {N, C};
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor yt = clsm_tensor_contiguous(yb, 0, CLSM_FLOAT32, 2, shape);
  cl_event gate = clCreateUserEvent(clsm_context_cl_context(ctx), &err);
  ck_assert(gate != NULL);
  cl_event done = NULL, empty_done = NULL;
  CK_STATUS(ctx, clsm_log_softmax(ctx, &xt, &yt, -1, 0, 1, &gate, &done));
  ck_assert(done != NULL);
  cl_int state = 0;
  clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state, NULL);
  ck_assert_msg(state != CL_COMPLETE, "the op ran before its wait list completed");
  const int64_t eshape[2] = {0, C};
  clsm_tensor et = clsm_tensor_contiguous(yb, 0, CLSM_FLOAT32, 2, eshape);
  CK_STATUS(ctx, clsm_softmax(ctx, &et, &et, -1, 0, 1, &done, &empty_done));
  ck_assert(empty_done != NULL);
  clSetUserEventStatus(gate, CL_COMPLETE);
  ck_assert(clWaitForEvents(1, &empty_done) == CL_SUCCESS);
  clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state, NULL);
  ck_assert_int_eq(state, CL_COMPLETE);
  test_read(ctx, yb, 0, sizeof y, y);
  ref_softmax(x, ref, 2, shape, 1, 1, 0);
  for (int i = 0; i < N * C; ++i) ck_assert(ref_close(y[i], ref[i], 1, RTOL));
  clReleaseEvent(gate);
  clReleaseEvent(done);
  clReleaseEvent(empty_done);
  clReleaseMemObject(xb);
  clReleaseMemObject(yb);
  CK_STATUS(ctx, clsm_finish(ctx));
  clsm_context_destroy(ctx);
}
END_TEST

/* Rows long enough to need the block-wise sum (C = 2^20): still within bounds. */
START_TEST(test_long_row) {
  clsm_context *ctx = test_context();
  int64_t shape[1] = {1 << 20};
  check_op(ctx, 0, 1, shape, 0, 61);
  check_op(ctx, 1, 1, shape, 0, 61);
  clsm_context_destroy(ctx);
}
END_TEST

/* Rows past the keep limit (148 KB of float32, 296 KB of float64, and few
 * enough, R * C < 2^18, not to be split) take the blocked path on the CPU
 * family: blocks of 4096 whose maxima differ by 80,
 * leading -inf blocks, an all -inf row (NaN, or 0 with CLSM_SAFE), a +inf and
 * a NaN (NaN rows, one with its NaN in a block that is otherwise -inf), and
 * a tail that is not a multiple of 16. _i: flags. */
START_TEST(test_long_rows_blocks) {
  clsm_context *ctx = test_context();
  const float inf = INFINITY;
  enum { R = 7, C = 37001 };
  const uint32_t flags = _i ? CLSM_SAFE : 0;
  float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C);
  double *xd = malloc(sizeof(double) * R * C), *yd = malloc(sizeof(double) * R * C);
  double *ref = malloc(sizeof(double) * R * C);
  ck_assert(x && y && xd && yd && ref);
  fill_random(x, (int64_t)R * C, 77);
  for (int c = 0; c < 5000; ++c) x[c] -= 80.0f; /* row 0: early blocks far below */
  x[C - 3] = 5.0f;                              /* and the max in the last block */
  for (int c = 0; c < 8192; ++c) x[C + c] = -inf; /* row 1: two -inf blocks */
  for (int c = 0; c < C; ++c) x[2 * C + c] = -inf; /* row 2: all -inf */
  x[3 * C + 30000] = inf;                           /* row 3: +inf */
  x[4 * C + 100] = NAN;                             /* row 4: NaN */
  x[5 * C + 7] = 100.0f;                            /* row 5: max in the first block */
  for (int c = 0; c < 8192; ++c) x[6 * C + c] = -inf; /* row 6: a NaN among -inf */
  x[6 * C + 100] = NAN;
  for (int i = 0; i < R * C; ++i) xd[i] = x[i];
  const int64_t shape[2] = {R, C};
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, flags, x, y));
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT64, 2, shape, 1, flags, xd, yd));
  ref_softmax(x, ref, 2, shape, 1, 0, flags & CLSM_SAFE);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const int i = r * C + c;
      if (r == 3 || r == 4 || r == 6 || (r == 2 && !flags)) {
        ck_assert_msg(isnan(y[i]) && isnan(yd[i]), "row %d col %d: %g / %g, not NaN", r, c,
                      (double)y[i], yd[i]);
        continue;
      }
      ck_assert_msg(ref_close(y[i], ref[i], 0, RTOL), "float32 row %d col %d: %g vs %.12g", r, c,
                    (double)y[i], ref[i]);
      ck_assert_msg(fabs(yd[i] - ref[i]) <= 1e-12 * fabs(ref[i]), "float64 row %d col %d: %.17g vs %.17g",
                    r, c, yd[i], ref[i]);
    }
  ck_assert(y[C + 5] == 0.0f && yd[C + 5] == 0.0);
  if (flags) ck_assert(y[2 * C + 9] == 0.0f && yd[2 * C + 9] == 0.0);
  free(x), free(y), free(xd), free(yd), free(ref);
  clsm_context_destroy(ctx);
}
END_TEST

/* log_softmax through the tile to 4e-7 of the double reference (the
 * suite's RTOL is 4e-6): along dim 0 of (64, 1040) every column's max rises
 * by about 0.9 a chunk of 4 rows, so the reference the exps are taken
 * against trails the max by up to the kernel's slack, and (x - ref) - log s
 * cancels a log s that large. The slack of 1 stays near 1.3e-7, as the
 * exact running max does; a slack of 16 gives 6e-7. */
START_TEST(test_tile_log_precision) {
  const int64_t C = 64, W = 1040, n = C * W, shape[2] = {C, W};
  clsm_context *ctx = test_context();
  float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
  double *ref = malloc(sizeof(double) * (size_t)n);
  ck_assert(x && y && ref);
  fill_random(x, n, 91);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < W; ++i) {
      float *v = x + c * W + i;
      *v = 0.225f * (float)c + 0.01f * fminf(fmaxf(*v, -4.0f), 4.0f);
    }
  cl_mem xb = test_buffer(ctx, sizeof(float) * (size_t)n, x);
  cl_mem yb = test_buffer(ctx, sizeof(float) * (size_t)n, NULL);
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor yt = clsm_tensor_contiguous(yb, 0, CLSM_FLOAT32, 2, shape);
  CK_STATUS(ctx, clsm_log_softmax(ctx, &xt, &yt, 0, 0, 0, NULL, NULL));
  test_read(ctx, yb, 0, sizeof(float) * (size_t)n, y);
  ref_softmax(x, ref, 2, shape, 0, 1, 0);
  for (int64_t i = 0; i < n; ++i)
    ck_assert_msg(ref_close(y[i], ref[i], 1, 4e-7), "row %lld col %lld is %.9g, reference %.12g",
                  (long long)(i / W), (long long)(i % W), (double)y[i], ref[i]);
  clReleaseMemObject(xb);
  clReleaseMemObject(yb);
  free(x), free(y), free(ref);
  clsm_context_destroy(ctx);
}
END_TEST

/* The row's log: row k holds k zeros and -inf elsewhere, so its sum is
 * exactly k and log_softmax of a zero is -log(k) as the kernel's log gives
 * it, checked against log(k) in double for k = 1..C: to 3 ulp (OpenCL's
 * bound for the built-in log) on the GPU family, to 1.5 ulp on the CPU
 * family, whose kernels compute the log themselves (0.84 ulp at most). */
START_TEST(test_log_of_sums) {
  clsm_context *ctx = test_context();
  enum { R = 1000, C = 1000 };
  float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C);
  ck_assert(x && y);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) x[r * C + c] = c <= r ? 0.0f : -INFINITY;
  const int64_t shape[2] = {R, C};
  CK_STATUS(ctx, clsm_log_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, x, y));
  const double ulps = clsm_context_family(ctx) == CLSM_FAMILY_CPU ? 1.5 : 3.0;
  for (int r = 0; r < R; ++r) {
    const double want = -log((double)(r + 1));
    const double ulp = r ? ldexp(1.0, ilogb(want) - 23) : 0.0;
    ck_assert_msg(fabs((double)y[r * C] - want) <= ulps * ulp, "sum %d: %.9g, log %.9g", r + 1,
                  (double)y[r * C], want);
    ck_assert(y[r * C + r] == y[r * C] && (r + 1 == C || y[r * C + r + 1] == -INFINITY));
  }
  free(x), free(y);
  clsm_context_destroy(ctx);
}
END_TEST

/* Few long rows: on the CPU family each row is split over work-items
 * (chunks of at least 4096 and at most a quarter of the row; C is not a
 * multiple of 16, so the last chunk has a scalar tail), and softmax
 * keeps exp(x - chunk max) in y for the second kernel to scale. Row 0: its
 * first half -inf (whole chunks of -inf) and a finite max of -100, so a
 * chunk's factor exp(-inf - M) must be 0 where exp(0 - M) would overflow.
 * Row 1: chunk maxima 20 apart (near 0.74 in the first half, 20.74 in the
 * second), and elements up to 60 / 80 below them, where x - m is rounded
 * by up to 1.9e-6 / 3.8e-6 relative to exp's result; the ratio
 * y_i / y_max against exp(x_i - x_max) in double (the sum cancels) checks
 * each element to 1e-6. float32 and float64. */
START_TEST(test_split_rows_chunks) {
  clsm_context *ctx = test_context();
  enum { R = 2, C = (1 << 18) + 19 };
  const float inf = INFINITY;
  float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C);
  double *xd = malloc(sizeof(double) * R * C), *yd = malloc(sizeof(double) * R * C);
  double *ref = malloc(sizeof(double) * R * C);
  ck_assert(x && y && xd && yd && ref);
  fill_random(x, (int64_t)R * C, 91); /* values in [-4, 4), a few in [-60, 60) */
  for (int c = 0; c < C; ++c) {
    const float u = (x[c] + 60.0f) / 120.0f; /* in [0, 1) */
    x[c] = c < C / 2 ? -inf : -100.0f - 80.0f * u;
    const float v = (x[C + c] + 60.0f) / 120.0f;
    x[C + c] = c < C / 2 ? 0.7371f - 60.0f * v : 20.7371f - 80.0f * v;
  }
  x[C - 5] = -100.0f; /* row 0's max */
  const int amax[R] = {C - 5, 2 * C - 1};
  x[2 * C - 1] = 20.7371f; /* row 1's max */
  for (int i = 0; i < R * C; ++i) xd[i] = x[i];
  const int64_t shape[2] = {R, C};
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, x, y));
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT64, 2, shape, 1, 0, xd, yd));
  ref_softmax(x, ref, 2, shape, 1, 0, 0);
  for (int r = 0; r < R; ++r) {
    const int j = amax[r];
    for (int c = 0; c < C; ++c) {
      const int i = r * C + c;
      if (x[i] == -inf) {
        ck_assert_msg(y[i] == 0.0f && yd[i] == 0.0, "row %d col %d: %g / %g, not 0", r, c,
                      (double)y[i], yd[i]);
        continue;
      }
      ck_assert_msg(ref_close(y[i], ref[i], 0, RTOL), "float32 row %d col %d: %g vs %.12g", r, c,
                    (double)y[i], ref[i]);
      ck_assert_msg(fabs(yd[i] - ref[i]) <= 1e-12 * ref[i], "float64 row %d col %d: %.17g vs %.17g",
                    r, c, yd[i], ref[i]);
      const double want = exp((double)x[i] - (double)x[j]), got = (double)y[i] / (double)y[j];
      ck_assert_msg(fabs(got - want) <= 1e-6 * want, "row %d col %d (x - max = %g): ratio %.9g, %.9g",
                    r, c, (double)x[i] - (double)x[j], got, want);
    }
  }
  free(x), free(y), free(xd), free(yd), free(ref);
  clsm_context_destroy(ctx);
}
END_TEST

static Suite *softmax_suite(void) {
  Suite *s = suite_create("softmax");
  TCase *tc = tcase_create("Shapes");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_shapes, 0, n_cases());
  suite_add_tcase(s, tc);

  tc = tcase_create("Examples");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_rows_64x80);
  tcase_add_loop_test(tc, test_reg_rows, 0, 22);
  tcase_add_loop_test(tc, test_dims_2x3x4, 0, 4);
  tcase_add_test(tc, test_overflow_rows);
  tcase_add_test(tc, test_long_row);
  suite_add_tcase(s, tc);

  tc = tcase_create("Special");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_special_values);
  tcase_add_loop_test(tc, test_safe_mode, 0, 2);
  tcase_add_loop_test(tc, test_rows_specials, 0, 20);
  tcase_add_loop_test(tc, test_tile_specials, 0, 12);
  tcase_add_loop_test(tc, test_tiny_probabilities, 0, 3);
  tcase_add_test(tc, test_tile_log_precision);
  tcase_add_loop_test(tc, test_long_rows_blocks, 0, 2);
  tcase_add_test(tc, test_split_rows_chunks);
  tcase_add_test(tc, test_log_of_sums);
  suite_add_tcase(s, tc);

  tc = tcase_create("Layout");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_in_place_and_offsets, 0, 2);
  tcase_add_test(tc, test_strided_views);
  tcase_add_test(tc, test_adopted_queue);
  tcase_add_test(tc, test_events);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  const char *fam = getenv("CLSM_FAMILY");
  printf("softmax suite, kernel family override: %s\n", fam ? fam : "(device default)");
  return run_suite(softmax_suite());
}
