/* ce.cl: cross-entropy loss over logits x of shape (outer, C, inner) (the
 * class axis in the middle), forward, gradient, or both fused.
 *
 * Positions p = o * inner + i (o < outer, i < inner), P = outer * inner, are
 * the samples. Targets are class indices (int64 / int32 / uint8, one per
 * position; tkind 0/1/2) or class probabilities (tkind 3: the logits' shape
 * and dtype). Per position, with x' = cap * tanh(x / cap) when a softcap is
 * set, m = max x', s = sum exp(x' - m), lse = m + log s:
 *   index t:  l = (1-eps) w_t (lse - x'_t) + (eps/C) (lse sum_c w_c - sum_c w_c x'_c)
 *   probs q:  q' = (1-eps) q + eps/C;  l = lse sum_c w_c q'_c - sum_c w_c q'_c x'_c
 * (that is -sum w q' logp: cross-entropy is lse - x, never -log(p), so huge
 * logits stay exact) and a z-loss z * lse^2. Ignored positions (t ==
 * ignore_index) contribute nothing and get a zero gradient.
 * Gradient, p_c = exp(x'_c - m) / s, g the upstream gradient of the position:
 *   index:  g/W [(1-eps) w_t (p_c - [c = t]) + (eps/C)(p_c sum_k w_k - w_c)] + g/Z 2 z lse p_c
 *   probs:  g/W (p_c sum_k w_k q'_k - w_c q'_c) + g/Z 2 z lse p_c
 * times 1 - (x'_c / cap)^2 under a softcap. W and Z are the mean's
 * denominators (total weight, resp. non-ignored count; 1 for sum and none).
 * p_t - 1 is formed in float and rounded once, so 16-bit gradients do not
 * lose the target entry to cancellation.
 *
 * The pipeline, all on the device, nothing read back in between:
 *   clsm_ce_prep      per position: validates the target (an out-of-range
 *                     index raises `flag` and records the position and value;
 *                     every later kernel of the call then writes nothing) and
 *                     stores its weight w_n and count c_n.
 *   clsm_ce_reduce    one work-group: sums scratch arrays into totals.
 *   clsm_ce_rows_*    per position: the loss parts l_n, z_n into scratch, lse,
 *   clsm_ce_inner_cpu and the gradient (which may overwrite x: each row is
 *   clsm_ce_strided   read before it is written). rows_cpu: a work-item per
 *                     contiguous row; inner_cpu: a work-item per block of
 *                     positions when the class axis is not last; rows_wg: a
 *                     work-group per row (GPU); strided: anything else.
 *   clsm_ce_finish    the loss output: reduced (mean / sum) or per position.
 * Scratch (ACC): [0,P) w_n, [P,2P) c_n, [2P,3P) l_n, [3P,4P) z_n, then the
 * four totals at 4P. Totals are summed with Kahan compensation per lane and a
 * tree across lanes, so their error does not grow with P. */

/* Flags, target kinds, scratch layout and clsm_ce_params: abi.h; the row
 * kernels' arguments and per-position helpers: ce_row.cl. */

__kernel void clsm_ce_prep(__global const uchar *tg, __global const TX *w, __global ACC *scr,
                           __global int *flag, const clsm_ce_params prm) {
  const ulong toff = prm.toff, woff = prm.woff;
  /* The range of a class index is the whole class axis (a shard's too). */
  const long tso = prm.tso, tsi = prm.tsi, P = prm.P, inner = prm.inner, C = prm.classes;
  const long ignore = prm.ignore;
  const int tkind = prm.tkind;
  const uint flags = prm.flags;
  long p = get_global_id(0);
  if (p >= P) return;
  w += woff;
  long o = p / inner, i = p - o * inner;
  ACC wn = 1, cn = 1;
  if (tkind != TK_PROB) {
    long t = clsm_target(tg, (long)toff + o * tso + i * tsi, tkind);
    if (t == ignore) {
      wn = cn = 0;
    } else if (t < 0 || t >= C) {
      wn = cn = 0;
      if (atomic_cmpxchg(flag, 0, 1) == 0) {
        flag[CLSM_FLAG_POS] = (int)(p & 0xffffffff);
        flag[CLSM_FLAG_POS + 1] = (int)(p >> 32);
        flag[CLSM_FLAG_VALUE] = (int)(t & 0xffffffff);
        flag[CLSM_FLAG_VALUE + 1] = (int)(t >> 32);
      }
    } else if (flags & CE_WEIGHT) {
      wn = LOADX(w, t);
    }
  }
  scr[p] = wn;
  scr[P + p] = cn;
}

/* Sums scratch arrays k0..k1-1 (P values each) into totals scr[4P + k].
 * One work-group, a power-of-two size; each lane sums its share with Kahan
 * compensation, then a tree in `part` adds the lanes. Lanes take every n-th
 * value (coalesced on a GPU), or with `chunked` (CPU family) a contiguous
 * chunk in 16 compensated vector lanes: the lanes of a CPU work-group run one
 * after another on one core, and independent chains keep it busy. */
