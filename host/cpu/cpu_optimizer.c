/* The optimizer on the CPU, the twin of cuda/optimizer.cu: Adam / AdamW over the flat buffers
 * and the sum of squares for the gradient norm, both split over the backend's threads. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_threads.h"

#if defined(__SSE2__)
#include <immintrin.h> /* SSE2 everywhere on x86-64; AVX and AVX-512 inside target functions */
#endif

#define PART_ALIGN 64
#define MAX_PARTS CUVAE_CPU_MAX_PARTS
#define SUM_LANES 8

/* ---- optimizer ----------------------------------------------------------------------------------
 */

/* The clones stay internal and an ordinary function calls them: clang (14) leaves an external
 * target_clones function's resolver out of a static library's object, and the link fails. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static double
sum_squares_clones(const float *g, size_t n)
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

double cuvae_cpu_sum_squares_range(const float *g, size_t n)
{
    return sum_squares_clones(g, n);
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
    squares_job j = {.g = g, .n = n, .parts = cuvae_cpu_parts_for(n)};
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
    adam_job j = {.a = &a, .p = p, .g = g, .m = m, .v = v, .n = n, .parts = cuvae_cpu_parts_for(n)};
    cuvae_cpu_parallel(j.parts, adam_part, &j);
    size_t bad = 0;
    for (int t = 0; t < j.parts; t++) bad += j.bad[t];
    return bad != 0;
}
