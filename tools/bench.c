/* clsoftmax bench: median time of each operation on a set of shapes, its
 * effective bandwidth (bytes that must move: inputs read once, outputs written
 * once), the same device's copy bandwidth for the same bytes measured in the
 * same run (interleaved with the op), the ratio, the max error against the
 * double reference, and oneDNN's softmax on the same shapes when it was found
 * at build time. One line is printed per row as it completes. */
#include "reference.h"
#include "svg.h"
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef CLSM_HAVE_ONEDNN
#include <dnnl.h>
#endif

typedef struct shape_case {
  int rank;
  int64_t shape[4];
  int dim;
  int quick; /* part of --quick */
} shape_case;

static const shape_case cases[] = {
    {2, {8192, 4096}, -1, 1},  {2, {4096, 32000}, -1, 0}, {2, {65536, 128}, -1, 1},
    {2, {1024, 262144}, -1, 0}, {2, {128, 1000}, -1, 0},  {2, {64, 80}, -1, 1},
    {2, {1, 1000}, -1, 0},     {2, {1, 1048576}, -1, 1}, {3, {64, 512, 512}, 0, 0},
    {3, {64, 512, 512}, 1, 1}, {3, {64, 512, 512}, 2, 0},
    /* attention scores (batch, heads, queries, keys): plain softmax and the
     * attention rows, float32 and float16 */
    {4, {4, 16, 1024, 1024}, -1, 0},
};

/* Operations the bench runs; inputs and outputs per element. */
typedef enum {
  B_SOFTMAX, B_LOG_SOFTMAX, B_SOFTMAX_BWD, B_LOG_SOFTMAX_BWD, B_CE, B_CE_FUSED,
  B_CE_SHARDED, /* fused, the class axis in SHARDS shards of one device, merged on the host */
  B_ATTN_MASKED, /* + an additive float16 mask (1, 1, Lq, Lk) */
  B_ATTN_CAUSAL, /* causal */
  B_ATTN_ALIBI,  /* ALiBi from max_bias 8, and sinks */
  B_OPS
} bench_op;
static const char *const op_names[B_OPS] = {"softmax", "log-softmax", "softmax-backward",
                                            "log-softmax-backward", "cross-entropy",
                                            "cross-entropy-fused", "cross-entropy-fused-sharded4",
                                            "softmax-masked",
                                            "softmax-causal", "softmax-alibi-sinks"};

typedef struct row_result {
  const char *op;
  clsm_dtype dtype;
  const shape_case *sc;
  double median_ms, host_ms, gbps, copy_gbps, gelems, max_err, onednn_gbps;
  double first_ms; /* the first call (kernel creation; the program build for a new dtype) */
} row_result;

/* What the bench prints before its table. */
typedef struct startup_times {
  double context_ms, first_call_ms, next_call_ms, launch_floor_us;
  double prepare_ms, prepared_first_call_ms; /* clsm_context_prepare for float16, then its first call */
} startup_times;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Device seconds from the end of `before` (a marker enqueued just ahead, or
 * the command itself when NULL) to the end of `ev` (profiling), or -1. An op
 * may enqueue several kernels and return the last one's event: the marker
 * makes the span cover all of them. */
static double event_seconds(cl_event before, cl_event ev) {
  cl_ulong t0 = 0, t1 = 0;
  cl_int e0 = before ? clGetEventProfilingInfo(before, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL)
                     : clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
  if (e0 != CL_SUCCESS ||
      clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) != CL_SUCCESS || t1 < t0)
    return -1.0;
  return 1e-9 * (double)(t1 - t0);
}

#ifdef CLSM_HAVE_ONEDNN
/* oneDNN softmax on host arrays: median seconds over `reps`, or -1. */
static double onednn_time(const shape_case *sc, int log, float *x, float *y, int reps) {
  dnnl_engine_t eng = NULL;
  dnnl_stream_t stream = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t prim = NULL;
  dnnl_memory_t src = NULL, dst = NULL;
  double result = -1.0;
  double *t = malloc(sizeof(double) * (size_t)reps);
  dnnl_memory_desc_t md;
  dnnl_softmax_v2_desc_t sd;
  dnnl_dims_t dims;
  for (int i = 0; i < sc->rank; ++i) dims[i] = sc->shape[i];
  int axis = sc->dim < 0 ? sc->dim + sc->rank : sc->dim;
  if (!t || dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) != dnnl_success ||
      dnnl_memory_desc_init_by_tag(&md, sc->rank, dims, dnnl_f32,
                                   sc->rank == 2 ? dnnl_ab : sc->rank == 3 ? dnnl_abc : dnnl_abcd) != dnnl_success ||
      dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference,
                                        log ? dnnl_softmax_log : dnnl_softmax_accurate, &md, &md,
                                        axis) != dnnl_success ||
      dnnl_primitive_desc_create(&pd, &sd, NULL, eng, NULL) != dnnl_success ||
      dnnl_primitive_create(&prim, pd) != dnnl_success ||
      dnnl_memory_create(&src, &md, eng, x) != dnnl_success ||
      dnnl_memory_create(&dst, &md, eng, y) != dnnl_success)
    goto done;
  dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
  for (int i = 0; i < 2; ++i) dnnl_primitive_execute(prim, stream, 2, args);
  dnnl_stream_wait(stream);
  for (int i = 0; i < reps; ++i) {
    double t0 = now_s();
    dnnl_primitive_execute(prim, stream, 2, args);
    dnnl_stream_wait(stream);
    t[i] = now_s() - t0;
  }
  result = median(t, reps);