__kernel void clsm_ce_reduce(__global ACC *scr, long P, int k0, int k1,
                             __global const int *flag, __local ACC *part, int chunked) {
  int l = (int)get_local_id(0), n = (int)get_local_size(0);
  if (flag[0]) return;
  for (int k = k0; k < k1; ++k) {
    __global const ACC *a = scr + (long)k * P;
    ACC s = 0, comp = 0;
    long p = l, step = n, end = P;
    if (chunked) {
      const long per = ((P + n - 1) / n + 15) / 16 * 16;
      p = min(P, l * per);
      end = min(P, p + per);
      step = 1;
      ACCV vs = (ACCV)(0), vc = (ACCV)(0);
      for (; p + 16 <= end; p += 16) {
        ACCV y = vload16(0, a + p) - vc;
        ACCV t = vs + y;
        vc = (t - vs) - y;
        vs = t;
      }
      s = clsm_hsum16(vs);
      comp = clsm_hsum16(vc);
    }
    for (; p < end; p += step) {
      ACC y = a[p] - comp;
      ACC t = s + y;
      comp = (t - s) - y;
      s = t;
    }
    part[l] = s - comp;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = n / 2; h > 0; h /= 2) {
      if (l < h) part[l] += part[l + h];
      barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) scr[CE_ARRAYS * P + k] = part[0];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
}

/* The loss output. Reduced: one work-item writes loss[loff] (mean: l/W + z/Z)
 * when loss_on, and the total weight when tw_on. Per position (none):
 * l_n + z_n. */
__kernel void clsm_ce_finish(__global const ACC *scr, __global TY *loss, __global float *tw,
                             __global const int *flag, const clsm_ce_params prm) {
  const ulong loff = prm.loff, twoff = prm.twoff;
  const long P = prm.P, lso = prm.lso, lsi = prm.lsi, inner = prm.inner;
  const int reduced = (prm.flags & CE_REDUCED) != 0, mean = (prm.flags & CE_MEAN) != 0;
  const int loss_on = (prm.flags & CE_LOSS_OUT) != 0, tw_on = (prm.flags & CE_TW_OUT) != 0;
  long p = get_global_id(0);
  if (flag[0]) return;
  __global const ACC *tot = scr + CE_ARRAYS * P;
  if (reduced) {
    if (p != 0) return;
    ACC l = mean ? tot[2] / tot[0] + tot[3] / tot[1] : tot[2] + tot[3];
    /* z-loss terms are exactly 0 without a z-loss: keep 0/0 out of them. */
    if (mean && tot[3] == 0) l = tot[2] / tot[0];
    if (loss_on) STOREY(loss, loff, l);
    if (tw_on) tw[twoff] = (float)tot[0];
    return;
  }
  if (tw_on && p == 0) tw[twoff] = (float)tot[0];
  if (p >= P) return;
  long o = p / inner, i = p - o * inner;
  STOREY(loss, (long)loff + o * lso + i * lsi, scr[2 * P + p] + scr[3 * P + p]); /* l_n + z_n */
}

/* One position, any strides, scalar. Three passes: max; sum of exp and the
 * smoothing / probability sums; gradient. */
static inline void clsm_ce_row(__global const TX *xr, long xsc, __global const TX *qr, long qsc,
                        int prob, __global const TX *w, __global TY *gr, long gsc, ce_pos q,
                        long C, ACC eps, ACC z, ACC cap, uint flags, ACC *loss,
                        ACC *zl, ACC *lse_out) {
  ACC m = -INFINITY;
  for (long c = 0; c < C; ++c) m = fmax(m, clsm_cap(LOADX(xr, c * xsc), cap, flags));
  ACC s = 0, swx = 0, sw = 0;
  const ACC keps = (ACC)eps / (ACC)C;
  for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
    ACC bs = 0, bwx = 0, bw = 0;
    for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c) {
      ACC v = clsm_cap(LOADX(xr, c * xsc), cap, flags);
      bs += exp(v - m);
      ACC wc = (flags & CE_WEIGHT) ? LOADX(w, c) : (ACC)1;
      if (prob) wc *= ((ACC)1 - (ACC)eps) * LOADX(qr, c * qsc) + keps;
      if (prob || eps > 0) {
        bwx += wc * v;
        bw += wc;
      }
    }
    s += bs;
    swx += bwx;
    sw += bw;
  }
  ACC lse = m + log(s);
  *lse_out = lse;
  {
    const ACC wt = (!prob && (flags & CE_WEIGHT)) ? LOADX(w, q.t) : (ACC)1;
    const ACC xt = prob ? (ACC)0 : clsm_cap(LOADX(xr, q.t * xsc), cap, flags);
    *loss = clsm_ce_loss(prob, eps, keps, wt, lse, xt, sw, swx);
  }
  *zl = (ACC)z * lse * lse;
  if (!(flags & CE_GRAD)) return;
  const ACC inv = (ACC)1 / s;
  const ACC wt = (!prob && (flags & CE_WEIGHT)) ? LOADX(w, q.t) : (ACC)1;
  const ce_coef k = clsm_ce_coef(q.g, q.W, q.Z, wt, prob ? (ACC)0 : eps, keps, z, lse, !prob && eps > 0);
  for (long c = 0; c < C; ++c) {
    ACC v = clsm_cap(LOADX(xr, c * xsc), cap, flags);
    ACC pc = exp(v - m) * inv;
    ACC wc = (flags & CE_WEIGHT) ? LOADX(w, c) : (ACC)1;
    ACC qc = prob ? ((ACC)1 - (ACC)eps) * LOADX(qr, c * qsc) + keps : (ACC)0;
    STOREY(gr, c * gsc, clsm_ce_grad_at(k, v, pc, wc, qc, sw, prob, c == q.t, z, cap, flags));
  }
}

