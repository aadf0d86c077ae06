/* The CPU backend: the reference implementation of every cuvae_backend entry, on the ops of
 * cpu_ops.c (GEMMs through OpenBLAS, which runs them on all cores). This file holds its state,
 * the data upload, the training step and the optimizer state; cpu_eval.c evaluates and decodes.
 * It owns the flat parameter, gradient and Adam buffers, the uploaded data (bytes or float32)
 * and a table of activation buffers sized for the largest batch seen: a training step allocates
 * nothing.
 *
 * A streamed training set (data.stream, backend.h) is not copied: each step first copies its
 * rows from the uploader's memory (a .npy's mapping) into a staging buffer, then gathers from
 * there with the staged rows' own indices. The binarization's noise is keyed by the batch slot,
 * not the row, so both paths give the same bits. */
#include "backend.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas_info.h"
#include "cpu_backend_impl.h"
#include "cpu_ops.h"
#include "cpu_threads.h"
#include "philox.h"

#define ALIGN 64

void *cuvae_cpu_alloc(size_t bytes)
{
    return aligned_alloc(ALIGN, bytes ? (bytes + ALIGN - 1) / ALIGN * ALIGN : ALIGN);
}

static cpu_backend *cpu_of(cuvae_backend *be)
{
    return (cpu_backend *)be;
}

static void acts_free(cpu_train_acts *a)
{
    free(a->block);
    memset(a, 0, sizeof *a);
}

/* The table of the training activations for `rows` rows, carved from base (NULL: counting only);
 * returns their size in bytes. */
static size_t acts_table(const cuvae_model *m, size_t r, size_t stream_bytes, cpu_train_acts *a,
                         void *base)
{
    size_t off = 0;
#define CARVE(ptr, count) CPU_CARVE(ptr, count, base, off)
    CARVE(a->x, r * (size_t)m->x_dim);
    for (int i = 0; i < m->enc.n; i++) CARVE(a->enc[i], r * (size_t)m->enc.layer[i].out);
    for (int i = 0; i < m->dec.n; i++) CARVE(a->dec[i], r * (size_t)m->dec.layer[i].out);
    CARVE(a->eps, r * (size_t)m->latent);
    CARVE(a->z, r * (size_t)m->latent);
    size_t widest = (size_t)cuvae_model_max_width(m);
    CARVE(a->grad_a, r * widest);
    CARVE(a->grad_b, r * widest);
    size_t scratch = cuvae_cpu_stack_scratch(m, (int)r);
    if (scratch) CARVE(a->scratch, scratch);
    CARVE(a->nll, r);
    CARVE(a->kl, r);
    CARVE(a->kl_floored, r);
    if (stream_bytes) {
        CARVE(a->stage, r * (size_t)m->x_dim * stream_bytes);
        CARVE(a->stage_idx, r);
    }
#undef CARVE
    return off;
}

/* Grows the training activations to at least `rows` rows (never shrinks). Contents are not kept:
 * the step grows them before it writes anything. */
static int acts_reserve(cpu_backend *cb, int rows, cuvae_status *st)
{
    cpu_train_acts *a = &cb->a;
    if (rows <= a->rows) return 0;
    acts_free(a);
    size_t vb = cb->base.stream_train ? (size_t)cb->value_bytes : 0;
    size_t bytes = acts_table(&cb->m, (size_t)rows, vb, a, NULL);
    void *block = cuvae_cpu_alloc(bytes);
    if (!block)
        return cuvae_fail(st,
                          "cpu backend: out of memory allocating activations for a batch of %d "
                          "(%.1f MiB)",
                          rows, (double)bytes / 1048576.0);
    acts_table(&cb->m, (size_t)rows, vb, a, block);
    if (a->stage_idx)
        for (int r = 0; r < rows; r++) a->stage_idx[r] = r;
    a->block = block;
    a->rows = rows;
    a->bytes = bytes;
    return 0;
}

static void cpu_destroy(cuvae_backend *be)
{
    if (!be) return;
    cpu_backend *cb = cpu_of(be);
    acts_free(&cb->a);
    cuvae_cpu_eval_free(&cb->e);
    for (int s = 0; s < CUVAE_SET_COUNT; s++) free(cb->sets[s].owned);
    free(cb->params);
    free(cb->grads);
    free(cb->adam_m);
    free(cb->adam_v);
    free(cb);
}

