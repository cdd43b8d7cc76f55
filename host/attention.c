/* Attention softmax: the options, their checks, the kernel parameters of a
 * call (which row is which query and head, where each tensor's row
 * starts), and its run through the planner (plan_attn.c). A call with no
 * attention term at all is the plain row op. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

clsm_attn_options clsm_attn_options_default(void) {
  const clsm_attn_options o = CLSM_ATTN_OPTIONS_INIT;
  return o;
}

#define BIT(d) (1u << (d))
static const unsigned mask_types = BIT(CLSM_FLOAT32) | BIT(CLSM_FLOAT16) | BIT(CLSM_BFLOAT16) | BIT(CLSM_UINT8);

/* The query axis (*qa, -1 when dim is 0) and head axis (*hd, -1 for none)
 * for a normalised dim; 0 when head_dim is outside the rank or is dim. */
static int attn_axes(int rank, int dim, int head_dim, int *qa, int *hd) {
  *qa = dim - 1;
  if (head_dim == CLSM_HEAD_DIM_AUTO) {
    *hd = dim - 2 >= 0 ? dim - 2 : -1;
    return 1;
  }
  const int r = rank ? rank : 1;
  if (head_dim < -r || head_dim >= r) return 0;
  *hd = head_dim < 0 ? head_dim + r : head_dim;
  return *hd != dim;
}

clsm_status clsm_attn_heads(int rank, const int64_t *shape, int dim, int head_dim,
                            int64_t *heads) {
  if (!heads || (rank > 0 && !shape)) return CLSM_ERR_NULL_ARGUMENT;
  if (rank < 0 || rank > CLSM_MAX_RANK) return CLSM_ERR_INVALID_RANK;
  const int r = rank ? rank : 1;
  if (dim < -r || dim >= r) return CLSM_ERR_INVALID_DIM;
  int qa, hd;
  if (!attn_axes(rank, dim < 0 ? dim + r : dim, head_dim, &qa, &hd)) return CLSM_ERR_INVALID_DIM;
  *heads = hd >= 0 && rank ? shape[hd] : 1;
  return CLSM_SUCCESS;
}

/* The ALiBi slopes of (max_bias, H) in a buffer the context keeps for the
 * next call with the same pair (a buffer created from host memory: nothing
 * is enqueued). */
static clsm_status alibi_buffer(clsm_context *ctx, double max_bias, int64_t H, cl_mem *out) {
  if (ctx->alibi && ctx->alibi_bias == max_bias && ctx->alibi_heads == H) {
    *out = ctx->alibi;
    return CLSM_SUCCESS;
  }
  const size_t bytes = (size_t)H * sizeof(float);
  float *v = clsm__malloc(ctx, bytes);
  if (!v) return clsm__fail(ctx, CLSM_ERR_OUT_OF_HOST_MEMORY, "no memory for %lld ALiBi slopes", (long long)H);
  int64_t n = 1;
  while (n * 2 <= H) n *= 2;
  for (int64_t h = 0; h < H; ++h) {
    const double e = h < n ? max_bias / (double)n * (double)(h + 1)
                           : max_bias / (2.0 * (double)n) * (double)(2 * (h - n) + 1);
    v[h] = (float)exp2(-e);
  }
  clsm_status st = CLSM_SUCCESS;
  cl_int err = CL_SUCCESS;
  cl_mem m = NULL;
  if (!clsm__inject_buffer(ctx, bytes, &err))
    m = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, v, &err);
  free(v);
  if (!m && err == CL_SUCCESS) err = CL_OUT_OF_RESOURCES;
  CLSM_CL_ERR(ctx, err, "clCreateBuffer");
  if (ctx->alibi) clReleaseMemObject(ctx->alibi);
  ctx->alibi = m;
  ctx->alibi_bias = max_bias;
  ctx->alibi_heads = H;
  *out = m;
fail:
  return st;
}

