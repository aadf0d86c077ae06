/* Philox4x32-10 and the draws built on it: the published known-answer vectors, the counter
 * layout (pinned words that bench/peers/philox.py must reproduce, see tests/cli_philox_python.sh),
 * uniform range, normal moments, exact Bernoulli thresholds, the fixed binarization and seeded
 * permutations. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"
#include "tests_util.h"

/* Random123's kat_vectors for philox4x32_10 (the three published cases). */
static void test_known_answers(void)
{
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
        {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
         {0xffffffffu, 0xffffffffu},
         {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
        {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
         {0xa4093822u, 0x299f31d0u},
         {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        cuvae_philox4x32_10(kat[i].ctr, kat[i].key, out);
        for (int j = 0; j < 4; j++) {
            if (out[j] != kat[i].out[j]) {
                fprintf(stderr, "KAT %zu word %d: got %08x, expected %08x\n", i, j, out[j],
                        kat[i].out[j]);
                cuvae_test_failures++;
            }
        }
    }
}

/* The counter layout of philox.h, checked against a direct block evaluation, and pinned words for
 * (seed, stream, counter, element) covering a 64-bit seed, the counter's high 16 bits, and
 * elements past 2^34 (block words 0 and 1). tests/cli_philox_python.sh checks the same values
 * against bench/peers/philox.py, so Python reproduces cuvae's noise. */
static void test_layout(void)
{
    static const struct {
        uint64_t seed;
        uint32_t stream;
        uint64_t counter, element;
        uint32_t word;
    } pinned[] = {
        {0x0000000000000000ULL, 1, 0x0ULL, 0x0ULL, 0xe6073e71u},
        {0x000000000000002aULL, 5, 0x7ULL, 0x3ULL, 0xc6503141u},
        {0x0123456789abcdefULL, 6, 0x0ULL, 0x3039ULL, 0x98039330u},
        {0xffffffffffffffffULL, 8, 0xffffffffffffULL, 0x7ffffffffULL, 0xbd01cb95u},
        {0x000000000134d8d9ULL, 4, 0x75bcd15ULL, 0x18805ULL, 0x979d6b2bu},
        {0x0000000000000007ULL, 3, 0x10000000000ULL, 0x400000002ULL, 0xd890df4au},
    };
    for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++) {
        uint64_t seed = pinned[i].seed, counter = pinned[i].counter, block = pinned[i].element / 4;
        uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
        uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)counter,
                           ((uint32_t)(counter >> 32) & 0xffffu) | (pinned[i].stream << 16)};
        uint32_t direct[4];
        cuvae_philox4x32_10(ctr, key, direct);
        uint32_t w = cuvae_philox_word(seed, pinned[i].stream, counter, pinned[i].element);
        CHECK(w == direct[pinned[i].element % 4]);
        if (w != pinned[i].word) {
            fprintf(stderr, "pinned word %zu: got %08x, expected %08x\n", i, w, pinned[i].word);
            cuvae_test_failures++;
        }
    }
    /* Streams and counters never share words. */
    CHECK(cuvae_philox_word(1, CUVAE_STREAM_REPARAM, 0, 0) !=
          cuvae_philox_word(1, CUVAE_STREAM_EVAL, 0, 0));
    CHECK(cuvae_philox_word(1, CUVAE_STREAM_REPARAM, 0, 0) !=
          cuvae_philox_word(1, CUVAE_STREAM_REPARAM, 1, 0));
}

static void test_uniform(void)
{
    /* The extremes: philox.h promises (0, 1). In float, (2^24 - 1) + 0.5 is not representable,
     * so an implementation that adds 0.5 to w >> 8 in float rounds the top value to 1. */
    float lo = cuvae_u32_to_uniform(0), hi = cuvae_u32_to_uniform(0xffffffffu);
    CHECK(lo > 0.0f && lo < 1e-7f);
    if (!(hi < 1.0f && hi > 1.0f - 1e-7f)) {
        fprintf(stderr, "cuvae_u32_to_uniform(0xffffffff) = %.9g, expected just below 1\n",
                (double)hi);
        cuvae_test_failures++;
    }
    double sum = 0;
    int bad = 0;
    const int n = 1000000;
    for (int i = 0; i < n; i++) {
        float u = cuvae_u32_to_uniform(cuvae_philox_word(3, CUVAE_STREAM_SAMPLE, 0, (uint64_t)i));
        if (!(u > 0.0f && u < 1.0f)) bad++;
        sum += u;
    }
    CHECK(bad == 0);
    CHECK(fabs(sum / n - 0.5) < 2e-3);
}

/* Box-Muller normals: 1e6 draws have mean ~0 and variance ~1 (standard errors 1e-3 and 1.4e-3),
 * every value finite, and a fill starting mid-block equals the same slice of a longer fill. */
