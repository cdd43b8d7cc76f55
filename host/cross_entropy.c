/* Cross-entropy forward, fused gradient and backward: option and tensor
 * checks, the (N, C, positions) views, and the kernel pipeline of ce.cl
 * (prep -> totals -> rows -> loss), with the deferred out-of-range error. */
#include "internal.h"

#include <math.h>
#include <string.h>

#define CE_WEIGHT 1u
#define CE_GRAD 2u
#define CE_LOSS 4u
#define CE_LSE 8u
#define CE_SOFTCAP 16u
#define CE_G_SCALAR 32u
#define CE_G_POS 64u
#define CE_MEAN 128u
#define CE_KEEP 256u
#define CE_NV_SHIFT 16 /* inner_cpu: bits 16-23 hold the vectors per block */
#define CE_ROWS 16 /* rows16_cpu: rows a work-item (as ce.cl) */
/* rows16_cpu's local scratch for a 16-bit gradient's kept exps, at most
 * (C <= 128 for float): that much stays in L1 beside the rows being read;
 * a larger scratch spills out of L1, and one row a work-item suits those
 * rows better. */
#define ROWS16_SCRATCH (8u * 1024u)

static const unsigned float_types =
    (1u << CLSM_FLOAT32) | (1u << CLSM_FLOAT16) | (1u << CLSM_BFLOAT16) | (1u << CLSM_FLOAT64);
static const unsigned index_types = (1u << CLSM_INT64) | (1u << CLSM_INT32) | (1u << CLSM_UINT8);

clsm_ce_options clsm_ce_options_default(void) {
  clsm_ce_options o = CLSM_CE_OPTIONS_INIT;
  return o;
}

/* A per-position view: position (o, i) at base + o*so + i*si. */
typedef struct pos_view {
  cl_mem mem;
  uint64_t base;
  int64_t so, si;
} pos_view;

/* Everything the pipeline needs, checked. */
typedef struct ce_call {
  const clsm_tensor *x, *t, *loss, *grad, *gs;
  const clsm_ce_options *opt;
  clsm_view xv, tv, gv;     /* logits; probability targets; gradient */
  pos_view tp, lp, gsp, lsep; /* index targets, loss (none), grad_scale (none), lse */
  int prob, tkind, program;
  int64_t P, C, outer, inner;
  cl_mem flag; /* this call's deferred-error flag (deferred.c) */
} ce_call;

static int positions_match(const clsm_tensor *x, int axis, const clsm_tensor *p) {
  if (p->rank != x->rank - 1) return 0;
  for (int d = 0, k = 0; d < x->rank; ++d) {
    if (d == axis) continue;
    if (p->shape[k++] != x->shape[d]) return 0;
  }
  return 1;
}

/* (outer, inner) strides of a tensor of the positions' shape: dim 0 is N
 * (when the logits have one), the rest collapse into inner. */
static int pos_of(const clsm_tensor *t, int logits_rank, pos_view *v) {
  int64_t n;
  v->mem = t->mem;
  v->base = t->offset;
  v->so = v->si = 0;
  if (logits_rank == 1) return 1; /* one position */
  v->so = t->shape[0] == 1 ? 0 : t->strides[0];
  return clsm__collapse(t, 1, t->rank, &n, &v->si);
}

/* A per-position tensor whose shape is not the logits' without the class
 * axis: both shapes in the detail. */
static clsm_status shape_mismatch(clsm_context *ctx, const char *what, const clsm_tensor *p,
                                  const clsm_tensor *x, int axis) {
  char sp[160], sx[160], sw[160];
  clsm_tensor want = *x;
  want.rank = 0;
  for (int d = 0; d < x->rank; ++d)
    if (d != axis) want.shape[want.rank++] = x->shape[d];
  clsm__shape_str(p, sp, sizeof sp);
  clsm__shape_str(x, sx, sizeof sx);
  clsm__shape_str(&want, sw, sizeof sw);
  return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH,
                    "%s has shape %s: logits of shape %s need %s (their shape without the class "
                    "axis)", what, sp, sx, sw);
}

