/* Parity of the bf16 linear layers (linear.h, layers.h) with the fp32 C twins on bf16-rounded
 * operands, within the bf16 tolerances (|gpu - cpu| <= CUVAE_BF16_ATOL + CUVAE_BF16_RTOL |cpu|, any
 * NaN or Inf failing), under a bf16 context as the training step runs them, fused epilogues on and
 * off; and, exactly, the bf16 conversion and the optimizer's bf16 shadow of the parameters. Skipped
 * (77) without a usable CUDA device. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "tests_util.h"
}
#include "backend.h"
#include "cpu_ops.h"
#include "cuda_common.h"
#include "cuda_test_util.h"
#include "linear.h"
#include "layers.h"
#include "optimizer.h"
#include "philox.h"

/* The stack loops in bf16 (cuvae_stack_forward, cuvae_stack_backward) on the three-layer MLP of
 * test_mlp, against the C twins on bf16-rounded operands: weights, hidden biases and x rounded
 * to bf16 on the host (the last layer's bias stays fp32, as the last layer reads it), each hidden
 * output rounded to bf16 after the fp32 layer, the output gradient and each hidden layer's
 * masked input gradient rounded before the GEMMs that read them; the hidden layers' bias
 * gradients are the sums of the fp32 masked gradients, as both GPU paths take them.
 *
 * The draws keep every ReLU decision the same on both sides (test_mlp's reasoning, with grids
 * bf16 can hold): x multiples of 2^-4 in [0, 1], weights multiples of 2^-8 (|k| < 256), layer 1's
 * bias odd multiples of 2^-13 below 2^-5, layer 2's odd multiples of 2^-22 below 2^-14. Layer
 * 1's dot products are multiples of 2^-12 and its pre-activations odd multiples of 2^-13, exact
 * in float in any summation order; rounded to bf16 they stay multiples of 2^-13, so layer 2's dot
 * products are multiples of 2^-21 and its pre-activations odd multiples of 2^-22, exact below 4.
 * None is 0, and bf16 rounding keeps the sign and never gives 0 there. The plain-GEMM fallback
 * adds the bias to the unrounded fp32 dot product, so it rounds the same value once too. */
