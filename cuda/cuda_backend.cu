/* The CUDA backend: every cuvae_backend entry on the device, matching the CPU reference
 * (host/cpu/cpu_backend.c) entry for entry. Parameters, gradients and Adam's m and v are flat
 * device buffers in the cuvae_model layout; the uploaded sets stay resident as bytes or float32
 * values, except a streamed training set (cuda_backend_stream.cu); the training
 * activations are allocated once for train.batch_size rows, and the training step's GEMM plans
 * are chosen at creation.
 *
 * A training step sends the step scalars and the batch indices with two asynchronous copies from
 * a pinned staging slot and enqueues everything else on the context's stream: the host never
 * waits for the device inside a step. A staging slot is reused only once the copy that read it has
 * run (an event per slot), which can hold the host back only when it is STAGING_SLOTS steps ahead
 * of the device. read_metrics is the one synchronization point of training; evaluate, decode,
 * get_state and set_state synchronize because their results live on the host.
 *
 * With train.cuda_graph, the second full-batch step captures the step's device work (everything
 * after the two copies) as a CUDA graph, and every later one replays it: one launch instead of
 * some forty. The copies stay outside the graph, so a replay reads this step's counter, learning
 * rate, beta and indices.
 *
 * Under train.precision = bf16 the stacks of the step run on bf16 operands (layers.h): a
 * bf16 shadow of the parameters, kept equal to bf16(params) wherever the parameters change (the
 * optimizer refreshes it in the update's pass, creation and set_state convert it afresh), and
 * bf16 copies of the batch, the latents, the hidden activations and the activation gradients. The
 * stacks' last outputs, the losses, every gradient and Adam stay fp32, and evaluation and decoding
 * run in fp32 on the fp32 parameters. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda_backend_impl.h"
#include "cuda_common.h"
#include "eval.h"
#include "gather.h"
#include "likelihood.h"
#include "layers.h"
#include "optimizer.h"
#include "reparam_kl.h"

static const char *set_name(cuvae_set set)
{
    return set == CUVAE_SET_TRAIN ? "training" : set == CUVAE_SET_VALID ? "validation" : "test";
}

/* Waits for the stream; a failure of anything enqueued before surfaces here. */
int cuvae_cuda_backend_sync(cuda_backend *cb, const char *what, cuvae_status *st)
{
    if (CUDA_OK(st, cudaStreamSynchronize(cb->ctx.stream)))
        return cuvae_fail_prefix(st, "cuda backend: %s", what);
    return 0;
}

/* ---- the training step ----------------------------------------------------------------------- */

/* The stacks' forward and backward passes of a training step of B rows, one path in the step's
 * operand type (layers.h): fp32 (or tf32), or bf16 on the bf16 copies of the stacks' inputs, of
 * the hidden activations and of the activation gradients. The stacks take and give fp32 at their
 * ends, so each makes the operand copy of its fp32 input (or output gradient) itself. The forward
 * also settles whether each ReLU mask comes from cuBLASLt. With ctx.plan_only set they only
 * choose the GEMM plans (prepare_plans), the same ones as the step then uses. The forward's
 * scratch for fp32 accumulators (bf16 only) is grad_b: no gradient lives there until the
 * backward. */

/* The stack's input in the operand type: the fp32 input itself, or its operand copy. */
static const void *stack_input(const cuda_backend *cb, int decoder, const float *x)
{
    const void *x_op = decoder ? cb->z_op : cb->x_op; /* NULL under fp32 */
    return x_op ? x_op : x;
}

static int stack_forward(cuda_backend *cb, int decoder, const float *x, int B, cuvae_status *st)
{
    const cuvae_stack *s = cuvae_model_stack(&cb->m, decoder);
    const void *in = stack_input(cb, decoder, x);
    if (cuvae_operand_from_f32(&cb->ctx, cb->op, x, (void *)in, (size_t)B * (size_t)s->layer[0].in,
                               cb->ctx.stream, st) ||
        cuvae_stack_forward(&cb->ctx, cb->op, s->layer, s->n, cb->params, cb->params_op, in, B,
                            cb->act[decoder], cb->grad_b, cb->mask[decoder], cb->ctx.stream, st))
        return cuvae_fail_prefix(st, decoder ? "decoder" : "encoder");
    return 0;
}

/* dy [B, last layer's out] and scratch are the gradient ping-pong; *result as
 * cuvae_stack_backward's. */
