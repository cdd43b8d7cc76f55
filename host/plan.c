/* The planner for row operations (softmax, log_softmax and their
 * backward), and the building blocks every plan shares. Which kernel and
 * geometry, from the device's family and capabilities and the shape of the
 * work; and why:
 *  - CPU family: a work-item owns whole rows (contiguous last axis) or a block
 *    of inner positions (non-last axis), loops with vector loads and never
 *    waits at a barrier; work-groups are small batches of such work-items,
 *    enough of them to keep every core busy. Few long rows are split over
 *    work-items (two kernels) so that one row uses every core.
 *  - GPU family: work-group rows with a local-memory reduction when the axis
 *    is last; a work-item per row otherwise (neighbouring work-items then
 *    read neighbouring inner positions: coalesced).
 *  - Views whose non-axis dims do not collapse into (outer, inner) strides go
 *    to the generic kernel, never through a copy.
 * This file includes plan.h only: planning cannot touch the context or any
 * OpenCL object. */
#include "plan.h"

#include <stdio.h>
#include <string.h>

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }
static int is_16bit(clsm_dtype d) { return d == CLSM_FLOAT16 || d == CLSM_BFLOAT16; }

static const char *const kernel_names[K_COUNT_] = {
#define CLSM_X_(id, name) "clsm_" #name,
    CLSM_KERNEL_LIST(CLSM_X_)
#undef CLSM_X_
};

const char *clsm__kernel_name(clsm_kernel_id id) {
  return id >= 0 && id < K_COUNT_ ? kernel_names[id] : "?";
}

const clsm_dtype clsm__program_dtypes[CLSM_PROGRAM_COUNT][2] = {
    [P_F32] = {CLSM_FLOAT32, CLSM_FLOAT32},       [P_F16] = {CLSM_FLOAT16, CLSM_FLOAT16},
    [P_BF16] = {CLSM_BFLOAT16, CLSM_BFLOAT16},    [P_F64] = {CLSM_FLOAT64, CLSM_FLOAT64},
    [P_F16_F32] = {CLSM_FLOAT16, CLSM_FLOAT32},   [P_BF16_F32] = {CLSM_BFLOAT16, CLSM_FLOAT32},
};

/* Values a lane by row length (the planner takes the first that fits),
 * 16-byte loads first; 1024 lanes only where 256 cannot cover a row. */
const clsm_reg_variant clsm__reg_variants[CLSM_REG_VARIANTS] = {
    {8, 1, 256}, {16, 1, 256}, {32, 1, 256}, {32, 1, 1024},
    {8, 0, 256}, {16, 0, 256}, {32, 0, 256}, {32, 0, 1024},
};

int clsm__reg_usable(int program, int v) {
  return v >= 0 && v < CLSM_REG_VARIANTS && (program != P_F64 || clsm__reg_variants[v].e <= 16);
}

/* Elements of x's dtype in 16 bytes. */
static int load16(int program) { return 16 / (int)clsm_dtype_size(clsm__program_dtypes[program][0]); }

int clsm__reg_width(int program, int v) { return clsm__reg_variants[v].vec ? load16(program) : 1; }

clsm_kernel_id clsm__reg_kernel(int var, int kind) {
  return (clsm_kernel_id)(K_REG0 + CLSM_REG_PER * var + kind);
}

int clsm__reg_has(int v, clsm_kernel_id id) {
  return (id - K_REG0) % CLSM_REG_PER != REG_CE || clsm__reg_variants[v].wg <= REG_CE_WG;
}

/* Variant var's kernel for the row op (softmax, or log-softmax with F_LOG). */
static clsm_kernel_id reg_kernel(int var, unsigned flags) {
  return clsm__reg_kernel(var, (flags & F_LOG) ? REG_LOG : REG_SOFTMAX);
}

int clsm__reg_aligned(int program, uint64_t base, int64_t so, int64_t rows) {
  const int64_t w = load16(program);
  return base % (uint64_t)w == 0 && (rows == 1 || so % w == 0);
}

