/* Device choice, context and queue creation (or adoption of a caller's queue),
 * the device's capabilities and tuning variables (clsm_caps), and the
 * per-context error detail's accessors. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

/* A tuning variable: unset (or empty) gives `dflt`; a value that is not an
 * integer in [lo, hi] (a power of two when pow2) is refused with a message
 * naming the variable. Returns 0 when refused. */
static int env_int(const char *name, long dflt, long lo, long hi, int pow2, long *out, char *msg,
                   size_t msize) {
  const char *s = getenv(name);
  *out = dflt;
  if (!s || !*s) return 1;
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi || (pow2 && (v & (v - 1)) != 0)) {
    snprintf(msg, msize, "%s=\"%s\" is not understood: %s in %ld..%ld", name, s,
             pow2 ? "a power of two" : "an integer", lo, hi);
    return 0;
  }
  *out = v;
  return 1;
}

/* A variable that takes one of `words` (NULL-terminated): its index, -1
 * when unset; 0 returned when the value is none of them. */
static int env_word(const char *name, const char *const *words, int *out, char *msg,
                    size_t msize) {
  const char *s = getenv(name);
  *out = -1;
  if (!s || !*s) return 1;
  for (int i = 0; words[i]; ++i)
    if (!strcmp(s, words[i])) {
      *out = i;
      return 1;
    }
  size_t len = (size_t)snprintf(msg, msize, "%s=\"%s\" is not understood: one of ", name, s);
  for (int i = 0; words[i] && len < msize; ++i)
    len += (size_t)snprintf(msg + len, msize - len, "%s%s", i ? ", " : "", words[i]);
  return 0;
}

static void put_detail(char *detail, size_t size, const char *msg) {
  if (detail && size) snprintf(detail, size, "%s", msg);
}

static int contains_nocase(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; ++hay) {
    size_t i = 0;
    while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
      ++i;
    if (i == n) return 1;
  }
  return n == 0;
}

/* The platforms (at most MAX_PLATFORMS), or why there are none. */
static clsm_status get_platforms(cl_platform_id *plats, cl_uint *np, char *msg, size_t msize) {
  *np = 0;
  cl_int err = clGetPlatformIDs(MAX_PLATFORMS, plats, np);
  if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && *np == 0)) {
    snprintf(msg, msize,
             "no OpenCL platform found: install an OpenCL driver (for the CPU: the Debian "
             "package pocl-opencl-icd)");
    return CLSM_ERR_NO_PLATFORM;
  }
  if (err != CL_SUCCESS) {
    snprintf(msg, msize, "clGetPlatformIDs failed with %s (%d)", clsm_cl_error_name(err),
             (int)err);
    return CLSM_ERR_OPENCL;
  }
  if (*np > MAX_PLATFORMS) *np = MAX_PLATFORMS;
  return CLSM_SUCCESS;
}

/* Finds the device a spec names; see clsm_context_create. */
static clsm_status find_device(const char *spec, cl_platform_id *pout, cl_device_id *dout,
                               char *msg, size_t msize) {
  cl_platform_id plats[MAX_PLATFORMS];
  cl_uint np = 0;
  clsm_status pst = get_platforms(plats, &np, msg, msize);
  if (pst != CLSM_SUCCESS) return pst;

  int want_type = 0; /* 0 any, 1 cpu, 2 gpu, 3 P:D, 4 name, 5 default */
  unsigned long wp = 0, wd = 0;
  if (!spec || !*spec) want_type = 5;
  else if (!strcmp(spec, "cpu")) want_type = 1;
  else if (!strcmp(spec, "gpu")) want_type = 2;
  else {
    char *end = NULL;
    wp = strtoul(spec, &end, 10);
    if (end != spec && *end == ':' && isdigit((unsigned char)end[1])) {
      char *end2 = NULL;
      wd = strtoul(end + 1, &end2, 10);
      want_type = *end2 ? 4 : 3;
    } else {
      want_type = 4;
    }
  }

  /* Two rounds for the default: the first GPU, then the first device of any type. */
  for (int round = 0; round < (want_type == 5 ? 2 : 1); ++round) {
    for (cl_uint p = 0; p < np; ++p) {
      cl_device_id devs[MAX_DEVICES];
      cl_uint nd = 0;
      if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) != CL_SUCCESS)
        continue;
      if (nd > MAX_DEVICES) nd = MAX_DEVICES;
      for (cl_uint d = 0; d < nd; ++d) {
        cl_device_type type = 0;
        char name[256] = "";
        clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof type, &type, NULL);
        clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof name - 1, name, NULL);
        int ok = 0;
        switch (want_type) {
        case 1: ok = (type & CL_DEVICE_TYPE_CPU) != 0; break;
        case 2: ok = (type & CL_DEVICE_TYPE_GPU) != 0; break;
        case 3: ok = (p == wp && d == wd); break;
        case 4: ok = contains_nocase(name, spec); break;
        case 5: ok = round == 1 || (type & CL_DEVICE_TYPE_GPU) != 0; break;
        }
        if (ok) {
          *pout = plats[p];
          *dout = devs[d];
          return CLSM_SUCCESS;
        }
      }
    }
  }
  if (want_type == 5)
    snprintf(msg, msize, "the OpenCL platforms list no device");
  else
    snprintf(msg, msize, "no OpenCL device matches the spec \"%s\" (use cpu, gpu, P:D or a "
                         "part of a device name; `clsoftmax devices` lists them)", spec);
  return CLSM_ERR_DEVICE_NOT_FOUND;
}

