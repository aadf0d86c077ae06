/* The batch gather: rows of an uploaded set picked by a device index array, scaled to [0, 1] or,
 * for a training set with dynamic binarization, drawn as Bernoulli(byte / 255) from
 * (seed, CUVAE_STREAM_BINARIZE, counter = step, element = slot * d + p); float32 sets (data
 * outside [0, 1]) are gathered as they are. C twins: cuvae_cpu_gather, cuvae_cpu_gather_f32.
 * The output is written ("="). */
#ifndef CUVAE_CUDA_GATHER_H
#define CUVAE_CUDA_GATHER_H

#include "backend.h"
#include "cuda_common.h"

/* x [batch, d] = pixels[idx[b]] / 255 (dynamic = 0), or 0/1 drawn with the step read from device
 * memory (*d_step) under ctx->seed (dynamic = 1). pixels holds n_rows rows of d bytes; every
 * idx[b] must lie in [0, n_rows) (the caller checks: the kernel does not). */
int cuvae_gather_forward(cuvae_cuda_ctx *ctx, const uint8_t *pixels, int64_t n_rows, int d,
                         const int32_t *idx, int batch, int dynamic, const uint64_t *d_step,
                         float *x, cudaStream_t stream, cuvae_status *st);

/* The same for values of either type: bytes as above, or float32 (dtype CUVAE_DATA_F32, dynamic
 * 0) copied as they are. idx NULL gathers rows 0..batch-1 (batch <= n_rows): a streamed step's
 * staged rows, whose binarization noise is keyed by the batch slot all the same. */
int cuvae_gather_values_forward(cuvae_cuda_ctx *ctx, const void *values, cuvae_dtype dtype,
                                int64_t n_rows, int d, const int32_t *idx, int batch, int dynamic,
                                const uint64_t *d_step, float *x, cudaStream_t stream,
                                cuvae_status *st);

#endif
