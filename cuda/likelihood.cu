/* Likelihoods and the batch reduction (see likelihood.h). Every output is written ("="):
 * nll, dout and the device state's batch_* and nonfinite fields.
 *
 * Per pixel, with o the decoder output and t the target:
 *   Bernoulli (o = logit):  softplus(o) - t o,            d/do = sigmoid(o) - t
 *   Gaussian  (o = mean):   0.5 ((t - o) / sigma)^2 + log sigma + 0.5 log(2 pi),
 *                                                          d/do = (o - t) / sigma^2
 * softplus(o) = max(o, 0) + log1p(exp(-|o|)) and the sigmoid's two-sided form keep every term
 * finite for any finite logit. The per-pixel formulas are host/common/twin_math.h's, the CPU twin's
 * own; here with libm's expf and log1pf. */
#include "likelihood.h"

#include "device_util.cuh"
#include "twin_math.h"

#define LIK_THREADS 256
#define METRICS_THREADS 256

template <int LIK>
static __global__ void likelihood_kernel(const float *out, const float *x, int D, int x_rep,
                                         float sigma, float grad_scale, double *nll, float *dout)
{
    __shared__ double shared[LIK_THREADS];
    size_t r = blockIdx.x;
    const float *o = out + r * (size_t)D;
    const float *t = x + (r / (size_t)x_rep) * (size_t)D;
    float *g = dout ? dout + r * (size_t)D : NULL;
    double sum = 0.0;
    for (int p = (int)threadIdx.x; p < D; p += LIK_THREADS) {
        float l = o[p], target = t[p], term, grad;
        if (LIK == CUVAE_LIK_BERNOULLI) {
            float e = expf(-fabsf(l));
            term = cuvae_bernoulli_nll(l, target, log1pf(e));
            grad = cuvae_sigmoid_from_e(l, e) - target;
        } else {
            term = cuvae_gaussian_nll(l, target, sigma);
            grad = cuvae_gaussian_grad(l, target, sigma * sigma);
        }
        sum += (double)term;
        if (g) g[p] = grad_scale * grad;
    }
    sum = cuvae_dev_block_sum<LIK_THREADS>(sum, shared);
    if (threadIdx.x == 0) {
        if (LIK == CUVAE_LIK_GAUSSIAN)
            sum += (double)D * (log((double)sigma) + 0.5 * log(2.0 * 3.14159265358979323846));
        nll[r] = sum;
    }
}

static __global__ void batch_metrics_kernel(const double *nll, const double *kl,
                                            const double *kl_floored, int B, const float *d_beta,
                                            cuvae_device_state *state)
{
    __shared__ double shared[METRICS_THREADS];
    double beta = (double)*d_beta;
    double rec = 0.0, k = 0.0, loss = 0.0;
    for (int b = (int)threadIdx.x; b < B; b += METRICS_THREADS) {
        rec += nll[b];
        k += kl[b];
        loss += nll[b] + beta * kl_floored[b];
    }
    rec = cuvae_dev_block_sum<METRICS_THREADS>(rec, shared);
    k = cuvae_dev_block_sum<METRICS_THREADS>(k, shared);
    loss = cuvae_dev_block_sum<METRICS_THREADS>(loss, shared);
    if (threadIdx.x == 0) {
        state->batch_rec = rec;
        state->batch_kl = k;
        state->batch_loss = loss;
        /* The loss decides, as on the CPU: rec and the floored KL are in it. */
        state->nonfinite = !isfinite(loss);
    }
}

int cuvae_likelihood_forward(cuvae_cuda_ctx *ctx, const float *out, const float *x, int rows, int D,
                             int x_rep, cuvae_likelihood lik, float sigma, float grad_scale,
                             double *nll, float *dout, cudaStream_t stream, cuvae_status *st)
{
    (void)ctx;
    if (rows < 1 || D < 1 || x_rep < 1)
        return cuvae_fail(st, "likelihood: rows=%d D=%d x_rep=%d: expected positive sizes", rows, D,
                          x_rep);
    if (!out || !x || !nll) return cuvae_fail(st, "likelihood: a NULL buffer");
    if (lik == CUVAE_LIK_BERNOULLI) {
        likelihood_kernel<CUVAE_LIK_BERNOULLI>
            <<<rows, LIK_THREADS, 0, stream>>>(out, x, D, x_rep, sigma, grad_scale, nll, dout);
    } else if (lik == CUVAE_LIK_GAUSSIAN) {
        if (!(sigma > 0.0f))
            return cuvae_fail(st, "likelihood: gaussian sigma %g: expected a positive value",
                              (double)sigma);
        likelihood_kernel<CUVAE_LIK_GAUSSIAN>
            <<<rows, LIK_THREADS, 0, stream>>>(out, x, D, x_rep, sigma, grad_scale, nll, dout);
    } else {
        return cuvae_fail(st, "likelihood: unknown kind %d", (int)lik);
    }
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_batch_metrics_forward(cuvae_cuda_ctx *ctx, const double *nll, const double *kl,
                                const double *kl_floored, int B, const float *d_beta,
                                cuvae_device_state *d_state, cudaStream_t stream, cuvae_status *st)
{
    (void)ctx;
    if (B < 1) return cuvae_fail(st, "batch metrics: B=%d: expected a positive size", B);
    if (!nll || !kl || !kl_floored || !d_beta || !d_state)
        return cuvae_fail(st, "batch metrics: a NULL buffer");
    batch_metrics_kernel<<<1, METRICS_THREADS, 0, stream>>>(nll, kl, kl_floored, B, d_beta,
                                                            d_state);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}
