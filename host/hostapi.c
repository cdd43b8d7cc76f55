/* The blocking host-pointer layer: copy in, run the asynchronous op, copy out,
 * wait. The caller's output array is written only after the op succeeded. */
#include "internal.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Records a failed OpenCL call made without the lock held. */
static clsm_status cl_failed(clsm_context *ctx, cl_int err, const char *call, int line) {
  pthread_mutex_lock(&ctx->lock);
  clsm_status st = clsm__cl_fail(ctx, err, call, __FILE__, line);
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static clsm_status fail_locked(clsm_context *ctx, clsm_status status, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&ctx->lock);
  clsm__fail(ctx, status, "%s", msg);
  pthread_mutex_unlock(&ctx->lock);
  return status;
}

/* A device buffer of `bytes` (at least 1), filled from `init` without
 * waiting when it is not NULL. */
static clsm_status host_buffer(clsm_context *ctx, size_t bytes, const void *init, cl_mem *out) {
  cl_int err = CL_SUCCESS;
  pthread_mutex_lock(&ctx->lock);
  int injected = clsm__inject_cl(ctx, &err);
  pthread_mutex_unlock(&ctx->lock);
  if (!injected) *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes ? bytes : 1, NULL, &err);
  if (!*out) return cl_failed(ctx, err, "clCreateBuffer", __LINE__);
  if (init && bytes) {
    err = clEnqueueWriteBuffer(ctx->queue, *out, CL_FALSE, 0, bytes, init, 0, NULL, NULL);
    if (err != CL_SUCCESS) return cl_failed(ctx, err, "clEnqueueWriteBuffer", __LINE__);
  }
  return CLSM_SUCCESS;
}

typedef enum { OP_SOFTMAX, OP_LOG_SOFTMAX, OP_SOFTMAX_BWD, OP_LOG_SOFTMAX_BWD } host_kind;

/* The attention extras of a host op (host_op with `ao`): the arrays'
 * device buffers and tensors, filled in place of opt's tensors in `o`. */
enum { HA_MASK, HA_SLOPES, HA_SINKS, HA_LSE, HA_DSINKS, HA_COUNT };
typedef struct host_attn {
  cl_mem b[HA_COUNT];
  size_t bytes[HA_COUNT];
  clsm_tensor t[HA_COUNT];
  clsm_attn_options o;
} host_attn;

