/* softmax.cl: softmax and log_softmax forward along one axis.
 *
 * Layout: a tensor seen along the softmax axis is (outer, C, inner); element
 * (o, c, i) of x is at x[xoff + o*xso + c*xsc + i*xsi] (likewise y). Each
 * (o, i) is one independent row of C elements. Every kernel but the generic
 * one takes the same arguments, so the host sets them once whatever the plan:
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
 * softmax into float32 / float64 folds the rounding error of x - m back in
 * (clsm_exp_sub). The max skips NaN (fmax, or clsm_vmax16 in vector
 * passes); a NaN or +inf element then makes s NaN (exp(NaN),
 * exp(inf - inf)), so the whole row is NaN like PyTorch.
 * An all -inf row has m = -inf and exp(-inf - -inf) = NaN: NaN again. With
 * F_SAFE the max of such a row is taken as 0, so every exp is 0 and s == 0,
 * which is possible in no other case (the max element contributes 1): s == 0
 * selects the safe result (0, or -inf for log_softmax).
 * Softmax either stores exp(x - m) in y and rescales it (one exp per element;
 * y must hold ACC exactly and the row should stay in cache) or, with
 * F_RECOMPUTE, computes exp again in the writing pass (16-bit outputs are
 * then rounded once; long rows are written once).
 *
 * Kernels (the host picks one per device and shape):
 *   clsm_softmax_rows_cpu    CPU, contiguous last axis (xsc == ysc == 1,
 *                            inner == 1): a work-item owns a row and loops
 *                            over 16-wide vectors.
 *   clsm_softmax_inner_cpu   CPU, inner > 1 with xsi == ysi == 1: a work-item
 *                            owns 16 * nv (up to 16*CLSM_INNER_VECTORS) inner
 *                            positions of one outer index and walks C with
 *                            stride xsc: long contiguous runs at each step.
 *   clsm_softmax_rows_wg     GPU: rows of L lanes, n / L rows a work-group;
 *                            each lane keeps an online (max, sum) over a
 *                            strided subset, then a local-memory tree merges
 *                            each row's pairs.
 *   clsm_softmax_strided     any strides: a work-item per row, scalar walk
 *                            (on a GPU, neighbours differ in i: coalesced).
 *   clsm_softmax_generic     any view at all: rows are found by decomposing
 *                            the row index over up to 8 dims.
 */

#define CLSM_ARGS                                                            \
  __global const TX *x, ulong xoff, long xso, long xsc, long xsi, __global TY *y, \
      ulong yoff, long yso, long ysc, long ysi, long outer, long C, long inner, uint flags

/* One row, any strides: scalar passes (max, sum, write). */
static inline void clsm_row_strided(__global const TX *xr, long xsc, __global TY *yr, long ysc, long C,
                             uint flags) {
  ACC m = -INFINITY;
  for (long c = 0; c < C; ++c) m = fmax(m, LOADX(xr, c * xsc));
  m = clsm_ref_max(m, flags);
  ACC s = 0;
  int keep = !(flags & (F_LOG | F_RECOMPUTE));
  for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
    ACC blk = 0;
    for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c) {
      ACC e = clsm_exp_sub(LOADX(xr, c * xsc), m);
      blk += e;
      if (keep) STOREY(yr, c * ysc, e);
    }
    s += blk;
  }
  if (flags & F_LOG) {
    ACC ls = clsm_log_sum(s);
    for (long c = 0; c < C; ++c) STOREY(yr, c * ysc, (LOADX(xr, c * xsc) - m) - ls);
  } else if (keep) {
    ACC inv = clsm_inv_sum(s);
    for (long c = 0; c < C; ++c) STOREY(yr, c * ysc, LOADY(yr, c * ysc) * inv);
  } else {
    ACC inv = clsm_inv_sum(s);
    for (long c = 0; c < C; ++c) STOREY(yr, c * ysc, clsm_exp_sub(LOADX(xr, c * xsc), m) * inv);
  }
}

__kernel void clsm_softmax_strided(CLSM_ARGS) {
  long r = get_global_id(0);
  if (r >= outer * inner) return;
  long o = r / inner, i = r - o * inner;
  clsm_row_strided(x + xoff + o * xso + i * xsi, xsc, y + yoff + o * yso + i * ysi, ysc, C, flags);
}

