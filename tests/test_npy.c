/* Tests of the .npy reader and writer (tools/npy.c). Expected bytes and values
 * are written out by hand from the format description, not produced by the
 * code under test. */
#define _POSIX_C_SOURCE 200809L
#include "npy.h"

#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void) {
  strcpy(dir, "/tmp/test_npy_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Removes the folder and what the tests left in it (files and empty folders). */
static void remove_dir(void) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char p[512];
  if (!d) return;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      if (unlink(p)) rmdir(p);
    }
  closedir(d);
  rmdir(dir);
}

static char *in_dir(const char *name) {
  static char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return p;
}

/* Names in the test folder, "." and ".." excluded; *tmp counts those that look
 * like a leftover temporary. */
static int count_entries(int *tmp) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  *tmp = 0;
  ck_assert_ptr_nonnull(d);
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      n++;
      if (strstr(e->d_name, ".tmp")) ++*tmp;
    }
  closedir(d);
  return n;
}

static void write_bytes(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
  ck_assert_int_eq(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  unsigned char *buf = malloc(1 << 20);
  ck_assert_ptr_nonnull(buf);
  *len = fread(buf, 1, 1 << 20, f);
  fclose(f);
  return buf;
}

static int contains(const unsigned char *buf, size_t len, const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(buf + i, s, n) == 0) return 1;
  return 0;
}

/* An .npy image with the given version and header text (taken verbatim, no
 * padding added) followed by datalen bytes from data, or zeros. */
static unsigned char *build(int major, int minor, const char *header, const void *data,
                            size_t datalen, size_t *len) {
  size_t hl = strlen(header), off = major == 1 ? 10 : 12;
  unsigned char *b = calloc(1, off + hl + datalen + 1);
  ck_assert_ptr_nonnull(b);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (unsigned char)major;
  b[7] = (unsigned char)minor;
  b[8] = (unsigned char)(hl & 0xff);
  b[9] = (unsigned char)(hl >> 8);
  if (major != 1) {
    b[10] = (unsigned char)(hl >> 16);
    b[11] = (unsigned char)(hl >> 24);
  }
  memcpy(b + off, header, hl);
  if (data) memcpy(b + off + hl, data, datalen);
  *len = off + hl + datalen;
  return b;
}

static void assert_zeroed(const npy_array *a) {
  ck_assert_int_eq(a->dtype, 0);
  ck_assert_int_eq(a->rank, 0);
  for (int i = 0; i < CLSM_MAX_RANK; i++) ck_assert_int_eq(a->shape[i], 0);
  ck_assert_ptr_null(a->data);
  ck_assert_uint_eq(a->nbytes, 0);
  ck_assert_int_eq(a->numel, 0);
}

/* What numpy.save writes for np.array([1.0, 2.0], dtype='<f4'): a 118-byte
 * header (0x76) padded so the data starts at byte 128. */
#define F4_DICT "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
static size_t known_f4(unsigned char out[136]) {
  memcpy(out, "\x93NUMPY\x01\x00\x76\x00", 10);
  memcpy(out + 10, F4_DICT, 57);
  memset(out + 67, ' ', 60);
  out[127] = '\n';
  memcpy(out + 128, "\x00\x00\x80\x3f\x00\x00\x00\x40", 8); /* 1.0f, 2.0f */
  return 136;
}

/* ------------------------------------------------------------------ Core */

START_TEST(test_known_f4_parse) {
  unsigned char file[136];
  size_t len = known_f4(file);
  npy_array a;
  char err[256];
  ck_assert_int_eq(npy_parse(file, len, "k.npy", &a, err, sizeof err), 0);
  ck_assert_int_eq(a.dtype, CLSM_FLOAT32);
  ck_assert_int_eq(a.rank, 1);
  ck_assert_int_eq(a.shape[0], 2);
  ck_assert_int_eq(a.numel, 2);
  ck_assert_uint_eq(a.nbytes, 8);
  ck_assert_float_eq(((float *)a.data)[0], 1.0f);
  ck_assert_float_eq(((float *)a.data)[1], 2.0f);
  npy_free(&a);
  assert_zeroed(&a);
}
END_TEST

