/* shard.cl: a class axis (or softmax axis) split into contiguous shards,
 * each on its own device: partial -> merge (the caller's, over whatever it
 * runs) -> finish. Built into the cross-entropy program after ce.cl, whose
 * prep, reduce and finish kernels and row helpers it shares.
 *
 * Cross-entropy, shard [first, first + C) of `classes`, per position p
 * (statistics st[stoff + p * SHARD_K + k], in the compute type):
 *   partial  k = 0, 1: the shard's (m, s) of x': m = max x', s = sum
 *            exp(x' - m) (m = -inf and s = 0 when it has no finite term; s
 *            NaN when a NaN or +inf is among its logits), 2: x'_t where the
 *            shard owns the target t (else 0), 3: sum_c w_c x'_c and
 *            4: sum_c w_c (probability targets: w_c q'_c in both,
 *            q' = (1-eps) q + eps/classes), over the shard's classes;
 *            3 and 4 are 0 for index targets without label smoothing.
 *   merged   0, 1: the (max, sum) pair of all shards, 2..4: their sums.
 *   rows     the loss parts l_n, z_n (into the scratch ce_finish reduces),
 *            lse, and the gradient on the shard's columns, with the whole
 *            axis' statistics: exactly ce.cl's formulas, C = classes.
 * Softmax along a sharded axis, per row: partial (m, s) (backward: S = sum
 * dy y, log-softmax sum dy, and the count of y > -inf); merged as a (max,
 * sum) pair (backward: summed);
 * finish y = exp(x - m) / s or (x - m) - log s (backward: y (dy - S),
 * dy - exp(y) S). Keeping (m, s) rather than their lse makes every
 * probability the unsharded one up to the order of the sum: exp(x - lse)
 * would carry lse's absolute rounding, |lse| units, into each of them.
 * CPU family: a work-item a position, contiguous rows 16-wide, anything
 * else scalar. GPU family (the _wg kernels at the end): a work-group a row. */

/* A shard's sum from its (max, sum). A shard with no finite logit has
 * m = -inf: its sum is 0 (it adds nothing) unless a NaN is among its
 * logits (the two-pass sum is NaN there either way); m = +inf makes s NaN
 * already. */
static inline ACC clsm_shard_sum(ACC m, ACC s, __global const TX *xr, long xsc, long C, ACC cap,
                                 uint flags) {
  if (m != -INFINITY) return s;
  for (long c = 0; c < C; ++c)
    if (isnan(clsm_cap(LOADX(xr, c * xsc), cap, flags))) return (ACC)NAN;
  return (ACC)0;
}

__kernel void clsm_ce_shard_partial(CE_KERNEL_ARGS, __global ACC *st) {
  CE_UNPACK;
  const long first = prm.first, classes = prm.classes;
  long p = get_global_id(0);
  if (p >= P || flag[0]) return;
  const long o = p / inner, i = p - o * inner;
  const int prob = tkind == TK_PROB, smooth = eps > 0, weighted = (flags & CE_WEIGHT) != 0;
  __global const TX *xr = x + xoff + o * xso + i * xsi;
  __global const TX *wl = w + woff + first; /* the shard's weights */
  __global const TX *qr = (__global const TX *)tg + toff + o * tso + i * tsi;
  long t = -1;
  if (!prob) t = clsm_target(tg, (long)toff + o * tso + i * tsi, tkind) - first;
  ACC m, s = 0, swx = 0, sw = 0;
  if (!prob && !(flags & CE_SOFTCAP) && xsc == 1) {
    /* One read of the row without smoothing, as ce_rows_long_cpu. */
    ce_sums u = clsm_ce_row_sums(xr, (__global TY *)0, (__local ACC *)0, wl, C, eps,
                                 flags & ~CE_KEEP, !smooth);
    m = u.m, s = u.s, swx = u.swx, sw = u.sw;
  } else {
    const ACC keps = eps / (ACC)classes;
    m = -INFINITY;
    for (long c = 0; c < C; ++c) m = fmax(m, clsm_cap(LOADX(xr, c * xsc), cap, flags));
    for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
      ACC bs = 0, bwx = 0, bw = 0;
      for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c) {
        ACC v = clsm_cap(LOADX(xr, c * xsc), cap, flags);
        bs += exp(v - m);
        ACC wc = weighted ? LOADX(wl, c) : (ACC)1;
        if (prob) wc *= ((ACC)1 - eps) * LOADX(qr, c * tsc) + keps;
        if (prob || smooth) {
          bwx += wc * v;
          bw += wc;
        }
      }
      s += bs;
      swx += bwx;
      sw += bw;
    }
  }
  __global ACC *sp = st + prm.stoff + p * SHARD_K;
  sp[0] = m;
  sp[1] = clsm_shard_sum(m, s, xr, xsc, C, cap, flags);
  sp[2] = (t >= 0 && t < C) ? clsm_cap(LOADX(xr, t * xsc), cap, flags) : (ACC)0;
  sp[3] = swx;
  sp[4] = sw;
}

