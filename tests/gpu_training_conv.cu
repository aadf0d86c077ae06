/* A convolutional VAE (model.encoder "conv 8, conv 16, linear 32" on 28x28 images; the decoder
 * its mirror: linear 32, linear 16x7x7, convt 8, convt 1) trained on the CUDA backend (cuDNN)
 * against the CPU reference, through the backend interface:
 *   1. one step from the same initial parameters: the metrics, the parameters and Adam's m and
 *      v agree within the fp32 tolerances;
 *   2. 50 steps: the per-step mean losses track within LOSS_RTOL, and it learns;
 *   3. a second CUDA run, and a run whose step is captured as a CUDA graph and replayed, give the
 *      same bits (the deterministic algorithms of conv.cu, chosen once per shape);
 *   4. evaluate (K = 20) and decode agree with the CPU's within the fp32 tolerances;
 *   5. bf16: 50 steps track the fp32 run within BF16_LOSS_RTOL and learn; a second bf16 run and
 *      a bf16 run with the step graph give the same bits.
 * Skipped (77) without a usable CUDA device or without cuDNN in the build. */
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
#include "conv.h"
#include "model.h"
#include "philox.h"

#define N_TRAIN 256
#define N_TEST 64
#define SIDE 28
#define BATCH 32
#define STEPS 50
#define EVAL_K 20
#define LATENT 8
/* As gpu_training.cu's: fp32 summation-order differences grow slowly through training; 0.1% is
 * far above them and far below what a wrong gradient does in 50 steps. bf16 rounds every
 * convolution's operands and results to 8 significant bits: 2% over 50 steps. */
#define LOSS_RTOL 1e-3
#define BF16_LOSS_RTOL 2e-2

#define REQUIRE(cond, st)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #cond, (st).msg);        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct {
    cuvae_config c;
    cuvae_model m;
    uint8_t train[N_TRAIN * SIDE * SIDE], test[N_TEST * SIDE * SIDE];
    int32_t perm[N_TRAIN];
} fixture;

static void fixture_init(fixture *f)
{
    cuvae_status st;
    char why[256] = "";
    uint8_t labels[N_TRAIN];
    cuvae_config_defaults(&f->c);
    f->c.model.n_hidden = 0;
    if (cuvae_stack_spec_parse("conv 8, conv 16, linear 32", &f->c.model.encoder, why,
                               sizeof why)) {
        fprintf(stderr, "model.encoder: %s\n", why);
        exit(1);
    }
    f->c.model.latent = LATENT;
    f->c.model.likelihood = CUVAE_LIK_BERNOULLI;
    f->c.train.batch_size = BATCH;
    f->c.train.seed = 20261206;
    f->c.train.precision = CUVAE_PREC_FP32;
    f->c.optim.lr = 1e-3f;
    f->c.optim.eps = 1e-6f; /* gpu_training.cu's reason: a well-conditioned first Adam step */
    cuvae_shape x = {1, SIDE, SIDE};
    REQUIRE(cuvae_model_layout_shape(&f->m, &f->c, x, &st) == 0, st);
    REQUIRE(f->m.enc.layer[0].kind == CUVAE_LAYER_CONV2D &&
                f->m.dec.layer[f->m.dec.n - 1].kind == CUVAE_LAYER_CONV_TRANSPOSE2D,
            st);
    cuvae_test_make_images(f->train, labels, N_TRAIN, SIDE, SIDE, 21);
    cuvae_test_make_images(f->test, labels, N_TEST, SIDE, SIDE, 22);
}

static cuvae_backend *make(const fixture *f, int cuda)
{
    cuvae_status st;
    cuvae_backend_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.model = &f->m;
    spec.config = &f->c;
    cuvae_backend *be =
        cuda ? cuvae_cuda_backend_create(&spec, &st) : cuvae_cpu_backend_create(&spec, &st);
    REQUIRE(be != NULL, st);
    REQUIRE(cuvae_backend_upload(be, CUVAE_SET_TRAIN, f->train, N_TRAIN, SIDE * SIDE, 1, &st) == 0,
            st);
    REQUIRE(cuvae_backend_upload(be, CUVAE_SET_TEST, f->test, N_TEST, SIDE * SIDE, 0, &st) == 0,
            st);
    return be;
}

