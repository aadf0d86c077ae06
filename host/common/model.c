/* The layer table of the VAE (model.h): building it from the config, and everything derived from
 * it (parameter layout, tensor names and shapes, initialization, FLOP counts, activation widths).
 * A layer kind adds its case to layer_shapes: output shape, weight shape, fan-in, multiply-adds. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "philox.h"

cuvae_shape cuvae_shape_default(int x_dim)
{
    int r = (int)lround(sqrt((double)x_dim));
    if (r * r == x_dim) return (cuvae_shape){1, r, r};
    return (cuvae_shape){1, 1, x_dim};
}

int cuvae_shape_equal(cuvae_shape a, cuvae_shape b)
{
    return a.c == b.c && a.h == b.h && a.w == b.w;
}

static cuvae_shape flat(int n)
{
    return (cuvae_shape){n, 1, 1};
}

/* The shapes a layer derives from its kind, input shape and output size; 0, or -1 for a kind not
 * implemented yet. */
static int layer_shapes(cuvae_layer *l)
{
    switch (l->kind) {
    case CUVAE_LAYER_LINEAR:
        l->in = l->in_shape.c * l->in_shape.h * l->in_shape.w;
        l->out = l->out_shape.c * l->out_shape.h * l->out_shape.w;
        l->fan_in = l->in;
        l->macs = (double)l->in * (double)l->out;
        l->w_ndim = 2;
        l->w_shape[0] = l->out;
        l->w_shape[1] = l->in;
        l->w_count = (size_t)l->out * (size_t)l->in;
        l->b_count = (size_t)l->out;
        return 0;
    default:
        return -1;
    }
}

/* Appends a linear layer of `out` features to the stack, its parameters placed at `*at`. */
static void add_linear(cuvae_stack *s, int in, int out, cuvae_activation act, size_t *at)
{
    cuvae_layer *l = &s->layer[s->n++];
    *l = (cuvae_layer){
        .kind = CUVAE_LAYER_LINEAR, .in_shape = flat(in), .out_shape = flat(out), .act = act};
    layer_shapes(l);
    l->w = *at;
    l->b = l->w + l->w_count;
    *at = l->b + l->b_count;
}

int cuvae_model_layout_shape(cuvae_model *m, const cuvae_config *c, cuvae_shape x, cuvae_status *st)
{
    memset(m, 0, sizeof *m);
    if (x.c <= 0 || x.h <= 0 || x.w <= 0 || (int64_t)x.c * x.h * x.w > INT32_MAX)
        return cuvae_fail(st, "model: data of shape %dx%dx%d", x.c, x.h, x.w);
    int x_dim = x.c * x.h * x.w;
    if (c->model.latent <= 0) return cuvae_fail(st, "model.latent: must be positive");
    if (c->model.n_hidden < 0 || c->model.n_hidden > CUVAE_MAX_HIDDEN)
        return cuvae_fail(st, "model.hidden: at most %d layers", CUVAE_MAX_HIDDEN);
    m->x_shape = x;
    m->x_dim = x_dim;
    m->x_hi = 1.0f;
    m->latent = c->model.latent;
    m->likelihood = c->model.likelihood;
    m->gaussian_sigma = c->model.gaussian_sigma;
    int nh = c->model.n_hidden;
    size_t at = 0;
    int in = x_dim;
    for (int i = 0; i < nh; i++) {
        add_linear(&m->enc, in, c->model.hidden[i], CUVAE_ACT_RELU, &at);
        in = c->model.hidden[i];
    }
    add_linear(&m->enc, in, 2 * m->latent, CUVAE_ACT_NONE, &at);
    in = m->latent;
    for (int i = 0; i < nh; i++) {
        int out = c->model.hidden[nh - 1 - i];
        add_linear(&m->dec, in, out, CUVAE_ACT_RELU, &at);
        in = out;
    }
    add_linear(&m->dec, in, x_dim, CUVAE_ACT_NONE, &at);
    m->n_params = at;
    return 0;
}

int cuvae_model_layout(cuvae_model *m, const cuvae_config *c, int x_dim, cuvae_status *st)
{
    memset(m, 0, sizeof *m);
    if (x_dim <= 0) return cuvae_fail(st, "model: data has %d values per example", x_dim);
    return cuvae_model_layout_shape(m, c, cuvae_shape_default(x_dim), st);
}

const cuvae_stack *cuvae_model_stack(const cuvae_model *m, int decoder)
{
    return decoder ? &m->dec : &m->enc;
}

int cuvae_model_max_width(const cuvae_model *m)
{
    int widest = 0;
    for (int half = 0; half < 2; half++) {
        const cuvae_stack *s = cuvae_model_stack(m, half);
        for (int i = 0; i < s->n; i++) {
            if (s->layer[i].in > widest) widest = s->layer[i].in;
            if (s->layer[i].out > widest) widest = s->layer[i].out;
        }
    }
    return widest;
}

int cuvae_model_tensors(const cuvae_model *m, cuvae_tensor_info *out)
{
    int n = 0;
    for (int half = 0; half < 2; half++) {
        const cuvae_stack *s = cuvae_model_stack(m, half);
        const char *name = half ? "decoder" : "encoder";
        for (int i = 0; i < s->n; i++) {
            const cuvae_layer *l = &s->layer[i];
            cuvae_tensor_info *w = &out[n++], *b = &out[n++];
            memset(w, 0, sizeof *w);
            memset(b, 0, sizeof *b);
            snprintf(w->name, sizeof w->name, "%s.%d.weight", name, i);
            snprintf(b->name, sizeof b->name, "%s.%d.bias", name, i);
            w->ndim = l->w_ndim;
            for (int d = 0; d < l->w_ndim; d++) w->shape[d] = l->w_shape[d];
            w->offset = l->w;
            w->count = l->w_count;
            b->ndim = 1;
            b->shape[0] = (int64_t)l->b_count;
            b->offset = l->b;
            b->count = l->b_count;
        }
    }
    return n;
}

static void init_uniform(uint64_t seed, uint64_t tensor, float bound, float *p, size_t count)
{
    for (size_t j = 0; j < count; j++) {
        float u = cuvae_u32_to_uniform(cuvae_philox_word(seed, CUVAE_STREAM_INIT, tensor, j));
        p[j] = bound * (2.0f * u - 1.0f);
    }
}

void cuvae_model_init(const cuvae_model *m, uint64_t seed, float *params)
{
    uint64_t tensor = 0; /* the index of the tensor in cuvae_model_tensors' order */
    for (int half = 0; half < 2; half++) {
        const cuvae_stack *s = cuvae_model_stack(m, half);
        for (int i = 0; i < s->n; i++) {
            const cuvae_layer *l = &s->layer[i];
            float bound = 1.0f / sqrtf((float)l->fan_in);
            init_uniform(seed, tensor++, bound, params + l->w, l->w_count);
            init_uniform(seed, tensor++, bound, params + l->b, l->b_count);
        }
    }
}

double cuvae_model_train_flops(const cuvae_model *m, int batch)
{
    double macs = 0;
    for (int half = 0; half < 2; half++) {
        const cuvae_stack *s = cuvae_model_stack(m, half);
        for (int i = 0; i < s->n; i++) macs += s->layer[i].macs;
    }
    /* forward 2*macs; backward: weight gradient 2*macs, input gradient 2*macs but for the first
     * encoder layer (the data needs no gradient): the products the step computes, no more, as
     * bench/peers/gemm_ceiling.py times them. */
    double first = m->enc.n > 0 ? m->enc.layer[0].macs : 0.0;
    return (6.0 * macs - 2.0 * first) * (double)batch;
}
