/* The command-line tool's option parser (its own file so that a fuzzer can
 * drive it). */
#ifndef CLSM_ARGS_H
#define CLSM_ARGS_H

#include "clsoftmax.h"

/* The most shards --shards takes. */
#define TOOL_MAX_SHARDS 64

/* Options shared by the commands; which ones a command accepts is a mask. */
enum { OPT_DIM = 1, OPT_DEVICE = 2, OPT_QUICK = 4, OPT_JSON = 8, OPT_CE = 16, OPT_SVG = 32, OPT_VERBOSE = 64,
       OPT_ATTN = 128 /* softmax's attention options */, OPT_ATTN_BWD = 256 /* their backward's */,
       OPT_SHARDS = 512 /* --shards K */ };
typedef struct options {
  long dim;
  const char *device;
  int quick;
  int verbose; /* --verbose: print each call's plan and time */
  const char *json, *svg;
  /* cross-entropy */
  clsm_ce_options ce;
  const char *weight, *grad, *dloss;
  /* attention softmax: attn_used when any of its options is given */
  clsm_attn_options attn;
  int attn_used;
  int attn_terms; /* an attention option other than --safe */
  long shards;    /* --shards K: 0 when not given */
  const char *mask, *slopes, *sinks, *lse, *dsinks;
  const char *pos[4];
  int npos;
} options;

/* Parses argv (after the command name): options in `accepted`, exactly
 * `max_pos` positional arguments. Returns 0, or the exit status 2 after
 * printing what is wrong. */
int tool_parse_options(int argc, char **argv, unsigned accepted, int max_pos, options *o);

/* Prints "clsoftmax: " fmt (with arg) and a pointer to --help; returns 2. */
int tool_usage_error(const char *fmt, const char *arg);

#endif