done:
  if (src) dnnl_memory_destroy(src);
  if (dst) dnnl_memory_destroy(dst);
  if (prim) dnnl_primitive_destroy(prim);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (stream) dnnl_stream_destroy(stream);
  if (eng) dnnl_engine_destroy(eng);
  free(t);
  return result;
}
#endif

/* xorshift64*, 53-bit results: fast enough that the input of a large row
 * costs little. */
static uint64_t next_rand(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (*s * 2685821657736338717ull) >> 11;
}
static double unit_rand(uint64_t *s) { return (double)next_rand(s) * 0x1.0p-53; }

/* Storage <-> float for the bench's host arrays. */
static float load(clsm_dtype dt, const void *p, int64_t i) {
  switch (dt) {
  case CLSM_FLOAT16: return ref_f16_to_f32(((const uint16_t *)p)[i]);
  case CLSM_BFLOAT16: return ref_bf16_to_f32(((const uint16_t *)p)[i]);
  default: return ((const float *)p)[i];
  }
}
static void store(clsm_dtype dt, void *p, int64_t i, float v) {
  switch (dt) {
  case CLSM_FLOAT16: ((uint16_t *)p)[i] = ref_f32_to_f16(v); break;
  case CLSM_BFLOAT16: ((uint16_t *)p)[i] = ref_f32_to_bf16(v); break;
  default: ((float *)p)[i] = v; break;
  }
}

/* Max error of the output against the reference on a sample of outer slices:
 * relative (log-softmax: scaled by max(1, |ref|)) for the forward ops; for the
 * backward ops relative to the size of the terms that cancel. */
static double sample_error(const shape_case *sc, bench_op op, clsm_dtype dt, const void *a,
                           const void *b, const void *out) {
  int dim = sc->dim < 0 ? sc->dim + sc->rank : sc->dim;
  int log = op == B_LOG_SOFTMAX || op == B_LOG_SOFTMAX_BWD;
  int64_t outer = 1, C = sc->shape[dim], inner = 1;
  for (int d = 0; d < dim; ++d) outer *= sc->shape[d];
  for (int d = dim + 1; d < sc->rank; ++d) inner *= sc->shape[d];
  int64_t slice = C * inner;
  float *xs = malloc(sizeof(float) * (size_t)slice);
  double *ya = malloc(sizeof(double) * (size_t)slice), *yb = malloc(sizeof(double) * (size_t)slice);
  double *ref = malloc(sizeof(double) * (size_t)slice), *scl = malloc(sizeof(double) * (size_t)slice);
  double worst = NAN;
  if (!xs || !ya || !yb || !ref || !scl) goto done;
  worst = 0.0;
  int samples = outer < 16 ? (int)outer : 16;
  for (int k = 0; k < samples; ++k) {
    int64_t o = samples > 1 ? k * (outer - 1) / (samples - 1) : 0, base = o * slice;
    int64_t shape[2] = {C, inner};
    if (op <= B_LOG_SOFTMAX) {
      for (int64_t i = 0; i < slice; ++i) xs[i] = load(dt, a, base + i);
      ref_softmax(xs, ref, 2, shape, 0, log, 0);
      for (int64_t i = 0; i < slice; ++i) {
        /* float16 flushes results below its subnormal range: 6e-8 absolute. */
        float got = load(dt, out, base + i);
        if (dt == CLSM_FLOAT16 && !log && fabs(got - ref[i]) <= 6e-8) continue;
        worst = fmax(worst, ref_error(got, ref[i], log));
      }
    } else {
      for (int64_t i = 0; i < slice; ++i) {
        ya[i] = load(dt, a, base + i);
        yb[i] = load(dt, b, base + i);
      }
      ref_softmax_backward(ya, yb, ref, scl, 2, shape, 0, log);
      for (int64_t i = 0; i < slice; ++i) {
        double e = fabs(load(dt, out, base + i) - ref[i]);
        if (dt == CLSM_FLOAT16 && e <= 6e-8) continue;
        worst = fmax(worst, e / fmax(scl[i], 1e-30));
      }
    }
  }
done:
  free(xs), free(ya), free(yb), free(ref), free(scl);
  return worst;
}

/* Max relative error of an attention row set against the reference, over
 * the first 64 queries of the first head (the mask, slopes and sinks of
 * the full shape). */
static double attn_error(const shape_case *sc, bench_op op, clsm_dtype dt, const void *a,
                         const uint16_t *mh, const float *sinks, const void *out) {
  const int64_t Lk = sc->shape[3], H = sc->shape[1], q = 64;
  const int64_t shape[4] = {1, 1, q, Lk}, n = q * Lk;
  double *x = malloc(sizeof(double) * (size_t)n), *m = malloc(sizeof(double) * (size_t)n);
  double *ref = malloc(sizeof(double) * (size_t)n), slopes[64], sd[64];
  double worst = NAN;
  if (!x || !m || !ref || H > 64) goto done;
  ref_alibi_slopes(8.0, H, slopes);
  for (int64_t h = 0; h < H; ++h) sd[h] = sinks[h];
  for (int64_t k = 0; k < n; ++k) {
    x[k] = load(dt, a, k);
    m[k] = ref_f16_to_f32(mh[k]);
  }
  ref_attn_opts ro = {.scale = 1.0, .head_dim = 1};
  if (op == B_ATTN_MASKED) ro.mask = m;
  if (op == B_ATTN_CAUSAL) ro.causal = 1;
  if (op == B_ATTN_ALIBI) {
    ro.slopes = slopes;
    ro.sinks = sd;
  }
  ref_attn_softmax(x, ref, NULL, 4, shape, 3, 0, &ro);
  worst = 0.0;
  for (int64_t k = 0; k < n; ++k) {
    const float got = load(dt, out, k);
    if (dt == CLSM_FLOAT16 && fabs(got - ref[k]) <= 6e-8) continue;
    worst = fmax(worst, ref_error(got, ref[k], 0));
  }
done:
  free(x), free(m), free(ref);
  return worst;
}

