/* Suite "plan": the planner for described devices, with no OpenCL device
 * at all: an H100-like and an MI300-like GPU, an Intel iGPU-like GPU and
 * PoCL's CPU device. Every row of the softmax shape table must get the
 * kernel the table names; chosen geometries, flags and cross-entropy
 * pipelines are checked against the rules worked out by hand; the tuning
 * variables' forcing reaches every kernel. Pure computation: no fork. */
#include "internal.h"
#include "shapes.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A stand-in for a buffer: the planner copies handles and never reads them. */
#define FAKE_MEM ((cl_mem)(uintptr_t)0x1000)

typedef struct device {
  const char *name;
  clsm_caps caps;
} device;

/* The library's described devices (clsm__profiles), in its order. */
static device devices[CLSM_PROFILE_COUNT];
static void describe_devices(void) {
  for (int i = 0; i < CLSM_PROFILE_COUNT; ++i)
    devices[i] = (device){clsm__profiles[i].label, clsm__profile_caps(&clsm__profiles[i])};
}
#define H100 (&devices[0].caps)
#define MI300 (&devices[1].caps)
#define IGPU (&devices[2].caps)
#define POCL (&devices[3].caps)

/* A contiguous row op of `n` tensors of one shape and dtype along dim. */
typedef struct rowop_fixture {
  clsm_tensor t[3];
  clsm_rowop op;
} rowop_fixture;

static void make_rowop(rowop_fixture *f, int backward, int log, clsm_dtype in, clsm_dtype out,
                       int rank, const int64_t *shape, int dim) {
  memset(f, 0, sizeof *f);
  f->op.n = backward ? 3 : 2;
  f->op.backward = backward;
  f->op.flags = log ? F_LOG : 0;
  for (int i = 0; i < f->op.n; ++i) {
    f->t[i] = clsm_tensor_contiguous(FAKE_MEM, 0, i == f->op.n - 1 ? out : in, rank, shape);
    f->op.t[i] = &f->t[i];
    ck_assert(clsm__make_view(&f->t[i], dim, &f->op.v[i]));
  }
  int64_t numel = 1;
  for (int d = 0; d < rank; ++d) numel *= shape[d];
  f->op.C = rank ? shape[dim] : 1;
  f->op.rows = f->op.C ? numel / f->op.C : 0;
}

static void plan_sane(const clsm_plan *p) {
  ck_assert_msg(!p->overflow, "%s: the plan overflowed", p->op);
  for (int i = 0; i < p->nstages; ++i) {
    ck_assert_msg(p->stage[i].global > 0, "stage %d: global 0", i);
    if (p->stage[i].local) ck_assert_msg(p->stage[i].global % p->stage[i].local == 0,
                                         "stage %d: global %zu not a multiple of local %zu", i,
                                         p->stage[i].global, p->stage[i].local);
  }
}

static clsm_plan plan_rowop(const clsm_caps *caps, const size_t *kwg, int backward, int log,
                            clsm_dtype dt, int rank, const int64_t *shape, int dim) {
  rowop_fixture f;
  make_rowop(&f, backward, log, dt, dt, rank, shape, dim);
  clsm_plan p;
  clsm__plan_rowop(caps, kwg, &f.op, dt == CLSM_FLOAT16 ? P_F16 : dt == CLSM_FLOAT64 ? P_F64 : P_F32,
                   &p);
  plan_sane(&p);
  return p;
}

static const char *first_kernel(const clsm_plan *p) {
  return p->empty ? "" : clsm__kernel_name(p->stage[0].kernel);
}

/* _i: device, every row and dim of the shape table, forward and backward. */
START_TEST(test_table_kernels) {
  describe_devices();
  const device *dev = &devices[_i];
  for (int s = 0; s < NSHAPES; ++s) {
    const shape_row *row = &shapes[s];
    const int r = row->rank ? row->rank : 1;
    const char *codes = dev->caps.family == CLSM_FAMILY_CPU ? row->cpu : row->gpu;
    ck_assert_int_eq((int)strlen(codes), r);
    for (int d = 0; d < r; ++d)
      for (int backward = 0; backward < 2; ++backward)
        for (int log = 0; log < 2; ++log) {
          clsm_plan p = plan_rowop(&dev->caps, NULL, backward, log, CLSM_FLOAT32, row->rank,
                                   row->shape, d);
          const char *want = shape_kernel(codes[d], backward, log);
          ck_assert_msg(!strcmp(first_kernel(&p), want),
                        "%s shapes[%d] dim %d %s: planned \"%s\", the table says \"%s\"", dev->name,
                        s, d, p.op, first_kernel(&p), want);
          ck_assert_int_eq(p.nstages, *want ? 1 : 0);
        }
  }
}
END_TEST

static unsigned lanes_log2(unsigned flags) { return (flags >> F_LANES_SHIFT) & 31u; }

/* Work-group rows on the GPU family: lanes per row from the row length,
 * rows per group, and the kernel's own work-group limit. */
