/* Cross-entropy with the gradient written over the logits (in place), for
 * Oclgrind's data-race detector (tests/check_oclgrind.sh), through the
 * device API (the host-array version keeps separate device buffers): float32
 * and float16, rows long enough that a work-group row has many lanes. Exits 0
 * when every call succeeds and the loss is finite. */
#include "clsoftmax.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int run(clsm_context *ctx, clsm_dtype dt) {
  enum { N = 4, C = 300 };
  const int64_t shape[2] = {N, C};
  float xf[N * C];
  uint16_t xh[N * C];
  int64_t t[N] = {0, 299, 150, 7};
  for (int i = 0; i < N * C; ++i) xf[i] = (float)((i * 37) % 101) / 25.0f - 2.0f;
  for (int i = 0; i < N * C; ++i) { /* float16 by hand: values k/25 - 2 are exact enough */
    float v = xf[i];
    uint32_t b;
    memcpy(&b, &v, 4);
    int e = (int)((b >> 23) & 0xff) - 127 + 15;
    xh[i] = v == 0 ? 0 : (uint16_t)(((b >> 16) & 0x8000) | (uint32_t)(e << 10) | ((b >> 13) & 0x3ff));
  }
  const void *x = dt == CLSM_FLOAT32 ? (const void *)xf : (const void *)xh;
  const size_t es = clsm_dtype_size(dt);
  cl_int err;
  cl_context cc = clsm_context_cl_context(ctx);
  cl_mem xb = clCreateBuffer(cc, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, N * C * es, (void *)x, &err);
  cl_mem tb = clCreateBuffer(cc, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof t, t, &err);
  cl_mem lb = clCreateBuffer(cc, CL_MEM_READ_WRITE, 8, NULL, &err);
  if (!xb || !tb || !lb) return 1;
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, dt, 2, shape);
  const int64_t tshape[1] = {N};
  clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 1, tshape);
  clsm_tensor lt = clsm_tensor_contiguous(lb, 0, dt, 0, NULL);
  clsm_ce_options opt = clsm_ce_options_default();
  opt.grad = &xt; /* the gradient over the logits, on the device */
  clsm_status st = clsm_cross_entropy(ctx, &xt, &tt, &lt, &opt, 0, NULL, NULL);
  if (st == CLSM_SUCCESS) st = clsm_finish(ctx);
  float loss32 = NAN;
  if (st == CLSM_SUCCESS && dt == CLSM_FLOAT32)
    clEnqueueReadBuffer(clsm_context_queue(ctx), lb, CL_TRUE, 0, 4, &loss32, 0, NULL, NULL);
  clReleaseMemObject(xb);
  clReleaseMemObject(tb);
  clReleaseMemObject(lb);
  if (st != CLSM_SUCCESS) {
    char d[512];
    clsm_context_error(ctx, d, sizeof d);
    fprintf(stderr, "race_ce_inplace: %s: %s\n", clsm_status_name(st), d);
    return 1;
  }
  if (dt == CLSM_FLOAT32 && !isfinite(loss32)) {
    fprintf(stderr, "race_ce_inplace: the loss is %g\n", (double)loss32);
    return 1;
  }
  printf("race_ce_inplace: %s in place: ok\n", clsm_dtype_name(dt));
  return 0;
}

int main(void) {
  clsm_context *ctx = NULL;
  char detail[512];
  if (clsm_context_create(&ctx, NULL, detail, sizeof detail) != CLSM_SUCCESS) {
    fprintf(stderr, "race_ce_inplace: %s\n", detail);
    return 1;
  }
  printf("race_ce_inplace: %s, %s family\n", clsm_context_device_name(ctx),
         clsm_context_family(ctx) == CLSM_FAMILY_CPU ? "cpu" : "gpu");
  int rc = run(ctx, CLSM_FLOAT32) | run(ctx, CLSM_FLOAT16);
  clsm_context_destroy(ctx);
  return rc;
}