int clsm__reg_cap(int wg) { return wg > 256 ? 65536 / wg : 0; }

const char *const clsm__forceable_kernels[K_BACKWARD + 1] = {"rows_cpu", "inner_cpu", "rows_wg",
                                                             "strided", "generic", NULL};

/* ---- Plan building blocks. The bounds fit the largest plan (cross-
 * entropy's six stages, the generic kernel's 17 arguments); a plan that
 * would pass them is marked `overflow`, which the run refuses and the plan
 * tests check for. */

clsm_stage *clsm__plan_stage(clsm_plan *plan, clsm_kernel_id k, size_t global, size_t local) {
  if (plan->nstages == CLSM_MAX_STAGES) plan->overflow = 1;
  clsm_stage *s = &plan->stage[plan->nstages < CLSM_MAX_STAGES ? plan->nstages++ : CLSM_MAX_STAGES - 1];
  memset(s, 0, sizeof *s);
  s->kernel = k;
  s->global = global;
  s->local = local;
  return s;
}

static clsm_arg *new_arg(clsm_plan *plan, clsm_stage *s, const char *name, int kind) {
  if (s->nargs == CLSM_MAX_ARGS) plan->overflow = 1;
  clsm_arg *a = &s->args[s->nargs < CLSM_MAX_ARGS ? s->nargs++ : CLSM_MAX_ARGS - 1];
  memset(a, 0, sizeof *a);
  a->name = name;
  a->kind = kind;
  return a;
}

void clsm__arg_mem(clsm_plan *plan, clsm_stage *s, const char *name, cl_mem mem) {
  new_arg(plan, s, name, ARG_MEM)->mem = mem;
}

void clsm__arg_kind(clsm_plan *plan, clsm_stage *s, const char *name, int kind) {
  new_arg(plan, s, name, kind);
}

void clsm__arg_value(clsm_plan *plan, clsm_stage *s, const char *name, const void *v, size_t size) {
  clsm_arg *a = new_arg(plan, s, name, ARG_VALUE);
  const size_t off = (plan->data_used + 15) / 16 * 16;
  if (off + size > sizeof plan->data) {
    plan->overflow = 1;
    return;
  }
  memcpy(plan->data + off, v, size);
  plan->data_used = off + size;
  a->off = off;
  a->size = size;
}

void clsm__arg_local(clsm_plan *plan, clsm_stage *s, const char *name, size_t bytes) {
  new_arg(plan, s, name, ARG_LOCAL)->size = bytes;
}

/* ---- Geometry rules. */

/* Batch size for CPU-family work-items: about 8 work-groups per compute unit,
 * at most 64 work-items each. */
size_t clsm__cpu_local(const clsm_caps *caps, size_t items) {
  size_t l = items / ((size_t)caps->compute_units * 8);
  if (l < 1) l = 1;
  if (l > 64) l = 64;
  return l;
}

/* Local scratch of C compute-type values per work-item (a row's kept
 * exp(x - m) for a 16-bit output): halves *local until the work-group's
 * scratch fits in half the device's local memory; returns its bytes, or 0
 * when not even one row fits (*local is then 1). */
size_t clsm__row_scratch(const clsm_caps *caps, size_t *local, int64_t C, size_t acc) {
  const size_t row = (size_t)C * acc, room = (size_t)(caps->local_mem_size / 2);
  while (*local > 1 && *local * row > room) *local /= 2;
  return *local * row <= room ? *local * row : 0;
}

/* Float16-wide vectors per inner block: the largest power of two up to
 * CLSM_INNER_VECTORS (32 by default: rows of a block are then 2 KB runs of
 * float32) that the inner extent fills. */
int clsm__inner_nv(const clsm_caps *caps, int64_t inner) {
  int nv = 1;
  while (nv * 2 <= caps->inner_vectors && 16 * (int64_t)nv * 2 <= inner) nv *= 2;
  return nv;
}

/* Lanes per row of the work-group row kernels, a power of two up to
 * `local`: enough for `vpt` values a lane (CLSM_ROW_LANES overrides). */
