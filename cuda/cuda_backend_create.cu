/* The CUDA backend's lifetime (see cuda_backend_impl.h): creation (the context, the training
 * buffers for train.batch_size rows, the initial parameters as the CPU backend draws them, the
 * GEMM plans of the step), the description of what it holds, and its release.
 *
 * The training buffers come from one table (buffer_table), as llm.c's tensor specs: a row per
 * buffer with its group, its size derived from the model's layout, the batch and the precision,
 * and where its pointer goes. Each group is one device allocation carved into its rows (each
 * row 256-byte aligned, as cudaMalloc aligns, so the GEMM plans see the alignments they saw with
 * one allocation per buffer); the memory estimate, the allocation, describe() and the release
 * all read the group sizes from the same table, so they agree. */
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "cuda_backend_impl.h"
#include "gemm.h"

/* ---- the buffer table ------------------------------------------------------------------------ */

/* The training step's operand type: bf16 under train.precision = bf16, else fp32 (tf32 is fp32
 * operands with the context's tf32 compute type). */
static cuvae_operand step_operand(cuvae_precision precision)
{
    return precision == CUVAE_PREC_BF16 ? CUVAE_OPERAND_BF16 : CUVAE_OPERAND_F32;
}

#define BUFFER_ALIGN 256
#define MAX_BUFFERS (32 + 4 * CUVAE_MAX_LAYERS)

static const char *const GROUP_NAME[CUDA_BUF_GROUPS] = {"parameters", "gradients", "Adam moments",
                                                        "activations"};

typedef struct {
    cuda_buffer_group group;
    uint64_t bytes; /* saturating (cuvae_mem_mul): an estimate from hostile sizes never wraps */
    void **slot;    /* where the pointer goes; NULL when the table only sizes (the estimate) */
} cuda_buffer;

static void add_row(cuda_buffer *rows, int *k, cuda_buffer_group group, uint64_t bytes, void **slot)
{
    rows[*k].group = group;
    rows[*k].bytes = bytes;
    rows[*k].slot = slot;
    (*k)++;
}

/* The rows of the training buffers of model m for max_batch rows in operand type op (with its
 * operand copies when it is not fp32); slots into cb when it is not NULL. Returns the number of
 * rows. */
static int buffer_table(const cuvae_model *m, int max_batch, cuvae_operand op, cuda_backend *cb,
                        cuda_buffer *rows)
{
    uint64_t B = (uint64_t)max_batch, n = m->n_params, D = (uint64_t)m->x_dim;
    uint64_t L = (uint64_t)m->latent, W = (uint64_t)cuvae_model_max_width(m);
    const uint64_t f32 = sizeof(float), f64 = sizeof(double), o = cuvae_operand_size(op);
    int k = 0;
#define SLOT(field) (cb ? (void **)&cb->field : NULL)
#define ROW(group, bytes, slot) add_row(rows, &k, group, bytes, slot)
    ROW(CUDA_BUF_PARAMS, cuvae_mem_mul(n, f32), SLOT(params));
    ROW(CUDA_BUF_GRADS, cuvae_mem_mul(n, f32), SLOT(grads));
    ROW(CUDA_BUF_ADAM, cuvae_mem_mul(n, f32), SLOT(adam_m));
    ROW(CUDA_BUF_ADAM, cuvae_mem_mul(n, f32), SLOT(adam_v));
    const cuda_buffer_group A = CUDA_BUF_ACTIVATIONS;
    ROW(A, cuvae_mem_mul(B, sizeof(int32_t)), SLOT(idx));          /* batch indices */
    ROW(A, cuvae_mem_mul(cuvae_mem_mul(B, D), f32), SLOT(x));      /* batch inputs */
    ROW(A, cuvae_mem_mul(cuvae_mem_mul(B, L), f32), SLOT(eps));    /* reparameterization noise */
    ROW(A, cuvae_mem_mul(cuvae_mem_mul(B, L), f32), SLOT(z));      /* latents */
    ROW(A, cuvae_mem_mul(cuvae_mem_mul(B, W), f32), SLOT(grad_a)); /* activation gradients */
    ROW(A, cuvae_mem_mul(cuvae_mem_mul(B, W), f32), SLOT(grad_b));
    ROW(A, cuvae_mem_mul(B, f64), SLOT(nll)); /* per-example likelihoods */
    ROW(A, cuvae_mem_mul(B, f64), SLOT(kl));  /* per-example KL */
    ROW(A, cuvae_mem_mul(B, f64), SLOT(kl_floored));
    for (int dec = 0; dec < 2; dec++) {
        const cuvae_stack *s = cuvae_model_stack(m, dec);
        for (int i = 0; i < s->n; i++) {
            const cuvae_layer *l = &s->layer[i];
            uint64_t values = cuvae_mem_mul(B, (uint64_t)l->out);
            /* A layer's output: fp32 for a stack's last layer, else in the operand type. */
            ROW(A, cuvae_mem_mul(values, i + 1 < s->n ? o : f32), SLOT(act[dec][i]));
            if (l->act == CUVAE_ACT_RELU)
                ROW(A, cuvae_relu_mask_bytes(max_batch, l->out), SLOT(mask[dec][i].bits));
        }
    }
    if (op != CUVAE_OPERAND_F32) {
        ROW(A, cuvae_mem_mul(n, o), SLOT(params_op));
        ROW(A, cuvae_mem_mul(cuvae_mem_mul(B, D), o), SLOT(x_op));
        ROW(A, cuvae_mem_mul(cuvae_mem_mul(B, L), o), SLOT(z_op));
        ROW(A, cuvae_mem_mul(cuvae_mem_mul(B, W), o), SLOT(dy_op));
    }
#undef ROW
#undef SLOT
    return k;
}

