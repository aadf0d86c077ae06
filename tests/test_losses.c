/* The loss terms and the evaluation bounds of the CPU reference against direct formulas in
 * double: KL, Bernoulli and Gaussian NLL (with the float exp/log1p they use, over the whole logit
 * range), the importance-weighted bound (K = 1 is the Monte-Carlo ELBO, its mean approaches the
 * ELBO, it tightens with K, it survives log-weights of magnitude 1e4), batching independence of
 * evaluate, and Adam against a hand-computed update. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "cpu_ops.h"
#include "model.h"
#include "philox.h"
#include "tests_util.h"

static const double LOG_2PI = 1.8378770664093454836;

static int close_rel(double got, double want, double rtol, double atol)
{
    return isfinite(got) && fabs(got - want) <= atol + rtol * fabs(want);
}

#define CHECK_CLOSE(got, want, rtol, atol)                                                         \
    do {                                                                                           \
        double g_ = (got), w_ = (want);                                                            \
        if (!close_rel(g_, w_, rtol, atol)) {                                                      \
            fprintf(stderr, "%s:%d: %s = %.12g, expected %.12g (rtol %g, atol %g)\n", __FILE__,    \
                    __LINE__, #got, g_, w_, (double)(rtol), (double)(atol));                       \
            cuvae_test_failures++;                                                                 \
        }                                                                                          \
    } while (0)

/* ---- KL ------------------------------------------------------------------------------------- */

static void test_kl(void)
{
    /* Two examples, three dimensions: KL = 0.5 sum (mu^2 + e^lv - 1 - lv). */
    const float enc[2 * 6] = {0.5f, -1.0f, 0.0f,  /* mu */ 0.0f,  0.7f, -2.0f, /* logvar */
                              2.0f, 0.1f,  -0.3f, /*    */ -0.5f, 0.0f, 1.5f};
    const float eps[2 * 3] = {0.3f, -1.2f, 2.0f, 0.0f, 0.5f, -0.7f};
    float z[6];
    double kl[2], klf[2];
    const float fb = 0.2f;
    cuvae_cpu_reparam_kl_forward(enc, eps, 2, 3, fb, z, kl, klf);
    for (int b = 0; b < 2; b++) {
        double want = 0, want_f = 0;
        for (int d = 0; d < 3; d++) {
            double mu = enc[b * 6 + d], lv = enc[b * 6 + 3 + d];
            double k = 0.5 * (mu * mu + exp(lv) - 1.0 - lv);
            want += k;
            want_f += k < fb ? fb : k;
            CHECK_CLOSE(z[b * 3 + d], mu + exp(0.5 * lv) * eps[b * 3 + d], 1e-6, 1e-7);
        }
        CHECK_CLOSE(kl[b], want, 1e-6, 1e-7);
        CHECK_CLOSE(klf[b], want_f, 1e-6, 1e-7);
    }
    /* By hand for example 0: dims give 0.125, 0.5(1 + e^0.7 - 1.7), 0.5(e^-2 + 1). */
    CHECK_CLOSE(kl[0], 0.125 + 0.5 * (1 + exp(0.7) - 1.7) + 0.5 * (exp(-2.0) + 1.0), 1e-6, 0);
    /* Free bits off (0): no floor at all. */
    cuvae_cpu_reparam_kl_forward(enc, eps, 2, 3, 0.0f, z, kl, klf);
    CHECK(kl[0] == klf[0] && kl[1] == klf[1]);
}

/* ---- likelihoods -------------------------------------------------------------------------- */

static double softplus_ref(double l)
{
    return (l > 0 ? l : 0) + log1p(exp(-fabs(l)));
}