static clsm_status host_attn_prepare(clsm_context *ctx, const clsm_attn_options *ao,
                                     const clsm_attn_arrays *ar, int backward, clsm_dtype dtype,
                                     int rank, const int64_t *shape, int dim, host_attn *h) {
  if (ao->mask || ao->alibi_slopes || ao->sinks || ao->lse || ao->dsinks)
    return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT,
                       "host attention softmax: opt's tensors must be NULL (pass host arrays)");
  h->o = *ao;
  if (!ar) return CLSM_SUCCESS;
  /* H and the rows as the device call finds them; a dim or head_dim it
   * refuses leaves H at 1 here (the call then fails before using it). */
  const int r = rank ? rank : 1;
  const int d = dim < 0 ? dim + r : dim;
  int64_t H = 1, rows = 1;
  if (clsm_attn_heads(rank, shape, dim, ao->head_dim, &H) != CLSM_SUCCESS) H = 1;
  for (int k = 0; k < rank; ++k)
    if (k != d) rows *= shape[k];
  const size_t acc = dtype == CLSM_FLOAT64 ? 8 : 4;
  int64_t mn = 1;
  if (ar->mask) {
    if (ar->mask_rank < 0 || ar->mask_rank > CLSM_MAX_RANK)
      return fail_locked(ctx, CLSM_ERR_INVALID_RANK, "mask rank %d is outside 0..8", ar->mask_rank);
    if (ar->mask_rank > 0 && !ar->mask_shape)
      return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "mask_shape is NULL");
    if (!clsm_dtype_size(ar->mask_dtype))
      return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT, "mask_dtype: unknown dtype %d", (int)ar->mask_dtype);
    for (int k = 0; k < ar->mask_rank; ++k) {
      if (ar->mask_shape[k] < 0) return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT, "a mask_shape entry is negative");
      if (__builtin_mul_overflow(mn, ar->mask_shape[k], &mn) || (uint64_t)mn > SIZE_MAX / 8)
        return fail_locked(ctx, CLSM_ERR_TOO_LARGE, "mask bytes overflow size_t");
    }
  }
  if (ar->sinks && !clsm_dtype_size(ar->sinks_dtype))
    return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT, "sinks_dtype: unknown dtype %d", (int)ar->sinks_dtype);
  const void *src[HA_COUNT] = {ar->mask, ar->alibi_slopes, ar->sinks, NULL, NULL};
  const int used[HA_COUNT] = {!backward && ar->mask, !backward && ar->alibi_slopes,
                             !backward && ar->sinks, !backward && ar->lse, backward && ar->dsinks};
  h->bytes[HA_MASK] = (size_t)mn * clsm_dtype_size(ar->mask_dtype);
  h->bytes[HA_SLOPES] = (size_t)H * 4;
  h->bytes[HA_SINKS] = (size_t)H * clsm_dtype_size(ar->sinks_dtype);
  h->bytes[HA_LSE] = (size_t)rows * acc;
  h->bytes[HA_DSINKS] = (size_t)H * acc;
  int64_t lshape[CLSM_MAX_RANK], hshape[1] = {H};
  for (int k = 0, j = 0; k < rank; ++k)
    if (k != d) lshape[j++] = shape[k];
  const clsm_dtype accd = dtype == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  for (int i = 0; i < HA_COUNT; ++i) {
    if (!used[i]) continue;
    clsm_status st = host_buffer(ctx, h->bytes[i], src[i], &h->b[i]);
    if (st != CLSM_SUCCESS) return st;
  }
  h->t[HA_MASK] = clsm_tensor_contiguous(h->b[HA_MASK], 0, ar->mask_dtype, ar->mask_rank, ar->mask_shape);
  h->t[HA_SLOPES] = clsm_tensor_contiguous(h->b[HA_SLOPES], 0, CLSM_FLOAT32, 1, hshape);
  h->t[HA_SINKS] = clsm_tensor_contiguous(h->b[HA_SINKS], 0, ar->sinks_dtype, 1, hshape);
  h->t[HA_LSE] = clsm_tensor_contiguous(h->b[HA_LSE], 0, accd, rank ? rank - 1 : 0, lshape);
  h->t[HA_DSINKS] = clsm_tensor_contiguous(h->b[HA_DSINKS], 0, accd, 1, hshape);
  const clsm_tensor **slot[HA_COUNT] = {&h->o.mask, &h->o.alibi_slopes, &h->o.sinks, &h->o.lse, &h->o.dsinks};
  for (int i = 0; i < HA_COUNT; ++i)
    if (used[i]) *slot[i] = &h->t[i];
  return CLSM_SUCCESS;
}

/* Runs one op on device copies of `nin` input arrays; the output goes to
 * `out`. Inputs are copied into their own buffers, so out may alias any.
 * With `ao`, the attention entry point, its arrays in `ar`. */
