/* Attention softmax in place (y over x) with a broadcast float16 mask,
 * causal rows, ALiBi, sinks and lse, then its backward in place (dx over
 * dy) with dsinks, for Oclgrind's data-race and API checks
 * (tests/check_oclgrind.sh). Rows of 300 keys: a work-group row has many
 * lanes. Exits 0 when every call succeeds and the results are sane (each
 * row's probabilities sum to at most 1, everything finite). */
#include "clsoftmax.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { B = 1, H = 2, LQ = 3, LK = 300, N = B * H * LQ * LK };

static int fail(clsm_context *ctx, clsm_status st, const char *what) {
  char d[512];
  clsm_context_error(ctx, d, sizeof d);
  fprintf(stderr, "race_attention: %s: %s: %s\n", what, clsm_status_name(st), d);
  return 1;
}

int main(void) {
  clsm_context *ctx = NULL;
  char detail[512];
  if (clsm_context_create(&ctx, NULL, detail, sizeof detail) != CLSM_SUCCESS) {
    fprintf(stderr, "race_attention: %s\n", detail);
    return 1;
  }
  printf("race_attention: %s, %s family\n", clsm_context_device_name(ctx),
         clsm_context_family(ctx) == CLSM_FAMILY_CPU ? "cpu" : "gpu");
  static float x[N], dy[N], out[N];
  static uint16_t mask[LQ * LK];
  for (int i = 0; i < N; ++i) {
    x[i] = (float)((i * 37) % 101) / 25.0f - 2.0f;
    dy[i] = (float)((i * 11) % 13) / 13.0f - 0.5f;
  }
  for (int i = 0; i < LQ * LK; ++i) mask[i] = i % 7 == 3 ? 0xfc00 : 0x0000; /* -inf or 0 */
  const float sinks[H] = {0.5f, -1.0f};
  cl_int err;
  cl_context cc = clsm_context_cl_context(ctx);
  cl_mem xb = clCreateBuffer(cc, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x, x, &err);
  cl_mem db = clCreateBuffer(cc, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof dy, dy, &err);
  cl_mem mb = clCreateBuffer(cc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof mask, mask, &err);
  cl_mem sb = clCreateBuffer(cc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof sinks, (void *)sinks, &err);
  cl_mem lb = clCreateBuffer(cc, CL_MEM_READ_WRITE, B * H * LQ * 4, NULL, &err);
  cl_mem gb = clCreateBuffer(cc, CL_MEM_READ_WRITE, H * 4, NULL, &err);
  if (!xb || !db || !mb || !sb || !lb || !gb) return 1;
  const int64_t shape[4] = {B, H, LQ, LK}, mshape[4] = {1, 1, LQ, LK}, hs[1] = {H};
  const int64_t lshape[3] = {B, H, LQ};
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 4, shape);
  clsm_tensor dt = clsm_tensor_contiguous(db, 0, CLSM_FLOAT32, 4, shape);
  clsm_tensor mt = clsm_tensor_contiguous(mb, 0, CLSM_FLOAT16, 4, mshape);
  clsm_tensor st = clsm_tensor_contiguous(sb, 0, CLSM_FLOAT32, 1, hs);
  clsm_tensor lt = clsm_tensor_contiguous(lb, 0, CLSM_FLOAT32, 3, lshape);
  clsm_tensor gt = clsm_tensor_contiguous(gb, 0, CLSM_FLOAT32, 1, hs);
  clsm_attn_options o = clsm_attn_options_default();
  o.scale = 0.5;
  o.mask = &mt;
  o.causal = 1;
  o.offset = LK - LQ;
  o.alibi_max_bias = 8.0;
  o.sinks = &st;
  o.lse = &lt;
  clsm_status s = clsm_softmax_ex(ctx, &xt, &xt, 3, &o, 0, NULL, NULL);
  if (s != CLSM_SUCCESS) return fail(ctx, s, "softmax_ex");
  clsm_attn_options b = clsm_attn_options_default();
  b.scale = 0.5;
  b.dsinks = &gt;
  s = clsm_softmax_backward_ex(ctx, &xt, &dt, &dt, 3, &b, 0, NULL, NULL);
  if (s != CLSM_SUCCESS) return fail(ctx, s, "softmax_backward_ex");
  if ((s = clsm_finish(ctx)) != CLSM_SUCCESS) return fail(ctx, s, "finish");
  clEnqueueReadBuffer(clsm_context_queue(ctx), xb, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL);
  for (int r = 0; r < B * H * LQ; ++r) {
    double sum = 0;
    for (int j = 0; j < LK; ++j) sum += out[r * LK + j];
    if (!(sum > 0 && sum <= 1 + 1e-5)) {
      fprintf(stderr, "race_attention: row %d sums to %g\n", r, sum);
      return 1;
    }
  }
  float g[H];
  clEnqueueReadBuffer(clsm_context_queue(ctx), gb, CL_TRUE, 0, sizeof g, g, 0, NULL, NULL);
  if (!isfinite(g[0]) || !isfinite(g[1])) {
    fprintf(stderr, "race_attention: dsinks %g %g\n", (double)g[0], (double)g[1]);
    return 1;
  }
  printf("race_attention: in place forward and backward: ok\n");
  clReleaseMemObject(xb);
  clReleaseMemObject(db);
  clReleaseMemObject(mb);
  clReleaseMemObject(sb);
  clReleaseMemObject(lb);
  clReleaseMemObject(gb);
  clsm_context_destroy(ctx);
  return 0;
}
