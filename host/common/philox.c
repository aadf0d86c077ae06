/* Philox4x32-10 and the draws built on it (see philox.h for the counter layout). */
#include "philox.h"

#include <math.h>

void cuvae_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)CUVAE_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)CUVAE_PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += CUVAE_PHILOX_W0;
        k1 += CUVAE_PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

static void philox_block(uint64_t seed, uint32_t stream, uint64_t counter, uint64_t block,
                         uint32_t out[4])
{
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)counter,
                       ((uint32_t)(counter >> 32) & 0xffffu) | (stream << 16)};
    cuvae_philox4x32_10(ctr, key, out);
}

uint32_t cuvae_philox_word(uint64_t seed, uint32_t stream, uint64_t counter, uint64_t element)
{
    uint32_t w[4];
    philox_block(seed, stream, counter, element / 4, w);
    return w[element % 4];
}

void cuvae_normal_fill(uint64_t seed, uint32_t stream, uint64_t counter, uint64_t first, float *out,
                       size_t n)
{
    uint64_t e = first, end = first + n;
    while (e < end) {
        uint32_t w[4];
        uint64_t block = e / 4;
        philox_block(seed, stream, counter, block, w);
        float z[4];
        for (int pair = 0; pair < 2; pair++) {
            float r = cuvae_normal_radius(w[2 * pair]);
            float theta = cuvae_normal_angle(w[2 * pair + 1]);
            z[2 * pair] = r * cosf(theta);
            z[2 * pair + 1] = r * sinf(theta);
        }
        for (uint64_t lane = e % 4; lane < 4 && e < end; lane++, e++) out[e - first] = z[lane];
    }
}

void cuvae_binarize_fixed(uint8_t *pixels, int64_t n, int d, uint64_t seed)
{
    uint64_t total = (uint64_t)n * (uint64_t)d;
    uint32_t w[4];
    for (uint64_t el = 0; el < total; el++) {
        if (el % 4 == 0 || el == 0) philox_block(seed, CUVAE_STREAM_FIXED_BINARIZE, 0, el / 4, w);
        pixels[el] = cuvae_bernoulli_byte(w[el % 4], pixels[el]) ? 255 : 0;
    }
}

void cuvae_permutation(uint64_t seed, uint32_t stream, uint64_t counter, int32_t *perm, int64_t n)
{
    for (int64_t i = 0; i < n; i++) perm[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        /* 64-bit draw from two words; modulo bias is below 2^-32 for n < 2^31. */
        uint64_t hi = cuvae_philox_word(seed, stream, counter, 2 * (uint64_t)i);
        uint64_t lo = cuvae_philox_word(seed, stream, counter, 2 * (uint64_t)i + 1);
        int64_t j = (int64_t)(((hi << 32) | lo) % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
