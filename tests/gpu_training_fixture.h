/* What gpu_training.cu and gpu_training_conv.cu share: a model trained on the CUDA backend and on
 * the CPU reference from the same synthetic images, through the backend interface. The including
 * file defines N_TRAIN, N_TEST, PIXELS (values an image), BATCH, LATENT and EVAL_K, and writes its
 * own fixture_init (the model and the images). */
#ifndef CUVAE_GPU_TRAINING_FIXTURE_H
#define CUVAE_GPU_TRAINING_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "tests_util.h"
}
#include "backend.h"
#include "config.h"
#include "model.h"
#include "philox.h"

typedef struct {
    cuvae_config c;
    cuvae_model m;
    uint8_t train[N_TRAIN * PIXELS], test[N_TEST * PIXELS];
    int32_t perm[N_TRAIN];
} fixture;

/* A backend of the fixture's model and config (CUDA or the CPU) with both sets uploaded. */
static cuvae_backend *make(const fixture *f, int cuda)
{
    cuvae_status st;
    cuvae_backend_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.model = &f->m;
    spec.config = &f->c;
    cuvae_backend *be =
        cuda ? cuvae_cuda_backend_create(&spec, &st) : cuvae_cpu_backend_create(&spec, &st);
    REQUIRE_ST(be != NULL, st);
    REQUIRE_ST(cuvae_backend_upload(be, CUVAE_SET_TRAIN, f->train, N_TRAIN, PIXELS, 1, &st) == 0,
               st);
    REQUIRE_ST(cuvae_backend_upload(be, CUVAE_SET_TEST, f->test, N_TEST, PIXELS, 0, &st) == 0, st);
    return be;
}

/* Step s: batch s % (N_TRAIN / BATCH) of epoch s / (N_TRAIN / BATCH)'s permutation (drawn afresh
 * for every step, as the runs interleave). */
static void step_of(fixture *f, uint64_t s, cuvae_step *out)
{
    const uint64_t per_epoch = N_TRAIN / BATCH;
    cuvae_permutation(f->c.train.seed, CUVAE_STREAM_SHUFFLE, s / per_epoch, f->perm, N_TRAIN);
    out->step = s;
    out->lr = f->c.optim.lr;
    out->beta = 1.0f;
    out->idx = f->perm + (s % per_epoch) * BATCH;
    out->batch = BATCH;
}

/* Runs steps [first, first + n) and records the per-step mean losses. */
static void run_steps(fixture *f, cuvae_backend *be, uint64_t first, int n, double *losses)
{
    cuvae_status st;
    for (int i = 0; i < n; i++) {
        cuvae_step s;
        step_of(f, first + (uint64_t)i, &s);
        REQUIRE_ST(cuvae_backend_train_step(be, &s, &st) == 0, st);
        cuvae_metrics m;
        REQUIRE_ST(cuvae_backend_read_metrics(be, &m, 1, &st) == 0, st);
        CHECK(m.steps == 1 && m.skipped == 0 && m.examples == BATCH);
        losses[i] = m.examples > 0 ? m.loss / (double)m.examples : NAN;
    }
}

typedef struct {
    float *params, *m, *v;
    uint64_t adam_t;
} state_copy;

static void get_state(const fixture *f, cuvae_backend *be, state_copy *s)
{
    cuvae_status st;
    size_t n = f->m.n_params;
    s->params = (float *)malloc(n * sizeof(float));
    s->m = (float *)malloc(n * sizeof(float));
    s->v = (float *)malloc(n * sizeof(float));
    REQUIRE_ST(s->params && s->m && s->v, st);
    cuvae_train_state ts = {s->params, s->m, s->v, 0};
    REQUIRE_ST(cuvae_backend_get_state(be, &ts, &st) == 0, st);
    s->adam_t = ts.adam_t;
}

static void free_state(state_copy *s)
{
    free(s->params);
    free(s->m);
    free(s->v);
}

/* Parameters, Adam's moments and count equal to the bit. */
static int same_state(const state_copy *a, const state_copy *b, size_t n)
{
    return memcmp(a->params, b->params, n * sizeof(float)) == 0 &&
           memcmp(a->m, b->m, n * sizeof(float)) == 0 &&
           memcmp(a->v, b->v, n * sizeof(float)) == 0 && a->adam_t == b->adam_t;
}

