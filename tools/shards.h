/* The tool's --shards K: a class or softmax axis split over K contexts. */
#ifndef CLSM_SHARDS_H
#define CLSM_SHARDS_H

#include "args.h"
#include "tool.h"

typedef struct tool_shards {
  int k;
  clsm_context *ctx[TOOL_MAX_SHARDS];
} tool_shards;

/* K contexts, round-robin over the comma-separated device specs in `spec`
 * (NULL: K on the default device). Returns 0 after printing why when one
 * cannot be opened. */
int tool_shards_open(tool_shards *s, int k, const char *spec);
void tool_shards_close(tool_shards *s);

/* Cross-entropy with shard r's classes [C r / K, C (r + 1) / K) on
 * context r: partial, merge, finish. Arguments as clsm_cross_entropy_host
 * (weights of every class); *failed is the shard whose call failed. */
clsm_status tool_ce_sharded(tool_shards *s, clsm_dtype dtype, int rank, const int64_t *shape,
                            const void *logits, clsm_dtype tdtype, const void *target,
                            const clsm_ce_options *opt, const void *weight, void *loss, void *grad,
                            const void *dloss, int *failed);

/* Softmax, log-softmax or their backward (op) along a sharded dim. */
clsm_status tool_rowop_sharded(tool_shards *s, clsm_shard_op op, clsm_dtype dtype, int rank,
                               const int64_t *shape, int dim, unsigned flags, const void *a,
                               const void *b, void *out, int *failed);

#endif
