/* Suite "errors": every status code the header documents is provoked, each
 * failing call leaves its output untouched, and the status tables hold
 * together (names, strings, detail, build log). */
#include "testutil.h"

#include <unistd.h>

#define SENTINEL 777.0f
enum { N = 4, C = 6 };

/* A context with x (N*C random floats) and y (sentinels) buffers. */
typedef struct fixture {
  clsm_context *ctx;
  cl_mem xb, yb;
  float x[N * C];
} fixture;

static void fixture_open(fixture *f) {
  f->ctx = test_context();
  fill_random(f->x, N * C, 3);
  float y[N * C];
  for (int i = 0; i < N * C; ++i) y[i] = SENTINEL;
  f->xb = test_buffer(f->ctx, sizeof f->x, f->x);
  f->yb = test_buffer(f->ctx, sizeof y, y);
}

static void fixture_close(fixture *f) {
  /* The output was never written. */
  float y[N * C];
  clsm_finish(f->ctx);
  test_read(f->ctx, f->yb, 0, sizeof y, y);
  for (int i = 0; i < N * C; ++i) ck_assert_msg(y[i] == SENTINEL, "y[%d] was written", i);
  clReleaseMemObject(f->xb);
  clReleaseMemObject(f->yb);
  clsm_context_destroy(f->ctx);
}

/* One invalid call per row: a mutation of valid (x, y, dim, flags, wait list). */
typedef struct bad_call {
  const char *what;
  clsm_status expect;
  const char *detail; /* NULL, or what the error detail must contain */
} bad_call;

static const bad_call bad_calls[] = {
    {"NULL context", CLSM_ERR_NULL_ARGUMENT, NULL},
    {"NULL x", CLSM_ERR_NULL_ARGUMENT, NULL},
    {"NULL y", CLSM_ERR_NULL_ARGUMENT, NULL},
    {"NULL cl_mem", CLSM_ERR_NULL_ARGUMENT, NULL},
    {"rank 9", CLSM_ERR_INVALID_RANK, NULL},
    {"rank 9 from clsm_tensor_contiguous", CLSM_ERR_INVALID_RANK, "x: rank 9 is outside 0..8"},
    {"dim 2 of rank 2", CLSM_ERR_INVALID_DIM, NULL},
    {"dim -3 of rank 2", CLSM_ERR_INVALID_DIM, NULL},
    {"shape mismatch", CLSM_ERR_SHAPE_MISMATCH, "x has shape (4, 5) but y has shape (4, 6)"},
    {"rank mismatch", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"y float16 for x float32", CLSM_ERR_UNSUPPORTED_DTYPE, NULL},
    {"dtype int64", CLSM_ERR_UNSUPPORTED_DTYPE, NULL},
    {"unknown dtype", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"negative dim size", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"negative stride", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"unknown flag", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"wait list count without events", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"cl_mem too small", CLSM_ERR_OUT_OF_BOUNDS, NULL},
    {"offset past the end", CLSM_ERR_OUT_OF_BOUNDS, NULL},
    {"stride past the end", CLSM_ERR_OUT_OF_BOUNDS, NULL},
    {"y overlaps x", CLSM_ERR_OVERLAP, NULL},
    {"y overlaps itself", CLSM_ERR_OVERLAP, NULL},
    {"y bfloat16 for x float16", CLSM_ERR_UNSUPPORTED_DTYPE, NULL},
    {"element count overflows", CLSM_ERR_TOO_LARGE, NULL},
    {"x from another cl_context", CLSM_ERR_INVALID_ARGUMENT,
     "x: its cl_mem belongs to another cl_context"},
    {"wait-list event from another cl_context", CLSM_ERR_INVALID_ARGUMENT,
     "wait list: event 0 belongs to another cl_context"},
    {"y float64 for x float32, y's cl_mem too small for float64", CLSM_ERR_UNSUPPORTED_DTYPE,
     "y is float64: the output may be float32"},
    {"NULL shape in clsm_tensor_contiguous", CLSM_ERR_INVALID_RANK, "rank -1 is outside 0..8 (clsm_tensor_contiguous"},
    {"NULL y names y", CLSM_ERR_NULL_ARGUMENT, "y is NULL"},
    {"dtype int64 lists the dtypes allowed", CLSM_ERR_UNSUPPORTED_DTYPE,
     "x: dtype int64 is not supported here (float32, float16, bfloat16 or float64)"},
    {"a NULL event in the wait list", CLSM_ERR_NULL_ARGUMENT, "wait list: event 0 is NULL"},
    {"unknown dtype names it", CLSM_ERR_INVALID_ARGUMENT, "unknown dtype 99"},
};
#define NBAD ((int)(sizeof bad_calls / sizeof bad_calls[0]))

