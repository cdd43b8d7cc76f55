/* Kernel sources -> built programs and kernels, cached per context and built
 * on first use. CLSM_KERNEL_DIR points at a kernels/ folder to read the .cl
 * files from disk instead of the embedded copies (for kernel development). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kernel_names[K_COUNT_] = {
    "clsm_softmax_rows_cpu",   "clsm_softmax_inner_cpu",   "clsm_softmax_rows_wg",
    "clsm_softmax_strided",    "clsm_softmax_generic",     "clsm_backward_rows_cpu",
    "clsm_backward_inner_cpu", "clsm_backward_rows_wg",    "clsm_backward_strided",
    "clsm_backward_generic",   "clsm_ce_prep",             "clsm_ce_reduce",
    "clsm_ce_finish",          "clsm_ce_strided",          "clsm_ce_rows_cpu",
    "clsm_ce_rows_wg",         "clsm_ce_inner_cpu",        "clsm_softmax_split_partials",
    "clsm_softmax_split_write", "clsm_backward_split_partials", "clsm_backward_split_write",
    "clsm_ce_rows_long_cpu",   "clsm_ce_rows16_cpu",       "clsm_ce_split_partials",
    "clsm_ce_split_rows",
};

/* Sources of every program, in order (common helpers first). */
static const char *const program_files[] = {"common.cl", "softmax.cl", "backward.cl", "ce.cl"};
#define PROGRAM_FILE_COUNT (sizeof program_files / sizeof program_files[0])

/* Per-program build options: the input and output storage dtypes. */
static const struct {
  clsm_dtype in, out;
  const char *options;
} programs[CLSM_PROGRAM_COUNT] = {
    [P_F32] = {CLSM_FLOAT32, CLSM_FLOAT32, "-DCLSM_X_F32 -DCLSM_Y_F32"},
    [P_F16] = {CLSM_FLOAT16, CLSM_FLOAT16, "-DCLSM_X_F16 -DCLSM_Y_F16"},
    [P_BF16] = {CLSM_BFLOAT16, CLSM_BFLOAT16, "-DCLSM_X_BF16 -DCLSM_Y_BF16"},
    [P_F64] = {CLSM_FLOAT64, CLSM_FLOAT64, "-DCLSM_X_F64 -DCLSM_Y_F64"},
    [P_F16_F32] = {CLSM_FLOAT16, CLSM_FLOAT32, "-DCLSM_X_F16 -DCLSM_Y_F32"},
    [P_BF16_F32] = {CLSM_BFLOAT16, CLSM_FLOAT32, "-DCLSM_X_BF16 -DCLSM_Y_F32"},
};

int clsm__program_for(clsm_dtype in, clsm_dtype out) {
  for (int p = 0; p < CLSM_PROGRAM_COUNT; ++p)
    if (programs[p].in == in && programs[p].out == out) return p;
  return -1;
}

static char *read_file(clsm_context *ctx, const char *dir, const char *name, size_t *len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = clsm__malloc(ctx, (size_t)n + 1))) {
      if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
      } else {
        buf[n] = '\0'; /* a length of 0 tells OpenCL to look for the terminator */
        *len = (size_t)n;
      }
    }
  }
  fclose(f);
  return buf;
}

static const clsm_kernel_source *embedded(const char *name) {
  for (size_t i = 0; i < clsm_kernel_source_count; ++i)
    if (!strcmp(clsm_kernel_sources[i].name, name)) return &clsm_kernel_sources[i];
  return NULL;
}

static void keep_build_log(clsm_context *ctx, cl_program prog) {
  size_t n = 0;
  if (clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) != CL_SUCCESS)
    return;
  char *log = clsm__malloc(ctx, n + 1);
  if (!log) return;
  if (clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, n, log, NULL) != CL_SUCCESS)
    n = 0;
  log[n] = '\0';
  free(ctx->build_log);
  ctx->build_log = log;
}