size_t clsm__row_lanes(const clsm_caps *caps, int64_t C, size_t local, int vpt) {
  size_t lanes = 1;
  if (caps->row_lanes)
    lanes = caps->row_lanes;
  else
    while (lanes < local && (int64_t)lanes * vpt < C) lanes *= 2;
  return lanes < local ? lanes : local;
}

size_t clsm__kernel_limit(const clsm_caps *caps, const size_t *kernel_wg, clsm_kernel_id k) {
  return kernel_wg && kernel_wg[k] ? kernel_wg[k] : caps->max_wg_size;
}

size_t clsm__wg_rows(const clsm_caps *caps, const size_t *kernel_wg, clsm_kernel_id k, int64_t C,
                     int64_t rows, int vpt, size_t *local, unsigned *flags) {
  *local = caps->wg_size;
  const size_t kmax = clsm__kernel_limit(caps, kernel_wg, k);
  while (*local > 1 && *local > kmax) *local /= 2;
  const size_t lanes = clsm__row_lanes(caps, C, *local, vpt);
  unsigned lg = 0;
  while (((size_t)1 << lg) < lanes) ++lg;
  *flags |= lg << F_LANES_SHIFT;
  const size_t per = *local / lanes;
  return (((size_t)rows + per - 1) / per) * *local;
}

/* Few long contiguous rows on the CPU family: each row split into chunks
 * of the returned length (a multiple of 16) so that one row uses every core,
 * or 0. Split when there are fewer rows than 8 work-items a compute unit
 * and at least 2^18 elements; CLSM_SPLIT=0 never, =1 whenever the caller's
 * kernel can (then chunks of 16 or more, so that the tests see many). */
int64_t clsm__split_len(const clsm_caps *caps, int64_t rows, int64_t C) {
  const int force = caps->split;
  if (rows <= 0 || C <= 0) return 0; /* empty: nothing to split */
  if (force == 0 || (force < 0 && caps->family != CLSM_FAMILY_CPU)) return 0;
  const int64_t items = (int64_t)caps->compute_units * 8;
  if (force < 0 && (rows >= items || rows * C < (1 << 18))) return 0;
  int64_t per_row = (items + rows - 1) / rows;
  int64_t chunk = (C + per_row - 1) / per_row;
  chunk = (chunk + 15) / 16 * 16;
  const int64_t least = force > 0 ? 16 : 4096;
  return chunk < least ? least : chunk;
}

/* ---- Row operations. */

static const char *const fwd_names[3][5] = {
    {"x", "xoff", "xso", "xsc", "xsi"}, {"y", "yoff", "yso", "ysc", "ysi"}, {0}};
static const char *const bwd_names[3][5] = {{"y", "yoff", "yso", "ysc", "ysi"},
                                            {"dy", "dyoff", "dyso", "dysc", "dysi"},
                                            {"dx", "dxoff", "dxso", "dxsc", "dxsi"}};

static const char *op_name(const clsm_rowop *op) {
  if (op->backward) return (op->flags & F_LOG) ? "log_softmax_backward" : "softmax_backward";
  return (op->flags & F_LOG) ? "log_softmax" : "softmax";
}

/* The split kernels' common tail. */
static void split_tail(clsm_plan *plan, clsm_stage *s, const clsm_rowop *op, int64_t chunk,
                       int64_t chunks, unsigned flags) {
  clsm__arg_kind(plan, s, "part", ARG_SCRATCH);
  CLSM_ARG_LONG(plan, s, "rows", op->rows);
  CLSM_ARG_LONG(plan, s, "C", op->C);
  CLSM_ARG_LONG(plan, s, "chunk", chunk);
  CLSM_ARG_LONG(plan, s, "chunks", chunks);
  clsm__arg_value(plan, s, "flags", &flags, sizeof flags);
  s->flags = flags;
}

/* Few long contiguous rows on the CPU family (clsm__split_len): partial
 * (max, sum) pairs, or for the backward ops partial sums and maxima of y,
 * then a second kernel merges them and writes each chunk. */