static void test_bernoulli(void)
{
    /* One pixel per row, x = 0: nll = softplus(l). Sweep the whole logit range, including the
     * region where exp(-|l|) is denormal or zero, in steps small enough to hit every branch of
     * the float exp/log1p. */
    enum { N = 44001 };
    float *l = malloc(N * sizeof *l), *x = calloc(N, sizeof *x), *g = malloc(N * sizeof *g);
    double *nll = malloc(N * sizeof *nll);
    for (int i = 0; i < N; i++) l[i] = -110.0f + 0.005f * (float)i;
    cuvae_cpu_likelihood(l, x, N, 1, CUVAE_LIK_BERNOULLI, 1.0f, 1.0f, nll, g);
    double worst_v = 0, worst_g = 0;
    for (int i = 0; i < N; i++) {
        double want = softplus_ref(l[i]);
        double sig = 1.0 / (1.0 + exp(-(double)l[i]));
        /* Relative error where floats are normal; below FLT_MIN (l < -87.3) within one denormal
         * step, expressed as a fraction of FLT_MIN so that one bound covers both. */
        double ev = want >= FLT_MIN ? fabs(nll[i] - want) / want : fabs(nll[i] - want) / FLT_MIN;
        double eg = sig >= FLT_MIN ? fabs(g[i] - sig) / sig : fabs(g[i] - sig) / FLT_MIN;
        if (!(ev <= worst_v)) worst_v = ev;
        if (!(eg <= worst_g)) worst_g = eg;
    }
    /* A few float roundings: 4e-7 is ~3 ulp. */
    printf("  bernoulli softplus over [-110, 110]: max rel err %.3g; sigmoid %.3g\n", worst_v,
           worst_g);
    CHECK(worst_v < 4e-7);
    CHECK(worst_g < 4e-7);

    /* Direct formula with x in {0, 1} and in (0, 1), rows of several pixels. */
    enum { B = 3, D = 50 };
    float lo[B * D], xo[B * D], go[B * D];
    double no[B];
    for (int i = 0; i < B * D; i++) {
        lo[i] = 12.0f * cuvae_u32_to_uniform(cuvae_philox_word(5, 50, 0, (uint64_t)i)) - 6.0f;
        xo[i] = cuvae_u32_to_uniform(cuvae_philox_word(5, 50, 1, (uint64_t)i));
        if (i < D) xo[i] = xo[i] < 0.5f ? 0.0f : 1.0f;
    }
    cuvae_cpu_likelihood(lo, xo, B, D, CUVAE_LIK_BERNOULLI, 1.0f, 0.25f, no, go);
    for (int b = 0; b < B; b++) {
        double want = 0;
        for (int p = 0; p < D; p++) {
            double lv = lo[b * D + p], xv = xo[b * D + p];
            double s = 1.0 / (1.0 + exp(-lv));
            want -= xv * log(s) + (1.0 - xv) * log1p(-s);
            CHECK_CLOSE(go[b * D + p], 0.25 * (s - xv), 1e-6, 1e-7);
        }
        CHECK_CLOSE(no[b], want, 1e-6, 0);
    }
    /* Vector loop and scalar remainder agree bit for bit: pixel by pixel gives the same
     * gradient. */
    for (int i = 0; i < B * D; i++) {
        float gi;
        double ni;
        cuvae_cpu_likelihood(lo + i, xo + i, 1, 1, CUVAE_LIK_BERNOULLI, 1.0f, 0.25f, &ni, &gi);
        CHECK(gi == go[i]);
    }

    /* Large logits stay finite and right: softplus(100) - 100 = 3.7e-44, softplus(-100) = ... */
    float big[4] = {100.0f, -100.0f, 100.0f, -100.0f}, xb[4] = {1, 1, 0, 0}, gb[4];
    double nb[4];
    cuvae_cpu_likelihood(big, xb, 4, 1, CUVAE_LIK_BERNOULLI, 1.0f, 1.0f, nb, gb);
    CHECK_CLOSE(nb[0], 0.0, 0, 1e-30);
    CHECK_CLOSE(nb[1], 100.0, 1e-7, 0);
    CHECK_CLOSE(nb[2], 100.0, 1e-7, 0);
    CHECK_CLOSE(nb[3], 0.0, 0, 1e-30);
    CHECK_CLOSE(gb[0], 0.0, 0, 1e-30);
    CHECK_CLOSE(gb[1], -1.0, 1e-7, 0);
    CHECK_CLOSE(gb[2], 1.0, 1e-7, 0);
    CHECK_CLOSE(gb[3], 0.0, 0, 1e-30);
    /* A NaN logit reaches the loss (the non-finite check depends on it). */
    float nanl = NAN, x0 = 0, g0;
    double n0;
    cuvae_cpu_likelihood(&nanl, &x0, 1, 1, CUVAE_LIK_BERNOULLI, 1.0f, 1.0f, &n0, &g0);
    CHECK(isnan(n0));
    free(l);
    free(x);
    free(g);
    free(nll);
}