START_TEST(test_gpu_geometry) {
  describe_devices();
  /* The online kernel's geometry: register-held rows off. */
  for (int d = 0; d < 6; ++d) devices[d].caps.reg_rows = 0;
  const int64_t vocab[2] = {4096, 32000}, short_rows[2] = {65536, 64}, bwd[2] = {64, 1000};
  for (int d = 0; d < 3; ++d) {
    const clsm_caps *caps = &devices[d].caps;
    /* 32000 classes: 256 lanes a row (8 values a lane would need 4000), one row a group. */
    clsm_plan p = plan_rowop(caps, NULL, 0, 0, CLSM_FLOAT32, 2, vocab, 1);
    ck_assert_str_eq(first_kernel(&p), "clsm_softmax_rows_wg");
    ck_assert_uint_eq(p.stage[0].local, 256);
    ck_assert_uint_eq(lanes_log2(p.stage[0].flags), 8);
    ck_assert_uint_eq(p.stage[0].global, 4096 * 256);
    /* Two local arrays of a float a lane. */
    ck_assert_int_eq(p.stage[0].nargs, 16);
    ck_assert_int_eq(p.stage[0].args[14].kind, ARG_LOCAL);
    ck_assert_uint_eq(p.stage[0].args[14].size, 256 * 4);
    /* 64 classes: 8 lanes a row, 32 rows a group of 256. */
    p = plan_rowop(caps, NULL, 0, 0, CLSM_FLOAT32, 2, short_rows, 1);
    ck_assert_uint_eq(lanes_log2(p.stage[0].flags), 3);
    ck_assert_uint_eq(p.stage[0].global, 65536 / 32 * 256);
    /* Backward, 1000 classes: 16 values a lane -> 64 lanes, 4 rows a group. */
    p = plan_rowop(caps, NULL, 1, 0, CLSM_FLOAT32, 2, bwd, 1);
    ck_assert_str_eq(first_kernel(&p), "clsm_backward_rows_wg");
    ck_assert_uint_eq(lanes_log2(p.stage[0].flags), 6);
    ck_assert_uint_eq(p.stage[0].global, 16 * 256);
  }
  /* A kernel limited to 128 work-items (registers): groups of 128. */
  size_t kwg[K_COUNT_] = {0};
  kwg[K_ROWS_WG] = 128;
  clsm_plan p = plan_rowop(H100, kwg, 0, 0, CLSM_FLOAT32, 2, vocab, 1);
  ck_assert_uint_eq(p.stage[0].local, 128);
  ck_assert_uint_eq(lanes_log2(p.stage[0].flags), 7);
  ck_assert_uint_eq(p.stage[0].global, 4096 * 128);
  /* The limit of the forward kernel does not bind the backward one. */
  p = plan_rowop(H100, kwg, 1, 0, CLSM_FLOAT32, 2, bwd, 1);
  ck_assert_uint_eq(p.stage[0].local, 256);
  /* A non-last axis: a work-item a row, groups of 64. */
  const int64_t mid[3] = {32, 1000, 64};
  p = plan_rowop(MI300, NULL, 0, 0, CLSM_FLOAT32, 3, mid, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_softmax_strided");
  ck_assert_uint_eq(p.stage[0].local, 64);
  ck_assert_uint_eq(p.stage[0].global, 32 * 64);
  /* GPUs never split rows. */
  const int64_t one_row[2] = {1, 1 << 22};
  p = plan_rowop(IGPU, NULL, 0, 0, CLSM_FLOAT32, 2, one_row, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_softmax_rows_wg");
  ck_assert_int_eq(p.nstages, 1);
}
END_TEST

/* Register-held rows: for each GPU profile and benchmark shape, the
 * variant (values a lane, 16-byte loads, group size), the lanes a row and
 * the launch; the online kernel where no variant fits. */
typedef struct reg_case {
  clsm_dtype dt;
  int64_t shape[2];
  size_t max_wg;  /* profiles of at least this group size (0: none: rows_wg) */
  int e, wg, lanes;
} reg_case;

START_TEST(test_reg_rows) {
  describe_devices();
  static const reg_case cases[] = {
      {CLSM_FLOAT32, {8192, 4096}, 256, 16, 256, 256},
      {CLSM_FLOAT32, {4096, 32000}, 1024, 32, 1024, 1024},
      {CLSM_FLOAT32, {65536, 128}, 256, 8, 256, 16},
      {CLSM_FLOAT32, {65536, 1024}, 256, 8, 256, 128},
      {CLSM_FLOAT32, {1, 1048576}, 0, 0, 0, 0},
      {CLSM_FLOAT16, {4096, 32000}, 1024, 32, 1024, 1024},
      {CLSM_FLOAT16, {8192, 4096}, 256, 16, 256, 256},
      {CLSM_FLOAT64, {8192, 4096}, 256, 16, 256, 256},
      {CLSM_FLOAT64, {4096, 32000}, 0, 0, 0, 0}, /* 32 doubles a lane: online */
      {CLSM_FLOAT32, {3, 8}, 256, 8, 256, 1},
  };
  const int gpus[] = {0, 1, 2, 4, 5};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c)
    for (int g = 0; g < 5; ++g)
      for (int log = 0; log < 2; ++log) {
        const reg_case *rc = &cases[c];
        const device *dev = &devices[gpus[g]];
        clsm_plan p = plan_rowop(&dev->caps, NULL, 0, log, rc->dt, 2, rc->shape, 1);
        const int reg = rc->max_wg && dev->caps.max_wg_size >= (size_t)rc->wg;
        char text[512];
        clsm__plan_text(&p, text, sizeof text);
        if (!reg) {
          ck_assert_msg(!strcmp(first_kernel(&p), "clsm_softmax_rows_wg"), "%s %s", dev->name, text);
          continue;
        }
        const int var = (p.stage[0].kernel - K_REG0) / CLSM_REG_PER;
        ck_assert_msg(p.stage[0].kernel == clsm__reg_kernel(var, log), "%s %s", dev->name, text);
        ck_assert_msg(clsm__reg_variants[var].e == rc->e && clsm__reg_variants[var].wg == rc->wg &&
                          clsm__reg_variants[var].vec == 1,
                      "%s %s", dev->name, text);
        ck_assert_uint_eq(lanes_log2(p.stage[0].flags), (unsigned)__builtin_ctz((unsigned)rc->lanes));
        ck_assert_uint_eq(p.stage[0].local, (size_t)rc->wg);
        const size_t per = (size_t)rc->wg / (size_t)rc->lanes;
        ck_assert_uint_eq(p.stage[0].global, ((size_t)rc->shape[0] + per - 1) / per * (size_t)rc->wg);
      }
  /* Rows not on 16 bytes (a float32 view from element 1, rows of 4097):
   * the scalar-load variant of the same size. */
  const int64_t odd[2] = {64, 4097};
  rowop_fixture f;
  make_rowop(&f, 0, 0, CLSM_FLOAT32, CLSM_FLOAT32, 2, odd, 1);
  f.op.v[0].base = 1;
  clsm_plan p;
  clsm__plan_rowop(H100, NULL, &f.op, P_F32, &p);
  int var = (p.stage[0].kernel - K_REG0) / CLSM_REG_PER;
  ck_assert_int_ge(p.stage[0].kernel, K_REG0);
  ck_assert_int_eq(clsm__reg_variants[var].vec, 0);
  ck_assert_int_eq(clsm__reg_variants[var].e, 32);
  ck_assert_int_eq(clsm__reg_variants[var].wg, 256);
  /* What clsm_context_prepare builds: the variants whose group the device
   * takes (MI300-like: 256 lanes; H100-like: all; float64 no 32-value one). */
  for (int v = 0; v < CLSM_REG_VARIANTS; ++v) {
    const int wide = clsm__reg_variants[v].wg > 256;
    ck_assert_int_eq(clsm__reg_fits(MI300, P_F32, v), !wide);
    ck_assert_int_eq(clsm__reg_fits(H100, P_F32, v), 1);
    ck_assert_int_eq(clsm__reg_fits(H100, P_F64, v), clsm__reg_variants[v].e <= 16);
  }
  clsm_caps tiny = *H100;
  tiny.local_mem_size = 2 * 256 * sizeof(float);
  ck_assert(clsm__reg_fits(&tiny, P_F32, 0) && !clsm__reg_fits(&tiny, P_F64, 0));
  /* A built variant whose kernel takes fewer lanes than its group: the
   * online kernel, not a smaller group. */
  const int64_t vocab[2] = {4096, 32000};
  size_t kwg[K_COUNT_] = {0};
  kwg[clsm__reg_kernel(3, REG_SOFTMAX)] = 512;
  p = plan_rowop(H100, kwg, 0, 0, CLSM_FLOAT32, 2, vocab, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_softmax_rows_wg");
  /* CLSM_REG_ROWS=0, CLSM_KERNEL and CLSM_WG_SIZE keep the online kernel;
   * the backward and non-last axes never take it. */
  clsm_caps off = *H100;
  off.reg_rows = 0;
  p = plan_rowop(&off, NULL, 0, 0, CLSM_FLOAT32, 2, vocab, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_softmax_rows_wg");
  off = *H100;
  off.wg_forced = 1;
  p = plan_rowop(&off, NULL, 0, 0, CLSM_FLOAT32, 2, vocab, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_softmax_rows_wg");
  p = plan_rowop(H100, NULL, 1, 0, CLSM_FLOAT32, 2, vocab, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_backward_rows_wg");
}
END_TEST

/* The CPU family: batches of work-items, kept exps, blocks, tiles, splits. */
START_TEST(test_cpu_geometry) {
  describe_devices();
  /* 8 rows of 1000: one work-item a row, groups of 1 (8 rows / 16 slots);
   * 4 KB rows keep exp in y. */
  const int64_t small[2] = {8, 1000};
  clsm_plan p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT32, 2, small, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_softmax_rows_cpu");
  ck_assert_uint_eq(p.stage[0].local, 1);
  ck_assert_uint_eq(p.stage[0].global, 8);
  ck_assert_uint_eq(p.stage[0].flags & (F_RECOMPUTE | F_BLOCKS), 0);
  /* float16 output: the kept exps in local scratch, C floats a work-item. */
  p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT16, 2, small, 1);
  ck_assert_uint_eq(p.stage[0].flags & F_RECOMPUTE, 0);
  ck_assert_int_eq(p.stage[0].args[p.stage[0].nargs - 1].kind, ARG_LOCAL);
  ck_assert_uint_eq(p.stage[0].args[p.stage[0].nargs - 1].size, 1000 * 4);
  /* 4096 rows: groups of 64 (4096 / 16 slots, at most 64). */
  const int64_t many[2] = {4096, 1000};
  p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT32, 2, many, 1);
  ck_assert_uint_eq(p.stage[0].local, 64);
  /* 64 rows of 65536 (256 KB): past the keep limit, in cache-sized blocks. */
  const int64_t long_rows[2] = {64, 65536};
  p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT32, 2, long_rows, 1);
  ck_assert_uint_eq(p.stage[0].flags & (F_RECOMPUTE | F_BLOCKS), F_RECOMPUTE | F_BLOCKS);
  /* Two rows of 2^20: split in 8 chunks a row (16 work-items for 2 cores),
   * exps kept in y between the two kernels; partial pairs in scratch. */
  const int64_t two[2] = {2, 1 << 20};
  p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT32, 2, two, 1);
  ck_assert_int_eq(p.nstages, 2);
  ck_assert_str_eq(clsm__kernel_name(p.stage[0].kernel), "clsm_softmax_split_partials");
  ck_assert_str_eq(clsm__kernel_name(p.stage[1].kernel), "clsm_softmax_split_write");
  ck_assert_uint_eq(p.stage[0].global, 16);
  ck_assert_uint_eq(p.stage[0].flags & F_BLOCKS, F_BLOCKS);
  ck_assert_uint_eq(p.scratch_bytes, 16 * 2 * 4);
  p = plan_rowop(POCL, NULL, 1, 1, CLSM_FLOAT32, 2, two, 1);
  ck_assert_str_eq(clsm__kernel_name(p.stage[0].kernel), "clsm_backward_split_partials");
  /* Class axis in the middle, inner 256: blocks of 16 vectors (256 positions). */
  const int64_t mid[3] = {16, 100, 256};
  p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT32, 3, mid, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_softmax_inner_cpu");
  ck_assert_uint_eq((p.stage[0].flags >> F_NV_SHIFT) & 0xffu, 16);
  ck_assert_uint_eq(p.stage[0].flags & (F_TILE | F_RECOMPUTE), 0);
  ck_assert_uint_eq(p.stage[0].global, 16);
  /* Rows 4400 bytes apart (shapes[23] along dim 0, C = 37): a tile in local
   * memory of 32 vectors a row, 37 rows and 10 chunk references (3 blocks
   * of 512 positions). */
  const int64_t tile[2] = {37, 1100};
  p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT32, 2, tile, 0);
  ck_assert_uint_eq(p.stage[0].flags & F_TILE, F_TILE);
  ck_assert_uint_eq((p.stage[0].flags >> F_NV_SHIFT) & 0xffu, 32);
  ck_assert_uint_eq(p.stage[0].global, 3);
  ck_assert_uint_eq(p.stage[0].args[p.stage[0].nargs - 1].size, 47u * 16 * 4 * 32);
  /* With 64 KB of local memory (half of it for the tile) it narrows to 8 vectors. */
  clsm_caps small_local = *POCL;
  small_local.local_mem_size = 64 * 1024;
  p = plan_rowop(&small_local, NULL, 0, 0, CLSM_FLOAT32, 2, tile, 0);
  ck_assert_uint_eq((p.stage[0].flags >> F_NV_SHIFT) & 0xffu, 8);
  ck_assert_uint_eq(p.stage[0].global, 9);
  /* shapes[21] along dim 1 keeps its 600 KB block, shapes[22] (1.1 MB) does not. */
  p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT32, 3, shapes[21].shape, 1);
  ck_assert_uint_eq(p.stage[0].flags & F_RECOMPUTE, 0);
  p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT32, 3, shapes[22].shape, 1);
  ck_assert_uint_eq(p.stage[0].flags & F_RECOMPUTE, F_RECOMPUTE);
}
END_TEST