static size_t value_size(cuvae_dtype t)
{
    return t == CUVAE_DATA_F32 ? sizeof(float) : 1;
}

static int cpu_upload(cuvae_backend *be, cuvae_set set, const cuvae_upload_desc *u,
                      cuvae_status *st)
{
    cpu_backend *cb = cpu_of(be);
    cpu_set *s = &cb->sets[set];
    int borrow = cuvae_backend_streams(be, set);
    if (borrow && value_size(u->dtype) > (size_t)cb->value_bytes)
        return cuvae_fail(st,
                          "cpu backend: upload of float32 values to a training set streamed for "
                          "bytes (the backend spec's upload_value_bytes)");
    uint8_t *copy = NULL;
    if (!borrow) {
        size_t bytes = (size_t)u->n * (size_t)u->d * value_size(u->dtype);
        copy = cuvae_malloc(bytes, "uploaded examples", st);
        if (!copy) return -1;
        if (bytes) memcpy(copy, u->data, bytes);
    }
    free(s->owned);
    s->owned = copy;
    s->pixels = borrow ? u->data : copy;
    s->n = u->n;
    s->d = u->d;
    s->dtype = u->dtype;
    s->dynamic = u->dynamic != 0;
    cb->generation++;
    return 0;
}

void cuvae_cpu_set_gather(const cpu_set *s, const int32_t *idx, int n, float *x)
{
    if (s->dtype == CUVAE_DATA_F32)
        cuvae_cpu_gather_f32(s->pixels, s->d, idx, n, x);
    else
        cuvae_cpu_gather(s->pixels, s->d, idx, n, 0, 0, 0, x);
}

/* The step's input x [B, x_dim]: gathered from the set, or (streamed) from its rows staged. */
static void step_gather(cpu_backend *cb, const cpu_set *s, const cuvae_step *step, float *x)
{
    const int32_t *idx = step->idx;
    const uint8_t *src = s->pixels;
    int B = step->batch;
    if (s->owned == NULL && cb->a.stage) {
        size_t row = (size_t)s->d * value_size(s->dtype);
        for (int b = 0; b < B; b++)
            memcpy(cb->a.stage + (size_t)b * row, src + (size_t)idx[b] * row, row);
        src = cb->a.stage;
        idx = cb->a.stage_idx;
    }
    if (s->dtype == CUVAE_DATA_F32)
        cuvae_cpu_gather_f32(src, s->d, idx, B, x);
    else
        cuvae_cpu_gather(src, s->d, idx, B, s->dynamic, cb->c.train.seed, step->step, x);
}

