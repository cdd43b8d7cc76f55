/* clsoftmax: softmax, log-softmax and cross-entropy on any OpenCL 1.2 device.
 *
 * This header is the whole contract. Every function returns a clsm_status;
 * the library never prints, aborts or exits. The semantics follow PyTorch's
 * torch.softmax / torch.log_softmax (special values included); extensions are
 * marked and off by default.
 *
 * Thread safety: a clsm_context may be shared by any number of threads. Calls
 * on one context are serialised internally while they set kernel arguments and
 * enqueue (an OpenCL kernel's arguments are not thread-safe), so results do not
 * depend on interleaving. The error detail is per context: after a failed call,
 * read it before another thread's call on the same context fails again.
 * Destroying a context while another thread uses it is undefined.
 */
#ifndef CLSOFTMAX_H
#define CLSOFTMAX_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>
#include <stdint.h>

#define CLSM_VERSION_MAJOR 0
#define CLSM_VERSION_MINOR 1
#define CLSM_VERSION_PATCH 0
#define CLSM_VERSION_NUMBER \
  (CLSM_VERSION_MAJOR * 10000 + CLSM_VERSION_MINOR * 100 + CLSM_VERSION_PATCH)

#if defined(_WIN32) && defined(CLSM_BUILDING_SHARED)
#define CLSM_API __declspec(dllexport)
#elif defined(__GNUC__) && defined(CLSM_BUILDING)
#define CLSM_API __attribute__((visibility("default")))
#else
#define CLSM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Run-time version: CLSM_VERSION_NUMBER of the library actually linked. */
CLSM_API unsigned clsm_version_number(void);
/* "MAJOR.MINOR.PATCH" of the library actually linked; static storage. */
CLSM_API const char *clsm_version_string(void);

/* ---------------------------------------------------------------- status */

/* Status codes. The numbers are stable and never reused.
 * X(name, value, message) */
#define CLSM_STATUS_MAP(X)                                                     \
  X(CLSM_SUCCESS, 0, "success")                                              \
  X(CLSM_ERR_NULL_ARGUMENT, 1, "a required pointer argument is NULL")         \
  X(CLSM_ERR_INVALID_ARGUMENT, 2, "an argument or option has an invalid value") \
  X(CLSM_ERR_INVALID_RANK, 3, "tensor rank is outside 0..8")                  \
  X(CLSM_ERR_INVALID_DIM, 4, "dim is outside [-rank, rank-1]")                \
  X(CLSM_ERR_SHAPE_MISMATCH, 5, "tensor shapes do not fit together")          \
  X(CLSM_ERR_UNSUPPORTED_DTYPE, 6, "dtype not supported for this operation or device") \
  X(CLSM_ERR_OUT_OF_BOUNDS, 7, "a tensor reaches past the end of its cl_mem") \
  X(CLSM_ERR_OVERLAP, 8, "output overlaps an input without being the same view") \
  X(CLSM_ERR_NO_PLATFORM, 9, "no OpenCL platform is installed")              \
  X(CLSM_ERR_DEVICE_NOT_FOUND, 10, "no OpenCL device matches the device spec") \
  X(CLSM_ERR_OPENCL, 11, "an OpenCL call failed")                             \
  X(CLSM_ERR_BUILD, 12, "a kernel program failed to build")                   \
  X(CLSM_ERR_OUT_OF_HOST_MEMORY, 13, "host memory allocation failed")        \
  X(CLSM_ERR_TOO_LARGE, 14, "tensor size exceeds what the device or index type can address") \
  X(CLSM_ERR_TARGET_OUT_OF_RANGE, 15, "a class index is outside [0, C) and not ignore_index") \
  X(CLSM_ERR_UNSUPPORTED_LAYOUT, 16, "tensor strides do not collapse into the (N, C, positions) walk")

typedef enum clsm_status {
#define CLSM_STATUS_ENUM_(name, value, msg) name = value,
  CLSM_STATUS_MAP(CLSM_STATUS_ENUM_)
#undef CLSM_STATUS_ENUM_
  CLSM_STATUS_COUNT_
} clsm_status;

/* A fixed English sentence for a status; "unknown status" for other values.
 * Static storage, never NULL. */
CLSM_API const char *clsm_status_string(clsm_status status);
/* The enumerator's name ("CLSM_ERR_OVERLAP"); "CLSM_UNKNOWN" otherwise. */
CLSM_API const char *clsm_status_name(clsm_status status);
/* The name of an OpenCL error code ("CL_OUT_OF_RESOURCES"). Static storage. */
CLSM_API const char *clsm_cl_error_name(cl_int err);

/* --------------------------------------------------------------- context */

/* The library's handle on one device and one in-order command queue.
 * Compiled kernel programs are cached in it (built on first use). */
typedef struct clsm_context clsm_context;

/* Kernel family chosen for a device. */
typedef enum clsm_family {
  CLSM_FAMILY_CPU = 0, /* a work-item owns whole rows; vector loads, no barriers */
  CLSM_FAMILY_GPU = 1  /* a work-group per row; local-memory reductions */
} clsm_family;

/* Creates a context on the device named by `spec`:
 *   NULL or ""  -> environment variable CLSM_DEVICE if set, else the first
 *                  GPU of any platform, else the first device of any type;
 *   "cpu"/"gpu" -> the first device of that type;
 *   "P:D"       -> device D of platform P (indices as `clsoftmax devices` lists);
 *   otherwise   -> the first device whose name contains `spec` (case-insensitive).
 * The kernel family follows CL_DEVICE_TYPE (CPU -> CPU family, anything else ->
 * GPU family); the environment variable CLSM_FAMILY=cpu|gpu overrides it.
 * On success *out owns a new context (free with clsm_context_destroy).
 * On failure *out is NULL; when `detail` is not NULL, a NUL-terminated message
 * of at most detail_size bytes says why (which platform/device/OpenCL call).
 * Errors: CLSM_ERR_NULL_ARGUMENT, CLSM_ERR_NO_PLATFORM, CLSM_ERR_DEVICE_NOT_FOUND,
 * CLSM_ERR_INVALID_ARGUMENT (a tuning variable, CLSM_FAMILY, CLSM_KERNEL,
 * CLSM_WG_SIZE, ..., set to a value it does not understand; the detail names
 * it), CLSM_ERR_OPENCL, CLSM_ERR_OUT_OF_HOST_MEMORY. Blocking. */
CLSM_API clsm_status clsm_context_create(clsm_context **out, const char *spec,
                                         char *detail, size_t detail_size);