__kernel void clsm_ce_shard_rows(CE_KERNEL_ARGS, __global const ACC *st) {
  CE_UNPACK;
  const long first = prm.first, classes = prm.classes;
  long p = get_global_id(0);
  if (p >= P || flag[0]) return;
  const long o = p / inner, i = p - o * inner;
  const int prob = tkind == TK_PROB, smooth = eps > 0, weighted = (flags & CE_WEIGHT) != 0;
  const ce_pos q = clsm_ce_pos(tg, toff, tso, tsi, tkind, gs, gsoff, gsso, gssi, scr, P, o, i,
                               ignore, flags);
  __global const TX *xr = x + xoff + o * xso + i * xsi;
  __global TY *grr = gr + goff + o * gso + i * gsi;
  __global const TX *wl = w + woff + first;
  __global const TX *qr = (__global const TX *)tg + toff + o * tso + i * tsi;
  __global const ACC *sp = st + prm.stoff + p * SHARD_K;
  /* (m, s) as the unsharded row has them; no finite logit anywhere: NaN,
   * as the unsharded two-pass sum gives. */
  const ACC m = sp[0], s = sp[0] == -INFINITY ? (ACC)NAN : sp[1];
  const ACC xt = sp[2], swx = sp[3], sw = sp[4];
  const ACC lse = m + log(s), inv = (ACC)1 / s;
  ACC l = 0, zl = 0;
  if (q.ignored) {
    if (flags & CE_GRAD)
      for (long c = 0; c < C; ++c) STOREY(grr, c * gsc, (ACC)0);
  } else {
    const ACC keps = eps / (ACC)classes;
    const ACC wt = (!prob && weighted) ? LOADX(w + woff, q.t) : (ACC)1;
    l = clsm_ce_loss(prob, eps, keps, wt, lse, xt, sw, swx);
    zl = z * lse * lse;
    if (flags & CE_GRAD) {
      const ce_coef k = clsm_ce_coef(q.g, q.W, q.Z, wt, prob ? (ACC)0 : eps, keps, z, lse,
                                     !prob && smooth);
      const long tl = prob ? -1 : q.t - first; /* the target's column here, if it is here */
      if (!prob && !(flags & CE_SOFTCAP) && xsc == 1 && gsc == 1) {
        const ACC a = k.a, b = k.b, zc = k.zc, pz = a + b * sw + zc;
        const ACCV mv = (ACCV)(m);
        long c;
        for (c = 0; c + 16 <= C; c += 16) {
          ACCV d = clsm_exp16_cpu(VLOADX(0, xr + c) - mv) * inv * pz;
          if (smooth) d -= b * (weighted ? VLOADX(0, wl + c) : (ACCV)(1));
          VSTOREY(d, 0, grr + c);
        }
        for (; c < C; ++c) {
          ACC d = exp(LOADX(xr, c) - m) * inv * pz;
          if (smooth) d -= b * (weighted ? LOADX(wl, c) : (ACC)1);
          STOREY(grr, c, d);
        }
        if (tl >= 0 && tl < C) {
          /* p_t - 1 formed before it is scaled, as ce.cl does. */
          const ACC pt = exp(xt - m) * inv;
          const ACC d = a * (pt - (ACC)1) + (b * sw + zc) * pt - b * (smooth ? wt : (ACC)0);
          mem_fence(CLK_GLOBAL_MEM_FENCE); /* after the vector stores (bfloat16: as uints) */
          STOREY(grr, tl, d);
        }
      } else {
        for (long c = 0; c < C; ++c) {
          const ACC v = clsm_cap(LOADX(xr, c * xsc), cap, flags);
          const ACC pc = exp(v - m) * inv;
          const ACC wc = weighted ? LOADX(wl, c) : (ACC)1;
          const ACC qc = prob ? ((ACC)1 - eps) * LOADX(qr, c * tsc) + keps : (ACC)0;
          STOREY(grr, c * gsc, clsm_ce_grad_at(k, v, pc, wc, qc, sw, prob, c == tl, z, cap, flags));
        }
      }
    }
  }
  clsm_ce_store(scr, P, p, lse_out, loff, lso, lsi, o, i, l, zl, lse, q.ignored, flags);
}

