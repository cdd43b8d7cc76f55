/* clsoftmax demo: the first thing a new user runs. Shows the device and kernel
 * family, then the starting examples (row softmax of a 64x80 matrix, softmax of
 * a 2x3x4 tensor along every dim, rows that overflow a naive exp(x)/sum exp(x))
 * PyTorch's special-value rows, cross-entropy and an attention row set, each
 * against a double-precision reference.
 * Exits non-zero if any result is off. */
#include "reference.h"
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RTOL 4e-6

typedef struct demo {
  clsm_context *ctx;
  int failures;
} demo;

/* Runs one op on the device and compares with the reference; returns max error. */
static double run_case(demo *d, int log, int safe, int rank, const int64_t *shape, int dim,
                       const float *x, float *y, double *ref) {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= shape[i];
  clsm_status st = (log ? clsm_log_softmax_host : clsm_softmax_host)(
      d->ctx, CLSM_FLOAT32, rank, shape, dim, safe ? CLSM_SAFE : 0, x, y);
  if (st != CLSM_SUCCESS) {
    tool_report(d->ctx, st, "demo");
    d->failures++;
    return INFINITY;
  }
  int r = rank == 0 ? 1 : rank;
  ref_softmax(x, ref, rank, shape, dim < 0 ? dim + r : dim, log, safe);
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double e = ref_error(y[i], ref[i], log);
    if (e > worst) worst = e;
    if (!ref_close(y[i], ref[i], log, RTOL)) worst = fmax(worst, INFINITY);
  }
  return worst;
}

static const char *verdict(demo *d, double err) {
  if (err <= RTOL) return "ok";
  d->failures++;
  return "WRONG";
}

static void print_row(const char *label, const float *v, int n, int width) {
  printf("  %-*s", width, label);
  for (int i = 0; i < n; ++i) {
    if (isnan(v[i])) printf(" %12s", "nan"); /* one spelling, whatever the sign bit */
    else printf(" %12.6g", (double)v[i]);
  }
  printf("\n");
}

static void print_drow(const char *label, const double *v, int n, int width) {
  printf("  %-*s", width, label);
  for (int i = 0; i < n; ++i) printf(" %12.6g", v[i]);
  printf("\n");
}

/* 64 x 80 row softmax: the tutorial's first example. */
static void demo_rows(demo *d) {
  enum { N = 64, C = 80 };
  static float x[N * C], y[N * C];
  static double ref[N * C];
  unsigned seed = 20261126u;
  srand(seed);
  for (int i = 0; i < N * C; ++i) x[i] = (float)(rand() / (double)RAND_MAX * 8.0 - 4.0);
  int64_t shape[2] = {N, C};
  double err = run_case(d, 0, 0, 2, shape, 1, x, y, ref);
  double worst_sum = 0.0;
  for (int r = 0; r < N; ++r) {
    double s = 0.0;
    for (int c = 0; c < C; ++c) s += y[r * C + c];
    worst_sum = fmax(worst_sum, fabs(s - 1.0));
  }
  printf("1. Row softmax of a 64x80 matrix (uniform in [-4, 4], seed %u)\n", seed);
  printf("   max relative error %.2e, max |row sum - 1| %.2e   %s\n\n", err, worst_sum,
         verdict(d, err));
}

/* 2 x 3 x 4 along every dim: equal to moving the dim last, row softmax, moving back. */
static void demo_dims(demo *d) {
  float x[24], y[24];
  double ref[24];
  for (int i = 0; i < 24; ++i) x[i] = (float)((i * 7) % 11) - 5.0f + 0.25f * (float)i;
  int64_t shape[3] = {2, 3, 4};
  printf("2. Softmax of a 2x3x4 tensor along each dim\n");
  printf("  %-8s %-26s %s\n", "dim", "max relative error", "");
  const int dims[] = {0, 1, 2, -1};
  for (int k = 0; k < 4; ++k) {
    double err = run_case(d, 0, 0, 3, shape, dims[k], x, y, ref);
    printf("  %-8d %-26.2e %s\n", dims[k], err, verdict(d, err));
  }
  printf("\n");
}

