/* Gradient norm, clipping and Adam/AdamW over the flat buffers (see optimizer.h). p, m, v are
 * updated in place only when the step is finite; the device state's step fields are written and
 * its metrics accumulated, by one thread, so the sums repeat bit for bit.
 *
 * The update, per element, in the order torch (and the C twin cuvae_cpu_adam) evaluates it:
 *   g' = g * clip (+ wd * p for Adam);  p' = p * (1 - lr * wd) for AdamW;
 *   m = m * b1 + (1 - b1) * g';  v = v * b2 + ((1 - b2) * g') * g';
 *   p = p' + (-step * m) / (sqrt(v) / sqrt(1 - b2^t) + eps),  step = lr / (1 - b1^t)
 * with the step's scalars computed once in double and rounded to float (as torch computes them in
 * Python floats). The element arithmetic uses the explicitly rounded intrinsics so that nvcc does
 * not contract it into FMAs: given the same factors it is the C twin's arithmetic bit for bit. */
#include "optimizer.h"

#include <math.h>

#include "device_util.cuh"

#define OPT_THREADS 256

/* The factors of update t; shared by the training path and the parity-test path. */
__device__ static cuvae_adam_factors adam_factors_for(float lr, uint64_t t, float clip_scale,
                                                      const cuvae_adam_hparams *h)
{
    cuvae_adam_factors f;
    double bc1 = 1.0 - pow((double)h->beta1, (double)t);
    double bc2 = 1.0 - pow((double)h->beta2, (double)t);
    f.apply = 1;
    f.clip_scale = clip_scale;
    f.decay = (float)(1.0 - (double)lr * (double)h->weight_decay);
    f.neg_step = (float)(-(double)lr / bc1);
    f.bc2_sqrt = (float)sqrt(bc2);
    return f;
}

