/* Helpers of the CUDA parity tests (see cuda_test_util.h). */
#include "cuda_test_util.h"

#include <math.h>
#include <string.h>

extern "C" {
#include "tests_util.h"
}
#include "philox.h"

/* Uniform in [lo, hi) from a test-local Philox stream. */
void fill_uniform(float *x, size_t n, float lo, float hi, uint64_t counter)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) *
                        cuvae_u32_to_uniform(cuvae_philox_word(CUVAE_PARITY_SEED, 99, counter, i));
}

/* The same, rounded to multiples of 2^-bits; fill_odd_multiples: odd multiples of 2^-bits.
 * The MLP test draws its weights, biases and inputs so that every product and partial sum of the
 * two hidden layers' GEMMs is a float computed exactly, whatever order cuBLASLt sums in, and no
 * hidden pre-activation is exactly 0 (the odd bias term): GPU and CPU then agree on every ReLU
 * decision. With unrounded values a pre-activation within rounding of zero takes the ReLU on one
 * side only, and its gradient fails by its full size. */
void fill_quantized(float *x, size_t n, float lo, float hi, int bits, uint64_t counter)
{
    fill_uniform(x, n, lo, hi, counter);
    for (size_t i = 0; i < n; i++) x[i] = ldexpf(rintf(ldexpf(x[i], bits)), -bits);
}

void fill_odd_multiples(float *x, size_t n, float lo, float hi, int bits, uint64_t counter)
{
    fill_uniform(x, n, lo, hi, counter);
    for (size_t i = 0; i < n; i++)
        x[i] = ldexpf(2.0f * rintf(ldexpf(x[i], bits - 1)) + 1.0f, -bits);
}

/* Copies to the device made outside the context's stream: the launchers run on a non-blocking
 * stream, which does not wait for the legacy default stream, so every such copy (and memset)
 * ends with a device-wide synchronization. */
void to_dev(void *dev, const void *host, size_t bytes)
{
    REQUIRE(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    REQUIRE(cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess);
    REQUIRE(cudaMemset(p, 0, bytes ? bytes : 1) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    return p;
}

void *dev_from(const void *host, size_t bytes)
{
    void *p = dev_alloc(bytes);
    to_dev(p, host, bytes);
    return p;
}

/* Waits for the context's stream and copies a device buffer back. */
void to_host(cuvae_cuda_ctx *ctx, void *host, const void *dev, size_t bytes)
{
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) fprintf(stderr, "device failure: %s\n", cudaGetErrorString(e));
    REQUIRE(e == cudaSuccess);
    REQUIRE(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
}

float *host_floats(size_t n)
{
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    REQUIRE(p);
    return p;
}

/* The bits of bf16(x), rounded to nearest even as __float2bfloat16_rn: adding 0x7fff plus the
 * lowest kept bit carries into the kept half exactly when the dropped half is above the tie, or
 * at the tie with an odd kept half; a carry out of the mantissa steps the exponent, up to
 * infinity. Not for NaN (the device gives some NaN; the tests check only that). */
uint16_t bf16_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float bf16_value(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

void round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = bf16_value(bf16_bits(x[i]));
}

/* A device bf16 copy of x [n] (converted on the host). */
cuvae_bf16 *dev_bf16_from(const float *x, size_t n, size_t room)
{
    uint16_t *h = (uint16_t *)calloc(room ? room : 1, sizeof *h);
    REQUIRE(h);
    for (size_t i = 0; i < n; i++) h[i] = bf16_bits(x[i]);
    cuvae_bf16 *d = (cuvae_bf16 *)dev_from(h, room * sizeof *h);
    free(h);
    return d;
}

/* A device bf16 buffer [n] back on the host as floats. */
void to_host_bf16(cuvae_cuda_ctx *ctx, float *out, const cuvae_bf16 *dev, size_t n)
{
    uint16_t *h = (uint16_t *)calloc(n ? n : 1, sizeof *h);
    REQUIRE(h);
    to_host(ctx, h, dev, n * sizeof *h);
    for (size_t i = 0; i < n; i++) out[i] = bf16_value(h[i]);
    free(h);
}

/* Doubles compared through the same tolerance rule (as floats: the values are sums of a few
 * hundred terms, well inside float's range and precision for these tolerances). */
int check_close_d(const char *what, const double *got, const double *ref, size_t n)
{
    float *g = host_floats(n), *r = host_floats(n);
    for (size_t i = 0; i < n; i++) {
        g[i] = (float)got[i];
        r[i] = (float)ref[i];
    }
    int bad = cuvae_check_close(what, g, r, n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    free(g);
    free(r);
    return bad;
}

size_t mlp3_layout(const int sizes[4], cuvae_layer layers[3], int *widest)
{
    size_t n_params = 0;
    for (int i = 0; i < 3; i++) {
        size_t w_count = (size_t)sizes[i] * (size_t)sizes[i + 1];
        layers[i] = (cuvae_layer){.kind = CUVAE_LAYER_LINEAR,
                                  .in_shape = {sizes[i], 1, 1},
                                  .out_shape = {sizes[i + 1], 1, 1},
                                  .in = sizes[i],
                                  .out = sizes[i + 1],
                                  .act = i < 2 ? CUVAE_ACT_RELU : CUVAE_ACT_NONE,
                                  .fan_in = sizes[i],
                                  .macs = (double)w_count,
                                  .w = n_params,
                                  .b = n_params + w_count,
                                  .w_ndim = 2,
                                  .w_shape = {sizes[i + 1], sizes[i]},
                                  .w_count = w_count,
                                  .b_count = (size_t)sizes[i + 1]};
        n_params = layers[i].b + (size_t)sizes[i + 1];
    }
    *widest = 0;
    for (int i = 0; i < 4; i++) *widest = sizes[i] > *widest ? sizes[i] : *widest;
    return n_params;
}

void check_mlp3_gradients(cuvae_cuda_ctx *ctx, const char *tag, const cuvae_layer layers[3],
                          size_t n_params, const float *d_grads, const float *grads,
                          const float *d_dx, const float *dx, size_t nx, float *got, double rtol,
                          double atol)
{
    char what[160];
    to_host(ctx, got, d_grads, n_params * 4);
    for (int i = 0; i < 3; i++) {
        const cuvae_layer *l = &layers[i];
        snprintf(what, sizeof what, "%s: layer %d weight gradient", tag, i);
        cuvae_check_close(what, got + l->w, grads + l->w, (size_t)l->in * (size_t)l->out, rtol,
                          atol);
        snprintf(what, sizeof what, "%s: layer %d bias gradient", tag, i);
        cuvae_check_close(what, got + l->b, grads + l->b, (size_t)l->out, rtol, atol);
    }
    to_host(ctx, got, d_dx, nx * 4);
    snprintf(what, sizeof what, "%s: input gradient", tag);
    cuvae_check_close(what, got, dx, nx, rtol, atol);
}