/* The tuning variables' forcing, as the Release suite's variants use it. */
START_TEST(test_forcing) {
  describe_devices();
  clsm_caps c = *POCL;
  const int64_t s[2] = {64, 80};
  static const struct {
    int forced, dim;
    const char *kernel;
  } cases[] = {
      {K_STRIDED, 1, "clsm_softmax_strided"}, {K_ROWS_WG, 1, "clsm_softmax_rows_wg"},
      {K_GENERIC, 1, "clsm_softmax_generic"}, {K_INNER_CPU, 0, "clsm_softmax_inner_cpu"},
      {K_ROWS_CPU, 0, "clsm_softmax_inner_cpu"}, /* rows_cpu needs contiguous rows */
      {K_ROWS_CPU, 1, "clsm_softmax_rows_cpu"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    c.forced_kernel = cases[i].forced;
    clsm_plan p = plan_rowop(&c, NULL, 0, 0, CLSM_FLOAT32, 2, s, cases[i].dim);
    ck_assert_msg(!strcmp(first_kernel(&p), cases[i].kernel), "forced %d dim %d: %s",
                  cases[i].forced, cases[i].dim, first_kernel(&p));
  }
  c = *POCL;
  c.split = 1; /* every contiguous row split, chunks of 16 or more */
  clsm_plan p = plan_rowop(&c, NULL, 0, 0, CLSM_FLOAT32, 2, s, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_softmax_split_partials");
  c.split = 0;
  const int64_t two[2] = {2, 1 << 20};
  p = plan_rowop(&c, NULL, 0, 0, CLSM_FLOAT32, 2, two, 1);
  ck_assert_str_eq(first_kernel(&p), "clsm_softmax_rows_cpu");
  c = *POCL;
  c.inner_tile = 1; /* a tile whatever the stride */
  const int64_t mid[3] = {16, 100, 256};
  p = plan_rowop(&c, NULL, 0, 0, CLSM_FLOAT32, 3, mid, 1);
  ck_assert_uint_eq(p.stage[0].flags & F_TILE, F_TILE);
  c = *POCL;
  c.row_blocks = 0;
  const int64_t long_rows[2] = {64, 65536};
  p = plan_rowop(&c, NULL, 0, 0, CLSM_FLOAT32, 2, long_rows, 1);
  ck_assert_uint_eq(p.stage[0].flags & F_BLOCKS, 0);
}
END_TEST

/* A cross-entropy call over (N, C[, inner]) float32 logits, int64 targets. */
typedef struct ce_fixture {
  clsm_tensor x, t, loss, grad;
  clsm_ce_options opt;
  clsm_ce_call c;
} ce_fixture;

static void make_ce(ce_fixture *f, int rank, const int64_t *shape, int grad, clsm_reduction red) {
  memset(f, 0, sizeof *f);
  f->opt = clsm_ce_options_default();
  f->opt.reduction = red;
  f->x = clsm_tensor_contiguous(FAKE_MEM, 0, CLSM_FLOAT32, rank, shape);
  int64_t pshape[8];
  int pr = 0;
  for (int d = 0; d < rank; ++d)
    if (d != 1) pshape[pr++] = shape[d];
  f->t = clsm_tensor_contiguous(FAKE_MEM, 0, CLSM_INT64, pr, pshape);
  f->loss = clsm_tensor_contiguous(FAKE_MEM, 0, CLSM_FLOAT32, 0, NULL);
  f->grad = clsm_tensor_contiguous(FAKE_MEM, 0, CLSM_FLOAT32, rank, shape);
  clsm_ce_call *c = &f->c;
  c->x = &f->x, c->t = &f->t, c->loss = &f->loss, c->grad = grad ? &f->grad : NULL;
  c->opt = &f->opt;
  c->program = P_F32;
  c->tkind = TK_INT64;
  ck_assert(clsm__make_view(&f->x, 1, &c->xv));
  if (grad) ck_assert(clsm__make_view(&f->grad, 1, &c->gv));
  c->outer = shape[0];
  c->C = shape[1];
  c->inner = 1;
  for (int d = 2; d < rank; ++d) c->inner *= shape[d];
  c->P = c->outer * c->inner;
  c->tp.mem = FAKE_MEM;
  c->tp.so = c->inner;
  c->tp.si = 1;
}

/* The kernels of a plan, ", "-separated. */
static void kernels_of(const clsm_plan *p, char *buf, size_t size) {
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; i < p->nstages && n < size; ++i)
    n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "",
                          clsm__kernel_name(p->stage[i].kernel) + 5 /* "clsm_" */);
}

