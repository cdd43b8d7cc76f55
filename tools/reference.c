/* Double-precision reference for softmax and log_softmax (see reference.h). */
#include "reference.h"

#include <float.h>
#include <math.h>

void ref_softmax(const float *x, double *y, int rank, const int64_t *shape, int dim, int log,
                 int safe) {
  int64_t outer = 1, C = 1, inner = 1;
  if (rank > 0) {
    C = shape[dim];
    for (int d = 0; d < dim; ++d) outer *= shape[d];
    for (int d = dim + 1; d < rank; ++d) inner *= shape[d];
  }
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t base = o * C * inner + i;
      int has_nan = 0, has_pinf = 0;
      double m = -INFINITY;
      for (int64_t c = 0; c < C; ++c) {
        double v = x[base + c * inner];
        if (isnan(v)) has_nan = 1;
        else if (v == INFINITY) has_pinf = 1;
        else if (v > m) m = v;
      }
      int all_ninf = !has_nan && !has_pinf && m == -INFINITY;
      for (int64_t c = 0; c < C; ++c) {
        double *out = &y[base + c * inner];
        if (has_nan || has_pinf || (all_ninf && !safe)) *out = NAN;
        else if (all_ninf) *out = log ? -INFINITY : 0.0;
      }
      if (has_nan || has_pinf || all_ninf) continue;
      double s = 0.0;
      for (int64_t c = 0; c < C; ++c) s += exp((double)x[base + c * inner] - m);
      double ls = log1p(s - 1.0); /* s >= 1: the max contributes exp(0) */
      for (int64_t c = 0; c < C; ++c) {
        double d = (double)x[base + c * inner] - m;
        y[base + c * inner] = log ? d - ls : exp(d) / s;
      }
    }
}

double ref_error(float got, double ref, int log) {
  if (isnan(ref)) return isnan(got) ? 0.0 : INFINITY;
  if (isnan(got)) return INFINITY;
  if (isinf(ref) || fabs(ref) > FLT_MAX) {
    double want = ref > 0 ? INFINITY : -INFINITY;
    return (double)got == want ? 0.0 : INFINITY;
  }
  if (isinf(got)) return INFINITY;
  double diff = fabs((double)got - ref);
  if (log) return diff / fmax(1.0, fabs(ref));
  if (diff <= 2e-38) return 0.0;
  return diff / fabs(ref);
}

int ref_close(float got, double ref, int log, double rtol) {
  if (isnan(ref) || isinf(ref) || fabs(ref) > FLT_MAX || isnan(got) || isinf(got))
    return ref_error(got, ref, log) == 0.0;
  double diff = fabs((double)got - ref);
  return log ? diff <= rtol * fmax(1.0, fabs(ref)) : diff <= rtol * fabs(ref) + 2e-38;
}
