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

#if defined(__SSE2__)
#include <immintrin.h> /* SSE2 everywhere on x86-64; AVX only inside target("avx") functions */
#endif

void cuvae_cpu_flush_subnormals(void)
{
#if defined(__SSE2__)
    _mm_setcsr(_mm_getcsr() | _MM_FLUSH_ZERO_ON | 0x0040 /* DAZ */);
#endif
}

/* Parts of the parallel reductions and of Adam start on multiples of this many floats. */
#define PART_ALIGN 64
#define MAX_PARTS CUVAE_CPU_MAX_PARTS

/* How many parts a pass over n floats is split into: one per thread, none under 16k floats. */
static int parts_for(size_t n)
{
    size_t parts = (size_t)cuvae_cpu_threads();
    if (parts > MAX_PARTS) parts = MAX_PARTS;
    if (parts * 16384 > n) parts = n / 16384 + 1;
    return (int)parts;
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
    const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u),
                  m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
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
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
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
    const __m128i m0 = _mm_set1_epi32((int)0xD2511F53u), m1 = _mm_set1_epi32((int)0xCD9E8D57u);
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
            r0 += 0x9E3779B9u;
            r1 += 0xBB67AE85u;
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
            uint64_t p0 = (uint64_t)0xD2511F53u * c0[j];
            uint64_t p1 = (uint64_t)0xCD9E8D57u * c2[j];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
            c1[j] = (uint32_t)p1;
            c3[j] = (uint32_t)p0;
            c0[j] = n0;
            c2[j] = n2;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
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
            for (int p = 0; p < d; p++) out[p] = (float)row[p] / 255.0f;
        }
        return;
    }
    /* Every element's word depends on its index alone: any split gives the same bits. */
    size_t total = (size_t)batch * (size_t)d;
    int parts = cuvae_cpu_threads();
    if ((size_t)parts * 4096 > total) parts = (int)(total / 4096) + 1;
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
                    .parts = parts_for(n / 8),
                    .out = out};
    cuvae_cpu_parallel(j.parts, normal_part, &j);
}

/* ---- reparameterization and KL ----------------------------------------------------------------
 */

/* KL of one dimension in float, in this order: ((mu*mu + exp(lv)) - 1) - lv, halved. Forward and
 * backward call this one function so that they agree on where the free-bits floor binds. */
static inline float kl_term(float mu, float lv)
{
    return 0.5f * (mu * mu + expf(lv) - 1.0f - lv);
}

/* The floor binds (value free_bits, no gradient) only when free bits are on and KL is below
 * them. free_bits <= 0 is "off": no floor at all (a floor at 0 would only cut rounding noise). A
 * NaN KL never binds, so it reaches the loss. */
static inline int floor_binds(float kl, float free_bits)
{
    return free_bits > 0.0f && kl < free_bits;
}

void cuvae_cpu_reparam_kl_forward(const float *enc, const float *eps, int B, int L, float free_bits,
                                  float *z, double *kl, double *kl_floored)
{
    for (int b = 0; b < B; b++) {
        const float *mu = enc + (size_t)b * 2 * (size_t)L, *lv = mu + L;
        const float *e = eps + (size_t)b * (size_t)L;
        float *zb = z + (size_t)b * (size_t)L;
        double sum = 0.0, sum_floored = 0.0;
        for (int d = 0; d < L; d++) {
            zb[d] = mu[d] + expf(0.5f * lv[d]) * e[d];
            float k = kl_term(mu[d], lv[d]);
            sum += (double)k;
            sum_floored += (double)(floor_binds(k, free_bits) ? free_bits : k);
        }
        kl[b] = sum;
        if (kl_floored) kl_floored[b] = sum_floored;
    }
}