static clsm_plan plan_ce(const clsm_caps *caps, const size_t *kwg, int rank, const int64_t *shape,
                         int grad, clsm_reduction red, char *kernels, size_t size) {
  ce_fixture f;
  make_ce(&f, rank, shape, grad, red);
  clsm_plan p;
  clsm__plan_ce(caps, kwg, &f.c, &p);
  plan_sane(&p);
  kernels_of(&p, kernels, size);
  return p;
}

START_TEST(test_ce_pipelines) {
  describe_devices();
  char k[256];
  static const struct {
    int dev, rank;
    int64_t shape[3];
    int grad;
    clsm_reduction red;
    const char *kernels;
  } cases[] = {
      /* The tutorial's batch: 64 x 80, mean. */
      {3, 2, {64, 80}, 0, CLSM_REDUCTION_MEAN, "ce_prep, ce_reduce, ce_rows_cpu, ce_reduce, ce_finish"},
      /* Sum needs no totals before the rows. */
      {3, 2, {64, 80}, 0, CLSM_REDUCTION_SUM, "ce_prep, ce_rows_cpu, ce_reduce, ce_finish"},
      /* Per-position losses: no reduction at all. */
      {3, 2, {64, 80}, 0, CLSM_REDUCTION_NONE, "ce_prep, ce_rows_cpu, ce_finish"},
      /* Many short rows: 16 a work-item. */
      {3, 2, {4096, 80}, 1, CLSM_REDUCTION_MEAN,
       "ce_prep, ce_reduce, ce_rows16_cpu, ce_reduce, ce_finish"},
      /* Long rows without a gradient to keep exps in: one read for (max, sum). */
      {3, 2, {4, 32000}, 0, CLSM_REDUCTION_MEAN,
       "ce_prep, ce_reduce, ce_rows_long_cpu, ce_reduce, ce_finish"},
      /* Few long rows on 2 cores: split. */
      {3, 2, {4, 100000}, 1, CLSM_REDUCTION_MEAN,
       "ce_prep, ce_reduce, ce_split_partials, ce_split_rows, ce_reduce, ce_finish"},
      /* Class axis in the middle. */
      {3, 3, {8, 10, 64}, 1, CLSM_REDUCTION_MEAN,
       "ce_prep, ce_reduce, ce_inner_cpu, ce_reduce, ce_finish"},
      /* GPUs: contiguous rows in registers, several a group, up to 8192
       * classes (32 values a lane, 256 lanes); otherwise a work-group a row. */
      {0, 2, {64, 80}, 0, CLSM_REDUCTION_MEAN, "ce_prep, ce_reduce, ce_reg, ce_reduce, ce_finish"},
      {1, 2, {65536, 128}, 1, CLSM_REDUCTION_MEAN, "ce_prep, ce_reduce, ce_reg, ce_reduce, ce_finish"},
      {5, 2, {8192, 8192}, 1, CLSM_REDUCTION_SUM, "ce_prep, ce_reg, ce_reduce, ce_finish"},
      {4, 2, {4096, 8193}, 1, CLSM_REDUCTION_SUM, "ce_prep, ce_rows_wg, ce_reduce, ce_finish"},
      {1, 3, {8, 10, 64}, 1, CLSM_REDUCTION_SUM, "ce_prep, ce_rows_wg, ce_reduce, ce_finish"},
      {2, 2, {4, 100000}, 1, CLSM_REDUCTION_MEAN,
       "ce_prep, ce_reduce, ce_rows_wg, ce_reduce, ce_finish"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    plan_ce(&devices[cases[i].dev].caps, NULL, cases[i].rank, cases[i].shape, cases[i].grad,
            cases[i].red, k, sizeof k);
    ck_assert_msg(!strcmp(k, cases[i].kernels), "case %zu on %s: planned %s", i,
                  devices[cases[i].dev].name, k);
  }
  /* H100, 80 classes: 8 values a lane, 16 lanes a row, 16 rows a group
   * of 256, 16-byte loads; the totals' one group takes 1024 lanes, or the
   * reduction kernel's own limit. */
  const int64_t s[2] = {64, 80};
  clsm_plan p = plan_ce(H100, NULL, 2, s, 1, CLSM_REDUCTION_MEAN, k, sizeof k);
  int var = (p.stage[2].kernel - K_REG0) / CLSM_REG_PER;
  ck_assert(p.stage[2].kernel == clsm__reg_kernel(var, REG_CE));
  ck_assert(clsm__reg_variants[var].e == 8 && clsm__reg_variants[var].vec == 1);
  ck_assert_uint_eq((p.stage[2].flags >> CE_LANES_SHIFT) & 31u, 4);
  ck_assert_uint_eq(p.stage[2].local, 256);
  ck_assert_uint_eq(p.stage[2].global, 4 * 256);
  ck_assert_uint_eq(p.stage[1].local, 1024);
  /* Rows not on 16 bytes (the logits from element 1): the scalar variant;
   * probability targets, a softcap, CLSM_REG_ROWS=0 or a built kernel
   * under its group: a work-group a row, of 128 lanes for 80 classes (the
   * largest power of two whose half is below 80). */
  ce_fixture f;
  make_ce(&f, 2, s, 1, CLSM_REDUCTION_MEAN);
  f.c.xv.base = 1;
  clsm__plan_ce(H100, NULL, &f.c, &p);
  var = (p.stage[2].kernel - K_REG0) / CLSM_REG_PER;
  ck_assert(p.stage[2].kernel == clsm__reg_kernel(var, REG_CE) && clsm__reg_variants[var].vec == 0);
  make_ce(&f, 2, s, 1, CLSM_REDUCTION_MEAN);
  f.c.prob = 1;
  clsm__plan_ce(H100, NULL, &f.c, &p);
  ck_assert_str_eq(clsm__kernel_name(p.stage[2].kernel), "clsm_ce_rows_wg");
  make_ce(&f, 2, s, 1, CLSM_REDUCTION_MEAN);
  f.opt.softcap = 5.0;
  clsm__plan_ce(H100, NULL, &f.c, &p);
  ck_assert_str_eq(clsm__kernel_name(p.stage[2].kernel), "clsm_ce_rows_wg");
  clsm_caps noreg = *H100;
  noreg.reg_rows = 0;
  p = plan_ce(&noreg, NULL, 2, s, 1, CLSM_REDUCTION_MEAN, k, sizeof k);
  ck_assert_str_eq(clsm__kernel_name(p.stage[2].kernel), "clsm_ce_rows_wg");
  ck_assert_uint_eq(p.stage[2].local, 128);
  ck_assert_uint_eq(p.stage[2].global, 64 * 128);
  size_t kwg0[K_COUNT_] = {0};
  kwg0[clsm__reg_kernel(0, REG_CE)] = 128; /* the next variant, then the online kernel */
  p = plan_ce(H100, kwg0, 2, s, 1, CLSM_REDUCTION_MEAN, k, sizeof k);
  ck_assert(p.stage[2].kernel == clsm__reg_kernel(1, REG_CE));
  kwg0[clsm__reg_kernel(1, REG_CE)] = kwg0[clsm__reg_kernel(2, REG_CE)] = 128;
  p = plan_ce(H100, kwg0, 2, s, 1, CLSM_REDUCTION_MEAN, k, sizeof k);
  ck_assert_str_eq(clsm__kernel_name(p.stage[2].kernel), "clsm_ce_rows_wg");
  size_t kwg[K_COUNT_] = {0};
  kwg[K_CE_REDUCE] = 512;
  p = plan_ce(H100, kwg, 2, s, 1, CLSM_REDUCTION_MEAN, k, sizeof k);
  ck_assert_uint_eq(p.stage[1].local, 512);
  /* MI300: 256 lanes at most. */
  p = plan_ce(MI300, NULL, 2, s, 1, CLSM_REDUCTION_MEAN, k, sizeof k);
  ck_assert_uint_eq(p.stage[1].local, 256);
  /* Scratch: four arrays of P values and four totals. */
  ck_assert_uint_eq(p.scratch_bytes, (4 * 64 + 4) * 4);
  /* PoCL: the gradient keeps exps (CE_KEEP), 64 lanes for the totals. */
  p = plan_ce(POCL, NULL, 2, s, 1, CLSM_REDUCTION_MEAN, k, sizeof k);
  ck_assert_uint_eq(p.stage[2].flags & CE_KEEP, CE_KEEP);
  ck_assert_uint_eq(p.stage[1].local, 64);
  /* Forcing 16 rows a work-item where the plan would not. */
  clsm_caps c = *POCL;
  c.ce_rows16 = 1;
  plan_ce(&c, NULL, 2, s, 0, CLSM_REDUCTION_MEAN, k, sizeof k);
  ck_assert_str_eq(k, "ce_prep, ce_reduce, ce_rows16_cpu, ce_reduce, ce_finish");
}
END_TEST

/* A shard's phases: the partial validates the targets (against the whole
 * axis, the prep's C) and writes the statistics; the finish is the
 * unsharded pipeline with the shard's rows kernel: a work-item a position
 * on CPUs, a work-group a position on GPUs within the kernel's limit. */
START_TEST(test_shard_pipelines) {
  describe_devices();
  char k[256];
  const int64_t s[2] = {64, 8000}, st_shape[2] = {64, SHARD_K};
  clsm_tensor stats = clsm_tensor_contiguous(FAKE_MEM, 0, CLSM_FLOAT32, 2, st_shape);
  for (int dev = 0; dev < 4; ++dev) {
    ce_fixture f;
    make_ce(&f, 2, s, 0, CLSM_REDUCTION_MEAN);
    f.c.phase = CE_PHASE_PARTIAL, f.c.first = 8000, f.c.classes = 32000, f.c.stats = &stats;
    f.c.loss = NULL;
    clsm_plan p;
    clsm__plan_ce(&devices[dev].caps, NULL, &f.c, &p);
    plan_sane(&p);
    kernels_of(&p, k, sizeof k);
    const int gpu = devices[dev].caps.family == CLSM_FAMILY_GPU;
    ck_assert_msg(!strcmp(k, gpu ? "ce_prep, ce_shard_partial_wg" : "ce_prep, ce_shard_partial"),
                  "%s: %s", devices[dev].name, k);
    /* GPUs: a work-group a position, as wide as the device's row groups. */
    if (gpu) ck_assert_uint_eq(p.stage[1].global, 64 * p.stage[1].local);
    ck_assert_str_eq(p.op, "cross_entropy_partial");
    clsm_ce_params prm;
    memcpy(&prm, p.data + p.stage[0].args[p.stage[0].nargs - 1].off, sizeof prm);
    ck_assert_int_eq(prm.classes, 32000);
    ck_assert_int_eq(prm.first, 8000);
    make_ce(&f, 2, s, 1, CLSM_REDUCTION_MEAN);
    f.c.phase = CE_PHASE_FINISH, f.c.first = 8000, f.c.classes = 32000, f.c.stats = &stats;
    clsm__plan_ce(&devices[dev].caps, NULL, &f.c, &p);
    plan_sane(&p);
    kernels_of(&p, k, sizeof k);
    ck_assert_msg(!strcmp(k, gpu ? "ce_prep, ce_reduce, ce_shard_rows_wg, ce_reduce, ce_finish"
                                 : "ce_prep, ce_reduce, ce_shard_rows, ce_reduce, ce_finish"),
                  "%s: %s", devices[dev].name, k);
    ck_assert_uint_eq(p.stage[2].global % p.stage[2].local, 0);
    ck_assert_uint_ge(p.stage[2].global, 64);
  }
  /* A kernel limited to 32 lanes on the H100-like device: groups of 32. */
  size_t kwg[K_COUNT_] = {0};
  kwg[K_CE_SHARD_ROWS_WG] = 32;
  ce_fixture f;
  make_ce(&f, 2, s, 1, CLSM_REDUCTION_SUM);
  f.c.phase = CE_PHASE_FINISH, f.c.classes = 32000, f.c.stats = &stats;
  clsm_plan p;
  clsm__plan_ce(H100, kwg, &f.c, &p);
  kernels_of(&p, k, sizeof k);
  ck_assert_str_eq(k, "ce_prep, ce_shard_rows_wg, ce_reduce, ce_finish");
  ck_assert_uint_eq(p.stage[1].local, 32);
  ck_assert_uint_eq(p.stage[1].global, 64 * 32);
}
END_TEST

/* The description names every kernel and its geometry. */
START_TEST(test_plan_text) {
  describe_devices();
  const int64_t two[2] = {2, 1 << 20};
  clsm_plan p = plan_rowop(POCL, NULL, 0, 1, CLSM_FLOAT32, 2, two, 1);
  char text[512];
  clsm__plan_text(&p, text, sizeof text);
  ck_assert_msg(strstr(text, "log_softmax float32:") == text, "%s", text);
  ck_assert_msg(strstr(text, "clsm_softmax_split_partials global 16 local 1") != NULL, "%s", text);
  ck_assert_msg(strstr(text, "; clsm_softmax_split_write global 16 local 1") != NULL, "%s", text);
  ck_assert_msg(strstr(text, "scratch 128") != NULL, "%s", text);
  const int64_t empty[2] = {0, 5};
  p = plan_rowop(POCL, NULL, 0, 0, CLSM_FLOAT32, 2, empty, 1);
  clsm__plan_text(&p, text, sizeof text);
  ck_assert_str_eq(text, "softmax float32: empty (a marker)");
}
END_TEST

/* Parses "`(2, 3) dim 1 strides (3, 1)`" (strides optional). */
static int parse_example(const char *cell, int *rank, int64_t *shape, int *dim, int64_t *strides,
                         int *strided) {
  const char *p = strchr(cell, '(');
  if (!p) return 0;
  *rank = 0;
  ++p;
  while (*p && *p != ')') {
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p) return 0;
    shape[(*rank)++] = v;
    p = end;
    while (*p == ',' || *p == ' ') ++p;
  }
  if (sscanf(p, ") dim %d", dim) != 1) return 0;
  const char *st = strstr(p, "strides (");
  *strided = st != NULL;
  if (st) {
    p = st + 9;
    for (int d = 0; d < *rank; ++d) {
      char *end;
      strides[d] = strtoll(p, &end, 10);
      p = end;
      while (*p == ',' || *p == ' ') ++p;
    }
  }
  return 1;
}

