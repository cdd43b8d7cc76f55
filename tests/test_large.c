/* Suite "large": a tensor as large as the device allows in one allocation
 * (more than 2^31 elements where it allows that), softmax over all of it in
 * place, checked on sampled rows at the start, middle and end; a view at a
 * large element offset; sizes beyond the device's limits give a status. */
#include "testutil.h"

enum { C = 4104, PERIOD = 32 }; /* C is not a multiple of the fill pattern */

START_TEST(test_largest_tensor) {
  clsm_context *ctx = test_context();
  cl_ulong max_alloc = 0;
  clGetDeviceInfo(clsm_context_device(ctx), CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
  /* More than 2^31 elements if one allocation can hold them, else the most
   * whole rows the largest allocation holds. */
  uint64_t want = ((1ull << 31) / C + 2) * C;
  uint64_t rows = (want * 4 <= max_alloc ? want : max_alloc / 4) / C;
  uint64_t n = rows * C;
  printf("large: %llu x %d float32 = %llu elements (%.2f GiB; more than 2^31 elements: %s)\n",
         (unsigned long long)rows, C, (unsigned long long)n, (double)(n * 4) / (1 << 30),
         n > (1ull << 31) ? "yes" : "no, the device's largest allocation is smaller");
  cl_int err;
  cl_mem buf = clCreateBuffer(clsm_context_cl_context(ctx), CL_MEM_READ_WRITE, n * 4, NULL, &err);
  ck_assert_msg(buf != NULL, "clCreateBuffer(%llu bytes): %s", (unsigned long long)(n * 4), clsm_cl_error_name(err));
  fflush(stdout);
  float pattern[PERIOD];
  fill_random(pattern, PERIOD, 99);
  /* Written in 16 MiB blocks of the repeated pattern (a fill of more than
   * 4 GiB is where some runtimes go wrong, and that is not what is tested). */
  enum { BLOCK = 1 << 22 };
  static float block[BLOCK];
  for (int i = 0; i < BLOCK; ++i) block[i] = pattern[i % PERIOD];
  for (uint64_t e = 0; e < n; e += BLOCK) {
    uint64_t len = n - e < BLOCK ? n - e : BLOCK;
    ck_assert(clEnqueueWriteBuffer(clsm_context_queue(ctx), buf, CL_TRUE, e * 4, len * 4, block, 0,
                                   NULL, NULL) == CL_SUCCESS);
  }
  /* The data must read back before any operation, so that a wrong row below
   * is the operation's fault. */
  static float row[C], x[C];
  uint64_t samples[4] = {0, rows / 2, rows - 2, rows - 1};
  for (int k = 0; k < 4; ++k) {
    test_read(ctx, buf, samples[k] * C * 4, sizeof row, row);
    for (int c = 0; c < C; ++c)
      ck_assert_msg(row[c] == pattern[(samples[k] * C + (uint64_t)c) % PERIOD],
                    "input row %llu col %d reads back wrong before any operation",
                    (unsigned long long)samples[k], c);
  }
  const int64_t shape[2] = {(int64_t)rows, C};
  clsm_tensor t = clsm_tensor_contiguous(buf, 0, CLSM_FLOAT32, 2, shape);
  /* A view of the last 3 rows at a large element offset, log_softmax into a
   * small buffer (run first, while the data is still the pattern). */
  const int64_t tail[2] = {3, C};
  cl_mem small = test_buffer(ctx, 3 * C * 4, NULL);
  clsm_tensor tv = clsm_tensor_contiguous(buf, (rows - 3) * C, CLSM_FLOAT32, 2, tail);
  clsm_tensor sv = clsm_tensor_contiguous(small, 0, CLSM_FLOAT32, 2, tail);
  CK_STATUS(ctx, clsm_log_softmax(ctx, &tv, &sv, -1, 0, 0, NULL, NULL));
  CK_STATUS(ctx, clsm_softmax(ctx, &t, &t, -1, 0, 0, NULL, NULL));
  CK_STATUS(ctx, clsm_finish(ctx));
  static double ref[C];
  const int64_t one[1] = {C};
  for (int k = 0; k < 4; ++k) {
    uint64_t r = samples[k];
    for (int c = 0; c < C; ++c) x[c] = pattern[(r * C + (uint64_t)c) % PERIOD];
    test_read(ctx, buf, r * C * 4, sizeof row, row);
    ref_softmax(x, ref, 1, one, 0, 0, 0);
    for (int c = 0; c < C; ++c)
      ck_assert_msg(ref_close(row[c], ref[c], 0, 4e-6), "row %llu (byte offset %llu) col %d",
                    (unsigned long long)r, (unsigned long long)(r * C * 4), c);
  }
  float lrow[3 * C];
  test_read(ctx, small, 0, sizeof lrow, lrow);
  for (int k = 0; k < 3; ++k) {
    uint64_t r = rows - 3 + (uint64_t)k;
    for (int c = 0; c < C; ++c) x[c] = pattern[(r * C + (uint64_t)c) % PERIOD];
    ref_softmax(x, ref, 1, one, 0, 1, 0);
    for (int c = 0; c < C; ++c) ck_assert(ref_close(lrow[k * C + c], ref[c], 1, 4e-6));
  }
  clReleaseMemObject(buf);
  clReleaseMemObject(small);
  clsm_context_destroy(ctx);
}
END_TEST

/* Beyond the limits: a host tensor larger than one allocation, a view past
 * its cl_mem, an element count that overflows 64 bits. */
START_TEST(test_beyond_limits) {
  clsm_context *ctx = test_context();
  cl_ulong max_alloc = 0;
  clGetDeviceInfo(clsm_context_device(ctx), CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
  const int64_t big[2] = {(int64_t)(max_alloc / 4 / 1024) + 1, 1024};
  float dummy[4] = {0};
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 2, big, -1, 0, dummy, dummy), CLSM_ERR_TOO_LARGE);
  cl_mem m = test_buffer(ctx, 4096, NULL);
  const int64_t past[2] = {1 << 20, 1 << 20};
  clsm_tensor t = clsm_tensor_contiguous(m, 0, CLSM_FLOAT32, 2, past);
  ck_assert_int_eq(clsm_softmax(ctx, &t, &t, -1, 0, 0, NULL, NULL), CLSM_ERR_OUT_OF_BOUNDS);
  const int64_t huge[3] = {INT64_MAX / 2, 4, 2};
  t = clsm_tensor_contiguous(m, 0, CLSM_FLOAT32, 3, huge);
  ck_assert_int_eq(clsm_softmax(ctx, &t, &t, -1, 0, 0, NULL, NULL), CLSM_ERR_TOO_LARGE);
  clReleaseMemObject(m);
  clsm_context_destroy(ctx);
}
END_TEST

static Suite *large_suite(void) {
  Suite *s = suite_create("large");
  TCase *tc = tcase_create("Large");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_largest_tensor);
  tcase_add_test(tc, test_beyond_limits);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(large_suite()); }
