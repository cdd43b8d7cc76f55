/* attn.cl: attention softmax and log-softmax, forward and backward: the
 * row pass of softmax.cl with the attention terms fused into it.
 *
 * Row r of x (clsm_attn_params, abi.h) has query index i and head h; along
 * its key axis j it computes, in ACC arithmetic and in this order,
 *   z_j = scale * x_j,
 *   z_j = z_j + mask_j         (an additive float mask), or
 *   z_j = mask_j ? z_j : -inf  (a boolean one),
 *   z_j = z_j - slope_h * |i + offset - j|   (ALiBi),
 * and with A_CAUSAL the row ends at j = i + offset: the keys past it take no
 * exp and no load, they are only stored (0, or -inf for log-softmax). Each
 * operation is rounded on its own (no contraction), so that a reference
 * can compute z exactly as the kernels do. A sink s_h joins the normaliser
 * only: m = max(max_j z_j, s_h), sum = sum_j exp(z_j - m) + exp(s_h - m).
 * Special rows as softmax.cl: NaN or +inf in z make the row NaN; a row
 * with no finite z and no sink is NaN, or 0 (-inf) with F_SAFE; with a
 * finite sink it is 0 (-inf), its lse s_h. The lse output is m + log(sum),
 * -inf for a row with no finite z and no sink, NaN for a NaN row.
 * Masks, slopes and sinks are read where a row needs them: a broadcast mask
 * (stride 0 over the batch and head dims) is read from cache by every row
 * that shares it; nothing is materialised.
 *
 * Backward, from y and dy (the mask is in y already): softmax
 *   dx_j = scale * y_j (dy_j - sum_k dy_k y_k),
 * log-softmax dx_j = scale * (dy_j - exp(y_j) sum_k dy_k). Masked entries
 * (y_j = 0 for softmax, -inf for log-softmax) take no part: their dx is 0
 * and their dy is not summed. With sinks, each row's term of d loss / d s_h,
 * -(1 - sum_k p_k) * (softmax: sum_k dy_k y_k; log-softmax: sum_k dy_k),
 * p_k = y_k (softmax) or exp(y_k), goes to scratch, and clsm_attn_dsinks
 * adds those of each head in row order.
 *
 * Kernels: clsm_attn_rows_cpu (CPU family: a work-item a row, 16-wide
 * vectors when the key axis is contiguous), clsm_attn_rows_wg (GPU family:
 * rows of L lanes, the online (max, sum) of softmax_rows_wg), their
 * backward twins, and clsm_attn_dsinks. */

#pragma OPENCL FP_CONTRACT OFF

#define CLSM_AARGS                                                                             \
  __global const TX *x, __global TY *y, __global const uchar *mask,                           \
      __global const float *slopes, __global const uchar *sinks, __global ACC *lse,            \
      clsm_attn_params p
#define CLSM_ABARGS                                                                            \
  __global const TX *y, __global const TX *dy, __global TY *dx, __global ACC *ds,              \
      clsm_attn_params p

/* A row's element offsets (tensors 0..3), query and head. */
typedef struct clsm_arow {
  long o[4];
  long i, h;
} clsm_arow;

/* Written through a pointer, not returned: an always-inline function
 * returning a struct gets a noalias sret argument, whose scope declaration
 * Oclgrind's interpreter cannot run. */
CLSM_INLINE void clsm_attn_row(const clsm_attn_params *p, long r, clsm_arow *wp) {
  clsm_arow w;
  for (int t = 0; t < 4; ++t) w.o[t] = (long)p->off[t];
  w.i = w.h = 0;
  /* The digits of r over the row dims, in T arithmetic. */
#define DIGITS_(T)                                                                           \
  {                                                                                          \
    T rem = (T)r;                                                                            \
    for (int d = 0; d < p->nd; ++d) {                                                        \
      const T sh = (T)p->shape[d], q = rem / sh, k = rem - q * sh;                           \
      for (int t = 0; t < 4; ++t) w.o[t] += (long)k * p->st[t][d];                           \
      if (d == p->qd) w.i = (long)k;                                                         \
      if (d == p->hdg) w.h = (long)k;                                                        \
      rem = q;                                                                               \
    }                                                                                        \
  }
  if (p->flags & A_U32) /* a 32-bit division a dim instead of a 64-bit one */
    DIGITS_(uint)
  else
    DIGITS_(long)
#undef DIGITS_
  *wp = w;
}

