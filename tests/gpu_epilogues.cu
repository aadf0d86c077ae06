/* The fused epilogues decide the CUDA backend's speed: on a GPU of compute capability 9.x (H100,
 * H200) cuBLASLt must fuse every epilogue the linear layers ask for (bias, ReLU with its mask,
 * the ReLU and bias gradients) in bf16 and in tf32, for the default architecture at batch 128 and
 * for a wider one at batch 512, through creation, training steps with and without the step graph
 * and an evaluation; none may be refused at plan time or at run time. On other GPUs the counts are
 * printed and only an error status (a bad argument, not a missing kernel) fails. Each case prints
 * describe(), whose fused/refused counts bench/device_check.sh quotes. Skipped (77) without a
 * usable CUDA device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "tests_util.h"
}
#include "backend.h"
#include "config.h"
#include "cuda_backend_impl.h"
#include "gemm.h"
#include "model.h"
#include "philox.h"

#define ROWS 28
#define COLS 28
#define N_TRAIN 1024
#define N_TEST 256

static uint8_t train_px[N_TRAIN * ROWS * COLS], test_px[N_TEST * ROWS * COLS];

typedef struct {
    const char *name;
    cuvae_precision precision;
    int graph, batch, n_hidden, hidden[3], latent;
} epilogue_case;

static void run_case(const epilogue_case *k, int strict)
{
    cuvae_status st;
    cuvae_config c;
    cuvae_model m;
    cuvae_config_defaults(&c);
    c.model.n_hidden = k->n_hidden;
    for (int i = 0; i < k->n_hidden; i++) c.model.hidden[i] = k->hidden[i];
    c.model.latent = k->latent;
    c.model.likelihood = CUVAE_LIK_BERNOULLI;
    c.train.batch_size = k->batch;
    c.train.precision = k->precision;
    c.train.cuda_graph = k->graph;
    c.train.seed = 7;
    REQUIRE_ST(cuvae_model_layout(&m, &c, ROWS * COLS, &st) == 0, st);
    cuvae_backend_spec spec = {};
    spec.model = &m;
    spec.config = &c;
    cuvae_backend *be = cuvae_cuda_backend_create(&spec, &st);
    REQUIRE_ST(be != NULL, st);
    REQUIRE_ST(
        cuvae_backend_upload(be, CUVAE_SET_TRAIN, train_px, N_TRAIN, ROWS * COLS, 1, &st) == 0, st);
    REQUIRE_ST(cuvae_backend_upload(be, CUVAE_SET_TEST, test_px, N_TEST, ROWS * COLS, 0, &st) == 0,
               st);
    int32_t *perm = (int32_t *)malloc(N_TRAIN * sizeof *perm);
    REQUIRE_ST(perm != NULL, st);
    cuvae_permutation(c.train.seed, CUVAE_STREAM_SHUFFLE, 0, perm, N_TRAIN);
    /* Enough steps that the graph is captured and replayed. */
    for (int s = 0; s < 4; s++) {
        cuvae_step step = {(uint64_t)s, 1e-3f, 1.0f, perm + (s * k->batch) % N_TRAIN, k->batch};
        REQUIRE_ST(cuvae_backend_train_step(be, &step, &st) == 0, st);
    }
    cuvae_metrics mt;
    REQUIRE_ST(cuvae_backend_read_metrics(be, &mt, 1, &st) == 0, st);
    CHECK(mt.steps == 4 && mt.skipped == 0);
    double neg_iw[64];
    int32_t rows[64];
    for (int i = 0; i < 64; i++) rows[i] = i;
    cuvae_eval_out out;
    memset(&out, 0, sizeof out);
    out.neg_iw = neg_iw;
    REQUIRE_ST(cuvae_backend_evaluate(be, CUVAE_SET_TEST, rows, 64, 8, 0, &out, &st) == 0, st);

    char text[1024];
    cuvae_backend_describe(be, text, sizeof text);
    cuvae_plan_stats ps;
    cuvae_linear_plan_stats(&cuda_of(be)->ctx, &ps);
    printf("gpu_epilogues: %s: fused %d of %d plans, refused %d (%d with an error status), %d at "
           "run time\n  describe: %s\n",
           k->name, ps.fused, ps.plans, ps.unfused, ps.errors, ps.run_refusals, text);
    CHECK(ps.errors == 0);
    CHECK(ps.plans > 0);
    if (strict) {
        /* Per layer the step asks for a fused forward and bias gradient, and all but the first
         * for a fused ReLU gradient: far more than a handful of plans fuse. */
        CHECK(ps.fused >= 2 * (k->n_hidden + 1));
        CHECK(ps.unfused == 0);
        CHECK(ps.run_refusals == 0);
    }
    free(perm);
    cuvae_backend_destroy(be);
}

int main(void)
{
    char name[256];
    if (!cuvae_cuda_available(name, sizeof name)) {
        printf("gpu_epilogues: skipped: no usable CUDA device (%s)\n", name);
        return CUVAE_TEST_SKIP;
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        fprintf(stderr, "gpu_epilogues: cudaGetDeviceProperties failed\n");
        return 1;
    }
    int strict = prop.major == 9;
    printf("gpu_epilogues: %s, compute capability %d.%d: %s\n", name, prop.major, prop.minor,
           strict ? "every epilogue must fuse" : "counts only (fusion expected on 9.x)");
    uint8_t labels[N_TRAIN];
    cuvae_test_make_images(train_px, labels, N_TRAIN, ROWS, COLS, 21);
    cuvae_test_make_images(test_px, labels, N_TEST, ROWS, COLS, 22);
    static const epilogue_case cases[] = {
        {"default bf16, batch 128", CUVAE_PREC_BF16, 0, 128, 2, {512, 256, 0}, 32},
        {"default bf16, batch 128, step graph", CUVAE_PREC_BF16, 1, 128, 2, {512, 256, 0}, 32},
        {"wide bf16, batch 512, step graph", CUVAE_PREC_BF16, 1, 512, 3, {1024, 1024, 512}, 64},
        {"default tf32, batch 128", CUVAE_PREC_TF32, 0, 128, 2, {512, 256, 0}, 32},
        {"wide tf32, batch 512, step graph", CUVAE_PREC_TF32, 1, 512, 3, {1024, 1024, 512}, 64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], strict);
    return cuvae_test_finish("gpu_epilogues");
}
