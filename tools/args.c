/* The command-line tool's option parser: strict numbers, --name value or
 * --name=value, "--" ends the options. */
#include "args.h"
#include "tool.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tool_usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "clsoftmax: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nRun 'clsoftmax --help' for usage.\n");
  return EXIT_USAGE;
}

/* Strict integer parsing: the whole string, within [lo, hi]. */
static int parse_long(const char *s, long lo, long hi, long *out) {
  if (!s || !*s) return 0;
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

/* Strict 64-bit integer parsing: the whole string. */
static int parse_ll(const char *s, long long *out) {
  if (!s || !*s) return 0;
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return 0;
  *out = v;
  return 1;
}

/* Strict floating-point parsing: the whole string, finite. */
static int parse_double(const char *s, double *out) {
  if (!s || !*s) return 0;
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !isfinite(v)) return 0;
  *out = v;
  return 1;
}

int tool_parse_options(int argc, char **argv, unsigned accepted, int max_pos, options *o) {
  memset(o, 0, sizeof *o);
  o->dim = -1;
  o->ce = clsm_ce_options_default();
  o->attn = clsm_attn_options_default();
  int only_pos = 0;
  for (int i = 0; i < argc; ++i) {
    const char *a = argv[i];
    if (!only_pos && !strcmp(a, "--")) {
      only_pos = 1;
      continue;
    }
    if (!only_pos && a[0] == '-' && a[1] == '-') {
      const char *eq = strchr(a, '=');
      size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
      const char *val = eq ? eq + 1 : NULL;
#define IS(name) (nlen == strlen(name) && !strncmp(a, name, nlen))
      if (IS("--quick") && (accepted & OPT_QUICK)) {
        if (val) return tool_usage_error("--quick takes no value%s", "");
        o->quick = 1;
        continue;
      }
      const unsigned at = accepted & (OPT_ATTN | OPT_ATTN_BWD);
      if ((IS("--causal") && (accepted & OPT_ATTN)) || (IS("--safe") && at)) {
        if (val) return tool_usage_error("%s takes no value", IS("--safe") ? "--safe" : "--causal");
        if (IS("--safe")) o->attn.flags |= CLSM_SAFE;
        else o->attn.causal = 1, o->attn_terms = 1;
        o->attn_used = 1;
        continue;
      }
      if (IS("--verbose") && (accepted & OPT_VERBOSE)) {
        if (val) return tool_usage_error("--verbose takes no value%s", "");
        o->verbose = 1;
        continue;
      }
      int ce = (accepted & OPT_CE) &&
               (IS("--reduction") || IS("--ignore-index") || IS("--label-smoothing") ||
                IS("--weight") || IS("--z-loss") || IS("--softcap") || IS("--grad") || IS("--dloss"));
      int attn = (at && (IS("--scale") || IS("--sinks") || IS("--head-dim"))) ||
                 ((accepted & OPT_ATTN) && (IS("--mask") || IS("--offset") || IS("--alibi") ||
                                            IS("--alibi-slopes") || IS("--lse"))) ||
                 ((accepted & OPT_ATTN_BWD) && IS("--dsinks"));
      int takes = ce || attn || (IS("--dim") && (accepted & OPT_DIM)) ||
                  (IS("--device") && (accepted & OPT_DEVICE)) || (IS("--json") && (accepted & OPT_JSON)) ||
                  (IS("--svg") && (accepted & OPT_SVG)) || (IS("--shards") && (accepted & OPT_SHARDS));
      if (!takes) return tool_usage_error("unknown option '%s'", a);
      if (!val) {
        if (i + 1 >= argc) return tool_usage_error("option '%s' needs a value", a);
        val = argv[++i];
      }
      double d = 0;
      long lv = 0;
      if (attn) o->attn_used = o->attn_terms = 1;
      if (IS("--scale")) {
        if (!parse_double(val, &d)) return tool_usage_error("--scale needs a finite number, got '%s'", val);
        o->attn.scale = d;
      } else if (IS("--offset")) {
        long long v;
        if (!parse_ll(val, &v)) return tool_usage_error("--offset needs an integer, got '%s'", val);
        o->attn.offset = v;
      } else if (IS("--alibi")) {
        if (!parse_double(val, &d) || d <= 0)
          return tool_usage_error("--alibi needs a max_bias > 0, got '%s'", val);
        o->attn.alibi_max_bias = d;
      } else if (IS("--head-dim")) {
        if (!parse_long(val, -CLSM_MAX_RANK, CLSM_MAX_RANK - 1, &lv))
          return tool_usage_error("--head-dim needs an integer in [-8, 7], got '%s'", val);
        o->attn.head_dim = (int)lv;
      } else if (IS("--mask")) {
        o->mask = val;
      } else if (IS("--alibi-slopes")) {
        o->slopes = val;
      } else if (IS("--sinks")) {
        o->sinks = val;
      } else if (IS("--lse")) {
        o->lse = val;
      } else if (IS("--dsinks")) {
        o->dsinks = val;
      } else if (IS("--dim")) {
        if (!parse_long(val, -CLSM_MAX_RANK, CLSM_MAX_RANK - 1, &o->dim))
          return tool_usage_error("--dim needs an integer in [-8, 7], got '%s'", val);
      } else if (IS("--device")) {
        o->device = val;
      } else if (IS("--shards")) {
        if (!parse_long(val, 1, TOOL_MAX_SHARDS, &o->shards))
          return tool_usage_error("--shards needs an integer in [1, 64], got '%s'", val);
      } else if (IS("--json")) {
        if (!*val) return tool_usage_error("--json needs a file name%s", "");
        o->json = val;
      } else if (IS("--svg")) {
        if (!*val) return tool_usage_error("--svg needs a file name%s", "");
        o->svg = val;
      } else if (IS("--reduction")) {
        if (!strcmp(val, "mean")) o->ce.reduction = CLSM_REDUCTION_MEAN;
        else if (!strcmp(val, "sum")) o->ce.reduction = CLSM_REDUCTION_SUM;
        else if (!strcmp(val, "none")) o->ce.reduction = CLSM_REDUCTION_NONE;
        else return tool_usage_error("--reduction must be mean, sum or none, got '%s'", val);
      } else if (IS("--ignore-index")) {
        long long v;
        if (!parse_ll(val, &v)) return tool_usage_error("--ignore-index needs an integer, got '%s'", val);
        o->ce.ignore_index = v;
      } else if (IS("--label-smoothing")) {
        if (!parse_double(val, &d) || d < 0 || d > 1)
          return tool_usage_error("--label-smoothing needs a number in [0, 1], got '%s'", val);
        o->ce.label_smoothing = d;
      } else if (IS("--z-loss")) {
        if (!parse_double(val, &d) || d < 0)
          return tool_usage_error("--z-loss needs a finite number >= 0, got '%s'", val);
        o->ce.z_loss = d;
      } else if (IS("--softcap")) {
        if (!parse_double(val, &d) || d < 0)
          return tool_usage_error("--softcap needs a finite number >= 0 (0: off), got '%s'", val);
        o->ce.softcap = d;
      } else if (IS("--weight")) {
        o->weight = val;
      } else if (IS("--grad")) {
        o->grad = val;
      } else {
        o->dloss = val;
      }
#undef IS
      continue;
    }
    if (o->npos >= max_pos) return tool_usage_error("unexpected argument '%s'", a);
    o->pos[o->npos++] = a;
  }
  if (o->attn.alibi_max_bias > 0 && o->slopes)
    return tool_usage_error("--alibi and --alibi-slopes exclude each other%s", "");
  if (o->npos != max_pos) {
    char n[16];
    snprintf(n, sizeof n, "%d", max_pos);
    return tool_usage_error("expected %s file arguments", n);
  }
  return 0;
}

