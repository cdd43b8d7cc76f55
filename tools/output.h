/* The tool's output files: written where they were sent, complete or not at
 * all, or refused before anything runs.
 *
 * - A regular file (or a name that does not exist yet) is written to a
 *   temporary "<name>.tmpXXXXXX" in the same folder and renamed over it on
 *   commit; an existing file keeps its permission bits.
 * - A symbolic link is followed (relative links from the link's folder,
 *   chains and links to a name that does not exist yet included): the file
 *   it leads to is replaced that way and the link is kept.
 * - "-" is standard output; a FIFO, character device or socket is opened and
 *   written in order (streamed), never replaced.
 * - A folder is refused (EXIT_USAGE); a missing folder on the way, or a file
 *   that cannot be created or written, is EXIT_OUTPUT with the path named. */
#ifndef CLSM_OUTPUT_H
#define CLSM_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

typedef struct tool_out {
  const char *path; /* as the user wrote it, for messages */
  char *final;      /* the file renamed over on commit; NULL when streaming */
  char *tmp;        /* the temporary being written; NULL when streaming */
  int fd;           /* -1 when closed */
} tool_out;

/* Opens path for writing as described above. Returns 0, or EXIT_USAGE /
 * EXIT_OUTPUT with err filled (the path named) and nothing left behind. */
int tool_out_open(tool_out *o, const char *path, char *err, size_t errlen);

/* Writes n bytes; returns 0, or EXIT_OUTPUT with err filled. */
int tool_out_write(tool_out *o, const void *data, size_t n, char *err, size_t errlen);

/* A stdio stream over the output for formatted writers (the fd is handed to
 * it: close it only through tool_out_commit_file / tool_out_abort_file). */
FILE *tool_out_file(tool_out *o, char *err, size_t errlen);

/* Finishes the output: closes it and renames the temporary over the final
 * file. Returns 0, or EXIT_OUTPUT with err filled and the temporary removed. */
int tool_out_commit(tool_out *o, char *err, size_t errlen);
/* Same for an output written through tool_out_file's stream f. */
int tool_out_commit_file(tool_out *o, FILE *f, char *err, size_t errlen);

/* Closes the output and removes the temporary; the final file is untouched.
 * Safe on a zeroed or already finished tool_out. */
void tool_out_abort(tool_out *o);
void tool_out_abort_file(tool_out *o, FILE *f);

/* Refuses (EXIT_USAGE, err naming both) when two of the outputs, or an output
 * and an input, are the same file: the same name after links are followed,
 * or the same existing file under two names. NULL entries are skipped;
 * character devices (/dev/null) may repeat. Returns 0 otherwise. */
int tool_out_distinct(const char *const *outs, int nout, const char *const *ins, int nin,
                      char *err, size_t errlen);

#endif