/* Rows a naive exp(x) / sum exp(x) cannot do. */
static void demo_overflow(demo *d) {
  float x[2][3] = {{1000.0f, 0.0f, -1000.0f}, {90.0f, 89.0f, 88.0f}};
  float y[3], ly[3];
  double ref[3], lref[3];
  int64_t shape[1] = {3};
  printf("3. Rows that overflow a naive exp(x) / sum exp(x) in float32\n");
  for (int r = 0; r < 2; ++r) {
    float naive[3];
    float s = 0.0f;
    for (int i = 0; i < 3; ++i) s += expf(x[r][i]);
    for (int i = 0; i < 3; ++i) naive[i] = expf(x[r][i]) / s;
    double e1 = run_case(d, 0, 0, 1, shape, 0, x[r], y, ref);
    double e2 = run_case(d, 1, 0, 1, shape, 0, x[r], ly, lref);
    print_row("x", x[r], 3, 22);
    print_row("naive exp(x)/sum", naive, 3, 22);
    print_row("softmax (device)", y, 3, 22);
    print_drow("softmax (double ref)", ref, 3, 22);
    print_row("log_softmax (device)", ly, 3, 22);
    print_drow("log_softmax (double)", lref, 3, 22);
    printf("  max error %.2e / %.2e   %s\n\n", e1, e2, verdict(d, fmax(e1, e2)));
  }
}

/* PyTorch's special values, and the safe extension. */
static void demo_special(demo *d) {
  const float inf = INFINITY, nan = NAN;
  struct {
    const char *what;
    float x[4];
    int safe;
  } rows[] = {
      {"some -inf", {1.0f, -inf, 2.0f, -inf}, 0},
      {"all -inf", {-inf, -inf, -inf, -inf}, 0},
      {"all -inf, CLSM_SAFE", {-inf, -inf, -inf, -inf}, 1},
      {"a +inf", {1.0f, inf, 2.0f, 3.0f}, 0},
      {"a NaN", {1.0f, nan, 2.0f, 3.0f}, 0},
      {"huge finite", {1e38f, -1e38f, 0.0f, 1e38f}, 0},
  };
  printf("4. Special values (PyTorch's results; CLSM_SAFE is an extension)\n");
  int64_t shape[1] = {4};
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; ++r) {
    float y[4], ly[4];
    double ref[4], lref[4];
    double e1 = run_case(d, 0, rows[r].safe, 1, shape, 0, rows[r].x, y, ref);
    double e2 = run_case(d, 1, rows[r].safe, 1, shape, 0, rows[r].x, ly, lref);
    printf("  %s\n", rows[r].what);
    print_row("x", rows[r].x, 4, 22);
    print_row("softmax", y, 4, 22);
    print_row("log_softmax", ly, 4, 22);
    printf("  matches the reference: %s\n", verdict(d, fmax(e1, e2)));
  }
  printf("\n");
}

/* The tutorial's cross-entropy: batch 64, 80 classes, targets 0..63, mean;
 * then logits near 90, where exp(x) / sum exp(x) overflows in float32. */
static void demo_cross_entropy(demo *d) {
  enum { N = 64, C = 80 };
  static float x[N * C];
  static double xd[N * C];
  int64_t t[N];
  unsigned seed = 64080u;
  srand(seed);
  for (int i = 0; i < N * C; ++i) xd[i] = x[i] = (float)(rand() / (double)RAND_MAX * 8.0 - 4.0);
  for (int n = 0; n < N; ++n) t[n] = n;
  const int64_t shape[2] = {N, C};
  clsm_ce_options opt = clsm_ce_options_default();
  ref_ce_opts ro = {0, -100, 0.0, 0.0, 0.0, NULL};
  printf("5. Cross-entropy, batch 64, 80 classes, targets 0..63, mean (seed %u)\n", seed);
  for (int k = 0; k < 2; ++k) {
    if (k == 1) /* shift every logit by 90: the loss must not change */
      for (int i = 0; i < N * C; ++i) xd[i] = x[i] = x[i] + 90.0f;
    float loss = NAN;
    clsm_status st = clsm_cross_entropy_host(d->ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &opt,
                                             NULL, &loss, NULL, NULL, NULL, NULL);
    if (st != CLSM_SUCCESS) {
      tool_report(d->ctx, st, "demo");
      d->failures++;
      return;
    }
    double ref = 0.0, naive = 0.0;
    ref_cross_entropy(xd, N, C, 1, t, NULL, &ro, NULL, &ref, NULL,
                      NULL, NULL, NULL, NULL);
    for (int n = 0; n < N; ++n) { /* the hand-written float formula: log sum exp(x) - x_t */
      float s = 0.0f;
      for (int c = 0; c < C; ++c) s += expf(x[n * C + c]);
      naive += logf(s) - x[n * C + t[n]];
    }
    naive /= N;
    double err = fabs(loss - ref) / fabs(ref);
    printf("  logits %-18s loss %.7f  double reference %.7f  naive float %-10.7g rel. error %.1e   %s\n",
           k ? "shifted by +90" : "in [-4, 4]", (double)loss, ref, naive, err, err <= 1e-5 ? "ok" : "WRONG");
    if (err > 1e-5) d->failures++;
  }
  printf("\n");
}