START_TEST(test_known_f4_write) {
  unsigned char want[136];
  size_t wlen = known_f4(want), len;
  const int64_t shape[1] = {2};
  npy_array a;
  char err[256] = "";
  ck_assert_int_eq(npy_alloc(&a, CLSM_FLOAT32, 1, shape), 0);
  ((float *)a.data)[0] = 1.0f;
  ((float *)a.data)[1] = 2.0f;
  ck_assert_msg(npy_write(in_dir("k.npy"), &a, err, sizeof err) == 0, "%s", err);
  npy_free(&a);
  unsigned char *got = read_bytes(in_dir("k.npy"), &len);
  ck_assert_uint_eq(len, wlen);
  ck_assert_mem_eq(got, want, wlen);
  free(got);
}
END_TEST

START_TEST(test_roundtrip_dtypes) {
  static const struct {
    clsm_dtype dtype;
    const char *descr;
    size_t size;
  } t[] = {{CLSM_FLOAT32, "'<f4'", 4}, {CLSM_FLOAT64, "'<f8'", 8}, {CLSM_FLOAT16, "'<f2'", 2},
           {CLSM_INT64, "'<i8'", 8},   {CLSM_INT32, "'<i4'", 4},   {CLSM_UINT8, "'|u1'", 1}};
  const int64_t shape[2] = {2, 3};
  char err[256] = "";
  for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
    npy_array a, b;
    size_t len;
    ck_assert_int_eq(npy_alloc(&a, t[k].dtype, 2, shape), 0);
    ck_assert_uint_eq(a.nbytes, 6 * t[k].size);
    for (size_t i = 0; i < a.nbytes; i++) ((unsigned char *)a.data)[i] = (unsigned char)(i * 7 + 1);
    ck_assert_msg(npy_write(in_dir("d.npy"), &a, err, sizeof err) == 0, "%s", err);

    unsigned char *file = read_bytes(in_dir("d.npy"), &len);
    ck_assert(contains(file, len, t[k].descr));
    ck_assert(contains(file, len, "'shape': (2, 3)"));
    ck_assert_uint_eq((len - a.nbytes) % 64, 0);
    ck_assert_int_eq(file[len - a.nbytes - 1], '\n');
    free(file);

    ck_assert_msg(npy_read(in_dir("d.npy"), &b, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(b.dtype, t[k].dtype);
    ck_assert_int_eq(b.rank, 2);
    ck_assert_int_eq(b.shape[0], 2);
    ck_assert_int_eq(b.shape[1], 3);
    ck_assert_int_eq(b.numel, 6);
    ck_assert_uint_eq(b.nbytes, a.nbytes);
    ck_assert_mem_eq(b.data, a.data, a.nbytes);
    npy_free(&a);
    npy_free(&b);
  }
}
END_TEST

START_TEST(test_roundtrip_ranks) {
  static const struct {
    int rank;
    int64_t shape[CLSM_MAX_RANK];
    int64_t numel;
    const char *text;
  } t[] = {
      {0, {0}, 1, "'shape': ()"},
      {1, {5}, 5, "'shape': (5,)"},
      {3, {2, 3, 4}, 24, "'shape': (2, 3, 4)"},
      {8, {1, 2, 1, 2, 1, 2, 1, 3}, 24, "'shape': (1, 2, 1, 2, 1, 2, 1, 3)"},
      {3, {3, 0, 2}, 0, "'shape': (3, 0, 2)"},
      {1, {0}, 0, "'shape': (0,)"},
  };
  char err[256] = "";
  for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
    npy_array a, b;
    size_t len;
    ck_assert_int_eq(npy_alloc(&a, CLSM_INT32, t[k].rank, t[k].shape), 0);
    ck_assert_int_eq(a.numel, t[k].numel);
    ck_assert_uint_eq(a.nbytes, (size_t)t[k].numel * 4);
    for (int64_t i = 0; i < a.numel; i++) ((int32_t *)a.data)[i] = (int32_t)(i * 1000 - 7);
    ck_assert_msg(npy_write(in_dir("r.npy"), &a, err, sizeof err) == 0, "%s", err);

    unsigned char *file = read_bytes(in_dir("r.npy"), &len);
    ck_assert_msg(contains(file, len, t[k].text), "rank %d", t[k].rank);
    free(file);

    ck_assert_msg(npy_read(in_dir("r.npy"), &b, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(b.rank, t[k].rank);
    for (int i = 0; i < t[k].rank; i++) ck_assert_int_eq(b.shape[i], t[k].shape[i]);
    ck_assert_int_eq(b.numel, t[k].numel);
    ck_assert_uint_eq(b.nbytes, a.nbytes);
    if (a.nbytes) ck_assert_mem_eq(b.data, a.data, a.nbytes);
    npy_free(&a);
    npy_free(&b);
  }
}
END_TEST

/* Files for each format version, written byte by byte, read from disk. */
START_TEST(test_versions) {
  /* int32 {1, -2, 3, -4} in little-endian */
  static const unsigned char data[16] = {1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff,
                                         3, 0, 0, 0, 0xfc, 0xff, 0xff, 0xff};
  const char *header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }     \n";
  char err[256] = "";
  for (int major = 1; major <= 3; major++) {
    size_t len;
    unsigned char *file = build(major, 0, header, data, sizeof data, &len);
    write_bytes(in_dir("v.npy"), file, len);
    free(file);
    npy_array a;
    ck_assert_msg(npy_read(in_dir("v.npy"), &a, err, sizeof err) == 0, "v%d: %s", major, err);
    ck_assert_int_eq(a.dtype, CLSM_INT32);
    ck_assert_int_eq(a.rank, 2);
    ck_assert_int_eq(a.shape[0], 2);
    ck_assert_int_eq(a.shape[1], 2);
    const int32_t *v = a.data;
    ck_assert_int_eq(v[0], 1);
    ck_assert_int_eq(v[1], -2);
    ck_assert_int_eq(v[2], 3);
    ck_assert_int_eq(v[3], -4);
    npy_free(&a);
  }
}
END_TEST

/* Fortran order (np.save of a transposed array): read as the same array in C
 * order, for each format version, rank 1 to 3; element (i, j, k) of a 2x3x4
 * array sits at i + 2 j + 6 k in the file. */
START_TEST(test_fortran_order) {
  int32_t fdata[24];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) fdata[i + 2 * j + 6 * k] = 100 * i + 10 * j + k;
  static const struct {
    const char *header;
    int rank;
    int64_t shape[3];
  } cases[] = {
      {"{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3, 4), }\n", 3, {2, 3, 4}},
      {"{'descr': '<i4', 'fortran_order': True, 'shape': (6, 4), }\n", 2, {6, 4}},
      {"{'descr': '<i4', 'fortran_order': True, 'shape': (24,), }\n", 1, {24}},
  };
  char err[256] = "";
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c)
    for (int major = 1; major <= 3; major += 2) {
      size_t len;
      unsigned char *file = build(major, 0, cases[c].header, fdata, sizeof fdata, &len);
      write_bytes(in_dir("f.npy"), file, len);
      npy_array a, b;
      ck_assert_msg(npy_read(in_dir("f.npy"), &a, err, sizeof err) == 0, "%s", err);
      ck_assert_msg(npy_parse(file, len, "f", &b, err, sizeof err) == 0, "%s", err);
      free(file);
      ck_assert_int_eq(a.rank, cases[c].rank);
      const int32_t *v = a.data, *w = b.data;
      for (int p = 0; p < 24; ++p) {
        /* C-order position p of the case's shape, as (i, j, k) of 2x3x4 */
        int i, j, k;
        if (cases[c].rank == 3) {
          i = p / 12, j = p / 4 % 3, k = p % 4;
        } else if (cases[c].rank == 2) { /* (6, 4): row r = i + 2 j, column k */
          int r = p / 4;
          i = r % 2, j = r / 2, k = p % 4;
        } else { /* (24,): the file order itself */
          i = p % 2, j = p / 2 % 3, k = p / 6;
        }
        ck_assert_msg(v[p] == 100 * i + 10 * j + k && w[p] == v[p], "case %zu v%d position %d: %d",
                      c, major, p, v[p]);
      }
      npy_free(&a);
      npy_free(&b);
    }
}
END_TEST

