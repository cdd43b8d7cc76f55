/* Deferred device-side checks, one record per call. A call that can fail on
 * the device (cross-entropy's class-index check) gets a flag buffer of its
 * own: its kernels set it and then write nothing, and a non-blocking read
 * behind the call brings it to the host. The call's outcome is then asked
 * for by its own check handle (clsm_check_wait), by clsm_finish on the
 * thread that made the call, or by clsm_context_release; never by another
 * call. Records of calls that passed are recycled with their (still zero)
 * flag buffers. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The flag's layout is abi.h's (CLSM_FLAG_*). */
enum { FLAG_INTS = CLSM_FLAG_INTS, SPARE_MAX = 16 };

struct clsm_check {
  clsm_check *next;
  clsm_context *ctx;
  cl_mem flag;
  cl_int host[FLAG_INTS]; /* the flag, once `read` completes */
  cl_event read;
  unsigned long long seq;
  pthread_t thread;
  int owned;    /* a caller holds it as a clsm_check handle */
  int reported; /* clsm_finish reported its failure */
};

static void call_free(clsm_check *c) {
  if (c->read) clReleaseEvent(c->read);
  if (c->flag) clReleaseMemObject(c->flag);
  free(c);
}

/* Outcome of a call whose read has completed: SUCCESS, the out-of-range
 * error, or CLSM_ERR_OPENCL when the read (or a command before it) failed.
 * `msg` gets the detail for a failure. */
static clsm_status call_outcome(const clsm_check *c, char *msg, size_t size) {
  cl_int es = CL_COMPLETE;
  cl_int err = clGetEventInfo(c->read, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof es, &es, NULL);
  if (err != CL_SUCCESS || es < 0) {
    snprintf(msg, size, "call #%llu: its commands failed on the device with %s (%d)", c->seq,
             clsm_cl_error_name(err != CL_SUCCESS ? err : es), (int)(err != CL_SUCCESS ? err : es));
    return CLSM_ERR_OPENCL;
  }
  if (!c->host[0]) return CLSM_SUCCESS;
  const cl_int *ph = c->host + CLSM_FLAG_POS, *vh = c->host + CLSM_FLAG_VALUE;
  const long long pos = (long long)(((uint64_t)(uint32_t)ph[1] << 32) | (uint32_t)ph[0]);
  const long long val = (long long)(((uint64_t)(uint32_t)vh[1] << 32) | (uint32_t)vh[0]);
  snprintf(msg, size,
           "call #%llu: target at position %lld is %lld: outside [0, C) and not ignore_index; "
           "the call wrote nothing",
           c->seq, pos, val);
  return CLSM_ERR_TARGET_OUT_OF_RANGE;
}

/* Whether the call's read has completed (without waiting). */
static int call_done(const clsm_check *c) {
  cl_int es = CL_QUEUED;
  if (clGetEventInfo(c->read, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof es, &es, NULL) != CL_SUCCESS)
    return 1;
  return es == CL_COMPLETE || es < 0;
}

static void unlink_call(clsm_context *ctx, clsm_check *c) {
  for (clsm_check **p = &ctx->calls; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      return;
    }
}

/* A finished record goes back to the spares when its call passed (its flag
 * is still zero); otherwise, or with enough spares, it is freed. Unlinked
 * first. */
static void call_retire(clsm_context *ctx, clsm_check *c, int passed) {
  if (c->read) clReleaseEvent(c->read);
  c->read = NULL;
  if (!passed || ctx->spare_count >= SPARE_MAX) {
    call_free(c);
    return;
  }
  c->next = ctx->spare;
  ctx->spare = c;
  ctx->spare_count++;
}

/* Retires every record nobody holds whose call passed and has completed. */
static void recycle(clsm_context *ctx) {
  clsm_check **p = &ctx->calls;
  while (*p) {
    clsm_check *c = *p;
    char msg[256];
    if (!c->owned && call_done(c) && call_outcome(c, msg, sizeof msg) == CLSM_SUCCESS) {
      *p = c->next;
      call_retire(ctx, c, 1);
    } else {
      p = &c->next;
    }
  }
}

clsm_status clsm__call_begin(clsm_context *ctx, clsm_check **out) {
  clsm_status st = CLSM_SUCCESS;
  *out = NULL;
  recycle(ctx);
  if (ctx->spare) {
    clsm_check *c = ctx->spare;
    ctx->spare = c->next;
    ctx->spare_count--;
    c->next = NULL;
    *out = c;
    return CLSM_SUCCESS;
  }
  clsm_check *c = clsm__malloc(ctx, sizeof *c);
  if (!c) return clsm__fail(ctx, CLSM_ERR_OUT_OF_HOST_MEMORY, "out of host memory (a call record)");
  memset(c, 0, sizeof *c);
  c->ctx = ctx;
  cl_int err = CL_SUCCESS;
  if (!clsm__inject_buffer(ctx, sizeof c->host, &err))
    c->flag = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof c->host,
                             c->host, &err);
  if (!c->flag && err == CL_SUCCESS) err = CL_OUT_OF_RESOURCES;
  CLSM_CL_ERR(ctx, err, "clCreateBuffer");
  *out = c;
  return CLSM_SUCCESS;
fail:
  free(c);
  return st;
}

