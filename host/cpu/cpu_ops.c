/* The model's operations on the CPU (see cpu_ops.h): GEMMs through CBLAS (OpenBLAS), everything
 * else plain C loops written so that the compiler vectorizes them without fast-math. Outputs are
 * written (=), never accumulated, so a training step needs no zeroing pass.
 *
 * Floating-point evaluation order is spelled out where the CUDA twins must follow it; sums over a
 * row (per-example losses, bias gradients, squares) accumulate in double in a fixed order that
 * does not depend on the batch, so one example gives the same result in any batch. */
#include "cpu_ops.h"

#include <math.h>
#include <string.h>

#include "cpu_threads.h"
#include "philox.h"
#include "twin_math.h"

#if defined(__SSE2__)
#include <immintrin.h> /* SSE2 everywhere on x86-64; AVX only inside target("avx") functions */
#endif

static void flush_this_thread(void *arg, int t)
{
    (void)arg;
    (void)t;
#if defined(__SSE2__)
    _mm_setcsr(_mm_getcsr() | _MM_FLUSH_ZERO_ON | 0x0040 /* DAZ */);
#endif
}

void cuvae_cpu_flush_subnormals(void)
{
    flush_this_thread(NULL, 0);
    /* The team's threads too, which may have started before this: one part each. */
    int team = cuvae_cpu_threads();
    cuvae_cpu_parallel(team, flush_this_thread, NULL);
}

/* ---- Philox in batches ------------------------------------------------------------------------
 * The same Philox4x32-10 as cuvae_philox4x32_10 (philox.c), evaluated for PHILOX_LANES consecutive
 * blocks at once in structure-of-arrays form (SSE2 where available: compilers do not vectorize
 * the 32x32->64-bit products by themselves). Dynamic binarization draws one word per pixel, 100k
 * words a training step; test_cpu_backend checks these words against cuvae_philox_word. */
#define PHILOX_LANES 16

#if defined(__SSE2__)
/* The ten rounds over PHILOX_LANES (16) blocks in one 512-bit vector per word: the even lanes'
 * products come from _mm512_mul_epu32 directly, the odd lanes' after a shift, as in the SSE2
 * loop below. */
__attribute__((target("avx512f"))) static void philox_rounds_avx512(uint32_t *c0, uint32_t *c1,
                                                                    uint32_t *c2, uint32_t *c3,
                                                                    uint32_t k0, uint32_t k1)
{
    const __m512i m0 = _mm512_set1_epi32((int)CUVAE_PHILOX_M0),
                  m1 = _mm512_set1_epi32((int)CUVAE_PHILOX_M1);
    __m512i x0 = _mm512_loadu_si512(c0), x1 = _mm512_loadu_si512(c1);
    __m512i x2 = _mm512_loadu_si512(c2), x3 = _mm512_loadu_si512(c3);
    const __mmask16 odd = 0xAAAA;
    for (int round = 0; round < 10; round++) {
        __m512i e0 = _mm512_mul_epu32(x0, m0), o0 = _mm512_mul_epu32(_mm512_srli_epi64(x0, 32), m0);
        __m512i e2 = _mm512_mul_epu32(x2, m1), o2 = _mm512_mul_epu32(_mm512_srli_epi64(x2, 32), m1);
        __m512i lo0 = _mm512_mask_blend_epi32(odd, e0, _mm512_slli_epi64(o0, 32));
        __m512i hi0 = _mm512_mask_blend_epi32(odd, _mm512_srli_epi64(e0, 32), o0);
        __m512i lo2 = _mm512_mask_blend_epi32(odd, e2, _mm512_slli_epi64(o2, 32));
        __m512i hi2 = _mm512_mask_blend_epi32(odd, _mm512_srli_epi64(e2, 32), o2);
        x0 = _mm512_xor_si512(_mm512_xor_si512(hi2, x1), _mm512_set1_epi32((int)k0));
        x2 = _mm512_xor_si512(_mm512_xor_si512(hi0, x3), _mm512_set1_epi32((int)k1));
        x1 = lo2;
        x3 = lo0;
        k0 += CUVAE_PHILOX_W0;
        k1 += CUVAE_PHILOX_W1;
    }
    _mm512_storeu_si512(c0, x0);
    _mm512_storeu_si512(c1, x1);
    _mm512_storeu_si512(c2, x2);
    _mm512_storeu_si512(c3, x3);
}
#endif

