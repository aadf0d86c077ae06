/* The CPU backend: the reference implementation of every cuvae_backend entry, on the ops of
 * cpu_ops.c (GEMMs through OpenBLAS, which runs them on all cores). It owns the flat parameter,
 * gradient and Adam buffers, the uploaded data (as bytes) and one table of activation buffers
 * sized for the most rows any call has needed: a training step allocates nothing. */
#include "backend.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "philox.h"

/* Evaluation runs its GEMMs in canonical blocks so that an example's results do not depend on how
 * the caller batches examples, to the last bit. BLAS results for a row depend on the row's
 * position in the call and on the call's shape (OpenBLAS's kernels differ by position and tail),
 * so row g of a global index space (the example's index in its set for the encoder;
 * idx * K + k, the noise's index, for the decoder) is always computed at position g % T of a
 * call of exactly T rows for block g / T, from buffers at the same addresses; rows of the block
 * that the call does not need are zero. Consecutive indices fill whole blocks; the waste is at
 * most a block at each end of a call. Decoder blocks are larger when K is (GEMM efficiency). */
#define ENC_BLOCK 64
#define DEC_BLOCK_SMALL_K 64
#define DEC_BLOCK_LARGE_K 512
#define MAX_BLOCK DEC_BLOCK_LARGE_K

/* decode() converts latents in passes of at most this many rows. */
#define DECODE_ROWS 2048

/* Buffer alignment: the same alignment for every allocation, so that blocks always present
 * BLAS with the same addresses modulo the cache line. */
#define ALIGN 64

typedef struct {
    uint8_t *pixels; /* [n, d] bytes as uploaded; NULL until uploaded */
    int64_t n;
    int d;
    int dynamic; /* binarize afresh at every training step */
} cpu_set;

/* Activation buffers of `rows` rows (training batch, evaluation block, decode pass). */
typedef struct {
    int rows;
    float *x;                      /* [rows, x_dim] input (the likelihood's target) */
    float *enc[CUVAE_MAX_LAYERS];  /* [rows, enc[i].out] post-activation; last = [mu | logvar] */
    float *eps;                    /* [rows, latent] */
    float *z;                      /* [rows, latent] */
    float *dec[CUVAE_MAX_LAYERS];  /* [rows, dec[i].out] post-activation; last = logits/means */
    float *grad_a, *grad_b;        /* [rows, max_width] gradient ping-pong */
    double *nll, *kl, *kl_floored; /* [rows] */
    int32_t *owner;                /* [rows] evaluate: example of each block row, -1 = unused */
    size_t bytes;
} cpu_acts;

/* Per-example state of one evaluate call. */
typedef struct {
    int n;
    float *x;                            /* [n, x_dim] */
    float *enc;                          /* [n, 2 latent] [mu | logvar] */
    float *sigma;                        /* [n, latent] exp(logvar / 2) */
    double *kl, *lv_sum;                 /* [n] closed-form KL, sum of logvar */
    double *lse_max, *lse_sum, *rec_sum; /* [n] running log-sum-exp of log w, sum of rec */
    size_t bytes;
} cpu_eval_acts;

typedef struct {
    cuvae_backend base;
    cuvae_model m;
    cuvae_config c;
    float *params, *grads, *adam_m, *adam_v; /* [n_params] each, cuvae_model layout */
    uint64_t adam_t;
    cpu_set sets[CUVAE_SET_COUNT];
    cuvae_metrics metrics;
    cpu_acts a;
    cpu_eval_acts e;
} cpu_backend;

static cpu_backend *cpu_of(cuvae_backend *be)
{
    return (cpu_backend *)be;
}

/* aligned_alloc wants a non-zero multiple of the alignment. */
static void *alloc_aligned(size_t bytes)
{
    return aligned_alloc(ALIGN, bytes ? (bytes + ALIGN - 1) / ALIGN * ALIGN : ALIGN);
}

static void acts_free(cpu_acts *a)
{
    free(a->x);
    for (int i = 0; i < CUVAE_MAX_LAYERS; i++) {
        free(a->enc[i]);
        free(a->dec[i]);
    }
    free(a->eps);
    free(a->z);
    free(a->grad_a);
    free(a->grad_b);
    free(a->nll);
    free(a->kl);
    free(a->kl_floored);
    free(a->owner);
    memset(a, 0, sizeof *a);
}

