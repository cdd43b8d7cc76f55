/* The planner for cross-entropy (forward, fused gradient, backward): the
 * pipeline of ce.cl, prep -> totals -> rows -> loss, as a plan. Like
 * plan.c it sees plan.h only. */
#include "plan.h"

#include <string.h>

/* rows16_cpu's local scratch for a 16-bit gradient's kept exps, at most
 * (C <= 128 for float): that much stays in L1 beside the rows being read;
 * a larger scratch spills out of L1, and one row a work-item suits those
 * rows better. */
#define ROWS16_SCRATCH (8u * 1024u)

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* The reduction's stage: sums scratch arrays k0..k1-1 into their totals. */
static void plan_reduce(clsm_plan *plan, const clsm_ce_call *c, size_t local, size_t acc, int k0,
                        int k1, int chunked) {
  clsm_stage *s = clsm__plan_stage(plan, K_CE_REDUCE, local, local);
  clsm__arg_kind(plan, s, "scr", ARG_SCRATCH);
  CLSM_ARG_LONG(plan, s, "P", c->P);
  CLSM_ARG_INT(plan, s, "k0", k0);
  CLSM_ARG_INT(plan, s, "k1", k1);
  clsm__arg_kind(plan, s, "flag", ARG_FLAG);
  clsm__arg_local(plan, s, "part", local * acc);
  CLSM_ARG_INT(plan, s, "chunked", chunked);
}

/* The row kernels' buffers, absent ones bound to a buffer they do not read. */
static void row_buffers(clsm_plan *plan, clsm_stage *s, const clsm_ce_call *c) {
  const clsm_ce_options *opt = c->opt;
  clsm__arg_mem(plan, s, "x", c->x->mem);
  clsm__arg_mem(plan, s, "tg", c->t->mem);
  if (opt->weight) clsm__arg_mem(plan, s, "w", opt->weight->mem);
  else clsm__arg_kind(plan, s, "w", ARG_FLAG);
  if (c->grad) clsm__arg_mem(plan, s, "gr", c->grad->mem);
  else clsm__arg_kind(plan, s, "gr", ARG_SCRATCH);
  if (c->gs) clsm__arg_mem(plan, s, "gs", c->gs->mem);
  else clsm__arg_kind(plan, s, "gs", ARG_FLAG);
  if (opt->lse) clsm__arg_mem(plan, s, "lse_out", opt->lse->mem);
  else clsm__arg_kind(plan, s, "lse_out", ARG_SCRATCH);
  clsm__arg_kind(plan, s, "scr", ARG_SCRATCH);
  clsm__arg_kind(plan, s, "flag", ARG_FLAG);
}

/* A GPU-family sharded kernel's group: a work-group a row, no wider than
 * the row needs (down to 32 lanes), within the kernel's limit and the local
 * memory its lanes take (lane_bytes each). */
static size_t shard_group(const clsm_caps *caps, const size_t *kernel_wg, clsm_kernel_id k,
                          int64_t C, size_t lane_bytes) {
  size_t wg = caps->wg_size;
  const size_t kmax = clsm__kernel_limit(caps, kernel_wg, k);
  while (wg > 32 && wg / 2 >= (size_t)(C > 0 ? C : 1)) wg /= 2;
  while (wg > 1 && (wg > kmax || wg * lane_bytes > caps->local_mem_size)) wg /= 2;
  return wg;
}

static void put_params(clsm_plan *plan, clsm_stage *s, const clsm_ce_params *p) {
  clsm__arg_value(plan, s, "prm", p, sizeof *p);
  s->flags = p->flags;
}

