/* Softmax along a sharded axis (partial -> merge -> finish) and the host
 * merge of a shard's statistics. Cross-entropy's partial and finish are in
 * cross_entropy.c, beside the unsharded call whose checks they share. */
#include "internal.h"

#include <math.h>
#include <string.h>

static const unsigned float_types =
    (1u << CLSM_FLOAT32) | (1u << CLSM_FLOAT16) | (1u << CLSM_BFLOAT16) | (1u << CLSM_FLOAT64);

static int same_shape(const clsm_tensor *a, const clsm_tensor *b) {
  if (a->rank != b->rank) return 0;
  for (int d = 0; d < a->rank; ++d)
    if (a->shape[d] != b->shape[d]) return 0;
  return 1;
}

static clsm_status check_sm(clsm_context *ctx, clsm_sm_shard_call *c, clsm_shard_op op,
                            const clsm_tensor *a, const clsm_tensor *b, int dim, unsigned flags,
                            const clsm_tensor *stats, const clsm_tensor *out, int finish) {
  clsm_status st;
  memset(c, 0, sizeof *c);
  c->a = a, c->b = b, c->out = out, c->stats = stats, c->finish = finish;
  if ((unsigned)op > CLSM_SHARD_LOG_SOFTMAX_BACKWARD)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "op: unknown clsm_shard_op %d", (int)op);
  if (flags & ~CLSM_SAFE)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "unknown flags 0x%x", flags & ~CLSM_SAFE);
  const int backward = op >= CLSM_SHARD_SOFTMAX_BACKWARD;
  const char *an = backward ? "y" : "x";
  c->flags = (op == CLSM_SHARD_LOG_SOFTMAX || op == CLSM_SHARD_LOG_SOFTMAX_BACKWARD ? F_LOG : 0) |
             (backward ? SH_BACKWARD : 0) | ((flags & CLSM_SAFE) ? F_SAFE : 0);
  if ((st = clsm__check_desc(ctx, a, float_types, an)) != CLSM_SUCCESS) return st;
  if (backward) {
    if (!b) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "dy is NULL (a backward op)");
    if ((st = clsm__check_desc(ctx, b, 1u << a->dtype, "dy")) != CLSM_SUCCESS) return st;
    if (!same_shape(a, b)) return clsm__fail_shapes(ctx, "y", a, "dy", b);
  } else if (b) {
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "b must be NULL for a forward op");
  }
  int d = 0;
  if ((st = clsm__check_dim(ctx, a->rank, dim, &d)) != CLSM_SUCCESS) return st;
  const clsm_dtype acc = a->dtype == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  /* A row's (max, sum) pair; backward (S, count). */
  if ((st = clsm__check_stats(ctx, stats, a, d, SHARD_SM_K, an)) != CLSM_SUCCESS) return st;
  c->rows = clsm__numel(stats) / SHARD_SM_K;
  const char *on = backward ? "dx" : "y";
  if (finish) {
    if (!out) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "%s (the output) is NULL", on);
    if ((st = clsm__check_desc(ctx, out, float_types, on)) != CLSM_SUCCESS) return st;
    if (!same_shape(a, out)) return clsm__fail_shapes(ctx, an, a, on, out);
  }
  c->program = clsm__program_for(a->dtype, finish ? out->dtype : acc);
  if (c->program < 0)
    return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_DTYPE,
                      "%s is %s: the output may be %s, or float32 for 16-bit inputs", on,
                      clsm_dtype_name(out->dtype), clsm_dtype_name(a->dtype));
  if ((st = clsm__check_fp64(ctx, c->program)) != CLSM_SUCCESS) return st;
  const clsm_tensor *all[4] = {a, b, stats, out};
  const char *names[4] = {an, "dy", "stats", on};
  for (int i = 0; i < 4; ++i)
    if (all[i] && (st = clsm__check_mem(ctx, all[i], names[i])) != CLSM_SUCCESS) return st;
  /* The partial writes stats, the finish out (which may be exactly a or b). */
  const clsm_tensor *o = finish ? out : stats;
  const char *oname = finish ? on : "stats";
  const clsm_tensor *ins[3] = {a, b, finish ? stats : NULL};
  const char *inames[3] = {an, "dy", "stats"};
  for (int i = 0; i < 3; ++i)
    if (ins[i] && (st = clsm__check_output(ctx, o, oname, ins[i], inames[i])) != CLSM_SUCCESS)
      return st;
  const clsm_tensor *views[3] = {a, b, out};
  clsm_view *vs[3] = {&c->av, &c->bv, &c->ov};
  for (int i = 0; i < 3; ++i)
    if (views[i] && !clsm__make_view(views[i], d, vs[i]))
      return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_LAYOUT,
                        "%s: the dims before or after dim %d do not collapse into one stride each",
                        i == 0 ? an : i == 1 ? "dy" : on, d);
  /* A zero-extent axis: the view says 0 rows; the kernels see C = 0. */
  c->av.outer = 1, c->av.inner = 1;
  for (int k = 0; k < d; ++k) c->av.outer *= a->shape[k];
  for (int k = d + 1; k < a->rank; ++k) c->av.inner *= a->shape[k];
  if (a->rank == 0) c->av.C = 1;
  return CLSM_SUCCESS;
}