static void eval_acts_free(cpu_eval_acts *e)
{
    free(e->x);
    free(e->enc);
    free(e->sigma);
    free(e->kl);
    free(e->lv_sum);
    free(e->lse_max);
    free(e->lse_sum);
    free(e->rec_sum);
    memset(e, 0, sizeof *e);
}

#define ALLOC(ptr, count)                                                                          \
    do {                                                                                           \
        size_t n_ = (size_t)(count);                                                               \
        ptr = alloc_aligned(n_ * sizeof *(ptr));                                                   \
        ok = ok && ptr != NULL;                                                                    \
        bytes += n_ * sizeof *(ptr);                                                               \
    } while (0)

/* Grows the activation table to at least `rows` rows (never shrinks). Contents are not kept:
 * callers grow before they write anything. */
static int acts_reserve(cpu_backend *cb, int rows, cuvae_status *st)
{
    cpu_acts *a = &cb->a;
    if (rows <= a->rows) return 0;
    acts_free(a);
    const cuvae_model *m = &cb->m;
    size_t r = (size_t)rows, bytes = 0;
    int ok = 1;
    ALLOC(a->x, r * (size_t)m->x_dim);
    for (int i = 0; i < m->n_enc; i++) ALLOC(a->enc[i], r * (size_t)m->enc[i].out);
    for (int i = 0; i < m->n_dec; i++) ALLOC(a->dec[i], r * (size_t)m->dec[i].out);
    ALLOC(a->eps, r * (size_t)m->latent);
    ALLOC(a->z, r * (size_t)m->latent);
    ALLOC(a->grad_a, r * (size_t)m->max_width);
    ALLOC(a->grad_b, r * (size_t)m->max_width);
    ALLOC(a->nll, r);
    ALLOC(a->kl, r);
    ALLOC(a->kl_floored, r);
    ALLOC(a->owner, r);
    if (!ok) {
        acts_free(a);
        return cuvae_fail(st,
                          "cpu backend: out of memory allocating activations for %d rows "
                          "(%.1f MiB)",
                          rows, (double)bytes / 1048576.0);
    }
    a->rows = rows;
    a->bytes = bytes;
    return 0;
}

static int eval_acts_reserve(cpu_backend *cb, int n, cuvae_status *st)
{
    cpu_eval_acts *e = &cb->e;
    if (n <= e->n) return 0;
    eval_acts_free(e);
    const cuvae_model *m = &cb->m;
    size_t r = (size_t)n, bytes = 0, L = (size_t)m->latent;
    int ok = 1;
    ALLOC(e->x, r * (size_t)m->x_dim);
    ALLOC(e->enc, r * 2 * L);
    ALLOC(e->sigma, r * L);
    ALLOC(e->kl, r);
    ALLOC(e->lv_sum, r);
    ALLOC(e->lse_max, r);
    ALLOC(e->lse_sum, r);
    ALLOC(e->rec_sum, r);
    if (!ok) {
        eval_acts_free(e);
        return cuvae_fail(st,
                          "cpu backend: out of memory allocating evaluation state for %d "
                          "examples (%.1f MiB)",
                          n, (double)bytes / 1048576.0);
    }
    e->n = n;
    e->bytes = bytes;
    return 0;
}
#undef ALLOC

/* Encoder forward over rows of a->x: a->enc[last] = [mu | logvar]. */
static void encoder_forward(cpu_backend *cb, int rows)
{
    const cuvae_model *m = &cb->m;
    const float *in = cb->a.x;
    for (int i = 0; i < m->n_enc; i++) {
        const cuvae_linear *l = &m->enc[i];
        cuvae_cpu_linear_forward(in, cb->params + l->w, cb->params + l->b, rows, l->in, l->out,
                                 i < m->n_enc - 1, cb->a.enc[i]);
        in = cb->a.enc[i];
    }
}

/* Decoder forward from z [rows, latent]: a->dec[last] = logits or means. */
static void decoder_forward(cpu_backend *cb, const float *z, int rows)
{
    const cuvae_model *m = &cb->m;
    const float *in = z;
    for (int i = 0; i < m->n_dec; i++) {
        const cuvae_linear *l = &m->dec[i];
        cuvae_cpu_linear_forward(in, cb->params + l->w, cb->params + l->b, rows, l->in, l->out,
                                 i < m->n_dec - 1, cb->a.dec[i]);
        in = cb->a.dec[i];
    }
}

