/* ce_row.cl: cross-entropy's per-position helpers, shared by the row
 * kernels of ce.cl and shard.cl and by the register-held rows kernel
 * (rows_reg.cl): the row kernels' arguments, a position's target, weight,
 * upstream gradient and mean denominators, its loss and its gradient's
 * coefficients (the formulas at the top of ce.cl). */

/* The row helpers' parameters, one per field a row kernel unpacks. */
#define CE_FN_ARGS                                                                           \
  __global const TX *x, ulong xoff, long xso, long xsc, long xsi, __global const uchar *tg,  \
      ulong toff, long tso, long tsc, long tsi, int tkind, __global const TX *w, ulong woff,  \
      __global TY *gr, ulong goff, long gso, long gsc, long gsi, __global const TX *gs,      \
      ulong gsoff, long gsso, long gssi, __global float *lse_out, ulong loff, long lso, long lsi, \
      __global ACC *scr, long P, __global const int *flag, long outer, long C, long inner, \
      long ignore, ACC eps, ACC z, ACC cap, uint flags
#define CE_ARG_NAMES                                                                         \
  x, xoff, xso, xsc, xsi, tg, toff, tso, tsc, tsi, tkind, w, woff, gr, goff, gso, gsc, gsi, gs, \
      gsoff, gsso, gssi, lse_out, loff, lso, lsi, scr, P, flag, outer, C, inner, ignore, eps, z, \
      cap, flags

/* A row kernel's arguments: the buffers, then the parameters by value;
 * CE_UNPACK gives them the helpers' names. Absent tensors are bound to
 * some buffer the flags say is not read. */
#define CE_KERNEL_ARGS                                                                       \
  __global const TX *x, __global const uchar *tg, __global const TX *w, __global TY *gr,     \
      __global const TX *gs, __global float *lse_out, __global ACC *scr,                    \
      __global const int *flag, const clsm_ce_params prm
#ifdef ACC_IS_DOUBLE
#define CE_VALUES                                                                            \
  const ACC eps = as_double(prm.eps_bits), z = as_double(prm.z_bits), cap = as_double(prm.cap_bits)
#else
#define CE_VALUES const ACC eps = prm.eps, z = prm.z, cap = prm.cap
#endif
#define CE_UNPACK                                                                            \
  const ulong xoff = prm.xoff, toff = prm.toff, woff = prm.woff, goff = prm.goff;            \
  const ulong gsoff = prm.gsoff, loff = prm.lseoff;                                          \
  const long xso = prm.xso, xsc = prm.xsc, xsi = prm.xsi, tso = prm.tso, tsc = prm.tsc;      \
  const long tsi = prm.tsi, gso = prm.gso, gsc = prm.gsc, gsi = prm.gsi, gsso = prm.gsso;    \
  const long gssi = prm.gssi, lso = prm.lseso, lsi = prm.lsesi;                              \
  const long P = prm.P, outer = prm.outer, C = prm.C, inner = prm.inner, ignore = prm.ignore; \
  const int tkind = prm.tkind;                                                               \
  const uint flags = prm.flags;                                                              \
  CE_VALUES

static inline long clsm_target(__global const uchar *tg, long idx, int kind) {
  if (kind == 0) return ((__global const long *)tg)[idx];
  if (kind == 1) return (long)((__global const int *)tg)[idx];
  return (long)tg[idx];
}

/* Softcapped logit (the identity without CE_SOFTCAP). */
static inline ACC clsm_cap(ACC v, ACC cap, uint flags) {
  return (flags & CE_SOFTCAP) ? (ACC)cap * tanh(v / (ACC)cap) : v;
}

/* Upstream gradient of position (o, i). */
static inline ACC clsm_ce_g(__global const TX *gs, ulong gsoff, long gsso, long gssi, long o, long i,
                     uint flags) {
  if (flags & CE_G_SCALAR) return LOADX(gs, gsoff);
  if (flags & CE_G_POS) return LOADX(gs, (long)gsoff + o * gsso + i * gssi);
  return (ACC)1;
}