/* One OpenCL device as clsm_list_devices describes it. */
typedef struct clsm_device_info {
  unsigned platform, device; /* its "P:D" spec for clsm_context_create */
  cl_platform_id platform_id;
  cl_device_id device_id;
  cl_device_type type;       /* CL_DEVICE_TYPE */
  clsm_family family;        /* the kernel family a context on it gets */
  int is_default;            /* 1 for the device a NULL spec picks (CLSM_DEVICE included) */
  char name[256];            /* CL_DEVICE_NAME, NUL-terminated (cut if longer) */
  char platform_name[256];   /* CL_PLATFORM_NAME, likewise */
} clsm_device_info;

/* Lists every OpenCL device in the order "P:D" specs count them: fills at
 * most `capacity` entries of `out` (out may be NULL when capacity is 0) and
 * sets *count to the number of devices there are (more than capacity when
 * `out` is too short: call again with a larger array). The family honours
 * CLSM_FAMILY as clsm_context_create does. When `detail` is not NULL it gets
 * a NUL-terminated message of at most detail_size bytes on failure.
 * Errors: CLSM_ERR_NULL_ARGUMENT (count, or out with capacity > 0),
 * CLSM_ERR_NO_PLATFORM, CLSM_ERR_INVALID_ARGUMENT (CLSM_FAMILY not cpu or
 * gpu), CLSM_ERR_OPENCL. Blocking; creates no OpenCL object. */
CLSM_API clsm_status clsm_list_devices(clsm_device_info *out, size_t capacity, size_t *count,
                                       char *detail, size_t detail_size);

/* Adopts a caller's command queue: the library enqueues on it, builds its
 * programs for the queue's context and device, and retains the queue (the
 * caller may release its own reference). The queue must be in-order. Buffers
 * passed to operations must belong to the queue's cl_context.
 * Profiling (for clsoftmax bench) is not required.
 * Errors: CLSM_ERR_NULL_ARGUMENT (out or queue), CLSM_ERR_INVALID_ARGUMENT
 * (an out-of-order queue, or a tuning variable as for create),
 * CLSM_ERR_OPENCL, CLSM_ERR_OUT_OF_HOST_MEMORY. Blocking. */
CLSM_API clsm_status clsm_context_adopt(clsm_context **out, cl_command_queue queue,
                                        char *detail, size_t detail_size);

/* Waits for everything enqueued, reports the device-side failures nobody
 * has asked about yet (of any thread; as clsm_finish does, into `detail`,
 * which may be NULL), and releases the context and every OpenCL object it
 * holds, whatever the status. NULL is allowed and returns CLSM_SUCCESS.
 * Errors: CLSM_ERR_TARGET_OUT_OF_RANGE, CLSM_ERR_OPENCL. Blocking. */
CLSM_API clsm_status clsm_context_release(clsm_context *ctx, char *detail, size_t detail_size);

/* clsm_context_release without a status: any unreported device-side failure
 * is discarded. NULL is allowed and does nothing. */
CLSM_API void clsm_context_destroy(clsm_context *ctx);

/* Borrowed handles (owned by the context; do not release). */
CLSM_API cl_context clsm_context_cl_context(const clsm_context *ctx);
CLSM_API cl_command_queue clsm_context_queue(const clsm_context *ctx);
CLSM_API cl_device_id clsm_context_device(const clsm_context *ctx);
/* The device's name (CL_DEVICE_NAME), owned by the context. */
CLSM_API const char *clsm_context_device_name(const clsm_context *ctx);
CLSM_API clsm_family clsm_context_family(const clsm_context *ctx);

/* Waits until everything enqueued on the context's queue has completed
 * (clFinish) and reports the device-side failures of the calling thread's
 * calls since its last clsm_finish (cross-entropy's out-of-range class
 * indices): every such call, oldest first, with its call number and its
 * first bad position and value, in the error detail; the status is the
 * oldest one's. Each failure is reported once; calls of other threads are
 * left to them (a call with a check handle is still reported by its handle
 * too). Errors: CLSM_ERR_NULL_ARGUMENT, CLSM_ERR_OPENCL,
 * CLSM_ERR_TARGET_OUT_OF_RANGE. Blocking. */
CLSM_API clsm_status clsm_finish(clsm_context *ctx);

/* The outcome of one asynchronous call that is checked on the device
 * (clsm_cross_entropy, clsm_cross_entropy_backward): ask for one through
 * clsm_ce_options.check. A handle belongs to its context; wait on every
 * handle before releasing the context. */
typedef struct clsm_check clsm_check;

/* Waits for the call behind `check` to complete and returns its own
 * outcome: CLSM_SUCCESS, CLSM_ERR_TARGET_OUT_OF_RANGE (the call wrote
 * nothing) or CLSM_ERR_OPENCL. On failure `detail` (may be NULL) gets at
 * most detail_size bytes of a NUL-terminated message: the call number,
 * position and value. Frees the handle (even on failure). Other calls'
 * failures never show here. Errors: CLSM_ERR_NULL_ARGUMENT and the above.
 * Blocking; any thread. */
CLSM_API clsm_status clsm_check_wait(clsm_check *check, char *detail, size_t detail_size);
/* The call's number on its context (from 1, in enqueue order), as the
 * details of clsm_finish and clsm_check_wait name it; 0 for NULL. */
CLSM_API unsigned long long clsm_check_sequence(const clsm_check *check);

/* Detail of the most recent failure on this context: what failed, where,
 * the OpenCL call and its error name. Copies at most `size` bytes including
 * the terminating NUL into `buf` (may be NULL when size is 0) and returns the
 * full length (snprintf style). An empty string when nothing failed yet. */
CLSM_API size_t clsm_context_error(const clsm_context *ctx, char *buf, size_t size);
/* The OpenCL error code of the most recent failed OpenCL call (CL_SUCCESS if none). */
CLSM_API cl_int clsm_context_cl_error(const clsm_context *ctx);
/* The build log of the most recent failed program build, same copying rules. */
CLSM_API size_t clsm_context_build_log(const clsm_context *ctx, char *buf, size_t size);

/* ------------------------------------------------------------------ plans */

#define CLSM_PLAN_MAX_STAGES 8

/* What an operation enqueued: its kernels in order, each with its launch
 * geometry, as the planner chose them for the shape, layout, dtype and
 * device. Everything it points to lives until the hook returns. */