void cuvae_cpu_reparam_kl_backward(const float *enc, const float *eps, const float *dz, int B,
                                   int L, float kl_scale, float free_bits, float *denc)
{
    for (int b = 0; b < B; b++) {
        const float *mu = enc + (size_t)b * 2 * (size_t)L, *lv = mu + L;
        const float *e = eps + (size_t)b * (size_t)L, *g = dz + (size_t)b * (size_t)L;
        float *dmu = denc + (size_t)b * 2 * (size_t)L, *dlv = dmu + L;
        for (int d = 0; d < L; d++) {
            /* dz/dmu = 1, dz/dlv = 0.5 exp(0.5 lv) eps; dKL/dmu = mu, dKL/dlv = 0.5 (exp(lv) - 1)
             */
            float sigma = expf(0.5f * lv[d]);
            int pass = !floor_binds(kl_term(mu[d], lv[d]), free_bits);
            dmu[d] = g[d] + (pass ? kl_scale * mu[d] : 0.0f);
            dlv[d] = g[d] * (0.5f * sigma * e[d]) +
                     (pass ? kl_scale * (0.5f * (expf(lv[d]) - 1.0f)) : 0.0f);
        }
    }
}

/* ---- likelihoods ------------------------------------------------------------------------------
 * exp and log1p in plain float arithmetic (Cephes' expf and logf polynomials, ~1 ulp), because
 * libm's calls do not vectorize without fast-math and evaluation with K = 5000 importance samples
 * takes 4e10 of each. test_losses checks them against libm in double over the whole range used.
 *
 * Choices between two values go through select_f, a bitwise blend: GCC will not turn a
 * conditional float expression into a vector select under its default -ftrapping-math (the
 * other branch's arithmetic might raise an exception), but it vectorizes integer blends. */

