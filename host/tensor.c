/* Tensor descriptors: checks (rank, shape, strides, dtype, cl_mem bounds,
 * overlap), and the (outer, C, inner) view of a tensor along one axis. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

clsm_tensor clsm_tensor_contiguous(cl_mem mem, uint64_t offset, clsm_dtype dtype, int rank,
                                   const int64_t *shape) {
  clsm_tensor t;
  memset(&t, 0, sizeof t);
  t.mem = mem;
  t.offset = offset;
  t.dtype = dtype;
  if (rank < 0 || rank > CLSM_MAX_RANK) {
    t.rank = rank; /* refused by every operation, with this rank in the detail */
    return t;
  }
  if (rank > 0 && !shape) {
    t.rank = -1;
    return t;
  }
  t.rank = rank;
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    t.shape[d] = shape[d];
    t.strides[d] = stride;
    if (shape[d] > 1) stride *= shape[d];
  }
  return t;
}

int64_t clsm__numel(const clsm_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->rank; ++d)
    if (__builtin_mul_overflow(n, t->shape[d], &n)) return -1;
  return n;
}

/* Names the dtypes of an `allowed` mask: "float32, float16 or bfloat16". */
static void dtype_list(unsigned allowed, char *buf, size_t size) {
  int n = 0, total = 0;
  for (int d = 0; d < 8; ++d) total += (allowed >> d) & 1u;
  buf[0] = '\0';
  for (int d = 0; d < 8; ++d) {
    if (!((allowed >> d) & 1u)) continue;
    size_t len = strlen(buf);
    snprintf(buf + len, size - len, "%s%s", n == 0 ? "" : n == total - 1 ? " or " : ", ",
             clsm_dtype_name((clsm_dtype)d));
    ++n;
  }
}

void clsm__shape_str(const clsm_tensor *t, char *buf, size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  len += (size_t)snprintf(buf, size, "(");
  for (int d = 0; d < t->rank && len < size; ++d)
    len += (size_t)snprintf(buf + len, size - len, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
  if (len < size) snprintf(buf + len, size - len, ")");
}

clsm_status clsm__fail_shapes(clsm_context *ctx, const char *an, const clsm_tensor *a,
                              const char *bn, const clsm_tensor *b) {
  char sa[160], sb[160];
  clsm__shape_str(a, sa, sizeof sa);
  clsm__shape_str(b, sb, sizeof sb);
  return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH, "%s has shape %s but %s has shape %s", an, sa,
                    bn, sb);
}

clsm_status clsm__check_desc(clsm_context *ctx, const clsm_tensor *t, unsigned allowed,
                             const char *what) {
  if (!t) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "%s is NULL", what);
  if (t->rank < 0 || t->rank > CLSM_MAX_RANK)
    return clsm__fail(ctx, CLSM_ERR_INVALID_RANK, "%s: rank %d is outside 0..%d%s", what, t->rank,
                      CLSM_MAX_RANK,
                      t->rank == -1 ? " (clsm_tensor_contiguous gives -1 for a NULL shape)" : "");
  if (!t->mem) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "%s: cl_mem is NULL", what);
  size_t esize = clsm_dtype_size(t->dtype);
  if (esize == 0)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d", what,
                      (int)t->dtype);
  if (!(allowed & (1u << t->dtype))) {
    char list[96];
    dtype_list(allowed, list, sizeof list);
    return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_DTYPE, "%s: dtype %s is not supported here (%s)",
                      what, clsm_dtype_name(t->dtype), list);
  }
  for (int d = 0; d < t->rank; ++d) {
    if (t->shape[d] < 0)
      return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "%s: shape[%d] = %lld is negative", what,
                        d, (long long)t->shape[d]);
    if (t->strides[d] < 0)
      return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "%s: strides[%d] = %lld is negative",
                        what, d, (long long)t->strides[d]);
  }
  if (clsm__numel(t) < 0)
    return clsm__fail(ctx, CLSM_ERR_TOO_LARGE, "%s: element count overflows 64 bits", what);
  return CLSM_SUCCESS;
}

