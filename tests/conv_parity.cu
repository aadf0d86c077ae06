/* Parity of the CUDA conv layers with the CPU backend's conv rows (see conv_parity.h).
 *
 * Each case is a stack of layers (one layer alone, or conv and linear layers mixed) run on the
 * device through cuvae_stack_forward and cuvae_stack_backward, as the training step runs them,
 * and compared layer by layer with the CPU rows fed the same inputs: each CPU layer reads the
 * device's output of the layer before (so every ReLU decision, made on those values, is the same
 * on both sides, and the errors of one layer do not carry into the next), the same parameters,
 * and, backward, the same ReLU outputs and the gradient the CPU's own layer above produced.
 * Under bf16 the parameters and the input are drawn bf16-exact (the device's bf16 shadow then
 * equals them), and each gradient the layers read is rounded to bf16 before the CPU layer
 * reads it, as the device's layers read dy_op. Compared: every layer's output, every weight and
 * bias gradient, and the input gradient, within the precision's tolerances of tests_util.h (any
 * NaN or Inf failing). */
#include "conv_parity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cpu_backend_impl.h"
#include "tests_util.h"
}
#include "conv.h"
#include "cuda_test_util.h"
#include "layers.h"

#define MAX_STACK 4

/* One layer of a case: kind, output channels (features for linear), k, s, p, activation, and
 * the shape its input is seen as when that is not the previous output's (a linear layer's flat
 * output read as C x H x W; c = 0: none). */
typedef struct {
    cuvae_layer_kind kind;
    int out_c, k, s, p;
    cuvae_activation act;
    cuvae_shape reshape;
} layer_spec;

typedef struct {
    const char *name;
    cuvae_shape in;
    int B;
    int n;
    layer_spec layer[MAX_STACK];
    /* Outputs compared, not gradients: the 256x256 layers, whose weight gradients sum 2^15
     * products per value, where the two sides' summation orders alone differ by about fp32's
     * tolerance (the gradients are compared at every smaller size). */
    int forward_only;
} conv_case;

static const char *precision_name(cuvae_precision p)
{
    return p == CUVAE_PREC_BF16 ? "bf16" : p == CUVAE_PREC_TF32 ? "tf32" : "fp32";
}

/* The layers of a case laid out in one flat buffer as cuvae_model lays out a stack; returns the
 * parameter count. */
static size_t build_stack(const conv_case *c, cuvae_layer *layers)
{
    cuvae_status st;
    size_t at = 0;
    cuvae_shape in = c->in;
    for (int i = 0; i < c->n; i++) {
        const layer_spec *s = &c->layer[i];
        if (s->reshape.c) {
            REQUIRE(s->reshape.c * s->reshape.h * s->reshape.w == in.c * in.h * in.w);
            in = s->reshape;
        }
        REQUIRE_OK(
            cuvae_layer_make(&layers[i], s->kind, in, s->out_c, s->k, s->s, s->p, s->act, &st), st);
        layers[i].w = at;
        layers[i].b = at + layers[i].w_count;
        at = layers[i].b + layers[i].b_count;
        in = layers[i].out_shape;
    }
    return at;
}

static void maybe_round(int bf16, float *x, size_t n)
{
    if (bf16) round_bf16(x, n);
}

