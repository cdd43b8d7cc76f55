/* Helpers shared by the Check suites: a context per test (created after Check
 * forks), seeded random inputs with outliers, device buffers. */
#ifndef CLSM_TESTUTIL_H
#define CLSM_TESTUTIL_H

#include "clsoftmax.h"
#include "reference.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A passing assertion marks nothing. Check's own ck_assert_msg (and every
 * ck_assert_* built on it) sends the passing line to the runner as a message,
 * and the runner re-reads its whole buffer for each one: with the suites'
 * element-wise comparisons (millions of passing checks) that cost grows
 * quadratically, and far faster under AddressSanitizer. A failure
 * reports as before; a crash reports the test's start instead of the last
 * passing line (mark_point() where that is wanted). */
#undef ck_assert_msg
#define ck_assert_msg(expr, ...)                                                           \
  ((expr) ? (void)0                                                                        \
          : _ck_assert_failed(__FILE__, __LINE__, "Assertion '" #expr "' failed", ##__VA_ARGS__))

/* Fails the test with the library's detail when st is not CLSM_SUCCESS. */
#define CK_STATUS(ctx, st)                                                                 \
  do {                                                                                     \
    clsm_status st_ = (st);                                                                \
    if (st_ != CLSM_SUCCESS) {                                                             \
      char det_[1024] = "";                                                                \
      clsm_context_error((ctx), det_, sizeof det_);                                        \
      ck_abort_msg("%s returned %s: %s", #st, clsm_status_name(st_), det_);                \
    }                                                                                      \
  } while (0)

static inline clsm_context *test_context(void) {
  clsm_context *ctx = NULL;
  char detail[512] = "";
  clsm_status st = clsm_context_create(&ctx, NULL, detail, sizeof detail);
  ck_assert_msg(st == CLSM_SUCCESS, "context: %s: %s", clsm_status_name(st), detail);
  return ctx;
}

/* xorshift64*: a fixed, printed seed gives the same inputs everywhere. */
typedef struct rng {
  uint64_t s;
} rng;
static inline uint64_t rng_next(rng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 2685821657736338717ull;
}
static inline double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* Values mostly in [-4, 4] with 1 in 50 outliers up to +-60 (the reference
 * still sees them well above 1e-30 or cleanly below). */
static inline void fill_random(float *x, int64_t n, uint64_t seed) {
  rng r = {seed * 0x9E3779B97F4A7C15ull + 1};
  for (int64_t i = 0; i < n; ++i) {
    double u = rng_unit(&r);
    x[i] = (float)(rng_unit(&r) * 8.0 - 4.0);
    if (u < 0.02) x[i] = (float)(rng_unit(&r) * 120.0 - 60.0);
  }
}

/* Rows 0-6 of rows of C elements at r0 made special: a NaN, a +inf, all
 * -inf, one finite (2.5, last) among -inf, the first half -inf, huge
 * positive values up to `huge`, and values just above -huge. */
static inline void fill_special_rows(float *r0, int64_t C, float huge) {
  r0[0 * C + C / 2] = NAN;
  r0[1 * C + C - 1] = INFINITY;
  for (int64_t c = 0; c < C; ++c) r0[2 * C + c] = -INFINITY;
  for (int64_t c = 0; c < C; ++c) r0[3 * C + c] = c == C - 1 ? 2.5f : -INFINITY;
  for (int64_t c = 0; c < C / 2; ++c) r0[4 * C + c] = -INFINITY;
  for (int64_t c = 0; c < C; ++c) r0[5 * C + c] = huge * (float)((c % 5) + 1) / 5.0f;
  for (int64_t c = 0; c < C; ++c) r0[6 * C + c] = -huge + (float)(c % 7);
}

/* Points the ICD loader at an empty vendors folder. Returns 1 when the loader
 * then finds no platform, as ocl-icd does; a loader that ignores
 * OCL_ICD_VENDORS (some GPU drivers ship their own) still finds one, and the
 * no-platform case cannot be made: the caller then says so and skips. */
static inline int test_hide_platforms(const char *empty_dir) {
  setenv("OCL_ICD_VENDORS", empty_dir, 1);
  cl_uint n = 0;
  if (clGetPlatformIDs(0, NULL, &n) != CL_SUCCESS) n = 0;
  if (n) printf("skipped: this ICD loader ignores OCL_ICD_VENDORS and still finds %u platform(s)\n", n);
  return n == 0;
}

static inline cl_mem test_buffer(clsm_context *ctx, size_t bytes, const void *init) {
  cl_int err = CL_SUCCESS;
  cl_mem m = clCreateBuffer(clsm_context_cl_context(ctx),
                            CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0),
                            bytes ? bytes : 1, (void *)init, &err);
  ck_assert_msg(m != NULL, "clCreateBuffer(%zu) failed: %s", bytes, clsm_cl_error_name(err));
  return m;
}

/* Kernel `name` from kernels/common.cl (CLSM_KERNEL_DIR's when set, as the
 * library reads it) followed by `kern`, built with `options`; *prog gets
 * the program to release with the kernel. */
static inline cl_kernel test_common_kernel(clsm_context *ctx, const char *kern, const char *options,
                                           const char *name, cl_program *prog) {
  /* abi.h, then common.cl, then the test's kernel: as the library's programs start. */
  static char src[65536];
  size_t len = 0;
  static const char *const files[2] = {"abi.h", "common.cl"};
  for (int i = 0; i < 2; ++i) {
    char path[512];
    const char *dir = getenv("CLSM_KERNEL_DIR");
    if (dir && *dir) snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    else snprintf(path, sizeof path, "%s/kernels/%s", CLSM_SOURCE_DIR, files[i]);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    len += fread(src + len, 1, sizeof src - 1 - len, f);
    fclose(f);
    ck_assert_msg(len + 1 < sizeof src, "%s is too long for the test's buffer", path);
    src[len++] = '\n';
  }
  ck_assert_msg(len + strlen(kern) < sizeof src, "the test kernel is too long for its buffer");
  memcpy(src + len, kern, strlen(kern) + 1);
  const char *srcs[1] = {src};
  cl_int err;
  cl_program p = clCreateProgramWithSource(clsm_context_cl_context(ctx), 1, srcs, NULL, &err);
  ck_assert(p != NULL);
  cl_device_id dev = clsm_context_device(ctx);
  err = clBuildProgram(p, 1, &dev, options, NULL, NULL);
  ck_assert_msg(err == CL_SUCCESS, "test kernel build failed: %s", clsm_cl_error_name(err));
  cl_kernel k = clCreateKernel(p, name, &err);
  ck_assert(k != NULL);
  *prog = p;
  return k;
}

static inline void test_read(clsm_context *ctx, cl_mem m, size_t offset, size_t bytes, void *out) {
  if (!bytes) return;
  cl_int err = clEnqueueReadBuffer(clsm_context_queue(ctx), m, CL_TRUE, offset, bytes, out, 0,
                                   NULL, NULL);
  ck_assert_msg(err == CL_SUCCESS, "clEnqueueReadBuffer failed: %s", clsm_cl_error_name(err));
}

static inline int64_t shape_numel(int rank, const int64_t *shape) {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  return n;
}

/* Runs `suite` and returns the process exit status. */
static inline int run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
