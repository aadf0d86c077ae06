/* Evaluation and decoding on the CPU backend: per example the negative ELBO (mean over K samples
 * of -log p(x|z) plus the closed-form KL) and the K-sample importance-weighted bound, computed in
 * canonical blocks (see cpu_backend_impl.h) so that the results do not depend on how examples are
 * batched; and the decoder's means for given latents. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend_impl.h"
#include "cpu_ops.h"
#include "philox.h"

void cuvae_cpu_eval_free(cpu_eval_state *e)
{
    free(e->block);
    memset(e, 0, sizeof *e);
}

/* The table of the evaluation buffers, carved from base (NULL: counting only); returns their size
 * in bytes. */
static size_t eval_table(const cuvae_model *m, cpu_eval_state *e, void *base)
{
    const size_t TE = CPU_ENC_BLOCK, TD = CPU_DEC_BLOCK, L = (size_t)m->latent;
    const size_t D = (size_t)m->x_dim;
    size_t off = 0;
#define CARVE(ptr, count) CPU_CARVE(ptr, count, base, off)
    CARVE(e->enc_x, TE * D);
    for (int i = 0; i < m->enc.n; i++) CARVE(e->enc[i], TE * (size_t)m->enc.layer[i].out);
    CARVE(e->enc_zero, TE * L);
    CARVE(e->enc_z, TE * L);
    for (int j = 0; j < CPU_ENC_MEMO; j++) {
        CARVE(e->memo[j].mu_lv, TE * 2 * L);
        CARVE(e->memo[j].sigma, TE * L);
        CARVE(e->memo[j].kl, TE);
        CARVE(e->memo[j].lv_sum, TE);
    }
    CARVE(e->eps, TD * L);
    CARVE(e->z, TD * L);
    CARVE(e->target, TD * D);
    CARVE(e->target_row, TD);
    for (int i = 0; i < m->dec.n; i++) CARVE(e->dec[i], TD * (size_t)m->dec.layer[i].out);
    size_t scratch =
        cuvae_cpu_stack_scratch(m, CPU_DEC_BLOCK > CPU_ENC_BLOCK ? CPU_DEC_BLOCK : CPU_ENC_BLOCK);
    if (scratch) CARVE(e->scratch, scratch);
    CARVE(e->nll, TD);
    CARVE(e->log_w, TD);
    CARVE(e->row_lv_sum, TD);
    CARVE(e->valid, TD);
#undef CARVE
    return off;
}

size_t cuvae_cpu_eval_bytes(const cuvae_model *m)
{
    cpu_eval_state scratch;
    memset(&scratch, 0, sizeof scratch);
    return eval_table(m, &scratch, NULL);
}

/* The evaluation buffers are fixed in size (blocks), allocated at first use. */
static int eval_reserve(cpu_backend *cb, cuvae_status *st)
{
    cpu_eval_state *e = &cb->e;
    if (e->allocated) return 0;
    size_t bytes = eval_table(&cb->m, e, NULL);
    void *block = cuvae_cpu_alloc(bytes);
    if (!block)
        return cuvae_fail(st,
                          "cpu backend: out of memory allocating evaluation buffers "
                          "(%.1f MiB)",
                          (double)bytes / 1048576.0);
    eval_table(&cb->m, e, block);
    e->block = block;
    memset(e->enc_zero, 0, (size_t)CPU_ENC_BLOCK * (size_t)cb->m.latent * sizeof *e->enc_zero);
    e->allocated = 1;
    e->bytes = bytes;
    return 0;
}

/* Encodes block `block` of the set (examples [block * T, block * T + T), zero rows past the end)
 * into memo. */
static void encode_block(cpu_backend *cb, int set, int64_t block, cpu_enc_memo *memo)
{
    cpu_eval_state *e = &cb->e;
    const cuvae_model *m = &cb->m;
    const cpu_set *s = &cb->sets[set];
    const int T = CPU_ENC_BLOCK, L = m->latent, D = m->x_dim;
    int64_t first = block * T;
    int count = s->n - first < T ? (int)(s->n - first) : T;
    int32_t idx[CPU_ENC_BLOCK];
    for (int r = 0; r < count; r++) idx[r] = (int32_t)(first + r);
    cuvae_cpu_set_gather(s, idx, count, e->enc_x);
    memset(e->enc_x + (size_t)count * D, 0, (size_t)(T - count) * D * sizeof *e->enc_x);
    cuvae_cpu_stack_forward(cb->params, m, 0, e->enc_x, T, e->scratch, e->enc, NULL);
    memcpy(memo->mu_lv, e->enc[m->enc.n - 1], (size_t)T * 2 * L * sizeof *memo->mu_lv);
    /* The closed-form KL through the training op itself (zero noise, no floor): the same float
     * computation as training. */
    cuvae_cpu_reparam_kl_forward(memo->mu_lv, e->enc_zero, T, L, 0.0f, e->enc_z, memo->kl, NULL);
    for (int r = 0; r < T; r++) {
        const float *lv = memo->mu_lv + (size_t)r * 2 * L + L;
        double sum = 0;
        for (int d = 0; d < L; d++) {
            /* exp(logvar / 2) as the reparameterization computes it */
            memo->sigma[(size_t)r * L + d] = cuvae_reparam_sigma(lv[d]);
            sum += (double)lv[d];
        }
        memo->lv_sum[r] = sum;
    }
    memo->generation = cb->generation;
    memo->set = set;
    memo->block = block;
}