/* The backticked names of a cell, " + "-joined; "" for "a marker". */
static void cell_kernels(const char *cell, char *out, size_t size) {
  out[0] = '\0';
  size_t n = 0;
  for (const char *p = strchr(cell, '`'); p; p = strchr(p + 1, '`')) {
    const char *q = strchr(p + 1, '`');
    if (!q) break;
    n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%.*s", n ? " + " : "", (int)(q - p - 1),
                          p + 1);
    p = q;
  }
}

/* docs/design.md's table from shape class to kernel, checked row by row. */
START_TEST(test_design_table) {
  describe_devices();
  char path[512];
  snprintf(path, sizeof path, "%s/docs/design.md", CLSM_SOURCE_DIR);
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot read %s", path);
  char line[1024];
  int in_table = 0, rows = 0;
  while (fgets(line, sizeof line, f)) {
    if (strstr(line, "| shape class | example | CPU family | GPU family |")) {
      in_table = 1;
      continue;
    }
    if (!in_table) continue;
    if (line[0] != '|') break;
    if (!strncmp(line, "| ---", 5)) continue;
    char *cells[6] = {0};
    int nc = 0;
    for (char *tok = strtok(line, "|"); tok && nc < 6; tok = strtok(NULL, "|")) cells[nc++] = tok;
    ck_assert_msg(nc >= 4, "a row of %d cells", nc);
    int rank, dim, strided;
    int64_t shape[8], strides[8];
    ck_assert_msg(parse_example(cells[1], &rank, shape, &dim, strides, &strided),
                  "cannot read the example %s", cells[1]);
    for (int fam = 0; fam < 2; ++fam) {
      const clsm_caps *caps = fam == 0 ? POCL : H100;
      rowop_fixture fx;
      memset(&fx, 0, sizeof fx);
      fx.op.n = 2;
      for (int i = 0; i < 2; ++i) {
        fx.t[i] = clsm_tensor_contiguous(FAKE_MEM, 0, CLSM_FLOAT32, rank, shape);
        if (strided) memcpy(fx.t[i].strides, strides, sizeof(int64_t) * (size_t)rank);
        fx.op.t[i] = &fx.t[i];
        if (!clsm__make_view(&fx.t[i], dim, &fx.op.v[i])) fx.op.generic = 1;
      }
      int64_t numel = 1;
      for (int d = 0; d < rank; ++d) numel *= shape[d];
      fx.op.C = rank ? shape[dim] : 1;
      fx.op.rows = fx.op.C ? numel / fx.op.C : 0;
      clsm_plan p;
      clsm__plan_rowop(caps, NULL, &fx.op, P_F32, &p);
      plan_sane(&p);
      char want[128], got[128] = "";
      cell_kernels(cells[2 + fam], want, sizeof want);
      size_t n = 0;
      for (int i = 0; i < p.nstages; ++i)
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%s", i ? " + " : "",
                              clsm__kernel_name(p.stage[i].kernel) + strlen("clsm_softmax_"));
      ck_assert_msg(!strcmp(got, want), "design.md row \"%s\" (%s): planned \"%s\", the table says \"%s\"",
                    cells[0], fam ? "GPU" : "CPU", got, want);
      if (strstr(cells[2 + fam], "tile")) ck_assert_uint_eq(p.stage[0].flags & F_TILE, F_TILE);
      else if (p.nstages) ck_assert_uint_eq(p.stage[0].flags & F_TILE, 0);
    }
    ++rows;
  }
  fclose(f);
  ck_assert_int_ge(rows, 7);
}
END_TEST

