/* The CUDA backend's lifetime (see cuda_backend_impl.h): creation (the context, the training
 * buffers for train.batch_size rows, the initial parameters as the CPU backend draws them, the
 * GEMM plans of the step), the description of what it holds, and its release. */
#include <stdlib.h>
#include <string.h>

#include "cuda_backend_impl.h"
#include "gemm.h"

void cuvae_cuda_backend_describe(cuvae_backend *be, char *buf, size_t len)
{
    cuda_backend *cb = cuda_of(be);
    size_t p = cb->m.n_params * sizeof(float), data = 0;
    for (int s = 0; s < CUVAE_SET_COUNT; s++) data += cb->sets[s].bytes;
    cuvae_plan_stats ps;
    cuvae_linear_plan_stats(&cb->ctx, &ps);
    char refused[160] = "", at_run[96] = "";
    if (ps.run_refusals)
        snprintf(at_run, sizeof at_run, ", %d refused at run time (first: %s)", ps.run_refusals,
                 cublasGetStatusName((cublasStatus_t)ps.first_run_refusal));
    if (ps.errors)
        snprintf(refused, sizeof refused, ", %d epilogues refused, %d of them with %s%s",
                 ps.unfused, ps.errors, cublasGetStatusName((cublasStatus_t)ps.first_error),
                 at_run);
    else if (ps.unfused)
        snprintf(refused, sizeof refused, ", %d epilogues refused%s", ps.unfused, at_run);
    snprintf(buf, len,
             "cuda (%s, %s, %d of %d GEMM plans with fused epilogues%s, step graph %s): params "
             "%.1f MiB, grads %.1f MiB, adam %.1f MiB, activations %.1f MiB (%d rows), "
             "evaluation %.1f MiB (%d rows), data %.1f MiB, cuBLASLt workspace %.1f MiB; %.1f MiB "
             "in all",
             cb->device_name, cuvae_precision_name(cb->ctx.precision), ps.fused, ps.plans, refused,
             !cb->c.train.cuda_graph ? "off"
             : cb->step_graph        ? "captured"
                                     : "on, not yet captured",
             cuvae_mib(p), cuvae_mib(p), cuvae_mib(2 * p), cuvae_mib(cb->act_bytes), cb->max_batch,
             cuvae_mib(cb->ev.bytes), cb->ev.cap_rows, cuvae_mib(data),
             cuvae_mib(cb->ctx.workspace_bytes), cuvae_mib(cb->ctx.device_bytes));
}

void cuvae_cuda_backend_destroy(cuvae_backend *be)
{
    if (!be) return;
    cuda_backend *cb = cuda_of(be);
    cuvae_cuda_ctx *ctx = &cb->ctx;
    if (ctx->stream) cudaStreamSynchronize(ctx->stream);
    for (int i = 0; i < STAGING_SLOTS; i++) {
        if (cb->slots[i].read) cudaEventDestroy(cb->slots[i].read);
        if (cb->slots[i].scalars) cudaFreeHost(cb->slots[i].scalars);
    }
    if (cb->step_graph) cudaGraphExecDestroy(cb->step_graph);
    cuvae_eval_buffers_free(ctx, &cb->ev);
    for (int s = 0; s < CUVAE_SET_COUNT; s++) cudaFree(cb->sets[s].pixels);
    float *bufs[] = {cb->params, cb->grads, cb->adam_m, cb->adam_v, cb->x,
                     cb->eps,    cb->z,     cb->grad_a, cb->grad_b};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    for (int i = 0; i < CUVAE_MAX_LAYERS; i++) {
        cudaFree(cb->enc[i]);
        cudaFree(cb->dec[i]);
        cudaFree(cb->enc_mask[i].bits);
        cudaFree(cb->dec_mask[i].bits);
    }
    cuvae_bf16_step_free(&cb->bf16_step);
    cudaFree(cb->idx);
    cudaFree(cb->nll);
    cudaFree(cb->kl);
    cudaFree(cb->kl_floored);
    cuvae_cuda_ctx_release(ctx);
    free(cb);
}

/* Allocates a device buffer counted in the activations' share. */
static int alloc_act(cuda_backend *cb, void **p, size_t bytes, const char *what, cuvae_status *st)
{
    if (cuvae_cuda_alloc(&cb->ctx, p, bytes, what, st)) return -1;
    cb->act_bytes += bytes;
    return 0;
}