/* An ignored position: the lse if it is wanted, then (the gradient may be
 * the logits) a zero gradient row. */
static inline ACC clsm_ce_ignored_row(__global const TX *xr, long xsc, __global TY *grr, long gsc, long C,
                               ACC cap, uint flags) {
  ACC m = -INFINITY, s = 0;
  if (flags & CE_LSE) {
    for (long c = 0; c < C; ++c) m = fmax(m, clsm_cap(LOADX(xr, c * xsc), cap, flags));
    for (long c = 0; c < C; ++c) s += exp(clsm_cap(LOADX(xr, c * xsc), cap, flags) - m);
  }
  if (flags & CE_GRAD)
    for (long c = 0; c < C; ++c) STOREY(grr, c * gsc, (ACC)0);
  return (flags & CE_LSE) ? m + log(s) : (ACC)0;
}

/* Position (o, i), any strides, scalar: the strided kernel's work-item and
 * the fallback of the block kernels. */
static inline void clsm_ce_one(CE_FN_ARGS, long o, long i) {
  long p = o * inner + i;
  ce_pos q = clsm_ce_pos(tg, toff, tso, tsi, tkind, gs, gsoff, gsso, gssi, scr, P, o, i, ignore,
                         flags);
  __global const TX *xr = x + xoff + o * xso + i * xsi;
  __global TY *grr = gr + goff + o * gso + i * gsi;
  int prob = tkind == TK_PROB;
  __global const TX *qr = (__global const TX *)tg + toff + o * tso + i * tsi;
  ACC l = 0, zl = 0, lv = 0;
  if (q.ignored) {
    lv = clsm_ce_ignored_row(xr, xsc, grr, gsc, C, cap, flags);
  } else {
    clsm_ce_row(xr, xsc, qr, tsc, prob, w, grr, gsc, q, C, eps, z, cap, flags, &l, &zl, &lv);
  }
  clsm_ce_store(scr, P, p, lse_out, loff, lso, lsi, o, i, l, zl, lv, q.ignored, flags);
}

#define CE_PASS                                                                              \
  x, xoff, xso, xsc, xsi, tg, toff, tso, tsc, tsi, tkind, w, woff, gr, goff, gso, gsc, gsi, gs, \
      gsoff, gsso, gssi, lse_out, loff, lso, lsi, scr, P, flag, outer, C, inner, ignore, eps, z, \
      cap, flags

/* A work-item per position, any strides. */
__kernel void clsm_ce_strided(CE_KERNEL_ARGS) {
  CE_UNPACK;
  long p = get_global_id(0);
  if (p >= P || flag[0]) return;
  w += woff;
  long o = p / inner;
  clsm_ce_one(CE_PASS, o, p - o * inner);
}

/* Contiguous rows (xsc == gsc == 1, inner == 1), index targets, no softcap:
 * the large-vocabulary hot path, 16-wide. With CE_KEEP (gradient holds ACC,
 * no softcap) exp(x - m) is stored in the gradient buffer by the sum pass and
 * rescaled by the last pass: one exp per element; a 16-bit gradient keeps it
 * in `scratch` instead (C values per work-item of local memory, which the
 * host sizes, as clsm_softmax_rows_cpu does), so it is rounded once. Other
 * cases fall back to the scalar row.
 *
 * A row in two parts around its log: clsm_ce_row_sums (max, sum of exp and
 * the smoothing sums), then clsm_ce_row_out (loss, gradient, stores). `yr`
 * (the gradient row) and `sr` (the local scratch) are what KEEP_* use.
 * `online` takes (max, sum) in one read of the row; the host picks that
 * kernel for rows of ONLINE_CHUNK vectors or more with neither kept exps nor
 * label smoothing. */
typedef struct ce_sums {
  ACC m, s, swx, sw;
} ce_sums;

