/* The planner's inputs and outputs. Planning is a pure function of an
 * operation (its checked tensors and views), the device's capabilities and
 * the tuning choices: it reads no OpenCL object, so that tests can plan for
 * described devices. A plan lists every kernel launch of a call with its
 * geometry and arguments by name; clsm__run_plan (exec.c) executes it and
 * decides nothing. */
#ifndef CLSM_PLAN_H
#define CLSM_PLAN_H

#include "abi.h"
#include "clsoftmax.h"

#include <stddef.h>
#include <stdint.h>

/* Kernel entry points (abi.h's list): K_<ID>. */
typedef enum clsm_kernel_id {
#define CLSM_X_(id, name) K_##id,
  CLSM_KERNEL_LIST(CLSM_X_)
#undef CLSM_X_
  K_COUNT_
} clsm_kernel_id;

/* Programs by kernel group: row operations, cross-entropy, attention
 * softmax (built only when an attention call needs it), then one per
 * register-held rows variant (GPU family, built when a plan takes it). */
enum { G_ROW = 0, G_CE = 1, G_ATTN = 2, G_REG0 = 3, CLSM_GROUP_COUNT = 3 + CLSM_REG_VARIANTS };
#define CLSM_KERNEL_GROUP(id)                                                                \
  ((id) >= K_REG0 ? G_REG0 + ((id) - K_REG0) / CLSM_REG_PER                                  \
   : (id) >= K_ATTN_ROWS_CPU ? G_ATTN : (id) >= K_CE_PREP ? G_CE : G_ROW)

/* A register-held rows variant: values a lane (CLSM_REG_E), 16-byte loads
 * (vec 1: CLSM_REG_V = 16 bytes of x's dtype) or scalar ones (vec 0, rows
 * not aligned to them), and the work-group size (CLSM_REG_WG). */
typedef struct clsm_reg_variant {
  int e, vec, wg;
} clsm_reg_variant;
extern const clsm_reg_variant clsm__reg_variants[CLSM_REG_VARIANTS];
/* Whether dtype program `program` has variant v (float64 holds at most 16
 * values a lane: 32 doubles take more registers than a 1024-lane group has). */
int clsm__reg_usable(int program, int v);
/* Register-held kernels by op: softmax, log-softmax, cross-entropy. */
enum { REG_SOFTMAX = 0, REG_LOG = 1, REG_CE = 2 };
/* Variant var's kernel for op `kind` (REG_*). */
clsm_kernel_id clsm__reg_kernel(int var, int kind);
/* Whether variant v's program holds kernel `id` (cross-entropy only in
 * groups of at most REG_CE_WG lanes). */
int clsm__reg_has(int v, clsm_kernel_id id);
/* Whether a tensor view's rows (base, row stride, rows of them) all start
 * on 16 bytes of dtype program `program`'s input. */
int clsm__reg_aligned(int program, uint64_t base, int64_t so, int64_t rows);
/* Elements a load of variant v in dtype program `program`. */
int clsm__reg_width(int program, int v);
/* The register cap for a group of wg lanes on a device that takes one
 * (-cl-nv-maxrregcount): what 65536 registers allow, or 0 for no cap. */
int clsm__reg_cap(int wg);
/* "clsm_softmax_rows_cpu" for K_ROWS_CPU. */
const char *clsm__kernel_name(clsm_kernel_id id);

/* Programs by (input, output) dtype pair. */
typedef enum clsm_program_id {
  P_F32 = 0, P_F16, P_BF16, P_F64, P_F16_F32, P_BF16_F32,
  CLSM_PROGRAM_COUNT
} clsm_program_id;

/* Each program's (input, output) storage dtypes. */
extern const clsm_dtype clsm__program_dtypes[CLSM_PROGRAM_COUNT][2];

/* What the planner knows of a device: queried once per context, the
 * tuning variables applied (docs/design.md lists them). */
