/* backward.cl: gradients of softmax and log_softmax from the forward output y
 * and the upstream gradient dy, along one axis:
 *   softmax:      dx_i = y_i * (dy_i - sum_j dy_j * y_j)
 *   log_softmax:  dx_i = dy_i - exp(y_i) * sum_j dy_j
 * (the log_softmax form is NOT dy - sum(y * dy): that is a known wrong
 * formula, and the tests check against finite differences to catch it).
 * With F_SAFE, a log_softmax row whose y is all -inf (a fully masked row in
 * safe mode) gets dx = 0, the gradient of a constant; a safe softmax row is
 * all 0 and gets dx = 0 from the formula itself.
 *
 * Layout and kernel shapes follow softmax.cl: y, dy and dx are each seen as
 * (outer, C, inner) with their own strides; y and dy have the input dtype TX,
 * dx the output dtype TY. dx may be exactly y or dy: every element is read
 * before the same element is written. Two passes: a reduction over the row,
 * then the writing pass. */

#define CLSM_BARGS                                                                            \
  __global const TX *y, ulong yoff, long yso, long ysc, long ysi, __global const TX *dy,    \
      ulong dyoff, long dyso, long dysc, long dysi, __global TY *dx, ulong dxoff, long dxso, \
      long dxsc, long dxsi, long outer, long C, long inner, uint flags

/* One row, any strides. */
static inline void clsm_brow_strided(__global const TX *yr, long ysc, __global const TX *dyr, long dysc,
                              __global TY *dxr, long dxsc, long C, uint flags) {
  ACC acc = 0, ymax = -INFINITY;
  for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
    ACC blk = 0;
    for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c) {
      ACC g = LOADX(dyr, c * dysc), v = LOADX(yr, c * ysc);
      blk += (flags & F_LOG) ? g : g * v;
      ymax = fmax(ymax, v);
    }
    acc += blk;
  }
  if ((flags & F_LOG) && (flags & F_SAFE) && ymax == -INFINITY) {
    for (long c = 0; c < C; ++c) STOREY(dxr, c * dxsc, (ACC)0);
    return;
  }
  for (long c = 0; c < C; ++c) {
    ACC g = LOADX(dyr, c * dysc), v = LOADX(yr, c * ysc);
    STOREY(dxr, c * dxsc, (flags & F_LOG) ? g - exp(v) * acc : v * (g - acc));
  }
}

__kernel void clsm_backward_strided(CLSM_BARGS) {
  long r = get_global_id(0);
  if (r >= outer * inner) return;
  long o = r / inner, i = r - o * inner;
  clsm_brow_strided(y + yoff + o * yso + i * ysi, ysc, dy + dyoff + o * dyso + i * dysi, dysc,
                    dx + dxoff + o * dxso + i * dxsi, dxsc, C, flags);
}

__kernel void clsm_backward_generic(__global const TX *y, ulong yoff, long ysc,
                                    __global const TX *dy, ulong dyoff, long dysc,
                                    __global TY *dx, ulong dxoff, long dxsc, long rows, long C,
                                    int nd, long8 shape, long8 yst, long8 dyst, long8 dxst,
                                    uint flags) {
  long r = get_global_id(0);
  if (r >= rows) return;
  long sh[8] = {shape.s0, shape.s1, shape.s2, shape.s3, shape.s4, shape.s5, shape.s6, shape.s7};
  long a[8] = {yst.s0, yst.s1, yst.s2, yst.s3, yst.s4, yst.s5, yst.s6, yst.s7};
  long b[8] = {dyst.s0, dyst.s1, dyst.s2, dyst.s3, dyst.s4, dyst.s5, dyst.s6, dyst.s7};
  long e[8] = {dxst.s0, dxst.s1, dxst.s2, dxst.s3, dxst.s4, dxst.s5, dxst.s6, dxst.s7};
  long yo = 0, dyo = 0, dxo = 0, rem = r;
  for (int d = 0; d < nd; ++d) {
    long q = rem / sh[d], k = rem - q * sh[d];
    yo += k * a[d];
    dyo += k * b[d];
    dxo += k * e[d];
    rem = q;
  }
  clsm_brow_strided(y + yoff + yo, ysc, dy + dyoff + dyo, dysc, dx + dxoff + dxo, dxsc, C, flags);
}

/* The row reduction of n contiguous elements, 16-wide: *acc = sum of dy y
 * (dy for log_softmax), folded every 256 elements, and *ymax = max of y. */