static void cpu_destroy(cuvae_backend *be)
{
    if (!be) return;
    cpu_backend *cb = cpu_of(be);
    acts_free(&cb->a);
    eval_acts_free(&cb->e);
    for (int s = 0; s < CUVAE_SET_COUNT; s++) free(cb->sets[s].pixels);
    free(cb->params);
    free(cb->grads);
    free(cb->adam_m);
    free(cb->adam_v);
    free(cb);
}

static const char *set_name(cuvae_set set)
{
    return set == CUVAE_SET_TRAIN ? "training" : set == CUVAE_SET_VALID ? "validation" : "test";
}

static int cpu_upload(cuvae_backend *be, cuvae_set set, const uint8_t *pixels, int64_t n, int d,
                      int dynamic, cuvae_status *st)
{
    cpu_backend *cb = cpu_of(be);
    if ((int)set < 0 || set >= CUVAE_SET_COUNT)
        return cuvae_fail(st, "cpu backend: upload: unknown set %d", (int)set);
    if (d != cb->m.x_dim)
        return cuvae_fail(st,
                          "cpu backend: upload of the %s set: %d values per example, the model "
                          "expects %d",
                          set_name(set), d, cb->m.x_dim);
    if (n < 0 || n > INT32_MAX)
        return cuvae_fail(st, "cpu backend: upload of the %s set: %lld examples (expected 0 to %d)",
                          set_name(set), (long long)n, INT32_MAX);
    size_t bytes = (size_t)n * (size_t)d;
    uint8_t *copy = cuvae_malloc(bytes, "uploaded examples", st);
    if (!copy) return -1;
    if (bytes) memcpy(copy, pixels, bytes);
    cpu_set *s = &cb->sets[set];
    free(s->pixels);
    s->pixels = copy;
    s->n = n;
    s->d = d;
    s->dynamic = dynamic != 0;
    return 0;
}

/* Checks that every index names an example of the set. */
static int check_indices(const cpu_set *s, cuvae_set set, const int32_t *idx, int n,
                         const char *what, cuvae_status *st)
{
    if (!s->pixels)
        return cuvae_fail(st, "cpu backend: %s: the %s set was not uploaded", what, set_name(set));
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= s->n)
            return cuvae_fail(st,
                              "cpu backend: %s: index %d at position %d is outside the %s set "
                              "(%lld examples)",
                              what, idx[i], i, set_name(set), (long long)s->n);
    return 0;
}

/* Backward through layers [0, n) of one MLP half. dy holds the gradient w.r.t. the last layer's
 * pre-activation; dy and scratch ([rows, max_width] each) are used in turn. Returns the buffer
 * that holds the gradient w.r.t. the half's input, or NULL when want_dx is 0 (the encoder's
 * input is data). */
static float *mlp_backward(cpu_backend *cb, const cuvae_linear *layers, float *const *outs, int n,
                           const float *input, int rows, float *dy, float *scratch, int want_dx)
{
    float *dx = scratch;
    for (int i = n - 1; i >= 0; i--) {
        const cuvae_linear *l = &layers[i];
        const float *in = i > 0 ? outs[i - 1] : input;
        int need_dx = i > 0 || want_dx;
        cuvae_cpu_linear_backward(in, cb->params + l->w, dy, rows, l->in, l->out, cb->grads + l->w,
                                  cb->grads + l->b, need_dx ? dx : NULL);
        if (!need_dx) return NULL;
        if (i > 0) cuvae_cpu_relu_backward(outs[i - 1], dx, (size_t)rows * (size_t)l->in);
        float *t = dy;
        dy = dx;
        dx = t;
    }
    return dy;
}