/* Any view: row r is decomposed over the `nd` non-axis dims (innermost
 * first in shape/xst/yst). */
__kernel void clsm_softmax_generic(__global const TX *x, ulong xoff, long xsc, __global TY *y,
                                   ulong yoff, long ysc, long rows, long C, int nd, long8 shape,
                                   long8 xst, long8 yst, uint flags) {
  long r = get_global_id(0);
  if (r >= rows) return;
  long sh[8] = {shape.s0, shape.s1, shape.s2, shape.s3, shape.s4, shape.s5, shape.s6, shape.s7};
  long xs[8] = {xst.s0, xst.s1, xst.s2, xst.s3, xst.s4, xst.s5, xst.s6, xst.s7};
  long ys[8] = {yst.s0, yst.s1, yst.s2, yst.s3, yst.s4, yst.s5, yst.s6, yst.s7};
  long xo = 0, yo = 0, rem = r;
  for (int d = 0; d < nd; ++d) {
    long q = rem / sh[d], k = rem - q * sh[d];
    xo += k * xs[d];
    yo += k * ys[d];
    rem = q;
  }
  clsm_row_strided(x + xoff + xo, xsc, y + yoff + yo, ysc, C, flags);
}

/* Contiguous rows, vectorised. Sums are accumulated in 16 lanes and folded
 * every 256 elements, so the rounding error grows with C/256 + 16, not C.
 * Softmax without F_RECOMPUTE keeps exp(x - m) until it is scaled (KEEP_*,
 * common.cl). */

/* Sum of exp(x - mref) over n contiguous elements (16 lanes, folded every
 * 256), with each exp also written to y when `keep`: a block of a long row
 * or a chunk of a split row, mref its max (0 for a block of -inf, whose
 * elements then give 0, and a NaN among them NaN). */
static inline ACC clsm_exp_sum(__global const TX *xr, __global TY *yr, long n, ACC mref, int keep) {
  const ACCV mm = (ACCV)(mref);
  ACCV tot = (ACCV)(0);
  ACC s = 0;
  long c = 0;
  ACCV blk = (ACCV)(0);
#define TERM_(i)                                                                             \
  {                                                                                          \
    ACCV v = VLOADX(0, xr + (i));                                                            \
    ACCV e = keep ? clsm_exp_sub16(v, mm) : clsm_exp16_cpu(v - mm);                          \
    if (keep) VSTOREY(e, 0, yr + (i));                                                       \
    blk += e;                                                                                \
  }
/* FOLD_ serves clsm_exp_sum and clsm_softmax_rows_cpu below. */
#define FOLD_() (tot += blk, blk = (ACCV)(0))
  CLSM_BLOCKED16(c, n, TERM_, FOLD_);
#undef TERM_
  for (; c < n; ++c) {
    ACC e = clsm_exp_sub(LOADX(xr, c), mref);
    if (keep) STOREY(yr, c, e);
    s += e;
  }
  return s + clsm_hsum16(tot);
}

/* y *= f over n contiguous elements (the kept exps of a block or chunk). */
static inline void clsm_scale_y(__global TY *yr, long n, ACC f) {
  long c = 0;
  for (; c + 16 <= n; c += 16) VSTOREY(VLOADY(0, yr + c) * f, 0, yr + c);
  for (; c < n; ++c) STOREY(yr, c, LOADY(yr, c) * f);
}

#ifdef Y_HOLDS_ACC
/* Softmax of a row too long to stay in cache (F_BLOCKS, float32 / float64
 * output): blocks of B elements that do stay. Each block's max bm is found,
 * exp(x - bm) is written to y while the block is still in cache and summed,
 * and (bm, sum) is folded into the row's online pair (M, S); a last pass
 * scales each block by exp(bm - M) / S. One exp per element (the recompute
 * path takes two) for one more pass over y. At most ROW_BLOCKS blocks: B
 * grows with C past 64 * 4096. A block of -inf has sum 0 and writes 0 (a
 * NaN among its -inf makes the sum NaN); an all -inf row then ends with exp(-inf - -inf) = NaN as the factor (0 with
 * F_SAFE, whose inverse sum is 0), NaN and +inf elements make S NaN. */
