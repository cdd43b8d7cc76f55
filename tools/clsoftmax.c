/* clsoftmax: the command-line tool. Runs the library's operations on .npy
 * files, lists devices, benchmarks and demonstrates. Outputs appear complete
 * or not at all; exit statuses are listed in tool.h and in --help. */
#include "args.h"
#include "npy.h"
#include "output.h"
#include "shards.h"
#include "tool.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage_text[] =
    "usage:\n"
    "  clsoftmax devices\n"
    "  clsoftmax softmax              [--dim D] [--device SPEC] [--verbose] [--shards K]\n"
    "                                 [ATTENTION] X.npy Y.npy\n"
    "  clsoftmax log-softmax          (the same options as softmax)\n"
    "  clsoftmax softmax-backward     [--dim D] [--device SPEC] [--verbose] [--shards K] [--scale S]\n"
    "                                 [--sinks S.npy --dsinks DS.npy] [--head-dim A] [--safe]\n"
    "                                 Y.npy DY.npy DX.npy\n"
    "  clsoftmax log-softmax-backward (the same options as softmax-backward)\n"
    "  clsoftmax cross-entropy [--reduction mean|sum|none] [--ignore-index I]\n"
    "                          [--label-smoothing E] [--weight W.npy] [--z-loss Z]\n"
    "                          [--softcap S] [--grad G.npy] [--dloss DL.npy] [--shards K]\n"
    "                          [--device SPEC] [--verbose] LOGITS.npy TARGET.npy LOSS.npy\n"
    "  clsoftmax bench [--quick] [--json FILE] [--svg FILE] [--device SPEC]\n"
    "  clsoftmax demo  [--device SPEC]\n"
    "  clsoftmax program [--family cpu|gpu | --profile NAME] [--dtype D] [--out D]\n"
    "                    --list | --index K\n"
    "  clsoftmax --help | --version\n"
    "\n"
    "--dim D       the softmax axis, negative counts from the end (default -1)\n"
    "ATTENTION     [--scale S] [--mask M.npy] [--causal] [--offset K]\n"
    "              [--alibi MAX_BIAS | --alibi-slopes S.npy] [--sinks S.npy]\n"
    "              [--head-dim A] [--safe] [--lse L.npy]: softmax(scale*x + mask)\n"
    "              along the key axis; a float mask is added, a bool/uint8 one keeps\n"
    "              its nonzero entries; --causal masks keys past i + offset (i the\n"
    "              query index, the axis before dim); ALiBi subtracts\n"
    "              slope_h*|i + offset - j|; sinks (one a head, along --head-dim,\n"
    "              default the axis before the query axis) join the normaliser;\n"
    "              --safe gives fully masked rows 0 (-inf) instead of NaN; --lse\n"
    "              writes each row's log-sum-exp. The backward takes y, not the mask;\n"
    "              --dsinks writes d loss / d sinks.\n"
    "--shards K    split the class axis (cross-entropy) or dim into K contiguous\n"
    "              shards, each on its own context (round-robin over --device A,B,...;\n"
    "              default K on the default device), merge their statistics on the host\n"
    "              and write what the unsharded command writes (softmax: --safe only)\n"
    "program       the OpenCL programs the library builds for a family and dtype pair\n"
    "              (default gpu, float32): --list a line each (index, name, build\n"
    "              options); --index K program K: '// build options: ...', then its\n"
    "              source, which compiles as it is with them; --profile NAME (h100,\n"
    "              h200, mi300, igpu, arc, pocl-cpu) lists what that described device\n"
    "              builds, with its options\n"
    "--verbose     print to stderr, for each call, the device, the kernels it ran with\n"
    "              their launch geometry, and its time (host copies included)\n"
    "--device SPEC cpu, gpu, P:D (platform:device as `devices` lists), or part of a\n"
    "              device name; default: $CLSM_DEVICE, else the first GPU, else the\n"
    "              first device\n"
    "Inputs are .npy files (versions 1.0-3.0, little-endian, C or Fortran order;\n"
    "float32 '<f4', float64 '<f8' or float16 '<f2').\n"
    "Outputs keep the input's dtype. A file is written to a temporary and renamed\n"
    "over it (through a symbolic link, which is kept); '-' (standard output), a\n"
    "FIFO or a device is written in order. An output may not name an input or\n"
    "another output.\n"
    "cross-entropy: the class axis is 1 (0 for 1-d logits); TARGET holds class\n"
    "indices ('<i8', '<i4', '|u1') or probabilities (the logits' shape and dtype);\n"
    "LOSS is 0-d for mean/sum and the target's shape for none; --grad writes\n"
    "d loss / d logits, times DL.npy when given (0-d, or per position for none).\n"
    "\n"
    "exit status: 0 success; 1 device or OpenCL failure; 2 usage or option error;\n"
    "3 unreadable or malformed input, or shapes/dtypes that do not fit;\n"
    "4 invalid values (a class index out of range); 5 an output cannot be written\n"
    "(its folder does not exist, no permission, disk full)\n";

