/* The blocking host-pointer layer: copy in, run the asynchronous op, copy out,
 * wait. The caller's output array is written only after everything succeeded. */
#include "internal.h"

#include <string.h>

typedef clsm_status (*row_op_fn)(clsm_context *, const clsm_tensor *, const clsm_tensor *, int,
                                 unsigned, cl_uint, const cl_event *, cl_event *);

/* Records a failed OpenCL call made without the lock held. */
static clsm_status cl_failed(clsm_context *ctx, cl_int err, const char *call, int line) {
  pthread_mutex_lock(&ctx->lock);
  clsm_status st = clsm__cl_fail(ctx, err, call, __FILE__, line);
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

static clsm_status host_row_op(clsm_context *ctx, row_op_fn op, clsm_dtype dtype, int rank,
                               const int64_t *shape, int dim, unsigned flags, const void *x,
                               void *y) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  clsm_status st = CLSM_SUCCESS;
  cl_mem buf = NULL;
  clsm_tensor t = clsm_tensor_contiguous(NULL, 0, dtype, rank, shape);
  pthread_mutex_lock(&ctx->lock);
  ctx->error[0] = '\0';
  if (t.rank < 0) {
    st = rank < 0 || rank > CLSM_MAX_RANK
             ? clsm__fail(ctx, CLSM_ERR_INVALID_RANK, "rank %d is outside 0..%d", rank, CLSM_MAX_RANK)
             : clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "shape is NULL");
    goto early;
  }
  if (clsm_dtype_size(dtype) == 0) {
    st = clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "unknown dtype %d", (int)dtype);
    goto early;
  }
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) {
    if (shape[d] < 0) {
      st = clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "shape[%d] = %lld is negative", d,
                      (long long)shape[d]);
      goto early;
    }
    if (__builtin_mul_overflow(n, shape[d], &n)) {
      st = clsm__fail(ctx, CLSM_ERR_TOO_LARGE, "element count overflows 64 bits");
      goto early;
    }
  }
  if (n > 0 && (!x || !y)) {
    st = clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "x or y is NULL");
    goto early;
  }
  size_t bytes = (size_t)n * clsm_dtype_size(dtype);
  if (bytes / clsm_dtype_size(dtype) != (size_t)n) {
    st = clsm__fail(ctx, CLSM_ERR_TOO_LARGE, "tensor bytes overflow size_t");
    goto early;
  }
  pthread_mutex_unlock(&ctx->lock);

  cl_int err = CL_SUCCESS;
  pthread_mutex_lock(&ctx->lock);
  int injected = clsm__inject_cl(ctx, &err);
  pthread_mutex_unlock(&ctx->lock);
  if (!injected) buf = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes ? bytes : 1, NULL, &err);
  if (!buf) {
    st = cl_failed(ctx, err, "clCreateBuffer", __LINE__);
    goto out;
  }
  if (bytes) {
    err = clEnqueueWriteBuffer(ctx->queue, buf, CL_TRUE, 0, bytes, x, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
      st = cl_failed(ctx, err, "clEnqueueWriteBuffer", __LINE__);
      goto out;
    }
  }
  t.mem = buf;
  if ((st = op(ctx, &t, &t, dim, flags, 0, NULL, NULL)) != CLSM_SUCCESS) goto out;
  if (bytes) {
    err = clEnqueueReadBuffer(ctx->queue, buf, CL_TRUE, 0, bytes, y, 0, NULL, NULL);
    if (err != CL_SUCCESS) st = cl_failed(ctx, err, "clEnqueueReadBuffer", __LINE__);
  }
  goto out;
early:
  pthread_mutex_unlock(&ctx->lock);
out:
  if (buf) clReleaseMemObject(buf);
  return st;
}

clsm_status clsm_softmax_host(clsm_context *ctx, clsm_dtype dtype, int rank, const int64_t *shape,
                              int dim, unsigned flags, const void *x, void *y) {
  return host_row_op(ctx, clsm_softmax, dtype, rank, shape, dim, flags, x, y);
}

clsm_status clsm_log_softmax_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                  const int64_t *shape, int dim, unsigned flags, const void *x,
                                  void *y) {
  return host_row_op(ctx, clsm_log_softmax, dtype, rank, shape, dim, flags, x, y);
}
