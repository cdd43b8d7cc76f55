/* Library-internal declarations shared by the host/ sources: the context's
 * layout, error recording, tensor views and kernel plans. */
#ifndef CLSM_INTERNAL_H
#define CLSM_INTERNAL_H

#include "clsoftmax.h"
#include "kernels.h"

#include <pthread.h>
#include <stdarg.h>

/* Kernel entry points; the order matches kernel_names in program.c. Each
 * backward kernel sits K_BACKWARD after its forward twin. */
typedef enum clsm_kernel_id {
  K_ROWS_CPU = 0,  /* CPU family, contiguous last axis: a work-item per row */
  K_INNER_CPU,     /* CPU family, inner > 1: a work-item per block of inner positions */
  K_ROWS_WG,       /* GPU family: a work-group per row, local-memory reduction */
  K_STRIDED,       /* any family, (outer, C, inner) strides: a work-item per row */
  K_GENERIC,       /* any view: rows found by decomposing the row index */
  K_BACKWARD,      /* first backward kernel: K_BACKWARD + forward id */
  K_CE_PREP = 2 * K_BACKWARD, /* cross-entropy (ce.cl) */
  K_CE_REDUCE,
  K_CE_FINISH,
  K_CE_STRIDED,
  K_CE_ROWS_CPU,
  K_CE_ROWS_WG,
  K_CE_INNER_CPU,   /* CPU family, class axis not last: a block of positions */
  K_SPLIT_PARTIALS, /* a long row split over work-items: partial (max, sum) */
  K_SPLIT_WRITE,    /* ... merged, then each work-item writes its chunk */
  K_BSPLIT_PARTIALS, /* the same for the backward ops: partial sums and max of y */
  K_BSPLIT_WRITE,
  K_CE_ROWS_LONG_CPU, /* K_CE_ROWS_CPU reading long rows once for (max, sum) */
  K_CE_ROWS16_CPU,    /* K_CE_ROWS_CPU with 16 short rows a work-item */
  K_CE_SPLIT_PARTIALS, /* cross-entropy's few long rows split: partial (max, sum) */
  K_CE_SPLIT_ROWS,     /* ... merged; each work-item's gradient chunk, chunk 0 the loss */
  K_COUNT_
} clsm_kernel_id;

/* Programs, one per (input dtype, output dtype) pair the ops accept. */
typedef enum clsm_program_id {
  P_F32 = 0, P_F16, P_BF16, P_F64, P_F16_F32, P_BF16_F32,
  CLSM_PROGRAM_COUNT
} clsm_program_id;

/* The program for an (input, output) dtype pair; -1 if there is none. */
int clsm__program_for(clsm_dtype in, clsm_dtype out);

struct clsm_context {
  cl_platform_id platform;
  cl_device_id device;
  cl_context cl_ctx;
  cl_command_queue queue;
  clsm_family family;
  cl_device_type device_type;
  char device_name[256];
  size_t max_wg_size;
  cl_ulong local_mem_size;
  cl_ulong max_alloc;
  cl_uint compute_units;
  int profiling; /* the queue has CL_QUEUE_PROFILING_ENABLE */
  int has_fp64;  /* cl_khr_fp64 */

  /* Tunables, from device queries, overridable through the environment. */
  size_t wg_size;      /* work-group size of the work-group kernels (CLSM_WG_SIZE) */
  size_t wg_cap;       /* lanes of a one-work-group reduction (cross-entropy's totals) */
  int wg_forced;       /* CLSM_WG_SIZE was given: every work-group kernel uses wg_size */
  int inner_vectors;   /* most float16 vectors per K_INNER_CPU block (CLSM_INNER_VECTORS) */
  int split;           /* few long rows split: -1 when the plan decides, 0 never, 1 always (CLSM_SPLIT) */
  int row_blocks;      /* softmax keeps exp in y for long CPU rows, in cache-sized blocks or
                          split chunks (CLSM_ROW_BLOCKS=0 turns both off) */
  int forced_kernel;   /* a clsm_kernel_id from CLSM_KERNEL, or -1 */
  int packed_stores;   /* kernels store vectors through packed structs: CPU devices
                          (CLSM_PACKED_STORES=0|1) */
  int inner_tile;      /* inner_cpu blocks go through a tile in local memory (CLSM_INNER_TILE=0|1) */
  int ce_rows16;       /* cross-entropy's short rows 16 a work-item: -1 when the plan
                          decides, 0 never, 1 wherever the kernel allows (CLSM_CE_ROWS16) */
  int cpu_builtins;    /* kernels may use clang's prefetch and non-temporal stores (CPU devices) */
  cl_ulong nt_bytes;   /* outputs of at least this many bytes are stored non-temporally:
                          the cache's size (CLSM_NT_STORES=0 never, 1 any size) */
  size_t row_lanes;    /* lanes per row of the work-group row kernels; 0: from the row
                          length (CLSM_ROW_LANES) */

