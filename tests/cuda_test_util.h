/* Helpers of the CUDA parity tests (gpu_parity.cu, gpu_parity_bf16.cu): seeded host data on
 * fixed-point grids, device copies that end with a device-wide synchronization, bf16 rounding as
 * __float2bfloat16_rn does it, and the tolerance check for doubles. Setup failures end the test. */
#ifndef CUVAE_CUDA_TEST_UTIL_H
#define CUVAE_CUDA_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_common.h"
#include "layers.h"

#define CUVAE_PARITY_SEED 0x5eed1234abcdULL

/* Setup failures (allocation, copies) end the test: nothing after them would mean anything. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: setup failed: %s\n", __FILE__, __LINE__, #cond);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define REQUIRE_OK(call, st)                                                                       \
    do {                                                                                           \
        if ((call) != 0) {                                                                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, (st).msg);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Uniform in [lo, hi) from a test-local Philox stream. */
void fill_uniform(float *x, size_t n, float lo, float hi, uint64_t counter);

/* The same, rounded to multiples of 2^-bits; fill_odd_multiples: odd multiples of 2^-bits.
 * The MLP test draws its weights, biases and inputs so that every product and partial sum of the
 * two hidden layers' GEMMs is a float computed exactly, whatever order cuBLASLt sums in, and no
 * hidden pre-activation is exactly 0 (the odd bias term): GPU and CPU then agree on every ReLU
 * decision. With unrounded values a pre-activation within rounding of zero takes the ReLU on one
 * side only, and its gradient fails by its full size. */
void fill_quantized(float *x, size_t n, float lo, float hi, int bits, uint64_t counter);

void fill_odd_multiples(float *x, size_t n, float lo, float hi, int bits, uint64_t counter);

/* Copies to the device made outside the context's stream: the launchers run on a non-blocking
 * stream, which does not wait for the legacy default stream, so every such copy (and memset)
 * ends with a device-wide synchronization. */
void to_dev(void *dev, const void *host, size_t bytes);

void *dev_alloc(size_t bytes);

void *dev_from(const void *host, size_t bytes);

/* Waits for the context's stream and copies a device buffer back. */
void to_host(cuvae_cuda_ctx *ctx, void *host, const void *dev, size_t bytes);

float *host_floats(size_t n);

/* The bits of bf16(x), rounded to nearest even as __float2bfloat16_rn: adding 0x7fff plus the
 * lowest kept bit carries into the kept half exactly when the dropped half is above the tie, or
 * at the tie with an odd kept half; a carry out of the mantissa steps the exponent, up to
 * infinity. Not for NaN (the device gives some NaN; the tests check only that). */
uint16_t bf16_bits(float x);

float bf16_value(uint16_t b);

void round_bf16(float *x, size_t n);

/* A device bf16 copy of x [n] (converted on the host). */
cuvae_bf16 *dev_bf16_from(const float *x, size_t n, size_t room);

/* A device bf16 buffer [n] back on the host as floats. */
void to_host_bf16(cuvae_cuda_ctx *ctx, float *out, const cuvae_bf16 *dev, size_t n);

/* Doubles compared through the same tolerance rule (as floats: the values are sums of a few
 * hundred terms, well inside float's range and precision for these tolerances). */
int check_close_d(const char *what, const double *got, const double *ref, size_t n);

/* The three-layer MLP of the linear-layer tests, sizes[0] -> sizes[1] (ReLU) -> sizes[2] (ReLU)
 * -> sizes[3], laid out in a flat buffer as cuvae_model lays out a half: fills layers, sets
 * *widest to the widest size, returns the parameter count. */
size_t mlp3_layout(const int sizes[4], cuvae_layer layers[3], int *widest);

/* Checks an MLP test's weight and bias gradients (d_grads [n_params] against grads) and input
 * gradient (d_dx [nx] against dx) within rtol/atol, labelled "<tag>: layer i ...". got is host
 * scratch of at least max(n_params, nx) floats. */
void check_mlp3_gradients(cuvae_cuda_ctx *ctx, const char *tag, const cuvae_layer layers[3],
                          size_t n_params, const float *d_grads, const float *grads,
                          const float *d_dx, const float *dx, size_t nx, float *got, double rtol,
                          double atol);

#endif
