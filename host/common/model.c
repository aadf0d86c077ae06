/* The layer table of the VAE (model.h): building it from the config, and everything derived from
 * it (parameter layout, tensor names and shapes, initialization, FLOP counts, activation widths).
 * A layer kind adds its case to layer_shapes: output shape, weight shape, fan-in, multiply-adds. */
#include "model.h"

#include <inttypes.h>
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

const char *cuvae_layer_kind_name(cuvae_layer_kind kind)
{
    switch (kind) {
    case CUVAE_LAYER_LINEAR:
        return "linear";
    case CUVAE_LAYER_CONV2D:
        return "conv2d";
    case CUVAE_LAYER_CONV_TRANSPOSE2D:
        return "conv_transpose2d";
    default:
        return "?";
    }
}

/* The output size of a conv kind along one axis of n, in int64 (no overflow for any int n). */
static int64_t conv_out(cuvae_layer_kind kind, int64_t n, int k, int s, int p)
{
    if (kind == CUVAE_LAYER_CONV2D) return n + 2 * p - k < 0 ? 0 : (n + 2 * p - k) / s + 1;
    return (n - 1) * s - 2 * p + k;
}

/* The shapes a layer derives from its kind, input shape and output channels (linear: features):
 * output shape, weight shape, fan-in, multiply-adds. One case per kind. */
static int layer_shapes(cuvae_layer *l, int out_c, cuvae_status *st)
{
    cuvae_shape in = l->in_shape;
    int64_t in_n = in.c > 0 && in.h > 0 && (int64_t)in.c * in.h <= INT32_MAX
                       ? (int64_t)in.c * in.h * in.w
                       : (int64_t)INT32_MAX + 1;
    if (in.c <= 0 || in.h <= 0 || in.w <= 0 || in_n > INT32_MAX)
        return cuvae_fail(st, "%s: input of shape %dx%dx%d", cuvae_layer_kind_name(l->kind), in.c,
                          in.h, in.w);
    if (out_c <= 0)
        return cuvae_fail(st, "%s: %d outputs (must be positive)", cuvae_layer_kind_name(l->kind),
                          out_c);
    switch (l->kind) {
    case CUVAE_LAYER_LINEAR:
        l->kernel = l->stride = l->padding = 0;
        l->out_shape = flat(out_c);
        l->in = (int)in_n;
        l->out = out_c;
        l->fan_in = l->in;
        l->macs = (double)l->in * (double)l->out;
        l->w_ndim = 2;
        l->w_shape[0] = l->out;
        l->w_shape[1] = l->in;
        l->w_count = (size_t)l->out * (size_t)l->in;
        l->b_count = (size_t)l->out;
        return 0;
    case CUVAE_LAYER_CONV2D:
    case CUVAE_LAYER_CONV_TRANSPOSE2D: {
        const char *name = cuvae_layer_kind_name(l->kind);
        int k = l->kernel, s = l->stride, p = l->padding;
        if (k < 1 || k > CUVAE_CONV_MAX_KERNEL || s < 1 || s > CUVAE_CONV_MAX_STRIDE || p < 0 ||
            p >= k)
            return cuvae_fail(st,
                              "%s: kernel %d, stride %d, padding %d (expected kernel in [1, %d], "
                              "stride in [1, %d], padding in [0, kernel - 1])",
                              name, k, s, p, CUVAE_CONV_MAX_KERNEL, CUVAE_CONV_MAX_STRIDE);
        int64_t oh = conv_out(l->kind, in.h, k, s, p), ow = conv_out(l->kind, in.w, k, s, p);
        int64_t out_n = (int64_t)out_c * oh * ow;
        if ((int64_t)out_c * in.c * k * k > INT32_MAX)
            return cuvae_fail(st, "%s k%d s%d p%d: a weight of %dx%dx%dx%d values (at most %d)",
                              name, k, s, p, l->kind == CUVAE_LAYER_CONV2D ? out_c : in.c,
                              l->kind == CUVAE_LAYER_CONV2D ? in.c : out_c, k, k, INT32_MAX);
        if (oh < 1 || ow < 1 || out_n > INT32_MAX)
            return cuvae_fail(st,
                              "%s k%d s%d p%d: input %dx%dx%d gives an output of %" PRId64
                              "x%" PRId64 "x%" PRId64 " (each side must be at least 1, the whole "
                              "at most %d values)",
                              name, k, s, p, in.c, in.h, in.w, (int64_t)out_c, oh, ow, INT32_MAX);
        l->out_shape = (cuvae_shape){out_c, (int)oh, (int)ow};
        l->in = (int)in_n;
        l->out = (int)out_n;
        int conv = l->kind == CUVAE_LAYER_CONV2D;
        l->fan_in = (conv ? in.c : out_c) * k * k;
        /* conv2d: every output value sums in_c*k*k products; transposed: every input value
         * scatters into out_c*k*k outputs. */
        l->macs = conv ? (double)out_n * in.c * k * k : (double)in_n * out_c * k * k;
        l->w_ndim = 4;
        l->w_shape[0] = conv ? out_c : in.c;
        l->w_shape[1] = conv ? in.c : out_c;
        l->w_shape[2] = k;
        l->w_shape[3] = k;
        l->w_count = (size_t)out_c * (size_t)in.c * (size_t)k * (size_t)k;
        l->b_count = (size_t)out_c;
        return 0;
    }
    default:
        return cuvae_fail(st, "layer kind %d unknown", (int)l->kind);
    }
}

