/* .npy reading and writing (see npy.h).
 *
 * The reader treats its input as hostile: every access is checked against the
 * buffer, and the header must be the strict subset of a Python dict literal
 * that numpy writes. Any deviation is an error that says what was found. */
#define _POSIX_C_SOURCE 200809L
#include "npy.h"
#include "tool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__GNUC__)
#define NPY_PRINTF_(f, a) __attribute__((format(printf, f, a)))
#else
#define NPY_PRINTF_(f, a)
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64 /* numpy pads the preamble so the data start is aligned */

/* Supported descrs. The first entry for a dtype is the one the writer uses. */
static const struct {
  const char *descr;
  clsm_dtype dtype;
} descrs[] = {
    {"<f4", CLSM_FLOAT32}, {"<f8", CLSM_FLOAT64}, {"<f2", CLSM_FLOAT16}, {"<i8", CLSM_INT64},
    {"<i4", CLSM_INT32},   {"|u1", CLSM_UINT8},   {"<u1", CLSM_UINT8},   {"|b1", CLSM_UINT8},
};
#define NDESCRS (sizeof descrs / sizeof descrs[0])

static const char *const keys[3] = {"descr", "fortran_order", "shape"};

NPY_PRINTF_(3, 4)
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* Renders untrusted bytes s[0..n) for a message: printable ASCII as is, other
 * bytes as \xNN, cut with "..." after about 24 characters. */
static const char *printable(const unsigned char *s, size_t n, char dst[40]) {
  size_t i, at = 0;
  for (i = 0; i < n && at < 24; i++) {
    if (s[i] >= 0x20 && s[i] < 0x7f) dst[at++] = (char)s[i];
    else at += (size_t)snprintf(dst + at, 40 - at, "\\x%02x", s[i]);
  }
  strcpy(dst + at, i < n ? "..." : "");
  return dst;
}

/* "(2, 3)", "(3,)" or "()", as Python prints a tuple. */
void npy_shape_str(int rank, const int64_t *shape, char *dst, size_t len) {
  size_t at = (size_t)snprintf(dst, len, "(");
  for (int i = 0; i < rank && at < len; i++)
    at += (size_t)snprintf(dst + at, len - at, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (at < len) snprintf(dst + at, len - at, rank == 1 ? ",)" : ")");
}

/* Element count and byte count of a shape with non-negative dims. Fails when
 * either overflows. The product of the nonzero dims must fit as well, so code
 * that derives strides from the shape cannot overflow even when a zero dim
 * makes the array empty. */
static int shape_size(size_t esize, int rank, const int64_t *shape, int64_t *numel,
                      size_t *nbytes) {
  uint64_t limit = SIZE_MAX / esize, prod = 1;
  int empty = 0;
  if (limit > INT64_MAX) limit = INT64_MAX;
  for (int i = 0; i < rank; i++) {
    uint64_t d = (uint64_t)shape[i];
    if (d == 0) {
      empty = 1;
      continue;
    }
    if (prod > limit / d) return -1;
    prod *= d;
  }
  *numel = empty ? 0 : (int64_t)prod;
  *nbytes = (size_t)*numel * esize;
  return 0;
}

/* ---------------------------------------------------------------- header */

typedef struct parser {
  const unsigned char *p, *end; /* the unread part of the header */
  const char *name;
  char *err;
  size_t errlen;
  int fortran; /* the header said 'fortran_order': True */
} parser;

NPY_PRINTF_(2, 3)
static int herr(parser *ps, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return fail(ps->err, ps->errlen, "%s: header: %s", ps->name, msg);
}

/* What the parser is looking at, for "expected X, found Y" messages. */
static const char *found(const parser *ps, char dst[48]) {
  char text[40];
  if (ps->p >= ps->end) return "end of header";
  snprintf(dst, 48, "\"%s\"", printable(ps->p, (size_t)(ps->end - ps->p), text));
  return dst;
}

static void skip_ws(parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t')) ps->p++;
}

/* Skips blanks, then consumes c if it comes next. */
static int accept(parser *ps, char c) {
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == (unsigned char)c) {
    ps->p++;
    return 1;
  }
  return 0;
}

static int is_digit(const parser *ps) {
  return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9';
}

