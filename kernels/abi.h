/* abi.h: what the host and the kernels agree on, defined once. The host
 * includes it; every program is built with it as its first source. It holds
 * the kernel names, the flags and constants that travel through kernel
 * arguments, the scratch and deferred-flag layouts, and cross-entropy's
 * parameter struct. Nothing here depends on the dtype a program is built for. */
#ifndef CLSM_ABI_H
#define CLSM_ABI_H

/* Every kernel entry point, in clsm_kernel_id order: X(ID, name), the
 * kernel's function being clsm_<name>. Each backward row kernel sits
 * K_BACKWARD after its forward twin; the row-op program holds the kernels
 * before K_CE_PREP, the cross-entropy program those from it on. */
#define CLSM_KERNEL_LIST(X)                                                                  \
  X(ROWS_CPU, softmax_rows_cpu)   /* CPU family, contiguous last axis: a work-item a row */  \
  X(INNER_CPU, softmax_inner_cpu) /* CPU family, inner > 1: a block of inner positions */     \
  X(ROWS_WG, softmax_rows_wg)     /* GPU family: work-group rows, local-memory reduction */   \
  X(STRIDED, softmax_strided)     /* any family, (outer, C, inner) strides: a work-item a row */ \
  X(GENERIC, softmax_generic)     /* any view: rows found by decomposing the row index */     \
  X(BACKWARD, backward_rows_cpu)  /* K_BACKWARD + a forward id: its backward */               \
  X(BWD_INNER_CPU, backward_inner_cpu)                                                       \
  X(BWD_ROWS_WG, backward_rows_wg)                                                           \
  X(BWD_STRIDED, backward_strided)                                                           \
  X(BWD_GENERIC, backward_generic)                                                           \
  X(SPLIT_PARTIALS, softmax_split_partials)   /* long rows split: partial (max, sum) */       \
  X(SPLIT_WRITE, softmax_split_write)         /* ... merged; each work-item its chunk */      \
  X(BSPLIT_PARTIALS, backward_split_partials) /* the same for the backward ops */             \
  X(BSPLIT_WRITE, backward_split_write)                                                      \
  X(CE_PREP, ce_prep)           /* cross-entropy: targets validated, weights and counts */   \
  X(CE_REDUCE, ce_reduce)       /* one work-group: scratch arrays into totals */             \
  X(CE_FINISH, ce_finish)       /* the loss output */                                        \
  X(CE_STRIDED, ce_strided)     /* rows, any strides: a work-item a position */              \
  X(CE_ROWS_CPU, ce_rows_cpu)   /* CPU family, contiguous rows: a work-item a row */         \
  X(CE_ROWS_WG, ce_rows_wg)     /* GPU family: a work-group a row */                         \
  X(CE_INNER_CPU, ce_inner_cpu) /* CPU family, class axis not last: a block of positions */  \
  X(CE_ROWS_LONG_CPU, ce_rows_long_cpu) /* rows_cpu reading long rows once for (max, sum) */ \
  X(CE_ROWS16_CPU, ce_rows16_cpu)       /* rows_cpu with CE_ROWS short rows a work-item */   \
  X(CE_SPLIT_PARTIALS, ce_split_partials) /* few long rows split: partial (max, sum) */      \
  X(CE_SPLIT_ROWS, ce_split_rows) /* ... merged; each work-item's gradient chunk */       \
  X(CE_SHARD_PARTIAL, ce_shard_partial) /* sharded classes: a position's statistics */      \
  X(CE_SHARD_ROWS, ce_shard_rows)       /* ... merged: loss parts, lse, the shard's gradient */ \
  X(SM_SHARD_PARTIAL, sm_shard_partial) /* sharded softmax axis: lse, or the backward's sum */ \
  X(SM_SHARD_FINISH, sm_shard_finish)   /* ... merged: the shard's y or dx */                \
  X(CE_SHARD_PARTIAL_WG, ce_shard_partial_wg) /* the same, GPU family: a work-group a row */ \
  X(CE_SHARD_ROWS_WG, ce_shard_rows_wg)                                                      \
  X(SM_SHARD_PARTIAL_WG, sm_shard_partial_wg)                                                \
  X(SM_SHARD_FINISH_WG, sm_shard_finish_wg)                                                  \
  X(ATTN_ROWS_CPU, attn_rows_cpu) /* attention softmax, CPU family: a work-item a row */    \
  X(ATTN_ROWS_WG, attn_rows_wg)   /* attention softmax, GPU family: work-group rows */      \
  X(ATTN_BWD_CPU, attn_bwd_rows_cpu) /* its backward, CPU family */                         \
  X(ATTN_BWD_WG, attn_bwd_rows_wg)   /* its backward, GPU family */                         \
  X(ATTN_DSINKS, attn_dsinks)        /* the backward's per-row sink terms summed per head */ \
  CLSM_REG_KERNELS(X)