#if defined(__SSE2__)
static void philox_rounds_sse2(uint32_t *c0, uint32_t *c1, uint32_t *c2, uint32_t *c3, uint32_t k0,
                               uint32_t k1)
{
    /* Four blocks per vector. SSE2 multiplies the even 32-bit lanes into 64-bit products
     * (_mm_mul_epu32): the odd lanes go through a shift, and the halves are put back in place. */
    const __m128i m0 = _mm_set1_epi32((int)CUVAE_PHILOX_M0),
                  m1 = _mm_set1_epi32((int)CUVAE_PHILOX_M1);
    const __m128i low = _mm_set1_epi64x(0xffffffffLL);
    for (int j = 0; j < PHILOX_LANES; j += 4) {
        __m128i x0 = _mm_loadu_si128((const __m128i *)(c0 + j));
        __m128i x1 = _mm_loadu_si128((const __m128i *)(c1 + j));
        __m128i x2 = _mm_loadu_si128((const __m128i *)(c2 + j));
        __m128i x3 = _mm_loadu_si128((const __m128i *)(c3 + j));
        uint32_t r0 = k0, r1 = k1;
        for (int round = 0; round < 10; round++) {
            __m128i e0 = _mm_mul_epu32(x0, m0), o0 = _mm_mul_epu32(_mm_srli_epi64(x0, 32), m0);
            __m128i e2 = _mm_mul_epu32(x2, m1), o2 = _mm_mul_epu32(_mm_srli_epi64(x2, 32), m1);
            __m128i lo0 = _mm_or_si128(_mm_and_si128(e0, low), _mm_slli_epi64(o0, 32));
            __m128i hi0 = _mm_or_si128(_mm_srli_epi64(e0, 32), _mm_andnot_si128(low, o0));
            __m128i lo2 = _mm_or_si128(_mm_and_si128(e2, low), _mm_slli_epi64(o2, 32));
            __m128i hi2 = _mm_or_si128(_mm_srli_epi64(e2, 32), _mm_andnot_si128(low, o2));
            x0 = _mm_xor_si128(_mm_xor_si128(hi2, x1), _mm_set1_epi32((int)r0));
            x2 = _mm_xor_si128(_mm_xor_si128(hi0, x3), _mm_set1_epi32((int)r1));
            x1 = lo2;
            x3 = lo0;
            r0 += CUVAE_PHILOX_W0;
            r1 += CUVAE_PHILOX_W1;
        }
        _mm_storeu_si128((__m128i *)(c0 + j), x0);
        _mm_storeu_si128((__m128i *)(c1 + j), x1);
        _mm_storeu_si128((__m128i *)(c2 + j), x2);
        _mm_storeu_si128((__m128i *)(c3 + j), x3);
    }
}
#endif