static void verbose_hook(void *user, const clsm_plan_info *info) {
  (void)user;
  fprintf(stderr, "clsoftmax: plan: %s\n", info->text);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* --verbose: the device and each call's plan (through the plan hook), then
 * the call's time (tool_verbose_end). */
static double tool_verbose_begin(clsm_context *ctx, const options *o) {
  if (!o->verbose) return 0;
  fprintf(stderr, "clsoftmax: device: %s (%s family)\n", clsm_context_device_name(ctx),
          clsm_context_family(ctx) == CLSM_FAMILY_CPU ? "cpu" : "gpu");
  clsm_context_set_plan_hook(ctx, verbose_hook, NULL);
  return now_ms();
}

static void tool_verbose_end(const options *o, const char *name, double t0) {
  if (o->verbose) fprintf(stderr, "clsoftmax: time: %s %.3f ms\n", name, now_ms() - t0);
}

clsm_context *tool_context(const char *spec) {
  clsm_context *ctx = NULL;
  char detail[512];
  clsm_status st = clsm_context_create(&ctx, spec, detail, sizeof detail);
  if (st != CLSM_SUCCESS) {
    /* The detail says what the status says, and more. */
    fprintf(stderr, "clsoftmax: cannot open a device: %s\n", *detail ? detail : clsm_status_string(st));
    return NULL;
  }
  return ctx;
}

int tool_report(clsm_context *ctx, clsm_status st, const char *what) {
  char detail[1024] = "";
  clsm_context_error(ctx, detail, sizeof detail);
  fprintf(stderr, "clsoftmax: %s: %s%s%s\n", what, clsm_status_string(st), *detail ? ": " : "",
          detail);
  if (st == CLSM_ERR_BUILD) {
    size_t n = clsm_context_build_log(ctx, NULL, 0);
    char *log = malloc(n + 1);
    if (log) {
      clsm_context_build_log(ctx, log, n + 1);
      fprintf(stderr, "build log:\n%s\n", log);
      free(log);
    }
  }
  switch (st) {
  case CLSM_ERR_INVALID_DIM:
  case CLSM_ERR_INVALID_ARGUMENT:
    return EXIT_USAGE;
  case CLSM_ERR_SHAPE_MISMATCH:
  case CLSM_ERR_UNSUPPORTED_DTYPE:
  case CLSM_ERR_INVALID_RANK:
  case CLSM_ERR_TOO_LARGE:
    return EXIT_INPUT;
  default:
    return EXIT_DEVICE;
  }
}

static int cmd_devices(void) {
  char detail[512] = "";
  size_t n = 0;
  clsm_status st = clsm_list_devices(NULL, 0, &n, detail, sizeof detail);
  clsm_device_info *devs = st == CLSM_SUCCESS && n ? calloc(n, sizeof *devs) : NULL;
  if (st == CLSM_SUCCESS && n && !devs) {
    fprintf(stderr, "clsoftmax: out of memory\n");
    return EXIT_DEVICE;
  }
  if (devs) st = clsm_list_devices(devs, n, &n, detail, sizeof detail);
  if (st != CLSM_SUCCESS) {
    fprintf(stderr, "clsoftmax: %s\n", *detail ? detail : clsm_status_string(st));
    free(devs);
    return st == CLSM_ERR_INVALID_ARGUMENT ? EXIT_USAGE : EXIT_DEVICE;
  }
  for (size_t i = 0; i < n; ++i) {
    const clsm_device_info *d = &devs[i];
    char ver[256] = "";
    cl_uint cu = 0;
    cl_ulong mem = 0;
    clGetDeviceInfo(d->device_id, CL_DEVICE_VERSION, sizeof ver - 1, ver, NULL);
    clGetDeviceInfo(d->device_id, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    clGetDeviceInfo(d->device_id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
    printf("%u:%u%s %-4s  %s  (%s; %u compute units, %.1f GiB; %s family)  [platform: %s]\n",
           d->platform, d->device, d->is_default ? "*" : " ",
           (d->type & CL_DEVICE_TYPE_GPU) ? "gpu" : (d->type & CL_DEVICE_TYPE_CPU) ? "cpu" : "other",
           d->name, ver, cu, (double)mem / (1024.0 * 1024 * 1024),
           d->family == CLSM_FAMILY_CPU ? "cpu" : "gpu", d->platform_name);
  }
  if (n) printf("* the default device\n");
  free(devs);
  return EXIT_OK;
}

static int is_float(clsm_dtype d) {
  return d == CLSM_FLOAT32 || d == CLSM_FLOAT64 || d == CLSM_FLOAT16;
}

/* softmax, log-softmax and their backward on .npy files: `nin` inputs of one
 * floating dtype and shape, one output of the same; with attention options,
 * the mask, slopes and sinks files, and the lse (forward) or dsinks
 * (backward) output. */
static int cmd_rowop(int argc, char **argv, const char *name, int log, int backward) {
  options o;
  int nin = backward ? 2 : 1;
  int rc = tool_parse_options(argc, argv,
                              OPT_DIM | OPT_DEVICE | OPT_VERBOSE | OPT_SHARDS |
                                  (backward ? OPT_ATTN_BWD : OPT_ATTN),
                              nin + 1, &o);
  if (rc) return rc;
  if (o.shards && o.attn_terms)
    return tool_usage_error("--shards takes no attention options but --safe%s", "");
  enum { I0, I1, IMASK, ISLOPES, ISINKS, NIN };
  npy_array in[NIN], extra;
  memset(in, 0, sizeof in);
  memset(&extra, 0, sizeof extra);
  const char *paths[NIN] = {o.pos[0], backward ? o.pos[1] : NULL, o.mask, o.slopes,
                            backward ? NULL : o.sinks};
  char err[512];
  clsm_context *ctx = NULL;
  /* The output, then lse or dsinks when asked for. */
  const char *outs[2] = {o.pos[nin], backward ? o.dsinks : o.lse};
  tool_out out_files[2];
  memset(out_files, 0, sizeof out_files);
  out_files[0].fd = out_files[1].fd = -1;
  if ((rc = tool_out_distinct(outs, 2, paths, NIN, err, sizeof err)) ||
      (rc = tool_out_open(&out_files[0], outs[0], err, sizeof err)) ||
      (outs[1] && (rc = tool_out_open(&out_files[1], outs[1], err, sizeof err)))) {
    fprintf(stderr, "clsoftmax: %s\n", err);
    tool_out_abort(&out_files[0]);
    return rc;
  }
  rc = EXIT_INPUT;
  for (int i = 0; i < NIN; ++i) {
    if (!paths[i]) continue;
    if (npy_read(paths[i], &in[i], err, sizeof err)) {
      fprintf(stderr, "clsoftmax: %s\n", err);
      goto done;
    }
    if (i < IMASK && !is_float(in[i].dtype)) {
      fprintf(stderr, "clsoftmax: %s: dtype %s is not supported (float32, float64 or float16)\n",
              paths[i], clsm_dtype_name(in[i].dtype));
      goto done;
    }
  }
  if (backward) {
    int same = in[0].dtype == in[1].dtype && in[0].rank == in[1].rank;
    for (int d = 0; same && d < in[0].rank; ++d) same = in[0].shape[d] == in[1].shape[d];
    if (!same) {
      char s0[256], s1[256];
      npy_shape_str(in[0].rank, in[0].shape, s0, sizeof s0);
      npy_shape_str(in[1].rank, in[1].shape, s1, sizeof s1);
      fprintf(stderr, "clsoftmax: %s and %s must have one dtype and shape: %s %s and %s %s\n",
              o.pos[0], o.pos[1], clsm_dtype_name(in[0].dtype), s0, clsm_dtype_name(in[1].dtype), s1);
      goto done;
    }
  }
  const clsm_dtype dt = in[0].dtype;
  if (o.mask && in[IMASK].dtype != CLSM_FLOAT32 && in[IMASK].dtype != CLSM_FLOAT16 &&
      in[IMASK].dtype != CLSM_UINT8) {
    fprintf(stderr, "clsoftmax: %s: a mask is float32, float16 (added) or bool / uint8 (0 masks out), not %s\n",
            o.mask, clsm_dtype_name(in[IMASK].dtype));
    goto done;
  }
  if (o.slopes && in[ISLOPES].dtype != CLSM_FLOAT32) {
    fprintf(stderr, "clsoftmax: %s: ALiBi slopes are float32, not %s\n", o.slopes,
            clsm_dtype_name(in[ISLOPES].dtype));
    goto done;
  }
  if (o.sinks && !backward && in[ISINKS].dtype != CLSM_FLOAT32 && in[ISINKS].dtype != dt) {
    fprintf(stderr, "clsoftmax: %s: sinks are float32 or %s's dtype %s, not %s\n", o.sinks, o.pos[0],
            clsm_dtype_name(dt), clsm_dtype_name(in[ISINKS].dtype));
    goto done;
  }
  int r = in[0].rank == 0 ? 1 : in[0].rank;
  if (o.dim < -r || o.dim >= r) {
    fprintf(stderr, "clsoftmax: --dim %ld is out of range for %s of rank %d (valid: %d..%d)\n",
            o.dim, o.pos[0], in[0].rank, -r, r - 1);
    rc = EXIT_USAGE;
    goto done;
  }
  /* lse: x's shape without dim; slopes, sinks and dsinks: one value a head. */
  const int d = (int)(o.dim < 0 ? o.dim + r : o.dim);
  const clsm_dtype acc = dt == CLSM_FLOAT64 ? CLSM_FLOAT64 : CLSM_FLOAT32;
  /* A head_dim the library refuses: it says so in the call below. */
  int64_t H = 1;
  const int heads_ok =
      clsm_attn_heads(in[0].rank, in[0].shape, (int)o.dim, o.attn.head_dim, &H) == CLSM_SUCCESS;
  for (int i = ISLOPES; i <= ISINKS; ++i)
    if (paths[i] && heads_ok && (in[i].rank != 1 || in[i].shape[0] != H)) {
      char s0[256], s1[256];
      npy_shape_str(in[i].rank, in[i].shape, s0, sizeof s0);
      npy_shape_str(in[0].rank, in[0].shape, s1, sizeof s1);
      fprintf(stderr, "clsoftmax: %s has shape %s but must be (%lld): %s of shape %s has %lld head(s)\n",
              paths[i], s0, (long long)H, o.pos[0], s1, (long long)H);
      goto done;
    }
  int64_t eshape[CLSM_MAX_RANK];
  int erank = 0;
  if (outs[1] && !backward) {
    for (int k = 0; k < in[0].rank; ++k)
      if (k != d) eshape[erank++] = in[0].shape[k];
  } else if (outs[1]) {
    eshape[0] = H;
    erank = 1;
  }
  if (outs[1] && npy_alloc(&extra, acc, erank, eshape)) {
    fprintf(stderr, "clsoftmax: out of memory\n");
    rc = EXIT_DEVICE;
    goto done;
  }
  if (o.shards && in[0].rank && o.shards > in[0].shape[d]) {
    fprintf(stderr, "clsoftmax: --shards %ld: dim %d of %s has only %lld entries\n", o.shards, d,
            o.pos[0], (long long)in[0].shape[d]);
    rc = EXIT_USAGE;
    goto done;
  }
  npy_array *out = &in[nin - 1]; /* written in place of the last input, then saved */
  clsm_status st;
  if (o.shards) {
    tool_shards sh;
    if (!tool_shards_open(&sh, (int)o.shards, o.device)) {
      rc = EXIT_DEVICE;
      goto done;
    }
    const double t1 = tool_verbose_begin(sh.ctx[0], &o);
    int failed = 0;
    const clsm_shard_op op = backward ? (log ? CLSM_SHARD_LOG_SOFTMAX_BACKWARD : CLSM_SHARD_SOFTMAX_BACKWARD)
                                      : (log ? CLSM_SHARD_LOG_SOFTMAX : CLSM_SHARD_SOFTMAX);
    st = tool_rowop_sharded(&sh, op, dt, in[0].rank, in[0].shape, (int)o.dim, o.attn.flags,
                            in[0].data, backward ? in[1].data : NULL, out->data, &failed);
    tool_verbose_end(&o, name, t1);
    if (st != CLSM_SUCCESS) rc = tool_report(sh.ctx[failed], st, name);
    tool_shards_close(&sh);
    if (st != CLSM_SUCCESS) goto done;
    goto write;
  }
  if (!(ctx = tool_context(o.device))) {
    rc = EXIT_DEVICE;
    goto done;
  }
  const double t0 = tool_verbose_begin(ctx, &o);
  clsm_attn_arrays ar;
  memset(&ar, 0, sizeof ar);
  if (o.mask) {
    ar.mask = in[IMASK].data;
    ar.mask_dtype = in[IMASK].dtype;
    ar.mask_rank = in[IMASK].rank;
    ar.mask_shape = in[IMASK].shape;
  }
  ar.alibi_slopes = o.slopes ? (const float *)in[ISLOPES].data : NULL;
  if (o.sinks && !backward) {
    ar.sinks = in[ISINKS].data;
    ar.sinks_dtype = in[ISINKS].dtype;
  }
  if (backward) ar.dsinks = outs[1] ? extra.data : NULL;
  else ar.lse = outs[1] ? extra.data : NULL;
  if (o.attn_used && !backward)
    st = (log ? clsm_log_softmax_ex_host : clsm_softmax_ex_host)(ctx, dt, in[0].rank, in[0].shape,
                                                                (int)o.dim, &o.attn, &ar, in[0].data,
                                                                out->data);
  else if (o.attn_used)
    st = (log ? clsm_log_softmax_backward_ex_host : clsm_softmax_backward_ex_host)(
        ctx, dt, in[0].rank, in[0].shape, (int)o.dim, &o.attn, &ar, in[0].data, in[1].data,
        out->data);
  else if (!backward)
    st = (log ? clsm_log_softmax_host : clsm_softmax_host)(ctx, dt, in[0].rank, in[0].shape,
                                                          (int)o.dim, 0, in[0].data, out->data);
  else
    st = (log ? clsm_log_softmax_backward_host : clsm_softmax_backward_host)(
        ctx, dt, in[0].rank, in[0].shape, (int)o.dim, 0, in[0].data, in[1].data, out->data);
  tool_verbose_end(&o, name, t0);
  if (st != CLSM_SUCCESS) {
    rc = tool_report(ctx, st, name);
    goto done;
  }
write:;
  const npy_array *arrays[2] = {out, &extra};
  for (int i = 0; i < 2; ++i)
    if (outs[i] && (rc = npy_write_to(&out_files[i], arrays[i], err, sizeof err))) {
      fprintf(stderr, "clsoftmax: %s\n", err);
      goto done;
    }
  for (int i = 0; i < 2; ++i)
    if (outs[i] && (rc = tool_out_commit(&out_files[i], err, sizeof err))) {
      fprintf(stderr, "clsoftmax: %s\n", err);
      goto done;
    }
done:
  tool_out_abort(&out_files[0]);
  tool_out_abort(&out_files[1]);
  clsm_context_destroy(ctx);
  for (int i = 0; i < NIN; ++i) npy_free(&in[i]);
  npy_free(&extra);
  return rc;
}

/* "[i, j, k]" for flat position p of a C-order shape. */
static void index_str(int64_t p, int rank, const int64_t *shape, char *buf, size_t n) {
  int64_t idx[CLSM_MAX_RANK];
  for (int d = rank - 1; d >= 0; --d) {
    idx[d] = shape[d] ? p % shape[d] : 0;
    p = shape[d] ? p / shape[d] : 0;
  }
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int d = 0; d < rank && k < n; ++d)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)idx[d]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

static int64_t index_at(const npy_array *t, int64_t p) {
  switch (t->dtype) {
  case CLSM_INT64: return ((const int64_t *)t->data)[p];
  case CLSM_INT32: return ((const int32_t *)t->data)[p];
  default: return ((const uint8_t *)t->data)[p];
  }
}

/* cross-entropy on .npy files: LOGITS TARGET LOSS, optional weight, gradient
 * and upstream gradient files. */
static int cmd_ce(int argc, char **argv) {
  options o;
  int rc = tool_parse_options(argc, argv, OPT_DEVICE | OPT_CE | OPT_VERBOSE | OPT_SHARDS, 3, &o);
  if (rc) return rc;
  enum { X, T, W, DL, NIN };
  npy_array in[NIN], loss, grad;
  memset(in, 0, sizeof in);
  memset(&loss, 0, sizeof loss);
  memset(&grad, 0, sizeof grad);
  const char *paths[NIN] = {o.pos[0], o.pos[1], o.weight, o.dloss};
  char err[512];
  clsm_context *ctx = NULL;
  /* The loss, then the gradient when asked for. */
  const char *outs[2] = {o.pos[2], o.grad};
  tool_out out_files[2];
  memset(out_files, 0, sizeof out_files);
  out_files[0].fd = out_files[1].fd = -1;
  if ((rc = tool_out_distinct(outs, 2, paths, NIN, err, sizeof err)) ||
      (rc = tool_out_open(&out_files[0], outs[0], err, sizeof err)) ||
      (o.grad && (rc = tool_out_open(&out_files[1], outs[1], err, sizeof err)))) {
    fprintf(stderr, "clsoftmax: %s\n", err);
    tool_out_abort(&out_files[0]);
    return rc;
  }
  rc = EXIT_INPUT;
  for (int i = 0; i < NIN; ++i)
    if (paths[i] && npy_read(paths[i], &in[i], err, sizeof err)) {
      fprintf(stderr, "clsoftmax: %s\n", err);
      goto done;
    }
  const npy_array *x = &in[X], *t = &in[T];
  if (!is_float(x->dtype) || x->rank < 1) {
    fprintf(stderr, "clsoftmax: %s: logits must be float32, float64 or float16 of rank 1..8 (%s, rank %d)\n",
            paths[X], clsm_dtype_name(x->dtype), x->rank);
    goto done;
  }
  const int axis = x->rank == 1 ? 0 : 1;
  const int64_t C = x->shape[axis];
  int64_t pshape[CLSM_MAX_RANK];
  int prank = 0;
  for (int d = 0; d < x->rank; ++d)
    if (d != axis) pshape[prank++] = x->shape[d];
  const int prob = is_float(t->dtype);
  int fits = prob ? t->rank == x->rank && t->dtype == x->dtype : t->rank == prank;
  for (int d = 0; fits && d < t->rank; ++d) fits = t->shape[d] == (prob ? x->shape[d] : pshape[d]);
  if (!fits) {
    char ts[256], xs[256], ps[256];
    npy_shape_str(t->rank, t->shape, ts, sizeof ts);
    npy_shape_str(x->rank, x->shape, xs, sizeof xs);
    npy_shape_str(prank, pshape, ps, sizeof ps);
    fprintf(stderr, "clsoftmax: %s: target %s %s does not fit logits %s %s: class indices (int64, int32, "
            "uint8) need shape %s, probabilities need shape %s and dtype %s\n", paths[T],
            clsm_dtype_name(t->dtype), ts, clsm_dtype_name(x->dtype), xs, ps, xs,
            clsm_dtype_name(x->dtype));
    goto done;
  }
  if (in[W].data || paths[W]) {
    if (in[W].rank != 1 || in[W].shape[0] != C || in[W].dtype != x->dtype) {
      fprintf(stderr, "clsoftmax: %s: weight must have shape (%lld,) and the logits' dtype %s\n",
              paths[W], (long long)C, clsm_dtype_name(x->dtype));
      goto done;
    }
  }
  const int reduced = o.ce.reduction != CLSM_REDUCTION_NONE;
  if (paths[DL]) {
    int ok = in[DL].dtype == x->dtype && in[DL].rank == (reduced ? 0 : prank);
    for (int d = 0; ok && !reduced && d < prank; ++d) ok = in[DL].shape[d] == pshape[d];
    if (!ok) {
      fprintf(stderr, "clsoftmax: %s: dloss must be %s of shape %s (the %s loss's shape)\n", paths[DL],
              clsm_dtype_name(x->dtype), reduced ? "()" : "of the targets", reduced ? "reduced" : "per-position");
      goto done;
    }
    if (!o.grad) {
      fprintf(stderr, "clsoftmax: --dloss needs --grad\n");
      rc = EXIT_USAGE;
      goto done;
    }
  }
  if (prob && o.ce.ignore_index >= 0) {
    fprintf(stderr, "clsoftmax: --ignore-index %lld: probability targets need a negative ignore index\n",
            (long long)o.ce.ignore_index);
    rc = EXIT_USAGE;
    goto done;
  }
  if (!prob) /* name the first bad position, as the user wrote it */
    for (int64_t p = 0; p < t->numel; ++p) {
      int64_t v = index_at(t, p);
      if (v != o.ce.ignore_index && (v < 0 || v >= C)) {
        char where[160];
        index_str(p, t->rank, t->shape, where, sizeof where);
        fprintf(stderr, "clsoftmax: %s: target%s = %lld is outside [0, %lld) and not the ignore index %lld\n",
                paths[T], where, (long long)v, (long long)C, (long long)o.ce.ignore_index);
        rc = EXIT_VALUE;
        goto done;
      }
    }
  if (npy_alloc(&loss, x->dtype, reduced ? 0 : prank, pshape) ||
      (o.grad && npy_alloc(&grad, x->dtype, x->rank, x->shape))) {
    fprintf(stderr, "clsoftmax: out of memory\n");
    rc = EXIT_DEVICE;
    goto done;
  }
  if (o.shards > C) {
    fprintf(stderr, "clsoftmax: --shards %ld: %s has only %lld classes\n", o.shards, paths[X],
            (long long)C);
    rc = EXIT_USAGE;
    goto done;
  }
  clsm_status st;
  tool_shards sh;
  memset(&sh, 0, sizeof sh);
  if (o.shards) {
    if (!tool_shards_open(&sh, (int)o.shards, o.device)) {
      rc = EXIT_DEVICE;
      goto done;
    }
    const double t1 = tool_verbose_begin(sh.ctx[0], &o);
    int failed = 0;
    st = tool_ce_sharded(&sh, x->dtype, x->rank, x->shape, x->data, t->dtype, t->data, &o.ce,
                         in[W].data, loss.data, o.grad ? grad.data : NULL,
                         paths[DL] ? in[DL].data : NULL, &failed);
    tool_verbose_end(&o, "cross-entropy", t1);
    ctx = sh.ctx[failed]; /* for the report below; the shards close it */
  } else {
    if (!(ctx = tool_context(o.device))) {
      rc = EXIT_DEVICE;
      goto done;
    }
    const double t0 = tool_verbose_begin(ctx, &o);
    st = clsm_cross_entropy_host(ctx, x->dtype, x->rank, x->shape, x->data, t->dtype, t->data,
                                 &o.ce, in[W].data, loss.data, o.grad ? grad.data : NULL,
                                 paths[DL] ? in[DL].data : NULL, NULL, NULL);
    tool_verbose_end(&o, "cross-entropy", t0);
  }
  if (st != CLSM_SUCCESS) rc = tool_report(ctx, st, "cross-entropy");
  if (st == CLSM_ERR_TARGET_OUT_OF_RANGE) rc = EXIT_VALUE;
  if (o.shards) {
    tool_shards_close(&sh);
    ctx = NULL;
  }
  if (st != CLSM_SUCCESS) goto done;
  /* Both written before either is committed, so that a failure leaves both
   * files as they were. */
  if ((o.grad && (rc = npy_write_to(&out_files[1], &grad, err, sizeof err))) ||
      (rc = npy_write_to(&out_files[0], &loss, err, sizeof err)) ||
      (o.grad && (rc = tool_out_commit(&out_files[1], err, sizeof err))) ||
      (rc = tool_out_commit(&out_files[0], err, sizeof err))) {
    fprintf(stderr, "clsoftmax: %s\n", err);
    goto done;
  }
done:
  tool_out_abort(&out_files[0]);
  tool_out_abort(&out_files[1]);
  clsm_context_destroy(ctx);
  for (int i = 0; i < NIN; ++i) npy_free(&in[i]);
  npy_free(&loss);
  npy_free(&grad);
  return rc;
}

static int parse_dtype(const char *s, clsm_dtype *d) {
  static const clsm_dtype all[4] = {CLSM_FLOAT32, CLSM_FLOAT16, CLSM_BFLOAT16, CLSM_FLOAT64};
  for (int i = 0; i < 4; ++i)
    if (!strcmp(s, clsm_dtype_name(all[i]))) {
      *d = all[i];
      return 1;
    }
  return 0;
}

/* program: what the library builds, listed or one program's source. */
/* Program k of a described device (profile) or else of a family. */
static clsm_status program_info(const char *profile, clsm_family fam, clsm_dtype in,
                                clsm_dtype out, int k, char *name, size_t name_size, char *opts,
                                size_t opts_size, char *src, size_t src_size, size_t *len) {
  return profile ? clsm_profile_program_info(profile, in, out, k, name, name_size, opts, opts_size,
                                             src, src_size, len)
                 : clsm_program_info(fam, in, out, k, name, name_size, opts, opts_size, src,
                                     src_size, len);
}

static int cmd_program(int argc, char **argv) {
  clsm_family fam = CLSM_FAMILY_GPU;
  clsm_dtype in = CLSM_FLOAT32, out = CLSM_FLOAT32;
  int out_given = 0, list = 0, index = -1, fam_given = 0;
  const char *profile = NULL;
  for (int i = 0; i < argc; ++i) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--list")) {
      list = 1;
      continue;
    }
    if (strcmp(a, "--family") && strcmp(a, "--dtype") && strcmp(a, "--out") && strcmp(a, "--index") &&
        strcmp(a, "--profile"))
      return tool_usage_error("program: unknown argument '%s'", a);
    if (!v) return tool_usage_error("option '%s' needs a value", a);
    ++i;
    if (!strcmp(a, "--profile")) {
      if (clsm_profile_program_count(v, CLSM_FLOAT32, CLSM_FLOAT32) < 0) {
        char names[128] = "";
        for (int p = 0; clsm_profile_name(p); ++p)
          snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", p ? ", " : "",
                   clsm_profile_name(p));
        fprintf(stderr, "clsoftmax: --profile must be one of %s, got '%s'\n", names, v);
        return EXIT_USAGE;
      }
      profile = v;
    } else if (!strcmp(a, "--family")) {
      fam_given = 1;
      if (!strcmp(v, "cpu")) fam = CLSM_FAMILY_CPU;
      else if (!strcmp(v, "gpu")) fam = CLSM_FAMILY_GPU;
      else return tool_usage_error("--family must be cpu or gpu, got '%s'", v);
    } else if (!strcmp(a, "--index")) {
      char *end = NULL;
      long k = strtol(v, &end, 10);
      if (!*v || *end || k < 0 || k > 1000)
        return tool_usage_error("--index needs a program's number (see --list), got '%s'", v);
      index = (int)k;
    } else if (!parse_dtype(v, !strcmp(a, "--dtype") ? &in : &out)) {
      return tool_usage_error(!strcmp(a, "--dtype") ? "--dtype needs float32, float16, bfloat16 or float64, got '%s'"
                                                    : "--out needs float32, float16, bfloat16 or float64, got '%s'",
                              v);
    } else if (!strcmp(a, "--out")) {
      out_given = 1;
    }
  }
  if (list == (index >= 0)) return tool_usage_error("program: give --list or --index K%s", "");
  if (profile && fam_given) return tool_usage_error("program: give --family or --profile, not both%s", "");
  if (!out_given) out = in;
  char name[64], opts[512];
  const int count = profile ? clsm_profile_program_count(profile, in, out) : clsm_program_count(fam, in, out);
  if (count >= 0 && index >= count) {
    char last[16];
    snprintf(last, sizeof last, "%d", count - 1);
    return tool_usage_error("--index: the family and dtypes have programs 0 to %s (see --list)", last);
  }
  for (int k = 0; k < (count > 0 ? count : 1); ++k) {
    if (!list && k != index) continue;
    size_t len = 0;
    clsm_status st =
        program_info(profile, fam, in, out, k, name, sizeof name, opts, sizeof opts, NULL, 0, &len);
    if (st == CLSM_ERR_UNSUPPORTED_DTYPE) {
      fprintf(stderr, "clsoftmax: program: no operation takes %s in and %s out (16-bit inputs may "
              "have a float32 output)\n", clsm_dtype_name(in), clsm_dtype_name(out));
      return EXIT_USAGE;
    }
    if (st != CLSM_SUCCESS) {
      fprintf(stderr, "clsoftmax: program: %s\n", clsm_status_string(st));
      return EXIT_DEVICE;
    }
    if (list) {
      printf("%d %s %s\n", k, name, opts);
      continue;
    }
    char *src = malloc(len + 1);
    if (!src) {
      fprintf(stderr, "clsoftmax: out of memory\n");
      return EXIT_DEVICE;
    }
    program_info(profile, fam, in, out, k, NULL, 0, NULL, 0, src, len + 1, NULL);
    printf("// build options: %s\n", opts);
    fwrite(src, 1, len, stdout);
    free(src);
  }
  return fflush(stdout) == 0 ? EXIT_OK : EXIT_OUTPUT;
}

