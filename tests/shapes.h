/* The row-op shape table the softmax suite runs on the device and the plan
 * suite plans for described devices. Each row names, for dims 0..rank-1 of
 * a contiguous tensor, the kernel the planner must choose, one letter a dim,
 * for the CPU family and for the GPU family:
 *   R rows_cpu   I inner_cpu   W rows_wg   S strided   - none (empty: a marker)
 *   G rows held in registers (softmax_reg / log_softmax_reg; backward: rows_wg)
 * (the backward ops take the backward twin). A planner change that moves a
 * row to another kernel fails both suites. */
#ifndef CLSM_TEST_SHAPES_H
#define CLSM_TEST_SHAPES_H

#include <stdint.h>

typedef struct shape_row {
  int rank;
  int64_t shape[8];
  const char *cpu, *gpu; /* the kernel for each dim */
} shape_row;

/* Ranks 0-5 and 8; C = 1, primes, C past any work-group (4099, 5000), size-0
 * dims, inner > 1 with odd sizes and partial blocks of inner positions. */
static const shape_row shapes[] = {
    {0, {0}, "S", "W"}, /* rank 0: no stride along the axis, so not a contiguous row */
    {1, {1}, "R", "G"},
    {1, {7}, "R", "G"},
    {1, {4099}, "R", "G"},
    {2, {64, 80}, "IR", "SG"},
    {2, {3, 1}, "RR", "GG"},
    {2, {1, 3}, "IR", "SG"},
    {2, {5, 1031}, "IR", "SG"},
    {2, {2, 5000}, "IR", "SG"},
    {2, {0, 5}, "--", "--"},
    {2, {5, 0}, "--", "--"},
    {2, {33, 17}, "IR", "SG"},
    {3, {2, 3, 4}, "IIR", "SSG"},
    {3, {3, 17, 33}, "IIR", "SSG"},
    {3, {2, 257, 5}, "IIR", "SSG"},
    {3, {4, 5, 130}, "IIR", "SSG"},
    {3, {2, 3, 300}, "IIR", "SSG"},
    {3, {2, 0, 3}, "---", "---"},
    {3, {2, 5000, 3}, "IIR", "SSG"},
    {2, {3000, 130}, "IR", "SG"},
    {3, {3, 7, 600}, "IIR", "SSG"},   /* inner 600 / 4200: 512-wide blocks and a tail */
    {3, {2, 300, 520}, "IIR", "SSG"}, /* along dim 1 a 600 KB block that keeps exp in y */
    {3, {2, 17000, 16}, "IIR", "SSG"}, /* along dim 1 a 1.1 MB block: exp (x - m for log) not kept */
    {2, {37, 1100}, "IR", "SG"},       /* along dim 0 rows 4400 bytes apart: blocks through a tile */
    {3, {2, 70, 1040}, "IIR", "SSG"},  /* along dim 1 the same, C 70 in chunks of 4 and 2 */
    {4, {2, 3, 4, 5}, "IIIR", "SSSG"},
    {5, {2, 1, 3, 2, 5}, "IIIIR", "SSSSG"},
    {8, {2, 1, 2, 3, 1, 2, 2, 3}, "IIIIIIIR", "SSSSSSSG"},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* The kernel a letter names ("" for '-'). */
static inline const char *shape_kernel(char code, int backward, int log) {
  switch (code) {
  case 'G':
    return backward ? "clsm_backward_rows_wg" : log ? "clsm_log_softmax_reg" : "clsm_softmax_reg";
  case 'R': return backward ? "clsm_backward_rows_cpu" : "clsm_softmax_rows_cpu";
  case 'I': return backward ? "clsm_backward_inner_cpu" : "clsm_softmax_inner_cpu";
  case 'W': return backward ? "clsm_backward_rows_wg" : "clsm_softmax_rows_wg";
  case 'S': return backward ? "clsm_backward_strided" : "clsm_softmax_strided";
  default: return "";
  }
}

#endif