static void test_gaussian(void)
{
    enum { B = 2, D = 37 };
    float m[B * D], x[B * D], g[B * D];
    double nll[B];
    const float sigma = 0.3f;
    for (int i = 0; i < B * D; i++) {
        m[i] = 2.0f * cuvae_u32_to_uniform(cuvae_philox_word(6, 60, 0, (uint64_t)i)) - 0.5f;
        x[i] = cuvae_u32_to_uniform(cuvae_philox_word(6, 60, 1, (uint64_t)i));
    }
    cuvae_cpu_likelihood(m, x, B, D, CUVAE_LIK_GAUSSIAN, sigma, 0.5f, nll, g);
    for (int b = 0; b < B; b++) {
        double want = 0, s = sigma;
        for (int p = 0; p < D; p++) {
            double r = ((double)x[b * D + p] - m[b * D + p]) / s;
            want += 0.5 * r * r + log(s) + 0.5 * LOG_2PI;
            CHECK_CLOSE(g[b * D + p], 0.5 * ((double)m[b * D + p] - x[b * D + p]) / (s * s), 1e-6,
                        1e-7);
        }
        CHECK_CLOSE(nll[b], want, 1e-6, 0);
    }
}

/* ---- evaluation bounds ----------------------------------------------------------------------- */

typedef struct {
    cuvae_config c;
    cuvae_model m;
    cuvae_backend *be;
    uint8_t *pixels;
    int n;
} small_vae;

/* A small VAE on generated 8x8 images, a few training steps in so that the encoder is not at
 * its initialization. */
static int small_vae_make(small_vae *v, cuvae_likelihood lik, float sigma, int hidden, int latent,
                          int train_steps)
{
    cuvae_status st;
    memset(v, 0, sizeof *v);
    cuvae_config_defaults(&v->c);
    v->c.model.n_hidden = 1;
    v->c.model.hidden[0] = hidden;
    v->c.model.latent = latent;
    v->c.model.likelihood = lik;
    v->c.model.gaussian_sigma = sigma;
    v->c.train.seed = 5;
    v->c.train.batch_size = 16;
    v->n = 64;
    v->pixels = malloc((size_t)v->n * 64);
    cuvae_test_make_images(v->pixels, NULL, v->n, 8, 8, 3);
    if (lik == CUVAE_LIK_BERNOULLI) cuvae_binarize_fixed(v->pixels, v->n, 64, 11);
    if (cuvae_model_layout(&v->m, &v->c, 64, &st)) goto fail;
    cuvae_backend_spec spec = {.model = &v->m, .config = &v->c};
    v->be = cuvae_cpu_backend_create(&spec, &st);
    if (!v->be) goto fail;
    if (cuvae_backend_upload(v->be, CUVAE_SET_TRAIN, v->pixels, v->n, 64, 0, &st) ||
        cuvae_backend_upload(v->be, CUVAE_SET_TEST, v->pixels, v->n, 64, 0, &st))
        goto fail;
    int32_t idx[16];
    for (int s = 0; s < train_steps; s++) {
        for (int i = 0; i < 16; i++) idx[i] = (s * 16 + i) % v->n;
        cuvae_step step = {.step = (uint64_t)s, .lr = 3e-3f, .beta = 1, .idx = idx, .batch = 16};
        if (cuvae_backend_train_step(v->be, &step, &st)) goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "small vae: %s\n", st.msg);
    cuvae_test_failures++;
    cuvae_backend_destroy(v->be);
    free(v->pixels);
    v->be = NULL;
    return -1;
}

