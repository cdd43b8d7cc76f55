/* softmax.cl: softmax and log_softmax forward along one axis.
 *
 * Layout: a tensor seen along the softmax axis is (outer, C, inner); element
 * (o, c, i) of x is at x[xoff + o*xso + c*xsc + i*xsi] (likewise y). Each
 * (o, i) is one independent row of C elements. Every kernel takes the same
 * arguments, so the host sets them once whatever the plan:
 *   (x, xoff, xso, xsc, xsi, y, yoff, yso, ysc, ysi, outer, C, inner, flags)
 * y may be x (in place): each kernel reads an element before it writes it,
 * and only ever writes elements of the row it owns.
 *
 * Numerics:
 *   softmax_i     = exp(x_i - m) / s,    m = max_j x_j, s = sum_j exp(x_j - m)
 *   log_softmax_i = (x_i - m) - log(s)
 * Subtracting the max keeps exp from overflowing (a row of [1000, 0, -1000]
 * is exact); x - m - log s keeps the log-probabilities of huge logits finite,
 * where log(softmax) would give -inf. exp is the built-in, accurate one, and
 * softmax folds the rounding error of x - m back in (clsm_exp_sub).
 * The max is found with fmax, which skips NaN; a NaN or +inf element then
 * makes s NaN (exp(NaN), exp(inf - inf)), so the whole row is NaN like PyTorch.
 * An all -inf row has m = -inf and exp(-inf - -inf) = NaN: NaN again. With
 * F_SAFE the max of such a row is taken as 0, so every exp is 0 and s == 0,
 * which is possible in no other case (the max element contributes 1): s == 0
 * selects the safe result (0, or -inf for log_softmax).
 *
 * Kernel families (the host picks one per device and shape):
 *   clsm_softmax_rows_cpu    CPU, contiguous last axis (xsc == ysc == 1,
 *                            inner == 1): a work-item owns a row and loops
 *                            with vload16. Softmax stores exp(x - m) and then
 *                            scales the cached row: one exp per element.
 *   clsm_softmax_inner_cpu   CPU, inner > 1 with xsi == ysi == 1: a work-item
 *                            owns 16*CLSM_INNER_VECTORS consecutive inner
 *                            positions of one outer index and walks C with
 *                            stride xsc: long contiguous runs at each step.
 *   clsm_softmax_rows_wg     GPU: a work-group per row; each lane keeps an
 *                            online (max, sum) over a strided subset, then a
 *                            local-memory tree merges the pairs.
 *   clsm_softmax_strided     any strides: a work-item per row, scalar walk
 *                            (on a GPU, neighbours differ in i: coalesced).
 */

#define CLSM_ARGS                                                            \
  __global const T *x, ulong xoff, long xso, long xsc, long xsi, __global T *y, \
      ulong yoff, long yso, long ysc, long ysi, long outer, long C, long inner, uint flags

/* Sums over C are accumulated in blocks of SUM_BLOCK terms, so the rounding
 * error grows with SUM_BLOCK + C / SUM_BLOCK instead of C. */
#define SUM_BLOCK 32

/* The max a row's sum is taken against: 0 for a safe all -inf row. */
inline float clsm_ref_max(float m, uint flags) {
  return ((flags & F_SAFE) && m == -INFINITY) ? 0.0f : m;
}
/* 1/s, or 0 for the safe all -inf row (s == 0). */
inline float clsm_inv_sum(float s) { return s == 0.0f ? 0.0f : 1.0f / s; }
/* log(s), or 0 for the safe all -inf row, so that x - m - log s = -inf. */
inline float clsm_log_sum(float s) { return s == 0.0f ? 0.0f : log(s); }