static int stack_backward(cuda_backend *cb, int decoder, const float *x, float *dy, float *scratch,
                          int want_dx, float **result, int B, cuvae_status *st)
{
    const cuvae_stack *s = cuvae_model_stack(&cb->m, decoder);
    if (cuvae_operand_from_f32(&cb->ctx, cb->op, dy, cb->dy_op,
                               (size_t)B * (size_t)s->layer[s->n - 1].out, cb->ctx.stream, st) ||
        cuvae_stack_backward(&cb->ctx, cb->op, s->layer, s->n, cb->params, cb->params_op, cb->grads,
                             stack_input(cb, decoder, x), B, cb->act[decoder], cb->mask[decoder],
                             dy, cb->dy_op, scratch, want_dx, result, cb->ctx.stream, st))
        return cuvae_fail_prefix(st, decoder ? "decoder" : "encoder");
    return 0;
}

/* Decoder backward from grad_a, the reparameterization's backward, encoder backward. */
static int network_backward(cuda_backend *cb, int B, int with_reparam, cuvae_status *st)
{
    const cuvae_model *m = &cb->m;
    float *dz = NULL, *discard = NULL;
    /* The decoder's dz comes back in fp32 either way: the reparameterization's backward is fp32. */
    if (stack_backward(cb, 1, cb->z, cb->grad_a, cb->grad_b, 1, &dz, B, st)) return -1;
    float *denc = dz == cb->grad_a ? cb->grad_b : cb->grad_a;
    if (with_reparam && cuvae_reparam_kl_backward(&cb->ctx, stack_output(cb, 0), cb->eps, dz, B,
                                                  m->latent, &cb->ctx.d_step->beta,
                                                  cb->c.train.free_bits, denc, cb->ctx.stream, st))
        return -1;
    return stack_backward(cb, 0, cb->x, denc, dz, 0, &discard, B, st);
}

/* params16 = bf16(params) under bf16, after anything but the optimizer wrote the parameters. */
int cuvae_cuda_backend_refresh_params16(cuda_backend *cb, cuvae_status *st)
{
    return cuvae_operand_from_f32(&cb->ctx, cb->op, cb->params, cb->params_op, cb->m.n_params,
                                  cb->ctx.stream, st);
}

/* Chooses and caches the GEMM plans of a training step of B rows. */
int cuvae_cuda_backend_prepare_plans(cuda_backend *cb, int B, cuvae_status *st)
{
    cb->ctx.plan_only = 1;
    int rc = stack_forward(cb, 0, cb->x, B, st);
    if (!rc) rc = stack_forward(cb, 1, cb->z, B, st);
    if (!rc) rc = network_backward(cb, B, 0, st);
    cb->ctx.plan_only = 0;
    return rc;
}

/* The device work of a training step of B rows, from the gather to Adam, enqueued on the
 * context's stream. Every per-step input (the step counter that keys the noise and the
 * binarization, the learning rate, beta, the batch indices) is read from device memory at fixed
 * addresses, and every GEMM plan was chosen at creation, so the same work can be captured once
 * as a CUDA graph and replayed (capture_step). */
static int enqueue_step(cuda_backend *cb, int B, cuvae_status *st)
{
    const cuvae_model *m = &cb->m;
    cuvae_cuda_ctx *ctx = &cb->ctx;
    const cuda_set *s = &cb->sets[CUVAE_SET_TRAIN];
    cudaStream_t stream = ctx->stream;
    int L = m->latent, D = m->x_dim;
    /* Forward. */
    /* A streamed set's rows are this step's, in order, in stream.batch. */
    int streamed = s->host != NULL;
    if (cuvae_gather_values_forward(ctx, streamed ? cb->stream.batch : s->pixels, s->dtype,
                                    streamed ? B : s->n, D, streamed ? NULL : cb->idx, B,
                                    s->dynamic, &ctx->d_step->step, cb->x, stream, st))
        return -1;
    if (stack_forward(cb, 0, cb->x, B, st)) return -1;
    if (cuvae_reparam_kl_forward(ctx, stack_output(cb, 0), B, L, cb->c.train.free_bits,
                                 &ctx->d_step->step, cb->eps, cb->z, cb->kl, cb->kl_floored, stream,
                                 st))
        return -1;
    if (stack_forward(cb, 1, cb->z, B, st)) return -1;
    if (cuvae_likelihood_forward(ctx, stack_output(cb, 1), cb->x, B, D, 1, m->likelihood,
                                 m->gaussian_sigma, 1.0f / (float)B, cb->nll, cb->grad_a, stream,
                                 st))
        return -1;
    if (cuvae_batch_metrics_forward(ctx, cb->nll, cb->kl, cb->kl_floored, B, &ctx->d_step->beta,
                                    ctx->d_state, stream, st))
        return -1;

    /* Backward: every gradient is written, none accumulated, so nothing needs zeroing. */
    if (network_backward(cb, B, 1, st)) return -1;

    /* Norm, clipping, the non-finite decision and Adam, all on the device; under bf16 the update's
     * pass also refreshes the parameters' bf16 shadow (params16 is NULL otherwise). */
    return cuvae_optimizer_step_bf16(ctx, &cb->hp, cb->params, (cuvae_bf16 *)cb->params_op,
                                     cb->grads, cb->adam_m, cb->adam_v, m->n_params, B, ctx->d_step,
                                     ctx->d_state, stream, st);
}