CLSM_INLINE ACC clsm_attn_scale(const clsm_attn_params *p) {
#ifdef ACC_IS_DOUBLE
  return as_double(p->scale_bits);
#else
  return p->scale;
#endif
}

/* One mask value at element k. */
CLSM_INLINE ACC clsm_mask_at(__global const uchar *m, long k, int mk) {
  if (mk == MK_F32) return (ACC)((__global const float *)m)[k];
  if (mk == MK_F16) return (ACC)vload_half((size_t)k, (__global const half *)m);
  if (mk == MK_BF16) return (ACC)clsm_bf16_to_float(((__global const ushort *)m)[k]);
  return (ACC)m[k];
}

/* Sixteen mask values from element k, msc apart (0: one broadcast value). */
CLSM_INLINE ACCV clsm_mask16(__global const uchar *m, long k, long msc, int mk) {
  if (msc == 1) {
    if (mk == MK_F32) return convert_ACCV(vload16(0, (__global const float *)m + k));
    if (mk == MK_F16) return convert_ACCV(vload_half16(0, (__global const half *)m + k));
    if (mk == MK_BF16)
      return convert_ACCV(clsm_bf16_to_float16(vload16(0, (__global const ushort *)m + k)));
    return convert_ACCV(vload16(0, m + k));
  }
  if (msc == 0) return (ACCV)(clsm_mask_at(m, k, mk));
  ACC v[16];
  for (int l = 0; l < 16; ++l) v[l] = clsm_mask_at(m, k + l * msc, mk);
  return vload16(0, v);
}

/* What a row's z needs. */
typedef struct clsm_actx {
  __global const TX *xr;
  __global const uchar *mb;
  long mo, xsc, msc, pos;
  ACC sc, slope;
  int mk, alibi;
} clsm_actx;

#ifdef ACC_IS_DOUBLE
#define CLSM_IOTA16 ((double16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#else
#define CLSM_IOTA16 ((float16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#endif

/* z at key c (any strides). */
CLSM_INLINE ACC clsm_attn_z(const clsm_actx *a, long c) {
  ACC z = a->sc * LOADX(a->xr, c * a->xsc);
  if (a->mk == MK_BOOL)
    z = clsm_mask_at(a->mb, a->mo + c * a->msc, MK_BOOL) != (ACC)0 ? z : (ACC)(-INFINITY);
  else if (a->mk != MK_NONE)
    z = z + clsm_mask_at(a->mb, a->mo + c * a->msc, a->mk);
  if (a->alibi) {
    /* |d| as fabs of the converted value (the same rounding as converting
     * |d|); an integer abs becomes llvm.abs, which Oclgrind cannot run. */
    z = z - a->slope * fabs((ACC)(a->pos - c));
  }
  return z;
}

/* z at keys c .. c + 15 of a contiguous row. */
CLSM_INLINE ACCV clsm_attn_z16(const clsm_actx *a, long c) {
  ACCV z = a->sc * VLOADX(0, a->xr + c);
  if (a->mk == MK_BOOL)
    z = select(z, (ACCV)(-INFINITY), clsm_mask16(a->mb, a->mo + c * a->msc, a->msc, MK_BOOL) == (ACCV)(0));
  else if (a->mk != MK_NONE)
    z = z + clsm_mask16(a->mb, a->mo + c * a->msc, a->msc, a->mk);
  if (a->alibi) z = z - a->slope * fabs((ACCV)((ACC)(a->pos - c)) - CLSM_IOTA16);
  return z;
}

/* A row's context, its causal length n (keys [0, n) take part), its sink
 * (-inf: none) and its lse offset. */
CLSM_INLINE void clsm_attn_setup(const clsm_attn_params *p, long r, __global const TX *x,
                                 __global const uchar *mask, __global const float *slopes,
                                 __global const uchar *sinks, clsm_actx *a, long *yo, long *n,
                                 ACC *sink, long *lo) {
  clsm_arow w;
  clsm_attn_row(p, r, &w);
  a->xr = x + w.o[0];
  a->mb = mask;
  a->mo = w.o[2];
  a->xsc = p->sc[0];
  a->msc = p->sc[2];
  a->sc = clsm_attn_scale(p);
  a->mk = p->mkind;
  a->alibi = (p->flags & A_ALIBI) != 0;
  a->pos = w.i + p->offset;
  a->slope = a->alibi ? (ACC)slopes[p->aoff + w.h * p->ast] : (ACC)0;
  *yo = w.o[1];
  *n = (p->flags & A_CAUSAL) ? clamp(a->pos + 1, 0L, p->C) : p->C;
  *sink = -INFINITY;
  if (p->skind == SK_F32)
    *sink = (ACC)((__global const float *)sinks)[p->soff + w.h * p->sst];
  else if (p->skind == SK_TX)
    *sink = LOADX((__global const TX *)sinks, p->soff + w.h * p->sst);
  *lo = w.o[3];
}