static clsm_status check_pos_tensor(clsm_context *ctx, const clsm_tensor *p, const clsm_tensor *x,
                                    int axis, unsigned allowed, const char *what) {
  clsm_status st = clsm__check_desc(ctx, p, allowed, what);
  if (st != CLSM_SUCCESS) return st;
  if (!positions_match(x, axis, p)) return shape_mismatch(ctx, what, p, x, axis);
  return CLSM_SUCCESS;
}

static clsm_status check_scalar(clsm_context *ctx, const clsm_tensor *p, unsigned allowed,
                                const char *what) {
  clsm_status st = clsm__check_desc(ctx, p, allowed, what);
  if (st != CLSM_SUCCESS) return st;
  if (p->rank != 0)
    return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH, "%s must be 0-d (rank %d given)", what, p->rank);
  return CLSM_SUCCESS;
}

static clsm_status check_call(clsm_context *ctx, ce_call *c, const clsm_tensor *logits,
                              const clsm_tensor *target, const clsm_tensor *loss,
                              const clsm_tensor *grad, const clsm_tensor *gs,
                              const clsm_ce_options *opt, int backward) {
  clsm_status st;
  /* The backward's gradient and upstream gradient go by their own names. */
  const char *gname = backward ? "dlogits" : "grad", *gsname = backward ? "dloss" : "grad_scale";
  memset(c, 0, sizeof *c);
  c->x = logits, c->t = target, c->loss = loss, c->grad = grad, c->gs = gs, c->opt = opt;
  if (!opt) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "opt (the options) is NULL");
  if (opt->version < 1 || opt->version > CLSM_CE_OPTIONS_VERSION)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                      "options.version is %u: start from CLSM_CE_OPTIONS_INIT", opt->version);
  if ((st = clsm__check_desc(ctx, logits, float_types, "logits")) != CLSM_SUCCESS) return st;
  if (logits->rank < 1)
    return clsm__fail(ctx, CLSM_ERR_INVALID_RANK, "logits must have rank 1..8 (rank 0 given)");
  const int axis = logits->rank == 1 ? 0 : 1;
  c->C = logits->shape[axis];
  if (!target) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "target is NULL");
  if ((st = clsm__check_desc(ctx, target, float_types | index_types, "target")) != CLSM_SUCCESS)
    return st;
  c->prob = (float_types >> target->dtype) & 1u;
  if (c->prob) {
    int same = target->rank == logits->rank && target->dtype == logits->dtype;
    for (int d = 0; same && d < logits->rank; ++d) same = target->shape[d] == logits->shape[d];
    if (!same) {
      char st_[160], sx[160];
      clsm__shape_str(target, st_, sizeof st_);
      clsm__shape_str(logits, sx, sizeof sx);
      return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH,
                        "probability targets must have the logits' shape %s and dtype %s (target: "
                        "%s %s)",
                        sx, clsm_dtype_name(logits->dtype), st_, clsm_dtype_name(target->dtype));
    }
    c->tkind = 3;
  } else {
    if (!positions_match(logits, axis, target))
      return shape_mismatch(ctx, "target (class indices)", target, logits, axis);
    c->tkind = target->dtype == CLSM_INT64 ? 0 : target->dtype == CLSM_INT32 ? 1 : 2;
  }
  if (opt->reduction != CLSM_REDUCTION_MEAN && opt->reduction != CLSM_REDUCTION_SUM &&
      opt->reduction != CLSM_REDUCTION_NONE)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "unknown reduction %d", (int)opt->reduction);
  if (!(opt->label_smoothing >= 0.0 && opt->label_smoothing <= 1.0))
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "label_smoothing %g is outside [0, 1]",
                      opt->label_smoothing);
  if (!(opt->z_loss >= 0.0 && isfinite(opt->z_loss)))
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "z_loss %g must be finite and >= 0",
                      opt->z_loss);
  if (!(opt->softcap >= 0.0 && isfinite(opt->softcap)))
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "softcap %g must be finite and >= 0",
                      opt->softcap);
  if (c->prob && opt->ignore_index >= 0)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                      "ignore_index %lld: probability targets need a negative ignore_index",
                      (long long)opt->ignore_index);

  /* The output dtype: the logits', or float32 for 16-bit logits. */
  const clsm_tensor *out = loss ? loss : grad;
  if (!out) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "no output given");
  c->program = clsm__program_for(logits->dtype, out->dtype);
  if (c->program < 0)
    return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_DTYPE,
                      "outputs may be %s, or float32 for 16-bit logits (%s given)",
                      clsm_dtype_name(logits->dtype), clsm_dtype_name(out->dtype));
  if ((st = clsm__check_fp64(ctx, c->program)) != CLSM_SUCCESS) return st;
  const unsigned out_type = 1u << out->dtype;
  const int reduced = opt->reduction != CLSM_REDUCTION_NONE;
  if (loss) {
    st = reduced ? check_scalar(ctx, loss, out_type, "loss")
                 : check_pos_tensor(ctx, loss, logits, axis, out_type, "loss");
    if (st != CLSM_SUCCESS) return st;
  }
  if (grad) {
    if (loss && clsm_dtype_size(grad->dtype) && grad->dtype != loss->dtype)
      return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_DTYPE,
                        "%s is %s: the gradient takes the loss dtype (%s)", gname,
                        clsm_dtype_name(grad->dtype), clsm_dtype_name(loss->dtype));
    if ((st = clsm__check_desc(ctx, grad, out_type, gname)) != CLSM_SUCCESS) return st;
    int same = grad->rank == logits->rank;
    for (int d = 0; same && d < logits->rank; ++d) same = grad->shape[d] == logits->shape[d];
    if (!same) return clsm__fail_shapes(ctx, gname, grad, "logits", logits);
  }
  if (gs) {
    const unsigned xt = 1u << logits->dtype;
    st = reduced ? check_scalar(ctx, gs, xt, gsname)
                 : check_pos_tensor(ctx, gs, logits, axis, xt, gsname);
    if (st != CLSM_SUCCESS) return st;
  }
  if (opt->weight) {
    const clsm_tensor *w = opt->weight;
    if ((st = clsm__check_desc(ctx, w, 1u << logits->dtype, "weight")) != CLSM_SUCCESS) return st;
    if (w->rank != 1 || w->shape[0] != c->C)
      return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH, "weight must have shape (C) = (%lld)",
                        (long long)c->C);
    if (w->shape[0] > 1 && w->strides[0] != 1)
      return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_LAYOUT, "weight must be contiguous");
  }
  if (opt->lse && (st = check_pos_tensor(ctx, opt->lse, logits, axis, 1u << CLSM_FLOAT32, "lse")) != CLSM_SUCCESS)
    return st;
  if (opt->total_weight &&
      (st = check_scalar(ctx, opt->total_weight, 1u << CLSM_FLOAT32, "total_weight")) != CLSM_SUCCESS)
    return st;

  /* Every descriptor agrees: now their buffers. */
  {
    const clsm_tensor *all[8] = {logits, target, loss, grad, gs, opt->weight, opt->lse,
                                 opt->total_weight};
    const char *names[8] = {"logits", "target", "loss", gname, gsname, "weight", "lse",
                            "total_weight"};
    for (int i = 0; i < 8; ++i)
      if (all[i] && (st = clsm__check_mem(ctx, all[i], names[i])) != CLSM_SUCCESS) return st;
  }
  /* Outputs may not overlap inputs, except grad over exactly the logits. */
  const clsm_tensor *ins[4] = {logits, target, opt->weight, gs};
  const char *in_names[4] = {"logits", "target", "weight", gsname};
  const clsm_tensor *outs[4] = {loss, grad, opt->lse, opt->total_weight};
  const char *out_names[4] = {"loss", gname, "lse", "total_weight"};
  for (int o = 0; o < 4; ++o) {
    if (!outs[o]) continue;
    for (int i = 0; i < 4; ++i)
      if (ins[i] && (st = clsm__check_output(ctx, outs[o], out_names[o], ins[i], in_names[i])) != CLSM_SUCCESS)
        return st;
    for (int p = 0; p < o; ++p)
      if (outs[p] && (st = clsm__check_output(ctx, outs[o], out_names[o], outs[p], out_names[p])) != CLSM_SUCCESS)
        return st;
  }
  /* Views. */
  const clsm_tensor *bad = NULL;
  if (!clsm__make_view(logits, axis, &c->xv)) bad = logits;
  else if (c->prob && !clsm__make_view(target, axis, &c->tv)) bad = target;
  else if (!c->prob && !pos_of(target, logits->rank, &c->tp)) bad = target;
  else if (grad && !clsm__make_view(grad, axis, &c->gv)) bad = grad;
  else if (loss && !reduced && !pos_of(loss, logits->rank, &c->lp)) bad = loss;
  else if (gs && !reduced && !pos_of(gs, logits->rank, &c->gsp)) bad = gs;
  else if (opt->lse && !pos_of(opt->lse, logits->rank, &c->lsep)) bad = opt->lse;
  if (bad) {
    const char *name = bad == logits ? "logits" : bad == target ? "target" : bad == grad ? gname
                       : bad == loss ? "loss" : bad == gs ? gsname : "lse";
    /* Which run of dims: logits-shaped tensors have N, C, then the
     * positions' dims; per-position tensors N, then the rest. */
    const int full = bad == logits || bad == grad || (bad == target && c->prob);
    const int first = full ? 2 : 1;
    char shp[160], str[160];
    clsm__shape_str(bad, shp, sizeof shp);
    clsm_tensor strides = *bad;
    for (int d = 0; d < bad->rank; ++d) strides.shape[d] = bad->strides[d];
    clsm__shape_str(&strides, str, sizeof str);
    return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_LAYOUT,
                      "%s: dims %d..%d (the positions after the batch dim) of shape %s with "
                      "strides %s do not collapse into one stride",
                      name, first, bad->rank - 1, shp, str);
  }
  if (c->prob) {
    c->tp.mem = target->mem;
    c->tp.base = c->tv.base;
    c->tp.so = c->tv.so;
    c->tp.si = c->tv.si;
  }
  /* Positions: N (when the logits have a batch dim) times the dims after C. */
  c->outer = logits->rank >= 2 ? logits->shape[0] : 1;
  c->inner = 1;
  for (int d = 2; d < logits->rank; ++d) c->inner *= logits->shape[d];
  c->P = c->outer * c->inner;
  return CLSM_SUCCESS;
}

