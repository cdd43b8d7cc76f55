/* Double-precision reference for softmax and log_softmax (see reference.h). */
#include "reference.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The (outer, C, inner) view of a C-order shape along dim (rank 0: one). */
static void split(int rank, const int64_t *shape, int dim, int64_t *outer, int64_t *C,
                  int64_t *inner) {
  *outer = *C = *inner = 1;
  if (rank == 0) return;
  *C = shape[dim];
  for (int d = 0; d < dim; ++d) *outer *= shape[d];
  for (int d = dim + 1; d < rank; ++d) *inner *= shape[d];
}

void ref_softmax(const float *x, double *y, int rank, const int64_t *shape, int dim, int log,
                 int safe) {
  int64_t outer, C, inner;
  split(rank, shape, dim, &outer, &C, &inner);
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
  int64_t outer, C, inner;
  split(rank, shape, dim, &outer, &C, &inner);
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

void ref_cross_entropy(const double *x, int64_t outer, int64_t C, int64_t inner,
                       const int64_t *tidx, const double *q, const ref_ce_opts *o, double *lpos,
                       double *total, double *W, double *lse, double *mag, const double *g,
                       double *grad) {
  const int64_t P = outer * inner;
  const double eps = o->eps;
  double wsum = 0.0, cnt = 0.0, lsum = 0.0, zsum = 0.0;
  /* First the denominators (the gradient of a mean needs them). */
  for (int64_t p = 0; p < P; ++p) {
    if (q) {
      wsum += 1.0;
      cnt += 1.0;
    } else if (tidx[p] != o->ignore_index) {
      wsum += o->weight ? o->weight[tidx[p]] : 1.0;
      cnt += 1.0;
    }
  }
  for (int64_t p = 0; p < P; ++p) {
    const int64_t ob = p / inner, ib = p % inner;
#define X(c) x[(ob * C + (c)) * inner + ib]
#define XC(c) (o->cap > 0 ? o->cap * tanh(X(c) / o->cap) : X(c))
#define WC(c) (o->weight ? o->weight[c] : 1.0)
    double m = -INFINITY, s = 0.0;
    for (int64_t c = 0; c < C; ++c) m = fmax(m, XC(c));
    for (int64_t c = 0; c < C; ++c) s += exp(XC(c) - m);
    const double l_se = m + log(s);
    if (lse) lse[p] = l_se;
    int ignored = !q && tidx[p] == o->ignore_index;
    double l = 0.0, mg = 0.0;
    if (!ignored) {
      if (q) {
        for (int64_t c = 0; c < C; ++c) {
          double qc = (1.0 - eps) * q[(ob * C + c) * inner + ib] + eps / (double)C;
          l -= WC(c) * qc * (XC(c) - l_se);
          mg += fabs(WC(c) * qc) * (fabs(XC(c)) + fabs(l_se));
        }
      } else {
        int64_t t = tidx[p];
        l = (1.0 - eps) * WC(t) * (l_se - XC(t));
        mg = (1.0 - eps) * fabs(WC(t)) * (fabs(l_se) + fabs(XC(t)));
        if (eps > 0)
          for (int64_t c = 0; c < C; ++c) {
            l += eps / (double)C * WC(c) * (l_se - XC(c));
            mg += eps / (double)C * fabs(WC(c)) * (fabs(l_se) + fabs(XC(c)));
          }
      }
      lsum += l;
      zsum += o->z * l_se * l_se;
      l += o->z * l_se * l_se;
      mg += o->z * l_se * l_se;
    }
    if (lpos) lpos[p] = l;
    if (mag) mag[p] = mg;
    if (!grad) continue;
    const double gp = o->reduction == 2 ? g[p] : g[0];
    const double Wd = o->reduction == 0 ? wsum : 1.0, Zd = o->reduction == 0 ? cnt : 1.0;
    double swq = 0.0, sw = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      sw += WC(c);
      if (q) swq += WC(c) * ((1.0 - eps) * q[(ob * C + c) * inner + ib] + eps / (double)C);
    }
    for (int64_t c = 0; c < C; ++c) {
      double *d = &grad[(ob * C + c) * inner + ib];
      if (ignored) {
        *d = 0.0;
        continue;
      }
      double pc = exp(XC(c) - m) / s, v; /* not exp(x - lse): m + log s may round away log s */
      if (q) {
        double qc = (1.0 - eps) * q[(ob * C + c) * inner + ib] + eps / (double)C;
        v = gp / Wd * (pc * swq - WC(c) * qc);
      } else {
        int64_t t = tidx[p];
        v = gp / Wd * ((1.0 - eps) * WC(t) * (pc - (c == t ? 1.0 : 0.0)) +
                       eps / (double)C * (pc * sw - WC(c)));
      }
      v += gp / Zd * 2.0 * o->z * l_se * pc;
      if (o->cap > 0) v *= 1.0 - (XC(c) / o->cap) * (XC(c) / o->cap);
      *d = v;
    }
#undef X
#undef XC
#undef WC
  }
  if (W) *W = wsum;
  if (total) *total = o->reduction == 0 ? lsum / wsum + (zsum == 0.0 ? 0.0 : zsum / cnt) : lsum + zsum;
}