/* A string in single or double quotes. Escapes are not interpreted: no valid
 * key or descr contains a backslash, so such a string fails to match later. */
static int parse_string(parser *ps, const char *what, const unsigned char **s, size_t *n) {
  char f[48];
  skip_ws(ps);
  if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"'))
    return herr(ps, "%s: expected a quoted string, found %s", what, found(ps, f));
  unsigned char quote = *ps->p++;
  const unsigned char *close = memchr(ps->p, quote, (size_t)(ps->end - ps->p));
  if (!close) return herr(ps, "%s: unterminated string", what);
  *s = ps->p;
  *n = (size_t)(close - ps->p);
  ps->p = close + 1;
  return 0;
}

static int parse_descr(parser *ps, clsm_dtype *dtype) {
  const unsigned char *s;
  size_t n, i;
  char text[40];
  if (parse_string(ps, "descr", &s, &n)) return -1;
  for (i = 0; i < NDESCRS; i++)
    if (n == 3 && memcmp(s, descrs[i].descr, 3) == 0) {
      *dtype = descrs[i].dtype;
      return 0;
    }
  printable(s, n, text);
  for (i = 0; i < NDESCRS; i++)
    if (n == 3 && s[0] == '>' && memcmp(s + 1, descrs[i].descr + 1, 2) == 0)
      return herr(ps, "big-endian dtype '%s' is not supported", text);
  return herr(ps, "unsupported dtype '%s'", text);
}

static int parse_fortran_order(parser *ps) {
  char f[48];
  skip_ws(ps);
  size_t left = (size_t)(ps->end - ps->p);
  if (left >= 5 && memcmp(ps->p, "False", 5) == 0) {
    ps->p += 5;
    return 0;
  }
  if (left >= 4 && memcmp(ps->p, "True", 4) == 0) {
    ps->p += 4;
    ps->fortran = 1;
    return 0;
  }
  return herr(ps, "fortran_order: expected True or False, found %s", found(ps, f));
}

/* A tuple of decimal integers: "()", "(5,)", "(2, 3)", optional trailing comma
 * after two or more. "(5)" is the integer 5 in Python, so it is rejected. */
static int parse_shape(parser *ps, int *rank, int64_t *shape) {
  char f[48], text[40];
  int n = 0;
  if (!accept(ps, '(')) return herr(ps, "shape: expected '(', found %s", found(ps, f));
  if (accept(ps, ')')) {
    *rank = 0;
    return 0;
  }
  for (;;) {
    skip_ws(ps);
    const unsigned char *start = ps->p;
    if (ps->p < ps->end && *ps->p == '-') {
      ps->p++;
      while (is_digit(ps)) ps->p++;
      return herr(ps, "shape: negative dimension '%s'",
                  printable(start, (size_t)(ps->p - start), text));
    }
    if (!is_digit(ps)) return herr(ps, "shape: expected a dimension, found %s", found(ps, f));
    uint64_t v = 0;
    int overflow = 0;
    for (; is_digit(ps); ps->p++) {
      unsigned d = (unsigned)(*ps->p - '0');
      if (v > ((uint64_t)INT64_MAX - d) / 10) overflow = 1;
      else v = v * 10 + d;
    }
    if (overflow)
      return herr(ps, "shape: dimension %s does not fit in int64",
                  printable(start, (size_t)(ps->p - start), text));
    if (n == CLSM_MAX_RANK)
      return herr(ps, "shape: more than %d dimensions", CLSM_MAX_RANK);
    shape[n++] = (int64_t)v;
    if (accept(ps, ',')) {
      if (accept(ps, ')')) break;
    } else if (accept(ps, ')')) {
      if (n == 1) return herr(ps, "shape: (%" PRIu64 ") is not a tuple; expected (%" PRIu64 ",)", v, v);
      break;
    } else {
      return herr(ps, "shape: expected ',' or ')', found %s", found(ps, f));
    }
  }
  *rank = n;
  return 0;
}