/* Sharded softmax axis. a: x (forward) or y (backward), b: dy; out: y or
 * dx; the statistics st[stoff + row]. Views as the cross-entropy params:
 * a at x*, b at t*, out at g*, rows P = outer * inner. */
#define SM_SHARD_ARGS                                                                        \
  __global const TX *a, __global const TX *b, __global TY *out, __global ACC *st,            \
      const clsm_ce_params prm
#define SM_SHARD_ROW                                                                         \
  const long P = prm.P, C = prm.C, inner = prm.inner;                                        \
  const uint flags = prm.flags;                                                              \
  const long p = get_global_id(0);                                                           \
  if (p >= P) return;                                                                        \
  const long o = p / inner, i = p - o * inner;                                               \
  __global const TX *ar = a + prm.xoff + o * prm.xso + i * prm.xsi;                          \
  __global const TX *br = b + prm.toff + o * prm.tso + i * prm.tsi;                          \
  const long asc = prm.xsc, bsc = prm.tsc;                                                   \
  (void)br;                                                                                  \
  (void)bsc

__kernel void clsm_sm_shard_partial(SM_SHARD_ARGS) {
  SM_SHARD_ROW;
  if (!(flags & SH_BACKWARD)) {
    ACC m, s = 0;
    if (asc == 1) {
      clsm_row_online(ar, (__global TY *)0, C, &m, &s);
    } else {
      m = -INFINITY;
      for (long c = 0; c < C; ++c) m = fmax(m, LOADX(ar, c * asc));
      for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
        ACC bs = 0;
        for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c) bs += exp(LOADX(ar, c * asc) - m);
        s += bs;
      }
    }
    st[prm.stoff + 2 * p] = m;
    st[prm.stoff + 2 * p + 1] = clsm_shard_sum(m, s, ar, asc, C, (ACC)0, 0u);
  } else {
    /* softmax: sum dy y; log-softmax: sum dy; and the count of y > -inf
     * (F_SAFE's log-softmax rows with none get dx = 0, as backward.cl's). */
    const int lg = (flags & F_LOG) != 0;
    ACC r = 0, live = 0;
    for (long c0 = 0; c0 < C; c0 += SUM_BLOCK) {
      ACC bs = 0;
      for (long c = c0; c < min(C, c0 + SUM_BLOCK); ++c) {
        const ACC y = LOADX(ar, c * asc), dy = LOADX(br, c * bsc);
        bs += lg ? dy : dy * y;
        live += y > -INFINITY ? (ACC)1 : (ACC)0;
      }
      r += bs;
    }
    st[prm.stoff + 2 * p] = r;
    st[prm.stoff + 2 * p + 1] = live;
  }
}

