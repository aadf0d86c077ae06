/* What every CUDA file shares: the context passed to each launcher (stream, cuBLASLt handle and
 * workspace, GEMM precision, the run's seed, the device-side step scalars and training state), the
 * one family of check macros (CUDA_CHECK, CUBLAS_CHECK) that turns a failed call into a
 * cuvae_status naming the statement, file and line, and the device allocation helper.
 *
 * Launchers follow one convention: `int cuvae_<op>_<dir>(ctx, ..., cudaStream_t stream,
 * cuvae_status *st)`, returning 0 when the work is enqueued and -1 (st set) when a precondition
 * fails or the launch is refused. Nothing here synchronizes the device unless it says so. */
#ifndef CUVAE_CUDA_COMMON_H
#define CUVAE_CUDA_COMMON_H

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "config.h"

/* Inputs of one training step, sent by the host with an asynchronous copy from a pinned staging
 * slot and read by the kernels from device memory, so that the host never waits on the device
 * inside a step and a captured step graph reads each replay's values. The batch indices go in a
 * second copy from the same slot to their own device buffer (see cuda_train_step). */
typedef struct {
    uint64_t step; /* keys the binarization and reparameterization noise */
    float lr;      /* this step's learning rate */
    float beta;    /* this step's KL weight */
} cuvae_step_scalars;

/* What one Adam update needs beyond the hyperparameters, computed on the device (optimizer.cu). */
typedef struct {
    int apply;        /* 1: the update goes ahead; 0: withheld (non-finite loss or gradient) */
    float clip_scale; /* gradient factor of the clipping (1: none) */
    float decay;      /* AdamW's parameter factor 1 - lr * weight_decay */
    float neg_step;   /* -lr / (1 - beta1^t) */
    float bc2_sqrt;   /* sqrt(1 - beta2^t) */
} cuvae_adam_factors;

/* The training state that lives on the device: Adam's update count, what the current step found,
 * and the metrics accumulated since the host last read them. */
typedef struct {
    uint64_t adam_t; /* updates applied so far */
    /* The current step, written by its kernels (each field "="). */
    double batch_loss, batch_rec, batch_kl; /* sums over the batch (kl without the floor) */
    int nonfinite;                          /* the batch's loss is NaN or infinite */
    double sum_sq;                          /* squared global gradient norm */
    cuvae_adam_factors adam;                /* this step's update (adam.apply = 0: withheld) */
    int adam_overflow; /* the update of some element was not finite: not stored, step withheld */
    /* Accumulated since the last read_metrics reset ("+="). */
    double loss, rec, kl, grad_norm_sum;
    long long examples, steps, skipped;
    long long first_nonfinite_step; /* -1 when none */
} cuvae_device_state;

typedef struct cuvae_matmul_plan cuvae_matmul_plan; /* cached cuBLASLt GEMM (gemm.cu) */
typedef struct cuvae_conv_plan cuvae_conv_plan;     /* cached cuDNN convolution (conv.cu) */
struct cudnnContext;                                /* cudnnHandle_t, without cudnn.h */

typedef struct {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace; /* cuBLASLt's, workspace_bytes */
    size_t workspace_bytes;
    cuvae_precision precision;
    cublasComputeType_t compute; /* of fp32-input GEMMs, from the precision */
    uint64_t seed;               /* train.seed: keys every random stream */
    int use_epilogues; /* 1: fuse bias, ReLU and their gradients into the GEMMs where cuBLASLt can;
                          0: plain GEMMs and separate kernels (the parity tests compare both) */
    int plan_only;     /* 1: the linear launchers choose and cache their GEMM plans and set the
                          ReLU masks' validity, but enqueue nothing (backend creation) */
    int capturing;     /* 1: inside a CUDA graph capture of the training step (capture_step): a GEMM
                          whose plan is not cached fails instead of choosing an algorithm */
    cuvae_step_scalars *d_step;  /* device: the current step's inputs */
    cuvae_device_state *d_state; /* device: training state and metrics */
    double *d_partials;          /* device: [CUVAE_REDUCE_BLOCKS] partial sums of reductions */
    cuvae_matmul_plan *plans;    /* host: GEMM plan cache (gemm.cu) */
    int n_plans, cap_plans, next_evict;
    int run_refusals;      /* epilogue GEMMs that cublasLtMatmul failed after their plan was chosen
                              (each fell back to the unfused path; counted for describe()) */
    int first_run_refusal; /* cublasStatus_t of the first of them */
    size_t device_bytes;   /* allocated through cuvae_cuda_alloc with this context */
    /* Convolutions (conv.cu): the cuDNN handle, its workspace and the plan cache, all created at
     * the first conv plan (an MLP never loads cuDNN), released with the context. */
    struct cudnnContext *cudnn; /* bound to cudnn_stream */
    cudaStream_t cudnn_stream;
    void *conv_ws; /* CUVAE_CONV_WORKSPACE_BYTES, fixed once: captured graphs point at it */
    size_t conv_ws_bytes;
    cuvae_conv_plan *conv_plans;
    int n_conv_plans, cap_conv_plans, next_conv_evict;
    int conv_nondeterministic; /* conv plans that found no deterministic algorithm (describe()) */
} cuvae_cuda_ctx;