#define ROW_BLOCKS 64
static inline void clsm_row_blocks(__global const TX *xr, __global TY *yr, long C, uint flags) {
  const long B = max(4096L, ((C + ROW_BLOCKS - 1) / ROW_BLOCKS + 255) / 256 * 256);
  ACC bmax[ROW_BLOCKS];
  ACC M = -INFINITY, S = 0;
  int nb = 0;
  for (long b0 = 0; b0 < C; b0 += B, ++nb) {
    const long n = min(C, b0 + B) - b0;
    const ACC bm = clsm_row_max(xr + b0, n);
    bmax[nb] = bm;
    const ACC bs = clsm_exp_sum(xr + b0, yr + b0, n, bm == -INFINITY ? (ACC)0 : bm, 1);
    clsm_online_merge(&M, &S, bm, bs);
  }
  M = clsm_ref_max(M, flags);
  const ACC inv = clsm_inv_sum(S);
  nb = 0;
  for (long b0 = 0; b0 < C; b0 += B, ++nb)
    clsm_scale_y(yr + b0, min(C, b0 + B) - b0, clsm_exp_sub(bmax[nb], M) * inv);
}
#endif

__kernel void clsm_softmax_rows_cpu(CLSM_ARGS, __local ACC *scratch) {
  long r = get_global_id(0);
  if (r >= outer) return;
  __global const TX *xr = x + xoff + r * xso;
  __global TY *yr = y + yoff + r * yso;
  __local ACC *sr = scratch + get_local_id(0) * C;
  (void)sr;
#ifdef Y_HOLDS_ACC
  if (flags & F_BLOCKS) {
    clsm_row_blocks(xr, yr, C, flags);
    return;
  }
#endif

  long c;
  if ((flags & F_LOG) && C >= 16 * ONLINE_CHUNK) {
    /* Rows of a chunk or more: one read for (m, s), one to write. */
    ACC m, s;
#ifdef Y_HOLDS_ACC
    /* Rows that stay in cache get their whole vectors copied to y while
     * they are read, so the writing pass reads y, whose lines it then owns. */
    __global TY *ky = (flags & F_RECOMPUTE) ? (__global TY *)0 : yr;
#else
    __global TY *ky = (__global TY *)0;
#endif
    clsm_row_online(xr, ky, C, &m, &s);
    if (m == -INFINITY) {
      m = clsm_ref_max(m, flags);
      if (m == -INFINITY) s = NAN; /* exp(-inf - -inf), as the two-pass form */
    }
    const ACCV mm = (ACCV)(m);
    const ACCV ls = (ACCV)(clsm_log_sum_cpu(s));
    if (ky)
      for (c = 0; c + 16 <= C; c += 16) VSTOREY((VLOADY(0, yr + c) - mm) - ls, 0, yr + c);
    else
      for (c = 0; c + 16 <= C; c += 16) VSTOREY((VLOADX(0, xr + c) - mm) - ls, 0, yr + c);
    for (; c < C; ++c) STOREY(yr, c, (LOADX(xr, c) - m) - ls.s0);
    return;
  }
  const ACC m = clsm_ref_max(clsm_row_max(xr, C), flags);
  const ACCV mm = (ACCV)(m);

  int keep = !(flags & (F_LOG | F_RECOMPUTE));
  ACCV tot = (ACCV)(0);
  ACC s = 0;
  ACCV blk = (ACCV)(0);
  c = 0;
  /* Rows that stay in cache: while this row's exps are computed, the next
   * row's x and y lines are fetched. */
  __global const TX *nx = xr + xso;
  __global TY *ny = yr + yso;
  const int ahead = !(flags & F_RECOMPUTE);
  (void)nx;
  (void)ny;
  (void)ahead;
  if (flags & F_LOG) {
#define TERM_(i)                                                                             \
  {                                                                                          \
    if (ahead) CLSM_PREFETCH(nx + (i));                                                      \
    if (ahead) CLSM_PREFETCHW(ny + (i));                                                     \
    blk += exp(VLOADX(0, xr + (i)) - mm);                                                    \
  }
    CLSM_BLOCKED16(c, C, TERM_, FOLD_);
#undef TERM_
    for (; c < C; ++c) s += exp(LOADX(xr, c) - m);
  } else {
#define TERM_(i)                                                                             \
  {                                                                                          \
    if (ahead) CLSM_PREFETCH(nx + (i));                                                      \
    if (ahead) CLSM_PREFETCHW(ny + (i));                                                     \
    ACCV e = clsm_exp_sub16(VLOADX(0, xr + (i)), mm);                                        \
    if (keep) KEEP_VSTORE(e, (i));                                                           \
    blk += e;                                                                                \
  }
    CLSM_BLOCKED16(c, C, TERM_, FOLD_);
#undef TERM_
    for (; c < C; ++c) {
      ACC e = clsm_exp_sub(LOADX(xr, c), m);
      if (keep) KEEP_STORE(e, c);
      s += e;
    }
  }
#undef FOLD_
  s += clsm_hsum16(tot);

  if (flags & F_LOG) {
    const ACCV ls = (ACCV)(clsm_log_sum_cpu(s));
    for (c = 0; c + 16 <= C; c += 16) VSTOREY((VLOADX(0, xr + c) - mm) - ls, 0, yr + c);
    for (; c < C; ++c) STOREY(yr, c, (LOADX(xr, c) - m) - ls.s0);
  } else if (keep) {
    const ACC inv = clsm_inv_sum(s);
    for (c = 0; c + 16 <= C; c += 16) VSTOREY(KEEP_VLOAD(c) * inv, 0, yr + c);
    for (; c < C; ++c) STOREY(yr, c, KEEP_LOAD(c) * inv);
  } else {
    const ACC inv = clsm_inv_sum(s);
    for (c = 0; c + 16 <= C; c += 16)
      VSTOREY(clsm_exp_sub16(VLOADX(0, xr + c), mm) * inv, 0, yr + c);
    for (; c < C; ++c) STOREY(yr, c, clsm_exp_sub(LOADX(xr, c), m) * inv);
  }
}


