/* Executes a plan: grows the scratch buffer, binds every stage's arguments
 * and enqueues the stages in order (the first waits on the caller's list,
 * the last gives the caller's event), then tells the plan hook. It chooses
 * nothing. */
#include "internal.h"

#include <string.h>

clsm_status clsm__run_plan(clsm_context *ctx, const clsm_plan *plan, cl_mem flag, cl_uint num_wait,
                           const cl_event *wait, cl_event *event) {
  clsm_status st = CLSM_SUCCESS;
  if (plan->empty || plan->nstages == 0) {
    if ((st = clsm__marker(ctx, num_wait, wait, event)) == CLSM_SUCCESS) clsm__plan_notify(ctx, plan);
    return st;
  }
  if (plan->overflow)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                      "internal: the plan for %s does not fit a clsm_plan", plan->op);
  if (plan->scratch_bytes && (st = clsm__scratch(ctx, plan->scratch_bytes)) != CLSM_SUCCESS)
    return st;
  for (int i = 0; i < plan->nstages; ++i) {
    const clsm_stage *s = &plan->stage[i];
    cl_kernel k = NULL;
    if ((st = clsm__kernel(ctx, plan->program, s->kernel, &k)) != CLSM_SUCCESS) return st;
    for (int a = 0; a < s->nargs; ++a) {
      const clsm_arg *g = &s->args[a];
      cl_int err;
      switch (g->kind) {
      case ARG_MEM: err = clSetKernelArg(k, (cl_uint)a, sizeof(cl_mem), &g->mem); break;
      case ARG_SCRATCH: err = clSetKernelArg(k, (cl_uint)a, sizeof(cl_mem), &ctx->scratch); break;
      case ARG_FLAG: err = clSetKernelArg(k, (cl_uint)a, sizeof(cl_mem), flag ? &flag : &ctx->scratch); break;
      case ARG_LOCAL: err = clSetKernelArg(k, (cl_uint)a, g->size, NULL); break;
      default: err = clSetKernelArg(k, (cl_uint)a, g->size, plan->data + g->off); break;
      }
      if (err != CL_SUCCESS) {
        ctx->cl_error = err;
        return clsm__fail(ctx, CLSM_ERR_OPENCL, "clSetKernelArg(%s, %d \"%s\") failed with %s (%d)",
                          clsm__kernel_name(s->kernel), a, g->name, clsm_cl_error_name(err), (int)err);
      }
    }
    const int first = i == 0, last = i == plan->nstages - 1;
    CLSM_CL(ctx, clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &s->global, s->local ? &s->local : NULL,
                                        first ? num_wait : 0, first ? wait : NULL,
                                        last ? event : NULL));
  }
  clsm__plan_notify(ctx, plan);
fail:
  return st;
}

void clsm__plan_notify(clsm_context *ctx, const clsm_plan *plan) {
  if (!ctx->plan_hook) return;
  char text[1024];
  clsm__plan_text(plan, text, sizeof text);
  clsm_plan_info info;
  memset(&info, 0, sizeof info);
  info.op = plan->op;
  info.dtype_in = clsm_dtype_name(clsm__program_dtypes[plan->program][0]);
  info.dtype_out = clsm_dtype_name(clsm__program_dtypes[plan->program][1]);
  info.stages = plan->nstages < CLSM_PLAN_MAX_STAGES ? plan->nstages : CLSM_PLAN_MAX_STAGES;
  for (int i = 0; i < info.stages; ++i) {
    const clsm_stage *s = &plan->stage[i];
    info.kernel[i] = clsm__kernel_name(s->kernel);
    info.global[i] = s->global;
    info.local[i] = s->local;
    info.flags[i] = s->flags;
    for (int a = 0; a < s->nargs; ++a)
      if (s->args[a].kind == ARG_LOCAL) info.local_bytes[i] += s->args[a].size;
  }
  info.scratch_bytes = plan->scratch_bytes;
  info.text = text;
  ctx->plan_hook(ctx->plan_user, &info);
}

clsm_status clsm_context_set_plan_hook(clsm_context *ctx, clsm_plan_hook hook, void *user) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  pthread_mutex_lock(&ctx->lock);
  ctx->plan_hook = hook;
  ctx->plan_user = hook ? user : NULL;
  pthread_mutex_unlock(&ctx->lock);
  return CLSM_SUCCESS;
}
