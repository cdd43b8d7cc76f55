/* The blocking host-pointer layer: copy in, run the asynchronous op, copy out,
 * wait. The caller's output array is written only after the op succeeded. */
#include "internal.h"

#include <string.h>

/* Records a failed OpenCL call made without the lock held. */
static clsm_status cl_failed(clsm_context *ctx, cl_int err, const char *call, int line) {
  pthread_mutex_lock(&ctx->lock);
  clsm_status st = clsm__cl_fail(ctx, err, call, __FILE__, line);
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

static clsm_status fail_locked(clsm_context *ctx, clsm_status status, const char *msg) {
  pthread_mutex_lock(&ctx->lock);
  clsm__fail(ctx, status, "%s", msg);
  pthread_mutex_unlock(&ctx->lock);
  return status;
}

typedef enum { OP_SOFTMAX, OP_LOG_SOFTMAX, OP_SOFTMAX_BWD, OP_LOG_SOFTMAX_BWD } host_kind;

/* Runs one op on device copies of `nin` input arrays; the output goes to
 * `out`. Inputs are copied into their own buffers, so out may alias any. */
static clsm_status host_op(clsm_context *ctx, host_kind kind, clsm_dtype dtype, int rank,
                           const int64_t *shape, int dim, unsigned flags, const void *const *in,
                           int nin, void *out) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  clsm_status st = CLSM_SUCCESS;
  cl_mem bufs[3] = {NULL, NULL, NULL};
  if (rank < 0 || rank > CLSM_MAX_RANK) return fail_locked(ctx, CLSM_ERR_INVALID_RANK, "rank is outside 0..8");
  if (rank > 0 && !shape) return fail_locked(ctx, CLSM_ERR_NULL_ARGUMENT, "shape is NULL");
  size_t es = clsm_dtype_size(dtype);
  if (es == 0) return fail_locked(ctx, CLSM_ERR_INVALID_ARGUMENT, "unknown dtype");
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

  clsm_tensor t[3];
  for (int i = 0; i <= nin; ++i) {
    cl_int err = CL_SUCCESS;
    pthread_mutex_lock(&ctx->lock);
    int injected = clsm__inject_cl(ctx, &err);
    pthread_mutex_unlock(&ctx->lock);
    if (!injected)
      bufs[i] = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes ? bytes : 1, NULL, &err);
    if (!bufs[i]) {
      st = cl_failed(ctx, err, "clCreateBuffer", __LINE__);
      goto out;
    }
    if (i < nin && bytes) {
      err = clEnqueueWriteBuffer(ctx->queue, bufs[i], CL_FALSE, 0, bytes, in[i], 0, NULL, NULL);
      if (err != CL_SUCCESS) {
        st = cl_failed(ctx, err, "clEnqueueWriteBuffer", __LINE__);
        goto out;
      }
    }
    t[i] = clsm_tensor_contiguous(bufs[i], 0, dtype, rank, shape);
  }
  switch (kind) {
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
out:
  if (st != CLSM_SUCCESS) clFinish(ctx->queue); /* no pending write may use a buffer freed below */
  for (int i = 0; i < 3; ++i)
    if (bufs[i]) clReleaseMemObject(bufs[i]);
  return st;
}

clsm_status clsm_softmax_host(clsm_context *ctx, clsm_dtype dtype, int rank, const int64_t *shape,
                              int dim, unsigned flags, const void *x, void *y) {
  const void *in[1] = {x};
  return host_op(ctx, OP_SOFTMAX, dtype, rank, shape, dim, flags, in, 1, y);
}

clsm_status clsm_log_softmax_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                  const int64_t *shape, int dim, unsigned flags, const void *x,
                                  void *y) {
  const void *in[1] = {x};
  return host_op(ctx, OP_LOG_SOFTMAX, dtype, rank, shape, dim, flags, in, 1, y);
}

clsm_status clsm_softmax_backward_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                       const int64_t *shape, int dim, unsigned flags,
                                       const void *y, const void *dy, void *dx) {
  const void *in[2] = {y, dy};
  return host_op(ctx, OP_SOFTMAX_BWD, dtype, rank, shape, dim, flags, in, 2, dx);
}

clsm_status clsm_log_softmax_backward_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                           const int64_t *shape, int dim, unsigned flags,
                                           const void *y, const void *dy, void *dx) {
  const void *in[2] = {y, dy};
  return host_op(ctx, OP_LOG_SOFTMAX_BWD, dtype, rank, shape, dim, flags, in, 2, dx);
}