static void small_vae_free(small_vae *v)
{
    cuvae_backend_destroy(v->be);
    free(v->pixels);
}

/* K = 1: the bound is -(log p(x|z) + log p(z) - log q(z|x)) for the one sample, computed here
 * from the decoder's output and the densities written out in full (2 pi terms included). */
static void test_k1_is_mc_elbo(cuvae_likelihood lik, float sigma)
{
    small_vae v;
    if (small_vae_make(&v, lik, sigma, 32, 4, 20)) return;
    enum { N = 6, L = 4, D = 64 };
    int32_t idx[N] = {5, 0, 17, 33, 62, 8};
    double neg_iw[N], neg_elbo[N], rec[N], kl[N];
    float mu[N * L], lv[N * L], z[N * L], eps[N * L], xm[N * D];
    cuvae_status st;
    cuvae_eval_out out = {neg_elbo, neg_iw, rec, kl, mu, lv};
    const uint64_t counter = 9;
    CHECK(cuvae_backend_evaluate(v.be, CUVAE_SET_TEST, idx, N, 1, counter, &out, &st) == 0);
    for (int i = 0; i < N; i++) {
        cuvae_normal_fill(v.c.train.seed, CUVAE_STREAM_EVAL, counter, (uint64_t)idx[i] * L,
                          eps + i * L, L);
        for (int d = 0; d < L; d++)
            z[i * L + d] = mu[i * L + d] + expf(0.5f * lv[i * L + d]) * eps[i * L + d];
    }
    CHECK(cuvae_backend_decode(v.be, z, N, xm, &st) == 0);
    for (int i = 0; i < N; i++) {
        double log_px = 0, log_pz = 0, log_q = 0, kl_ref = 0;
        for (int p = 0; p < D; p++) {
            double x = v.pixels[idx[i] * D + p] / 255.0, q = xm[i * D + p];
            if (lik == CUVAE_LIK_BERNOULLI) {
                log_px += x * log(q) + (1 - x) * log1p(-q);
            } else {
                double r = (x - q) / sigma;
                log_px += -0.5 * r * r - log((double)sigma) - 0.5 * LOG_2PI;
            }
        }
        for (int d = 0; d < L; d++) {
            double zd = z[i * L + d], m = mu[i * L + d], lvd = lv[i * L + d];
            double s = exp(0.5 * lvd), u = (zd - m) / s;
            log_pz += -0.5 * zd * zd - 0.5 * LOG_2PI;
            log_q += -0.5 * u * u - log(s) - 0.5 * LOG_2PI;
            kl_ref += 0.5 * (m * m + exp(lvd) - 1 - lvd);
        }
        double mc = log_px + log_pz - log_q;
        /* Sigmoid probabilities lose relative precision near 1, and the float z only carries
         * 7 digits: 1e-4 relative covers both. */
        CHECK_CLOSE(neg_iw[i], -mc, 1e-4, 1e-4);
        CHECK_CLOSE(rec[i], -log_px, 1e-4, 1e-4);
        CHECK_CLOSE(kl[i], kl_ref, 1e-5, 1e-6);
        CHECK_CLOSE(neg_elbo[i], rec[i] + kl[i], 1e-12, 0);
    }
    small_vae_free(&v);
}