static void test_normals(void)
{
    const size_t n = 1000000;
    float *z = malloc(n * sizeof *z);
    CHECK(z != NULL);
    if (!z) return;
    cuvae_normal_fill(11, CUVAE_STREAM_REPARAM, 5, 0, z, n);
    double s = 0, s2 = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(z[i])) bad++;
        s += z[i];
        s2 += (double)z[i] * z[i];
    }
    double mean = s / (double)n, var = s2 / (double)n - mean * mean;
    CHECK(bad == 0);
    CHECK(fabs(mean) < 5e-3);
    CHECK(fabs(var - 1.0) < 7e-3);
    float part[7];
    cuvae_normal_fill(11, CUVAE_STREAM_REPARAM, 5, 1001, part, 7);
    CHECK(memcmp(part, z + 1001, sizeof part) == 0);

    /* Pinned values (checked against philox.py by tests/cli_philox_python.sh). */
    static const float want[8] = {0.382208467f,  0.0832160935f, 0.221131399f, -1.41566885f,
                                  -0.759743929f, -0.492357999f, 0.775928557f, 1.63209617f};
    float got[8];
    cuvae_normal_fill(42, CUVAE_STREAM_REPARAM, 7, 0, got, 8);
    cuvae_check_close("pinned normals", got, want, 8, 1e-6, 1e-7);
    free(z);
}

/* 1 iff w * 255 < byte * 2^32: exact thresholds, byte 0 never, byte 255 always. */
static void test_bernoulli(void)
{
    uint32_t extremes[] = {0u, 1u, 0x7fffffffu, 0x80000000u, 0xfffffffeu, 0xffffffffu};
    for (size_t i = 0; i < sizeof extremes / sizeof extremes[0]; i++) {
        CHECK(cuvae_bernoulli_byte(extremes[i], 0) == 0);
        CHECK(cuvae_bernoulli_byte(extremes[i], 255) == 1);
    }
    for (int b = 1; b < 255; b++) {
        /* Smallest w with w * 255 >= b * 2^32: the first word that gives 0. */
        uint64_t edge = (((uint64_t)b << 32) + 254) / 255;
        CHECK(cuvae_bernoulli_byte((uint32_t)(edge - 1), (uint8_t)b) == 1);
        CHECK(cuvae_bernoulli_byte((uint32_t)edge, (uint8_t)b) == 0);
    }
    int ones = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++)
        ones +=
            cuvae_bernoulli_byte(cuvae_philox_word(5, CUVAE_STREAM_BINARIZE, 0, (uint64_t)i), 64);
    CHECK(fabs((double)ones / n - 64.0 / 255.0) < 5e-3);
}

static void test_binarize_fixed(void)
{
    enum { N = 3, D = 50 };
    uint8_t a[N * D], b[N * D];
    for (int i = 0; i < N * D; i++) a[i] = (uint8_t)(i * 37 % 256);
    a[0] = 0;
    a[1] = 255;
    memcpy(b, a, sizeof a);
    cuvae_binarize_fixed(a, N, D, CUVAE_TEST_BINARIZE_SEED);
    cuvae_binarize_fixed(b, N, D, CUVAE_TEST_BINARIZE_SEED);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(a[0] == 0 && a[1] == 255);
    int other = 0;
    for (int i = 0; i < N * D; i++) other += a[i] != 0 && a[i] != 255;
    CHECK(other == 0);
    /* Element i*D+p of (seed, FIXED_BINARIZE, 0) decides pixel p of image i. */
    uint8_t orig = (uint8_t)(77 * 37 % 256);
    uint32_t w = cuvae_philox_word(CUVAE_TEST_BINARIZE_SEED, CUVAE_STREAM_FIXED_BINARIZE, 0, 77);
    CHECK(a[77] == (cuvae_bernoulli_byte(w, orig) ? 255 : 0));
}

static void test_permutation(void)
{
    enum { N = 1000 };
    int32_t p0[N], p1[N], again[N];
    cuvae_permutation(9, CUVAE_STREAM_SHUFFLE, 0, p0, N);
    cuvae_permutation(9, CUVAE_STREAM_SHUFFLE, 1, p1, N);
    cuvae_permutation(9, CUVAE_STREAM_SHUFFLE, 0, again, N);
    int seen[N] = {0}, dup = 0, fixed = 0;
    for (int i = 0; i < N; i++) {
        if (p0[i] < 0 || p0[i] >= N || seen[p0[i]]++) dup++;
        fixed += p0[i] == i;
    }
    CHECK(dup == 0);
    CHECK(fixed < 10); /* a random permutation has ~1 fixed point */
    CHECK(memcmp(p0, again, sizeof p0) == 0);
    CHECK(memcmp(p0, p1, sizeof p0) != 0);
    int32_t one[1];
    cuvae_permutation(9, CUVAE_STREAM_SHUFFLE, 0, one, 1);
    CHECK(one[0] == 0);
}

int main(void)
{
    test_known_answers();
    test_layout();
    test_uniform();
    test_normals();
    test_bernoulli();
    test_binarize_fixed();
    test_permutation();
    return cuvae_test_finish("test_philox");
}
