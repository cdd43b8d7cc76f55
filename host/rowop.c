/* Row operations (softmax, log_softmax and their backward): one shared path
 * from tensor checks through views and plan to the enqueued kernel. */
#include "internal.h"

#include <string.h>


static const unsigned float_types =
    (1u << CLSM_FLOAT32) | (1u << CLSM_FLOAT16) | (1u << CLSM_BFLOAT16) | (1u << CLSM_FLOAT64);

static int is_16bit(clsm_dtype d) { return d == CLSM_FLOAT16 || d == CLSM_BFLOAT16; }

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

static clsm_status set_long8(clsm_context *ctx, cl_kernel k, cl_uint idx, const int64_t *v, int n) {
  clsm_status st = CLSM_SUCCESS;
  cl_long8 l8;
  memset(&l8, 0, sizeof l8);
  for (int i = 0; i < n; ++i) l8.s[i] = v[i];
  for (int i = n; i < 8; ++i) l8.s[i] = 1;
  CLSM_CL(ctx, clSetKernelArg(k, idx, sizeof l8, &l8));
fail:
  return st;
}

/* Few long contiguous rows on the CPU family: split each row over several
 * work-items (two kernels: partial (max, sum) pairs, or for the backward ops
 * partial sums and maxima of y, combined in the second), so that one row
 * uses every core (clsm__split_len). Returns the chunk length, or 0. */
static int64_t split_chunk(const clsm_context *ctx, const clsm_rowop *op) {
  if (op->generic || op->v[0].inner != 1) return 0;
  for (int i = 0; i < op->n; ++i)
    if (op->v[i].sc != 1) return 0;
  return clsm__split_len(ctx, op->rows, op->C);
}

/* Tensor i's buffer, offset and row stride as kernel arguments. */
#define SPLIT_VIEW_ARGS(kern, i)                                  \
  do {                                                            \
    const cl_ulong off_ = op->v[i].base;                          \
    const cl_long so_ = op->v[i].so;                              \
    CLSM_ARG(ctx, kern, a++, op->t[i]->mem);                      \
    CLSM_ARG(ctx, kern, a++, off_);                               \
    CLSM_ARG(ctx, kern, a++, so_);                                \
  } while (0)

static clsm_status enqueue_split(clsm_context *ctx, clsm_rowop *op, int program, int64_t chunk,
                                 cl_uint num_wait, const cl_event *wait, cl_event *event) {
  clsm_status st;
  cl_kernel kp = NULL, kw = NULL;
  const size_t acc = program == P_F64 ? sizeof(double) : sizeof(float);
  const cl_long rows = op->rows, C = op->C, ch = chunk, chunks = (C + chunk - 1) / chunk;
  const int ins = op->n - 1; /* x; or y and dy */
  if ((st = clsm__scratch(ctx, (size_t)(rows * chunks) * 2 * acc)) != CLSM_SUCCESS) return st;
  const clsm_kernel_id kpid = op->backward ? K_BSPLIT_PARTIALS : K_SPLIT_PARTIALS;
  if ((st = clsm__kernel(ctx, program, kpid, &kp)) != CLSM_SUCCESS) return st;
  if ((st = clsm__kernel(ctx, program, (clsm_kernel_id)(kpid + 1), &kw)) != CLSM_SUCCESS) return st;
  /* Softmax into float32 / float64: the first kernel keeps exp(x - chunk
   * max) in y, the second rescales it (one exp per element instead of two;
   * CLSM_ROW_BLOCKS=0 turns it off, as it does the blocked rows). */
  cl_uint flags = op->flags;
  const clsm_dtype out = op->t[op->n - 1]->dtype;
  if (!op->backward && !(flags & F_LOG) && !is_16bit(out) && ctx->row_blocks) flags |= F_BLOCKS;
  cl_uint a = 0;
  for (int i = 0; i < ins; ++i) SPLIT_VIEW_ARGS(kp, i);
  if (!op->backward) SPLIT_VIEW_ARGS(kp, op->n - 1);
  CLSM_ARG(ctx, kp, a++, ctx->scratch);
  CLSM_ARG(ctx, kp, a++, rows);
  CLSM_ARG(ctx, kp, a++, C);
  CLSM_ARG(ctx, kp, a++, ch);
  CLSM_ARG(ctx, kp, a++, chunks);
  CLSM_ARG(ctx, kp, a++, flags);
  a = 0;
  for (int i = 0; i < op->n; ++i) SPLIT_VIEW_ARGS(kw, i);
  CLSM_ARG(ctx, kw, a++, ctx->scratch);
  CLSM_ARG(ctx, kw, a++, rows);
  CLSM_ARG(ctx, kw, a++, C);
  CLSM_ARG(ctx, kw, a++, ch);
  CLSM_ARG(ctx, kw, a++, chunks);
  CLSM_ARG(ctx, kw, a++, flags);
  size_t items = (size_t)(rows * chunks), local = 1;
  CLSM_CL(ctx, clEnqueueNDRangeKernel(ctx->queue, kp, 1, NULL, &items, &local, num_wait, wait, NULL));
  CLSM_CL(ctx, clEnqueueNDRangeKernel(ctx->queue, kw, 1, NULL, &items, &local, 0, NULL, event));
fail:
  return st;
}
#undef SPLIT_VIEW_ARGS

