/* Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0),
 * limited to little-endian arrays of the dtypes the tool handles. Fortran-order
 * files (what np.save writes for a transposed array) are read into C order. */
#ifndef CLSM_NPY_H
#define CLSM_NPY_H

#include "clsoftmax.h"
#include "output.h"

#include <stddef.h>
#include <stdint.h>

typedef struct npy_array {
  clsm_dtype dtype; /* float32 '<f4', float64 '<f8', float16 '<f2', int64 '<i8', int32 '<i4', uint8 '|u1' (or '|b1', numpy's bool) */
  int rank;         /* 0..CLSM_MAX_RANK */
  int64_t shape[CLSM_MAX_RANK];
  void *data; /* malloc'd, C order, little-endian; NULL allowed when nbytes == 0 */
  size_t nbytes;
  int64_t numel;
} npy_array;

/* Returns 0 on success. On failure returns nonzero, fills err (NUL-terminated,
 * at most errlen bytes) with a message that names the file and the problem
 * (which field, what was found), and leaves *out zeroed. */
int npy_read(const char *path, npy_array *out, char *err, size_t errlen);

/* Same, from memory; `name` is used in messages. */
int npy_parse(const unsigned char *buf, size_t len, const char *name, npy_array *out, char *err,
              size_t errlen);

/* Writes version 1.0 (2.0 if the header needs it) to path as output.h
 * describes: a regular file is replaced atomically (through a symbolic link
 * too), a FIFO or "-" is streamed. On any failure an existing file is
 * untouched. Returns 0, or the tool's exit status for the failure with err
 * filled: EXIT_INPUT when the array cannot be stored, EXIT_USAGE or
 * EXIT_OUTPUT when the path cannot take it. */
int npy_write(const char *path, const npy_array *a, char *err, size_t errlen);

/* The same into an output already open; the caller commits or aborts it. */
int npy_write_to(tool_out *o, const npy_array *a, char *err, size_t errlen);

/* "(2, 3)", "(5,)" or "()" for a shape, as NumPy prints it. */
void npy_shape_str(int rank, const int64_t *shape, char *dst, size_t len);

/* Allocates data for dtype/rank/shape (zero-filled); returns 0, or nonzero on
 * an invalid rank or dim, overflow or allocation failure (*a is then zeroed). */
int npy_alloc(npy_array *a, clsm_dtype dtype, int rank, const int64_t *shape);

/* Frees the data and zeroes *a; NULL is allowed. */
void npy_free(npy_array *a);

#endif
