/* Row operations (softmax, log_softmax and their backward): one shared path
 * from tensor checks and views to the planner (plan.c) and the plan's run. */
#include "internal.h"

#include <string.h>


static const unsigned float_types =
    (1u << CLSM_FLOAT32) | (1u << CLSM_FLOAT16) | (1u << CLSM_BFLOAT16) | (1u << CLSM_FLOAT64);

/* Non-axis dims of size > 1, innermost first, for the generic kernel. */
static void generic_dims(clsm_rowop *op, int dim) {
  const clsm_tensor *t0 = op->t[0];
  op->nd = 0;
  for (int d = t0->rank - 1; d >= 0; --d) {
    if (d == dim || t0->shape[d] == 1) continue;
    op->gshape[op->nd] = t0->shape[d];
    for (int i = 0; i < op->n; ++i) op->gstride[i][op->nd] = op->t[i]->strides[d];
    op->nd++;
  }
  for (int i = 0; i < op->n; ++i) op->gsc[i] = t0->rank ? op->t[i]->strides[dim] : 0;
}

clsm_status clsm__row_check(clsm_context *ctx, clsm_rowop *op, int dim, cl_uint num_wait,
                            const cl_event *wait, int *dim_out, int *program_out) {
  static const char *const fwd_names[] = {"x", "y"}, *const bwd_names[] = {"y", "dy", "dx"};
  const char *const *names = op->backward ? bwd_names : fwd_names;
  const int last = op->n - 1;
  clsm_status st;
  int d = 0;
  for (int i = 0; i < op->n; ++i)
    if ((st = clsm__check_desc(ctx, op->t[i], float_types, names[i])) != CLSM_SUCCESS) return st;
  for (int i = 1; i < op->n; ++i) {
    const clsm_tensor *a = op->t[0], *b = op->t[i];
    int same = a->rank == b->rank;
    for (int k = 0; same && k < a->rank; ++k) same = a->shape[k] == b->shape[k];
    if (!same) return clsm__fail_shapes(ctx, names[0], a, names[i], b);
  }
  for (int i = 1; i < last; ++i)
    if (op->t[i]->dtype != op->t[0]->dtype)
      return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH, "%s is %s but %s is %s", names[0],
                        clsm_dtype_name(op->t[0]->dtype), names[i],
                        clsm_dtype_name(op->t[i]->dtype));
  clsm_dtype in = op->t[0]->dtype, out = op->t[last]->dtype;
  int program = clsm__program_for(in, out);
  if (program < 0)
    return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_DTYPE,
                      "%s is %s: the output may be %s, or float32 for 16-bit inputs",
                      names[last], clsm_dtype_name(out), clsm_dtype_name(in));
  if ((st = clsm__check_fp64(ctx, program)) != CLSM_SUCCESS) return st;
  if ((st = clsm__check_dim(ctx, op->t[0]->rank, dim, &d)) != CLSM_SUCCESS) return st;
  for (int i = 0; i < op->n; ++i)
    if ((st = clsm__check_mem(ctx, op->t[i], names[i])) != CLSM_SUCCESS) return st;
  if ((st = clsm__check_wait(ctx, num_wait, wait)) != CLSM_SUCCESS) return st;
  for (int i = 0; i < last; ++i)
    if ((st = clsm__check_output(ctx, op->t[last], names[last], op->t[i], names[i])) != CLSM_SUCCESS)
      return st;

  op->generic = 0;
  for (int i = 0; i < op->n; ++i)
    if (!clsm__make_view(op->t[i], d, &op->v[i])) op->generic = 1;
  generic_dims(op, d); /* the planner may pick the generic kernel for any view */
  op->C = op->t[0]->rank ? op->t[0]->shape[d] : 1;
  const int64_t numel = clsm__numel(op->t[0]);
  op->rows = op->C ? numel / op->C : 0;
  *dim_out = d;
  *program_out = program;
  return CLSM_SUCCESS;
}

clsm_status clsm__row_op(clsm_context *ctx, clsm_rowop *op, int dim, cl_uint num_wait,
                         const cl_event *wait, cl_event *event) {
  int d, program;
  clsm_status st = clsm__row_check(ctx, op, dim, num_wait, wait, &d, &program);
  if (st != CLSM_SUCCESS) return st;
  if (op->rows > 0 && (st = clsm__program(ctx, program, G_ROW)) != CLSM_SUCCESS) return st;
  clsm_plan plan;
  clsm__plan_rowop(&ctx->caps, ctx->kernel_wg[program], op, program, &plan);
  /* A register-held rows variant is built when first planned; if its
   * kernel's CL_KERNEL_WORK_GROUP_SIZE is below its group, the planner
   * (which now knows it) takes another variant or the online kernel. */
  for (int tries = 0; tries < CLSM_REG_VARIANTS; ++tries) {
    int ready;
    if ((st = clsm__reg_ready(ctx, &plan, &ready)) != CLSM_SUCCESS) return st;
    if (ready) break;
    clsm__plan_rowop(&ctx->caps, ctx->kernel_wg[program], op, program, &plan);
  }
  return clsm__run_plan(ctx, &plan, NULL, num_wait, wait, event);
}
