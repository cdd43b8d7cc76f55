/* Suite "threads": one context shared by 8 threads, 500 mixed calls each
 * (ops, shapes, dtypes), every result equal bit for bit to the sequential
 * run on the same context. */
#include "testutil.h"

#include <pthread.h>

enum { THREADS = 8, CALLS = 500, JOBS = 8 };

typedef struct job {
  int kind; /* 0 softmax, 1 log_softmax, 2 softmax backward, 3 log backward, 4 cross-entropy */
  clsm_dtype dtype;
  int rank;
  int64_t shape[3];
  int dim;
  unsigned char *a, *b; /* inputs */
  size_t bytes, out_bytes;
  unsigned char *want; /* the sequential result */
  int64_t *target;
} job;

static job jobs[JOBS];
static clsm_context *shared;

static clsm_status run_job(const job *j, void *out) {
  switch (j->kind) {
  case 0: return clsm_softmax_host(shared, j->dtype, j->rank, j->shape, j->dim, 0, j->a, out);
  case 1: return clsm_log_softmax_host(shared, j->dtype, j->rank, j->shape, j->dim, 0, j->a, out);
  case 2: return clsm_softmax_backward_host(shared, j->dtype, j->rank, j->shape, j->dim, 0, j->a, j->b, out);
  case 3: return clsm_log_softmax_backward_host(shared, j->dtype, j->rank, j->shape, j->dim, 0, j->a, j->b, out);
  default: {
    clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
    opt.label_smoothing = 0.05;
    /* out holds the loss (one element) then the gradient */
    size_t es = clsm_dtype_size(j->dtype);
    return clsm_cross_entropy_host(shared, j->dtype, j->rank, j->shape, j->a, CLSM_INT64, j->target,
                                   &opt, NULL, out, (unsigned char *)out + es, NULL, NULL, NULL);
  }
  }
}

static void job_make(job *j, int kind, clsm_dtype dt, int rank, int64_t s0, int64_t s1, int64_t s2,
                     int dim, uint64_t seed) {
  memset(j, 0, sizeof *j);
  j->kind = kind, j->dtype = dt, j->rank = rank, j->dim = dim;
  j->shape[0] = s0, j->shape[1] = s1, j->shape[2] = s2;
  int64_t n = shape_numel(rank, j->shape);
  size_t es = clsm_dtype_size(dt);
  j->bytes = (size_t)n * es;
  j->out_bytes = j->bytes + (kind == 4 ? es : 0);
  j->a = malloc(j->bytes);
  j->b = malloc(j->bytes);
  j->want = malloc(j->out_bytes);
  float *f = malloc(sizeof(float) * (size_t)n);
  ck_assert(j->a && j->b && j->want && f);
  for (int k = 0; k < 2; ++k) {
    fill_random(f, n, seed + (uint64_t)k);
    unsigned char *dst = k ? j->b : j->a;
    for (int64_t i = 0; i < n; ++i) {
      float v = kind >= 2 && kind <= 3 && k == 0 ? (kind == 2 ? 1.0f / (1.0f + fabsf(f[i])) : -fabsf(f[i])) : f[i];
      if (dt == CLSM_FLOAT32) ((float *)dst)[i] = v;
      else if (dt == CLSM_FLOAT16) ((uint16_t *)dst)[i] = ref_f32_to_f16(v);
      else if (dt == CLSM_BFLOAT16) ((uint16_t *)dst)[i] = ref_f32_to_bf16(v);
      else ((double *)dst)[i] = v;
    }
  }
  free(f);
  if (kind == 4) {
    int64_t P = n / j->shape[1];
    j->target = malloc(sizeof(int64_t) * (size_t)P);
    ck_assert(j->target != NULL);
    for (int64_t p = 0; p < P; ++p) j->target[p] = (p * 7) % j->shape[1];
  }
}

static void *worker(void *arg) {
  long t = (long)arg, bad = 0;
  unsigned char *out = malloc(1 << 20);
  if (!out) return (void *)1;
  for (int i = 0; i < CALLS; ++i) {
    const job *j = &jobs[(t * 3 + i) % JOBS];
    if (run_job(j, out) != CLSM_SUCCESS || memcmp(out, j->want, j->out_bytes) != 0) bad++;
  }
  free(out);
  return (void *)bad;
}