int cuvae_layer_make(cuvae_layer *l, cuvae_layer_kind kind, cuvae_shape in, int out_c, int k, int s,
                     int p, cuvae_activation act, cuvae_status *st)
{
    *l = (cuvae_layer){
        .kind = kind, .in_shape = in, .kernel = k, .stride = s, .padding = p, .act = act};
    if (layer_shapes(l, out_c, st)) return -1;
    l->w = 0;
    l->b = l->w_count;
    return 0;
}

/* Appends a layer to the stack, its parameters placed at `*at`. */
static int add_layer(cuvae_stack *s, cuvae_layer_kind kind, cuvae_shape in, int out_c, int k,
                     int st_, int p, cuvae_activation act, size_t *at, cuvae_status *st)
{
    if (s->n >= CUVAE_MAX_LAYERS)
        return cuvae_fail(st, "more than %d layers in a stack", CUVAE_MAX_LAYERS);
    cuvae_layer *l = &s->layer[s->n];
    if (cuvae_layer_make(l, kind, in, out_c, k, st_, p, act, st)) return -1;
    s->n++;
    l->w = *at;
    l->b = l->w + l->w_count;
    *at = l->b + l->b_count;
    return 0;
}

_Static_assert(CUVAE_LAYER_LINEAR == 0 && CUVAE_LAYER_CONV2D == 1 &&
                   CUVAE_LAYER_CONV_TRANSPOSE2D == 2,
               "cuvae_layer_spec.kind (config.h) numbers the kinds this way");

/* The layer of a spec entry (config.h), a linear's reshape applied. */
static int add_spec(cuvae_stack *s, const cuvae_layer_spec *sp, cuvae_shape in,
                    cuvae_activation act, size_t *at, cuvae_status *st)
{
    int out_c = sp->c;
    if (sp->kind == CUVAE_LAYER_LINEAR && sp->h) {
        int64_t n = (int64_t)sp->c * sp->h * sp->w;
        if (n > INT32_MAX)
            return cuvae_fail(st, "linear %dx%dx%d: more than %d features", sp->c, sp->h, sp->w,
                              INT32_MAX);
        out_c = (int)n;
    }
    if (sp->kind < 0 || sp->kind >= CUVAE_LAYER_KINDS)
        return cuvae_fail(st, "layer kind %d unknown", sp->kind);
    if (add_layer(s, (cuvae_layer_kind)sp->kind, in, out_c, sp->k, sp->s, sp->p, act, at, st))
        return -1;
    if (sp->kind == CUVAE_LAYER_LINEAR && sp->h)
        s->layer[s->n - 1].out_shape = (cuvae_shape){sp->c, sp->h, sp->w};
    return 0;
}

/* "conv2d 32 k4 s2 p1" of a spec entry, for messages. */
static void spec_text(const cuvae_layer_spec *sp, char *buf, size_t len)
{
    cuvae_stack_spec one = {.n = 1};
    one.layer[0] = *sp;
    cuvae_stack_spec_format(&one, buf, len);
}

/* The decoder that mirrors the encoder: the linear to [mu | logvar] and every layer before it
 * reversed, each mapping its layer's output shape back to its input shape (a conv2d becomes a
 * conv_transpose2d of the same kernel, stride and padding). */
static int mirror_decoder(cuvae_model *m, size_t *at, cuvae_status *st)
{
    cuvae_shape in = flat(m->latent);
    for (int i = m->enc.n - 1; i >= 0; i--) {
        const cuvae_layer *e = &m->enc.layer[i];
        cuvae_activation act = i > 0 ? CUVAE_ACT_RELU : CUVAE_ACT_NONE;
        cuvae_layer_kind kind =
            e->kind == CUVAE_LAYER_CONV2D ? CUVAE_LAYER_CONV_TRANSPOSE2D : CUVAE_LAYER_LINEAR;
        int out_c = kind == CUVAE_LAYER_LINEAR ? e->in : e->in_shape.c;
        if (e->kind == CUVAE_LAYER_CONV_TRANSPOSE2D)
            return cuvae_fail(st,
                              "model.decoder: the encoder's conv_transpose2d (layer %d) has no "
                              "mirror; give model.decoder",
                              i + 1);
        if (add_layer(&m->dec, kind, in, out_c, e->kernel, e->stride, e->padding, act, at, st))
            return cuvae_fail_prefix(st, "model.decoder (the mirror of encoder layer %d)", i + 1);
        cuvae_layer *d = &m->dec.layer[m->dec.n - 1];
        if (kind == CUVAE_LAYER_LINEAR && i > 0 && e->in_shape.h * e->in_shape.w > 1)
            d->out_shape = e->in_shape;
        if (!cuvae_shape_equal(d->out_shape, e->in_shape) && kind != CUVAE_LAYER_LINEAR)
            return cuvae_fail(st,
                              "model.decoder: the mirror of encoder layer %d (conv2d k%d s%d p%d, "
                              "%dx%dx%d -> %dx%dx%d) gives %dx%dx%d, not %dx%dx%d; give "
                              "model.decoder or a kernel, stride and padding that invert",
                              i + 1, e->kernel, e->stride, e->padding, e->in_shape.c, e->in_shape.h,
                              e->in_shape.w, e->out_shape.c, e->out_shape.h, e->out_shape.w,
                              d->out_shape.c, d->out_shape.h, d->out_shape.w, e->in_shape.c,
                              e->in_shape.h, e->in_shape.w);
        in = d->out_shape;
    }
    return 0;
}

