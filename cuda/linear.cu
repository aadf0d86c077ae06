/* Linear layers on cuBLASLt with fused epilogues (see linear.h). Every output is written ("="):
 * the weight GEMMs run with beta = 0 and the bias gradients are overwritten.
 *
 * Row-major data seen column-major. cuBLASLt is column-major: a row-major matrix M [r, c] with
 * leading dimension c is, in the same memory, the column-major matrix M^T [c, r] (ld = c). So
 *   x  [B, in]  row-major  = X^T  [in, B]   column-major, ld = in
 *   w  [out,in] row-major  = W^T  [in, out] column-major, ld = in
 *   y  [B, out] row-major  = Y^T  [out, B]  column-major, ld = out
 * and each product is written for the transposes, D = op(A) . op(B) with D [m, n]:
 *   forward   Y = X W^T + 1 b^T     <=>  Y^T [out,B] = W [out,in] . X^T [in,B] + b 1^T
 *             A = w (stored W^T, opA = T gives W), B = x (X^T, opB = N);
 *             m = out, n = B, k = in, ldd = out. The epilogue's bias has m = out entries and is
 *             broadcast over the columns (the examples): exactly + b per example.
 *   weights   dW = dY^T X          <=>  dW^T [in,out] = X^T [in,B] . dY [B,out]
 *             A = x (X^T, opA = N), B = dy (stored dY^T, opB = T gives dY);
 *             m = in, n = out, k = B, ldd = in: dW^T column-major is dw [out, in] row-major.
 *             db [out] = sum over the batch of dY = the sums of op(B) over k, one per column of
 *             D: epilogue BGRADB ("bias gradient of B, one per column of D, reduced over k").
 *   input     dX = dY W            <=>  dX^T [in,B] = W^T [in,out] . dY^T [out,B]
 *             A = w (W^T, opA = N), B = dy (dY^T, opB = N); m = in, n = B, k = out, ldd = in.
 *             D has the shape of the previous layer's forward output [in rows, B columns], so the
 *             ReLU mask its forward wrote (RELU_AUX_BIAS, aux ld in bits) applies to it as is:
 *             epilogue DRELU_BGRAD multiplies by the mask and writes the previous layer's bias
 *             gradient (m = in entries, reduced over the n = B columns).
 * Plans (descriptor, layouts, algorithm from cublasLtMatmulAlgoGetHeuristic) are created the
 * first time a GEMM of a given shape, epilogue and pointer alignment runs, then cached in the
 * context, so a training step of a fixed batch size chooses its algorithms once. A plan whose
 * epilogue cuBLASLt does not offer is cached as unsupported and the layer falls back to a plain
 * GEMM plus the small kernels below. */
#include "linear.h"

#include <stdlib.h>
#include <string.h>

#define LINEAR_THREADS 256
#define PLAN_CAPACITY 96

typedef struct {
    int epilogue; /* cublasLtEpilogue_t */
    int transa, transb;
    int m, n, k;
    int64_t lda, ldb, ldd, aux_ld;
    int align_a, align_b, align_d, align_bias, align_aux; /* bytes, at most 256 */
    int compute;
} plan_key;

struct cuvae_matmul_plan {
    plan_key key;
    int supported; /* 0: cuBLASLt has no algorithm for it; the caller falls back */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
};

/* ---- kernels --------------------------------------------------------------------------------- */

/* y [B, out] += b, then ReLU: the epilogue of a plain GEMM. */
static __global__ void bias_act_kernel(float *y, const float *b, size_t total, int out, int relu)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = y[i] + b[i % (size_t)out];
        /* NaN passes through (as on the CPU), so the non-finite check still sees it. */
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

/* db [n] = sum over the B rows of dy [B, n]; one thread per column, rows in order, in double. */
static __global__ void column_sum_kernel(const float *dy, int B, int n, float *db)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    double s = 0.0;
    for (int b = 0; b < B; b++) s += (double)dy[(size_t)b * (size_t)n + (size_t)o];
    db[o] = (float)s;
}

/* dx [B, n] *= (x > 0) (x is the ReLU's output) and, when db is not NULL, db [n] = the column
 * sums of the result; one thread per column, rows in order. */
static __global__ void relu_backward_kernel(float *dx, const float *x, int B, int n, float *db)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    double s = 0.0;
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)b * (size_t)n + (size_t)o;
        float v = x[i] > 0.0f ? dx[i] : 0.0f;
        dx[i] = v;
        s += (double)v;
    }
    if (db) db[o] = (float)s;
}