/* The sharded row's shards: column views of one logits buffer, their
 * statistics in one buffer (slot r for shard r), the host merge. */
enum { SHARDS = 4 };
typedef struct bench_shards {
  clsm_tensor x[SHARDS], st[SHARDS];
  clsm_shard sh[SHARDS];
  float *host;
  size_t rec_bytes; /* one shard's statistics */
  int64_t P;
  cl_mem buf;
} bench_shards;

/* partial on each shard, the statistics read back and merged on the host,
 * written to slot 0, finish on each (the gradient in place, the loss from
 * shard 0); *ev is the last finish's event. */
static clsm_status run_shards(clsm_context *ctx, bench_shards *b, const clsm_tensor *t,
                              const clsm_tensor *loss, cl_event *ev) {
  cl_command_queue q = clsm_context_queue(ctx);
  clsm_ce_options o = CLSM_CE_OPTIONS_INIT;
  clsm_status st = CLSM_SUCCESS;
  for (int r = 0; r < SHARDS && st == CLSM_SUCCESS; ++r)
    st = clsm_cross_entropy_partial(ctx, &b->x[r], t, &b->sh[r], &b->st[r], &o, 0, NULL, NULL);
  if (st != CLSM_SUCCESS) return st;
  if (clEnqueueReadBuffer(q, b->buf, CL_TRUE, 0, SHARDS * b->rec_bytes, b->host, 0, NULL, NULL) != CL_SUCCESS)
    return CLSM_ERR_OPENCL;
  for (int r = 1; r < SHARDS; ++r)
    clsm_shard_merge(CLSM_FLOAT32, CLSM_SHARD_STATS, b->P, (char *)b->host + r * b->rec_bytes, b->host);
  if (clEnqueueWriteBuffer(q, b->buf, CL_FALSE, 0, b->rec_bytes, b->host, 0, NULL, NULL) != CL_SUCCESS)
    return CLSM_ERR_OPENCL;
  for (int r = 0; r < SHARDS && st == CLSM_SUCCESS; ++r) {
    o.grad = &b->x[r];
    st = clsm_cross_entropy_finish(ctx, &b->x[r], t, &b->sh[r], &b->st[0], r ? NULL : loss, &o, 0,
                                   NULL, r == SHARDS - 1 ? ev : NULL);
  }
  return st;
}