clsm_status clsm__check_mem(clsm_context *ctx, const clsm_tensor *t, const char *what) {
  cl_context owner = NULL;
  cl_int err = clGetMemObjectInfo(t->mem, CL_MEM_CONTEXT, sizeof owner, &owner, NULL);
  if (err != CL_SUCCESS)
    return clsm__cl_fail(ctx, err, "clGetMemObjectInfo(CL_MEM_CONTEXT)", __FILE__, __LINE__);
  if (owner != ctx->cl_ctx)
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                      "%s: its cl_mem belongs to another cl_context than the library context's",
                      what);
  int empty = 0;
  for (int d = 0; d < t->rank; ++d)
    if (t->shape[d] == 0) empty = 1;
  /* The last element reached: offset + sum (shape-1)*stride. */
  uint64_t last = t->offset;
  if (!empty) {
    for (int d = 0; d < t->rank; ++d) {
      uint64_t step;
      if (__builtin_mul_overflow((uint64_t)(t->shape[d] - 1), (uint64_t)t->strides[d], &step) ||
          __builtin_add_overflow(last, step, &last))
        return clsm__fail(ctx, CLSM_ERR_OUT_OF_BOUNDS, "%s: element offsets overflow 64 bits",
                          what);
    }
  }
  size_t memsize = 0;
  err = clGetMemObjectInfo(t->mem, CL_MEM_SIZE, sizeof memsize, &memsize, NULL);
  if (err != CL_SUCCESS) return clsm__cl_fail(ctx, err, "clGetMemObjectInfo(CL_MEM_SIZE)", __FILE__, __LINE__);
  uint64_t end_bytes;
  /* An empty view touches nothing; its offset may still not pass the end. */
  uint64_t elems = empty ? last : last + 1;
  if (__builtin_mul_overflow(elems, (uint64_t)clsm_dtype_size(t->dtype), &end_bytes) ||
      end_bytes > memsize)
    return clsm__fail(ctx, CLSM_ERR_OUT_OF_BOUNDS,
                      "%s: reaches element %llu (byte %llu) of a cl_mem of %llu bytes", what,
                      (unsigned long long)last, (unsigned long long)end_bytes,
                      (unsigned long long)memsize);
  return CLSM_SUCCESS;
}

clsm_status clsm__check_tensor(clsm_context *ctx, const clsm_tensor *t, unsigned allowed,
                               const char *what) {
  clsm_status st = clsm__check_desc(ctx, t, allowed, what);
  return st != CLSM_SUCCESS ? st : clsm__check_mem(ctx, t, what);
}

clsm_status clsm__check_dim(clsm_context *ctx, int rank, int dim, int *out) {
  int r = rank == 0 ? 1 : rank;
  if (dim < -r || dim >= r)
    return clsm__fail(ctx, CLSM_ERR_INVALID_DIM, "dim %d is outside [%d, %d] for rank %d", dim,
                      -r, r - 1, rank);
  *out = dim < 0 ? dim + r : dim;
  return CLSM_SUCCESS;
}

/* Byte range [lo, hi) a tensor reaches (empty when numel is 0). */
static void byte_range(const clsm_tensor *t, uint64_t *lo, uint64_t *hi) {
  size_t es = clsm_dtype_size(t->dtype);
  uint64_t last = t->offset;
  for (int d = 0; d < t->rank; ++d) {
    if (t->shape[d] == 0) {
      *lo = *hi = t->offset * es;
      return;
    }
    last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->strides[d];
  }
  *lo = t->offset * es;
  *hi = (last + 1) * es;
}

static int same_view(const clsm_tensor *a, const clsm_tensor *b) {
  if (a->mem != b->mem || a->offset != b->offset || a->rank != b->rank || a->dtype != b->dtype)
    return 0;
  for (int d = 0; d < a->rank; ++d)
    if (a->shape[d] != b->shape[d] || (a->shape[d] > 1 && a->strides[d] != b->strides[d]))
      return 0;
  return 1;
}

clsm_status clsm__check_output(clsm_context *ctx, const clsm_tensor *out, const char *on,
                               const clsm_tensor *in, const char *in_name) {
  if (clsm__numel(out) == 0) return CLSM_SUCCESS;
  /* Distinct elements: with dims sorted by stride, each stride must pass the
   * extent of all smaller ones (sufficient, and exact for ordinary views). */
  int idx[CLSM_MAX_RANK], n = 0;
  for (int d = 0; d < out->rank; ++d)
    if (out->shape[d] > 1) idx[n++] = d;
  for (int i = 1; i < n; ++i)
    for (int j = i; j > 0 && out->strides[idx[j]] < out->strides[idx[j - 1]]; --j) {
      int tmp = idx[j];
      idx[j] = idx[j - 1];
      idx[j - 1] = tmp;
    }
  uint64_t extent = 0;
  for (int i = 0; i < n; ++i) {
    int d = idx[i];
    if ((uint64_t)out->strides[d] <= extent)
      return clsm__fail(ctx, CLSM_ERR_OVERLAP,
                        "%s: strides make elements overlap (dim %d, stride %lld)", on, d,
                        (long long)out->strides[d]);
    extent += (uint64_t)(out->shape[d] - 1) * (uint64_t)out->strides[d];
  }
  if (!in || in->mem != out->mem || same_view(in, out)) return CLSM_SUCCESS;
  uint64_t alo, ahi, blo, bhi;
  byte_range(in, &alo, &ahi);
  byte_range(out, &blo, &bhi);
  if (alo < ahi && blo < bhi && alo < bhi && blo < ahi)
    return clsm__fail(ctx, CLSM_ERR_OVERLAP,
                      "%s overlaps %s in the same cl_mem without being the same view", on,
                      in_name);
  return CLSM_SUCCESS;
}