/* Header spellings other writers produce, all valid Python literals. */
START_TEST(test_header_variants) {
  static const struct {
    const char *header;
    clsm_dtype dtype;
    int rank;
    int64_t d0, d1;
  } t[] = {
      {"{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (3,)}\n", CLSM_FLOAT64, 1, 3, 0},
      {"{'shape': (2, 1), 'descr': '<i8', 'fortran_order': False}", CLSM_INT64, 2, 2, 1},
      {"{'fortran_order': False, 'shape': (4,), 'descr': '<u1', }  \n", CLSM_UINT8, 1, 4, 0},
      {"{'descr':'|u1','fortran_order':False,'shape':(1,3,)}", CLSM_UINT8, 2, 1, 3},
      {"{ 'descr' : '<f2' , 'fortran_order' : False , 'shape' : ( 2 , ) , }", CLSM_FLOAT16, 1, 2, 0},
      {"{'descr': \"<i4\", 'fortran_order': False, 'shape': ()}", CLSM_INT32, 0, 0, 0},
  };
  char err[256] = "";
  for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
    int64_t numel = t[k].rank == 0 ? 1 : t[k].rank == 1 ? t[k].d0 : t[k].d0 * t[k].d1;
    size_t esize = clsm_dtype_size(t[k].dtype), len;
    unsigned char *file = build(1, 0, t[k].header, NULL, (size_t)numel * esize, &len);
    npy_array a;
    ck_assert_msg(npy_parse(file, len, "h.npy", &a, err, sizeof err) == 0, "%zu: %s", k, err);
    ck_assert_int_eq(a.dtype, t[k].dtype);
    ck_assert_int_eq(a.rank, t[k].rank);
    if (t[k].rank > 0) ck_assert_int_eq(a.shape[0], t[k].d0);
    if (t[k].rank > 1) ck_assert_int_eq(a.shape[1], t[k].d1);
    ck_assert_int_eq(a.numel, numel);
    npy_free(&a);
    free(file);
  }
}
END_TEST