/* A block's C x nv vectors through a tile in local memory (F_TILE). The
 * rows of a non-last axis lie a stride apart; those of a block a page or
 * more apart fall into the same cache sets, so a second pass over them
 * would come from memory. The tile is contiguous and stays in cache. x is
 * read once, INNER_CHUNK rows of a vector column at a time into registers,
 * the next chunk prefetched. Each chunk's maxima move the lanes' reference
 * and rescale their sums (clsm_move_ref: a lazy reference, below), its
 * exps against the reference are summed, and the tile receives the exps
 * (softmax, which records the chunk's reference after the rows) or x
 * (log-softmax): one store to the tile an element. The writing pass, row
 * by row, scales a softmax chunk by exp(ref - m) / s (m the last
 * reference) and gives log-softmax (x - m) - log s: x is read once, y
 * written once, exp taken about once per element. An all -inf lane keeps
 * m = -inf and s = 0: with F_SAFE m becomes 0 and the lane 0 / -inf,
 * otherwise exp(-inf - -inf) and -inf - -inf make it NaN, as in the
 * two-pass form. */
/* Softmax's reference in a tile moves only when a chunk's max passes it by
 * more than LAZY_SLACK (an exp is then at most e^16, a sum of C of them far
 * from overflow), so that most chunks need no rescaling exp: y =
 * exp(x - ref) / sum is the same for any reference, to the rounding of exp.
 * log-softmax's reference moves by more than LOG_SLACK: its output (x -
 * ref) - log s then cancels a log s of at most log C + 1, rounding as
 * (x - m) - log s does (a slack of 16 would cancel a log s near 16, an
 * absolute error near 1e-6 instead of 1e-7). */
