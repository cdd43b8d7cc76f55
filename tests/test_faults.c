/* Suite "faults": the test hooks make the n-th OpenCL create call
 * (CLSM_TEST_FAIL_CL) or the n-th host allocation (CLSM_TEST_FAIL_ALLOC) of
 * a context fail; n sweeps context creation, program build and every op.
 * Each step returns a clean status, writes nothing, and the context still
 * works afterwards (the sanitizer build checks that nothing leaks). */
#include "testutil.h"

#include <time.h>

#define SENTINEL 321.0f

/* Runs every op once on small host arrays; returns the first failure, and
 * checks that a failed op left its output untouched. */
static clsm_status run_all(clsm_context *ctx) {
  enum { N = 3, C = 5 };
  float x[N * C], y[N * C], dy[N * C], out[N * C * CLSM_SHARD_STATS + 1];
  int64_t t[N] = {0, 4, 2};
  fill_random(x, N * C, 1);
  fill_random(dy, N * C, 2);
  const int64_t shape[2] = {N, C};
  clsm_status st = CLSM_SUCCESS;
  float stats[N * CLSM_SHARD_STATS];
  const clsm_shard shard = {1, C + 1}; /* classes 1..5 of 6 */
  for (int op = 0; op < 9 && st == CLSM_SUCCESS; ++op) {
    for (int i = 0; i <= N * C; ++i) out[i] = SENTINEL;
    switch (op) {
    case 0: st = clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, x, out); break;
    case 1: st = clsm_log_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, x, out); break;
    case 2: st = clsm_softmax_backward_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, x, dy, out); break;
    case 3: st = clsm_log_softmax_backward_host(ctx, CLSM_FLOAT16, 2, shape, 1, 0, x, dy, out); break;
    case 4: {
      clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
      st = clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &opt, NULL, out,
                                   y, NULL, NULL, NULL);
      break;
    }
    /* The sharded phases: a partial's stats, then a finish's loss and
     * gradient; a sharded softmax's (m, s) pairs, then its y. */
    case 5: {
      clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
      st = clsm_cross_entropy_partial_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &shard, &opt,
                                           NULL, out);
      if (st == CLSM_SUCCESS) memcpy(stats, out, sizeof stats);
      break;
    }
    case 6: {
      clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
      st = clsm_cross_entropy_finish_host(ctx, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &shard, &opt,
                                          NULL, stats, out, y, NULL, NULL, NULL);
      break;
    }
    case 7: st = clsm_softmax_partial_host(ctx, CLSM_SHARD_SOFTMAX, CLSM_FLOAT32, 2, shape, 1, x, NULL, out); break;
    default:
      memcpy(stats, x, sizeof(float) * 2 * N); /* any (m, s) pairs will do */
      st = clsm_softmax_finish_host(ctx, CLSM_SHARD_SOFTMAX, CLSM_FLOAT32, 2, shape, 1, 0, x, NULL, stats, out);
    }
    if (st != CLSM_SUCCESS)
      for (int i = 0; i <= N * C; ++i) ck_assert_msg(out[i] == SENTINEL, "op %d wrote before failing", op);
  }
  return st;
}

static void sweep(const char *hook, int n) {
  char v[16];
  snprintf(v, sizeof v, "%d", n);
  setenv(hook, v, 1);
  clsm_context *ctx = NULL;
  char detail[256] = "";
  clsm_status st = clsm_context_create(&ctx, NULL, detail, sizeof detail);
  if (st != CLSM_SUCCESS) {
    ck_assert_msg(st == CLSM_ERR_OPENCL || st == CLSM_ERR_OUT_OF_HOST_MEMORY, "%s=%d: create gave %s",
                  hook, n, clsm_status_name(st));
    ck_assert(ctx == NULL && detail[0]);
    return;
  }
  st = run_all(ctx);
  if (st != CLSM_SUCCESS) {
    ck_assert_msg(st == CLSM_ERR_OPENCL || st == CLSM_ERR_OUT_OF_HOST_MEMORY || st == CLSM_ERR_BUILD,
                  "%s=%d: an op gave %s", hook, n, clsm_status_name(st));
    char d[512];
    ck_assert(clsm_context_error(ctx, d, sizeof d) > 0);
    /* The hook fires once: everything works now. */
    CK_STATUS(ctx, run_all(ctx));
  }
  clsm_context_destroy(ctx);
}

START_TEST(test_fail_cl) { sweep("CLSM_TEST_FAIL_CL", _i + 1); }
END_TEST

/* The same sweep on an adopted queue, with a leak check that needs no
 * sanitizer: every OpenCL object the library creates (buffers, programs,
 * kernels) holds a reference to its context, so once the library's context
 * is destroyed, the application's context and queue must be back to exactly
 * the application's own reference. */
START_TEST(test_fail_cl_adopted) {
  char v[16];
  snprintf(v, sizeof v, "%d", _i + 1);
  setenv("CLSM_TEST_FAIL_CL", v, 1);
  cl_platform_id p;
  cl_device_id d;
  cl_int err;
  ck_assert(clGetPlatformIDs(1, &p, NULL) == CL_SUCCESS);
  ck_assert(clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 1, &d, NULL) == CL_SUCCESS);
  cl_context c = clCreateContext(NULL, 1, &d, NULL, NULL, &err);
  cl_command_queue q = clCreateCommandQueue(c, d, 0, &err);
  ck_assert(c && q);
  clsm_context *ctx = NULL;
  ck_assert_int_eq(clsm_context_adopt(&ctx, q, NULL, 0), CLSM_SUCCESS);
  clsm_status st = run_all(ctx);
  if (st != CLSM_SUCCESS) CK_STATUS(ctx, run_all(ctx));
  clsm_context_destroy(ctx);
  /* The application holds one reference to each, and its queue one to the
   * context. The runtime frees finished commands (which hold the queue) from
   * its own threads, so give it a moment. */
  cl_uint crefs = 0, qrefs = 0;
  for (int tries = 0; tries < 100; ++tries) {
    clFinish(q);
    clGetContextInfo(c, CL_CONTEXT_REFERENCE_COUNT, sizeof crefs, &crefs, NULL);
    clGetCommandQueueInfo(q, CL_QUEUE_REFERENCE_COUNT, sizeof qrefs, &qrefs, NULL);
    if (crefs == 2 && qrefs == 1) break;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  ck_assert_msg(crefs == 2 && qrefs == 1, "n = %d: context references %u, queue references %u",
                _i + 1, crefs, qrefs);
  clReleaseCommandQueue(q);
  clReleaseContext(c);
}
END_TEST

START_TEST(test_fail_alloc) { sweep("CLSM_TEST_FAIL_ALLOC", _i + 1); }
END_TEST

static Suite *faults_suite(void) {
  Suite *s = suite_create("faults");
  TCase *tc = tcase_create("Sweep");
  tcase_set_timeout(tc, 60);
  /* Create calls: 2 for the context, then buffers, programs and kernels as
   * the ops first need them: the last op's come near n = 81, 84 covers them
   * all (later n never fire). */
  tcase_add_loop_test(tc, test_fail_cl, 0, 84);
  tcase_add_loop_test(tc, test_fail_alloc, 0, 6);
  tcase_add_loop_test(tc, test_fail_cl_adopted, 0, 84);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(faults_suite()); }
