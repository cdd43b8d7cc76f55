/* Library-internal declarations shared by the host/ sources: the context's
 * layout, error recording, tensor views and kernel plans. */
#ifndef CLSM_INTERNAL_H
#define CLSM_INTERNAL_H

#include "clsoftmax.h"
#include "kernels.h"
#include "plan.h"

#include <pthread.h>
#include <stdarg.h>

/* The program for an (input, output) dtype pair; -1 if there is none. */
int clsm__program_for(clsm_dtype in, clsm_dtype out);

struct clsm_context {
  cl_platform_id platform;
  cl_device_id device;
  cl_context cl_ctx;
  cl_command_queue queue;
  cl_device_type device_type;
  char device_name[256];
  cl_ulong max_alloc;
  int profiling; /* the queue has CL_QUEUE_PROFILING_ENABLE */
  int has_fp64;  /* cl_khr_fp64 */
  clsm_caps caps; /* what the planner knows of the device, tuning variables applied */
  int packed_stores; /* kernels store vectors through packed structs: CPU devices
                        (CLSM_PACKED_STORES=0|1) */
  int cpu_builtins;  /* kernels may use clang's prefetch and non-temporal stores (CPU devices) */

  pthread_mutex_t lock; /* guards everything below and every enqueue */
  int nv_regcap;        /* the device takes -cl-nv-maxrregcount (cl_nv_compiler_options) */
  cl_program programs[CLSM_PROGRAM_COUNT][CLSM_GROUP_COUNT];
  cl_kernel kernels[CLSM_PROGRAM_COUNT][K_COUNT_];
  size_t kernel_wg[CLSM_PROGRAM_COUNT][K_COUNT_]; /* CL_KERNEL_WORK_GROUP_SIZE, once built */
  clsm_plan_hook plan_hook; /* clsm_context_set_plan_hook */
  void *plan_user;
  char error[1024];
  cl_int cl_error;
  char *build_log;
  clsm_check *calls;    /* deferred checks not yet reported (deferred.c), newest first */
  clsm_check *spare;    /* records of passed calls, their flag buffers still zero */
  int spare_count;
  unsigned long long call_seq; /* calls with a deferred check, numbered from 1 */
  cl_mem alibi;         /* ALiBi slopes from alibi_bias for alibi_heads heads (attention.c) */
  double alibi_bias;
  int64_t alibi_heads;
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
/* 1 when t is C-order contiguous (dims of extent 1 may have any stride). */
int clsm__is_contiguous(const clsm_tensor *t);
/* A sharded call's statistics for x (named `what` in the detail): the
 * compute type (float32, float64 for float64 x), x's shape without `axis`
 * then k, contiguous. */
clsm_status clsm__check_stats(clsm_context *ctx, const clsm_tensor *stats, const clsm_tensor *x,
                              int axis, int k, const char *what);
/* Checks the event wait list. */
clsm_status clsm__check_wait(clsm_context *ctx, cl_uint num_wait, const cl_event *wait);

/* Builds the program of (dtype program, kernel group) if it is not built
 * yet, creating its kernels and recording their work-group limits in
 * ctx->kernel_wg[program]. */
clsm_status clsm__program(clsm_context *ctx, int program, int group);
/* A built kernel (clsm__program first). */
clsm_status clsm__kernel(clsm_context *ctx, int program, clsm_kernel_id id, cl_kernel *out);
/* Builds the program of the plan's register-held rows stage, if it has
 * one; *ready is 0 when that kernel's CL_KERNEL_WORK_GROUP_SIZE is below
 * the planned group (the planner, which now knows it, must plan again). */
clsm_status clsm__reg_ready(clsm_context *ctx, const clsm_plan *plan, int *ready);
/* CLSM_ERR_UNSUPPORTED_DTYPE when `program` is float64's and the device has
 * no cl_khr_fp64. */
clsm_status clsm__check_fp64(clsm_context *ctx, int program);
/* Releases every cached program and kernel. */
void clsm__programs_release(clsm_context *ctx);

/* Enqueues a marker (empty operations still honour wait lists and events). */
clsm_status clsm__marker(clsm_context *ctx, cl_uint num_wait, const cl_event *wait,
                         cl_event *event);

/* Executes a plan (exec.c); `flag` is the call's deferred-error flag, or
 * NULL. Lock held. */
clsm_status clsm__run_plan(clsm_context *ctx, const clsm_plan *plan, cl_mem flag, cl_uint num_wait,
                           const cl_event *wait, cl_event *event);
/* Tells the plan hook, if one is set, what a call enqueued. */
void clsm__plan_notify(clsm_context *ctx, const clsm_plan *plan);

/* Checks the tensors of a row op (same shape; dtypes: inputs `in`, output in
 * `allowed_out` for that input), builds the views, and enqueues it. Lock held. */
clsm_status clsm__row_op(clsm_context *ctx, clsm_rowop *op, int dim, cl_uint num_wait,
                         const cl_event *wait, cl_event *event);

/* The checks of clsm__row_op alone: tensors, dtypes, dim (normalised into
 * *dim_out), buffers, wait list, overlaps, views; *program_out gets the
 * dtype pair's program. Lock held. */
clsm_status clsm__row_check(clsm_context *ctx, clsm_rowop *op, int dim, cl_uint num_wait,
                            const cl_event *wait, int *dim_out, int *program_out);

/* Reads an integer environment override; returns `dflt` when unset or invalid. */
#ifdef CLSM_TESTING
/* A test hook's integer from the environment: dflt when unset or not an
 * integer in [lo, hi]. Only in the library the tests link. */
long clsm__env_long(const char *name, long dflt, long lo, long hi);
#endif

#endif
