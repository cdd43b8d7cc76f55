/* Vocabulary-parallel cross-entropy over MPI ranks: each rank holds a
 * contiguous slice of the class axis of the logits (here generated, the
 * same on every rank, and sliced), computes its statistics (partial),
 * merges them with MPI_Allreduce (five values a position cross the
 * network, never a logit), and writes the loss and its own columns of the
 * gradient (finish). Rank 0 checks both against one unsharded call.
 *
 *   mpirun -np 4 ./mpi_cross_entropy [float32|bfloat16] [op|builtin]
 *
 * op: the merge as a user-defined MPI operation (clsm_mpi_merge);
 * builtin: MPI_MAX and MPI_SUM only (clsm_mpi_allreduce_builtin). */
#include <mpi.h>

#include "clsoftmax_mpi.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 64, C = 1000 };

static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* n values of v in dtype's storage. */
static void *store(clsm_dtype dt, const float *v, size_t n) {
  void *p = malloc(n * 4 + 4);
  if (!p) return NULL;
  for (size_t i = 0; i < n; ++i) {
    if (dt == CLSM_FLOAT32) ((float *)p)[i] = v[i];
    else ((uint16_t *)p)[i] = to_bf16(v[i]);
  }
  return p;
}
static float load(clsm_dtype dt, const void *p, size_t i) {
  return dt == CLSM_FLOAT32 ? ((const float *)p)[i] : from_bf16(((const uint16_t *)p)[i]);
}