cl_mem clsm__call_flag(const clsm_check *c) { return c->flag; }

clsm_status clsm__call_commit(clsm_context *ctx, clsm_check *c, clsm_check **handle) {
  clsm_status st = CLSM_SUCCESS;
  CLSM_CL(ctx, clEnqueueReadBuffer(ctx->queue, c->flag, CL_FALSE, 0, sizeof c->host, c->host, 0,
                                   NULL, &c->read));
  c->seq = ++ctx->call_seq;
  c->thread = pthread_self();
  c->owned = handle != NULL;
  c->reported = 0;
  c->next = ctx->calls;
  ctx->calls = c;
  if (handle) *handle = c;
  return CLSM_SUCCESS;
fail:
  clsm__call_abort(c);
  return st;
}

void clsm__call_abort(clsm_check *c) {
  /* Commands already enqueued may still set the flag: the buffer is not reused. */
  call_free(c);
}

/* Appends one failure to a report of at most `size` bytes. */
static void report_add(char *rep, size_t size, int *n, const char *msg) {
  size_t len = strlen(rep);
  if (*n < 8 && len + 2 < size) snprintf(rep + len, size - len, "%s%s", *n ? "; " : "", msg);
  ++*n;
}

/* Reports failed calls since the last report: the calling thread's (every
 * thread's when all is 1). Lock held, the queue finished. */
static clsm_status report(clsm_context *ctx, int all, char *rep, size_t size) {
  clsm_status first = CLSM_SUCCESS;
  int n = 0;
  rep[0] = '\0';
  /* The list is newest first: failures are collected with their messages,
   * then reported oldest first. */
  enum { KEEP = 8 };
  char msgs[KEEP][256];
  clsm_status stats[KEEP];
  int nbad = 0, more = 0;
  clsm_check **p = &ctx->calls;
  const pthread_t self = pthread_self();
  while (*p) {
    clsm_check *c = *p;
    if (!all && !pthread_equal(c->thread, self)) {
      p = &c->next;
      continue;
    }
    char msg[256];
    clsm_status s = c->reported ? CLSM_SUCCESS : call_outcome(c, msg, sizeof msg);
    if (s == CLSM_SUCCESS) {
      if (c->owned) p = &c->next;
      else {
        *p = c->next;
        call_retire(ctx, c, 1);
      }
      continue;
    }
    /* Keep the oldest KEEP: shift out the newest seen so far. */
    if (nbad == KEEP) {
      more++;
      memmove(msgs, msgs + 1, sizeof msgs[0] * (KEEP - 1));
      memmove(stats, stats + 1, sizeof stats[0] * (KEEP - 1));
      nbad--;
    }
    stats[nbad] = s;
    memcpy(msgs[nbad], msg, sizeof msg);
    nbad++;
    if (c->owned) {
      c->reported = 1; /* its handle still returns it */
      p = &c->next;
    } else {
      *p = c->next;
      call_free(c);
    }
  }
  for (int i = nbad - 1; i >= 0; --i) { /* oldest first */
    if (first == CLSM_SUCCESS) first = stats[i];
    report_add(rep, size, &n, msgs[i]);
  }
  n += more;
  if (n > 1) {
    char head[96];
    snprintf(head, sizeof head, "%d calls failed since the last check%s: ", n,
             n > 8 ? " (the first 8)" : "");
    size_t hl = strlen(head), rl = strlen(rep);
    if (hl + rl + 1 > size) rl = size - hl - 1;
    memmove(rep + hl, rep, rl);
    rep[hl + rl] = '\0';
    memcpy(rep, head, hl);
  }
  return first;
}

clsm_status clsm__calls_report(clsm_context *ctx, int all) {
  char rep[sizeof ctx->error];
  clsm_status st = report(ctx, all, rep, sizeof rep);
  if (st != CLSM_SUCCESS) clsm__fail(ctx, st, "%s", rep);
  return st;
}

void clsm__calls_release(clsm_context *ctx) {
  while (ctx->calls) {
    clsm_check *c = ctx->calls;
    ctx->calls = c->next;
    call_free(c);
  }
  while (ctx->spare) {
    clsm_check *c = ctx->spare;
    ctx->spare = c->next;
    call_free(c);
  }
  ctx->spare_count = 0;
}

clsm_status clsm_check_wait(clsm_check *check, char *detail, size_t detail_size) {
  if (detail && detail_size) detail[0] = '\0';
  if (!check) {
    if (detail && detail_size) snprintf(detail, detail_size, "clsm_check_wait: check is NULL");
    return CLSM_ERR_NULL_ARGUMENT;
  }
  clsm_context *ctx = check->ctx;
  /* The record stays alive while it is owned; waiting needs no lock. */
  clWaitForEvents(1, &check->read);
  pthread_mutex_lock(&ctx->lock);
  char msg[256];
  clsm_status st = call_outcome(check, msg, sizeof msg);
  if (st != CLSM_SUCCESS && detail && detail_size) snprintf(detail, detail_size, "%s", msg);
  unlink_call(ctx, check);
  check->owned = 0;
  call_retire(ctx, check, st == CLSM_SUCCESS);
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

unsigned long long clsm_check_sequence(const clsm_check *check) { return check ? check->seq : 0; }
