/* The CUDA backend's layer kinds and its one stack loop per direction (see layers.h), mirroring
 * host/cpu/cpu_layers.c: the same walk over the stack, the same ReLU tests (the activation of the
 * layer whose output is the input), the same ping-pong of the activation gradients. */
#include "layers.h"

#include "conv.h"

/* base + off values of `size` bytes each: an offset into a flat buffer of either type. */
static const void *at(const void *base, size_t off, size_t size)
{
    return (const char *)base + off * size;
}

static size_t type_size(cudaDataType_t t)
{
    return t == CUDA_R_16BF ? sizeof(cuvae_bf16) : sizeof(float);
}

/* ---- linear (linear.cu) ---------------------------------------------------------------------- */

static int linear_forward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l,
                          const void *w_src, const void *b_src, const void *x, int rows, void *y,
                          cudaDataType_t y_type, float *scratch, cuvae_relu_mask *mask,
                          cudaStream_t stream, cuvae_status *st)
{
    return cuvae_linear_forward(ctx, op, x, at(w_src, l->w, cuvae_operand_size(op)),
                                at(b_src, l->b, type_size(y_type)), rows, l->in, l->out,
                                l->act == CUVAE_ACT_RELU, y, y_type, scratch, mask, stream, st);
}

static int linear_backward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l,
                           const void *w_src, float *grads, const void *x, const float *dy,
                           const void *dy_op, int rows, float *dx, void *dx_op, int x_relu,
                           const cuvae_relu_mask *x_mask, int db_done, float *db_prev,
                           cudaStream_t stream, cuvae_status *st)
{
    return cuvae_linear_backward(ctx, op, x, at(w_src, l->w, cuvae_operand_size(op)), dy, dy_op,
                                 rows, l->in, l->out, grads + l->w, db_done ? NULL : grads + l->b,
                                 dx, dx_op, x_relu, x_mask, db_prev, stream, st);
}

/* A bf16 output's fp32 accumulators when no fused epilogue runs. */
static size_t linear_scratch_floats(const cuvae_layer *l, int rows, cuvae_operand op,
                                    cudaDataType_t y_type)
{
    (void)op;
    return y_type == CUDA_R_32F ? 0 : (size_t)rows * (size_t)l->out;
}

/* ---- conv2d and conv_transpose2d (conv.cu) --------------------------------------------------- */

#if CUVAE_HAVE_CUDNN
static int conv_forward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l,
                        const void *w_src, const void *b_src, const void *x, int rows, void *y,
                        cudaDataType_t y_type, float *scratch, cuvae_relu_mask *mask,
                        cudaStream_t stream, cuvae_status *st)
{
    return cuvae_conv_forward(ctx, op, l, x, at(w_src, l->w, cuvae_operand_size(op)),
                              at(b_src, l->b, type_size(y_type)), rows, y, y_type, scratch, mask,
                              stream, st);
}

static int conv_backward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l,
                         const void *w_src, float *grads, const void *x, const float *dy,
                         const void *dy_op, int rows, float *dx, void *dx_op, int x_relu,
                         const cuvae_relu_mask *x_mask, int db_done, float *db_prev,
                         cudaStream_t stream, cuvae_status *st)
{
    (void)x_mask; /* cuBLASLt's bits: a convolution tests x > 0 itself */
    /* dy_op is the stack's gradient copy, which the loop rewrites layer by layer anyway: a conv
     * row may stage its input gradient there (conv.h). */
    return cuvae_conv_backward(ctx, op, l, x, at(w_src, l->w, cuvae_operand_size(op)), dy,
                               (void *)dy_op, rows, grads + l->w, db_done ? NULL : grads + l->b, dx,
                               dx_op, x_relu, db_prev, stream, st);
}

#define CONV_ROW                                                                                   \
    {                                                                                              \
        conv_forward, conv_backward, cuvae_conv_scratch_floats                                     \
    }
#else
#define CONV_ROW                                                                                   \
    {                                                                                              \
        NULL, NULL, NULL                                                                           \
    }
#endif

/* Indexed by cuvae_layer_kind (positional: nvcc's C++ has no designated array initializers). */
static_assert(CUVAE_LAYER_LINEAR == 0 && CUVAE_LAYER_CONV2D == 1 &&
                  CUVAE_LAYER_CONV_TRANSPOSE2D == 2 && CUVAE_LAYER_KINDS == 3,
              "the kinds table is indexed by cuvae_layer_kind");
static const cuvae_cuda_layer_kind_ops KINDS[CUVAE_LAYER_KINDS] = {
    {linear_forward, linear_backward, linear_scratch_floats},
    CONV_ROW,
    CONV_ROW,
};

const cuvae_cuda_layer_kind_ops *cuvae_cuda_layer_ops(cuvae_layer_kind kind)
{
    return kind >= 0 && kind < CUVAE_LAYER_KINDS && KINDS[kind].forward ? &KINDS[kind] : NULL;
}

const char *cuvae_cuda_layer_missing(cuvae_layer_kind kind)
{
    if (cuvae_cuda_layer_ops(kind)) return NULL;
    switch (kind) {
    case CUVAE_LAYER_CONV2D:
        return "conv2d layers need cuDNN 9, which this build was made without (install cuDNN and "
               "rebuild, or train with --device cpu)";
    case CUVAE_LAYER_CONV_TRANSPOSE2D:
        return "conv_transpose2d layers need cuDNN 9, which this build was made without (install "
               "cuDNN and rebuild, or train with --device cpu)";
    default:
        return "this layer kind is not implemented on CUDA";
    }
}