/* The row's final (m, s) from its raw max (sink included) and sum: a row
 * with no finite z and no sink is NaN (s = NaN), or with F_SAFE m = 0 and
 * s = 0 (every output 0, or -inf); writes the lse when asked. */
CLSM_INLINE void clsm_attn_finish(ACC mraw, ACC *m, ACC *s, uint flags, __global ACC *lse, long lo) {
  const int nanrow = isnan(*s);
  if (flags & A_LSE)
    lse[lo] = mraw == -INFINITY ? (nanrow ? (ACC)NAN : (ACC)(-INFINITY)) : *m + log(*s);
  if (mraw == -INFINITY && !nanrow) {
    if (flags & F_SAFE) {
      *m = 0;
      *s = 0;
    } else {
      *s = NAN;
    }
  }
}

__kernel void clsm_attn_rows_cpu(CLSM_AARGS, __local ACC *scratch) {
  const long r = get_global_id(0);
  if (r >= p.rows) return;
  const uint flags = p.flags;
  const long C = p.C;
  clsm_actx a;
  long yo, n, lo;
  ACC sink;
  clsm_attn_setup(&p, r, x, mask, slopes, sinks, &a, &yo, &n, &sink, &lo);
  __global TY *yr = y + yo;
  const long ysc = p.sc[1];
  __local ACC *sr = scratch + get_local_id(0) * C;
  (void)sr;
  const int contiguous = a.xsc == 1 && ysc == 1;
  /* keep: z goes to y (or local scratch) in the first pass, which alone
   * reads x and the mask; softmax then keeps exp(z - m) there. */
  const int keep = contiguous && (flags & A_KEEP);
  const int plain = a.mk == MK_NONE && !a.alibi;

  /* The max, the sink's included. */
  ACC m = sink;
  long c = 0;
  if (contiguous) {
    ACCV mv = (ACCV)(-INFINITY);
    if (keep && plain) {
      const ACCV sv = (ACCV)(a.sc);
      for (; c + 16 <= n; c += 16) {
        const ACCV z = sv * VLOADX(0, a.xr + c);
        KEEP_VSTORE(z, c);
        mv = clsm_vmax16(mv, z);
      }
    } else if (keep) {
      for (; c + 16 <= n; c += 16) {
        const ACCV z = clsm_attn_z16(&a, c);
        KEEP_VSTORE(z, c);
        mv = clsm_vmax16(mv, z);
      }
    } else {
      for (; c + 16 <= n; c += 16) mv = clsm_vmax16(mv, clsm_attn_z16(&a, c));
    }
    m = fmax(m, clsm_hmax16(mv));
  }
  for (; c < n; ++c) {
    const ACC z = clsm_attn_z(&a, c);
    if (keep) KEEP_STORE(z, c);
    m = fmax(m, z);
  }
  const ACC mraw = m;
  if (m == -INFINITY && (flags & F_SAFE)) m = 0;

  /* The sum (softmax: exp(z - m) kept). */
  ACC s = 0;
  c = 0;
  const ACCV mm = (ACCV)(m);
  const int log = (flags & F_LOG) != 0;
  if (keep) {
    /* While this row's exps are computed from cache, the next row's x and
     * y lines are fetched. */
    __global const TX *nx = a.xr + p.st[0][0];
    __global TY *ny = yr + p.st[1][0];
    (void)nx; (void)ny;
    ACCV tot = (ACCV)(0), blk = (ACCV)(0);
#define TERM_(i)                                                                             \
  {                                                                                          \
    CLSM_PREFETCH(nx + (i));                                                                 \
    CLSM_PREFETCHW(ny + (i));                                                                \
    const ACCV e = clsm_exp_sub16(KEEP_VLOAD(i), mm);                                        \
    if (!log) KEEP_VSTORE(e, (i));                                                           \
    blk += e;                                                                                \
  }
#define FOLD_() (tot += blk, blk = (ACCV)(0))
    CLSM_BLOCKED16(c, n, TERM_, FOLD_);
#undef TERM_
    for (; c < n; ++c) {
      const ACC e = clsm_exp_sub(KEEP_LOAD(c), m);
      if (!log) KEEP_STORE(e, c);
      s += e;
    }
    s += clsm_hsum16(tot);
    for (long cc = n; cc < C; cc += 16) CLSM_PREFETCHW(ny + cc); /* a causal tail's lines */
  } else if (contiguous) {
    ACCV tot = (ACCV)(0), blk = (ACCV)(0);
#define TERM_(i) (blk += clsm_exp_sub16(clsm_attn_z16(&a, (i)), mm))
    CLSM_BLOCKED16(c, n, TERM_, FOLD_);
#undef TERM_
#undef FOLD_
    for (; c < n; ++c) s += clsm_exp_sub(clsm_attn_z(&a, c), m);
    s += clsm_hsum16(tot);
  } else {
    for (long c0 = 0; c0 < n; c0 += SUM_BLOCK) {
      ACC blk = 0;
      for (c = c0; c < min(n, c0 + SUM_BLOCK); ++c) blk += clsm_exp_sub(clsm_attn_z(&a, c), m);
      s += blk;
    }
  }
  if (sink != -INFINITY) s += clsm_exp_sub(sink, m);
  clsm_attn_finish(mraw, &m, &s, flags, lse, lo);

  /* The writing pass; the keys past a causal row's end get the output of
   * z = -inf (0 or -inf; NaN in a NaN row). */
  const ACCV mw = (ACCV)(m);
  c = 0;
  if (log) {
    const ACC ls = clsm_log_sum(s);
    if (keep) {
      for (; c + 16 <= n; c += 16) VSTOREY((KEEP_VLOAD(c) - mw) - ls, 0, yr + c);
      for (; c < n; ++c) STOREY(yr, c, (KEEP_LOAD(c) - m) - ls);
    } else {
      if (contiguous)
        for (; c + 16 <= n; c += 16) VSTOREY((clsm_attn_z16(&a, c) - mw) - ls, 0, yr + c);
      for (; c < n; ++c) STOREY(yr, c * ysc, (clsm_attn_z(&a, c) - m) - ls);
    }
  } else {
    const ACC inv = clsm_inv_sum(s);
    if (keep) {
      for (; c + 16 <= n; c += 16) VSTOREY(KEEP_VLOAD(c) * inv, 0, yr + c);
      for (; c < n; ++c) STOREY(yr, c, KEEP_LOAD(c) * inv);
    } else {
      if (contiguous)
        for (; c + 16 <= n; c += 16) VSTOREY(clsm_exp_sub16(clsm_attn_z16(&a, c), mw) * inv, 0, yr + c);
      for (; c < n; ++c) STOREY(yr, c * ysc, clsm_exp_sub(clsm_attn_z(&a, c), m) * inv);
    }
  }
  const ACC tail = log ? ((ACC)(-INFINITY) - m) - clsm_log_sum(s) : (ACC)0 * clsm_inv_sum(s);
  if (contiguous && C - c >= 16) {
#ifdef Y_IS_16BIT
    /* As bits: PoCL's vstore_half16_rte of a splat crashes at odd element
     * offsets. The tail is 0, -inf or NaN. */
#ifdef CLSM_Y_F16
    const ushort16 tb = (ushort16)(isnan(tail) ? 0x7e00 : tail < 0 ? 0xfc00 : 0);
#else
    const ushort16 tb = (ushort16)(isnan(tail) ? 0x7fc0 : tail < 0 ? 0xff80 : 0);
#endif
#ifdef CLSM_PACKED_STORES
    for (; c + 16 <= C; c += 16) CLSM_VST_U16(tb, yr + c);
#else
    for (; c + 16 <= C; c += 16) vstore16(tb, 0, (__global ushort *)(yr + c));
#endif
#else
    /* Large outputs: the tail is stored past the cache (it is never read
     * here), from its first 64-byte line on. */
    if (flags & F_NT) {
      for (; c < C && ((size_t)(yr + c) & 63); ++c) STOREY(yr, c, tail);
      for (; c + 16 <= C; c += 16) VSTOREY_NT((ACCV)(tail), 0, yr + c);
      clsm_nt_fence();
    }
    for (; c + 16 <= C; c += 16) VSTOREY((ACCV)(tail), 0, yr + c);
#endif
  }
  for (; c < C; ++c) STOREY(yr, c * ysc, tail);
}

