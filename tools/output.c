/* The tool's output files (see output.h). */
#define _XOPEN_SOURCE 700
#include "output.h"
#include "tool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(int code, char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

static char *join(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  char *s = malloc(alen + 1 + blen + 1);
  if (!s) return NULL;
  memcpy(s, a, alen);
  s[alen] = '/';
  memcpy(s + alen + 1, b, blen + 1);
  return s;
}

/* The name path leads to once symbolic links are followed (relative targets
 * from the link's folder), whether or not that name exists. NULL only when
 * out of memory. A loop stops after 40 links; opening it then says ELOOP. */
static char *follow_links(const char *path) {
  char *cur = strdup(path);
  for (int hops = 0; cur && hops < 40; ++hops) {
    struct stat ls;
    if (lstat(cur, &ls) != 0 || !S_ISLNK(ls.st_mode)) break;
    char buf[PATH_MAX];
    ssize_t n = readlink(cur, buf, sizeof buf - 1);
    if (n < 0) break;
    buf[n] = '\0';
    const char *slash = strrchr(cur, '/');
    char *next = buf[0] == '/' || !slash ? strdup(buf) : join(cur, (size_t)(slash - cur), buf);
    free(cur);
    cur = next;
  }
  return cur;
}

/* The absolute name of file `f` (links already followed): its folder's real
 * path and its last component. Returns NULL with errno set (ENOENT: the
 * folder does not exist; ENOTDIR: part of it is not a folder). */
static char *canonical(const char *f) {
  const char *slash = strrchr(f, '/');
  char *dir = slash ? strndup(f, slash == f ? 1 : (size_t)(slash - f)) : strdup(".");
  if (!dir) return NULL;
  char *real = realpath(dir, NULL);
  int e = errno;
  free(dir);
  if (!real) {
    errno = e;
    return NULL;
  }
  char *c = join(real, strlen(real), slash ? slash + 1 : f);
  free(real);
  return c;
}

/* The folder part of f, for messages. */
static void folder_of(const char *f, char *buf, size_t n) {
  const char *slash = strrchr(f, '/');
  if (!slash) snprintf(buf, n, ".");
  else snprintf(buf, n, "%.*s", (int)(slash == f ? 1 : slash - f), f);
}

