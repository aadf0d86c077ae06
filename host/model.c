/* Parameter layout, tensor naming and initialization of the MLP VAE. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "philox.h"

static size_t place(cuvae_linear *l, int in, int out, size_t at)
{
    l->in = in;
    l->out = out;
    l->w = at;
    l->b = at + (size_t)in * (size_t)out;
    return l->b + (size_t)out;
}

int cuvae_model_layout(cuvae_model *m, const cuvae_config *c, int x_dim, cuvae_status *st)
{
    memset(m, 0, sizeof *m);
    if (x_dim <= 0) return cuvae_fail(st, "model: data has %d values per example", x_dim);
    if (c->model.latent <= 0) return cuvae_fail(st, "model.latent: must be positive");
    if (c->model.n_hidden < 0 || c->model.n_hidden > CUVAE_MAX_HIDDEN)
        return cuvae_fail(st, "model.hidden: at most %d layers", CUVAE_MAX_HIDDEN);
    m->x_dim = x_dim;
    m->latent = c->model.latent;
    m->likelihood = c->model.likelihood;
    m->gaussian_sigma = c->model.gaussian_sigma;
    int nh = c->model.n_hidden;
    m->n_enc = m->n_dec = nh + 1;
    size_t at = 0;
    int in = x_dim;
    for (int i = 0; i < nh; i++) {
        at = place(&m->enc[i], in, c->model.hidden[i], at);
        in = c->model.hidden[i];
    }
    at = place(&m->enc[nh], in, 2 * m->latent, at);
    in = m->latent;
    for (int i = 0; i < nh; i++) {
        int out = c->model.hidden[nh - 1 - i];
        at = place(&m->dec[i], in, out, at);
        in = out;
    }
    at = place(&m->dec[nh], in, x_dim, at);
    m->n_params = at;
    m->max_width = x_dim > 2 * m->latent ? x_dim : 2 * m->latent;
    for (int i = 0; i < nh; i++)
        if (c->model.hidden[i] > m->max_width) m->max_width = c->model.hidden[i];
    return 0;
}

int cuvae_model_tensors(const cuvae_model *m, cuvae_tensor_info *out)
{
    int n = 0;
    for (int half = 0; half < 2; half++) {
        const cuvae_linear *layers = half ? m->dec : m->enc;
        int count = half ? m->n_dec : m->n_enc;
        for (int i = 0; i < count; i++) {
            cuvae_tensor_info *w = &out[n++], *b = &out[n++];
            snprintf(w->name, sizeof w->name, "%s.%d.weight", half ? "decoder" : "encoder", i);
            snprintf(b->name, sizeof b->name, "%s.%d.bias", half ? "decoder" : "encoder", i);
            w->ndim = 2;
            w->shape[0] = layers[i].out;
            w->shape[1] = layers[i].in;
            w->offset = layers[i].w;
            w->count = (size_t)layers[i].out * (size_t)layers[i].in;
            b->ndim = 1;
            b->shape[0] = layers[i].out;
            b->shape[1] = 1;
            b->offset = layers[i].b;
            b->count = (size_t)layers[i].out;
        }
    }
    return n;
}

void cuvae_model_init(const cuvae_model *m, uint64_t seed, float *params)
{
    cuvae_tensor_info t[CUVAE_MAX_TENSORS];
    int n = cuvae_model_tensors(m, t);
    for (int i = 0; i < n; i++) {
        int fan_in = t[i].ndim == 2 ? (int)t[i].shape[1] : (int)t[i - 1].shape[1];
        float bound = 1.0f / sqrtf((float)fan_in);
        for (size_t j = 0; j < t[i].count; j++) {
            float u =
                cuvae_u32_to_uniform(cuvae_philox_word(seed, CUVAE_STREAM_INIT, (uint64_t)i, j));
            params[t[i].offset + j] = bound * (2.0f * u - 1.0f);
        }
    }
}

double cuvae_model_train_flops(const cuvae_model *m, int batch)
{
    double macs = 0;
    for (int i = 0; i < m->n_enc; i++) macs += (double)m->enc[i].in * m->enc[i].out;
    for (int i = 0; i < m->n_dec; i++) macs += (double)m->dec[i].in * m->dec[i].out;
    /* forward 2*macs; backward: weight gradient 2*macs, input gradient 2*macs but for the first
     * encoder layer (the data needs no gradient): the products the step computes, no more, as
     * bench/peers/gemm_ceiling.py times them. */
    double first = m->n_enc > 0 ? (double)m->enc[0].in * m->enc[0].out : 0.0;
    return (6.0 * macs - 2.0 * first) * (double)batch;
}
