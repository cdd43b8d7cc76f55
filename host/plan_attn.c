/* The planner for attention softmax (forward and backward): one row kernel
 * per family, as the plain row ops use them for contiguous rows, and for the
 * backward with sinks a second kernel that sums each head's row terms.
 *  - CPU family: a work-item a row (16-wide vectors over a contiguous key
 *    axis), small batches of rows a work-group. Softmax rows that fit
 *    KEEP_BYTES keep z, then exp(z - m), in y (or, for a 16-bit y, in local
 *    scratch): x and the mask are read once, one exp an element.
 *  - GPU family: rows of L lanes, local / L rows a group, L enough for
 *    ROW_VPT keys a lane.
 * This file includes plan.h only. */
#include "plan.h"

#include <string.h>

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

static const char *attn_op(const clsm_attn_call *c) {
  const int log = (c->p.flags & F_LOG) != 0;
  if (c->backward) return log ? "log_softmax_backward_ex" : "softmax_backward_ex";
  return log ? "log_softmax_ex" : "softmax_ex";
}

void clsm__plan_attn(const clsm_caps *caps, const size_t *kernel_wg, const clsm_attn_call *c,
                     clsm_plan *plan) {
  memset(plan, 0, offsetof(clsm_plan, data));
  plan->op = attn_op(c);
  plan->program = c->program;
  const int64_t rows = c->p.rows, C = c->p.C;
  const int dsinks = c->backward && (c->p.flags & A_DSINKS) && c->p.heads > 0;
  /* Rows of no keys still write their lse (-inf, or the sink) and their
   * sink terms (0). */
  if (rows == 0 && !dsinks) {
    plan->empty = 1;
    return;
  }
  if (C == 0 && !(c->p.flags & A_LSE) && !dsinks) {
    plan->empty = 1;
    return;
  }
  const size_t acc = c->program == P_F64 ? sizeof(double) : sizeof(float);
  const int cpu = caps->family == CLSM_FAMILY_CPU;
  clsm_attn_params p = c->p;
  size_t global = 0, local = 1, scratch = acc;
  clsm_kernel_id k;
  if (c->backward) {
    k = cpu ? K_ATTN_BWD_CPU : K_ATTN_BWD_WG;
  } else {
    k = cpu ? K_ATTN_ROWS_CPU : K_ATTN_ROWS_WG;
  }
  if (cpu) {
    local = clsm__cpu_local(caps, (size_t)rows);
    const int contiguous = p.sc[0] == 1 && p.sc[1] == 1;
    const size_t es = clsm_dtype_size(c->out_dtype);
    if (!c->backward && contiguous && (uint64_t)C * es <= KEEP_BYTES) {
      int keep = 1;
      if (c->out_dtype == CLSM_FLOAT16 || c->out_dtype == CLSM_BFLOAT16) {
        const size_t bytes = clsm__row_scratch(caps, &local, C, acc);
        keep = bytes > 0;
        if (keep) scratch = bytes;
      }
      if (keep) p.flags |= A_KEEP;
    }
    /* Large outputs: a causal tail is stored past the cache. */
    if (!c->backward && (p.flags & A_CAUSAL) && (uint64_t)rows * (uint64_t)C * es >= caps->nt_bytes)
      p.flags |= F_NT;
    global = round_up((size_t)rows, local);
  } else if (rows > 0) {
    global = clsm__wg_rows(caps, kernel_wg, k, C, rows, ROW_VPT, &local, &p.flags);
  }

  if (rows > 0) {
    clsm_stage *s = clsm__plan_stage(plan, k, global, local);
    s->flags = p.flags;
    if (c->backward) {
      clsm__arg_mem(plan, s, "y", c->mem[0]);
      clsm__arg_mem(plan, s, "dy", c->mem[1]);
      clsm__arg_mem(plan, s, "dx", c->mem[2]);
      clsm__arg_kind(plan, s, "ds", ARG_SCRATCH);
    } else {
      clsm__arg_mem(plan, s, "x", c->mem[0]);
      clsm__arg_mem(plan, s, "y", c->mem[1]);
      clsm__arg_mem(plan, s, "mask", c->mask);
      clsm__arg_mem(plan, s, "slopes", c->slopes);
      clsm__arg_mem(plan, s, "sinks", c->sinks);
      clsm__arg_mem(plan, s, "lse", c->lse);
    }
    clsm__arg_value(plan, s, "p", &p, sizeof p);
    if (k == K_ATTN_ROWS_CPU) clsm__arg_local(plan, s, "scratch", scratch);
    if (!cpu) {
      clsm__arg_local(plan, s, c->backward ? "la" : "lm", local * acc);
      clsm__arg_local(plan, s, c->backward ? "lp" : "ls", local * acc);
    }
  }
  if (dsinks) {
    /* Each row's term to scratch (one value a row), then a work-item a head. */
    plan->scratch_bytes = (size_t)(rows > 0 ? rows : 1) * acc;
    clsm_stage *s = clsm__plan_stage(plan, K_ATTN_DSINKS, (size_t)p.heads, cpu ? 1 : 0);
    s->flags = p.flags;
    clsm__arg_kind(plan, s, "ds", ARG_SCRATCH);
    clsm__arg_mem(plan, s, "dsinks", c->dsinks);
    clsm__arg_value(plan, s, "p", &p, sizeof p);
  }
}
