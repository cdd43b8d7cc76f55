/* clsoftmax bench: median time of each operation on a set of shapes, its
 * effective bandwidth (bytes that must move: inputs read once, outputs written
 * once), the same device's copy bandwidth for the same bytes measured in the
 * same run (interleaved with the op), the ratio, the max error against the
 * double reference, and oneDNN's softmax on the same shapes when it was found
 * at build time. One line is printed per row as it completes. */
#include "reference.h"
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
  int64_t shape[3];
  int dim;
  int quick; /* part of --quick */
} shape_case;

static const shape_case cases[] = {
    {2, {8192, 4096}, -1, 1},  {2, {4096, 32000}, -1, 0}, {2, {65536, 128}, -1, 1},
    {2, {1024, 262144}, -1, 0}, {2, {128, 1000}, -1, 0},  {2, {64, 80}, -1, 1},
    {2, {1, 1000}, -1, 0},     {2, {1, 1048576}, -1, 1}, {3, {64, 512, 512}, 0, 0},
    {3, {64, 512, 512}, 1, 1}, {3, {64, 512, 512}, 2, 0},
};

typedef struct row_result {
  const char *op;
  const shape_case *sc;
  double median_ms, host_ms, gbps, copy_gbps, max_err, onednn_gbps;
} row_result;

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

/* Seconds an event took on the device (profiling), or -1. */
static double event_seconds(cl_event ev) {
  cl_ulong t0 = 0, t1 = 0;
  if (clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) != CL_SUCCESS ||
      clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) != CL_SUCCESS)
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
                                   sc->rank == 2 ? dnnl_ab : dnnl_abc) != dnnl_success ||
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

/* Max error of y against the reference on a sample of outer slices. */
static double sample_error(const shape_case *sc, int log, const float *x, const float *y) {
  int dim = sc->dim < 0 ? sc->dim + sc->rank : sc->dim;
  int64_t outer = 1, C = sc->shape[dim], inner = 1;
  for (int d = 0; d < dim; ++d) outer *= sc->shape[d];
  for (int d = dim + 1; d < sc->rank; ++d) inner *= sc->shape[d];
  int64_t slice = C * inner;
  double *ref = malloc(sizeof(double) * (size_t)slice);
  if (!ref) return NAN;
  double worst = 0.0;
  int samples = outer < 16 ? (int)outer : 16;
  for (int k = 0; k < samples; ++k) {
    int64_t o = samples > 1 ? k * (outer - 1) / (samples - 1) : 0;
    int64_t shape[2] = {C, inner};
    ref_softmax(x + o * slice, ref, 2, shape, 0, log, 0);
    for (int64_t i = 0; i < slice; ++i) worst = fmax(worst, ref_error(y[o * slice + i], ref[i], log));
  }
  free(ref);
  return worst;
}

