/* Likelihoods on the CPU, the twin of cuda/likelihood.cu: per-example -log p(x|z) (Bernoulli on
 * logits, Gaussian on means) and its gradient, rows split over the backend's threads. Sums over a
 * row accumulate in double in a fixed order that does not depend on the batch or the split. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_threads.h"
#include "twin_math.h"

/* ---- likelihoods ------------------------------------------------------------------------------
 * exp and log1p in plain float arithmetic (Cephes' expf and logf polynomials, ~1 ulp), because
 * libm's calls do not vectorize without fast-math and evaluation with K = 5000 importance samples
 * takes 4e10 of each. test_losses checks them against libm in double over the whole range used.
 * The per-pixel formulas around them are twin_math.h's, which the CUDA kernels call with libm's
 * expf and log1pf.
 *
 * Choices between two values go through cuvae_select_f (twin_math.h), a bitwise blend that
 * vectorizes. */

static inline float bits_to_float(int32_t i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

/* exp(x) for x <= 0 (positive x are treated as 0; NaN passes through). Denormal results are
 * produced by scaling in two halves, so the result is right down to exp(-104) and 0 below. */
static inline float exp_nonpositive(float x)
{
    float xc =
        cuvae_select_f(x >= -104.0f, x, -104.0f); /* NaN -> -104 here, passed on at the end */
    xc = cuvae_select_f(xc <= 0.0f, xc, 0.0f);
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
    return cuvae_select_f(x == x, y, x);
}

/* log(1 + e) for e in [0, 1] (the softplus of a logit adds log1p(exp(-|l|))). With
 * 1 + e = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)): f = e for e <= sqrt(2) - 1 (exact, so tiny e
 * lose nothing) and f = (e - 1) / 2 above. */
static inline float log1p_unit(float e)
{
    int big = e > 0.41421356f;
    float f = cuvae_select_f(big, 0.5f * (e - 1.0f), e);
    float k = cuvae_select_f(big, 1.0f, 0.0f);
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
    return cuvae_bernoulli_nll(l, x, log1p_unit(e));
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
                        g[i] = grad_scale * (cuvae_sigmoid_from_e(l[i], e) - xs[i]);
                    }
                } else {
                    for (int i = 0; i < n; i++)
                        t[i] = bernoulli_term(l[i], xs[i], exp_nonpositive(-fabsf(l[i])));
                }
            } else {
                /* 0.5 ((x - m) / sigma)^2; gradient (m - x) / sigma^2. */
                for (int i = 0; i < n; i++) t[i] = cuvae_gaussian_nll(l[i], xs[i], sigma);
                if (dout) {
                    float *g = dout + at;
                    for (int i = 0; i < n; i++)
                        g[i] = grad_scale * cuvae_gaussian_grad(l[i], xs[i], var);
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

/* Rows are independent: split by rows, the same bits for any split; a part is at least 4k
 * pixels (an exp and a log each). */
void cuvae_cpu_likelihood(const float *out, const float *x, int B, int D, cuvae_likelihood lik,
                          float sigma, float grad_scale, double *nll, float *dout)
{
    likelihood_job j = {.out = out,
                        .x = x,
                        .B = B,
                        .D = D,
                        .parts = cuvae_cpu_row_parts((size_t)B, (size_t)D * 4),
                        .lik = lik,
                        .sigma = sigma,
                        .grad_scale = grad_scale,
                        .nll = nll,
                        .dout = dout};
    cuvae_cpu_parallel(j.parts, likelihood_part, &j);
}

void cuvae_cpu_likelihood_rows_of(const float *out, const float *const *x_rows, int B, int D,
                                  cuvae_likelihood lik, float sigma, double *nll)
{
    likelihood_job j = {.out = out,
                        .x_rows = x_rows,
                        .B = B,
                        .D = D,
                        .parts = cuvae_cpu_row_parts((size_t)B, (size_t)D * 4),
                        .lik = lik,
                        .sigma = sigma,
                        .nll = nll};
    cuvae_cpu_parallel(j.parts, likelihood_part, &j);
}
