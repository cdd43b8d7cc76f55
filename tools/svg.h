/* The bench's bar chart as a self-contained SVG 1.1 file. */
#ifndef CLSM_SVG_H
#define CLSM_SVG_H

#include "output.h"

/* One group of bars: our GB/s, oneDNN's (drawn when > 0) and the copy
 * bandwidth measured beside it (drawn when > 0). */
typedef struct svg_row {
  char label[96]; /* e.g. "softmax 8192x4096 dim -1" */
  double gbps, onednn_gbps, copy_gbps;
} svg_row;

/* Writes the chart of `rows` (rows whose gbps is not a positive finite number
 * are left out) with `device` in the title into the open output o and
 * commits it. Every <rect> in the file is one bar. Returns EXIT_OK, or
 * EXIT_OUTPUT after a message on stderr when the file cannot be written (o
 * is then aborted: no temporary is left behind). */
int svg_write_bench(tool_out *o, const char *device, const svg_row *rows, int n);

#endif
