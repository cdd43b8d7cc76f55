/* Suite "tool": runs the clsoftmax executable on .npy files the test makes
 * (good and malformed) and checks exit statuses, messages and outputs. */
#include "npy.h"
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char workdir[256];
static char errtext[8192];

/* Runs the tool with argv (NULL-terminated); stderr goes to errtext, stdout
 * to the file outpath (NULL: /dev/null). */
static int run_tool_to(const char *const *args, const char *outpath) {
  char errpath[512];
  snprintf(errpath, sizeof errpath, "%s/stderr.txt", workdir);
  pid_t pid = fork();
  ck_assert(pid >= 0);
  if (pid == 0) {
    int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int out = outpath ? open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644) : open("/dev/null", O_WRONLY);
    if (fd < 0 || out < 0) _exit(120);
    dup2(fd, 2);
    dup2(out, 1);
    const char *argv[32];
    int n = 0;
    argv[n++] = CLSM_TOOL_PATH;
    for (; args[n - 1] && n < 31; ++n) argv[n] = args[n - 1];
    argv[n] = NULL;
    execv(CLSM_TOOL_PATH, (char *const *)argv);
    _exit(121);
  }
  int status = 0;
  ck_assert(waitpid(pid, &status, 0) == pid);
  ck_assert_msg(WIFEXITED(status), "the tool did not exit normally (signal %d)",
                WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  FILE *f = fopen(errpath, "r");
  size_t n = f ? fread(errtext, 1, sizeof errtext - 1, f) : 0;
  errtext[n] = '\0';
  if (f) fclose(f);
  return WEXITSTATUS(status);
}

static int run_tool(const char *const *args) { return run_tool_to(args, NULL); }

static const char *path_in(const char *name) {
  static char buf[16][512];
  static int k = 0;
  k = (k + 1) % 16;
  snprintf(buf[k], sizeof buf[k], "%s/%s", workdir, name);
  return buf[k];
}

static void setup(void) {
  snprintf(workdir, sizeof workdir, "/tmp/clsm-tool-XXXXXX");
  ck_assert(mkdtemp(workdir) != NULL);
}

static void teardown(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", workdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", workdir);
}

static void write_f32(const char *name, int rank, const int64_t *shape, const float *data) {
  npy_array a;
  ck_assert(npy_alloc(&a, CLSM_FLOAT32, rank, shape) == 0);
  memcpy(a.data, data, a.nbytes);
  char err[256];
  ck_assert_msg(npy_write(path_in(name), &a, err, sizeof err) == 0, "%s", err);
  npy_free(&a);
}

static void write_bytes(const char *name, const void *bytes, size_t n) {
  FILE *f = fopen(path_in(name), "wb");
  ck_assert(f != NULL);
  ck_assert(fwrite(bytes, 1, n, f) == n);
  fclose(f);
}

static int file_exists(const char *name) {
  struct stat st;
  return stat(path_in(name), &st) == 0;
}

/* softmax and log-softmax of a 3-d file along each dim, against the reference. */
START_TEST(test_tool_softmax) {
  const int64_t shape[3] = {3, 5, 7};
  float x[105];
  fill_random(x, 105, 71);
  write_f32("x.npy", 3, shape, x);
  for (int log = 0; log < 2; ++log)
    for (int dim = -3; dim < 3; ++dim) {
      char dimarg[16];
      snprintf(dimarg, sizeof dimarg, "%d", dim);
      const char *args[] = {log ? "log-softmax" : "softmax", "--dim", dimarg, path_in("x.npy"),
                            path_in("y.npy"), NULL};
      ck_assert_msg(run_tool(args) == 0, "exit status non-zero: %s", errtext);
      npy_array y;
      char err[256];
      ck_assert_msg(npy_read(path_in("y.npy"), &y, err, sizeof err) == 0, "%s", err);
      ck_assert(y.dtype == CLSM_FLOAT32 && y.rank == 3 && y.shape[0] == 3 && y.shape[2] == 7);
      double ref[105];
      ref_softmax(x, ref, 3, shape, dim < 0 ? dim + 3 : dim, log, 0);
      for (int i = 0; i < 105; ++i)
        ck_assert_msg(ref_close(((float *)y.data)[i], ref[i], log, 4e-6), "dim %d elem %d", dim, i);
      npy_free(&y);
    }
  /* --dim=V spelling and options after the files. */
  const char *args[] = {"softmax", path_in("x.npy"), path_in("y2.npy"), "--dim=0", NULL};
  ck_assert_int_eq(run_tool(args), 0);
  ck_assert(file_exists("y2.npy"));
}
END_TEST

static void write_i64(const char *name, int rank, const int64_t *shape, const int64_t *data);

/* --verbose: the device, each call's plan (kernel and geometry) and time on
 * stderr; the output is the same. */
START_TEST(test_tool_verbose) {
  const int64_t shape[2] = {4, 80};
  float x[320];
  fill_random(x, 320, 72);
  write_f32("x.npy", 2, shape, x);
  const char *args[] = {"log-softmax", "--verbose", path_in("x.npy"), path_in("y.npy"), NULL};
  ck_assert_msg(run_tool(args) == 0, "%s", errtext);
  ck_assert_msg(strstr(errtext, "clsoftmax: device: ") != NULL, "%s", errtext);
  ck_assert_msg(strstr(errtext, "clsoftmax: plan: log_softmax float32: clsm_softmax_") != NULL,
                "%s", errtext);
  ck_assert_msg(strstr(errtext, " global ") != NULL && strstr(errtext, " local ") != NULL, "%s",
                errtext);
  ck_assert_msg(strstr(errtext, "clsoftmax: time: log-softmax ") != NULL, "%s", errtext);
  ck_assert(file_exists("y.npy"));
  /* Cross-entropy: its whole pipeline on one line. */
  const int64_t tshape[1] = {4};
  const int64_t t[4] = {0, 5, 79, 3};
  write_i64("t.npy", 1, tshape, t);
  const char *ce[] = {"cross-entropy", "--verbose", path_in("x.npy"), path_in("t.npy"),
                      path_in("l.npy"), NULL};
  ck_assert_msg(run_tool(ce) == 0, "%s", errtext);
  ck_assert_msg(strstr(errtext, "cross_entropy float32: clsm_ce_prep") != NULL, "%s", errtext);
  ck_assert_msg(strstr(errtext, "clsm_ce_finish") != NULL, "%s", errtext);
  /* Without --verbose: nothing on stderr. */
  const char *quiet[] = {"softmax", path_in("x.npy"), path_in("y.npy"), NULL};
  ck_assert_int_eq(run_tool(quiet), 0);
  ck_assert_str_eq(errtext, "");
}
END_TEST

/* float64 and float16 files end to end, and both backward commands: outputs
 * keep the input dtype and match the reference. */