clsm_status clsm_list_devices(clsm_device_info *out, size_t capacity, size_t *count,
                              char *detail, size_t detail_size) {
  char msg[512];
  if (count) *count = 0;
  if (!count || (!out && capacity)) {
    put_detail(detail, detail_size, !count ? "count is NULL" : "out is NULL but capacity is not 0");
    return CLSM_ERR_NULL_ARGUMENT;
  }
  static const char *const families[] = {"cpu", "gpu", NULL};
  int fam = -1;
  if (!env_word("CLSM_FAMILY", families, &fam, msg, sizeof msg)) {
    put_detail(detail, detail_size, msg);
    return CLSM_ERR_INVALID_ARGUMENT;
  }
  cl_platform_id plats[MAX_PLATFORMS];
  cl_uint np = 0;
  clsm_status pst = get_platforms(plats, &np, msg, sizeof msg);
  if (pst != CLSM_SUCCESS) {
    put_detail(detail, detail_size, msg);
    return pst;
  }
  /* The default is what clsm_context_create picks for a NULL spec. */
  const char *env = getenv("CLSM_DEVICE");
  cl_platform_id dp = NULL;
  cl_device_id dd = NULL;
  if (find_device(env && *env ? env : NULL, &dp, &dd, msg, sizeof msg) != CLSM_SUCCESS) dd = NULL;
  size_t n = 0;
  for (cl_uint p = 0; p < np; ++p) {
    cl_device_id devs[MAX_DEVICES];
    cl_uint nd = 0;
    if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) != CL_SUCCESS) continue;
    if (nd > MAX_DEVICES) nd = MAX_DEVICES;
    for (cl_uint d = 0; d < nd; ++d, ++n) {
      if (n >= capacity) continue;
      clsm_device_info *i = &out[n];
      memset(i, 0, sizeof *i);
      i->platform = p;
      i->device = d;
      i->platform_id = plats[p];
      i->device_id = devs[d];
      clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof i->type, &i->type, NULL);
      clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof i->name - 1, i->name, NULL);
      clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof i->platform_name - 1, i->platform_name, NULL);
      i->family = fam >= 0 ? (fam == 0 ? CLSM_FAMILY_CPU : CLSM_FAMILY_GPU)
                           : (i->type & CL_DEVICE_TYPE_CPU) ? CLSM_FAMILY_CPU : CLSM_FAMILY_GPU;
      i->is_default = devs[d] == dd;
    }
  }
  *count = n;
  return CLSM_SUCCESS;
}

/* Reads device properties and sets the tunables; every tuning variable of
 * the environment is validated (docs/design.md lists them). Returns 0, with
 * `msg` naming the variable, when one is not understood. */
