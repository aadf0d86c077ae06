/* Evaluation and decoding on the device (see eval.h). Every output is written ("=").
 *
 * For row r = i*K + k (example i, sample k) with eps_rk from the eval stream:
 *   z    = mu_i + exp(0.5 lv_i) * eps
 *   lw_r = log p(z) - log q(z | x) = sum_d [ -0.5 z_d^2 + 0.5 eps_d^2 + 0.5 lv_d ]
 *          (the -0.5 log(2 pi) of both densities cancel)
 *   log w_k = -rec_k + lw_r
 * and per example, with m = max_k log w_k (the shift keeps exp in range):
 *   neg_iw = -(m + log sum_k exp(log w_k - m) - log K). */
#include "eval.h"

#include <math.h>
#include <string.h>

#include "device_util.cuh"
#include "twin_math.h"
#include "evaluate.h"
#include "gather.h"
#include "likelihood.h"
#include "layers.h"

#define EXPAND_WARPS 4
#define EVAL_THREADS 256

/* One warp per row: z, lw and (for k = 0) the example's KL. */
static __global__ void expand_kernel(const float *enc, const int32_t *idx, int n, int K, int L,
                                     uint64_t seed, uint64_t counter, float *z, double *lw,
                                     double *kl)
{
    int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32);
    int r = blockIdx.x * EXPAND_WARPS + warp;
    if (r >= n * K) return; /* whole warps leave together */
    int i = r / K, k = r % K;
    const float *mu = enc + (size_t)i * 2 * (size_t)L;
    const float *lv = mu + L;
    uint64_t base = ((uint64_t)idx[i] * (uint64_t)K + (uint64_t)k) * (uint64_t)L;
    double zz = 0.0, ee = 0.0, lvs = 0.0, s_kl = 0.0;
    for (int d = lane; d < L; d += 32) {
        float e = cuvae_dev_normal(seed, CUVAE_STREAM_EVAL, counter, base + (uint64_t)d);
        float m = mu[d], v = lv[d];
        float zd = cuvae_reparam_z(m, v, e);
        z[(size_t)r * (size_t)L + (size_t)d] = zd;
        zz += (double)zd * (double)zd;
        ee += (double)e * (double)e;
        lvs += (double)v;
        if (k == 0) s_kl += (double)cuvae_kl_term(m, v); /* the training KL's formula */
    }
    zz = cuvae_dev_warp_sum(zz);
    ee = cuvae_dev_warp_sum(ee);
    lvs = cuvae_dev_warp_sum(lvs);
    s_kl = cuvae_dev_warp_sum(s_kl); /* k is the same on every lane of the warp */
    if (lane == 0) {
        lw[r] = -0.5 * zz + 0.5 * ee + 0.5 * lvs;
        if (k == 0) kl[i] = s_kl;
    }
}

/* One thread per example, samples in order. res is [4, stride]. */
static __global__ void combine_kernel(const double *nll, const double *lw, const double *kl, int n,
                                      int K, double *res, int stride)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const double *rn = nll + (size_t)i * (size_t)K, *rl = lw + (size_t)i * (size_t)K;
    double mx = -INFINITY, sum_rec = 0.0;
    bool nan = false;
    for (int k = 0; k < K; k++) {
        double lwk = rl[k] - rn[k];
        if (isnan(lwk)) nan = true;
        if (lwk > mx) mx = lwk;
        sum_rec += rn[k];
    }
    double lse;
    if (nan) {
        lse = NAN; /* a NaN weight makes the bound NaN, so the caller counts it */
    } else if (isinf(mx)) {
        lse = mx; /* every weight zero (-inf), or one infinite: no shift can help */
    } else {
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp((rl[k] - rn[k]) - mx);
        lse = mx + log(s);
    }
    double rec = sum_rec / (double)K;
    res[i] = rec + kl[i];
    res[stride + i] = -(lse - log((double)K));
    res[2 * stride + i] = rec;
    res[3 * stride + i] = kl[i];
}

static __global__ void sigmoid_kernel(float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        /* exp of a non-positive argument only, as the CPU backend's decode */
        float o = x[i], e = expf(-fabsf(o));
        x[i] = cuvae_sigmoid_from_e(o, e);
    }
}