/* Rows of L lanes, local / L rows a group, as clsm_softmax_rows_wg: lane j
 * folds z at keys j, j + L, ... (ROW_VPT at a time) into an online pair,
 * a tree merges each row's pairs, the sink joins, and the writing pass
 * computes z again. */
__kernel void clsm_attn_rows_wg(CLSM_AARGS, __local ACC *lm, __local ACC *ls) {
  const uint flags = p.flags;
  const clsm_seg g = clsm_row_seg(flags);
  const int l = g.l, L = g.L, j = g.j;
  const int live = g.r < p.rows;
  const long C = p.C;
  clsm_actx a;
  long yo, n, lo;
  ACC sink;
  clsm_attn_setup(&p, live ? g.r : 0, x, mask, slopes, sinks, &a, &yo, &n, &sink, &lo);
  __global TY *yr = y + yo;
  const long ysc = p.sc[1];

  ACC m = -INFINITY, s = 0;
#define LOAD_(c) clsm_attn_z(&a, (c))
  CLSM_FOLD_LANES(m, s, live, j, L, n, LOAD_);
#undef LOAD_
  clsm_seg_merge(lm, ls, l, j, L, &m, &s);
  if (!live) return;
  if (sink != -INFINITY) {
    clsm_online_merge(&m, &s, sink, (ACC)1);
    s = clsm_finish_sum(m, s);
  }
  const ACC mraw = m;
  /* Only lane 0 writes the lse. */
  clsm_attn_finish(mraw, &m, &s, j == 0 ? flags : flags & ~A_LSE, lse, lo);
  if (flags & F_LOG) {
    const ACC lsum = clsm_log_sum(s);
    for (long c = j; c < C; c += L)
      STOREY(yr, c * ysc, (c < n ? clsm_attn_z(&a, c) : (ACC)(-INFINITY)) - m - lsum);
  } else {
    const ACC inv = clsm_inv_sum(s);
    for (long c = j; c < C; c += L)
      STOREY(yr, c * ysc, (c < n ? clsm_exp_sub(clsm_attn_z(&a, c), m) : (ACC)0) * inv);
  }
}