START_TEST(test_shared_context) {
  shared = test_context();
  job_make(&jobs[0], 0, CLSM_FLOAT32, 2, 64, 80, 0, -1, 1);
  job_make(&jobs[1], 1, CLSM_FLOAT16, 3, 5, 33, 17, 1, 2);
  job_make(&jobs[2], 2, CLSM_FLOAT32, 2, 17, 300, 0, 1, 3);
  job_make(&jobs[3], 3, CLSM_BFLOAT16, 3, 4, 9, 130, 0, 4);
  job_make(&jobs[4], 4, CLSM_FLOAT32, 2, 32, 1000, 0, 1, 5);
  job_make(&jobs[5], 0, CLSM_FLOAT64, 2, 7, 513, 0, 0, 6);
  job_make(&jobs[6], 4, CLSM_FLOAT16, 3, 3, 50, 7, 1, 7);
  job_make(&jobs[7], 1, CLSM_FLOAT32, 1, 4099, 0, 0, 0, 8);
  for (int k = 0; k < JOBS; ++k) CK_STATUS(shared, run_job(&jobs[k], jobs[k].want));
  pthread_t th[THREADS];
  for (long t = 0; t < THREADS; ++t) ck_assert(pthread_create(&th[t], NULL, worker, (void *)t) == 0);
  long bad = 0;
  for (int t = 0; t < THREADS; ++t) {
    void *r;
    pthread_join(th[t], &r);
    bad += (long)r;
  }
  ck_assert_msg(bad == 0, "%ld of %d calls failed or differed from the sequential run", bad,
                THREADS * CALLS);
  for (int k = 0; k < JOBS; ++k) free(jobs[k].a), free(jobs[k].b), free(jobs[k].want), free(jobs[k].target);
  clsm_context_destroy(shared);
}
END_TEST

/* Two threads on one context: thread 0's bad asynchronous cross-entropy
 * call and thread 1's good one, ordered by a barrier so that the bad one is
 * enqueued first; each thread's clsm_finish reports its own calls only, and
 * thread 1's host call in between sees nothing of thread 0's error. */
enum { TN = 3, TC = 4 };
static pthread_barrier_t barrier;
typedef struct two_result {
  int bad; /* this thread's call has an out-of-range class index */
  clsm_status finish, host;
  float loss, host_loss;
} two_result;

static void *two_worker(void *arg) {
  two_result *r = arg;
  const int bad = r->bad;
  float x[TN * TC];
  for (int i = 0; i < TN * TC; ++i) x[i] = (float)(i % 5) * 0.25f;
  int64_t t[TN] = {0, bad ? TC : 1, 2};
  const int64_t shape[2] = {TN, TC};
  const float sentinel = 123.0f;
  cl_int err;
  cl_context cctx = clsm_context_cl_context(shared);
  cl_mem xb = clCreateBuffer(cctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x, x, &err);
  cl_mem tb = clCreateBuffer(cctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof t, t, &err);
  cl_mem lb = clCreateBuffer(cctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, 4, (void *)&sentinel, &err);
  clsm_tensor xt = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor tt = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 1, shape);
  clsm_tensor lt = clsm_tensor_contiguous(lb, 0, CLSM_FLOAT32, 0, NULL);
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  if (bad) clsm_cross_entropy(shared, &xt, &tt, &lt, &opt, 0, NULL, NULL);
  pthread_barrier_wait(&barrier);
  if (!bad) {
    clsm_cross_entropy(shared, &xt, &tt, &lt, &opt, 0, NULL, NULL);
    r->host = clsm_cross_entropy_host(shared, CLSM_FLOAT32, 2, shape, x, CLSM_INT64, t, &opt, NULL,
                                      &r->host_loss, NULL, NULL, NULL, NULL);
  }
  pthread_barrier_wait(&barrier);
  r->finish = clsm_finish(shared);
  clEnqueueReadBuffer(clsm_context_queue(shared), lb, CL_TRUE, 0, 4, &r->loss, 0, NULL, NULL);
  clReleaseMemObject(xb);
  clReleaseMemObject(tb);
  clReleaseMemObject(lb);
  return NULL;
}

START_TEST(test_two_threads_deferred) {
  shared = test_context();
  ck_assert(pthread_barrier_init(&barrier, NULL, 2) == 0);
  two_result r[2] = {{1, 0, 0, 0, 0}, {0, 0, 0, 0, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; ++i) ck_assert(pthread_create(&th[i], NULL, two_worker, &r[i]) == 0);
  for (int i = 0; i < 2; ++i) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&barrier);
  /* The good call's loss from the double reference. */
  double want = 0;
  const int64_t t[TN] = {0, 1, 2};
  for (int n = 0; n < TN; ++n) {
    double m = -INFINITY, s = 0;
    for (int c = 0; c < TC; ++c) m = fmax(m, (double)((n * TC + c) % 5) * 0.25);
    for (int c = 0; c < TC; ++c) s += exp((double)((n * TC + c) % 5) * 0.25 - m);
    want += (m + log(s) - (double)((n * TC + t[n]) % 5) * 0.25) / TN;
  }
  ck_assert_int_eq(r[0].finish, CLSM_ERR_TARGET_OUT_OF_RANGE);
  ck_assert_float_eq(r[0].loss, 123.0f);
  ck_assert_int_eq(r[1].finish, CLSM_SUCCESS);
  ck_assert_int_eq(r[1].host, CLSM_SUCCESS);
  ck_assert_msg(fabs(r[1].loss - want) <= 1e-6 && fabs(r[1].host_loss - want) <= 1e-6,
                "losses %.9g, %.9g; reference %.9g", (double)r[1].loss, (double)r[1].host_loss, want);
  ck_assert_int_eq(clsm_context_release(shared, NULL, 0), CLSM_SUCCESS);
}
END_TEST

static Suite *threads_suite(void) {
  Suite *s = suite_create("threads");
  TCase *tc = tcase_create("Shared");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_shared_context);
  tcase_add_test(tc, test_two_threads_deferred);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(threads_suite()); }