CLSM_INLINE ce_sums clsm_ce_row_sums(__global const TX *xr, __global TY *yr, __local ACC *sr,
                                __global const TX *w, long C, ACC eps, uint flags,
                                const int online) {
  const int smooth = eps > 0, weighted = (flags & CE_WEIGHT) != 0;
  const int keep = (flags & CE_KEEP) != 0;
  (void)yr;
  (void)sr;
  ce_sums r;
  ACC m, s = 0, swx = 0, sw = 0;
  long c;
  if (online) {
    /* Rows of a chunk or more: one read for (m, s), as log-softmax's. */
    clsm_row_online(xr, (__global TY *)0, C, &m, &s);
    if (m == -INFINITY) s = NAN; /* exp(-inf - -inf), as the two-pass form */
  } else {
    m = clsm_row_max(xr, C);
    const ACCV mm = (ACCV)(m);
    ACCV ts = (ACCV)(0), twx = (ACCV)(0), tw = (ACCV)(0);
    ACCV bs = (ACCV)(0), bwx = (ACCV)(0), bw = (ACCV)(0);
    c = 0;
#define TERM_(i)                                                                             \
  {                                                                                          \
    ACCV v = VLOADX(0, xr + (i));                                                            \
    ACCV e = clsm_exp16_cpu(v - mm);                                                         \
    if (keep) KEEP_VSTORE(e, (i));                                                           \
    bs += e;                                                                                 \
    if (smooth) {                                                                            \
      ACCV wc = weighted ? VLOADX(0, w + (i)) : (ACCV)(1);                                   \
      bwx += wc * v;                                                                         \
      bw += wc;                                                                              \
    }                                                                                        \
  }
#define FOLD_()                                                                              \
  (ts += bs, twx += bwx, tw += bw, bs = (ACCV)(0), bwx = (ACCV)(0), bw = (ACCV)(0))
    CLSM_BLOCKED16(c, C, TERM_, FOLD_);
#undef TERM_
#undef FOLD_
    for (; c < C; ++c) {
      ACC v = LOADX(xr, c), e = exp(v - m);
      if (keep) KEEP_STORE(e, c);
      s += e;
      if (smooth) {
        ACC wc = weighted ? LOADX(w, c) : (ACC)1;
        swx += wc * v;
        sw += wc;
      }
    }
    s += clsm_hsum16(ts);
    if (smooth) {
      swx += clsm_hsum16(twx);
      sw += clsm_hsum16(tw);
    }
  }
  r.m = m;
  r.s = s;
  r.swx = swx;
  r.sw = sw;
  return r;
}

/* Loss, gradient and stores of row p, given its sums, target logit xt
 * (read before the sums pass could overwrite x in place) and lse. */
CLSM_INLINE void clsm_ce_row_out(CE_FN_ARGS, __local ACC *sr, long p, ce_pos q, ce_sums u, ACC xt,
                            ACC lsv) {
  __global const TX *xr = x + xoff + p * xso;
  __global TY *grr = gr + goff + p * gso;
  __global TY *yr = grr; /* for KEEP_* */
  (void)yr;
  (void)sr;
  const int smooth = eps > 0, weighted = (flags & CE_WEIGHT) != 0;
  const int keep = (flags & CE_KEEP) != 0;
  const ACC m = u.m, s = u.s, swx = u.swx, sw = u.sw;
  const ACCV mm = (ACCV)(m);
  const ACC keps = (ACC)eps / (ACC)C;
  ACC wt = weighted ? LOADX(w, q.t) : (ACC)1;
  ACC l = clsm_ce_loss(0, eps, keps, wt, lsv, xt, sw, swx);
  ACC zl = (ACC)z * lsv * lsv;
  if (flags & CE_GRAD) {
    const ACC inv = (ACC)1 / s;
    const ce_coef k = clsm_ce_coef(q.g, q.W, q.Z, wt, eps, keps, z, lsv, smooth);
    const ACC a = k.a, b = k.b, zc = k.zc;
    const ACC pz = a + b * sw + zc; /* p_c's total coefficient */
    long c;
    for (c = 0; c + 16 <= C; c += 16) {
      ACCV pc = keep ? KEEP_VLOAD(c) * inv : clsm_exp16_cpu(VLOADX(0, xr + c) - mm) * inv;
      ACCV d = pc * pz;
      if (smooth) d -= b * (weighted ? VLOADX(0, w + c) : (ACCV)(1));
      VSTOREY(d, 0, grr + c);
    }
    for (; c < C; ++c) {
      ACC pc = keep ? KEEP_LOAD(c) * inv : exp(LOADX(xr, c) - m) * inv;
      ACC d = pc * pz;
      if (smooth) d -= b * (weighted ? LOADX(w, c) : (ACC)1);
      STOREY(grr, c, d);
    }
    /* The target entry: a (p_t - 1) + (b sw + zc) p_t - b w_t, p_t - 1 formed
     * before it is scaled. Read p_t back only through x (grr may hold the
     * value just written). */
    ACC pt = exp(xt - m) * inv;
    ACC d = a * (pt - (ACC)1) + (b * sw + zc) * pt - b * (smooth ? wt : (ACC)0);
    /* bfloat16 vectors were stored as uints (clsm_vstore_bf16): keep the
     * compiler from moving this ushort store ahead of them. */
    mem_fence(CLK_GLOBAL_MEM_FENCE);
    STOREY(grr, q.t, d);
  }
  clsm_ce_store(scr, P, p, lse_out, loff, lso, lsi, p, 0, l, zl, lsv, 0, flags);
}

/* A work-item per row. (`online` is a constant in each kernel, so the other
 * path is compiled out: the short rows' kernel carries none of the long
 * rows' code or branches.) */