/* ---- Backward. */

/* One entry's share of the row sums: acc gets dy y (softmax) or dy
 * (log-softmax), ps gets y or exp(y) (for the sink term); masked entries
 * give nothing. */
CLSM_INLINE void clsm_abwd_add(ACC v, ACC g, uint flags, ACC *acc, ACC *ps) {
  if (flags & F_LOG) {
    if (v != -INFINITY) {
      *acc += g;
      if (flags & A_DSINKS) *ps += exp(v);
    }
  } else if (v != 0) {
    *acc += g * v;
    *ps += v;
  }
}

CLSM_INLINE ACC clsm_abwd_dx(ACC v, ACC g, ACC acc, ACC sc, uint flags) {
  if (flags & F_LOG) return v == -INFINITY ? (ACC)0 : sc * (g - exp(v) * acc);
  return v == 0 ? (ACC)0 : sc * (v * (g - acc));
}

__kernel void clsm_attn_bwd_rows_cpu(CLSM_ABARGS) {
  const long r = get_global_id(0);
  if (r >= p.rows) return;
  const uint flags = p.flags;
  clsm_arow w;
  clsm_attn_row(&p, r, &w);
  __global const TX *yr = y + w.o[0];
  __global const TX *dyr = dy + w.o[1];
  __global TY *dxr = dx + w.o[2];
  const long C = p.C, ysc = p.sc[0], dysc = p.sc[1], dxsc = p.sc[2];
  const ACC sc = clsm_attn_scale(&p);
  const int contiguous = ysc == 1 && dysc == 1 && dxsc == 1;
  ACC acc = 0, ps = 0;
  long c = 0;
  if (contiguous) {
    ACCV va = (ACCV)(0), vp = (ACCV)(0), ta = (ACCV)(0), tp = (ACCV)(0);
#define TERM_(i)                                                                             \
  {                                                                                          \
    const ACCV g = VLOADX(0, dyr + (i)), v = VLOADX(0, yr + (i));                           \
    if (flags & F_LOG) {                                                                     \
      va += select(g, (ACCV)(0), v == (ACCV)(-INFINITY));                                    \
      if (flags & A_DSINKS) vp += exp(v);                                                    \
    } else {                                                                                 \
      va += select(g * v, (ACCV)(0), v == (ACCV)(0));                                        \
      vp += v;                                                                               \
    }                                                                                        \
  }
#define FOLD_() (ta += va, tp += vp, va = (ACCV)(0), vp = (ACCV)(0))
    CLSM_BLOCKED16(c, C, TERM_, FOLD_);
#undef TERM_
#undef FOLD_
    acc = clsm_hsum16(ta);
    ps = clsm_hsum16(tp);
  }
  for (; c < C; ++c) clsm_abwd_add(LOADX(yr, c * ysc), LOADX(dyr, c * dysc), flags, &acc, &ps);
  if (flags & A_DSINKS) ds[r] = -((ACC)1 - ps) * acc;
  c = 0;
  if (contiguous) {
    const ACCV a = (ACCV)(acc);
    for (; c + 16 <= C; c += 16) {
      const ACCV g = VLOADX(0, dyr + c), v = VLOADX(0, yr + c);
      const ACCV d = (flags & F_LOG)
                         ? select(sc * (g - exp(v) * a), (ACCV)(0), v == (ACCV)(-INFINITY))
                         : select(sc * (v * (g - a)), (ACCV)(0), v == (ACCV)(0));
      VSTOREY(d, 0, dxr + c);
    }
  }
  for (; c < C; ++c)
    STOREY(dxr, c * dxsc, clsm_abwd_dx(LOADX(yr, c * ysc), LOADX(dyr, c * dysc), acc, sc, flags));
}