static clsm_status enqueue(clsm_context *ctx, clsm_rowop *op, int program, cl_uint num_wait,
                           const cl_event *wait, cl_event *event) {
  const int64_t chunk = split_chunk(ctx, op);
  if (chunk > 0) return enqueue_split(ctx, op, program, chunk, num_wait, wait, event);
  clsm_status st = CLSM_SUCCESS;
  clsm_plan plan;
  cl_kernel k = NULL;
  clsm__plan_rows(ctx, op->v, op->n, op->generic, op->rows, &plan);
  clsm_kernel_id id = (clsm_kernel_id)(plan.kernel + (op->backward ? K_BACKWARD : 0));
  if ((st = clsm__kernel(ctx, program, id, &k)) != CLSM_SUCCESS) return st;

  const clsm_tensor *out = op->t[op->n - 1];
  const size_t acc = program == P_F64 ? sizeof(double) : sizeof(float);
  cl_uint flags = op->flags;
  size_t scratch = acc; /* K_ROWS_CPU's local scratch or K_INNER_CPU's tile: unused unless
                           sized below */
  if (!op->backward) {
    /* Softmax keeps exp(x - m) in y (or, for 16-bit y, in local scratch) and
     * rescales it while the row is in cache; log-softmax keeps x - m
     * (inner_cpu) or x (rows_cpu) in y while it reads x for the sum.
     * Otherwise (F_RECOMPUTE) softmax computes exp twice and log-softmax
     * reads x again. Inner blocks keep up to 1 MiB: their rows are strided,
     * so a second pass over x costs more than one over y there. */
    const size_t es = clsm_dtype_size(out->dtype);
    const int nt_out = (uint64_t)clsm__numel(out) * es >= ctx->nt_bytes;
    const size_t ib = plan.kernel == K_INNER_CPU ? 16u * (size_t)plan.nv : 1u;
    const uint64_t limit = plan.kernel == K_INNER_CPU ? KEEP_INNER_BYTES : KEEP_BYTES;
    int keep = plan.kernel != K_ROWS_WG && (uint64_t)op->C * ib * es <= limit;
    if (keep && is_16bit(out->dtype) && !(flags & F_LOG)) {
      size_t bytes = plan.kernel == K_ROWS_CPU ? clsm__row_scratch(ctx, &plan.local, op->C, acc) : 0;
      keep = bytes > 0;
      if (keep) {
        scratch = bytes;
        plan.global = (size_t)op->rows + (plan.local - (size_t)op->rows % plan.local) % plan.local;
      }
    }
    /* Rows a page or more apart share cache sets: a block goes through a
     * tile in local memory, of at most TILE_VECTORS vectors a row (2 KB
     * runs of float32), narrowed until it fits. */
    const clsm_view *v = &op->v[0];
    if (plan.kernel == K_INNER_CPU &&
        (ctx->inner_tile == 1 ||
         (ctx->inner_tile == -1 && (uint64_t)v->sc * clsm_dtype_size(op->t[0]->dtype) >= 4096))) {
      /* Bytes per vector of a tile row: C rows and a reference per chunk. */
      const uint64_t per_nv = (uint64_t)(op->C + (op->C + INNER_CHUNK - 1) / INNER_CHUNK) * 16 * acc;
      const uint64_t room = ctx->local_mem_size / 2;
      int nv = plan.nv < TILE_VECTORS ? plan.nv : TILE_VECTORS;
      while (nv > 1 && per_nv * nv > room) nv /= 2;
      if (per_nv * nv <= room) {
        keep = 0;
        flags |= F_TILE | (nt_out ? F_NT : 0);
        scratch = (size_t)(per_nv * nv);
        plan.nv = nv;
        plan.local = 1;
        plan.global = (size_t)v->outer * (((size_t)v->inner + 16 * nv - 1) / (16 * nv));
      }
    }
    if (!keep) flags |= F_RECOMPUTE;
    /* Softmax rows past the keep limit with a float32 / float64 output: in
     * blocks that stay in cache, one exp per element (CLSM_ROW_BLOCKS=0
     * turns it off). */
    if (!keep && !(flags & F_LOG) && plan.kernel == K_ROWS_CPU && !is_16bit(out->dtype) &&
        ctx->row_blocks)
      flags |= F_BLOCKS;
  }

  if (plan.kernel == K_INNER_CPU) flags |= (cl_uint)plan.nv << F_NV_SHIFT;
  if (plan.kernel == K_ROWS_WG) {
    size_t kmax = 0;
    CLSM_CL(ctx, clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax,
                                          &kmax, NULL));
    /* Rows of `lanes` lanes, local / lanes rows a group: enough lanes for
     * ROW_VPT values each (forward) or to keep y and dy in registers
     * (BWD_VPT values each, backward; longer rows read them twice). */
    plan.local = ctx->wg_size;
    while (plan.local > 1 && plan.local > kmax) plan.local /= 2;
    const size_t lanes = clsm__row_lanes(ctx, op->C, plan.local, op->backward ? BWD_VPT : ROW_VPT);
    cl_uint lg = 0;
    while (((size_t)1 << lg) < lanes) ++lg;
    flags |= lg << F_LANES_SHIFT;
    const size_t per = plan.local / lanes;
    plan.global = (((size_t)op->rows + per - 1) / per) * plan.local;
    plan.local_elems = plan.local;
  }

  cl_uint a = 0;
  if (op->generic) {
    for (int i = 0; i < op->n; ++i) {
      cl_ulong off = op->t[i]->offset;
      cl_long sc = op->gsc[i];
      CLSM_ARG(ctx, k, a++, op->t[i]->mem);
      CLSM_ARG(ctx, k, a++, off);
      CLSM_ARG(ctx, k, a++, sc);
    }
    cl_long rows = op->rows, C = op->C;
    cl_int nd = op->nd;
    CLSM_ARG(ctx, k, a++, rows);
    CLSM_ARG(ctx, k, a++, C);
    CLSM_ARG(ctx, k, a++, nd);
    if ((st = set_long8(ctx, k, a++, op->gshape, op->nd)) != CLSM_SUCCESS) return st;
    for (int i = 0; i < op->n; ++i)
      if ((st = set_long8(ctx, k, a++, op->gstride[i], op->nd)) != CLSM_SUCCESS) return st;
    CLSM_ARG(ctx, k, a++, flags);
  } else {
    for (int i = 0; i < op->n; ++i) {
      cl_ulong off = op->v[i].base;
      cl_long s[3] = {op->v[i].so, op->v[i].sc, op->v[i].si};
      CLSM_ARG(ctx, k, a++, op->t[i]->mem);
      CLSM_ARG(ctx, k, a++, off);
      for (int j = 0; j < 3; ++j) CLSM_ARG(ctx, k, a++, s[j]);
    }
    cl_long dims[3] = {op->v[0].outer, op->v[0].C, op->v[0].inner};
    for (int j = 0; j < 3; ++j) CLSM_ARG(ctx, k, a++, dims[j]);
    CLSM_ARG(ctx, k, a++, flags);
    if (plan.kernel == K_ROWS_WG) {
      CLSM_CL(ctx, clSetKernelArg(k, a++, plan.local_elems * acc, NULL));
      CLSM_CL(ctx, clSetKernelArg(k, a++, plan.local_elems * acc, NULL));
    }
    if (id == K_ROWS_CPU) CLSM_CL(ctx, clSetKernelArg(k, a++, scratch, NULL));
    if (id == K_INNER_CPU)
      CLSM_CL(ctx, clSetKernelArg(k, a++, scratch > 16 * acc ? scratch : 16 * acc, NULL));
  }
  CLSM_CL(ctx, clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &plan.global,
                                      plan.local ? &plan.local : NULL, num_wait, wait, event));
fail:
  return st;
}

clsm_status clsm__row_op(clsm_context *ctx, clsm_rowop *op, int dim, cl_uint num_wait,
                         const cl_event *wait, cl_event *event) {
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
  if (ctx->forced_kernel == K_GENERIC) op->generic = 1; /* CLSM_KERNEL=generic: any view */
  if (op->generic) generic_dims(op, d);
  op->C = op->t[0]->rank ? op->t[0]->shape[d] : 1;
  int64_t numel = clsm__numel(op->t[0]);
  if (numel == 0) return clsm__marker(ctx, num_wait, wait, event);
  op->rows = numel / op->C;
  return enqueue(ctx, op, program, num_wait, wait, event);
}
