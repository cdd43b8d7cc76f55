/* rows_reg.cl: GPU family, forward softmax, log-softmax and cross-entropy
 * (index targets, the gradient fused) of contiguous rows held in
 * registers: every element read once, its exp computed once, all of a
 * lane's loads issued before its first store (so y may be x).
 *
 * A program of its own per variant (the host's clsm__reg_variants):
 *   CLSM_REG_E   values a lane holds (8, 16 or 32), a compile-time constant,
 *                every loop over them unrolled;
 *   CLSM_REG_V   elements a load: 16 bytes of x's dtype (x and y rows are
 *                then aligned to V elements), or 1 for rows that are not;
 *   CLSM_REG_WG  lanes a work-group (reqd_work_group_size), L lanes a row
 *                (a power of two, log2 in flags' F_LANES_SHIFT bits), WG / L
 *                rows a group.
 * Lane j of a row holds the vectors j, j + L, ..., j + (NPL - 1) L, the
 * row's only 64-bit address being its base; in-row offsets are 32-bit
 * (rows of at most E * WG elements). The row's max, then its sum of
 * exp(x - max) (one exp an element, kept for softmax), are each reduced in
 * radix-REG_RADIX levels through local memory (one barrier a level, plus
 * one): y = exp(x - max) / sum or (x - max) - log(sum), the formula of the
 * reference. */

#define NPL (CLSM_REG_E / CLSM_REG_V)
#if CLSM_REG_E % CLSM_REG_V != 0
#error "CLSM_REG_E must be a multiple of CLSM_REG_V"
#endif

/* RLOADV(p, e, dst): CLSM_REG_V elements of p from element e (aligned to
 * them) into the compute-type array dst; RSTOREV(p, e, src): the reverse,
 * rounded once to y's dtype. */
#if CLSM_REG_V == 1
#define RLOADV(p, e, dst) ((dst)[0] = LOADX((p), (e)))
#define RSTOREV(p, e, src) STOREY((p), (e), (src)[0])
#else
#define CLSM_CAT_(a, b) a##b
#define CLSM_CAT(a, b) CLSM_CAT_(a, b)
#define RVLOAD CLSM_CAT(vload, CLSM_REG_V)
#define RVSTORE CLSM_CAT(vstore, CLSM_REG_V)
#if defined(CLSM_X_F32)
#define RLOADV(p, e, dst) RVSTORE(*(__global const CLSM_CAT(float, CLSM_REG_V) *)((p) + (e)), 0, (dst))
#elif defined(CLSM_X_F64)
#define RLOADV(p, e, dst) RVSTORE(*(__global const CLSM_CAT(double, CLSM_REG_V) *)((p) + (e)), 0, (dst))
#elif defined(CLSM_X_F16)
/* float16 bits as 16-byte vectors of ushort, widened in integer arithmetic
 * (vloada_half compiles to 2-byte loads on NVPTX): the bits moved into a
 * float's place and scaled by 2^112 (normal and subnormal values exactly),
 * inf and NaN given the float exponent, then the sign. */
#define RLOADV(p, e, dst)                                                                     \
  do {                                                                                        \
    const CLSM_CAT(uint, CLSM_REG_V) h_ = CLSM_CAT(convert_uint, CLSM_REG_V)(                 \
        *(__global const CLSM_CAT(ushort, CLSM_REG_V) *)((__global const ushort *)(p) + (e)));  \
    const CLSM_CAT(uint, CLSM_REG_V) b_ = (h_ & 0x7fffu) << 13;                               \
    const CLSM_CAT(float, CLSM_REG_V) f_ = CLSM_CAT(as_float, CLSM_REG_V)(b_) * 0x1p112f;     \
    const CLSM_CAT(uint, CLSM_REG_V) u_ = select(CLSM_CAT(as_uint, CLSM_REG_V)(f_),           \
                                                 b_ | 0x7f800000u, (h_ & 0x7c00u) == 0x7c00u); \
    RVSTORE(CLSM_CAT(as_float, CLSM_REG_V)(u_ | ((h_ & 0x8000u) << 16)), 0, (dst));          \
  } while (0)
