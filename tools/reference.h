/* The double-precision CPU reference the tests, the demo and the benchmark
 * compare against. Written from the formulas in the docs, independently of
 * the kernels; special values follow PyTorch. */
#ifndef CLSM_REFERENCE_H
#define CLSM_REFERENCE_H

#include <stdint.h>

/* y = softmax (log = 0) or log_softmax (log = 1) of the C-order float tensor x
 * of the given shape along dim (already normalised; rank 0 is one element).
 * safe: an all -inf row gives 0 / -inf instead of NaN. */
void ref_softmax(const float *x, double *y, int rank, const int64_t *shape, int dim, int log,
                 int safe);

/* Whether a float result matches a double reference within the documented
 * bounds: softmax |got - ref| <= rtol*|ref| + 2e-38 (the absolute part only
 * matters for subnormal results), log_softmax |got - ref| <= rtol*max(1,|ref|);
 * NaN exactly where the reference is NaN; infinities exactly (a reference
 * beyond the float range must be the same infinity). */
int ref_close(float got, double ref, int log, double rtol);
/* The error measure ref_close bounds: relative for softmax, max(1,|ref|)-scaled
 * for log_softmax; 0 for matching special values, +inf for a mismatch. */
double ref_error(float got, double ref, int log);


/* Gradient references from y and dy (double), C-order, along dim:
 * softmax:      dx_i = y_i (dy_i - sum_j dy_j y_j)
 * log_softmax:  dx_i = dy_i - exp(y_i) sum_j dy_j
 * `scale` (may be NULL) receives, per element, the magnitude of the terms
 * that cancel (|y|(|dy| + sum|dy y|), or |dy| + exp(y) sum|dy|), which
 * bounds the rounding error of a float computation. */
void ref_softmax_backward(const double *y, const double *dy, double *dx, double *scale, int rank,
                          const int64_t *shape, int dim, int log);

/* 16-bit storage conversions, rounding to nearest even; NaN stays NaN,
 * values past the range become infinities. */
uint16_t ref_f32_to_f16(float f);
float ref_f16_to_f32(uint16_t h);
uint16_t ref_f32_to_bf16(float f);
float ref_bf16_to_f32(uint16_t b);

/* Cross-entropy in double, from the formulas (SEMANTICS.md), over logits x
 * laid out (outer, C, inner) contiguously; positions p = o * inner + i.
 * Targets: `tidx` (one class per position) or `q` (probabilities, x's layout).
 * Outputs: per-position loss lpos[p] (CE part plus z-loss; 0 when ignored),
 * the reduced loss *total (mean or sum; none: unused), *W (sum of non-ignored
 * target weights, or P for probabilities), lse[p] (may be NULL), and magnitude
 * mag[p] (may be NULL): the size of the terms that cancel, for tolerances.
 * With `grad` (may be NULL): d loss / d x times the upstream gradient g
 * (g[0] for mean/sum, g[p] for none). */
typedef struct ref_ce_opts {
  int reduction; /* 0 mean, 1 sum, 2 none */
  int64_t ignore_index;
  double eps, z, cap;
  const double *weight; /* NULL or C values */
} ref_ce_opts;

void ref_cross_entropy(const double *x, int64_t outer, int64_t C, int64_t inner,
                       const int64_t *tidx, const double *q, const ref_ce_opts *o, double *lpos,
                       double *total, double *W, double *lse, double *mag, const double *g,
                       double *grad);

/* Attention softmax (SEMANTICS.md), x and the outputs C-order of `shape`,
 * along dim with the query axis dim - 1 and the head axis head_dim (-1:
 * none, h = 0). z is computed as the spec says: in float (double when f64)
 * with each operation rounded on its own, then everything in double. */
typedef struct ref_attn_opts {
  double scale;
  const double *mask; /* NULL, or x's shape: the broadcast mask's values */
  int mask_bool;      /* the mask holds keep flags (0 masks out) */
  int causal;
  int64_t offset;
  const double *slopes; /* NULL, or H ALiBi slopes (float values) */
  const double *sinks;  /* NULL, or H sinks */
  int head_dim;
  int safe;
  int f64;
} ref_attn_opts;
/* y and, when lse is not NULL, each row's log-sum-exp (rows in C order). */
void ref_attn_softmax(const double *x, double *y, double *lse, int rank, const int64_t *shape,
                      int dim, int log, const ref_attn_opts *o);
/* The ALiBi slopes of max_bias for H heads (ggml's formula, in double,
 * rounded to float). */
void ref_alibi_slopes(double max_bias, int64_t H, double *slopes);
/* The backward from y and dy: masked entries (y = 0, or -inf for log)
 * take no part; dx = scale * (...); mag (may be NULL) the magnitude of the
 * cancelling terms per element; dsinks (may be NULL) the H sink gradients. */
/* dsmag (may be NULL): per head, the sum over its rows of
 * (|1 - sum p| + C) * sum |terms|, which bounds dsinks' rounding error in
 * units of the computation's roundoff. */
void ref_attn_backward(const double *y, const double *dy, double *dx, double *mag, double *dsinks,
                       double *dsmag, int rank, const int64_t *shape, int dim, int log,
                       double scale, int head_dim);

#endif