/* Statistics of the bound on a few examples. */
static void test_bound_statistics(void)
{
    small_vae v;
    if (small_vae_make(&v, CUVAE_LIK_BERNOULLI, 1.0f, 32, 4, 40)) return;
    cuvae_status st;
    enum { N = 8, M = 400, KBIG = 4000 };
    int32_t idx[N];
    for (int i = 0; i < N; i++) idx[i] = 7 * i;

    /* Mean of the K = 1 bound over M independent draws (counters) vs the ELBO with K = 4000:
     * both estimate E[rec] + KL for each example. The difference must lie within 4 standard
     * errors, sqrt(var_1 / M + var_rec / K), with the variances estimated from the draws (a 4
     * sigma bound: false alarms ~1e-4 per example, and the test is deterministic anyway). */
    double sum[N] = {0}, sum2[N] = {0}, rsum[N] = {0}, rsum2[N] = {0};
    double b[N], r[N], e[N], kl[N];
    for (int j = 0; j < M; j++) {
        cuvae_eval_out o = {.neg_iw = b, .rec = r};
        CHECK(cuvae_backend_evaluate(v.be, CUVAE_SET_TEST, idx, N, 1, 1000 + (uint64_t)j, &o,
                                     &st) == 0);
        for (int i = 0; i < N; i++) {
            sum[i] += b[i];
            sum2[i] += b[i] * b[i];
            rsum[i] += r[i];
            rsum2[i] += r[i] * r[i];
        }
    }
    cuvae_eval_out ob = {.neg_elbo = e, .kl = kl};
    CHECK(cuvae_backend_evaluate(v.be, CUVAE_SET_TEST, idx, N, KBIG, 3, &ob, &st) == 0);
    int outside = 0;
    for (int i = 0; i < N; i++) {
        double mean = sum[i] / M, var = sum2[i] / M - mean * mean;
        double rmean = rsum[i] / M, rvar = rsum2[i] / M - rmean * rmean;
        double se = sqrt(var / M + rvar / KBIG);
        if (fabs(mean - e[i]) > 4 * se) {
            fprintf(stderr, "example %d: mean K=1 bound %.4f vs ELBO %.4f: beyond 4 x %.4f\n",
                    idx[i], mean, e[i], se);
            outside++;
        }
    }
    CHECK(outside == 0);

    /* The bound tightens with K on average over the examples (all 64) and lies below the
     * ELBO. The steps between these K are several times the bound's standard error. */
    enum { NALL = 64 };
    int32_t all[NALL];
    double ball[NALL], eall[NALL];
    for (int i = 0; i < NALL; i++) all[i] = i;
    const int Ks[3] = {1, 10, 100};
    double mean_iw[3], mean_elbo[3];
    for (int k = 0; k < 3; k++) {
        cuvae_eval_out o = {.neg_iw = ball, .neg_elbo = eall};
        CHECK(cuvae_backend_evaluate(v.be, CUVAE_SET_TEST, all, NALL, Ks[k], 77, &o, &st) == 0);
        mean_iw[k] = mean_elbo[k] = 0;
        for (int i = 0; i < NALL; i++) {
            mean_iw[k] += ball[i] / NALL;
            mean_elbo[k] += eall[i] / NALL;
        }
        printf("  K=%-4d mean -IW bound %.4f, mean -ELBO %.4f\n", Ks[k], mean_iw[k], mean_elbo[k]);
        if (k > 0) CHECK(mean_iw[k] < mean_iw[k - 1] && mean_iw[k] < mean_elbo[k]);
    }
    small_vae_free(&v);
}

/* Log-weights of magnitude ~1e4 (a Gaussian likelihood with a tiny sigma): a naive sum of
 * exp(log w) underflows to 0; the max-shifted sum stays finite and within [best, best + log K]. */
static void test_large_log_weights(void)
{
    small_vae v;
    if (small_vae_make(&v, CUVAE_LIK_GAUSSIAN, 0.005f, 16, 3, 0)) return;
    cuvae_status st;
    enum { N = 4, K = 50 };
    int32_t idx[N] = {1, 2, 3, 4};
    double iw[N], elbo[N], rec[N];
    cuvae_eval_out o = {.neg_iw = iw, .neg_elbo = elbo, .rec = rec};
    CHECK(cuvae_backend_evaluate(v.be, CUVAE_SET_TEST, idx, N, K, 0, &o, &st) == 0);
    for (int i = 0; i < N; i++) {
        CHECK(isfinite(iw[i]) && rec[i] > 1e3);
        CHECK(iw[i] <= elbo[i] + 1e-6 * elbo[i]); /* Jensen, up to the closed-form KL */
        /* K = 1 with the same data gives a finite value of the same magnitude too. */
    }
    double one[N];
    cuvae_eval_out o1 = {.neg_iw = one};
    CHECK(cuvae_backend_evaluate(v.be, CUVAE_SET_TEST, idx, N, 1, 0, &o1, &st) == 0);
    for (int i = 0; i < N; i++) CHECK(isfinite(one[i]) && one[i] > 1e3);
    printf("  large log-weights: -IW bound %.1f (rec %.1f)\n", iw[0], rec[0]);
    small_vae_free(&v);
}