/* An (H) vector of one of `allowed` dtypes. */
static clsm_status check_heads(clsm_context *ctx, const clsm_tensor *t, unsigned allowed,
                               const char *what, int64_t H, const clsm_tensor *x, int hd) {
  clsm_status st = clsm__check_desc(ctx, t, allowed, what);
  if (st != CLSM_SUCCESS) return st;
  if (t->rank != 1 || t->shape[0] != H) {
    char ts[128], xs[128];
    clsm__shape_str(t, ts, sizeof ts);
    clsm__shape_str(x, xs, sizeof xs);
    if (hd >= 0)
      return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH,
                        "%s has shape %s but must be (%lld): one value a head, and x of shape %s has %lld heads along head_dim %d",
                        what, ts, (long long)H, xs, (long long)H, hd);
    return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH,
                      "%s has shape %s but must be (1): x of shape %s has no head axis", what, ts, xs);
  }
  return clsm__check_mem(ctx, t, what);
}

static int no_terms(const clsm_attn_options *o) {
  return o->scale == 1.0 && !o->mask && !o->causal && o->alibi_max_bias == 0 && !o->alibi_slopes &&
         !o->sinks && !o->lse;
}

/* The whole call, lock held. t: x, y (forward) or y, dy, dx (backward). */
static clsm_status attn_locked(clsm_context *ctx, const clsm_tensor *const *t, int backward,
                               int log, int dim, const clsm_attn_options *o, cl_uint num_wait,
                               const cl_event *wait, cl_event *event) {
  if (!o) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "opt is NULL");
  if (o->version != CLSM_ATTN_OPTIONS_VERSION)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                      "opt: version %u is not %u (start from CLSM_ATTN_OPTIONS_INIT)", o->version,
                      CLSM_ATTN_OPTIONS_VERSION);
  if (o->flags & ~CLSM_SAFE)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "opt: unknown flags 0x%x", o->flags & ~CLSM_SAFE);
  if (!isfinite(o->scale))
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "opt: scale %g is not finite", o->scale);
  if (!backward) {
    if (o->causal != 0 && o->causal != 1)
      return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "opt: causal is %d, not 0 or 1", o->causal);
    if (!isfinite(o->alibi_max_bias) || o->alibi_max_bias < 0)
      return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                        "opt: alibi_max_bias %g is not a finite value >= 0", o->alibi_max_bias);
    if (o->alibi_max_bias > 0 && o->alibi_slopes)
      return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                        "opt: alibi_max_bias and alibi_slopes are both given; pass one");
    if (o->dsinks)
      return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                        "opt: dsinks is an output of the backward, not of the forward");
  }
  clsm_rowop op = {.n = backward ? 3 : 2, .backward = backward, .t = {t[0], t[1], backward ? t[2] : NULL}};
  op.flags = (log ? F_LOG : 0) | ((o->flags & CLSM_SAFE) ? F_SAFE : 0);
  if (!backward && no_terms(o)) return clsm__row_op(ctx, &op, dim, num_wait, wait, event);

  int d, program;
  clsm_status st = clsm__row_check(ctx, &op, dim, num_wait, wait, &d, &program);
  if (st != CLSM_SUCCESS) return st;
  const clsm_tensor *x = t[0];
  const int R = x->rank;
  int qa, hd;
  if (!attn_axes(R, d, o->head_dim, &qa, &hd))
    return clsm__fail(ctx, CLSM_ERR_INVALID_DIM,
                      "opt: head_dim %d is outside the rank %d of x or is the softmax dim %d",
                      o->head_dim, R, d);
  const int alibi = !backward && (o->alibi_max_bias > 0 || o->alibi_slopes);
  const int causal = !backward && o->causal;
  if ((alibi || causal) && qa < 0) {
    char xs[128];
    clsm__shape_str(x, xs, sizeof xs);
    return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH,
                      "%s needs a query axis before dim %d, and x has shape %s",
                      causal ? "causal masking" : "ALiBi", d, xs);
  }
  const int64_t H = hd >= 0 ? x->shape[hd] : 1;

  clsm_attn_call c;
  memset(&c, 0, sizeof c);
  clsm_attn_params *p = &c.p;
  c.backward = backward;
  c.program = program;
  c.out_dtype = t[op.n - 1]->dtype;
  for (int i = 0; i < op.n; ++i) c.mem[i] = t[i]->mem;
  p->flags = op.flags | (causal ? A_CAUSAL : 0) | (alibi ? A_ALIBI : 0);
  p->scale = (float)o->scale;
  memcpy(&p->scale_bits, &o->scale, sizeof o->scale);
  p->C = R ? x->shape[d] : 1;
  p->offset = o->offset;
  p->heads = H;
  p->hdiv = 1;
  p->rows = 1;
  for (int dd = 0; dd < R; ++dd) {
    if (dd == d) continue;
    p->rows *= x->shape[dd];
    if (hd >= 0 && dd > hd) p->hdiv *= x->shape[dd];
  }
  p->qd = p->hdg = -1;
  for (int i = 0; i < op.n; ++i) {
    p->off[i] = t[i]->offset;
    p->sc[i] = R ? t[i]->strides[d] : 0;
  }

  /* The mask's strides over x's dims (0 where it broadcasts). */
  int64_t mst[CLSM_MAX_RANK] = {0};
  if (!backward && o->mask) {
    const clsm_tensor *m = o->mask;
    if ((st = clsm__check_desc(ctx, m, mask_types, "mask")) != CLSM_SUCCESS) return st;
    int fits = m->rank <= (R ? R : 1);
    for (int k = 0; fits && k < m->rank; ++k) {
      const int xd = R - m->rank + k;
      const int64_t xn = xd >= 0 && R ? x->shape[xd] : 1;
      fits = m->shape[k] == xn || m->shape[k] == 1;
      if (fits && xd >= 0 && R) mst[xd] = m->shape[k] == 1 ? 0 : m->strides[k];
    }
    if (!fits) {
      char ms[128], xs[128];
      clsm__shape_str(m, ms, sizeof ms);
      clsm__shape_str(x, xs, sizeof xs);
      return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH,
                        "mask has shape %s, which does not broadcast to x's shape %s", ms, xs);
    }
    if ((st = clsm__check_mem(ctx, m, "mask")) != CLSM_SUCCESS) return st;
    c.mask = m->mem;
    p->off[2] = m->offset;
    p->sc[2] = R ? mst[d] : 0;
    p->mkind = m->dtype == CLSM_FLOAT32   ? MK_F32
               : m->dtype == CLSM_FLOAT16 ? MK_F16
               : m->dtype == CLSM_BFLOAT16 ? MK_BF16
                                          : MK_BOOL;
  }
  if (!backward && o->alibi_slopes) {
    if ((st = check_heads(ctx, o->alibi_slopes, BIT(CLSM_FLOAT32), "alibi_slopes", H, x, hd)) != CLSM_SUCCESS)
      return st;
    c.slopes = o->alibi_slopes->mem;
    p->aoff = (int64_t)o->alibi_slopes->offset;
    p->ast = o->alibi_slopes->strides[0];
  }
  if (!backward && o->sinks) {
    if ((st = check_heads(ctx, o->sinks, BIT(CLSM_FLOAT32) | BIT(x->dtype), "sinks", H, x, hd)) != CLSM_SUCCESS)
      return st;
    c.sinks = o->sinks->mem;
    p->soff = (int64_t)o->sinks->offset;
    p->sst = o->sinks->strides[0];
    p->skind = o->sinks->dtype == x->dtype ? SK_TX : SK_F32;
  }
  const clsm_dtype acc = program == P_F64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  int64_t lst[CLSM_MAX_RANK] = {0};
  if (!backward && o->lse) {
    const clsm_tensor *l = o->lse;
    if ((st = clsm__check_desc(ctx, l, BIT(acc), "lse")) != CLSM_SUCCESS) return st;
    int same = l->rank == (R ? R - 1 : 0);
    for (int dd = 0, k = 0; same && dd < R; ++dd)
      if (dd != d) {
        same = l->shape[k] == x->shape[dd];
        lst[dd] = l->strides[k++];
      }
    if (!same) {
      char ls[128], xs[128];
      clsm__shape_str(l, ls, sizeof ls);
      clsm__shape_str(x, xs, sizeof xs);
      return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH,
                        "lse has shape %s but must be x's shape %s without dim %d", ls, xs, d);
    }
    if ((st = clsm__check_mem(ctx, l, "lse")) != CLSM_SUCCESS) return st;
    for (int i = 0; i < 2; ++i)
      if ((st = clsm__check_output(ctx, l, "lse", t[i], i ? "y" : "x")) != CLSM_SUCCESS) return st;
    c.lse = l->mem;
    p->off[3] = l->offset;
    p->flags |= A_LSE;
  }
  if (backward && o->dsinks) {
    if ((st = check_heads(ctx, o->dsinks, BIT(acc), "dsinks", H, x, hd)) != CLSM_SUCCESS) return st;
    static const char *const names[3] = {"y", "dy", "dx"};
    for (int i = 0; i < 3; ++i)
      if ((st = clsm__check_output(ctx, o->dsinks, "dsinks", t[i], names[i])) != CLSM_SUCCESS) return st;
    c.dsinks = o->dsinks->mem;
    p->aoff = (int64_t)o->dsinks->offset;
    p->ast = o->dsinks->strides[0];
    p->flags |= A_DSINKS;
  }
  /* The output must not overwrite what other rows still read. */
  if (!backward) {
    const clsm_tensor *ins[3] = {o->mask, o->alibi_slopes, o->sinks};
    static const char *const names[3] = {"mask", "alibi_slopes", "sinks"};
    for (int i = 0; i < 3; ++i)
      if (ins[i] && (st = clsm__check_output(ctx, t[1], "y", ins[i], names[i])) != CLSM_SUCCESS)
        return st;
  }

  /* Rows: the non-key dims of size > 1, innermost first. */
  for (int dd = R - 1; dd >= 0; --dd) {
    if (dd == d || x->shape[dd] == 1) continue;
    const int k = p->nd++;
    p->shape[k] = x->shape[dd];
    if (dd == qa) p->qd = k;
    if (dd == hd) p->hdg = k;
    for (int i = 0; i < op.n; ++i) p->st[i][k] = t[i]->strides[dd];
    if (!backward) {
      p->st[2][k] = mst[dd];
      p->st[3][k] = lst[dd];
    }
  }
  if (p->rows <= (int64_t)UINT32_MAX) p->flags |= A_U32;
  if (alibi && !o->alibi_slopes && H > 0) {
    if ((st = alibi_buffer(ctx, o->alibi_max_bias, H, &c.slopes)) != CLSM_SUCCESS) return st;
    p->aoff = 0;
    p->ast = 1;
  }
  if ((p->rows > 0 || (c.p.flags & A_DSINKS)) && (st = clsm__program(ctx, program, G_ATTN)) != CLSM_SUCCESS)
    return st;
  clsm_plan plan;
  clsm__plan_attn(&ctx->caps, ctx->kernel_wg[program], &c, &plan);
  return clsm__run_plan(ctx, &plan, NULL, num_wait, wait, event);
}