__kernel void clsm_sm_shard_finish(SM_SHARD_ARGS) {
  SM_SHARD_ROW;
  __global TY *yr = out + prm.goff + o * prm.gso + i * prm.gsi;
  const long osc = prm.gsc;
  const int lg = (flags & F_LOG) != 0;
  const int vec = asc == 1 && bsc == 1 && osc == 1;
  long c = 0;
  if (!(flags & SH_BACKWARD)) {
    const ACC m = st[prm.stoff + 2 * p], s = st[prm.stoff + 2 * p + 1];
    /* An axis with no finite entry (m = -inf, s = 0): 0 (log: -inf) with
     * F_SAFE, else NaN; a NaN in s stays NaN. */
    if (m == -INFINITY && s == 0 && (flags & F_SAFE)) {
      for (; c < C; ++c) STOREY(yr, c * osc, lg ? (ACC)(-INFINITY) : (ACC)0);
      return;
    }
    /* As the unsharded rows: exp(x - m) with the subtraction's remainder,
     * (x - m) - log s. */
    const ACC ms = m == -INFINITY ? (ACC)NAN : m;
    const ACC inv = (ACC)1 / s, ls = log(s);
    const ACCV mv = (ACCV)(ms), lv = (ACCV)(ls);
    if (vec)
      for (; c + 16 <= C; c += 16) {
        const ACCV v = VLOADX(0, ar + c);
        VSTOREY(lg ? (v - mv) - lv : clsm_exp_sub16(v, mv) * inv, 0, yr + c);
      }
    for (; c < C; ++c) {
      const ACC v = LOADX(ar, c * asc);
      STOREY(yr, c * osc, lg ? (v - ms) - ls : clsm_exp_sub(v, ms) * inv);
    }
  } else {
    const ACC r = st[prm.stoff + 2 * p];
    if (lg && (flags & F_SAFE) && st[prm.stoff + 2 * p + 1] == 0) {
      for (; c < C; ++c) STOREY(yr, c * osc, (ACC)0);
      return;
    }
    const ACCV rv = (ACCV)(r);
    if (vec)
      for (; c + 16 <= C; c += 16) {
        const ACCV y = VLOADX(0, ar + c), dy = VLOADX(0, br + c);
        VSTOREY(lg ? dy - exp(y) * rv : y * (dy - rv), 0, yr + c);
      }
    for (; c < C; ++c) {
      const ACC y = LOADX(ar, c * asc), dy = LOADX(br, c * bsc);
      STOREY(yr, c * osc, lg ? dy - exp(y) * r : y * (dy - r));
    }
  }
}

/* GPU family: a work-group a position (row), as ce_rows_wg: each lane folds
 * a strided share of the row into an online (max, sum) and the smoothing
 * or probability sums, a local-memory tree merges them; the finish's lanes
 * each write their share. lm, ls, la, lb: a value a lane. */
