/* The CUDA backend against the CPU reference through the backend interface, at fp32 GEMM precision:
 *   1. one training step from the same initial parameters: the metrics, the parameters and Adam's
 *      m and v afterwards agree within the fp32 tolerances;
 *   2. 100 steps: the per-step mean losses track within LOSS_RTOL (relative);
 *   3. two CUDA runs with the same seed give bit-identical losses and parameters;
 *   4. evaluate (K = 50) from the same parameters agrees within the fp32 tolerances, outputs and
 *      encoder means included, and so does decode;
 *   5. the state after the CUDA run (get_state, as a checkpoint holds it) loaded into a CPU backend
 *      evaluates the same;
 *   6. a step with a non-finite loss is withheld on both, counted and recorded the same way;
 *   7. the step captured as a CUDA graph and replayed (train.cuda_graph) gives the same bits as
 *      direct steps, and withholds a non-finite step too;
 *   8. train.precision = bf16: 100 steps track the fp32 run's per-step losses within
 *      BF16_LOSS_RTOL; two bf16 runs, and a bf16 run with the step graph, give the same bits; a
 *      fresh bf16 backend given the run's state (set_state) takes the same next step.
 * Skipped (77) without a usable CUDA device. */
#define N_TRAIN 256
#define N_TEST 64
#define ROWS 28
#define COLS 28
#define PIXELS (ROWS * COLS)
#define LATENT 8
#define BATCH 32
#define STEPS 100
#define EVAL_K 50
/* Per-step mean losses of the two backends after up to 100 steps: fp32 rounding differences
 * (GEMM summation order, a few ulp in exp/log) grow slowly through training; 0.1% is far above
 * them and far below what a wrong gradient or update does in 100 steps. */
#define LOSS_RTOL 1e-3
/* The same for a bf16 run against the fp32 one: the GEMM operands are rounded to 8 significant
 * bits (relative 2^-9 per operand), which moves the losses of this model by a few parts in 1e4 at
 * a step and the trajectories apart slowly as the updates differ; 2% leaves room for that over
 * 100 steps and still fails a wrong bf16 gradient, a stale weight shadow or a missed bias. */
#define BF16_LOSS_RTOL 2e-2

#include "gpu_training_fixture.h"

static void fixture_init(fixture *f)
{
    cuvae_status st;
    uint8_t labels[N_TRAIN];
    cuvae_config_defaults(&f->c);
    f->c.model.n_hidden = 2;
    f->c.model.hidden[0] = 64;
    f->c.model.hidden[1] = 32;
    f->c.model.latent = LATENT;
    f->c.model.likelihood = CUVAE_LIK_BERNOULLI;
    f->c.train.batch_size = BATCH;
    f->c.train.seed = 20240611;
    f->c.train.precision = CUVAE_PREC_FP32;
    f->c.train.free_bits = 0.1f; /* the floor binds on some dimensions, so its rule is checked */
    f->c.optim.lr = 1e-3f;
    /* Adam's first steps move each weight by about lr * g / (|g| + eps): for gradients within a
     * few eps of zero that is a steep function of g, and fp32 summation-order noise in such a
     * gradient would show up in the parameters. eps = 1e-6 keeps the comparison well conditioned;
     * the update arithmetic itself is checked at eps = 1e-8 by gpu_parity. */
    f->c.optim.eps = 1e-6f;
    REQUIRE_ST(cuvae_model_layout(&f->m, &f->c, ROWS * COLS, &st) == 0, st);
    cuvae_test_make_images(f->train, labels, N_TRAIN, ROWS, COLS, 11);
    cuvae_test_make_images(f->test, labels, N_TEST, ROWS, COLS, 12);
}