/* One row, any strides: three scalar passes (max, sum, write). */
inline void clsm_row_strided(__global const T *xr, long xsc, __global T *yr, long ysc, long C,
                             uint flags) {
  float m = -INFINITY;
  for (long c = 0; c < C; ++c) m = fmax(m, LOAD(xr, c * xsc));
  m = clsm_ref_max(m, flags);
  float s = 0.0f;
  if (flags & F_LOG) {
    for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
      float blk = 0.0f;
      for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c) blk += exp(LOAD(xr, c * xsc) - m);
      s += blk;
    }
    float ls = clsm_log_sum(s);
    for (long c = 0; c < C; ++c) STORE(yr, c * ysc, (LOAD(xr, c * xsc) - m) - ls);
  } else {
    for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
      float blk = 0.0f;
      for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c) {
        float e = clsm_exp_sub(LOAD(xr, c * xsc), m);
        blk += e;
        STORE(yr, c * ysc, e);
      }
      s += blk;
    }
    float inv = clsm_inv_sum(s);
    for (long c = 0; c < C; ++c) STORE(yr, c * ysc, LOAD(yr, c * ysc) * inv);
  }
}

__kernel void clsm_softmax_strided(CLSM_ARGS) {
  long r = get_global_id(0);
  if (r >= outer * inner) return;
  long o = r / inner, i = r - o * inner;
  clsm_row_strided(x + xoff + o * xso + i * xsi, xsc, y + yoff + o * yso + i * ysi, ysc, C, flags);
}

/* Contiguous rows, vectorised. Sums are accumulated in 16 lanes and folded
 * every 256 elements, so the rounding error grows with C/256 + 16, not C. */
__kernel void clsm_softmax_rows_cpu(CLSM_ARGS) {
  long r = get_global_id(0);
  if (r >= outer) return;
  __global const T *xr = x + xoff + r * xso;
  __global T *yr = y + yoff + r * yso;

  float16 mv = (float16)(-INFINITY);
  long c = 0;
  for (; c + 16 <= C; c += 16) mv = fmax(mv, vload16(0, xr + c));
  float m = clsm_hmax16(mv);
  for (; c < C; ++c) m = fmax(m, xr[c]);
  m = clsm_ref_max(m, flags);

  float16 tot = (float16)(0.0f);
  float s = 0.0f;
  if (flags & F_LOG) {
    for (c = 0; c + 256 <= C; c += 256) {
      float16 blk = (float16)(0.0f);
      for (int k = 0; k < 256; k += 16) blk += exp(vload16(0, xr + c + k) - m);
      tot += blk;
    }
    float16 blk = (float16)(0.0f);
    for (; c + 16 <= C; c += 16) blk += exp(vload16(0, xr + c) - m);
    tot += blk;
    for (; c < C; ++c) s += exp(xr[c] - m);
    s += clsm_hsum16(tot);
    float ls = clsm_log_sum(s);
    for (c = 0; c + 16 <= C; c += 16) vstore16((vload16(0, xr + c) - m) - ls, 0, yr + c);
    for (; c < C; ++c) yr[c] = (xr[c] - m) - ls;
  } else {
    for (c = 0; c + 256 <= C; c += 256) {
      float16 blk = (float16)(0.0f);
      for (int k = 0; k < 256; k += 16) {
        float16 e = clsm_exp_sub16(vload16(0, xr + c + k), (float16)(m));
        vstore16(e, 0, yr + c + k);
        blk += e;
      }
      tot += blk;
    }
    float16 blk = (float16)(0.0f);
    for (; c + 16 <= C; c += 16) {
      float16 e = clsm_exp_sub16(vload16(0, xr + c), (float16)(m));
      vstore16(e, 0, yr + c);
      blk += e;
    }
    tot += blk;
    for (; c < C; ++c) {
      float e = clsm_exp_sub(xr[c], m);
      yr[c] = e;
      s += e;
    }
    s += clsm_hsum16(tot);
    float inv = clsm_inv_sum(s);
    for (c = 0; c + 16 <= C; c += 16) vstore16(vload16(0, yr + c) * inv, 0, yr + c);
    for (; c < C; ++c) yr[c] *= inv;
  }
}

#define NV CLSM_INNER_VECTORS
#define IB (16 * NV)

/* A block of IB consecutive inner positions of one outer index; the host
 * launches outer * ceil(inner / IB) work-items. Partial blocks and strided
 * inner dims fall back to the scalar row walk. */