/* The evaluation buffers as one table: where each pointer goes (NULL when the table only sizes)
 * and its bytes per row. The row size of the budget, the allocation and the release all come from
 * it. */
typedef struct {
    void **slot;
    size_t per_row;
} eval_part;

#define EVAL_PARTS 11
#define EVAL_ALIGN 256 /* as cudaMalloc aligns: the GEMM plans see the same alignments */

static void eval_parts(const cuvae_model *m, cuvae_eval_buffers *b, eval_part parts[EVAL_PARTS])
{
    size_t D = (size_t)m->x_dim, W = (size_t)cuvae_model_max_width(m), L = (size_t)m->latent;
#define SLOT(field) (b ? (void **)&b->field : NULL)
    const eval_part p[EVAL_PARTS] = {
        {SLOT(idx), sizeof(int32_t)},       {SLOT(x), sizeof(float) * D},
        {SLOT(h0), sizeof(float) * W},      {SLOT(h1), sizeof(float) * W},
        {SLOT(enc), sizeof(float) * 2 * L}, {SLOT(z), sizeof(float) * L},
        {SLOT(out), sizeof(float) * D},     {SLOT(nll), sizeof(double)},
        {SLOT(lw), sizeof(double)},         {SLOT(kl), sizeof(double)},
        {SLOT(res), sizeof(double) * 4},
    };
#undef SLOT
    memcpy(parts, p, sizeof p);
}

static size_t bytes_per_row(const cuvae_model *m)
{
    eval_part parts[EVAL_PARTS];
    eval_parts(m, NULL, parts);
    size_t n = 0;
    for (int i = 0; i < EVAL_PARTS; i++) n += parts[i].per_row;
    return n;
}

static size_t eval_aligned(size_t bytes)
{
    return (bytes + EVAL_ALIGN - 1) / EVAL_ALIGN * EVAL_ALIGN;
}

size_t cuvae_eval_budget_bytes(size_t free_bytes)
{
    const size_t mib = (size_t)1 << 20, reserve = (size_t)1 << 30;
    size_t b = free_bytes > reserve ? (free_bytes - reserve) / 2 : free_bytes / 4;
    if (b < 32 * mib) b = 32 * mib;
    if (b > 8192 * mib) b = 8192 * mib;
    return b;
}

int cuvae_eval_rows_for(const cuvae_model *model, int min_rows, size_t budget_bytes)
{
    size_t rows = budget_bytes / bytes_per_row(model);
    if (rows > CUVAE_CUDA_EVAL_MAX_ROWS) rows = CUVAE_CUDA_EVAL_MAX_ROWS;
    if (rows < 1) rows = 1;
    if ((size_t)min_rows > rows) rows = (size_t)min_rows;
    return (int)rows;
}

void cuvae_eval_buffers_free(cuvae_cuda_ctx *ctx, cuvae_eval_buffers *b)
{
    /* One allocation of b->bytes, brought off ctx->device_bytes. */
    cuvae_cuda_free(ctx, b->mem, b->bytes);
    memset(b, 0, sizeof *b);
}

int cuvae_eval_buffers_alloc(cuvae_cuda_ctx *ctx, const cuvae_model *model, int cap_rows,
                             cuvae_eval_buffers *b, cuvae_status *st)
{
    if (b->cap_rows) cuvae_eval_buffers_free(ctx, b);
    if (cap_rows < 1) return cuvae_fail(st, "evaluation buffers: %d rows", cap_rows);
    eval_part parts[EVAL_PARTS];
    eval_parts(model, b, parts);
    size_t R = (size_t)cap_rows, total = 0;
    for (int i = 0; i < EVAL_PARTS; i++) total += eval_aligned(R * parts[i].per_row);
    if (cuvae_cuda_alloc(ctx, &b->mem, total, "evaluation buffers", st)) {
        cuvae_eval_buffers_free(ctx, b);
        return -1;
    }
    b->bytes = total;
    b->cap_rows = cap_rows;
    size_t at = 0;
    for (int i = 0; i < EVAL_PARTS; i++) {
        *parts[i].slot = (char *)b->mem + at;
        at += eval_aligned(R * parts[i].per_row);
    }
    return 0;
}