START_TEST(test_bad_call) {
  const bad_call *b = &bad_calls[_i];
  printf("bad call %d: %s\n", _i, b->what);
  fixture f;
  fixture_open(&f);
  const int64_t shape[2] = {N, C};
  clsm_tensor x = clsm_tensor_contiguous(f.xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor y = clsm_tensor_contiguous(f.yb, 0, CLSM_FLOAT32, 2, shape);
  clsm_context *ctx = f.ctx;
  const clsm_tensor *xp = &x, *yp = &y;
  int dim = -1;
  unsigned flags = 0;
  cl_uint nwait = 0;
  cl_event ev[1] = {NULL};
  cl_context other = NULL;
  cl_mem other_mem = NULL;
  switch (_i) {
  case 0: ctx = NULL; break;
  case 1: xp = NULL; break;
  case 2: yp = NULL; break;
  case 3: x.mem = NULL; break;
  case 4: x.rank = 9; y.rank = 9; break;
  case 5: x = clsm_tensor_contiguous(f.xb, 0, CLSM_FLOAT32, 9, shape); break;
  case 6: dim = 2; break;
  case 7: dim = -3; break;
  case 8: x.shape[1] = C - 1; break;
  case 9: x.rank = 1; x.shape[0] = N * C; x.strides[0] = 1; break;
  case 10: y.dtype = CLSM_FLOAT16; break;
  case 11: x.dtype = y.dtype = CLSM_INT64; break;
  case 12: x.dtype = y.dtype = (clsm_dtype)99; break;
  case 13: x.shape[0] = y.shape[0] = -1; break;
  case 14: y.strides[1] = -1; break;
  case 15: flags = 0x80; break;
  case 16: nwait = 1; break;
  case 17: x.shape[0] = y.shape[0] = N + 1; break;
  case 18: x.offset = N * C; x.shape[0] = y.shape[0] = 1; x.shape[1] = y.shape[1] = 1; break;
  case 19: y.strides[0] = C + 1; break;
  case 20: x.mem = f.yb; x.offset = 1; x.shape[0] = y.shape[0] = N - 1; break;
  case 21: y.strides[0] = 1; break;
  case 22: x.dtype = CLSM_FLOAT16; y.dtype = CLSM_BFLOAT16; break;
  case 23: x.shape[0] = y.shape[0] = INT64_MAX; x.shape[1] = y.shape[1] = 4; break;
  case 24: case 25: {
    cl_device_id dev = clsm_context_device(f.ctx);
    cl_int err;
    other = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    ck_assert(other != NULL);
    if (_i == 24) {
      other_mem = clCreateBuffer(other, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof f.x, f.x, &err);
      ck_assert(other_mem != NULL);
      x.mem = other_mem;
    } else {
      ev[0] = clCreateUserEvent(other, &err);
      ck_assert(ev[0] != NULL);
      clSetUserEventStatus(ev[0], CL_COMPLETE);
      nwait = 1;
    }
    break;
  }
  case 26: y.dtype = CLSM_FLOAT64; break;
  case 27: x = clsm_tensor_contiguous(f.xb, 0, CLSM_FLOAT32, 2, NULL); break;
  case 28: yp = NULL; break;
  case 29: x.dtype = y.dtype = CLSM_INT64; break;
  case 30: nwait = 1; break; /* ev[0] stays NULL */
  case 31: x.dtype = y.dtype = (clsm_dtype)99; break;
  }
  clsm_status st = clsm_softmax(ctx, xp, yp, dim, flags, nwait, nwait && _i != 16 ? ev : NULL, NULL);
  char detail[1024] = "";
  clsm_context_error(f.ctx, detail, sizeof detail);
  printf("  -> %s: %s\n", clsm_status_name(st), detail);
  ck_assert_msg(st == b->expect, "%s: expected %s, got %s (%s)", b->what,
                clsm_status_name(b->expect), clsm_status_name(st), detail);
  if (ctx) ck_assert_msg(detail[0] != '\0', "%s: no error detail", b->what);
  if (b->detail)
    ck_assert_msg(strstr(detail, b->detail) != NULL, "%s: detail \"%s\" lacks \"%s\"", b->what,
                  detail, b->detail);
  /* The same checks guard log_softmax. */
  if (ctx)
    ck_assert_int_eq(clsm_log_softmax(ctx, xp, yp, dim, flags, nwait, nwait && _i != 16 ? ev : NULL, NULL), st);
  if (ev[0]) clReleaseEvent(ev[0]);
  if (other_mem) clReleaseMemObject(other_mem);
  if (other) clReleaseContext(other);
  fixture_close(&f);
}
END_TEST

/* The backward ops: every invalid (y, dy, dx) gives its status and leaves dx
 * (the fixture's y buffer) untouched. */
static const bad_call bad_backward[] = {
    {"NULL dy", CLSM_ERR_NULL_ARGUMENT, NULL},
    {"dy of another shape", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"dy of another dtype", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"dx float64 for float32 inputs", CLSM_ERR_UNSUPPORTED_DTYPE, NULL},
    {"dx overlaps dy", CLSM_ERR_OVERLAP, NULL},
    {"dim out of range", CLSM_ERR_INVALID_DIM, NULL},
    {"unknown flag", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"dy past the end", CLSM_ERR_OUT_OF_BOUNDS, NULL},
};

START_TEST(test_bad_backward) {
  fixture f;
  fixture_open(&f);
  const int64_t shape[2] = {N, C};
  cl_mem gb = test_buffer(f.ctx, sizeof f.x, f.x);
  clsm_tensor y = clsm_tensor_contiguous(f.xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor dy = clsm_tensor_contiguous(gb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor dx = clsm_tensor_contiguous(f.yb, 0, CLSM_FLOAT32, 2, shape);
  const clsm_tensor *dyp = &dy;
  int dim = 1;
  unsigned flags = 0;
  switch (_i) {
  case 0: dyp = NULL; break;
  case 1: dy.shape[1] = C - 1; break;
  case 2: dy.dtype = CLSM_FLOAT16; break;
  case 3: dx.dtype = CLSM_FLOAT64; dx.shape[0] = 2; dy.shape[0] = 2; y.shape[0] = 2; break;
  case 4: dx = dy; dx.offset = 1; dx.shape[0] = dy.shape[0] = y.shape[0] = N - 1; break;
  case 5: dim = 2; break;
  case 6: flags = 8; break;
  case 7: dy.offset = 5; break;
  }
  for (int log = 0; log < 2; ++log) {
    clsm_status st = (log ? clsm_log_softmax_backward : clsm_softmax_backward)(f.ctx, &y, dyp, &dx, dim,
                                                                             flags, 0, NULL, NULL);
    ck_assert_msg(st == bad_backward[_i].expect, "%s: got %s", bad_backward[_i].what, clsm_status_name(st));
  }
  clReleaseMemObject(gb);
  fixture_close(&f);
}
END_TEST

/* Cross-entropy: every invalid tensor or option gives its status before
 * anything runs; the loss buffer (the fixture's y) stays untouched. */
static const bad_call bad_ce[] = {
    {"NULL logits", CLSM_ERR_NULL_ARGUMENT, NULL},
    {"NULL target", CLSM_ERR_NULL_ARGUMENT, NULL},
    {"NULL loss", CLSM_ERR_NULL_ARGUMENT, NULL},
    {"rank-0 logits", CLSM_ERR_INVALID_RANK, NULL},
    {"target of the wrong shape", CLSM_ERR_SHAPE_MISMATCH,
     "target (class indices) has shape (3): logits of shape (4, 6) need (4)"},
    {"float targets of another dtype", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"loss not 0-d for mean", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"loss of the wrong dtype", CLSM_ERR_UNSUPPORTED_DTYPE, NULL},
    {"weight of the wrong length", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"weight with a stride", CLSM_ERR_UNSUPPORTED_LAYOUT, NULL},
    {"grad of the wrong shape", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"grad_scale not 0-d for mean", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"lse of the wrong dtype", CLSM_ERR_UNSUPPORTED_DTYPE, "lse: dtype float64 is not supported here (float32)"},
    {"total_weight not 0-d", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"loss overlapping the logits", CLSM_ERR_OVERLAP, NULL},
    {"targets past the end", CLSM_ERR_OUT_OF_BOUNDS, NULL},
    {"options not initialised", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"label smoothing NaN", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"negative softcap", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"ignore_index >= 0 with probabilities", CLSM_ERR_INVALID_ARGUMENT, NULL},
    {"class-index target of dtype float64 for float32 logits", CLSM_ERR_SHAPE_MISMATCH, NULL},
    {"logits whose batch dims do not collapse", CLSM_ERR_UNSUPPORTED_LAYOUT,
     "logits: dims 2..3 (the positions after the batch dim) of shape (1, 2, 2, 2) with strides "
     "(0, 8, 3, 1) do not collapse"},
    {"backward with grad set in the options", CLSM_ERR_INVALID_ARGUMENT, "options.grad and options.grad_scale must be NULL"},
    {"target longer than N and past its cl_mem: the shape is named", CLSM_ERR_SHAPE_MISMATCH,
     "target (class indices) has shape (5)"},
    {"grad of another dtype than the loss", CLSM_ERR_UNSUPPORTED_DTYPE,
     "grad is float64: the gradient takes the loss dtype (float32)"},
    {"grad_scale without grad", CLSM_ERR_INVALID_ARGUMENT, "grad_scale is given without options.grad"},
    {"backward with NULL dloss", CLSM_ERR_NULL_ARGUMENT, "dloss is NULL"},
    {"backward with NULL dlogits", CLSM_ERR_NULL_ARGUMENT, "dlogits is NULL"},
    {"logits from another cl_context", CLSM_ERR_INVALID_ARGUMENT,
     "logits: its cl_mem belongs to another cl_context"},
    {"NULL options", CLSM_ERR_NULL_ARGUMENT, "opt (the options) is NULL"},
    {"NULL target names target", CLSM_ERR_NULL_ARGUMENT, "target is NULL"},
};

START_TEST(test_bad_ce) {
  fixture f;
  fixture_open(&f);
  const int64_t shape[2] = {N, C}, cshape[1] = {C};
  int64_t t[N] = {0, 1, 2, 3};
  cl_mem tb = test_buffer(f.ctx, sizeof t, t), gb = test_buffer(f.ctx, sizeof f.x, NULL);
  cl_mem wb = test_buffer(f.ctx, 2 * C * sizeof(float), NULL);
  clsm_tensor x = clsm_tensor_contiguous(f.xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor tg = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 1, shape);
  clsm_tensor loss = clsm_tensor_contiguous(f.yb, 0, CLSM_FLOAT32, 0, NULL);
  clsm_tensor w = clsm_tensor_contiguous(wb, 0, CLSM_FLOAT32, 1, cshape);
  clsm_tensor grad = clsm_tensor_contiguous(gb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor aux = clsm_tensor_contiguous(f.yb, 4, CLSM_FLOAT32, 1, shape);
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  const clsm_tensor *xp = &x, *tp = &tg, *lp = &loss, *dlogits = &grad;
  const clsm_ce_options *optp = &opt;
  cl_context other = NULL;
  cl_mem other_mem = NULL;
  int backward = 0;
  switch (_i) {
  case 0: xp = NULL; break;
  case 1: tp = NULL; break;
  case 2: lp = NULL; break;
  case 3: x.rank = 0; break;
  case 4: tg.shape[0] = N - 1; break;
  case 5: tg = clsm_tensor_contiguous(f.xb, 0, CLSM_FLOAT16, 2, shape); break;
  case 6: loss = aux; break;
  case 7: loss.dtype = CLSM_FLOAT16; break;
  case 8: w.shape[0] = C - 1; opt.weight = &w; break;
  case 9: w.strides[0] = 2; opt.weight = &w; break;
  case 10: grad.shape[1] = C - 1; opt.grad = &grad; break;
  case 11: opt.grad = &grad; opt.grad_scale = &aux; break;
  case 12: aux.dtype = CLSM_FLOAT64; opt.lse = &aux; break;
  case 13: opt.total_weight = &aux; break;
  case 14: loss.mem = f.xb; loss.offset = 3; break;
  case 15: tg.offset = 2; break;
  case 16: opt.version = 0; break;
  case 17: opt.label_smoothing = NAN; break;
  case 18: opt.softcap = -1.0; break;
  case 19: tg = x; opt.ignore_index = 0; break;
  case 20: tg.dtype = CLSM_FLOAT64; break;
  case 21: /* (1, 2, 2, 2) with strides (0, 8, 3, 1): the dims after C do not collapse */
    x.rank = 4;
    x.shape[0] = 1, x.shape[1] = 2, x.shape[2] = 2, x.shape[3] = 2;
    x.strides[0] = 0, x.strides[1] = 8, x.strides[2] = 3, x.strides[3] = 1;
    tg.rank = 3;
    tg.shape[0] = 1, tg.shape[1] = 2, tg.shape[2] = 2;
    tg.strides[0] = 4, tg.strides[1] = 2, tg.strides[2] = 1;
    break;
  case 22: backward = 1; opt.grad = &grad; break;
  case 23: tg.shape[0] = N + 1; break;
  case 24: grad.dtype = CLSM_FLOAT64; opt.grad = &grad; break;
  case 25: opt.grad_scale = &loss; break;
  case 26: backward = 1; lp = NULL; break;
  case 27: backward = 1; dlogits = NULL; break;
  case 28: {
    cl_device_id dev = clsm_context_device(f.ctx);
    cl_int err;
    other = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    other_mem = clCreateBuffer(other, CL_MEM_READ_WRITE, sizeof f.x, NULL, &err);
    ck_assert(other_mem != NULL);
    x.mem = other_mem;
    break;
  }
  case 29: optp = NULL; break;
  case 30: tp = NULL; break;
  }
  clsm_status st = backward ? clsm_cross_entropy_backward(f.ctx, xp, tp, lp, dlogits, optp, 0, NULL, NULL)
                            : clsm_cross_entropy(f.ctx, xp, tp, lp, optp, 0, NULL, NULL);
  char detail[512] = "";
  clsm_context_error(f.ctx, detail, sizeof detail);
  printf("bad ce %d (%s) -> %s: %s\n", _i, bad_ce[_i].what, clsm_status_name(st), detail);
  ck_assert_msg(st == bad_ce[_i].expect, "%s: got %s (%s)", bad_ce[_i].what, clsm_status_name(st), detail);
  ck_assert(detail[0] != '\0');
  if (bad_ce[_i].detail)
    ck_assert_msg(strstr(detail, bad_ce[_i].detail) != NULL, "%s: detail \"%s\" lacks \"%s\"",
                  bad_ce[_i].what, detail, bad_ce[_i].detail);
  clReleaseMemObject(tb), clReleaseMemObject(gb), clReleaseMemObject(wb);
  if (other_mem) clReleaseMemObject(other_mem);
  if (other) clReleaseContext(other);
  fixture_close(&f);
}
END_TEST

/* Host-pointer versions: bad arguments fail cleanly and y stays untouched. */
START_TEST(test_host_errors) {
  clsm_context *ctx = test_context();
  float x[6] = {1, 2, 3, 4, 5, 6}, y[6];
  for (int i = 0; i < 6; ++i) y[i] = SENTINEL;
  const int64_t shape[2] = {2, 3};
  const int64_t huge[2] = {INT64_MAX, 2};
  ck_assert_int_eq(clsm_softmax_host(NULL, CLSM_FLOAT32, 2, shape, 1, 0, x, y), CLSM_ERR_NULL_ARGUMENT);
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 2, NULL, 1, 0, x, y), CLSM_ERR_NULL_ARGUMENT);
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, NULL, y), CLSM_ERR_NULL_ARGUMENT);
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 9, shape, 1, 0, x, y), CLSM_ERR_INVALID_RANK);
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 2, 0, x, y), CLSM_ERR_INVALID_DIM);
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_INT32, 2, shape, 1, 0, x, y), CLSM_ERR_UNSUPPORTED_DTYPE);
  ck_assert_int_eq(clsm_log_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 4, x, y), CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 2, huge, 1, 0, x, y), CLSM_ERR_TOO_LARGE);
  for (int i = 0; i < 6; ++i) ck_assert(y[i] == SENTINEL);
  /* Empty tensors succeed and write nothing (pointers may then be NULL). */
  const int64_t empty[2] = {0, 3};
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 2, empty, 1, 0, NULL, NULL), CLSM_SUCCESS);
  clsm_context_destroy(ctx);
}
END_TEST