static int bench_row(clsm_context *ctx, const shape_case *sc, bench_op op, clsm_dtype dt,
                     int quick, row_result *r) {
  int64_t n = 1;
  for (int i = 0; i < sc->rank; ++i) n *= sc->shape[i];
  const int attn = op >= B_ATTN_MASKED;
  const int ce = op >= B_CE && !attn;
  const int backward = !ce && !attn && op >= B_SOFTMAX_BWD;
  const int log = op == B_LOG_SOFTMAX || op == B_LOG_SOFTMAX_BWD;
  const size_t es = clsm_dtype_size(dt), bytes = (size_t)n * es;
  /* Bytes that must move: every input read once, the output written once
   * (cross-entropy: the logits once; fused: and the gradient once). A copy of
   * half that many bytes moves the same (read + write). */
  /* Attention rows: x and y, and the mask once. */
  const int64_t Lq = attn ? sc->shape[2] : 0, Lk = attn ? sc->shape[3] : 0, H = attn ? sc->shape[1] : 0;
  const size_t mask_bytes = op == B_ATTN_MASKED ? (size_t)(Lq * Lk) * 2 : 0;
  const size_t moved = (ce ? (op == B_CE ? 1 : 2) : backward ? 3 : 2) * bytes + mask_bytes;
  const size_t copy_bytes = moved / 2;
  /* Cross-entropy: the class axis is 1 (0 for 1-d); positions and targets. */
  const int cax = sc->rank == 1 ? 0 : 1;
  const int64_t ncls = sc->shape[cax], npos = n / (ncls ? ncls : 1);
  int64_t *tg = NULL;
  cl_mem tb = NULL, lb = NULL;
  bench_shards shd;
  memset(&shd, 0, sizeof shd);
  int rc = EXIT_DEVICE;
  cl_int err = CL_SUCCESS;
  cl_mem ab = NULL, bb = NULL, ob = NULL, cs = NULL, cd = NULL, mb = NULL, sb = NULL;
  uint16_t *mh = NULL;
  void *a = malloc(bytes), *b = malloc(bytes), *out = malloc(bytes);
  enum { MAX_REPS = 400 };
  double *top = malloc(sizeof(double) * MAX_REPS), *thost = malloc(sizeof(double) * MAX_REPS),
         *tcopy = malloc(sizeof(double) * MAX_REPS);
  if (!a || !b || !out || !top || !thost || !tcopy) {
    fprintf(stderr, "clsoftmax bench: out of host memory\n");
    goto done;
  }
  uint64_t rs = 0x9E3779B97F4A7C15ull;
  for (int64_t i = 0; i < n; ++i) store(dt, a, i, (float)(unit_rand(&rs) * 16.0 - 8.0));
  if (backward)
    for (int64_t i = 0; i < n; ++i) store(dt, b, i, (float)(unit_rand(&rs) * 2.0 - 1.0));
  if (ce) {
    tg = malloc(sizeof(int64_t) * (size_t)npos);
    if (!tg) goto done;
    for (int64_t p = 0; p < npos; ++p) tg[p] = (int64_t)(next_rand(&rs) % (uint64_t)ncls);
  }
  if (backward) { /* a = y, the forward output of those logits */
    int64_t outer = 1, inner = 1;
    int dim = sc->dim < 0 ? sc->dim + sc->rank : sc->dim;
    for (int d = 0; d < dim; ++d) outer *= sc->shape[d];
    for (int d = dim + 1; d < sc->rank; ++d) inner *= sc->shape[d];
    int64_t C = sc->shape[dim];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        double m = -INFINITY, s = 0;
        for (int64_t c = 0; c < C; ++c) m = fmax(m, load(dt, a, (o * C + c) * inner + i));
        for (int64_t c = 0; c < C; ++c) s += exp(load(dt, a, (o * C + c) * inner + i) - m);
        for (int64_t c = 0; c < C; ++c) {
          int64_t k = (o * C + c) * inner + i;
          double v = load(dt, a, k) - m;
          store(dt, a, k, (float)(log ? v - log1p(s - 1) : exp(v) / s));
        }
      }
  }
  cl_context cl = clsm_context_cl_context(ctx);
  cl_command_queue q = clsm_context_queue(ctx);
  ab = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, a, &err);
  if (ab)
    bb = clCreateBuffer(cl, CL_MEM_READ_WRITE | (backward ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                        backward ? b : NULL, &err);
  if (bb) ob = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (ob) cs = clCreateBuffer(cl, CL_MEM_READ_WRITE, copy_bytes, NULL, &err);
  if (cs) cd = clCreateBuffer(cl, CL_MEM_READ_WRITE, copy_bytes, NULL, &err);
  if (!cd) {
    fprintf(stderr, "clsoftmax bench: clCreateBuffer of %zu bytes failed with %s\n", bytes,
            clsm_cl_error_name(err));
    goto done;
  }
  clEnqueueFillBuffer(q, cs, &(cl_uint){0x3f800000u}, 4, 0, copy_bytes & ~(size_t)3, 0, NULL, NULL);
  int64_t tshape[CLSM_MAX_RANK];
  for (int d = 0, k = 0; d < sc->rank; ++d)
    if (d != cax) tshape[k++] = sc->shape[d];
  if (ce) {
    tb = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(int64_t) * (size_t)npos, tg, &err);
    if (tb) lb = clCreateBuffer(cl, CL_MEM_READ_WRITE, 8, NULL, &err);
    if (!lb) goto done;
  }
  clsm_attn_options ao = CLSM_ATTN_OPTIONS_INIT;
  float sinks[64];
  clsm_tensor mt, st;
  if (attn) {
    mh = malloc((size_t)(Lq * Lk) * 2);
    if (!mh || H > 64) goto done;
    for (int64_t k = 0; k < Lq * Lk; ++k)
      mh[k] = ref_f32_to_f16(unit_rand(&rs) < 0.1 ? -INFINITY : (float)(unit_rand(&rs) * 2.0 - 1.0));
    for (int64_t h = 0; h < H; ++h) sinks[h] = (float)(unit_rand(&rs) * 4.0 - 1.0);
    mb = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)(Lq * Lk) * 2, mh, &err);
    if (mb) sb = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)H * 4, sinks, &err);
    if (!sb) goto done;
    const int64_t mshape[4] = {1, 1, Lq, Lk}, hs[1] = {H};
    mt = clsm_tensor_contiguous(mb, 0, CLSM_FLOAT16, 4, mshape);
    st = clsm_tensor_contiguous(sb, 0, CLSM_FLOAT32, 1, hs);
    if (op == B_ATTN_MASKED) ao.mask = &mt;
    if (op == B_ATTN_CAUSAL) ao.causal = 1;
    if (op == B_ATTN_ALIBI) {
      ao.alibi_max_bias = 8.0;
      ao.sinks = &st;
    }
  }
  clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, sc->rank - 1, tshape);
  clsm_tensor lt = clsm_tensor_contiguous(lb, 0, dt, 0, NULL);
  clsm_ce_options ceo = CLSM_CE_OPTIONS_INIT, cef = CLSM_CE_OPTIONS_INIT;
  clsm_tensor at = clsm_tensor_contiguous(ab, 0, dt, sc->rank, sc->shape);
  cef.grad = &at; /* fused: the gradient over the logits, in place */
  if (op == B_CE_SHARDED) { /* 2-d float32 logits */
    shd.P = npos;
    shd.rec_bytes = (size_t)npos * CLSM_SHARD_STATS * sizeof(float);
    shd.host = malloc(SHARDS * shd.rec_bytes);
    shd.buf = clCreateBuffer(cl, CL_MEM_READ_WRITE, SHARDS * shd.rec_bytes, NULL, &err);
    if (!shd.host || !shd.buf) goto done;
    const int64_t sshape[2] = {npos, CLSM_SHARD_STATS};
    for (int k = 0; k < SHARDS; ++k) {
      const int64_t c0 = ncls * k / SHARDS, c1 = ncls * (k + 1) / SHARDS;
      shd.x[k] = at;
      shd.x[k].offset = (uint64_t)c0;
      shd.x[k].shape[1] = c1 - c0;
      shd.sh[k].first = c0;
      shd.sh[k].classes = ncls;
      shd.st[k] = clsm_tensor_contiguous(shd.buf, (uint64_t)k * npos * CLSM_SHARD_STATS, CLSM_FLOAT32, 2,
                                         sshape);
    }
  }
  clsm_tensor bt = clsm_tensor_contiguous(bb, 0, dt, sc->rank, sc->shape);
  clsm_tensor ot = clsm_tensor_contiguous(ob, 0, dt, sc->rank, sc->shape);