static int bench_row(clsm_context *ctx, const shape_case *sc, int log, int quick, row_result *r) {
  int64_t n = 1;
  for (int i = 0; i < sc->rank; ++i) n *= sc->shape[i];
  size_t bytes = (size_t)n * sizeof(float);
  int rc = EXIT_DEVICE;
  cl_int err = CL_SUCCESS;
  cl_mem xb = NULL, yb = NULL, cb = NULL;
  float *x = malloc(bytes), *y = malloc(bytes);
  double *top = NULL, *thost = NULL, *tcopy = NULL;
  enum { MAX_REPS = 400 };
  top = malloc(sizeof(double) * MAX_REPS);
  thost = malloc(sizeof(double) * MAX_REPS);
  tcopy = malloc(sizeof(double) * MAX_REPS);
  if (!x || !y || !top || !thost || !tcopy) {
    fprintf(stderr, "clsoftmax bench: out of host memory\n");
    goto done;
  }
  srand(1234u);
  for (int64_t i = 0; i < n; ++i) x[i] = (float)(rand() / (double)RAND_MAX * 16.0 - 8.0);
  cl_context cl = clsm_context_cl_context(ctx);
  cl_command_queue q = clsm_context_queue(ctx);
  xb = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, x, &err);
  if (xb) yb = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (yb) cb = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (!cb) {
    fprintf(stderr, "clsoftmax bench: clCreateBuffer of %zu bytes failed with %s\n", bytes,
            clsm_cl_error_name(err));
    goto done;
  }
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, sc->rank, sc->shape);
  clsm_tensor yt = clsm_tensor_contiguous(yb, 0, CLSM_FLOAT32, sc->rank, sc->shape);
  clsm_status (*op)(clsm_context *, const clsm_tensor *, const clsm_tensor *, int, unsigned,
                    cl_uint, const cl_event *, cl_event *) = log ? clsm_log_softmax : clsm_softmax;

  /* Warm-up (builds the program), and a first estimate of the time. */
  double t0 = now_s();
  for (int i = 0; i < 2; ++i) {
    clsm_status st = op(ctx, &xt, &yt, sc->dim, 0, 0, NULL, NULL);
    if (st != CLSM_SUCCESS) {
      rc = tool_report(ctx, st, "bench");
      goto done;
    }
    clEnqueueCopyBuffer(q, xb, cb, 0, 0, bytes, 0, NULL, NULL);
  }
  clFinish(q);
  double est = (now_s() - t0) / 4.0;
  double budget = quick ? 0.25 : 1.0;
  int reps = (int)(budget / (est > 1e-6 ? est : 1e-6));
  if (reps < 10) reps = 10;
  if (reps > MAX_REPS) reps = MAX_REPS;

  for (int i = 0; i < reps; ++i) {
    cl_event e1 = NULL, e2 = NULL;
    double h0 = now_s();
    op(ctx, &xt, &yt, sc->dim, 0, 0, NULL, &e1);
    clWaitForEvents(1, &e1);
    thost[i] = now_s() - h0;
    h0 = now_s();
    clEnqueueCopyBuffer(q, xb, cb, 0, 0, bytes, 0, NULL, &e2);
    clWaitForEvents(1, &e2);
    double hc = now_s() - h0;
    double d1 = event_seconds(e1), d2 = event_seconds(e2);
    top[i] = d1 > 0 ? d1 : thost[i];
    tcopy[i] = d2 > 0 ? d2 : hc;
    clReleaseEvent(e1);
    clReleaseEvent(e2);
  }
  double mop = median(top, reps), mcopy = median(tcopy, reps);
  r->median_ms = 1e3 * mop;
  r->host_ms = 1e3 * median(thost, reps);
  r->gbps = 2.0 * (double)bytes / mop * 1e-9;
  r->copy_gbps = 2.0 * (double)bytes / mcopy * 1e-9;
  err = clEnqueueReadBuffer(q, yb, CL_TRUE, 0, bytes, y, 0, NULL, NULL);
  if (err != CL_SUCCESS) {
    fprintf(stderr, "clsoftmax bench: clEnqueueReadBuffer failed with %s\n", clsm_cl_error_name(err));
    goto done;
  }
  r->max_err = sample_error(sc, log, x, y);
  r->onednn_gbps = -1.0;
#ifdef CLSM_HAVE_ONEDNN
  cl_device_type type = 0;
  clGetDeviceInfo(clsm_context_device(ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL);
  if (type & CL_DEVICE_TYPE_CPU) { /* oneDNN runs on the host CPU: compare CPU devices only */
    double td = onednn_time(sc, log, x, y, reps);
    if (td > 0) r->onednn_gbps = 2.0 * (double)bytes / td * 1e-9;
  }
#endif
  rc = EXIT_OK;
done:
  if (xb) clReleaseMemObject(xb);
  if (yb) clReleaseMemObject(yb);
  if (cb) clReleaseMemObject(cb);
  free(x);
  free(y);
  free(top);
  free(thost);
  free(tcopy);
  return rc;
}

static void shape_str(const shape_case *sc, char *buf, size_t n) {
  int k = 0;
  for (int i = 0; i < sc->rank; ++i)
    k += snprintf(buf + k, n - (size_t)k, "%s%lld", i ? "x" : "", (long long)sc->shape[i]);
}