/* ---- plans ----------------------------------------------------------------------------------- */

static int alignment_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    int al = 1;
    while (al < 256 && !(a & (uintptr_t)al)) al <<= 1;
    return al;
}

static void plan_destroy(cuvae_matmul_plan *p)
{
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    memset(p, 0, sizeof *p);
}

void cuvae_linear_plans_release(cuvae_cuda_ctx *ctx)
{
    for (int i = 0; i < ctx->n_plans; i++) plan_destroy(&ctx->plans[i]);
    free(ctx->plans);
    ctx->plans = NULL;
    ctx->n_plans = ctx->cap_plans = ctx->next_evict = 0;
}

void cuvae_linear_plan_stats(const cuvae_cuda_ctx *ctx, int *plans, int *fused)
{
    int n = 0, f = 0;
    for (int i = 0; i < ctx->n_plans; i++) {
        if (!ctx->plans[i].supported) continue;
        n++;
        if (ctx->plans[i].key.epilogue != CUBLASLT_EPILOGUE_DEFAULT) f++;
    }
    *plans = n;
    *fused = f;
}

static const char *epilogue_name(int e)
{
    switch (e) {
    case CUBLASLT_EPILOGUE_DEFAULT:
        return "DEFAULT";
    case CUBLASLT_EPILOGUE_BIAS:
        return "BIAS";
    case CUBLASLT_EPILOGUE_RELU_BIAS:
        return "RELU_BIAS";
    case CUBLASLT_EPILOGUE_RELU_AUX_BIAS:
        return "RELU_AUX_BIAS";
    case CUBLASLT_EPILOGUE_DRELU:
        return "DRELU";
    case CUBLASLT_EPILOGUE_DRELU_BGRAD:
        return "DRELU_BGRAD";
    case CUBLASLT_EPILOGUE_BGRADB:
        return "BGRADB";
    default:
        return "?";
    }
}

/* Builds the cuBLASLt objects of a plan and asks the heuristic for its algorithm. The bias and
 * aux pointers are set before the heuristic because it reads their alignment from them. Returns
 * -1 on a failure that is not "no algorithm"; p->supported says whether one was found. */
static int plan_build(cuvae_cuda_ctx *ctx, cuvae_matmul_plan *p, const plan_key *key,
                      const void *bias, const void *aux, cuvae_status *st)
{
    memset(p, 0, sizeof *p);
    p->key = *key;
    cublasOperation_t ta = (cublasOperation_t)key->transa, tb = (cublasOperation_t)key->transb;
    cublasLtEpilogue_t epi = (cublasLtEpilogue_t)key->epilogue;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t hs;
    if (CUBLAS_OK(
            st, cublasLtMatmulDescCreate(&p->desc, (cublasComputeType_t)key->compute, CUDA_R_32F)))
        goto fail;
    if (CUBLAS_OK(st, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                     sizeof ta)) ||
        CUBLAS_OK(st, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                     sizeof tb)) ||
        CUBLAS_OK(st, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                     sizeof epi)))
        goto fail;
    if (bias && CUBLAS_OK(st, cublasLtMatmulDescSetAttribute(
                                  p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias)))
        goto fail;
    if (aux) {
        int64_t aux_ld = key->aux_ld;
        if (CUBLAS_OK(st, cublasLtMatmulDescSetAttribute(p->desc,
                                                         CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                         &aux, sizeof aux)) ||
            CUBLAS_OK(st,
                      cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                     &aux_ld, sizeof aux_ld)))
            goto fail;
    }
    /* Stored shapes: op(A) is [m, k], so A is [m, k] when N and [k, m] when T; likewise B. */
    if (CUBLAS_OK(st, cublasLtMatrixLayoutCreate(&p->la, CUDA_R_32F,
                                                 ta == CUBLAS_OP_N ? key->m : key->k,
                                                 ta == CUBLAS_OP_N ? key->k : key->m, key->lda)) ||
        CUBLAS_OK(st, cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_32F,
                                                 tb == CUBLAS_OP_N ? key->k : key->n,
                                                 tb == CUBLAS_OP_N ? key->n : key->k, key->ldb)) ||
        CUBLAS_OK(st, cublasLtMatrixLayoutCreate(&p->ld, CUDA_R_32F, key->m, key->n, key->ldd)))
        goto fail;
    if (CUBLAS_OK(st, cublasLtMatmulPreferenceCreate(&pref))) goto fail;
    {
        size_t ws = ctx->workspace_bytes;
        uint32_t al_a = (uint32_t)key->align_a, al_b = (uint32_t)key->align_b,
                 al_d = (uint32_t)key->align_d;
        if (CUBLAS_OK(st, cublasLtMatmulPreferenceSetAttribute(
                              pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws)) ||
            CUBLAS_OK(st,
                      cublasLtMatmulPreferenceSetAttribute(
                          pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a)) ||
            CUBLAS_OK(st,
                      cublasLtMatmulPreferenceSetAttribute(
                          pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b)) ||
            CUBLAS_OK(st,
                      cublasLtMatmulPreferenceSetAttribute(
                          pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d)) ||
            CUBLAS_OK(st,
                      cublasLtMatmulPreferenceSetAttribute(
                          pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d)))
            goto fail;
    }
    memset(&result, 0, sizeof result);
    hs = cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->la, p->lb, p->ld, p->ld, pref, 1,
                                        &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    pref = NULL;
    if (hs == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
        p->algo = result.algo;
        p->supported = 1;
        return 0;
    }
    /* No algorithm: an epilogue cuBLASLt does not offer for this case is not an error (the layer
     * falls back); a plain GEMM without one is. */
    if (epi != CUBLASLT_EPILOGUE_DEFAULT) {
        p->supported = 0;
        return 0;
    }
    if (hs != CUBLAS_STATUS_SUCCESS && hs != CUBLAS_STATUS_NOT_SUPPORTED)
        return cuvae_cublas_result(hs, st, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    return cuvae_fail(st, "cuBLASLt: no algorithm for a %dx%dx%d fp32 GEMM (ops %c%c)", key->m,
                      key->n, key->k, ta == CUBLAS_OP_N ? 'N' : 'T', tb == CUBLAS_OP_N ? 'N' : 'T');
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    return -1;
}

