/* Parity of every CUDA launcher with its C twin (host/cpu/cpu_ops.h), op by op from the table of
 * op_table.h (parity_<op> below; a failure names its op; `gpu_parity OP...` runs only those): the
 * same inputs on both sides,
 * the reparameterization noise generated once on the host, and the project's fp32 tolerances
 * (|gpu - cpu| <= CUVAE_FP32_ATOL + CUVAE_FP32_RTOL |cpu|, any NaN or Inf failing). Exact where the
 * computation is integer or a single rounding: Philox words, the gather (scaling and dynamic
 * binarization). The MLP layers run twice, with cuBLASLt's fused epilogues and without (plain
 * GEMMs plus kernels), and both must match. The bf16 layers: gpu_parity_bf16.cu. The conv
 * layers (conv_parity.cu) run in fp32, tf32 and bf16 from their rows. Skipped (77) without a
 * usable CUDA device; without cuDNN in the build, the conv rows check that the backend refuses a
 * conv model with a message naming cuDNN. */
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
#include "conv.h"
#include "conv_parity.h"
#include "cuda_test_util.h"
#include "gather.h"
#include "likelihood.h"
#include "linear.h"
#include "op_table.h"
#include "optimizer.h"
#include "philox.h"
#include "random.h"
#include "reparam_kl.h"

/* ---- random numbers -------------------------------------------------------------------------- */

static void parity_philox_words(cuvae_cuda_ctx *ctx)
{
    cuvae_status st;
    /* A counter past 32 bits and an unaligned first element exercise every field of the layout. */
    const uint64_t counter = 0x1234567890abULL, first = 7;
    const size_t n = 1001;
    const uint32_t streams[] = {CUVAE_STREAM_BINARIZE, CUVAE_STREAM_REPARAM, CUVAE_STREAM_EVAL};
    uint32_t *d = (uint32_t *)dev_alloc(n * sizeof(uint32_t));
    uint32_t *got = (uint32_t *)calloc(n, sizeof(uint32_t));
    REQUIRE(got);
    for (size_t s = 0; s < sizeof streams / sizeof streams[0]; s++) {
        REQUIRE_OK(
            cuvae_philox_words_forward(ctx, streams[s], counter, first, n, d, ctx->stream, &st),
            st);
        to_host(ctx, got, d, n * sizeof(uint32_t));
        int bad = 0;
        for (size_t i = 0; i < n; i++)
            if (got[i] != cuvae_philox_word(CUVAE_PARITY_SEED, streams[s], counter, first + i))
                bad++;
        if (bad) fprintf(stderr, "philox words, stream %u: %d of %zu differ\n", streams[s], bad, n);
        CHECK(bad == 0);
    }
    cudaFree(d);
    free(got);
}