typedef struct clsm_plan_info {
  const char *op;        /* "softmax", "log_softmax", "softmax_backward",
                            "log_softmax_backward", "cross_entropy", "cross_entropy_backward",
                            "cross_entropy_partial", "cross_entropy_finish", "softmax_partial",
                            "softmax_finish", "softmax_ex", "log_softmax_ex",
                            "softmax_backward_ex", "log_softmax_backward_ex" */
  const char *dtype_in;  /* "float32", ... */
  const char *dtype_out;
  int stages;            /* kernel launches; 0 for an empty tensor (a marker) */
  const char *kernel[CLSM_PLAN_MAX_STAGES]; /* entry points, e.g. "clsm_softmax_rows_cpu" */
  size_t global[CLSM_PLAN_MAX_STAGES];      /* 1-D global size */
  size_t local[CLSM_PLAN_MAX_STAGES];       /* work-group size; 0: the runtime chose */
  size_t local_bytes[CLSM_PLAN_MAX_STAGES]; /* local memory the launch asks for */
  unsigned flags[CLSM_PLAN_MAX_STAGES];     /* the kernel's flags (kernels/abi.h) */
  size_t scratch_bytes;  /* the context's scratch buffer the call needs */
  const char *text;      /* all of the above on one line, for logs */
} clsm_plan_info;

/* Called after each operation on the context has enqueued its kernels, on
 * the calling thread, with the context's lock held: it must not call into
 * the library with the same context. The library itself never prints;
 * `clsoftmax ... --verbose` prints through this hook. */
typedef void (*clsm_plan_hook)(void *user, const clsm_plan_info *info);
/* Sets (or, with NULL, clears) the context's plan hook.
 * Errors: CLSM_ERR_NULL_ARGUMENT. */
CLSM_API clsm_status clsm_context_set_plan_hook(clsm_context *ctx, clsm_plan_hook hook,
                                                void *user);

/* ---------------------------------------------------------------- tensors */

#define CLSM_MAX_RANK 8

/* Element types. Floating types are computed in float (float64: in double,
 * where the device has cl_khr_fp64; elsewhere CLSM_ERR_UNSUPPORTED_DTYPE).
 * bfloat16 is the high 16 bits of an IEEE float, stored as uint16, rounded to
 * nearest even on output. */
typedef enum clsm_dtype {
  CLSM_FLOAT32 = 0,
  CLSM_FLOAT16 = 1,
  CLSM_BFLOAT16 = 2,
  CLSM_FLOAT64 = 3,
  CLSM_INT64 = 4, /* class indices (cross-entropy) */
  CLSM_INT32 = 5,
  CLSM_UINT8 = 6
} clsm_dtype;

/* Size in bytes of one element of `dtype`; 0 for an unknown value. */
CLSM_API size_t clsm_dtype_size(clsm_dtype dtype);
/* "float32", "float16", ...; "unknown" otherwise. */
CLSM_API const char *clsm_dtype_name(clsm_dtype dtype);

/* Builds the kernel programs for one pair of storage dtypes, `in` (x, y and
 * dy of the softmax ops; the logits of cross-entropy) and `out` (their
 * output: the same dtype, or float32 for float16 / bfloat16 inputs): every
 * program clsm_program_count lists for the context's family (on a GPU,
 * the register-held rows variants too, those whose work-group size and
 * local memory the device takes), and creates all of their kernels,
 * so that later operations on those dtypes compile nothing. Operations build what they need on first use without
 * it; an application calls this once at start-up to keep that build (a
 * lookup when PoCL's kernel cache is warm, a full compile when it is cold)
 * off its hot path. Calling it again for a prepared pair does nothing.
 * Errors: CLSM_ERR_NULL_ARGUMENT, CLSM_ERR_INVALID_ARGUMENT (a value that is
 * no clsm_dtype, as in every operation), CLSM_ERR_UNSUPPORTED_DTYPE (a pair no
 * operation takes, or float64 on a device without cl_khr_fp64),
 * CLSM_ERR_BUILD, CLSM_ERR_OPENCL, CLSM_ERR_OUT_OF_HOST_MEMORY. Blocking. */
CLSM_API clsm_status clsm_context_prepare(clsm_context *ctx, clsm_dtype in, clsm_dtype out);

/* A view into a cl_mem. `offset` and `strides` count elements, not bytes.
 * Strides must be >= 0 and may be anything else (transposed, sliced,
 * broadcast inputs): the kernels walk them, never through a hidden copy.
 * A rank-0 tensor is one element. Every element the view reaches must lie
 * inside the cl_mem (checked with CL_MEM_SIZE). */
typedef struct clsm_tensor {
  cl_mem mem;
  uint64_t offset;
  clsm_dtype dtype;
  int rank;
  int64_t shape[CLSM_MAX_RANK];
  int64_t strides[CLSM_MAX_RANK];
} clsm_tensor;

/* A C-order (row-major) view of `rank` dims starting at element `offset`.
 * A rank outside 0..8 is kept as given (no shape), and a NULL shape with
 * rank > 0 yields rank -1: every operation rejects both with
 * CLSM_ERR_INVALID_RANK. */
CLSM_API clsm_tensor clsm_tensor_contiguous(cl_mem mem, uint64_t offset, clsm_dtype dtype,
                                            int rank, const int64_t *shape);

/* -------------------------------------------------------- softmax family */

/* Flags for softmax / log_softmax. */
#define CLSM_SAFE 1u /* extension: a row whose entries are all -inf gives softmax 0
                        and log_softmax -inf instead of NaN */

/* y = softmax(x) along `dim` (negative counts from the end):
 *   y_i = exp(x_i - m) / sum_j exp(x_j - m),  m = max_j x_j,
 * accumulated in float (in double for float64). On CPU devices an output
 * below FLT_MIN (1.2e-38) of a float computation can be 0 instead of
 * subnormal (the kernels' exp flushes there, as oneDNN's does).
 * x and y have the same shape. dtypes: y has x's dtype (float32, float16,
 * bfloat16, float64), or float32 for a 16-bit x (PyTorch's dtype argument).
 * Any strides; y may be exactly x (in place); any other overlap of y with x's
 * element range is refused (CLSM_ERR_OVERLAP), as is an output view whose
 * elements overlap themselves (a zero stride over a dim longer than 1).
 * Empty tensors succeed and enqueue only a marker (when there is a wait list
 * or an event to return).
 * Special values as PyTorch: a row with +inf or NaN, or all -inf, is all NaN
 * (all -inf: 0 with CLSM_SAFE); -inf entries among finite ones give 0.
 * `flags`: 0 or CLSM_SAFE.
 * Asynchronous: enqueues on the context's queue after the `num_wait` events
 * in `wait` (both may be 0/NULL) and, when `event` is not NULL, returns in it an
 * event that completes with the operation (the caller releases it). Every
 * check happens before anything is enqueued; on failure nothing is enqueued
 * and *event is NULL. Does not wait for the device.
 * Errors: CLSM_ERR_NULL_ARGUMENT (ctx, a tensor, its cl_mem, or an event of
 * the wait list), CLSM_ERR_INVALID_RANK, CLSM_ERR_INVALID_DIM,
 * CLSM_ERR_SHAPE_MISMATCH, CLSM_ERR_UNSUPPORTED_DTYPE, CLSM_ERR_OUT_OF_BOUNDS,
 * CLSM_ERR_OVERLAP, CLSM_ERR_INVALID_ARGUMENT (a value that is no clsm_dtype,
 * an unknown flag, a negative size or stride, num_wait and wait that disagree,
 * a cl_mem or event of another cl_context), CLSM_ERR_TOO_LARGE,
 * CLSM_ERR_BUILD, CLSM_ERR_OPENCL, CLSM_ERR_OUT_OF_HOST_MEMORY. */
