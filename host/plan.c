/* Which kernel variant and launch geometry, from the device's family and
 * queries and the shape of the work. The choices, and why:
 *  - CPU family: a work-item owns whole rows (contiguous last axis) or a block
 *    of inner positions (non-last axis), loops with vector loads and never
 *    waits at a barrier; work-groups are small batches of such work-items,
 *    enough of them to keep every core busy.
 *  - GPU family: a work-group per row with a local-memory reduction when the
 *    axis is last; a work-item per row otherwise (neighbouring work-items
 *    then read neighbouring inner positions: coalesced).
 *  - Views whose non-axis dims do not collapse into (outer, inner) strides go
 *    to the generic kernel, never through a copy. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* Batch size for CPU-family work-items: about 8 work-groups per compute unit,
 * at most 64 work-items each. */
size_t clsm__cpu_local(const clsm_context *ctx, size_t items) {
  size_t l = items / ((size_t)ctx->compute_units * 8);
  if (l < 1) l = 1;
  if (l > 64) l = 64;
  return l;
}

/* Local scratch of C compute-type values per work-item (rows_cpu keeping
 * exp(x - m) for a 16-bit output): halves *local until the work-group's
 * scratch fits in half the device's local memory; returns its bytes, or 0
 * when not even one row fits (*local is then 1). */
size_t clsm__row_scratch(const clsm_context *ctx, size_t *local, int64_t C, size_t acc) {
  const size_t row = (size_t)C * acc, room = ctx->local_mem_size / 2;
  while (*local > 1 && *local * row > room) *local /= 2;
  return *local * row <= room ? *local * row : 0;
}

/* Float16-wide vectors per inner block: the largest power of two up to
 * CLSM_INNER_VECTORS (32 by default: rows of a block are then 2 KB runs of
 * float32) that the inner extent fills. */
int clsm__inner_nv(const clsm_context *ctx, int64_t inner) {
  int nv = 1;
  while (nv * 2 <= ctx->inner_vectors && 16 * (int64_t)nv * 2 <= inner) nv *= 2;
  return nv;
}

size_t clsm__row_lanes(const clsm_context *ctx, int64_t C, size_t local, int vpt) {
  size_t lanes = 1;
  if (ctx->row_lanes)
    lanes = ctx->row_lanes;
  else
    while (lanes < local && (int64_t)lanes * vpt < C) lanes *= 2;
  return lanes < local ? lanes : local;
}

const char *const clsm__forceable_kernels[K_BACKWARD + 1] = {"rows_cpu", "inner_cpu", "rows_wg",
                                                             "strided", "generic", NULL};

void clsm__plan_rows(const clsm_context *ctx, const clsm_view *v, int n, int generic,
                     int64_t rows64, clsm_plan *plan) {
  size_t rows = (size_t)rows64;
  int contiguous_rows = !generic && v[0].inner == 1, contiguous_inner = !generic && v[0].inner > 1;
  for (int i = 0; i < n; ++i) {
    contiguous_rows = contiguous_rows && v[i].sc == 1;
    contiguous_inner = contiguous_inner && v[i].si == 1;
  }
  clsm_kernel_id k;
  if (generic)
    k = K_GENERIC;
  else if (ctx->family == CLSM_FAMILY_CPU)
    k = contiguous_rows ? K_ROWS_CPU : contiguous_inner ? K_INNER_CPU : K_STRIDED;
  else
    k = v[0].inner == 1 ? K_ROWS_WG : K_STRIDED;

  const clsm_kernel_id forced = (clsm_kernel_id)ctx->forced_kernel;
  if (!generic && ctx->forced_kernel >= 0 &&
      (forced == K_STRIDED || forced == K_ROWS_WG || forced == K_INNER_CPU ||
       forced == K_GENERIC || (forced == K_ROWS_CPU && contiguous_rows)))
    k = forced;

  memset(plan, 0, sizeof *plan);
  plan->kernel = k;
  switch (k) {
  case K_INNER_CPU: {
    plan->nv = clsm__inner_nv(ctx, v[0].inner);
    size_t ib = 16 * (size_t)plan->nv;
    size_t items = (size_t)v[0].outer * (((size_t)v[0].inner + ib - 1) / ib);
    plan->local = clsm__cpu_local(ctx, items);
    plan->global = round_up(items, plan->local);
    break;
  }
  case K_ROWS_WG: /* rows per group: the enqueue sets them, from the kernel's limits */
    plan->local = ctx->wg_size;
    plan->global = rows * ctx->wg_size;
    plan->local_elems = ctx->wg_size;
    break;
  default: /* a work-item per row */
    plan->local = ctx->family == CLSM_FAMILY_CPU || k == K_ROWS_CPU ? clsm__cpu_local(ctx, rows) : 64;
    plan->global = round_up(rows, plan->local);
    break;
  }
}

/* Few long contiguous rows on the CPU family: each row split into chunks
 * of the returned length (a multiple of 16) so that one row uses every core,
 * or 0. Split when there are fewer rows than 8 work-items a compute unit
 * and at least 2^18 elements; CLSM_SPLIT=0 never, =1 whenever the caller's
 * kernel can (then chunks of 16 or more, so that the tests see many). */
int64_t clsm__split_len(const clsm_context *ctx, int64_t rows, int64_t C) {
  const int force = ctx->split;
  if (rows <= 0 || C <= 0) return 0; /* empty: nothing to split */
  if (force == 0 || (force < 0 && ctx->family != CLSM_FAMILY_CPU)) return 0;
  const int64_t items = (int64_t)ctx->compute_units * 8;
  if (force < 0 && (rows >= items || rows * C < (1 << 18))) return 0;
  int64_t per_row = (items + rows - 1) / rows;
  int64_t chunk = (C + per_row - 1) / per_row;
  chunk = (chunk + 15) / 16 * 16;
  const int64_t least = force > 0 ? 16 : 4096;
  return chunk < least ? least : chunk;
}
