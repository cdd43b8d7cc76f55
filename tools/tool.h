/* Shared declarations of the clsoftmax command-line tool. */
#ifndef CLSM_TOOL_H
#define CLSM_TOOL_H

#include "clsoftmax.h"

/* Exit statuses (the tool's interface: scripts rely on them). */
enum {
  EXIT_OK = 0,
  EXIT_DEVICE = 1, /* device or OpenCL failure */
  EXIT_USAGE = 2,  /* usage or option error */
  EXIT_INPUT = 3,  /* unreadable or malformed input, shapes/dtypes that do not fit */
  EXIT_VALUE = 4,  /* invalid values (class index out of range) */
  EXIT_OUTPUT = 5  /* an output cannot be written: its folder is missing, no permission, disk full */
};

/* Creates a context for `spec` (NULL: the default device); on failure prints
 * why on stderr and returns NULL. */
clsm_context *tool_context(const char *spec);
/* Prints a failed library call's status and detail on stderr; returns the exit
 * status it maps to. */
int tool_report(clsm_context *ctx, clsm_status st, const char *what);

int tool_demo(const char *device);
int tool_bench(const char *device, int quick, const char *json_path, const char *svg_path);

#endif