START_TEST(test_device_not_found) {
  clsm_context *ctx = (clsm_context *)1;
  char detail[256] = "";
  clsm_status st = clsm_context_create(&ctx, "no-such-device-xyz", detail, sizeof detail);
  ck_assert_int_eq(st, CLSM_ERR_DEVICE_NOT_FOUND);
  ck_assert(ctx == NULL);
  ck_assert_msg(strstr(detail, "no-such-device-xyz") != NULL, "detail: %s", detail);
  ck_assert_int_eq(clsm_context_create(&ctx, "99:0", detail, sizeof detail), CLSM_ERR_DEVICE_NOT_FOUND);
  ck_assert_int_eq(clsm_context_create(NULL, NULL, detail, sizeof detail), CLSM_ERR_NULL_ARGUMENT);
  ck_assert_int_eq(clsm_context_adopt(&ctx, NULL, detail, sizeof detail), CLSM_ERR_NULL_ARGUMENT);
  /* An out-of-order queue: an invalid argument, as the header says. */
  {
    cl_platform_id plat;
    cl_device_id dev;
    cl_int err;
    ck_assert(clGetPlatformIDs(1, &plat, NULL) == CL_SUCCESS);
    ck_assert(clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, NULL) == CL_SUCCESS);
    cl_context c = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    ck_assert(c != NULL);
    cl_command_queue_properties props = 0;
    clGetDeviceInfo(dev, CL_DEVICE_QUEUE_PROPERTIES, sizeof props, &props, NULL);
    if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) {
      cl_command_queue q = clCreateCommandQueue(c, dev, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
      ck_assert(q != NULL);
      ck_assert_int_eq(clsm_context_adopt(&ctx, q, detail, sizeof detail), CLSM_ERR_INVALID_ARGUMENT);
      ck_assert(ctx == NULL);
      ck_assert_msg(strstr(detail, "out-of-order") != NULL, "detail: %s", detail);
      clReleaseCommandQueue(q);
    }
    clReleaseContext(c);
  }
  /* Specs that do name the device: its type, P:D, part of its name. */
  ck_assert_int_eq(clsm_context_create(&ctx, "0:0", detail, sizeof detail), CLSM_SUCCESS);
  char name[64];
  snprintf(name, sizeof name, "%.5s", clsm_context_device_name(ctx));
  clsm_context_destroy(ctx);
  ck_assert_int_eq(clsm_context_create(&ctx, name, detail, sizeof detail), CLSM_SUCCESS);
  clsm_context_destroy(ctx);
}
END_TEST