static void parity_normal_noise(cuvae_cuda_ctx *ctx)
{
    cuvae_status st;
    const uint64_t counter = 0xfedcba98765ULL, first = 3; /* odd first: starts mid-pair */
    const size_t n = 4099;
    uint64_t *d_counter = (uint64_t *)dev_from(&counter, sizeof counter);
    float *d = (float *)dev_alloc(n * sizeof(float));
    float *got = host_floats(n), *ref = host_floats(n);
    REQUIRE_OK(cuvae_normal_fill_forward(ctx, CUVAE_STREAM_REPARAM, d_counter, first, n, d,
                                         ctx->stream, &st),
               st);
    to_host(ctx, got, d, n * sizeof(float));
    cuvae_normal_fill(CUVAE_PARITY_SEED, CUVAE_STREAM_REPARAM, counter, first, ref, n);
    cuvae_check_close("normals", got, ref, n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    cudaFree(d);
    cudaFree(d_counter);
    free(got);
    free(ref);
}

/* ---- gather ---------------------------------------------------------------------------------- */

static void test_gather(cuvae_cuda_ctx *ctx, int dynamic)
{
    cuvae_status st;
    /* d = 29 and 13 rows: Philox blocks straddle row ends; repeated indices too. */
    const int n_rows = 37, d = 29, batch = 13;
    const uint64_t step = 0x10000000005ULL;
    uint8_t pixels[37 * 29];
    for (int i = 0; i < n_rows * d; i++)
        pixels[i] = (uint8_t)(cuvae_philox_word(CUVAE_PARITY_SEED, 98, 0, (uint64_t)i) & 0xff);
    pixels[0] = 0;
    pixels[1] = 255;
    int32_t idx[13] = {3, 0, 36, 5, 5, 17, 1, 2, 30, 36, 11, 0, 9};
    uint8_t *d_pix = (uint8_t *)dev_from(pixels, sizeof pixels);
    int32_t *d_idx = (int32_t *)dev_from(idx, sizeof idx);
    uint64_t *d_step = (uint64_t *)dev_from(&step, sizeof step);
    float *d_x = (float *)dev_alloc(sizeof(float) * batch * d);
    float *got = host_floats((size_t)batch * d), *ref = host_floats((size_t)batch * d);
    REQUIRE_OK(cuvae_gather_forward(ctx, d_pix, n_rows, d, d_idx, batch, dynamic, d_step, d_x,
                                    ctx->stream, &st),
               st);
    to_host(ctx, got, d_x, sizeof(float) * batch * d);
    cuvae_cpu_gather(pixels, d, idx, batch, dynamic, CUVAE_PARITY_SEED, step, ref);
    int differ = memcmp(got, ref, sizeof(float) * batch * d) != 0;
    if (differ) fprintf(stderr, "gather (dynamic = %d) is not bit-exact\n", dynamic);
    CHECK(!differ);
    cudaFree(d_pix);
    cudaFree(d_idx);
    cudaFree(d_step);
    cudaFree(d_x);
    free(got);
    free(ref);
}

static void parity_gather_scale(cuvae_cuda_ctx *ctx)
{
    test_gather(ctx, 0);
}

static void parity_gather_binarize(cuvae_cuda_ctx *ctx)
{
    test_gather(ctx, 1);
}

/* ---- linear layers --------------------------------------------------------------------------- */

/* A three-layer MLP, in -> h1 (ReLU) -> h2 (ReLU) -> out, in a flat parameter buffer laid out as
 * cuvae_model lays out its stacks: the CUDA backend's stack loops in fp32 (cuvae_stack_forward and
 * cuvae_stack_backward, which chain the bias gradients and the ReLU masks between layers) against
 * the C twins composed as the CPU backend composes them. */
static void test_mlp(cuvae_cuda_ctx *ctx, int B, const int sizes[4], int use_epilogues)
{
    cuvae_status st;
    char what[128];
    ctx->use_epilogues = use_epilogues;
    cuvae_layer layers[3];
    int widest = 0;
    size_t n_params = mlp3_layout(sizes, layers, &widest);
    float *params = host_floats(n_params), *grads = host_floats(n_params);
    for (int i = 0; i < 3; i++) {
        float bound = 1.0f / sqrtf((float)layers[i].in);
        fill_quantized(params + layers[i].w, (size_t)layers[i].in * (size_t)layers[i].out, -bound,
                       bound, 8, 2 + 2 * (uint64_t)i);
        fill_odd_multiples(params + layers[i].b, (size_t)layers[i].out, -0.1f, 0.1f,
                           i == 0 ? 13 : 22, 3 + 2 * (uint64_t)i);
    }
    size_t nx = (size_t)B * (size_t)sizes[0], ny = (size_t)B * (size_t)sizes[3];
    size_t nwide = (size_t)B * (size_t)widest;
    float *x = host_floats(nx), *dy = host_floats(ny);
    /* x: multiples of 2^-4, weights of 2^-8, biases odd multiples of 2^-13 (layer 1) and 2^-22
     * (layer 2): layer 1's pre-activations are odd multiples of 2^-13 (magnitudes about 1.4 at
     * most, exact below 2^11), layer 2's odd multiples of 2^-22 (about 0.6 at most, exact below
     * 4); a numpy model of these draws gave the same bits for every summation order. */
    fill_quantized(x, nx, 0.0f, 1.0f, 4, 1);
    fill_uniform(dy, ny, -0.01f, 0.01f, 9);

    /* CPU reference: the forward, then the backward as cpu_backend.c's mlp_backward runs it. */
    float *act[3], *dA = host_floats(nwide), *dB = host_floats(nwide);
    const float *in = x;
    for (int i = 0; i < 3; i++) {
        act[i] = host_floats((size_t)B * (size_t)layers[i].out);
        cuvae_cpu_linear_forward(in, params + layers[i].w, params + layers[i].b, B, layers[i].in,
                                 layers[i].out, i < 2, act[i]);
        in = act[i];
    }
    memcpy(dA, dy, ny * sizeof(float));
    float *cur = dA, *next = dB;
    for (int i = 2; i >= 0; i--) {
        const cuvae_layer *l = &layers[i];
        cuvae_cpu_linear_backward(i > 0 ? act[i - 1] : x, params + l->w, cur, B, l->in, l->out,
                                  grads + l->w, grads + l->b, next);
        if (i > 0) cuvae_cpu_relu_backward(act[i - 1], next, (size_t)B * (size_t)l->in);
        float *t = cur;
        cur = next;
        next = t;
    }
    /* cur: the gradient with respect to x. */

    /* GPU. */
    float *d_params = (float *)dev_from(params, n_params * 4);
    float *d_grads = (float *)dev_alloc(n_params * 4), *d_x = (float *)dev_from(x, nx * 4);
    float *d_dy = (float *)dev_alloc(nwide * 4), *d_scratch = (float *)dev_alloc(nwide * 4);
    to_dev(d_dy, dy, ny * 4);
    float *d_act[3];
    cuvae_relu_mask masks[3];
    memset(masks, 0, sizeof masks);
    for (int i = 0; i < 3; i++) {
        d_act[i] = (float *)dev_alloc((size_t)B * (size_t)layers[i].out * 4);
        if (i < 2) masks[i].bits = dev_alloc(cuvae_relu_mask_bytes(B, layers[i].out));
    }
    float *d_dx = NULL;
    void *const *acts = (void *const *)d_act;
    REQUIRE_OK(cuvae_stack_forward(ctx, CUVAE_OPERAND_F32, layers, 3, d_params, NULL, d_x, B, acts,
                                   NULL, masks, ctx->stream, &st),
               st);
    REQUIRE_OK(cuvae_stack_backward(ctx, CUVAE_OPERAND_F32, layers, 3, d_params, NULL, d_grads, d_x,
                                    B, acts, masks, d_dy, NULL, d_scratch, 1, &d_dx, ctx->stream,
                                    &st),
               st);
    REQUIRE(d_dx == d_dy || d_dx == d_scratch);
    printf("mlp %dx%d-%d-%d-%d, epilogues %s: ReLU masks from cuBLASLt: %s, %s\n", B, sizes[0],
           sizes[1], sizes[2], sizes[3], use_epilogues ? "on" : "off",
           masks[0].valid ? "yes" : "no", masks[1].valid ? "yes" : "no");

    float *got = host_floats(n_params > nwide ? n_params : nwide);
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)B * (size_t)layers[i].out;
        to_host(ctx, got, d_act[i], n * 4);
        snprintf(what, sizeof what, "mlp B=%d epilogues %d: layer %d output", B, use_epilogues, i);
        cuvae_check_close(what, got, act[i], n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    }
    snprintf(what, sizeof what, "mlp B=%d epilogues %d", B, use_epilogues);
    check_mlp3_gradients(ctx, what, layers, n_params, d_grads, grads, d_dx, cur, nx, got,
                         CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);

    for (int i = 0; i < 3; i++) {
        cudaFree(d_act[i]);
        cudaFree(masks[i].bits);
        free(act[i]);
    }
    void *devs[] = {d_params, d_grads, d_x, d_dy, d_scratch};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) cudaFree(devs[i]);
    float *hosts[] = {params, grads, x, dy, dA, dB, got};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) free(hosts[i]);
    ctx->use_epilogues = 1;
}