/* Sequential kernel arguments. */
#define ARG(v) CLSM_ARG(ctx, k, a++, v)

static clsm_status enqueue_ce(clsm_context *ctx, ce_call *c, int backward, cl_uint num_wait,
                              const cl_event *wait, cl_event *event) {
  clsm_status st;
  const clsm_ce_options *opt = c->opt;
  const int reduced = opt->reduction != CLSM_REDUCTION_NONE;
  const int mean = opt->reduction == CLSM_REDUCTION_MEAN;
  const cl_long P = c->P, C = c->C, outer = c->outer, inner = c->inner ? c->inner : 1;
  const size_t acc = c->program == P_F64 ? sizeof(double) : sizeof(float);
  const int contiguous = c->xv.inner == 1 && c->xv.sc == 1 && (!c->grad || c->gv.sc == 1);
  /* Few long rows, index targets, no softcap or smoothing: split over
   * work-items (clsm_ce_split_*), their pairs and target logits in scratch
   * after the four arrays and totals. */
  const int64_t split = contiguous && !c->prob && opt->softcap == 0 && opt->label_smoothing == 0
                            ? clsm__split_len(ctx, P, C)
                            : 0;
  const cl_long ch = split, chunks = split ? (C + split - 1) / split : 0;
  const size_t split_vals = split ? (size_t)P * (2 * (size_t)chunks + 1) : 0;
  if ((st = clsm__scratch(ctx, (4 * (size_t)P + 4 + split_vals) * acc)) != CLSM_SUCCESS) return st;
  cl_kernel k;
  cl_uint a;
  int first = 1;
#define ENQ(kernel, global, local, is_last)                                                       \
  do {                                                                                           \
    size_t g_ = (global), l_ = (local);                                                          \
    CLSM_CL(ctx, clEnqueueNDRangeKernel(ctx->queue, kernel, 1, NULL, &g_, l_ ? &l_ : NULL,        \
                                        first ? num_wait : 0, first ? wait : NULL,                \
                                        (is_last) ? event : NULL));                              \
    first = 0;                                                                                   \
  } while (0)

  cl_mem w = opt->weight ? opt->weight->mem : c->flag;
  cl_ulong woff = opt->weight ? opt->weight->offset : 0;
  cl_uint flags = opt->weight ? CE_WEIGHT : 0;
  const cl_long ignore = opt->ignore_index;
  const int need_totals = mean || opt->total_weight;
  const int loss_out = !backward && c->loss;
  const size_t p1 = P > 0 ? (size_t)P : 1;
  /* The reduce is one work-group: 64 lanes on a CPU, as many as the device
   * and its local memory allow on a GPU (its lanes each walk P / n values). */
  size_t red_local = ctx->wg_size < 64 ? ctx->wg_size : 64;
  if (ctx->family == CLSM_FAMILY_GPU && !ctx->wg_forced) red_local = ctx->wg_cap;
  const cl_int chunked = ctx->family == CLSM_FAMILY_CPU;

  /* 1. Targets: validate, weights and counts. */
  if ((st = clsm__kernel(ctx, c->program, K_CE_PREP, &k)) != CLSM_SUCCESS) return st;
  a = 0;
  cl_long tso = c->tp.so, tsi = c->tp.si;
  cl_ulong toff = c->tp.base;
  cl_int tkind = c->tkind;
  ARG(c->t->mem); ARG(toff); ARG(tso); ARG(tsi); ARG(tkind); ARG(w); ARG(woff);
  ARG(ctx->scratch); ARG(P); ARG(c->flag); ARG(inner); ARG(C); ARG(ignore); ARG(flags);
  ENQ(k, p1, 0, 0);

  /* 2. W and the non-ignored count. */
  cl_kernel red;
  if ((st = clsm__kernel(ctx, c->program, K_CE_REDUCE, &red)) != CLSM_SUCCESS) return st;
  {
    size_t kmax = 0;
    CLSM_CL(ctx, clGetKernelWorkGroupInfo(red, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax,
                                          &kmax, NULL));
    while (red_local > 1 && red_local > kmax) red_local /= 2;
  }
  /* Sums scratch arrays k0..k1-1 into their totals (one work-group). */
#define REDUCE(k0_, k1_)                                                   \
  do {                                                                     \
    cl_int k0 = (k0_), k1 = (k1_);                                         \
    k = red;                                                               \
    a = 0;                                                                 \
    ARG(ctx->scratch); ARG(P); ARG(k0); ARG(k1); ARG(c->flag);        \
    CLSM_CL(ctx, clSetKernelArg(k, a++, red_local * acc, NULL));           \
    ARG(chunked);                                                          \
    ENQ(k, red_local, red_local, 0);                                       \
  } while (0)
  if (need_totals) REDUCE(0, 2);

  /* 3. Rows. */
  /* CPU: a work-item per position (vectorised for contiguous rows) or per
   * block of positions (class axis not last, positions contiguous); GPU: a
   * work-group per position. */
  const int blocks = inner > 1 && c->xv.si == 1 && (!c->grad || c->gv.si == 1) && C < INT32_MAX;
  clsm_kernel_id rk = ctx->family == CLSM_FAMILY_GPU ? K_CE_ROWS_WG
                      : contiguous                  ? K_CE_ROWS_CPU
                      : blocks                      ? K_CE_INNER_CPU
                                                    : K_CE_STRIDED;
  const int nv = rk == K_CE_INNER_CPU ? clsm__inner_nv(ctx, inner) : 1;
  const size_t ib = rk == K_CE_INNER_CPU ? 16 * (size_t)nv : 1;
  if (c->grad) flags |= CE_GRAD;
  if (loss_out) flags |= CE_LOSS;
  if (opt->lse) flags |= CE_LSE;
  if (opt->softcap > 0) flags |= CE_SOFTCAP;
  if (mean) flags |= CE_MEAN;
  if (c->gs) flags |= reduced ? CE_G_SCALAR : CE_G_POS;
  /* CPU work-items: a position, or a block of them. */
  size_t items = rk == K_CE_INNER_CPU ? (size_t)outer * (((size_t)inner + ib - 1) / ib) : p1;
  if (items == 0) items = 1;
  size_t local = ctx->family == CLSM_FAMILY_CPU ? clsm__cpu_local(ctx, items) : 64;
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
      const size_t bytes = clsm__row_scratch(ctx, &local, C, acc);
      if (bytes) {
        flags |= CE_KEEP;
        scratch_bytes = bytes;
        grad16_keep = 1;
      }
    }
  }
  if (rk == K_CE_INNER_CPU) flags |= (cl_uint)nv << CE_NV_SHIFT;
  /* Rows of ONLINE_ROW or more, no kept exps, no smoothing: one read of the
   * row for its (max, sum). */
  clsm_kernel_id kid = rk;
  if (rk == K_CE_ROWS_CPU && !(flags & (CE_KEEP | CE_SOFTCAP)) && !c->prob &&
      opt->label_smoothing == 0 && C >= ONLINE_ROW)
    kid = K_CE_ROWS_LONG_CPU;
  /* Short rows, CE_ROWS a work-item (ce.cl), unless that would leave fewer
   * than four work-items a compute unit. A 16-bit gradient's kept exps then
   * take CE_ROWS rows of local scratch a work-item, one work-item a group,
   * so that the group's scratch stays in L1; past ROWS16_SCRATCH bytes of
   * them (C > 128 for float) the scratch no longer fits there, and the rows
   * stay one a work-item unless forced. */
  if (kid == K_CE_ROWS_CPU && C < ONLINE_ROW &&
      (ctx->ce_rows16 == 1 ||
       (ctx->ce_rows16 == -1 && p1 >= (size_t)CE_ROWS * 4 * ctx->compute_units &&
        (!grad16_keep || (uint64_t)CE_ROWS * C * acc <= ROWS16_SCRATCH)))) {
    const size_t items16 = (p1 + CE_ROWS - 1) / CE_ROWS;
    size_t local16 = grad16_keep ? 1 : clsm__cpu_local(ctx, items16);
    const size_t bytes16 = grad16_keep ? clsm__row_scratch(ctx, &local16, CE_ROWS * C, acc) : acc;
    if (bytes16) {
      kid = K_CE_ROWS16_CPU;
      items = items16;
      local = local16;
      scratch_bytes = bytes16;
    }
  }
  if (split) {
    /* The chunks' (max, sum) pairs and the target logits. */
    if ((st = clsm__kernel(ctx, c->program, K_CE_SPLIT_PARTIALS, &k)) != CLSM_SUCCESS) return st;
    a = 0;
    cl_ulong xoff0 = c->xv.base, toff0 = c->tp.base;
    cl_long xso0 = c->xv.so, tso0 = c->tp.so;
    ARG(c->x->mem); ARG(xoff0); ARG(xso0); ARG(c->t->mem); ARG(toff0); ARG(tso0); ARG(tkind);
    ARG(ctx->scratch); ARG(P); ARG(c->flag); ARG(C); ARG(ch); ARG(chunks); ARG(ignore);
    ENQ(k, (size_t)(P * chunks), 1, 0);
    kid = K_CE_SPLIT_ROWS;
    items = (size_t)(P * chunks);
    local = 1;
    flags &= ~CE_KEEP;
  }
  if ((st = clsm__kernel(ctx, c->program, kid, &k)) != CLSM_SUCCESS) return st;
  cl_ulong xoff = c->xv.base, goff = c->grad ? c->gv.base : 0, gsoff = c->gs ? c->gs->offset : 0;
  cl_long xs[3] = {c->xv.so, c->xv.sc, c->xv.si};
  cl_long gsx[3] = {c->gv.so, c->gv.sc, c->gv.si};
  cl_long tsc = c->prob ? c->tv.sc : 0;
  cl_long gsso = c->gsp.so, gssi = c->gsp.si;
  cl_ulong loff = c->lsep.base;
  cl_long lso = c->lsep.so, lsi = c->lsep.si;
  cl_mem gmem = c->grad ? c->grad->mem : ctx->scratch;
  cl_mem gsmem = c->gs ? c->gs->mem : c->flag;
  cl_mem lsemem = opt->lse ? opt->lse->mem : ctx->scratch;
  /* eps, z and cap in the compute type (double for float64 logits). */
  const double dparams[3] = {opt->label_smoothing, opt->z_loss, opt->softcap};
  const cl_float fparams[3] = {(cl_float)dparams[0], (cl_float)dparams[1], (cl_float)dparams[2]};
  const void *params = acc == sizeof(double) ? (const void *)dparams : (const void *)fparams;
  a = 0;
  ARG(c->x->mem); ARG(xoff); ARG(xs[0]); ARG(xs[1]); ARG(xs[2]);
  ARG(c->t->mem); ARG(toff); ARG(tso); ARG(tsc); ARG(tsi); ARG(tkind); ARG(w); ARG(woff);
  ARG(gmem); ARG(goff); ARG(gsx[0]); ARG(gsx[1]); ARG(gsx[2]);
  ARG(gsmem); ARG(gsoff); ARG(gsso); ARG(gssi);
  ARG(lsemem); ARG(loff); ARG(lso); ARG(lsi);
  ARG(ctx->scratch); ARG(P); ARG(c->flag);
  ARG(outer); ARG(C); ARG(inner); ARG(ignore);
  for (int i = 0; i < 3; ++i)
    CLSM_CL(ctx, clSetKernelArg(k, a++, acc, (const char *)params + (size_t)i * acc));
  ARG(flags);
  if (kid == K_CE_ROWS_CPU || kid == K_CE_ROWS_LONG_CPU || kid == K_CE_ROWS16_CPU)
    CLSM_CL(ctx, clSetKernelArg(k, a++, scratch_bytes, NULL));
  if (split) {
    ARG(ch); ARG(chunks);
  }
  const int rows_last = !loss_out && !opt->total_weight;
  if (rk == K_CE_ROWS_WG && !split) {
    size_t wg = ctx->wg_size, kmax = 0;
    CLSM_CL(ctx, clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax,
                                          &kmax, NULL));
    while (wg > 32 && wg / 2 >= (size_t)C) wg /= 2;
    while (wg > 1 && (wg > kmax || 4 * wg * acc > ctx->local_mem_size)) wg /= 2;
    for (int i = 0; i < 4; ++i) CLSM_CL(ctx, clSetKernelArg(k, a++, wg * acc, NULL));
    ENQ(k, p1 * wg, wg, rows_last);
  } else {
    ENQ(k, (items + local - 1) / local * local, local, rows_last);
  }

  /* 4. The loss (and total weight). */
  if (loss_out || opt->total_weight) {
    if (loss_out && reduced) REDUCE(2, 4);
    if ((st = clsm__kernel(ctx, c->program, K_CE_FINISH, &k)) != CLSM_SUCCESS) return st;
    a = 0;
    cl_mem lmem = loss_out ? c->loss->mem : ctx->scratch;
    cl_ulong lo = loss_out ? (reduced ? c->loss->offset : c->lp.base) : 0;
    cl_long lpso = c->lp.so, lpsi = c->lp.si;
    /* Without a loss output only the total weight is written, by one work-item. */
    cl_int red_i = reduced || !loss_out, mean_i = mean, loss_on = loss_out;
    cl_mem twmem = opt->total_weight ? opt->total_weight->mem : ctx->scratch;
    cl_ulong twoff = opt->total_weight ? opt->total_weight->offset : 0;
    cl_int tw_on = opt->total_weight != NULL;
    ARG(ctx->scratch); ARG(P); ARG(lmem); ARG(lo); ARG(lpso); ARG(lpsi); ARG(inner);
    ARG(red_i); ARG(mean_i); ARG(loss_on); ARG(twmem); ARG(twoff); ARG(tw_on); ARG(c->flag);
    ENQ(k, red_i ? 1 : p1, 0, 1);
  }
  return CLSM_SUCCESS;