START_TEST(test_tool_dtypes_and_backward) {
  const int64_t shape[2] = {4, 9};
  float xf[36], gf[36];
  fill_random(xf, 36, 81);
  fill_random(gf, 36, 82);
  char err[256];
  for (int k = 0; k < 2; ++k) {
    clsm_dtype dt = k ? CLSM_FLOAT16 : CLSM_FLOAT64;
    npy_array a, g;
    ck_assert(npy_alloc(&a, dt, 2, shape) == 0 && npy_alloc(&g, dt, 2, shape) == 0);
    double x[36], gd[36];
    for (int i = 0; i < 36; ++i) {
      if (dt == CLSM_FLOAT64) {
        x[i] = ((double *)a.data)[i] = xf[i];
        gd[i] = ((double *)g.data)[i] = gf[i];
      } else {
        ((uint16_t *)a.data)[i] = ref_f32_to_f16(xf[i]);
        ((uint16_t *)g.data)[i] = ref_f32_to_f16(gf[i]);
        x[i] = ref_f16_to_f32(((uint16_t *)a.data)[i]);
        gd[i] = ref_f16_to_f32(((uint16_t *)g.data)[i]);
      }
    }
    ck_assert(npy_write(path_in("x.npy"), &a, err, sizeof err) == 0);
    ck_assert(npy_write(path_in("g.npy"), &g, err, sizeof err) == 0);
    double tol = dt == CLSM_FLOAT64 ? 1e-12 : 1e-3;
    for (int log = 0; log < 2; ++log) {
      const char *fwd[] = {log ? "log-softmax" : "softmax", path_in("x.npy"), path_in("y.npy"), NULL};
      ck_assert_msg(run_tool(fwd) == 0, "%s", errtext);
      npy_array y, dx;
      ck_assert(npy_read(path_in("y.npy"), &y, err, sizeof err) == 0);
      ck_assert_int_eq(y.dtype, dt);
      double yd[36], ref[36], sc[36];
      for (int i = 0; i < 36; ++i)
        yd[i] = dt == CLSM_FLOAT64 ? ((double *)y.data)[i] : ref_f16_to_f32(((uint16_t *)y.data)[i]);
      for (int r = 0; r < 4; ++r) { /* forward reference from the stored inputs */
        double m = -INFINITY, s = 0;
        for (int c = 0; c < 9; ++c) m = fmax(m, x[r * 9 + c]);
        for (int c = 0; c < 9; ++c) s += exp(x[r * 9 + c] - m);
        for (int c = 0; c < 9; ++c) {
          double want = log ? x[r * 9 + c] - m - log1p(s - 1) : exp(x[r * 9 + c] - m) / s;
          double got = yd[r * 9 + c];
          ck_assert_msg(fabs(got - want) <= tol * (log ? fmax(1, fabs(want)) : fabs(want)) + 6e-8,
                        "%s %s: %g vs %g", clsm_dtype_name(dt), fwd[0], got, want);
        }
      }
      const char *bwd[] = {log ? "log-softmax-backward" : "softmax-backward", "--dim", "-1",
                           path_in("y.npy"), path_in("g.npy"), path_in("dx.npy"), NULL};
      ck_assert_msg(run_tool(bwd) == 0, "%s", errtext);
      ck_assert(npy_read(path_in("dx.npy"), &dx, err, sizeof err) == 0);
      ck_assert_int_eq(dx.dtype, dt);
      ref_softmax_backward(yd, gd, ref, sc, 2, shape, 1, log);
      for (int i = 0; i < 36; ++i) {
        double got = dt == CLSM_FLOAT64 ? ((double *)dx.data)[i] : ref_f16_to_f32(((uint16_t *)dx.data)[i]);
        double eps = dt == CLSM_FLOAT64 ? 2.3e-16 : 1.2e-7;
        ck_assert_msg(fabs(got - ref[i]) <= tol * fabs(ref[i]) + 8 * eps * sc[i] + 6e-8,
                      "%s backward %d: %g vs %g", clsm_dtype_name(dt), i, got, ref[i]);
      }
      npy_free(&y);
      npy_free(&dx);
    }
    npy_free(&a);
    npy_free(&g);
  }
  /* Backward inputs that do not fit together: exit 3. */
  const int64_t other[2] = {4, 8};
  float z[32] = {0};
  write_f32("y2.npy", 2, other, z);
  const char *bad[] = {"softmax-backward", path_in("y.npy"), path_in("y2.npy"), path_in("o.npy"), NULL};
  ck_assert_int_eq(run_tool(bad), 3);
  ck_assert(!file_exists("o.npy"));
}
END_TEST

static void write_i64(const char *name, int rank, const int64_t *shape, const int64_t *data) {
  npy_array a;
  ck_assert(npy_alloc(&a, CLSM_INT64, rank, shape) == 0);
  memcpy(a.data, data, a.nbytes);
  char err[256];
  ck_assert_msg(npy_write(path_in(name), &a, err, sizeof err) == 0, "%s", err);
  npy_free(&a);
}

/* cross-entropy on files: every reduction, weights and smoothing, the
 * gradient times dloss, and the exit statuses of bad values and options. */
START_TEST(test_tool_cross_entropy) {
  enum { N = 6, C = 9 };
  const int64_t shape[2] = {N, C}, tshape[1] = {N}, wshape[1] = {C};
  float x[N * C], w[C], dl[N];
  double xd[N * C], wd[C], dld[N];
  int64_t t[N] = {0, 8, 3, -100, 4, 4};
  fill_random(x, N * C, 91);
  for (int i = 0; i < N * C; ++i) xd[i] = x[i];
  for (int c = 0; c < C; ++c) wd[c] = w[c] = 0.5f + 0.125f * (float)c;
  for (int n = 0; n < N; ++n) dld[n] = dl[n] = 1.0f + (float)n;
  write_f32("x.npy", 2, shape, x);
  write_i64("t.npy", 1, tshape, t);
  write_f32("w.npy", 1, wshape, w);
  write_f32("dl.npy", 1, tshape, dl);
  const char *reds[3] = {"mean", "sum", "none"};
  for (int r = 0; r < 3; ++r) {
    const char *args[] = {"cross-entropy", "--reduction", reds[r], "--weight", path_in("w.npy"),
                          "--label-smoothing", "0.1", "--grad", path_in("g.npy"),
                          r == 2 ? "--dloss" : "--device", r == 2 ? path_in("dl.npy") : "cpu",
                          path_in("x.npy"), path_in("t.npy"), path_in("l.npy"), NULL};
    ck_assert_msg(run_tool(args) == 0, "%s: %s", reds[r], errtext);
    npy_array l, g;
    char err[256];
    ck_assert(npy_read(path_in("l.npy"), &l, err, sizeof err) == 0);
    ck_assert(npy_read(path_in("g.npy"), &g, err, sizeof err) == 0);
    ck_assert_int_eq(l.rank, r == 2 ? 1 : 0);
    ref_ce_opts ro = {r, -100, 0.1, 0.0, 0.0, wd};
    double lpos[N], total, grad[N * C], one = 1.0, mag[N];
    ref_cross_entropy(xd, N, C, 1, t, NULL, &ro, lpos, &total, NULL, NULL, mag, r == 2 ? dld : &one, grad);
    for (int n = 0; n < (r == 2 ? N : 1); ++n) {
      double want = r == 2 ? lpos[n] : total, got = ((float *)l.data)[n];
      ck_assert_msg(fabs(got - want) <= 1e-5 * fabs(want) + 1e-6, "%s loss %d: %g vs %g", reds[r], n, got, want);
    }
    for (int i = 0; i < N * C; ++i)
      ck_assert_msg(fabs(((float *)g.data)[i] - grad[i]) <= 1e-6 * fmax(1.0, fabs(grad[i])), "%s grad %d",
                    reds[r], i);
    npy_free(&l);
    npy_free(&g);
  }
  /* A class index out of range: exit 4 naming the position; no output. */
  t[4] = 9;
  write_i64("bad.npy", 1, tshape, t);
  const char *bad[] = {"cross-entropy", path_in("x.npy"), path_in("bad.npy"), path_in("out.npy"), NULL};
  ck_assert_int_eq(run_tool(bad), 4);
  ck_assert_msg(strstr(errtext, "target[4] = 9") != NULL, "%s", errtext);
  ck_assert(!file_exists("out.npy"));
  /* Option errors: exit 2; shapes that do not fit: exit 3. */
  const char *eps[] = {"cross-entropy", "--label-smoothing", "1.5", path_in("x.npy"), path_in("t.npy"),
                       path_in("out.npy"), NULL};
  ck_assert_int_eq(run_tool(eps), 2);
  const char *red[] = {"cross-entropy", "--reduction", "avg", path_in("x.npy"), path_in("t.npy"),
                       path_in("out.npy"), NULL};
  ck_assert_int_eq(run_tool(red), 2);
  const char *shp[] = {"cross-entropy", path_in("x.npy"), path_in("w.npy"), path_in("out.npy"), NULL};
  ck_assert_int_eq(run_tool(shp), 3);
  ck_assert_msg(strstr(errtext, "(9,)") && strstr(errtext, "(6, 9)") && strstr(errtext, "(6,)"),
                "both shapes and the one expected: %s", errtext);
  const char *prob_ignore[] = {"cross-entropy", "--ignore-index", "0", path_in("x.npy"), path_in("x.npy"),
                               path_in("out.npy"), NULL};
  ck_assert_int_eq(run_tool(prob_ignore), 2);
  ck_assert(!file_exists("out.npy"));
}
END_TEST

