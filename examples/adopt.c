/* clsoftmax inside someone else's OpenCL program: the application owns the
 * context, queue and buffers; the library adopts the queue and chains its
 * operations with events, without waiting in between. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clsoftmax.h>
#include <math.h>
#include <stdio.h>

#define CHECK(call)                                                        \
  do {                                                                     \
    cl_int e_ = (call);                                                    \
    if (e_ != CL_SUCCESS) {                                                \
      fprintf(stderr, "%s failed: %s\n", #call, clsm_cl_error_name(e_));   \
      return 1;                                                            \
    }                                                                      \
  } while (0)

int main(void) {
  enum { N = 8, C = 1000 };
  static float logits[N * C], probs[N * C];
  int64_t target[N];
  for (int i = 0; i < N * C; ++i) logits[i] = (float)((i * 7919) % 2000) / 250.0f - 4.0f;
  for (int n = 0; n < N; ++n) target[n] = (n * 131) % C;

  /* The application's own OpenCL setup. */
  cl_platform_id platform;
  cl_device_id device;
  cl_int err;
  CHECK(clGetPlatformIDs(1, &platform, NULL));
  CHECK(clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, NULL));
  cl_context cl = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
  CHECK(err);
  cl_command_queue queue = clCreateCommandQueue(cl, device, 0, &err);
  CHECK(err);
  cl_mem xb = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof logits, logits, &err);
  CHECK(err);
  cl_mem pb = clCreateBuffer(cl, CL_MEM_READ_WRITE, sizeof probs, NULL, &err);
  CHECK(err);
  cl_mem tb = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof target, target, &err);
  CHECK(err);
  cl_mem lb = clCreateBuffer(cl, CL_MEM_READ_WRITE, sizeof(float), NULL, &err);
  CHECK(err);

  /* The library on the application's queue. */
  clsm_context *ctx = NULL;
  char why[512];
  if (clsm_context_adopt(&ctx, queue, why, sizeof why) != CLSM_SUCCESS) {
    fprintf(stderr, "adopt: %s\n", why);
    return 1;
  }
  /* Compile the float32 kernels now rather than on the first call below. */
  clsm_status pst = clsm_context_prepare(ctx, CLSM_FLOAT32, CLSM_FLOAT32);
  if (pst != CLSM_SUCCESS) {
    clsm_context_error(ctx, why, sizeof why);
    fprintf(stderr, "prepare: %s: %s\n", clsm_status_string(pst), why);
    clsm_context_destroy(ctx);
    return 1;
  }
  const int64_t shape[2] = {N, C};
  clsm_tensor x = clsm_tensor_contiguous(xb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor p = clsm_tensor_contiguous(pb, 0, CLSM_FLOAT32, 2, shape);
  clsm_tensor t = clsm_tensor_contiguous(tb, 0, CLSM_INT64, 1, shape);
  clsm_tensor l = clsm_tensor_contiguous(lb, 0, CLSM_FLOAT32, 0, NULL);

  /* softmax -> (event) -> cross-entropy with its gradient written over the
   * logits -> read back: nothing waits until the final read. */
  cl_event sm_done = NULL, ce_done = NULL;
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  opt.grad = &x; /* in place */
  clsm_status st = clsm_softmax(ctx, &x, &p, -1, 0, 0, NULL, &sm_done);
  if (st == CLSM_SUCCESS) st = clsm_cross_entropy(ctx, &x, &t, &l, &opt, 1, &sm_done, &ce_done);
  if (st != CLSM_SUCCESS) {
    clsm_context_error(ctx, why, sizeof why);
    fprintf(stderr, "%s: %s\n", clsm_status_string(st), why);
    return 1;
  }
  float loss;
  CHECK(clEnqueueReadBuffer(queue, lb, CL_TRUE, 0, sizeof loss, &loss, 1, &ce_done, NULL));
  CHECK(clEnqueueReadBuffer(queue, pb, CL_TRUE, 0, sizeof probs, probs, 0, NULL, NULL));
  if ((st = clsm_finish(ctx)) != CLSM_SUCCESS) { /* deferred errors (targets) */
    fprintf(stderr, "%s\n", clsm_status_string(st));
    return 1;
  }
  /* The loss equals the mean of -log(softmax at the target). */
  double want = 0.0;
  for (int n = 0; n < N; ++n) want -= log(probs[n * C + target[n]]) / N;
  printf("mean cross-entropy %.6f (from the softmax: %.6f)\n", loss, want);

  clReleaseEvent(sm_done);
  clReleaseEvent(ce_done);
  char why_release[256];
  if ((st = clsm_context_release(ctx, why_release, sizeof why_release)) != CLSM_SUCCESS) {
    fprintf(stderr, "%s: %s\n", clsm_status_string(st), why_release);
    return 1;
  }
  clReleaseMemObject(xb);
  clReleaseMemObject(pb);
  clReleaseMemObject(tb);
  clReleaseMemObject(lb);
  clReleaseCommandQueue(queue);
  clReleaseContext(cl);
  return fabs(loss - want) <= 1e-4 * want ? 0 : 1;
}