/* The dict: each of the three keys exactly once, in any order. */
static int parse_dict(parser *ps, npy_array *a) {
  char f[48], text[40];
  int seen[3] = {0, 0, 0};
  if (!accept(ps, '{')) return herr(ps, "expected '{', found %s", found(ps, f));
  while (!accept(ps, '}')) {
    const unsigned char *k;
    size_t kn;
    int i, r;
    if (parse_string(ps, "key", &k, &kn)) return -1;
    for (i = 0; i < 3; i++)
      if (strlen(keys[i]) == kn && memcmp(k, keys[i], kn) == 0) break;
    if (i == 3) return herr(ps, "unexpected key '%s'", printable(k, kn, text));
    if (seen[i]) return herr(ps, "duplicate key '%s'", keys[i]);
    seen[i] = 1;
    if (!accept(ps, ':'))
      return herr(ps, "expected ':' after '%s', found %s", keys[i], found(ps, f));
    r = i == 0 ? parse_descr(ps, &a->dtype)
        : i == 1 ? parse_fortran_order(ps)
                 : parse_shape(ps, &a->rank, a->shape);
    if (r) return -1;
    if (accept(ps, ',')) continue;
    if (accept(ps, '}')) break;
    return herr(ps, "expected ',' or '}' after the value of '%s', found %s", keys[i], found(ps, f));
  }
  for (int i = 0; i < 3; i++)
    if (!seen[i]) return herr(ps, "missing key '%s'", keys[i]);
  /* numpy pads with spaces and ends the header with '\n'. */
  skip_ws(ps);
  if (ps->p + 1 == ps->end && *ps->p == '\n') ps->p++;
  if (ps->p != ps->end) return herr(ps, "unexpected %s after the closing '}'", found(ps, f));
  return 0;
}

/* Validates everything before the data and the data size; fills *a except
 * data, and *data_off with where the data begins. */