/* The cached plan for key, built on first use. */
static int plan_get(cuvae_cuda_ctx *ctx, const plan_key *key, const void *bias, const void *aux,
                    cuvae_matmul_plan **out, cuvae_status *st)
{
    *out = NULL;
    for (int i = 0; i < ctx->n_plans; i++) {
        if (memcmp(&ctx->plans[i].key, key, sizeof *key) == 0) {
            *out = &ctx->plans[i];
            return 0;
        }
    }
    if (!ctx->plans) {
        ctx->plans = (cuvae_matmul_plan *)calloc(PLAN_CAPACITY, sizeof *ctx->plans);
        if (!ctx->plans) return cuvae_fail(st, "out of memory allocating the GEMM plan cache");
        ctx->cap_plans = PLAN_CAPACITY;
    }
    cuvae_matmul_plan *p;
    if (ctx->n_plans < ctx->cap_plans) {
        p = &ctx->plans[ctx->n_plans++];
    } else {
        /* Full (many batch sizes seen): replace plans in turn. The GEMMs already enqueued keep
         * what they need; a replaced plan is rebuilt when its shape comes back. */
        p = &ctx->plans[ctx->next_evict];
        ctx->next_evict = (ctx->next_evict + 1) % ctx->cap_plans;
        plan_destroy(p);
    }
    if (plan_build(ctx, p, key, bias, aux, st)) {
        plan_destroy(p);
        p->key = *key;
        p->key.epilogue = -1; /* never matches: the failure is retried, and reported, next time */
        return -1;
    }
    *out = p;
    return 0;
}

static void key_init(plan_key *k, const cuvae_cuda_ctx *ctx, int epilogue, cublasOperation_t ta,
                     cublasOperation_t tb, int m, int n, int kk, int64_t lda, int64_t ldb,
                     int64_t ldd, const void *A, const void *B, const void *D)
{
    memset(k, 0, sizeof *k); /* padding included: keys are compared with memcmp */
    k->epilogue = epilogue;
    k->transa = (int)ta;
    k->transb = (int)tb;
    k->m = m;
    k->n = n;
    k->k = kk;
    k->lda = lda;
    k->ldb = ldb;
    k->ldd = ldd;
    k->align_a = alignment_of(A);
    k->align_b = alignment_of(B);
    k->align_d = alignment_of(D);
    k->compute = (int)ctx->compute;
}

/* D = op(A) . op(B) with the plan's epilogue, the bias (or bias-gradient) and aux pointers set
 * for this call. *refused is set (and 0 returned) when cublasLtMatmul turns an epilogue plan down
 * as not supported, so that the caller can fall back. */