int tool_out_open(tool_out *o, const char *path, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->fd = -1;
  o->path = path;
  if (!strcmp(path, "-")) {
    if (isatty(STDOUT_FILENO))
      return fail(EXIT_USAGE, err, errlen, "-: standard output is a terminal; redirect it or name a file");
    if ((o->fd = dup(STDOUT_FILENO)) < 0)
      return fail(EXIT_OUTPUT, err, errlen, "-: cannot write to standard output: %s", strerror(errno));
    return 0;
  }
  struct stat st;
  int exists = stat(path, &st) == 0;
  if (!exists && errno != ENOENT)
    return fail(EXIT_OUTPUT, err, errlen, "%s: cannot write there: %s", path, strerror(errno));
  if (exists && S_ISDIR(st.st_mode))
    return fail(EXIT_USAGE, err, errlen, "%s: is a folder; name a file in it", path);
  if (exists && !S_ISREG(st.st_mode)) { /* FIFO, device, socket: stream into it */
    if ((o->fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
      return fail(EXIT_OUTPUT, err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
    return 0;
  }
  char *f = follow_links(path);
  if (!f) return fail(EXIT_OUTPUT, err, errlen, "%s: out of memory", path);
  char *c = canonical(f);
  if (!c) {
    int e = errno;
    char dir[PATH_MAX];
    folder_of(f, dir, sizeof dir);
    free(f);
    if (e == ENOENT)
      return fail(EXIT_OUTPUT, err, errlen, "%s: the folder %s does not exist", path, dir);
    return fail(EXIT_OUTPUT, err, errlen, "%s: cannot write in %s: %s", path, dir, strerror(e));
  }
  free(c);
  size_t flen = strlen(f);
  o->tmp = malloc(flen + sizeof ".tmpXXXXXX");
  if (!o->tmp) {
    free(f);
    return fail(EXIT_OUTPUT, err, errlen, "%s: out of memory", path);
  }
  memcpy(o->tmp, f, flen);
  memcpy(o->tmp + flen, ".tmpXXXXXX", sizeof ".tmpXXXXXX");
  o->final = f;
  if ((o->fd = mkstemp(o->tmp)) < 0) {
    int e = errno;
    char dir[PATH_MAX];
    folder_of(f, dir, sizeof dir);
    free(o->tmp);
    free(o->final);
    memset(o, 0, sizeof *o);
    o->fd = -1;
    return fail(EXIT_OUTPUT, err, errlen, "%s: cannot create a file in %s: %s", path, dir, strerror(e));
  }
  /* mkstemp makes the file 0600: an existing file keeps its bits, a new one
   * gets what open(2) would give. The umask can only be read by setting it;
   * the tool is single-threaded. */
  mode_t mode;
  if (exists) {
    mode = st.st_mode & 07777;
  } else {
    mode_t mask = umask(0);
    umask(mask);
    mode = 0666 & ~mask;
  }
  (void)fchmod(o->fd, mode);
  return 0;
}

int tool_out_write(tool_out *o, const void *data, size_t n, char *err, size_t errlen) {
  const unsigned char *p = data;
  while (n) {
    ssize_t w = write(o->fd, p, n > (1u << 30) ? (1u << 30) : n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      return fail(EXIT_OUTPUT, err, errlen, "%s: cannot write: %s", o->path,
                  w < 0 ? strerror(errno) : "no progress");
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

FILE *tool_out_file(tool_out *o, char *err, size_t errlen) {
  FILE *f = fdopen(o->fd, "w");
  if (!f) fail(EXIT_OUTPUT, err, errlen, "%s: cannot write: %s", o->path, strerror(errno));
  else o->fd = -1; /* the stream owns it now */
  return f;
}

static void forget(tool_out *o) {
  free(o->tmp);
  free(o->final);
  o->tmp = o->final = NULL;
  o->fd = -1;
}

/* After the data is closed (failed: a write or the close failed, with errno
 * e): the rename, or the clean-up. */
static int finish(tool_out *o, int failed, int e, char *err, size_t errlen) {
  if (!failed && o->final && rename(o->tmp, o->final) != 0) {
    failed = 1;
    e = errno;
  }
  if (failed && o->tmp) unlink(o->tmp);
  forget(o);
  return failed ? fail(EXIT_OUTPUT, err, errlen, "%s: cannot write: %s", o->path, strerror(e)) : 0;
}

int tool_out_commit(tool_out *o, char *err, size_t errlen) {
  int failed = o->fd >= 0 && close(o->fd) != 0;
  return finish(o, failed, errno, err, errlen);
}

int tool_out_commit_file(tool_out *o, FILE *f, char *err, size_t errlen) {
  int failed = ferror(f) != 0;
  int e = failed ? EIO : 0;
  if (fclose(f) != 0) {
    failed = 1;
    e = errno;
  }
  return finish(o, failed, e, err, errlen);
}

void tool_out_abort(tool_out *o) {
  if (o->fd >= 0) close(o->fd);
  if (o->tmp) unlink(o->tmp);
  forget(o);
}

void tool_out_abort_file(tool_out *o, FILE *f) {
  if (f) fclose(f);
  tool_out_abort(o);
}

/* What makes two names the same file. */
typedef struct identity {
  int stdout_, skip, has_ino;
  dev_t dev;
  ino_t ino;
  char *canon;
} identity;

static void identify(const char *path, identity *id) {
  memset(id, 0, sizeof *id);
  if (!strcmp(path, "-")) {
    id->stdout_ = 1;
    return;
  }
  struct stat st;
  if (stat(path, &st) == 0) {
    if (S_ISCHR(st.st_mode)) {
      id->skip = 1;
      return;
    }
    id->has_ino = 1;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
  }
  char *f = follow_links(path);
  if (f) id->canon = canonical(f);
  free(f);
}

static int same(const identity *a, const identity *b) {
  if (a->skip || b->skip) return 0;
  if (a->stdout_ || b->stdout_) return a->stdout_ && b->stdout_;
  if (a->has_ino && b->has_ino) return a->dev == b->dev && a->ino == b->ino;
  return a->canon && b->canon && !strcmp(a->canon, b->canon);
}

int tool_out_distinct(const char *const *outs, int nout, const char *const *ins, int nin,
                      char *err, size_t errlen) {
  enum { MAX = 8 };
  identity o[MAX], in[MAX];
  int rc = 0;
  if (nout > MAX) nout = MAX;
  if (nin > MAX) nin = MAX;
  for (int i = 0; i < nout; ++i)
    if (outs[i]) identify(outs[i], &o[i]);
  for (int i = 0; i < nin; ++i)
    if (ins[i]) identify(ins[i], &in[i]);
  for (int i = 0; i < nout && !rc; ++i) {
    if (!outs[i]) continue;
    for (int j = 0; j < i && !rc; ++j)
      if (outs[j] && same(&o[i], &o[j]))
        rc = fail(EXIT_USAGE, err, errlen, "outputs %s and %s are the same file; name two files",
                  outs[j], outs[i]);
    for (int j = 0; j < nin && !rc; ++j)
      if (ins[j] && same(&o[i], &in[j]))
        rc = fail(EXIT_USAGE, err, errlen,
                  "output %s is the input %s; name another file for the output", outs[i], ins[j]);
  }
  for (int i = 0; i < nout; ++i)
    if (outs[i]) free(o[i].canon);
  for (int i = 0; i < nin; ++i)
    if (ins[i]) free(in[i].canon);
  return rc;
}