static uint64_t aligned(uint64_t bytes)
{
    if (bytes > UINT64_MAX - BUFFER_ALIGN) return UINT64_MAX;
    return (bytes + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
}

/* The bytes of each group: its rows, each rounded up to BUFFER_ALIGN. */
static void group_sizes(const cuvae_model *m, int max_batch, cuvae_operand op,
                        uint64_t bytes[CUDA_BUF_GROUPS])
{
    cuda_buffer rows[MAX_BUFFERS];
    int n = buffer_table(m, max_batch, op, NULL, rows);
    for (int g = 0; g < CUDA_BUF_GROUPS; g++) bytes[g] = 0;
    for (int i = 0; i < n; i++)
        bytes[rows[i].group] = cuvae_mem_add_bytes(bytes[rows[i].group], aligned(rows[i].bytes));
}

/* One allocation per group, carved into the table's rows. On failure what was allocated stays in
 * cb->group_mem for release_buffers. */
static int alloc_buffers(cuda_backend *cb, cuvae_status *st)
{
    cuda_buffer rows[MAX_BUFFERS];
    int n = buffer_table(&cb->m, cb->max_batch, cb->op, cb, rows);
    uint64_t bytes[CUDA_BUF_GROUPS];
    group_sizes(&cb->m, cb->max_batch, cb->op, bytes);
    for (int g = 0; g < CUDA_BUF_GROUPS; g++) {
        if (bytes[g] > (uint64_t)SIZE_MAX / 2)
            return cuvae_fail(st, "cuda backend: %s: %llu bytes is beyond any device",
                              GROUP_NAME[g], (unsigned long long)bytes[g]);
        if (cuvae_cuda_alloc(&cb->ctx, &cb->group_mem[g], (size_t)bytes[g], GROUP_NAME[g], st))
            return -1;
        cb->group_bytes[g] = (size_t)bytes[g];
    }
    size_t at[CUDA_BUF_GROUPS] = {0};
    for (int i = 0; i < n; i++) {
        *rows[i].slot = (char *)cb->group_mem[rows[i].group] + at[rows[i].group];
        at[rows[i].group] += (size_t)aligned(rows[i].bytes);
    }
    return 0;
}

static void release_buffers(cuda_backend *cb)
{
    for (int g = 0; g < CUDA_BUF_GROUPS; g++) {
        cuvae_cuda_free(&cb->ctx, cb->group_mem[g], cb->group_bytes[g]);
        cb->group_mem[g] = NULL;
        cb->group_bytes[g] = 0;
    }
}

/* ---- description and release ----------------------------------------------------------------- */

void cuvae_cuda_backend_describe(cuvae_backend *be, char *buf, size_t len)
{
    cuda_backend *cb = cuda_of(be);
    size_t data = 0;
    const size_t *g = cb->group_bytes;
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
    char conv[160] = "";
    if (cb->ctx.cudnn)
        snprintf(conv, sizeof conv, ", %d cuDNN conv plans%s, cuDNN workspace %.1f MiB",
                 cb->ctx.n_conv_plans,
                 cb->ctx.conv_nondeterministic ? " (some without a deterministic algorithm)" : "",
                 cuvae_mib(cb->ctx.conv_ws_bytes));
    snprintf(
        buf, len,
        "cuda (%s, %s, %d of %d GEMM plans with fused epilogues%s%s, step graph %s): params "
        "%.1f MiB, grads %.1f MiB, adam %.1f MiB, activations %.1f MiB (%d rows), "
        "evaluation %.1f MiB (%d rows), data %.1f MiB, cuBLASLt workspace %.1f MiB; %.1f MiB "
        "in all",
        cb->device_name, cuvae_precision_name(cb->ctx.precision), ps.fused, ps.plans, refused, conv,
        !cb->c.train.cuda_graph ? "off"
        : cb->step_graph        ? "captured"
                                : "on, not yet captured",
        cuvae_mib(g[CUDA_BUF_PARAMS]), cuvae_mib(g[CUDA_BUF_GRADS]), cuvae_mib(g[CUDA_BUF_ADAM]),
        cuvae_mib(g[CUDA_BUF_ACTIVATIONS]), cb->max_batch, cuvae_mib(cb->ev.bytes), cb->ev.cap_rows,
        cuvae_mib(data), cuvae_mib(cb->ctx.workspace_bytes), cuvae_mib(cb->ctx.device_bytes));
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
    release_buffers(cb);
    cuvae_cuda_ctx_release(ctx);
    free(cb);
}

static int alloc_training(cuda_backend *cb, cuvae_status *st)
{
    size_t B = (size_t)cb->max_batch;
    /* The forward's fp32 scratch is grad_b, [max_batch, max_width]: what every kind asks fits. */
    for (int dec = 0; dec < 2; dec++) {
        const cuvae_stack *s = cuvae_model_stack(&cb->m, dec);
        if (cuvae_stack_scratch_floats(s->layer, s->n, cb->max_batch, cb->op) >
            B * (size_t)cuvae_model_max_width(&cb->m))
            return cuvae_fail(st, "cuda backend: %s: the layers' scratch exceeds a gradient buffer",
                              dec ? "decoder" : "encoder");
    }
    if (alloc_buffers(cb, st)) return -1;
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

static int has_conv(const cuvae_model *m)
{
    for (int half = 0; half < 2; half++) {
        const cuvae_stack *s = cuvae_model_stack(m, half);
        for (int i = 0; i < s->n; i++)
            if (s->layer[i].kind != CUVAE_LAYER_LINEAR) return 1;
    }
    return 0;
}

/* The memory estimate of the device before anything is allocated on it: the buffer table's
 * groups (what alloc_training takes), the uploads and the smallest evaluation budget. */
static void device_plan(const cuvae_backend_spec *spec, cuvae_mem_plan *plan)
{
    const cuvae_model *m = spec->model;
    int B = spec->config->train.batch_size > 0 ? spec->config->train.batch_size : 1;
    uint64_t bytes[CUDA_BUF_GROUPS];
    group_sizes(m, B, step_operand(spec->config->train.precision), bytes);
    for (int g = 0; g < CUDA_BUF_GROUPS; g++) cuvae_mem_add(plan, GROUP_NAME[g], bytes[g]);
    cuvae_mem_add(plan, "activations", cuvae_eval_budget_bytes(0));
    if (has_conv(m)) cuvae_mem_add(plan, "cuDNN workspace", CUVAE_CONV_WORKSPACE_BYTES);
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
        for (int i = 0; i < s->n; i++) {
            const char *missing = cuvae_cuda_layer_missing(s->layer[i].kind);
            if (missing) {
                cuvae_fail(st, "cuda backend: %s layer %d: %s", half ? "decoder" : "encoder", i,
                           missing);
                return NULL;
            }
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
    cb->op = step_operand(cb->c.train.precision);
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
