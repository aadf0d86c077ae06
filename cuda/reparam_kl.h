/* The reparameterization z = mu + exp(0.5 logvar) * eps with the closed-form KL to N(0, I), fused:
 * forward gives z, the per-example KL and its free-bits floored version; backward gives the
 * gradient with respect to [mu | logvar] of the batch loss. The training noise eps is drawn in the
 * kernel from (seed, CUVAE_STREAM_REPARAM, counter = step read from device memory,
 * element = slot * L + d) and kept for the backward; a variant takes eps from a buffer (parity
 * tests with noise generated on the host). Per-example sums are in double, in a fixed order.
 * C twins: cuvae_cpu_reparam_kl_forward, cuvae_cpu_reparam_kl_backward. Every output is written
 * ("="). */
#ifndef CUVAE_CUDA_REPARAM_KL_H
#define CUVAE_CUDA_REPARAM_KL_H

#include "cuda_common.h"

/* enc [B, 2L] = [mu | logvar] per row. Draws eps [B, L] (written, for the backward) with the step
 * *d_step under ctx->seed, then z [B, L] =, kl [B] = sum_d KL_bd, kl_floored [B] =
 * sum_d max(KL_bd, free_bits) (kl_floored may be NULL). */
int cuvae_reparam_kl_forward(cuvae_cuda_ctx *ctx, const float *enc, int B, int L, float free_bits,
                             const uint64_t *d_step, float *eps, float *z, double *kl,
                             double *kl_floored, cudaStream_t stream, cuvae_status *st);

/* The same with eps [B, L] given. */
int cuvae_reparam_kl_forward_eps(cuvae_cuda_ctx *ctx, const float *enc, const float *eps, int B,
                                 int L, float free_bits, float *z, double *kl, double *kl_floored,
                                 cudaStream_t stream, cuvae_status *st);

/* Given dz [B, L] (gradient of the batch loss with respect to z, 1/B included), writes
 * denc [B, 2L] = the gradient with respect to [mu | logvar], adding the KL term's
 * kl_scale * d max(KL_bd, free_bits) with kl_scale = *d_beta / B read from device memory. The
 * floor passes no gradient where it binds (KL_bd < free_bits, when free_bits > 0; free_bits <= 0
 * is no floor at all, and a NaN KL never binds). */
int cuvae_reparam_kl_backward(cuvae_cuda_ctx *ctx, const float *enc, const float *eps,
                              const float *dz, int B, int L, const float *d_beta, float free_bits,
                              float *denc, cudaStream_t stream, cuvae_status *st);

#endif