static inline void clsm_brow_reduce(__global const TX *yr, __global const TX *dyr, long n, uint flags,
                             ACC *acc, ACC *ymax) {
  ACCV tot = (ACCV)(0), mv = (ACCV)(-INFINITY);
  ACC a = 0, m = -INFINITY;
  long c = 0;
  ACCV blk = (ACCV)(0);
#define TERM_(i)                                                                             \
  {                                                                                          \
    ACCV g = VLOADX(0, dyr + (i)), v = VLOADX(0, yr + (i));                                  \
    blk += (flags & F_LOG) ? g : g * v;                                                      \
    mv = clsm_vmax16(mv, v);                                                                 \
  }
#define FOLD_() (tot += blk, blk = (ACCV)(0))
  CLSM_BLOCKED16(c, n, TERM_, FOLD_);
#undef TERM_
#undef FOLD_
  for (; c < n; ++c) {
    ACC g = LOADX(dyr, c), v = LOADX(yr, c);
    a += (flags & F_LOG) ? g : g * v;
    m = fmax(m, v);
  }
  *acc = a + clsm_hsum16(tot);
  *ymax = fmax(m, clsm_hmax16(mv));
}

/* The writing pass over n contiguous elements, given the row's sum and max
 * of y (a safe log_softmax row of y all -inf gets 0). */
static inline void clsm_brow_write(__global const TX *yr, __global const TX *dyr, __global TY *dxr, long n,
                            ACC acc, ACC ymax, uint flags) {
  const int zero = (flags & F_LOG) && (flags & F_SAFE) && ymax == -INFINITY;
  const ACCV a = (ACCV)(acc);
  long c = 0;
  for (; c + 16 <= n; c += 16) {
    ACCV g = VLOADX(0, dyr + c), v = VLOADX(0, yr + c);
    ACCV d = (flags & F_LOG) ? g - exp(v) * a : v * (g - a);
    VSTOREY(zero ? (ACCV)(0) : d, 0, dxr + c);
  }
  for (; c < n; ++c) {
    ACC g = LOADX(dyr, c), v = LOADX(yr, c);
    ACC d = (flags & F_LOG) ? g - exp(v) * acc : v * (g - acc);
    STOREY(dxr, c, zero ? (ACC)0 : d);
  }
}

/* Contiguous rows (ysc == dysc == dxsc == 1, inner == 1), 16-wide. */
__kernel void clsm_backward_rows_cpu(CLSM_BARGS) {
  long r = get_global_id(0);
  if (r >= outer) return;
  __global const TX *yr = y + yoff + r * yso;
  __global const TX *dyr = dy + dyoff + r * dyso;
  ACC acc, ymax;
  clsm_brow_reduce(yr, dyr, C, flags, &acc, &ymax);
  clsm_brow_write(yr, dyr, dx + dxoff + r * dxso, C, acc, ymax, flags);
}

/* A block of ib consecutive inner positions (yi/dyi/dxi strides 1). */
__kernel void clsm_backward_inner_cpu(CLSM_BARGS) {
  const int nv = clsm_inner_nv(flags);
  const long ib = 16L * nv;
  long o, i0;
  if (!clsm_inner_block(outer, inner, ib, &o, &i0)) return;
  __global const TX *yb = y + yoff + o * yso + i0 * ysi;
  __global const TX *dyb = dy + dyoff + o * dyso + i0 * dysi;
  __global TY *dxb = dx + dxoff + o * dxso + i0 * dxsi;
  if (i0 + ib > inner || ysi != 1 || dysi != 1 || dxsi != 1) {
    long n = min(ib, inner - i0);
    for (long i = 0; i < n; ++i)
      clsm_brow_strided(yb + i * ysi, ysc, dyb + i * dysi, dysc, dxb + i * dxsi, dxsc, C, flags);
    return;
  }
  ACCV acc[NV_MAX], mx[NV_MAX];
  for (int k = 0; k < nv; ++k) {
    acc[k] = (ACCV)(0);
    mx[k] = (ACCV)(-INFINITY);
  }
  for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
    ACCV blk[NV_MAX];
    for (int k = 0; k < nv; ++k) blk[k] = (ACCV)(0);
    for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c)
      for (int k = 0; k < nv; ++k) {
        ACCV g = VLOADX(k, dyb + c * dysc), v = VLOADX(k, yb + c * ysc);
        blk[k] += (flags & F_LOG) ? g : g * v;
        mx[k] = clsm_vmax16(mx[k], v);
      }
    for (int k = 0; k < nv; ++k) acc[k] += blk[k];
  }
  const int safe_log = (flags & F_LOG) && (flags & F_SAFE);
  for (long c = 0; c < C; ++c)
    for (int k = 0; k < nv; ++k) {
      ACCV g = VLOADX(k, dyb + c * dysc), v = VLOADX(k, yb + c * ysc);
      ACCV d = (flags & F_LOG) ? g - exp(v) * acc[k] : v * (g - acc[k]);
      if (safe_log) d = select(d, (ACCV)(0), mx[k] == (ACCV)(-INFINITY));
      VSTOREY(d, k, dxb + c * dxsc);
    }
}

/* Rows of L lanes each, n / L rows a work-group (L a power of two up to
 * the group size n, from the flags, as in clsm_softmax_rows_wg); la and lm
 * hold each lane's partial sum and max, merged per row by a tree of
 * log2(L) steps. Rows of at most L * BWD_VPT elements keep y and dy in
 * registers (one read of each); longer rows read them again in the writing
 * pass. Lanes of a row past the last take part in the barriers only. */