/* One call for n examples or two calls for halves: the same bits (with K = 500 the decoder's
 * blocks of 1024 samples split examples; the indices are not in order). */
static void test_batching_bit_exact(int hidden, int latent, int K)
{
    small_vae v;
    if (small_vae_make(&v, CUVAE_LIK_BERNOULLI, 1.0f, hidden, latent, 10)) return;
    cuvae_status st;
    enum { N = 10, LMAX = 16 };
    int32_t idx[N] = {3, 9, 27, 1, 0, 63, 12, 40, 41, 8};
    double a[4][N], b[4][N];
    float mu_a[N * LMAX], lv_a[N * LMAX], mu_b[N * LMAX], lv_b[N * LMAX];
    cuvae_eval_out oa = {a[0], a[1], a[2], a[3], mu_a, lv_a};
    CHECK(cuvae_backend_evaluate(v.be, CUVAE_SET_TEST, idx, N, K, 5, &oa, &st) == 0);
    /* Setting the same parameters again drops whatever the backend kept from the first call, so
     * that the halves are computed afresh. */
    float *params = malloc(v.m.n_params * sizeof *params);
    cuvae_train_state ts = {.params = params};
    CHECK(cuvae_backend_get_state(v.be, &ts, &st) == 0 &&
          cuvae_backend_set_state(v.be, &ts, &st) == 0);
    free(params);
    for (int h = 0; h < 2; h++) {
        int off = h * 4, n = h ? N - 4 : 4;
        cuvae_eval_out ob = {b[0] + off, b[1] + off,          b[2] + off,
                             b[3] + off, mu_b + off * latent, lv_b + off * latent};
        CHECK(cuvae_backend_evaluate(v.be, CUVAE_SET_TEST, idx + off, n, K, 5, &ob, &st) == 0);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(mu_a, mu_b, (size_t)N * latent * sizeof(float)) == 0);
    CHECK(memcmp(lv_a, lv_b, (size_t)N * latent * sizeof(float)) == 0);
    /* The same example alone, and evaluated again: identical too. */
    double alone;
    cuvae_eval_out oc = {.neg_iw = &alone};
    CHECK(cuvae_backend_evaluate(v.be, CUVAE_SET_TEST, idx + 7, 1, K, 5, &oc, &st) == 0);
    CHECK(memcmp(&alone, &a[1][7], sizeof alone) == 0);
    small_vae_free(&v);
}

/* ---- Adam ------------------------------------------------------------------------------------ */

/* torch.optim.Adam/AdamW's update written out in double for one element. */
static void adam_ref(double *p, double g, double *m, double *v, double lr, double b1, double b2,
                     double eps, double wd, int decoupled, int t, double scale)
{
    g *= scale;
    if (decoupled)
        *p *= 1 - lr * wd;
    else
        g += wd * *p;
    *m = b1 * *m + (1 - b1) * g;
    *v = b2 * *v + (1 - b2) * g * g;
    double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
    *p -= lr / bc1 * *m / (sqrt(*v) / sqrt(bc2) + eps);
}