/* Hidden layers with ReLU and an output layer without, through cuBLASLt's fused epilogues and
 * through plain GEMMs plus kernels. */
static void parity_linear(cuvae_cuda_ctx *ctx)
{
    for (int epi = 1; epi >= 0; epi--) {
        const int odd[4] = {37, 29, 19, 11};      /* odd sizes: rows of odd byte lengths */
        const int mnist[4] = {784, 512, 256, 64}; /* the default model's encoder, 2L = 64 */
        test_mlp(ctx, 13, odd, epi);
        test_mlp(ctx, 128, mnist, epi);
    }
}

/* ---- conv layers (conv_parity.cu) ----------------------------------------------------------- */

/* A build without cuDNN: creating the backend for a model with this kind fails, naming cuDNN. */
static void check_conv_refused(cuvae_layer_kind kind)
{
    cuvae_status st;
    cuvae_model m;
    memset(&m, 0, sizeof m);
    m.x_shape = (cuvae_shape){1, 8, 8};
    m.x_dim = 64;
    m.latent = 2;
    REQUIRE_OK(cuvae_layer_make(&m.enc.layer[0], CUVAE_LAYER_LINEAR, m.x_shape, 4, 0, 0, 0,
                                CUVAE_ACT_NONE, &st),
               st);
    m.enc.n = 1;
    cuvae_shape z = {2, 1, 1};
    REQUIRE_OK(
        cuvae_layer_make(&m.dec.layer[0], CUVAE_LAYER_LINEAR, z, 16, 0, 0, 0, CUVAE_ACT_RELU, &st),
        st);
    cuvae_shape h = {1, 4, 4};
    REQUIRE_OK(cuvae_layer_make(&m.dec.layer[1], kind, h, 1, 4, 2, 1, CUVAE_ACT_NONE, &st), st);
    m.dec.n = 2;
    cuvae_config c;
    memset(&c, 0, sizeof c);
    cuvae_backend_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.model = &m;
    spec.config = &c;
    cuvae_backend *be = cuvae_cuda_backend_create(&spec, &st);
    CHECK(be == NULL);
    if (be)
        be->ops->destroy(be);
    else
        CHECK_MSG(st.msg, "cuDNN");
}