/* partials[block] = sum of g^2 over the block's grid-stride share, in double. */
static __global__ void sum_squares_partial_kernel(const float *g, size_t n, double *partials)
{
    __shared__ double shared[CUVAE_REDUCE_THREADS];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)CUVAE_REDUCE_THREADS + threadIdx.x; i < n;
         i += (size_t)CUVAE_REDUCE_BLOCKS * CUVAE_REDUCE_THREADS) {
        double x = (double)g[i];
        s += x * x;
    }
    s = cuvae_dev_block_sum<CUVAE_REDUCE_THREADS>(s, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

static __global__ void sum_partials_kernel(const double *partials, double *out)
{
    __shared__ double shared[CUVAE_REDUCE_THREADS];
    double s = 0.0;
    for (int i = (int)threadIdx.x; i < CUVAE_REDUCE_BLOCKS; i += CUVAE_REDUCE_THREADS)
        s += partials[i];
    s = cuvae_dev_block_sum<CUVAE_REDUCE_THREADS>(s, shared);
    if (threadIdx.x == 0) *out = s;
}

/* The step's decision and bookkeeping, one block. */
static __global__ void step_finalize_kernel(const double *partials, cuvae_adam_hparams h, int batch,
                                            const cuvae_step_scalars *step,
                                            cuvae_device_state *state)
{
    __shared__ double shared[CUVAE_REDUCE_THREADS];
    double s = 0.0;
    for (int i = (int)threadIdx.x; i < CUVAE_REDUCE_BLOCKS; i += CUVAE_REDUCE_THREADS)
        s += partials[i];
    s = cuvae_dev_block_sum<CUVAE_REDUCE_THREADS>(s, shared);
    if (threadIdx.x != 0) return;
    double norm = sqrt(s);
    state->sum_sq = s;
    if (state->nonfinite || !isfinite(s)) {
        state->adam.apply = 0;
        state->skipped += 1;
        if (state->first_nonfinite_step < 0) state->first_nonfinite_step = (long long)step->step;
        return;
    }
    float clip = 1.0f;
    if (h.grad_clip > 0.0f) {
        double coef = (double)h.grad_clip / (norm + 1e-6);
        if (coef < 1.0) clip = (float)coef;
    }
    uint64_t t = state->adam_t + 1;
    state->adam_t = t;
    state->adam = adam_factors_for(step->lr, t, clip, &h);
    state->adam_overflow = 0;
    (void)batch; /* the metrics are added by step_commit_kernel, once the update is known finite */
}

/* After the update: a step whose update overflowed somewhere (adam_kernel stored nothing there)
 * is withheld like a non-finite one (Adam's count back, the skip counted); a finite one adds the
 * batch to the metrics. One thread. */
static __global__ void step_commit_kernel(int batch, const cuvae_step_scalars *step,
                                          cuvae_device_state *state)
{
    if (!state->adam.apply) return;
    if (state->adam_overflow) {
        state->adam_t -= 1;
        state->skipped += 1;
        if (state->first_nonfinite_step < 0) state->first_nonfinite_step = (long long)step->step;
        return;
    }
    state->loss += state->batch_loss;
    state->rec += state->batch_rec;
    state->kl += state->batch_kl;
    state->grad_norm_sum += sqrt(state->sum_sq);
    state->examples += batch;
    state->steps += 1;
}

static __global__ void adam_prepare_kernel(cuvae_adam_factors *f, float lr, uint64_t t,
                                           float grad_scale, cuvae_adam_hparams h)
{
    *f = adam_factors_for(lr, t, grad_scale, &h);
}

/* p16 (may be NULL) is the bf16 shadow of p: refreshed from the new value in the same pass, so
 * the next step's bf16 GEMMs read exactly bf16(p). A withheld update leaves both unchanged. */
static __global__ void adam_kernel(float *p, const float *g, float *m, float *v, size_t n,
                                   cuvae_adam_hparams h, const cuvae_adam_factors *factors,
                                   __nv_bfloat16 *p16, int *overflow)
{
    const cuvae_adam_factors f = *factors;
    if (!f.apply) return;
    const float wd = h.weight_decay, b1 = h.beta1, b2 = h.beta2, eps = h.eps;
    const float omb1 = 1.0f - b1, omb2 = 1.0f - b2;
    const bool l2 = !h.decoupled && wd != 0.0f, shrink = h.decoupled && wd != 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float pi = p[i];
        float gi = __fmul_rn(g[i], f.clip_scale);
        if (l2) gi = __fadd_rn(gi, __fmul_rn(wd, pi));
        if (shrink) pi = __fmul_rn(pi, f.decay);
        float mi = __fadd_rn(__fmul_rn(m[i], b1), __fmul_rn(omb1, gi));
        float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(omb2, gi), gi));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), f.bc2_sqrt), eps);
        float pn = __fadd_rn(pi, __fdiv_rn(__fmul_rn(f.neg_step, mi), denom));
        /* An element whose update is not finite keeps its values (as cuvae_cpu_adam). */
        if (!isfinite(mi) || !isfinite(vi) || !isfinite(pn)) {
            if (overflow) *overflow = 1;
            continue;
        }
        p[i] = pn;
        if (p16) p16[i] = __float2bfloat16_rn(pn);
        m[i] = mi;
        v[i] = vi;
    }
}

static int check_buffers(const char *what, const float *p, const float *g, const float *m,
                         const float *v, size_t n, cuvae_status *st)
{
    if (n == 0) return cuvae_fail(st, "%s: no parameters", what);
    if (!p || !g || !m || !v) return cuvae_fail(st, "%s: a NULL buffer", what);
    return 0;
}

int cuvae_optimizer_step(cuvae_cuda_ctx *ctx, const cuvae_adam_hparams *h, float *p, const float *g,
                         float *m, float *v, size_t n, int batch, const cuvae_step_scalars *d_step,
                         cuvae_device_state *d_state, cudaStream_t stream, cuvae_status *st)
{
    return cuvae_optimizer_step_bf16(ctx, h, p, NULL, g, m, v, n, batch, d_step, d_state, stream,
                                     st);
}

