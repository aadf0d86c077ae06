/* The bf16 side of the CUDA training step under train.precision = bf16 (cuda_backend.cu): the
 * bf16 operands it keeps beside the fp32 buffers, and the two MLP halves run on them
 * (linear_bf16.h). The halves take and give fp32 at their ends, the last layers' outputs
 * ([mu | logvar], logits) and the gradients with respect to them, so that the
 * reparameterization, the KL and the likelihoods run unchanged in fp32; each half makes the bf16
 * copy of its fp32 input itself. The weight and bias gradients are written ("=") into the fp32
 * flat gradient buffer; evaluation and decoding never come here (they stay fp32). */
#ifndef CUVAE_CUDA_STEP_BF16_H
#define CUVAE_CUDA_STEP_BF16_H

#include "linear_bf16.h"

typedef struct {
    cuvae_bf16 *params16; /* [n_params]: bf16(params), the GEMMs' weights and biases */
    cuvae_bf16 *x16;      /* [max_batch, x_dim]: the batch */
    cuvae_bf16 *z16;      /* [max_batch, latent]: the latents */
    cuvae_bf16 *enc16[CUVAE_MAX_LAYERS]; /* hidden [max_batch, enc.layer[i].out]; last NULL */
    cuvae_bf16 *dec16[CUVAE_MAX_LAYERS]; /* hidden [max_batch, dec.layer[i].out]; last NULL */
    cuvae_bf16 *dy16;                    /* [max_batch, max_width]: activation gradients */
    size_t bytes;                        /* all of the above */
} cuvae_bf16_step;

/* Allocates s's buffers for max_batch rows of model m (s zeroed first). On failure what was
 * allocated stays in s for cuvae_bf16_step_free. */
int cuvae_bf16_step_alloc(cuvae_cuda_ctx *ctx, const cuvae_model *m, int max_batch,
                          cuvae_bf16_step *s, cuvae_status *st);
/* Frees s's buffers (a zeroed s is fine) and zeroes it; for the backend's end, as cuda_destroy
 * frees the others (ctx->device_bytes is not brought down). */
void cuvae_bf16_step_free(cuvae_bf16_step *s);

/* One half's forward: x16 [B, layers[0].in] = bf16(x), then cuvae_mlp_forward_bf16 into act16
 * (hidden layers) and out (fp32, [B, layers[n-1].out]). scratch: fp32 [B, widest layer]. With
 * ctx->plan_only only the GEMM plans are chosen. */
int cuvae_bf16_half_forward(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                            const float *params, const cuvae_bf16 *params16, const float *x,
                            cuvae_bf16 *x16, int B, cuvae_bf16 *const *act16, float *out,
                            float *scratch, cuvae_relu_mask *masks, cudaStream_t stream,
                            cuvae_status *st);

/* One half's backward: dy16 = bf16(dy) over [B, layers[n-1].out], then cuvae_mlp_backward_bf16
 * (dy, dy16 and scratch overwritten; *result the fp32 input gradient when want_dx). x16, act16
 * and masks are the forward's. With ctx->plan_only only the GEMM plans are chosen. */
int cuvae_bf16_half_backward(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                             const cuvae_bf16 *params16, float *grads, const cuvae_bf16 *x16, int B,
                             cuvae_bf16 *const *act16, const cuvae_relu_mask *masks, float *dy,
                             cuvae_bf16 *dy16, float *scratch, int want_dx, float **result,
                             cudaStream_t stream, cuvae_status *st);

#endif