static int plan_run(cuvae_cuda_ctx *ctx, cuvae_matmul_plan *p, const void *A, const void *B,
                    void *D, const void *bias, const void *aux, int *refused, cudaStream_t stream,
                    cuvae_status *st)
{
    *refused = 0;
    if (bias)
        CUBLAS_CHECK(st, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &bias, sizeof bias));
    if (aux)
        CUBLAS_CHECK(st, cublasLtMatmulDescSetAttribute(
                             p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t s =
        cublasLtMatmul(ctx->lt, p->desc, &alpha, A, p->la, B, p->lb, &beta, D, p->ld, D, p->ld,
                       &p->algo, ctx->workspace, ctx->workspace_bytes, stream);
    if (s == CUBLAS_STATUS_NOT_SUPPORTED && p->key.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        *refused = 1;
        return 0;
    }
    return cuvae_cublas_result(s, st, "cublasLtMatmul", __FILE__, __LINE__);
}

/* Runs the GEMM with `epilogue` when cuBLASLt has an algorithm for it. *done says whether it ran;
 * a missing algorithm is not an error. */
static int try_gemm(cuvae_cuda_ctx *ctx, int epilogue, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *D, int64_t ldd, const void *bias, const void *aux, int64_t aux_ld,
                    int *done, cudaStream_t stream, cuvae_status *st)
{
    *done = 0;
    plan_key key;
    key_init(&key, ctx, epilogue, ta, tb, m, n, k, lda, ldb, ldd, A, B, D);
    if (bias) key.align_bias = alignment_of(bias);
    if (aux) {
        key.align_aux = alignment_of(aux);
        key.aux_ld = aux_ld;
    }
    cuvae_matmul_plan *p;
    if (plan_get(ctx, &key, bias, aux, &p, st)) return -1;
    if (!p->supported) return 0;
    if (ctx->plan_only) {
        *done = 1;
        return 0;
    }
    int refused = 0;
    if (plan_run(ctx, p, A, B, D, bias, aux, &refused, stream, st))
        return cuvae_fail_prefix(st, "cuBLASLt %dx%dx%d GEMM, epilogue %s", m, n, k,
                                 epilogue_name(epilogue));
    if (refused) {
        /* The heuristic offered it but the library refuses to run it: remember, fall back. */
        p->supported = 0;
        return 0;
    }
    *done = 1;
    return 0;
}

/* ---- launchers ------------------------------------------------------------------------------- */

size_t cuvae_relu_mask_bytes(int B, int out)
{
    size_t ld_bits = ((size_t)out + 127) / 128 * 128;
    return ld_bits / 8 * (size_t)B;
}

static int check_shape(const char *what, int B, int in, int out, cuvae_status *st)
{
    if (B < 1 || in < 1 || out < 1)
        return cuvae_fail(st, "%s: shape B=%d in=%d out=%d: expected positive sizes", what, B, in,
                          out);
    return 0;
}

int cuvae_linear_forward(cuvae_cuda_ctx *ctx, const float *x, const float *w, const float *b, int B,
                         int in, int out, int relu, float *y, cuvae_relu_mask *mask,
                         cudaStream_t stream, cuvae_status *st)
{
    if (check_shape("linear forward", B, in, out, st)) return -1;
    if (!x || !w || !b || !y) return cuvae_fail(st, "linear forward: a NULL buffer");
    if (mask) {
        mask->valid = 0;
        mask->ld = ((int64_t)out + 127) / 128 * 128;
    }
    int done = 0;
    /* Y^T [out,B] = W [out,in] . X^T [in,B] (see the top comment). */
    if (ctx->use_epilogues) {
        if (relu && mask && mask->bits) {
            if (try_gemm(ctx, CUBLASLT_EPILOGUE_RELU_AUX_BIAS, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in,
                         w, in, x, in, y, out, b, mask->bits, mask->ld, &done, stream, st))
                return -1;
            if (done) {
                mask->valid = 1;
                return 0;
            }
        }
        int epi = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
        if (try_gemm(ctx, epi, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, w, in, x, in, y, out, b, NULL,
                     0, &done, stream, st))
            return -1;
        if (done) return 0;
    }
    if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, w, in, x, in,
                 y, out, NULL, NULL, 0, &done, stream, st))
        return -1;
    if (ctx->plan_only) return 0;
    size_t total = (size_t)B * (size_t)out;
    bias_act_kernel<<<cuvae_grid_for(total, LINEAR_THREADS), LINEAR_THREADS, 0, stream>>>(
        y, b, total, out, relu);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_linear_backward(cuvae_cuda_ctx *ctx, const float *x, const float *w, const float *dy,
                          int B, int in, int out, float *dw, float *db, float *dx, int x_relu,
                          const cuvae_relu_mask *x_mask, float *db_prev, cudaStream_t stream,
                          cuvae_status *st)
{
    if (check_shape("linear backward", B, in, out, st)) return -1;
    if (!x || !w || !dy || !dw) return cuvae_fail(st, "linear backward: a NULL buffer");
    if (db_prev && (!dx || !x_relu))
        return cuvae_fail(st, "linear backward: the previous layer's bias gradient needs dx of a "
                              "ReLU input");
    int done = 0;
    /* dW^T [in,out] = X^T [in,B] . dY [B,out]; db from op(B) by BGRADB. */
    if (db && ctx->use_epilogues) {
        if (try_gemm(ctx, CUBLASLT_EPILOGUE_BGRADB, CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, x, in, dy,
                     out, dw, in, db, NULL, 0, &done, stream, st))
            return -1;
    }
    if (!done) {
        if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, x, in,
                     dy, out, dw, in, NULL, NULL, 0, &done, stream, st))
            return -1;
        if (db && !ctx->plan_only) {
            column_sum_kernel<<<cuvae_grid_for((size_t)out, LINEAR_THREADS), LINEAR_THREADS, 0,
                                stream>>>(dy, B, out, db);
            CUDA_CHECK_LAUNCH(st);
        }
    }
    if (!dx) return 0;
    /* dX^T [in,B] = W^T [in,out] . dY^T [out,B]; the ReLU mask of x has D's shape. */
    done = 0;
    if (x_relu && x_mask && x_mask->valid && ctx->use_epilogues) {
        int epi = db_prev ? CUBLASLT_EPILOGUE_DRELU_BGRAD : CUBLASLT_EPILOGUE_DRELU;
        if (try_gemm(ctx, epi, CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, w, in, dy, out, dx, in,
                     db_prev, x_mask->bits, x_mask->ld, &done, stream, st))
            return -1;
        if (done) return 0;
    }
    if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, w, in, dy,
                 out, dx, in, NULL, NULL, 0, &done, stream, st))
        return -1;
    if (x_relu && !ctx->plan_only) {
        relu_backward_kernel<<<cuvae_grid_for((size_t)in, LINEAR_THREADS), LINEAR_THREADS, 0,
                               stream>>>(dx, x, B, in, db_prev);
        CUDA_CHECK_LAUNCH(st);
    }
    return 0;
}