static int cpu_train_step(cuvae_backend *be, const cuvae_step *step, cuvae_status *st)
{
    cpu_backend *cb = cpu_of(be);
    const cuvae_model *m = &cb->m;
    const cpu_set *s = &cb->sets[CUVAE_SET_TRAIN];
    int B = step->batch, L = m->latent;
    if (acts_reserve(cb, B, st)) return -1;
    cpu_train_acts *a = &cb->a;
    cpu_prof *pf = &cb->prof;
    const float free_bits = cb->c.train.free_bits;

    /* Forward. */
    cuvae_cpu_prof_start(pf);
    step_gather(cb, s, step, a->x);
    cuvae_cpu_prof_mark(pf, CPU_PH_GATHER, 0);
    cuvae_cpu_stack_forward(cb->params, m, 0, a->x, B, a->scratch, a->enc, pf);
    float *enc_out = a->enc[m->enc.n - 1];
    cuvae_cpu_normal_fill(cb->c.train.seed, CUVAE_STREAM_REPARAM, step->step, 0, a->eps,
                          (size_t)B * (size_t)L);
    cuvae_cpu_prof_mark(pf, CPU_PH_NOISE, 0);
    cuvae_cpu_reparam_kl_forward(enc_out, a->eps, B, L, free_bits, a->z, a->kl, a->kl_floored);
    cuvae_cpu_prof_mark(pf, CPU_PH_REPARAM_KL, 0);
    cuvae_cpu_stack_forward(cb->params, m, 1, a->z, B, a->scratch, a->dec, pf);
    cuvae_cpu_likelihood(a->dec[m->dec.n - 1], a->x, B, m->x_dim, m->likelihood, m->gaussian_sigma,
                         1.0f / (float)B, a->nll, a->grad_a);
    cuvae_cpu_prof_mark(pf, CPU_PH_LIKELIHOOD, 0);
    double loss = 0, rec = 0, kl = 0;
    for (int b = 0; b < B; b++) {
        loss += a->nll[b] + (double)step->beta * a->kl_floored[b];
        rec += a->nll[b];
        kl += a->kl[b];
    }
    cuvae_cpu_prof_mark(pf, CPU_PH_LOSS, 0);

    /* Backward: decoder, reparameterization + KL, encoder. Every gradient is written, none
     * accumulated, so nothing needs zeroing. */
    /* The squared gradient norm is summed layer by layer as the backward pass writes them. */
    double sq = 0.0;
    float *dz = cuvae_cpu_stack_backward(cb->params, cb->grads, m, 1, a->dec, a->z, B, a->grad_a,
                                         a->grad_b, a->scratch, 1, &sq, pf);
    float *denc = dz == a->grad_a ? a->grad_b : a->grad_a;
    cuvae_cpu_reparam_kl_backward(enc_out, a->eps, dz, B, L, step->beta / (float)B, free_bits,
                                  denc);
    cuvae_cpu_prof_mark(pf, CPU_PH_REPARAM_KL_BWD, 0);
    cuvae_cpu_stack_backward(cb->params, cb->grads, m, 0, a->enc, a->x, B, denc, dz, a->scratch, 0,
                             &sq, pf);
    double norm = sqrt(sq);
    if (!isfinite(loss) || !isfinite(norm)) {
        /* The update is withheld: parameters and Adam state stay as they were. */
        if (cb->metrics.first_nonfinite_step < 0)
            cb->metrics.first_nonfinite_step = (int64_t)step->step;
        cb->metrics.skipped++;
        cuvae_cpu_prof_end(pf);
        return 0;
    }
    float clip = 1.0f;
    if (cb->c.optim.grad_clip > 0) {
        double f = (double)cb->c.optim.grad_clip / (norm + 1e-6);
        if (f < 1.0) clip = (float)f;
    }
    cb->adam_t++;
    cb->generation++;
    int bad = cuvae_cpu_adam(cb->params, cb->grads, cb->adam_m, cb->adam_v, m->n_params, step->lr,
                             cb->c.optim.beta1, cb->c.optim.beta2, cb->c.optim.eps,
                             cb->c.optim.weight_decay, cb->c.optim.type == CUVAE_OPT_ADAMW,
                             cb->adam_t, clip);
    cuvae_cpu_prof_mark(pf, CPU_PH_ADAM, 0);
    cuvae_cpu_prof_end(pf);
    if (bad) {
        /* Optimizer state that would overflow counts as non-finite: the elements concerned kept
         * their values, the step is counted as withheld (the `stop` policy ends the run before
         * anything is saved; `skip` goes on from finite state). */
        cb->adam_t--;
        if (cb->metrics.first_nonfinite_step < 0)
            cb->metrics.first_nonfinite_step = (int64_t)step->step;
        cb->metrics.skipped++;
        return 0;
    }
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
    (void)st;
    cpu_backend *cb = cpu_of(be);
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
    cb->generation++;
    return 0;
}

static void cpu_describe(cuvae_backend *be, char *buf, size_t len)
{
    cpu_backend *cb = cpu_of(be);
    const double mib = 1.0 / 1048576.0;
    double p = (double)(cb->m.n_params * sizeof(float)) * mib;
    size_t data = 0;
    for (int s = 0; s < CUVAE_SET_COUNT; s++)
        if (cb->sets[s].owned)
            data += (size_t)cb->sets[s].n * (size_t)cb->sets[s].d * value_size(cb->sets[s].dtype);
    char blas[384];
    cuvae_blas_describe(blas, sizeof blas);
    snprintf(buf, len,
             "cpu (%s): params %.1f MiB, grads %.1f MiB, adam %.1f MiB, "
             "activations %.1f MiB (batch of %d, evaluation blocks), data %.1f MiB%s",
             blas, p, p, 2 * p, (double)(cb->a.bytes + cb->e.bytes) * mib, cb->a.rows,
             (double)data * mib,
             cb->base.stream_train ? " (the training set streamed from the data file)" : "");
}