__kernel void clsm_backward_rows_wg(CLSM_BARGS, __local ACC *la, __local ACC *lm) {
  const clsm_seg g = clsm_row_seg(flags);
  const int l = g.l, L = g.L, j = g.j;
  const int live = g.r < outer * inner;
  const long o = g.r / inner, i = g.r - o * inner;
  __global const TX *yr = y + yoff + o * yso + i * ysi;
  __global const TX *dyr = dy + dyoff + o * dyso + i * dysi;
  __global TY *dxr = dx + dxoff + o * dxso + i * dxsi;
  const int cached = C <= (long)L * BWD_VPT;
  ACC vs[BWD_VPT], gs[BWD_VPT];
  ACC acc = 0, ymax = -INFINITY;
  if (cached) {
#pragma unroll
    for (int k = 0; k < BWD_VPT; ++k) {
      long c = j + (long)k * L;
      const int in = live && c < C;
      gs[k] = in ? LOADX(dyr, c * dysc) : (ACC)0;
      vs[k] = in ? LOADX(yr, c * ysc) : (ACC)(-INFINITY);
      acc += (flags & F_LOG) ? gs[k] : gs[k] * (in ? vs[k] : (ACC)0);
      ymax = fmax(ymax, vs[k]);
    }
  } else {
    for (long c = j; live && c < C; c += L) {
      ACC g = LOADX(dyr, c * dysc), v = LOADX(yr, c * ysc);
      acc += (flags & F_LOG) ? g : g * v;
      ymax = fmax(ymax, v);
    }
  }
  la[l] = acc;
  lm[l] = ymax;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int h = L / 2; h > 0; h /= 2) {
    if (j < h) {
      la[l] += la[l + h];
      lm[l] = fmax(lm[l], lm[l + h]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (!live) return;
  acc = la[l - j];
  int zero = (flags & F_LOG) && (flags & F_SAFE) && lm[l - j] == -INFINITY;
  if (cached) {
#pragma unroll
    for (int k = 0; k < BWD_VPT; ++k) {
      long c = j + (long)k * L;
      ACC d = (flags & F_LOG) ? gs[k] - exp(vs[k]) * acc : vs[k] * (gs[k] - acc);
      if (c < C) STOREY(dxr, c * dxsc, zero ? (ACC)0 : d);
    }
    return;
  }
  for (long c = j; c < C; c += L) {
    ACC g = LOADX(dyr, c * dysc), v = LOADX(yr, c * ysc);
    ACC d = (flags & F_LOG) ? g - exp(v) * acc : v * (g - acc);
    STOREY(dxr, c * dxsc, zero ? (ACC)0 : d);
  }
}

/* Few long contiguous rows (CPU family), as clsm_softmax_split_*: each row
 * is split into `chunks` chunks of `chunk` elements so that every core has
 * work. clsm_backward_split_partials: work-item (r, k) stores its chunk's
 * sum (dy y, or dy for log_softmax) and max of y in part[2w], part[2w+1];
 * clsm_backward_split_write: work-item (r, k) adds the row's sums in chunk
 * order (every work-item of a row gets the same total) and writes its chunk
 * of dx. */
__kernel void clsm_backward_split_partials(__global const TX *y, ulong yoff, long yso,
                                           __global const TX *dy, ulong dyoff, long dyso,
                                           __global ACC *part, long rows, long C, long chunk,
                                           long chunks, uint flags) {
  long w = get_global_id(0);
  if (w >= rows * chunks) return;
  long r = w / chunks, k = w - r * chunks;
  long c0 = k * chunk;
  ACC acc, ymax;
  clsm_brow_reduce(y + yoff + r * yso + c0, dy + dyoff + r * dyso + c0, min(chunk, C - c0), flags,
                   &acc, &ymax);
  part[2 * w] = acc;
  part[2 * w + 1] = ymax;
}

__kernel void clsm_backward_split_write(__global const TX *y, ulong yoff, long yso,
                                        __global const TX *dy, ulong dyoff, long dyso,
                                        __global TY *dx, ulong dxoff, long dxso,
                                        __global const ACC *part, long rows, long C, long chunk,
                                        long chunks, uint flags) {
  long w = get_global_id(0);
  if (w >= rows * chunks) return;
  long r = w / chunks, k = w - r * chunks;
  ACC acc = 0, ymax = -INFINITY;
  for (long j = 0; j < chunks; ++j) {
    acc += part[2 * (r * chunks + j)];
    ymax = fmax(ymax, part[2 * (r * chunks + j) + 1]);
  }
  long c0 = k * chunk;
  clsm_brow_write(y + yoff + r * yso + c0, dy + dyoff + r * dyso + c0, dx + dxoff + r * dxso + c0,
                  min(chunk, C - c0), acc, ymax, flags);
}
