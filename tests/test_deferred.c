/* Suite "deferred": an out-of-range class index is found on the device, and
 * its error belongs to the call that caused it. A bad call writes nothing; a
 * valid call after it computes and writes; clsm_finish reports every failed
 * call of its thread since the last finish; a per-call check reports one
 * call; releasing the context reports what nobody asked about. */
#include "testutil.h"

enum { N = 4, C = 5 };

/* A batch: logits, targets, and the double reference of its mean loss. */
typedef struct batch {
  float x[N * C];
  int64_t t[N];
  double want;
  cl_mem xb, tb, lb;
  clsm_tensor xt, tt, lt;
} batch;

static void batch_make(clsm_context *ctx, batch *b, uint64_t seed, int bad) {
  fill_random(b->x, N * C, seed);
  for (int i = 0; i < N; ++i) b->t[i] = (int64_t)((seed + (uint64_t)i) % C);
  if (bad) b->t[2] = C + 3;
  double xd[N * C];
  for (int i = 0; i < N * C; ++i) xd[i] = b->x[i];
  ref_ce_opts ro = {0, -100, 0, 0, 0, NULL};
  double lpos[N], W;
  b->want = NAN;
  if (!bad) ref_cross_entropy(xd, N, C, 1, b->t, NULL, &ro, lpos, &b->want, &W, NULL, NULL, NULL, NULL);
  const float sentinel = 123.0f;
  const int64_t shape[2] = {N, C};
  b->xb = test_buffer(ctx, sizeof b->x, b->x);
  b->tb = test_buffer(ctx, sizeof b->t, b->t);
  b->lb = test_buffer(ctx, sizeof sentinel, &sentinel);
  b->xt = clsm_tensor_contiguous(b->xb, 0, CLSM_FLOAT32, 2, shape);
  b->tt = clsm_tensor_contiguous(b->tb, 0, CLSM_INT64, 1, shape);
  b->lt = clsm_tensor_contiguous(b->lb, 0, CLSM_FLOAT32, 0, NULL);
}

static float batch_loss(clsm_context *ctx, batch *b) {
  float l;
  test_read(ctx, b->lb, 0, sizeof l, &l);
  return l;
}

static void batch_free(batch *b) {
  clReleaseMemObject(b->xb);
  clReleaseMemObject(b->tb);
  clReleaseMemObject(b->lb);
}

static void assert_loss(float got, double want, const char *what) {
  ck_assert_msg(fabs(got - want) <= 1e-5 * fmax(1.0, fabs(want)), "%s: loss %.9g, reference %.9g",
                what, (double)got, want);
}

/* After an asynchronous bad call, a valid host call on the same context
 * succeeds with the right loss; the bad call's error goes to clsm_finish. */
START_TEST(test_host_call_after_bad_call) {
  clsm_context *ctx = test_context();
  batch bad, good;
  batch_make(ctx, &bad, 1, 1);
  batch_make(ctx, &good, 2, 0);
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  CK_STATUS(ctx, clsm_cross_entropy(ctx, &bad.xt, &bad.tt, &bad.lt, &opt, 0, NULL, NULL));
  const int64_t shape[2] = {N, C};
  float loss = 0;
  CK_STATUS(ctx, clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, shape, good.x, CLSM_INT64, good.t,
                                         &opt, NULL, &loss, NULL, NULL, NULL, NULL));
  assert_loss(loss, good.want, "host call after a bad call");
  ck_assert_int_eq(clsm_finish(ctx), CLSM_ERR_TARGET_OUT_OF_RANGE);
  char detail[512];
  clsm_context_error(ctx, detail, sizeof detail);
  ck_assert_msg(strstr(detail, "position 2 is 8"), "detail: %s", detail);
  ck_assert_float_eq(batch_loss(ctx, &bad), 123.0f);
  CK_STATUS(ctx, clsm_finish(ctx)); /* reported once */
  batch_free(&bad);
  batch_free(&good);
  clsm_context_destroy(ctx);
}
END_TEST