static int query_device(clsm_context *ctx, char *msg, size_t msize) {
  clsm_caps *caps = &ctx->caps;
  size_t max_wg = 0;
  cl_ulong local_mem = 0;
  cl_uint units = 0;
  clGetDeviceInfo(ctx->device, CL_DEVICE_TYPE, sizeof ctx->device_type, &ctx->device_type, NULL);
  clGetDeviceInfo(ctx->device, CL_DEVICE_NAME, sizeof ctx->device_name - 1, ctx->device_name,
                  NULL);
  clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL);
  clGetDeviceInfo(ctx->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_mem, &local_mem, NULL);
  clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ctx->max_alloc,
                  &ctx->max_alloc, NULL);
  clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
  cl_device_fp_config fp64 = 0;
  if (clGetDeviceInfo(ctx->device, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp64, &fp64, NULL) ==
      CL_SUCCESS)
    ctx->has_fp64 = fp64 != 0;
  const int cpu = (ctx->device_type & CL_DEVICE_TYPE_CPU) != 0;
  clsm__caps_defaults(caps, cpu ? CLSM_FAMILY_CPU : CLSM_FAMILY_GPU, max_wg, local_mem, units);

  static const char *const families[] = {"cpu", "gpu", NULL};
  int fam = -1, kern = -1;
  long wg_env, inner_vectors, split, row_blocks, inner_tile, rows16, packed, nt, lanes, reg;
  if (!env_word("CLSM_FAMILY", families, &fam, msg, msize) ||
      !env_word("CLSM_KERNEL", clsm__forceable_kernels, &kern, msg, msize) ||
      !env_int("CLSM_WG_SIZE", 0, 1, (long)caps->max_wg_size, 1, &wg_env, msg, msize) ||
      !env_int("CLSM_INNER_VECTORS", caps->inner_vectors, 1, 128, 0, &inner_vectors, msg, msize) ||
      !env_int("CLSM_SPLIT", caps->split, 0, 1, 0, &split, msg, msize) ||
      !env_int("CLSM_ROW_BLOCKS", caps->row_blocks, 0, 1, 0, &row_blocks, msg, msize) ||
      !env_int("CLSM_INNER_TILE", caps->inner_tile, 0, 1, 0, &inner_tile, msg, msize) ||
      !env_int("CLSM_CE_ROWS16", caps->ce_rows16, 0, 1, 0, &rows16, msg, msize) ||
      !env_int("CLSM_PACKED_STORES", cpu, 0, 1, 0, &packed, msg, msize) ||
      !env_int("CLSM_NT_STORES", -1, 0, 1, 0, &nt, msg, msize) ||
      !env_int("CLSM_ROW_LANES", 0, 1, 1 << 16, 1, &lanes, msg, msize) ||
      !env_int("CLSM_REG_ROWS", caps->reg_rows, 0, 1, 0, &reg, msg, msize))
    return 0;

  if (fam >= 0) caps->family = fam == 0 ? CLSM_FAMILY_CPU : CLSM_FAMILY_GPU;
  caps->wg_forced = wg_env > 0;
  if (caps->wg_forced) caps->wg_size = caps->wg_cap = (size_t)wg_env;
  caps->inner_vectors = (int)inner_vectors;
  caps->split = (int)split;
  caps->row_blocks = (int)row_blocks;
  caps->inner_tile = (int)inner_tile;
  caps->ce_rows16 = (int)rows16;
  caps->forced_kernel = kern;
  ctx->packed_stores = (int)packed;
  /* CPU devices store outputs of at least the cache's size non-temporally
   * where a kernel writes them once (CLSM_NT_STORES=0 never, 1 any size). */
  cl_ulong cache = 0;
  clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, sizeof cache, &cache, NULL);
  /* Clang's CPU builtins only in CPU-family programs: a device that claims
   * every type (Oclgrind) runs the GPU family without them. */
  ctx->cpu_builtins = cpu && caps->family == CLSM_FAMILY_CPU;
  caps->nt_bytes = nt == 0 || !ctx->cpu_builtins ? UINT64_MAX
                   : nt == 1                     ? 0
                   : cache                       ? cache
                                                 : (uint64_t)32 << 20;
  caps->row_lanes = (size_t)lanes;
  caps->reg_rows = (int)reg;
  /* NVIDIA's compiler takes a register cap per program: the register-held
   * rows variants get the cap that lets their whole group run. */
  char ext[8192];
  size_t ext_len = 0;
  ctx->nv_regcap = clGetDeviceInfo(ctx->device, CL_DEVICE_EXTENSIONS, sizeof ext - 1, ext,
                                   &ext_len) == CL_SUCCESS &&
                   ext_len < sizeof ext && (ext[ext_len] = '\0', strstr(ext, "cl_nv_compiler_options"));
  return 1;
}

/* The context itself is allocation number 1 for the test hook. The hooks
 * exist only in the library the tests link (CLSM_TESTING); a release
 * library reads no CLSM_TEST_* variable. */
static clsm_status context_alloc(clsm_context **out) {
#ifdef CLSM_TESTING
  long fail = clsm__env_long("CLSM_TEST_FAIL_ALLOC", 0, 0, 1L << 30);
#else
  long fail = 0;
#endif
  clsm_context *ctx = fail == 1 ? NULL : calloc(1, sizeof *ctx);
  if (!ctx) return CLSM_ERR_OUT_OF_HOST_MEMORY;
  ctx->fail_alloc = fail;
  ctx->alloc_count = 1;
#ifdef CLSM_TESTING
  ctx->fail_cl = clsm__env_long("CLSM_TEST_FAIL_CL", 0, 0, 1L << 30);
  ctx->max_buffer = clsm__env_long("CLSM_TEST_MAX_BUFFER", 0, 0, LONG_MAX);
#endif
  if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
    free(ctx);
    return CLSM_ERR_OUT_OF_HOST_MEMORY;
  }
  *out = ctx;
  return CLSM_SUCCESS;
}

