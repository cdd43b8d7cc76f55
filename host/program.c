/* Kernel sources -> built programs and kernels, cached per context and built
 * on first use: one program per (dtype pair, kernel group), row operations
 * and cross-entropy apart, each with abi.h as its first source. CLSM_KERNEL_DIR points at a kernels/ folder to read the .cl
 * files from disk instead of the embedded copies (for kernel development). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sources of each group's program, in order: the ABI first, then the
 * common helpers. */
#define MAX_FILES 5
static const char *const group_files[G_REG0 + 1][MAX_FILES] = {
    [G_ROW] = {"abi.h", "common.cl", "softmax.cl", "backward.cl"},
    [G_CE] = {"abi.h", "common.cl", "ce_row.cl", "ce.cl", "shard.cl"},
    [G_ATTN] = {"abi.h", "common.cl", "attn.cl", NULL},
    [G_REG0] = {"abi.h", "common.cl", "ce_row.cl", "rows_reg.cl", NULL}, /* every variant */
};
static const char *const *files_of(int group) {
  return group_files[group < G_REG0 ? group : G_REG0];
}

/* Per-program build options: the input and output storage dtypes
 * (clsm__program_dtypes, plan.c). */
static const char *const program_options[CLSM_PROGRAM_COUNT] = {
    [P_F32] = "-DCLSM_X_F32 -DCLSM_Y_F32",     [P_F16] = "-DCLSM_X_F16 -DCLSM_Y_F16",
    [P_BF16] = "-DCLSM_X_BF16 -DCLSM_Y_BF16",  [P_F64] = "-DCLSM_X_F64 -DCLSM_Y_F64",
    [P_F16_F32] = "-DCLSM_X_F16 -DCLSM_Y_F32", [P_BF16_F32] = "-DCLSM_X_BF16 -DCLSM_Y_F32",
};

int clsm__program_for(clsm_dtype in, clsm_dtype out) {
  for (int p = 0; p < CLSM_PROGRAM_COUNT; ++p)
    if (clsm__program_dtypes[p][0] == in && clsm__program_dtypes[p][1] == out) return p;
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

/* A program's build options. Never fast-math: the special-value semantics
 * depend on IEEE behaviour. CPU devices store 16-wide vectors through
 * packed structs (common.cl) and may use clang's CPU builtins. */
static void build_options(int program, int group, int inner_vectors, int packed, int builtins,
                          int nv_regcap, char *buf, size_t size) {
  int n = snprintf(buf, size, "-cl-std=CL1.2 %s -DCLSM_INNER_VECTORS=%d%s%s", program_options[program],
                   inner_vectors, packed ? " -DCLSM_PACKED_STORES" : "",
                   builtins ? " -DCLSM_CPU_BUILTINS" : "");
  if (group >= G_REG0 && n > 0 && (size_t)n < size) {
    const int v = group - G_REG0;
    const clsm_reg_variant *rv = &clsm__reg_variants[v];
    const int cap = nv_regcap ? clsm__reg_cap(rv->wg) : 0;
    n += snprintf(buf + n, size - (size_t)n, " -DCLSM_REG_E=%d -DCLSM_REG_V=%d -DCLSM_REG_WG=%d",
                  rv->e, clsm__reg_width(program, v), rv->wg);
    if (cap && (size_t)n < size) snprintf(buf + n, size - (size_t)n, " -cl-nv-maxrregcount=%d", cap);
  }
}

static clsm_status build_program(clsm_context *ctx, int program, int group) {
  clsm_status st = CLSM_SUCCESS;
  const char *texts[MAX_FILES];
  size_t lens[MAX_FILES];
  char *owned[MAX_FILES] = {0};
  cl_uint nfiles = 0;
  cl_program prog = NULL;
  const char *dir = getenv("CLSM_KERNEL_DIR");

  for (; nfiles < MAX_FILES && files_of(group)[nfiles]; ++nfiles) {
    const char *file = files_of(group)[nfiles];
    if (dir && *dir) {
      owned[nfiles] = read_file(ctx, dir, file, &lens[nfiles]);
      if (!owned[nfiles]) {
        st = clsm__fail(ctx, CLSM_ERR_BUILD, "cannot read %s/%s (CLSM_KERNEL_DIR)", dir, file);
        goto fail;
      }
      texts[nfiles] = owned[nfiles];
    } else {
      const clsm_kernel_source *src = embedded(file);
      if (!src) {
        st = clsm__fail(ctx, CLSM_ERR_BUILD, "kernel source %s is not embedded", file);
        goto fail;
      }
      texts[nfiles] = src->text;
      lens[nfiles] = src->length;
    }
  }

  cl_int err = CL_SUCCESS;
  if (!clsm__inject_cl(ctx, &err))
    prog = clCreateProgramWithSource(ctx->cl_ctx, nfiles, texts, lens, &err);
  CLSM_CL_ERR(ctx, err, "clCreateProgramWithSource");

  char options[512];
  build_options(program, group, ctx->caps.inner_vectors, ctx->packed_stores, ctx->cpu_builtins,
                ctx->nv_regcap, options, sizeof options);
  err = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    keep_build_log(ctx, prog);
    ctx->cl_error = err;
    st = clsm__fail(ctx, CLSM_ERR_BUILD,
                    "clBuildProgram failed with %s (%d) for options \"%s\"; see the build log",
                    clsm_cl_error_name(err), (int)err, options);
    goto fail;
  }
  /* Every kernel of the program, and its work-group limit for the planner. */
  for (int id = 0; id < K_COUNT_; ++id) {
    if (CLSM_KERNEL_GROUP(id) != group || ctx->kernels[program][id]) continue;
    if (group >= G_REG0 && !clsm__reg_has(group - G_REG0, (clsm_kernel_id)id)) continue;
    cl_kernel k = NULL;
    if (!clsm__inject_cl(ctx, &err)) k = clCreateKernel(prog, clsm__kernel_name((clsm_kernel_id)id), &err);
    CLSM_CL_ERR(ctx, err, "clCreateKernel");
    ctx->kernels[program][id] = k;
    size_t wg = 0;
    CLSM_CL(ctx, clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg,
                                          &wg, NULL));
    ctx->kernel_wg[program][id] = wg;
  }
  ctx->programs[program][group] = prog;
  prog = NULL;

