/* Counter-based random numbers: Philox4x32-10 keyed by the run's seed. Every random value cuvae
 * draws is a pure function of (seed, stream, counter, element), so a step gets the same noise
 * after a restart and on either backend. The CUDA side draws the same 32-bit words through the
 * cuRAND device API (curand_Philox4x32_10) with this counter layout:
 *   key     = { seed & 0xffffffff, seed >> 32 }
 *   counter = { block & 0xffffffff, block >> 32, counter & 0xffffffff,
 *               ((counter >> 32) & 0xffff) | (stream << 16) }
 * where block = element / 4 and the element takes word element % 4 of the block. */
#ifndef CUVAE_PHILOX_H
#define CUVAE_PHILOX_H

#include <stddef.h>
#include <stdint.h>

#include "twin_math.h" /* cuvae_u32_to_uniform, the Box-Muller pieces, cuvae_bernoulli_byte */

#ifdef __cplusplus
extern "C" {
#endif

/* Streams: one per use, so that no two uses ever share a word. */
enum {
    CUVAE_STREAM_INIT = 1,           /* counter = tensor index, element = value index */
    CUVAE_STREAM_SPLIT = 2,          /* validation split permutation */
    CUVAE_STREAM_SHUFFLE = 3,        /* counter = epoch */
    CUVAE_STREAM_BINARIZE = 4,       /* dynamic binarization: counter = step, element = slot*D+p */
    CUVAE_STREAM_REPARAM = 5,        /* training noise: counter = step, element = slot*L+d */
    CUVAE_STREAM_EVAL = 6,           /* eval noise: counter = round, element = (i*K+k)*L+d */
    CUVAE_STREAM_FIXED_BINARIZE = 7, /* static / test / validation binarization: element = i*D+p */
    CUVAE_STREAM_SAMPLE = 8          /* prior samples for `sample` and image grids */
};

/* The seed that binarizes the test set once (the published-likelihood protocol): fixed, so test
 * figures compare across runs and seeds. */
#define CUVAE_TEST_BINARIZE_SEED 0x7e57ULL

/* Philox4x32-10's round multipliers and key (Weyl) increments; the device draws through cuRAND,
 * which uses the same. */
#define CUVAE_PHILOX_M0 0xD2511F53u
#define CUVAE_PHILOX_M1 0xCD9E8D57u
#define CUVAE_PHILOX_W0 0x9E3779B9u
#define CUVAE_PHILOX_W1 0xBB67AE85u

/* One Philox4x32-10 block: 10 rounds over ctr with key, as in Salmon et al. (SC'11). */
void cuvae_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* The 32-bit word for (seed, stream, counter, element). */
uint32_t cuvae_philox_word(uint64_t seed, uint32_t stream, uint64_t counter, uint64_t element);

/* Standard normals for elements [first, first + n) of (seed, stream, counter). Box-Muller on the
 * word pairs (0,1) and (2,3) of each block: for words a, b, r = cuvae_normal_radius(a) and
 * theta = cuvae_normal_angle(b) (twin_math.h), element 2j = r cosf(theta), 2j+1 = r sinf(theta). */
void cuvae_normal_fill(uint64_t seed, uint32_t stream, uint64_t counter, uint64_t first, float *out,
                       size_t n);

/* Binarizes n images of d bytes once, in place, to 0 or 255 (static binarization, test set):
 * pixel p of image i uses element i*d+p of (seed, CUVAE_STREAM_FIXED_BINARIZE, counter 0). */
void cuvae_binarize_fixed(uint8_t *pixels, int64_t n, int d, uint64_t seed);

/* Seeded permutation of [0, n) (Fisher-Yates driven by (seed, stream, counter)). */
void cuvae_permutation(uint64_t seed, uint32_t stream, uint64_t counter, int32_t *perm, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