static void plan_split(const clsm_caps *caps, const clsm_rowop *op, int64_t chunk, size_t acc,
                       clsm_plan *plan) {
  const char *const(*names)[5] = op->backward ? bwd_names : fwd_names;
  const int64_t chunks = (op->C + chunk - 1) / chunk;
  const size_t items = (size_t)(op->rows * chunks);
  unsigned flags = op->flags;
  /* Softmax into float32 / float64: the first kernel keeps exp(x - chunk
   * max) in y, the second rescales it (one exp per element instead of two;
   * CLSM_ROW_BLOCKS=0 turns it off, as it does the blocked rows). */
  if (!op->backward && !(flags & F_LOG) && !is_16bit(op->t[op->n - 1]->dtype) && caps->row_blocks)
    flags |= F_BLOCKS;
  plan->scratch_bytes = items * 2 * acc;
  const clsm_kernel_id kp = op->backward ? K_BSPLIT_PARTIALS : K_SPLIT_PARTIALS;
  for (int stage = 0; stage < 2; ++stage) {
    clsm_stage *s = clsm__plan_stage(plan, (clsm_kernel_id)(kp + stage), items, 1);
    /* partials: the inputs (and softmax's y, which keeps exps); write: all. */
    const int upto = stage == 1 ? op->n : op->backward ? op->n - 1 : op->n;
    for (int i = 0; i < upto; ++i) {
      clsm__arg_mem(plan, s, names[i][0], op->t[i]->mem);
      CLSM_ARG_LONG(plan, s, names[i][1], op->v[i].base);
      CLSM_ARG_LONG(plan, s, names[i][2], op->v[i].so);
    }
    split_tail(plan, s, op, chunk, chunks, flags);
  }
}

/* GPU family, contiguous rows: the first register-held variant (fewest
 * values a lane) that has the op's kernel and whose group covers a row
 * with L lanes (a power of two: enough for its values, or CLSM_ROW_LANES),
 * with 16-byte loads where every row starts on 16 bytes; -1 when none fits
 * (the row is too long for registers, or the built variant's
 * CL_KERNEL_WORK_GROUP_SIZE is below its group). */
const clsm_profile clsm__profiles[CLSM_PROFILE_COUNT] = {
    {"h100", "H100-like", CLSM_FAMILY_GPU, 1024, 48 * 1024, 132, 1},
    {"mi300", "MI300-like", CLSM_FAMILY_GPU, 256, 64 * 1024, 304, 0},
    {"igpu", "iGPU-like", CLSM_FAMILY_GPU, 512, 64 * 1024, 96, 0},
    {"pocl-cpu", "PoCL CPU", CLSM_FAMILY_CPU, 4096, 2u << 20, 2, 0},
    {"h200", "H200-like", CLSM_FAMILY_GPU, 1024, 48 * 1024, 132, 1},
    {"arc", "Arc-like", CLSM_FAMILY_GPU, 1024, 64 * 1024, 512, 0},
};

const clsm_profile *clsm__profile(const char *name) {
  for (int i = 0; name && i < CLSM_PROFILE_COUNT; ++i)
    if (!strcmp(clsm__profiles[i].name, name)) return &clsm__profiles[i];
  return NULL;
}

/* At most `want` lanes, fewer if the device or its local memory (two doubles
 * a lane, the widest case) cannot hold them; a power of two for the trees. */
static size_t fit_lanes(const clsm_caps *caps, size_t want) {
  while (want > 1 && (want > caps->max_wg_size || want * 2 * sizeof(double) > caps->local_mem_size))
    want /= 2;
  return want;
}

void clsm__caps_defaults(clsm_caps *c, clsm_family family, size_t max_wg, uint64_t local_mem,
                         unsigned units) {
  memset(c, 0, sizeof *c);
  c->family = family;
  c->max_wg_size = max_wg ? max_wg : 1;
  c->local_mem_size = local_mem;
  c->compute_units = units ? units : 1;
  /* The work-group kernels want 256 lanes, a one-work-group reduction
   * (cross-entropy's totals) up to 1024. */
  c->wg_size = fit_lanes(c, 256);
  c->wg_cap = fit_lanes(c, 1024);
  c->inner_vectors = INNER_VECTORS_DEFAULT;
  c->split = -1;
  c->row_blocks = 1;
  c->forced_kernel = -1;
  c->inner_tile = -1;
  c->ce_rows16 = -1;
  c->nt_bytes = family == CLSM_FAMILY_CPU ? (uint64_t)32 << 20 : UINT64_MAX;
  c->reg_rows = 1;
}