/* A training loop that reads each loss with a blocking read and finishes
 * only at the end: one bad batch leaves its own loss unwritten, every later
 * batch computes its own. clsm_finish then reports the bad call. */
START_TEST(test_training_loop) {
  clsm_context *ctx = test_context();
  enum { BATCHES = 4 };
  batch b[BATCHES];
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  for (int i = 0; i < BATCHES; ++i) {
    batch_make(ctx, &b[i], 10 + (uint64_t)i, i == 1);
    CK_STATUS(ctx, clsm_cross_entropy(ctx, &b[i].xt, &b[i].tt, &b[i].lt, &opt, 0, NULL, NULL));
    float l = batch_loss(ctx, &b[i]);
    if (i == 1) ck_assert_float_eq(l, 123.0f);
    else assert_loss(l, b[i].want, "batch after a bad one");
  }
  ck_assert_int_eq(clsm_finish(ctx), CLSM_ERR_TARGET_OUT_OF_RANGE);
  CK_STATUS(ctx, clsm_finish(ctx));
  for (int i = 0; i < BATCHES; ++i) batch_free(&b[i]);
  clsm_context_destroy(ctx);
}
END_TEST

/* A check handle reports its own call only: the bad call's handle fails
 * with the position, the good call's passes; clsm_finish before the wait
 * reports the bad call too, and the handle still returns it afterwards. */
