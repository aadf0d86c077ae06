/* The bf16 buffers of the training step (see step_bf16.h). */
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
