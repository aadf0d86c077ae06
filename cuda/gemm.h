/* One cuBLASLt GEMM, D = op(A) . op(B) with an optional epilogue, through the context's plan
 * cache: the descriptor, the layouts and the algorithm (cublasLtMatmulAlgoGetHeuristic) are built
 * the first time a GEMM of a given shape, data types, epilogue and pointer alignment runs, then
 * reused, so a training step of a fixed batch size chooses its algorithms once. The linear layers
 * (linear.cu, for every operand type) are written on top of it; nothing else calls cuBLASLt.
 *
 * Matrices are column-major as cuBLASLt sees them (see linear.cu for how the row-major batches
 * map onto them). A and B are fp32 or bf16 (both the same), D is fp32 or bf16; accumulation is
 * fp32 (CUBLAS_COMPUTE_32F, or ctx->compute for fp32 inputs, which is the tf32 mode under
 * train.precision = tf32). The epilogue's bias vector has D's type (cuBLASLt's default), the bias
 * gradient of BGRADB / DRELU_BGRAD likewise. Output D is written (beta = 0). */
#ifndef CUVAE_CUDA_GEMM_H
#define CUVAE_CUDA_GEMM_H

#include "cuda_common.h"

typedef struct {
    int epilogue; /* cublasLtEpilogue_t */
    cublasOperation_t ta, tb;
    int m, n, k; /* op(A) [m, k], op(B) [k, n], D [m, n] */
    const void *A;
    cudaDataType_t a_type;
    int64_t lda;
    const void *B;
    cudaDataType_t b_type;
    int64_t ldb;
    void *D;
    cudaDataType_t d_type;
    int64_t ldd;
    const void *bias; /* bias (BIAS epilogues) or bias gradient (BGRAD epilogues); may be NULL */
    const void *aux;  /* ReLU bit-mask (RELU_AUX_BIAS writes it, DRELU reads it); may be NULL */
    int64_t aux_ld;   /* bits per column of the mask */
} cuvae_gemm;

/* Enqueues g when cuBLASLt has an algorithm for it: *done = 1. A missing algorithm for an
 * epilogue, or cublasLtMatmul refusing an epilogue plan, is not an error (*done = 0, remembered:
 * the caller falls back to a plain GEMM and kernels); a plain GEMM without an algorithm is. With
 * ctx->plan_only set the plan is chosen and nothing is enqueued. With ctx->capturing set, a plan
 * that was not chosen before fails (algorithm selection never happens inside a graph capture). */
int cuvae_gemm_try(cuvae_cuda_ctx *ctx, const cuvae_gemm *g, int *done, cudaStream_t stream,
                   cuvae_status *st);

/* Name of an epilogue for messages ("RELU_AUX_BIAS"). */
const char *cuvae_epilogue_name(int epilogue);

/* The cached GEMM plans, for describe(): how many run, how many of those fuse an epilogue, how
 * many epilogues cuBLASLt did not offer or did not run (their layers fall back to plain GEMMs and
 * kernels), and how many of those refusals came with an error status rather than "not supported"
 * (a sign of a bad argument, not of a missing kernel), with the first such status; of the
 * refusals, how many came from cublasLtMatmul itself after the plan was chosen, with the first
 * one's status. */
typedef struct {
    int plans, fused, unfused, errors, first_error;
    int run_refusals, first_run_refusal;
} cuvae_plan_stats;
void cuvae_linear_plan_stats(const cuvae_cuda_ctx *ctx, cuvae_plan_stats *s);

#endif