/* ---- Attention softmax. Rows are the positions of every dim but `dim`,
 * in C order; row r's multi-index gives its query and head. */
static void attn_index(int rank, const int64_t *shape, int dim, int64_t r, int64_t *idx) {
  for (int d = rank - 1; d >= 0; --d) {
    if (d == dim) {
      idx[d] = 0;
      continue;
    }
    idx[d] = r % shape[d];
    r /= shape[d];
  }
}

static int64_t attn_flat(int rank, const int64_t *shape, const int64_t *idx) {
  int64_t k = 0;
  for (int d = 0; d < rank; ++d) k = k * shape[d] + idx[d];
  return k;
}

/* z of one element, as the spec computes it. */
static double attn_z(const ref_attn_opts *o, double x, int64_t k, double slope, int64_t dist) {
  if (o->f64) {
    double z = o->scale * x;
    if (o->mask && o->mask_bool) z = o->mask[k] != 0 ? z : -INFINITY;
    else if (o->mask) z = z + o->mask[k];
    if (o->slopes) z = z - slope * (double)(dist < 0 ? -dist : dist);
    return z;
  }
  float z = (float)o->scale * (float)x;
  if (o->mask && o->mask_bool) z = o->mask[k] != 0 ? z : -INFINITY;
  else if (o->mask) z = z + (float)o->mask[k];
  if (o->slopes) {
    const float t = (float)slope * (float)(dist < 0 ? -dist : dist);
    z = z - t;
  }
  return z;
}

void ref_attn_softmax(const double *x, double *y, double *lse, int rank, const int64_t *shape,
                      int dim, int log, const ref_attn_opts *o) {
  const int64_t C = rank ? shape[dim] : 1;
  int64_t rows = 1;
  for (int d = 0; d < rank; ++d)
    if (d != dim) rows *= shape[d];
  double *z = (double *)malloc((size_t)(C ? C : 1) * sizeof *z);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t idx[16] = {0};
    if (rank) attn_index(rank, shape, dim, r, idx);
    const int64_t i = dim >= 1 ? idx[dim - 1] : 0, h = o->head_dim >= 0 ? idx[o->head_dim] : 0;
    const double slope = o->slopes ? o->slopes[h] : 0.0;
    const double sink = o->sinks ? o->sinks[h] : -INFINITY;
    int has_nan = isnan(sink), has_pinf = sink == INFINITY;
    double m = sink == sink && sink != INFINITY ? sink : -INFINITY;
    const int64_t k0 = rank ? attn_flat(rank, shape, idx) : 0;
    int64_t inner = 1;
    for (int d = dim + 1; d < rank; ++d) inner *= shape[d];
    for (int64_t j = 0; j < C; ++j) {
      const int64_t k = k0 + j * inner;
      double v = attn_z(o, x[k], k, slope, i + o->offset - j);
      if (o->causal && j > i + o->offset) v = -INFINITY;
      z[j] = v;
      if (isnan(v)) has_nan = 1;
      else if (v == INFINITY) has_pinf = 1;
      else if (v > m) m = v;
    }
    if (has_nan || has_pinf) {
      for (int64_t j = 0; j < C; ++j) y[k0 + j * inner] = NAN;
      if (lse) lse[r] = NAN;
      continue;
    }
    if (m == -INFINITY) { /* every z -inf, no sink */
      for (int64_t j = 0; j < C; ++j) y[k0 + j * inner] = o->safe ? (log ? -INFINITY : 0.0) : NAN;
      if (lse) lse[r] = -INFINITY;
      continue;
    }
    double s = sink > -INFINITY ? exp(sink - m) : 0.0;
    for (int64_t j = 0; j < C; ++j) s += exp(z[j] - m);
    const double ls = log1p(s - 1.0); /* s >= 1 */
    for (int64_t j = 0; j < C; ++j) {
      const double dd = z[j] - m;
      y[k0 + j * inner] = log ? dd - ls : exp(dd) / s;
    }
    if (lse) lse[r] = m + ls;
  }
  free(z);
}