static int parse_preamble(const unsigned char *buf, size_t len, const char *name, npy_array *a,
                          size_t *data_off, int *fortran, char *err, size_t errlen) {
  if (len < NPY_MAGIC_LEN || memcmp(buf, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
    return fail(err, errlen, "%s: not an .npy file (bad magic string)", name);
  if (len < 8) return fail(err, errlen, "%s: truncated before the format version", name);
  unsigned major = buf[6], minor = buf[7];
  if (major < 1 || major > 3 || minor != 0)
    return fail(err, errlen, "%s: unsupported format version %u.%u (expected 1.0, 2.0 or 3.0)",
                name, major, minor);
  size_t off = major == 1 ? 10 : 12; /* 2.0 and 3.0 have a 4-byte header length */
  if (len < off) return fail(err, errlen, "%s: truncated in the header length field", name);
  uint64_t hlen = buf[8] | (uint64_t)buf[9] << 8;
  if (major > 1) hlen |= (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24;
  if (hlen > len - off)
    return fail(err, errlen,
                "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes follow)",
                name, hlen, len - off);

  parser ps = {buf + off, buf + off + hlen, name, err, errlen, 0};
  if (parse_dict(&ps, a)) return -1;
  *fortran = ps.fortran;
  if (shape_size(clsm_dtype_size(a->dtype), a->rank, a->shape, &a->numel, &a->nbytes)) {
    char s[256];
    npy_shape_str(a->rank, a->shape, s, sizeof s);
    return fail(err, errlen, "%s: header: shape %s is too large (its byte count overflows)", name,
                s);
  }
  off += (size_t)hlen;
  if (len - off < a->nbytes)
    return fail(err, errlen, "%s: truncated: expected %zu data bytes, found %zu", name, a->nbytes,
                len - off);
  if (len - off > a->nbytes)
    return fail(err, errlen, "%s: trailing bytes: expected %zu data bytes, found %zu", name,
                a->nbytes, len - off);
  *data_off = off;
  return 0;
}

/* Rewrites a's data from Fortran order (first index fastest, what NumPy
 * writes for a transposed array) into C order; the array means the same.
 * Returns 0, or nonzero when out of memory. */
static int fortran_to_c(npy_array *a) {
  if (a->rank < 2 || a->numel < 2) return 0;
  const size_t es = clsm_dtype_size(a->dtype);
  unsigned char *c = malloc(a->nbytes);
  if (!c) return -1;
  int64_t idx[CLSM_MAX_RANK] = {0}, fstride[CLSM_MAX_RANK];
  fstride[0] = 1;
  for (int d = 1; d < a->rank; ++d) fstride[d] = fstride[d - 1] * a->shape[d - 1];
  const unsigned char *f = a->data;
  int64_t foff = 0;
  for (int64_t p = 0; p < a->numel; ++p) {
    memcpy(c + (size_t)p * es, f + (size_t)foff * es, es);
    for (int d = a->rank - 1; d >= 0; --d) { /* the next C-order index */
      foff += fstride[d];
      if (++idx[d] < a->shape[d]) break;
      foff -= fstride[d] * a->shape[d];
      idx[d] = 0;
    }
  }
  free(a->data);
  a->data = c;
  return 0;
}

int npy_parse(const unsigned char *buf, size_t len, const char *name, npy_array *out, char *err,
              size_t errlen) {
  npy_array a;
  size_t off;
  if (!name) name = "<buffer>";
  if (!out || (!buf && len)) return fail(err, errlen, "%s: NULL argument", name);
  memset(out, 0, sizeof *out);
  memset(&a, 0, sizeof a);
  int fortran;
  if (parse_preamble(buf, len, name, &a, &off, &fortran, err, errlen)) return -1;
  if (a.nbytes) {
    if (!(a.data = malloc(a.nbytes)))
      return fail(err, errlen, "%s: out of memory for %zu data bytes", name, a.nbytes);
    memcpy(a.data, buf + off, a.nbytes);
  }
  if (fortran && fortran_to_c(&a)) {
    free(a.data);
    return fail(err, errlen, "%s: out of memory for %zu data bytes", name, a.nbytes);
  }
  *out = a;
  return 0;
}

/* Reads the whole of f into a malloc'd buffer. Reading to EOF rather than
 * trusting the size from fstat also works for pipes; the hint only saves
 * reallocations. */
static int slurp(FILE *f, unsigned char **buf, size_t *len) {
  struct stat st;
  size_t cap = 1 << 16, n = 0;
  unsigned char *b = NULL;
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < SIZE_MAX / 2)
    cap = (size_t)st.st_size + 1; /* the spare byte lets EOF show without a resize */
  for (;;) {
    if (!b || n == cap) {
      size_t ncap = b ? cap * 2 : cap;
      unsigned char *nb = (b && cap > SIZE_MAX / 2) ? NULL : realloc(b, ncap);
      if (!nb) {
        free(b);
        errno = ENOMEM;
        return -1;
      }
      b = nb;
      cap = ncap;
    }
    size_t got = fread(b + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    free(b);
    return -1;
  }
  *buf = b;
  *len = n;
  return 0;
}

int npy_read(const char *path, npy_array *out, char *err, size_t errlen) {
  unsigned char *buf;
  size_t len, off;
  npy_array a;
  if (!path || !out) return fail(err, errlen, "npy_read: NULL argument");
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
  int r = slurp(f, &buf, &len);
  int saved = errno;
  fclose(f);
  if (r) return fail(err, errlen, "%s: cannot read: %s", path, strerror(saved));

  memset(&a, 0, sizeof a);
  int fortran;
  if (parse_preamble(buf, len, path, &a, &off, &fortran, err, errlen)) {
    free(buf);
    return -1;
  }
  /* Reuse the file buffer for the data instead of holding two copies. */
  if (a.nbytes) {
    memmove(buf, buf + off, a.nbytes);
    a.data = realloc(buf, a.nbytes);
    if (!a.data) a.data = buf; /* shrinking failed; the larger block is fine */
  } else {
    free(buf);
  }
  if (fortran && fortran_to_c(&a)) {
    free(a.data);
    return fail(err, errlen, "%s: out of memory for %zu data bytes", path, a.nbytes);
  }
  *out = a;
  return 0;
}

/* ---------------------------------------------------------------- writer */

/* The preamble (magic, version, header) for a: fills pre (640 bytes) and
 * *prelen; returns 0, or nonzero with err filled. */
static int preamble_for(const char *path, const npy_array *a, unsigned char *pre, size_t *prelen,
                        char *err, size_t errlen) {
  const char *descr = NULL;
  char shape[256], header[512];
  int64_t numel;
  size_t nbytes, i;
  for (i = 0; i < NDESCRS && !descr; i++)
    if (descrs[i].dtype == a->dtype) descr = descrs[i].descr;
  if (!descr)
    return fail(err, errlen, "%s: dtype %s cannot be stored in .npy", path,
                clsm_dtype_name(a->dtype));
  if (a->rank < 0 || a->rank > CLSM_MAX_RANK)
    return fail(err, errlen, "%s: rank %d is outside 0..%d", path, a->rank, CLSM_MAX_RANK);
  for (int d = 0; d < a->rank; d++)
    if (a->shape[d] < 0)
      return fail(err, errlen, "%s: negative dimension %" PRId64 " in shape", path, a->shape[d]);
  npy_shape_str(a->rank, a->shape, shape, sizeof shape);
  if (shape_size(clsm_dtype_size(a->dtype), a->rank, a->shape, &numel, &nbytes))
    return fail(err, errlen, "%s: shape %s is too large", path, shape);
  if (nbytes != a->nbytes || numel != a->numel)
    return fail(err, errlen,
                "%s: nbytes %zu and numel %" PRId64 " do not match shape %s (%zu and %" PRId64 ")",
                path, a->nbytes, a->numel, shape, nbytes, numel);
  if (nbytes && !a->data) return fail(err, errlen, "%s: data is NULL", path);

  /* The header is padded with spaces and ends with '\n' so that the whole
   * preamble is a multiple of 64 bytes. Version 2.0 is only for headers beyond
   * the 16-bit length field of 1.0, which eight dims never reach. */
  size_t hn = (size_t)snprintf(header, sizeof header,
                               "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
                               shape);
  unsigned major = 1;
  size_t off = 10, pad = NPY_ALIGN - (off + hn + 1) % NPY_ALIGN;
  if (hn + pad + 1 > 0xffff) {
    major = 2;
    off = 12;
    pad = NPY_ALIGN - (off + hn + 1) % NPY_ALIGN;
  }
  size_t hlen = hn + pad + 1;
  *prelen = off + hlen;
  memcpy(pre, NPY_MAGIC, NPY_MAGIC_LEN);
  pre[6] = (unsigned char)major;
  pre[7] = 0;
  for (i = 0; i < off - 8; i++) pre[8 + i] = (unsigned char)(hlen >> (8 * i));
  memcpy(pre + off, header, hn);
  memset(pre + off + hn, ' ', pad);
  pre[*prelen - 1] = '\n';
  return 0;
}

int npy_write_to(tool_out *o, const npy_array *a, char *err, size_t errlen) {
  unsigned char pre[640];
  size_t prelen = 0;
  if (!o || !a || preamble_for(o->path, a, pre, &prelen, err, errlen)) {
    if (!o || !a) fail(err, errlen, "npy_write: NULL argument");
    return EXIT_INPUT;
  }
  int rc = tool_out_write(o, pre, prelen, err, errlen);
  return rc ? rc : tool_out_write(o, a->data, a->nbytes, err, errlen);
}

int npy_write(const char *path, const npy_array *a, char *err, size_t errlen) {
  tool_out o;
  if (!path || !a) {
    fail(err, errlen, "npy_write: NULL argument");
    return EXIT_INPUT;
  }
  int rc = tool_out_open(&o, path, err, errlen);
  if (rc) return rc;
  if ((rc = npy_write_to(&o, a, err, errlen))) {
    tool_out_abort(&o);
    return rc;
  }
  return tool_out_commit(&o, err, errlen);
}

/* ---------------------------------------------------------------- memory */

int npy_alloc(npy_array *a, clsm_dtype dtype, int rank, const int64_t *shape) {
  size_t esize = clsm_dtype_size(dtype);
  if (!a) return -1;
  memset(a, 0, sizeof *a);
  if (!esize || rank < 0 || rank > CLSM_MAX_RANK || (rank && !shape)) return -1;
  for (int i = 0; i < rank; i++)
    if (shape[i] < 0) return -1;
  if (shape_size(esize, rank, shape, &a->numel, &a->nbytes)) {
    memset(a, 0, sizeof *a);
    return -1;
  }
  if (a->nbytes && !(a->data = calloc(a->nbytes, 1))) {
    memset(a, 0, sizeof *a);
    return -1;
  }
  a->dtype = dtype;
  a->rank = rank;
  if (rank) memcpy(a->shape, shape, (size_t)rank * sizeof *shape);
  return 0;
}

void npy_free(npy_array *a) {
  if (!a) return;
  free(a->data);
  memset(a, 0, sizeof *a);
}