clsm_caps clsm__profile_caps(const clsm_profile *p) {
  clsm_caps c;
  clsm__caps_defaults(&c, p->family, p->max_wg, p->local_mem, p->units);
  return c;
}

int clsm__reg_fits(const clsm_caps *caps, int program, int v) {
  if (!clsm__reg_usable(program, v)) return 0;
  const uint64_t acc = program == P_F64 ? sizeof(double) : sizeof(float);
  const size_t wg = (size_t)clsm__reg_variants[v].wg;
  return wg <= caps->max_wg_size && 2 * (uint64_t)wg * acc <= caps->local_mem_size;
}

int clsm__pick_reg(const clsm_caps *caps, const size_t *kernel_wg, int program, int64_t C,
                   int aligned, int kind, size_t *lanes) {
  for (int var = 0; var < CLSM_REG_VARIANTS; ++var) {
    const clsm_reg_variant *rv = &clsm__reg_variants[var];
    const clsm_kernel_id k = clsm__reg_kernel(var, kind);
    if (rv->vec != aligned || !clsm__reg_fits(caps, program, var) || !clsm__reg_has(var, k) ||
        (kernel_wg && kernel_wg[k] && kernel_wg[k] < (size_t)rv->wg))
      continue;
    size_t L = 1;
    if (caps->row_lanes)
      L = caps->row_lanes;
    else
      while ((int64_t)L * rv->e < C) L *= 2;
    if (L <= (size_t)rv->wg && (int64_t)L * rv->e >= C) {
      *lanes = L;
      return var;
    }
  }
  return -1;
}

static int pick_reg(const clsm_caps *caps, const size_t *kernel_wg, const clsm_rowop *op,
                    int program, size_t *lanes) {
  int aligned = 1;
  for (int i = 0; i < op->n; ++i)
    aligned = aligned && clsm__reg_aligned(program, op->v[i].base, op->v[i].so, op->rows);
  return clsm__pick_reg(caps, kernel_wg, program, op->C, aligned,
                        (op->flags & F_LOG) ? REG_LOG : REG_SOFTMAX, lanes);
}

/* The register-held rows stage of variant var, L lanes a row. */
static void plan_reg(const clsm_rowop *op, int var, size_t L, size_t acc, clsm_plan *plan) {
  const clsm_reg_variant *rv = &clsm__reg_variants[var];
  unsigned lg = 0, flags = op->flags;
  while (((size_t)1 << lg) < L) ++lg;
  flags |= lg << F_LANES_SHIFT;
  const size_t per = (size_t)rv->wg / L, groups = ((size_t)op->rows + per - 1) / per;
  clsm_stage *s = clsm__plan_stage(plan, reg_kernel(var, op->flags), groups * (size_t)rv->wg,
                                   (size_t)rv->wg);
  s->flags = flags;
  for (int i = 0; i < 2; ++i) {
    clsm__arg_mem(plan, s, fwd_names[i][0], op->t[i]->mem);
    CLSM_ARG_LONG(plan, s, fwd_names[i][1], op->v[i].base);
    CLSM_ARG_LONG(plan, s, fwd_names[i][2], op->v[i].so);
  }
  CLSM_ARG_LONG(plan, s, "rows", op->rows);
  CLSM_ARG_INT(plan, s, "C", op->C);
  clsm__arg_value(plan, s, "flags", &flags, sizeof flags);
  clsm__arg_local(plan, s, "lm", (size_t)rv->wg * acc);
  clsm__arg_local(plan, s, "ls", (size_t)rv->wg * acc);
}