void ref_alibi_slopes(double max_bias, int64_t H, double *slopes) {
  int64_t n = 1;
  while (n * 2 <= H) n *= 2;
  const double m0 = pow(2.0, -max_bias / (double)n), m1 = pow(2.0, -max_bias / (2.0 * (double)n));
  for (int64_t h = 0; h < H; ++h)
    slopes[h] = (float)(h < n ? pow(m0, (double)(h + 1)) : pow(m1, (double)(2 * (h - n) + 1)));
}

void ref_attn_backward(const double *y, const double *dy, double *dx, double *mag, double *dsinks,
                       double *dsmag, int rank, const int64_t *shape, int dim, int log, double scale,
                       int head_dim) {
  const int64_t C = rank ? shape[dim] : 1;
  int64_t rows = 1, inner = 1;
  for (int d = 0; d < rank; ++d)
    if (d != dim) rows *= shape[d];
  for (int d = dim + 1; d < rank; ++d) inner *= shape[d];
  if (dsinks) {
    const int64_t H = head_dim >= 0 ? shape[head_dim] : 1;
    for (int64_t h = 0; h < H; ++h) dsinks[h] = 0;
    if (dsmag)
      for (int64_t h = 0; h < H; ++h) dsmag[h] = 0;
  }
  for (int64_t r = 0; r < rows; ++r) {
    int64_t idx[16] = {0};
    if (rank) attn_index(rank, shape, dim, r, idx);
    const int64_t k0 = rank ? attn_flat(rank, shape, idx) : 0;
    const int64_t h = head_dim >= 0 ? idx[head_dim] : 0;
    double acc = 0, am = 0, ps = 0;
    for (int64_t j = 0; j < C; ++j) {
      const int64_t k = k0 + j * inner;
      const int masked = log ? y[k] == -INFINITY : y[k] == 0;
      if (masked) continue;
      const double t = log ? dy[k] : dy[k] * y[k];
      acc += t;
      am += fabs(t);
      ps += log ? exp(y[k]) : y[k];
    }
    for (int64_t j = 0; j < C; ++j) {
      const int64_t k = k0 + j * inner;
      const int masked = log ? y[k] == -INFINITY : y[k] == 0;
      if (masked) {
        dx[k] = 0;
        if (mag) mag[k] = 0;
      } else if (log) {
        dx[k] = scale * (dy[k] - exp(y[k]) * acc);
        if (mag) mag[k] = fabs(scale) * (fabs(dy[k]) + exp(y[k]) * am);
      } else {
        dx[k] = scale * (y[k] * (dy[k] - acc));
        if (mag) mag[k] = fabs(scale) * fabs(y[k]) * (fabs(dy[k]) + am);
      }
    }
    if (dsinks) dsinks[h] += -(1.0 - ps) * acc;
    if (dsinks && dsmag) dsmag[h] += (fabs(1.0 - ps) + (double)C) * am;
  }
}