#define RUN_OP(ev)                                                                           \
  (attn ? clsm_softmax_ex(ctx, &at, &ot, -1, &ao, 0, NULL, ev)                                 \
   : op == B_SOFTMAX           ? clsm_softmax(ctx, &at, &ot, sc->dim, 0, 0, NULL, ev)            \
   : op == B_LOG_SOFTMAX     ? clsm_log_softmax(ctx, &at, &ot, sc->dim, 0, 0, NULL, ev)        \
   : op == B_SOFTMAX_BWD     ? clsm_softmax_backward(ctx, &at, &bt, &ot, sc->dim, 0, 0, NULL, ev) \
   : op == B_LOG_SOFTMAX_BWD ? clsm_log_softmax_backward(ctx, &at, &bt, &ot, sc->dim, 0, 0, NULL, ev) \
   : op == B_CE_SHARDED      ? run_shards(ctx, &shd, &tt, &lt, ev)                             \
                             : clsm_cross_entropy(ctx, &at, &tt, &lt, op == B_CE ? &ceo : &cef, 0, NULL, ev))

  /* Warm-up (builds the program), and a first estimate of the time. */
  double t0 = now_s(), ce_loss = NAN;
  for (int i = 0; i < 2; ++i) {
    double tf = now_s();
    clsm_status st = RUN_OP(NULL);
    if (i == 0) { /* the first call of this op, dtype and shape, to completion */
      clFinish(q);
      r->first_ms = 1e3 * (now_s() - tf);
    }
    if (st == CLSM_SUCCESS && ce && i == 0) { /* the loss of the untouched logits */
      uint16_t h[4];
      double dv;
      float fv;
      err = clEnqueueReadBuffer(q, lb, CL_TRUE, 0, es, dt == CLSM_FLOAT64 ? (void *)&dv : es == 2 ? (void *)h : (void *)&fv, 0, NULL, NULL);
      ce_loss = dt == CLSM_FLOAT64 ? dv : es == 2 ? load(dt, h, 0) : fv;
      st = clsm_finish(ctx);
    }
    if (st != CLSM_SUCCESS) {
      rc = tool_report(ctx, st, "bench");
      goto done;
    }
    clEnqueueCopyBuffer(q, cs, cd, 0, 0, copy_bytes, 0, NULL, NULL);
  }
  clFinish(q);
  double est = (now_s() - t0) / 4.0;
  double budget = quick ? 0.25 : 1.0;
  int reps = (int)(budget / (est > 1e-6 ? est : 1e-6));
  if (reps < 20) reps = 20; /* at least 10 of each timing */
  if (reps > MAX_REPS) reps = MAX_REPS;

  /* The op and a copy of the same bytes, interleaved. Even runs are timed on
   * the device, from a marker enqueued just ahead (multi-kernel ops whole);
   * odd runs by the host clock alone, enqueue to completion. */
  if (reps % 2) reps++;
  int nh = 0, nd = 0;
  for (int i = 0; i < reps; ++i) {
    cl_event e0 = NULL, e1 = NULL, e2 = NULL;
    if (i % 2 == 0) clEnqueueMarkerWithWaitList(q, 0, NULL, &e0); /* not waited for */
    double h0 = now_s();
    RUN_OP(&e1);
    clWaitForEvents(1, &e1);
    double hop = now_s() - h0;
    h0 = now_s();
    clEnqueueCopyBuffer(q, cs, cd, 0, 0, copy_bytes, 0, NULL, &e2);
    clWaitForEvents(1, &e2);
    double hc = now_s() - h0;
    double d2 = event_seconds(NULL, e2);
    tcopy[i] = d2 > 0 ? d2 : hc;
    if (e0) {
      double d1 = event_seconds(e0, e1);
      top[nd++] = d1 > 0 ? d1 : hop;
      clReleaseEvent(e0);
    } else {
      thost[nh++] = hop;
    }
    clReleaseEvent(e1);
    clReleaseEvent(e2);
  }