fail:
  return st;
#undef REDUCE
#undef ENQ
}

static clsm_status ce_common(clsm_context *ctx, const clsm_tensor *logits, const clsm_tensor *target,
                             const clsm_tensor *loss, const clsm_tensor *grad,
                             const clsm_tensor *gs, const clsm_ce_options *opt, int backward,
                             cl_uint num_wait, const cl_event *wait, cl_event *event) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  if (event) *event = NULL;
  if (opt && opt->version >= 2 && opt->check) *opt->check = NULL;
  clsm_status st;
  ce_call c;
  pthread_mutex_lock(&ctx->lock);
  ctx->error[0] = '\0';
  clsm_check *rec = NULL;
  if ((st = clsm__check_wait(ctx, num_wait, wait)) == CLSM_SUCCESS &&
      (st = check_call(ctx, &c, logits, target, loss, grad, gs, opt, backward)) == CLSM_SUCCESS &&
      (st = clsm__call_begin(ctx, &rec)) == CLSM_SUCCESS) {
    c.flag = clsm__call_flag(rec);
    clsm_check **handle = opt->version >= 2 ? opt->check : NULL;
    if ((st = enqueue_ce(ctx, &c, backward, num_wait, wait, event)) == CLSM_SUCCESS)
      st = clsm__call_commit(ctx, rec, handle);
    else
      clsm__call_abort(rec);
  }
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

