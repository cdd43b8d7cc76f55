/* The simplest use of clsoftmax: arrays in host memory, one call each for a
 * softmax and a cross-entropy loss, on the default device. */
#include <clsoftmax.h>
#include <math.h>
#include <stdio.h>

int main(void) {
  clsm_context *ctx = NULL;
  char why[512];
  clsm_status st = clsm_context_create(&ctx, NULL, why, sizeof why);
  if (st != CLSM_SUCCESS) {
    fprintf(stderr, "no OpenCL device: %s\n", why);
    return 1;
  }
  printf("device: %s\n", clsm_context_device_name(ctx));

  /* Softmax of two rows; the first would overflow a naive exp(x)/sum exp(x). */
  const float x[2][3] = {{1000.0f, 0.0f, -1000.0f}, {1.0f, 2.0f, 3.0f}};
  float y[2][3];
  const int64_t shape[2] = {2, 3};
  st = clsm_softmax_host(ctx, CLSM_FLOAT32, 2, shape, -1, 0, x, y);
  if (st != CLSM_SUCCESS) goto fail;
  for (int r = 0; r < 2; ++r) printf("softmax row %d: %g %g %g\n", r, y[r][0], y[r][1], y[r][2]);

  /* Cross-entropy of 4 samples over 3 classes, mean, with its gradient. */
  const float logits[4][3] = {{2, 0, -1}, {0.5f, 0.5f, 3}, {-2, 4, 1}, {0, 0, 0}};
  const int64_t target[4] = {0, 2, 1, -100}; /* the last one is ignored */
  const int64_t lshape[2] = {4, 3};
  float loss, grad[4][3];
  clsm_ce_options opt = CLSM_CE_OPTIONS_INIT;
  st = clsm_cross_entropy_host(ctx, CLSM_FLOAT32, 2, lshape, logits, CLSM_INT64, target, &opt,
                               NULL, &loss, grad, NULL, NULL, NULL);
  if (st != CLSM_SUCCESS) goto fail;
  printf("cross-entropy (mean over 3 samples): %.6f\n", loss);
  printf("d loss / d logits[0]: %.6f %.6f %.6f\n", grad[0][0], grad[0][1], grad[0][2]);

  /* Check one value by hand: row 1 of the softmax sums to 1. */
  int ok = fabsf(y[1][0] + y[1][1] + y[1][2] - 1.0f) < 1e-6f && y[0][0] == 1.0f && isfinite(loss);
  clsm_context_destroy(ctx);
  return ok ? 0 : 1;

fail:
  clsm_context_error(ctx, why, sizeof why);
  fprintf(stderr, "%s: %s\n", clsm_status_string(st), why);
  clsm_context_destroy(ctx);
  return 1;
}