int cuvae_model_layout_shape(cuvae_model *m, const cuvae_config *c, cuvae_shape x, cuvae_status *st)
{
    memset(m, 0, sizeof *m);
    if (x.c <= 0 || x.h <= 0 || x.w <= 0 || (int64_t)x.c * x.h > INT32_MAX ||
        (int64_t)x.c * x.h * x.w > INT32_MAX)
        return cuvae_fail(st, "model: data of shape %dx%dx%d", x.c, x.h, x.w);
    int x_dim = x.c * x.h * x.w;
    if (c->model.latent <= 0) return cuvae_fail(st, "model.latent: must be positive");
    if (c->model.n_hidden < 0 || c->model.n_hidden > CUVAE_MAX_HIDDEN)
        return cuvae_fail(st, "model.hidden: at most %d layers", CUVAE_MAX_HIDDEN);
    const cuvae_stack_spec *es = &c->model.encoder, *ds = &c->model.decoder;
    if (es->n < 0 || es->n > CUVAE_MAX_HIDDEN)
        return cuvae_fail(st,
                          "model.encoder: at most %d layers (the linear to [mu | logvar] "
                          "follows them)",
                          CUVAE_MAX_HIDDEN);
    if (ds->n < 0 || ds->n > CUVAE_MAX_SPEC)
        return cuvae_fail(st, "model.decoder: at most %d layers", CUVAE_MAX_SPEC);
    if (es->n > 0 && c->model.n_hidden > 0)
        return cuvae_fail(st, "model.hidden and model.encoder both describe the encoder");
    if (ds->n > 0 && es->n == 0)
        return cuvae_fail(st, "model.decoder is given without model.encoder");
    m->x_shape = x;
    m->x_dim = x_dim;
    m->latent = c->model.latent;
    m->likelihood = c->model.likelihood;
    m->gaussian_sigma = c->model.gaussian_sigma;
    /* model.hidden is the encoder of that many linear layers. */
    cuvae_stack_spec hidden = {.n = c->model.n_hidden};
    for (int i = 0; i < c->model.n_hidden; i++)
        hidden.layer[i] = (cuvae_layer_spec){.kind = CUVAE_LAYER_LINEAR, .c = c->model.hidden[i]};
    if (es->n == 0) es = &hidden;
    size_t at = 0;
    cuvae_shape in = x;
    char what[64];
    for (int i = 0; i < es->n; i++) {
        if (add_spec(&m->enc, &es->layer[i], in, CUVAE_ACT_RELU, &at, st)) {
            spec_text(&es->layer[i], what, sizeof what);
            return cuvae_fail_prefix(st, "model.encoder layer %d (%s)", i + 1, what);
        }
        in = m->enc.layer[i].out_shape;
    }
    if (add_layer(&m->enc, CUVAE_LAYER_LINEAR, in, 2 * m->latent, 0, 0, 0, CUVAE_ACT_NONE, &at, st))
        return cuvae_fail_prefix(st, "model.encoder's linear to [mu | logvar]");
    if (ds->n == 0) {
        if (mirror_decoder(m, &at, st)) return -1;
    } else {
        in = flat(m->latent);
        for (int i = 0; i < ds->n; i++) {
            cuvae_activation act = i + 1 < ds->n ? CUVAE_ACT_RELU : CUVAE_ACT_NONE;
            if (add_spec(&m->dec, &ds->layer[i], in, act, &at, st)) {
                spec_text(&ds->layer[i], what, sizeof what);
                return cuvae_fail_prefix(st, "model.decoder layer %d (%s)", i + 1, what);
            }
            in = m->dec.layer[i].out_shape;
        }
        const cuvae_layer *last = &m->dec.layer[m->dec.n - 1];
        int ok = last->kind == CUVAE_LAYER_LINEAR ? last->out == x_dim
                                                  : cuvae_shape_equal(last->out_shape, x);
        if (!ok)
            return cuvae_fail(st,
                              "model.decoder: the last layer gives %dx%dx%d (%d values), the data "
                              "is %dx%dx%d",
                              last->out_shape.c, last->out_shape.h, last->out_shape.w, last->out,
                              x.c, x.h, x.w);
    }
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