/* Attention softmax: a causal 4x4 score matrix (scale 1/2) with a sink
 * logit of 1 in the normaliser; every row sums to less than 1, the rest
 * being the sink's share, and the masked entries are exactly 0. */
static void demo_attention(demo *d) {
  const int64_t shape[3] = {1, 4, 4};
  const float x[16] = {2.0f, 1.0f, 0.5f, 3.0f, -1.0f, 0.0f, 4.0f, 1.0f,
                       0.25f, 2.5f, -2.0f, 1.5f, 1.0f, 1.0f, 1.0f, 1.0f};
  const float sinks[1] = {1.0f};
  float y[16];
  double xd[16], ref[16];
  const double sd[1] = {1.0};
  for (int i = 0; i < 16; ++i) xd[i] = x[i];
  clsm_attn_options o = clsm_attn_options_default();
  o.scale = 0.5;
  o.causal = 1;
  clsm_attn_arrays a = {0};
  a.sinks = sinks;
  a.sinks_dtype = CLSM_FLOAT32;
  printf("6. Attention softmax: softmax(x / 2) of a causal 4x4 score matrix with a sink logit 1\n");
  clsm_status st = clsm_softmax_ex_host(d->ctx, CLSM_FLOAT32, 3, shape, 2, &o, &a, x, y);
  if (st != CLSM_SUCCESS) {
    tool_report(d->ctx, st, "demo");
    d->failures++;
    return;
  }
  ref_attn_opts ro = {.scale = 0.5, .causal = 1, .sinks = sd, .head_dim = 0};
  ref_attn_softmax(xd, ref, NULL, 3, shape, 2, 0, &ro);
  double worst = 0.0;
  for (int i = 0; i < 4; ++i) {
    char label[32];
    snprintf(label, sizeof label, "query %d", i);
    print_row(label, y + 4 * i, 4, 22);
    print_drow("  double reference", ref + 4 * i, 4, 22);
    for (int j = 0; j < 4; ++j) {
      worst = fmax(worst, ref_error(y[4 * i + j], ref[4 * i + j], 0));
      if (!ref_close(y[4 * i + j], ref[4 * i + j], 0, RTOL)) worst = INFINITY;
    }
  }
  printf("  matches the reference: %s\n\n", verdict(d, worst));
}

int tool_demo(const char *device) {
  demo d = {tool_context(device), 0};
  if (!d.ctx) return EXIT_DEVICE;
  printf("clsoftmax %s demo\n", clsm_version_string());
  printf("device: %s\nkernel family: %s\n\n", clsm_context_device_name(d.ctx),
         clsm_context_family(d.ctx) == CLSM_FAMILY_CPU ? "cpu (a work-item owns whole rows)"
                                                       : "gpu (a work-group per row)");
  demo_rows(&d);
  demo_dims(&d);
  demo_overflow(&d);
  demo_special(&d);
  demo_cross_entropy(&d);
  demo_attention(&d);
  clsm_context_destroy(d.ctx);
  if (d.failures) {
    printf("%d result(s) differ from the reference.\n", d.failures);
    return EXIT_DEVICE;
  }
  printf("All results match the double-precision reference (tolerance %.0e).\n", RTOL);
  return EXIT_OK;
}