CLSM_API clsm_status clsm_softmax(clsm_context *ctx, const clsm_tensor *x, const clsm_tensor *y,
                                  int dim, unsigned flags, cl_uint num_wait,
                                  const cl_event *wait, cl_event *event);

/* y = log_softmax(x) = x - m - log(sum_j exp(x_j - m)) along `dim`.
 * Same rules as clsm_softmax; -inf entries among finite ones stay -inf;
 * with CLSM_SAFE an all -inf row stays -inf. */
CLSM_API clsm_status clsm_log_softmax(clsm_context *ctx, const clsm_tensor *x,
                                      const clsm_tensor *y, int dim, unsigned flags,
                                      cl_uint num_wait, const cl_event *wait, cl_event *event);

/* Gradient of softmax from its output y and the upstream gradient dy:
 *   dx_i = y_i * (dy_i - sum_j dy_j * y_j)   along `dim`.
 * y and dy have one dtype and shape; dx has their shape and the same dtype
 * (or float32 for 16-bit y and dy). dx may be exactly y or exactly dy; other
 * overlaps are refused. With CLSM_SAFE nothing changes (a safe all -inf row
 * has y = 0, hence dx = 0). Asynchronous, errors and strides as clsm_softmax. */
CLSM_API clsm_status clsm_softmax_backward(clsm_context *ctx, const clsm_tensor *y,
                                           const clsm_tensor *dy, const clsm_tensor *dx, int dim,
                                           unsigned flags, cl_uint num_wait,
                                           const cl_event *wait, cl_event *event);

/* Gradient of log_softmax from its output y and dy:
 *   dx_i = dy_i - exp(y_i) * sum_j dy_j   along `dim`.
 * With CLSM_SAFE a row whose y is all -inf (a masked row) gets dx = 0.
 * Otherwise as clsm_softmax_backward. */
CLSM_API clsm_status clsm_log_softmax_backward(clsm_context *ctx, const clsm_tensor *y,
                                               const clsm_tensor *dy, const clsm_tensor *dx,
                                               int dim, unsigned flags, cl_uint num_wait,
                                               const cl_event *wait, cl_event *event);

/* ------------------------------------------------------ attention softmax */

/* Extension: softmax and log-softmax of attention scores, the terms fused
 * into the row pass (nothing is materialised, x is not copied). Along `dim`
 * (the key axis j), with i the index along the axis before it (the query
 * axis) and h the index along `head_dim`, computed in float (double for
 * float64), each operation rounded on its own, in this order:
 *   z = scale * x;
 *   z = z + mask             (an additive float32 / float16 / bfloat16 mask), or
 *   z = mask ? z : -inf      (a uint8 boolean mask: 0 masks out, PyTorch SDPA's
 *                             attn_mask convention);
 *   z = z - slope_h * |i + offset - j|          (ALiBi);
 *   causal: z = -inf where j > i + offset (offset 0 is SDPA's is_causal;
 *           Lk - Lq aligns the diagonal bottom-right, as a KV cache needs);
 * then y = softmax(z) (log_softmax(z)) with an optional sink s_h in the
 * normaliser only: m = max(max_j z_j, s_h),
 *   y_j = exp(z_j - m) / (sum_k exp(z_k - m) + exp(s_h - m)).
 * Special rows: NaN or +inf in z make the row NaN; a row with every z -inf
 * and no sink is NaN, or 0 (log: -inf) with CLSM_SAFE; with a finite sink
 * it is 0 (-inf) and its lse is s_h. Masked entries are exactly 0 (-inf).
 * The mask broadcasts to x's shape by NumPy's rules (aligned on the right,
 * each dim equal or 1). ALiBi slopes are given, or from max_bias as ggml
 * and the ALiBi paper compute them: n = 2^floor(log2 H), m0 = 2^(-max_bias/n),
 * m1 = 2^(-max_bias/(2n)), slope_h = m0^(h+1) for h < n, else
 * m1^(2(h-n)+1), in double, rounded to float32. Causal and ALiBi need a
 * query axis (dim >= 1). Start from CLSM_ATTN_OPTIONS_INIT: a zeroed struct
 * is refused. Tensors named here are borrowed for the call only. */
typedef struct clsm_attn_options {
  unsigned version;               /* CLSM_ATTN_OPTIONS_VERSION */
  unsigned flags;                 /* 0 or CLSM_SAFE */
  double scale;                   /* finite; default 1 (a temperature T is 1/T) */
  const clsm_tensor *mask;        /* NULL, or float32 / float16 / bfloat16 / uint8, broadcast to x */
  int causal;                     /* 0 or 1 */
  int64_t offset;                 /* causal and ALiBi: query i's diagonal key is i + offset */
  double alibi_max_bias;          /* > 0: ALiBi with slopes from max_bias; 0: off */
  const clsm_tensor *alibi_slopes; /* NULL, or (H) float32 slopes (not with max_bias) */
  const clsm_tensor *sinks;       /* NULL, or (H) float32 or x's dtype: one sink logit a head */
  int head_dim;                   /* the head axis (negative counts from the end), or
                                     CLSM_HEAD_DIM_AUTO: the axis before the query axis, and
                                     H = 1 when there is none */
  const clsm_tensor *lse;         /* forward: NULL, or x's shape without dim, float32 (float64
                                     for float64 x): each row's m + log(sum) (-inf for a row with
                                     no finite z and no sink, NaN for a NaN row) */
  const clsm_tensor *dsinks;      /* backward: NULL, or (H), float32 (float64 for float64):
                                     d loss / d sinks, written (not accumulated) */
} clsm_attn_options;

#define CLSM_ATTN_OPTIONS_VERSION 1u
#define CLSM_HEAD_DIM_AUTO 1000
#define CLSM_ATTN_OPTIONS_INIT \
  {CLSM_ATTN_OPTIONS_VERSION, 0u, 1.0, NULL, 0, 0, 0.0, NULL, NULL, CLSM_HEAD_DIM_AUTO, NULL, NULL}