START_TEST(test_read_missing_file) {
  npy_array a;
  char err[256] = "";
  memset(&a, 0xa5, sizeof a);
  ck_assert_int_ne(npy_read(in_dir("absent.npy"), &a, err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, "absent.npy"));
  assert_zeroed(&a);
}
END_TEST

START_TEST(test_write_missing_folder) {
  const int64_t shape[1] = {3};
  npy_array a;
  char err[256] = "";
  int tmp;
  ck_assert_int_eq(npy_alloc(&a, CLSM_FLOAT32, 1, shape), 0);
  ck_assert_int_ne(npy_write(in_dir("nowhere/a.npy"), &a, err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, "nowhere/a.npy"));
  ck_assert_int_eq(count_entries(&tmp), 0);
  npy_free(&a);
}
END_TEST

/* A second write replaces the first completely and leaves no temporary. */
START_TEST(test_write_replaces) {
  const int64_t big[1] = {1000}, small[1] = {2};
  npy_array a, b;
  char err[256] = "";
  size_t len;
  int tmp;
  ck_assert_int_eq(npy_alloc(&a, CLSM_FLOAT64, 1, big), 0);
  memset(a.data, 0x55, a.nbytes);
  ck_assert_msg(npy_write(in_dir("w.npy"), &a, err, sizeof err) == 0, "%s", err);
  npy_free(&a);
  ck_assert_int_eq(npy_alloc(&a, CLSM_UINT8, 1, small), 0);
  ((unsigned char *)a.data)[0] = 7;
  ((unsigned char *)a.data)[1] = 9;
  ck_assert_msg(npy_write(in_dir("w.npy"), &a, err, sizeof err) == 0, "%s", err);
  npy_free(&a);

  unsigned char *file = read_bytes(in_dir("w.npy"), &len);
  ck_assert_uint_eq(len, 128 + 2);
  free(file);
  ck_assert_int_eq(npy_read(in_dir("w.npy"), &b, err, sizeof err), 0);
  ck_assert_int_eq(b.dtype, CLSM_UINT8);
  ck_assert_int_eq(b.shape[0], 2);
  ck_assert_int_eq(((unsigned char *)b.data)[0], 7);
  ck_assert_int_eq(((unsigned char *)b.data)[1], 9);
  npy_free(&b);
  ck_assert_int_eq(count_entries(&tmp), 1);
  ck_assert_int_eq(tmp, 0);
}
END_TEST