static int cpu_train_step(cuvae_backend *be, const cuvae_step *step, cuvae_status *st)
{
    cpu_backend *cb = cpu_of(be);
    const cuvae_model *m = &cb->m;
    const cpu_set *s = &cb->sets[CUVAE_SET_TRAIN];
    int B = step->batch, L = m->latent;
    if (B <= 0) return cuvae_fail(st, "cpu backend: train step: batch of %d examples", B);
    if (check_indices(s, CUVAE_SET_TRAIN, step->idx, B, "train step", st)) return -1;
    if (acts_reserve(cb, B, st)) return -1;
    cpu_acts *a = &cb->a;
    const float free_bits = cb->c.train.free_bits;

    /* Forward. */
    cuvae_cpu_gather(s->pixels, m->x_dim, step->idx, B, s->dynamic, cb->c.train.seed, step->step,
                     a->x);
    encoder_forward(cb, B);
    float *enc_out = a->enc[m->n_enc - 1];
    cuvae_normal_fill(cb->c.train.seed, CUVAE_STREAM_REPARAM, step->step, 0, a->eps,
                      (size_t)B * (size_t)L);
    cuvae_cpu_reparam_kl_forward(enc_out, a->eps, B, L, free_bits, a->z, a->kl, a->kl_floored);
    decoder_forward(cb, a->z, B);
    cuvae_cpu_likelihood(a->dec[m->n_dec - 1], a->x, B, m->x_dim, m->likelihood, m->gaussian_sigma,
                         1.0f / (float)B, a->nll, a->grad_a);
    double loss = 0, rec = 0, kl = 0;
    for (int b = 0; b < B; b++) {
        loss += a->nll[b] + (double)step->beta * a->kl_floored[b];
        rec += a->nll[b];
        kl += a->kl[b];
    }

    /* Backward: decoder, reparameterization + KL, encoder. Every gradient is written, none
     * accumulated, so nothing needs zeroing. */
    float *dz = mlp_backward(cb, m->dec, a->dec, m->n_dec, a->z, B, a->grad_a, a->grad_b, 1);
    float *denc = dz == a->grad_a ? a->grad_b : a->grad_a;
    cuvae_cpu_reparam_kl_backward(enc_out, a->eps, dz, B, L, step->beta / (float)B, free_bits,
                                  denc);
    mlp_backward(cb, m->enc, a->enc, m->n_enc, a->x, B, denc, dz, 0);

    double norm = sqrt(cuvae_cpu_sum_squares(cb->grads, m->n_params));
    if (!isfinite(loss) || !isfinite(norm)) {
        /* The update is withheld: parameters and Adam state stay as they were. */
        if (cb->metrics.first_nonfinite_step < 0)
            cb->metrics.first_nonfinite_step = (int64_t)step->step;
        cb->metrics.skipped++;
        return 0;
    }
    float clip = 1.0f;
    if (cb->c.optim.grad_clip > 0) {
        double f = (double)cb->c.optim.grad_clip / (norm + 1e-6);
        if (f < 1.0) clip = (float)f;
    }
    cb->adam_t++;
    cuvae_cpu_adam(cb->params, cb->grads, cb->adam_m, cb->adam_v, m->n_params, step->lr,
                   cb->c.optim.beta1, cb->c.optim.beta2, cb->c.optim.eps, cb->c.optim.weight_decay,
                   cb->c.optim.type == CUVAE_OPT_ADAMW, cb->adam_t, clip);
    cb->metrics.loss += loss;
    cb->metrics.rec += rec;
    cb->metrics.kl += kl;
    cb->metrics.grad_norm_sum += norm;
    cb->metrics.examples += B;
    cb->metrics.steps++;
    return 0;
}

static void metrics_reset(cuvae_metrics *mt)
{
    memset(mt, 0, sizeof *mt);
    mt->first_nonfinite_step = -1;
}

static int cpu_read_metrics(cuvae_backend *be, cuvae_metrics *out, int reset, cuvae_status *st)
{
    (void)st;
    cpu_backend *cb = cpu_of(be);
    *out = cb->metrics;
    if (reset) metrics_reset(&cb->metrics);
    return 0;
}

/* Adds log w to a running max-shifted log-sum-exp (max, sum of exp(log w - max)), in order. */
static void lse_add(double *max, double *sum, double lw)
{
    if (isnan(lw)) {
        *sum = NAN;
    } else if (lw > *max) {
        *sum = *sum * exp(*max - lw) + 1.0;
        *max = lw;
    } else if (lw != -INFINITY) {
        *sum += exp(lw - *max);
    }
}

/* Encoder block: rows whose owner is >= 0 hold example owner's input; the others are zero. */
static void encode_block(cpu_backend *cb, int T)
{
    cpu_acts *a = &cb->a;
    const cuvae_model *m = &cb->m;
    size_t D = (size_t)m->x_dim, L2 = 2 * (size_t)m->latent;
    for (int r = 0; r < T; r++) {
        if (a->owner[r] >= 0)
            memcpy(a->x + r * D, cb->e.x + (size_t)a->owner[r] * D, D * 4);
        else
            memset(a->x + r * D, 0, D * 4);
    }
    encoder_forward(cb, T);
    const float *out = a->enc[m->n_enc - 1];
    for (int r = 0; r < T; r++)
        if (a->owner[r] >= 0) memcpy(cb->e.enc + (size_t)a->owner[r] * L2, out + r * L2, L2 * 4);
}