/* The defaults, as a value (same as CLSM_ATTN_OPTIONS_INIT). */
CLSM_API clsm_attn_options clsm_attn_options_default(void);

/* The number of heads H an attention call on a tensor of `rank` dims and
 * `shape` along `dim` sees with `head_dim` (CLSM_HEAD_DIM_AUTO included):
 * the length of its slopes, sinks and dsinks, which host-array callers
 * must know. Errors: CLSM_ERR_NULL_ARGUMENT (heads, or shape with rank > 0),
 * CLSM_ERR_INVALID_RANK, CLSM_ERR_INVALID_DIM (dim, or head_dim outside the
 * rank or equal to dim). Touches no device. */
CLSM_API clsm_status clsm_attn_heads(int rank, const int64_t *shape, int dim, int head_dim,
                                     int64_t *heads);

/* Attention softmax of x into y (same shape; dtypes, strides, in place,
 * events and errors as clsm_softmax). opt may not be NULL; all defaults
 * compute exactly clsm_softmax. Errors besides clsm_softmax's:
 * CLSM_ERR_INVALID_ARGUMENT (options uninitialised, an unknown flag, a
 * scale that is not finite, a negative or non-finite max_bias, max_bias
 * and slopes both, causal not 0 or 1, dsinks given), CLSM_ERR_INVALID_DIM
 * (head_dim outside the rank or equal to dim), CLSM_ERR_SHAPE_MISMATCH (a
 * mask that does not broadcast to x, slopes or sinks that are not (H), an
 * lse that is not x's shape without dim, causal or ALiBi without a query
 * axis), CLSM_ERR_UNSUPPORTED_DTYPE (a mask, slopes, sinks or lse dtype),
 * CLSM_ERR_OVERLAP (y or lse over another tensor of the call). */
CLSM_API clsm_status clsm_softmax_ex(clsm_context *ctx, const clsm_tensor *x,
                                     const clsm_tensor *y, int dim,
                                     const clsm_attn_options *opt, cl_uint num_wait,
                                     const cl_event *wait, cl_event *event);
CLSM_API clsm_status clsm_log_softmax_ex(clsm_context *ctx, const clsm_tensor *x,
                                         const clsm_tensor *y, int dim,
                                         const clsm_attn_options *opt, cl_uint num_wait,
                                         const cl_event *wait, cl_event *event);

/* Their gradients with respect to x from y (the forward's output, which
 * carries the masks) and dy: softmax dx = scale * y (dy - sum_j dy_j y_j),
 * log-softmax dx = scale * (dy - exp(y) sum_j dy_j). Masked entries (y = 0
 * for softmax, -inf for log-softmax) take no part: their dx is 0 and their
 * dy is not summed. With opt->dsinks, d loss / d s_h =
 *   -sum over the rows of head h of (1 - sum_j p_j) * (sum_j dy_j y_j),
 * p = y (softmax), or (1 - sum_j exp(y_j)) * sum_j dy_j (log-softmax).
 * The backward reads scale, flags, head_dim and dsinks; mask, causal,
 * offset, ALiBi, sinks and lse are ignored, so that one options struct
 * serves both directions. Otherwise as clsm_softmax_backward. */
CLSM_API clsm_status clsm_softmax_backward_ex(clsm_context *ctx, const clsm_tensor *y,
                                              const clsm_tensor *dy, const clsm_tensor *dx,
                                              int dim, const clsm_attn_options *opt,
                                              cl_uint num_wait, const cl_event *wait,
                                              cl_event *event);
CLSM_API clsm_status clsm_log_softmax_backward_ex(clsm_context *ctx, const clsm_tensor *y,
                                                  const clsm_tensor *dy, const clsm_tensor *dx,
                                                  int dim, const clsm_attn_options *opt,
                                                  cl_uint num_wait, const cl_event *wait,
                                                  cl_event *event);

/* ---------------------------------------------------------- cross-entropy */

typedef enum clsm_reduction {
  CLSM_REDUCTION_MEAN = 0,
  CLSM_REDUCTION_SUM = 1,
  CLSM_REDUCTION_NONE = 2
} clsm_reduction;

/* Options of clsm_cross_entropy. Always start from CLSM_CE_OPTIONS_INIT (or
 * clsm_ce_options_default()): a zeroed struct is refused (CLSM_ERR_INVALID_ARGUMENT),
 * so that it can never silently mean ignore_index = 0. Tensors named here are
 * borrowed for the call only. */
typedef struct clsm_ce_options {
  unsigned version;              /* CLSM_CE_OPTIONS_VERSION */
  clsm_reduction reduction;      /* default mean */
  int64_t ignore_index;          /* default -100; any value. Probability targets: must be < 0 */
  double label_smoothing;        /* epsilon in [0, 1], default 0 */
  const clsm_tensor *weight;     /* NULL, or (C) of the logits' dtype; values may be <= 0 */
  double z_loss;                 /* extension: z * lse^2 per non-ignored position; default 0 */
  double softcap;                /* extension: logits -> c tanh(x / c) first; 0 = off */
  const clsm_tensor *grad;       /* fused gradient output d loss / d logits: NULL, or the logits'
                                    shape, of the loss dtype; may be exactly the logits (in place) */
  const clsm_tensor *grad_scale; /* upstream gradient for `grad`: NULL (1), 0-d for mean/sum, the
                                    target's shape for none; the logits' dtype */
  const clsm_tensor *lse;        /* extension: per-position log-sum-exp, float32, target's shape */
  const clsm_tensor *total_weight; /* extension: 0-d float32: W, the mean's denominator */
  clsm_check **check;            /* NULL, or where the call puts a handle on its own device-side
                                    outcome (NULL when the call fails before enqueueing); wait
                                    on it with clsm_check_wait. Version 2 and later. */
} clsm_ce_options;

/* Version 1 structs (without `check`) are still accepted. */
#define CLSM_CE_OPTIONS_VERSION 2u
#define CLSM_CE_OPTIONS_INIT \
  {CLSM_CE_OPTIONS_VERSION, CLSM_REDUCTION_MEAN, -100, 0.0, NULL, 0.0, 0.0, NULL, NULL, NULL, NULL, NULL}

/* The defaults, as a value (same as CLSM_CE_OPTIONS_INIT). */
CLSM_API clsm_ce_options clsm_ce_options_default(void);