/* clsm_list_devices: every device, each one's "P:D" opens that device with
 * the family listed, one default that a NULL spec opens, a short array still
 * counts them all, and bad arguments and CLSM_FAMILY values are refused. */
/* The plan hook: NULL context refused; a hook receives what ran; NULL clears it. */
static void count_plans(void *user, const clsm_plan_info *info) {
  int *n = user;
  if (info->stages >= 1 && !strncmp(info->kernel[0], "clsm_", 5)) ++*n;
}

START_TEST(test_plan_hook) {
  ck_assert_int_eq(clsm_context_set_plan_hook(NULL, count_plans, NULL), CLSM_ERR_NULL_ARGUMENT);
  clsm_context *ctx = test_context();
  int n = 0;
  CK_STATUS(ctx, clsm_context_set_plan_hook(ctx, count_plans, &n));
  float x[3] = {1, 2, 3}, y[3];
  const int64_t shape[1] = {3};
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 1, shape, 0, 0, x, y));
  ck_assert_int_eq(n, 1);
  /* A failed call plans nothing and tells the hook nothing. */
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 1, shape, 3, 0, x, y), CLSM_ERR_INVALID_DIM);
  ck_assert_int_eq(n, 1);
  CK_STATUS(ctx, clsm_context_set_plan_hook(ctx, NULL, &n));
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 1, shape, 0, 0, x, y));
  ck_assert_int_eq(n, 1);
  clsm_context_destroy(ctx);
}
END_TEST