void clsm__plan_rowop(const clsm_caps *caps, const size_t *kernel_wg, const clsm_rowop *op,
                      int program, clsm_plan *plan) {
  memset(plan, 0, offsetof(clsm_plan, data));
  plan->op = op_name(op);
  plan->program = program;
  if (op->rows == 0 || op->C == 0) {
    plan->empty = 1;
    return;
  }
  const size_t acc = program == P_F64 ? sizeof(double) : sizeof(float);
  const char *const(*names)[5] = op->backward ? bwd_names : fwd_names;
  const int generic = op->generic || caps->forced_kernel == K_GENERIC;
  const clsm_view *v = &op->v[0];
  int contiguous_rows = !generic && v->inner == 1, contiguous_inner = !generic && v->inner > 1;
  for (int i = 0; i < op->n; ++i) {
    contiguous_rows = contiguous_rows && op->v[i].sc == 1;
    contiguous_inner = contiguous_inner && op->v[i].si == 1;
  }
  if (contiguous_rows) {
    const int64_t chunk = clsm__split_len(caps, op->rows, op->C);
    if (chunk > 0) {
      plan_split(caps, op, chunk, acc, plan);
      return;
    }
  }

  clsm_kernel_id k;
  if (generic)
    k = K_GENERIC;
  else if (caps->family == CLSM_FAMILY_CPU)
    k = contiguous_rows ? K_ROWS_CPU : contiguous_inner ? K_INNER_CPU : K_STRIDED;
  else
    k = v->inner == 1 ? K_ROWS_WG : K_STRIDED;
  /* CLSM_KERNEL: a kernel whose layout preconditions hold. */
  const clsm_kernel_id forced = (clsm_kernel_id)caps->forced_kernel;
  if (!generic && caps->forced_kernel >= 0 &&
      (forced == K_STRIDED || forced == K_ROWS_WG || forced == K_INNER_CPU ||
       (forced == K_ROWS_CPU && contiguous_rows)))
    k = forced;

  /* GPU family forward rows that fit in registers (CLSM_REG_ROWS=0 never;
   * CLSM_KERNEL=rows_wg and CLSM_WG_SIZE keep the online kernel). */
  if (k == K_ROWS_WG && !op->backward && contiguous_rows && caps->reg_rows && caps->forced_kernel < 0 &&
      !caps->wg_forced) {
    size_t L = 0;
    const int var = pick_reg(caps, kernel_wg, op, program, &L);
    if (var >= 0) {
      plan_reg(op, var, L, acc, plan);
      return;
    }
  }

  const size_t rows = (size_t)op->rows;
  size_t global, local, scratch = acc; /* rows_cpu's local scratch or inner_cpu's tile */
  int nv = 1;
  unsigned flags = op->flags;
  switch (k) {
  case K_INNER_CPU: {
    nv = clsm__inner_nv(caps, v->inner);
    const size_t ib = 16 * (size_t)nv, items = (size_t)v->outer * (((size_t)v->inner + ib - 1) / ib);
    local = clsm__cpu_local(caps, items);
    global = round_up(items, local);
    break;
  }
  case K_ROWS_WG: /* clsm__wg_rows, below */
    local = global = 0;
    break;
  default: /* a work-item per row */
    local = caps->family == CLSM_FAMILY_CPU || k == K_ROWS_CPU ? clsm__cpu_local(caps, rows) : 64;
    global = round_up(rows, local);
    break;
  }

  if (!op->backward) {
    /* Softmax keeps exp(x - m) in y (or, for 16-bit y, in local scratch) and
     * rescales it while the row is in cache; log-softmax keeps x - m
     * (inner_cpu) or x (rows_cpu) in y while it reads x for the sum.
     * Otherwise (F_RECOMPUTE) softmax computes exp twice and log-softmax
     * reads x again. Inner blocks keep up to 1 MiB: their rows are strided,
     * so a second pass over x costs more than one over y there. */
    const clsm_tensor *out = op->t[op->n - 1];
    const size_t es = clsm_dtype_size(out->dtype);
    uint64_t numel = 1;
    for (int d = 0; d < out->rank; ++d) numel *= (uint64_t)out->shape[d];
    const int nt_out = numel * es >= caps->nt_bytes;
    const size_t ib = k == K_INNER_CPU ? 16u * (size_t)nv : 1u;
    const uint64_t limit = k == K_INNER_CPU ? KEEP_INNER_BYTES : KEEP_BYTES;
    int keep = k != K_ROWS_WG && (uint64_t)op->C * ib * es <= limit;
    if (keep && is_16bit(out->dtype) && !(flags & F_LOG)) {
      const size_t bytes = k == K_ROWS_CPU ? clsm__row_scratch(caps, &local, op->C, acc) : 0;
      keep = bytes > 0;
      if (keep) {
        scratch = bytes;
        global = round_up(rows, local);
      }
    }
    /* Rows a page or more apart share cache sets: a block goes through a
     * tile in local memory, of at most TILE_VECTORS vectors a row (2 KB
     * runs of float32), narrowed until it fits. */
    if (k == K_INNER_CPU &&
        (caps->inner_tile == 1 ||
         (caps->inner_tile == -1 && (uint64_t)v->sc * clsm_dtype_size(op->t[0]->dtype) >= 4096))) {
      /* Bytes per vector of a tile row: C rows and a reference per chunk. */
      const uint64_t per_nv = (uint64_t)(op->C + (op->C + INNER_CHUNK - 1) / INNER_CHUNK) * 16 * acc;
      const uint64_t room = caps->local_mem_size / 2;
      int tnv = nv < TILE_VECTORS ? nv : TILE_VECTORS;
      while (tnv > 1 && per_nv * tnv > room) tnv /= 2;
      if (per_nv * tnv <= room) {
        keep = 0;
        flags |= F_TILE | (nt_out ? F_NT : 0);
        scratch = (size_t)(per_nv * tnv);
        nv = tnv;
        local = 1;
        global = (size_t)v->outer * (((size_t)v->inner + 16 * nv - 1) / (16 * nv));
      }
    }
    if (!keep) flags |= F_RECOMPUTE;
    /* Softmax rows past the keep limit with a float32 / float64 output: in
     * blocks that stay in cache, one exp per element (CLSM_ROW_BLOCKS=0
     * turns it off). */
    if (!keep && !(flags & F_LOG) && k == K_ROWS_CPU && !is_16bit(out->dtype) && caps->row_blocks)
      flags |= F_BLOCKS;
  }
  if (k == K_INNER_CPU) flags |= (unsigned)nv << F_NV_SHIFT;
  if (k == K_ROWS_WG)
    /* Enough lanes for ROW_VPT values each (forward) or to keep y and dy in
     * registers (BWD_VPT values each, backward; longer rows read them twice). */
    global = clsm__wg_rows(caps, kernel_wg, (clsm_kernel_id)(k + (op->backward ? K_BACKWARD : 0)),
                           op->C, op->rows, op->backward ? BWD_VPT : ROW_VPT, &local, &flags);

  const clsm_kernel_id id = (clsm_kernel_id)(k + (op->backward ? K_BACKWARD : 0));
  clsm_stage *s = clsm__plan_stage(plan, id, global, local);
  s->flags = flags;
  if (k == K_GENERIC) {
    cl_long8 shape, st[3];
    for (int d = 0; d < 8; ++d) {
      shape.s[d] = d < op->nd ? op->gshape[d] : 1;
      for (int i = 0; i < op->n; ++i) st[i].s[d] = d < op->nd ? op->gstride[i][d] : 1;
    }
    for (int i = 0; i < op->n; ++i) {
      clsm__arg_mem(plan, s, names[i][0], op->t[i]->mem);
      CLSM_ARG_LONG(plan, s, names[i][1], op->t[i]->offset);
      CLSM_ARG_LONG(plan, s, names[i][3], op->gsc[i]);
    }
    CLSM_ARG_LONG(plan, s, "rows", op->rows);
    CLSM_ARG_LONG(plan, s, "C", op->C);
    CLSM_ARG_INT(plan, s, "nd", op->nd);
    clsm__arg_value(plan, s, "shape", &shape, sizeof shape);
    static const char *const stn[2][3] = {{"xst", "yst", ""}, {"yst", "dyst", "dxst"}};
    for (int i = 0; i < op->n; ++i) clsm__arg_value(plan, s, stn[op->backward][i], &st[i], sizeof st[i]);
    clsm__arg_value(plan, s, "flags", &flags, sizeof flags);
    return;
  }
  for (int i = 0; i < op->n; ++i) {
    clsm__arg_mem(plan, s, names[i][0], op->t[i]->mem);
    CLSM_ARG_LONG(plan, s, names[i][1], op->v[i].base);
    CLSM_ARG_LONG(plan, s, names[i][2], op->v[i].so);
    CLSM_ARG_LONG(plan, s, names[i][3], op->v[i].sc);
    CLSM_ARG_LONG(plan, s, names[i][4], op->v[i].si);
  }
  CLSM_ARG_LONG(plan, s, "outer", v->outer);
  CLSM_ARG_LONG(plan, s, "C", v->C);
  CLSM_ARG_LONG(plan, s, "inner", v->inner);
  clsm__arg_value(plan, s, "flags", &flags, sizeof flags);
  if (k == K_ROWS_WG) {
    clsm__arg_local(plan, s, "lm", local * acc);
    clsm__arg_local(plan, s, "ls", local * acc);
  }
  if (id == K_ROWS_CPU) clsm__arg_local(plan, s, "scratch", scratch);
  if (id == K_INNER_CPU) clsm__arg_local(plan, s, "tile", scratch > 16 * acc ? scratch : 16 * acc);
}