/* Decoder block `block` of T rows (global rows block*T + r = idx*K + k). */
static void decode_block(cpu_backend *cb, uint64_t block, int T, uint64_t counter)
{
    cpu_acts *a = &cb->a;
    cpu_eval_acts *e = &cb->e;
    const cuvae_model *m = &cb->m;
    const size_t L = (size_t)m->latent, D = (size_t)m->x_dim;
    /* Noise: a run of used rows is a run of consecutive elements of the eval stream. */
    for (int r = 0; r < T;) {
        if (a->owner[r] < 0) {
            memset(a->eps + r * L, 0, L * sizeof *a->eps);
            r++;
            continue;
        }
        int run = 1;
        while (r + run < T && a->owner[r + run] >= 0) run++;
        cuvae_normal_fill(cb->c.train.seed, CUVAE_STREAM_EVAL, counter,
                          (block * (uint64_t)T + (uint64_t)r) * L, a->eps + r * L, (size_t)run * L);
        r += run;
    }
    for (int r = 0; r < T; r++) {
        float *z = a->z + r * L;
        if (a->owner[r] < 0) {
            memset(z, 0, L * sizeof *z);
            continue;
        }
        /* z = mu + sigma * eps, as cuvae_cpu_reparam_kl_forward computes it */
        const float *mu = e->enc + (size_t)a->owner[r] * 2 * L,
                    *sg = e->sigma + (size_t)a->owner[r] * L;
        const float *ep = a->eps + r * L;
        for (size_t d = 0; d < L; d++) z[d] = mu[d] + sg[d] * ep[d];
    }
    decoder_forward(cb, a->z, T);
    const float *outp = a->dec[m->n_dec - 1];
    for (int r = 0; r < T; r++) {
        int i = a->owner[r];
        if (i < 0) continue;
        double nll;
        cuvae_cpu_likelihood(outp + r * D, e->x + (size_t)i * D, 1, (int)D, m->likelihood,
                             m->gaussian_sigma, 0.0f, &nll, NULL);
        /* log w = log p(x|z) + log p(z) - log q(z|x) with
         *   log p(z)   = -0.5 sum z^2 - (L/2) log 2 pi,
         *   log q(z|x) = -0.5 sum eps^2 - 0.5 sum logvar - (L/2) log 2 pi,
         * since (z - mu) / sigma is eps by construction (used as is: exact, where recomputing it
         * from z would only add rounding) and log sigma = logvar / 2. The (L/2) log 2 pi terms
         * cancel and are left out of both. */
        const float *z = a->z + r * L, *ep = a->eps + r * L;
        double zz = 0, ee = 0;
        for (size_t d = 0; d < L; d++) {
            zz += (double)z[d] * (double)z[d];
            ee += (double)ep[d] * (double)ep[d];
        }
        double lw = -nll - 0.5 * zz + 0.5 * ee + 0.5 * e->lv_sum[i];
        lse_add(&e->lse_max[i], &e->lse_sum[i], lw);
        e->rec_sum[i] += nll;
    }
}