/* Cross-entropy loss, PyTorch's torch.nn.functional.cross_entropy.
 * logits: (C), (N, C) or (N, C, d1, ..., dk), rank <= 8; the class axis is 1
 * (0 for 1-d). float32, float16, bfloat16 or float64 (cl_khr_fp64).
 * target: class indices (int64, int32, uint8) of the logits' shape without the
 * class axis ((), (N) or (N, d1, ..., dk)), or class probabilities of exactly
 * the logits' shape and dtype (rows need not sum to 1).
 * loss: 0-d for mean and sum, the target's shape for none; the logits' dtype,
 * or float32 for 16-bit logits.
 * Per position: l = -w_t log_softmax(x)_t (ignored: 0), with label smoothing
 * (1-eps) l + (eps/C) sum_c -w_c log_softmax(x)_c; probability targets
 * -sum_c w_c q'_c log_softmax(x)_c with q' = (1-eps) q + eps/C. mean divides
 * by the total weight of the non-ignored positions (probability targets: by
 * the number of positions); everything ignored gives NaN for mean, 0 for sum.
 * z-loss adds z lse^2 per non-ignored position (mean: divided by their
 * count); softcap replaces the logits by c tanh(x/c) first.
 * With opt->grad the same call writes d loss / d logits (times grad_scale),
 * reading the logits at most twice; grad may be the logits themselves.
 * Out-of-range class indices are found on the device before anything is
 * written: none of the call's outputs (nor in-place logits) change, and the
 * error, CLSM_ERR_TARGET_OUT_OF_RANGE with the call number, position and
 * value in the detail, belongs to this call alone: its check handle
 * (opt->check) returns it, the calling thread's next clsm_finish reports it,
 * and clsm_context_release reports it if neither did (the host version
 * returns it itself). Later calls are not affected: they compute and write.
 * Asynchronous like clsm_softmax. Errors: those of clsm_softmax, and
 * CLSM_ERR_INVALID_ARGUMENT for options (uninitialised, reduction, NaN or
 * out-of-range eps, negative z-loss or softcap, ignore_index >= 0 with
 * probabilities, grad_scale without grad), CLSM_ERR_UNSUPPORTED_LAYOUT for views whose dims before or
 * after the class axis do not collapse into one stride each. */
CLSM_API clsm_status clsm_cross_entropy(clsm_context *ctx, const clsm_tensor *logits,
                                        const clsm_tensor *target, const clsm_tensor *loss,
                                        const clsm_ce_options *opt, cl_uint num_wait,
                                        const cl_event *wait, cl_event *event);

/* d loss / d logits from the upstream gradient dloss (0-d for mean and sum,
 * the target's shape for none; the logits' dtype) into dlogits (the logits'
 * shape; may be the logits). Same options (grad and grad_scale must be NULL
 * there), same errors. */
CLSM_API clsm_status clsm_cross_entropy_backward(clsm_context *ctx, const clsm_tensor *logits,
                                                 const clsm_tensor *target,
                                                 const clsm_tensor *dloss,
                                                 const clsm_tensor *dlogits,
                                                 const clsm_ce_options *opt, cl_uint num_wait,
                                                 const cl_event *wait, cl_event *event);

/* ------------------------------------------------ a sharded class axis */

/* When a class axis is split into contiguous shards, one per device or MPI
 * rank, each shard holds classes [first, first + C_r) of `classes`, and a
 * call runs in three phases: partial (each shard, its own logits) -> merge
 * (the caller's, over whatever connects the shards: clsm_shard_merge in a
 * host loop, MPI_Allreduce with clsoftmax_mpi.h's operation, or the
 * built-in recipe below) -> finish (each shard). Only CLSM_SHARD_STATS
 * values per position cross between shards. See docs/sharded.md. */
typedef struct clsm_shard {
  int64_t first;   /* the shard's first class */
  int64_t classes; /* the class count of the whole axis */
} clsm_shard;

/* Values of a position's cross-entropy statistics, in this order: the
 * (max, sum) pair of the (softcapped) logits, m = max x and s = sum
 * exp(x - m) (m = -inf, s = 0 for a shard without a finite logit; s is NaN
 * when a NaN or +inf is among them), the target logit (0 on shards that do
 * not own the target), sum_c w_c x_c and sum_c w_c (probability targets:
 * w_c q'_c in both); the last two are 0 for index targets without label
 * smoothing. Merged: the pair as (max, sum) pairs are, the others summed.
 * A sharded softmax row's statistics are the first two alone. */
#define CLSM_SHARD_STATS 5

/* Cross-entropy, phase 1 on one shard: logits (N, C_r, d1..dk) (or (C_r))
 * of the shard's classes; target as for clsm_cross_entropy: class indices
 * of the whole axis (every shard has them all), or the shard's columns of
 * the probabilities; opt as for clsm_cross_entropy with every class's
 * weights (C = shard->classes values); opt->grad, grad_scale, lse and
 * total_weight must be NULL. Writes stats: contiguous, the positions'
 * shape then CLSM_SHARD_STATS, float32 (float64 for float64 logits).
 * Out-of-range indices (against shard->classes) are deferred errors as in
 * clsm_cross_entropy: stats are not written. Errors: those of
 * clsm_cross_entropy, CLSM_ERR_NULL_ARGUMENT for shard or stats,
 * CLSM_ERR_INVALID_ARGUMENT for a shard outside [0, classes) or the
 * finish's options given, CLSM_ERR_SHAPE_MISMATCH for stats of another
 * shape or weights of another length than classes, CLSM_ERR_UNSUPPORTED_LAYOUT
 * for non-contiguous stats. */
CLSM_API clsm_status clsm_cross_entropy_partial(clsm_context *ctx, const clsm_tensor *logits,
                                                const clsm_tensor *target, const clsm_shard *shard,
                                                const clsm_tensor *stats,
                                                const clsm_ce_options *opt, cl_uint num_wait,
                                                const cl_event *wait, cl_event *event);

/* Cross-entropy, phase 3 on one shard, from the merged stats: the loss
 * (every reduction; the same value on every shard, as clsm_cross_entropy
 * computes it, label smoothing with the whole axis' class count), and with
 * opt->grad the gradient of the shard's columns (times opt->grad_scale; it
 * may be the shard's logits, in place), opt->lse and opt->total_weight as
 * in clsm_cross_entropy. loss may be NULL when opt->grad is given: that is
 * the backward (opt->grad_scale the upstream gradient), which needs no
 * communication once the forward's merged stats are kept. Errors: those of
 * the partial, and CLSM_ERR_NULL_ARGUMENT when neither loss nor opt->grad
 * is given. */
CLSM_API clsm_status clsm_cross_entropy_finish(clsm_context *ctx, const clsm_tensor *logits,
                                               const clsm_tensor *target, const clsm_shard *shard,
                                               const clsm_tensor *stats, const clsm_tensor *loss,
                                               const clsm_ce_options *opt, cl_uint num_wait,
                                               const cl_event *wait, cl_event *event);