#define LAZY_SLACK 16
#define LOG_SLACK 1
static inline void clsm_inner_tile(__global const TX *xb, long xsc, __global TY *yb, long ysc, long C,
                            int nv, __local ACCV *t, uint flags) {
  __local ACCV *rec = t + C * nv;
  ACCV m[NV_MAX], s[NV_MAX];
  for (int k = 0; k < nv; ++k) {
    m[k] = (ACCV)(-INFINITY);
    s[k] = (ACCV)(0);
  }
  const ACC slack = (flags & F_LOG) ? (ACC)LOG_SLACK : (ACC)LAZY_SLACK;
  for (long c = 0; c < min(C, (long)INNER_CHUNK); ++c)
    for (int k = 0; k < nv; ++k) CLSM_PREFETCH(xb + c * xsc + 16 * k);
  for (long c0 = 0, j = 0; c0 < C; c0 += INNER_CHUNK, ++j) {
    const long n = min((long)INNER_CHUNK, C - c0), cp = c0 + INNER_CHUNK;
    for (int k = 0; k < nv; ++k) {
      /* The next chunk to cache: its loads then wait less than this
       * chunk's exps take. */
      for (long c = cp; c < min(C, cp + INNER_CHUNK); ++c) CLSM_PREFETCH(xb + c * xsc + 16 * k);
      ACCV v[INNER_CHUNK];
      ACCV cm = (ACCV)(-INFINITY);
      for (int i = 0; i < n; ++i) {
        v[i] = VLOADX(k, xb + (c0 + i) * xsc);
        cm = clsm_vmax16(cm, v[i]);
      }
      ACCV mk = m[k], sk = s[k], blk = (ACCV)(0);
      const ACCV ref = clsm_move_ref(cm, &mk, &sk, slack);
      if (flags & F_LOG) {
        for (int i = 0; i < n; ++i) {
          t[(c0 + i) * nv + k] = v[i];
          blk += clsm_exp16_cpu(v[i] - ref);
        }
      } else {
        for (int i = 0; i < n; ++i) {
          const ACCV e = clsm_exp_sub16(v[i], ref);
          t[(c0 + i) * nv + k] = e;
          blk += e;
        }
      }
      rec[j * nv + k] = mk;
      m[k] = mk;
      s[k] = sk + blk;
    }
  }
  for (int k = 0; k < nv; ++k) {
    if (flags & F_SAFE) m[k] = select(m[k], (ACCV)(0), m[k] == (ACCV)(-INFINITY));
    s[k] = (flags & F_LOG) ? select(log(s[k]), (ACCV)(0), s[k] == (ACCV)(0))
                           : select((ACCV)(1) / s[k], (ACCV)(0), s[k] == (ACCV)(0));
  }
  /* Softmax's chunk factors exp(ref - m) / s in place of the references,
   * one exp per run of chunks with the same reference (the lazy reference
   * rarely moves); then y row by row, each a run of nv vectors. */
  if (!(flags & F_LOG))
    for (int k = 0; k < nv; ++k) {
      ACCV r0 = (ACCV)(0), f = (ACCV)(0);
      for (long j = 0; j * INNER_CHUNK < C; ++j) {
        const ACCV r = rec[j * nv + k];
        if (j == 0 || any(r != r0)) {
          r0 = r;
          f = clsm_exp_sub16_by(r, m[k], 1) * s[k];
        }
        rec[j * nv + k] = f;
      }
    }
  for (long c = 0; c < C; ++c) {
    __local const ACCV *tr = t + c * nv, *fr = rec + (c / INNER_CHUNK) * nv;
    __global TY *yr = yb + c * ysc;
    for (int k = 0; k < nv; ++k) {
      const ACCV out = (flags & F_LOG) ? (tr[k] - m[k]) - s[k] : tr[k] * fr[k];
      if (flags & F_NT)
        VSTOREY_NT(out, k, yr);
      else
        VSTOREY(out, k, yr);
    }
  }
  if (flags & F_NT) clsm_nt_fence();
}

/* A block of ib consecutive inner positions of one outer index; the host
 * launches outer * ceil(inner / ib) work-items. Partial blocks and strided
 * inner dims fall back to the scalar row walk. */