  pthread_mutex_t lock; /* guards everything below and every enqueue */
  cl_program programs[CLSM_PROGRAM_COUNT];
  cl_kernel kernels[CLSM_PROGRAM_COUNT][K_COUNT_];
  char error[1024];
  cl_int cl_error;
  char *build_log;
  clsm_check *calls;    /* deferred checks not yet reported (deferred.c), newest first */
  clsm_check *spare;    /* records of passed calls, their flag buffers still zero */
  int spare_count;
  unsigned long long call_seq; /* calls with a deferred check, numbered from 1 */
  cl_mem scratch;       /* per-call partials: cross-entropy's, split rows' (grown as needed) */
  size_t scratch_bytes;

  /* Test hooks: CLSM_TEST_FAIL_ALLOC=n fails the n-th host allocation,
   * CLSM_TEST_FAIL_CL=n the n-th OpenCL create call (CL_OUT_OF_RESOURCES). */
  long fail_alloc, alloc_count;
  long fail_cl, cl_count;
  long max_buffer; /* CLSM_TEST_MAX_BUFFER: the library's own buffers above this fail */
};

/* Grows ctx->scratch to at least `bytes` (the old buffer is freed by OpenCL
 * once the commands using it finish). Lock held. */
clsm_status clsm__scratch(clsm_context *ctx, size_t bytes);

/* Deferred device-side checks (deferred.c), lock held throughout. A call
 * takes a record (begin), passes its flag buffer to its kernels, and after
 * enqueueing them commits it (a non-blocking read of the flag behind the
 * call; `handle`, when not NULL, receives it for clsm_check_wait) or, when
 * enqueueing failed, aborts it. */
clsm_status clsm__call_begin(clsm_context *ctx, clsm_check **out);
cl_mem clsm__call_flag(const clsm_check *c);
clsm_status clsm__call_commit(clsm_context *ctx, clsm_check *c, clsm_check **handle);
void clsm__call_abort(clsm_check *c);
/* After clFinish: reports (into the error detail) and retires the failed
 * calls of the calling thread, or of every thread when `all` is 1. */
clsm_status clsm__calls_report(clsm_context *ctx, int all);
/* Frees every record (the context's end). */
void clsm__calls_release(clsm_context *ctx);
/* Batch size for CPU-family work-items (plan.c). */
size_t clsm__cpu_local(const clsm_context *ctx, size_t items);

/* Whether the test hook fails this OpenCL create call; sets *err if so. */
int clsm__inject_cl(clsm_context *ctx, cl_int *err);
/* The same for a buffer of `bytes` the library allocates for itself. */
int clsm__inject_buffer(clsm_context *ctx, size_t bytes, cl_int *err);

/* malloc that honours the test hook. Lock held. */
void *clsm__malloc(clsm_context *ctx, size_t size);