START_TEST(test_list_devices) {
  char detail[512] = "";
  size_t n = 99;
  ck_assert_int_eq(clsm_list_devices(NULL, 0, NULL, detail, sizeof detail), CLSM_ERR_NULL_ARGUMENT);
  ck_assert_msg(strstr(detail, "count") != NULL, "%s", detail);
  ck_assert_int_eq(clsm_list_devices(NULL, 3, &n, detail, sizeof detail), CLSM_ERR_NULL_ARGUMENT);
  ck_assert_msg(strstr(detail, "out is NULL") != NULL && n == 0, "%s", detail);
  ck_assert_int_eq(clsm_list_devices(NULL, 0, &n, detail, sizeof detail), CLSM_SUCCESS);
  ck_assert(n >= 1);
  clsm_device_info devs[64];
  ck_assert(n <= 64);
  size_t m = 0;
  memset(devs, 0x5a, sizeof devs);
  ck_assert_int_eq(clsm_list_devices(devs, 64, &m, NULL, 0), CLSM_SUCCESS);
  ck_assert(m == n);
  clsm_context *dflt = NULL;
  ck_assert_msg(clsm_context_create(&dflt, NULL, detail, sizeof detail) == CLSM_SUCCESS, "%s", detail);
  int defaults = 0;
  for (size_t i = 0; i < n; ++i) {
    char spec[32];
    snprintf(spec, sizeof spec, "%u:%u", devs[i].platform, devs[i].device);
    clsm_context *ctx = NULL;
    ck_assert_msg(clsm_context_create(&ctx, spec, detail, sizeof detail) == CLSM_SUCCESS, "%s: %s", spec, detail);
    ck_assert(clsm_context_device(ctx) == devs[i].device_id);
    ck_assert_str_eq(clsm_context_device_name(ctx), devs[i].name);
    ck_assert_int_eq(clsm_context_family(ctx), devs[i].family);
    ck_assert(memchr(devs[i].platform_name, '\0', sizeof devs[i].platform_name) != NULL);
    clsm_context_destroy(ctx);
    defaults += devs[i].is_default;
    if (devs[i].is_default) ck_assert(devs[i].device_id == clsm_context_device(dflt));
  }
  ck_assert_int_eq(defaults, 1);
  clsm_context_destroy(dflt);
  /* A short array: the first entry filled, the rest untouched, all counted. */
  clsm_device_info one[2];
  memset(one, 0x5a, sizeof one);
  ck_assert_int_eq(clsm_list_devices(one, 1, &m, NULL, 0), CLSM_SUCCESS);
  ck_assert(m == n && one[0].device_id == devs[0].device_id);
  const unsigned char *rest = (const unsigned char *)&one[1];
  for (size_t b = 0; b < sizeof one[1]; ++b) ck_assert(rest[b] == 0x5a);
  /* CLSM_FAMILY: honoured, or refused with its name. */
  char saved[64] = "";
  const char *fam = getenv("CLSM_FAMILY");
  if (fam) snprintf(saved, sizeof saved, "%s", fam);
  setenv("CLSM_FAMILY", "gpu", 1);
  ck_assert_int_eq(clsm_list_devices(devs, 64, &m, NULL, 0), CLSM_SUCCESS);
  for (size_t i = 0; i < m; ++i) ck_assert_int_eq(devs[i].family, CLSM_FAMILY_GPU);
  setenv("CLSM_FAMILY", "gpux", 1);
  ck_assert_int_eq(clsm_list_devices(devs, 64, &m, detail, sizeof detail), CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(detail, "CLSM_FAMILY") != NULL, "%s", detail);
  if (fam) setenv("CLSM_FAMILY", saved, 1);
  else unsetenv("CLSM_FAMILY");
}
END_TEST