static clsm_status host_op(clsm_context *ctx, host_kind kind, clsm_dtype dtype, int rank,
                           const int64_t *shape, int dim, unsigned flags, const void *const *in,
                           int nin, void *out, const clsm_attn_options *ao,
                           const clsm_attn_arrays *ar) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  clsm_status st = CLSM_SUCCESS;
  cl_mem bufs[3] = {NULL, NULL, NULL};
  host_attn h;
  memset(&h, 0, sizeof h);
  if (rank < 0 || rank > CLSM_MAX_RANK)
    return fail_locked(ctx, CLSM_ERR_INVALID_RANK, "rank %d is outside 0..8", rank);
  if (rank > 0 && !shape) return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "shape is NULL");
  size_t es = clsm_dtype_size(dtype);
  if (es == 0) return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT, "dtype: unknown dtype %d", (int)dtype);
  if (dtype != CLSM_FLOAT32 && dtype != CLSM_FLOAT16 && dtype != CLSM_BFLOAT16 &&
      dtype != CLSM_FLOAT64)
    return fail_locked(ctx, CLSM_ERR_UNSUPPORTED_DTYPE, "softmax needs a floating dtype");
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) {
    if (shape[d] < 0) return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT, "a shape entry is negative");
    if (__builtin_mul_overflow(n, shape[d], &n) || (uint64_t)n > SIZE_MAX / es)
      return fail_locked(ctx, CLSM_ERR_TOO_LARGE, "tensor bytes overflow size_t");
  }
  size_t bytes = (size_t)n * es;
  if (n > 0) {
    for (int i = 0; i < nin; ++i)
      if (!in[i]) return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "an input array is NULL");
    if (!out) return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "the output array is NULL");
  }
  if (bytes > ctx->max_alloc)
    return fail_locked(ctx, CLSM_ERR_TOO_LARGE, "tensor is larger than the device's largest allocation");
  if (ao && (st = host_attn_prepare(ctx, ao, ar, kind >= OP_SOFTMAX_BWD, dtype, rank, shape, dim, &h)) != CLSM_SUCCESS)
    goto out;

  clsm_tensor t[3];
  for (int i = 0; i <= nin; ++i) {
    if ((st = host_buffer(ctx, bytes, i < nin ? in[i] : NULL, &bufs[i])) != CLSM_SUCCESS) goto out;
    t[i] = clsm_tensor_contiguous(bufs[i], 0, dtype, rank, shape);
  }
  const int log = kind == OP_LOG_SOFTMAX || kind == OP_LOG_SOFTMAX_BWD;
  if (ao && nin == 1)
    st = (log ? clsm_log_softmax_ex : clsm_softmax_ex)(ctx, &t[0], &t[1], dim, &h.o, 0, NULL, NULL);
  else if (ao)
    st = (log ? clsm_log_softmax_backward_ex : clsm_softmax_backward_ex)(ctx, &t[0], &t[1], &t[2], dim,
                                                                         &h.o, 0, NULL, NULL);
  else switch (kind) {
  case OP_SOFTMAX: st = clsm_softmax(ctx, &t[0], &t[1], dim, flags, 0, NULL, NULL); break;
  case OP_LOG_SOFTMAX: st = clsm_log_softmax(ctx, &t[0], &t[1], dim, flags, 0, NULL, NULL); break;
  case OP_SOFTMAX_BWD:
    st = clsm_softmax_backward(ctx, &t[0], &t[1], &t[2], dim, flags, 0, NULL, NULL);
    break;
  case OP_LOG_SOFTMAX_BWD:
    st = clsm_log_softmax_backward(ctx, &t[0], &t[1], &t[2], dim, flags, 0, NULL, NULL);
    break;
  }
  if (st != CLSM_SUCCESS) goto out;
  if (bytes) {
    cl_int err = clEnqueueReadBuffer(ctx->queue, bufs[nin], CL_TRUE, 0, bytes, out, 0, NULL, NULL);
    if (err != CL_SUCCESS) st = cl_failed(ctx, err, "clEnqueueReadBuffer", __LINE__);
  }
  void *extra[HA_COUNT] = {NULL, NULL, NULL, ar ? ar->lse : NULL, ar ? ar->dsinks : NULL};
  for (int i = HA_LSE; st == CLSM_SUCCESS && i < HA_COUNT; ++i) {
    if (!h.b[i] || !h.bytes[i]) continue;
    cl_int err = clEnqueueReadBuffer(ctx->queue, h.b[i], CL_TRUE, 0, h.bytes[i], extra[i], 0, NULL, NULL);
    if (err != CL_SUCCESS) st = cl_failed(ctx, err, "clEnqueueReadBuffer", __LINE__);
  }