#else /* bfloat16: the high halves of floats */
#define RLOADV(p, e, dst)                                                                     \
  RVSTORE(CLSM_CAT(as_float, CLSM_REG_V)(                                                     \
              CLSM_CAT(convert_uint, CLSM_REG_V)(                                             \
                  *(__global const CLSM_CAT(ushort, CLSM_REG_V) *)((p) + (e))) << 16),        \
          0, (dst))
#endif
#if defined(CLSM_Y_F32)
#define RSTOREV(p, e, src)                                                                    \
  (*(__global CLSM_CAT(float, CLSM_REG_V) *)((p) + (e)) =                                     \
       CLSM_CAT(convert_float, CLSM_REG_V)(RVLOAD(0, (src))))
#elif defined(CLSM_Y_F64)
#define RSTOREV(p, e, src) (*(__global CLSM_CAT(double, CLSM_REG_V) *)((p) + (e)) = RVLOAD(0, (src)))
#elif defined(CLSM_Y_F16)
/* Rounded by vstore_half_rte into a private vector, stored as one. */
#define RSTOREV(p, e, src)                                                                    \
  do {                                                                                        \
    ushort t_[CLSM_REG_V];                                                                    \
    _Pragma("unroll") for (int i_ = 0; i_ < CLSM_REG_V; ++i_)                                 \
        vstore_half_rte((src)[i_], i_, (__private half *)t_);                                 \
    *(__global CLSM_CAT(ushort, CLSM_REG_V) *)((__global ushort *)(p) + (e)) = RVLOAD(0, t_);  \
  } while (0)
#else /* bfloat16, rounded to nearest even, NaN kept quiet; stored as uints
        (a ushort8 store is two 8-byte stores on NVPTX) */
#define RSTOREV(p, e, src)                                                                    \
  do {                                                                                        \
    ushort t_[8];                                                                             \
    _Pragma("unroll") for (int i_ = 0; i_ < 8; ++i_) t_[i_] = clsm_float_to_bf16((src)[i_]);  \
    const ushort8 b_ = vload8(0, t_);                                                         \
    *(__global uint4 *)((__global ushort *)(p) + (e)) =                                       \
        convert_uint4(b_.even) | (convert_uint4(b_.odd) << 16);                               \
  } while (0)
#endif
#endif

/* A row's L lane values (lane l = row base + j holds *v) reduced by OP
 * (max or +) into every lane of the row: the values to lv; then levels of
 * REG_RADIX: at stride h, lane j (a multiple of h * REG_RADIX) folds the
 * values of lanes j + h, j + 2h, ... into its own slot. One barrier a level
 * and one before the first: 2 for L <= 16, 3 up to 256, 4 up to 4096.
 * Every lane of the group calls it, and lv is not written again before a
 * barrier. */
#define CLSM_REG_MAX(a, b) ((b) > (a) ? (b) : (a))
#define CLSM_REG_ADD(a, b) ((a) + (b))
#define CLSM_RADIX_REDUCE(lv, l, j, L, v, OP)                                                 \
  do {                                                                                        \
    (lv)[l] = (v);                                                                            \
    barrier(CLK_LOCAL_MEM_FENCE);                                                             \
    for (int h_ = 1; h_ < (L); h_ *= REG_RADIX) {                                             \
      const int span_ = min(h_ * REG_RADIX, (L));                                             \
      if (((j) & (span_ - 1)) == 0) {                                                         \
        ACC a_ = (lv)[l];                                                                     \
        for (int k_ = h_; k_ < span_; k_ += h_) a_ = OP(a_, (lv)[(l) + k_]);                  \
        (lv)[l] = a_;                                                                         \
      }                                                                                       \
      barrier(CLK_LOCAL_MEM_FENCE);                                                           \
    }                                                                                         \
    (v) = (lv)[(l) - (j)];                                                                    \
  } while (0)

/* Lane j's values of row xr (of C elements; -inf past C or where the row
 * is not live) into the compute-type array v. Macros, not functions: as
 * functions they cost the 1024-lane float16 variant a spill at its cap. */