int clsm__collapse(const clsm_tensor *t, int from, int to, int64_t *count, int64_t *stride) {
  int64_t n = 1, s = 0;
  *count = 0;
  *stride = 0;
  for (int d = from; d < to; ++d)
    if (t->shape[d] == 0) return 1;
  for (int d = to - 1; d >= from; --d) {
    int64_t len = t->shape[d];
    if (len == 1) continue;
    if (n == 1)
      s = t->strides[d];
    else if (t->strides[d] != s * n)
      return 0;
    n *= len;
  }
  *count = n;
  *stride = s;
  return 1;
}

int clsm__make_view(const clsm_tensor *t, int dim, clsm_view *v) {
  v->base = t->offset;
  if (t->rank == 0) {
    v->outer = v->C = v->inner = 1;
    v->so = v->sc = v->si = 0;
    return 1;
  }
  v->C = t->shape[dim];
  v->sc = t->strides[dim];
  if (!clsm__collapse(t, 0, dim, &v->outer, &v->so) ||
      !clsm__collapse(t, dim + 1, t->rank, &v->inner, &v->si))
    return 0;
  if (v->C == 0) v->outer = v->inner = 0;
  return 1;
}

clsm_status clsm__check_wait(clsm_context *ctx, cl_uint num_wait, const cl_event *wait) {
  if ((num_wait > 0) != (wait != NULL))
    return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                      "wait list: num_wait is %u but wait is %s", num_wait,
                      wait ? "not NULL" : "NULL");
  for (cl_uint i = 0; i < num_wait; ++i) {
    if (!wait[i])
      return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "wait list: event %u is NULL", i);
    cl_context owner = NULL;
    cl_int err = clGetEventInfo(wait[i], CL_EVENT_CONTEXT, sizeof owner, &owner, NULL);
    if (err != CL_SUCCESS)
      return clsm__cl_fail(ctx, err, "clGetEventInfo(CL_EVENT_CONTEXT)", __FILE__, __LINE__);
    if (owner != ctx->cl_ctx)
      return clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT,
                        "wait list: event %u belongs to another cl_context than the library "
                        "context's", i);
  }
  return CLSM_SUCCESS;
}

clsm_status clsm__marker(clsm_context *ctx, cl_uint num_wait, const cl_event *wait,
                         cl_event *event) {
  clsm_status st = CLSM_SUCCESS;
  if (!event && num_wait == 0) return CLSM_SUCCESS;
  CLSM_CL(ctx, clEnqueueMarkerWithWaitList(ctx->queue, num_wait, wait, event));
fail:
  return st;
}

int clsm__is_contiguous(const clsm_tensor *t) {
  int64_t want = 1;
  for (int d = t->rank - 1; d >= 0; --d) {
    if (t->shape[d] != 1 && t->strides[d] != want) return 0;
    want *= t->shape[d];
  }
  return 1;
}

clsm_status clsm__check_stats(clsm_context *ctx, const clsm_tensor *stats, const clsm_tensor *x,
                              int axis, int k, const char *what) {
  if (!stats) return clsm__fail(ctx, CLSM_ERR_NULL_ARGUMENT, "stats is NULL");
  const clsm_dtype acc = x->dtype == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  clsm_status st = clsm__check_desc(ctx, stats, 1u << acc, "stats");
  if (st != CLSM_SUCCESS) return st;
  clsm_tensor want = *x;
  want.rank = 0;
  for (int d = 0; d < x->rank; ++d)
    if (d != axis) want.shape[want.rank++] = x->shape[d];
  want.shape[want.rank++] = k;
  int same = stats->rank == want.rank;
  for (int d = 0; same && d < want.rank; ++d) same = stats->shape[d] == want.shape[d];
  if (!same) {
    char sp[160], sw[160];
    clsm__shape_str(stats, sp, sizeof sp);
    clsm__shape_str(&want, sw, sizeof sw);
    return clsm__fail(ctx, CLSM_ERR_SHAPE_MISMATCH, "stats has shape %s: %s need %s (%s)", sp,
                      what, sw, x->rank ? "its shape without the axis, then the record" : "the record");
  }
  if (!clsm__is_contiguous(stats))
    return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_LAYOUT, "stats must be contiguous");
  return CLSM_SUCCESS;
}