/* What a softmax-axis shard computes (clsm_softmax_partial / _finish). */
typedef enum clsm_shard_op {
  CLSM_SHARD_SOFTMAX = 0,          /* partial: (m, s) of x; finish: y = exp(x - m) / s */
  CLSM_SHARD_LOG_SOFTMAX = 1,      /* partial: (m, s) of x; finish: y = x - m - log s */
  CLSM_SHARD_SOFTMAX_BACKWARD = 2, /* partial: S = sum dy y; finish: dx = y (dy - S) */
  CLSM_SHARD_LOG_SOFTMAX_BACKWARD = 3 /* partial: S = sum dy; finish: dx = dy - exp(y) S */
} clsm_shard_op;

/* Softmax along a sharded axis, phase 1: a is x (forward) or y, b is dy
 * (backward; NULL for the forward), the shard's slice of axis `dim`.
 * Writes stats, contiguous, float32 (float64 for float64 inputs), the shape
 * of a without dim then 2: forward, each row's (max, sum) pair (merged as
 * the cross-entropy pair: clsm_shard_merge with k = 2); backward, each
 * row's S and its count of y > -inf (both merged by a sum, MPI_SUM; the
 * count lets CLSM_SAFE give a log-softmax row of -inf a zero gradient, as
 * clsm_log_softmax_backward does). Errors: those of clsm_softmax, and
 * CLSM_ERR_INVALID_ARGUMENT for an unknown op or b given to a forward op,
 * CLSM_ERR_NULL_ARGUMENT for a missing b or stats, CLSM_ERR_SHAPE_MISMATCH
 * for stats of another shape. */
CLSM_API clsm_status clsm_softmax_partial(clsm_context *ctx, clsm_shard_op op,
                                          const clsm_tensor *a, const clsm_tensor *b, int dim,
                                          const clsm_tensor *stats, cl_uint num_wait,
                                          const cl_event *wait, cl_event *event);

/* Phase 3: the shard's output `out` (y or dx; a's shape, a's dtype or
 * float32 for 16-bit inputs; it may be exactly a or b) from the merged
 * stats. flags: CLSM_SAFE (an axis with no finite entry gives 0, or -inf
 * for log-softmax, instead of NaN). Errors: those of the partial, and
 * CLSM_ERR_INVALID_ARGUMENT for unknown flags. */
CLSM_API clsm_status clsm_softmax_finish(clsm_context *ctx, clsm_shard_op op,
                                         const clsm_tensor *a, const clsm_tensor *b, int dim,
                                         unsigned flags, const clsm_tensor *stats,
                                         const clsm_tensor *out, cl_uint num_wait,
                                         const cl_event *wait, cl_event *event);

/* Phase 2 on the host: merges n records of k >= 2 values (dtype
 * CLSM_FLOAT32 or CLSM_FLOAT64) from `in` into `inout`: values 0 and 1 as
 * (max, sum) pairs, M = max(m_a, m_b), s = s_a exp(m_a - M) + s_b exp(m_b -
 * M) (a NaN sum carries; m = -inf adds nothing), values 2..k-1 summed.
 * Commutative and associative up to rounding: merge the shards in any
 * order. Returns CLSM_ERR_INVALID_ARGUMENT for another dtype, k < 2, n < 0
 * or NULL arrays with n > 0. */
CLSM_API clsm_status clsm_shard_merge(clsm_dtype dtype, int k, int64_t n, const void *in,
                                      void *inout);

/* The same merge with built-in collectives only (MPI_MAX, MPI_SUM): take
 * M_n, the maximum over shards of value 0 of record n (n values in `max`,
 * e.g. MPI_Allreduce with MPI_MAX of a copy of the records' value 0),
 * clsm_shard_rebase the records against it (value 0 becomes 0, value 1
 * s exp(m - M)), sum the records over the shards (MPI_SUM), and
 * clsm_shard_restore puts M back as value 0. A partial's m is never NaN
 * (its NaN and +inf logits make s NaN, which the sum carries), so a maximum
 * that drops NaN, as Open MPI's MPI_MAX does, loses nothing. */
CLSM_API clsm_status clsm_shard_rebase(clsm_dtype dtype, int k, int64_t n, void *stats,
                                       const void *max);
CLSM_API clsm_status clsm_shard_restore(clsm_dtype dtype, int k, int64_t n, void *stats,
                                        const void *max);

/* ------------------------------------------------ what is built */

/* The OpenCL programs behind the operations, as the library builds them,
 * for drivers' bug reports and offline compilers. A dtype pair (in, out) as
 * the operations take them has clsm_program_count(family, in, out)
 * programs (at most CLSM_PROGRAM_GROUPS): index 0 the row operations, 1
 * cross-entropy and the sharded phases, 2 attention softmax, and for the
 * GPU family then one per register-held rows variant (forward rows kept in
 * registers: values a lane, elements a load, lanes a work-group, in its
 * name: "rows_reg-e32-v4-wg1024.float32"). clsm_program_info gives program
 * `index`'s name ("row.float32", "ce.float16-float32", ...), the build
 * options a device of `family` gets (the CPU family's: as on a CPU device;
 * the tuning variable CLSM_INNER_VECTORS at its default; NVIDIA devices
 * also get -cl-nv-maxrregcount=65536/WG on the variants of 1024 lanes),
 * and its source: the embedded files it is built from, concatenated in
 * order, which compile as they are with those options. Each output buffer
 * may be NULL (size 0); text is truncated to its buffer and
 * NUL-terminated; *source_length (may be NULL) gets the source's whole
 * length, without the terminator. Needs no context or device. Errors:
 * CLSM_ERR_INVALID_ARGUMENT for another family or index,
 * CLSM_ERR_UNSUPPORTED_DTYPE for a pair no operation takes.
 * clsm_program_count returns -1 for another family or such a pair. */
#define CLSM_PROGRAM_GROUPS 11
CLSM_API int clsm_program_count(clsm_family family, clsm_dtype in, clsm_dtype out);
CLSM_API clsm_status clsm_program_info(clsm_family family, clsm_dtype in, clsm_dtype out, int index,
                                       char *name, size_t name_size, char *options,
                                       size_t options_size, char *source, size_t source_size,
                                       size_t *source_length);
/* The same for a described device (a profile) instead of a family: its
 * family's programs with the register-held variants whose group it takes,
 * and its build options (NVIDIA profiles: -cl-nv-maxrregcount on the
 * 1024-lane variants). clsm_profile_name(i) names profile i ("h100",
 * "h200", "mi300", "igpu", "arc", "pocl-cpu"), NULL past the last.
 * An unknown profile: -1, CLSM_ERR_INVALID_ARGUMENT. */