static inline float bits_to_float(int32_t i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

static inline int32_t float_to_bits(float f)
{
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

/* cond ? a : b, with both a and b already computed. */
static inline float select_f(int cond, float a, float b)
{
    int32_t mask = -(int32_t)(cond != 0);
    return bits_to_float((float_to_bits(a) & mask) | (float_to_bits(b) & ~mask));
}

/* exp(x) for x <= 0 (positive x are treated as 0; NaN passes through). Denormal results are
 * produced by scaling in two halves, so the result is right down to exp(-104) and 0 below. */
static inline float exp_nonpositive(float x)
{
    float xc = select_f(x >= -104.0f, x, -104.0f); /* NaN -> -104 here, passed on at the end */
    xc = select_f(xc <= 0.0f, xc, 0.0f);
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;           /* Cody-Waite ln 2 */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t ni = (int32_t)n; /* in [-150, 0] */
    int32_t n1 = ni / 2, n2 = ni - n1;
    y = y * bits_to_float((n1 + 127) << 23) * bits_to_float((n2 + 127) << 23);
    return select_f(x == x, y, x);
}

/* log(1 + e) for e in [0, 1] (the softplus of a logit adds log1p(exp(-|l|))). With
 * 1 + e = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)): f = e for e <= sqrt(2) - 1 (exact, so tiny e
 * lose nothing) and f = (e - 1) / 2 above. */
static inline float log1p_unit(float e)
{
    int big = e > 0.41421356f;
    float f = select_f(big, 0.5f * (e - 1.0f), e);
    float k = select_f(big, 1.0f, 0.0f);
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y = y + k * -2.12194440e-4f;
    y = y - 0.5f * z;
    return (f + y) + k * 0.693359375f;
}

/* The Bernoulli term softplus(l) - x l = max(l, 0) - x l + log1p(e), e = exp(-|l|). */
static inline float bernoulli_term(float l, float x, float e)
{
    return (select_f(l > 0.0f, l, 0.0f) - x * l) + log1p_unit(e);
}

/* Pixels per inner pass: per-pixel terms go to a float buffer in a vectorized loop, then into
 * double accumulators. */
#define LIK_CHUNK 256
#define CUVAE_PI 3.14159265358979323846
#define SUM_LANES 8

/* Sum of t[0..n) in double: SUM_LANES interleaved accumulators (a fixed order that vectorizes),
 * combined pairwise at the end. */
static inline __attribute__((always_inline)) double sum_double(const float *t, int n)
{
    double acc[SUM_LANES] = {0};
    int i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int j = 0; j < SUM_LANES; j++) acc[j] += (double)t[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += (double)t[i];
    for (int w = SUM_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

__attribute__((target_clones("avx512f", "avx2", "default"))) static void
likelihood_rows(const float *out, const float *x, int B, int D, cuvae_likelihood lik, float sigma,
                float grad_scale, double *nll, float *dout)
{
    float t[LIK_CHUNK];
    /* Gaussian constants: every pixel adds log sigma + 0.5 log(2 pi), summed once per row. */
    const double gauss_const = (double)D * (log((double)sigma) + 0.5 * log(2.0 * CUVAE_PI));
    const float var = sigma * sigma;
    for (int b = 0; b < B; b++) {
        double row_sum = 0.0;
        for (int p0 = 0; p0 < D; p0 += LIK_CHUNK) {
            int n = D - p0 < LIK_CHUNK ? D - p0 : LIK_CHUNK;
            size_t at = (size_t)b * (size_t)D + (size_t)p0;
            const float *l = out + at, *xs = x + at;
            if (lik == CUVAE_LIK_BERNOULLI) {
                /* softplus(l) - x l = max(l, 0) - x l + log1p(exp(-|l|)); the gradient is
                 * sigmoid(l) - x, the sigmoid from the same e = exp(-|l|). */
                if (dout) {
                    float *g = dout + at;
                    for (int i = 0; i < n; i++) {
                        float e = exp_nonpositive(-fabsf(l[i]));
                        t[i] = bernoulli_term(l[i], xs[i], e);
                        /* sigmoid(l) = 1 / (1 + e) for l >= 0, e / (1 + e) below */
                        float s = select_f(l[i] >= 0.0f, 1.0f, e) / (1.0f + e);
                        g[i] = grad_scale * (s - xs[i]);
                    }
                } else {
                    for (int i = 0; i < n; i++)
                        t[i] = bernoulli_term(l[i], xs[i], exp_nonpositive(-fabsf(l[i])));
                }
            } else {
                /* 0.5 ((x - m) / sigma)^2; gradient (m - x) / sigma^2. */
                for (int i = 0; i < n; i++) {
                    float r = (xs[i] - l[i]) / sigma;
                    t[i] = 0.5f * (r * r);
                }
                if (dout) {
                    float *g = dout + at;
                    for (int i = 0; i < n; i++) g[i] = grad_scale * ((l[i] - xs[i]) / var);
                }
            }
            row_sum += sum_double(t, n);
        }
        nll[b] = lik == CUVAE_LIK_BERNOULLI ? row_sum : row_sum + gauss_const;
    }
}

typedef struct {
    const float *out, *x;
    const float *const *x_rows; /* when set, row b's target is x_rows[b] (x is unused) */
    int B, D, parts;
    cuvae_likelihood lik;
    float sigma, grad_scale;
    double *nll;
    float *dout;
} likelihood_job;

static void likelihood_part(void *arg, int t)
{
    const likelihood_job *j = arg;
    size_t r0, r1;
    cuvae_cpu_split((size_t)j->B, j->parts, t, 1, &r0, &r1);
    if (r1 <= r0) return;
    size_t at = r0 * (size_t)j->D;
    if (j->x_rows) {
        for (size_t r = r0; r < r1; r++)
            likelihood_rows(j->out + r * (size_t)j->D, j->x_rows[r], 1, j->D, j->lik, j->sigma,
                            j->grad_scale, j->nll + r, NULL);
        return;
    }
    likelihood_rows(j->out + at, j->x + at, (int)(r1 - r0), j->D, j->lik, j->sigma, j->grad_scale,
                    j->nll + r0, j->dout ? j->dout + at : NULL);
}

void cuvae_cpu_likelihood(const float *out, const float *x, int B, int D, cuvae_likelihood lik,
                          float sigma, float grad_scale, double *nll, float *dout)
{
    /* Rows are independent: split by rows, the same bits for any split. */
    int parts = cuvae_cpu_threads();
    if ((size_t)parts * 4096 > (size_t)B * (size_t)D)
        parts = (int)((size_t)B * (size_t)D / 4096) + 1;
    if (parts > B) parts = B > 0 ? B : 1;
    likelihood_job j = {.out = out,
                        .x = x,
                        .B = B,
                        .D = D,
                        .parts = parts,
                        .lik = lik,
                        .sigma = sigma,
                        .grad_scale = grad_scale,
                        .nll = nll,
                        .dout = dout};
    cuvae_cpu_parallel(parts, likelihood_part, &j);
}

void cuvae_cpu_likelihood_rows_of(const float *out, const float *const *x_rows, int B, int D,
                                  cuvae_likelihood lik, float sigma, double *nll)
{
    int parts = cuvae_cpu_threads();
    if ((size_t)parts * 4096 > (size_t)B * (size_t)D)
        parts = (int)((size_t)B * (size_t)D / 4096) + 1;
    if (parts > B) parts = B > 0 ? B : 1;
    likelihood_job j = {.out = out,
                        .x_rows = x_rows,
                        .B = B,
                        .D = D,
                        .parts = parts,
                        .lik = lik,
                        .sigma = sigma,
                        .nll = nll};
    cuvae_cpu_parallel(parts, likelihood_part, &j);
}

/* ---- optimizer ----------------------------------------------------------------------------------
 */

__attribute__((target_clones("avx512f", "avx2", "default"))) double
cuvae_cpu_sum_squares_range(const float *g, size_t n)
{
    double acc[SUM_LANES] = {0};
    size_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int j = 0; j < SUM_LANES; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += (double)g[i] * (double)g[i];
    for (int w = SUM_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

typedef struct {
    const float *g;
    size_t n;
    int parts;
    double sums[MAX_PARTS];
} squares_job;

static void squares_part(void *arg, int t)
{
    squares_job *j = arg;
    size_t a, e;
    cuvae_cpu_split(j->n, j->parts, t, PART_ALIGN, &a, &e);
    j->sums[t] = e > a ? cuvae_cpu_sum_squares_range(j->g + a, e - a) : 0.0;
}

double cuvae_cpu_sum_squares(const float *g, size_t n)
{
    /* One partial sum per part, added in part order: the result depends on the thread count
     * only. */
    squares_job j = {.g = g, .n = n, .parts = parts_for(n)};
    cuvae_cpu_parallel(j.parts, squares_part, &j);
    double sum = 0.0;
    for (int t = 0; t < j.parts; t++) sum += j.sums[t];
    return sum;
}

/* The constants of one Adam update. */
typedef struct {
    float grad_scale, weight_decay, decay, beta1, beta2, one_m_b1, one_m_b2, bc2_sqrt, eps,
        neg_step;
    int l2, shrink;
} adam_consts;

/* One element, in the order torch evaluates it: g' = g*scale (+ wd*p for Adam);
 * p' = p*(1 - lr*wd) for AdamW; m = m*b1 + (1-b1)*g'; v = v*b2 + ((1-b2)*g')*g';
 * p = p' + (-step*m) / (sqrt(v)/sqrt(bc2) + eps). The SSE2 loop below is the same sequence. */
static inline int adam_element(const adam_consts *a, float *p, float g, float *m, float *v)
{
    float gi = g * a->grad_scale;
    if (a->l2) gi = gi + a->weight_decay * *p;
    float pi = a->shrink ? *p * a->decay : *p;
    float mi = *m * a->beta1 + a->one_m_b1 * gi;
    float vi = *v * a->beta2 + a->one_m_b2 * gi * gi;
    float denom = sqrtf(vi) / a->bc2_sqrt + a->eps;
    float pn = pi + a->neg_step * mi / denom;
    /* An overflowing update (v = inf from a huge gradient, say) is not stored: x * 0 == 0
     * holds exactly for finite x. */
    if (!(mi * 0.0f == 0.0f && vi * 0.0f == 0.0f && pn * 0.0f == 0.0f)) return 1;
    *m = mi;
    *v = vi;
    *p = pn;
    return 0;
}

#if defined(__SSE2__)
/* sqrtf does not vectorize without -fno-math-errno, and the update is a pass over 4 buffers of
 * every parameter, bound by the divider: written out in SSE2 (part of x86-64) and in AVX (8 lanes,
 * chosen at run time), the same operations as adam_element in the same order, so every path gives
 * the same bits. Each returns how many leading elements it updated. */
#define ADAM_VECTOR_BODY(W, V, set1, load, store, add, mul, div, sqrt, eq, and, andnot, or, mask)  \
    const V zero = set1(0.0f);                                                                     \
    V all_ok = eq(zero, zero);                                                                     \
    const V scale = set1(a->grad_scale), wd = set1(a->weight_decay), decay = set1(a->decay),       \
            b1 = set1(a->beta1), b2 = set1(a->beta2), omb1 = set1(a->one_m_b1),                    \
            omb2 = set1(a->one_m_b2), bc2s = set1(a->bc2_sqrt), ep = set1(a->eps),                 \
            step = set1(a->neg_step);                                                              \
    size_t i = 0;                                                                                  \
    for (; i + W <= n; i += W) {                                                                   \
        V pv = load(p + i), gv = mul(load(g + i), scale);                                          \
        if (a->l2) gv = add(gv, mul(wd, pv));                                                      \
        V pi = a->shrink ? mul(pv, decay) : pv;                                                    \
        V mv = add(mul(load(m + i), b1), mul(omb1, gv));                                           \
        V vv = add(mul(load(v + i), b2), mul(mul(omb2, gv), gv));                                  \
        V denom = add(div(sqrt(vv), bc2s), ep);                                                    \
        V pn = add(pi, div(mul(step, mv), denom));                                                 \
        /* Lanes whose update is not finite keep their values (as adam_element). */                \
        V ok =                                                                                     \
            and(and(eq(mul(mv, zero), zero), eq(mul(vv, zero), zero)), eq(mul(pn, zero), zero));   \
        all_ok = and(all_ok, ok);                                                                  \
        store(m + i, or (and(ok, mv), andnot(ok, load(m + i))));                                   \
        store(v + i, or (and(ok, vv), andnot(ok, load(v + i))));                                   \
        store(p + i, or (and(ok, pn), andnot(ok, pv)));                                            \
    }                                                                                              \
    *bad += (size_t)(mask(all_ok) != (1 << W) - 1);                                                \
    return i;

static size_t adam_sse2(const adam_consts *a, float *p, const float *g, float *m, float *v,
                        size_t n, size_t *bad)
{
    ADAM_VECTOR_BODY(4, __m128, _mm_set1_ps, _mm_loadu_ps, _mm_storeu_ps, _mm_add_ps, _mm_mul_ps,
                     _mm_div_ps, _mm_sqrt_ps, _mm_cmpeq_ps, _mm_and_ps, _mm_andnot_ps, _mm_or_ps,
                     _mm_movemask_ps)
}

__attribute__((target("avx"))) static inline __m256 avx_eq(__m256 x, __m256 y)
{
    return _mm256_cmp_ps(x, y, _CMP_EQ_OQ);
}

__attribute__((target("avx"))) static size_t
adam_avx(const adam_consts *a, float *p, const float *g, float *m, float *v, size_t n, size_t *bad)
{
    ADAM_VECTOR_BODY(8, __m256, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps,
                     _mm256_mul_ps, _mm256_div_ps, _mm256_sqrt_ps, avx_eq, _mm256_and_ps,
                     _mm256_andnot_ps, _mm256_or_ps, _mm256_movemask_ps)
}
#undef ADAM_VECTOR_BODY

/* AVX-512: the same operations with a lane mask for the finiteness test. */
__attribute__((target("avx512f"))) static size_t adam_avx512(const adam_consts *a, float *p,
                                                             const float *g, float *m, float *v,
                                                             size_t n, size_t *bad)
{
    const __m512 zero = _mm512_setzero_ps(), scale = _mm512_set1_ps(a->grad_scale),
                 wd = _mm512_set1_ps(a->weight_decay), decay = _mm512_set1_ps(a->decay),
                 b1 = _mm512_set1_ps(a->beta1), b2 = _mm512_set1_ps(a->beta2),
                 omb1 = _mm512_set1_ps(a->one_m_b1), omb2 = _mm512_set1_ps(a->one_m_b2),
                 bc2s = _mm512_set1_ps(a->bc2_sqrt), ep = _mm512_set1_ps(a->eps),
                 step = _mm512_set1_ps(a->neg_step);
    __mmask16 all_ok = 0xffff;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 pv = _mm512_loadu_ps(p + i), gv = _mm512_mul_ps(_mm512_loadu_ps(g + i), scale);
        if (a->l2) gv = _mm512_add_ps(gv, _mm512_mul_ps(wd, pv));
        __m512 pi = a->shrink ? _mm512_mul_ps(pv, decay) : pv;
        __m512 mv =
            _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(m + i), b1), _mm512_mul_ps(omb1, gv));
        __m512 vv = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), b2),
                                  _mm512_mul_ps(_mm512_mul_ps(omb2, gv), gv));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vv), bc2s), ep);
        __m512 pn = _mm512_add_ps(pi, _mm512_div_ps(_mm512_mul_ps(step, mv), denom));
        __mmask16 ok = _mm512_cmp_ps_mask(_mm512_mul_ps(mv, zero), zero, _CMP_EQ_OQ) &
                       _mm512_cmp_ps_mask(_mm512_mul_ps(vv, zero), zero, _CMP_EQ_OQ) &
                       _mm512_cmp_ps_mask(_mm512_mul_ps(pn, zero), zero, _CMP_EQ_OQ);
        all_ok &= ok;
        _mm512_mask_storeu_ps(m + i, ok, mv);
        _mm512_mask_storeu_ps(v + i, ok, vv);
        _mm512_mask_storeu_ps(p + i, ok, pn);
    }
    *bad += (size_t)(all_ok != 0xffff);
    return i;
}