#define CLSM_REG_LOAD(xr, live, j, L, C, v)                                                   \
  do {                                                                                        \
    _Pragma("unroll") for (int k_ = 0; k_ < NPL; ++k_) {                                      \
      const int e_ = ((j) + k_ * (L)) * CLSM_REG_V;                                           \
      if ((live) && e_ + CLSM_REG_V <= (C)) {                                                 \
        RLOADV((xr), e_, (v) + k_ * CLSM_REG_V);                                              \
      } else {                                                                                \
        _Pragma("unroll") for (int i_ = 0; i_ < CLSM_REG_V; ++i_)(v)[k_ * CLSM_REG_V + i_] =  \
            (live) && e_ + i_ < (C) ? LOADX((xr), e_ + i_) : (ACC)(-INFINITY);                \
      }                                                                                       \
    }                                                                                         \
  } while (0)

/* Lane j's values v to row yr, those below C, rounded once to y's dtype.
 * The stores step a pointer and an offset instead of recomputing the
 * loads' offsets: kept from the loads, those would hold NPL registers
 * through the reductions (ptxas: 76 instead of 64 at E = 32, V = 4). */
#define CLSM_REG_STORE(yr, j, L, C, v)                                                        \
  do {                                                                                        \
    int e_ = (j) * CLSM_REG_V;                                                                \
    __global TY *yp_ = (yr) + e_;                                                             \
    _Pragma("unroll") for (int k_ = 0; k_ < NPL;                                              \
                           ++k_, e_ += (L) * CLSM_REG_V, yp_ += (L) * CLSM_REG_V) {           \
      if (e_ + CLSM_REG_V <= (C)) {                                                           \
        RSTOREV(yp_, 0, (v) + k_ * CLSM_REG_V);                                               \
      } else {                                                                                \
        _Pragma("unroll") for (int i_ = 0; i_ < CLSM_REG_V; ++i_) if (e_ + i_ < (C))          \
            STOREY(yp_, i_, (v)[k_ * CLSM_REG_V + i_]);                                       \
      }                                                                                       \
    }                                                                                         \
  } while (0)

#define CLSM_REG_ARGS                                                                         \
  __global const TX *x, ulong xoff, long xso, __global TY *y, ulong yoff, long yso, long rows, \
      int C, uint flags, __local ACC *lm, __local ACC *ls

/* One row of the group, softmax (lg 0) or log-softmax (lg 1): a constant
 * in each kernel, so each is compiled for its op alone. */
CLSM_INLINE void clsm_reg_rows(__global const TX *x, ulong xoff, long xso, __global TY *y,
                               ulong yoff, long yso, long rows, int C, uint flags,
                               __local ACC *lm, __local ACC *ls, const int lg) {
  const int l = (int)get_local_id(0);
  const int lgL = (int)((flags >> F_LANES_SHIFT) & 31u), L = 1 << lgL, j = l & (L - 1);
  const long r = (long)get_group_id(0) * (CLSM_REG_WG >> lgL) + (l >> lgL);
  const int live = r < rows;
  __global const TX *xr = x + xoff + (live ? r : 0) * xso;
  __global TY *yr = y + yoff + (live ? r : 0) * yso;

  ACC v[CLSM_REG_E];
  ACC m = -INFINITY;
  CLSM_REG_LOAD(xr, live, j, L, C, v);
#pragma unroll
  for (int i = 0; i < CLSM_REG_E; ++i) m = v[i] > m ? v[i] : m;
  /* The row's max: never NaN (NaN elements make the sum NaN instead). */
  CLSM_RADIX_REDUCE(lm, l, j, L, m, CLSM_REG_MAX);
  /* An all -inf row subtracts 0: its exps are 0, its sum 0. */
  const ACC mm = m == -INFINITY ? (ACC)0 : m;
  ACC s = 0;
#pragma unroll
  for (int i = 0; i < CLSM_REG_E; ++i) {
    const ACC e = clsm_exp_sub(v[i], mm);
    if (!lg) v[i] = e;
    s += e;
  }
  CLSM_RADIX_REDUCE(ls, l, j, L, s, CLSM_REG_ADD);
  if (!live) return;
  s = clsm_finish_sum(m, s); /* a row holding +inf is NaN */
  if (m == -INFINITY && !((flags & F_SAFE) && !isnan(s))) s = (ACC)NAN; /* all -inf, not safe */
  if (lg) {
    const ACC lsum = clsm_log_sum(s);
#pragma unroll
    for (int i = 0; i < CLSM_REG_E; ++i) v[i] = (v[i] - mm) - lsum;
  } else {
    const ACC inv = clsm_inv_sum(s);
#pragma unroll
    for (int i = 0; i < CLSM_REG_E; ++i) v[i] *= inv;
  }
  CLSM_REG_STORE(yr, j, L, C, v);
}

