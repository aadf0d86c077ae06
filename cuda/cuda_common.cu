/* The CUDA context, the check handler, device allocation and device detection (see
 * cuda_common.h). */
#include "cuda_common.h"

#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "conv.h"
#include "cuda_arch.h"
#include "linear.h"

/* The file name from __FILE__ with its directory ("cuda/linear.cu"), so messages stay short. */
static const char *short_path(const char *file)
{
    const char *last = strrchr(file, '/');
    if (!last) return file;
    const char *p = last;
    while (p > file && p[-1] != '/') p--;
    return p > file ? p : last + 1;
}

int cuvae_check_failed(cuvae_status *st, const char *library, const char *name, const char *text,
                       const char *stmt, const char *file, int line)
{
    return cuvae_fail(st, "%s error %s (%s) in `%s` at %s:%d", library, name, text, stmt,
                      short_path(file), line);
}

int cuvae_cuda_result(cudaError_t e, cuvae_status *st, const char *stmt, const char *file, int line)
{
    if (e == cudaSuccess) return 0;
    return cuvae_check_failed(st, "CUDA", cudaGetErrorName(e), cudaGetErrorString(e), stmt, file,
                              line);
}

int cuvae_cublas_result(cublasStatus_t s, cuvae_status *st, const char *stmt, const char *file,
                        int line)
{
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    char name[32];
    const char *n;
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
        n = "CUBLAS_STATUS_NOT_INITIALIZED";
        break;
    case CUBLAS_STATUS_ALLOC_FAILED:
        n = "CUBLAS_STATUS_ALLOC_FAILED";
        break;
    case CUBLAS_STATUS_INVALID_VALUE:
        n = "CUBLAS_STATUS_INVALID_VALUE";
        break;
    case CUBLAS_STATUS_ARCH_MISMATCH:
        n = "CUBLAS_STATUS_ARCH_MISMATCH";
        break;
    case CUBLAS_STATUS_MAPPING_ERROR:
        n = "CUBLAS_STATUS_MAPPING_ERROR";
        break;
    case CUBLAS_STATUS_EXECUTION_FAILED:
        n = "CUBLAS_STATUS_EXECUTION_FAILED";
        break;
    case CUBLAS_STATUS_INTERNAL_ERROR:
        n = "CUBLAS_STATUS_INTERNAL_ERROR";
        break;
    case CUBLAS_STATUS_NOT_SUPPORTED:
        n = "CUBLAS_STATUS_NOT_SUPPORTED";
        break;
    default:
        snprintf(name, sizeof name, "status %d", (int)s);
        n = name;
        break;
    }
    const char *text = s == CUBLAS_STATUS_NOT_SUPPORTED ? "operation or configuration not supported"
                       : s == CUBLAS_STATUS_ALLOC_FAILED     ? "out of memory"
                       : s == CUBLAS_STATUS_EXECUTION_FAILED ? "kernel failed to run"
                       : s == CUBLAS_STATUS_INVALID_VALUE    ? "invalid argument"
                                                             : "cuBLAS failure";
    return cuvae_check_failed(st, "cuBLAS", n, text, stmt, file, line);
}

int cuvae_cuda_alloc(cuvae_cuda_ctx *ctx, void **p, size_t bytes, const char *what,
                     cuvae_status *st)
{
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        *p = NULL;
        (void)cudaGetLastError(); /* an allocation failure is not sticky: clear it */
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
            (void)cudaGetLastError();
            return cuvae_fail(st, "out of GPU memory allocating %s (%.1f MiB): %s", what,
                              cuvae_mib(bytes), cudaGetErrorString(e));
        }
        return cuvae_fail(st,
                          "out of GPU memory allocating %s (%.1f MiB; %.1f MiB of %.1f MiB free)",
                          what, cuvae_mib(bytes), cuvae_mib(free_b), cuvae_mib(total_b));
    }
    if (ctx) ctx->device_bytes += bytes;
    return 0;
}

void cuvae_cuda_free(cuvae_cuda_ctx *ctx, void *p, size_t bytes)
{
    if (!p) return;
    cudaFree(p);
    if (ctx && ctx->device_bytes >= bytes) ctx->device_bytes -= bytes;
}

int cuvae_grid_for(size_t n, int threads)
{
    size_t blocks = (n + (size_t)threads - 1) / (size_t)threads;
    if (blocks < 1) blocks = 1;
    /* Enough blocks to fill any current GPU several times; grid-stride loops do the rest. */
    if (blocks > 65536) blocks = 65536;
    return (int)blocks;
}