void cuvae_cpu_memory_plan(const cuvae_backend_spec *spec, cuvae_mem_plan *plan)
{
    const cuvae_model *m = spec->model;
    uint64_t p = cuvae_mem_mul(m->n_params, sizeof(float));
    cuvae_mem_add(plan, "parameters", p);
    cuvae_mem_add(plan, "gradients", p);
    cuvae_mem_add(plan, "Adam moments", cuvae_mem_mul(p, 2));
    cpu_train_acts scratch;
    memset(&scratch, 0, sizeof scratch);
    size_t acts = 0;
    int rows = spec->config->train.batch_size > 0 ? spec->config->train.batch_size : 1;
    int vb = spec->upload_value_bytes > 1 ? spec->upload_value_bytes : 1;
    int stream = spec->stream != CUVAE_STREAM_OFF;
    acts = acts_table(m, (size_t)rows, stream ? (size_t)vb : 0, &scratch, NULL);
    cuvae_mem_add(plan, "activations", acts);
    cuvae_mem_add(plan, "activations", cuvae_cpu_eval_bytes(m));
    /* A streamed training set stays in the caller's memory (counted there as data). */
    int64_t rows_up[CUVAE_SET_COUNT];
    for (int s = 0; s < CUVAE_SET_COUNT; s++) rows_up[s] = spec->upload_rows[s];
    if (stream) rows_up[CUVAE_SET_TRAIN] = 0;
    cuvae_mem_add_uploads(plan, rows_up, CUVAE_SET_COUNT, (uint64_t)m->x_dim * (uint64_t)vb);
}

static const cuvae_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .upload = cpu_upload,
    .train_step = cpu_train_step,
    .read_metrics = cpu_read_metrics,
    .evaluate = cuvae_cpu_evaluate,
    .decode = cuvae_cpu_decode,
    .get_state = cpu_get_state,
    .set_state = cpu_set_state,
    .describe = cpu_describe,
    .profile = cuvae_cpu_profile,
};

cuvae_backend *cuvae_cpu_backend_create(const cuvae_backend_spec *spec, cuvae_status *st)
{
    if (!spec || !spec->model || !spec->config) {
        cuvae_fail(st, "cpu backend: no model or config given");
        return NULL;
    }
    for (int half = 0; half < 2; half++) {
        const cuvae_stack *s = cuvae_model_stack(spec->model, half);
        for (int i = 0; i < s->n; i++)
            if (!cuvae_cpu_layer_ops(s->layer[i].kind)) {
                cuvae_fail(st, "cpu backend: %s layer %d: layer kind %d is not implemented",
                           half ? "decoder" : "encoder", i, (int)s->layer[i].kind);
                return NULL;
            }
    }
    cuvae_mem_plan plan = {.n = 0};
    cuvae_cpu_memory_plan(spec, &plan);
    cuvae_mem_merge(&plan, spec->host_needs);
    if (cuvae_mem_check_host(&plan, spec->advice ? spec->advice : CUVAE_MEM_ADVICE, st))
        return NULL;
    cpu_backend *cb = cuvae_calloc(1, sizeof *cb, "cpu backend", st);
    if (!cb) return NULL;
    cb->base.ops = &cpu_ops;
    cb->base.x_dim = spec->model->x_dim;
    /* A copy of the training set gains the CPU nothing: it streams unless told off. */
    cb->base.stream_train = spec->stream != CUVAE_STREAM_OFF;
    cb->value_bytes = spec->upload_value_bytes > 1 ? spec->upload_value_bytes : 1;
    cuvae_cpu_flush_subnormals();
    cb->m = *spec->model;
    cb->c = *spec->config;
    cb->generation = 1;
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
