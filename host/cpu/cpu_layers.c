/* The CPU backend's layer kinds and its one stack loop per direction. Each kind of the model's
 * layer table (model.h) has a row here: forward, backward and the scratch its calls need; the
 * loops below run an encoder or decoder stack through those rows, timing each layer for
 * `cuvae bench` (cpu_profile.c). A new kind adds its row (and its ops, like cpu_linear.c). */
#include <stddef.h>

#include "cpu_backend_impl.h"
#include "cpu_ops.h"

/* ---- linear (cpu_linear.c) ------------------------------------------------------------------ */

static void linear_forward(const float *params, const cuvae_layer *l, const float *in, int rows,
                           float *scratch, float *out)
{
    (void)scratch;
    cuvae_cpu_linear_forward(in, params + l->w, params + l->b, rows, l->in, l->out,
                             l->act == CUVAE_ACT_RELU, out);
}

static void linear_backward(const float *params, float *grads, const cuvae_layer *l,
                            const float *in, const float *dy, int rows, float *scratch, float *dx,
                            const float *relu_in, double *sq)
{
    (void)scratch;
    cuvae_cpu_linear_backward_relu(in, params + l->w, dy, rows, l->in, l->out, grads + l->w,
                                   grads + l->b, dx, relu_in, sq);
}

static size_t linear_scratch(const cuvae_layer *l, int rows)
{
    (void)l;
    (void)rows;
    return 0;
}

/* ---- conv2d and conv_transpose2d (cpu_conv.c) ---------------------------------------------- */

static void conv_forward(const float *params, const cuvae_layer *l, const float *in, int rows,
                         float *scratch, float *out)
{
    cuvae_cpu_conv_forward(l, params + l->w, params + l->b, in, rows, l->act == CUVAE_ACT_RELU,
                           scratch, out);
}

static void conv_backward(const float *params, float *grads, const cuvae_layer *l, const float *in,
                          const float *dy, int rows, float *scratch, float *dx,
                          const float *relu_in, double *sq)
{
    cuvae_cpu_conv_backward(l, params + l->w, in, dy, rows, scratch, grads + l->w, grads + l->b, dx,
                            relu_in, sq);
}

static const cpu_layer_ops KINDS[CUVAE_LAYER_KINDS] = {
    [CUVAE_LAYER_LINEAR] = {linear_forward, linear_backward, linear_scratch},
    [CUVAE_LAYER_CONV2D] = {conv_forward, conv_backward, cuvae_cpu_conv_scratch},
    [CUVAE_LAYER_CONV_TRANSPOSE2D] = {conv_forward, conv_backward, cuvae_cpu_conv_scratch},
};

const cpu_layer_ops *cuvae_cpu_layer_ops(cuvae_layer_kind kind)
{
    return kind >= 0 && kind < CUVAE_LAYER_KINDS && KINDS[kind].forward ? &KINDS[kind] : NULL;
}

/* ---- the stack loops ------------------------------------------------------------------------- */

size_t cuvae_cpu_stack_scratch(const cuvae_model *m, int rows)
{
    size_t most = 0;
    for (int half = 0; half < 2; half++) {
        const cuvae_stack *s = cuvae_model_stack(m, half);
        for (int i = 0; i < s->n; i++) {
            size_t n = cuvae_cpu_layer_ops(s->layer[i].kind)->scratch(&s->layer[i], rows);
            if (n > most) most = n;
        }
    }
    return most;
}

void cuvae_cpu_stack_forward(const float *params, const cuvae_model *m, int decoder,
                             const float *in, int rows, float *scratch, float *const *outs,
                             cpu_prof *prof)
{
    const cuvae_stack *s = cuvae_model_stack(m, decoder);
    for (int i = 0; i < s->n; i++) {
        const cuvae_layer *l = &s->layer[i];
        cuvae_cpu_layer_ops(l->kind)->forward(params, l, in, rows, scratch, outs[i]);
        if (prof)
            cuvae_cpu_prof_mark(prof, cpu_gemm_slot(decoder, i, CPU_GEMM_FWD),
                                2.0 * rows * l->macs);
        in = outs[i];
    }
}

float *cuvae_cpu_stack_backward(const float *params, float *grads, const cuvae_model *m,
                                int decoder, float *const *outs, const float *input, int rows,
                                float *dy, float *dx, float *scratch, int want_dx, double *sq,
                                cpu_prof *prof)
{
    const cuvae_stack *s = cuvae_model_stack(m, decoder);
    for (int i = s->n - 1; i >= 0; i--) {
        const cuvae_layer *l = &s->layer[i];
        const float *in = i > 0 ? outs[i - 1] : input;
        int need_dx = i > 0 || want_dx;
        /* dx leaves through the activation of the layer before: its ReLU mask is applied in the
         * same call. */
        const float *relu_in = i > 0 && s->layer[i - 1].act == CUVAE_ACT_RELU ? outs[i - 1] : NULL;
        double layer_sq = 0.0;
        cuvae_cpu_layer_ops(l->kind)->backward(params, grads, l, in, dy, rows, scratch,
                                               need_dx ? dx : NULL, relu_in, &layer_sq);
        *sq += layer_sq;
        if (prof)
            cuvae_cpu_prof_mark(prof, cpu_gemm_slot(decoder, i, CPU_GEMM_BWD),
                                (need_dx ? 4.0 : 2.0) * rows * l->macs);
        if (!need_dx) return NULL;
        float *t = dy;
        dy = dx;
        dx = t;
    }
    return dy;
}