static int fail(clsm_context *ctx, clsm_status st, const char *what) {
  char detail[512] = "";
  if (ctx) clsm_context_error(ctx, detail, sizeof detail);
  fprintf(stderr, "%s: %s %s\n", what, clsm_status_name(st), detail);
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const clsm_dtype dt = argc > 1 && !strcmp(argv[1], "bfloat16") ? CLSM_BFLOAT16 : CLSM_FLOAT32;
  const int builtin = argc > 2 && !strcmp(argv[2], "builtin");
  const size_t es = clsm_dtype_size(dt);

  /* The whole problem, the same on every rank: logits, targets (some
   * ignored, some on the shard boundaries), weights. */
  float *x = malloc(sizeof(float) * N * C), w[C];
  int64_t t[N];
  uint64_t s = 12345;
  for (int i = 0; i < N * C; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = (float)((double)(s >> 11) * 0x1.0p-53 * 12.0 - 6.0);
  }
  for (int c = 0; c < C; ++c) w[c] = 0.5f + (float)(c % 7) * 0.25f;
  for (int n = 0; n < N; ++n) t[n] = n % 9 == 4 ? -100 : (int64_t)((n * 331) % C);
  t[1] = C / size;     /* the first class of rank 1's shard */
  t[2] = C / size - 1; /* the last class of rank 0's */
  const int64_t c0 = (int64_t)C * rank / size, c1 = (int64_t)C * (rank + 1) / size, cw = c1 - c0;
  float *xl = malloc(sizeof(float) * N * (size_t)cw);
  for (int n = 0; n < N; ++n) memcpy(xl + n * cw, x + (int64_t)n * C + c0, sizeof(float) * (size_t)cw);
  void *xs = store(dt, xl, (size_t)(N * cw)), *ws = store(dt, w, C);

  clsm_context *ctx = NULL;
  char detail[512];
  clsm_status st = clsm_context_create(&ctx, NULL, detail, sizeof detail);
  if (st != CLSM_SUCCESS) {
    fprintf(stderr, "rank %d: no device: %s\n", rank, detail);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  opt.label_smoothing = 0.1; /* eps / C with the whole axis' C */
  opt.z_loss = 1e-4;
  const clsm_shard shard = {c0, C};
  const int64_t shape[2] = {N, cw};

  /* 1. partial: this rank's statistics, CLSM_SHARD_STATS floats a position. */
  float stats[N * CLSM_SHARD_STATS];
  st = clsm_cross_entropy_partial_host(ctx, dt, 2, shape, xs, CLSM_INT64, t, &shard, &opt, ws, stats);
  if (st != CLSM_SUCCESS) return fail(ctx, st, "partial");

  /* 2. merge over the ranks. */
  if (builtin) {
    clsm_mpi_allreduce_builtin(stats, CLSM_FLOAT32, CLSM_SHARD_STATS, N, MPI_COMM_WORLD);
  } else {
    MPI_Datatype rec;
    MPI_Op op;
    clsm_mpi_stats_type(CLSM_FLOAT32, CLSM_SHARD_STATS, &rec);
    MPI_Op_create(clsm_mpi_merge, 1, &op);
    MPI_Allreduce(MPI_IN_PLACE, stats, N, rec, op, MPI_COMM_WORLD);
    MPI_Op_free(&op);
    MPI_Type_free(&rec);
  }

  /* 3. finish: the loss (the same on every rank) and this rank's columns
   * of the gradient. */
  unsigned char lossv[8];
  void *g = malloc(es * N * (size_t)cw);
  st = clsm_cross_entropy_finish_host(ctx, dt, 2, shape, xs, CLSM_INT64, t, &shard, &opt, ws, stats,
                                      lossv, g, NULL, NULL, NULL);
  if (st != CLSM_SUCCESS) return fail(ctx, st, "finish");
  const float loss = load(dt, lossv, 0);

  /* Rank 0 gathers the columns and compares with the unsharded call. */
  float lmin = loss, lmax = loss;
  MPI_Allreduce(MPI_IN_PLACE, &lmin, 1, MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &lmax, 1, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
  int ok = 1;
  if (rank == 0) {
    float *grad = malloc(sizeof(float) * N * C);
    for (int r = 0; r < size; ++r) {
      const int64_t r0 = (int64_t)C * r / size, rw = (int64_t)C * (r + 1) / size - r0;
      void *part = r ? malloc(es * N * (size_t)rw) : g;
      if (r) MPI_Recv(part, (int)(es * N * (size_t)rw), MPI_BYTE, r, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      for (int n = 0; n < N; ++n)
        for (int64_t c = 0; c < rw; ++c) grad[(int64_t)n * C + r0 + c] = load(dt, part, (size_t)(n * rw + c));
      if (r) free(part);
    }
    void *xa = store(dt, x, N * C), *ga = malloc(es * N * C);
    unsigned char lu[8];
    const int64_t full[2] = {N, C};
    st = clsm_cross_entropy_host(ctx, dt, 2, full, xa, CLSM_INT64, t, &opt, ws, lu, ga, NULL, NULL, NULL);
    if (st != CLSM_SUCCESS) return fail(ctx, st, "unsharded");
    const float lu_ = load(dt, lu, 0);
    double gerr = 0, gmax = 0;
    for (int i = 0; i < N * C; ++i) {
      gerr = fmax(gerr, fabs((double)grad[i] - load(dt, ga, (size_t)i)));
      gmax = fmax(gmax, fabs((double)load(dt, ga, (size_t)i)));
    }
    /* float32: a few roundings apart; bfloat16: one rounding of the
     * 8-bit storage. */
    const double tol = dt == CLSM_FLOAT32 ? 4e-6 : 0x1p-7;
    ok = lmin == lmax && fabs(loss - lu_) <= tol * fabs(lu_) && gerr <= tol * gmax;
    printf("%d ranks, %s, %s merge: loss %.7g (unsharded %.7g), largest gradient difference %.3g "
           "(of %.3g): %s\n",
           size, clsm_dtype_name(dt), builtin ? "built-in" : "user-op", loss, lu_, gerr, gmax,
           ok ? "ok" : "MISMATCH");
    free(grad), free(xa), free(ga);
  } else {
    MPI_Send(g, (int)(es * N * (size_t)cw), MPI_BYTE, 0, 0, MPI_COMM_WORLD);
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  clsm_context_destroy(ctx);
  free(x), free(xl), free(xs), free(ws), free(g);
  MPI_Finalize();
  return ok ? 0 : 1;
}