static inline void clsm_ce_rows(CE_FN_ARGS, __local ACC *scratch, const int online) {
  long p = get_global_id(0);
  if (p >= P || flag[0]) return;
  w += woff;
  ce_pos q = clsm_ce_pos(tg, toff, tso, tsi, tkind, gs, gsoff, gsso, gssi, scr, P, p, 0, ignore,
                         flags);
  if (tkind == TK_PROB || (flags & CE_SOFTCAP) || q.ignored) {
    clsm_ce_one(CE_PASS, p, 0);
    return;
  }
  __global const TX *xr = x + xoff + p * xso;
  __local ACC *sr = scratch + get_local_id(0) * C; /* for KEEP_* without Y_HOLDS_ACC */
  const ACC xt = LOADX(xr, q.t); /* before the sum pass may overwrite x in place */
  ce_sums u = clsm_ce_row_sums(xr, gr + goff + p * gso, sr, w, C, eps, flags, online);
  clsm_ce_row_out(CE_PASS, sr, p, q, u, xt, u.m + clsm_log_cpu(u.s));
}

__kernel void clsm_ce_rows_cpu(CE_KERNEL_ARGS, __local ACC *scratch) {
  CE_UNPACK;
  clsm_ce_rows(CE_ARG_NAMES, scratch, 0);
}

__kernel void clsm_ce_rows_long_cpu(CE_KERNEL_ARGS, __local ACC *scratch) {
  CE_UNPACK;
  clsm_ce_rows(CE_ARG_NAMES, scratch, 1);
}

/* Short rows (below ONLINE_ROW; kept exps in the gradient itself, or for a
 * 16-bit gradient in `scratch`, CE_ROWS rows of C values per work-item): a
 * work-item owns CE_ROWS consecutive rows, first each row's sums, then
 * their CE_ROWS logs as one vector, then each row's loss and gradient. A
 * row's log and what follows it is a chain of dependent operations that
 * out-of-order execution does not overlap with the next row's exps; one
 * vector log of CE_ROWS lanes costs about what one scalar log costs (see
 * clsm_log_cpu). */
__kernel void clsm_ce_rows16_cpu(CE_KERNEL_ARGS, __local ACC *scratch) {
  CE_UNPACK;
  const long p0 = get_global_id(0) * CE_ROWS;
  if (p0 >= P || flag[0]) return;
  w += woff;
  const int n = (int)min((long)CE_ROWS, P - p0);
  if (tkind == TK_PROB || (flags & CE_SOFTCAP)) {
    for (int r = 0; r < n; ++r) clsm_ce_one(CE_PASS, p0 + r, 0);
    return;
  }
  /* Row r's kept exps with a 16-bit gradient: C values of local memory. */
#define ROW16_SCRATCH(r) (scratch + ((size_t)get_local_id(0) * CE_ROWS + (size_t)(r)) * (size_t)C)
  ce_pos qs[CE_ROWS];
  ce_sums us[CE_ROWS];
  ACC ms[CE_ROWS], ss[CE_ROWS], xts[CE_ROWS], lses[CE_ROWS];
  for (int r = 0; r < CE_ROWS; ++r) {
    ms[r] = 0;
    ss[r] = 1;
  }
  for (int r = 0; r < n; ++r) {
    const long p = p0 + r;
    qs[r] = clsm_ce_pos(tg, toff, tso, tsi, tkind, gs, gsoff, gsso, gssi, scr, P, p, 0, ignore,
                        flags);
    if (qs[r].ignored) {
      clsm_ce_one(CE_PASS, p, 0);
      continue;
    }
    __global const TX *xr = x + xoff + p * xso;
    xts[r] = LOADX(xr, qs[r].t);
    us[r] = clsm_ce_row_sums(xr, gr + goff + p * gso, ROW16_SCRATCH(r), w, C, eps, flags, 0);
    ms[r] = us[r].m;
    ss[r] = us[r].s;
  }
  vstore16(vload16(0, ms) + clsm_log16_cpu(vload16(0, ss)), 0, lses);
  for (int r = 0; r < n; ++r)
    if (!qs[r].ignored) clsm_ce_row_out(CE_PASS, ROW16_SCRATCH(r), p0 + r, qs[r], us[r], xts[r], lses[r]);
#undef ROW16_SCRATCH
}

/* Class indices as vector lanes, and their compare masks (what a compare of
 * two ACCV gives). */
#ifdef ACC_IS_DOUBLE
typedef long IDX;
typedef long16 IDXV;
#else
typedef int IDX;
typedef int16 IDXV;
#endif

/* CPU family, class axis not last (inner > 1, xsi == gsi == 1; the host
 * checks C < 2^31): a work-item owns a block of 16 * nv consecutive
 * positions of one outer index (nv from bits 16-23 of flags) and walks C with
 * stride xsc, as clsm_softmax_inner_cpu does, so each step reads a contiguous
 * run. Index targets without a softcap are computed 16 positions to a vector:
 * max; sum of exp (stored in the gradient with CE_KEEP) and the smoothing
 * sum; the gradient. An ignored position is a lane with target -1: no loss,
 * a zero gradient. Probability targets, the softcap and partial blocks take
 * the scalar row per position. */