/* The activation buffers of a stack of n layers: alternating h0/h1, the last one `last`. */
static void activations(void **act, int n, const cuvae_eval_buffers *b, float *last)
{
    for (int i = 0; i < n; i++) act[i] = i % 2 == 0 ? b->h0 : b->h1;
    act[n - 1] = last;
}

int cuvae_eval_forward(cuvae_cuda_ctx *ctx, const cuvae_model *model, const float *params,
                       const void *pixels, cuvae_dtype dtype, int64_t n_rows, int n, int K,
                       uint64_t counter, int decode, cuvae_eval_buffers *b, cudaStream_t stream,
                       cuvae_status *st)
{
    if (n < 1 || K < 1) return cuvae_fail(st, "evaluate: n=%d K=%d: expected positive sizes", n, K);
    if (!model || !params || !pixels || !b) return cuvae_fail(st, "evaluate: a NULL buffer");
    if (!decode) K = 1; /* one row per example: the KL only */
    if ((int64_t)n * K > b->cap_rows)
        return cuvae_fail(st, "evaluate: %d examples x %d samples exceed the %d rows allocated", n,
                          K, b->cap_rows);
    int D = model->x_dim, L = model->latent, rows = n * K;
    void *act[CUVAE_MAX_LAYERS];
    if (!b->idx) return cuvae_fail(st, "evaluate: a NULL buffer");
    if (cuvae_gather_values_forward(ctx, pixels, dtype, n_rows, D, b->idx, n, 0, NULL, b->x, stream,
                                    st))
        return -1;
    activations(act, model->enc.n, b, b->enc);
    /* fp32 on the fp32 parameters whatever train.precision: no operand copies, no scratch. */
    if (cuvae_stack_forward(ctx, CUVAE_OPERAND_F32, model->enc.layer, model->enc.n, params, NULL,
                            b->x, n, act, NULL, NULL, stream, st))
        return cuvae_fail_prefix(st, "encoder");
    expand_kernel<<<(rows + EXPAND_WARPS - 1) / EXPAND_WARPS, EXPAND_WARPS * 32, 0, stream>>>(
        b->enc, b->idx, n, K, L, ctx->seed, counter, b->z, b->lw, b->kl);
    CUDA_CHECK_LAUNCH(st);
    if (!decode) return 0;
    activations(act, model->dec.n, b, b->out);
    if (cuvae_stack_forward(ctx, CUVAE_OPERAND_F32, model->dec.layer, model->dec.n, params, NULL,
                            b->z, rows, act, NULL, NULL, stream, st))
        return cuvae_fail_prefix(st, "decoder");
    if (cuvae_likelihood_forward(ctx, b->out, b->x, rows, D, K, model->likelihood,
                                 model->gaussian_sigma, 0.0f, b->nll, NULL, stream, st))
        return -1;
    combine_kernel<<<(n + EVAL_THREADS - 1) / EVAL_THREADS, EVAL_THREADS, 0, stream>>>(
        b->nll, b->lw, b->kl, n, K, b->res, b->cap_rows);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_decode_forward(cuvae_cuda_ctx *ctx, const cuvae_model *model, const float *params, int n,
                         cuvae_eval_buffers *b, cudaStream_t stream, cuvae_status *st)
{
    if (!model || !params || !b) return cuvae_fail(st, "decode: a NULL buffer");
    if (n < 1 || n > b->cap_rows)
        return cuvae_fail(st, "decode: %d latents: expected 1..%d per call", n, b->cap_rows);
    void *act[CUVAE_MAX_LAYERS];
    activations(act, model->dec.n, b, b->out);
    if (cuvae_stack_forward(ctx, CUVAE_OPERAND_F32, model->dec.layer, model->dec.n, params, NULL,
                            b->z, n, act, NULL, NULL, stream, st))
        return cuvae_fail_prefix(st, "decoder");
    if (model->likelihood == CUVAE_LIK_BERNOULLI) {
        size_t total = (size_t)n * (size_t)model->x_dim;
        sigmoid_kernel<<<cuvae_grid_for(total, EVAL_THREADS), EVAL_THREADS, 0, stream>>>(b->out,
                                                                                         total);
        CUDA_CHECK_LAUNCH(st);
    }
    return 0;
}