static void parity_conv(cuvae_cuda_ctx *ctx, cuvae_layer_kind kind)
{
    if (!cuvae_conv_built()) {
        printf("%s: built without cuDNN: only the refusal is checked\n",
               cuvae_layer_kind_name(kind));
        return;
    }
    conv_parity_kind(ctx, kind);
}

static void parity_conv2d(cuvae_cuda_ctx *ctx)
{
    parity_conv(ctx, CUVAE_LAYER_CONV2D);
}

static void parity_conv_transpose2d(cuvae_cuda_ctx *ctx)
{
    parity_conv(ctx, CUVAE_LAYER_CONV_TRANSPOSE2D);
}

/* ---- reparameterization and KL --------------------------------------------------------------- */

static void test_reparam_kl(cuvae_cuda_ctx *ctx, float free_bits)
{
    cuvae_status st;
    char what[96];
    const int B = 13, L = 37; /* L > 32: a lane handles two dimensions */
    const float beta = 0.7f;
    const uint64_t step = 41;
    size_t ne = (size_t)B * 2 * L, nz = (size_t)B * L;
    float *enc = host_floats(ne), *eps = host_floats(nz), *dz = host_floats(nz);
    for (int b = 0; b < B; b++) {
        fill_uniform(enc + (size_t)b * 2 * L, (size_t)L, -2.0f, 2.0f, 10 + (uint64_t)b);
        fill_uniform(enc + (size_t)b * 2 * L + L, (size_t)L, -3.0f, 2.0f, 40 + (uint64_t)b);
    }
    /* A few KL terms near the floor, so that it binds on some dimensions and not on others. */
    enc[0] = 0.0f;
    enc[L] = 0.0f;
    enc[1] = 0.9f;
    enc[L + 1] = 0.1f;
    cuvae_normal_fill(CUVAE_PARITY_SEED, CUVAE_STREAM_REPARAM, step, 0, eps, nz);
    fill_uniform(dz, nz, -0.05f, 0.05f, 7);

    float *z = host_floats(nz), *denc = host_floats(ne);
    double kl[13], klf[13];
    cuvae_cpu_reparam_kl_forward(enc, eps, B, L, free_bits, z, kl, klf);
    cuvae_cpu_reparam_kl_backward(enc, eps, dz, B, L, beta / (float)B, free_bits, denc);

    float *d_enc = (float *)dev_from(enc, ne * 4), *d_eps = (float *)dev_from(eps, nz * 4),
          *d_dz = (float *)dev_from(dz, nz * 4), *d_beta = (float *)dev_from(&beta, 4);
    uint64_t *d_step = (uint64_t *)dev_from(&step, sizeof step);
    float *d_z = (float *)dev_alloc(nz * 4), *d_denc = (float *)dev_alloc(ne * 4),
          *d_eps_drawn = (float *)dev_alloc(nz * 4);
    double *d_kl = (double *)dev_alloc(B * 8), *d_klf = (double *)dev_alloc(B * 8);
    float *got = host_floats(ne);
    double got_kl[13], got_klf[13];

    /* Host noise. */
    REQUIRE_OK(cuvae_reparam_kl_forward_eps(ctx, d_enc, d_eps, B, L, free_bits, d_z, d_kl, d_klf,
                                            ctx->stream, &st),
               st);
    to_host(ctx, got, d_z, nz * 4);
    snprintf(what, sizeof what, "reparam z (free bits %g)", (double)free_bits);
    cuvae_check_close(what, got, z, nz, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    to_host(ctx, got_kl, d_kl, sizeof got_kl);
    to_host(ctx, got_klf, d_klf, sizeof got_klf);
    snprintf(what, sizeof what, "kl (free bits %g)", (double)free_bits);
    check_close_d(what, got_kl, kl, (size_t)B);
    snprintf(what, sizeof what, "kl floored (free bits %g)", (double)free_bits);
    check_close_d(what, got_klf, klf, (size_t)B);

    REQUIRE_OK(cuvae_reparam_kl_backward(ctx, d_enc, d_eps, d_dz, B, L, d_beta, free_bits, d_denc,
                                         ctx->stream, &st),
               st);
    to_host(ctx, got, d_denc, ne * 4);
    snprintf(what, sizeof what, "reparam backward denc (free bits %g)", (double)free_bits);
    cuvae_check_close(what, got, denc, ne, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);

    /* Noise drawn in the kernel from the device step: the same noise, so the same z. */
    REQUIRE_OK(cuvae_reparam_kl_forward(ctx, d_enc, B, L, free_bits, d_step, d_eps_drawn, d_z, d_kl,
                                        d_klf, ctx->stream, &st),
               st);
    to_host(ctx, got, d_eps_drawn, nz * 4);
    cuvae_check_close("reparam drawn eps", got, eps, nz, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    to_host(ctx, got, d_z, nz * 4);
    cuvae_check_close("reparam z from drawn eps", got, z, nz, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);

    void *devs[] = {d_enc, d_eps, d_dz, d_beta, d_step, d_z, d_denc, d_eps_drawn, d_kl, d_klf};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) cudaFree(devs[i]);
    free(enc);
    free(eps);
    free(dz);
    free(z);
    free(denc);
    free(got);
}

static void parity_reparam_kl(cuvae_cuda_ctx *ctx)
{
    test_reparam_kl(ctx, 0.0f);
    test_reparam_kl(ctx, 0.5f);
}

/* ---- likelihoods and the batch reduction ----------------------------------------------------- */

static void test_likelihood(cuvae_cuda_ctx *ctx, cuvae_likelihood lik)
{
    cuvae_status st;
    char what[96];
    const int B = 13, D = 787; /* D not a multiple of the block */
    const float sigma = 0.5f, grad_scale = 1.0f / (float)B;
    const char *kind = lik == CUVAE_LIK_BERNOULLI ? "bernoulli" : "gaussian";
    size_t n = (size_t)B * D;
    float *out = host_floats(n), *x = host_floats(n), *dout = host_floats(n), *got = host_floats(n);
    fill_uniform(out, n, -8.0f, 8.0f, 20);
    fill_uniform(x, n, 0.0f, 1.0f, 21);
    for (size_t i = 0; i < n; i += 3) x[i] = x[i] < 0.5f ? 0.0f : 1.0f; /* binary and fractional */
    double nll[13], got_nll[13];
    cuvae_cpu_likelihood(out, x, B, D, lik, sigma, grad_scale, nll, dout);

    float *d_out = (float *)dev_from(out, n * 4), *d_x = (float *)dev_from(x, n * 4),
          *d_dout = (float *)dev_alloc(n * 4);
    double *d_nll = (double *)dev_alloc(B * 8);
    REQUIRE_OK(cuvae_likelihood_forward(ctx, d_out, d_x, B, D, 1, lik, sigma, grad_scale, d_nll,
                                        d_dout, ctx->stream, &st),
               st);
    to_host(ctx, got_nll, d_nll, sizeof got_nll);
    to_host(ctx, got, d_dout, n * 4);
    snprintf(what, sizeof what, "%s nll", kind);
    check_close_d(what, got_nll, nll, (size_t)B);
    snprintf(what, sizeof what, "%s gradient", kind);
    cuvae_check_close(what, got, dout, n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);

    /* Rows sharing a target (evaluation's K samples of one example): rows 3i..3i+2 against x row
     * i; the CPU twin sees the target repeated. */
    const int rep = 3, rows = 12;
    float *xr = host_floats((size_t)rows * D);
    for (int r = 0; r < rows; r++)
        memcpy(xr + (size_t)r * D, x + (size_t)(r / rep) * D, 4 * (size_t)D);
    double nll_rep[12], got_rep[12];
    cuvae_cpu_likelihood(out, xr, rows, D, lik, sigma, 0.0f, nll_rep, NULL);
    REQUIRE_OK(cuvae_likelihood_forward(ctx, d_out, d_x, rows, D, rep, lik, sigma, 0.0f, d_nll,
                                        NULL, ctx->stream, &st),
               st);
    to_host(ctx, got_rep, d_nll, sizeof got_rep);
    snprintf(what, sizeof what, "%s nll with shared targets", kind);
    check_close_d(what, got_rep, nll_rep, (size_t)rows);

    /* The batch reduction into the device state, with the CPU backend's loss formula. */
    double kl[13], klf[13];
    for (int b = 0; b < B; b++) {
        kl[b] = 3.0 + 0.5 * b;
        klf[b] = kl[b] + 0.25;
    }
    const float beta = 0.3f;
    double *d_kl = (double *)dev_from(kl, sizeof kl), *d_klf = (double *)dev_from(klf, sizeof klf);
    float *d_beta = (float *)dev_from(&beta, 4);
    REQUIRE_OK(cuvae_likelihood_forward(ctx, d_out, d_x, B, D, 1, lik, sigma, grad_scale, d_nll,
                                        d_dout, ctx->stream, &st),
               st);
    REQUIRE_OK(cuvae_batch_metrics_forward(ctx, d_nll, d_kl, d_klf, B, d_beta, ctx->d_state,
                                           ctx->stream, &st),
               st);
    cuvae_device_state s;
    to_host(ctx, &s, ctx->d_state, sizeof s);
    double ref[3] = {0, 0, 0}, got3[3] = {s.batch_loss, s.batch_rec, s.batch_kl};
    for (int b = 0; b < B; b++) {
        ref[0] += nll[b] + (double)beta * klf[b];
        ref[1] += nll[b];
        ref[2] += kl[b];
    }
    snprintf(what, sizeof what, "%s batch loss, rec, kl", kind);
    check_close_d(what, got3, ref, 3);
    CHECK(s.nonfinite == 0);

    void *devs[] = {d_out, d_x, d_dout, d_nll, d_kl, d_klf, d_beta};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) cudaFree(devs[i]);
    free(out);
    free(x);
    free(xr);
    free(dout);
    free(got);
}

