/* Cross-entropy forward, fused gradient and backward: option and tensor
 * checks and the (N, C, positions) views; the pipeline of ce.cl is planned
 * in plan_ce.c and runs with the call's deferred out-of-range flag. */
#include "internal.h"

#include <math.h>
#include <string.h>

static const unsigned float_types =
    (1u << CLSM_FLOAT32) | (1u << CLSM_FLOAT16) | (1u << CLSM_BFLOAT16) | (1u << CLSM_FLOAT64);
static const unsigned index_types = (1u << CLSM_INT64) | (1u << CLSM_INT32) | (1u << CLSM_UINT8);

clsm_ce_options clsm_ce_options_default(void) {
  clsm_ce_options o = CLSM_CE_OPTIONS_INIT;
  return o;
}

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
static int pos_of(const clsm_tensor *t, int logits_rank, clsm_pos_view *v) {
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

static clsm_status check_call(clsm_context *ctx, clsm_ce_call *c, const clsm_tensor *logits,
                              const clsm_tensor *target, const clsm_tensor *loss,
                              const clsm_tensor *grad, const clsm_tensor *gs,
                              const clsm_ce_options *opt, int backward, int phase,
                              const clsm_shard *shard, const clsm_tensor *stats) {
  clsm_status st;
  /* The backward's gradient and upstream gradient go by their own names. */
  const char *gname = backward ? "dlogits" : "grad", *gsname = backward ? "dloss" : "grad_scale";
  memset(c, 0, sizeof *c);
  c->backward = backward;
  c->x = logits, c->t = target, c->loss = loss, c->grad = grad, c->gs = gs, c->opt = opt;
  c->phase = phase, c->stats = stats;
  if (!opt) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "opt (the options) is NULL");
  if (opt->version < 1 || opt->version > CLSM_CE_OPTIONS_VERSION)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                      "options.version is %u: start from CLSM_CE_OPTIONS_INIT", opt->version);
  if ((st = clsm__check_desc(ctx, logits, float_types, "logits")) != CLSM_SUCCESS) return st;
  if (logits->rank < 1)
    return clsm__fail(ctx, CLSM_ERR_INVALID_RANK, "logits must have rank 1..8 (rank 0 given)");
  const int axis = logits->rank == 1 ? 0 : 1;
  c->C = logits->shape[axis];
  c->first = 0, c->classes = c->C;
  if (phase != CE_PHASE_NONE) {
    if (!shard) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "shard is NULL");
    if (shard->first < 0 || shard->classes < 1 || shard->first > shard->classes ||
        c->C > shard->classes - shard->first)
      return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                        "shard: classes [%lld, %lld) are not inside the class axis [0, %lld)",
                        (long long)shard->first, (long long)(shard->first + c->C),
                        (long long)shard->classes);
    c->first = shard->first, c->classes = shard->classes;
    if ((st = clsm__check_stats(ctx, stats, logits, axis, SHARD_K, "these logits")) != CLSM_SUCCESS)
      return st;
  }
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
    c->tkind = TK_PROB;
  } else {
    if (!positions_match(logits, axis, target))
      return shape_mismatch(ctx, "target (class indices)", target, logits, axis);
    c->tkind = target->dtype == CLSM_INT64 ? TK_INT64 : target->dtype == CLSM_INT32 ? TK_INT32 : TK_UINT8;
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
  const clsm_tensor *out = loss ? loss : grad ? grad : phase == CE_PHASE_PARTIAL ? stats : NULL;
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
    if (w->rank != 1 || w->shape[0] != c->classes)
      return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH,
                        "weight must have shape (C) = (%lld)%s", (long long)c->classes,
                        phase != CE_PHASE_NONE ? ", every class of the axis (shards share it)" : "");
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
    const clsm_tensor *all[9] = {logits, target, loss, grad, gs, opt->weight, opt->lse,
                                 opt->total_weight, stats};
    const char *names[9] = {"logits", "target", "loss", gname, gsname, "weight", "lse",
                            "total_weight", "stats"};
    for (int i = 0; i < 9; ++i)
      if (all[i] && (st = clsm__check_mem(ctx, all[i], names[i])) != CLSM_SUCCESS) return st;
  }
  /* Outputs may not overlap inputs, except grad over exactly the logits. */
  /* A shard's statistics are the partial's output and the finish's input. */
  const clsm_tensor *st_in = phase == CE_PHASE_FINISH ? stats : NULL;
  const clsm_tensor *st_out = phase == CE_PHASE_PARTIAL ? stats : NULL;
  const clsm_tensor *ins[5] = {logits, target, opt->weight, gs, st_in};
  const char *in_names[5] = {"logits", "target", "weight", gsname, "stats"};
  const clsm_tensor *outs[5] = {loss, grad, opt->lse, opt->total_weight, st_out};
  const char *out_names[5] = {"loss", gname, "lse", "total_weight", "stats"};
  for (int o = 0; o < 5; ++o) {
    if (!outs[o]) continue;
    for (int i = 0; i < 5; ++i)
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

static clsm_status ce_common(clsm_context *ctx, const clsm_tensor *logits, const clsm_tensor *target,
                             const clsm_tensor *loss, const clsm_tensor *grad,
                             const clsm_tensor *gs, const clsm_ce_options *opt, int backward,
                             int phase, const clsm_shard *shard, const clsm_tensor *stats,
                             cl_uint num_wait, const cl_event *wait, cl_event *event) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  if (event) *event = NULL;
  if (opt && opt->version >= 2 && opt->check) *opt->check = NULL;
  clsm_status st;
  clsm_ce_call c;
  pthread_mutex_lock(&ctx->lock);
  ctx->error[0] = '\0';
  clsm_check *rec = NULL;
  if ((st = clsm__check_wait(ctx, num_wait, wait)) == CLSM_SUCCESS &&
      (st = check_call(ctx, &c, logits, target, loss, grad, gs, opt, backward, phase, shard,
                        stats)) == CLSM_SUCCESS &&
      (st = clsm__call_begin(ctx, &rec)) == CLSM_SUCCESS) {
    clsm_check **handle = opt->version >= 2 ? opt->check : NULL;
    clsm_plan plan;
    if ((st = clsm__program(ctx, c.program, G_CE)) == CLSM_SUCCESS) {
      clsm__plan_ce(&ctx->caps, ctx->kernel_wg[c.program], &c, &plan);
      /* A register-held rows variant as for the row ops (rowop.c). */
      for (int tries = 0, ready = 0; st == CLSM_SUCCESS && !ready && tries < CLSM_REG_VARIANTS; ++tries)
        if ((st = clsm__reg_ready(ctx, &plan, &ready)) == CLSM_SUCCESS && !ready)
          clsm__plan_ce(&ctx->caps, ctx->kernel_wg[c.program], &c, &plan);
      if (st == CLSM_SUCCESS)
        st = clsm__run_plan(ctx, &plan, clsm__call_flag(rec), num_wait, wait, event);
    }
    if (st == CLSM_SUCCESS)
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
                   opt, 0, CE_PHASE_NONE, NULL, NULL, num_wait, wait, event);
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
  return ce_common(ctx, logits, target, NULL, dlogits, dloss, opt, 1, CE_PHASE_NONE, NULL, NULL,
                   num_wait, wait, event);
}