static void run_steps(fixture *f, cuvae_backend *be, uint64_t first, int n, double *losses)
{
    cuvae_status st;
    const uint64_t per_epoch = N_TRAIN / BATCH;
    for (int i = 0; i < n; i++) {
        uint64_t s = first + (uint64_t)i;
        cuvae_permutation(f->c.train.seed, CUVAE_STREAM_SHUFFLE, s / per_epoch, f->perm, N_TRAIN);
        cuvae_step step = {s, f->c.optim.lr, 1.0f, f->perm + (s % per_epoch) * BATCH, BATCH};
        REQUIRE(cuvae_backend_train_step(be, &step, &st) == 0, st);
        cuvae_metrics m;
        REQUIRE(cuvae_backend_read_metrics(be, &m, 1, &st) == 0, st);
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
    REQUIRE(s->params && s->m && s->v, st);
    cuvae_train_state ts = {s->params, s->m, s->v, 0};
    REQUIRE(cuvae_backend_get_state(be, &ts, &st) == 0, st);
    s->adam_t = ts.adam_t;
}

static void free_state(state_copy *s)
{
    free(s->params);
    free(s->m);
    free(s->v);
}

static int same_run(const fixture *f, const double *la, const double *lb, cuvae_backend *a,
                    cuvae_backend *b)
{
    state_copy sa, sb;
    get_state(f, a, &sa);
    get_state(f, b, &sb);
    size_t n = f->m.n_params * sizeof(float);
    int same = memcmp(la, lb, sizeof(double) * STEPS) == 0 &&
               memcmp(sa.params, sb.params, n) == 0 && memcmp(sa.m, sb.m, n) == 0 &&
               memcmp(sa.v, sb.v, n) == 0 && sa.adam_t == sb.adam_t;
    free_state(&sa);
    free_state(&sb);
    return same;
}

/* How many of n per-step losses differ from ref by more than rtol (relative; NaN counts). */
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

static void check_doubles(const char *what, const double *got, const double *ref, int n)
{
    float g[N_TEST], r[N_TEST];
    for (int i = 0; i < n; i++) {
        g[i] = (float)got[i];
        r[i] = (float)ref[i];
    }
    cuvae_check_close(what, g, r, (size_t)n, CUVAE_FP32_RTOL, CUVAE_FP32_ATOL);
}

static void compare_eval(const fixture *f, cuvae_backend *gpu, cuvae_backend *cpu)
{
    cuvae_status st;
    int32_t idx[N_TEST];
    for (int i = 0; i < N_TEST; i++) idx[i] = i;
    static double res[2][4][N_TEST];
    static float mu[2][N_TEST * LATENT], lv[2][N_TEST * LATENT];
    cuvae_backend *be[2] = {gpu, cpu};
    for (int k = 0; k < 2; k++) {
        cuvae_eval_out out = {res[k][0], res[k][1], res[k][2], res[k][3], mu[k], lv[k]};
        REQUIRE(cuvae_backend_evaluate(be[k], CUVAE_SET_TEST, idx, N_TEST, EVAL_K, 5, &out, &st) ==
                    0,
                st);
    }
    const char *names[4] = {"neg_elbo", "neg_iw", "rec", "kl"};
    char what[96];
    for (int j = 0; j < 4; j++) {
        snprintf(what, sizeof what, "conv: evaluate %s", names[j]);
        check_doubles(what, res[0][j], res[1][j], N_TEST);
    }
    cuvae_check_close("conv: evaluate mu", mu[0], mu[1], N_TEST * LATENT, CUVAE_FP32_RTOL,
                      CUVAE_FP32_ATOL);
    cuvae_check_close("conv: evaluate logvar", lv[0], lv[1], N_TEST * LATENT, CUVAE_FP32_RTOL,
                      CUVAE_FP32_ATOL);
    static float z[16 * LATENT], xm[2][16 * SIDE * SIDE];
    cuvae_normal_fill(1, CUVAE_STREAM_SAMPLE, 0, 0, z, 16 * LATENT);
    for (int k = 0; k < 2; k++) REQUIRE(cuvae_backend_decode(be[k], z, 16, xm[k], &st) == 0, st);
    cuvae_check_close("conv: decode", xm[0], xm[1], 16 * SIDE * SIDE, CUVAE_FP32_RTOL,
                      CUVAE_FP32_ATOL);
}

int main(void)
{
    char name[256];
    if (!cuvae_conv_built()) {
        printf("gpu_training_conv: skipped: built without cuDNN\n");
        return CUVAE_TEST_SKIP;
    }
    if (!cuvae_cuda_available(name, sizeof name)) {
        printf("gpu_training_conv: skipped: no usable CUDA device (%s)\n", name);
        return CUVAE_TEST_SKIP;
    }
    printf("gpu_training_conv: device %s\n", name);
    static fixture f;
    fixture_init(&f);
    const size_t n = f.m.n_params;
    char desc[768];

    /* 1: one step. */
    cuvae_backend *gpu = make(&f, 1), *cpu = make(&f, 0);
    cuvae_backend_describe(gpu, desc, sizeof desc);
    printf("%s\n", desc);
    static double lg[STEPS], lc[STEPS];
    run_steps(&f, gpu, 0, 1, lg);
    run_steps(&f, cpu, 0, 1, lc);
    {
        double g1 = lg[0], c1 = lc[0];
        check_doubles("conv: one step's loss", &g1, &c1, 1);
        state_copy sg, sc;
        get_state(&f, gpu, &sg);
        get_state(&f, cpu, &sc);
        cuvae_check_close("conv: one step: params", sg.params, sc.params, n, CUVAE_FP32_RTOL,
                          CUVAE_FP32_ATOL);
        cuvae_check_close("conv: one step: adam m", sg.m, sc.m, n, CUVAE_FP32_RTOL,
                          CUVAE_FP32_ATOL);
        cuvae_check_close("conv: one step: adam v", sg.v, sc.v, n, CUVAE_FP32_RTOL,
                          CUVAE_FP32_ATOL);
        free_state(&sg);
        free_state(&sc);
    }

    /* 2: the curves of steps 1..49. */
    run_steps(&f, gpu, 1, STEPS - 1, lg + 1);
    run_steps(&f, cpu, 1, STEPS - 1, lc + 1);
    CHECK(curve_off("conv loss curve, CUDA against the CPU", lg, lc, STEPS, LOSS_RTOL) == 0);
    CHECK(lg[STEPS - 1] < lg[0]);

    /* 4: evaluation and decoding after training. */
    compare_eval(&f, gpu, cpu);

    /* 3 and 5: repeat runs, direct and from the step graph, fp32 then bf16. */
    for (int p = 0; p < 2; p++) {
        f.c.train.precision = p ? CUVAE_PREC_BF16 : CUVAE_PREC_FP32;
        static double l[3][STEPS];
        cuvae_backend *be[3];
        for (int k = 0; k < 3; k++) {
            f.c.train.cuda_graph = k == 2;
            be[k] = make(&f, 1);
            run_steps(&f, be[k], 0, STEPS, l[k]);
        }
        f.c.train.cuda_graph = 0;
        cuvae_backend_describe(be[2], desc, sizeof desc);
        printf("%s\n", desc);
        CHECK_MSG(desc, "step graph captured");
        CHECK_MSG(desc, "cuDNN conv plans");
        const char *prec = p ? "bf16" : "fp32";
        if (p) {
            CHECK(curve_off("conv loss curve, bf16 against fp32", l[0], lg, STEPS,
                            BF16_LOSS_RTOL) == 0);
            CHECK(l[0][STEPS - 1] < l[0][0]);
        } else {
            int same = memcmp(l[0], lg, sizeof(double) * STEPS) == 0;
            if (!same) fprintf(stderr, "fp32: a second CUDA run gave other losses\n");
            CHECK(same);
        }
        for (int k = 1; k < 3; k++) {
            int same = same_run(&f, l[0], l[k], be[0], be[k]);
            if (!same)
                fprintf(stderr, "%s: %s gave other losses or state than the first run\n", prec,
                        k == 1 ? "a second run" : "the run with the step graph");
            CHECK(same);
        }
        for (int k = 0; k < 3; k++) cuvae_backend_destroy(be[k]);
    }

    cuvae_backend_destroy(gpu);
    cuvae_backend_destroy(cpu);
    return cuvae_test_finish("gpu_training_conv");
}
