/* The bf16 buffers and MLP halves of the training step (see step_bf16.h). */
#include "step_bf16.h"

#include <string.h>

static int alloc_bf16(cuvae_cuda_ctx *ctx, cuvae_bf16_step *s, cuvae_bf16 **p, size_t n,
                      const char *what, cuvae_status *st)
{
    size_t bytes = n * sizeof(cuvae_bf16);
    if (cuvae_cuda_alloc(ctx, (void **)p, bytes, what, st)) return -1;
    s->bytes += bytes;
    return 0;
}

int cuvae_bf16_step_alloc(cuvae_cuda_ctx *ctx, const cuvae_model *m, int max_batch,
                          cuvae_bf16_step *s, cuvae_status *st)
{
    memset(s, 0, sizeof *s);
    size_t B = (size_t)max_batch;
    if (alloc_bf16(ctx, s, &s->params16, m->n_params, "bf16 parameters", st) ||
        alloc_bf16(ctx, s, &s->x16, B * (size_t)m->x_dim, "bf16 batch inputs", st) ||
        alloc_bf16(ctx, s, &s->z16, B * (size_t)m->latent, "bf16 latents", st) ||
        alloc_bf16(ctx, s, &s->dy16, B * (size_t)cuvae_model_max_width(m),
                   "bf16 activation gradients", st))
        return -1;
    /* The last layer of each half writes its fp32 buffer (cuda_backend.cu's enc/dec). */
    for (int i = 0; i + 1 < m->enc.n; i++)
        if (alloc_bf16(ctx, s, &s->enc16[i], B * (size_t)m->enc.layer[i].out,
                       "bf16 encoder activations", st))
            return -1;
    for (int i = 0; i + 1 < m->dec.n; i++)
        if (alloc_bf16(ctx, s, &s->dec16[i], B * (size_t)m->dec.layer[i].out,
                       "bf16 decoder activations", st))
            return -1;
    return 0;
}

void cuvae_bf16_step_free(cuvae_bf16_step *s)
{
    cuvae_bf16 *bufs[] = {s->params16, s->x16, s->z16, s->dy16};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    for (int i = 0; i < CUVAE_MAX_LAYERS; i++) {
        cudaFree(s->enc16[i]);
        cudaFree(s->dec16[i]);
    }
    memset(s, 0, sizeof *s);
}

int cuvae_bf16_half_forward(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                            const float *params, const cuvae_bf16 *params16, const float *x,
                            cuvae_bf16 *x16, int B, cuvae_bf16 *const *act16, float *out,
                            float *scratch, cuvae_relu_mask *masks, cudaStream_t stream,
                            cuvae_status *st)
{
    if (!layers || n_layers < 1) return cuvae_fail(st, "bf16 half forward: no layers");
    if (B < 1) return cuvae_fail(st, "bf16 half forward: batch %d: expected positive", B);
    if (!x || !x16) return cuvae_fail(st, "bf16 half forward: a NULL input");
    if (!ctx->plan_only &&
        cuvae_bf16_from_f32(x, x16, (size_t)B * (size_t)layers[0].in, stream, st))
        return -1;
    return cuvae_mlp_forward_bf16(ctx, layers, n_layers, params, params16, x16, B, act16, out,
                                  scratch, masks, stream, st);
}

int cuvae_bf16_half_backward(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                             const cuvae_bf16 *params16, float *grads, const cuvae_bf16 *x16, int B,
                             cuvae_bf16 *const *act16, const cuvae_relu_mask *masks, float *dy,
                             cuvae_bf16 *dy16, float *scratch, int want_dx, float **result,
                             cudaStream_t stream, cuvae_status *st)
{
    if (!layers || n_layers < 1) return cuvae_fail(st, "bf16 half backward: no layers");
    if (B < 1) return cuvae_fail(st, "bf16 half backward: batch %d: expected positive", B);
    if (!dy || !dy16) return cuvae_fail(st, "bf16 half backward: a NULL gradient");
    if (!ctx->plan_only &&
        cuvae_bf16_from_f32(dy, dy16, (size_t)B * (size_t)layers[n_layers - 1].out, stream, st))
        return -1;
    return cuvae_mlp_backward_bf16(ctx, layers, n_layers, params16, grads, x16, B, act16, masks, dy,
                                   dy16, scratch, want_dx, result, stream, st);
}