#undef RUN_OP
  double mop = median(top, nd), mcopy = median(tcopy, reps);
  r->median_ms = 1e3 * mop;
  r->host_ms = 1e3 * median(thost, nh);
  r->gbps = (double)moved / mop * 1e-9;
  r->copy_gbps = (double)moved / mcopy * 1e-9;
  r->gelems = (double)n / mop * 1e-9;
  if (ce) {
    /* Relative error of the mean loss against the double reference. */
    double total = 0.0;
    for (int64_t p = 0; p < npos; ++p) {
      int64_t o = p, i = 0, inner = 1;
      for (int d = cax + 1; d < sc->rank; ++d) inner *= sc->shape[d];
      o = p / inner;
      i = p % inner;
      double m = -INFINITY, s = 0.0;
      for (int64_t c = 0; c < ncls; ++c) m = fmax(m, load(dt, a, (o * ncls + c) * inner + i));
      for (int64_t c = 0; c < ncls; ++c) s += exp(load(dt, a, (o * ncls + c) * inner + i) - m);
      total += m + log1p(s - 1.0) - load(dt, a, (o * ncls + tg[p]) * inner + i);
    }
    total /= (double)npos;
    r->max_err = fabs(ce_loss - total) / fabs(total);
  } else {
    err = clEnqueueReadBuffer(q, ob, CL_TRUE, 0, bytes, out, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
      fprintf(stderr, "clsoftmax bench: clEnqueueReadBuffer failed with %s\n", clsm_cl_error_name(err));
      goto done;
    }
    r->max_err = attn ? attn_error(sc, op, dt, a, mh, sinks, out) : sample_error(sc, op, dt, a, b, out);
  }
  r->onednn_gbps = -1.0;
#ifdef CLSM_HAVE_ONEDNN
  cl_device_type type = 0;
  clGetDeviceInfo(clsm_context_device(ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
  /* oneDNN runs on the host CPU: compared for CPU devices, float32 forward. */
  if ((type & CL_DEVICE_TYPE_CPU) && dt == CLSM_FLOAT32 && !backward && !ce) {
    double td = onednn_time(sc, log, a, out, reps);
    if (td > 0) r->onednn_gbps = (double)moved / td * 1e-9;
  }
#endif
  rc = EXIT_OK;
done:
  if (ab) clReleaseMemObject(ab);
  if (bb) clReleaseMemObject(bb);
  if (ob) clReleaseMemObject(ob);
  if (cs) clReleaseMemObject(cs);
  if (cd) clReleaseMemObject(cd);
  if (tb) clReleaseMemObject(tb);
  if (lb) clReleaseMemObject(lb);
  if (mb) clReleaseMemObject(mb);
  if (sb) clReleaseMemObject(sb);
  if (shd.buf) clReleaseMemObject(shd.buf);
  free(shd.host);
  free(mh);
  free(tg);
  free(a), free(b), free(out), free(top), free(thost), free(tcopy);
  return rc;
}

/* The queue's launch floor: median host time from enqueueing an empty
 * one-work-group kernel to its completion, or -1. Tiny rows are read
 * against it. */
static double launch_floor(clsm_context *ctx) {
  static const char *src = "__kernel void clsm_bench_empty(__global float *x) {}";
  cl_context cl = clsm_context_cl_context(ctx);
  cl_device_id dev = clsm_context_device(ctx);
  cl_command_queue q = clsm_context_queue(ctx);
  cl_int err = CL_SUCCESS;
  double result = -1.0, t[201];
  cl_kernel k = NULL;
  cl_mem m = NULL;
  cl_program p = clCreateProgramWithSource(cl, 1, &src, NULL, &err);
  if (!p || clBuildProgram(p, 1, &dev, "", NULL, NULL) != CL_SUCCESS) goto done;
  k = clCreateKernel(p, "clsm_bench_empty", &err);
  m = clCreateBuffer(cl, CL_MEM_READ_WRITE, 64, NULL, &err);
  if (!k || !m || clSetKernelArg(k, 0, sizeof m, &m) != CL_SUCCESS) goto done;
  const int n = (int)(sizeof t / sizeof t[0]);
  for (int i = -20; i < n; ++i) { /* 20 warm-up launches */
    size_t g = 1;
    cl_event e = NULL;
    double t0 = now_s();
    if (clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &g, 0, NULL, &e) != CL_SUCCESS) goto done;
    clWaitForEvents(1, &e);
    if (i >= 0) t[i] = now_s() - t0;
    clReleaseEvent(e);
  }
  result = median(t, n);
done:
  if (m) clReleaseMemObject(m);
  if (k) clReleaseKernel(k);
  if (p) clReleaseProgram(p);
  return result;
}

static void shape_str(const shape_case *sc, char *buf, size_t n) {
  int k = 0;
  for (int i = 0; i < sc->rank; ++i)
    k += snprintf(buf + k, n - (size_t)k, "%s%lld", i ? "x" : "", (long long)sc->shape[i]);
}

/* Whether `sh` is one of the comma-separated shapes in `list`. */
static int in_list(const char *list, const char *sh) {
  size_t n = strlen(sh);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && !strncmp(p, sh, n)) return 1;
    p += len + (e ? 1 : 0);
  }
  return 0;
}

static void print_header(void) {
  printf("%-20s %-8s %-14s %4s %10s %9s %7s %7s %8s %5s %8s %7s %6s\n", "op", "dtype", "shape",
         "dim", "median_ms", "host_ms", "Gelem/s", "GB/s", "copyGB/s", "ratio", "max_err", "oneDNN",
         "vs_dnn");
}

static void print_row(const row_result *r) {
  char shape[64];
  shape_str(r->sc, shape, sizeof shape);
  char dn[16] = "-", vs[16] = "-";
  if (r->onednn_gbps > 0) {
    snprintf(dn, sizeof dn, "%.2f", r->onednn_gbps);
    snprintf(vs, sizeof vs, "%.2f", r->gbps / r->onednn_gbps);
  }
  printf("%-20s %-8s %-14s %4d %10.4f %9.4f %7.3f %7.2f %8.2f %5.2f %8.1e %7s %6s\n", r->op,
         clsm_dtype_name(r->dtype), shape, r->sc->dim, r->median_ms, r->host_ms, r->gelems, r->gbps,
         r->copy_gbps, r->gbps / r->copy_gbps, r->max_err, dn, vs);
  fflush(stdout);
}