static void philox_blocks(uint64_t seed, uint32_t stream, uint64_t counter, uint64_t first_block,
                          uint32_t out[4][PHILOX_LANES])
{
    uint32_t c0[PHILOX_LANES], c1[PHILOX_LANES], c2[PHILOX_LANES], c3[PHILOX_LANES];
    for (int j = 0; j < PHILOX_LANES; j++) {
        uint64_t block = first_block + (uint64_t)j;
        c0[j] = (uint32_t)block;
        c1[j] = (uint32_t)(block >> 32);
        c2[j] = (uint32_t)counter;
        c3[j] = ((uint32_t)(counter >> 32) & 0xffffu) | (stream << 16);
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#if defined(__SSE2__)
    if (__builtin_cpu_supports("avx512f"))
        philox_rounds_avx512(c0, c1, c2, c3, k0, k1);
    else
        philox_rounds_sse2(c0, c1, c2, c3, k0, k1);
#else
    for (int round = 0; round < 10; round++) {
        for (int j = 0; j < PHILOX_LANES; j++) {
            uint64_t p0 = (uint64_t)CUVAE_PHILOX_M0 * c0[j];
            uint64_t p1 = (uint64_t)CUVAE_PHILOX_M1 * c2[j];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
            c1[j] = (uint32_t)p1;
            c3[j] = (uint32_t)p0;
            c0[j] = n0;
            c2[j] = n2;
        }
        k0 += CUVAE_PHILOX_W0;
        k1 += CUVAE_PHILOX_W1;
    }
#endif
    memcpy(out[0], c0, sizeof c0);
    memcpy(out[1], c1, sizeof c1);
    memcpy(out[2], c2, sizeof c2);
    memcpy(out[3], c3, sizeof c3);
}

/* Elements [e_begin, e_end) of the dynamically binarized batch; e_begin is a multiple of
 * 4 * PHILOX_LANES. Element e = b*d + p takes word e % 4 of block e / 4; blocks run across row
 * ends. Words are drawn PHILOX_LANES blocks at a time into a linear buffer, then used row
 * segment by row segment. */
static void binarize_range(const uint8_t *pixels, int d, const int32_t *idx, uint64_t seed,
                           uint64_t step, size_t e_begin, size_t e_end, float *x)
{
    const size_t per_call = 4 * PHILOX_LANES;
    uint32_t words[4][PHILOX_LANES], linear[4 * PHILOX_LANES];
    size_t b = e_begin / (size_t)d, p = e_begin % (size_t)d; /* row and pixel of element e0 */
    for (size_t e0 = e_begin; e0 < e_end; e0 += per_call) {
        philox_blocks(seed, CUVAE_STREAM_BINARIZE, step, e0 / 4, words);
        for (int j = 0; j < PHILOX_LANES; j++)
            for (int lane = 0; lane < 4; lane++) linear[4 * j + lane] = words[lane][j];
        size_t n = e_end - e0 < per_call ? e_end - e0 : per_call;
        for (size_t j = 0; j < n;) {
            size_t run = (size_t)d - p < n - j ? (size_t)d - p : n - j;
            const uint8_t *row = pixels + (size_t)idx[b] * (size_t)d + p;
            float *out = x + e0 + j;
            const uint32_t *w = linear + j;
            /* cuvae_bernoulli_byte: w * 255 < byte * 2^32, i.e. the high word of w * 255 below
             * byte. w * 255 = w * 256 - w, whose high word is w >> 24, less one when the low
             * word (w << 8) borrows from w: all in 32 bits, so that it vectorizes. */
            for (size_t q = 0; q < run; q++) {
                int32_t hi = (int32_t)(w[q] >> 24) - (int32_t)((uint32_t)(w[q] << 8) < w[q]);
                out[q] = hi < (int32_t)row[q] ? 1.0f : 0.0f;
            }
            j += run;
            p += run;
            if (p == (size_t)d) {
                p = 0;
                b++;
            }
        }
    }
}

typedef struct {
    const uint8_t *pixels;
    const int32_t *idx;
    int d, batch, parts;
    uint64_t seed, step;
    float *x;
} gather_job;

static void gather_part(void *arg, int t)
{
    const gather_job *j = arg;
    size_t b0, b1;
    size_t total = (size_t)j->batch * (size_t)j->d;
    cuvae_cpu_split(total, j->parts, t, 4 * PHILOX_LANES, &b0, &b1);
    if (b1 > b0) binarize_range(j->pixels, j->d, j->idx, j->seed, j->step, b0, b1, j->x);
}

void cuvae_cpu_gather(const uint8_t *pixels, int d, const int32_t *idx, int batch, int dynamic,
                      uint64_t seed, uint64_t step, float *x)
{
    if (!dynamic) {
        /* A correctly rounded division, not a multiply by 1/255, so the GPU can match it bit for
         * bit. */
        for (int b = 0; b < batch; b++) {
            const uint8_t *row = pixels + (size_t)idx[b] * (size_t)d;
            float *out = x + (size_t)b * (size_t)d;
            for (int p = 0; p < d; p++) out[p] = cuvae_byte_to_unit(row[p]);
        }
        return;
    }
    /* Every element's word depends on its index alone: any split gives the same bits. */
    size_t total = (size_t)batch * (size_t)d;
    int parts = cuvae_cpu_parts_for(total * 4); /* parts of at least 4k pixels */
    gather_job j = {.pixels = pixels,
                    .idx = idx,
                    .d = d,
                    .batch = batch,
                    .parts = parts,
                    .seed = seed,
                    .step = step,
                    .x = x};
    cuvae_cpu_parallel(parts, gather_part, &j);
}

void cuvae_cpu_gather_f32(const uint8_t *values, int d, const int32_t *idx, int batch, float *x)
{
    /* memcpy: a float in a mapped file (or an .npz member) need not be aligned. */
    size_t row = (size_t)d * sizeof(float);
    for (int b = 0; b < batch; b++)
        memcpy(x + (size_t)b * (size_t)d, values + (size_t)idx[b] * row, row);
}

typedef struct {
    uint64_t seed, counter, first;
    uint32_t stream;
    size_t n;
    int parts;
    float *out;
} normal_job;

static void normal_part(void *arg, int t)
{
    const normal_job *j = arg;
    size_t a, e;
    cuvae_cpu_split(j->n, j->parts, t, 64, &a, &e);
    if (e > a) cuvae_normal_fill(j->seed, j->stream, j->counter, j->first + a, j->out + a, e - a);
}

void cuvae_cpu_normal_fill(uint64_t seed, uint32_t stream, uint64_t counter, uint64_t first,
                           float *out, size_t n)
{
    /* Each value depends on its index alone: any split gives the same bits. */
    normal_job j = {.seed = seed,
                    .counter = counter,
                    .first = first,
                    .stream = stream,
                    .n = n,
                    .parts = cuvae_cpu_parts_for(n * 8),
                    .out = out};
    cuvae_cpu_parallel(j.parts, normal_part, &j);
}

/* ---- reparameterization and KL (the formulas: twin_math.h) ------------------------------------
 */

static void reparam_kl_forward_rows(const float *enc, const float *eps, int b0, int b1, int L,
                                    float free_bits, float *z, double *kl, double *kl_floored)
{
    for (int b = b0; b < b1; b++) {
        const float *mu = enc + (size_t)b * 2 * (size_t)L, *lv = mu + L;
        const float *e = eps + (size_t)b * (size_t)L;
        float *zb = z + (size_t)b * (size_t)L;
        double sum = 0.0, sum_floored = 0.0;
        for (int d = 0; d < L; d++) {
            zb[d] = cuvae_reparam_z(mu[d], lv[d], e[d]);
            float k = cuvae_kl_term(mu[d], lv[d]);
            sum += (double)k;
            sum_floored += (double)cuvae_kl_floored(k, free_bits);
        }
        kl[b] = sum;
        if (kl_floored) kl_floored[b] = sum_floored;
    }
}

static void reparam_kl_backward_rows(const float *enc, const float *eps, const float *dz, int b0,
                                     int b1, int L, float kl_scale, float free_bits, float *denc)
{
    for (int b = b0; b < b1; b++) {
        const float *mu = enc + (size_t)b * 2 * (size_t)L, *lv = mu + L;
        const float *e = eps + (size_t)b * (size_t)L, *g = dz + (size_t)b * (size_t)L;
        float *dmu = denc + (size_t)b * 2 * (size_t)L, *dlv = dmu + L;
        for (int d = 0; d < L; d++) {
            /* dz/dmu = 1, dKL/dmu = mu; the floor, when it binds, passes no KL gradient */
            float sigma = cuvae_reparam_sigma(lv[d]);
            int pass = !cuvae_free_bits_binds(cuvae_kl_term(mu[d], lv[d]), free_bits);
            dmu[d] = g[d] + (pass ? kl_scale * mu[d] : 0.0f);
            dlv[d] = g[d] * cuvae_reparam_dz_dlogvar(sigma, e[d]) +
                     (pass ? kl_scale * cuvae_kl_dlogvar(lv[d]) : 0.0f);
        }
    }
}

/* Both passes are row by row: split by rows over the team, the same bits for any split. */
typedef struct {
    const float *enc, *eps, *dz;
    int B, L, parts;
    float free_bits, kl_scale;
    float *z, *denc;
    double *kl, *kl_floored;
} reparam_job;

static void reparam_forward_part(void *arg, int t)
{
    const reparam_job *j = arg;
    size_t b0, b1;
    cuvae_cpu_split((size_t)j->B, j->parts, t, 1, &b0, &b1);
    reparam_kl_forward_rows(j->enc, j->eps, (int)b0, (int)b1, j->L, j->free_bits, j->z, j->kl,
                            j->kl_floored);
}

void cuvae_cpu_reparam_kl_forward(const float *enc, const float *eps, int B, int L, float free_bits,
                                  float *z, double *kl, double *kl_floored)
{
    reparam_job j = {
        .enc = enc,
        .eps = eps,
        .B = B,
        .L = L,
        .parts = cuvae_cpu_row_parts((size_t)B, (size_t)L * 4), /* an exp or two an element */
        .free_bits = free_bits,
        .z = z,
        .kl = kl,
        .kl_floored = kl_floored};
    cuvae_cpu_parallel(j.parts, reparam_forward_part, &j);
}

static void reparam_backward_part(void *arg, int t)
{
    const reparam_job *j = arg;
    size_t b0, b1;
    cuvae_cpu_split((size_t)j->B, j->parts, t, 1, &b0, &b1);
    reparam_kl_backward_rows(j->enc, j->eps, j->dz, (int)b0, (int)b1, j->L, j->kl_scale,
                             j->free_bits, j->denc);
}

void cuvae_cpu_reparam_kl_backward(const float *enc, const float *eps, const float *dz, int B,
                                   int L, float kl_scale, float free_bits, float *denc)
{
    reparam_job j = {
        .enc = enc,
        .eps = eps,
        .dz = dz,
        .B = B,
        .L = L,
        .parts = cuvae_cpu_row_parts((size_t)B, (size_t)L * 4), /* an exp or two an element */
        .free_bits = free_bits,
        .kl_scale = kl_scale,
        .denc = denc};
    cuvae_cpu_parallel(j.parts, reparam_backward_part, &j);
}