static clsm_status sm_common(clsm_context *ctx, clsm_shard_op op, const clsm_tensor *a,
                             const clsm_tensor *b, int dim, unsigned flags,
                             const clsm_tensor *stats, const clsm_tensor *out, int finish,
                             cl_uint num_wait, const cl_event *wait, cl_event *event) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  if (event) *event = NULL;
  clsm_sm_shard_call c;
  pthread_mutex_lock(&ctx->lock);
  ctx->error[0] = '\0';
  clsm_status st = clsm__check_wait(ctx, num_wait, wait);
  if (st == CLSM_SUCCESS) st = check_sm(ctx, &c, op, a, b, dim, flags, stats, out, finish);
  if (st == CLSM_SUCCESS && c.rows > 0) st = clsm__program(ctx, c.program, G_CE);
  if (st == CLSM_SUCCESS) {
    clsm_plan plan;
    clsm__plan_sm_shard(&ctx->caps, ctx->kernel_wg[c.program], &c, &plan);
    if (c.rows == 0) plan.empty = 1; /* nothing to compute: a marker */
    st = clsm__run_plan(ctx, &plan, NULL, num_wait, wait, event);
  }
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

clsm_status clsm_softmax_partial(clsm_context *ctx, clsm_shard_op op, const clsm_tensor *a,
                                 const clsm_tensor *b, int dim, const clsm_tensor *stats,
                                 cl_uint num_wait, const cl_event *wait, cl_event *event) {
  return sm_common(ctx, op, a, b, dim, 0, stats, NULL, 0, num_wait, wait, event);
}

clsm_status clsm_softmax_finish(clsm_context *ctx, clsm_shard_op op, const clsm_tensor *a,
                                const clsm_tensor *b, int dim, unsigned flags,
                                const clsm_tensor *stats, const clsm_tensor *out,
                                cl_uint num_wait, const cl_event *wait, cl_event *event) {
  return sm_common(ctx, op, a, b, dim, flags, stats, out, 1, num_wait, wait, event);
}

/* ------------------------------------------------------------ host merge */

/* The (max, sum) pairs of two shards, merged: NaN in either sum carries;
 * a max of -inf (no finite entry) adds nothing. */
static void pair_merge(double ma, double sa, double mb, double sb, double *m, double *s) {
  if (isnan(sa) || isnan(sb)) {
    *m = fmax(ma, mb);
    *s = NAN;
    return;
  }
  if (ma == -INFINITY || mb == -INFINITY) {
    *m = ma == -INFINITY ? mb : ma;
    *s = ma == -INFINITY ? sb : sa;
    if (ma == -INFINITY && mb == -INFINITY) *s = sa + sb; /* both 0 */
    return;
  }
  const double M = ma > mb ? ma : mb;
  *m = M;
  *s = sa * exp(ma - M) + sb * exp(mb - M); /* M = +inf: inf - inf gives NaN, as one row does */
}

static int merge_args(clsm_dtype dtype, int k, int64_t n, const void *a, const void *b) {
  return (dtype == CLSM_FLOAT32 || dtype == CLSM_FLOAT64) && k >= 2 && n >= 0 &&
         (n == 0 || (a && b));
}

/* Value i of `p` as double, and back. */
#define GET(p, i) (dtype == CLSM_FLOAT32 ? (double)((const float *)(p))[i] : ((const double *)(p))[i])
#define PUT(p, i, v)                                                                         \
  do {                                                                                       \
    if (dtype == CLSM_FLOAT32) ((float *)(p))[i] = (float)(v);                               \
    else ((double *)(p))[i] = (v);                                                           \
  } while (0)

clsm_status clsm_shard_merge(clsm_dtype dtype, int k, int64_t n, const void *in, void *inout) {
  if (!merge_args(dtype, k, n, in, inout)) return CLSM_ERR_INVALID_ARGUMENT;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = r * k;
    double m, s;
    pair_merge(GET(in, i), GET(in, i + 1), GET(inout, i), GET(inout, i + 1), &m, &s);
    PUT(inout, i, m);
    PUT(inout, i + 1, s);
    for (int v = 2; v < k; ++v) PUT(inout, i + v, GET(in, i + v) + GET(inout, i + v));
  }
  return CLSM_SUCCESS;
}

/* Before the sum: value 0 becomes 0 and value 1 s exp(m - M), with M the
 * maximum of the shards' m (the partial's m is never NaN, so MPI_MAX sees
 * none); a shard with m = -inf adds its s (0, or NaN), as the pair merge. */
clsm_status clsm_shard_rebase(clsm_dtype dtype, int k, int64_t n, void *stats, const void *max) {
  if (!merge_args(dtype, k, n, stats, max)) return CLSM_ERR_INVALID_ARGUMENT;
  for (int64_t r = 0; r < n; ++r) {
    const double m = GET(stats, r * k), s = GET(stats, r * k + 1), M = GET(max, r);
    PUT(stats, r * k, 0.0);
    PUT(stats, r * k + 1, isnan(s) || m == -INFINITY ? s : s * exp(m - M));
  }
  return CLSM_SUCCESS;
}

/* After the sum: value 0 becomes M again. */
clsm_status clsm_shard_restore(clsm_dtype dtype, int k, int64_t n, void *stats, const void *max) {
  if (!merge_args(dtype, k, n, stats, max)) return CLSM_ERR_INVALID_ARGUMENT;
  for (int64_t r = 0; r < n; ++r) PUT(stats, r * k, GET(max, r));
  return CLSM_SUCCESS;
}
#undef GET
#undef PUT