static void print_header(void) {
  printf("%-12s %-8s %-14s %4s %10s %10s %8s %9s %6s %9s %8s %9s\n", "op", "dtype", "shape", "dim",
         "median_ms", "host_ms", "GB/s", "copyGB/s", "ratio", "max_err", "oneDNN", "vs_oneDNN");
}

static void print_row(const row_result *r) {
  char shape[64];
  shape_str(r->sc, shape, sizeof shape);
  char dn[16] = "-", vs[16] = "-";
  if (r->onednn_gbps > 0) {
    snprintf(dn, sizeof dn, "%.2f", r->onednn_gbps);
    snprintf(vs, sizeof vs, "%.2f", r->gbps / r->onednn_gbps);
  }
  printf("%-12s %-8s %-14s %4d %10.4f %10.4f %8.2f %9.2f %6.2f %9.2e %8s %9s\n", r->op, "float32",
         shape, r->sc->dim, r->median_ms, r->host_ms, r->gbps, r->copy_gbps,
         r->gbps / r->copy_gbps, r->max_err, dn, vs);
  fflush(stdout);
}

static int write_json(const char *path, const char *device, const row_result *rows, int n) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    fprintf(stderr, "clsoftmax bench: cannot write %s\n", tmp);
    return EXIT_USAGE;
  }
  fprintf(f, "{\"device\": \"");
  for (const char *p = device; *p; ++p)
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if ((unsigned char)*p >= 0x20) fputc(*p, f);
  fprintf(f, "\", \"copy_gbps\": %.3f, \"rows\": [", n ? rows[0].copy_gbps : 0.0);
  for (int i = 0; i < n; ++i) {
    const row_result *r = &rows[i];
    fprintf(f, "%s\n  {\"op\": \"%s\", \"dtype\": \"float32\", \"shape\": [", i ? "," : "", r->op);
    for (int d = 0; d < r->sc->rank; ++d) fprintf(f, "%s%lld", d ? ", " : "", (long long)r->sc->shape[d]);
    fprintf(f, "], \"dim\": %d, \"median_ms\": %.6g, \"host_ms\": %.6g, \"gbps\": %.4g, "
               "\"copy_gbps\": %.4g, \"ratio_copy\": %.4g, \"max_err\": %.3g, \"onednn_gbps\": ",
            r->sc->dim, r->median_ms, r->host_ms, r->gbps, r->copy_gbps, r->gbps / r->copy_gbps,
            r->max_err);
    if (r->onednn_gbps > 0) fprintf(f, "%.4g}", r->onednn_gbps);
    else fprintf(f, "null}");
  }
  fprintf(f, "\n]}\n");
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    remove(tmp);
    fprintf(stderr, "clsoftmax bench: cannot write %s\n", path);
    return EXIT_USAGE;
  }
  return EXIT_OK;
}

int tool_bench(const char *device, int quick, const char *json_path) {
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
    printf("start-up: context %.1f ms, first call (program build) %.1f ms, next call %.3f ms\n",
           1e3 * t_ctx, 1e3 * t_first, 1e3 * (now_s() - t1));
  }
  print_header();
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  row_result *rows = calloc((size_t)ncases * 2, sizeof *rows);
  int n = 0, rc = EXIT_OK;
  /* CLSM_BENCH_ONLY=SHAPE (e.g. 64x512x512) runs only that shape. */
  const char *only = getenv("CLSM_BENCH_ONLY");
  for (int c = 0; c < ncases && rows; ++c) {
    if (quick && !cases[c].quick) continue;
    char sh[64];
    shape_str(&cases[c], sh, sizeof sh);
    if (only && *only && strcmp(only, sh)) continue;
    for (int log = 0; log < 2; ++log) {
      row_result *r = &rows[n];
      r->op = log ? "log-softmax" : "softmax";
      r->sc = &cases[c];
      if ((rc = bench_row(ctx, &cases[c], log, quick, r)) != EXIT_OK) goto out;
      print_row(r);
      n++;
    }
  }
  if (json_path) rc = write_json(json_path, clsm_context_device_name(ctx), rows, n);
out:
  free(rows);
  clsm_context_destroy(ctx);
  return rc;
}