/* With no OpenCL platform installed (an empty vendors folder for the ICD
 * loader), creation says so and suggests the package. */
START_TEST(test_no_platform) {
  char dir[] = "/tmp/clsm-novendors-XXXXXX";
  ck_assert(mkdtemp(dir) != NULL);
  if (!test_hide_platforms(dir)) {
    rmdir(dir);
    return;
  }
  clsm_context *ctx = NULL;
  char detail[256] = "";
  clsm_status st = clsm_context_create(&ctx, NULL, detail, sizeof detail);
  rmdir(dir);
  ck_assert_msg(st == CLSM_ERR_NO_PLATFORM, "got %s: %s", clsm_status_name(st), detail);
  ck_assert(strstr(detail, "pocl-opencl-icd") != NULL);
}
END_TEST

/* A kernel that fails to build: CLSM_ERR_BUILD with the build log kept. */
START_TEST(test_build_failure) {
  char dir[] = "/tmp/clsm-badkernels-XXXXXX";
  ck_assert(mkdtemp(dir) != NULL);
  char path[512];
  snprintf(path, sizeof path, "%s/common.cl", dir);
  FILE *fp = fopen(path, "w");
  ck_assert(fp != NULL);
  fputs("this is not OpenCL C;\n", fp);
  fclose(fp);
  static const char *const others[] = {"abi.h", "softmax.cl", "backward.cl", "ce.cl"};
  for (int i = 0; i < 4; ++i) {
    snprintf(path, sizeof path, "%s/%s", dir, others[i]);
    fp = fopen(path, "w");
    ck_assert(fp != NULL);
    fclose(fp);
  }
  setenv("CLSM_KERNEL_DIR", dir, 1);
  clsm_context *ctx = test_context();
  float x[3] = {1, 2, 3}, y[3] = {SENTINEL, SENTINEL, SENTINEL};
  const int64_t shape[1] = {3};
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 1, shape, 0, 0, x, y), CLSM_ERR_BUILD);
  ck_assert(y[0] == SENTINEL && y[1] == SENTINEL && y[2] == SENTINEL);
  char log[4096] = "";
  ck_assert_msg(clsm_context_build_log(ctx, log, sizeof log) > 0, "empty build log");
  ck_assert(clsm_context_cl_error(ctx) == CL_BUILD_PROGRAM_FAILURE);
  /* A missing kernel folder is a build error too, with a message naming it. */
  setenv("CLSM_KERNEL_DIR", "/nonexistent-clsm-kernels", 1);
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 1, shape, 0, 0, x, y), CLSM_ERR_BUILD);
  char detail[512];
  clsm_context_error(ctx, detail, sizeof detail);
  ck_assert(strstr(detail, "/nonexistent-clsm-kernels") != NULL);
  clsm_context_destroy(ctx);
  static const char *const all[] = {"common.cl", "softmax.cl", "backward.cl", "ce.cl"};
  for (int i = 0; i < 4; ++i) {
    snprintf(path, sizeof path, "%s/%s", dir, all[i]);
    remove(path);
  }
  rmdir(dir);
}
END_TEST

/* The test hook CLSM_TEST_FAIL_ALLOC=n fails a context's n-th host allocation. */
START_TEST(test_out_of_host_memory) {
  setenv("CLSM_TEST_FAIL_ALLOC", "1", 1);
  clsm_context *ctx = NULL;
  char detail[256];
  ck_assert_int_eq(clsm_context_create(&ctx, NULL, detail, sizeof detail), CLSM_ERR_OUT_OF_HOST_MEMORY);
  ck_assert(ctx == NULL);
}
END_TEST

/* The context still works: a small softmax against the double reference. */
static void check_softmax_works(clsm_context *ctx) {
  float x[2 * 3] = {1, 2, 3, -1, 0, 5}, y[6];
  const int64_t shape[2] = {2, 3};
  CK_STATUS(ctx, clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, 1, 0, x, y));
  double ref[6];
  ref_softmax(x, ref, 2, shape, 1, 0, 0);
  for (int i = 0; i < 6; ++i) ck_assert(ref_close(y[i], ref[i], 0, 4e-6));
}

/* CLSM_TEST_FAIL_CL=n fails the n-th OpenCL create call: the context's own
 * (1, 2), the host layer's buffer (3), the program (4), the kernel (5). Each
 * step returns a clean status, writes nothing, and the context still works. */
START_TEST(test_opencl_failure) {
  int n = _i + 1;
  char v[16];
  snprintf(v, sizeof v, "%d", n);
  setenv("CLSM_TEST_FAIL_CL", v, 1);
  clsm_context *ctx = NULL;
  char detail[256] = "";
  clsm_status st = clsm_context_create(&ctx, NULL, detail, sizeof detail);
  if (n <= 2) {
    ck_assert_int_eq(st, CLSM_ERR_OPENCL);
    ck_assert(ctx == NULL);
    ck_assert(strstr(detail, "CL_OUT_OF_RESOURCES") != NULL);
    return;
  }
  ck_assert_int_eq(st, CLSM_SUCCESS);
  float x[3] = {1, 2, 3}, y[3] = {SENTINEL, SENTINEL, SENTINEL};
  const int64_t shape[1] = {3};
  st = clsm_softmax_host(ctx, CLSM_FLOAT32, 1, shape, 0, 0, x, y);
  ck_assert_int_eq(st, CLSM_ERR_OPENCL);
  ck_assert(y[0] == SENTINEL && y[1] == SENTINEL && y[2] == SENTINEL);
  ck_assert_int_eq(clsm_context_cl_error(ctx), CL_OUT_OF_RESOURCES);
  clsm_context_error(ctx, detail, sizeof detail);
  ck_assert_msg(strstr(detail, "clCreate") != NULL, "detail: %s", detail);
  /* The next call goes through. */
  check_softmax_works(ctx);
  clsm_context_destroy(ctx);
}
END_TEST