int main(void)
{
    char name[256];
    if (!cuvae_cuda_available(name, sizeof name)) {
        printf("gpu_training: skipped: no usable CUDA device (%s)\n", name);
        return CUVAE_TEST_SKIP;
    }
    printf("gpu_training: device %s\n", name);
    static fixture f;
    fixture_init(&f);
    cuvae_status st;
    size_t n = f.m.n_params;

    cuvae_backend *gpu = make(&f, 1), *cpu = make(&f, 0);
    char desc[512];
    cuvae_backend_describe(gpu, desc, sizeof desc);
    printf("%s\n", desc);

    /* 4 (first part): the same initial parameters give the same evaluation. */
    compare_eval(&f, gpu, cpu, "initial");

    /* 1: one step. */
    double loss0 = 0; /* the fp32 run's step 0, for 8 */
    {
        cuvae_step s;
        step_of(&f, 0, &s);
        cuvae_metrics mg, mc;
        REQUIRE_ST(cuvae_backend_train_step(gpu, &s, &st) == 0, st);
        REQUIRE_ST(cuvae_backend_train_step(cpu, &s, &st) == 0, st);
        REQUIRE_ST(cuvae_backend_read_metrics(gpu, &mg, 1, &st) == 0, st);
        REQUIRE_ST(cuvae_backend_read_metrics(cpu, &mc, 1, &st) == 0, st);
        CHECK(mg.steps == 1 && mc.steps == 1 && mg.examples == BATCH && mg.skipped == 0);
        CHECK(mg.first_nonfinite_step == -1);
        double g4[4] = {mg.loss, mg.rec, mg.kl, mg.grad_norm_sum};
        double c4[4] = {mc.loss, mc.rec, mc.kl, mc.grad_norm_sum};
        check_doubles("one step: loss, rec, kl, grad norm", g4, c4, 4);
        loss0 = mg.loss / (double)BATCH;
        compare_states(&f, gpu, cpu, "one step");
    }

    /* 2: the loss curves of steps 1..99 track. */
    static double lg[STEPS], lc[STEPS], lg2[STEPS];
    run_steps(&f, gpu, 1, STEPS - 1, lg);
    run_steps(&f, cpu, 1, STEPS - 1, lc);
    CHECK(curve_off("loss curve, CUDA against the CPU, steps 1..99", lg, lc, STEPS - 1,
                    LOSS_RTOL) == 0);
    CHECK(lg[STEPS - 2] < lg[0]); /* it learns */

    /* 3: a second CUDA run repeats the first bit for bit. */
    {
        cuvae_backend *gpu2 = make(&f, 1);
        double first[1];
        run_steps(&f, gpu2, 0, 1, first);
        run_steps(&f, gpu2, 1, STEPS - 1, lg2);
        int same = memcmp(lg, lg2, sizeof(double) * (STEPS - 1)) == 0;
        if (!same) fprintf(stderr, "two CUDA runs with the same seed gave different losses\n");
        CHECK(same);
        state_copy a, b;
        get_state(&f, gpu, &a);
        get_state(&f, gpu2, &b);
        CHECK(same_state(&a, &b, n) && a.adam_t == STEPS);
        free_state(&a);
        free_state(&b);
        cuvae_backend_destroy(gpu2);
    }

    /* 7: the same run with the step captured once as a CUDA graph and replayed
     * (train.cuda_graph): the same kernels on the same inputs give the same bits, the replays
     * read each step's counter, indices and learning rate, and a non-finite step is withheld. */
    {
        static double lg3[STEPS];
        f.c.train.cuda_graph = 1;
        cuvae_backend *gg = make(&f, 1);
        f.c.train.cuda_graph = 0;
        double first[1];
        run_steps(&f, gg, 0, 1, first);
        run_steps(&f, gg, 1, STEPS - 1, lg3);
        cuvae_backend_describe(gg, desc, sizeof desc);
        CHECK_MSG(desc, "step graph captured");
        int same = memcmp(lg, lg3, sizeof(double) * (STEPS - 1)) == 0;
        if (!same) fprintf(stderr, "graph replays gave other losses than direct steps\n");
        CHECK(same);
        state_copy a, b;
        get_state(&f, gpu, &a);
        get_state(&f, gg, &b);
        CHECK(same_state(&a, &b, n) && a.adam_t == STEPS);
        /* A NaN set through set_state reaches the replayed step, which withholds its update. */
        b.params[f.m.dec.layer[f.m.dec.n - 1].b] = NAN;
        cuvae_train_state ts = {b.params, b.m, b.v, b.adam_t};
        REQUIRE_ST(cuvae_backend_set_state(gg, &ts, &st) == 0, st);
        cuvae_step stp;
        step_of(&f, STEPS, &stp);
        REQUIRE_ST(cuvae_backend_train_step(gg, &stp, &st) == 0, st);
        cuvae_metrics m;
        REQUIRE_ST(cuvae_backend_read_metrics(gg, &m, 1, &st) == 0, st);
        CHECK(m.skipped == 1 && m.steps == 0 && m.first_nonfinite_step == STEPS);
        free_state(&a);
        free_state(&b);
        cuvae_backend_destroy(gg);
    }

    /* 5: the CUDA state, as a checkpoint holds it, loaded into a fresh CPU backend. */
    {
        state_copy s;
        get_state(&f, gpu, &s);
        cuvae_backend *cpu2 = make(&f, 0);
        cuvae_train_state ts = {s.params, s.m, s.v, s.adam_t};
        REQUIRE_ST(cuvae_backend_set_state(cpu2, &ts, &st) == 0, st);
        compare_eval(&f, gpu, cpu2, "after 100 CUDA steps");

        /* 6: a NaN in the decoder's output bias makes every logit, so the loss, NaN. */
        const cuvae_layer *last = &f.m.dec.layer[f.m.dec.n - 1];
        s.params[last->b] = NAN;
        cuvae_backend *be[2] = {gpu, cpu2};
        for (int k = 0; k < 2; k++) {
            REQUIRE_ST(cuvae_backend_set_state(be[k], &ts, &st) == 0, st);
            cuvae_step stp;
            step_of(&f, STEPS, &stp);
            REQUIRE_ST(cuvae_backend_train_step(be[k], &stp, &st) == 0, st);
            cuvae_metrics m;
            REQUIRE_ST(cuvae_backend_read_metrics(be[k], &m, 1, &st) == 0, st);
            CHECK(m.skipped == 1 && m.steps == 0 && m.examples == 0);
            CHECK(m.first_nonfinite_step == STEPS);
            state_copy after;
            get_state(&f, be[k], &after);
            CHECK(memcmp(after.params, s.params, n * sizeof(float)) == 0);
            CHECK(memcmp(after.m, s.m, n * sizeof(float)) == 0);
            CHECK(after.adam_t == s.adam_t);
            free_state(&after);
        }
        cuvae_backend_destroy(cpu2);
        free_state(&s);
    }

    /* 8: bf16, against the fp32 CUDA run of 2 and 3 (steps 0..99). */
    {
        static double lf[STEPS], lb[3][STEPS];
        lf[0] = loss0;
        memcpy(lf + 1, lg, sizeof(double) * (STEPS - 1));
        f.c.train.precision = CUVAE_PREC_BF16;
        cuvae_backend *bb[3];
        for (int k = 0; k < 3; k++) {
            f.c.train.cuda_graph = k == 2; /* runs 0 and 1 direct, run 2 replays a graph */
            bb[k] = make(&f, 1);
            run_steps(&f, bb[k], 0, STEPS, lb[k]);
        }
        f.c.train.cuda_graph = 0;
        cuvae_backend_describe(bb[2], desc, sizeof desc);
        printf("%s\n", desc);
        CHECK_MSG(desc, "bf16");
        CHECK_MSG(desc, "step graph captured");
        CHECK(curve_off("loss curve, bf16 against fp32, steps 0..99", lb[0], lf, STEPS,
                        BF16_LOSS_RTOL) == 0);
        CHECK(lb[0][STEPS - 1] < lb[0][0]);
        state_copy s[3];
        for (int k = 0; k < 3; k++) get_state(&f, bb[k], &s[k]);
        for (int k = 1; k < 3; k++) {
            int same = memcmp(lb[0], lb[k], sizeof(double) * STEPS) == 0 &&
                       same_state(&s[0], &s[k], n) && s[k].adam_t == STEPS;
            if (!same)
                fprintf(stderr, "bf16: %s gave other losses or state than the first run\n",
                        k == 1 ? "a second run" : "the run with the step graph");
            CHECK(same);
        }
        /* set_state must refresh the bf16 shadow: a fresh backend given run 0's state takes the
         * same step 100 as run 0 (whose shadow the optimizer kept). */
        cuvae_backend *fresh = make(&f, 1);
        cuvae_train_state ts = {s[0].params, s[0].m, s[0].v, s[0].adam_t};
        REQUIRE_ST(cuvae_backend_set_state(fresh, &ts, &st) == 0, st);
        double next[2];
        run_steps(&f, bb[0], STEPS, 1, &next[0]);
        run_steps(&f, fresh, STEPS, 1, &next[1]);
        state_copy a, b;
        get_state(&f, bb[0], &a);
        get_state(&f, fresh, &b);
        int same = memcmp(&next[0], &next[1], sizeof next[0]) == 0 &&
                   memcmp(a.params, b.params, n * sizeof(float)) == 0;
        if (!same) fprintf(stderr, "bf16: the step after set_state differs from the run's own\n");
        CHECK(same);
        free_state(&a);
        free_state(&b);
        cuvae_backend_destroy(fresh);
        for (int k = 0; k < 3; k++) {
            free_state(&s[k]);
            cuvae_backend_destroy(bb[k]);
        }
        f.c.train.precision = CUVAE_PREC_FP32;
    }

    cuvae_backend_destroy(gpu);
    cuvae_backend_destroy(cpu);
    return cuvae_test_finish("gpu_training");
}