typedef struct clsm_caps {
  clsm_family family;
  size_t max_wg_size;      /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
  uint64_t local_mem_size; /* CL_DEVICE_LOCAL_MEM_SIZE */
  unsigned compute_units;  /* CL_DEVICE_MAX_COMPUTE_UNITS */
  size_t wg_size;      /* work-group size of the work-group kernels (CLSM_WG_SIZE) */
  size_t wg_cap;       /* lanes of a one-work-group reduction (cross-entropy's totals) */
  int wg_forced;       /* CLSM_WG_SIZE was given: every work-group kernel uses wg_size */
  int inner_vectors;   /* most float16 vectors a K_INNER_CPU block (CLSM_INNER_VECTORS) */
  int split;           /* few long rows split: -1 the plan decides, 0 never, 1 always */
  int row_blocks;      /* softmax keeps exp in y for long CPU rows (CLSM_ROW_BLOCKS) */
  int forced_kernel;   /* a forward row kernel id from CLSM_KERNEL, or -1 */
  int inner_tile;      /* inner_cpu blocks through a local tile: -1 plan, 0, 1 */
  int ce_rows16;       /* cross-entropy's short rows 16 a work-item: -1 plan, 0, 1 */
  uint64_t nt_bytes;   /* outputs of at least this many bytes are stored non-temporally */
  size_t row_lanes;    /* lanes per row of the work-group row kernels; 0: from the row */
  int reg_rows;        /* GPU family: forward and CE rows held in registers when they fit (CLSM_REG_ROWS) */
} clsm_caps;

/* Described devices, as they report themselves to OpenCL, for planning
 * and listing programs without one (`clsoftmax program --profile`,
 * tests/test_plan.c): name, label, family, work-group size, local memory,
 * compute units, and whether NVIDIA's compiler options apply. */
typedef struct clsm_profile {
  const char *name, *label;
  clsm_family family;
  size_t max_wg;
  uint64_t local_mem;
  unsigned units;
  int nv;
} clsm_profile;
#define CLSM_PROFILE_COUNT 6
extern const clsm_profile clsm__profiles[CLSM_PROFILE_COUNT];
/* The profile called `name`, or NULL. */
const clsm_profile *clsm__profile(const char *name);
/* The capabilities of a device that reports these to OpenCL, with no
 * tuning variable set (clsm_context_create starts from them). */
void clsm__caps_defaults(clsm_caps *c, clsm_family family, size_t max_wg, uint64_t local_mem,
                         unsigned units);
/* The capabilities a context on that device gets with no tuning variable set. */
clsm_caps clsm__profile_caps(const clsm_profile *p);
/* Whether a device with these capabilities runs variant v of dtype program
 * `program`: the variant exists for the dtype, and the device's group size
 * and local memory (two values a lane) take its group. */
int clsm__reg_fits(const clsm_caps *caps, int program, int v);
/* The first variant for an op of `kind` on rows of C elements, L lanes a
 * row to *lanes, or -1 (plan.c: pick_reg's rules); `aligned`: every row
 * of every tensor starts on 16 bytes. */
int clsm__pick_reg(const clsm_caps *caps, const size_t *kernel_wg, int program, int64_t C,
                   int aligned, int kind, size_t *lanes);

/* CLSM_KERNEL's values, in kernel id order, NULL-terminated. */
extern const char *const clsm__forceable_kernels[K_BACKWARD + 1];

/* A tensor seen along one axis: rows of C elements, (outer, inner) positions.
 * Element (o, c, i) is at base + o*so + c*sc + i*si. */
typedef struct clsm_view {
  int64_t outer, C, inner;
  int64_t so, sc, si;
  uint64_t base;
} clsm_view;

/* A row operation, checked: its tensors (inputs first, the output last),
 * their views along the axis, and the kernel flags. */