/* Rows of L lanes; la and lp hold each lane's two partial sums. The row
 * is read again in the writing pass. */
__kernel void clsm_attn_bwd_rows_wg(CLSM_ABARGS, __local ACC *la, __local ACC *lp) {
  const uint flags = p.flags;
  const clsm_seg g = clsm_row_seg(flags);
  const int l = g.l, L = g.L, j = g.j;
  const int live = g.r < p.rows;
  clsm_arow w;
  clsm_attn_row(&p, live ? g.r : 0, &w);
  __global const TX *yr = y + w.o[0];
  __global const TX *dyr = dy + w.o[1];
  __global TY *dxr = dx + w.o[2];
  const long C = p.C, ysc = p.sc[0], dysc = p.sc[1], dxsc = p.sc[2];
  ACC acc = 0, ps = 0;
  for (long c = j; live && c < C; c += L)
    clsm_abwd_add(LOADX(yr, c * ysc), LOADX(dyr, c * dysc), flags, &acc, &ps);
  la[l] = acc;
  lp[l] = ps;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int h = L / 2; h > 0; h /= 2) {
    if (j < h) {
      la[l] += la[l + h];
      lp[l] += lp[l + h];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (!live) return;
  acc = la[l - j];
  if ((flags & A_DSINKS) && j == 0) ds[g.r] = -((ACC)1 - lp[l - j]) * acc;
  const ACC sc = clsm_attn_scale(&p);
  for (long c = j; c < C; c += L)
    STOREY(dxr, c * dxsc, clsm_abwd_dx(LOADX(yr, c * ysc), LOADX(dyr, c * dysc), acc, sc, flags));
}

/* d loss / d s_h: the rows of head h, (a * heads + h) * hdiv + b, summed in
 * row order, in blocks of SUM_BLOCK. The output (H) vector is at aoff with
 * stride ast. */
__kernel void clsm_attn_dsinks(__global const ACC *ds, __global ACC *out, clsm_attn_params p) {
  const long h = get_global_id(0);
  if (h >= p.heads) return;
  const long outer = p.rows / (p.hdiv * p.heads);
  ACC t = 0, blk = 0;
  long k = 0;
  for (long a = 0; a < outer; ++a)
    for (long b = 0; b < p.hdiv; ++b) {
      blk += ds[(a * p.heads + h) * p.hdiv + b];
      if (++k == SUM_BLOCK) {
        t += blk;
        blk = 0;
        k = 0;
      }
    }
  out[p.aoff + h * p.ast] = t + blk;
}