/* Captures enqueue_step for B rows into cb->step_graph (nothing runs during the capture). A
 * GEMM whose plan is not cached fails the capture (ctx.capturing) instead of choosing one. */
static int capture_step(cuda_backend *cb, int B, cuvae_status *st)
{
    cuvae_cuda_ctx *ctx = &cb->ctx;
    cudaGraph_t graph = NULL;
    CUDA_CHECK(st, cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal));
    ctx->capturing = 1;
    int rc = enqueue_step(cb, B, st);
    ctx->capturing = 0;
    cudaError_t e = cudaStreamEndCapture(ctx->stream, &graph);
    if (rc) {
        if (graph) cudaGraphDestroy(graph);
        return cuvae_fail_prefix(st, "cuda backend: capturing the training step as a graph");
    }
    if (e == cudaSuccess) e = cudaGraphInstantiate(&cb->step_graph, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        cb->step_graph = NULL;
        (void)cudaGetLastError();
        return cuvae_fail(st, "cuda backend: capturing the training step as a graph: %s (%s)",
                          cudaGetErrorString(e), cudaGetErrorName(e));
    }
    return 0;
}

static int cuda_train_step(cuvae_backend *be, const cuvae_step *step, cuvae_status *st)
{
    cuda_backend *cb = cuda_of(be);
    cuvae_cuda_ctx *ctx = &cb->ctx;
    cudaStream_t stream = ctx->stream;
    int B = step->batch; /* > 0, indices checked: the front door's (backend.c) */
    if (B > cb->max_batch)
        return cuvae_fail(st,
                          "cuda backend: train step: batch of %d examples, the backend was "
                          "created for at most %d (train.batch_size)",
                          B, cb->max_batch);

    /* The step's inputs through a pinned slot, reused once the device has read it. */
    staging_slot *slot = &cb->slots[cb->next_slot];
    cb->next_slot = (cb->next_slot + 1) % STAGING_SLOTS;
    if (slot->pending && CUDA_OK(st, cudaEventSynchronize(slot->read)))
        return cuvae_fail_prefix(st, "cuda backend: an earlier training step failed");
    slot->scalars->step = step->step;
    slot->scalars->lr = step->lr;
    slot->scalars->beta = step->beta;
    memcpy(slot->idx, step->idx, sizeof *slot->idx * (size_t)B);
    CUDA_CHECK(st, cudaMemcpyAsync(ctx->d_step, slot->scalars, sizeof *slot->scalars,
                                   cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(st, cudaMemcpyAsync(cb->idx, slot->idx, sizeof *slot->idx * (size_t)B,
                                   cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(st, cudaEventRecord(slot->read, stream));
    slot->pending = 1;
    int streamed = cb->sets[CUVAE_SET_TRAIN].host != NULL;
    if (streamed && cuvae_cuda_stream_step(cb, step, st)) return -1;

    /* The first full-batch step runs directly, so that any GEMM plan its backward needs beyond
     * those chosen at creation is cached before the capture (which may not choose one). */
    if (!cb->c.train.cuda_graph || B != cb->max_batch || (!cb->step_graph && !cb->graph_warm)) {
        cb->graph_warm |= B == cb->max_batch;
        if (enqueue_step(cb, B, st)) return -1;
    } else {
        if (!cb->step_graph && capture_step(cb, B, st)) return -1;
        CUDA_CHECK(st, cudaGraphLaunch(cb->step_graph, stream));
    }
    return streamed ? cuvae_cuda_stream_prefetch(cb, step, st) : 0;
}

/* ---- metrics and state ----------------------------------------------------------------------- */

static int read_device_state(cuda_backend *cb, cuvae_device_state *out, const char *what,
                             cuvae_status *st)
{
    CUDA_CHECK(st, cudaMemcpyAsync(out, cb->ctx.d_state, sizeof *out, cudaMemcpyDeviceToHost,
                                   cb->ctx.stream));
    return cuvae_cuda_backend_sync(cb, what, st);
}

static int write_device_state(cuda_backend *cb, const cuvae_device_state *in, cuvae_status *st)
{
    CUDA_CHECK(st, cudaMemcpyAsync(cb->ctx.d_state, in, sizeof *in, cudaMemcpyHostToDevice,
                                   cb->ctx.stream));
    /* `in` is the caller's stack: the copy must have read it before we return. */
    return cuvae_cuda_backend_sync(cb, "writing the training state", st);
}

static int cuda_read_metrics(cuvae_backend *be, cuvae_metrics *out, int reset, cuvae_status *st)
{
    cuda_backend *cb = cuda_of(be);
    cuvae_device_state s;
    if (read_device_state(cb, &s, "training steps failed on the device", st)) return -1;
    out->loss = s.loss;
    out->rec = s.rec;
    out->kl = s.kl;
    out->grad_norm_sum = s.grad_norm_sum;
    out->examples = s.examples;
    out->steps = s.steps;
    out->skipped = s.skipped;
    out->first_nonfinite_step = s.first_nonfinite_step;
    if (!reset) return 0;
    /* Nothing is in flight after the synchronization, so the copy we hold is current. */
    s.loss = s.rec = s.kl = s.grad_norm_sum = 0.0;
    s.examples = s.steps = s.skipped = 0;
    s.first_nonfinite_step = -1;
    return write_device_state(cb, &s, st);
}

static int cuda_get_state(cuvae_backend *be, cuvae_train_state *out, cuvae_status *st)
{
    cuda_backend *cb = cuda_of(be);
    size_t bytes = cb->m.n_params * sizeof(float);
    cudaStream_t stream = cb->ctx.stream;
    if (out->params)
        CUDA_CHECK(st,
                   cudaMemcpyAsync(out->params, cb->params, bytes, cudaMemcpyDeviceToHost, stream));
    if (out->m)
        CUDA_CHECK(st, cudaMemcpyAsync(out->m, cb->adam_m, bytes, cudaMemcpyDeviceToHost, stream));
    if (out->v)
        CUDA_CHECK(st, cudaMemcpyAsync(out->v, cb->adam_v, bytes, cudaMemcpyDeviceToHost, stream));
    cuvae_device_state s;
    if (read_device_state(cb, &s, "reading the training state", st)) return -1;
    out->adam_t = s.adam_t;
    return 0;
}

static int cuda_set_state(cuvae_backend *be, const cuvae_train_state *in, cuvae_status *st)
{
    cuda_backend *cb = cuda_of(be);
    size_t bytes = cb->m.n_params * sizeof(float);
    cudaStream_t stream = cb->ctx.stream;
    CUDA_CHECK(st, cudaMemcpyAsync(cb->params, in->params, bytes, cudaMemcpyHostToDevice, stream));
    if (cuvae_cuda_backend_refresh_params16(cb, st)) return -1;
    /* Without optimizer state (eval, sample), Adam starts afresh. */
    if (in->m)
        CUDA_CHECK(st, cudaMemcpyAsync(cb->adam_m, in->m, bytes, cudaMemcpyHostToDevice, stream));
    else
        CUDA_CHECK(st, cudaMemsetAsync(cb->adam_m, 0, bytes, stream));
    if (in->v)
        CUDA_CHECK(st, cudaMemcpyAsync(cb->adam_v, in->v, bytes, cudaMemcpyHostToDevice, stream));
    else
        CUDA_CHECK(st, cudaMemsetAsync(cb->adam_v, 0, bytes, stream));
    cuvae_device_state s;
    if (read_device_state(cb, &s, "writing the training state", st)) return -1;
    s.adam_t = in->m && in->v ? in->adam_t : 0;
    return write_device_state(cb, &s, st);
}

/* ---- data, evaluation, decoding -------------------------------------------------------------- */

static int cuda_upload(cuvae_backend *be, cuvae_set set, const cuvae_upload_desc *u,
                       cuvae_status *st)
{
    cuda_backend *cb = cuda_of(be);
    cuda_set *s = &cb->sets[set];
    /* The old copy goes first, so a replacement does not need room for both. */
    if (cuvae_cuda_backend_sync(cb, "before an upload", st)) return -1;
    /* A captured step holds the training set's address, size and binarization: capture anew. */
    if (set == CUVAE_SET_TRAIN) {
        if (cb->step_graph) cudaGraphExecDestroy(cb->step_graph);
        cb->step_graph = NULL;
        cb->graph_warm = 0; /* a direct step first again: evaluation may have evicted its plans */
    }
    cuvae_cuda_free(&cb->ctx, s->pixels, s->bytes);
    memset(s, 0, sizeof *s);
    size_t value = u->dtype == CUVAE_DATA_F32 ? sizeof(float) : 1;
    size_t row = (size_t)u->d * value, bytes = (size_t)u->n * row;
    if (cuvae_backend_streams(be, set)) {
        /* Borrowed: rows travel per step (cuda_backend_stream.cu). */
        if (cuvae_cuda_stream_alloc(cb, row, st)) return -1;
        /* Rows staged from a set this one replaces are not this set's. */
        cb->stream.ready = -1;
        cb->stream.count[0] = cb->stream.count[1] = 0;
        s->host = (const uint8_t *)u->data;
    } else {
        char what[64];
        snprintf(what, sizeof what, "the %s set", set_name(set));
        if (cuvae_cuda_alloc(&cb->ctx, &s->pixels, bytes, what, st)) return -1;
        s->bytes = bytes;
        if (bytes && CUDA_OK(st, cudaMemcpyAsync(s->pixels, u->data, bytes, cudaMemcpyHostToDevice,
                                                 cb->ctx.stream))) {
            cuvae_cuda_free(&cb->ctx, s->pixels, s->bytes);
            memset(s, 0, sizeof *s);
            return -1;
        }
    }
    s->n = u->n;
    s->d = u->d;
    s->dtype = u->dtype;
    s->dynamic = u->dynamic != 0;
    return cuvae_cuda_backend_sync(cb, "uploading a set", st);
}

/* Makes sure the evaluation buffers hold want_rows rows (the call's examples x K), or as many as
 * the memory budget buys, and at least min_rows (K: one example's samples). Buffers are sized to
 * the call rather than to the budget, so that a validation pass of a few thousand rows does not
 * take gigabytes; they grow when a later call needs more. */
static int eval_reserve(cuda_backend *cb, int64_t want_rows, int min_rows, cuvae_status *st)
{
    if (want_rows < min_rows) want_rows = min_rows;
    if (cb->ev.cap_rows >= want_rows) return 0;
    if (cuvae_cuda_backend_sync(cb, "before allocating evaluation buffers", st)) return -1;
    size_t free_bytes = 0, total = 0;
    if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) {
        (void)cudaGetLastError();
        free_bytes = (size_t)1536 << 20; /* unknown: the 256 MiB budget of before */
    }
    /* What the buffers hold now is freed first, so it counts as free. */
    free_bytes += cb->ev.bytes;
    int rows = cuvae_eval_rows_for(&cb->m, min_rows, cuvae_eval_budget_bytes(free_bytes));
    if (want_rows < rows) rows = (int)want_rows;
    if (rows <= cb->ev.cap_rows) return 0; /* already what the budget buys */
    return cuvae_eval_buffers_alloc(&cb->ctx, &cb->m, rows, &cb->ev, st);
}

static int cuda_evaluate(cuvae_backend *be, cuvae_set set, const int32_t *idx, int n, int K,
                         uint64_t counter, cuvae_eval_out *out, cuvae_status *st)
{
    cuda_backend *cb = cuda_of(be);
    const cuvae_model *m = &cb->m;
    cudaStream_t stream = cb->ctx.stream;
    const cuda_set *s = &cb->sets[set];
    if (s->host)
        return cuvae_fail(st,
                          "cuda backend: evaluate: the %s set is streamed (data.stream): only "
                          "training steps read it",
                          set_name(set));
    int decode = out->neg_elbo || out->neg_iw || out->rec;
    if (eval_reserve(cb, decode ? (int64_t)n * K : (int64_t)n, decode ? K : 1, st)) return -1;
    cuvae_eval_buffers *ev = &cb->ev;
    int per_call = decode ? ev->cap_rows / K : ev->cap_rows;
    int L = m->latent;
    size_t stride = (size_t)ev->cap_rows;
    for (int first = 0; first < n; first += per_call) {
        int nb = n - first < per_call ? n - first : per_call;
        CUDA_CHECK(st, cudaMemcpyAsync(ev->idx, idx + first, sizeof *idx * (size_t)nb,
                                       cudaMemcpyHostToDevice, stream));
        if (cuvae_eval_forward(&cb->ctx, m, cb->params, s->pixels, s->dtype, s->n, nb, K, counter,
                               decode, ev, stream, st))
            return cuvae_fail_prefix(st, "cuda backend");
        size_t dbytes = sizeof(double) * (size_t)nb;
        if (out->neg_elbo)
            CUDA_CHECK(st, cudaMemcpyAsync(out->neg_elbo + first, ev->res, dbytes,
                                           cudaMemcpyDeviceToHost, stream));
        if (out->neg_iw)
            CUDA_CHECK(st, cudaMemcpyAsync(out->neg_iw + first, ev->res + stride, dbytes,
                                           cudaMemcpyDeviceToHost, stream));
        if (out->rec)
            CUDA_CHECK(st, cudaMemcpyAsync(out->rec + first, ev->res + 2 * stride, dbytes,
                                           cudaMemcpyDeviceToHost, stream));
        if (out->kl)
            CUDA_CHECK(st, cudaMemcpyAsync(out->kl + first, ev->kl, dbytes, cudaMemcpyDeviceToHost,
                                           stream));
        /* enc rows are [mu | logvar]: the two halves go to their own [n, L] arrays. */
        size_t row = sizeof(float) * (size_t)L;
        if (out->mu)
            CUDA_CHECK(st,
                       cudaMemcpy2DAsync(out->mu + (size_t)first * (size_t)L, row, ev->enc, 2 * row,
                                         row, (size_t)nb, cudaMemcpyDeviceToHost, stream));
        if (out->logvar)
            CUDA_CHECK(st,
                       cudaMemcpy2DAsync(out->logvar + (size_t)first * (size_t)L, row, ev->enc + L,
                                         2 * row, row, (size_t)nb, cudaMemcpyDeviceToHost, stream));
        /* No wait here: the next pass's kernels are behind these copies on the same stream, so
         * they cannot overwrite what the copies read; one synchronization ends the call. */
    }
    return cuvae_cuda_backend_sync(cb, "evaluation failed on the device", st);
}

static int cuda_decode(cuvae_backend *be, const float *z, int n, float *x_mean, cuvae_status *st)
{
    cuda_backend *cb = cuda_of(be);
    const cuvae_model *m = &cb->m;
    cudaStream_t stream = cb->ctx.stream;
    if (eval_reserve(cb, n, 1, st)) return -1;
    cuvae_eval_buffers *ev = &cb->ev;
    for (int first = 0; first < n; first += ev->cap_rows) {
        int rows = n - first < ev->cap_rows ? n - first : ev->cap_rows;
        CUDA_CHECK(st, cudaMemcpyAsync(ev->z, z + (size_t)first * (size_t)m->latent,
                                       sizeof(float) * (size_t)rows * (size_t)m->latent,
                                       cudaMemcpyHostToDevice, stream));
        if (cuvae_decode_forward(&cb->ctx, m, cb->params, rows, ev, stream, st))
            return cuvae_fail_prefix(st, "cuda backend");
        CUDA_CHECK(st, cudaMemcpyAsync(x_mean + (size_t)first * (size_t)m->x_dim, ev->out,
                                       sizeof(float) * (size_t)rows * (size_t)m->x_dim,
                                       cudaMemcpyDeviceToHost, stream));
        if (cuvae_cuda_backend_sync(cb, "decoding failed on the device", st)) return -1;
    }
    return 0;
}

const cuvae_backend_ops cuvae_cuda_backend_ops = {
    "cuda",
    cuvae_cuda_backend_destroy,
    cuda_upload,
    cuda_train_step,
    cuda_read_metrics,
    cuda_evaluate,
    cuda_decode,
    cuda_get_state,
    cuda_set_state,
    cuvae_cuda_backend_describe,
};