#endif

/* Elements [0, n) with the widest vectors the CPU has, the tail one by one. Every path gives the
 * same bits, so the split into parts changes nothing. */
static size_t adam_range(const adam_consts *a, float *p, const float *g, float *m, float *v,
                         size_t n)
{
    size_t i = 0, bad = 0;
#if defined(__SSE2__)
    i = __builtin_cpu_supports("avx512f") ? adam_avx512(a, p, g, m, v, n, &bad)
        : __builtin_cpu_supports("avx")   ? adam_avx(a, p, g, m, v, n, &bad)
                                          : adam_sse2(a, p, g, m, v, n, &bad);
#endif
    for (; i < n; i++) bad += (size_t)adam_element(a, p + i, g[i], m + i, v + i);
    return bad;
}

typedef struct {
    const adam_consts *a;
    float *p, *m, *v;
    const float *g;
    size_t n;
    int parts;
    size_t bad[MAX_PARTS];
} adam_job;

static void adam_part(void *arg, int t)
{
    adam_job *j = arg;
    size_t b, e;
    cuvae_cpu_split(j->n, j->parts, t, PART_ALIGN, &b, &e);
    j->bad[t] = e > b ? adam_range(j->a, j->p + b, j->g + b, j->m + b, j->v + b, e - b) : 0;
}

