/* The scalar formulas that the CPU backend and the CUDA kernels must evaluate identically, written
 * once (ggml-common.h is the precedent): gcc compiles them as C11 `static inline` functions, nvcc
 * as
 * `__host__ __device__` ones. Each is the reference's float expression in the reference's order;
 * the CUDA build uses -fmad=false and the host build does not contract (C11 mode), so a formula
 * rounds the same on both sides wherever the library functions it calls (expf, logf, ...) do.
 *
 * Only what really is one formula lives here. Where the CPU computes a value differently on purpose
 * (its vectorizable exp/log1p polynomials in cpu_likelihood.c, its 32-bit rewrite of the Bernoulli
 * draw in cpu_ops.c, Philox through cuRAND on the device), the formula takes the differing piece as
 * an argument or the variant is tested against the one here. */
#ifndef CUVAE_TWIN_MATH_H
#define CUVAE_TWIN_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define CUVAE_TWIN static __host__ __device__ __forceinline__
#else
#define CUVAE_TWIN static inline
#endif

/* cond ? a : b with both already computed. In C a bitwise blend: GCC will not turn a conditional
 * float expression into a vector select under its default -ftrapping-math, but it vectorizes
 * integer blends. The value is the same either way. */
CUVAE_TWIN float cuvae_select_f(int cond, float a, float b)
{
#if defined(__CUDACC__)
    return cond ? a : b;
#else
    int32_t ia, ib, mask = -(int32_t)(cond != 0);
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    int32_t r = (ia & mask) | (ib & ~mask);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
#endif
}

/* ---- random draws (philox.h has the word layout) ------------------------------------------ */

/* Uniform in (0, 1): ((w >> 9) + 0.5) * 2^-23: 23 bits so that the top value plus one half is still
 * exact in float; never 0 or 1. */
CUVAE_TWIN float cuvae_u32_to_uniform(uint32_t w)
{
    return ((float)(w >> 9) + 0.5f) * (1.0f / 8388608.0f);
}

/* Box-Muller on a word pair (a, b): r = sqrtf(-2 logf(uniform(a))), theta = 2 pi uniform(b); the
 * even element of the pair is r cosf(theta), the odd one r sinf(theta). */
CUVAE_TWIN float cuvae_normal_radius(uint32_t a)
{
    return sqrtf(-2.0f * logf(cuvae_u32_to_uniform(a)));
}

CUVAE_TWIN float cuvae_normal_angle(uint32_t b)
{
    return 6.2831853071795864769f * cuvae_u32_to_uniform(b);
}

/* Bernoulli(byte / 255) from a word, exactly in integers: 1 iff w * 255 < byte * 2^32. */
CUVAE_TWIN uint8_t cuvae_bernoulli_byte(uint32_t w, uint8_t byte)
{
    return (uint64_t)w * 255u < ((uint64_t)byte << 32) ? 1 : 0;
}

/* A pixel scaled to [0, 1]: a correctly rounded division, not a multiply by 1/255. */
CUVAE_TWIN float cuvae_byte_to_unit(uint8_t byte)
{
    return (float)byte / 255.0f;
}

/* ---- reparameterization and KL ------------------------------------------------------------- */

/* sigma = exp(logvar / 2); z = mu + sigma * eps. */
CUVAE_TWIN float cuvae_reparam_sigma(float lv)
{
    return expf(0.5f * lv);
}

CUVAE_TWIN float cuvae_reparam_z(float mu, float lv, float eps)
{
    return mu + cuvae_reparam_sigma(lv) * eps;
}

/* dz/dlogvar = 0.5 sigma eps. */
CUVAE_TWIN float cuvae_reparam_dz_dlogvar(float sigma, float eps)
{
    return 0.5f * sigma * eps;
}

/* KL(N(mu, exp lv) || N(0, 1)) of one dimension in float, in this order:
 * ((mu*mu + exp(lv)) - 1) - lv, halved. Forward and backward both call it, so they agree on where
 * the free-bits floor binds. */
CUVAE_TWIN float cuvae_kl_term(float mu, float lv)
{
    return 0.5f * (mu * mu + expf(lv) - 1.0f - lv);
}

/* dKL/dlogvar = 0.5 (exp(lv) - 1); dKL/dmu = mu. */
CUVAE_TWIN float cuvae_kl_dlogvar(float lv)
{
    return 0.5f * (expf(lv) - 1.0f);
}

/* The free-bits floor binds (value free_bits, no gradient) only when free bits are on and the KL
 * is below them. free_bits <= 0 is "off": no floor at all (a floor at 0 would only cut rounding
 * noise). A NaN KL never binds, so it reaches the loss. */
CUVAE_TWIN int cuvae_free_bits_binds(float kl, float free_bits)
{
    return free_bits > 0.0f && kl < free_bits;
}

/* max(kl, free_bits) with the rule above. */
CUVAE_TWIN float cuvae_kl_floored(float kl, float free_bits)
{
    return cuvae_free_bits_binds(kl, free_bits) ? free_bits : kl;
}

/* ---- likelihoods --------------------------------------------------------------------------- */

/* Bernoulli on a logit l with target x: softplus(l) - x l = (max(l, 0) - x l) + log1p(e), where
 * e = exp(-|l|) and log1p_e = log1p(e) come from the caller (the CPU's polynomials, libm on the
 * device): finite for any finite logit. */
CUVAE_TWIN float cuvae_bernoulli_nll(float l, float x, float log1p_e)
{
    return (cuvae_select_f(l > 0.0f, l, 0.0f) - x * l) + log1p_e;
}

/* sigmoid(l) from the same e = exp(-|l|): 1 / (1 + e) for l >= 0, e / (1 + e) below. */
CUVAE_TWIN float cuvae_sigmoid_from_e(float l, float e)
{
    return cuvae_select_f(l >= 0.0f, 1.0f, e) / (1.0f + e);
}

/* Gaussian with mean m: 0.5 ((x - m) / sigma)^2 per pixel (the constant log sigma + 0.5 log 2 pi
 * is added once per row); its gradient (m - x) / var, var = sigma * sigma. */
CUVAE_TWIN float cuvae_gaussian_nll(float m, float x, float sigma)
{
    float r = (x - m) / sigma;
    return 0.5f * (r * r);
}

CUVAE_TWIN float cuvae_gaussian_grad(float m, float x, float var)
{
    return (m - x) / var;
}

#endif
