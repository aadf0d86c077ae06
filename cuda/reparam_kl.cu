/* Reparameterization and KL, fused (see reparam_kl.h). Every output is written ("="):
 * z, eps (when drawn), kl, kl_floored and denc.
 *
 * Per example b and dimension d, with mu = enc[b, d], lv = enc[b, L + d]:
 *   z     = mu + exp(0.5 lv) * eps
 *   KL_bd = 0.5 (mu^2 + exp(lv) - 1 - lv)
 *   d z / d mu = 1,  d z / d lv = 0.5 exp(0.5 lv) eps
 *   d KL_bd / d mu = mu,  d KL_bd / d lv = 0.5 (exp(lv) - 1)
 * The forward runs one warp per example (lanes over d, a butterfly sum in double: the same order on
 * every run); the backward is elementwise. */
#include "reparam_kl.h"

#include "device_util.cuh"
#include "twin_math.h"

#define REPARAM_WARPS 4 /* examples per block of the forward */
#define REPARAM_THREADS 256

/* DRAW: eps comes from Philox and is written to eps; otherwise it is read from eps. */
template <bool DRAW>
static __global__ void reparam_kl_forward_kernel(const float *enc, float *eps, int B, int L,
                                                 float free_bits, uint64_t seed,
                                                 const uint64_t *d_step, float *z, double *kl,
                                                 double *kl_floored)
{
    int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32);
    int b = blockIdx.x * REPARAM_WARPS + warp;
    if (b >= B) return; /* whole warps leave together: the shuffles below see full warps */
    uint64_t step = DRAW ? *d_step : 0;
    const float *mu = enc + (size_t)b * 2 * (size_t)L;
    const float *lv = mu + L;
    double sum = 0.0, sum_floored = 0.0;
    for (int d = lane; d < L; d += 32) {
        size_t e = (size_t)b * (size_t)L + (size_t)d;
        float noise;
        if (DRAW) {
            noise = cuvae_dev_normal(seed, CUVAE_STREAM_REPARAM, step, e);
            eps[e] = noise;
        } else {
            noise = eps[e];
        }
        float m = mu[d], v = lv[d];
        z[e] = cuvae_reparam_z(m, v, noise);
        float kl_d = cuvae_kl_term(m, v);
        sum += (double)kl_d;
        sum_floored += (double)cuvae_kl_floored(kl_d, free_bits);
    }
    sum = cuvae_dev_warp_sum(sum);
    sum_floored = cuvae_dev_warp_sum(sum_floored);
    if (lane == 0) {
        kl[b] = sum;
        if (kl_floored) kl_floored[b] = sum_floored;
    }
}

static __global__ void reparam_kl_backward_kernel(const float *enc, const float *eps,
                                                  const float *dz, int B, int L,
                                                  const float *d_beta, float free_bits, float *denc)
{
    float kl_scale = *d_beta / (float)B;
    size_t total = (size_t)B * (size_t)L;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t b = e / (size_t)L, d = e % (size_t)L;
        size_t im = b * 2 * (size_t)L + d, iv = im + (size_t)L;
        float m = enc[im], v = enc[iv];
        float g = dz[e];
        float sigma = cuvae_reparam_sigma(v);
        bool pass = !cuvae_free_bits_binds(cuvae_kl_term(m, v), free_bits);
        denc[im] = g + (pass ? kl_scale * m : 0.0f);
        denc[iv] = g * cuvae_reparam_dz_dlogvar(sigma, eps[e]) +
                   (pass ? kl_scale * cuvae_kl_dlogvar(v) : 0.0f);
    }
}

static int check_args(const char *what, const float *enc, int B, int L, cuvae_status *st)
{
    if (B < 1 || L < 1) return cuvae_fail(st, "%s: B=%d L=%d: expected positive sizes", what, B, L);
    if (!enc) return cuvae_fail(st, "%s: a NULL buffer", what);
    return 0;
}

int cuvae_reparam_kl_forward(cuvae_cuda_ctx *ctx, const float *enc, int B, int L, float free_bits,
                             const uint64_t *d_step, float *eps, float *z, double *kl,
                             double *kl_floored, cudaStream_t stream, cuvae_status *st)
{
    if (check_args("reparam_kl forward", enc, B, L, st)) return -1;
    if (!d_step || !eps || !z || !kl) return cuvae_fail(st, "reparam_kl forward: a NULL buffer");
    int blocks = (B + REPARAM_WARPS - 1) / REPARAM_WARPS;
    reparam_kl_forward_kernel<true><<<blocks, REPARAM_WARPS * 32, 0, stream>>>(
        enc, eps, B, L, free_bits, ctx->seed, d_step, z, kl, kl_floored);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_reparam_kl_forward_eps(cuvae_cuda_ctx *ctx, const float *enc, const float *eps, int B,
                                 int L, float free_bits, float *z, double *kl, double *kl_floored,
                                 cudaStream_t stream, cuvae_status *st)
{
    if (check_args("reparam_kl forward", enc, B, L, st)) return -1;
    if (!eps || !z || !kl) return cuvae_fail(st, "reparam_kl forward: a NULL buffer");
    int blocks = (B + REPARAM_WARPS - 1) / REPARAM_WARPS;
    /* The kernel only reads eps in this instantiation. */
    reparam_kl_forward_kernel<false><<<blocks, REPARAM_WARPS * 32, 0, stream>>>(
        enc, (float *)eps, B, L, free_bits, ctx->seed, NULL, z, kl, kl_floored);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_reparam_kl_backward(cuvae_cuda_ctx *ctx, const float *enc, const float *eps,
                              const float *dz, int B, int L, const float *d_beta, float free_bits,
                              float *denc, cudaStream_t stream, cuvae_status *st)
{
    (void)ctx;
    if (check_args("reparam_kl backward", enc, B, L, st)) return -1;
    if (!eps || !dz || !d_beta || !denc)
        return cuvae_fail(st, "reparam_kl backward: a NULL buffer");
    size_t total = (size_t)B * (size_t)L;
    reparam_kl_backward_kernel<<<cuvae_grid_for(total, REPARAM_THREADS), REPARAM_THREADS, 0,
                                 stream>>>(enc, eps, dz, B, L, d_beta, free_bits, denc);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}
