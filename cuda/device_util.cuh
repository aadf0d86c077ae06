/* Device-side helpers used by the kernels of several files: the Philox draws with the counter
 * layout of host/common/philox.h (through cuRAND's curand_Philox4x32_10), the normal draw built on
 * host/common/twin_math.h's uniform and Box-Muller pieces (the host's own), and fixed-order
 * reductions. They are inline in a header because device code built without relocatable device code
 * cannot call a function in another translation unit; everything else lives in the .cu files. */
#ifndef CUVAE_DEVICE_UTIL_CUH
#define CUVAE_DEVICE_UTIL_CUH

#include <cuda_runtime.h>
#include <curand_philox4x32_x.h>
#include <stdint.h>

#include "philox.h"
#include "twin_math.h"

/* One Philox4x32-10 block for (seed, stream, counter, block), in host/common/philox.h's layout:
 *   key     = { seed & 0xffffffff, seed >> 32 }
 *   counter = { block & 0xffffffff, block >> 32, counter & 0xffffffff,
 *               ((counter >> 32) & 0xffff) | (stream << 16) } */
__device__ __forceinline__ uint4 cuvae_dev_philox_block(uint64_t seed, uint32_t stream,
                                                        uint64_t counter, uint64_t block)
{
    uint2 key = make_uint2((uint32_t)seed, (uint32_t)(seed >> 32));
    uint4 ctr = make_uint4((uint32_t)block, (uint32_t)(block >> 32), (uint32_t)counter,
                           ((uint32_t)(counter >> 32) & 0xffffu) | (stream << 16));
    return curand_Philox4x32_10(ctr, key);
}

/* Word `lane` (0..3) of a block: element e takes word e % 4 of block e / 4. */
__device__ __forceinline__ uint32_t cuvae_dev_word(uint4 w, int lane)
{
    return lane == 0 ? w.x : lane == 1 ? w.y : lane == 2 ? w.z : w.w;
}

/* The word for (seed, stream, counter, element), as cuvae_philox_word. */
__device__ __forceinline__ uint32_t cuvae_dev_philox_word(uint64_t seed, uint32_t stream,
                                                          uint64_t counter, uint64_t element)
{
    return cuvae_dev_word(cuvae_dev_philox_block(seed, stream, counter, element / 4),
                          (int)(element % 4));
}

/* Standard normal for one element, as cuvae_normal_fill: Box-Muller on the word pairs (0,1) and
 * (2,3) of the element's block; even lanes take r cos, odd lanes r sin. logf, sinf and cosf are
 * the accurate library functions (the build does not use fast math), so the values match the
 * host's to a few ulp rather than bit for bit. */
__device__ __forceinline__ float cuvae_dev_normal(uint64_t seed, uint32_t stream, uint64_t counter,
                                                  uint64_t element)
{
    uint4 w = cuvae_dev_philox_block(seed, stream, counter, element / 4);
    int lane = (int)(element % 4);
    uint32_t a = lane < 2 ? w.x : w.z;
    uint32_t b = lane < 2 ? w.y : w.w;
    float r = cuvae_normal_radius(a);
    float theta = cuvae_normal_angle(b);
    return (lane & 1) ? r * sinf(theta) : r * cosf(theta);
}

/* Sum over the 32 lanes of a warp by a butterfly: every lane gets the same value, added in the same
 * order on every run. */
__device__ __forceinline__ double cuvae_dev_warp_sum(double v)
{
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

/* Sum over a block of BLOCK threads (a power of two) through shared memory in a fixed tree order;
 * every thread gets the result. `shared` holds BLOCK doubles. */
template <int BLOCK> __device__ __forceinline__ double cuvae_dev_block_sum(double v, double *shared)
{
    static_assert((BLOCK & (BLOCK - 1)) == 0, "BLOCK must be a power of two");
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    double r = shared[0];
    __syncthreads();
    return r;
}

#endif
