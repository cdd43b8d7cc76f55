/* Calls for Oclgrind's data-race and API checks (tests/check_oclgrind.sh),
 * through the device API (the host-array versions keep separate device
 * buffers), each in place, one per argument:
 *   ce_inplace  cross-entropy with the gradient written over the logits,
 *               float32 and float16, rows long enough that a row has many
 *               lanes, through the register-held rows kernel (several rows
 *               a group) and, with CLSM_REG_ROWS=0, the work-group row
 *               kernel; the loss must be finite;
 *   attention   attention softmax in place (y over x) with a broadcast
 *               float16 mask, causal rows, ALiBi, sinks and lse, then its
 *               backward in place (dx over dy) with dsinks, rows of 300 keys;
 *               each row's probabilities must sum to at most 1;
 *   shard       cross-entropy over two column views of one logits buffer
 *               (partial, host merge, finish with the gradient in place),
 *               with weights and label smoothing, then a sharded softmax;
 *               the loss must be the unsharded one;
 *   rows_reg    softmax and log-softmax in place through the register-held
 *               rows kernels: rows of 37 (a partial last vector, several
 *               lanes, several rows a group) from element 0 (16-byte loads)
 *               and element 1 (scalar loads), float32 and float16; each
 *               softmax row must sum to 1.
 * Exits 0 when every call succeeds and the results are sane. */
#include "clsoftmax.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 1, H = 2, LQ = 3, LK = 300, N = B * H * LQ * LK };

static int ce_run(clsm_context *ctx, clsm_dtype dt) {
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
    fprintf(stderr, "oclgrind_cases ce_inplace: %s: %s\n", clsm_status_name(st), d);
    return 1;
  }
  if (dt == CLSM_FLOAT32 && !isfinite(loss32)) {
    fprintf(stderr, "oclgrind_cases ce_inplace: the loss is %g\n", (double)loss32);
    return 1;
  }
  printf("oclgrind_cases ce_inplace: %s in place: ok\n", clsm_dtype_name(dt));
  return 0;
}

static int fail(clsm_context *ctx, clsm_status st, const char *what) {
  char d[512];
  clsm_context_error(ctx, d, sizeof d);
  fprintf(stderr, "oclgrind_cases attention: %s: %s: %s\n", what, clsm_status_name(st), d);
  return 1;
}

static int attention(clsm_context *ctx) {
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
      fprintf(stderr, "oclgrind_cases attention: row %d sums to %g\n", r, sum);
      return 1;
    }
  }
  float g[H];
  clEnqueueReadBuffer(clsm_context_queue(ctx), gb, CL_TRUE, 0, sizeof g, g, 0, NULL, NULL);
  if (!isfinite(g[0]) || !isfinite(g[1])) {
    fprintf(stderr, "oclgrind_cases attention: dsinks %g %g\n", (double)g[0], (double)g[1]);
    return 1;
  }
  printf("oclgrind_cases attention: in place forward and backward: ok\n");
  clReleaseMemObject(xb);
  clReleaseMemObject(db);
  clReleaseMemObject(mb);
  clReleaseMemObject(sb);
  clReleaseMemObject(lb);
  clReleaseMemObject(gb);
  return 0;
}