static void parity_likelihood_bernoulli(cuvae_cuda_ctx *ctx)
{
    test_likelihood(ctx, CUVAE_LIK_BERNOULLI);
}

static void parity_likelihood_gaussian(cuvae_cuda_ctx *ctx)
{
    test_likelihood(ctx, CUVAE_LIK_GAUSSIAN);
}

/* ---- optimizer ------------------------------------------------------------------------------- */

static void parity_sum_squares(cuvae_cuda_ctx *ctx)
{
    cuvae_status st;
    const size_t n = 100003;
    float *g = host_floats(n);
    fill_uniform(g, n, -1e-2f, 1e-2f, 30);
    float *d_g = (float *)dev_from(g, n * 4);
    double *d_out = (double *)dev_alloc(8), got = 0, ref = cuvae_cpu_sum_squares(g, n);
    REQUIRE_OK(cuvae_sum_squares_forward(ctx, d_g, n, d_out, ctx->stream, &st), st);
    to_host(ctx, &got, d_out, 8);
    check_close_d("sum of squares", &got, &ref, 1);
    cudaFree(d_g);
    cudaFree(d_out);
    free(g);
}

static void test_adam(cuvae_cuda_ctx *ctx, int decoupled, float wd)
{
    cuvae_status st;
    char what[96];
    const size_t n = 1001;
    const float lr = 1e-3f, grad_scale = 0.5f;
    const uint64_t t = 5;
    cuvae_adam_hparams h = {0.9f, 0.999f, 1e-8f, wd, decoupled, 0.0f};
    float *p = host_floats(n), *g = host_floats(n), *m = host_floats(n), *v = host_floats(n);
    fill_uniform(p, n, -0.5f, 0.5f, 31);
    fill_uniform(g, n, -1e-2f, 1e-2f, 32);
    fill_uniform(m, n, -1e-3f, 1e-3f, 33);
    fill_uniform(v, n, 0.0f, 1e-5f, 34);
    g[0] = 0.0f;  /* a zero gradient: m and v decay, p moves only by its momentum */
    g[1] = 1e30f; /* v would overflow: both sides keep element 1 as it was */
    const float p1 = p[1], m1 = m[1], v1 = v[1];
    float *d_p = (float *)dev_from(p, n * 4), *d_g = (float *)dev_from(g, n * 4),
          *d_m = (float *)dev_from(m, n * 4), *d_v = (float *)dev_from(v, n * 4);
    cuvae_adam_factors *d_f = (cuvae_adam_factors *)dev_alloc(sizeof(cuvae_adam_factors));
    CHECK(cuvae_cpu_adam(p, g, m, v, n, lr, h.beta1, h.beta2, h.eps, wd, decoupled, t,
                         grad_scale) == 1);
    CHECK(p[1] == p1 && m[1] == m1 && v[1] == v1);
    REQUIRE_OK(
        cuvae_adam_update(ctx, &h, d_p, d_g, d_m, d_v, n, lr, t, grad_scale, d_f, ctx->stream, &st),
        st);
    float *got = host_floats(n);
    struct {
        const char *name;
        float *dev, *ref;
    } outs[] = {{"p", d_p, p}, {"m", d_m, m}, {"v", d_v, v}};
    for (int i = 0; i < 3; i++) {
        to_host(ctx, got, outs[i].dev, n * 4);
        snprintf(what, sizeof what, "%s (wd %g) %s", decoupled ? "adamw" : "adam", (double)wd,
                 outs[i].name);
        cuvae_check_close(what, got, outs[i].ref, n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    }
    void *devs[] = {d_p, d_g, d_m, d_v, d_f};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) cudaFree(devs[i]);
    free(p);
    free(g);
    free(m);
    free(v);
    free(got);
}

