/* softmax, log_softmax and their backward: the public entry points. */
#include "internal.h"

static clsm_status run(clsm_context *ctx, clsm_rowop *op, int dim, unsigned flags, int log,
                       cl_uint num_wait, const cl_event *wait, cl_event *event) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  if (event) *event = NULL;
  clsm_status st;
  pthread_mutex_lock(&ctx->lock);
  ctx->error[0] = '\0';
  if (flags & ~CLSM_SAFE)
    st = clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "unknown flags 0x%x", flags & ~CLSM_SAFE);
  else {
    op->flags = (log ? F_LOG : 0) | ((flags & CLSM_SAFE) ? F_SAFE : 0);
    st = clsm__row_op(ctx, op, dim, num_wait, wait, event);
  }
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

static clsm_status forward(clsm_context *ctx, const clsm_tensor *x, const clsm_tensor *y, int dim,
                           unsigned flags, int log, cl_uint num_wait, const cl_event *wait,
                           cl_event *event) {
  clsm_rowop op = {.n = 2, .backward = 0, .t = {x, y}};
  return run(ctx, &op, dim, flags, log, num_wait, wait, event);
}

static clsm_status backward(clsm_context *ctx, const clsm_tensor *y, const clsm_tensor *dy,
                            const clsm_tensor *dx, int dim, unsigned flags, int log,
                            cl_uint num_wait, const cl_event *wait, cl_event *event) {
  clsm_rowop op = {.n = 3, .backward = 1, .t = {y, dy, dx}};
  return run(ctx, &op, dim, flags, log, num_wait, wait, event);
}

clsm_status clsm_softmax(clsm_context *ctx, const clsm_tensor *x, const clsm_tensor *y, int dim,
                         unsigned flags, cl_uint num_wait, const cl_event *wait,
                         cl_event *event) {
  return forward(ctx, x, y, dim, flags, 0, num_wait, wait, event);
}

clsm_status clsm_log_softmax(clsm_context *ctx, const clsm_tensor *x, const clsm_tensor *y,
                             int dim, unsigned flags, cl_uint num_wait, const cl_event *wait,
                             cl_event *event) {
  return forward(ctx, x, y, dim, flags, 1, num_wait, wait, event);
}

clsm_status clsm_softmax_backward(clsm_context *ctx, const clsm_tensor *y, const clsm_tensor *dy,
                                  const clsm_tensor *dx, int dim, unsigned flags,
                                  cl_uint num_wait, const cl_event *wait, cl_event *event) {
  return backward(ctx, y, dy, dx, dim, flags, 0, num_wait, wait, event);
}

clsm_status clsm_log_softmax_backward(clsm_context *ctx, const clsm_tensor *y,
                                      const clsm_tensor *dy, const clsm_tensor *dx, int dim,
                                      unsigned flags, cl_uint num_wait, const cl_event *wait,
                                      cl_event *event) {
  return backward(ctx, y, dy, dx, dim, flags, 1, num_wait, wait, event);
}