static clsm_status attn_call(clsm_context *ctx, const clsm_tensor *const *t, int backward, int log,
                             int dim, const clsm_attn_options *o, cl_uint num_wait,
                             const cl_event *wait, cl_event *event) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  if (event) *event = NULL;
  pthread_mutex_lock(&ctx->lock);
  ctx->error[0] = '\0';
  const clsm_status st = attn_locked(ctx, t, backward, log, dim, o, num_wait, wait, event);
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

clsm_status clsm_softmax_ex(clsm_context *ctx, const clsm_tensor *x, const clsm_tensor *y, int dim,
                            const clsm_attn_options *opt, cl_uint num_wait, const cl_event *wait,
                            cl_event *event) {
  const clsm_tensor *t[2] = {x, y};
  return attn_call(ctx, t, 0, 0, dim, opt, num_wait, wait, event);
}

clsm_status clsm_log_softmax_ex(clsm_context *ctx, const clsm_tensor *x, const clsm_tensor *y,
                                int dim, const clsm_attn_options *opt, cl_uint num_wait,
                                const cl_event *wait, cl_event *event) {
  const clsm_tensor *t[2] = {x, y};
  return attn_call(ctx, t, 0, 1, dim, opt, num_wait, wait, event);
}

clsm_status clsm_softmax_backward_ex(clsm_context *ctx, const clsm_tensor *y, const clsm_tensor *dy,
                                     const clsm_tensor *dx, int dim, const clsm_attn_options *opt,
                                     cl_uint num_wait, const cl_event *wait, cl_event *event) {
  const clsm_tensor *t[3] = {y, dy, dx};
  return attn_call(ctx, t, 1, 0, dim, opt, num_wait, wait, event);
}

clsm_status clsm_log_softmax_backward_ex(clsm_context *ctx, const clsm_tensor *y,
                                         const clsm_tensor *dy, const clsm_tensor *dx, int dim,
                                         const clsm_attn_options *opt, cl_uint num_wait,
                                         const cl_event *wait, cl_event *event) {
  const clsm_tensor *t[3] = {y, dy, dx};
  return attn_call(ctx, t, 1, 1, dim, opt, num_wait, wait, event);
}