/* GPU family, rows held in registers (rows_reg.cl): a program of its own
 * per variant (values a lane, 16-byte or scalar loads, group size:
 * clsm__reg_variants), each with CLSM_REG_PER kernels: softmax,
 * log-softmax and cross-entropy with index targets; K_REG<n> is variant
 * n's softmax, K_REG<n>_LOG its log-softmax, K_REG<n>_CE its cross-entropy. */
#define CLSM_REG_VARIANTS 8
#define CLSM_REG_PER 3
#define CLSM_REG_SET_(X, n)                                                                   \
  X(REG##n, softmax_reg) X(REG##n##_LOG, log_softmax_reg) X(REG##n##_CE, ce_reg)
#define CLSM_REG_KERNELS(X)                                                                  \
  CLSM_REG_SET_(X, 0) CLSM_REG_SET_(X, 1) CLSM_REG_SET_(X, 2) CLSM_REG_SET_(X, 3)            \
  CLSM_REG_SET_(X, 4) CLSM_REG_SET_(X, 5) CLSM_REG_SET_(X, 6) CLSM_REG_SET_(X, 7)

/* Row-op flags (uint argument `flags`). */
#define F_LOG 1u       /* log_softmax instead of softmax */
#define F_SAFE 2u      /* an all -inf row gives 0 / -inf instead of NaN */
#define F_RECOMPUTE 4u /* softmax computes exp twice instead of storing and rescaling y
                          (16-bit outputs; rows too long to stay in cache); inner_cpu
                          log-softmax reads x again instead of keeping x - m in y */
#define F_BLOCKS 8u    /* softmax, float32 / float64 y: a long row in cache-sized blocks,
                          or split rows keeping exp in y between their two kernels */
#define F_TILE 32u     /* inner_cpu: a block through a tile in local memory */
#define F_NT 64u       /* the writing pass stores y non-temporally (CPU devices) */
#define F_NV_SHIFT 8     /* inner_cpu: bits 8-15 hold the vectors per block */
#define F_LANES_SHIFT 16 /* rows_wg, rows_reg: bits 16-20 hold log2 of the lanes per row */

/* Attention-softmax flags (clsm_attn_params.flags): F_LOG, F_SAFE and the
 * lanes of F_LANES_SHIFT as for the row ops, and: */
#define A_KEEP 4u     /* z is kept in y (or local scratch) between the passes over a row */
#define A_CAUSAL 8u   /* keys past i + offset are masked: the row ends there */
#define A_ALIBI 16u   /* z -= slope_h |i + offset - j| */
#define A_LSE 32u     /* write the row's log-sum-exp */
#define A_DSINKS 64u  /* backward: each row's sink term to scratch */
#define A_U32 128u    /* rows < 2^32: rows are decomposed in 32-bit arithmetic */

/* Mask kinds (clsm_attn_params.mkind) and sink kinds (skind). */
#define MK_NONE 0
#define MK_F32 1
#define MK_F16 2
#define MK_BF16 3
#define MK_BOOL 4 /* uint8: 0 masks the entry out (z = -inf), anything else keeps it */
#define SK_NONE 0
#define SK_F32 1
#define SK_TX 2   /* the sinks have x's dtype */

/* Cross-entropy flags (clsm_ce_params.flags). */
#define CE_WEIGHT 1u    /* w is given */
#define CE_GRAD 2u      /* write the gradient */
#define CE_LOSS 4u      /* write l_n, z_n to scratch */
#define CE_LSE 8u       /* write lse */
#define CE_SOFTCAP 16u  /* cap > 0 */
#define CE_G_SCALAR 32u /* upstream gradient: one value */
#define CE_G_POS 64u    /* upstream gradient: one per position */
#define CE_MEAN 128u    /* divide by W and Z */
#define CE_KEEP 256u    /* store exp(x' - m) in the gradient (or local scratch), rescale it */
#define CE_REDUCED 512u /* finish: the loss is one value (mean or sum) */
#define CE_LOSS_OUT 1024u /* finish: write the loss output */
#define CE_TW_OUT 2048u   /* finish: write the total weight */
#define CE_NV_SHIFT 16    /* ce_inner_cpu: bits 16-23 hold the vectors per block */
#define CE_LANES_SHIFT 16 /* ce_reg: bits 16-20 hold log2 of the lanes per row */
/* Sharded softmax axis (sm_shard_*, F_LOG and F_SAFE as for the row ops):
 * the backward ops (a = y, b = dy) instead of the forward (a = x). */
#define SH_BACKWARD 4096u
/* Values a position's sharded cross-entropy statistics hold (CLSM_SHARD_STATS
 * in clsoftmax.h): max, sum of exp, target logit, sum w x', sum w
 * (probabilities: w q'). A sharded softmax row's: max, sum of exp (the
 * backward's: S, the count of y > -inf). */
#define SHARD_K 5
#define SHARD_SM_K 2

/* Target kinds (clsm_ce_params.tkind): class indices of int64, int32 or
 * uint8, or class probabilities. */
#define TK_INT64 0
#define TK_INT32 1
#define TK_UINT8 2
#define TK_PROB 3

/* Geometry the host plans and the kernels assume. */
#define ROW_VPT 8        /* values a rows_wg lane loads at a time */
#define REG_RADIX 16     /* pairs a rows_reg lane merges a level (rows_reg.cl) */
#define REG_CE_WG 256    /* most lanes a group of the variants with ce_reg */
#define BWD_VPT 16       /* values a backward rows_wg lane keeps */
#define ONLINE_CHUNK 32  /* vectors a chunk of the one-read (max, sum) loop */
#define ONLINE_ROW 512   /* rows this long take (max, sum) in one read (16 * ONLINE_CHUNK) */
#define INNER_CHUNK 4    /* rows a tile loads at a time */
#define TILE_VECTORS 32  /* most vectors a row of a tile (2 KB runs of float32) */
#define CE_ROWS 16       /* rows a ce_rows16_cpu work-item */
#define INNER_VECTORS_DEFAULT 32 /* most vectors an inner block (CLSM_INNER_VECTORS) */

/* Cross-entropy scratch, in compute-type values: [0,P) w_n, [P,2P) c_n,
 * [2P,3P) l_n, [3P,4P) z_n, then CE_TOTALS totals (W, count, sum l, sum z);
 * split rows put their chunks' (max, sum) pairs and target logits after. */
#define CE_ARRAYS 4
#define CE_TOTALS 4

/* A call's deferred-error flag: ints; [0] raised, [2..3] the position and
 * [4..5] the value of the first bad target (low, high halves). */
#define CLSM_FLAG_INTS 8
#define CLSM_FLAG_POS 2
#define CLSM_FLAG_VALUE 4

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
typedef long clsm_abi_long;
typedef ulong clsm_abi_ulong;
typedef uint clsm_abi_uint;
typedef int clsm_abi_int;
typedef float clsm_abi_float;
#else
#include <CL/cl_platform.h>
typedef cl_long clsm_abi_long;
typedef cl_ulong clsm_abi_ulong;
typedef cl_uint clsm_abi_uint;
typedef cl_int clsm_abi_int;
typedef cl_float clsm_abi_float;

#endif

/* Cross-entropy's kernel parameters, passed by value to every kernel of its
 * pipeline but the reduction. 8-byte fields first, then an even number of
 * 4-byte ones: the layout is the same for the host's compiler and the
 * device's. Element offsets and strides are in elements of each tensor:
 * x the logits (outer, C, inner), t the targets (per position, or the
 * logits' shape for probabilities: tsc), g the gradient, gs the upstream
 * gradient, lse, the per-position loss l and w the weights. */
typedef struct clsm_ce_params {
  clsm_abi_ulong xoff, toff, woff, goff, gsoff, lseoff, loff, twoff;
  clsm_abi_long xso, xsc, xsi, tso, tsc, tsi, gso, gsc, gsi, gsso, gssi, lseso, lsesi, lso, lsi;
  clsm_abi_long P, outer, C, inner, ignore, chunk, chunks;
  clsm_abi_long first, classes; /* sharded: the shard's first class and the total count
                                   (unsharded: 0 and C) */
  clsm_abi_ulong stoff;         /* sharded: the statistics' first element */
  clsm_abi_ulong eps_bits, z_bits, cap_bits; /* the double values (float64 programs) */
  clsm_abi_float eps, z, cap;                /* the same in float (other programs) */
  clsm_abi_uint flags;
  clsm_abi_int tkind, unused_;
} clsm_ce_params;


/* Attention softmax's kernel parameters, by value. A row is found by
 * decomposing its index over the nd non-key dims (innermost first, sizes
 * in shape); tensor t's element (row digits k, key j) is at
 * off[t] + sum_d k_d st[t][d] + j sc[t]. Forward tensors: 0 x, 1 y, 2 the
 * mask (stride 0 over broadcast dims), 3 lse (no key axis); backward: 0 y,
 * 1 dy, 2 dx. The query index is the row's digit qd (-1: 0), the head its
 * digit hdg (-1: 0); the rows of head h are (a * heads + h) * hdiv + b.
 * Slopes and sinks: (H) vectors at aoff, soff with strides ast, sst. */
typedef struct clsm_attn_params {
  clsm_abi_long shape[8];
  clsm_abi_long st[4][8];
  clsm_abi_ulong off[4];
  clsm_abi_long sc[4];
  clsm_abi_long rows, C, hdiv, heads, offset, aoff, ast, soff, sst;
  clsm_abi_ulong scale_bits; /* the double scale (float64 programs) */
  clsm_abi_float scale;      /* the same in float (other programs) */
  clsm_abi_uint flags;
  clsm_abi_int nd, mkind, skind, qd, hdg, unused_;
} clsm_attn_params;


#endif