/* ---- Descriptions. */

void clsm__plan_text(const clsm_plan *plan, char *buf, size_t size) {
  const int known = plan->program >= 0 && plan->program < CLSM_PROGRAM_COUNT;
  const clsm_dtype in = known ? clsm__program_dtypes[plan->program][0] : CLSM_FLOAT32;
  const clsm_dtype out = known ? clsm__program_dtypes[plan->program][1] : CLSM_FLOAT32;
  size_t n = (size_t)snprintf(buf, size, "%s %s%s%s:", plan->op ? plan->op : "?",
                              known ? clsm_dtype_name(in) : "?", in != out ? "->" : "",
                              in != out ? clsm_dtype_name(out) : "");
  if (plan->empty && n < size) n += (size_t)snprintf(buf + n, size - n, " empty (a marker)");
  for (int i = 0; i < plan->nstages && n < size; ++i) {
    const clsm_stage *s = &plan->stage[i];
    size_t lbytes = 0;
    for (int a = 0; a < s->nargs; ++a)
      if (s->args[a].kind == ARG_LOCAL) lbytes += s->args[a].size;
    n += (size_t)snprintf(buf + n, size - n, "%s %s", i ? ";" : "", clsm__kernel_name(s->kernel));
    if (s->kernel >= K_REG0 && n < size) {
      const int v = (s->kernel - K_REG0) / CLSM_REG_PER;
      n += (size_t)snprintf(buf + n, size - n, "[e%d v%d wg%d]", clsm__reg_variants[v].e,
                            known ? clsm__reg_width(plan->program, v) : 0, clsm__reg_variants[v].wg);
    }
    if (n >= size) break;
    n += (size_t)snprintf(buf + n, size - n, " global %zu local ", s->global);
    if (n >= size) break;
    n += (size_t)(s->local ? snprintf(buf + n, size - n, "%zu", s->local)
                           : snprintf(buf + n, size - n, "auto"));
    if (n < size && lbytes) n += (size_t)snprintf(buf + n, size - n, " lmem %zu", lbytes);
    if (n < size && s->flags) n += (size_t)snprintf(buf + n, size - n, " flags 0x%x", s->flags);
  }
  if (n < size && plan->scratch_bytes)
    snprintf(buf + n, size - n, "; scratch %zu", plan->scratch_bytes);
}