/* Failed writes leave an existing file as it was and no temporary behind. */
START_TEST(test_write_failure_keeps_file) {
  const int64_t shape[1] = {4};
  npy_array a;
  char err[256];
  size_t len;
  int tmp;
  write_bytes(in_dir("keep.npy"), "precious", 8);
  ck_assert_int_eq(mkdir(in_dir("sub"), 0700), 0);

  ck_assert_int_eq(npy_alloc(&a, CLSM_FLOAT32, 1, shape), 0);
  /* rename() cannot put a file over a folder: fails after the temporary exists */
  err[0] = '\0';
  ck_assert_int_ne(npy_write(in_dir("sub"), &a, err, sizeof err), 0);
  ck_assert_str_ne(err, "");

  a.nbytes = 12; /* inconsistent with the shape */
  err[0] = '\0';
  ck_assert_int_ne(npy_write(in_dir("keep.npy"), &a, err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, "keep.npy"));
  a.nbytes = 16;

  a.dtype = CLSM_BFLOAT16; /* no .npy descr */
  err[0] = '\0';
  ck_assert_int_ne(npy_write(in_dir("keep.npy"), &a, err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, "bfloat16"));
  a.dtype = CLSM_FLOAT32;

  a.shape[0] = -4;
  err[0] = '\0';
  ck_assert_int_ne(npy_write(in_dir("keep.npy"), &a, err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, "negative"));
  a.shape[0] = 4;
  npy_free(&a);

  unsigned char *file = read_bytes(in_dir("keep.npy"), &len);
  ck_assert_uint_eq(len, 8);
  ck_assert_mem_eq(file, "precious", 8);
  free(file);
  struct stat st;
  ck_assert_int_eq(stat(in_dir("sub"), &st), 0);
  ck_assert(S_ISDIR(st.st_mode));
  ck_assert_int_eq(count_entries(&tmp), 2);
  ck_assert_int_eq(tmp, 0);
}
END_TEST

START_TEST(test_alloc) {
  const int64_t ok[2] = {3, 5}, over[2] = {INT64_MAX, 2}, neg[2] = {3, -1};
  const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  npy_array a;
  ck_assert_int_eq(npy_alloc(&a, CLSM_INT64, 2, ok), 0);
  ck_assert_int_eq(a.numel, 15);
  ck_assert_uint_eq(a.nbytes, 120);
  for (size_t i = 0; i < a.nbytes; i++) ck_assert_int_eq(((unsigned char *)a.data)[i], 0);
  npy_free(&a);
  assert_zeroed(&a);
  npy_free(NULL);

  ck_assert_int_ne(npy_alloc(&a, CLSM_UINT8, 2, over), 0);
  assert_zeroed(&a);
  ck_assert_int_ne(npy_alloc(&a, CLSM_UINT8, 2, neg), 0);
  assert_zeroed(&a);
  ck_assert_int_ne(npy_alloc(&a, CLSM_UINT8, 9, nine), 0);
  assert_zeroed(&a);
  ck_assert_int_ne(npy_alloc(&a, (clsm_dtype)99, 2, ok), 0);
  assert_zeroed(&a);
}
END_TEST

/* ---------------------------------------------------------------- Errors */

#define GOOD_HDR "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n"

typedef struct bad_case {
  const char *raw; /* the whole file, when not NULL */
  size_t raw_len;
  int major, minor;
  const char *header;
  size_t datalen;
  const char *expect; /* a substring of the message */
} bad_case;

#define RAW(bytes, expect) {bytes, sizeof(bytes) - 1, 0, 0, NULL, 0, expect}
#define HDR(header, datalen, expect) {NULL, 0, 1, 0, header, datalen, expect}
#define SHAPE(s, expect) HDR("{'descr': '<f4', 'fortran_order': False, 'shape': " s "}", 0, expect)

