/* Error recording, the library's own allocations (host memory and the
 * scratch buffer) and the test hooks that make them fail. Every other host
 * file calls into this one; it calls into none of them. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

clsm_status clsm__fail(clsm_context *ctx, clsm_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
  va_end(ap);
  return status;
}

clsm_status clsm__cl_fail(clsm_context *ctx, cl_int err, const char *call, const char *file,
                          int line) {
  const char *base = strrchr(file, '/');
  ctx->cl_error = err;
  return clsm__fail(ctx, CLSM_ERR_OPENCL, "%s failed with %s (%d) at %s:%d", call,
                    clsm_cl_error_name(err), (int)err, base ? base + 1 : file, line);
}

#ifdef CLSM_TESTING
long clsm__env_long(const char *name, long dflt, long lo, long hi) {
  const char *s = getenv(name);
  if (!s || !*s) return dflt;
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return dflt;
  return v;
}
#endif

int clsm__inject_cl(clsm_context *ctx, cl_int *err) {
  if (!ctx->fail_cl || ++ctx->cl_count != ctx->fail_cl) return 0;
  *err = CL_OUT_OF_RESOURCES;
  return 1;
}

int clsm__inject_buffer(clsm_context *ctx, size_t bytes, cl_int *err) {
  if (clsm__inject_cl(ctx, err)) return 1;
  if (ctx->max_buffer > 0 && bytes > (size_t)ctx->max_buffer) {
    *err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
    return 1;
  }
  return 0;
}

clsm_status clsm__scratch(clsm_context *ctx, size_t bytes) {
  clsm_status st = CLSM_SUCCESS;
  cl_int err = CL_SUCCESS;
  if (ctx->scratch_bytes >= bytes) return CLSM_SUCCESS;
  size_t want = bytes < 4096 ? 4096 : bytes + bytes / 2;
  cl_mem m = NULL;
  if (!clsm__inject_buffer(ctx, want, &err)) m = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, want, NULL, &err);
  if (!m && err == CL_SUCCESS) err = CL_OUT_OF_RESOURCES;
  CLSM_CL_ERR(ctx, err, "clCreateBuffer");
  if (ctx->scratch) clReleaseMemObject(ctx->scratch);
  ctx->scratch = m;
  ctx->scratch_bytes = want;
fail:
  return st;
}

void *clsm__malloc(clsm_context *ctx, size_t size) {
  if (ctx->fail_alloc && ++ctx->alloc_count == ctx->fail_alloc) return NULL;
  return malloc(size);
}