clsm_status clsm_cross_entropy(clsm_context *ctx, const clsm_tensor *logits,
                               const clsm_tensor *target, const clsm_tensor *loss,
                               const clsm_ce_options *opt, cl_uint num_wait, const cl_event *wait,
                               cl_event *event) {
  if (ctx && (!loss || (opt && opt->grad_scale && !opt->grad))) {
    if (event) *event = NULL;
    pthread_mutex_lock(&ctx->lock);
    clsm_status st =
        !loss ? clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "loss is NULL")
              : clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                           "options.grad_scale is given without options.grad: it scales the "
                           "fused gradient only");
    pthread_mutex_unlock(&ctx->lock);
    return st;
  }
  return ce_common(ctx, logits, target, loss, opt ? opt->grad : NULL, opt ? opt->grad_scale : NULL,
                   opt, 0, num_wait, wait, event);
}

clsm_status clsm_cross_entropy_backward(clsm_context *ctx, const clsm_tensor *logits,
                                        const clsm_tensor *target, const clsm_tensor *dloss,
                                        const clsm_tensor *dlogits, const clsm_ce_options *opt,
                                        cl_uint num_wait, const cl_event *wait, cl_event *event) {
  const char *bad = !dloss                               ? "dloss is NULL"
                    : !dlogits                           ? "dlogits is NULL"
                    : opt && (opt->grad || opt->grad_scale) ? "options.grad and options.grad_scale "
                                                            "must be NULL for the backward (dlogits "
                                                            "and dloss take their place)"
                                                          : NULL;
  if (ctx && bad) {
    if (event) *event = NULL;
    pthread_mutex_lock(&ctx->lock);
    clsm_status st = clsm__fail(ctx, !dloss || !dlogits ? CLSM_ERR_NULL_ARGUMENT : CLSM_ERR_INVALID_ARGUMENT,
                                "%s", bad);
    pthread_mutex_unlock(&ctx->lock);
    return st;
  }
  return ce_common(ctx, logits, target, NULL, dlogits, dloss, opt, 1, num_wait, wait, event);
}