clsm_status clsm_context_create(clsm_context **out, const char *spec, char *detail,
                                size_t detail_size) {
  char msg[512] = "";
  if (!out) {
    put_detail(detail, detail_size, "clsm_context_create: out is NULL");
    return CLSM_ERR_NULL_ARGUMENT;
  }
  *out = NULL;
  const int from_env = (!spec || !*spec) && getenv("CLSM_DEVICE") && *getenv("CLSM_DEVICE");
  if (from_env) spec = getenv("CLSM_DEVICE");

  cl_platform_id platform = NULL;
  cl_device_id device = NULL;
  clsm_status st = find_device(spec, &platform, &device, msg, sizeof msg);
  if (st != CLSM_SUCCESS) {
    if (from_env && st == CLSM_ERR_DEVICE_NOT_FOUND) {
      char full[600];
      snprintf(full, sizeof full, "CLSM_DEVICE (the default device spec): %s", msg);
      put_detail(detail, detail_size, full);
    } else {
      put_detail(detail, detail_size, msg);
    }
    return st;
  }
  clsm_context *ctx = NULL;
  if ((st = context_alloc(&ctx)) != CLSM_SUCCESS) {
    put_detail(detail, detail_size, "out of host memory");
    return st;
  }
  ctx->platform = platform;
  ctx->device = device;
  if (!query_device(ctx, msg, sizeof msg)) {
    put_detail(detail, detail_size, msg);
    clsm_context_destroy(ctx);
    return CLSM_ERR_INVALID_ARGUMENT;
  }

  cl_int err = CL_SUCCESS;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)platform, 0};
  if (!clsm__inject_cl(ctx, &err)) ctx->cl_ctx = clCreateContext(props, 1, &device, NULL, NULL, &err);
  if (!ctx->cl_ctx) {
    snprintf(msg, sizeof msg, "clCreateContext on \"%s\" failed with %s (%d)", ctx->device_name,
             clsm_cl_error_name(err), (int)err);
    goto fail;
  }
  if (!clsm__inject_cl(ctx, &err))
    ctx->queue = clCreateCommandQueue(ctx->cl_ctx, device, CL_QUEUE_PROFILING_ENABLE, &err);
  if (!ctx->queue) {
    snprintf(msg, sizeof msg, "clCreateCommandQueue on \"%s\" failed with %s (%d)",
             ctx->device_name, clsm_cl_error_name(err), (int)err);
    goto fail;
  }
  ctx->profiling = 1;
  *out = ctx;
  return CLSM_SUCCESS;

fail:
  put_detail(detail, detail_size, msg);
  clsm_context_destroy(ctx);
  return err == CL_OUT_OF_HOST_MEMORY ? CLSM_ERR_OUT_OF_HOST_MEMORY : CLSM_ERR_OPENCL;
}

clsm_status clsm_context_adopt(clsm_context **out, cl_command_queue queue, char *detail,
                               size_t detail_size) {
  char msg[512];
  if (!out || !queue) {
    put_detail(detail, detail_size, "clsm_context_adopt: out or queue is NULL");
    if (out) *out = NULL;
    return CLSM_ERR_NULL_ARGUMENT;
  }
  *out = NULL;
  clsm_context *ctx = NULL;
  clsm_status st = context_alloc(&ctx);
  if (st != CLSM_SUCCESS) {
    put_detail(detail, detail_size, "out of host memory");
    return st;
  }
  cl_command_queue_properties qp = 0;
  cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof ctx->cl_ctx, &ctx->cl_ctx,
                                     NULL);
  if (err == CL_SUCCESS)
    err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof ctx->device, &ctx->device, NULL);
  if (err == CL_SUCCESS)
    err = clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL);
  if (err == CL_SUCCESS)
    err = clGetDeviceInfo(ctx->device, CL_DEVICE_PLATFORM, sizeof ctx->platform, &ctx->platform,
                          NULL);
  if (err != CL_SUCCESS) {
    snprintf(msg, sizeof msg, "querying the adopted queue failed with %s (%d)",
             clsm_cl_error_name(err), (int)err);
    put_detail(detail, detail_size, msg);
    ctx->cl_ctx = NULL;
    clsm_context_destroy(ctx);
    return CLSM_ERR_OPENCL;
  }
  if (qp & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) {
    put_detail(detail, detail_size, "the adopted queue is out-of-order; an in-order queue is needed");
    ctx->cl_ctx = NULL;
    clsm_context_destroy(ctx);
    return CLSM_ERR_INVALID_ARGUMENT;
  }
  clRetainContext(ctx->cl_ctx);
  clRetainCommandQueue(queue);
  ctx->queue = queue;
  ctx->profiling = (qp & CL_QUEUE_PROFILING_ENABLE) != 0;
  if (!query_device(ctx, msg, sizeof msg)) {
    put_detail(detail, detail_size, msg);
    clsm_context_destroy(ctx);
    return CLSM_ERR_INVALID_ARGUMENT;
  }
  *out = ctx;
  return CLSM_SUCCESS;
}