static int shard(clsm_context *ctx) {
  enum { N = 4, C = 300, K = 2 };
  static float x[N * C], w[C], st[K][N * CLSM_SHARD_STATS];
  int64_t t[N] = {0, 299, 150, -100};
  for (int i = 0; i < N * C; ++i) x[i] = (float)((i * 37) % 101) / 25.0f - 2.0f;
  for (int c = 0; c < C; ++c) w[c] = 0.5f + (float)(c % 3) * 0.25f;
  cl_int err;
  cl_context cc = clsm_context_cl_context(ctx);
  cl_command_queue q = clsm_context_queue(ctx);
  cl_mem xb = clCreateBuffer(cc, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x, x, &err);
  cl_mem tb = clCreateBuffer(cc, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof t, t, &err);
  cl_mem wb = clCreateBuffer(cc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof w, w, &err);
  cl_mem sb = clCreateBuffer(cc, CL_MEM_READ_WRITE, sizeof st, NULL, &err);
  cl_mem lb = clCreateBuffer(cc, CL_MEM_READ_WRITE, 4, NULL, &err);
  if (!xb || !tb || !wb || !sb || !lb) return 1;
  const int64_t shape[2] = {N, C}, tshape[1] = {N}, wshape[1] = {C}, sshape[2] = {N, CLSM_SHARD_STATS};
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 1, tshape);
  clsm_tensor wt = clsm_tensor_contiguous(wb, 0, CLSM_FLOAT32, 1, wshape);
  clsm_tensor lt = clsm_tensor_contiguous(lb, 0, CLSM_FLOAT32, 0, NULL);
  clsm_ce_options o = clsm_ce_options_default();
  o.weight = &wt;
  o.label_smoothing = 0.1;
  float unsharded = NAN, loss = NAN;
  clsm_status s = clsm_cross_entropy(ctx, &xt, &tt, &lt, &o, 0, NULL, NULL);
  if (s == CLSM_SUCCESS) s = clsm_finish(ctx);
  if (s != CLSM_SUCCESS) return fail(ctx, s, "unsharded cross-entropy");
  clEnqueueReadBuffer(q, lb, CL_TRUE, 0, 4, &unsharded, 0, NULL, NULL);
  clsm_tensor xs[K], ss[K];
  clsm_shard sh[K];
  for (int k = 0; k < K; ++k) {
    const int64_t c0 = C * k / K, c1 = C * (k + 1) / K;
    xs[k] = xt;
    xs[k].offset = (uint64_t)c0;
    xs[k].shape[1] = c1 - c0;
    sh[k].first = c0, sh[k].classes = C;
    ss[k] = clsm_tensor_contiguous(sb, (uint64_t)k * N * CLSM_SHARD_STATS, CLSM_FLOAT32, 2, sshape);
    if ((s = clsm_cross_entropy_partial(ctx, &xs[k], &tt, &sh[k], &ss[k], &o, 0, NULL, NULL)) != CLSM_SUCCESS)
      return fail(ctx, s, "partial");
  }
  clEnqueueReadBuffer(q, sb, CL_TRUE, 0, sizeof st, st, 0, NULL, NULL);
  clsm_shard_merge(CLSM_FLOAT32, CLSM_SHARD_STATS, N, st[1], st[0]);
  clEnqueueWriteBuffer(q, sb, CL_TRUE, 0, sizeof st[0], st[0], 0, NULL, NULL);
  for (int k = 0; k < K; ++k) {
    o.grad = &xs[k]; /* in place over the shard's logits */
    if ((s = clsm_cross_entropy_finish(ctx, &xs[k], &tt, &sh[k], &ss[0], k ? NULL : &lt, &o, 0, NULL, NULL)) !=
        CLSM_SUCCESS)
      return fail(ctx, s, "finish");
  }
  /* A softmax along the same two shards of the gradient just written. */
  const int64_t rshape[2] = {N, 2};
  clsm_tensor rs = clsm_tensor_contiguous(sb, 0, CLSM_FLOAT32, 2, rshape);
  if ((s = clsm_softmax_partial(ctx, CLSM_SHARD_SOFTMAX, &xs[1], NULL, 1, &rs, 0, NULL, NULL)) != CLSM_SUCCESS ||
      (s = clsm_softmax_finish(ctx, CLSM_SHARD_SOFTMAX, &xs[1], NULL, 1, 0, &rs, &xs[1], 0, NULL, NULL)) !=
          CLSM_SUCCESS)
    return fail(ctx, s, "sharded softmax");
  if ((s = clsm_finish(ctx)) != CLSM_SUCCESS) return fail(ctx, s, "finish");
  clEnqueueReadBuffer(q, lb, CL_TRUE, 0, 4, &loss, 0, NULL, NULL);
  clReleaseMemObject(xb), clReleaseMemObject(tb), clReleaseMemObject(wb), clReleaseMemObject(sb),
      clReleaseMemObject(lb);
  if (!(fabsf(loss - unsharded) <= 1e-5f * fabsf(unsharded))) {
    fprintf(stderr, "oclgrind_cases shard: loss %g, unsharded %g\n", (double)loss, (double)unsharded);
    return 1;
  }
  printf("oclgrind_cases shard: two shards in place: ok\n");
  return 0;
}