static void test_mlp_bf16(cuvae_cuda_ctx *ctx, int B, const int sizes[4], int use_epilogues)
{
    cuvae_status st;
    char what[128];
    ctx->use_epilogues = use_epilogues;
    cuvae_layer layers[3];
    int widest = 0;
    size_t n_params = mlp3_layout(sizes, layers, &widest);
    float *params = host_floats(n_params), *grads = host_floats(n_params);
    for (int i = 0; i < 3; i++) {
        size_t nw = (size_t)layers[i].in * (size_t)layers[i].out;
        float bound = 1.0f / sqrtf((float)layers[i].in);
        fill_quantized(params + layers[i].w, nw, -bound, bound, 8, 50 + 2 * (uint64_t)i);
        round_bf16(params + layers[i].w, nw);
    }
    fill_odd_multiples(params + layers[0].b, (size_t)layers[0].out, -0.03f, 0.03f, 13, 51);
    fill_odd_multiples(params + layers[1].b, (size_t)layers[1].out, -5e-5f, 5e-5f, 22, 53);
    round_bf16(params + layers[0].b, (size_t)layers[0].out);
    round_bf16(params + layers[1].b, (size_t)layers[1].out);
    fill_uniform(params + layers[2].b, (size_t)layers[2].out, -0.1f, 0.1f, 55);
    size_t nx = (size_t)B * (size_t)sizes[0], ny = (size_t)B * (size_t)sizes[3];
    size_t nwide = (size_t)B * (size_t)widest;
    float *x = host_floats(nx), *dy = host_floats(ny);
    fill_quantized(x, nx, 0.0f, 1.0f, 4, 56);
    round_bf16(x, nx);
    fill_uniform(dy, ny, -0.01f, 0.01f, 57);

    /* CPU reference. */
    float *act[3], *dA = host_floats(nwide), *dB = host_floats(nwide), *db_hidden = NULL;
    const float *in = x;
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)B * (size_t)layers[i].out;
        act[i] = host_floats(n);
        cuvae_cpu_linear_forward(in, params + layers[i].w, params + layers[i].b, B, layers[i].in,
                                 layers[i].out, i < 2, act[i]);
        if (i < 2) round_bf16(act[i], n);
        in = act[i];
    }
    memcpy(dA, dy, ny * sizeof(float));
    round_bf16(dA, ny);
    float *cur = dA, *next = dB;
    for (int i = 2; i >= 0; i--) {
        const cuvae_layer *l = &layers[i];
        size_t n_in = (size_t)B * (size_t)l->in;
        cuvae_cpu_linear_backward(i > 0 ? act[i - 1] : x, params + l->w, cur, B, l->in, l->out,
                                  grads + l->w, grads + l->b, next);
        if (db_hidden) memcpy(grads + l->b, db_hidden, (size_t)l->out * sizeof(float));
        free(db_hidden);
        db_hidden = NULL;
        if (i > 0) {
            cuvae_cpu_relu_backward(act[i - 1], next, n_in);
            db_hidden = host_floats((size_t)l->in);
            for (int o = 0; o < l->in; o++) {
                double s = 0.0;
                for (int b = 0; b < B; b++) s += (double)next[(size_t)b * (size_t)l->in + o];
                db_hidden[o] = (float)s;
            }
            round_bf16(next, n_in);
        }
        float *t = cur;
        cur = next;
        next = t;
    }
    /* cur: the fp32 gradient with respect to x. */

    /* GPU. */
    float *d_params = (float *)dev_from(params, n_params * 4),
          *d_grads = (float *)dev_alloc(n_params * 4);
    cuvae_bf16 *d_params16 = dev_bf16_from(params, n_params, n_params);
    cuvae_bf16 *d_x16 = dev_bf16_from(x, nx, nx), *d_dy16 = dev_bf16_from(dy, ny, nwide);
    float *d_out = (float *)dev_alloc(ny * 4), *d_dy = (float *)dev_alloc(nwide * 4);
    float *d_scratch = (float *)dev_alloc(nwide * 4);
    to_dev(d_dy, dy, ny * 4);
    cuvae_bf16 *d_act16[2];
    cuvae_relu_mask masks[3];
    memset(masks, 0, sizeof masks);
    for (int i = 0; i < 2; i++) {
        d_act16[i] = (cuvae_bf16 *)dev_alloc((size_t)B * (size_t)layers[i].out * 2);
        masks[i].bits = dev_alloc(cuvae_relu_mask_bytes(B, layers[i].out));
    }
    float *d_dx = NULL;
    void *acts[3] = {d_act16[0], d_act16[1], d_out}; /* hidden bf16, the last fp32 */
    REQUIRE_OK(cuvae_stack_forward(ctx, CUVAE_OPERAND_BF16, layers, 3, d_params, d_params16, d_x16,
                                   B, acts, d_scratch, masks, ctx->stream, &st),
               st);
    REQUIRE_OK(cuvae_stack_backward(ctx, CUVAE_OPERAND_BF16, layers, 3, d_params, d_params16,
                                    d_grads, d_x16, B, acts, masks, d_dy, d_dy16, d_scratch, 1,
                                    &d_dx, ctx->stream, &st),
               st);
    REQUIRE(d_dx == d_dy || d_dx == d_scratch);
    printf("bf16 mlp %dx%d-%d-%d-%d, epilogues %s: ReLU masks from cuBLASLt: %s, %s\n", B, sizes[0],
           sizes[1], sizes[2], sizes[3], use_epilogues ? "on" : "off",
           masks[0].valid ? "yes" : "no", masks[1].valid ? "yes" : "no");

    float *got = host_floats(n_params > nwide ? n_params : nwide);
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)B * (size_t)layers[i].out;
        if (i < 2)
            to_host_bf16(ctx, got, d_act16[i], n);
        else
            to_host(ctx, got, d_out, n * 4);
        snprintf(what, sizeof what, "bf16 mlp B=%d epilogues %d: layer %d output", B, use_epilogues,
                 i);
        cuvae_check_close(what, got, act[i], n, CUVAE_BF16_RTOL, CUVAE_BF16_ATOL);
    }
    snprintf(what, sizeof what, "bf16 mlp B=%d epilogues %d", B, use_epilogues);
    check_mlp3_gradients(ctx, what, layers, n_params, d_grads, grads, d_dx, cur, nx, got,
                         CUVAE_BF16_RTOL, CUVAE_BF16_ATOL);

    for (int i = 0; i < 3; i++) free(act[i]);
    for (int i = 0; i < 2; i++) {
        cudaFree(d_act16[i]);
        cudaFree(masks[i].bits);
    }
    void *devs[] = {d_params, d_grads, d_params16, d_x16, d_dy16, d_out, d_dy, d_scratch};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) cudaFree(devs[i]);
    float *hosts[] = {params, grads, x, dy, dA, dB, got};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) free(hosts[i]);
    ctx->use_epilogues = 1;
}