void clsm__plan_ce(const clsm_caps *caps, const size_t *kernel_wg, const clsm_ce_call *c,
                   clsm_plan *plan) {
  memset(plan, 0, offsetof(clsm_plan, data));
  plan->op = c->phase == CE_PHASE_PARTIAL  ? "cross_entropy_partial"
             : c->phase == CE_PHASE_FINISH ? "cross_entropy_finish"
             : c->backward                 ? "cross_entropy_backward"
                                           : "cross_entropy";
  plan->program = c->program;
  const clsm_ce_options *opt = c->opt;
  const int reduced = opt->reduction != CLSM_REDUCTION_NONE;
  const int mean = opt->reduction == CLSM_REDUCTION_MEAN;
  const int64_t P = c->P, C = c->C, outer = c->outer, inner = c->inner ? c->inner : 1;
  const size_t acc = c->program == P_F64 ? sizeof(double) : sizeof(float);
  const int cpu = caps->family == CLSM_FAMILY_CPU;
  const int contiguous = c->xv.inner == 1 && c->xv.sc == 1 && (!c->grad || c->gv.sc == 1);
  /* Few long rows, index targets, no softcap or smoothing: split over
   * work-items (clsm_ce_split_*), their pairs and target logits in scratch
   * after the arrays and totals. */
  const int64_t split = contiguous && !c->phase && !c->prob && opt->softcap == 0 && opt->label_smoothing == 0
                            ? clsm__split_len(caps, P, C)
                            : 0;
  const int64_t chunks = split ? (C + split - 1) / split : 0;
  const size_t split_vals = split ? (size_t)P * (2 * (size_t)chunks + 1) : 0;
  plan->scratch_bytes = (CE_ARRAYS * (size_t)P + CE_TOTALS + split_vals) * acc;

  clsm_ce_params prm;
  memset(&prm, 0, sizeof prm);
  prm.xoff = c->xv.base;
  prm.xso = c->xv.so, prm.xsc = c->xv.sc, prm.xsi = c->xv.si;
  prm.toff = c->tp.base;
  prm.tso = c->tp.so, prm.tsc = c->prob ? c->tv.sc : 0, prm.tsi = c->tp.si;
  prm.tkind = c->tkind;
  prm.woff = opt->weight ? opt->weight->offset : 0;
  if (c->grad) prm.goff = c->gv.base, prm.gso = c->gv.so, prm.gsc = c->gv.sc, prm.gsi = c->gv.si;
  prm.gsoff = c->gs ? c->gs->offset : 0;
  prm.gsso = c->gsp.so, prm.gssi = c->gsp.si;
  prm.lseoff = c->lsep.base, prm.lseso = c->lsep.so, prm.lsesi = c->lsep.si;
  prm.P = P, prm.outer = outer, prm.C = C, prm.inner = inner, prm.ignore = opt->ignore_index;
  prm.chunk = split, prm.chunks = chunks;
  prm.first = c->first, prm.classes = c->classes ? c->classes : C;
  prm.stoff = c->stats ? c->stats->offset : 0;
  /* eps, z and cap in the compute type (double for float64 logits). */
  const double dv[3] = {opt->label_smoothing, opt->z_loss, opt->softcap};
  memcpy(&prm.eps_bits, &dv[0], 8);
  memcpy(&prm.z_bits, &dv[1], 8);
  memcpy(&prm.cap_bits, &dv[2], 8);
  prm.eps = (cl_float)dv[0], prm.z = (cl_float)dv[1], prm.cap = (cl_float)dv[2];

  const int need_totals = c->phase != CE_PHASE_PARTIAL && (mean || opt->total_weight);
  const int loss_out = !c->backward && c->loss;
  const size_t p1 = P > 0 ? (size_t)P : 1;
  /* The reduce is one work-group: 64 lanes on a CPU, as many as the device
   * and its local memory allow on a GPU (its lanes each walk P / n values). */
  size_t red_local = caps->wg_size < 64 ? caps->wg_size : 64;
  if (!cpu && !caps->wg_forced) red_local = caps->wg_cap;
  const size_t red_max = clsm__kernel_limit(caps, kernel_wg, K_CE_REDUCE);
  while (red_local > 1 && red_local > red_max) red_local /= 2;

  /* 1. Targets: validate, weights and counts. */
  prm.flags = opt->weight ? CE_WEIGHT : 0;
  {
    clsm_stage *s = clsm__plan_stage(plan, K_CE_PREP, p1, 0);
    clsm__arg_mem(plan, s, "tg", c->t->mem);
    if (opt->weight) clsm__arg_mem(plan, s, "w", opt->weight->mem);
    else clsm__arg_kind(plan, s, "w", ARG_FLAG);
    clsm__arg_kind(plan, s, "scr", ARG_SCRATCH);
    clsm__arg_kind(plan, s, "flag", ARG_FLAG);
    put_params(plan, s, &prm);
  }
  /* 2. W and the non-ignored count. */
  if (need_totals) plan_reduce(plan, c, red_local, acc, 0, 2, cpu);

  /* 3'. A shard's rows: a work-item a position (16-wide on contiguous
   * rows), its statistics (partial: the last stage), or the loss parts,
   * lse and gradient from the merged ones. */
  if (c->phase != CE_PHASE_NONE) {
    unsigned flags = prm.flags;
    if (c->phase == CE_PHASE_FINISH) {
      if (c->grad) flags |= CE_GRAD;
      if (loss_out) flags |= CE_LOSS;
      if (opt->lse) flags |= CE_LSE;
      if (mean) flags |= CE_MEAN;
      if (c->gs) flags |= reduced ? CE_G_SCALAR : CE_G_POS;
    }
    if (opt->softcap > 0) flags |= CE_SOFTCAP;
    prm.flags = flags;
    const int partial = c->phase == CE_PHASE_PARTIAL;
    const clsm_kernel_id kid = cpu ? (partial ? K_CE_SHARD_PARTIAL : K_CE_SHARD_ROWS)
                                   : (partial ? K_CE_SHARD_PARTIAL_WG : K_CE_SHARD_ROWS_WG);
    clsm_stage *s;
    if (cpu) {
      const size_t local = clsm__cpu_local(caps, p1);
      s = clsm__plan_stage(plan, kid, round_up(p1, local), local);
    } else {
      const size_t wg = shard_group(caps, kernel_wg, kid, C, partial ? 4 * acc : 0);
      s = clsm__plan_stage(plan, kid, p1 * wg, wg);
    }
    row_buffers(plan, s, c);
    put_params(plan, s, &prm);
    clsm__arg_mem(plan, s, "st", c->stats->mem);
    if (!cpu && partial) {
      static const char *const lnames[4] = {"lm", "ls", "la", "lb"};
      for (int i = 0; i < 4; ++i) clsm__arg_local(plan, s, lnames[i], s->local * acc);
    }
    if (partial) return;
  } else {
  /* 3. Rows. CPU: a work-item per position (vectorised for contiguous rows)
   * or per block of positions (class axis not last, positions contiguous);
   * GPU: a work-group per position. */
  const int blocks = inner > 1 && c->xv.si == 1 && (!c->grad || c->gv.si == 1) && C < INT32_MAX;
  const clsm_kernel_id rk = !cpu        ? K_CE_ROWS_WG
                            : contiguous ? K_CE_ROWS_CPU
                            : blocks     ? K_CE_INNER_CPU
                                         : K_CE_STRIDED;
  const int nv = rk == K_CE_INNER_CPU ? clsm__inner_nv(caps, inner) : 1;
  const size_t ib = rk == K_CE_INNER_CPU ? 16 * (size_t)nv : 1;
  unsigned flags = prm.flags;
  if (c->grad) flags |= CE_GRAD;
  if (loss_out) flags |= CE_LOSS;
  if (opt->lse) flags |= CE_LSE;
  if (opt->softcap > 0) flags |= CE_SOFTCAP;
  if (mean) flags |= CE_MEAN;
  if (c->gs) flags |= reduced ? CE_G_SCALAR : CE_G_POS;
  /* CPU work-items: a position, or a block of them. */
  size_t items = rk == K_CE_INNER_CPU ? (size_t)outer * (((size_t)inner + ib - 1) / ib) : p1;
  if (items == 0) items = 1;
  size_t local = cpu ? clsm__cpu_local(caps, items) : 64;
  /* Keep exp(x - m) for the gradient pass instead of computing it twice: in
   * the gradient itself when it holds the compute type, in rows_cpu's local
   * scratch (C values per work-item) for 16-bit gradients. */
  size_t scratch_bytes = acc; /* rows_cpu's scratch: unused unless sized below */
  int grad16_keep = 0;        /* that scratch holds the kept exps */
  if (c->grad && !c->prob && !(flags & CE_SOFTCAP) && (rk == K_CE_ROWS_CPU || rk == K_CE_INNER_CPU)) {
    const int grad16 = c->grad->dtype == CLSM_FLOAT16 || c->grad->dtype == CLSM_BFLOAT16;
    if (!grad16 && (uint64_t)C * ib * clsm_dtype_size(c->grad->dtype) <=
                       (rk == K_CE_INNER_CPU ? KEEP_INNER_BYTES : KEEP_BYTES)) {
      flags |= CE_KEEP;
    } else if (grad16 && rk == K_CE_ROWS_CPU && (uint64_t)C * acc <= KEEP_BYTES) {
      const size_t bytes = clsm__row_scratch(caps, &local, C, acc);
      if (bytes) {
        flags |= CE_KEEP;
        scratch_bytes = bytes;
        grad16_keep = 1;
      }
    }
  }
  if (rk == K_CE_INNER_CPU) flags |= (unsigned)nv << CE_NV_SHIFT;
  /* Rows of ONLINE_ROW or more, no kept exps, no smoothing: one read of the
   * row for its (max, sum). */
  clsm_kernel_id kid = rk;
  if (rk == K_CE_ROWS_CPU && !(flags & (CE_KEEP | CE_SOFTCAP)) && !c->prob &&
      opt->label_smoothing == 0 && C >= ONLINE_ROW)
    kid = K_CE_ROWS_LONG_CPU;
  /* Short rows, CE_ROWS a work-item, unless that would leave fewer than
   * four work-items a compute unit. A 16-bit gradient's kept exps then take
   * CE_ROWS rows of local scratch a work-item, one work-item a group, so
   * that the group's scratch stays in L1; past ROWS16_SCRATCH bytes of them
   * (C > 128 for float) the scratch no longer fits there, and the rows stay
   * one a work-item unless forced. */
  if (kid == K_CE_ROWS_CPU && C < ONLINE_ROW &&
      (caps->ce_rows16 == 1 ||
       (caps->ce_rows16 == -1 && p1 >= (size_t)CE_ROWS * 4 * caps->compute_units &&
        (!grad16_keep || (uint64_t)CE_ROWS * C * acc <= ROWS16_SCRATCH)))) {
    const size_t items16 = (p1 + CE_ROWS - 1) / CE_ROWS;
    size_t local16 = grad16_keep ? 1 : clsm__cpu_local(caps, items16);
    const size_t bytes16 = grad16_keep ? clsm__row_scratch(caps, &local16, CE_ROWS * C, acc) : acc;
    if (bytes16) {
      kid = K_CE_ROWS16_CPU;
      items = items16;
      local = local16;
      scratch_bytes = bytes16;
    }
  }
  if (split) {
    /* The chunks' (max, sum) pairs and the target logits. */
    clsm_stage *s = clsm__plan_stage(plan, K_CE_SPLIT_PARTIALS, (size_t)(P * chunks), 1);
    clsm__arg_mem(plan, s, "x", c->x->mem);
    clsm__arg_mem(plan, s, "tg", c->t->mem);
    clsm__arg_kind(plan, s, "scr", ARG_SCRATCH);
    clsm__arg_kind(plan, s, "flag", ARG_FLAG);
    put_params(plan, s, &prm);
    kid = K_CE_SPLIT_ROWS;
    items = (size_t)(P * chunks);
    local = 1;
    flags &= ~CE_KEEP;
  }
  prm.flags = flags;
  clsm_stage *s;
  /* GPU family, contiguous rows with index targets and no softcap: rows
   * held in registers, several a group, when a variant covers them (as for
   * the row ops; CLSM_REG_ROWS=0, CLSM_KERNEL and CLSM_WG_SIZE keep rows_wg). */
  size_t L = 0;
  const int reg = rk == K_CE_ROWS_WG && !split && contiguous && !c->prob && !(flags & CE_SOFTCAP) &&
                          caps->reg_rows && caps->forced_kernel < 0 && !caps->wg_forced
                      ? clsm__pick_reg(caps, kernel_wg, c->program, C,
                                       clsm__reg_aligned(c->program, c->xv.base, c->xv.so, P) &&
                                           (!c->grad || clsm__reg_aligned(c->program, c->gv.base,
                                                                          c->gv.so, P)),
                                       REG_CE, &L)
                      : -1;
  if (reg >= 0) {
    unsigned lg = 0;
    while (((size_t)1 << lg) < L) ++lg;
    prm.flags = flags | lg << CE_LANES_SHIFT;
    const size_t wg = (size_t)clsm__reg_variants[reg].wg, per = wg / L;
    s = clsm__plan_stage(plan, clsm__reg_kernel(reg, REG_CE), (p1 + per - 1) / per * wg, wg);
    row_buffers(plan, s, c);
    put_params(plan, s, &prm);
    clsm__arg_local(plan, s, "lm", wg * acc);
    clsm__arg_local(plan, s, "ls", wg * acc);
  } else if (rk == K_CE_ROWS_WG && !split) {
    size_t wg = caps->wg_size;
    const size_t kmax = clsm__kernel_limit(caps, kernel_wg, K_CE_ROWS_WG);
    while (wg > 32 && wg / 2 >= (size_t)C) wg /= 2;
    while (wg > 1 && (wg > kmax || 4 * wg * acc > caps->local_mem_size)) wg /= 2;
    s = clsm__plan_stage(plan, kid, p1 * wg, wg);
    row_buffers(plan, s, c);
    put_params(plan, s, &prm);
    static const char *const lnames[4] = {"lm", "ls", "la", "lb"};
    for (int i = 0; i < 4; ++i) clsm__arg_local(plan, s, lnames[i], wg * acc);
  } else {
    s = clsm__plan_stage(plan, kid, round_up(items, local), local);
    row_buffers(plan, s, c);
    put_params(plan, s, &prm);
    if (kid == K_CE_ROWS_CPU || kid == K_CE_ROWS_LONG_CPU || kid == K_CE_ROWS16_CPU)
      clsm__arg_local(plan, s, "scratch", scratch_bytes);
  }
  }

  /* 4. The loss (and total weight). */
  if (loss_out || opt->total_weight) {
    clsm_stage *s;
    if (loss_out && reduced) plan_reduce(plan, c, red_local, acc, 2, 4, cpu);
    /* Without a loss output only the total weight is written, by one work-item. */
    const int red_i = reduced || !loss_out;
    clsm_ce_params fin = prm;
    fin.flags = (red_i ? CE_REDUCED : 0) | (mean ? CE_MEAN : 0) | (loss_out ? CE_LOSS_OUT : 0) |
                (opt->total_weight ? CE_TW_OUT : 0);
    fin.loff = loss_out ? (reduced ? c->loss->offset : c->lp.base) : 0;
    fin.lso = c->lp.so, fin.lsi = c->lp.si;
    fin.twoff = opt->total_weight ? opt->total_weight->offset : 0;
    s = clsm__plan_stage(plan, K_CE_FINISH, red_i ? 1 : p1, 0);
    clsm__arg_kind(plan, s, "scr", ARG_SCRATCH);
    if (loss_out) clsm__arg_mem(plan, s, "loss", c->loss->mem);
    else clsm__arg_kind(plan, s, "loss", ARG_SCRATCH);
    if (opt->total_weight) clsm__arg_mem(plan, s, "tw", opt->total_weight->mem);
    else clsm__arg_kind(plan, s, "tw", ARG_SCRATCH);
    clsm__arg_kind(plan, s, "flag", ARG_FLAG);
    put_params(plan, s, &fin);
  }
}

