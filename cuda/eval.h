/* Evaluation on the device: the ELBO and the K-sample importance-weighted bound of a batch of
 * examples (host/backend/backend.h's cuvae_eval_out), and decoding latents to the decoder's means.
 * The batch is encoded once, expanded to rows (example i, sample k) with noise from (seed,
 * CUVAE_STREAM_EVAL, counter, element = (idx[i] * K + k) * L + d), decoded with the cached GEMMs,
 * and reduced per example in double with a max-shifted logsumexp, in a fixed order. No C twin of
 * its own: it composes the twins of gather, linear, reparam_kl and likelihood, and the CPU
 * backend's evaluate is its reference. Every output is written ("="). */
#ifndef CUVAE_CUDA_EVAL_H
#define CUVAE_CUDA_EVAL_H

#include "backend.h"
#include "cuda_common.h"
#include "model.h"

/* Device buffers of the evaluation, sized for cap_rows decoded rows (and as many examples): one
 * allocation (mem, bytes) carved into the buffers below by eval.cu's table. */
typedef struct {
    int cap_rows;
    void *mem;
    size_t bytes;
    int32_t *idx;   /* [cap_rows] rows of the set */
    float *x;       /* [cap_rows, x_dim] */
    float *h0, *h1; /* [cap_rows, max_width] hidden activations, alternating by layer */
    float *enc;     /* [cap_rows, 2 * latent] [mu | logvar] */
    float *z;       /* [cap_rows, latent] */
    float *out;     /* [cap_rows, x_dim] decoder outputs */
    double *nll;    /* [cap_rows] -log p(x | z) per row */
    double *lw;     /* [cap_rows] log p(z) - log q(z | x) per row */
    double *kl;     /* [cap_rows] closed-form KL per example */
    double *res;    /* [4, cap_rows]: neg_elbo, neg_iw, rec, kl per example */
} cuvae_eval_buffers;

/* The device memory the evaluation buffers may take, from what is free (cudaMemGetInfo): half of
 * it beyond a 1 GiB reserve (cuBLASLt, the driver, other processes), a quarter when under 1 GiB
 * is free, and between 32 MiB and 8 GiB. Results do not depend on it: every example's bound sums
 * its own samples in order, whatever the pass size. */
size_t cuvae_eval_budget_bytes(size_t free_bytes);

/* The rows one evaluate call of the CUDA backend takes (its cuvae_backend.eval_rows_per_call),
 * and the most one pass holds: the call is split into passes of what the memory budget buys. */
#define CUVAE_CUDA_EVAL_MAX_ROWS (1 << 22)

/* The largest row count worth allocating for a model: bounded by budget_bytes and by
 * CUVAE_CUDA_EVAL_MAX_ROWS, at least min_rows. */
int cuvae_eval_rows_for(const cuvae_model *model, int min_rows, size_t budget_bytes);

/* Allocates the buffers for cap_rows rows (released first when already allocated). */
int cuvae_eval_buffers_alloc(cuvae_cuda_ctx *ctx, const cuvae_model *model, int cap_rows,
                             cuvae_eval_buffers *b, cuvae_status *st);
void cuvae_eval_buffers_free(cuvae_cuda_ctx *ctx, cuvae_eval_buffers *b);

/* One evaluation batch of n examples, n * K <= b->cap_rows, whose set rows are already in b->idx
 * (device): the set's pixels [n_rows, x_dim] are scaled by 1/255 (never binarized here), or
 * float32 values (dtype) taken as they are. Writes
 * b->enc [n, 2L], b->kl [n] = KL (beta 1, no floor) and, when decode, b->res [4, cap_rows]:
 * neg_elbo [n] = mean_k rec_k + KL, neg_iw [n] = -(logsumexp_k log w_k - log K) with
 * log w_k = -rec_k + log p(z_k) - log q(z_k | x), rec [n] = mean_k rec_k, kl [n]. Without
 * decode only the encoder runs (means, log-variances and KL). */
int cuvae_eval_forward(cuvae_cuda_ctx *ctx, const cuvae_model *model, const float *params,
                       const void *pixels, cuvae_dtype dtype, int64_t n_rows, int n, int K,
                       uint64_t counter, int decode, cuvae_eval_buffers *b, cudaStream_t stream,
                       cuvae_status *st);

/* Decodes n latents from b->z [n, L] (n <= b->cap_rows) into b->out [n, x_dim]: Bernoulli
 * probabilities (sigmoid of the logits) or Gaussian means. */
int cuvae_decode_forward(cuvae_cuda_ctx *ctx, const cuvae_model *model, const float *params, int n,
                         cuvae_eval_buffers *b, cudaStream_t stream, cuvae_status *st);

#endif