static const bad_case bad[] = {
    RAW("", "bad magic"),
    RAW("\x93NUMPZ\x01\x00\x00\x00", "bad magic"),
    RAW("\x93NUMP", "bad magic"),
    RAW("\x93NUMPY", "format version"),
    {NULL, 0, 4, 0, GOOD_HDR, 8, "unsupported format version 4.0"},
    {NULL, 0, 1, 1, GOOD_HDR, 8, "unsupported format version 1.1"},
    {NULL, 0, 0, 0, GOOD_HDR, 8, "unsupported format version 0.0"},
    RAW("\x93NUMPY\x01\x00\x05", "header length"),
    RAW("\x93NUMPY\x02\x00\x05\x00\x00", "header length"),
    RAW("\x93NUMPY\x01\x00\xc8\x00{'descr'", "header length 200 runs past the end"),
    RAW("\x93NUMPY\x02\x00\xff\xff\xff\xff{", "runs past the end"),
    RAW("\x93NUMPY\x02\x00\x05\x00\x01\x00{}", "header length 65541 runs past the end"),
    RAW("\x93NUMPY\x03\x00\x05\x00\x00\x01{}", "header length 16777221 runs past the end"),
    RAW("\x93NUMPY\x01\x00\x00\x00", "expected '{', found end of header"),
    HDR("{'descr': '<f4', 'fortran_order': False}", 0, "missing key 'shape'"),
    HDR("{'shape': (2,), 'fortran_order': False}", 8, "missing key 'descr'"),
    HDR("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'foo': 1}", 8,
        "unexpected key 'foo'"),
    HDR("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8,
        "duplicate key 'descr'"),
    HDR("{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}", 8,
        "big-endian dtype '>f4' is not supported"),
    HDR("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8, "expected True or False"),
    HDR("{'descr': '<c8', 'fortran_order': False, 'shape': (2,)}", 16, "header: unsupported dtype '<c8'"),
    HDR("{'descr': '|i1', 'fortran_order': False, 'shape': (2,)}", 2, "unsupported dtype '|i1'"),
    HDR("{'descr': 5, 'fortran_order': False, 'shape': (2,)}", 8, "descr: expected a quoted string"),
    HDR("{'descr: '<f4', 'fortran_order': False, 'shape': (2,)}", 8, "unexpected key"),
    HDR("{'descr", 0, "unterminated string"),
    HDR("{descr: '<f4'}", 0, "key: expected a quoted string"),
    HDR("{'descr' '<f4'}", 0, "expected ':' after 'descr'"),
    HDR("{'descr': '<f4' 'fortran_order': False}", 0, "expected ',' or '}'"),
    HDR("['descr', '<f4']", 0, "expected '{'"),
    HDR("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x\n", 8, "after the closing '}'"),
    HDR("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n\n", 8, "after the closing '}'"),
    SHAPE("(2, -3)", "negative dimension '-3'"),
    SHAPE("(99999999999999999999,)", "dimension 99999999999999999999 does not fit in int64"),
    SHAPE("(9223372036854775808,)", "does not fit in int64"),
    SHAPE("(4294967296, 4294967296, 4)", "too large"),
    SHAPE("(0, 4294967296, 4294967296)", "too large"),
    SHAPE("(4611686018427387904,)", "too large"), /* 2^62 elements of 4 bytes */
    SHAPE("(1, 1, 1, 1, 1, 1, 1, 1, 1)", "more than 8 dimensions"),
    SHAPE("(5)", "(5) is not a tuple"),
    SHAPE("(2, x)", "shape: expected a dimension, found \"x)}\""),
    SHAPE("(,)", "shape: expected a dimension"),
    SHAPE("[2]", "shape: expected '('"),
    SHAPE("(2 3)", "shape: expected ',' or ')'"),
    HDR("{'descr': '<f4', 'fortran_order': False, 'shape': (2", 0, "found end of header"),
    HDR(GOOD_HDR, 4, "truncated: expected 8 data bytes, found 4"),
    HDR(GOOD_HDR, 0, "truncated: expected 8 data bytes, found 0"),
    HDR(GOOD_HDR, 9, "trailing bytes: expected 8 data bytes, found 9"),
};
#define NBAD ((int)(sizeof bad / sizeof bad[0]))

START_TEST(test_bad_input) {
  const bad_case *c = &bad[_i];
  unsigned char *file;
  size_t len;
  npy_array a;
  char err[256] = "";
  if (c->raw) {
    len = c->raw_len;
    file = malloc(len + 1);
    ck_assert_ptr_nonnull(file);
    memcpy(file, c->raw, len);
  } else {
    file = build(c->major, c->minor, c->header, NULL, c->datalen, &len);
  }
  memset(&a, 0xa5, sizeof a);
  ck_assert_int_ne(npy_parse(file, len, "bad.npy", &a, err, sizeof err), 0);
  assert_zeroed(&a);
  ck_assert_msg(strncmp(err, "bad.npy: ", 9) == 0, "case %d: message '%s'", _i, err);
  ck_assert_msg(strstr(err, c->expect) != NULL, "case %d: expected '%s' in '%s'", _i, c->expect,
                err);
  free(file);
}
END_TEST

/* The message names the file when reading from disk as well. */
START_TEST(test_bad_file) {
  size_t len;
  unsigned char *file = build(1, 0, GOOD_HDR, NULL, 5, &len);
  npy_array a;
  char err[256] = "";
  write_bytes(in_dir("short.npy"), file, len);
  free(file);
  ck_assert_int_ne(npy_read(in_dir("short.npy"), &a, err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, in_dir("short.npy")));
  ck_assert_ptr_nonnull(strstr(err, "truncated: expected 8 data bytes, found 5"));
  assert_zeroed(&a);
}
END_TEST

/* Every proper prefix of a valid file is rejected; small buffers and a NULL
 * err are handled. */
START_TEST(test_prefixes) {
  unsigned char file[136];
  size_t len = known_f4(file);
  npy_array a;
  char err[8];
  for (size_t n = 0; n < len; n++) {
    unsigned char *copy = malloc(n ? n : 1); /* exact size, so overreads show */
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, file, n);
    ck_assert_msg(npy_parse(copy, n, "p.npy", &a, err, sizeof err) != 0, "prefix %zu", n);
    ck_assert_uint_lt(strlen(err), sizeof err);
    ck_assert_int_ne(npy_parse(copy, n, NULL, &a, NULL, 0), 0);
    free(copy);
  }
  ck_assert_int_eq(npy_parse(file, len, "p.npy", &a, err, sizeof err), 0);
  npy_free(&a);
}
END_TEST