typedef struct clsm_rowop {
  int n;                     /* 2 (x, y) or 3 (y, dy, dx) */
  int backward;
  const clsm_tensor *t[3];
  clsm_view v[3];
  int generic;               /* views failed: only the generic kernel can run it */
  int nd;                    /* generic: non-axis dims with size > 1, innermost first */
  int64_t gshape[8], gstride[3][8], gsc[3];
  int64_t rows, C;
  unsigned flags;            /* F_LOG, F_SAFE */
} clsm_rowop;

/* A per-position view: position (o, i) at base + o*so + i*si. */
typedef struct clsm_pos_view {
  cl_mem mem;
  uint64_t base;
  int64_t so, si;
} clsm_pos_view;

/* A cross-entropy call, checked (cross_entropy.c). */
typedef struct clsm_ce_call {
  const clsm_tensor *x, *t, *loss, *grad, *gs;
  const clsm_ce_options *opt;
  clsm_view xv, tv, gv;            /* logits; probability targets; gradient */
  clsm_pos_view tp, lp, gsp, lsep; /* targets, loss (none), grad_scale (none), lse */
  int prob, tkind, program, backward;
  int64_t P, C, outer, inner;
  int phase;               /* CE_PHASE_*: unsharded, a shard's partial, a shard's finish */
  int64_t first, classes;  /* the shard's first class and the class count (unsharded: 0, C) */
  const clsm_tensor *stats; /* the shard's statistics (positions, SHARD_K), contiguous */
} clsm_ce_call;
enum { CE_PHASE_NONE = 0, CE_PHASE_PARTIAL = 1, CE_PHASE_FINISH = 2 };

/* A sharded softmax-axis call, checked (shard.c): a (x, or y for the
 * backward), b (dy), out (y or dx; NULL for the partial) and the per-row
 * statistics (contiguous, the rows' shape). */
typedef struct clsm_sm_shard_call {
  const clsm_tensor *a, *b, *out, *stats;
  clsm_view av, bv, ov;
  int program, finish;
  unsigned flags; /* F_LOG, F_SAFE, SH_BACKWARD */
  int64_t rows;
} clsm_sm_shard_call;

/* An attention-softmax call, checked (attention.c): its buffers and the
 * kernel parameters, complete but for what the planner adds (A_KEEP, the
 * lanes of a row). */
typedef struct clsm_attn_call {
  int backward, program;
  clsm_dtype out_dtype;  /* y (forward) or dx (backward) */
  cl_mem mem[3];         /* forward: x, y; backward: y, dy, dx */
  cl_mem mask, slopes, sinks, lse, dsinks;
  clsm_attn_params p;
} clsm_attn_call;

/* A kernel argument: a caller's buffer, the context's scratch buffer, the
 * call's deferred-error flag, a value (bytes in the plan's data) or local
 * memory of `size` bytes. */
enum { ARG_MEM, ARG_SCRATCH, ARG_FLAG, ARG_VALUE, ARG_LOCAL };
typedef struct clsm_arg {
  const char *name;
  int kind;
  size_t size, off; /* ARG_VALUE: bytes at data + off; ARG_LOCAL: bytes */
  cl_mem mem;
} clsm_arg;

#define CLSM_MAX_ARGS 24
#define CLSM_MAX_STAGES 6
typedef struct clsm_stage {
  clsm_kernel_id kernel;
  size_t global, local; /* a 1-D launch; local 0 lets the runtime choose */
  unsigned flags;       /* the kernel's flags argument, for descriptions */
  int nargs;
  clsm_arg args[CLSM_MAX_ARGS];
} clsm_stage;

typedef struct clsm_plan {
  const char *op;       /* "softmax", "cross_entropy", ... */
  int program;          /* clsm_program_id */
  size_t scratch_bytes; /* the context's scratch buffer, at least */
  int empty;            /* nothing to compute: a marker honours the wait list */
  int overflow;         /* more stages, arguments or argument bytes than a plan holds */
  int nstages;
  clsm_stage stage[CLSM_MAX_STAGES];
  size_t data_used;
  _Alignas(16) unsigned char data[2048];
} clsm_plan;

