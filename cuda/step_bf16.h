/* The bf16 side of the CUDA training step under train.precision = bf16 (cuda_backend.cu): the
 * bf16 operands it keeps beside the fp32 buffers, which the stack loops (layers.h) read in the
 * bf16 operand type. Evaluation and decoding never use them (they stay fp32). */
#ifndef CUVAE_CUDA_STEP_BF16_H
#define CUVAE_CUDA_STEP_BF16_H

#include "linear.h"

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

#endif