static void parity_adam(cuvae_cuda_ctx *ctx)
{
    test_adam(ctx, 0, 0.0f);
    test_adam(ctx, 0, 0.01f);
}

static void parity_adamw(cuvae_cuda_ctx *ctx)
{
    test_adam(ctx, 1, 0.01f);
}

/* The end of a step on the device: clipping, the count, the metrics, and the withheld update of a
 * non-finite step. */
static void parity_optimizer_step(cuvae_cuda_ctx *ctx)
{
    cuvae_status st;
    const size_t n = 5003;
    const int B = 4;
    cuvae_adam_hparams h = {0.9f, 0.999f, 1e-8f, 0.0f, 0, 0.05f}; /* clip binds */
    float *p = host_floats(n), *g = host_floats(n), *m = host_floats(n), *v = host_floats(n);
    fill_uniform(p, n, -0.5f, 0.5f, 35);
    fill_uniform(g, n, -1e-2f, 1e-2f, 36);
    float *d_p = (float *)dev_from(p, n * 4), *d_g = (float *)dev_from(g, n * 4),
          *d_m = (float *)dev_from(m, n * 4), *d_v = (float *)dev_from(v, n * 4);
    double nll[4] = {100.0, 110.0, 90.0, 95.0}, kl[4] = {5, 6, 7, 8};
    double *d_nll = (double *)dev_from(nll, sizeof nll), *d_kl = (double *)dev_from(kl, sizeof kl);
    cuvae_step_scalars sc = {7, 1e-3f, 1.0f};
    to_dev(ctx->d_step, &sc, sizeof sc);

    /* A finite step: the CPU backend's arithmetic. */
    REQUIRE_OK(cuvae_batch_metrics_forward(ctx, d_nll, d_kl, d_kl, B, &ctx->d_step->beta,
                                           ctx->d_state, ctx->stream, &st),
               st);
    REQUIRE_OK(cuvae_optimizer_step(ctx, &h, d_p, d_g, d_m, d_v, n, B, ctx->d_step, ctx->d_state,
                                    ctx->stream, &st),
               st);
    double norm = sqrt(cuvae_cpu_sum_squares(g, n));
    double f = (double)h.grad_clip / (norm + 1e-6);
    float clip = f < 1.0 ? (float)f : 1.0f;
    CHECK(clip < 1.0f);
    cuvae_cpu_adam(p, g, m, v, n, sc.lr, h.beta1, h.beta2, h.eps, h.weight_decay, 0, 1, clip);
    float *got = host_floats(n);
    to_host(ctx, got, d_p, n * 4);
    cuvae_check_close("optimizer step p (clipped)", got, p, n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    to_host(ctx, got, d_m, n * 4);
    cuvae_check_close("optimizer step m (clipped)", got, m, n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    cuvae_device_state s;
    to_host(ctx, &s, ctx->d_state, sizeof s);
    CHECK(s.adam_t == 1);
    CHECK(s.steps == 1 && s.examples == B && s.skipped == 0 && s.first_nonfinite_step == -1);
    double ref_sums[3] = {0, 0, 0}, got_sums[3] = {s.loss, s.rec, s.grad_norm_sum};
    for (int b = 0; b < B; b++) {
        ref_sums[0] += nll[b] + kl[b];
        ref_sums[1] += nll[b];
    }
    ref_sums[2] = norm;
    check_close_d("optimizer step metrics", got_sums, ref_sums, 3);

    /* A non-finite loss: nothing moves, the skip is counted and the step recorded. */
    nll[2] = NAN;
    to_dev(d_nll, nll, sizeof nll);
    sc.step = 8;
    to_dev(ctx->d_step, &sc, sizeof sc);
    float *before = host_floats(n);
    to_host(ctx, before, d_p, n * 4);
    REQUIRE_OK(cuvae_batch_metrics_forward(ctx, d_nll, d_kl, d_kl, B, &ctx->d_step->beta,
                                           ctx->d_state, ctx->stream, &st),
               st);
    REQUIRE_OK(cuvae_optimizer_step(ctx, &h, d_p, d_g, d_m, d_v, n, B, ctx->d_step, ctx->d_state,
                                    ctx->stream, &st),
               st);
    to_host(ctx, got, d_p, n * 4);
    CHECK(memcmp(got, before, n * 4) == 0);
    to_host(ctx, &s, ctx->d_state, sizeof s);
    CHECK(s.adam_t == 1);
    CHECK(s.steps == 1 && s.skipped == 1 && s.first_nonfinite_step == 8);

    void *devs[] = {d_p, d_g, d_m, d_v, d_nll, d_kl};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) cudaFree(devs[i]);
    free(p);
    free(g);
    free(m);
    free(v);
    free(got);
    free(before);
}

/* The table's rows, each calling parity_<op> with the context. */
template <void (*PARITY)(cuvae_cuda_ctx *)> static void with_ctx(void *ctx)
{
    PARITY((cuvae_cuda_ctx *)ctx);
}

int main(int argc, char **argv)
{
    char name[256];
    if (!cuvae_conv_built()) {
        /* Checked before looking for a device: the refusal comes first, GPU or not. */
        check_conv_refused(CUVAE_LAYER_CONV2D);
        check_conv_refused(CUVAE_LAYER_CONV_TRANSPOSE2D);
        printf("gpu_parity: built without cuDNN: conv models refused, naming cuDNN\n");
    }
    if (!cuvae_cuda_available(name, sizeof name)) {
        if (cuvae_test_failures) return cuvae_test_finish("gpu_parity");
        printf("gpu_parity: skipped: no usable CUDA device (%s)\n", name);
        return CUVAE_TEST_SKIP;
    }
    printf("gpu_parity: device %s\n", name);
    cuvae_status st;
    cuvae_cuda_ctx ctx;

    REQUIRE_OK(cuvae_cuda_ctx_init(&ctx, CUVAE_PREC_FP32, CUVAE_PARITY_SEED, &st), st);
#define PARITY_ROW(op, grad) {#op, with_ctx<parity_##op>},
    static const cuvae_op_test ops[] = {CUVAE_TEST_OPS(PARITY_ROW)};
    cuvae_run_op_tests("gpu_parity", ops, sizeof ops / sizeof ops[0], &ctx, argc, argv);
    cuvae_cuda_ctx_release(&ctx);

    return cuvae_test_finish("gpu_parity");
}