__kernel void clsm_ce_inner_cpu(CE_KERNEL_ARGS) {
  CE_UNPACK;
  if (flag[0]) return;
  const int nv = clsm_nv_at(flags, CE_NV_SHIFT);
  const long ib = 16L * nv;
  long o, i0;
  if (!clsm_inner_block(outer, inner, ib, &o, &i0)) return;
  w += woff;
  if (i0 + ib > inner || tkind == TK_PROB || (flags & CE_SOFTCAP)) {
    for (long i = i0; i < min(i0 + ib, inner); ++i) clsm_ce_one(CE_PASS, o, i);
    return;
  }
  __global const TX *xb = x + xoff + o * xso + i0;
  __global TY *gb = gr + goff + o * gso + i0;
  const int smooth = eps > 0, weighted = (flags & CE_WEIGHT) != 0, keep = (flags & CE_KEEP) != 0;
  ACCV m[NV_MAX], s[NV_MAX], swx[NV_MAX];
  for (int k = 0; k < nv; ++k) m[k] = (ACCV)(-INFINITY);
  for (long c = 0; c < C; ++c)
    for (int k = 0; k < nv; ++k) m[k] = clsm_vmax16(m[k], VLOADX(k, xb + c * xsc));
  /* Per position: target (-1 when ignored), its logit and weight, read
   * before the sum pass may overwrite x in place. */
  IDX t[NV_MAX * 16];
  ACC xt[NV_MAX * 16], wt[NV_MAX * 16];
  for (int j = 0; j < nv * 16; ++j) {
    long tj = clsm_target(tg, (long)toff + o * tso + (i0 + j) * tsi, tkind);
    int ign = tj == ignore;
    long tc = ign ? 0 : tj;
    t[j] = ign ? (IDX)(-1) : (IDX)tj;
    xt[j] = LOADX(xb, tc * xsc + j);
    wt[j] = weighted ? LOADX(w, tc) : (ACC)1;
  }
  ACC sw = 0;
  for (int k = 0; k < nv; ++k) s[k] = swx[k] = (ACCV)(0);
  for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
    ACCV bs[NV_MAX], bwx[NV_MAX];
    ACC bw = 0;
    for (int k = 0; k < nv; ++k) bs[k] = bwx[k] = (ACCV)(0);
    for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c) {
      const ACC wc = weighted ? LOADX(w, c) : (ACC)1;
      bw += wc;
      for (int k = 0; k < nv; ++k) {
        ACCV v = VLOADX(k, xb + c * xsc);
        ACCV e = clsm_exp16_cpu(v - m[k]);
        if (keep) VSTOREY(e, k, gb + c * gsc);
        bs[k] += e;
        if (smooth) bwx[k] += wc * v;
      }
    }
    sw += bw;
    for (int k = 0; k < nv; ++k) {
      s[k] += bs[k];
      swx[k] += bwx[k];
    }
  }
  const ACC keps = eps / (ACC)C;
  const ACC W = (flags & CE_MEAN) ? scr[CE_ARRAYS * P + 0] : (ACC)1;
  const ACC Z = (flags & CE_MEAN) ? scr[CE_ARRAYS * P + 1] : (ACC)1;
  /* Loss and lse per position; then s[k] becomes 1/s, m[k] stays, and the
   * gradient's coefficients go to a (the p_c - [c = t] term), b (smoothing)
   * and q (b sw + z-loss): d_c = p_c (a + q) - b w_c, and a (p_t - 1) + q p_t
   * - b w_t at the target. */
  ACC a[NV_MAX * 16], b[NV_MAX * 16], qz[NV_MAX * 16];
  for (int k = 0; k < nv; ++k) {
    ACC lk[16], xk[16];
    vstore16(m[k] + log(s[k]), 0, lk);
    vstore16(swx[k], 0, xk);
    for (int l = 0; l < 16; ++l) {
      const int j = k * 16 + l;
      const long i = i0 + j;
      const int ign = t[j] < 0;
      const ACC lse = lk[l];
      const ACC loss = ((ACC)1 - eps) * wt[j] * (lse - xt[j]) +
                       (smooth ? keps * (lse * sw - xk[l]) : (ACC)0);
      clsm_ce_store(scr, P, o * inner + i, lse_out, loff, lso, lsi, o, i, loss, z * lse * lse, lse,
                    ign, flags);
      const ACC g = (flags & CE_GRAD) ? clsm_ce_g(gs, gsoff, gsso, gssi, o, i, flags) : (ACC)0;
      const ce_coef cf = clsm_ce_coef(g, W, Z, wt[j], eps, keps, z, lse, smooth);
      a[j] = ign ? (ACC)0 : cf.a;
      b[j] = ign ? (ACC)0 : cf.b;
      qz[j] = ign ? (ACC)0 : cf.b * sw + cf.zc;
    }
    s[k] = (ACCV)(1) / s[k];
  }
  if (!(flags & CE_GRAD)) return;
  for (long c = 0; c < C; ++c) {
    const ACC wc = weighted ? LOADX(w, c) : (ACC)1;
    for (int k = 0; k < nv; ++k) {
      ACCV ak = vload16(k, a), bk = vload16(k, b), qk = vload16(k, qz);
      ACCV pc = (keep ? VLOADY(k, gb + c * gsc) : clsm_exp16_cpu(VLOADX(k, xb + c * xsc) - m[k])) * s[k];
      ACCV d = select(pc * (ak + qk), ak * (pc - (ACCV)(1)) + qk * pc, vload16(k, t) == (IDXV)((IDX)c));
      d -= bk * wc;
      d = select(d, (ACCV)(0), vload16(k, t) < (IDXV)(0));
      VSTOREY(d, k, gb + c * gsc);
    }
  }
}