/* --shards K: the class axis (cross-entropy) or dim (softmax) split over K
 * contexts gives what the reference gives, every reduction with weights and
 * smoothing, probability targets, the gradient; K beyond the axis and
 * attention terms are usage errors. */
START_TEST(test_tool_shards) {
  enum { N = 6, C = 9 };
  const int64_t shape[2] = {N, C}, tshape[1] = {N}, wshape[1] = {C};
  float x[N * C], w[C], q[N * C];
  double xd[N * C], wd[C], qd[N * C];
  int64_t t[N] = {0, 8, 3, -100, 4, 5};
  fill_random(x, N * C, 93);
  for (int i = 0; i < N * C; ++i) xd[i] = x[i], qd[i] = q[i] = (float)(i % 5) * 0.05f;
  for (int c = 0; c < C; ++c) wd[c] = w[c] = 0.5f + 0.125f * (float)c;
  write_f32("x.npy", 2, shape, x);
  write_i64("t.npy", 1, tshape, t);
  write_f32("q.npy", 2, shape, q);
  write_f32("w.npy", 1, wshape, w);
  const char *reds[3] = {"mean", "sum", "none"};
  for (int k = 1; k <= 4; ++k)
    for (int r = 0; r < 3; ++r)
      for (int prob = 0; prob < 2; ++prob) {
        char ks[16];
        snprintf(ks, sizeof ks, "%d", k);
        const char *args[] = {"cross-entropy", "--shards", ks, "--reduction", reds[r], "--weight",
                              path_in("w.npy"), "--label-smoothing", "0.1", "--grad", path_in("g.npy"),
                              "--device", k == 3 ? "cpu,cpu" : "cpu", path_in("x.npy"),
                              path_in(prob ? "q.npy" : "t.npy"), path_in("l.npy"), NULL};
        ck_assert_msg(run_tool(args) == 0, "%d shards %s: %s", k, reds[r], errtext);
        npy_array l, g;
        char err[256];
        ck_assert(npy_read(path_in("l.npy"), &l, err, sizeof err) == 0);
        ck_assert(npy_read(path_in("g.npy"), &g, err, sizeof err) == 0);
        ref_ce_opts ro = {r, -100, 0.1, 0.0, 0.0, wd};
        double lpos[N], total, grad[N * C], ones[N] = {1, 1, 1, 1, 1, 1}, mag[N];
        ref_cross_entropy(xd, N, C, 1, prob ? NULL : t, prob ? qd : NULL, &ro, lpos, &total, NULL, NULL,
                          mag, ones, grad);
        for (int n = 0; n < (r == 2 ? N : 1); ++n) {
          double want = r == 2 ? lpos[n] : total, got = ((float *)l.data)[n];
          ck_assert_msg(fabs(got - want) <= 1e-5 * fabs(want) + 1e-6, "%d shards %s loss %d: %g vs %g",
                        k, reds[r], n, got, want);
        }
        for (int i = 0; i < N * C; ++i)
          ck_assert_msg(fabs(((float *)g.data)[i] - grad[i]) <= 1e-6 * fmax(1.0, fabs(grad[i])),
                        "%d shards %s prob %d grad %d: %g vs %g", k, reds[r], prob, i, ((float *)g.data)[i], grad[i]);
        npy_free(&l);
        npy_free(&g);
      }
  /* softmax and log-softmax along each dim, 3 shards; the backward. */
  for (int log = 0; log < 2; ++log)
    for (int dim = 0; dim < 2; ++dim) {
      char dimarg[16];
      snprintf(dimarg, sizeof dimarg, "%d", dim);
      const char *args[] = {log ? "log-softmax" : "softmax", "--shards", "3", "--dim", dimarg,
                            path_in("x.npy"), path_in("y.npy"), NULL};
      ck_assert_msg(run_tool(args) == 0, "%s", errtext);
      npy_array y;
      char err[256];
      ck_assert(npy_read(path_in("y.npy"), &y, err, sizeof err) == 0);
      double ref[N * C];
      ref_softmax(x, ref, 2, shape, dim, log, 0);
      for (int i = 0; i < N * C; ++i)
        ck_assert_msg(ref_close(((float *)y.data)[i], ref[i], log, 4e-6), "dim %d elem %d", dim, i);
      const char *bargs[] = {log ? "log-softmax-backward" : "softmax-backward", "--shards", "2", "--dim",
                             dimarg, path_in("y.npy"), path_in("q.npy"), path_in("dx.npy"), NULL};
      ck_assert_msg(run_tool(bargs) == 0, "%s", errtext);
      npy_array dx;
      ck_assert(npy_read(path_in("dx.npy"), &dx, err, sizeof err) == 0);
      double yd[N * C], rdx[N * C], sc[N * C];
      for (int i = 0; i < N * C; ++i) yd[i] = ((float *)y.data)[i];
      ref_softmax_backward(yd, qd, rdx, sc, 2, shape, dim, log);
      for (int i = 0; i < N * C; ++i)
        ck_assert_msg(fabs(((float *)dx.data)[i] - rdx[i]) <= 4e-7 * sc[i] + 1e-12, "backward dim %d elem %d",
                      dim, i);
      npy_free(&y);
      npy_free(&dx);
    }
  /* More shards than classes; attention terms; a bad device list. */
  const char *many[] = {"cross-entropy", "--shards", "10", path_in("x.npy"), path_in("t.npy"),
                        path_in("out.npy"), NULL};
  ck_assert_int_eq(run_tool(many), 2);
  ck_assert_msg(strstr(errtext, "9 classes") != NULL, "%s", errtext);
  const char *causal[] = {"softmax", "--shards", "2", "--causal", path_in("x.npy"), path_in("out.npy"), NULL};
  ck_assert_int_eq(run_tool(causal), 2);
  const char *zero[] = {"softmax", "--shards", "0", path_in("x.npy"), path_in("out.npy"), NULL};
  ck_assert_int_eq(run_tool(zero), 2);
  const char *dev[] = {"softmax", "--shards", "2", "--device", "cpu,,cpu", path_in("x.npy"),
                       path_in("out.npy"), NULL};
  ck_assert_int_eq(run_tool(dev), 1);
  ck_assert(!file_exists("out.npy"));
}
END_TEST