__kernel void clsm_softmax_inner_cpu(CLSM_ARGS) {
  long blocks = (inner + IB - 1) / IB;
  long w = get_global_id(0);
  if (w >= outer * blocks) return;
  long o = w / blocks, i0 = (w - o * blocks) * IB;
  __global const T *xb = x + xoff + o * xso + i0 * xsi;
  __global T *yb = y + yoff + o * yso + i0 * ysi;
  if (i0 + IB > inner || xsi != 1 || ysi != 1) {
    long n = min((long)IB, inner - i0);
    for (long i = 0; i < n; ++i) clsm_row_strided(xb + i * xsi, xsc, yb + i * ysi, ysc, C, flags);
    return;
  }
  float16 m[NV], s[NV];
  for (int k = 0; k < NV; ++k) {
    m[k] = (float16)(-INFINITY);
    s[k] = (float16)(0.0f);
  }
  for (long c = 0; c < C; ++c)
    for (int k = 0; k < NV; ++k) m[k] = fmax(m[k], vload16(k, xb + c * xsc));
  if (flags & F_SAFE)
    for (int k = 0; k < NV; ++k) m[k] = select(m[k], (float16)(0.0f), m[k] == (float16)(-INFINITY));
  if (flags & F_LOG) {
    for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
      float16 blk[NV];
      for (int k = 0; k < NV; ++k) blk[k] = (float16)(0.0f);
      for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c)
        for (int k = 0; k < NV; ++k) blk[k] += exp(vload16(k, xb + c * xsc) - m[k]);
      for (int k = 0; k < NV; ++k) s[k] += blk[k];
    }
    for (int k = 0; k < NV; ++k)
      s[k] = select(log(s[k]), (float16)(0.0f), s[k] == (float16)(0.0f));
    for (long c = 0; c < C; ++c)
      for (int k = 0; k < NV; ++k)
        vstore16((vload16(k, xb + c * xsc) - m[k]) - s[k], k, yb + c * ysc);
  } else {
    for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
      float16 blk[NV];
      for (int k = 0; k < NV; ++k) blk[k] = (float16)(0.0f);
      for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c)
        for (int k = 0; k < NV; ++k) {
          float16 e = clsm_exp_sub16(vload16(k, xb + c * xsc), m[k]);
          vstore16(e, k, yb + c * ysc);
          blk[k] += e;
        }
      for (int k = 0; k < NV; ++k) s[k] += blk[k];
    }
    for (int k = 0; k < NV; ++k)
      s[k] = select((float16)(1.0f) / s[k], (float16)(0.0f), s[k] == (float16)(0.0f));
    for (long c = 0; c < C; ++c)
      for (int k = 0; k < NV; ++k) vstore16(vload16(k, yb + c * ysc) * s[k], k, yb + c * ysc);
  }
}

/* A work-group per row; lm and ls hold one (max, sum) pair per lane. The
 * work-group size is a power of two. */
__kernel void clsm_softmax_rows_wg(CLSM_ARGS, __local float *lm, __local float *ls) {
  long r = get_group_id(0);
  int l = (int)get_local_id(0), n = (int)get_local_size(0);
  long o = r / inner, i = r - o * inner;
  __global const T *xr = x + xoff + o * xso + i * xsi;
  __global T *yr = y + yoff + o * yso + i * ysi;

  float m = -INFINITY, s = 0.0f;
  for (long c = l; c < C; c += n) clsm_online_add(&m, &s, LOAD(xr, c * xsc));
  lm[l] = m;
  ls[l] = s;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int h = n / 2; h > 0; h /= 2) {
    if (l < h) {
      float mm = lm[l], ss = ls[l];
      clsm_online_merge(&mm, &ss, lm[l + h], ls[l + h]);
      lm[l] = mm;
      ls[l] = ss;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  m = lm[0];
  s = clsm_finish_sum(m, ls[0]);
  if ((flags & F_SAFE) && m == -INFINITY && !isnan(s)) {
    m = 0.0f;
    s = 0.0f;
  }
  if (flags & F_LOG) {
    float lsum = clsm_log_sum(s);
    for (long c = l; c < C; c += n) STORE(yr, c * ysc, (LOAD(xr, c * xsc) - m) - lsum);
  } else {
    float inv = clsm_inv_sum(s);
    for (long c = l; c < C; c += n) STORE(yr, c * ysc, clsm_exp_sub(LOAD(xr, c * xsc), m) * inv);
  }
}