/* A sharded softmax axis: one stage, a work-item a row. */
void clsm__plan_sm_shard(const clsm_caps *caps, const size_t *kernel_wg,
                         const clsm_sm_shard_call *c, clsm_plan *plan) {
  memset(plan, 0, offsetof(clsm_plan, data));
  plan->op = c->finish ? "softmax_finish" : "softmax_partial";
  plan->program = c->program;
  clsm_ce_params prm;
  memset(&prm, 0, sizeof prm);
  prm.xoff = c->av.base, prm.xso = c->av.so, prm.xsc = c->av.sc, prm.xsi = c->av.si;
  if (c->b) prm.toff = c->bv.base, prm.tso = c->bv.so, prm.tsc = c->bv.sc, prm.tsi = c->bv.si;
  if (c->out) prm.goff = c->ov.base, prm.gso = c->ov.so, prm.gsc = c->ov.sc, prm.gsi = c->ov.si;
  prm.P = c->rows, prm.outer = c->av.outer, prm.C = c->av.C, prm.inner = c->av.inner;
  prm.stoff = c->stats->offset;
  prm.flags = c->flags;
  const size_t rows = c->rows > 0 ? (size_t)c->rows : 1;
  const int cpu = caps->family == CLSM_FAMILY_CPU;
  const clsm_kernel_id kid = cpu ? (c->finish ? K_SM_SHARD_FINISH : K_SM_SHARD_PARTIAL)
                                 : (c->finish ? K_SM_SHARD_FINISH_WG : K_SM_SHARD_PARTIAL_WG);
  const size_t acc = c->program == P_F64 ? sizeof(double) : sizeof(float);
  clsm_stage *s;
  if (cpu) {
    const size_t local = clsm__cpu_local(caps, rows);
    s = clsm__plan_stage(plan, kid, round_up(rows, local), local);
  } else {
    const size_t wg = shard_group(caps, kernel_wg, kid, c->av.C, c->finish ? 0 : 2 * acc);
    s = clsm__plan_stage(plan, kid, rows * wg, wg);
  }
  clsm__arg_mem(plan, s, "a", c->a->mem);
  clsm__arg_mem(plan, s, "b", c->b ? c->b->mem : c->a->mem);
  clsm__arg_mem(plan, s, "out", c->out ? c->out->mem : c->stats->mem); /* partial: unused */
  clsm__arg_mem(plan, s, "st", c->stats->mem);
  put_params(plan, s, &prm);
  if (!cpu && !c->finish) {
    clsm__arg_local(plan, s, "lm", s->local * acc);
    clsm__arg_local(plan, s, "ls", s->local * acc);
  }
}