fail:
  if (prog) {
    /* Kernels of a program that did not make it are released with it. */
    for (int id = 0; id < K_COUNT_; ++id)
      if (CLSM_KERNEL_GROUP(id) == group && ctx->kernels[program][id]) {
        clReleaseKernel(ctx->kernels[program][id]);
        ctx->kernels[program][id] = NULL;
        ctx->kernel_wg[program][id] = 0;
      }
    clReleaseProgram(prog);
  }
  for (cl_uint i = 0; i < nfiles; ++i) free(owned[i]);
  return st;
}

clsm_status clsm__program(clsm_context *ctx, int program, int group) {
  if (ctx->programs[program][group]) return CLSM_SUCCESS;
  return build_program(ctx, program, group);
}

clsm_status clsm__kernel(clsm_context *ctx, int program, clsm_kernel_id id, cl_kernel *out) {
  clsm_status st = clsm__program(ctx, program, CLSM_KERNEL_GROUP(id));
  *out = st == CLSM_SUCCESS ? ctx->kernels[program][id] : NULL;
  return st;
}

clsm_status clsm__reg_ready(clsm_context *ctx, const clsm_plan *plan, int *ready) {
  *ready = 1;
  for (int i = 0; i < plan->nstages; ++i) {
    const clsm_kernel_id k = plan->stage[i].kernel;
    if (k < K_REG0) continue;
    const clsm_status st = clsm__program(ctx, plan->program, CLSM_KERNEL_GROUP(k));
    if (st != CLSM_SUCCESS) return st;
    *ready = ctx->kernel_wg[plan->program][k] >= plan->stage[i].local;
    break;
  }
  return CLSM_SUCCESS;
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
  /* The register-held rows variants: the GPU family's, for this dtype,
   * those whose group the device takes. */
  for (int g = 0; st == CLSM_SUCCESS && g < CLSM_GROUP_COUNT; ++g)
    if (g < G_REG0 || (ctx->caps.family == CLSM_FAMILY_GPU && clsm__reg_fits(&ctx->caps, program, g - G_REG0)))
      st = clsm__program(ctx, program, g);
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

void clsm__programs_release(clsm_context *ctx) {
  for (int p = 0; p < CLSM_PROGRAM_COUNT; ++p) {
    for (int k = 0; k < K_COUNT_; ++k) {
      if (ctx->kernels[p][k]) clReleaseKernel(ctx->kernels[p][k]);
      ctx->kernels[p][k] = NULL;
    }
    for (int g = 0; g < CLSM_GROUP_COUNT; ++g) {
      if (ctx->programs[p][g]) clReleaseProgram(ctx->programs[p][g]);
      ctx->programs[p][g] = NULL;
    }
  }
}

/* What a family's device builds: the options a CPU device (CPU family) or
 * a GPU (GPU family) gets, the embedded sources concatenated in order. The
 * GPU family's list ends with its register-held rows variants. */
_Static_assert(CLSM_PROGRAM_GROUPS == CLSM_GROUP_COUNT, "clsoftmax.h's program count");
static const char *const group_names[G_REG0] = {[G_ROW] = "row", [G_CE] = "ce", [G_ATTN] = "attn"};

/* Copies text into buf (size bytes, NUL-terminated, truncated) and adds
 * its length to *len. */
static void put_text(char *buf, size_t size, size_t *len, const char *text, size_t n) {
  if (buf && *len + 1 < size) {
    size_t room = size - 1 - *len, k = n < room ? n : room;
    memcpy(buf + *len, text, k);
    buf[*len + k] = '\0';
  }
  *len += n;
}

/* The group of a family's program `index`, or -1; with a described
 * device's caps, only the variants it takes. */
static int listed_group(clsm_family family, const clsm_caps *caps, int program, int index) {
  if (index < 0) return -1;
  if (index < G_REG0) return index;
  if (family != CLSM_FAMILY_GPU) return -1;
  for (int g = G_REG0; g < CLSM_GROUP_COUNT; ++g)
    if ((caps ? clsm__reg_fits(caps, program, g - G_REG0) : clsm__reg_usable(program, g - G_REG0)) &&
        index-- == G_REG0)
      return g;
  return -1;
}

static int program_count(clsm_family family, const clsm_caps *caps, clsm_dtype in, clsm_dtype out) {
  if (family != CLSM_FAMILY_CPU && family != CLSM_FAMILY_GPU) return -1;
  const int program = clsm__program_for(in, out);
  if (program < 0) return -1;
  int n = 0;
  while (listed_group(family, caps, program, n) >= 0) ++n;
  return n;
}

static clsm_status program_info(clsm_family family, const clsm_caps *caps, int nv, clsm_dtype in,
                                clsm_dtype out, int index, char *name, size_t name_size,
                                char *options, size_t options_size, char *source,
                                size_t source_size, size_t *source_length) {
  if (family != CLSM_FAMILY_CPU && family != CLSM_FAMILY_GPU) return CLSM_ERR_INVALID_ARGUMENT;
  const int program = clsm__program_for(in, out);
  if (program < 0) return CLSM_ERR_UNSUPPORTED_DTYPE;
  const int group = listed_group(family, caps, program, index);
  if (group < 0) return CLSM_ERR_INVALID_ARGUMENT;
  const int cpu = family == CLSM_FAMILY_CPU;
  if (name && name_size) {
    char gname[48];
    if (group < G_REG0) {
      snprintf(gname, sizeof gname, "%s", group_names[group]);
    } else {
      const clsm_reg_variant *rv = &clsm__reg_variants[group - G_REG0];
      snprintf(gname, sizeof gname, "rows_reg-e%d-v%d-wg%d", rv->e,
               clsm__reg_width(program, group - G_REG0), rv->wg);
    }
    if (in == out)
      snprintf(name, name_size, "%s.%s", gname, clsm_dtype_name(in));
    else
      snprintf(name, name_size, "%s.%s-%s", gname, clsm_dtype_name(in), clsm_dtype_name(out));
  }
  if (options && options_size)
    build_options(program, group, INNER_VECTORS_DEFAULT, cpu, cpu, nv, options, options_size);
  size_t len = 0;
  if (source && source_size) source[0] = '\0';
  for (int f = 0; f < MAX_FILES && files_of(group)[f]; ++f) {
    const clsm_kernel_source *src = embedded(files_of(group)[f]);
    if (!src) return CLSM_ERR_BUILD;
    put_text(source, source_size, &len, src->text, src->length);
    if (src->length && src->text[src->length - 1] != '\n') put_text(source, source_size, &len, "\n", 1);
  }
  if (source_length) *source_length = len;
  return CLSM_SUCCESS;
}

int clsm_program_count(clsm_family family, clsm_dtype in, clsm_dtype out) {
  return program_count(family, NULL, in, out);
}

clsm_status clsm_program_info(clsm_family family, clsm_dtype in, clsm_dtype out, int index,
                              char *name, size_t name_size, char *options, size_t options_size,
                              char *source, size_t source_size, size_t *source_length) {
  return program_info(family, NULL, 0, in, out, index, name, name_size, options, options_size,
                      source, source_size, source_length);
}

const char *clsm_profile_name(int index) {
  return index >= 0 && index < CLSM_PROFILE_COUNT ? clsm__profiles[index].name : NULL;
}

int clsm_profile_program_count(const char *profile, clsm_dtype in, clsm_dtype out) {
  const clsm_profile *p = clsm__profile(profile);
  if (!p) return -1;
  const clsm_caps caps = clsm__profile_caps(p);
  return program_count(p->family, &caps, in, out);
}

clsm_status clsm_profile_program_info(const char *profile, clsm_dtype in, clsm_dtype out, int index,
                                      char *name, size_t name_size, char *options,
                                      size_t options_size, char *source, size_t source_size,
                                      size_t *source_length) {
  const clsm_profile *p = clsm__profile(profile);
  if (!p) return CLSM_ERR_INVALID_ARGUMENT;
  const clsm_caps caps = clsm__profile_caps(p);
  return program_info(p->family, &caps, p->nv, in, out, index, name, name_size, options,
                      options_size, source, source_size, source_length);
}