static size_t read_text(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  fclose(f);
  ck_assert_msg(n < cap - 1, "%s is larger than the test's buffer", path);
  return n;
}

/* program: the list of what is built, and one program printed as it is
 * built, which the default device then builds from the printed text. */
START_TEST(test_tool_program) {
  const char *list[] = {"program", "--family", "cpu", "--dtype", "float16", "--out", "float32", "--list", NULL};
  ck_assert_msg(run_tool_to(list, path_in("list.txt")) == 0, "%s", errtext);
  char text[4096] = "";
  read_text(path_in("list.txt"), text, sizeof text);
  ck_assert_msg(strstr(text, "0 row.float16-float32 -cl-std=CL1.2 -DCLSM_X_F16 -DCLSM_Y_F32") &&
                    strstr(text, "1 ce.float16-float32") && strstr(text, "2 attn.float16-float32") &&
                    strstr(text, "-DCLSM_CPU_BUILTINS"),
                "%s", text);
  const char *gpu[] = {"program", "--family", "gpu", "--list", NULL};
  ck_assert_int_eq(run_tool_to(gpu, path_in("gpu.txt")), 0);
  /* The GPU family's list ends with the register-held rows variants. */
  read_text(path_in("gpu.txt"), text, sizeof text);
  ck_assert_msg(strstr(text, "3 rows_reg-e8-v4-wg256.float32 ") &&
                    strstr(text, "10 rows_reg-e32-v1-wg1024.float32 ") &&
                    strstr(text, "-DCLSM_REG_E=32 -DCLSM_REG_V=1 -DCLSM_REG_WG=1024") &&
                    !strstr(text, "\n11 "),
                "%s", text);
  /* A described device's list: MI300-like takes no 1024-lane group; the
   * H100-like one caps those variants' registers; an unknown profile, or
   * one beside --family, is a usage error that names the profiles. */
  const char *mi[] = {"program", "--profile", "mi300", "--list", NULL};
  ck_assert_int_eq(run_tool_to(mi, path_in("mi.txt")), 0);
  read_text(path_in("mi.txt"), text, sizeof text);
  ck_assert_msg(strstr(text, "\n8 rows_reg-e32-v1-wg256.float32 ") && !strstr(text, "wg1024") &&
                    !strstr(text, "\n9 ") && !strstr(text, "maxrregcount"),
                "%s", text);
  const char *h100[] = {"program", "--profile", "h100", "--list", NULL};
  ck_assert_int_eq(run_tool_to(h100, path_in("h100.txt")), 0);
  read_text(path_in("h100.txt"), text, sizeof text);
  ck_assert_msg(strstr(text, "-DCLSM_REG_WG=1024 -cl-nv-maxrregcount=64") &&
                    !strstr(text, "-DCLSM_REG_WG=256 -cl-nv") && strstr(text, "\n10 "),
                "%s", text);
  const char *bogus[] = {"program", "--profile", "bogus", "--list", NULL};
  ck_assert_int_eq(run_tool_to(bogus, path_in("bogus.txt")), 2);
  ck_assert_msg(strstr(errtext, "mi300") && strstr(errtext, "'bogus'"), "%s", errtext);
  const char *profam[] = {"program", "--profile", "h100", "--family", "gpu", "--list", NULL};
  ck_assert_int_eq(run_tool_to(profam, path_in("profam.txt")), 2);
  const char *one[] = {"program", "--family", "cpu", "--index", "1", NULL};
  ck_assert_msg(run_tool_to(one, path_in("ce.cl")) == 0, "%s", errtext);
  FILE *f = fopen(path_in("ce.cl"), "rb");
  ck_assert(f != NULL);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *src = malloc((size_t)len + 1);
  ck_assert(src && fread(src, 1, (size_t)len, f) == (size_t)len);
  fclose(f);
  src[len] = '\0';
  const char *head = "// build options: ";
  ck_assert(!strncmp(src, head, strlen(head)));
  char *eol = strchr(src, '\n');
  ck_assert(eol != NULL);
  *eol = '\0';
  const char *opts = src + strlen(head);
  ck_assert_msg(strstr(eol + 1, "clsm_ce_shard_partial") != NULL, "the cross-entropy program's source");
  /* The printed text builds on the default device with the printed options. */
  clsm_context *ctx = test_context();
  cl_int err = CL_SUCCESS;
  const char *body = eol + 1;
  cl_program prog = clCreateProgramWithSource(clsm_context_cl_context(ctx), 1, &body, NULL, &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  cl_device_id dev = clsm_context_device(ctx);
  err = clBuildProgram(prog, 1, &dev, opts, NULL, NULL);
  ck_assert_msg(err == CL_SUCCESS, "clBuildProgram with '%s': %s", opts, clsm_cl_error_name(err));
  cl_kernel k = clCreateKernel(prog, "clsm_ce_shard_rows", &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  clReleaseKernel(k);
  clReleaseProgram(prog);
  clsm_context_destroy(ctx);
  free(src);
  /* Usage errors. */
  const char *none[] = {"program", NULL};
  ck_assert_int_eq(run_tool(none), 2);
  const char *both[] = {"program", "--list", "--index", "0", NULL};
  ck_assert_int_eq(run_tool(both), 2);
  const char *idx[] = {"program", "--family", "cpu", "--index", "3", NULL};
  ck_assert_int_eq(run_tool(idx), 2);
  ck_assert_msg(strstr(errtext, "programs 0 to 2") != NULL, "%s", errtext);
  const char *gidx[] = {"program", "--family", "gpu", "--index", "11", NULL};
  ck_assert_int_eq(run_tool(gidx), 2);
  ck_assert_msg(strstr(errtext, "programs 0 to 10") != NULL, "%s", errtext);
  const char *fam[] = {"program", "--family", "tpu", "--list", NULL};
  ck_assert_int_eq(run_tool(fam), 2);
  const char *pair[] = {"program", "--dtype", "float32", "--out", "float16", "--list", NULL};
  ck_assert_int_eq(run_tool(pair), 2);
  ck_assert_msg(strstr(errtext, "float32 in and float16 out") != NULL, "%s", errtext);
  const char *dt[] = {"program", "--dtype", "int8", "--list", NULL};
  ck_assert_int_eq(run_tool(dt), 2);
  ck_assert_msg(strstr(errtext, "'int8'") != NULL, "%s", errtext);
}
END_TEST

/* Usage errors: exit 2, a message, nothing written. */
START_TEST(test_tool_usage) {
  const int64_t shape[1] = {4};
  const float x[4] = {1, 2, 3, 4};
  write_f32("x.npy", 1, shape, x);
  char xp[512], yp[512], zp[512];
  snprintf(xp, sizeof xp, "%s", path_in("x.npy"));
  snprintf(yp, sizeof yp, "%s", path_in("y.npy"));
  snprintf(zp, sizeof zp, "%s", path_in("z.npy"));
  const char *cases[][7] = {
      {NULL},
      {"frobnicate", NULL},
      {"softmax", xp, NULL},
      {"softmax", xp, yp, zp, NULL},
      {"softmax", "--dim", "abc", xp, yp, NULL},
      {"softmax", "--dim", "1", xp, yp, NULL},
      {"softmax", "--dim", NULL},
      {"softmax", "--bogus", xp, yp, NULL},
      {"devices", "extra", NULL},
      {"bench", "--json", NULL},
      {"bench", "--svg", NULL},
      {"bench", "--svg=", NULL},
      {"demo", "file.npy", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    int rc = run_tool(cases[i]);
    ck_assert_msg(rc == 2, "case %zu: exit %d, stderr: %s", i, rc, errtext);
    ck_assert_msg(strlen(errtext) > 10, "case %zu: no message", i);
    ck_assert_msg(!file_exists("y.npy"), "case %zu wrote y.npy", i);
  }
  const char *help[] = {"--help", NULL};
  ck_assert_int_eq(run_tool(help), 0);
  const char *version[] = {"--version", NULL};
  ck_assert_int_eq(run_tool(version), 0);
}
END_TEST

/* Malformed or unfit inputs: exit 3, a message naming the problem, and an
 * existing output file left exactly as it was. */
START_TEST(test_tool_bad_files) {
  struct {
    const char *what, *expect;
    const char *header; /* NULL: raw bytes below */
    const char *raw;
    size_t rawlen;
  } cases[] = {
      {"empty file", "", NULL, "", 0},
      {"bad magic", "magic", NULL, "\x93NUMPX\x01\x00", 8},
      {"big-endian", "big-endian", "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", NULL, 0},
      {"unsupported dtype", "dtype", "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", NULL, 0},
      {"negative shape", "shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", NULL, 0},
      {"truncated data", "truncated", "{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }", NULL, 0},
      {"class indices given to softmax", "int64", "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", NULL, 0},
  };
  const char keep[] = "existing output";
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    unsigned char buf[512];
    size_t n;
    if (cases[i].header) {
      /* A version 1.0 preamble, header padded to 64 bytes, then 8 data bytes. */
      size_t hl = strlen(cases[i].header);
      size_t total = (10 + hl + 1 + 63) / 64 * 64;
      memcpy(buf, "\x93NUMPY\x01\x00", 8);
      buf[8] = (unsigned char)((total - 10) & 0xff);
      buf[9] = (unsigned char)((total - 10) >> 8);
      memcpy(buf + 10, cases[i].header, hl);
      memset(buf + 10 + hl, ' ', total - 10 - hl - 1);
      buf[total - 1] = '\n';
      memset(buf + total, 0, 8);
      n = total + 8;
    } else {
      memcpy(buf, cases[i].raw, cases[i].rawlen);
      n = cases[i].rawlen;
    }
    write_bytes("bad.npy", buf, n);
    write_bytes("out.npy", keep, sizeof keep);
    const char *args[] = {"softmax", path_in("bad.npy"), path_in("out.npy"), NULL};
    int rc = run_tool(args);
    ck_assert_msg(rc == 3, "%s: exit %d, stderr: %s", cases[i].what, rc, errtext);
    ck_assert_msg(strstr(errtext, "bad.npy") != NULL, "%s: message does not name the file: %s",
                  cases[i].what, errtext);
    ck_assert_msg(strstr(errtext, cases[i].expect) != NULL, "%s: message: %s", cases[i].what,
                  errtext);
    char back[64] = "";
    FILE *f = fopen(path_in("out.npy"), "rb");
    ck_assert(f != NULL);
    size_t got = fread(back, 1, sizeof back, f);
    fclose(f);
    ck_assert_msg(got == sizeof keep && !memcmp(back, keep, sizeof keep), "%s: output touched",
                  cases[i].what);
  }
  /* A missing input file. */
  const char *args[] = {"softmax", path_in("missing.npy"), path_in("y.npy"), NULL};
  ck_assert_int_eq(run_tool(args), 3);
  ck_assert(!file_exists("y.npy"));
}
END_TEST

/* A device spec that matches nothing: exit 1, the spec named, no output. */
START_TEST(test_tool_bad_device) {
  const int64_t shape[1] = {3};
  const float x[3] = {1, 2, 3};
  write_f32("x.npy", 1, shape, x);
  const char *args[] = {"softmax", "--device", "no-such-device-xyz", path_in("x.npy"),
                        path_in("y.npy"), NULL};
  ck_assert_int_eq(run_tool(args), 1);
  ck_assert(strstr(errtext, "no-such-device-xyz") != NULL);
  ck_assert(!file_exists("y.npy"));
  const char *devs[] = {"devices", NULL};
  ck_assert_int_eq(run_tool(devs), 0);
}
END_TEST

/* Without any OpenCL platform (an empty vendors folder for the ICD loader),
 * the tool says which package brings a CPU device and exits 1. */
START_TEST(test_tool_no_platform) {
  const int64_t shape[1] = {3};
  const float x[3] = {1, 2, 3};
  write_f32("x.npy", 1, shape, x);
  char dir[600];
  snprintf(dir, sizeof dir, "%s/vendors", workdir);
  ck_assert(mkdir(dir, 0700) == 0);
  if (!test_hide_platforms(dir)) return;
  const char *devs[] = {"devices", NULL};
  ck_assert_int_eq(run_tool(devs), 1);
  ck_assert_msg(strstr(errtext, "pocl-opencl-icd") != NULL, "%s", errtext);
  const char *sm[] = {"softmax", path_in("x.npy"), path_in("y.npy"), NULL};
  ck_assert_int_eq(run_tool(sm), 1);
  ck_assert_msg(strstr(errtext, "pocl-opencl-icd") != NULL, "%s", errtext);
  ck_assert(!file_exists("y.npy"));
  unsetenv("OCL_ICD_VENDORS");
}
END_TEST

/* bench --json writes DESIGN.md's keys (one small shape, quick). */
START_TEST(test_tool_bench_json) {
  setenv("CLSM_BENCH_ONLY", "64x80", 1);
  const char *args[] = {"bench", "--quick", "--json", path_in("b.json"), NULL};
  ck_assert_msg(run_tool(args) == 0, "%s", errtext);
  FILE *f = fopen(path_in("b.json"), "r");
  ck_assert(f != NULL);
  static char js[65536];
  size_t n = fread(js, 1, sizeof js - 1, f);
  js[n] = '\0';
  fclose(f);
  static const char *const keys[] = {"\"device\": \"", "\"copy_gbps\": ", "\"rows\": [",
                                     "\"op\": \"softmax\"", "\"op\": \"log-softmax\"",
                                     "\"op\": \"cross-entropy-fused\"", "\"dtype\": \"float32\"",
                                     "\"shape\": [64, 80]", "\"dim\": -1", "\"median_ms\": ",
                                     "\"gbps\": ", "\"ratio_copy\": ", "\"max_err\": ",
                                     "\"onednn_gbps\": ", "\"first_call_ms\": ",
                                     "\"startup\": {\"context_ms\": ", "\"launch_floor_us\": ",
                                     "\"prepare_ms\": ", "\"prepared_first_call_ms\": "};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; ++i)
    ck_assert_msg(strstr(js, keys[i]) != NULL, "bench JSON lacks %s:\n%s", keys[i], js);
  ck_assert(js[0] == '{' && strstr(js, "]}") != NULL);
  unsetenv("CLSM_BENCH_ONLY");
}
END_TEST

static int count_of(const char *text, const char *what) {
  int k = 0;
  for (const char *p = strstr(text, what); p; p = strstr(p + 1, what)) k++;
  return k;
}

/* bench --svg draws one <rect> per bar: for each float32 softmax and
 * log-softmax row of the --json output of the same run, ours and the copy,
 * and oneDNN's where it has a number. A path that cannot be written: exit 2,
 * no FILE.tmp left behind. */
START_TEST(test_tool_bench_svg) {
  setenv("CLSM_BENCH_ONLY", "64x80", 1);
  const char *args[] = {"bench", "--quick", "--json", path_in("b.json"), "--svg", path_in("b.svg"), NULL};
  ck_assert_msg(run_tool(args) == 0, "%s", errtext);
  static char js[65536], svg[262144];
  read_text(path_in("b.json"), js, sizeof js);
  size_t n = read_text(path_in("b.svg"), svg, sizeof svg);
  ck_assert_msg(!strncmp(svg, "<?xml", 5) || !strncmp(svg, "<svg", 4), "%.80s", svg);
  const char *end = strstr(svg, "</svg>");
  ck_assert_msg(end && strspn(end + 6, " \n") == n - (size_t)(end + 6 - svg), "no closing </svg>");
  ck_assert(!file_exists("b.svg.tmp"));
  ck_assert(strstr(svg, "<script") == NULL && strstr(svg, "@font-face") == NULL);

  /* Bars the JSON rows call for (one row a line). */
  int rows = 0, bars = 0;
  for (const char *line = js; line; line = strchr(line + 1, '\n')) {
    const char *eol = strchr(line + 1, '\n');
    size_t len = eol ? (size_t)(eol - line) : strlen(line);
    char row[1024];
    if (len >= sizeof row) continue;
    memcpy(row, line, len);
    row[len] = '\0';
    if (!strstr(row, "\"dtype\": \"float32\"") ||
        !(strstr(row, "\"op\": \"softmax\"") || strstr(row, "\"op\": \"log-softmax\"")))
      continue;
    rows++;
    bars += strstr(row, "\"onednn_gbps\": null") ? 2 : 3;
  }
  ck_assert_msg(rows == 2, "expected the two float32 forward rows of 64x80 in:\n%s", js);
  ck_assert_msg(count_of(svg, "<rect") == bars, "%d <rect> for %d bars:\n%s", count_of(svg, "<rect"),
                bars, svg);
  for (const char *p = strstr(svg, "<rect"); p; p = strstr(p + 1, "<rect")) {
    const char *w = strstr(p, "width=\"");
    ck_assert(w != NULL);
    ck_assert_msg(strtod(w + 7, NULL) > 0, "a bar of no width: %.80s", p);
  }
  ck_assert_msg(strstr(svg, ">softmax 64x80 dim -1<") && strstr(svg, ">log-softmax 64x80 dim -1<"),
                "row labels missing:\n%s", svg);
  ck_assert(strstr(svg, "GB/s") != NULL);
  /* The device's name in the title, when it has nothing to escape. */
  const char *dev = strstr(js, "\"device\": \"");
  ck_assert(dev != NULL);
  dev += 11;
  size_t dlen = strcspn(dev, "\"");
  char name[256];
  ck_assert(dlen < sizeof name);
  memcpy(name, dev, dlen);
  name[dlen] = '\0';
  if (!strpbrk(name, "&<>'\\")) ck_assert_msg(strstr(svg, name) != NULL, "device %s not in the title", name);

  /* A folder that does not exist (exit 5), a name that is a folder and one
   * file for both outputs (exit 2): refused before the bench runs (nothing
   * on stdout), nothing left behind. */
  char outpath[512];
  snprintf(outpath, sizeof outpath, "%s", path_in("stdout.txt"));
  const char *nodir[] = {"bench", "--quick", "--svg", path_in("missing/c.svg"), NULL};
  ck_assert_int_eq(run_tool_to(nodir, outpath), 5);
  ck_assert_msg(strstr(errtext, "missing/c.svg") && strstr(errtext, "does not exist"), "%s", errtext);
  ck_assert(!file_exists("missing"));
  ck_assert(mkdir(path_in("adir"), 0700) == 0);
  const char *isdir[] = {"bench", "--quick", "--svg", path_in("adir"), NULL};
  ck_assert_int_eq(run_tool_to(isdir, outpath), 2);
  ck_assert_msg(strstr(errtext, "is a folder") != NULL, "%s", errtext);
  const char *twice[] = {"bench", "--quick", "--json", path_in("b.json"), "--svg", path_in("b.json"), NULL};
  ck_assert_int_eq(run_tool_to(twice, outpath), 2);
  ck_assert_msg(strstr(errtext, "same file") != NULL, "%s", errtext);
  struct stat st;
  ck_assert(stat(outpath, &st) == 0 && st.st_size == 0);
  /* Through a symbolic link: the link stays, the file it names is written. */
  ck_assert(symlink("adir/real.json", path_in("link.json")) == 0);
  const char *linked[] = {"bench", "--quick", "--json", path_in("link.json"), NULL};
  ck_assert_msg(run_tool(linked) == 0, "%s", errtext);
  ck_assert(lstat(path_in("link.json"), &st) == 0 && S_ISLNK(st.st_mode));
  read_text(path_in("adir/real.json"), js, sizeof js);
  ck_assert(js[0] == '{' && strstr(js, "]}") != NULL);
  unsetenv("CLSM_BENCH_ONLY");
}
END_TEST

/* Reads a .npy file and checks it holds softmax of the 4-vector {1, 2, 3, 4}. */
static void check_softmax4(const char *path) {
  npy_array y;
  char err[256];
  ck_assert_msg(npy_read(path, &y, err, sizeof err) == 0, "%s", err);
  ck_assert(y.dtype == CLSM_FLOAT32 && y.rank == 1 && y.shape[0] == 4);
  const double z = exp(1.0) + exp(2.0) + exp(3.0) + exp(4.0);
  for (int i = 0; i < 4; ++i)
    ck_assert_msg(fabs(((float *)y.data)[i] - exp(i + 1.0) / z) < 1e-6, "element %d", i);
  npy_free(&y);
}

static void file_text(const char *name, char *buf, size_t cap) {
  FILE *f = fopen(path_in(name), "rb");
  ck_assert(f != NULL);
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  fclose(f);
}

/* Outputs go where they were sent: through symbolic links (kept), into a
 * FIFO and standard output (streamed), never over an input or the other
 * output, and a missing folder is exit 5 with the path named. */
START_TEST(test_tool_outputs) {
  const int64_t shape[1] = {4};
  const float x[4] = {1, 2, 3, 4};
  write_f32("x.npy", 1, shape, x);
  char xp[512];
  snprintf(xp, sizeof xp, "%s", path_in("x.npy"));
  struct stat st;

  /* A link to an existing file (relative, through a chain), and a link to a
   * name that does not exist yet: the links stay, their targets hold y. */
  ck_assert(mkdir(path_in("sub"), 0755) == 0);
  write_bytes("sub/old.npy", "old", 3);
  ck_assert(chmod(path_in("sub/old.npy"), 0640) == 0);
  ck_assert(symlink("sub/old.npy", path_in("l1.npy")) == 0);
  ck_assert(symlink("l1.npy", path_in("l2.npy")) == 0);
  ck_assert(symlink("new.npy", path_in("sub/dangling.npy")) == 0);
  const char *via_chain[] = {"softmax", xp, path_in("l2.npy"), NULL};
  ck_assert_msg(run_tool(via_chain) == 0, "%s", errtext);
  const char *via_dangling[] = {"softmax", xp, path_in("sub/dangling.npy"), NULL};
  ck_assert_msg(run_tool(via_dangling) == 0, "%s", errtext);
  ck_assert(lstat(path_in("l1.npy"), &st) == 0 && S_ISLNK(st.st_mode));
  ck_assert(lstat(path_in("l2.npy"), &st) == 0 && S_ISLNK(st.st_mode));
  ck_assert(lstat(path_in("sub/dangling.npy"), &st) == 0 && S_ISLNK(st.st_mode));
  ck_assert(stat(path_in("sub/old.npy"), &st) == 0 && (st.st_mode & 0777) == 0640);
  check_softmax4(path_in("sub/old.npy"));
  check_softmax4(path_in("sub/new.npy"));

  /* A FIFO: streamed into (the test holds it open for reading and writing,
   * so the tool's open does not wait), still a FIFO afterwards. */
  ck_assert(mkfifo(path_in("y.fifo"), 0600) == 0);
  int fd = open(path_in("y.fifo"), O_RDWR | O_NONBLOCK);
  ck_assert(fd >= 0);
  const char *to_fifo[] = {"softmax", xp, path_in("y.fifo"), NULL};
  ck_assert_msg(run_tool(to_fifo) == 0, "%s", errtext);
  ck_assert(lstat(path_in("y.fifo"), &st) == 0 && S_ISFIFO(st.st_mode));
  unsigned char buf[4096];
  ssize_t got = read(fd, buf, sizeof buf);
  close(fd);
  ck_assert_msg(got > 0, "nothing came through the FIFO");
  npy_array y;
  char err[256];
  ck_assert_msg(npy_parse(buf, (size_t)got, "fifo", &y, err, sizeof err) == 0, "%s", err);
  ck_assert(y.rank == 1 && y.shape[0] == 4);
  npy_free(&y);

  /* "-": standard output. */
  char outpath[512];
  snprintf(outpath, sizeof outpath, "%s", path_in("stdout.npy"));
  const char *to_stdout[] = {"softmax", xp, "-", NULL};
  ck_assert_msg(run_tool_to(to_stdout, outpath) == 0, "%s", errtext);
  check_softmax4(outpath);

  /* The same file twice: refused with exit 2 before anything runs. */
  char before[64];
  file_text("x.npy", before, sizeof before);
  const int64_t tshape[1] = {1};
  const int64_t tv[1] = {2};
  const int64_t xshape[2] = {1, 4};
  write_f32("x2.npy", 2, xshape, x);
  write_i64("t.npy", 1, tshape, tv);
  ck_assert(symlink("x.npy", path_in("xl.npy")) == 0);
  ck_assert(link(path_in("x.npy"), path_in("xh.npy")) == 0);
  const char *cases[][8] = {
      {"softmax", xp, xp, NULL},
      {"softmax", xp, path_in("xl.npy"), NULL},
      {"softmax", xp, path_in("xh.npy"), NULL},
      {"softmax-backward", xp, path_in("x2.npy"), path_in("x2.npy"), NULL},
      {"cross-entropy", "--grad", path_in("g.npy"), path_in("x2.npy"), path_in("t.npy"), path_in("g.npy"), NULL},
      {"cross-entropy", "--grad", path_in("sub/../g.npy"), path_in("x2.npy"), path_in("t.npy"), path_in("g.npy"), NULL},
      {"cross-entropy", path_in("x2.npy"), path_in("t.npy"), path_in("t.npy"), NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    ck_assert_msg(run_tool(cases[i]) == 2, "case %zu: %s", i, errtext);
    ck_assert_msg(strstr(errtext, "same file") || strstr(errtext, "is the input"), "case %zu: %s", i, errtext);
  }
  char after[64];
  file_text("x.npy", after, sizeof after);
  ck_assert(!memcmp(before, after, sizeof before));
  ck_assert(!file_exists("g.npy"));

  /* A missing folder: exit 5, the path in the message, nothing created. */
  const char *nodir[] = {"softmax", xp, path_in("nowhere/y.npy"), NULL};
  ck_assert_int_eq(run_tool(nodir), 5);
  ck_assert_msg(strstr(errtext, "nowhere/y.npy") && strstr(errtext, "does not exist"), "%s", errtext);
  ck_assert(!file_exists("nowhere"));
  const char *isdir[] = {"softmax", xp, path_in("sub"), NULL};
  ck_assert_int_eq(run_tool(isdir), 2);
  ck_assert_msg(strstr(errtext, "is a folder"), "%s", errtext);
}
END_TEST

/* A Fortran-order file (np.save of a transposed array) is the array its
 * header describes: softmax over its last axis matches the reference on the
 * same array in C order, and the output is C order. */
START_TEST(test_tool_fortran_input) {
  const char *header = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
  const float logical[6] = {0.5f, -1, 2, 3, 0.25f, -2}; /* [[0.5, -1, 2], [3, 0.25, -2]] */
  float fdata[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) fdata[i + 2 * j] = logical[3 * i + j];
  unsigned char buf[256];
  size_t hl = strlen(header), total = (10 + hl + 1 + 63) / 64 * 64;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)(total - 10);
  buf[9] = 0;
  memcpy(buf + 10, header, hl);
  memset(buf + 10 + hl, ' ', total - 10 - hl - 1);
  buf[total - 1] = '\n';
  memcpy(buf + total, fdata, sizeof fdata);
  write_bytes("f.npy", buf, total + sizeof fdata);
  const char *args[] = {"softmax", path_in("f.npy"), path_in("y.npy"), NULL};
  ck_assert_msg(run_tool(args) == 0, "%s", errtext);
  npy_array y;
  char err[256];
  ck_assert_msg(npy_read(path_in("y.npy"), &y, err, sizeof err) == 0, "%s", err);
  ck_assert(y.rank == 2 && y.shape[0] == 2 && y.shape[1] == 3);
  const int64_t shape[2] = {2, 3};
  double ref[6];
  ref_softmax(logical, ref, 2, shape, 1, 0, 0);
  for (int i = 0; i < 6; ++i)
    ck_assert_msg(fabs(((float *)y.data)[i] - ref[i]) < 1e-6, "element %d: %g vs %g", i,
                  ((float *)y.data)[i], ref[i]);
  npy_free(&y);
}
END_TEST

/* `clsoftmax CMD --help`: that command's usage on stdout, exit 0. */
START_TEST(test_tool_command_help) {
  static const char *const cmds[] = {"softmax", "log-softmax-backward", "cross-entropy", "bench", "devices", "demo", "program"};
  char outpath[512];
  snprintf(outpath, sizeof outpath, "%s", path_in("help.txt"));
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; ++i) {
    const char *args[] = {cmds[i], "--help", NULL};
    ck_assert_msg(run_tool_to(args, outpath) == 0, "%s --help: %s", cmds[i], errtext);
    char text[8192], want[64];
    file_text("help.txt", text, sizeof text);
    snprintf(want, sizeof want, "clsoftmax %s ", cmds[i]);
    const char *line = strstr(text, want);
    if (!line) {
      snprintf(want, sizeof want, "clsoftmax %s\n", cmds[i]);
      line = strstr(text, want);
    }
    ck_assert_msg(line != NULL, "%s --help:\n%s", cmds[i], text);
    ck_assert_msg(count_of(text, "  clsoftmax ") == 1, "%s --help shows other commands:\n%s", cmds[i], text);
    ck_assert(strstr(text, "exit status") != NULL);
  }
}
END_TEST