CLSM_API const char *clsm_profile_name(int index);
CLSM_API int clsm_profile_program_count(const char *profile, clsm_dtype in, clsm_dtype out);
CLSM_API clsm_status clsm_profile_program_info(const char *profile, clsm_dtype in, clsm_dtype out,
                                               int index, char *name, size_t name_size,
                                               char *options, size_t options_size, char *source,
                                               size_t source_size, size_t *source_length);

/* ------------------------------------------------ blocking host versions */

/* Host-memory versions: arrays are C-order, of `dtype`, with the given shape
 * (rank 0..8); outputs have the inputs' dtype and may be the same array as an
 * input. Copies to the device, runs, copies back and waits. On any error the
 * output array is left untouched. Blocking. Errors as the device versions. */
CLSM_API clsm_status clsm_softmax_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                       const int64_t *shape, int dim, unsigned flags,
                                       const void *x, void *y);
CLSM_API clsm_status clsm_log_softmax_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                           const int64_t *shape, int dim, unsigned flags,
                                           const void *x, void *y);
CLSM_API clsm_status clsm_softmax_backward_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                                const int64_t *shape, int dim, unsigned flags,
                                                const void *y, const void *dy, void *dx);
CLSM_API clsm_status clsm_log_softmax_backward_host(clsm_context *ctx, clsm_dtype dtype,
                                                    int rank, const int64_t *shape, int dim,
                                                    unsigned flags, const void *y,
                                                    const void *dy, void *dx);

/* The host arrays of the attention entry points, each NULL when unused:
 * a C-order mask of mask_dtype and mask_shape (mask_rank dims), H float32
 * slopes, H sinks of sinks_dtype (float32 or x's dtype), and the outputs
 * lse (one float, or double for float64, per row, C order) and dsinks (H
 * of the same). */
typedef struct clsm_attn_arrays {
  const void *mask;
  clsm_dtype mask_dtype;
  int mask_rank;
  const int64_t *mask_shape;
  const float *alibi_slopes;
  const void *sinks;
  clsm_dtype sinks_dtype;
  void *lse;
  void *dsinks;
} clsm_attn_arrays;

/* Attention softmax on host arrays: as clsm_softmax_host, with `opt`'s
 * tensors all NULL (the arrays take their place; `arrays` may be NULL).
 * On any error no output is written. Blocking. */
CLSM_API clsm_status clsm_softmax_ex_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                          const int64_t *shape, int dim,
                                          const clsm_attn_options *opt,
                                          const clsm_attn_arrays *arrays, const void *x, void *y);
CLSM_API clsm_status clsm_log_softmax_ex_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                              const int64_t *shape, int dim,
                                              const clsm_attn_options *opt,
                                              const clsm_attn_arrays *arrays, const void *x,
                                              void *y);
CLSM_API clsm_status clsm_softmax_backward_ex_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                                   const int64_t *shape, int dim,
                                                   const clsm_attn_options *opt,
                                                   const clsm_attn_arrays *arrays, const void *y,
                                                   const void *dy, void *dx);
CLSM_API clsm_status clsm_log_softmax_backward_ex_host(clsm_context *ctx, clsm_dtype dtype,
                                                       int rank, const int64_t *shape, int dim,
                                                       const clsm_attn_options *opt,
                                                       const clsm_attn_arrays *arrays,
                                                       const void *y, const void *dy, void *dx);

/* Cross-entropy on host arrays: logits of `dtype` and `shape` (rank 1..8),
 * target of `target_dtype` (an index dtype with the target shape, or `dtype`
 * with the logits' shape), loss written to `loss` (one value of `dtype` for
 * mean/sum, else one per position). In `opt`, `weight` may not be a device
 * tensor: pass host weights (C values of `dtype`) in `weight`, or NULL.
 * `grad` (may be NULL, may equal `logits`) receives d loss / d logits times
 * `grad_scale` (NULL for 1; one value, or one per position for none).
 * `lse` (NULL or one float per position) and `total_weight` (NULL or one
 * float) are optional. opt->weight, grad, grad_scale, lse and total_weight
 * must be NULL (the arrays here take their place), and so must opt->check. Returns
 * CLSM_ERR_TARGET_OUT_OF_RANGE itself, with no output written. Blocking. */
CLSM_API clsm_status clsm_cross_entropy_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                             const int64_t *shape, const void *logits,
                                             clsm_dtype target_dtype, const void *target,
                                             const clsm_ce_options *opt, const void *weight,
                                             void *loss, void *grad, const void *grad_scale,
                                             float *lse, float *total_weight);

/* The sharded phases on host arrays (C order), blocking, nothing written
 * on error. Cross-entropy: arguments as clsm_cross_entropy_host with the
 * shard's logits (`shape`, its class extent C_r) and every class's weights;
 * stats has the positions' count times CLSM_SHARD_STATS values, float
 * (double for float64 logits). The finish's loss may be NULL when grad is
 * given. Softmax: a, b (NULL for the forward) and out of `dtype` and
 * `shape`; stats two floats (doubles for float64) a row. */
CLSM_API clsm_status clsm_cross_entropy_partial_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                                     const int64_t *shape, const void *logits,
                                                     clsm_dtype target_dtype, const void *target,
                                                     const clsm_shard *shard,
                                                     const clsm_ce_options *opt,
                                                     const void *weight, void *stats);
CLSM_API clsm_status clsm_cross_entropy_finish_host(clsm_context *ctx, clsm_dtype dtype, int rank,
                                                    const int64_t *shape, const void *logits,
                                                    clsm_dtype target_dtype, const void *target,
                                                    const clsm_shard *shard,
                                                    const clsm_ce_options *opt, const void *weight,
                                                    const void *stats, void *loss, void *grad,
                                                    const void *grad_scale, float *lse,
                                                    float *total_weight);
CLSM_API clsm_status clsm_softmax_partial_host(clsm_context *ctx, clsm_shard_op op,
                                               clsm_dtype dtype, int rank, const int64_t *shape,
                                               int dim, const void *a, const void *b,
                                               void *stats);
CLSM_API clsm_status clsm_softmax_finish_host(clsm_context *ctx, clsm_shard_op op,
                                              clsm_dtype dtype, int rank, const int64_t *shape,
                                              int dim, unsigned flags, const void *a,
                                              const void *b, const void *stats, void *out);

#ifdef __cplusplus
}
#endif

#endif /* CLSOFTMAX_H */
