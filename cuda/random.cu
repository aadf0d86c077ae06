/* Raw Philox words and normals on the device (see random.h). Outputs are written ("="). */
#include "random.h"

#include "device_util.cuh"

#define RANDOM_THREADS 256

static __global__ void philox_words_kernel(uint64_t seed, uint32_t stream_id, uint64_t counter,
                                           uint64_t first, size_t n, uint32_t *out)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = cuvae_dev_philox_word(seed, stream_id, counter, first + i);
}

static __global__ void normal_fill_kernel(uint64_t seed, uint32_t stream_id,
                                          const uint64_t *d_counter, uint64_t first, size_t n,
                                          float *out)
{
    uint64_t counter = *d_counter;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = cuvae_dev_normal(seed, stream_id, counter, first + i);
}

int cuvae_philox_words_forward(cuvae_cuda_ctx *ctx, uint32_t stream_id, uint64_t counter,
                               uint64_t first, size_t n, uint32_t *out, cudaStream_t stream,
                               cuvae_status *st)
{
    if (!out) return cuvae_fail(st, "philox words: a NULL buffer");
    if (stream_id > 0xffffu)
        return cuvae_fail(st, "philox words: stream %u: at most 65535", stream_id);
    if (n == 0) return 0;
    philox_words_kernel<<<cuvae_grid_for(n, RANDOM_THREADS), RANDOM_THREADS, 0, stream>>>(
        ctx->seed, stream_id, counter, first, n, out);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_normal_fill_forward(cuvae_cuda_ctx *ctx, uint32_t stream_id, const uint64_t *d_counter,
                              uint64_t first, size_t n, float *out, cudaStream_t stream,
                              cuvae_status *st)
{
    if (!out || !d_counter) return cuvae_fail(st, "normal fill: a NULL buffer");
    if (stream_id > 0xffffu)
        return cuvae_fail(st, "normal fill: stream %u: at most 65535", stream_id);
    if (n == 0) return 0;
    normal_fill_kernel<<<cuvae_grid_for(n, RANDOM_THREADS), RANDOM_THREADS, 0, stream>>>(
        ctx->seed, stream_id, d_counter, first, n, out);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}