out:
  if (st != CLSM_SUCCESS) clFinish(ctx->queue); /* no pending write may use a buffer freed below */
  for (int i = 0; i < 3; ++i)
    if (bufs[i]) clReleaseMemObject(bufs[i]);
  for (int i = 0; i < HA_COUNT; ++i)
    if (h.b[i]) clReleaseMemObject(h.b[i]);
  return st;
}

clsm_status clsm_softmax_host(clsm_context *ctx, clsm_dtype dtype, int rank, const int64_t *shape,
                              int dim, unsigned flags, const void *x, void *y) {
  const void *in[1] = {x};
  return host_op(ctx, OP_SOFTMAX, dtype, rank, shape, dim, flags, in, 1, y, NULL, NULL);
}

clsm_status clsm_log_softmax_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                  const int64_t *shape, int dim, unsigned flags, const void *x,
                                  void *y) {
  const void *in[1] = {x};
  return host_op(ctx, OP_LOG_SOFTMAX, dtype, rank, shape, dim, flags, in, 1, y, NULL, NULL);
}

clsm_status clsm_softmax_backward_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                       const int64_t *shape, int dim, unsigned flags,
                                       const void *y, const void *dy, void *dx) {
  const void *in[2] = {y, dy};
  return host_op(ctx, OP_SOFTMAX_BWD, dtype, rank, shape, dim, flags, in, 2, dx, NULL, NULL);
}

clsm_status clsm_log_softmax_backward_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                           const int64_t *shape, int dim, unsigned flags,
                                           const void *y, const void *dy, void *dx) {
  const void *in[2] = {y, dy};
  return host_op(ctx, OP_LOG_SOFTMAX_BWD, dtype, rank, shape, dim, flags, in, 2, dx, NULL, NULL);
}

static clsm_status host_attn_op(clsm_context *ctx, host_kind kind, clsm_dtype dtype, int rank,
                                const int64_t *shape, int dim, const clsm_attn_options *opt,
                                const clsm_attn_arrays *arrays, const void *const *in, int nin,
                                void *out) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  if (!opt) return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "opt is NULL");
  return host_op(ctx, kind, dtype, rank, shape, dim, 0, in, nin, out, opt, arrays);
}

clsm_status clsm_softmax_ex_host(clsm_context *ctx, clsm_dtype dtype, int rank, const int64_t *shape,
                                 int dim, const clsm_attn_options *opt,
                                 const clsm_attn_arrays *arrays, const void *x, void *y) {
  const void *in[1] = {x};
  return host_attn_op(ctx, OP_SOFTMAX, dtype, rank, shape, dim, opt, arrays, in, 1, y);
}

clsm_status clsm_log_softmax_ex_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                     const int64_t *shape, int dim, const clsm_attn_options *opt,
                                     const clsm_attn_arrays *arrays, const void *x, void *y) {
  const void *in[1] = {x};
  return host_attn_op(ctx, OP_LOG_SOFTMAX, dtype, rank, shape, dim, opt, arrays, in, 1, y);
}

clsm_status clsm_softmax_backward_ex_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                          const int64_t *shape, int dim,
                                          const clsm_attn_options *opt,
                                          const clsm_attn_arrays *arrays, const void *y,
                                          const void *dy, void *dx) {
  const void *in[2] = {y, dy};
  return host_attn_op(ctx, OP_SOFTMAX_BWD, dtype, rank, shape, dim, opt, arrays, in, 2, dx);
}

clsm_status clsm_log_softmax_backward_ex_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                              const int64_t *shape, int dim,
                                              const clsm_attn_options *opt,
                                              const clsm_attn_arrays *arrays, const void *y,
                                              const void *dy, void *dx) {
  const void *in[2] = {y, dy};
  return host_attn_op(ctx, OP_LOG_SOFTMAX_BWD, dtype, rank, shape, dim, opt, arrays, in, 2, dx);
}