static int alloc_training(cuda_backend *cb, cuvae_status *st)
{
    const cuvae_model *m = &cb->m;
    size_t B = (size_t)cb->max_batch, n = m->n_params, L = (size_t)m->latent;
    size_t W = (size_t)cuvae_model_max_width(m);
    if (cuvae_cuda_alloc(&cb->ctx, (void **)&cb->params, n * sizeof(float), "parameters", st) ||
        cuvae_cuda_alloc(&cb->ctx, (void **)&cb->grads, n * sizeof(float), "gradients", st) ||
        cuvae_cuda_alloc(&cb->ctx, (void **)&cb->adam_m, n * sizeof(float), "Adam first moments",
                         st) ||
        cuvae_cuda_alloc(&cb->ctx, (void **)&cb->adam_v, n * sizeof(float), "Adam second moments",
                         st))
        return -1;
    if (alloc_act(cb, (void **)&cb->idx, B * sizeof(int32_t), "batch indices", st) ||
        alloc_act(cb, (void **)&cb->x, B * (size_t)m->x_dim * sizeof(float), "batch inputs", st) ||
        alloc_act(cb, (void **)&cb->eps, B * L * sizeof(float), "reparameterization noise", st) ||
        alloc_act(cb, (void **)&cb->z, B * L * sizeof(float), "latents", st) ||
        alloc_act(cb, (void **)&cb->grad_a, B * W * sizeof(float), "activation gradients", st) ||
        alloc_act(cb, (void **)&cb->grad_b, B * W * sizeof(float), "activation gradients", st) ||
        alloc_act(cb, (void **)&cb->nll, B * sizeof(double), "per-example likelihoods", st) ||
        alloc_act(cb, (void **)&cb->kl, B * sizeof(double), "per-example KL", st) ||
        alloc_act(cb, (void **)&cb->kl_floored, B * sizeof(double), "per-example KL", st))
        return -1;
    for (int dec_half = 0; dec_half < 2; dec_half++) {
        const cuvae_layer *layers = cuvae_model_stack(m, dec_half)->layer;
        int count = cuvae_model_stack(m, dec_half)->n;
        float **acts = dec_half ? cb->dec : cb->enc;
        cuvae_relu_mask *masks = dec_half ? cb->dec_mask : cb->enc_mask;
        for (int i = 0; i < count; i++) {
            /* Under bf16 only the last layer's output is fp32 (the hidden ones are in bf16_step).
             */
            if ((i + 1 == count || !is_bf16(cb)) &&
                alloc_act(cb, (void **)&acts[i], B * (size_t)layers[i].out * sizeof(float),
                          dec_half ? "decoder activations" : "encoder activations", st))
                return -1;
            if (i + 1 < count &&
                alloc_act(cb, &masks[i].bits, cuvae_relu_mask_bytes(cb->max_batch, layers[i].out),
                          "ReLU masks", st))
                return -1;
        }
    }
    if (is_bf16(cb)) {
        if (cuvae_bf16_step_alloc(&cb->ctx, m, cb->max_batch, &cb->bf16_step, st)) return -1;
        cb->act_bytes += cb->bf16_step.bytes;
    }
    for (int i = 0; i < STAGING_SLOTS; i++) {
        staging_slot *slot = &cb->slots[i];
        size_t bytes = sizeof *slot->scalars + B * sizeof(int32_t);
        if (CUDA_OK(st, cudaHostAlloc((void **)&slot->scalars, bytes, cudaHostAllocDefault))) {
            slot->scalars = NULL;
            return cuvae_fail_prefix(st, "cuda backend: pinned staging memory (%zu bytes)", bytes);
        }
        /* The indices follow the scalars (whose size is a multiple of 8). */
        slot->idx = (int32_t *)(slot->scalars + 1);
        CUDA_CHECK(st, cudaEventCreateWithFlags(&slot->read, cudaEventDisableTiming));
    }
    return 0;
}

/* The memory estimate of the device before anything is allocated on it: what alloc_training,
 * the uploads and the smallest evaluation budget take. Under bf16 the step's bf16 buffers are
 * counted as a bf16 parameter copy plus fp32-sized hidden activations (an upper bound). */
static void device_plan(const cuvae_backend_spec *spec, cuvae_mem_plan *plan)
{
    const cuvae_model *m = spec->model;
    uint64_t B =
        (uint64_t)(spec->config->train.batch_size > 0 ? spec->config->train.batch_size : 1);
    uint64_t p = cuvae_mem_mul(m->n_params, sizeof(float));
    cuvae_mem_add(plan, "parameters", p);
    cuvae_mem_add(plan, "gradients", p);
    cuvae_mem_add(plan, "Adam moments", cuvae_mem_mul(p, 2));
    uint64_t per_row = sizeof(int32_t) + 3 * sizeof(double) +
                       sizeof(float) * ((uint64_t)m->x_dim + 2 * (uint64_t)m->latent +
                                        2 * (uint64_t)cuvae_model_max_width(m));
    uint64_t acts = cuvae_mem_mul(B, per_row);
    for (int half = 0; half < 2; half++) {
        const cuvae_layer *layers = cuvae_model_stack(m, half)->layer;
        int count = cuvae_model_stack(m, half)->n;
        for (int i = 0; i < count; i++) {
            acts = cuvae_mem_add_bytes(acts,
                                       cuvae_mem_mul(B * sizeof(float), (uint64_t)layers[i].out));
            if (i + 1 < count)
                acts = cuvae_mem_add_bytes(acts, cuvae_relu_mask_bytes((int)B, layers[i].out));
        }
    }
    if (spec->config->train.precision == CUVAE_PREC_BF16) acts = cuvae_mem_add_bytes(acts, p / 2);
    cuvae_mem_add(plan, "activations", acts);
    cuvae_mem_add(plan, "activations", cuvae_eval_budget_bytes(0));
    cuvae_mem_add_uploads(plan, spec->upload_rows, CUVAE_SET_COUNT, m->x_dim);
}