__kernel void clsm_ce_shard_partial_wg(CE_KERNEL_ARGS, __global ACC *st, __local ACC *lm,
                                       __local ACC *ls, __local ACC *la, __local ACC *lb) {
  CE_UNPACK;
  const long first = prm.first, classes = prm.classes;
  const long p = get_group_id(0);
  const int l = (int)get_local_id(0), n = (int)get_local_size(0);
  if (p >= P || flag[0]) return;
  const long o = p / inner, i = p - o * inner;
  const int prob = tkind == TK_PROB, sums = prob || eps > 0, weighted = (flags & CE_WEIGHT) != 0;
  __global const TX *xr = x + xoff + o * xso + i * xsi;
  __global const TX *wl = w + woff + first;
  __global const TX *qr = (__global const TX *)tg + toff + o * tso + i * tsi;
  const ACC keps = eps / (ACC)classes;
  ACC m = -INFINITY, s = 0, swx = 0, sw = 0;
  for (long c0 = l; c0 < C; c0 += (long)n * ROW_VPT) {
    ACC v[ROW_VPT];
    int cnt = 0;
#pragma unroll
    for (int k = 0; k < ROW_VPT; ++k) {
      const long c = c0 + (long)k * n;
      v[k] = c < C ? clsm_cap(LOADX(xr, c * xsc), cap, flags) : (ACC)(-INFINITY);
      cnt += c < C;
    }
    clsm_online_fold(&m, &s, v, cnt);
    for (int k = 0; sums && k < cnt; ++k) {
      const long c = c0 + (long)k * n;
      ACC wc = weighted ? LOADX(wl, c) : (ACC)1;
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
  if (l != 0) return;
  m = lm[0];
  s = clsm_finish_sum(m, ls[0]); /* a +inf logit: NaN */
  /* No finite logit: (-inf, 0), or a NaN sum when a NaN is among them (the
   * online sum counts each -inf as 1 against a -inf max). */
  if (m == -INFINITY) s = isnan(s) ? (ACC)NAN : (ACC)0;
  long t = -1;
  if (!prob) t = clsm_target(tg, (long)toff + o * tso + i * tsi, tkind) - first;
  __global ACC *sp = st + prm.stoff + p * SHARD_K;
  sp[0] = m;
  sp[1] = s;
  sp[2] = (t >= 0 && t < C) ? clsm_cap(LOADX(xr, t * xsc), cap, flags) : (ACC)0;
  sp[3] = la[0];
  sp[4] = lb[0];
}

__kernel void clsm_ce_shard_rows_wg(CE_KERNEL_ARGS, __global const ACC *st) {
  CE_UNPACK;
  const long first = prm.first, classes = prm.classes;
  const long p = get_group_id(0);
  const int l = (int)get_local_id(0), n = (int)get_local_size(0);
  if (p >= P || flag[0]) return;
  const long o = p / inner, i = p - o * inner;
  const int prob = tkind == TK_PROB, smooth = eps > 0, weighted = (flags & CE_WEIGHT) != 0;
  const ce_pos q = clsm_ce_pos(tg, toff, tso, tsi, tkind, gs, gsoff, gsso, gssi, scr, P, o, i,
                               ignore, flags);
  __global const TX *xr = x + xoff + o * xso + i * xsi;
  __global TY *grr = gr + goff + o * gso + i * gsi;
  __global const TX *wl = w + woff + first;
  __global const TX *qr = (__global const TX *)tg + toff + o * tso + i * tsi;
  __global const ACC *sp = st + prm.stoff + p * SHARD_K;
  const ACC m = sp[0], s = sp[0] == -INFINITY ? (ACC)NAN : sp[1];
  const ACC xt = sp[2], swx = sp[3], sw = sp[4];
  const ACC lse = m + log(s), inv = (ACC)1 / s;
  const ACC keps = eps / (ACC)classes;
  const ACC wt = (!prob && !q.ignored && weighted) ? LOADX(w + woff, q.t) : (ACC)1;
  if (flags & CE_GRAD) {
    const ce_coef k = clsm_ce_coef(q.g, q.W, q.Z, wt, prob ? (ACC)0 : eps, keps, z, lse,
                                   !prob && smooth);
    const long tl = prob ? -1 : q.t - first;
    /* Each element is read, then written, by the same lane: in place is safe. */
    for (long c = l; c < C; c += n) {
      if (q.ignored) {
        STOREY(grr, c * gsc, (ACC)0);
        continue;
      }
      const ACC v = clsm_cap(LOADX(xr, c * xsc), cap, flags);
      const ACC wc = weighted ? LOADX(wl, c) : (ACC)1;
      const ACC qc = prob ? ((ACC)1 - eps) * LOADX(qr, c * tsc) + keps : (ACC)0;
      STOREY(grr, c * gsc,
             clsm_ce_grad_at(k, v, exp(v - m) * inv, wc, qc, sw, prob, c == tl, z, cap, flags));
    }
  }
  if (l != 0) return;
  ACC lv = 0, zl = 0;
  if (!q.ignored) {
    lv = clsm_ce_loss(prob, eps, keps, wt, lse, xt, sw, swx);
    zl = z * lse * lse;
  }
  clsm_ce_store(scr, P, p, lse_out, loff, lso, lsi, o, i, lv, zl, lse, q.ignored, flags);
}

/* The sharded softmax's GPU-family kernels: a work-group a row. */
__kernel void clsm_sm_shard_partial_wg(SM_SHARD_ARGS, __local ACC *lm, __local ACC *ls) {
  const long P = prm.P, C = prm.C, inner = prm.inner;
  const uint flags = prm.flags;
  const long p = get_group_id(0);
  const int l = (int)get_local_id(0), n = (int)get_local_size(0);
  if (p >= P) return;
  const long o = p / inner, i = p - o * inner;
  __global const TX *ar = a + prm.xoff + o * prm.xso + i * prm.xsi;
  __global const TX *br = b + prm.toff + o * prm.tso + i * prm.tsi;
  const long asc = prm.xsc, bsc = prm.tsc;
  if (!(flags & SH_BACKWARD)) {
    ACC m = -INFINITY, s = 0;
#define SHARD_LOAD_(c) LOADX(ar, (c) * asc)
    CLSM_FOLD_LANES(m, s, 1, l, n, C, SHARD_LOAD_);
#undef SHARD_LOAD_
    clsm_seg_merge(lm, ls, l, l, n, &m, &s);
    if (l != 0) return;
    if (m == -INFINITY) s = isnan(s) ? (ACC)NAN : (ACC)0;
    st[prm.stoff + 2 * p] = m;
    st[prm.stoff + 2 * p + 1] = s;
  } else {
    const int lg = (flags & F_LOG) != 0;
    ACC r = 0, live = 0;
    for (long c = l; c < C; c += n) {
      const ACC y = LOADX(ar, c * asc), dy = LOADX(br, c * bsc);
      r += lg ? dy : dy * y;
      live += y > -INFINITY ? (ACC)1 : (ACC)0;
    }
    lm[l] = r;
    ls[l] = live;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = n / 2; h > 0; h /= 2) {
      if (l < h) {
        lm[l] += lm[l + h];
        ls[l] += ls[l + h];
      }
      barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l != 0) return;
    st[prm.stoff + 2 * p] = lm[0];
    st[prm.stoff + 2 * p + 1] = ls[0];
  }
}

__kernel void clsm_sm_shard_finish_wg(SM_SHARD_ARGS) {
  const long P = prm.P, C = prm.C, inner = prm.inner;
  const uint flags = prm.flags;
  const long p = get_group_id(0);
  const int l = (int)get_local_id(0), n = (int)get_local_size(0);
  if (p >= P) return;
  const long o = p / inner, i = p - o * inner;
  __global const TX *ar = a + prm.xoff + o * prm.xso + i * prm.xsi;
  __global const TX *br = b + prm.toff + o * prm.tso + i * prm.tsi;
  __global TY *yr = out + prm.goff + o * prm.gso + i * prm.gsi;
  const long asc = prm.xsc, bsc = prm.tsc, osc = prm.gsc;
  const int lg = (flags & F_LOG) != 0;
  const ACC r0 = st[prm.stoff + 2 * p], r1 = st[prm.stoff + 2 * p + 1];
  if (!(flags & SH_BACKWARD)) {
    const int empty = r0 == -INFINITY && r1 == 0 && (flags & F_SAFE);
    const ACC ms = r0 == -INFINITY ? (ACC)NAN : r0, inv = (ACC)1 / r1, ls = log(r1);
    for (long c = l; c < C; c += n) {
      const ACC v = LOADX(ar, c * asc);
      STOREY(yr, c * osc, empty ? (lg ? (ACC)(-INFINITY) : (ACC)0)
                                : lg ? (v - ms) - ls : clsm_exp_sub(v, ms) * inv);
    }
  } else {
    const int zero = lg && (flags & F_SAFE) && r1 == 0;
    for (long c = l; c < C; c += n) {
      const ACC y = LOADX(ar, c * asc), dy = LOADX(br, c * bsc);
      STOREY(yr, c * osc, zero ? (ACC)0 : lg ? dy - exp(y) * r0 : y * (dy - r0));
    }
  }
}