/* clsm_context_prepare: every dtype pair an operation takes builds (float64
 * where the device has it), any other pair is CLSM_ERR_UNSUPPORTED_DTYPE
 * naming both dtypes, and the operations work after it. */
START_TEST(test_prepare) {
  ck_assert_int_eq(clsm_context_prepare(NULL, CLSM_FLOAT32, CLSM_FLOAT32), CLSM_ERR_NULL_ARGUMENT);
  clsm_context *ctx = test_context();
  cl_device_fp_config fp64 = 0;
  clGetDeviceInfo(clsm_context_device(ctx), CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp64, &fp64, NULL);
  static const clsm_dtype good[][2] = {
      {CLSM_FLOAT32, CLSM_FLOAT32},  {CLSM_FLOAT16, CLSM_FLOAT16}, {CLSM_BFLOAT16, CLSM_BFLOAT16},
      {CLSM_FLOAT16, CLSM_FLOAT32},  {CLSM_BFLOAT16, CLSM_FLOAT32},
      {CLSM_FLOAT32, CLSM_FLOAT32}}; /* twice: the second call finds it built */
  for (size_t i = 0; i < sizeof good / sizeof good[0]; ++i)
    CK_STATUS(ctx, clsm_context_prepare(ctx, good[i][0], good[i][1]));
  ck_assert_int_eq(clsm_context_prepare(ctx, CLSM_FLOAT64, CLSM_FLOAT64),
                   fp64 ? CLSM_SUCCESS : CLSM_ERR_UNSUPPORTED_DTYPE);
  static const clsm_dtype bad[][2] = {{CLSM_FLOAT32, CLSM_FLOAT16}, {CLSM_FLOAT16, CLSM_BFLOAT16},
                                      {CLSM_FLOAT64, CLSM_FLOAT32}, {CLSM_INT64, CLSM_INT64}};
  char detail[512];
  /* A value that is no dtype at all is an invalid argument, as in every
   * operation, and the detail names it. */
  static const clsm_dtype unknown[][2] = {{CLSM_FLOAT32, (clsm_dtype)99}, {(clsm_dtype)99, CLSM_FLOAT32}};
  for (size_t i = 0; i < 2; ++i) {
    ck_assert_int_eq(clsm_context_prepare(ctx, unknown[i][0], unknown[i][1]), CLSM_ERR_INVALID_ARGUMENT);
    clsm_context_error(ctx, detail, sizeof detail);
    ck_assert_msg(strstr(detail, i ? "in: unknown dtype 99" : "out: unknown dtype 99"), "detail: %s", detail);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    ck_assert_int_eq(clsm_context_prepare(ctx, bad[i][0], bad[i][1]), CLSM_ERR_UNSUPPORTED_DTYPE);
    clsm_context_error(ctx, detail, sizeof detail);
    ck_assert_msg(strstr(detail, clsm_dtype_name(bad[i][0])) &&
                      strstr(detail, clsm_dtype_name(bad[i][1])),
                  "detail: %s", detail);
  }
  check_softmax_works(ctx);
  clsm_context_destroy(ctx);
}
END_TEST

/* clsm_context_prepare creates the program and its kernels: failing the
 * program's creation (CLSM_TEST_FAIL_CL=3, after the context's own two) or
 * its first kernel's (4) is CLSM_ERR_OPENCL, a later call builds what is
 * missing and the context works; a missing kernel folder is CLSM_ERR_BUILD
 * naming it. */
START_TEST(test_prepare_failures) {
  for (int n = 3; n <= 4; ++n) {
    char v[16];
    snprintf(v, sizeof v, "%d", n);
    setenv("CLSM_TEST_FAIL_CL", v, 1);
    clsm_context *ctx = test_context();
    ck_assert_int_eq(clsm_context_prepare(ctx, CLSM_FLOAT32, CLSM_FLOAT32), CLSM_ERR_OPENCL);
    ck_assert_int_eq(clsm_context_cl_error(ctx), CL_OUT_OF_RESOURCES);
    char detail[256];
    clsm_context_error(ctx, detail, sizeof detail);
    ck_assert_msg(strstr(detail, n == 3 ? "clCreateProgram" : "clCreateKernel") != NULL,
                  "detail: %s", detail);
    CK_STATUS(ctx, clsm_context_prepare(ctx, CLSM_FLOAT32, CLSM_FLOAT32));
    check_softmax_works(ctx);
    clsm_context_destroy(ctx);
  }
  unsetenv("CLSM_TEST_FAIL_CL");
  setenv("CLSM_KERNEL_DIR", "/nonexistent-clsm-kernels", 1);
  clsm_context *ctx = test_context();
  ck_assert_int_eq(clsm_context_prepare(ctx, CLSM_FLOAT16, CLSM_FLOAT32), CLSM_ERR_BUILD);
  char detail[512];
  clsm_context_error(ctx, detail, sizeof detail);
  ck_assert(strstr(detail, "/nonexistent-clsm-kernels") != NULL);
  clsm_context_destroy(ctx);
}
END_TEST

/* Status names and strings: one distinct entry per code, stable numbers. */
/* Environment values that are not understood are refused at context
 * creation, with the variable named; CLSM_DEVICE's mismatch names it too. */