static void run_case(cuvae_cuda_ctx *ctx, const conv_case *c)
{
    cuvae_status st;
    char what[256];
    const int bf16 = ctx->precision == CUVAE_PREC_BF16;
    const cuvae_operand op = bf16 ? CUVAE_OPERAND_BF16 : CUVAE_OPERAND_F32;
    const double rtol = bf16                                ? CUVAE_BF16_RTOL
                        : ctx->precision == CUVAE_PREC_TF32 ? CUVAE_TF32_RTOL
                                                            : CUVAE_FP32_RTOL;
    const double atol = bf16                                ? CUVAE_BF16_ATOL
                        : ctx->precision == CUVAE_PREC_TF32 ? CUVAE_TF32_ATOL
                                                            : CUVAE_FP32_ATOL;
    const int B = c->B, n = c->n;
    cuvae_layer layers[MAX_STACK];
    size_t n_params = build_stack(c, layers);
    int widest = layers[0].in;
    for (int i = 0; i < n; i++) widest = layers[i].out > widest ? layers[i].out : widest;
    const size_t nx = (size_t)B * (size_t)layers[0].in, ny = (size_t)B * (size_t)layers[n - 1].out;
    const size_t nwide = (size_t)B * (size_t)widest;

    /* Parameters as the model draws them (uniform within 1/sqrt(fan_in)), input in [0, 1),
     * output gradient in +-0.005; bf16-exact under bf16. */
    float *params = host_floats(n_params), *x = host_floats(nx), *dy = host_floats(ny);
    for (int i = 0; i < n; i++) {
        float bound = 1.0f / sqrtf((float)layers[i].fan_in);
        fill_uniform(params + layers[i].w, layers[i].w_count, -bound, bound, 200 + 2 * (uint64_t)i);
        fill_uniform(params + layers[i].b, layers[i].b_count, -bound, bound, 201 + 2 * (uint64_t)i);
    }
    fill_uniform(x, nx, 0.0f, 1.0f, 210);
    fill_uniform(dy, ny, -0.005f, 0.005f, 211);
    maybe_round(bf16, params, n_params);
    maybe_round(bf16, x, nx);
    maybe_round(bf16, dy, ny);

    /* Device: operand copies under bf16, hidden outputs in the operand type, the last in fp32. */
    float *d_params = (float *)dev_from(params, n_params * 4);
    float *d_grads = (float *)dev_alloc(n_params * 4);
    void *d_params16 = bf16 ? (void *)dev_bf16_from(params, n_params, n_params) : NULL;
    void *d_x = bf16 ? (void *)dev_bf16_from(x, nx, nx) : dev_from(x, nx * 4);
    void *d_dy16 = bf16 ? (void *)dev_bf16_from(dy, ny, nwide) : NULL;
    float *d_dy = (float *)dev_alloc(nwide * 4);
    to_dev(d_dy, dy, ny * 4);
    size_t scratch_n = cuvae_stack_scratch_floats(layers, n, B, op);
    if (scratch_n < nwide) scratch_n = nwide;
    float *d_scratch = (float *)dev_alloc(scratch_n * 4);
    void *d_act[MAX_STACK];
    cuvae_relu_mask masks[MAX_STACK];
    memset(masks, 0, sizeof masks);
    for (int i = 0; i < n; i++) {
        size_t size = i + 1 < n ? cuvae_operand_size(op) : 4;
        d_act[i] = dev_alloc((size_t)B * (size_t)layers[i].out * size);
        if (layers[i].act == CUVAE_ACT_RELU)
            masks[i].bits = dev_alloc(cuvae_relu_mask_bytes(B, layers[i].out));
    }
    REQUIRE_OK(cuvae_stack_forward(ctx, op, layers, n, d_params, d_params16, d_x, B, d_act,
                                   d_scratch, masks, ctx->stream, &st),
               st);
    float *d_dx = NULL;
    REQUIRE_OK(cuvae_stack_backward(ctx, op, layers, n, d_params, d_params16, d_grads, d_x, B,
                                    d_act, masks, d_dy, d_dy16, d_scratch, 1, &d_dx, ctx->stream,
                                    &st),
               st);
    REQUIRE(d_dx == d_dy || d_dx == d_scratch);

    /* The device's outputs, as floats. */
    float *act[MAX_STACK];
    for (int i = 0; i < n; i++) {
        size_t m = (size_t)B * (size_t)layers[i].out;
        act[i] = host_floats(m);
        if (bf16 && i + 1 < n)
            to_host_bf16(ctx, act[i], (const cuvae_bf16 *)d_act[i], m);
        else
            to_host(ctx, act[i], d_act[i], m * 4);
    }
    float *got_grads = host_floats(n_params), *got_dx = host_floats(nx);
    to_host(ctx, got_grads, d_grads, n_params * 4);
    to_host(ctx, got_dx, d_dx, nx * 4);

    /* CPU: each layer on the device's input to it. */
    size_t cpu_scratch_n = 1;
    for (int i = 0; i < n; i++) {
        const cpu_layer_ops *ops = cuvae_cpu_layer_ops(layers[i].kind);
        REQUIRE(ops);
        size_t s = ops->scratch(&layers[i], B);
        if (s > cpu_scratch_n) cpu_scratch_n = s;
    }
    float *scratch = host_floats(cpu_scratch_n), *ref = host_floats(nwide);
    float *grads = host_floats(n_params), *cur = host_floats(nwide), *next = host_floats(nwide);
    const char *prec = precision_name(ctx->precision);
    for (int i = 0; i < n; i++) {
        const cuvae_layer *l = &layers[i];
        cuvae_cpu_layer_ops(l->kind)->forward(params, l, i > 0 ? act[i - 1] : x, B, scratch, ref);
        snprintf(what, sizeof what, "%s %s: layer %d (%s) output", prec, c->name, i,
                 cuvae_layer_kind_name(l->kind));
        cuvae_check_close(what, act[i], ref, (size_t)B * (size_t)l->out, rtol, atol);
    }
    memcpy(cur, dy, ny * 4);
    for (int i = n - 1; i >= 0; i--) {
        const cuvae_layer *l = &layers[i];
        const float *in = i > 0 ? act[i - 1] : x;
        const float *relu_in = i > 0 && layers[i - 1].act == CUVAE_ACT_RELU ? act[i - 1] : NULL;
        maybe_round(bf16, cur, (size_t)B * (size_t)l->out); /* what the device's layer reads */
        double sq = 0.0;
        cuvae_cpu_layer_ops(l->kind)->backward(params, grads, l, in, cur, B, scratch, next, relu_in,
                                               &sq);
        float *t = cur;
        cur = next;
        next = t;
    }
    for (int i = 0; i < n && !c->forward_only; i++) {
        const cuvae_layer *l = &layers[i];
        snprintf(what, sizeof what, "%s %s: layer %d (%s) weight gradient", prec, c->name, i,
                 cuvae_layer_kind_name(l->kind));
        cuvae_check_close(what, got_grads + l->w, grads + l->w, l->w_count, rtol, atol);
        snprintf(what, sizeof what, "%s %s: layer %d (%s) bias gradient", prec, c->name, i,
                 cuvae_layer_kind_name(l->kind));
        cuvae_check_close(what, got_grads + l->b, grads + l->b, l->b_count, rtol, atol);
    }
    snprintf(what, sizeof what, "%s %s: input gradient", prec, c->name);
    if (!c->forward_only) cuvae_check_close(what, got_dx, cur, nx, rtol, atol);

    for (int i = 0; i < n; i++) {
        cudaFree(d_act[i]);
        cudaFree(masks[i].bits);
        free(act[i]);
    }
    void *devs[] = {d_params, d_grads, d_params16, d_x, d_dy16, d_dy, d_scratch};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) cudaFree(devs[i]);
    float *hosts[] = {params, x, dy, got_grads, got_dx, scratch, ref, grads, cur, next};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) free(hosts[i]);
}