static int write_json(tool_out *o, const char *device, const startup_times *su,
                      const row_result *rows, int n) {
  char err[512];
  FILE *f = tool_out_file(o, err, sizeof err);
  if (!f) {
    tool_out_abort(o);
    fprintf(stderr, "clsoftmax bench: %s\n", err);
    return EXIT_OUTPUT;
  }
  fprintf(f, "{\"device\": \"");
  for (const char *p = device; *p; ++p)
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if ((unsigned char)*p >= 0x20) fputc(*p, f);
  fprintf(f, "\", \"copy_gbps\": %.3f, \"startup\": {\"context_ms\": %.4g, \"first_call_ms\": %.4g, "
             "\"next_call_ms\": %.4g, \"prepare_ms\": %.4g, \"prepared_first_call_ms\": %.4g, "
             "\"launch_floor_us\": ",
          n ? rows[0].copy_gbps : 0.0, su->context_ms, su->first_call_ms, su->next_call_ms,
          su->prepare_ms, su->prepared_first_call_ms);
  if (su->launch_floor_us > 0) fprintf(f, "%.4g}, \"rows\": [", su->launch_floor_us);
  else fprintf(f, "null}, \"rows\": [");
  for (int i = 0; i < n; ++i) {
    const row_result *r = &rows[i];
    fprintf(f, "%s\n  {\"op\": \"%s\", \"dtype\": \"%s\", \"shape\": [", i ? "," : "", r->op,
            clsm_dtype_name(r->dtype));
    for (int d = 0; d < r->sc->rank; ++d) fprintf(f, "%s%lld", d ? ", " : "", (long long)r->sc->shape[d]);
    fprintf(f, "], \"dim\": %d, \"median_ms\": %.6g, \"host_ms\": %.6g, \"gbps\": %.4g, "
               "\"copy_gbps\": %.4g, \"ratio_copy\": %.4g, \"gelems\": %.4g, \"max_err\": %.3g, "
               "\"first_call_ms\": %.4g, \"onednn_gbps\": ",
            r->sc->dim, r->median_ms, r->host_ms, r->gbps, r->copy_gbps, r->gbps / r->copy_gbps,
            r->gelems, r->max_err, r->first_ms);
    if (r->onednn_gbps > 0) fprintf(f, "%.4g}", r->onednn_gbps);
    else fprintf(f, "null}");
  }
  fprintf(f, "\n]}\n");
  int rc = tool_out_commit_file(o, f, err, sizeof err);
  if (rc) fprintf(stderr, "clsoftmax bench: %s\n", err);
  return rc;
}

/* The chart of the float32 softmax and log-softmax rows. */
static int write_svg(tool_out *o, const char *device, const row_result *rows, int n) {
  svg_row s[sizeof cases / sizeof cases[0] * 2];
  int k = 0;
  for (int i = 0; i < n && k < (int)(sizeof s / sizeof s[0]); ++i) {
    const row_result *r = &rows[i];
    if (r->dtype != CLSM_FLOAT32 || (r->op != op_names[B_SOFTMAX] && r->op != op_names[B_LOG_SOFTMAX]))
      continue;
    char shape[64];
    shape_str(r->sc, shape, sizeof shape);
    snprintf(s[k].label, sizeof s[k].label, "%s %s dim %d", r->op, shape, r->sc->dim);
    s[k].gbps = r->gbps;
    s[k].onednn_gbps = r->onednn_gbps;
    s[k].copy_gbps = r->copy_gbps;
    k++;
  }
  return svg_write_bench(o, device, s, k);
}

static int bench_all(const char *device, int quick, tool_out *json_out, tool_out *svg_out);

/* Opens the bench's output files before anything runs: a name that cannot
 * be written fails at once, not after the bench. Standard output carries the
 * table, so "-" is refused. */
static int open_outputs(const char *json_path, const char *svg_path, tool_out *json, tool_out *svg) {
  const char *outs[2] = {json_path, svg_path};
  char err[512];
  int rc = 0;
  memset(json, 0, sizeof *json);
  memset(svg, 0, sizeof *svg);
  json->fd = svg->fd = -1;
  for (int i = 0; i < 2 && !rc; ++i)
    if (outs[i] && !strcmp(outs[i], "-")) {
      snprintf(err, sizeof err, "--%s -: standard output carries the table; name a file",
               i ? "svg" : "json");
      rc = EXIT_USAGE;
    }
  if (!rc) rc = tool_out_distinct(outs, 2, NULL, 0, err, sizeof err);
  if (!rc && json_path) rc = tool_out_open(json, json_path, err, sizeof err);
  if (!rc && svg_path) rc = tool_out_open(svg, svg_path, err, sizeof err);
  if (rc) {
    tool_out_abort(json);
    fprintf(stderr, "clsoftmax bench: %s\n", err);
  }
  return rc;
}

int tool_bench(const char *device, int quick, const char *json_path, const char *svg_path) {
  tool_out json_out, svg_out;
  int orc = open_outputs(json_path, svg_path, &json_out, &svg_out);
  if (orc) return orc;
  int rc = bench_all(device, quick, json_path ? &json_out : NULL, svg_path ? &svg_out : NULL);
  tool_out_abort(&json_out);
  tool_out_abort(&svg_out);
  return rc;
}