START_TEST(test_bad_environment) {
  static const char *const vars[][3] = {
      {"CLSM_FAMILY", "gpux", "CLSM_FAMILY=\"gpux\" is not understood: one of cpu, gpu"},
      {"CLSM_KERNEL", "bogus", "CLSM_KERNEL=\"bogus\" is not understood: one of rows_cpu"},
      {"CLSM_WG_SIZE", "48", "CLSM_WG_SIZE=\"48\" is not understood: a power of two"},
      {"CLSM_SPLIT", "yes", "CLSM_SPLIT=\"yes\" is not understood: an integer in 0..1"},
      {"CLSM_DEVICE", "tesla", "CLSM_DEVICE (the default device spec): no OpenCL device matches the spec \"tesla\""},
  };
  const char *v = vars[_i][0];
  setenv(v, vars[_i][1], 1);
  clsm_context *ctx = (clsm_context *)&ctx;
  char detail[512] = "";
  clsm_status st = clsm_context_create(&ctx, NULL, detail, sizeof detail);
  ck_assert_int_eq(st, _i == 4 ? CLSM_ERR_DEVICE_NOT_FOUND : CLSM_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(detail, vars[_i][2]) != NULL, "detail: %s", detail);
  unsetenv(v);
}
END_TEST

START_TEST(test_status_tables) {
  ck_assert_int_eq(CLSM_SUCCESS, 0);
  ck_assert_int_eq(CLSM_ERR_TOO_LARGE, 14);
  for (int i = 0; i < CLSM_STATUS_COUNT_; ++i) {
    const char *s = clsm_status_string((clsm_status)i), *n = clsm_status_name((clsm_status)i);
    ck_assert(s && *s && strcmp(s, "unknown status"));
    ck_assert(strncmp(n, "CLSM_", 5) == 0 && strcmp(n, "CLSM_UNKNOWN"));
    for (int j = 0; j < i; ++j) {
      ck_assert(strcmp(s, clsm_status_string((clsm_status)j)));
      ck_assert(strcmp(n, clsm_status_name((clsm_status)j)));
    }
  }
  ck_assert_str_eq(clsm_status_string((clsm_status)999), "unknown status");
  ck_assert_str_eq(clsm_cl_error_name(CL_INVALID_MEM_OBJECT), "CL_INVALID_MEM_OBJECT");
  ck_assert_str_eq(clsm_dtype_name(CLSM_BFLOAT16), "bfloat16");
  ck_assert_int_eq(clsm_dtype_size(CLSM_FLOAT16), 2);
  ck_assert_int_eq(clsm_dtype_size((clsm_dtype)42), 0);
  ck_assert_uint_eq(clsm_version_number(), CLSM_VERSION_NUMBER);
  /* Contiguous helper: C-order strides; bad rank marks the descriptor. */
  const int64_t shape[3] = {2, 3, 4};
  clsm_tensor t = clsm_tensor_contiguous(NULL, 7, CLSM_FLOAT32, 3, shape);
  ck_assert(t.rank == 3 && t.strides[0] == 12 && t.strides[1] == 4 && t.strides[2] == 1 && t.offset == 7);
  ck_assert_int_eq(clsm_tensor_contiguous(NULL, 0, CLSM_FLOAT32, 9, shape).rank, 9);
  ck_assert_int_eq(clsm_tensor_contiguous(NULL, 0, CLSM_FLOAT32, 2, NULL).rank, -1);
  /* NULL-tolerant accessors. */
  ck_assert_int_eq(clsm_finish(NULL), CLSM_ERR_NULL_ARGUMENT);
  clsm_context_destroy(NULL);
  char buf[8] = "x";
  ck_assert_uint_eq(clsm_context_error(NULL, buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "");
}
END_TEST

/* The error detail is truncated safely and reports its full length. */
START_TEST(test_detail_truncation) {
  clsm_context *ctx = test_context();
  float x[2] = {0, 0}, y[2];
  const int64_t shape[1] = {2};
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 1, shape, 5, 0, x, y), CLSM_ERR_INVALID_DIM);
  char small[8];
  size_t full = clsm_context_error(ctx, small, sizeof small);
  ck_assert_uint_gt(full, sizeof small);
  ck_assert_uint_eq(strlen(small), sizeof small - 1);
  /* A new failure replaces the detail. */
  ck_assert_int_eq(clsm_softmax_host(ctx, CLSM_FLOAT32, 9, shape, 0, 0, x, y), CLSM_ERR_INVALID_RANK);
  char detail[256];
  clsm_context_error(ctx, detail, sizeof detail);
  ck_assert(strstr(detail, "rank") != NULL);
  clsm_context_destroy(ctx);
}
END_TEST

static Suite *errors_suite(void) {
  Suite *s = suite_create("errors");
  TCase *tc = tcase_create("Errors");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_bad_call, 0, NBAD);
  tcase_add_loop_test(tc, test_bad_backward, 0, (int)(sizeof bad_backward / sizeof bad_backward[0]));
  tcase_add_loop_test(tc, test_bad_ce, 0, (int)(sizeof bad_ce / sizeof bad_ce[0]));
  tcase_add_test(tc, test_host_errors);
  tcase_add_test(tc, test_device_not_found);
  tcase_add_loop_test(tc, test_bad_environment, 0, 5);
  tcase_add_test(tc, test_no_platform);
  tcase_add_test(tc, test_build_failure);
  tcase_add_test(tc, test_out_of_host_memory);
  tcase_add_loop_test(tc, test_opencl_failure, 0, 5);
  tcase_add_test(tc, test_detail_truncation);
  tcase_add_test(tc, test_prepare);
  tcase_add_test(tc, test_list_devices);
  tcase_add_test(tc, test_plan_hook);
  tcase_add_test(tc, test_prepare_failures);
  suite_add_tcase(s, tc);
  tc = tcase_create("Tables");
  tcase_add_test(tc, test_status_tables);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(errors_suite()); }