int cuvae_optimizer_step_bf16(cuvae_cuda_ctx *ctx, const cuvae_adam_hparams *h, float *p,
                              __nv_bfloat16 *p16, const float *g, float *m, float *v, size_t n,
                              int batch, const cuvae_step_scalars *d_step,
                              cuvae_device_state *d_state, cudaStream_t stream, cuvae_status *st)
{
    if (check_buffers("optimizer step", p, g, m, v, n, st)) return -1;
    if (!d_step || !d_state) return cuvae_fail(st, "optimizer step: a NULL state");
    if (batch < 1) return cuvae_fail(st, "optimizer step: batch %d: expected positive", batch);
    sum_squares_partial_kernel<<<CUVAE_REDUCE_BLOCKS, CUVAE_REDUCE_THREADS, 0, stream>>>(
        g, n, ctx->d_partials);
    CUDA_CHECK_LAUNCH(st);
    step_finalize_kernel<<<1, CUVAE_REDUCE_THREADS, 0, stream>>>(ctx->d_partials, *h, batch, d_step,
                                                                 d_state);
    CUDA_CHECK_LAUNCH(st);
    adam_kernel<<<cuvae_grid_for(n, OPT_THREADS), OPT_THREADS, 0, stream>>>(
        p, g, m, v, n, *h, &d_state->adam, p16, &d_state->adam_overflow);
    CUDA_CHECK_LAUNCH(st);
    step_commit_kernel<<<1, 1, 0, stream>>>(batch, d_step, d_state);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_adam_update(cuvae_cuda_ctx *ctx, const cuvae_adam_hparams *h, float *p, const float *g,
                      float *m, float *v, size_t n, float lr, uint64_t t, float grad_scale,
                      cuvae_adam_factors *d_factors, cudaStream_t stream, cuvae_status *st)
{
    return cuvae_adam_update_bf16(ctx, h, p, NULL, g, m, v, n, lr, t, grad_scale, d_factors, stream,
                                  st);
}

int cuvae_adam_update_bf16(cuvae_cuda_ctx *ctx, const cuvae_adam_hparams *h, float *p,
                           __nv_bfloat16 *p16, const float *g, float *m, float *v, size_t n,
                           float lr, uint64_t t, float grad_scale, cuvae_adam_factors *d_factors,
                           cudaStream_t stream, cuvae_status *st)
{
    (void)ctx;
    if (check_buffers("adam update", p, g, m, v, n, st)) return -1;
    if (!d_factors) return cuvae_fail(st, "adam update: a NULL factor buffer");
    if (t < 1) return cuvae_fail(st, "adam update: t = 0: the count is 1-based");
    adam_prepare_kernel<<<1, 1, 0, stream>>>(d_factors, lr, t, grad_scale, *h);
    CUDA_CHECK_LAUNCH(st);
    adam_kernel<<<cuvae_grid_for(n, OPT_THREADS), OPT_THREADS, 0, stream>>>(p, g, m, v, n, *h,
                                                                            d_factors, p16, NULL);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_sum_squares_forward(cuvae_cuda_ctx *ctx, const float *g, size_t n, double *d_out,
                              cudaStream_t stream, cuvae_status *st)
{
    if (!g || !d_out || n == 0) return cuvae_fail(st, "sum of squares: empty or NULL buffer");
    sum_squares_partial_kernel<<<CUVAE_REDUCE_BLOCKS, CUVAE_REDUCE_THREADS, 0, stream>>>(
        g, n, ctx->d_partials);
    CUDA_CHECK_LAUNCH(st);
    sum_partials_kernel<<<1, CUVAE_REDUCE_THREADS, 0, stream>>>(ctx->d_partials, d_out);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}
