/* The batch gather with scaling or dynamic binarization, or of float32 values as they are (see
 * gather.h). Writes x ("="). A NULL idx gathers rows 0..batch-1 (a streamed batch's staged rows).
 */
#include "gather.h"

#include "device_util.cuh"
#include "twin_math.h"

#define GATHER_THREADS 256

/* x [batch, d] = pixels[idx[b], p] / 255, one element a thread. */
static __global__ void gather_scale_kernel(const uint8_t *pixels, int d, const int32_t *idx,
                                           size_t total, float *x)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t b = e / (size_t)d, p = e % (size_t)d;
        size_t row = idx ? (size_t)idx[b] : b;
        x[e] = cuvae_byte_to_unit(pixels[row * (size_t)d + p]);
    }
}

/* x [batch, d] = values[idx[b], p], float32 as they are, one element a thread. */
static __global__ void gather_f32_kernel(const float *values, int d, const int32_t *idx,
                                         size_t total, float *x)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t b = e / (size_t)d, p = e % (size_t)d;
        size_t row = idx ? (size_t)idx[b] : b;
        x[e] = values[row * (size_t)d + p];
    }
}

/* x [batch, d] in {0, 1}: element e = b*d + p takes word e % 4 of Philox block e / 4 of
 * (seed, CUVAE_STREAM_BINARIZE, step); one block of four elements a thread, so each block is
 * drawn once. */
static __global__ void gather_binarize_kernel(const uint8_t *pixels, int d, const int32_t *idx,
                                              size_t total, uint64_t seed, const uint64_t *d_step,
                                              float *x)
{
    uint64_t step = *d_step;
    size_t blocks = (total + 3) / 4;
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < blocks;
         j += (size_t)gridDim.x * blockDim.x) {
        uint4 w = cuvae_dev_philox_block(seed, CUVAE_STREAM_BINARIZE, step, j);
        for (int lane = 0; lane < 4; lane++) {
            size_t e = 4 * j + (size_t)lane;
            if (e >= total) break;
            size_t b = e / (size_t)d, p = e % (size_t)d;
            size_t row = idx ? (size_t)idx[b] : b;
            uint8_t byte = pixels[row * (size_t)d + p];
            x[e] = cuvae_bernoulli_byte(cuvae_dev_word(w, lane), byte) ? 1.0f : 0.0f;
        }
    }
}

int cuvae_gather_values_forward(cuvae_cuda_ctx *ctx, const void *values, cuvae_dtype dtype,
                                int64_t n_rows, int d, const int32_t *idx, int batch, int dynamic,
                                const uint64_t *d_step, float *x, cudaStream_t stream,
                                cuvae_status *st)
{
    if (batch < 1 || d < 1 || n_rows < 1)
        return cuvae_fail(st,
                          "gather: batch %d of rows of %d values from %lld rows: expected "
                          "positive sizes",
                          batch, d, (long long)n_rows);
    if (!values || !x || (dynamic && !d_step)) return cuvae_fail(st, "gather: a NULL buffer");
    if (!idx && batch > n_rows)
        return cuvae_fail(st, "gather: the first %d rows of %lld", batch, (long long)n_rows);
    if (dtype == CUVAE_DATA_F32 && dynamic)
        return cuvae_fail(st, "gather: float32 values cannot be binarized");
    size_t total = (size_t)batch * (size_t)d;
    if (dtype == CUVAE_DATA_F32) {
        gather_f32_kernel<<<cuvae_grid_for(total, GATHER_THREADS), GATHER_THREADS, 0, stream>>>(
            (const float *)values, d, idx, total, x);
    } else if (dynamic) {
        size_t blocks = (total + 3) / 4;
        gather_binarize_kernel<<<cuvae_grid_for(blocks, GATHER_THREADS), GATHER_THREADS, 0,
                                 stream>>>((const uint8_t *)values, d, idx, total, ctx->seed,
                                           d_step, x);
    } else {
        gather_scale_kernel<<<cuvae_grid_for(total, GATHER_THREADS), GATHER_THREADS, 0, stream>>>(
            (const uint8_t *)values, d, idx, total, x);
    }
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_gather_forward(cuvae_cuda_ctx *ctx, const uint8_t *pixels, int64_t n_rows, int d,
                         const int32_t *idx, int batch, int dynamic, const uint64_t *d_step,
                         float *x, cudaStream_t stream, cuvae_status *st)
{
    if (!idx) return cuvae_fail(st, "gather: a NULL buffer");
    return cuvae_gather_values_forward(ctx, pixels, CUVAE_DATA_U8, n_rows, d, idx, batch, dynamic,
                                       d_step, x, stream, st);
}