/* Cross-entropy on host arrays: every array gets a device buffer (the loss,
 * gradient, lse and total weight are read back only when the call, including
 * its deferred target check, succeeded). */
static clsm_status ce_host(clsm_context *ctx, int phase, clsm_dtype dtype, int rank,
                           const int64_t *shape, const void *logits, clsm_dtype target_dtype,
                           const void *target, const clsm_shard *shard,
                           const clsm_ce_options *opt, const void *weight, void *stats,
                           void *loss, void *grad, const void *grad_scale, float *lse,
                           float *total_weight) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  if (!opt) return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "opt (the options) is NULL");
  if (opt->version < 1 || opt->version > CLSM_CE_OPTIONS_VERSION)
    return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT,
                       "options.version is not 1..2: start from CLSM_CE_OPTIONS_INIT");
  if (opt->weight || opt->grad || opt->grad_scale || opt->lse || opt->total_weight)
    return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT,
                       "host cross-entropy: pass weight, grad, lse and total_weight as arrays");
  if (opt->version >= 2 && opt->check)
    return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT,
                       "host cross-entropy: options.check must be NULL (the call returns its "
                       "own outcome)");
  if (rank < 1 || rank > CLSM_MAX_RANK)
    return fail_locked(ctx, CLSM_ERR_INVALID_RANK, "logits rank %d is outside 1..8", rank);
  if (!shape) return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "shape is NULL");
  size_t es = clsm_dtype_size(dtype), ts = clsm_dtype_size(target_dtype);
  if (!es || !ts)
    return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d",
                       es ? "target_dtype" : "dtype", (int)(es ? target_dtype : dtype));
  if (!(dtype == CLSM_FLOAT32 || dtype == CLSM_FLOAT16 || dtype == CLSM_BFLOAT16 || dtype == CLSM_FLOAT64))
    return fail_locked(ctx, CLSM_ERR_UNSUPPORTED_DTYPE, "logits need a floating dtype");
  const int axis = rank == 1 ? 0 : 1;
  int64_t n = 1, positions = 1;
  for (int d = 0; d < rank; ++d) {
    if (shape[d] < 0) return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT, "a shape entry is negative");
    if (__builtin_mul_overflow(n, shape[d], &n) || (uint64_t)n > SIZE_MAX / 8)
      return fail_locked(ctx, CLSM_ERR_TOO_LARGE, "tensor bytes overflow size_t");
    if (d != axis) positions *= shape[d];
  }
  const int prob = target_dtype == dtype;
  int64_t tshape[CLSM_MAX_RANK];
  int trank = 0;
  for (int d = 0; d < rank; ++d)
    if (prob || d != axis) tshape[trank++] = shape[d];
  const int reduced = opt->reduction != CLSM_REDUCTION_NONE;
  const clsm_dtype out_dt = dtype;
  const size_t xbytes = (size_t)n * es, tbytes = (size_t)(prob ? n : positions) * ts;
  const size_t lbytes = (size_t)(reduced ? 1 : positions) * es;
  if (n && (!logits || !target))
    return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "logits or target is NULL");
  if (phase == CE_PHASE_NONE && !loss)
    return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "loss is NULL");
  if (phase == CE_PHASE_FINISH && !loss && !grad)
    return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "loss and grad are NULL: nothing to write");
  if (phase != CE_PHASE_NONE && !shard)
    return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "shard is NULL");
  if (phase != CE_PHASE_NONE && positions && !stats)
    return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "stats is NULL");
  /* Weights: every class of the axis. */
  const int64_t wcount = phase != CE_PHASE_NONE && shard->classes > 0 ? shard->classes : shape[axis];
  const size_t sbytes = (size_t)positions * SHARD_K * (dtype == CLSM_FLOAT64 ? 8 : 4);
  if (xbytes > ctx->max_alloc) return fail_locked(ctx, CLSM_ERR_TOO_LARGE, "logits exceed the device's largest allocation");

  enum { BX, BT, BW, BST, BL, BG, BS, BE, BTW, NB };
  cl_mem b[NB] = {NULL};
  size_t sizes[NB] = {xbytes, tbytes, (size_t)wcount * es, sbytes, loss ? lbytes : 0,
                      grad ? xbytes : 0, grad_scale ? lbytes : 0,
                      lse ? (size_t)positions * 4 : 0, total_weight ? 4 : 0};
  const void *init[NB] = {logits, target, weight, phase == CE_PHASE_FINISH ? stats : NULL,
                          NULL, NULL, grad_scale, NULL, NULL};
  clsm_status st = CLSM_SUCCESS;
  for (int i = 0; i < NB; ++i) {
    if (i == BW && !weight) continue;
    if (i == BST && phase == CE_PHASE_NONE) continue;
    if (i == BL && !loss) continue;
    if ((i == BG && !grad) || (i == BS && !grad_scale) || (i == BE && !lse) || (i == BTW && !total_weight))
      continue;
    if ((st = host_buffer(ctx, sizes[i], init[i], &b[i])) != CLSM_SUCCESS) goto out;
  }
  clsm_tensor tx = clsm_tensor_contiguous(b[BX], 0, dtype, rank, shape);
  clsm_tensor tt = clsm_tensor_contiguous(b[BT], 0, target_dtype, trank, tshape);
  int64_t cshape[1] = {wcount};
  clsm_tensor tw = clsm_tensor_contiguous(b[BW], 0, dtype, 1, cshape);
  int64_t pshape[CLSM_MAX_RANK];
  for (int d = 0, k = 0; d < rank; ++d)
    if (d != axis) pshape[k++] = shape[d];
  clsm_tensor tl = clsm_tensor_contiguous(b[BL], 0, out_dt, reduced ? 0 : rank - 1, pshape);
  clsm_tensor tg = clsm_tensor_contiguous(b[BG], 0, out_dt, rank, shape);
  clsm_tensor ts_ = clsm_tensor_contiguous(b[BS], 0, dtype, reduced ? 0 : rank - 1, pshape);
  clsm_tensor te = clsm_tensor_contiguous(b[BE], 0, CLSM_FLOAT32, rank - 1, pshape);
  clsm_tensor ttw = clsm_tensor_contiguous(b[BTW], 0, CLSM_FLOAT32, 0, NULL);
  pshape[rank - 1] = SHARD_K; /* stats: the positions, then SHARD_K */
  clsm_tensor tst = clsm_tensor_contiguous(b[BST], 0, dtype == CLSM_FLOAT64 ? CLSM_FLOAT64
                                                                           : CLSM_FLOAT32,
                                           rank, pshape);
  /* A version 1 struct ends before `check`: copy only what the caller has. */
  clsm_ce_options o = CLSM_CE_OPTIONS_INIT;
  memcpy(&o, opt, opt->version >= 2 ? sizeof o : offsetof(clsm_ce_options, check));
  o.weight = weight ? &tw : NULL;
  o.grad = grad ? &tg : NULL;
  o.grad_scale = grad_scale ? &ts_ : NULL;
  o.lse = lse ? &te : NULL;
  o.total_weight = total_weight ? &ttw : NULL;
  o.version = CLSM_CE_OPTIONS_VERSION;
  clsm_check *check = NULL;
  o.check = &check;
  if (phase == CE_PHASE_PARTIAL) {
    st = clsm_cross_entropy_partial(ctx, &tx, &tt, shard, &tst, &o, 0, NULL, NULL);
  } else if (phase == CE_PHASE_FINISH) {
    st = clsm_cross_entropy_finish(ctx, &tx, &tt, shard, &tst, loss ? &tl : NULL, &o, 0, NULL, NULL);
  } else {
    st = clsm_cross_entropy(ctx, &tx, &tt, &tl, &o, 0, NULL, NULL);
  }
  if (st != CLSM_SUCCESS) goto out;
  /* This call's own outcome, never another call's. */
  char detail[256];
  if ((st = clsm_check_wait(check, detail, sizeof detail)) != CLSM_SUCCESS) {
    fail_locked(ctx, st, detail);
    goto out;
  }
  void *dst[NB] = {NULL, NULL, NULL, phase == CE_PHASE_PARTIAL ? stats : NULL, loss, grad, NULL,
                   lse, total_weight};
  for (int i = BST; i < NB; ++i) {
    if (!dst[i] || !sizes[i]) continue;
    cl_int err = clEnqueueReadBuffer(ctx->queue, b[i], CL_TRUE, 0, sizes[i], dst[i], 0, NULL, NULL);
    if (err != CL_SUCCESS) {
      st = cl_failed(ctx, err, "clEnqueueReadBuffer", __LINE__);
      break;
    }
  }
