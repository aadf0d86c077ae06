/* Raw draws on the device with host/common/philox.h's layout: the Philox words and the Box-Muller
 * normals that the kernels use inline, exposed as launchers so a test can compare them with
 * cuvae_philox_word and cuvae_normal_fill. Outputs are written ("="). */
#ifndef CUVAE_CUDA_RANDOM_H
#define CUVAE_CUDA_RANDOM_H

#include "cuda_common.h"

/* out[i] = the word of (ctx->seed, stream_id, counter, element first + i), i < n. */
int cuvae_philox_words_forward(cuvae_cuda_ctx *ctx, uint32_t stream_id, uint64_t counter,
                               uint64_t first, size_t n, uint32_t *out, cudaStream_t stream,
                               cuvae_status *st);

/* out[i] = the standard normal of element first + i of (ctx->seed, stream_id, *d_counter), with
 * the counter read from device memory as the training kernels read the step. */
int cuvae_normal_fill_forward(cuvae_cuda_ctx *ctx, uint32_t stream_id, const uint64_t *d_counter,
                              uint64_t first, size_t n, float *out, cudaStream_t stream,
                              cuvae_status *st);

#endif