/* Attention softmax: per device the family's attention kernel; CPU rows
 * that fit KEEP_BYTES keep z (16-bit outputs in local scratch), longer
 * ones do not; GPU lanes from the row, capped by the kernel's limit; a
 * large causal output stores its tails past the cache; the backward with
 * dsinks adds the head reduction and its scratch. */
static clsm_plan plan_attn(const clsm_caps *caps, const size_t *kwg, int backward, unsigned flags,
                           clsm_dtype out, int64_t rows, int64_t C, int64_t heads) {
  clsm_attn_call c;
  memset(&c, 0, sizeof c);
  c.backward = backward;
  c.program = out == CLSM_FLOAT64 ? P_F64 : out == CLSM_FLOAT16 ? P_F16 : P_F32;
  c.out_dtype = out;
  c.p.rows = rows;
  c.p.C = C;
  c.p.heads = heads;
  c.p.hdiv = 1;
  c.p.flags = flags;
  c.p.sc[0] = c.p.sc[1] = c.p.sc[2] = 1;
  clsm_plan p;
  clsm__plan_attn(caps, kwg, &c, &p);
  plan_sane(&p);
  return p;
}

START_TEST(test_attention_plans) {
  describe_devices();
  const int64_t rows = 4 * 16 * 1024, C = 1024;
  for (int d = 0; d < 4; ++d) {
    const clsm_caps *caps = &devices[d].caps;
    const int cpu = caps->family == CLSM_FAMILY_CPU;
    clsm_plan p = plan_attn(caps, NULL, 0, A_CAUSAL, CLSM_FLOAT32, rows, C, 16);
    ck_assert_int_eq(p.nstages, 1);
    ck_assert_str_eq(first_kernel(&p), cpu ? "clsm_attn_rows_cpu" : "clsm_attn_rows_wg");
    if (cpu) {
      ck_assert(p.stage[0].flags & A_KEEP);
      ck_assert(p.stage[0].flags & F_NT); /* 256 MB of output past a 32 MB cache */
      ck_assert_uint_eq(p.stage[0].global % p.stage[0].local, 0);
      /* float16: z in local scratch, C floats a work-item. */
      clsm_plan h = plan_attn(caps, NULL, 0, F_LOG, CLSM_FLOAT16, rows, C, 16);
      ck_assert(h.stage[0].flags & A_KEEP);
      size_t lbytes = 0;
      for (int a = 0; a < h.stage[0].nargs; ++a)
        if (h.stage[0].args[a].kind == ARG_LOCAL) lbytes = h.stage[0].args[a].size;
      ck_assert_uint_eq(lbytes, h.stage[0].local * C * sizeof(float));
      /* Rows past KEEP_BYTES compute z again. */
      clsm_plan l = plan_attn(caps, NULL, 0, 0, CLSM_FLOAT32, 4, 40000, 1);
      ck_assert(!(l.stage[0].flags & A_KEEP));
    } else {
      /* 1024 keys: ROW_VPT a lane, so 128 lanes, local / 128 rows a group. */
      const size_t local = p.stage[0].local;
      ck_assert_uint_eq(local, caps->wg_size);
      ck_assert_uint_eq(lanes_log2(p.stage[0].flags), 7);
      ck_assert_uint_eq(p.stage[0].global, (size_t)(rows / (int64_t)(local / 128)) * local);
      /* A kernel limit below the group size halves the group. */
      size_t kwg[K_COUNT_] = {0};
      kwg[K_ATTN_ROWS_WG] = local / 2;
      clsm_plan q = plan_attn(caps, kwg, 0, 0, CLSM_FLOAT32, rows, C, 16);
      ck_assert_uint_eq(q.stage[0].local, local / 2);
    }
    /* Backward with dsinks: the row kernel, then one work-item a head. */
    clsm_plan b = plan_attn(caps, NULL, 1, A_DSINKS, CLSM_FLOAT32, rows, C, 16);
    ck_assert_int_eq(b.nstages, 2);
    ck_assert_str_eq(clsm__kernel_name(b.stage[0].kernel), cpu ? "clsm_attn_bwd_rows_cpu" : "clsm_attn_bwd_rows_wg");
    ck_assert_str_eq(clsm__kernel_name(b.stage[1].kernel), "clsm_attn_dsinks");
    ck_assert_uint_eq(b.stage[1].global, 16);
    ck_assert_uint_eq(b.scratch_bytes, (size_t)rows * sizeof(float));
    /* No rows: nothing, unless dsinks must be written (zeros). */
    ck_assert(plan_attn(caps, NULL, 0, 0, CLSM_FLOAT32, 0, C, 16).empty);
    clsm_plan z = plan_attn(caps, NULL, 1, A_DSINKS, CLSM_FLOAT32, 0, C, 4);
    ck_assert_int_eq(z.nstages, 1);
    ck_assert_str_eq(first_kernel(&z), "clsm_attn_dsinks");
  }
}
END_TEST

static Suite *plan_suite(void) {
  Suite *s = suite_create("plan");
  TCase *tc = tcase_create("Described devices");
  tcase_add_loop_test(tc, test_table_kernels, 0, 6);
  tcase_add_test(tc, test_reg_rows);
  tcase_add_test(tc, test_gpu_geometry);
  tcase_add_test(tc, test_cpu_geometry);
  tcase_add_test(tc, test_forcing);
  tcase_add_test(tc, test_ce_pipelines);
  tcase_add_test(tc, test_shard_pipelines);
  tcase_add_test(tc, test_plan_text);
  tcase_add_test(tc, test_design_table);
  tcase_add_test(tc, test_attention_plans);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(plan_suite());
  srunner_set_fork_status(sr, CK_NOFORK); /* pure computation: nothing to contain */
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