/* Plans a row operation. kernel_wg[id] is each kernel's work-group limit
 * in this program (CL_KERNEL_WORK_GROUP_SIZE), or NULL for the device's. */
void clsm__plan_rowop(const clsm_caps *caps, const size_t *kernel_wg, const clsm_rowop *op,
                      int program, clsm_plan *plan);
/* Plans a cross-entropy call (forward, fused gradient, or backward). */
void clsm__plan_ce(const clsm_caps *caps, const size_t *kernel_wg, const clsm_ce_call *c,
                   clsm_plan *plan);

/* Plans a sharded softmax-axis call's one stage (plan_ce.c). */
void clsm__plan_sm_shard(const clsm_caps *caps, const size_t *kernel_wg,
                         const clsm_sm_shard_call *c, clsm_plan *plan);

/* Plans an attention-softmax call (forward or backward; plan_attn.c). */
void clsm__plan_attn(const clsm_caps *caps, const size_t *kernel_wg, const clsm_attn_call *c,
                     clsm_plan *plan);

/* Building blocks of the plans (plan.c). */
clsm_stage *clsm__plan_stage(clsm_plan *plan, clsm_kernel_id k, size_t global, size_t local);
void clsm__arg_mem(clsm_plan *plan, clsm_stage *s, const char *name, cl_mem mem);
void clsm__arg_kind(clsm_plan *plan, clsm_stage *s, const char *name, int kind);
void clsm__arg_value(clsm_plan *plan, clsm_stage *s, const char *name, const void *v, size_t size);
void clsm__arg_local(clsm_plan *plan, clsm_stage *s, const char *name, size_t bytes);
#define CLSM_ARG_LONG(plan, s, name, v)                                                      \
  do {                                                                                       \
    const cl_long v_ = (cl_long)(v);                                                          \
    clsm__arg_value((plan), (s), (name), &v_, sizeof v_);                                    \
  } while (0)
#define CLSM_ARG_INT(plan, s, name, v)                                                       \
  do {                                                                                       \
    const cl_int v_ = (cl_int)(v);                                                            \
    clsm__arg_value((plan), (s), (name), &v_, sizeof v_);                                    \
  } while (0)

/* Shared geometry rules. */
size_t clsm__cpu_local(const clsm_caps *caps, size_t items);
size_t clsm__row_scratch(const clsm_caps *caps, size_t *local, int64_t C, size_t acc);
int64_t clsm__split_len(const clsm_caps *caps, int64_t rows, int64_t C);
int clsm__inner_nv(const clsm_caps *caps, int64_t inner);
size_t clsm__row_lanes(const clsm_caps *caps, int64_t C, size_t local, int vpt);
/* A work-group row kernel k's geometry: the group size (the device's
 * wg_size, halved below the kernel's limit) into *local, rows of lanes
 * enough for `vpt` values each (their log2 into *flags' F_LANES_SHIFT bits),
 * local / lanes rows a group; returns the global size. */
size_t clsm__wg_rows(const clsm_caps *caps, const size_t *kernel_wg, clsm_kernel_id k, int64_t C,
                     int64_t rows, int vpt, size_t *local, unsigned *flags);
/* A kernel's work-group limit: kernel_wg[k] when known, else the device's. */
size_t clsm__kernel_limit(const clsm_caps *caps, const size_t *kernel_wg, clsm_kernel_id k);

/* Rows (or tiles of inner positions) larger than this are not kept in an
 * output buffer to be rescaled: they no longer stay in cache. */
#define KEEP_BYTES (128u * 1024u)
#define KEEP_INNER_BYTES (1024u * 1024u) /* inner_cpu keeps exp(x - m) in y up to this tile */

/* One line describing a plan (for the plan hook and clsoftmax --verbose). */
void clsm__plan_text(const clsm_plan *plan, char *buf, size_t size);

#endif