#define CONV CUVAE_LAYER_CONV2D
#define CONVT CUVAE_LAYER_CONV_TRANSPOSE2D
#define LIN CUVAE_LAYER_LINEAR
#define RELU CUVAE_ACT_RELU
#define NONE CUVAE_ACT_NONE

/* conv2d: Fashion-MNIST's first layer; odd non-square sizes; a stride-2 layer whose last row and
 * column no window reaches (their input gradient must be 0); 64x64 colour; an encoder-like
 * stack (conv, conv, linear: a linear layer on a conv's ReLU output); a conv on a conv's ReLU
 * output whose weights sit at an offset of 30 floats (not 16-byte aligned in fp32 or bf16);
 * 256x256 colour. */
static const conv_case CONV2D_CASES[] = {
    {"conv 1x28x28 -> 4, k4 s2 p1, relu", {1, 28, 28}, 3, 1, {{CONV, 4, 4, 2, 1, RELU, {0, 0, 0}}}},
    {"conv 3x13x11 -> 5, k3 s1 p0", {3, 13, 11}, 5, 1, {{CONV, 5, 3, 1, 0, NONE, {0, 0, 0}}}},
    {"conv 1x8x8 -> 3, k3 s2 p0 (uncovered edge)",
     {1, 8, 8},
     4,
     1,
     {{CONV, 3, 3, 2, 0, NONE, {0, 0, 0}}}},
    {"conv 3x9x7 -> 2, k3 s1 p1, relu", {3, 9, 7}, 3, 1, {{CONV, 2, 3, 1, 1, RELU, {0, 0, 0}}}},
    {"conv 3x64x64 -> 8, k4 s2 p1, relu", {3, 64, 64}, 2, 1, {{CONV, 8, 4, 2, 1, RELU, {0, 0, 0}}}},
    {"stack conv 1x28x28 -> 8 (relu) -> 16 (relu) -> linear 10",
     {1, 28, 28},
     5,
     3,
     {{CONV, 8, 4, 2, 1, RELU, {0, 0, 0}},
      {CONV, 16, 4, 2, 1, RELU, {0, 0, 0}},
      {LIN, 10, 0, 0, 0, NONE, {0, 0, 0}}}},
    {"stack conv 1x12x12 -> 3 (relu) -> 5, the second's weights unaligned",
     {1, 12, 12},
     3,
     2,
     {{CONV, 3, 3, 1, 1, RELU, {0, 0, 0}}, {CONV, 5, 3, 2, 1, NONE, {0, 0, 0}}}},
    {"conv 3x256x256 -> 8, k4 s2 p1",
     {3, 256, 256},
     2,
     1,
     {{CONV, 8, 4, 2, 1, NONE, {0, 0, 0}}},
     1},
};