static int cpu_evaluate(cuvae_backend *be, cuvae_set set, const int32_t *idx, int n, int K,
                        uint64_t counter, cuvae_eval_out *out, cuvae_status *st)
{
    cpu_backend *cb = cpu_of(be);
    const cuvae_model *m = &cb->m;
    if ((int)set < 0 || set >= CUVAE_SET_COUNT)
        return cuvae_fail(st, "cpu backend: evaluate: unknown set %d", (int)set);
    if (n <= 0) return cuvae_fail(st, "cpu backend: evaluate: %d examples", n);
    if (K <= 0) return cuvae_fail(st, "cpu backend: evaluate: K = %d, expected at least 1", K);
    const cpu_set *s = &cb->sets[set];
    if (check_indices(s, set, idx, n, "evaluate", st)) return -1;
    if (acts_reserve(cb, MAX_BLOCK, st) || eval_acts_reserve(cb, n, st)) return -1;
    cpu_acts *a = &cb->a;
    cpu_eval_acts *e = &cb->e;
    const int L = m->latent, D = m->x_dim;

    /* Encoder, in blocks of the examples' indices; evaluation never binarizes dynamically. */
    cuvae_cpu_gather(s->pixels, D, idx, n, 0, 0, 0, e->x);
    int64_t block = -1;
    for (int i = 0; i <= n; i++) {
        int64_t b = i < n ? idx[i] / ENC_BLOCK : -1;
        int pos = i < n ? idx[i] % ENC_BLOCK : 0;
        if (block >= 0 && (i == n || b != block || a->owner[pos] >= 0)) {
            encode_block(cb, ENC_BLOCK);
            block = -1;
        }
        if (i == n) break;
        if (block < 0) {
            for (int r = 0; r < ENC_BLOCK; r++) a->owner[r] = -1;
            block = b;
        }
        a->owner[pos] = i;
    }

    /* The closed-form KL through the training op itself (zero noise, no floor), so that it is
     * the same float computation; sigma as the reparameterization computes it. */
    memset(a->eps, 0, (size_t)L * sizeof *a->eps);
    for (int i = 0; i < n; i++) {
        const float *mu = e->enc + (size_t)i * 2 * L, *lv = mu + L;
        cuvae_cpu_reparam_kl_forward(mu, a->eps, 1, L, 0.0f, a->z, &e->kl[i], NULL);
        double lv_sum = 0;
        for (int d = 0; d < L; d++) {
            e->sigma[(size_t)i * L + d] = expf(0.5f * lv[d]);
            lv_sum += (double)lv[d];
        }
        e->lv_sum[i] = lv_sum;
        e->lse_max[i] = -INFINITY;
        e->lse_sum[i] = 0.0;
        e->rec_sum[i] = 0.0;
        if (out->kl) out->kl[i] = e->kl[i];
        if (out->mu) memcpy(out->mu + (size_t)i * L, mu, (size_t)L * sizeof *mu);
        if (out->logvar) memcpy(out->logvar + (size_t)i * L, lv, (size_t)L * sizeof *lv);
    }
    if (!out->neg_elbo && !out->neg_iw && !out->rec) return 0;

    /* Decoder: global rows g = idx*K + k, each example's samples in order of k. */
    const int T = K >= DEC_BLOCK_LARGE_K ? DEC_BLOCK_LARGE_K : DEC_BLOCK_SMALL_K;
    int64_t cur = -1;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < K; k++) {
            uint64_t g = (uint64_t)idx[i] * (uint64_t)K + (uint64_t)k;
            int64_t b = (int64_t)(g / (uint64_t)T);
            int pos = (int)(g % (uint64_t)T);
            if (cur >= 0 && (b != cur || a->owner[pos] >= 0)) {
                decode_block(cb, (uint64_t)cur, T, counter);
                cur = -1;
            }
            if (cur < 0) {
                for (int r = 0; r < T; r++) a->owner[r] = -1;
                cur = b;
            }
            a->owner[pos] = i;
        }
    }
    decode_block(cb, (uint64_t)cur, T, counter);

    for (int i = 0; i < n; i++) {
        double rec = e->rec_sum[i] / (double)K;
        if (out->rec) out->rec[i] = rec;
        if (out->neg_elbo) out->neg_elbo[i] = rec + e->kl[i];
        if (out->neg_iw) out->neg_iw[i] = -(e->lse_max[i] + log(e->lse_sum[i]) - log((double)K));
    }
    return 0;
}

static int cpu_decode(cuvae_backend *be, const float *z, int n, float *x_mean, cuvae_status *st)
{
    cpu_backend *cb = cpu_of(be);
    const cuvae_model *m = &cb->m;
    if (n <= 0) return cuvae_fail(st, "cpu backend: decode: %d latents", n);
    int pass_rows = n < DECODE_ROWS ? n : DECODE_ROWS;
    if (acts_reserve(cb, pass_rows, st)) return -1;
    for (int first = 0; first < n; first += pass_rows) {
        int rows = n - first < pass_rows ? n - first : pass_rows;
        decoder_forward(cb, z + (size_t)first * (size_t)m->latent, rows);
        const float *o = cb->a.dec[m->n_dec - 1];
        float *x = x_mean + (size_t)first * (size_t)m->x_dim;
        size_t count = (size_t)rows * (size_t)m->x_dim;
        if (m->likelihood == CUVAE_LIK_GAUSSIAN) {
            memcpy(x, o, count * sizeof *x);
        } else {
            /* sigmoid without overflow: exp of a non-positive argument only */
            for (size_t j = 0; j < count; j++) {
                float e = expf(-fabsf(o[j]));
                x[j] = (o[j] >= 0.0f ? 1.0f : e) / (1.0f + e);
            }
        }
    }
    return 0;
}