out:
  if (st != CLSM_SUCCESS) clFinish(ctx->queue);
  for (int i = 0; i < NB; ++i)
    if (b[i]) clReleaseMemObject(b[i]);
  return st;
}

clsm_status clsm_cross_entropy_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                    const int64_t *shape, const void *logits,
                                    clsm_dtype target_dtype, const void *target,
                                    const clsm_ce_options *opt, const void *weight, void *loss,
                                    void *grad, const void *grad_scale, float *lse,
                                    float *total_weight) {
  return ce_host(ctx, CE_PHASE_NONE, dtype, rank, shape, logits, target_dtype, target, NULL, opt,
                 weight, NULL, loss, grad, grad_scale, lse, total_weight);
}

clsm_status clsm_cross_entropy_partial_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                            const int64_t *shape, const void *logits,
                                            clsm_dtype target_dtype, const void *target,
                                            const clsm_shard *shard, const clsm_ce_options *opt,
                                            const void *weight, void *stats) {
  return ce_host(ctx, CE_PHASE_PARTIAL, dtype, rank, shape, logits, target_dtype, target, shard,
                 opt, weight, stats, NULL, NULL, NULL, NULL, NULL);
}

clsm_status clsm_cross_entropy_finish_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                           const int64_t *shape, const void *logits,
                                           clsm_dtype target_dtype, const void *target,
                                           const clsm_shard *shard, const clsm_ce_options *opt,
                                           const void *weight, const void *stats, void *loss,
                                           void *grad, const void *grad_scale, float *lse,
                                           float *total_weight) {
  return ce_host(ctx, CE_PHASE_FINISH, dtype, rank, shape, logits, target_dtype, target, shard,
                 opt, weight, (void *)stats, loss, grad, grad_scale, lse, total_weight);
}

