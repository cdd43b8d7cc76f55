/* Fuzz target: the tool's option parser on arbitrary argument vectors. The
 * first byte picks the accepted options and the positional count; the rest,
 * split at NUL bytes, are the arguments. */
#include "args.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  char *buf = malloc(size);
  if (!buf) return 0;
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = '\0';
  char *argv[33];
  int argc = 0;
  for (size_t i = 0; i < size - 1 && argc < 32;) {
    argv[argc++] = buf + i;
    i += strlen(buf + i) + 1;
  }
  argv[argc] = NULL;
  options o;
  /* Bits 0-4 and 7: accepted options; bits 5-6: positional count. */
  unsigned accept = (data[0] & 31u) | ((data[0] & 0x80u) ? (unsigned)OPT_SVG : 0u);
  int rc = tool_parse_options(argc, argv, accept, (data[0] >> 5) & 3, &o);
  if (rc != 0 && rc != 2) abort();
  if (rc == 0 && o.npos != ((data[0] >> 5) & 3)) abort();
  free(buf);
  return 0;
}