/* The memory estimate against what the device has free (cudaMemGetInfo, after the context took
 * its share) and, for the host's part (the caller's needs and the initial parameters), against
 * what the machine has. */
static int check_memory(const cuvae_backend_spec *spec, const char *device, cuvae_status *st)
{
    const char *advice = spec->advice ? spec->advice : CUVAE_MEM_ADVICE;
    cuvae_mem_plan host;
    memset(&host, 0, sizeof host);
    cuvae_mem_merge(&host, spec->host_needs);
    cuvae_mem_add(&host, "initial parameters", cuvae_mem_mul(spec->model->n_params, sizeof(float)));
    if (cuvae_mem_check_host(&host, advice, st)) return -1;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0; /* unknown: the allocations report what fails */
    }
    cuvae_mem_plan dev;
    memset(&dev, 0, sizeof dev);
    device_plan(spec, &dev);
    char where[320];
    snprintf(where, sizeof where, "the GPU (%s)", device);
    return cuvae_mem_check(&dev, (uint64_t)free_b, where, "cudaMemGetInfo, free", advice, st);
}

extern "C" cuvae_backend *cuvae_cuda_backend_create(const cuvae_backend_spec *spec,
                                                    cuvae_status *st)
{
    if (!spec || !spec->model || !spec->config) {
        cuvae_fail(st, "cuda backend: no model or config given");
        return NULL;
    }
    for (int half = 0; half < 2; half++) {
        const cuvae_stack *s = cuvae_model_stack(spec->model, half);
        for (int i = 0; i < s->n; i++)
            if (!cuvae_cuda_layer_ops(s->layer[i].kind)) {
                cuvae_fail(st, "cuda backend: %s layer %d: layer kind %d is not implemented",
                           half ? "decoder" : "encoder", i, (int)s->layer[i].kind);
                return NULL;
            }
    }
    char name[256];
    if (!cuvae_cuda_available(name, sizeof name)) {
        cuvae_fail(st, "cuda backend: no usable CUDA device (%s)", name);
        return NULL;
    }
    cuda_backend *cb = (cuda_backend *)cuvae_calloc(1, sizeof *cb, "cuda backend", st);
    if (!cb) return NULL;
    cb->base.ops = &cuvae_cuda_backend_ops;
    cb->base.eval_rows_per_call = CUVAE_CUDA_EVAL_MAX_ROWS; /* passes split by memory */
    cb->base.x_dim = spec->model->x_dim;
    cb->m = *spec->model;
    cb->c = *spec->config;
    snprintf(cb->device_name, sizeof cb->device_name, "%s", name);
    cb->max_batch = cb->c.train.batch_size > 0 ? cb->c.train.batch_size : 1;
    cb->hp.beta1 = cb->c.optim.beta1;
    cb->hp.beta2 = cb->c.optim.beta2;
    cb->hp.eps = cb->c.optim.eps;
    cb->hp.weight_decay = cb->c.optim.weight_decay;
    cb->hp.decoupled = cb->c.optim.type == CUVAE_OPT_ADAMW;
    cb->hp.grad_clip = cb->c.optim.grad_clip;
    if (cuvae_cuda_ctx_init(&cb->ctx, cb->c.train.precision, cb->c.train.seed, st)) {
        free(cb);
        return NULL;
    }
    if (check_memory(spec, name, st)) {
        cuvae_fail_prefix(st, "cuda backend");
        cuvae_cuda_backend_destroy(&cb->base);
        return NULL;
    }
    float *host = NULL;
    size_t bytes = cb->m.n_params * sizeof(float);
    cudaStream_t stream = cb->ctx.stream;
    if (alloc_training(cb, st)) goto fail;
    /* Parameters start where the CPU backend's do: generated on the host, uploaded. */
    host = (float *)cuvae_malloc(bytes, "initial parameters", st);
    if (!host) goto fail;
    cuvae_model_init(&cb->m, cb->c.train.seed, host);
    if (CUDA_OK(st, cudaMemcpyAsync(cb->params, host, bytes, cudaMemcpyHostToDevice, stream)) ||
        CUDA_OK(st, cudaMemsetAsync(cb->grads, 0, bytes, stream)) ||
        CUDA_OK(st, cudaMemsetAsync(cb->adam_m, 0, bytes, stream)) ||
        CUDA_OK(st, cudaMemsetAsync(cb->adam_v, 0, bytes, stream)) ||
        cuvae_cuda_backend_refresh_params16(cb, st))
        goto fail;
    if (cuvae_cuda_backend_sync(cb, "initializing the parameters", st)) goto fail;
    free(host);
    host = NULL;
    if (cuvae_cuda_backend_prepare_plans(cb, cb->max_batch, st)) {
        cuvae_fail_prefix(st, "cuda backend: choosing the GEMM algorithms");
        goto fail;
    }
    return &cb->base;
fail:
    free(host);
    cuvae_cuda_backend_destroy(&cb->base);
    return NULL;
}