static clsm_status build_program(clsm_context *ctx, int program) {
  clsm_status st = CLSM_SUCCESS;
  const char *texts[PROGRAM_FILE_COUNT];
  size_t lens[PROGRAM_FILE_COUNT];
  char *owned[PROGRAM_FILE_COUNT] = {0};
  cl_program prog = NULL;
  const char *dir = getenv("CLSM_KERNEL_DIR");

  for (size_t i = 0; i < PROGRAM_FILE_COUNT; ++i) {
    if (dir && *dir) {
      owned[i] = read_file(ctx, dir, program_files[i], &lens[i]);
      if (!owned[i]) {
        st = clsm__fail(ctx, CLSM_ERR_BUILD, "cannot read %s/%s (CLSM_KERNEL_DIR)", dir,
                        program_files[i]);
        goto fail;
      }
      texts[i] = owned[i];
    } else {
      const clsm_kernel_source *src = embedded(program_files[i]);
      if (!src) {
        st = clsm__fail(ctx, CLSM_ERR_BUILD, "kernel source %s is not embedded", program_files[i]);
        goto fail;
      }
      texts[i] = src->text;
      lens[i] = src->length;
    }
  }

  cl_int err = CL_SUCCESS;
  if (!clsm__inject_cl(ctx, &err))
    prog = clCreateProgramWithSource(ctx->cl_ctx, (cl_uint)PROGRAM_FILE_COUNT, texts, lens, &err);
  CLSM_CL_ERR(ctx, err, "clCreateProgramWithSource");

  /* Never fast-math: the special-value semantics depend on IEEE behaviour. */
  char options[512];
  /* CPU devices store 16-wide vectors through packed structs (common.cl). */
  snprintf(options, sizeof options, "-cl-std=CL1.2 %s -DCLSM_INNER_VECTORS=%d%s%s",
           programs[program].options, ctx->inner_vectors,
           ctx->packed_stores ? " -DCLSM_PACKED_STORES" : "",
           ctx->cpu_builtins ? " -DCLSM_CPU_BUILTINS" : "");
  err = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    keep_build_log(ctx, prog);
    ctx->cl_error = err;
    st = clsm__fail(ctx, CLSM_ERR_BUILD,
                    "clBuildProgram failed with %s (%d) for options \"%s\"; see the build log",
                    clsm_cl_error_name(err), (int)err, options);
    goto fail;
  }
  ctx->programs[program] = prog;
  prog = NULL;

fail:
  if (prog) clReleaseProgram(prog);
  for (size_t i = 0; i < PROGRAM_FILE_COUNT; ++i) free(owned[i]);
  return st;
}

clsm_status clsm__kernel(clsm_context *ctx, int program, clsm_kernel_id id, cl_kernel *out) {
  clsm_status st = CLSM_SUCCESS;
  if (!ctx->programs[program] && (st = build_program(ctx, program)) != CLSM_SUCCESS) return st;
  if (!ctx->kernels[program][id]) {
    cl_int err = CL_SUCCESS;
    cl_kernel k = NULL;
    if (!clsm__inject_cl(ctx, &err)) k = clCreateKernel(ctx->programs[program], kernel_names[id], &err);
    CLSM_CL_ERR(ctx, err, "clCreateKernel");
    ctx->kernels[program][id] = k;
  }
  *out = ctx->kernels[program][id];
fail:
  return st;
}

clsm_status clsm__check_fp64(clsm_context *ctx, int program) {
  if (program != P_F64 || ctx->has_fp64) return CLSM_SUCCESS;
  return clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_DTYPE,
                    "float64 needs cl_khr_fp64, which \"%s\" does not have", ctx->device_name);
}

clsm_status clsm_context_prepare(clsm_context *ctx, clsm_dtype in, clsm_dtype out) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  clsm_status st = CLSM_SUCCESS;
  pthread_mutex_lock(&ctx->lock);
  ctx->error[0] = '\0';
  const int program = clsm__program_for(in, out);
  if (!clsm_dtype_size(in) || !clsm_dtype_size(out))
    st = clsm__fail(ctx, CLSM_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d",
                    clsm_dtype_size(in) ? "out" : "in", (int)(clsm_dtype_size(in) ? out : in));
  else if (program < 0)
    st = clsm__fail(ctx, CLSM_ERR_UNSUPPORTED_DTYPE,
                    "no operation takes %s in and %s out: the output is the input's dtype, or "
                    "float32 for 16-bit inputs",
                    clsm_dtype_name(in), clsm_dtype_name(out));
  else
    st = clsm__check_fp64(ctx, program);
  for (int id = 0; st == CLSM_SUCCESS && id < K_COUNT_; ++id) {
    cl_kernel k = NULL;
    st = clsm__kernel(ctx, program, (clsm_kernel_id)id, &k);
  }
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

void clsm__programs_release(clsm_context *ctx) {
  for (int p = 0; p < CLSM_PROGRAM_COUNT; ++p) {
    for (int k = 0; k < K_COUNT_; ++k) {
      if (ctx->kernels[p][k]) clReleaseKernel(ctx->kernels[p][k]);
      ctx->kernels[p][k] = NULL;
    }
    if (ctx->programs[p]) clReleaseProgram(ctx->programs[p]);
    ctx->programs[p] = NULL;
  }
}