/* The two backends' states after one step agree within the fp32 tolerances. */
static void compare_states(const fixture *f, cuvae_backend *gpu, cuvae_backend *cpu,
                           const char *tag)
{
    state_copy sg, sc;
    size_t n = f->m.n_params;
    char what[96];
    get_state(f, gpu, &sg);
    get_state(f, cpu, &sc);
    CHECK(sg.adam_t == sc.adam_t);
    snprintf(what, sizeof what, "%s: params", tag);
    cuvae_check_close(what, sg.params, sc.params, n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    snprintf(what, sizeof what, "%s: adam m", tag);
    cuvae_check_close(what, sg.m, sc.m, n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    snprintf(what, sizeof what, "%s: adam v", tag);
    cuvae_check_close(what, sg.v, sc.v, n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    free_state(&sg);
    free_state(&sc);
}

/* How many of n per-step losses differ from ref by more than rtol (relative; NaN counts), with
 * the first, the last and the worst printed under `what`. */
static int curve_off(const char *what, const double *got, const double *ref, int n, double rtol)
{
    int off = 0;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double rel = fabs(got[i] - ref[i]) / fabs(ref[i]);
        if (!(rel <= rtol)) off++;
        if (rel > worst || rel != rel) worst = rel;
    }
    printf("%s: first %.4f (reference %.4f), last %.4f (reference %.4f), worst relative "
           "difference %.3g\n",
           what, got[0], ref[0], got[n - 1], ref[n - 1], worst);
    if (off) fprintf(stderr, "%s: %d of %d steps differ by more than %g\n", what, off, n, rtol);
    return off;
}

/* Doubles compared as floats within the fp32 tolerances. */
static void check_doubles(const char *what, const double *got, const double *ref, int n)
{
    float *g = (float *)malloc(sizeof(float) * (size_t)n),
          *r = (float *)malloc(sizeof(float) * (size_t)n);
    if (!g || !r) exit(1);
    for (int i = 0; i < n; i++) {
        g[i] = (float)got[i];
        r[i] = (float)ref[i];
    }
    cuvae_check_close(what, g, r, (size_t)n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    free(g);
    free(r);
}

/* Evaluates the whole test set (K = EVAL_K) on both backends with every output, decodes the same
 * 16 latents, and compares them. */
static void compare_eval(const fixture *f, cuvae_backend *gpu, cuvae_backend *cpu, const char *tag)
{
    cuvae_status st;
    int32_t idx[N_TEST];
    for (int i = 0; i < N_TEST; i++) idx[i] = i;
    static double res[2][4][N_TEST];
    static float mu[2][N_TEST * LATENT], lv[2][N_TEST * LATENT];
    if (f->m.latent != LATENT) exit(1);
    cuvae_backend *be[2] = {gpu, cpu};
    for (int k = 0; k < 2; k++) {
        cuvae_eval_out out = {res[k][0], res[k][1], res[k][2], res[k][3], mu[k], lv[k]};
        REQUIRE_ST(
            cuvae_backend_evaluate(be[k], CUVAE_SET_TEST, idx, N_TEST, EVAL_K, 5, &out, &st) == 0,
            st);
    }
    const char *names[4] = {"neg_elbo", "neg_iw", "rec", "kl"};
    char what[96];
    for (int j = 0; j < 4; j++) {
        snprintf(what, sizeof what, "%s: evaluate %s", tag, names[j]);
        check_doubles(what, res[0][j], res[1][j], N_TEST);
    }
    snprintf(what, sizeof what, "%s: evaluate mu", tag);
    cuvae_check_close(what, mu[0], mu[1], N_TEST * LATENT, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
    snprintf(what, sizeof what, "%s: evaluate logvar", tag);
    cuvae_check_close(what, lv[0], lv[1], N_TEST * LATENT, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);

    /* Decoding the same latents. */
    static float z[16 * LATENT], xm[2][16 * PIXELS];
    cuvae_normal_fill(1, CUVAE_STREAM_SAMPLE, 0, 0, z, 16 * LATENT);
    for (int k = 0; k < 2; k++) REQUIRE_ST(cuvae_backend_decode(be[k], z, 16, xm[k], &st) == 0, st);
    snprintf(what, sizeof what, "%s: decode", tag);
    cuvae_check_close(what, xm[0], xm[1], 16 * PIXELS, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
}

#endif