/* A sharded softmax phase on host arrays: a, b and out of the tensor's
 * bytes, stats of the rows' (two values a row for the forward). */
static clsm_status sm_shard_host(clsm_context *ctx, clsm_shard_op op, clsm_dtype dtype, int rank,
                                 const int64_t *shape, int dim, unsigned flags, const void *a,
                                 const void *b, void *stats, void *out, int finish) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  if (rank < 0 || rank > CLSM_MAX_RANK)
    return fail_locked(ctx, CLSM_ERR_INVALID_RANK, "rank %d is outside 0..8", rank);
  if (rank > 0 && !shape) return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "shape is NULL");
  const size_t es = clsm_dtype_size(dtype);
  if (!(dtype == CLSM_FLOAT32 || dtype == CLSM_FLOAT16 || dtype == CLSM_BFLOAT16 || dtype == CLSM_FLOAT64))
    return fail_locked(ctx, CLSM_ERR_UNSUPPORTED_DTYPE, "softmax needs a floating dtype");
  const int backward = op == CLSM_SHARD_SOFTMAX_BACKWARD || op == CLSM_SHARD_LOG_SOFTMAX_BACKWARD;
  int d = dim < 0 ? dim + (rank ? rank : 1) : dim;
  int64_t n = 1, rows = 1;
  for (int k = 0; k < rank; ++k) {
    if (shape[k] < 0) return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT, "a shape entry is negative");
    if (__builtin_mul_overflow(n, shape[k], &n) || (uint64_t)n > SIZE_MAX / 8)
      return fail_locked(ctx, CLSM_ERR_TOO_LARGE, "tensor bytes overflow size_t");
    if (k != d) rows *= shape[k];
  }
  if (n && (!a || (backward && !b) || !stats || (finish && !out)))
    return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "an array (a%s, stats%s) is NULL",
                       backward ? ", b" : "", finish ? ", out" : "");
  const size_t bytes = (size_t)n * es;
  if (bytes > ctx->max_alloc)
    return fail_locked(ctx, CLSM_ERR_TOO_LARGE, "tensor is larger than the device's largest allocation");
  const clsm_dtype acc = dtype == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  const int sk = SHARD_SM_K;
  const size_t sbytes = (size_t)rows * (size_t)sk * clsm_dtype_size(acc);
  enum { BA, BB, BST, BO, NB };
  cl_mem m[NB] = {NULL};
  const size_t sizes[NB] = {bytes, backward ? bytes : 0, sbytes, finish ? bytes : 0};
  const void *init[NB] = {a, b, finish ? stats : NULL, NULL};
  clsm_status st = CLSM_SUCCESS;
  for (int i = 0; i < NB; ++i) {
    if ((i == BB && !backward) || (i == BO && !finish)) continue;
    if ((st = host_buffer(ctx, sizes[i], init[i], &m[i])) != CLSM_SUCCESS) goto out;
  }
  {
    clsm_tensor ta = clsm_tensor_contiguous(m[BA], 0, dtype, rank, shape);
    clsm_tensor tb = clsm_tensor_contiguous(m[BB], 0, dtype, rank, shape);
    clsm_tensor to = clsm_tensor_contiguous(m[BO], 0, dtype, rank, shape);
    int64_t sshape[CLSM_MAX_RANK + 1];
    int srank = 0;
    for (int k = 0; k < rank; ++k)
      if (k != d) sshape[srank++] = shape[k];
    sshape[srank++] = SHARD_SM_K;
    clsm_tensor ts = clsm_tensor_contiguous(m[BST], 0, acc, srank, sshape);
    st = finish ? clsm_softmax_finish(ctx, op, &ta, backward ? &tb : NULL, dim, flags, &ts, &to, 0,
                                      NULL, NULL)
                : clsm_softmax_partial(ctx, op, &ta, backward ? &tb : NULL, dim, &ts, 0, NULL, NULL);
  }
  if (st != CLSM_SUCCESS) goto out;
  {
    const int ob = finish ? BO : BST;
    void *dst = finish ? out : stats;
    if (sizes[ob]) {
      cl_int err = clEnqueueReadBuffer(ctx->queue, m[ob], CL_TRUE, 0, sizes[ob], dst, 0, NULL, NULL);
      if (err != CL_SUCCESS) st = cl_failed(ctx, err, "clEnqueueReadBuffer", __LINE__);
    }
  }
out:
  if (st != CLSM_SUCCESS) clFinish(ctx->queue);
  for (int i = 0; i < NB; ++i)
    if (m[i]) clReleaseMemObject(m[i]);
  return st;
}

clsm_status clsm_softmax_partial_host(clsm_context *ctx, clsm_shard_op op, clsm_dtype dtype,
                                      int rank, const int64_t *shape, int dim, const void *a,
                                      const void *b, void *stats) {
  return sm_shard_host(ctx, op, dtype, rank, shape, dim, 0, a, b, stats, NULL, 0);
}

clsm_status clsm_softmax_finish_host(clsm_context *ctx, clsm_shard_op op, clsm_dtype dtype,
                                     int rank, const int64_t *shape, int dim, unsigned flags,
                                     const void *a, const void *b, const void *stats, void *out) {
  return sm_shard_host(ctx, op, dtype, rank, shape, dim, flags, a, b, (void *)stats, out, 1);
}
