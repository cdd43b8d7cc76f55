/* --shards K: one .npy's class axis (or softmax axis) split into K
 * contiguous shards, each run on its own context (round-robin over the
 * comma-separated --device specs), merged on the host, and the outputs put
 * back together: what the unsharded command writes, computed as K devices
 * would compute it. */
#include "shards.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tool_shards_open(tool_shards *s, int k, const char *spec) {
  memset(s, 0, sizeof *s);
  s->k = k;
  char specs[TOOL_MAX_SHARDS][256];
  int n = 0;
  if (spec && *spec) {
    const char *p = spec;
    while (n < TOOL_MAX_SHARDS) {
      const char *comma = strchr(p, ',');
      size_t len = comma ? (size_t)(comma - p) : strlen(p);
      if (len == 0 || len >= sizeof specs[0]) {
        fprintf(stderr, "clsoftmax: --device '%s': an empty or too long device in the list\n", spec);
        return 0;
      }
      memcpy(specs[n], p, len);
      specs[n++][len] = '\0';
      if (!comma) break;
      p = comma + 1;
    }
  }
  for (int r = 0; r < k; ++r)
    if (!(s->ctx[r] = tool_context(n ? specs[r % n] : NULL))) {
      tool_shards_close(s);
      return 0;
    }
  return 1;
}

void tool_shards_close(tool_shards *s) {
  for (int r = 0; r < s->k; ++r) clsm_context_destroy(s->ctx[r]);
  memset(s, 0, sizeof *s);
}

/* Shard r's classes: [C r / k, C (r + 1) / k). */
static int64_t bound(int64_t C, int k, int r) { return C * r / k; }

/* Shard r's classes [*c0, *c1) and its shape sh (axis cut to them). */
static void shard_shape(const int64_t *shape, int rank, int axis, int64_t C, int k, int r,
                        int64_t *sh, int64_t *c0, int64_t *c1) {
  memcpy(sh, shape, sizeof(int64_t) * (size_t)rank);
  *c0 = bound(C, k, r);
  *c1 = bound(C, k, r + 1);
  if (rank) sh[axis] = *c1 - *c0;
}

/* Columns [c0, c1) of an (outer, C, inner) array, and back. */
static void *take(const void *src, size_t es, int64_t outer, int64_t C, int64_t inner, int64_t c0,
                  int64_t c1) {
  const int64_t w = c1 - c0;
  unsigned char *d = malloc((size_t)(outer * w * inner) * es + 1);
  if (!d) return NULL;
  for (int64_t o = 0; o < outer; ++o)
    memcpy(d + (size_t)(o * w * inner) * es,
           (const unsigned char *)src + (size_t)((o * C + c0) * inner) * es, (size_t)(w * inner) * es);
  return d;
}
static void put(void *dst, const void *src, size_t es, int64_t outer, int64_t C, int64_t inner,
                int64_t c0, int64_t c1) {
  const int64_t w = c1 - c0;
  for (int64_t o = 0; o < outer; ++o)
    memcpy((unsigned char *)dst + (size_t)((o * C + c0) * inner) * es,
           (const unsigned char *)src + (size_t)(o * w * inner) * es, (size_t)(w * inner) * es);
}

/* (outer, C, inner) of a C-order shape along axis. */
static void split_shape(int rank, const int64_t *shape, int axis, int64_t *outer, int64_t *C,
                        int64_t *inner) {
  *outer = *inner = 1;
  for (int d = 0; d < axis; ++d) *outer *= shape[d];
  for (int d = axis + 1; d < rank; ++d) *inner *= shape[d];
  *C = rank ? shape[axis] : 1;
}