/* Records a failure in ctx (lock held) and returns `status`. */
clsm_status clsm__fail(clsm_context *ctx, clsm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Records a failed OpenCL call (lock held) and returns CLSM_ERR_OPENCL. */
clsm_status clsm__cl_fail(clsm_context *ctx, cl_int err, const char *call, const char *file,
                          int line);

/* Runs an OpenCL call; on failure records it and jumps to `fail` with `st` set. */
#define CLSM_CL(ctx, call)                                                    \
  do {                                                                        \
    cl_int clsm_err_ = (call);                                                \
    if (clsm_err_ != CL_SUCCESS) {                                            \
      st = clsm__cl_fail((ctx), clsm_err_, #call, __FILE__, __LINE__);        \
      goto fail;                                                              \
    }                                                                         \
  } while (0)

/* Same, for a create call whose error came back through `err`. */
#define CLSM_CL_ERR(ctx, err, name)                                           \
  do {                                                                        \
    if ((err) != CL_SUCCESS) {                                                \
      st = clsm__cl_fail((ctx), (err), name, __FILE__, __LINE__);             \
      goto fail;                                                              \
    }                                                                         \
  } while (0)

/* Kernel argument setting in one line, for the common case. */
#define CLSM_ARG(ctx, k, i, v) CLSM_CL(ctx, clSetKernelArg((k), (i), sizeof(v), &(v)))

/* A tensor seen along one axis: rows of C elements, (outer, inner) positions.
 * Element (o, c, i) is at base + o*so + c*sc + i*si. */
typedef struct clsm_view {
  int64_t outer, C, inner;
  int64_t so, sc, si;
  uint64_t base;
} clsm_view;

/* Total element count of a tensor (1 for rank 0); -1 on overflow. */
int64_t clsm__numel(const clsm_tensor *t);

/* Checks a tensor descriptor: non-NULL cl_mem, rank, shape >= 0, strides >= 0,
 * dtype among `allowed` (bit mask of 1u << dtype; float64 also needs the
 * device's cl_khr_fp64) and every reachable element inside the cl_mem. `what`
 * names it in the error detail. */
clsm_status clsm__check_tensor(clsm_context *ctx, const clsm_tensor *t, unsigned allowed,
                               const char *what);
/* The two halves of clsm__check_tensor: the descriptor alone (NULLs, rank,
 * dtype, shape, strides), and its cl_mem (the library's cl_context, every
 * reachable element inside it). Operations check every descriptor and their
 * agreement before any cl_mem, so that a mismatch is named as such. */
clsm_status clsm__check_desc(clsm_context *ctx, const clsm_tensor *t, unsigned allowed,
                             const char *what);
clsm_status clsm__check_mem(clsm_context *ctx, const clsm_tensor *t, const char *what);
/* "(3, 4)": a tensor's shape for messages. */
void clsm__shape_str(const clsm_tensor *t, char *buf, size_t size);
/* CLSM_ERR_SHAPE_MISMATCH: "a has shape (..) but b has shape (..)". */
clsm_status clsm__fail_shapes(clsm_context *ctx, const char *an, const clsm_tensor *a,
                              const char *bn, const clsm_tensor *b);
/* Normalises dim in [-rank, rank-1] (rank 0 counts as rank 1) into *out. */
clsm_status clsm__check_dim(clsm_context *ctx, int rank, int dim, int *out);
/* An output view must not overlap itself, nor overlap `in` unless it is exactly `in`. */
clsm_status clsm__check_output(clsm_context *ctx, const clsm_tensor *out, const char *on,
                               const clsm_tensor *in, const char *in_name);
/* Collapses dims [from, to) into one (count, stride); 0 when their strides
 * do not describe one arithmetic sequence. */
int clsm__collapse(const clsm_tensor *t, int from, int to, int64_t *count, int64_t *stride);
/* The (outer, C, inner) view of a checked tensor along normalised `dim`;
 * 0 when the dims before or after `dim` do not collapse into one stride. */
int clsm__make_view(const clsm_tensor *t, int dim, clsm_view *v);
/* Checks the event wait list. */
clsm_status clsm__check_wait(clsm_context *ctx, cl_uint num_wait, const cl_event *wait);

/* Built kernel for (program, kernel), building the program on first use. */
clsm_status clsm__kernel(clsm_context *ctx, int program, clsm_kernel_id id, cl_kernel *out);
/* CLSM_ERR_UNSUPPORTED_DTYPE when `program` is float64's and the device has
 * no cl_khr_fp64. */
clsm_status clsm__check_fp64(clsm_context *ctx, int program);
/* Releases every cached program and kernel. */
void clsm__programs_release(clsm_context *ctx);

/* Enqueues a marker (empty operations still honour wait lists and events). */
clsm_status clsm__marker(clsm_context *ctx, cl_uint num_wait, const cl_event *wait,
                         cl_event *event);

/* Row-kernel flags, as kernels/common.cl defines them. */
#define F_LOG 1u       /* log_softmax */
#define F_SAFE 2u      /* an all -inf row gives 0 / -inf */
#define F_RECOMPUTE 4u /* softmax computes exp twice instead of storing and rescaling;
                          inner_cpu log-softmax reads x again instead of keeping x - m */
#define F_BLOCKS 8u    /* softmax, float32 / float64 y: a long row in cache-sized blocks, or
                          split rows keeping exp in y between their two kernels */
#define F_TILE 32u     /* inner_cpu: a block through a tile in local memory */
#define F_NT 64u       /* the writing pass stores y non-temporally (CPU devices, large outputs) */
#define F_NV_SHIFT 8   /* inner_cpu: bits 8-15 hold the vectors per block (clsm_plan.nv) */
#define F_LANES_SHIFT 16 /* rows_wg: bits 16-20 hold log2 of the lanes per row */
#define ROW_VPT 8        /* values a rows_wg lane loads at a time (kernels/common.cl) */
#define BWD_VPT 16       /* values a backward rows_wg lane keeps (kernels/backward.cl) */
#define ONLINE_ROW 512   /* rows this long take (max, sum) in one read (16 * ONLINE_CHUNK,
                            kernels/softmax.cl) */
#define INNER_CHUNK 4   /* rows a tile loads at a time (kernels/softmax.cl) */
#define TILE_VECTORS 32 /* most vectors a row of a tile (2 KB runs of float32): wider
                           tile rows read longer contiguous runs of each strided row of x */
#define KEEP_INNER_BYTES (1024u * 1024u) /* inner_cpu keeps exp(x - m) in y up to this tile */

/* Rows (or tiles of inner positions) larger than this are not kept in an
 * output buffer to be rescaled: they no longer stay in cache. */
#define KEEP_BYTES (128u * 1024u)

/* Which kernel and launch geometry for a row operation. */
typedef struct clsm_plan {
  clsm_kernel_id kernel; /* forward id; backward ops add K_BACKWARD */
  size_t global, local;  /* 1-D launch; local 0 lets the runtime choose */
  size_t local_elems;    /* per local-memory argument (K_ROWS_WG), in ACC elements */
  int nv;                /* K_INNER_CPU: float16 vectors per block (16 * nv positions) */
} clsm_plan;

/* Picks the kernel and geometry for row work over `n` views of the same
 * (outer, C, inner); `generic` when the views could not be formed.
 * CLSM_KERNEL=rows_cpu|inner_cpu|rows_wg|strided|generic forces a kernel
 * where its layout preconditions hold. */
/* CLSM_KERNEL's values, in clsm_kernel_id order, NULL-terminated. */
extern const char *const clsm__forceable_kernels[K_BACKWARD + 1];
size_t clsm__row_scratch(const clsm_context *ctx, size_t *local, int64_t C, size_t acc);
int64_t clsm__split_len(const clsm_context *ctx, int64_t rows, int64_t C);
/* Float16-wide vectors per inner block for an inner extent (CLSM_INNER_VECTORS at most). */
int clsm__inner_nv(const clsm_context *ctx, int64_t inner);
/* Lanes per row of the work-group row kernels, a power of two up to
 * `local`: enough for `vpt` values a lane (CLSM_ROW_LANES overrides). */
size_t clsm__row_lanes(const clsm_context *ctx, int64_t C, size_t local, int vpt);
void clsm__plan_rows(const clsm_context *ctx, const clsm_view *v, int n, int generic,
                     int64_t rows, clsm_plan *plan);

/* A row operation ready to enqueue: its tensors (inputs first, the output
 * last), their views along the axis, and the kernel flags. */
typedef struct clsm_rowop {
  int n;                     /* 2 (x, y) or 3 (y, dy, dx) */
  int backward;
  const clsm_tensor *t[3];
  clsm_view v[3];
  int generic;               /* views failed: use the generic kernel */
  int nd;                    /* generic: non-axis dims with size > 1, innermost first */
  int64_t gshape[8], gstride[3][8], gsc[3];
  int64_t rows, C;
  cl_uint flags;
} clsm_rowop;

/* Checks the tensors of a row op (same shape; dtypes: inputs `in`, output in
 * `allowed_out` for that input), builds the views, and enqueues it. Lock held. */
clsm_status clsm__row_op(clsm_context *ctx, clsm_rowop *op, int dim, cl_uint num_wait,
                         const cl_event *wait, cl_event *event);

/* Reads an integer environment override; returns `dflt` when unset or invalid. */
#ifdef CLSM_TESTING
/* A test hook's integer from the environment: dflt when unset or not an
 * integer in [lo, hi]. Only in the library the tests link. */
long clsm__env_long(const char *name, long dflt, long lo, long hi);
#endif

#endif