/* conv_transpose2d: the conv2d cases' mirrors, a decoder-like stack (linear with ReLU reshaped to
 * 16x7x7, then two transposed convs: the linear layer's bias gradient comes from the conv's
 * backward), two transposed convs with the second's weights at an offset of 57 floats, and a
 * 128x128 -> 256x256 colour output. */
static const conv_case CONVT_CASES[] = {
    {"convt 4x7x7 -> 1, k4 s2 p1", {4, 7, 7}, 3, 1, {{CONVT, 1, 4, 2, 1, NONE, {0, 0, 0}}}},
    {"convt 3x5x6 -> 3, k3 s1 p0, relu", {3, 5, 6}, 5, 1, {{CONVT, 3, 3, 1, 0, RELU, {0, 0, 0}}}},
    {"convt 2x4x4 -> 1, k3 s2 p1 (odd output)",
     {2, 4, 4},
     4,
     1,
     {{CONVT, 1, 3, 2, 1, NONE, {0, 0, 0}}}},
    {"convt 3x9x9 -> 2, k3 s1 p1", {3, 9, 9}, 3, 1, {{CONVT, 2, 3, 1, 1, NONE, {0, 0, 0}}}},
    {"convt 8x32x32 -> 3, k4 s2 p1, relu",
     {8, 32, 32},
     2,
     1,
     {{CONVT, 3, 4, 2, 1, RELU, {0, 0, 0}}}},
    {"stack linear 6 -> 16x7x7 (relu) -> convt 8 (relu) -> convt 1",
     {6, 1, 1},
     5,
     3,
     {{LIN, 16 * 7 * 7, 0, 0, 0, RELU, {0, 0, 0}},
      {CONVT, 8, 4, 2, 1, RELU, {16, 7, 7}},
      {CONVT, 1, 4, 2, 1, NONE, {0, 0, 0}}}},
    {"stack convt 2x5x5 -> 3 (relu) -> 2, the second's weights unaligned",
     {2, 5, 5},
     3,
     2,
     {{CONVT, 3, 3, 1, 0, RELU, {0, 0, 0}}, {CONVT, 2, 4, 2, 1, NONE, {0, 0, 0}}}},
    {"convt 8x128x128 -> 3, k4 s2 p1",
     {8, 128, 128},
     2,
     1,
     {{CONVT, 3, 4, 2, 1, NONE, {0, 0, 0}}},
     1},
};

/* Runs the cases of a kind and prints the algorithms cuDNN's heuristics gave (conv.cu's plans). */
static void run_cases(cuvae_cuda_ctx *ctx, cuvae_layer_kind kind)
{
    const conv_case *cases = kind == CONV ? CONV2D_CASES : CONVT_CASES;
    size_t n = kind == CONV ? sizeof CONV2D_CASES / sizeof CONV2D_CASES[0]
                            : sizeof CONVT_CASES / sizeof CONVT_CASES[0];
    for (size_t i = 0; i < n; i++) run_case(ctx, &cases[i]);
    static char plans[16384];
    cuvae_conv_plans_describe(ctx, plans, sizeof plans);
    printf("%s %s:\n%s", precision_name(ctx->precision), cuvae_layer_kind_name(kind), plans);
}

void conv_parity_kind(cuvae_cuda_ctx *ctx, cuvae_layer_kind kind)
{
    cuvae_status st;
    run_cases(ctx, kind);
    const cuvae_precision others[] = {CUVAE_PREC_TF32, CUVAE_PREC_BF16};
    for (int i = 0; i < 2; i++) {
        cuvae_cuda_ctx other;
        REQUIRE_OK(cuvae_cuda_ctx_init(&other, others[i], CUVAE_PARITY_SEED, &st), st);
        run_cases(&other, kind);
        if (other.conv_nondeterministic)
            printf("%s %s: %d conv plans without a deterministic algorithm\n",
                   precision_name(others[i]), cuvae_layer_kind_name(kind),
                   other.conv_nondeterministic);
        cuvae_cuda_ctx_release(&other);
    }
    if (ctx->conv_nondeterministic)
        printf("fp32 %s: %d conv plans without a deterministic algorithm\n",
               cuvae_layer_kind_name(kind), ctx->conv_nondeterministic);
}