/* A shard's phases: refusals of what the phase has no use for, then the
 * common path. */
static clsm_status refuse(clsm_context *ctx, cl_event *event, clsm_status status, const char *msg) {
  if (event) *event = NULL;
  pthread_mutex_lock(&ctx->lock);
  clsm_status st = clsm__fail(ctx, status, "%s", msg);
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

clsm_status clsm_cross_entropy_partial(clsm_context *ctx, const clsm_tensor *logits,
                                       const clsm_tensor *target, const clsm_shard *shard,
                                       const clsm_tensor *stats, const clsm_ce_options *opt,
                                       cl_uint num_wait, const cl_event *wait, cl_event *event) {
  if (ctx && opt && (opt->grad || opt->grad_scale || opt->lse || opt->total_weight))
    return refuse(ctx, event, CLSM_ERR_INVALID_ARGUMENT,
                  "options.grad, grad_scale, lse and total_weight must be NULL for a partial "
                  "(clsm_cross_entropy_finish writes them)");
  return ce_common(ctx, logits, target, NULL, NULL, NULL, opt, 0, CE_PHASE_PARTIAL, shard, stats,
                   num_wait, wait, event);
}

clsm_status clsm_cross_entropy_finish(clsm_context *ctx, const clsm_tensor *logits,
                                      const clsm_tensor *target, const clsm_shard *shard,
                                      const clsm_tensor *stats, const clsm_tensor *loss,
                                      const clsm_ce_options *opt, cl_uint num_wait,
                                      const cl_event *wait, cl_event *event) {
  if (ctx && opt && opt->grad_scale && !opt->grad)
    return refuse(ctx, event, CLSM_ERR_INVALID_ARGUMENT,
                  "options.grad_scale is given without options.grad: it scales the gradient only");
  if (ctx && opt && !loss && !opt->grad)
    return refuse(ctx, event, CLSM_ERR_NULL_ARGUMENT,
                  "loss is NULL and options.grad is NULL: nothing to write");
  return ce_common(ctx, logits, target, loss, opt ? opt->grad : NULL, opt ? opt->grad_scale : NULL,
                   opt, 0, CE_PHASE_FINISH, shard, stats, num_wait, wait, event);
}