/* GPU family: a work-group per position (row) for contiguous or strided
 * rows alike. Each lane keeps an online (max, sum) and the smoothing or
 * probability sums (taken against the lane's running max, so they need no
 * rescaling: they are sums of w x, not of exponentials) over a strided
 * subset of the classes; a local-memory tree merges them; then every lane
 * writes its share of the gradient. lm/ls/la/lb hold one value per lane. */
__kernel void clsm_ce_rows_wg(CE_KERNEL_ARGS, __local ACC *lm, __local ACC *ls, __local ACC *la,
                              __local ACC *lb) {
  CE_UNPACK;
  long p = get_group_id(0);
  int l = (int)get_local_id(0), n = (int)get_local_size(0);
  if (p >= P || flag[0]) return;
  w += woff;
  long o = p / inner, i = p - o * inner;
  ce_pos q = clsm_ce_pos(tg, toff, tso, tsi, tkind, gs, gsoff, gsso, gssi, scr, P, o, i, ignore,
                         flags);
  __global const TX *xr = x + xoff + o * xso + i * xsi;
  __global TY *grr = gr + goff + o * gso + i * gsi;
  const int prob = tkind == TK_PROB;
  __global const TX *qr = (__global const TX *)tg + toff + o * tso + i * tsi;
  const ACC keps = eps / (ACC)C;
  const int sums = prob || eps > 0;
  /* x'_t, read before any lane writes the gradient over x (in place). */
  const ACC xt = (prob || q.ignored) ? (ACC)0 : clsm_cap(LOADX(xr, q.t * xsc), cap, flags);
  ACC m = -INFINITY, s = 0, swx = 0, sw = 0;
  /* ROW_VPT loads at a time, folded into the online pair with one rescale
   * (as in clsm_softmax_rows_wg), so loads do not wait on exp. */
  for (long c0 = l; c0 < C; c0 += (long)n * ROW_VPT) {
    ACC v[ROW_VPT];
    int cnt = 0;
#pragma unroll
    for (int k = 0; k < ROW_VPT; ++k) {
      long c = c0 + (long)k * n;
      v[k] = c < C ? clsm_cap(LOADX(xr, c * xsc), cap, flags) : (ACC)(-INFINITY);
      cnt += c < C;
    }
    clsm_online_fold(&m, &s, v, cnt);
    for (int k = 0; sums && k < cnt; ++k) {
      long c = c0 + (long)k * n;
      ACC wc = (flags & CE_WEIGHT) ? LOADX(w, c) : (ACC)1;
      if (prob) wc *= ((ACC)1 - eps) * LOADX(qr, c * tsc) + keps;
      swx += wc * v[k];
      sw += wc;
    }
  }
  lm[l] = m;
  ls[l] = s;
  la[l] = swx;
  lb[l] = sw;
  clsm_tree_online(lm, ls, l, n); /* its barriers also publish la, lb */
  for (int h = n / 2; h > 0; h /= 2) {
    if (l < h) {
      la[l] += la[l + h];
      lb[l] += lb[l + h];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  /* Every lane has read the target logit (xt) before any lane stores its
   * gradient, which may go over the logits (in place). A local-memory
   * barrier does not order global memory in OpenCL 1.2: this one does. */
  if (flags & CE_GRAD) barrier(CLK_GLOBAL_MEM_FENCE);
  m = lm[0];
  s = clsm_finish_sum(m, ls[0]);
  if (m == -INFINITY) s = NAN; /* exp(-inf - -inf), as the two-pass form and the CPU family */
  swx = la[0];
  sw = lb[0];
  const ACC lse = m + log(s);
  if (q.ignored) {
    if (flags & CE_GRAD)
      for (long c = l; c < C; c += n) STOREY(grr, c * gsc, (ACC)0);
  } else if (flags & CE_GRAD) {
    const ACC inv = (ACC)1 / s;
    const ACC wt = (!prob && (flags & CE_WEIGHT)) ? LOADX(w, q.t) : (ACC)1;
    const ce_coef k = clsm_ce_coef(q.g, q.W, q.Z, wt, prob ? (ACC)0 : eps, keps, z, lse, !prob && eps > 0);
    for (long c = l; c < C; c += n) {
      ACC v = clsm_cap(LOADX(xr, c * xsc), cap, flags);
      ACC pc = exp(v - m) * inv;
      ACC wc = (flags & CE_WEIGHT) ? LOADX(w, c) : (ACC)1;
      ACC qc = prob ? ((ACC)1 - eps) * LOADX(qr, c * tsc) + keps : (ACC)0;
      STOREY(grr, c * gsc, clsm_ce_grad_at(k, v, pc, wc, qc, sw, prob, c == q.t, z, cap, flags));
    }
  }
  if (l != 0) return;
  ACC loss = 0;
  if (!q.ignored)
    loss = clsm_ce_loss(prob, eps, keps, (!prob && (flags & CE_WEIGHT)) ? LOADX(w, q.t) : (ACC)1,
                        lse, xt, sw, swx);
  clsm_ce_store(scr, P, p, lse_out, loff, lso, lsi, o, i, loss, z * lse * lse, lse, q.ignored, flags);
}

/* Few long rows on the CPU family (index targets, no softcap, no label
 * smoothing; the host splits as for softmax's long rows): each row is split
 * into `chunks` chunks of `chunk` classes, so that one row uses every core.
 * The chunks' pairs sit in part = scr + 4P + 4, the rows' target logits
 * after them.
 * clsm_ce_split_partials: work-item w = (p, k) stores its chunk's (max, sum
 * of exp(x - max)) in part[2w], part[2w + 1], read once as the long rows'
 * kernel does, and the chunk holding the row's target its logit in
 * part[2 P chunks + p]: read here, before the second kernel's gradient can
 * overwrite it in place. */
__kernel void clsm_ce_split_partials(__global const TX *x, __global const uchar *tg,
                                     __global ACC *scr, __global const int *flag,
                                     const clsm_ce_params prm) {
  const ulong xoff = prm.xoff, toff = prm.toff;
  const long xso = prm.xso, tso = prm.tso, P = prm.P, C = prm.C, ignore = prm.ignore;
  const long chunk = prm.chunk, chunks = prm.chunks;
  const int tkind = prm.tkind;
  const long wi = get_global_id(0);
  if (wi >= P * chunks || flag[0]) return;
  const long p = wi / chunks, k = wi - p * chunks, c0 = k * chunk;
  __global const TX *xr = x + xoff + p * xso;
  __global ACC *part = scr + (CE_ARRAYS * P + CE_TOTALS);
  ACC m, s;
  clsm_row_online(xr + c0, (__global TY *)0, min(chunk, C - c0), &m, &s);
  part[2 * wi] = m;
  part[2 * wi + 1] = s;
  const long t = clsm_target(tg, (long)toff + p * tso, tkind);
  if (t != ignore && t >= c0 && t < c0 + chunk) part[2 * P * chunks + p] = LOADX(xr, t);
}

/* clsm_ce_split_rows: work-item (p, k) merges row p's pairs in chunk order
 * (every work-item of the row gets the same max, sum and lse), writes its
 * chunk of the gradient and the target entry if the chunk holds it; chunk 0
 * stores the row's loss parts and lse. The formulas are clsm_ce_row_out's
 * without smoothing. An all -inf row has NaN for its sum, as the two-pass
 * form (exp(-inf - -inf)); a +inf or NaN logit makes it NaN too. */
__kernel void clsm_ce_split_rows(CE_KERNEL_ARGS) {
  CE_UNPACK;
  const long chunk = prm.chunk, chunks = prm.chunks;
  const long wi = get_global_id(0);
  if (wi >= P * chunks || flag[0]) return;
  w += woff;
  const long p = wi / chunks, k = wi - p * chunks, c0 = k * chunk, n = min(chunk, C - c0);
  __global const ACC *part = scr + (CE_ARRAYS * P + CE_TOTALS);
  ACC m, s;
  clsm_merge_parts(part + 2 * p * chunks, chunks, &m, &s);
  if (m == -INFINITY) s = NAN;
  const ACC lsv = m + clsm_log_cpu(s);
  const ce_pos q = clsm_ce_pos(tg, toff, tso, tsi, tkind, gs, gsoff, gsso, gssi, scr, P, p, 0,
                               ignore, flags);
  __global const TX *xr = x + xoff + p * xso + c0;
  __global TY *grr = gr + goff + p * gso + c0;
  if (q.ignored) {
    if (flags & CE_GRAD)
      for (long c = 0; c < n; ++c) STOREY(grr, c, (ACC)0);
    if (k == 0) clsm_ce_store(scr, P, p, lse_out, loff, lso, lsi, p, 0, 0, 0, lsv, 1, flags);
    return;
  }
  const ACC xt = part[2 * P * chunks + p];
  const ACC wt = (flags & CE_WEIGHT) ? LOADX(w, q.t) : (ACC)1;
  if (k == 0)
    clsm_ce_store(scr, P, p, lse_out, loff, lso, lsi, p, 0, wt * (lsv - xt), (ACC)z * lsv * lsv,
                  lsv, 0, flags);
  if (!(flags & CE_GRAD)) return;
  const ACC inv = (ACC)1 / s;
  const ce_coef cf = clsm_ce_coef(q.g, q.W, q.Z, wt, (ACC)0, (ACC)0, z, lsv, 0); /* no smoothing */
  const ACC a = cf.a, zc = cf.zc, pz = a + zc;
  const ACCV mm = (ACCV)(m);
  long c = 0;
  for (; c + 16 <= n; c += 16) VSTOREY(clsm_exp16_cpu(VLOADX(0, xr + c) - mm) * inv * pz, 0, grr + c);
  for (; c < n; ++c) STOREY(grr, c, exp(LOADX(xr, c) - m) * inv * pz);
  if (q.t >= c0 && q.t < c0 + n) {
    const ACC pt = exp(xt - m) * inv;
    /* bfloat16 vectors were stored as uints: keep this store after them. */
    mem_fence(CLK_GLOBAL_MEM_FENCE);
    STOREY(grr, q.t - c0, a * (pt - (ACC)1) + zc * pt);
  }
}