/* The demo passes on the default device. */
START_TEST(test_tool_demo) {
  const char *args[] = {"demo", NULL};
  ck_assert_msg(run_tool(args) == 0, "demo failed: %s", errtext);
}
END_TEST

/* Attention options: a causal, masked, ALiBi, sink softmax with its lse
 * against the reference; the backward's dsinks; exit statuses of what does
 * not fit. */
START_TEST(test_tool_attention) {
  const int64_t shape[4] = {2, 3, 4, 10}, mshape[2] = {4, 10}, hs[1] = {3}, bad[1] = {2};
  float x[240], mask[40], sinks[3] = {0.5f, -1.0f, 2.0f};
  double xd[240], md[240], sd[3] = {0.5, -1.0, 2.0}, slopes[3], ref[240], rlse[24];
  fill_random(x, 240, 5);
  for (int k = 0; k < 40; ++k) mask[k] = (k % 9 == 4) ? -INFINITY : (float)(k % 5) * 0.25f;
  for (int k = 0; k < 240; ++k) {
    xd[k] = x[k];
    md[k] = mask[k % 40];
  }
  write_f32("x.npy", 4, shape, x);
  write_f32("m.npy", 2, mshape, mask);
  write_f32("s.npy", 1, hs, sinks);
  write_f32("s2.npy", 1, bad, sinks);
  const char *args[] = {"log-softmax", "--scale", "0.5", "--mask", path_in("m.npy"), "--causal",
                        "--offset", "6", "--alibi", "8", "--sinks", path_in("s.npy"), "--lse",
                        path_in("l.npy"), path_in("x.npy"), path_in("y.npy"), NULL};
  ck_assert_msg(run_tool(args) == 0, "exit status non-zero: %s", errtext);
  ref_alibi_slopes(8.0, 3, slopes);
  ref_attn_opts ro = {.scale = 0.5, .mask = md, .causal = 1, .offset = 6, .slopes = slopes,
                      .sinks = sd, .head_dim = 1};
  ref_attn_softmax(xd, ref, rlse, 4, shape, 3, 1, &ro);
  npy_array y, l;
  char err[256];
  ck_assert_msg(npy_read(path_in("y.npy"), &y, err, sizeof err) == 0, "%s", err);
  ck_assert_msg(npy_read(path_in("l.npy"), &l, err, sizeof err) == 0, "%s", err);
  ck_assert(l.rank == 3 && l.shape[0] == 2 && l.shape[1] == 3 && l.shape[2] == 4);
  for (int k = 0; k < 240; ++k)
    ck_assert_msg(ref_close(((float *)y.data)[k], ref[k], 1, 4e-6), "y[%d] %.9g vs %.9g", k,
                  ((float *)y.data)[k], ref[k]);
  for (int k = 0; k < 24; ++k) ck_assert(ref_close(((float *)l.data)[k], rlse[k], 1, 4e-6));
  npy_free(&l);
  /* The backward of softmax with dsinks. */
  ref_attn_softmax(xd, ref, NULL, 4, shape, 3, 0, &ro);
  float yf[240], dy[240];
  double yd[240], dyd[240], dx[240], ds[3];
  fill_random(dy, 240, 6);
  for (int k = 0; k < 240; ++k) {
    yf[k] = (float)ref[k];
    yd[k] = yf[k];
    dyd[k] = dy[k];
  }
  write_f32("yf.npy", 4, shape, yf);
  write_f32("dy.npy", 4, shape, dy);
  const char *bargs[] = {"softmax-backward", "--scale", "0.5", "--dsinks", path_in("ds.npy"),
                         path_in("yf.npy"), path_in("dy.npy"), path_in("dx.npy"), NULL};
  ck_assert_msg(run_tool(bargs) == 0, "exit status non-zero: %s", errtext);
  ref_attn_backward(yd, dyd, dx, NULL, ds, NULL, 4, shape, 3, 0, 0.5, 1);
  npy_array gx, gs;
  ck_assert(npy_read(path_in("dx.npy"), &gx, err, sizeof err) == 0);
  ck_assert(npy_read(path_in("ds.npy"), &gs, err, sizeof err) == 0);
  ck_assert(gs.rank == 1 && gs.shape[0] == 3);
  for (int k = 0; k < 240; ++k) ck_assert(fabs(((float *)gx.data)[k] - dx[k]) <= 1e-6 * (1 + fabs(dx[k])));
  for (int h = 0; h < 3; ++h) ck_assert(fabs(((float *)gs.data)[h] - ds[h]) <= 1e-5 * (1 + fabs(ds[h])));
  npy_free(&gx);
  npy_free(&gs);
  npy_free(&y);
  /* What does not fit: exit 3 naming both shapes, or 2 for options. */
  const char *a1[] = {"softmax", "--mask", path_in("s.npy"), path_in("x.npy"), path_in("o.npy"), NULL};
  ck_assert_int_eq(run_tool(a1), 3);
  ck_assert_msg(strstr(errtext, "(3)") && strstr(errtext, "(2, 3, 4, 10)"), "%s", errtext);
  const char *a2[] = {"softmax", "--sinks", path_in("s2.npy"), path_in("x.npy"), path_in("o.npy"), NULL};
  ck_assert_int_eq(run_tool(a2), 3);
  ck_assert_msg(strstr(errtext, "(2,)") && strstr(errtext, "(2, 3, 4, 10)"), "%s", errtext);
  const char *a3[] = {"softmax", "--causal", path_in("s.npy"), path_in("o.npy"), NULL};
  ck_assert_int_eq(run_tool(a3), 3);
  const char *a4[] = {"softmax", "--alibi", "8", "--alibi-slopes", path_in("s.npy"), path_in("x.npy"),
                      path_in("o.npy"), NULL};
  ck_assert_int_eq(run_tool(a4), 2);
  const char *a5[] = {"softmax", "--scale", "nan", path_in("x.npy"), path_in("o.npy"), NULL};
  ck_assert_int_eq(run_tool(a5), 2);
  ck_assert(!file_exists("o.npy"));
}
END_TEST

static Suite *tool_suite(void) {
  Suite *s = suite_create("tool");
  TCase *tc = tcase_create("Tool");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_tool_softmax);
  tcase_add_test(tc, test_tool_attention);
  tcase_add_test(tc, test_tool_verbose);
  tcase_add_test(tc, test_tool_usage);
  tcase_add_test(tc, test_tool_dtypes_and_backward);
  tcase_add_test(tc, test_tool_cross_entropy);
  tcase_add_test(tc, test_tool_shards);
  tcase_add_test(tc, test_tool_program);
  tcase_add_test(tc, test_tool_bad_files);
  tcase_add_test(tc, test_tool_bad_device);
  tcase_add_test(tc, test_tool_demo);
  tcase_add_test(tc, test_tool_no_platform);
  tcase_add_test(tc, test_tool_bench_json);
  tcase_add_test(tc, test_tool_bench_svg);
  tcase_add_test(tc, test_tool_outputs);
  tcase_add_test(tc, test_tool_command_help);
  tcase_add_test(tc, test_tool_fortran_input);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(tool_suite()); }