START_TEST(test_check_handle) {
  clsm_context *ctx = test_context();
  batch bad, good;
  batch_make(ctx, &bad, 3, 1);
  batch_make(ctx, &good, 4, 0);
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  for (int finish_first = 0; finish_first < 2; ++finish_first) {
    clsm_check *cb = NULL, *cg = NULL;
    opt.check = &cb;
    CK_STATUS(ctx, clsm_cross_entropy(ctx, &bad.xt, &bad.tt, &bad.lt, &opt, 0, NULL, NULL));
    opt.check = &cg;
    CK_STATUS(ctx, clsm_cross_entropy(ctx, &good.xt, &good.tt, &good.lt, &opt, 0, NULL, NULL));
    ck_assert(cb != NULL && cg != NULL);
    ck_assert_uint_eq(clsm_check_sequence(cg), clsm_check_sequence(cb) + 1);
    if (finish_first) ck_assert_int_eq(clsm_finish(ctx), CLSM_ERR_TARGET_OUT_OF_RANGE);
    char detail[256] = "x", want[64];
    CK_STATUS(ctx, clsm_check_wait(cg, detail, sizeof detail));
    ck_assert_str_eq(detail, "");
    assert_loss(batch_loss(ctx, &good), good.want, "checked good call");
    snprintf(want, sizeof want, "call #%llu: target at position 2 is 8", clsm_check_sequence(cb));
    ck_assert_int_eq(clsm_check_wait(cb, detail, sizeof detail), CLSM_ERR_TARGET_OUT_OF_RANGE);
    ck_assert_msg(strstr(detail, want), "detail: %s (want %s)", detail, want);
    ck_assert_float_eq(batch_loss(ctx, &bad), 123.0f);
    /* Waited for (or already reported): clsm_finish has nothing left. */
    CK_STATUS(ctx, clsm_finish(ctx));
  }
  /* A call refused up front gives no handle. */
  clsm_check *none = (clsm_check *)&opt;
  opt.check = &none;
  opt.label_smoothing = 2;
  ck_assert_int_eq(clsm_cross_entropy(ctx, &good.xt, &good.tt, &good.lt, &opt, 0, NULL, NULL),
                   CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_null(none);
  ck_assert_int_eq(clsm_check_wait(NULL, NULL, 0), CLSM_ERR_NULL_ARGUMENT);
  ck_assert_uint_eq(clsm_check_sequence(NULL), 0);
  batch_free(&bad);
  batch_free(&good);
  clsm_context_destroy(ctx);
}
END_TEST

/* clsm_finish lists every failed call since the last finish, oldest first,
 * with its number and position; version 1 options still work. */
START_TEST(test_finish_lists_calls) {
  clsm_context *ctx = test_context();
  batch b[3];
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  opt.version = 1;
  for (int i = 0; i < 3; ++i) {
    batch_make(ctx, &b[i], 20 + (uint64_t)i, i != 1);
    CK_STATUS(ctx, clsm_cross_entropy(ctx, &b[i].xt, &b[i].tt, &b[i].lt, &opt, 0, NULL, NULL));
  }
  ck_assert_int_eq(clsm_finish(ctx), CLSM_ERR_TARGET_OUT_OF_RANGE);
  char detail[1024];
  clsm_context_error(ctx, detail, sizeof detail);
  const char *one = strstr(detail, "call #1: target at position 2 is 8");
  const char *three = strstr(detail, "call #3: target at position 2 is 8");
  ck_assert_msg(strstr(detail, "2 calls failed") && one && three && one < three && !strstr(detail, "#2"),
                "detail: %s", detail);
  assert_loss(batch_loss(ctx, &b[1]), b[1].want, "good call between bad ones");
  ck_assert_float_eq(batch_loss(ctx, &b[0]), 123.0f);
  ck_assert_float_eq(batch_loss(ctx, &b[2]), 123.0f);
  CK_STATUS(ctx, clsm_finish(ctx));
  /* Ten failed calls (#4..#13): the count, and the oldest eight. */
  for (int i = 0; i < 10; ++i)
    CK_STATUS(ctx, clsm_cross_entropy(ctx, &b[0].xt, &b[0].tt, &b[0].lt, &opt, 0, NULL, NULL));
  ck_assert_int_eq(clsm_finish(ctx), CLSM_ERR_TARGET_OUT_OF_RANGE);
  clsm_context_error(ctx, detail, sizeof detail);
  ck_assert_msg(strstr(detail, "10 calls failed since the last check (the first 8): call #4:") &&
                    strstr(detail, "call #11:") && !strstr(detail, "call #12:"),
                "detail: %s", detail);
  for (int i = 0; i < 3; ++i) batch_free(&b[i]);
  clsm_context_destroy(ctx);
}
END_TEST

/* Releasing a context reports the failure nobody asked about; a clean
 * context releases with SUCCESS. */
START_TEST(test_release_reports) {
  for (int bad_call = 0; bad_call < 2; ++bad_call) {
    clsm_context *ctx = test_context();
    batch b;
    batch_make(ctx, &b, 30, bad_call);
    clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
    CK_STATUS(ctx, clsm_cross_entropy(ctx, &b.xt, &b.tt, &b.lt, &opt, 0, NULL, NULL));
    batch_free(&b);
    char detail[256] = "x";
    clsm_status st = clsm_context_release(ctx, detail, sizeof detail);
    if (bad_call) {
      ck_assert_int_eq(st, CLSM_ERR_TARGET_OUT_OF_RANGE);
      ck_assert_msg(strstr(detail, "call #1: target at position 2 is 8"), "detail: %s", detail);
    } else {
      ck_assert_int_eq(st, CLSM_SUCCESS);
      ck_assert_str_eq(detail, "");
    }
  }
  ck_assert_int_eq(clsm_context_release(NULL, NULL, 0), CLSM_SUCCESS);
}
END_TEST

static Suite *deferred_suite(void) {
  Suite *s = suite_create("deferred");
  TCase *tc = tcase_create("Deferred");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_host_call_after_bad_call);
  tcase_add_test(tc, test_training_loop);
  tcase_add_test(tc, test_check_handle);
  tcase_add_test(tc, test_finish_lists_calls);
  tcase_add_test(tc, test_release_reports);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(deferred_suite()); }