/* Every byte of a valid file replaced by a few hostile values: any outcome
 * but a crash, an overread or a leak is acceptable. */
START_TEST(test_mutations) {
  static const unsigned char vals[] = {0, 0xff, '(', ')', ',', '\'', '9', '-', '}', '\n'};
  unsigned char file[136];
  size_t len = known_f4(file);
  char err[128];
  for (size_t i = 0; i < len; i++)
    for (size_t v = 0; v < sizeof vals; v++) {
      unsigned char *copy = malloc(len);
      ck_assert_ptr_nonnull(copy);
      memcpy(copy, file, len);
      copy[i] = vals[v];
      npy_array a;
      if (npy_parse(copy, len, "m.npy", &a, err, sizeof err) == 0) npy_free(&a);
      free(copy);
    }
}
END_TEST

static Suite *npy_suite(void) {
  Suite *s = suite_create("npy");
  TCase *core = tcase_create("Core");
  tcase_add_checked_fixture(core, make_dir, remove_dir);
  tcase_set_timeout(core, 30);
  tcase_add_test(core, test_known_f4_parse);
  tcase_add_test(core, test_known_f4_write);
  tcase_add_test(core, test_roundtrip_dtypes);
  tcase_add_test(core, test_roundtrip_ranks);
  tcase_add_test(core, test_versions);
  tcase_add_test(core, test_header_variants);
  tcase_add_test(core, test_fortran_order);
  tcase_add_test(core, test_read_missing_file);
  tcase_add_test(core, test_write_missing_folder);
  tcase_add_test(core, test_write_replaces);
  tcase_add_test(core, test_write_failure_keeps_file);
  tcase_add_test(core, test_alloc);
  suite_add_tcase(s, core);

  TCase *errors = tcase_create("Errors");
  tcase_add_checked_fixture(errors, make_dir, remove_dir);
  tcase_set_timeout(errors, 60);
  tcase_add_loop_test(errors, test_bad_input, 0, NBAD);
  tcase_add_test(errors, test_bad_file);
  tcase_add_test(errors, test_prefixes);
  tcase_add_test(errors, test_mutations);
  suite_add_tcase(s, errors);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(npy_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