/* cuvae_bf16_from_f32 against the host's round-to-nearest-even bits: random bit patterns (every
 * exponent, subnormals and NaNs included) and the edges: zeros, infinities, the largest floats
 * (which round to infinity), ties with an even and an odd kept half, either side of a tie. */
static void test_bf16_convert(cuvae_cuda_ctx *ctx)
{
    cuvae_status st;
    static const uint32_t edges[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0xff7fffffu, 0x7f7f7fffu,
        0x3f808000u, 0x3f818000u, 0xbf818000u, 0x3f807fffu, 0x3f808001u, 0x00000001u, 0x00008000u,
        0x00018000u, 0x007fffffu, 0x7fc00000u, 0xffc00001u, 0x7f800001u,
    };
    const size_t n_edges = sizeof edges / sizeof edges[0], n = 4099 + n_edges;
    uint32_t *bits = (uint32_t *)calloc(n, sizeof *bits);
    uint16_t *got = (uint16_t *)calloc(n, sizeof *got);
    REQUIRE(bits && got);
    for (size_t i = 0; i < n; i++)
        bits[i] = i < n_edges ? edges[i] : cuvae_philox_word(CUVAE_PARITY_SEED, 97, 0, (uint64_t)i);
    float *d_x = (float *)dev_from(bits, n * 4);
    cuvae_bf16 *d_y = (cuvae_bf16 *)dev_alloc(n * 2);
    REQUIRE_OK(cuvae_bf16_from_f32(d_x, d_y, n, ctx->stream, &st), st);
    to_host(ctx, got, d_y, n * 2);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float x;
        memcpy(&x, &bits[i], sizeof x);
        int ok = isnan(x) ? (got[i] & 0x7fffu) > 0x7f80u : got[i] == bf16_bits(x);
        if (!ok && bad++ < 5)
            fprintf(stderr, "bf16 of 0x%08x: got 0x%04x, expected 0x%04x\n", bits[i], got[i],
                    bf16_bits(x));
    }
    if (bad) fprintf(stderr, "bf16 conversion: %d of %zu differ\n", bad, n);
    CHECK(bad == 0);
    cudaFree(d_x);
    cudaFree(d_y);
    free(bits);
    free(got);
}

/* cuvae_adam_update_bf16: the same update as cuvae_adam_update, bit for bit, and the shadow
 * p16 == bf16(p) of the updated parameters. */
