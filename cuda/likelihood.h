/* The decoder's likelihood: per-row negative log-likelihood -log p(x|out) summed over pixels
 * (Bernoulli on logits, or Gaussian with fixed sigma on means) with its gradient fused, and the
 * batch reduction of the per-example terms into the device training state. One block per row
 * sums in double in a fixed order (no atomics), so results repeat bit for bit. C twin:
 * cuvae_cpu_likelihood. Every output is written ("="). */
#ifndef CUVAE_CUDA_LIKELIHOOD_H
#define CUVAE_CUDA_LIKELIHOOD_H

#include "cuda_common.h"

/* out [rows, D]: logits (Bernoulli) or means (Gaussian). Row r is compared with row r / x_rep of
 * x (x_rep = 1 in training; K in evaluation, where K decoded rows share one example).
 *   nll [rows]     = -log p(x | out) summed over the D pixels
 *   dout [rows, D] = grad_scale * d nll / d out   (skipped when dout is NULL) */
int cuvae_likelihood_forward(cuvae_cuda_ctx *ctx, const float *out, const float *x, int rows, int D,
                             int x_rep, cuvae_likelihood lik, float sigma, float grad_scale,
                             double *nll, float *dout, cudaStream_t stream, cuvae_status *st);

/* The batch's sums into the device state: batch_rec = sum_b nll[b], batch_kl = sum_b kl[b],
 * batch_loss = sum_b (nll[b] + beta * kl_floored[b]) with beta = *d_beta, and nonfinite = 1 when
 * batch_loss is NaN or infinite (0 otherwise). Fixed-order sums in double. */
int cuvae_batch_metrics_forward(cuvae_cuda_ctx *ctx, const double *nll, const double *kl,
                                const double *kl_floored, int B, const float *d_beta,
                                cuvae_device_state *d_state, cudaStream_t stream, cuvae_status *st);

#endif