/* ---- the stack loops ------------------------------------------------------------------------- */

/* The type of layer i's output: the operand type, fp32 for the last layer. */
static cudaDataType_t output_type(cuvae_operand op, int i, int n_layers)
{
    return i + 1 == n_layers ? CUDA_R_32F : cuvae_operand_type(op);
}

size_t cuvae_stack_scratch_floats(const cuvae_layer *layers, int n_layers, int rows,
                                  cuvae_operand op)
{
    size_t most = 0;
    for (int i = 0; i < n_layers; i++) {
        const cuvae_cuda_layer_kind_ops *ops = cuvae_cuda_layer_ops(layers[i].kind);
        size_t n =
            ops ? ops->scratch_floats(&layers[i], rows, op, output_type(op, i, n_layers)) : 0;
        if (n > most) most = n;
    }
    return most;
}

static const cuvae_cuda_layer_kind_ops *kind_ops(const cuvae_layer *l, int i, cuvae_status *st)
{
    const cuvae_cuda_layer_kind_ops *ops = cuvae_cuda_layer_ops(l->kind);
    if (!ops) cuvae_fail(st, "layer %d: %s", i, cuvae_cuda_layer_missing(l->kind));
    return ops;
}

int cuvae_stack_forward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *layers,
                        int n_layers, const float *params, const void *params_op, const void *x,
                        int B, void *const *act, float *scratch, cuvae_relu_mask *masks,
                        cudaStream_t stream, cuvae_status *st)
{
    if (n_layers < 1) return cuvae_fail(st, "stack forward: no layers");
    if (B < 1) return cuvae_fail(st, "stack forward: batch %d: expected positive", B);
    int bf16 = op == CUVAE_OPERAND_BF16;
    /* params + offset is never NULL: a missing parameter buffer must be caught here, before the
     * layers see a bogus pointer. */
    if (!layers || !params || (bf16 && !params_op) || !x || !act)
        return cuvae_fail(st, "stack forward: a NULL buffer");
    const void *w_src = bf16 ? params_op : (const void *)params;
    const void *in = x;
    for (int i = 0; i < n_layers; i++) {
        const cuvae_layer *l = &layers[i];
        const cuvae_cuda_layer_kind_ops *ops = kind_ops(l, i, st);
        if (!ops) return -1;
        if (!act[i]) return cuvae_fail(st, "stack forward: layer %d: no output", i);
        cudaDataType_t y_type = output_type(op, i, n_layers);
        const void *b_src = y_type == CUDA_R_32F ? (const void *)params : params_op;
        cuvae_relu_mask *mask = l->act == CUVAE_ACT_RELU && masks ? &masks[i] : NULL;
        if (ops->forward(ctx, op, l, w_src, b_src, in, B, act[i], y_type, scratch, mask, stream,
                         st))
            return cuvae_fail_prefix(st, "layer %d", i);
        in = act[i];
    }
    return 0;
}

int cuvae_stack_backward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *layers,
                         int n_layers, const float *params, const void *params_op, float *grads,
                         const void *x, int B, void *const *act, const cuvae_relu_mask *masks,
                         float *dy, void *dy_op, float *scratch, int want_dx, float **result,
                         cudaStream_t stream, cuvae_status *st)
{
    float *dx = scratch;
    int db_done = 0; /* this layer's bias gradient came with the next layer's backward */
    if (!result) return cuvae_fail(st, "stack backward: no result pointer");
    *result = NULL;
    if (n_layers < 1) return cuvae_fail(st, "stack backward: no layers");
    if (B < 1) return cuvae_fail(st, "stack backward: batch %d: expected positive", B);
    int bf16 = op == CUVAE_OPERAND_BF16;
    const void *w_src = bf16 ? params_op : (const void *)params;
    /* w_src + offset and grads + offset are never NULL: check the buffers themselves. */
    if (!layers || !w_src || !grads || !x || !dy || (bf16 && !dy_op) || !scratch ||
        (n_layers > 1 && !act))
        return cuvae_fail(st, "stack backward: a NULL buffer");
    for (int i = n_layers - 1; i >= 0; i--) {
        const cuvae_layer *l = &layers[i];
        const cuvae_cuda_layer_kind_ops *ops = kind_ops(l, i, st);
        if (!ops) return -1;
        int need_dx = i > 0 || want_dx;
        /* dx leaves through the activation of the layer before: its ReLU mask is applied in the
         * same call, and so is that layer's bias gradient taken when it has one bias per output
         * value (a linear layer: the sums over the batch of dx); a conv layer, whose bias is one
         * per channel, sums its own from its dy. */
        int x_relu = i > 0 && layers[i - 1].act == CUVAE_ACT_RELU;
        int db_fused = x_relu && layers[i - 1].b_count == (size_t)layers[i - 1].out;
        /* The previous layer's GEMMs read the input gradient in the operand type; a stack's dx
         * (the decoder's dz) goes to the reparameterization's backward in fp32 only. */
        void *dx_op = bf16 && i > 0 ? dy_op : NULL;
        if (ops->backward(ctx, op, l, w_src, grads, i > 0 ? act[i - 1] : x, dy, dy_op, B,
                          need_dx ? dx : NULL, dx_op, x_relu,
                          x_relu && masks ? &masks[i - 1] : NULL, db_done,
                          db_fused ? grads + layers[i - 1].b : NULL, stream, st))
            return cuvae_fail_prefix(st, "layer %d backward", i);
        db_done = db_fused;
        if (!need_dx) return 0;
        float *t = dy;
        dy = dx;
        dx = t;
    }
    *result = dy;
    return 0;
}