__kernel __attribute__((reqd_work_group_size(CLSM_REG_WG, 1, 1))) void clsm_softmax_reg(
    CLSM_REG_ARGS) {
  clsm_reg_rows(x, xoff, xso, y, yoff, yso, rows, C, flags, lm, ls, 0);
}

__kernel __attribute__((reqd_work_group_size(CLSM_REG_WG, 1, 1))) void clsm_log_softmax_reg(
    CLSM_REG_ARGS) {
  clsm_reg_rows(x, xoff, xso, y, yoff, yso, rows, C, flags, lm, ls, 1);
}

/* Cross-entropy over contiguous rows (class axis last, inner 1) with
 * index targets and no softcap (the host's choice), the rows held as
 * above with L lanes a row (log2 in CE_LANES_SHIFT's bits): the loss parts
 * l_n, z_n to scratch, lse and the gradient (which may overwrite x: a lane
 * stores only what it loaded, after all its loads), each formed as
 * clsm_ce_rows_wg forms it. The target logit comes from the registers of
 * the lane holding it, which also stores the position's loss parts (lane 0
 * an ignored position's zeros); lane 0 stores the lse. Label smoothing
 * reduces the row's sum of w x (and, with weights, of w) as it does the
 * max and the sum. */
#if CLSM_REG_WG <= REG_CE_WG
__kernel __attribute__((reqd_work_group_size(CLSM_REG_WG, 1, 1))) void clsm_ce_reg(
    CE_KERNEL_ARGS, __local ACC *lm, __local ACC *ls) {
  CE_UNPACK;
  const int l = (int)get_local_id(0), Ci = (int)C;
  const int lgL = (int)((flags >> CE_LANES_SHIFT) & 31u), L = 1 << lgL, j = l & (L - 1);
  const long r = (long)get_group_id(0) * (CLSM_REG_WG >> lgL) + (l >> lgL);
  /* A raised flag (a bad target) makes every row dead: nothing is written.
   * No early return before the barriers: PoCL then runs the code after the
   * later `if (!live) return` for every lane. */
  const int live = r < P && !flag[0];
  ce_pos q;
  q.t = -1;
  q.ignored = 1;
  q.g = 0;
  q.W = q.Z = 1;
  if (live)
    q = clsm_ce_pos(tg, toff, tso, 0, tkind, gs, gsoff, gsso, gssi, scr, P, r, 0, ignore, flags);
  /* The target, in [0, C) (ce_prep raised the flag otherwise), or -1. */
  const int t = q.ignored ? -1 : (int)q.t;
  w += woff;
  const int smooth = eps > 0, wsmooth = smooth && (flags & CE_WEIGHT);

  /* The target's place in a lane's values, compared with the unrolled
   * loops' constants (no per-element offsets live across the reductions):
   * its lane, vector slot and element in the vector. Its logit is read
   * again by its lane, before that lane's stores: picked from v, it would
   * keep every pre-exp value live through the reductions. */
  const int holder = t >= 0 ? ((t / CLSM_REG_V) & (L - 1)) == j : j == 0;
  const int tk = holder && t >= 0 ? (t / CLSM_REG_V) >> lgL : -1, ti = t & (CLSM_REG_V - 1);
  __global const TX *xr = x + xoff + (live ? r : 0) * xso;
  const ACC xt = tk >= 0 ? LOADX(xr, t) : (ACC)0;
  ACC v[CLSM_REG_E];
  CLSM_REG_LOAD(xr, live, j, L, Ci, v);
  ACC m = -INFINITY, swx = 0, sw = 0;
#pragma unroll
  for (int i = 0; i < CLSM_REG_E; ++i) m = v[i] > m ? v[i] : m;
  if (smooth && live) {
    int e = j * CLSM_REG_V;
#pragma unroll
    for (int k = 0; k < NPL; ++k, e += L * CLSM_REG_V)
#pragma unroll
      for (int i = 0; i < CLSM_REG_V; ++i)
        if (e + i < Ci) {
          const ACC wc = wsmooth ? LOADX(w, e + i) : (ACC)1;
          swx += wc * v[k * CLSM_REG_V + i];
          sw += wc;
        }
  }
  /* Each reduction takes the other local array than the one before, whose
   * last reads its final barrier does not order. */
  CLSM_RADIX_REDUCE(lm, l, j, L, m, CLSM_REG_MAX);
  __local ACC *ra = ls;
  if (smooth) {
    CLSM_RADIX_REDUCE(ls, l, j, L, swx, CLSM_REG_ADD);
    ra = lm;
    if (wsmooth) {
      CLSM_RADIX_REDUCE(lm, l, j, L, sw, CLSM_REG_ADD);
      ra = ls;
    } else {
      sw = (ACC)C;
    }
  }
  const ACC mm = m == -INFINITY ? (ACC)0 : m;
  ACC s = 0;
#pragma unroll
  for (int i = 0; i < CLSM_REG_E; ++i) {
    v[i] = clsm_exp_sub(v[i], mm);
    s += v[i];
  }
  CLSM_RADIX_REDUCE(ra, l, j, L, s, CLSM_REG_ADD);
  if (!live) return;
  s = clsm_finish_sum(m, s);    /* a row holding +inf is NaN */
  if (m == -INFINITY) s = NAN;  /* all -inf: exp(-inf - -inf), as clsm_ce_rows_wg */
  const ACC lse = m + log(s);
  const ACC keps = eps / (ACC)C;
  const ACC wt = ((flags & CE_WEIGHT) && t >= 0) ? LOADX(w, t) : (ACC)1;
  if ((flags & CE_LOSS) && holder) {
    scr[2 * P + r] = t < 0 ? (ACC)0 : clsm_ce_loss(0, eps, keps, wt, lse, xt, sw, swx);
    scr[3 * P + r] = t < 0 ? (ACC)0 : z * lse * lse;
  }
  if ((flags & CE_LSE) && j == 0) lse_out[(long)loff + r * lso] = (float)lse;
  if (!(flags & CE_GRAD)) return;
  const ACC inv = (ACC)1 / s;
  /* The gradient as clsm_ce_grad_at forms it (no softcap), its row-wide
   * terms hoisted out of the unrolled loops: a (p_c - [c = t]) + b (p_c sw
   * - w_c) + zc p_c, p_t - 1 formed before it is scaled. */
  const ce_coef kc = clsm_ce_coef(q.g, q.W, q.Z, wt, eps, keps, z, lse, smooth);
  const ACC zc = z != 0 ? kc.zc : (ACC)0;
  if (wsmooth) {
    __global const TX *wp = w + j * CLSM_REG_V;
#pragma unroll
    for (int k = 0; k < NPL; ++k, wp += L * CLSM_REG_V)
#pragma unroll
      for (int i = 0; i < CLSM_REG_V; ++i) {
        const ACC pc = v[k * CLSM_REG_V + i] * inv;
        /* Past C, w is not read: those values are never stored. */
        const ACC wc = (wp - w) + i < Ci ? LOADX(wp, i) : (ACC)0;
        v[k * CLSM_REG_V + i] = kc.a * (k == tk && i == ti ? pc - (ACC)1 : pc) + kc.b * (pc * sw - wc) + zc * pc;
      }
  } else {
#pragma unroll
    for (int k = 0; k < NPL; ++k)
#pragma unroll
      for (int i = 0; i < CLSM_REG_V; ++i) {
        const ACC pc = v[k * CLSM_REG_V + i] * inv;
        v[k * CLSM_REG_V + i] = kc.a * (k == tk && i == ti ? pc - (ACC)1 : pc) + kc.b * (pc * sw - (ACC)1) + zc * pc;
      }
  }
  if (t < 0)
#pragma unroll
    for (int i = 0; i < CLSM_REG_E; ++i) v[i] = 0;
  CLSM_REG_STORE(gr + goff + r * gso, j, L, Ci, v);
}
#endif