__kernel void clsm_softmax_inner_cpu(CLSM_ARGS, __local ACCV *tile) {
  const int nv = clsm_inner_nv(flags);
  const long ib = 16L * nv;
  long o, i0;
  if (!clsm_inner_block(outer, inner, ib, &o, &i0)) return;
  __global const TX *xb = x + xoff + o * xso + i0 * xsi;
  __global TY *yb = y + yoff + o * yso + i0 * ysi;
  if (i0 + ib > inner || xsi != 1 || ysi != 1) {
    long n = min(ib, inner - i0);
    for (long i = 0; i < n; ++i) clsm_row_strided(xb + i * xsi, xsc, yb + i * ysi, ysc, C, flags);
    return;
  }
  if (flags & F_TILE) {
    clsm_inner_tile(xb, xsc, yb, ysc, C, nv,
                    tile + get_local_id(0) * (C + (C + INNER_CHUNK - 1) / INNER_CHUNK) * nv, flags);
    return;
  }
  ACCV m[NV_MAX], s[NV_MAX];
  for (int k = 0; k < nv; ++k) {
    m[k] = (ACCV)(-INFINITY);
    s[k] = (ACCV)(0);
  }
  for (long c = 0; c < C; ++c)
    for (int k = 0; k < nv; ++k) m[k] = clsm_vmax16(m[k], VLOADX(k, xb + c * xsc));
  if (flags & F_SAFE)
    for (int k = 0; k < nv; ++k) m[k] = select(m[k], (ACCV)(0), m[k] == (ACCV)(-INFINITY));
  /* Softmax keeps exp(x - m) in y, log-softmax x - m (a float32 / float64
   * y, the host sets F_RECOMPUTE past KEEP_INNER_BYTES): the last pass then
   * reads y, whose lines the sum pass already owns, instead of x. */
  int keep = !(flags & F_RECOMPUTE);
#ifndef Y_HOLDS_ACC
  if (flags & F_LOG) keep = 0;
#endif
  for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
    ACCV blk[NV_MAX];
    for (int k = 0; k < nv; ++k) blk[k] = (ACCV)(0);
    for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c)
      for (int k = 0; k < nv; ++k) {
        ACCV v = VLOADX(k, xb + c * xsc);
        ACCV e = (flags & F_LOG) ? clsm_exp16_cpu(v - m[k]) : clsm_exp_sub16(v, m[k]);
        if (keep) VSTOREY((flags & F_LOG) ? v - m[k] : e, k, yb + c * ysc);
        blk[k] += e;
      }
    for (int k = 0; k < nv; ++k) s[k] += blk[k];
  }
  if (flags & F_LOG) {
    for (int k = 0; k < nv; ++k) s[k] = select(log(s[k]), (ACCV)(0), s[k] == (ACCV)(0));
    if (keep)
      for (long c = 0; c < C; ++c)
        for (int k = 0; k < nv; ++k) VSTOREY(VLOADY(k, yb + c * ysc) - s[k], k, yb + c * ysc);
    else
      for (long c = 0; c < C; ++c)
        for (int k = 0; k < nv; ++k)
          VSTOREY((VLOADX(k, xb + c * xsc) - m[k]) - s[k], k, yb + c * ysc);
  } else {
    for (int k = 0; k < nv; ++k) s[k] = select((ACCV)(1) / s[k], (ACCV)(0), s[k] == (ACCV)(0));
    if (keep)
      for (long c = 0; c < C; ++c)
        for (int k = 0; k < nv; ++k) VSTOREY(VLOADY(k, yb + c * ysc) * s[k], k, yb + c * ysc);
    else
      for (long c = 0; c < C; ++c)
        for (int k = 0; k < nv; ++k)
          VSTOREY(clsm_exp_sub16(VLOADX(k, xb + c * xsc), m[k]) * s[k], k, yb + c * ysc);
  }
}

/* Rows of L lanes each, n / L rows a work-group (L a power of two up to
 * the group size n, from the flags: short rows share a group instead of
 * leaving most of its lanes idle). Lane j of a row walks c = j, j + L, ...
 * ROW_VPT loads at a time folded into an online (max, sum) pair; lm and ls
 * hold one pair per lane, merged per row by a tree of log2(L) steps. The
 * writing pass reads the row again and computes exp again: the row is read
 * twice (the second time from cache), written once. Lanes of a row past the
 * last take part in the barriers only. */
__kernel void clsm_softmax_rows_wg(CLSM_ARGS, __local ACC *lm, __local ACC *ls) {
  const clsm_seg g = clsm_row_seg(flags);
  const int l = g.l, L = g.L, j = g.j;
  const int live = g.r < outer * inner;
  const long o = g.r / inner, i = g.r - o * inner;
  __global const TX *xr = x + xoff + o * xso + i * xsi;
  __global TY *yr = y + yoff + o * yso + i * ysi;

  ACC m = -INFINITY, s = 0;
#define LOAD_(c) LOADX(xr, (c) * xsc)
  CLSM_FOLD_LANES(m, s, live, j, L, C, LOAD_);
#undef LOAD_
  clsm_seg_merge(lm, ls, l, j, L, &m, &s);
  if (!live) return;
  if ((flags & F_SAFE) && m == -INFINITY && !isnan(s)) {
    m = 0;
    s = 0;
  }
  if (flags & F_LOG) {
    ACC lsum = clsm_log_sum(s);
    for (long c = j; c < C; c += L) STOREY(yr, c * ysc, (LOADX(xr, c * xsc) - m) - lsum);
  } else {
    ACC inv = clsm_inv_sum(s);
    for (long c = j; c < C; c += L) STOREY(yr, c * ysc, clsm_exp_sub(LOADX(xr, c * xsc), m) * inv);
  }
}