static int cpu_get_state(cuvae_backend *be, cuvae_train_state *out, cuvae_status *st)
{
    (void)st;
    cpu_backend *cb = cpu_of(be);
    size_t bytes = cb->m.n_params * sizeof(float);
    if (out->params) memcpy(out->params, cb->params, bytes);
    if (out->m) memcpy(out->m, cb->adam_m, bytes);
    if (out->v) memcpy(out->v, cb->adam_v, bytes);
    out->adam_t = cb->adam_t;
    return 0;
}

static int cpu_set_state(cuvae_backend *be, const cuvae_train_state *in, cuvae_status *st)
{
    cpu_backend *cb = cpu_of(be);
    if (!in->params) return cuvae_fail(st, "cpu backend: set_state without parameters");
    size_t bytes = cb->m.n_params * sizeof(float);
    memcpy(cb->params, in->params, bytes);
    /* Without optimizer state (eval, sample), Adam starts afresh. */
    if (in->m)
        memcpy(cb->adam_m, in->m, bytes);
    else
        memset(cb->adam_m, 0, bytes);
    if (in->v)
        memcpy(cb->adam_v, in->v, bytes);
    else
        memset(cb->adam_v, 0, bytes);
    cb->adam_t = in->m && in->v ? in->adam_t : 0;
    return 0;
}

static void cpu_describe(cuvae_backend *be, char *buf, size_t len)
{
    cpu_backend *cb = cpu_of(be);
    const double mib = 1.0 / 1048576.0;
    double p = (double)(cb->m.n_params * sizeof(float)) * mib;
    size_t data = 0;
    for (int s = 0; s < CUVAE_SET_COUNT; s++)
        if (cb->sets[s].pixels) data += (size_t)cb->sets[s].n * (size_t)cb->sets[s].d;
    snprintf(buf, len,
             "cpu (OpenBLAS, %d threads): params %.1f MiB, grads %.1f MiB, adam %.1f MiB, "
             "activations %.1f MiB (%d rows), data %.1f MiB",
             openblas_get_num_threads(), p, p, 2 * p, (double)cb->a.bytes * mib, cb->a.rows,
             (double)data * mib);
}

static const cuvae_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .upload = cpu_upload,
    .train_step = cpu_train_step,
    .read_metrics = cpu_read_metrics,
    .evaluate = cpu_evaluate,
    .decode = cpu_decode,
    .get_state = cpu_get_state,
    .set_state = cpu_set_state,
    .describe = cpu_describe,
};

cuvae_backend *cuvae_cpu_backend_create(const cuvae_backend_spec *spec, cuvae_status *st)
{
    if (!spec || !spec->model || !spec->config) {
        cuvae_fail(st, "cpu backend: no model or config given");
        return NULL;
    }
    cpu_backend *cb = cuvae_calloc(1, sizeof *cb, "cpu backend", st);
    if (!cb) return NULL;
    cb->base.ops = &cpu_ops;
    cb->m = *spec->model;
    cb->c = *spec->config;
    metrics_reset(&cb->metrics);
    size_t n = cb->m.n_params;
    cb->params = cuvae_malloc(n * sizeof(float), "parameters", st);
    cb->grads = cuvae_calloc(n, sizeof(float), "gradients", st);
    cb->adam_m = cuvae_calloc(n, sizeof(float), "Adam first moments", st);
    cb->adam_v = cuvae_calloc(n, sizeof(float), "Adam second moments", st);
    if (!cb->params || !cb->grads || !cb->adam_m || !cb->adam_v) goto fail;
    cuvae_model_init(&cb->m, cb->c.train.seed, cb->params);
    /* Training steps of the configured batch allocate nothing. */
    int rows = cb->c.train.batch_size > 0 ? cb->c.train.batch_size : 1;
    if (acts_reserve(cb, rows, st)) goto fail;
    return &cb->base;
fail:
    cpu_destroy(&cb->base);
    return NULL;
}
