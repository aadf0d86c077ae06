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
#define N_TRAIN 256
#define N_TEST 64
#define SIDE 28
#define PIXELS (SIDE * SIDE)
#define BATCH 32
#define STEPS 50
#define EVAL_K 20
#define LATENT 8
/* As gpu_training.cu's: fp32 summation-order differences grow slowly through training; 0.1% is
 * far above them and far below what a wrong gradient does in 50 steps. bf16 rounds every
 * convolution's operands and results to 8 significant bits: 2% over 50 steps. */
#define LOSS_RTOL 1e-3
#define BF16_LOSS_RTOL 2e-2

#include "gpu_training_fixture.h"
#include "conv.h"

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
    REQUIRE_ST(cuvae_model_layout_shape(&f->m, &f->c, x, &st) == 0, st);
    REQUIRE_ST(f->m.enc.layer[0].kind == CUVAE_LAYER_CONV2D &&
                   f->m.dec.layer[f->m.dec.n - 1].kind == CUVAE_LAYER_CONV_TRANSPOSE2D,
               st);
    cuvae_test_make_images(f->train, labels, N_TRAIN, SIDE, SIDE, 21);
    cuvae_test_make_images(f->test, labels, N_TEST, SIDE, SIDE, 22);
}

/* Two runs' losses and final states equal to the bit. */
static int same_run(const fixture *f, const double *la, const double *lb, cuvae_backend *a,
                    cuvae_backend *b)
{
    state_copy sa, sb;
    get_state(f, a, &sa);
    get_state(f, b, &sb);
    int same = memcmp(la, lb, sizeof(double) * STEPS) == 0 && same_state(&sa, &sb, f->m.n_params);
    free_state(&sa);
    free_state(&sb);
    return same;
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
        compare_states(&f, gpu, cpu, "conv: one step");
    }

    /* 2: the curves of steps 1..49. */
    run_steps(&f, gpu, 1, STEPS - 1, lg + 1);
    run_steps(&f, cpu, 1, STEPS - 1, lc + 1);
    CHECK(curve_off("conv loss curve, CUDA against the CPU", lg, lc, STEPS, LOSS_RTOL) == 0);
    CHECK(lg[STEPS - 1] < lg[0]);

    /* 4: evaluation and decoding after training. */
    compare_eval(&f, gpu, cpu, "conv");

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