static int cmd_demo(int argc, char **argv) {
  options o;
  int rc = tool_parse_options(argc, argv, OPT_DEVICE, 0, &o);
  return rc ? rc : tool_demo(o.device);
}

static int cmd_bench(int argc, char **argv) {
  options o;
  int rc = tool_parse_options(argc, argv, OPT_DEVICE | OPT_QUICK | OPT_JSON | OPT_SVG, 0, &o);
  return rc ? rc : tool_bench(o.device, o.quick, o.json, o.svg);
}

static const char *const commands[] = {"devices", "softmax", "log-softmax", "softmax-backward",
                                       "log-softmax-backward", "cross-entropy", "bench", "demo",
                                       "program"};

/* `clsoftmax CMD --help`: the usage lines of CMD (its line and the lines that
 * continue it) and the notes after them. */
static int command_help(const char *cmd) {
  fputs("usage:\n", stdout);
  const char *p = strchr(usage_text, '\n') + 1, *notes = strstr(usage_text, "\n\n");
  int mine = 0;
  size_t clen = strlen(cmd);
  while (p < notes) {
    const char *eol = strchr(p, '\n');
    if (!strncmp(p, "  clsoftmax ", 12))
      mine = !strncmp(p + 12, cmd, clen) && (p[12 + clen] == ' ' || p[12 + clen] == '\n');
    if (mine) fwrite(p, 1, (size_t)(eol + 1 - p), stdout);
    p = eol + 1;
  }
  fputs(notes + 1, stdout);
  return EXIT_OK;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage_text, stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    fputs(usage_text, stdout);
    return EXIT_OK;
  }
  if (!strcmp(cmd, "--version")) {
    printf("clsoftmax %s\n", clsm_version_string());
    return EXIT_OK;
  }
  for (size_t c = 0; c < sizeof commands / sizeof commands[0]; ++c)
    if (!strcmp(cmd, commands[c]))
      for (int i = 2; i < argc && strcmp(argv[i], "--"); ++i)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return command_help(cmd);
  if (!strcmp(cmd, "devices")) {
    if (argc > 2) return tool_usage_error("devices takes no arguments, got '%s'", argv[2]);
    return cmd_devices();
  }
  if (!strcmp(cmd, "softmax")) return cmd_rowop(argc - 2, argv + 2, cmd, 0, 0);
  if (!strcmp(cmd, "log-softmax")) return cmd_rowop(argc - 2, argv + 2, cmd, 1, 0);
  if (!strcmp(cmd, "softmax-backward")) return cmd_rowop(argc - 2, argv + 2, cmd, 0, 1);
  if (!strcmp(cmd, "log-softmax-backward")) return cmd_rowop(argc - 2, argv + 2, cmd, 1, 1);
  if (!strcmp(cmd, "cross-entropy")) return cmd_ce(argc - 2, argv + 2);
  if (!strcmp(cmd, "demo")) return cmd_demo(argc - 2, argv + 2);
  if (!strcmp(cmd, "bench")) return cmd_bench(argc - 2, argv + 2);
  if (!strcmp(cmd, "program")) return cmd_program(argc - 2, argv + 2);
  return tool_usage_error("unknown command '%s'", cmd);
}