/* What every row kernel works out for its position before the passes. */
typedef struct ce_pos {
  long t;      /* target class, or -1 for probability targets */
  int ignored; /* ignored or (probability targets) never */
  ACC g;       /* upstream gradient */
  ACC W, Z;    /* the mean's denominators (1 otherwise) */
} ce_pos;

static inline ce_pos clsm_ce_pos(__global const uchar *tg, ulong toff, long tso, long tsi, int tkind,
                          __global const TX *gs, ulong gsoff, long gsso, long gssi,
                          __global const ACC *scr, long P, long o, long i, long ignore,
                          uint flags) {
  ce_pos q;
  q.t = -1;
  q.ignored = 0;
  if (tkind != TK_PROB) {
    q.t = clsm_target(tg, (long)toff + o * tso + i * tsi, tkind);
    q.ignored = q.t == ignore;
  }
  q.g = (flags & CE_GRAD) ? clsm_ce_g(gs, gsoff, gsso, gssi, o, i, flags) : (ACC)0;
  q.W = (flags & CE_MEAN) ? scr[CE_ARRAYS * P + 0] : (ACC)1;
  q.Z = (flags & CE_MEAN) ? scr[CE_ARRAYS * P + 1] : (ACC)1;
  return q;
}

/* A position's loss from its lse and sums, the formula at the top: xt the
 * target logit and wt its weight (index targets), sw and swx the smoothing
 * or probability sums (keps = eps / C, C the whole class axis). */
static inline ACC clsm_ce_loss(int prob, ACC eps, ACC keps, ACC wt, ACC lse, ACC xt, ACC sw,
                               ACC swx) {
  if (prob) return lse * sw - swx;
  return ((ACC)1 - eps) * wt * (lse - xt) + (eps > 0 ? keps * (lse * sw - swx) : (ACC)0);
}

/* The gradient's coefficients, the formula at the top with index targets:
 *   d_c = a (p_c - [c = t]) + b (p_c sw - w_c) + zc p_c,
 * a = g/W (1-eps) w_t, b = g/W eps/C (0 without smoothing), zc = g/Z 2 z lse.
 * Probability targets take a = g/W (wt 1, eps 0): d_c = a (p_c sw - w_c q'_c)
 * + zc p_c. Every row kernel forms them here. */
typedef struct ce_coef {
  ACC a, b, zc;
} ce_coef;
static inline ce_coef clsm_ce_coef(ACC g, ACC W, ACC Z, ACC wt, ACC eps, ACC keps, ACC z, ACC lse,
                            int smooth) {
  ce_coef k;
  const ACC coef = g / W;
  k.a = coef * ((ACC)1 - eps) * wt;
  k.b = smooth ? coef * keps : (ACC)0;
  k.zc = (ACC)2 * z * lse * g / Z;
  return k;
}

/* One class's gradient in the scalar kernels (strided rows, work-group
 * rows): v = x'_c, pc = p_c, qc = q'_c for probability targets; p_t - 1 is
 * formed before it is scaled, so 16-bit gradients keep the target entry. */
static inline ACC clsm_ce_grad_at(ce_coef k, ACC v, ACC pc, ACC wc, ACC qc, ACC sw, int prob, int target,
                           ACC z, ACC cap, uint flags) {
  ACC d = prob ? k.a * (pc * sw - wc * qc) : k.a * (target ? pc - (ACC)1 : pc) + k.b * (pc * sw - wc);
  d += (z != 0) ? k.zc * pc : (ACC)0;
  if (flags & CE_SOFTCAP) d *= (ACC)1 - (v / cap) * (v / cap);
  return d;
}

/* Shared by the row kernels: the per-position bookkeeping around a row. */
static inline void clsm_ce_store(__global ACC *scr, long P, long p, __global float *lse, ulong loff,
                          long lso, long lsi, long o, long i, ACC l, ACC zl, ACC lv, int ignored,
                          uint flags) {
  if (flags & CE_LOSS) {
    scr[2 * P + p] = ignored ? (ACC)0 : l;
    scr[3 * P + p] = ignored ? (ACC)0 : zl;
  }
  if (flags & CE_LSE) lse[(long)loff + o * lso + i * lsi] = (float)lv;
}