static void test_adam(int decoupled, float wd, float scale)
{
    enum { N = 11 }; /* not a multiple of 4: the vector loop and the scalar tail */
    float p[N], m[N] = {0}, v[N] = {0}, g1[N], g2[N];
    double pr[N], mr[N] = {0}, vr[N] = {0};
    for (int i = 0; i < N; i++) {
        p[i] = pr[i] = 0.1f * (float)(i - 5);
        g1[i] = 0.3f * (float)((i * 7) % 5) - 0.6f;
        g2[i] = 0.05f * (float)(i - 3);
    }
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    for (int t = 1; t <= 2; t++) {
        const float *g = t == 1 ? g1 : g2;
        cuvae_cpu_adam(p, g, m, v, N, lr, b1, b2, eps, wd, decoupled, (uint64_t)t, scale);
        for (int i = 0; i < N; i++)
            adam_ref(&pr[i], g[i], &mr[i], &vr[i], lr, b1, b2, eps, wd, decoupled, t, scale);
    }
    for (int i = 0; i < N; i++) {
        CHECK_CLOSE(p[i], pr[i], 1e-6, 1e-7);
        CHECK_CLOSE(m[i], mr[i], 1e-6, 1e-9);
        CHECK_CLOSE(v[i], vr[i], 1e-5, 1e-12);
    }
    /* The vector loops and the scalar tail are the same arithmetic: one element at a time gives
     * the same bits. */
    {
        float q[N], mq[N] = {0}, vq[N] = {0};
        for (int i = 0; i < N; i++) q[i] = 0.1f * (float)(i - 5);
        for (int t = 1; t <= 2; t++)
            for (int i = 0; i < N; i++)
                cuvae_cpu_adam(q + i, (t == 1 ? g1 : g2) + i, mq + i, vq + i, 1, lr, b1, b2, eps,
                               wd, decoupled, (uint64_t)t, scale);
        CHECK(memcmp(q, p, sizeof q) == 0 && memcmp(mq, m, sizeof mq) == 0 &&
              memcmp(vq, v, sizeof vq) == 0);
    }
    /* An update that would overflow (v = (1 - b2) g^2 = inf) is refused for the elements
     * concerned, on every path (scalar tail and vector body), and reported. */
    {
        float q[13], mq[13], vq[13], gq[13];
        for (int i = 0; i < 13; i++) {
            q[i] = 0.1f * (float)i;
            mq[i] = 0.01f;
            vq[i] = 0.02f;
            gq[i] = 0.5f;
        }
        gq[3] = 1e30f;  /* vector body */
        gq[12] = 3e38f; /* scalar tail (13 = 8 + 4 + 1) */
        CHECK(cuvae_cpu_adam(q, gq, mq, vq, 13, lr, b1, b2, eps, wd, decoupled, 2, scale) == 1);
        for (int i = 0; i < 13; i++) {
            int kept = i == 3 || i == 12;
            CHECK((q[i] == 0.1f * (float)i) == kept || (i == 0 && q[i] == 0.0f && kept));
            CHECK((mq[i] == 0.01f && vq[i] == 0.02f) == kept);
            CHECK(isfinite(q[i]) && isfinite(mq[i]) && isfinite(vq[i]));
        }
        gq[3] = gq[12] = 0.5f;
        CHECK(cuvae_cpu_adam(q, gq, mq, vq, 13, lr, b1, b2, eps, wd, decoupled, 3, scale) == 0);
    }
    /* By hand, element 0 of plain Adam at t = 1: m = 0.1 g, v = 0.001 g^2, bias-corrected
     * m / sqrt(v) = sign(g): p moves by lr against the gradient. */
    if (!decoupled && wd == 0 && scale == 1) {
        float q = 0.5f, mq = 0, vq = 0, gq = -0.6f;
        cuvae_cpu_adam(&q, &gq, &mq, &vq, 1, lr, b1, b2, eps, 0, 0, 1, 1.0f);
        CHECK_CLOSE(q, 0.5 + 0.01, 1e-6, 0);
    }
}

int main(void)
{
    printf("test_losses\n");
    test_kl();
    test_bernoulli();
    test_gaussian();
    test_k1_is_mc_elbo(CUVAE_LIK_BERNOULLI, 1.0f);
    test_k1_is_mc_elbo(CUVAE_LIK_GAUSSIAN, 0.2f);
    test_bound_statistics();
    test_large_log_weights();
    test_batching_bit_exact(16, 3, 500);
    test_batching_bit_exact(200, 16, 500);
    test_batching_bit_exact(200, 16, 1);
    test_adam(0, 0.0f, 1.0f);
    test_adam(0, 0.01f, 0.5f);
    test_adam(1, 0.05f, 1.0f);
    return cuvae_test_finish("test_losses");
}