static void test_adam_bf16(cuvae_cuda_ctx *ctx)
{
    cuvae_status st;
    const size_t n = 1001;
    const float lr = 1e-3f, grad_scale = 0.5f;
    cuvae_adam_hparams h = {0.9f, 0.999f, 1e-8f, 0.01f, 1, 0.0f};
    float *p = host_floats(n), *g = host_floats(n), *m = host_floats(n), *v = host_floats(n);
    fill_uniform(p, n, -0.5f, 0.5f, 60);
    fill_uniform(g, n, -1e-2f, 1e-2f, 61);
    fill_uniform(m, n, -1e-3f, 1e-3f, 62);
    fill_uniform(v, n, 0.0f, 1e-5f, 63);
    float *d_p[2], *d_m[2], *d_v[2];
    for (int k = 0; k < 2; k++) {
        d_p[k] = (float *)dev_from(p, n * 4);
        d_m[k] = (float *)dev_from(m, n * 4);
        d_v[k] = (float *)dev_from(v, n * 4);
    }
    float *d_g = (float *)dev_from(g, n * 4);
    cuvae_bf16 *d_p16 = (cuvae_bf16 *)dev_alloc(n * 2);
    cuvae_adam_factors *d_f = (cuvae_adam_factors *)dev_alloc(sizeof(cuvae_adam_factors));
    REQUIRE_OK(cuvae_adam_update(ctx, &h, d_p[0], d_g, d_m[0], d_v[0], n, lr, 3, grad_scale, d_f,
                                 ctx->stream, &st),
               st);
    REQUIRE_OK(cuvae_adam_update_bf16(ctx, &h, d_p[1], d_p16, d_g, d_m[1], d_v[1], n, lr, 3,
                                      grad_scale, d_f, ctx->stream, &st),
               st);
    float *p32 = host_floats(n), *pb = host_floats(n);
    uint16_t *p16 = (uint16_t *)calloc(n, sizeof *p16);
    REQUIRE(p16);
    to_host(ctx, p32, d_p[0], n * 4);
    to_host(ctx, pb, d_p[1], n * 4);
    to_host(ctx, p16, d_p16, n * 2);
    CHECK(memcmp(p32, pb, n * 4) == 0);
    to_host(ctx, p32, d_v[0], n * 4);
    to_host(ctx, pb, d_v[1], n * 4);
    CHECK(memcmp(p32, pb, n * 4) == 0);
    to_host(ctx, pb, d_p[1], n * 4);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += p16[i] != bf16_bits(pb[i]);
    if (bad) fprintf(stderr, "adam bf16 shadow: %d of %zu differ from bf16(p)\n", bad, n);
    CHECK(bad == 0);
    void *devs[] = {d_p[0], d_p[1], d_m[0], d_m[1], d_v[0], d_v[1], d_g, d_p16, d_f};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) cudaFree(devs[i]);
    float *hosts[] = {p, g, m, v, p32, pb};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) free(hosts[i]);
    free(p16);
}

int main(void)
{
    char name[256];
    if (!cuvae_cuda_available(name, sizeof name)) {
        printf("gpu_parity_bf16: skipped: no usable CUDA device (%s)\n", name);
        return CUVAE_TEST_SKIP;
    }
    printf("gpu_parity_bf16: device %s\n", name);
    cuvae_status st;
    cuvae_cuda_ctx ctx;
    REQUIRE_OK(cuvae_cuda_ctx_init(&ctx, CUVAE_PREC_BF16, CUVAE_PARITY_SEED, &st), st);
    test_bf16_convert(&ctx);
    for (int epi = 1; epi >= 0; epi--) {
        const int odd[4] = {37, 29, 19, 11};
        const int mnist[4] = {784, 512, 256, 64};
        test_mlp_bf16(&ctx, 13, odd, epi);
        test_mlp_bf16(&ctx, 128, mnist, epi);
    }
    test_adam_bf16(&ctx);
    cuvae_cuda_ctx_release(&ctx);
    return cuvae_test_finish("gpu_parity_bf16");
}
