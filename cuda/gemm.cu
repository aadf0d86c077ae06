/* cuBLASLt GEMMs through a plan cache (see gemm.h). A plan holds the descriptor, the three layouts
 * and the algorithm; its key is everything the heuristic's answer depends on: shape, operations,
 * data types, compute type, epilogue and the alignment of every pointer. The bias and aux
 * pointers are set on the descriptor before each call; cublasLtMatmul reads them when it enqueues
 * (or when a graph capture records) the GEMM, so one plan serves every layer of its shape. */
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

#define PLAN_CAPACITY 96

typedef struct {
    int epilogue; /* cublasLtEpilogue_t; -1 marks a failed build */
    int transa, transb;
    int m, n, k;
    int64_t lda, ldb, ldd, aux_ld;
    int a_type, b_type, d_type;                           /* cudaDataType_t */
    int align_a, align_b, align_d, align_bias, align_aux; /* bytes, at most 256 */
    int compute;
} plan_key;

struct cuvae_matmul_plan {
    plan_key key;
    int supported; /* 0: cuBLASLt has no algorithm for it; the caller falls back */
    int refusal;   /* when not supported: the heuristic's status (or of the matmul that refused) */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
};

static int alignment_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    int al = 1;
    while (al < 256 && !(a & (uintptr_t)al)) al <<= 1;
    return al;
}

static const char *type_name(int t)
{
    return t == CUDA_R_32F ? "fp32" : t == CUDA_R_16BF ? "bf16" : "?";
}

const char *cuvae_epilogue_name(int e)
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

void cuvae_linear_plan_stats(const cuvae_cuda_ctx *ctx, cuvae_plan_stats *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < ctx->n_plans; i++) {
        const cuvae_matmul_plan *p = &ctx->plans[i];
        if (p->key.epilogue < 0) continue; /* a failed build, retried on next use */
        if (p->supported) {
            s->plans++;
            if (p->key.epilogue != CUBLASLT_EPILOGUE_DEFAULT) s->fused++;
        } else {
            s->unfused++;
            if (p->refusal != CUBLAS_STATUS_SUCCESS && p->refusal != CUBLAS_STATUS_NOT_SUPPORTED &&
                s->errors++ == 0)
                s->first_error = p->refusal;
        }
    }
    s->run_refusals = ctx->run_refusals;
    s->first_run_refusal = ctx->first_run_refusal;
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
    cudaDataType_t at = (cudaDataType_t)key->a_type, bt = (cudaDataType_t)key->b_type,
                   dt = (cudaDataType_t)key->d_type;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t hs;
    /* Scale type fp32 (alpha, beta are floats): the one cuBLASLt pairs with CUBLAS_COMPUTE_32F
     * for fp32 and bf16 inputs alike. */
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
    if (CUBLAS_OK(st, cublasLtMatrixLayoutCreate(&p->la, at, ta == CUBLAS_OP_N ? key->m : key->k,
                                                 ta == CUBLAS_OP_N ? key->k : key->m, key->lda)) ||
        CUBLAS_OK(st, cublasLtMatrixLayoutCreate(&p->lb, bt, tb == CUBLAS_OP_N ? key->k : key->n,
                                                 tb == CUBLAS_OP_N ? key->n : key->k, key->ldb)) ||
        CUBLAS_OK(st, cublasLtMatrixLayoutCreate(&p->ld, dt, key->m, key->n, key->ldd)))
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
        /* Anything but NOT_SUPPORTED (say INVALID_VALUE from a bad aux ld) is shown by describe. */
        p->refusal = hs != CUBLAS_STATUS_SUCCESS ? (int)hs
                     : found > 0                 ? (int)result.state
                                                 : (int)CUBLAS_STATUS_NOT_SUPPORTED;
        return 0;
    }
    if (hs != CUBLAS_STATUS_SUCCESS && hs != CUBLAS_STATUS_NOT_SUPPORTED)
        return cuvae_cublas_result(hs, st, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    return cuvae_fail(st,
                      "cuBLASLt: no algorithm for a %dx%dx%d GEMM (ops %c%c, A %s, B %s, D %s, "
                      "alignments %d/%d/%d bytes)",
                      key->m, key->n, key->k, ta == CUBLAS_OP_N ? 'N' : 'T',
                      tb == CUBLAS_OP_N ? 'N' : 'T', type_name(key->a_type), type_name(key->b_type),
                      type_name(key->d_type), key->align_a, key->align_b, key->align_d);
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    return -1;
}

/* The cached plan for key, built on first use (never during a graph capture). */
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
    if (ctx->capturing)
        return cuvae_fail(st,
                          "cuBLASLt: the plan of a %dx%dx%d GEMM (epilogue %s) was not chosen "
                          "before the CUDA graph capture",
                          key->m, key->n, key->k, cuvae_epilogue_name(key->epilogue));
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

int cuvae_gemm_try(cuvae_cuda_ctx *ctx, const cuvae_gemm *g, int *done, cudaStream_t stream,
                   cuvae_status *st)
{
    *done = 0;
    plan_key key;
    memset(&key, 0, sizeof key); /* padding included: keys are compared with memcmp */
    key.epilogue = g->epilogue;
    key.transa = (int)g->ta;
    key.transb = (int)g->tb;
    key.m = g->m;
    key.n = g->n;
    key.k = g->k;
    key.lda = g->lda;
    key.ldb = g->ldb;
    key.ldd = g->ldd;
    key.a_type = (int)g->a_type;
    key.b_type = (int)g->b_type;
    key.d_type = (int)g->d_type;
    key.align_a = alignment_of(g->A);
    key.align_b = alignment_of(g->B);
    key.align_d = alignment_of(g->D);
    /* bf16 inputs always accumulate in fp32; fp32 inputs follow the precision (fp32 or tf32). */
    key.compute = g->a_type == CUDA_R_16BF ? (int)CUBLAS_COMPUTE_32F : (int)ctx->compute;
    if (g->bias) key.align_bias = alignment_of(g->bias);
    if (g->aux) {
        key.align_aux = alignment_of(g->aux);
        key.aux_ld = g->aux_ld;
    }
    cuvae_matmul_plan *p;
    if (plan_get(ctx, &key, g->bias, g->aux, &p, st)) return -1;
    if (!p->supported) return 0;
    if (ctx->plan_only) {
        *done = 1;
        return 0;
    }
    if (g->bias)
        CUBLAS_CHECK(st, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &g->bias, sizeof g->bias));
    if (g->aux)
        CUBLAS_CHECK(st, cublasLtMatmulDescSetAttribute(p->desc,
                                                        CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                        &g->aux, sizeof g->aux));
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t s =
        cublasLtMatmul(ctx->lt, p->desc, &alpha, g->A, p->la, g->B, p->lb, &beta, g->D, p->ld, g->D,
                       p->ld, &p->algo, ctx->workspace, ctx->workspace_bytes, stream);
    if (s != CUBLAS_STATUS_SUCCESS && g->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        /* The heuristic offered it but the library does not run it (whatever the status: the
         * plain GEMM and kernels compute the same): remember, count, fall back. */
        p->supported = 0;
        p->refusal = (int)s;
        if (ctx->run_refusals++ == 0) ctx->first_run_refusal = (int)s;
        return 0;
    }
    if (cuvae_cublas_result(s, st, "cublasLtMatmul", __FILE__, __LINE__))
        return cuvae_fail_prefix(st, "cuBLASLt %dx%dx%d GEMM (%s), epilogue %s", g->m, g->n, g->k,
                                 type_name(key.a_type), cuvae_epilogue_name(g->epilogue));
    *done = 1;
    return 0;
}