/* The bench itself; writes and commits the outputs that are not NULL. */
static int bench_all(const char *device, int quick, tool_out *json_out, tool_out *svg_out) {
  double t0 = now_s();
  clsm_context *ctx = tool_context(device);
  if (!ctx) return EXIT_DEVICE;
  double t_ctx = now_s() - t0;
  printf("device: %s (%s family)\n", clsm_context_device_name(ctx),
         clsm_context_family(ctx) == CLSM_FAMILY_CPU ? "cpu" : "gpu");
#ifdef CLSM_HAVE_ONEDNN
  printf("oneDNN: compared on the same shapes (host clock)\n");
#else
  printf("oneDNN: not found at build time\n");
#endif
  /* Cold start: the first call builds the program. */
  startup_times su = {0, 0, 0, -1, 0, 0};
  {
    int64_t shape[2] = {1, 16};
    float x[16] = {0}, y[16];
    double t1 = now_s();
    clsm_status st = clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, -1, 0, x, y);
    double t_first = now_s() - t1;
    t1 = now_s();
    if (st == CLSM_SUCCESS) st = clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, -1, 0, x, y);
    if (st != CLSM_SUCCESS) {
      int rc = tool_report(ctx, st, "bench");
      clsm_context_destroy(ctx);
      return rc;
    }
    su.context_ms = 1e3 * t_ctx;
    su.first_call_ms = 1e3 * t_first;
    su.next_call_ms = 1e3 * (now_s() - t1);
    printf("start-up: context %.1f ms, first call (program build) %.1f ms, next call %.3f ms\n",
           su.context_ms, su.first_call_ms, su.next_call_ms);
    /* Builds off the hot path: clsm_context_prepare for float16, then the
     * first float16 call. */
    uint16_t hx[16] = {0}, hy[16];
    t1 = now_s();
    st = clsm_context_prepare(ctx, CLSM_FLOAT16, CLSM_FLOAT16);
    su.prepare_ms = 1e3 * (now_s() - t1);
    t1 = now_s();
    if (st == CLSM_SUCCESS) st = clsm_softmax_host(ctx, CLSM_FLOAT16, 2, shape, -1, 0, hx, hy);
    su.prepared_first_call_ms = 1e3 * (now_s() - t1);
    if (st != CLSM_SUCCESS) {
      int rc = tool_report(ctx, st, "bench");
      clsm_context_destroy(ctx);
      return rc;
    }
    printf("prepared: clsm_context_prepare (float16) %.1f ms, then the first float16 call %.3f ms\n",
           su.prepare_ms, su.prepared_first_call_ms);
    const double fl = launch_floor(ctx);
    su.launch_floor_us = fl > 0 ? 1e6 * fl : -1.0;
    if (su.launch_floor_us > 0)
      printf("launch floor: an empty kernel takes %.1f us from enqueue to completion\n",
             su.launch_floor_us);
  }
  print_header();
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  const clsm_dtype dts[3] = {CLSM_FLOAT32, CLSM_FLOAT16, CLSM_BFLOAT16};
  row_result *rows = calloc((size_t)ncases * B_OPS * 3, sizeof *rows);
  int n = 0, rc = rows ? EXIT_OK : EXIT_DEVICE;
  /* CLSM_BENCH_ONLY=SHAPE[,SHAPE...] (e.g. 8192x4096,64x512x512) runs only
   * those shapes. */
  const char *only = getenv("CLSM_BENCH_ONLY");
  for (int c = 0; c < ncases && rows; ++c) {
    if (quick && !cases[c].quick) continue;
    char sh[64];
    shape_str(&cases[c], sh, sizeof sh);
    if (only && *only && !in_list(only, sh)) continue;
    for (int di = 0; di < 3; ++di) {
      for (int op = 0; op < B_OPS; ++op) {
        /* --quick: 16-bit rows for the forward ops on the first shape only. */
        if (quick && di > 0 && (op > B_LOG_SOFTMAX || c > 0)) continue;
        /* Cross-entropy's class axis is 1: rows of 2-d shapes, dim 1 of 3-d. */
        if (op >= B_CE && op < B_ATTN_MASKED && !(cases[c].rank == 2 || cases[c].dim == 1)) continue;
        /* The sharded row: the large-vocabulary shape, float32. */
        if (op == B_CE_SHARDED && !(cases[c].rank == 2 && cases[c].shape[1] == 32000 && di == 0)) continue;
        /* Attention rows on the attention shape only, float32 and float16;
         * that shape's plain rows: softmax only. */
        const int ashape = cases[c].rank == 4;
        if (op >= B_ATTN_MASKED && (!ashape || di == 2)) continue;
        if (ashape && op != B_SOFTMAX && op < B_ATTN_MASKED) continue;
        row_result *r = &rows[n];
        r->op = op_names[op];
        r->dtype = dts[di];
        r->sc = &cases[c];
        if ((rc = bench_row(ctx, &cases[c], (bench_op)op, dts[di], quick, r)) != EXIT_OK) goto out;
        print_row(r);
        n++;
      }
    }
  }
  if (json_out) rc = write_json(json_out, clsm_context_device_name(ctx), &su, rows, n);
  if (svg_out) {
    int src = write_svg(svg_out, clsm_context_device_name(ctx), rows, n);
    if (rc == EXIT_OK) rc = src;
  }
out:
  free(rows);
  clsm_context_destroy(ctx);
  return rc;
}