static int rows_reg(clsm_context *ctx) {
  enum { R = 5, C = 37 };
  static float x[R * C + 1];
  cl_int err;
  cl_context cc = clsm_context_cl_context(ctx);
  cl_command_queue q = clsm_context_queue(ctx);
  const int64_t shape[2] = {R, C};
  for (int dt = 0; dt < 2; ++dt)
    for (int off = 0; off < 2; ++off)
      for (int log = 0; log < 2; ++log) {
        const clsm_dtype d = dt ? CLSM_FLOAT16 : CLSM_FLOAT32;
        const size_t es = dt ? 2 : 4;
        unsigned char buf[sizeof x];
        for (int i = 0; i < R * C + 1; ++i) x[i] = (float)((i * 37) % 101) / 25.0f - 2.0f;
        if (dt) /* float16 bits of x, exact for these values (multiples of 1/25 near 0 round) */
          for (int i = 0; i < R * C + 1; ++i) {
            const float v = x[i];
            const int e = v == 0 ? 0 : (int)floorf(log2f(fabsf(v)));
            const int m = (int)lrintf(ldexpf(fabsf(v), 10 - e));
            const unsigned short h = v == 0 ? 0 : (unsigned short)((v < 0 ? 0x8000 : 0) | ((e + 15) << 10) | (m & 0x3ff));
            memcpy(buf + 2 * i, &h, 2);
          }
        else
          memcpy(buf, x, sizeof x);
        cl_mem xb = clCreateBuffer(cc, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, (R * C + 1) * es, buf, &err);
        if (!xb) return 1;
        clsm_tensor xt = clsm_tensor_contiguous(xb, (uint64_t)off, d, 2, shape);
        clsm_status s = (log ? clsm_log_softmax : clsm_softmax)(ctx, &xt, &xt, 1, 0, 0, NULL, NULL);
        if (s == CLSM_SUCCESS) s = clsm_finish(ctx);
        if (s != CLSM_SUCCESS) return fail(ctx, s, "softmax in place");
        clEnqueueReadBuffer(q, xb, CL_TRUE, 0, (R * C + 1) * es, buf, 0, NULL, NULL);
        clReleaseMemObject(xb);
        for (int r = 0; r < R && !log; ++r) {
          double sum = 0;
          for (int c = 0; c < C; ++c) {
            const int i = off + r * C + c;
            if (dt) {
              unsigned short h;
              memcpy(&h, buf + 2 * i, 2);
              sum += ldexp((double)(1024 + (h & 0x3ff)), ((h >> 10) & 31) - 25) * ((h & 0x8000) ? -1 : 1);
            } else {
              float v;
              memcpy(&v, buf + 4 * i, 4);
              sum += v;
            }
          }
          if (!(fabs(sum - 1) <= (dt ? 2e-2 : 1e-5))) {
            fprintf(stderr, "oclgrind_cases rows_reg: %s offset %d row %d sums to %g\n",
                    dt ? "float16" : "float32", off, r, sum);
            return 1;
          }
        }
      }
  printf("oclgrind_cases rows_reg: in place, aligned and not: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  const int ce = argc == 2 && !strcmp(argv[1], "ce_inplace");
  const int sh = argc == 2 && !strcmp(argv[1], "shard");
  const int rr = argc == 2 && !strcmp(argv[1], "rows_reg");
  if (!ce && !sh && !rr && !(argc == 2 && !strcmp(argv[1], "attention"))) {
    fprintf(stderr, "usage: oclgrind_cases ce_inplace|attention|shard|rows_reg\n");
    return 2;
  }
  clsm_context *ctx = NULL;
  char detail[512];
  if (clsm_context_create(&ctx, NULL, detail, sizeof detail) != CLSM_SUCCESS) {
    fprintf(stderr, "oclgrind_cases: %s\n", detail);
    return 1;
  }
  printf("oclgrind_cases: %s, %s family\n", clsm_context_device_name(ctx),
         clsm_context_family(ctx) == CLSM_FAMILY_CPU ? "cpu" : "gpu");
  int rc = ce ? ce_run(ctx, CLSM_FLOAT32) | ce_run(ctx, CLSM_FLOAT16)
           : sh ? shard(ctx) : rr ? rows_reg(ctx) : attention(ctx);
  clsm_context_destroy(ctx);
  if (ce) { /* again with a work-group a row */
    setenv("CLSM_REG_ROWS", "0", 1);
    if (clsm_context_create(&ctx, NULL, detail, sizeof detail) != CLSM_SUCCESS) {
      fprintf(stderr, "oclgrind_cases: %s\n", detail);
      return 1;
    }
    rc |= ce_run(ctx, CLSM_FLOAT32) | ce_run(ctx, CLSM_FLOAT16);
    clsm_context_destroy(ctx);
  }
  return rc;
}
