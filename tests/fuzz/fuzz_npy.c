/* Fuzz target: the strict .npy parser on arbitrary bytes. Any input must
 * give either a complete array or an error message, never a crash. */
#include "npy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  npy_array a;
  char err[256];
  if (npy_parse(data, size, "fuzz.npy", &a, err, sizeof err) == 0) {
    /* Touch every byte the parser claims to hold. */
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < a.nbytes; ++i) sink ^= ((const unsigned char *)a.data)[i];
    (void)sink;
    npy_free(&a);
  } else if (!err[0]) {
    abort(); /* a failure must say why */
  }
  return 0;
}
