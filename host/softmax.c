/* softmax and log_softmax forward: validate -> plan -> enqueue. */
#include "internal.h"

#define F_LOG 1u
#define F_SAFE 2u

/* Enqueues one planned row kernel over views xv -> yv. Lock held. */
static clsm_status enqueue_rows(clsm_context *ctx, int program, const clsm_tensor *x,
                                const clsm_view *xv, const clsm_tensor *y, const clsm_view *yv,
                                cl_uint kflags, cl_uint num_wait, const cl_event *wait,
                                cl_event *event) {
  clsm_status st;
  clsm_plan plan;
  cl_kernel k = NULL;
  if ((st = clsm__plan_rows(ctx, xv, yv, &plan)) != CLSM_SUCCESS) return st;
  if ((st = clsm__kernel(ctx, program, plan.kernel, &k)) != CLSM_SUCCESS) return st;

  if (plan.kernel == K_ROWS_WG) {
    size_t kmax = 0;
    CLSM_CL(ctx, clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax,
                                          &kmax, NULL));
    while (plan.local > 1 && plan.local > kmax) plan.local /= 2;
    plan.global = (size_t)(xv->outer * xv->inner) * plan.local;
    plan.local_floats = plan.local;
  }

  cl_ulong xoff = xv->base, yoff = yv->base;
  cl_long args[] = {xv->so, xv->sc, xv->si};
  cl_long yargs[] = {yv->so, yv->sc, yv->si};
  cl_long dims[] = {xv->outer, xv->C, xv->inner};
  CLSM_ARG(ctx, k, 0, x->mem);
  CLSM_ARG(ctx, k, 1, xoff);
  for (int i = 0; i < 3; ++i) CLSM_ARG(ctx, k, 2 + i, args[i]);
  CLSM_ARG(ctx, k, 5, y->mem);
  CLSM_ARG(ctx, k, 6, yoff);
  for (int i = 0; i < 3; ++i) CLSM_ARG(ctx, k, 7 + i, yargs[i]);
  for (int i = 0; i < 3; ++i) CLSM_ARG(ctx, k, 10 + i, dims[i]);
  CLSM_ARG(ctx, k, 13, kflags);
  if (plan.kernel == K_ROWS_WG) {
    CLSM_CL(ctx, clSetKernelArg(k, 14, plan.local_floats * sizeof(float), NULL));
    CLSM_CL(ctx, clSetKernelArg(k, 15, plan.local_floats * sizeof(float), NULL));
  }
  CLSM_CL(ctx, clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &plan.global,
                                      plan.local ? &plan.local : NULL, num_wait, wait, event));
fail:
  return st;
}

static clsm_status softmax_common(clsm_context *ctx, const clsm_tensor *x, const clsm_tensor *y,
                                  int dim, unsigned flags, int log, cl_uint num_wait,
                                  const cl_event *wait, cl_event *event) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  if (event) *event = NULL;
  clsm_status st;
  int d = 0;
  clsm_view xv, yv;
  const unsigned allowed = 1u << CLSM_FLOAT32;
  pthread_mutex_lock(&ctx->lock);
  ctx->error[0] = '\0';
  if ((st = clsm__check_tensor(ctx, x, allowed, "x")) != CLSM_SUCCESS) goto done;
  if ((st = clsm__check_tensor(ctx, y, allowed, "y")) != CLSM_SUCCESS) goto done;
  if ((st = clsm__check_same_shape(ctx, x, "x", y, "y")) != CLSM_SUCCESS) goto done;
  if ((st = clsm__check_dim(ctx, x->rank, dim, &d)) != CLSM_SUCCESS) goto done;
  if (flags & ~CLSM_SAFE) {
    st = clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "unknown flags 0x%x", flags & ~CLSM_SAFE);
    goto done;
  }
  if ((st = clsm__check_wait(ctx, num_wait, wait)) != CLSM_SUCCESS) goto done;
  if ((st = clsm__check_output(ctx, y, "y", x, "x")) != CLSM_SUCCESS) goto done;
  if ((st = clsm__make_view(ctx, x, d, "x", &xv)) != CLSM_SUCCESS) goto done;
  if ((st = clsm__make_view(ctx, y, d, "y", &yv)) != CLSM_SUCCESS) goto done;

  if (clsm__numel(x) == 0) {
    st = clsm__marker(ctx, num_wait, wait, event);
    goto done;
  }
  cl_uint kflags = (log ? F_LOG : 0) | ((flags & CLSM_SAFE) ? F_SAFE : 0);
  st = enqueue_rows(ctx, 0, x, &xv, y, &yv, kflags, num_wait, wait, event);
done:
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

clsm_status clsm_softmax(clsm_context *ctx, const clsm_tensor *x, const clsm_tensor *y, int dim,
                         unsigned flags, cl_uint num_wait, const cl_event *wait,
                         cl_event *event) {
  return softmax_common(ctx, x, y, dim, flags, 0, num_wait, wait, event);
}

clsm_status clsm_log_softmax(clsm_context *ctx, const clsm_tensor *x, const clsm_tensor *y,
                             int dim, unsigned flags, cl_uint num_wait, const cl_event *wait,
                             cl_event *event) {
  return softmax_common(ctx, x, y, dim, flags, 1, num_wait, wait, event);
}