void clsm_context_destroy(clsm_context *ctx) {
  if (!ctx) return;
  if (ctx->queue) clFinish(ctx->queue);
  clsm__programs_release(ctx);
  clsm__calls_release(ctx);
  if (ctx->scratch) clReleaseMemObject(ctx->scratch);
  if (ctx->alibi) clReleaseMemObject(ctx->alibi);
  if (ctx->queue) clReleaseCommandQueue(ctx->queue);
  if (ctx->cl_ctx) clReleaseContext(ctx->cl_ctx);
  free(ctx->build_log);
  pthread_mutex_destroy(&ctx->lock);
  free(ctx);
}

cl_context clsm_context_cl_context(const clsm_context *ctx) { return ctx ? ctx->cl_ctx : NULL; }
cl_command_queue clsm_context_queue(const clsm_context *ctx) { return ctx ? ctx->queue : NULL; }
cl_device_id clsm_context_device(const clsm_context *ctx) { return ctx ? ctx->device : NULL; }
const char *clsm_context_device_name(const clsm_context *ctx) {
  return ctx ? ctx->device_name : "";
}
clsm_family clsm_context_family(const clsm_context *ctx) {
  return ctx ? ctx->caps.family : CLSM_FAMILY_CPU;
}

clsm_status clsm_finish(clsm_context *ctx) {
  if (!ctx) return CLSM_ERR_NULL_ARGUMENT;
  clsm_status st = CLSM_SUCCESS;
  pthread_mutex_lock(&ctx->lock);
  CLSM_CL(ctx, clFinish(ctx->queue));
  st = clsm__calls_report(ctx, 0);
fail:
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

clsm_status clsm_context_release(clsm_context *ctx, char *detail, size_t detail_size) {
  if (detail && detail_size) detail[0] = '\0';
  if (!ctx) return CLSM_SUCCESS;
  clsm_status st = CLSM_SUCCESS;
  pthread_mutex_lock(&ctx->lock);
  CLSM_CL(ctx, clFinish(ctx->queue));
  st = clsm__calls_report(ctx, 1);
fail:
  if (st != CLSM_SUCCESS) put_detail(detail, detail_size, ctx->error);
  pthread_mutex_unlock(&ctx->lock);
  clsm_context_destroy(ctx);
  return st;
}

static size_t copy_out(const char *s, char *buf, size_t size) {
  size_t n = s ? strlen(s) : 0;
  if (buf && size) {
    size_t k = n < size - 1 ? n : size - 1;
    if (k) memcpy(buf, s, k);
    buf[k] = '\0';
  }
  return n;
}

/* Copies one of the context's detail strings under its lock. */
static size_t copy_detail(const clsm_context *cctx, int build_log, char *buf, size_t size) {
  if (!cctx) return copy_out("", buf, size);
  clsm_context *ctx = (clsm_context *)cctx;
  pthread_mutex_lock(&ctx->lock);
  size_t n = copy_out(build_log ? ctx->build_log : ctx->error, buf, size);
  pthread_mutex_unlock(&ctx->lock);
  return n;
}

size_t clsm_context_error(const clsm_context *ctx, char *buf, size_t size) {
  return copy_detail(ctx, 0, buf, size);
}

cl_int clsm_context_cl_error(const clsm_context *cctx) {
  if (!cctx) return CL_SUCCESS;
  clsm_context *ctx = (clsm_context *)cctx;
  pthread_mutex_lock(&ctx->lock);
  cl_int e = ctx->cl_error;
  pthread_mutex_unlock(&ctx->lock);
  return e;
}

size_t clsm_context_build_log(const clsm_context *ctx, char *buf, size_t size) {
  return copy_detail(ctx, 1, buf, size);
}