/* Whether y holds exp(x - chunk max) between the split kernels (softmax
 * only: log_softmax's writing kernel reads x). */
static inline int clsm_split_keep(uint flags) {
#ifdef Y_HOLDS_ACC
  return (flags & (F_BLOCKS | F_LOG)) == F_BLOCKS;
#else
  return 0;
#endif
}

/* Few long contiguous rows: each row is split into `chunks` chunks of `chunk`
 * elements so that every core has work. clsm_softmax_split_partials: work-item
 * (r, k) stores its chunk's (max, sum of exp(x - max)) in part[2w], part[2w+1];
 * clsm_softmax_split_write: work-item (r, k) merges the row's pairs (the
 * online-softmax merge, in chunk order, so every work-item of a row gets the
 * same M and S) and writes its chunk. A chunk of -inf only is (-inf, 0), the
 * merge's identity; NaN and +inf make S NaN as in the one-pass kernels.
 * Softmax with F_BLOCKS (a float32 / float64 output) does as clsm_row_blocks:
 * the first kernel writes exp(x - chunk max) to y while the chunk is in
 * cache, the second scales it by exp(chunk max - M) / S; one exp per element
 * instead of two. A chunk of -inf writes 0 and gets the factor
 * exp(-inf - M): 0, or NaN when the whole row is -inf (0 with F_SAFE). */
__kernel void clsm_softmax_split_partials(__global const TX *x, ulong xoff, long xso,
                                          __global TY *y, ulong yoff, long yso,
                                          __global ACC *part, long rows, long C, long chunk,
                                          long chunks, uint flags) {
  long w = get_global_id(0);
  if (w >= rows * chunks) return;
  long r = w / chunks, k = w - r * chunks;
  long c0 = k * chunk, n = min(chunk, C - c0);
  __global const TX *xr = x + xoff + r * xso + c0;
  __global TY *yr = y + yoff + r * yso + c0;
  const ACC m = clsm_row_max(xr, n);
  part[2 * w] = m;
  part[2 * w + 1] = clsm_exp_sum(xr, yr, n, m == -INFINITY ? (ACC)0 : m, clsm_split_keep(flags));
}

__kernel void clsm_softmax_split_write(__global const TX *x, ulong xoff, long xso, __global TY *y,
                                       ulong yoff, long yso, __global const ACC *part, long rows,
                                       long C, long chunk, long chunks, uint flags) {
  long w = get_global_id(0);
  if (w >= rows * chunks) return;
  long r = w / chunks, k = w - r * chunks;
  ACC m, s;
  clsm_merge_parts(part + 2 * r * chunks, chunks, &m, &s);
  if ((flags & F_SAFE) && m == -INFINITY && !isnan(s)) {
    m = 0;
    s = 0;
  }
  long c0 = k * chunk, n = min(chunk, C - c0);
  __global const TX *xr = x + xoff + r * xso + c0;
  __global TY *yr = y + yoff + r * yso + c0;
  const ACCV mm = (ACCV)(m);
  long c = 0;
  if (flags & F_LOG) {
    const ACC ls = clsm_log_sum_cpu(s);
    for (; c + 16 <= n; c += 16) VSTOREY((VLOADX(0, xr + c) - mm) - ls, 0, yr + c);
    for (; c < n; ++c) STOREY(yr, c, (LOADX(xr, c) - m) - ls);
  } else if (clsm_split_keep(flags)) {
    clsm_scale_y(yr, n, clsm_exp_sub(part[2 * w], m) * clsm_inv_sum(s));
  } else {
    const ACC inv = clsm_inv_sum(s);
    for (; c + 16 <= n; c += 16) VSTOREY(clsm_exp_sub16(VLOADX(0, xr + c), mm) * inv, 0, yr + c);
    for (; c < n; ++c) STOREY(yr, c, clsm_exp_sub(LOADX(xr, c), m) * inv);
  }
}