int cuvae_cuda_ctx_init(cuvae_cuda_ctx *ctx, cuvae_precision precision, uint64_t seed,
                        cuvae_status *st)
{
    memset(ctx, 0, sizeof *ctx);
    if (precision != CUVAE_PREC_FP32 && precision != CUVAE_PREC_TF32 &&
        precision != CUVAE_PREC_BF16)
        return cuvae_fail(st, "train.precision: unknown value %d (expected fp32, tf32 or bf16)",
                          (int)precision);
    ctx->precision = precision;
    /* tf32 rounds the GEMM inputs to 10-bit mantissas on the tensor cores; fp32 keeps IEEE fp32
     * products so the CUDA backend can be compared with the CPU reference at fp32 tolerances.
     * Under bf16 the training step's GEMMs take bf16 operands (fp32 accumulation,
     * CUBLAS_COMPUTE_32F, set per GEMM in gemm.cu; the step's bf16 stacks are layers.h); the
     * GEMMs that keep fp32 operands (evaluation, decoding) compute in full fp32. */
    ctx->compute = precision == CUVAE_PREC_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    ctx->seed = seed;
    ctx->use_epilogues = 1;
    if (CUDA_OK(st, cudaGetDevice(&ctx->device))) goto fail;
    if (CUDA_OK(st, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking))) goto fail;
    if (CUBLAS_OK(st, cublasLtCreate(&ctx->lt))) goto fail;
    ctx->workspace_bytes = CUVAE_LT_WORKSPACE_BYTES;
    if (cuvae_cuda_alloc(ctx, &ctx->workspace, ctx->workspace_bytes, "the cuBLASLt workspace", st))
        goto fail;
    if (cuvae_cuda_alloc(ctx, (void **)&ctx->d_step, sizeof *ctx->d_step, "the step scalars", st))
        goto fail;
    if (cuvae_cuda_alloc(ctx, (void **)&ctx->d_state, sizeof *ctx->d_state, "the training state",
                         st))
        goto fail;
    if (cuvae_cuda_alloc(ctx, (void **)&ctx->d_partials, sizeof(double) * CUVAE_REDUCE_BLOCKS,
                         "the reduction partials", st))
        goto fail;
    {
        cuvae_step_scalars s0;
        memset(&s0, 0, sizeof s0);
        cuvae_device_state d0;
        memset(&d0, 0, sizeof d0);
        d0.first_nonfinite_step = -1;
        d0.adam.apply = 0;
        d0.adam.clip_scale = 1.0f;
        /* On the context's stream: the non-blocking stream does not wait for copies made on the
         * legacy default stream. */
        if (CUDA_OK(st, cudaMemcpyAsync(ctx->d_step, &s0, sizeof s0, cudaMemcpyHostToDevice,
                                        ctx->stream)) ||
            CUDA_OK(st, cudaMemcpyAsync(ctx->d_state, &d0, sizeof d0, cudaMemcpyHostToDevice,
                                        ctx->stream)) ||
            CUDA_OK(st, cudaStreamSynchronize(ctx->stream)))
            goto fail;
    }
    return 0;
fail:
    cuvae_cuda_ctx_release(ctx);
    return -1;
}

void cuvae_cuda_ctx_release(cuvae_cuda_ctx *ctx)
{
    if (ctx->stream) cudaStreamSynchronize(ctx->stream);
    cuvae_linear_plans_release(ctx);
    cuvae_conv_release(ctx);
    cuvae_cuda_free(ctx, ctx->d_partials, sizeof(double) * CUVAE_REDUCE_BLOCKS);
    cuvae_cuda_free(ctx, ctx->d_state, sizeof *ctx->d_state);
    cuvae_cuda_free(ctx, ctx->d_step, sizeof *ctx->d_step);
    cuvae_cuda_free(ctx, ctx->workspace, ctx->workspace_bytes);
    if (ctx->lt) cublasLtDestroy(ctx->lt);
    if (ctx->stream) cudaStreamDestroy(ctx->stream);
    memset(ctx, 0, sizeof *ctx);
}

/* On failure `name` gets the runtime's reason instead (backend.c reports it). */
extern "C" int cuvae_cuda_available(char *name, size_t len)
{
    if (name && len) name[0] = '\0';
    int count = 0;
    /* Any failure of the runtime (no driver, no device, a driver older than the toolkit, a device
     * taken exclusively by another process) means "no GPU": clear it and say why. */
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count < 1) {
        (void)cudaGetLastError();
        if (name && len && e == cudaSuccess) {
            snprintf(name, len, "no device found");
        } else if (name && len) {
            /* Error 35 is also what a machine without any NVIDIA driver gets: say so plainly. */
            const char *why = e == cudaErrorInsufficientDriver
                                  ? "no NVIDIA driver loaded, or one older than this CUDA runtime"
                              : e == cudaErrorNoDevice ? "no CUDA-capable device"
                                                       : cudaGetErrorString(e);
            snprintf(name, len, "%s (%s)", why, cudaGetErrorName(e));
        }
        return 0;
    }
    int dev = 0;
    cudaDeviceProp prop;
    e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, dev);
    /* Creating the primary context is what fails on a device in a prohibited compute mode. */
    if (e == cudaSuccess) e = cudaFree(0);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (name && len) snprintf(name, len, "%s", cudaGetErrorString(e));
        return 0;
    }
    /* A device this build holds no code for would fail at the first kernel launch: say so now,
     * naming both, so that --device auto falls back and --device cuda stops with the reason. */
    if (cuvae_cuda_arch_mismatch(CUVAE_CUDA_ARCHS, prop.name, prop.major, prop.minor, name, len))
        return 0;
    if (name && len) snprintf(name, len, "%s", prop.name);
    return 1;
}