clsm_status tool_ce_sharded(tool_shards *s, clsm_dtype dtype, int rank, const int64_t *shape,
                            const void *logits, clsm_dtype tdtype, const void *target,
                            const clsm_ce_options *opt, const void *weight, void *loss, void *grad,
                            const void *dloss, int *failed) {
  const int k = s->k, axis = rank == 1 ? 0 : 1, prob = tdtype == dtype;
  int64_t outer, C, inner;
  split_shape(rank, shape, axis, &outer, &C, &inner);
  const int64_t P = outer * inner;
  const size_t es = clsm_dtype_size(dtype);
  const clsm_dtype acc = dtype == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  const size_t sbytes = (size_t)P * CLSM_SHARD_STATS * clsm_dtype_size(acc) + 1;
  clsm_status st = CLSM_SUCCESS;
  void *xs[TOOL_MAX_SHARDS] = {0}, *qs[TOOL_MAX_SHARDS] = {0};
  void *merged = malloc(sbytes), *part = malloc(sbytes), *g = NULL;
  *failed = 0;
  if (!merged || !part) goto oom;
  for (int r = 0; r < k; ++r) {
    const int64_t c0 = bound(C, k, r), c1 = bound(C, k, r + 1);
    if (!(xs[r] = take(logits, es, outer, C, inner, c0, c1))) goto oom;
    if (prob && !(qs[r] = take(target, es, outer, C, inner, c0, c1))) goto oom;
  }
  /* 1. partial on every shard, 2. merged here. */
  for (int r = 0; r < k; ++r) {
    int64_t sh[CLSM_MAX_RANK], c0, c1;
    shard_shape(shape, rank, axis, C, k, r, sh, &c0, &c1);
    const clsm_shard d = {c0, C};
    st = clsm_cross_entropy_partial_host(s->ctx[r], dtype, rank, sh, xs[r], tdtype,
                                         prob ? qs[r] : target, &d, opt, weight, r ? part : merged);
    if (st != CLSM_SUCCESS) {
      *failed = r;
      goto out;
    }
    if (r) clsm_shard_merge(acc, CLSM_SHARD_STATS, P, part, merged);
  }
  /* 3. finish on every shard: the same loss on each (the first one's is
   * kept), the shard's gradient columns. */
  for (int r = 0; r < k; ++r) {
    int64_t sh[CLSM_MAX_RANK], c0, c1;
    shard_shape(shape, rank, axis, C, k, r, sh, &c0, &c1);
    const clsm_shard d = {c0, C};
    if (grad && !(g = malloc((size_t)(outer * (c1 - c0) * inner) * es + 1))) goto oom;
    st = clsm_cross_entropy_finish_host(s->ctx[r], dtype, rank, sh, xs[r], tdtype,
                                        prob ? qs[r] : target, &d, opt, weight, merged,
                                        r ? NULL : loss, g, grad ? dloss : NULL, NULL, NULL);
    if (st != CLSM_SUCCESS) {
      *failed = r;
      goto out;
    }
    if (grad) put(grad, g, es, outer, C, inner, c0, c1);
    free(g);
    g = NULL;
    if (!grad) break; /* the loss alone: one finish gives it */
  }
  goto out;
oom:
  st = CLSM_ERR_OUT_OF_HOST_MEMORY;
out:
  for (int r = 0; r < k; ++r) free(xs[r]), free(qs[r]);
  free(merged), free(part), free(g);
  return st;
}

clsm_status tool_rowop_sharded(tool_shards *s, clsm_shard_op op, clsm_dtype dtype, int rank,
                               const int64_t *shape, int dim, unsigned flags, const void *a,
                               const void *b, void *out, int *failed) {
  const int k = s->k, backward = op >= CLSM_SHARD_SOFTMAX_BACKWARD;
  const int d = rank == 0 ? 0 : dim < 0 ? dim + rank : dim;
  int64_t outer, C, inner;
  split_shape(rank, shape, d, &outer, &C, &inner);
  const int64_t rows = outer * inner;
  const size_t es = clsm_dtype_size(dtype);
  const clsm_dtype acc = dtype == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  const size_t as = clsm_dtype_size(acc), sbytes = (size_t)rows * 2 * as + 1;
  clsm_status st = CLSM_SUCCESS;
  void *as_[TOOL_MAX_SHARDS] = {0}, *bs[TOOL_MAX_SHARDS] = {0};
  void *merged = malloc(sbytes), *part = malloc(sbytes), *o = NULL;
  *failed = 0;
  if (!merged || !part) goto oom;
  for (int r = 0; r < k; ++r) {
    const int64_t c0 = bound(C, k, r), c1 = bound(C, k, r + 1);
    if (!(as_[r] = take(a, es, outer, C, inner, c0, c1))) goto oom;
    if (backward && !(bs[r] = take(b, es, outer, C, inner, c0, c1))) goto oom;
  }
  for (int r = 0; r < k; ++r) {
    int64_t sh[CLSM_MAX_RANK], c0, c1;
    shard_shape(shape, rank, d, C, k, r, sh, &c0, &c1);
    st = clsm_softmax_partial_host(s->ctx[r], op, dtype, rank, sh, dim, as_[r], bs[r],
                                   r ? part : merged);
    if (st != CLSM_SUCCESS) {
      *failed = r;
      goto out;
    }
    if (!r) continue;
    if (!backward) {
      clsm_shard_merge(acc, 2, rows, part, merged);
    } else {
      for (int64_t i = 0; i < 2 * rows; ++i) {
        if (acc == CLSM_FLOAT32) ((float *)merged)[i] += ((const float *)part)[i];
        else ((double *)merged)[i] += ((const double *)part)[i];
      }
    }
  }
  for (int r = 0; r < k; ++r) {
    int64_t sh[CLSM_MAX_RANK], c0, c1;
    shard_shape(shape, rank, d, C, k, r, sh, &c0, &c1);
    if (!(o = malloc((size_t)(outer * (c1 - c0) * inner) * es + 1))) goto oom;
    st = clsm_softmax_finish_host(s->ctx[r], op, dtype, rank, sh, dim, flags, as_[r], bs[r],
                                  merged, o);
    if (st != CLSM_SUCCESS) {
      *failed = r;
      goto out;
    }
    put(out, o, es, outer, C, inner, c0, c1);
    free(o);
    o = NULL;
  }
  goto out;
oom:
  st = CLSM_ERR_OUT_OF_HOST_MEMORY;
out:
  for (int r = 0; r < k; ++r) free(as_[r]), free(bs[r]);
  free(merged), free(part), free(o);
  return st;
}