/* The encoder block holding example `ex` (from the memo, or encoded now); *row is its row. */
static const cpu_enc_memo *encoded(cpu_backend *cb, int set, int64_t ex, int *row)
{
    cpu_eval_state *e = &cb->e;
    int64_t block = ex / CPU_ENC_BLOCK;
    cpu_enc_memo *hit = NULL, *oldest = &e->memo[0];
    for (int j = 0; j < CPU_ENC_MEMO; j++) {
        cpu_enc_memo *mj = &e->memo[j];
        if (mj->generation == cb->generation && mj->set == set && mj->block == block) hit = mj;
        if (mj->last_use < oldest->last_use) oldest = mj;
    }
    if (!hit) {
        hit = oldest;
        encode_block(cb, set, block, hit);
    }
    hit->last_use = ++e->uses;
    *row = (int)(ex % CPU_ENC_BLOCK);
    return hit;
}

/* Decoder block `block`: rows g = block * T + r are sample k = g % K of example g / K (rows past
 * the set's end are zero and marked invalid). Leaves each row's -log p(x|z) and log w in
 * e->nll and e->log_w. */
static void decode_block(cpu_backend *cb, int set, int64_t block, int K, uint64_t counter)
{
    cpu_eval_state *e = &cb->e;
    if (e->dec_generation == cb->generation && e->dec_set == set && e->dec_block == block &&
        e->dec_K == K && e->dec_counter == counter)
        return;
    const cuvae_model *m = &cb->m;
    const cpu_set *s = &cb->sets[set];
    const int T = CPU_DEC_BLOCK;
    const size_t L = (size_t)m->latent, D = (size_t)m->x_dim;
    const uint64_t g0 = (uint64_t)block * T, n_rows = (uint64_t)s->n * (uint64_t)K;

    /* Noise: a run of valid rows is a run of consecutive elements of the eval stream. */
    for (int r = 0; r < T; r++) e->valid[r] = g0 + (uint64_t)r < n_rows;
    for (int r = 0; r < T;) {
        if (!e->valid[r]) {
            memset(e->eps + r * L, 0, L * sizeof *e->eps);
            r++;
            continue;
        }
        int run = 1;
        while (r + run < T && e->valid[r + run]) run++;
        cuvae_cpu_normal_fill(cb->c.train.seed, CUVAE_STREAM_EVAL, counter, (g0 + (uint64_t)r) * L,
                              e->eps + r * L, (size_t)run * L);
        r += run;
    }
    /* z = mu + sigma * eps (as cuvae_cpu_reparam_kl_forward computes it) and the target x: each
     * example's pixels are gathered once, and its rows point at them (with K = 5000 a block is
     * one or two examples). Rows past the set's end get zeros. */
    int64_t prev = -2;
    float *slot = NULL;
    for (int r = 0; r < T; r++) {
        float *z = e->z + r * L;
        int64_t ex = e->valid[r] ? (int64_t)((g0 + (uint64_t)r) / (uint64_t)K) : -1;
        if (ex != prev) {
            slot = slot ? slot + D : e->target;
            if (ex < 0) {
                memset(slot, 0, D * sizeof *slot);
            } else {
                int32_t one = (int32_t)ex;
                cuvae_cpu_set_gather(s, &one, 1, slot);
            }
            prev = ex;
        }
        e->target_row[r] = slot;
        if (ex < 0) {
            memset(z, 0, L * sizeof *z);
            e->row_lv_sum[r] = 0;
            continue;
        }
        int row;
        const cpu_enc_memo *em = encoded(cb, set, ex, &row);
        const float *mu = em->mu_lv + (size_t)row * 2 * L, *sg = em->sigma + (size_t)row * L;
        const float *ep = e->eps + r * L;
        for (size_t d = 0; d < L; d++) z[d] = mu[d] + sg[d] * ep[d];
        e->row_lv_sum[r] = em->lv_sum[row];
    }
    cuvae_cpu_stack_forward(cb->params, m, 1, e->z, T, e->scratch, e->dec, NULL);
    cuvae_cpu_likelihood_rows_of(e->dec[m->dec.n - 1], e->target_row, T, (int)D, m->likelihood,
                                 m->gaussian_sigma, e->nll);
    for (int r = 0; r < T; r++) {
        /* log w = log p(x|z) + log p(z) - log q(z|x) with
         *   log p(z)   = -0.5 sum z^2 - (L/2) log 2 pi,
         *   log q(z|x) = -0.5 sum eps^2 - 0.5 sum logvar - (L/2) log 2 pi,
         * since (z - mu) / sigma is eps by construction (used as is: exact, where recomputing it
         * from z would only add rounding) and log sigma = logvar / 2. The (L/2) log 2 pi terms
         * cancel and are left out of both. */
        const float *z = e->z + r * L, *ep = e->eps + r * L;
        double zz = 0, ee = 0;
        for (size_t d = 0; d < L; d++) {
            zz += (double)z[d] * (double)z[d];
            ee += (double)ep[d] * (double)ep[d];
        }
        e->log_w[r] = -e->nll[r] - 0.5 * zz + 0.5 * ee + 0.5 * e->row_lv_sum[r];
    }
    e->dec_generation = cb->generation;
    e->dec_set = set;
    e->dec_block = block;
    e->dec_K = K;
    e->dec_counter = counter;
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

int cuvae_cpu_evaluate(cuvae_backend *be, cuvae_set set, const int32_t *idx, int n, int K,
                       uint64_t counter, cuvae_eval_out *out, cuvae_status *st)
{
    cpu_backend *cb = (cpu_backend *)be;
    const int L = cb->m.latent;
    if (eval_reserve(cb, st)) return -1;
    const int decode = out->neg_elbo || out->neg_iw || out->rec;
    const double *nll = cb->e.nll, *log_w = cb->e.log_w;
    for (int i = 0; i < n; i++) {
        int row;
        const cpu_enc_memo *em = encoded(cb, (int)set, idx[i], &row);
        const double kl = em->kl[row];
        if (out->kl) out->kl[i] = kl;
        if (out->mu) memcpy(out->mu + (size_t)i * L, em->mu_lv + (size_t)row * 2 * L, L * 4);
        if (out->logvar)
            memcpy(out->logvar + (size_t)i * L, em->mu_lv + (size_t)row * 2 * L + L, L * 4);
        if (!decode) continue;
        /* The example's samples in order of k, whatever blocks they fall in. */
        double max = -INFINITY, sum = 0, rec = 0;
        uint64_t g = (uint64_t)idx[i] * (uint64_t)K, end = g + (uint64_t)K;
        while (g < end) {
            int64_t block = (int64_t)(g / CPU_DEC_BLOCK);
            uint64_t base = (uint64_t)block * CPU_DEC_BLOCK;
            uint64_t stop = end - base < CPU_DEC_BLOCK ? end - base : CPU_DEC_BLOCK;
            decode_block(cb, (int)set, block, K, counter);
            for (uint64_t r = g - base; r < stop; r++) {
                lse_add(&max, &sum, log_w[r]);
                rec += nll[r];
            }
            g = base + stop;
        }
        rec /= (double)K;
        if (out->rec) out->rec[i] = rec;
        if (out->neg_elbo) out->neg_elbo[i] = rec + kl;
        if (out->neg_iw) out->neg_iw[i] = -(max + log(sum) - log((double)K));
    }
    return 0;
}

int cuvae_cpu_decode(cuvae_backend *be, const float *z, int n, float *x_mean, cuvae_status *st)
{
    cpu_backend *cb = (cpu_backend *)be;
    const cuvae_model *m = &cb->m;
    if (eval_reserve(cb, st)) return -1;
    for (int first = 0; first < n; first += CPU_DEC_BLOCK) {
        int rows = n - first < CPU_DEC_BLOCK ? n - first : CPU_DEC_BLOCK;
        cuvae_cpu_stack_forward(cb->params, m, 1, z + (size_t)first * (size_t)m->latent, rows,
                                cb->e.scratch, cb->e.dec, NULL);
        const float *o = cb->e.dec[m->dec.n - 1];
        float *x = x_mean + (size_t)first * (size_t)m->x_dim;
        size_t count = (size_t)rows * (size_t)m->x_dim;
        if (m->likelihood == CUVAE_LIK_GAUSSIAN) {
            memcpy(x, o, count * sizeof *x);
        } else {
            /* sigmoid without overflow: exp of a non-positive argument only */
            for (size_t j = 0; j < count; j++) {
                x[j] = cuvae_sigmoid_from_e(o[j], expf(-fabsf(o[j])));
            }
        }
    }
    return 0;
}
