/* Double-precision reference for softmax and log_softmax (see reference.h). */
#include "reference.h"

#include <float.h>
#include <math.h>
#include <string.h>

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

void ref_softmax_backward(const double *y, const double *dy, double *dx, double *scale, int rank,
                          const int64_t *shape, int dim, int log) {
  int64_t outer = 1, C = 1, inner = 1;
  if (rank > 0) {
    C = shape[dim];
    for (int d = 0; d < dim; ++d) outer *= shape[d];
    for (int d = dim + 1; d < rank; ++d) inner *= shape[d];
  }
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t base = o * C * inner + i;
      double sum = 0.0, mag = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        int64_t k = base + c * inner;
        double term = log ? dy[k] : dy[k] * y[k];
        sum += term;
        mag += fabs(term);
      }
      for (int64_t c = 0; c < C; ++c) {
        int64_t k = base + c * inner;
        if (log) {
          dx[k] = dy[k] - exp(y[k]) * sum;
          if (scale) scale[k] = fabs(dy[k]) + exp(y[k]) * mag;
        } else {
          dx[k] = y[k] * (dy[k] - sum);
          if (scale) scale[k] = fabs(y[k]) * (fabs(dy[k]) + mag);
        }
      }
    }
}

static uint32_t f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static float u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t ref_f32_to_f16(float f) {
  uint32_t x = f2u(f), sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: inf */
  if (a < 0x38800000u) /* below 2^-14: a subnormal half, in units of 2^-24 */
    return (uint16_t)(sign | (uint32_t)lrintf(u2f(a) * 16777216.0f));
  uint32_t r = a - 0x38000000u; /* exponent rebiased from 127 to 15 */
  r += 0x0fffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

float ref_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    float v = (float)m * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (e == 31) return u2f(sign | 0x7f800000u | (m << 13));
  return u2f(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t ref_f32_to_bf16(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float ref_bf16_to_f32(uint16_t b) { return u2f((uint32_t)b << 16); }