/* Blocks of the first pass of the deterministic two-pass reductions (gradient norm): fixed, so the
 * summation order does not depend on the GPU. */
#define CUVAE_REDUCE_BLOCKS 256
#define CUVAE_REDUCE_THREADS 256

/* cuBLASLt workspace: generous for the largest GEMMs of an MLP. */
#define CUVAE_LT_WORKSPACE_BYTES ((size_t)32 << 20)

/* The one handler behind the check macros: writes "<library> error <name> (<text>) in `<stmt>`
 * at <file>:<line>" into st and returns -1. */
int cuvae_check_failed(cuvae_status *st, const char *library, const char *name, const char *text,
                       const char *stmt, const char *file, int line);
int cuvae_cuda_result(cudaError_t e, cuvae_status *st, const char *stmt, const char *file,
                      int line);
int cuvae_cublas_result(cublasStatus_t s, cuvae_status *st, const char *stmt, const char *file,
                        int line);

/* 0 when the call succeeded, else -1 with st set: for calls whose failure needs cleanup. */
#define CUDA_OK(st, call) cuvae_cuda_result((call), (st), #call, __FILE__, __LINE__)
#define CUBLAS_OK(st, call) cuvae_cublas_result((call), (st), #call, __FILE__, __LINE__)
/* Return -1 from the calling function when the call fails. */
#define CUDA_CHECK(st, call)                                                                       \
    do {                                                                                           \
        if (CUDA_OK(st, call)) return -1;                                                          \
    } while (0)
#define CUBLAS_CHECK(st, call)                                                                     \
    do {                                                                                           \
        if (CUBLAS_OK(st, call)) return -1;                                                        \
    } while (0)
/* After a kernel launch: a refused launch (bad configuration, no device) surfaces here. */
#define CUDA_CHECK_LAUNCH(st) CUDA_CHECK(st, cudaGetLastError())

/* cudaMalloc that names what it allocates: on failure st says "out of GPU memory allocating
 * <what> (<MiB> MiB; <free> MiB of <total> MiB free)". Adds the size to ctx->device_bytes when
 * ctx is not NULL. *p is NULL on failure. */
int cuvae_cuda_alloc(cuvae_cuda_ctx *ctx, void **p, size_t bytes, const char *what,
                     cuvae_status *st);
/* cudaFree of a pointer from cuvae_cuda_alloc (NULL is fine); the size is the one allocated. */
void cuvae_cuda_free(cuvae_cuda_ctx *ctx, void *p, size_t bytes);

/* Sets up the context on the current device for precision fp32, tf32 or bf16: stream, cuBLASLt
 * handle, workspace, the device-side scalars (zeroed; first_nonfinite_step = -1). ctx->compute is
 * the compute type of fp32-input GEMMs: CUBLAS_COMPUTE_32F_FAST_TF32 under tf32,
 * CUBLAS_COMPUTE_32F under fp32 and bf16 (where the training step's GEMMs take bf16 inputs,
 * layers.h, and evaluation and decoding keep fp32 inputs). The workspace is fixed here, once,
 * so that captured graphs can keep pointing at it. On failure everything created so far is
 * released. */
int cuvae_cuda_ctx_init(cuvae_cuda_ctx *ctx, cuvae_precision precision, uint64_t seed,
                        cuvae_status *st);
/* Releases what cuvae_cuda_ctx_init created (and the GEMM plans); safe on a zeroed context. */
void cuvae_cuda_ctx_release(cuvae_cuda_ctx *ctx);

/* Grid size for n items at `threads` per block, capped so grid-stride loops cover the rest. */
int cuvae_grid_for(size_t n, int threads);

/* Bytes as MiB, for messages and describe(). */
static inline double cuvae_mib(size_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

#endif