int cuvae_cpu_adam(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                   float beta2, float eps, float weight_decay, int decoupled, uint64_t t,
                   float grad_scale)
{
    /* As torch.optim.Adam/AdamW (single tensor): the step's scalars in double, rounded to float
     * where torch hands them to its float kernels. */
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    double bc2 = 1.0 - pow((double)beta2, (double)t);
    adam_consts a = {
        .grad_scale = grad_scale,
        .weight_decay = weight_decay,
        .decay = (float)(1.0 - (double)lr * (double)weight_decay),
        .beta1 = beta1,
        .beta2 = beta2,
        .one_m_b1 = 1.0f - beta1,
        .one_m_b2 = 1.0f - beta2,
        .bc2_sqrt = (float)sqrt(bc2),
        .eps = eps,
        .neg_step = (float)(-(double)lr / bc1),
        .l2 = !decoupled && weight_decay != 0.0f,
        .shrink = decoupled && weight_decay != 0.0f,
    };
    adam_job j = {.a = &a, .p = p, .g = g, .m = m, .v = v, .n = n, .parts = parts_for(n)};
    cuvae_cpu_parallel(j.parts, adam_part, &j);
    size_t bad = 0;
    for (int t = 0; t < j.parts; t++) bad += j.bad[t];
    return bad != 0;
}
