/* The optimizer over the flat buffers: the global gradient norm (a deterministic two-pass
 * reduction), the clipping factor and Adam/AdamW in one pass, with the learning rate and step read
 * from device memory and the update withheld on the device when the loss or the gradient is not
 * finite (parameters, m, v and Adam's count unchanged; the skip is counted and the first such step
 * recorded). C twins: cuvae_cpu_sum_squares, cuvae_cpu_adam. p, m and v are updated in place (and
 * p's bf16 shadow, under bf16); the device state's step fields are written ("=") and its metrics
 * accumulated ("+="). */
#ifndef CUVAE_CUDA_OPTIMIZER_H
#define CUVAE_CUDA_OPTIMIZER_H

#include <cuda_bf16.h>

#include "cuda_common.h"

typedef struct {
    float beta1, beta2, eps, weight_decay;
    int decoupled;   /* 1: AdamW (p -= lr * wd * p); 0: Adam (wd * p added to the gradient) */
    float grad_clip; /* max global L2 norm; 0 = off */
} cuvae_adam_hparams;

/* The end of a training step, after the gradients g [n] and the batch metrics
 * (cuvae_batch_metrics_forward) are on the device:
 *   1. sum_sq = sum g^2 (double, fixed order), norm = sqrt(sum_sq);
 *   2. the step is non-finite when d_state->nonfinite or sum_sq is not finite. Otherwise
 *      t = ++adam_t, the clipping factor is grad_clip / (norm + 1e-6) when that is below 1 (as
 *      torch.nn.utils.clip_grad_norm_), and the batch's loss, rec, kl, norm, batch examples and one
 *      step are added to the metrics. A non-finite step adds one to skipped and records
 *      d_step->step as first_nonfinite_step when none is recorded;
 *   3. Adam/AdamW with lr = d_step->lr over p, m, v (nothing when the step is non-finite). An
 *      element whose new p, m or v would not be finite keeps its values, and the step then counts
 *      as non-finite after all (adam_t back, skipped and first_nonfinite_step as above, nothing
 *      added to the metrics), as cuvae_cpu_adam and the CPU backend. */
int cuvae_optimizer_step(cuvae_cuda_ctx *ctx, const cuvae_adam_hparams *h, float *p, const float *g,
                         float *m, float *v, size_t n, int batch, const cuvae_step_scalars *d_step,
                         cuvae_device_state *d_state, cudaStream_t stream, cuvae_status *st);

/* The same, also writing p16 [n] = bf16(p) (round to nearest even) for every updated element, in
 * the update's pass: the bf16 shadow that the bf16 GEMMs read (linear.h). p16 may be NULL. */
int cuvae_optimizer_step_bf16(cuvae_cuda_ctx *ctx, const cuvae_adam_hparams *h, float *p,
                              __nv_bfloat16 *p16, const float *g, float *m, float *v, size_t n,
                              int batch, const cuvae_step_scalars *d_step,
                              cuvae_device_state *d_state, cudaStream_t stream, cuvae_status *st);

/* One Adam/AdamW update with host-given lr, 1-based count t and gradient factor grad_scale, through
 * the same device arithmetic as cuvae_optimizer_step (for the parity test with cuvae_cpu_adam).
 * d_factors is device scratch for the update's factors. */
int cuvae_adam_update(cuvae_cuda_ctx *ctx, const cuvae_adam_hparams *h, float *p, const float *g,
                      float *m, float *v, size_t n, float lr, uint64_t t, float grad_scale,
                      cuvae_adam_factors *d_factors, cudaStream_t stream, cuvae_status *st);

/* cuvae_adam_update with the bf16 shadow p16 refreshed (may be NULL), as
 * cuvae_optimizer_step_bf16. */
int cuvae_adam_update_bf16(cuvae_cuda_ctx *ctx, const cuvae_adam_hparams *h, float *p,
                           __nv_bfloat16 *p16, const float *g, float *m, float *v, size_t n,
                           float lr, uint64_t t, float grad_scale, cuvae_adam_factors *d_factors,
                           cudaStream_t stream, cuvae_status *st);

/* *d_out = sum of g [n]^2 in double, with the fixed-order reduction of cuvae_optimizer_step. */
int cuvae_sum_squares_forward(cuvae_cuda_ctx *ctx, const float *g, size_t n, double *d_out,
                              cudaStream_t stream, cuvae_status *st);

#endif