int cuvae_mlp_forward(cuvae_cuda_ctx *ctx, const cuvae_linear *layers, int n_layers,
                      const float *params, const float *x, int B, float *const *act,
                      cuvae_relu_mask *masks, cudaStream_t stream, cuvae_status *st)
{
    if (n_layers < 1) return cuvae_fail(st, "mlp forward: no layers");
    const float *in = x;
    for (int i = 0; i < n_layers; i++) {
        int relu = i + 1 < n_layers;
        if (cuvae_linear_forward(ctx, in, params + layers[i].w, params + layers[i].b, B,
                                 layers[i].in, layers[i].out, relu, act[i],
                                 relu && masks ? &masks[i] : NULL, stream, st))
            return cuvae_fail_prefix(st, "layer %d", i);
        in = act[i];
    }
    return 0;
}

int cuvae_mlp_backward(cuvae_cuda_ctx *ctx, const cuvae_linear *layers, int n_layers,
                       const float *params, float *grads, const float *x, int B, float *const *act,
                       const cuvae_relu_mask *masks, float *dy, float *scratch, int want_dx,
                       float **result, cudaStream_t stream, cuvae_status *st)
{
    float *dx = scratch;
    int db_done = 0; /* this layer's bias gradient came with the next layer's backward */
    *result = NULL;
    if (n_layers < 1) return cuvae_fail(st, "mlp backward: no layers");
    for (int i = n_layers - 1; i >= 0; i--) {
        const cuvae_linear *l = &layers[i];
        int hidden_input = i > 0;
        int need_dx = hidden_input || want_dx;
        if (cuvae_linear_backward(ctx, hidden_input ? act[i - 1] : x, params + l->w, dy, B, l->in,
                                  l->out, grads + l->w, db_done ? NULL : grads + l->b,
                                  need_dx ? dx : NULL, hidden_input,
                                  hidden_input && masks ? &masks[i - 1] : NULL,
                                  hidden_input ? grads + layers[i - 1].b : NULL, stream, st))
            return cuvae_fail_prefix(st, "layer %d backward", i);
        db_done = hidden_input;
        if (!need_dx) return 0;
        float *t = dy;
        dy = dx;
        dx = t;
    }
    *result = dy;
    return 0;
}
