/* The CPU backend as the trainer drives it: it learns generated images, two runs are bit-identical,
 * a non-finite step is withheld, state round-trips, errors name what is wrong; plus the dynamic
 * binarization against Philox word by word, and the device selection of cuvae_backend_create. */
#include <math.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "cpu_ops.h"
#include "model.h"
#include "philox.h"
#include "tests_util.h"

enum { SIDE = 16, D = SIDE * SIDE, N = 512, BATCH = 32, STEPS = 300 };

typedef struct {
    cuvae_config c;
    cuvae_model m;
    cuvae_backend *be;
} run;

static int run_make(run *r, const uint8_t *pixels, int dynamic, cuvae_optimizer opt, float clip)
{
    cuvae_status st;
    memset(r, 0, sizeof *r);
    cuvae_config_defaults(&r->c);
    r->c.model.n_hidden = 2;
    r->c.model.hidden[0] = 64;
    r->c.model.hidden[1] = 32;
    r->c.model.latent = 4;
    r->c.train.seed = 21;
    r->c.train.batch_size = BATCH;
    r->c.train.free_bits = 0.05f;
    r->c.optim.type = opt;
    r->c.optim.weight_decay = opt == CUVAE_OPT_ADAMW ? 1e-4f : 0.0f;
    r->c.optim.grad_clip = clip;
    cuvae_backend_spec spec = {.model = &r->m, .config = &r->c};
    if (cuvae_model_layout(&r->m, &r->c, D, &st) ||
        !(r->be = cuvae_cpu_backend_create(&spec, &st)) ||
        cuvae_backend_upload(r->be, CUVAE_SET_TRAIN, pixels, N, D, dynamic, &st)) {
        fprintf(stderr, "backend setup: %s\n", st.msg);
        cuvae_test_failures++;
        cuvae_backend_destroy(r->be);
        r->be = NULL;
        return -1;
    }
    return 0;
}

/* Steps [first, first + count) over a fixed shuffled order; returns the mean loss per example
 * of the last `tail` steps (or of all when tail is 0). */
static double run_steps(run *r, const int32_t *perm, int first, int count, int tail)
{
    cuvae_status st;
    cuvae_metrics mt;
    cuvae_backend_read_metrics(r->be, &mt, 1, &st);
    for (int s = first; s < first + count; s++) {
        if (tail && s == first + count - tail) cuvae_backend_read_metrics(r->be, &mt, 1, &st);
        cuvae_step step = {.step = (uint64_t)s,
                           .lr = 3e-3f,
                           .beta = 1.0f,
                           .idx = perm + (s * BATCH) % N,
                           .batch = BATCH};
        if (cuvae_backend_train_step(r->be, &step, &st)) {
            fprintf(stderr, "train step %d: %s\n", s, st.msg);
            cuvae_test_failures++;
            return NAN;
        }
    }
    cuvae_backend_read_metrics(r->be, &mt, 1, &st);
    CHECK(mt.skipped == 0 && mt.first_nonfinite_step == -1);
    CHECK(mt.steps == (tail ? tail : count) && mt.examples == mt.steps * BATCH);
    CHECK(mt.grad_norm_sum > 0 && mt.kl > 0 && mt.rec > 0);
    return mt.loss / (double)mt.examples;
}

static float *get_params(run *r)
{
    cuvae_status st;
    float *p = malloc(r->m.n_params * sizeof *p);
    cuvae_train_state ts = {.params = p};
    cuvae_backend_get_state(r->be, &ts, &st);
    return p;
}

static void test_learning_and_determinism(const uint8_t *pixels, const int32_t *perm, int dynamic,
                                          cuvae_optimizer opt, float clip)
{
    run a, b;
    if (run_make(&a, pixels, dynamic, opt, clip) || run_make(&b, pixels, dynamic, opt, clip))
        return;
    /* N / BATCH = 16 steps is one pass over the data: the first pass's mean is the baseline. */
    double first = run_steps(&a, perm, 0, N / BATCH, 0);
    double last = run_steps(&a, perm, N / BATCH, STEPS - N / BATCH, 32);
    printf("  %s, %s, clip %g: loss %.2f over the first epoch -> %.2f over the last 32 steps\n",
           dynamic ? "dynamic" : "continuous", opt == CUVAE_OPT_ADAMW ? "adamw" : "adam",
           (double)clip, first, last);
    /* Generated strokes are easy: 300 steps take the loss well below 70% of the first epoch's. */
    CHECK(last < 0.7 * first);
    run_steps(&b, perm, 0, STEPS, 0);
    float *pa = get_params(&a), *pb = get_params(&b);
    CHECK(memcmp(pa, pb, a.m.n_params * sizeof *pa) == 0);
    free(pa);
    free(pb);
    cuvae_backend_destroy(a.be);
    cuvae_backend_destroy(b.be);
}

/* A NaN in the parameters: the step is withheld, parameters and Adam state unchanged, the step
 * recorded. Then state round trips and a resumed backend continues bit for bit. */
static void test_nonfinite_and_state(const uint8_t *pixels, const int32_t *perm)
{
    run a;
    if (run_make(&a, pixels, 1, CUVAE_OPT_ADAM, 1.0f)) return;
    run_steps(&a, perm, 0, 5, 0);
    size_t n = a.m.n_params;
    cuvae_status st;
    float *p = malloc(n * sizeof *p), *m = malloc(n * sizeof *m), *v = malloc(n * sizeof *v);
    float *p2 = malloc(n * sizeof *p), *m2 = malloc(n * sizeof *m), *v2 = malloc(n * sizeof *v);
    cuvae_train_state s1 = {p, m, v, 0}, s2 = {p2, m2, v2, 0};
    CHECK(cuvae_backend_get_state(a.be, &s1, &st) == 0);
    CHECK(s1.adam_t == 5);

    /* Round trip: set what was got, get it back. */
    CHECK(cuvae_backend_set_state(a.be, &s1, &st) == 0);
    CHECK(cuvae_backend_get_state(a.be, &s2, &st) == 0);
    CHECK(memcmp(p, p2, n * 4) == 0 && memcmp(m, m2, n * 4) == 0 && memcmp(v, v2, n * 4) == 0);
    CHECK(s2.adam_t == 5);

    /* A second backend resumed from that state takes the same next steps. */
    run b;
    if (run_make(&b, pixels, 1, CUVAE_OPT_ADAM, 1.0f) == 0) {
        CHECK(cuvae_backend_set_state(b.be, &s1, &st) == 0);
        run_steps(&a, perm, 5, 7, 0);
        run_steps(&b, perm, 5, 7, 0);
        float *pa = get_params(&a), *pb = get_params(&b);
        CHECK(memcmp(pa, pb, n * sizeof *pa) == 0);
        free(pa);
        free(pb);
        cuvae_backend_destroy(b.be);
    }

    /* NaN injection. */
    CHECK(cuvae_backend_get_state(a.be, &s1, &st) == 0);
    uint64_t t_before = s1.adam_t;
    p[n / 3] = NAN;
    CHECK(cuvae_backend_set_state(a.be, &s1, &st) == 0);
    cuvae_metrics mt;
    cuvae_backend_read_metrics(a.be, &mt, 1, &st);
    cuvae_step step = {.step = 1234, .lr = 1e-3f, .beta = 1.0f, .idx = perm, .batch = BATCH};
    CHECK(cuvae_backend_train_step(a.be, &step, &st) == 0);
    CHECK(cuvae_backend_get_state(a.be, &s2, &st) == 0);
    CHECK(memcmp(p, p2, n * 4) == 0 && memcmp(m, m2, n * 4) == 0 && memcmp(v, v2, n * 4) == 0);
    CHECK(s2.adam_t == t_before);
    cuvae_backend_read_metrics(a.be, &mt, 0, &st);
    CHECK(mt.skipped == 1 && mt.first_nonfinite_step == 1234);
    CHECK(mt.steps == 0 && mt.examples == 0);
    step.step = 1235;
    CHECK(cuvae_backend_train_step(a.be, &step, &st) == 0);
    cuvae_backend_read_metrics(a.be, &mt, 1, &st);
    CHECK(mt.skipped == 2 && mt.first_nonfinite_step == 1234); /* the first one is kept */
    cuvae_backend_read_metrics(a.be, &mt, 0, &st);
    CHECK(mt.skipped == 0 && mt.first_nonfinite_step == -1); /* reset */

    /* Without optimizer state (eval/sample), Adam restarts. */
    p[n / 3] = 0.0f;
    cuvae_train_state only_params = {.params = p};
    CHECK(cuvae_backend_set_state(a.be, &only_params, &st) == 0);
    CHECK(cuvae_backend_get_state(a.be, &s2, &st) == 0);
    CHECK(s2.adam_t == 0 && m2[0] == 0.0f && v2[n - 1] == 0.0f);

    char desc[512];
    cuvae_backend_describe(a.be, desc, sizeof desc);
    CHECK_MSG(desc, "params");
    CHECK_MSG(desc, "activations");
    printf("  %s\n", desc);
    free(p);
    free(m);
    free(v);
    free(p2);
    free(m2);
    free(v2);
    cuvae_backend_destroy(a.be);
}

static void test_errors(const uint8_t *pixels)
{
    run a;
    if (run_make(&a, pixels, 0, CUVAE_OPT_ADAM, 0)) return;
    cuvae_status st;
    int32_t idx[2] = {0, N};
    double out1[2];
    cuvae_eval_out o = {.neg_elbo = out1};
    CHECK(cuvae_backend_evaluate(a.be, CUVAE_SET_TEST, idx, 1, 1, 0, &o, &st) != 0);
    CHECK_MSG(st.msg, "test set was not uploaded");
    CHECK(cuvae_backend_evaluate(a.be, CUVAE_SET_TRAIN, idx, 2, 1, 0, &o, &st) != 0);
    CHECK_MSG(st.msg, "index 512 at position 1");
    CHECK(cuvae_backend_evaluate(a.be, CUVAE_SET_TRAIN, idx, 1, 0, 0, &o, &st) != 0);
    CHECK_MSG(st.msg, "K = 0");
    cuvae_step step = {.step = 0, .lr = 1e-3f, .beta = 1, .idx = idx, .batch = 2};
    CHECK(cuvae_backend_train_step(a.be, &step, &st) != 0);
    CHECK_MSG(st.msg, "outside the training set");
    CHECK(cuvae_backend_upload(a.be, CUVAE_SET_VALID, pixels, 4, D - 1, 0, &st) != 0);
    CHECK_MSG(st.msg, "255 values per example, the model expects 256");
    /* The front door (backend.c) refuses the rest of what no backend can take, naming the
     * backend and the call. */
    CHECK(cuvae_backend_evaluate(a.be, CUVAE_SET_COUNT, idx, 1, 1, 0, &o, &st) != 0);
    CHECK_MSG(st.msg, "cpu backend: evaluate: unknown set 3");
    CHECK(cuvae_backend_evaluate(a.be, CUVAE_SET_TRAIN, idx, 0, 1, 0, &o, &st) != 0);
    CHECK_MSG(st.msg, "cpu backend: evaluate: 0 examples");
    CHECK(cuvae_backend_decode(a.be, NULL, 0, NULL, &st) != 0);
    CHECK_MSG(st.msg, "cpu backend: decode: 0 latents");
    cuvae_step none = {.step = 0, .lr = 1e-3f, .beta = 1, .idx = idx, .batch = 0};
    CHECK(cuvae_backend_train_step(a.be, &none, &st) != 0);
    CHECK_MSG(st.msg, "cpu backend: train step: batch of 0 examples");
    CHECK(cuvae_backend_upload(a.be, CUVAE_SET_VALID, pixels, -1, D, 0, &st) != 0);
    CHECK_MSG(st.msg, "upload of the validation set: -1 examples");
    cuvae_train_state empty = {.params = NULL};
    CHECK(cuvae_backend_set_state(a.be, &empty, &st) != 0);
    CHECK_MSG(st.msg, "cpu backend: set_state without parameters");
    /* A set uploaded with fewer examples bounds the indices anew. */
    CHECK(cuvae_backend_upload(a.be, CUVAE_SET_VALID, pixels, 2, D, 0, &st) == 0);
    int32_t third[1] = {2};
    CHECK(cuvae_backend_evaluate(a.be, CUVAE_SET_VALID, third, 1, 1, 0, &o, &st) != 0);
    CHECK_MSG(st.msg, "index 2 at position 0 is outside the validation set (2 examples)");
    /* A batch larger than the configured one grows the buffers. */
    int32_t *many = malloc(N * sizeof *many);
    for (int i = 0; i < N; i++) many[i] = i;
    cuvae_step big = {.step = 1, .lr = 1e-3f, .beta = 1, .idx = many, .batch = N};
    CHECK(cuvae_backend_train_step(a.be, &big, &st) == 0);
    free(many);
    cuvae_backend_destroy(a.be);
}

/* Dynamic binarization word by word, across block and row boundaries (d = 7 is not a multiple of
 * 4, and 37 rows are more than one batch of blocks). */
static void test_gather(void)
{
    enum { GD = 7, GN = 50, GB = 37 };
    uint8_t px[GN * GD];
    for (int i = 0; i < GN * GD; i++) px[i] = (uint8_t)(i * 37 % 256);
    int32_t idx[GB];
    for (int b = 0; b < GB; b++) idx[b] = (b * 13) % GN;
    float x[GB * GD];
    const uint64_t seed = 0x123456789abcdefULL, step = (1ULL << 40) + 17;
    cuvae_cpu_gather(px, GD, idx, GB, 1, seed, step, x);
    int bad = 0, ones = 0;
    for (int b = 0; b < GB; b++)
        for (int p = 0; p < GD; p++) {
            uint32_t w = cuvae_philox_word(seed, CUVAE_STREAM_BINARIZE, step, (uint64_t)b * GD + p);
            float want = cuvae_bernoulli_byte(w, px[idx[b] * GD + p]) ? 1.0f : 0.0f;
            bad += x[b * GD + p] != want;
            ones += want == 1.0f;
        }
    CHECK(bad == 0);
    CHECK(ones > 0 && ones < GB * GD);
    /* Many more draws over every byte value (the integer threshold test at all levels). */
    enum { WD = 256, WB = 200 };
    uint8_t *wp = malloc(WB * WD);
    float *wx = malloc(WB * WD * sizeof *wx);
    int32_t widx[WB];
    for (int i = 0; i < WB * WD; i++) wp[i] = (uint8_t)(i % 256);
    for (int b = 0; b < WB; b++) widx[b] = WB - 1 - b;
    cuvae_cpu_gather(wp, WD, widx, WB, 1, 99, 3, wx);
    bad = 0;
    for (int b = 0; b < WB; b++)
        for (int p = 0; p < WD; p++) {
            uint32_t w = cuvae_philox_word(99, CUVAE_STREAM_BINARIZE, 3, (uint64_t)b * WD + p);
            bad += wx[b * WD + p] != (cuvae_bernoulli_byte(w, wp[widx[b] * WD + p]) ? 1.0f : 0.0f);
        }
    CHECK(bad == 0);
    free(wp);
    free(wx);
    cuvae_cpu_gather(px, GD, idx, GB, 0, seed, step, x);
    bad = 0;
    for (int b = 0; b < GB; b++)
        for (int p = 0; p < GD; p++) bad += x[b * GD + p] != (float)px[idx[b] * GD + p] / 255.0f;
    CHECK(bad == 0);
}

#if defined(__SSE2__)
/* Creating the CPU backend makes subnormal floats flush to zero in this thread and in threads
 * started afterwards (cpu_ops.h: they slowed late epochs almost 2x). */
static void *subnormal_product(void *arg)
{
    volatile float tiny = 1e-30f, scale = 1e-10f, sub = *(const float *)arg;
    static float out[2];
    out[0] = tiny * scale; /* 1e-40 unless flushed (FTZ) */
    out[1] = sub * 1.0f;   /* a subnormal input reads as 0 (DAZ) */
    return out;
}

/* Called right after a CPU backend was created in this thread. */
static void check_subnormals_flushed(void)
{
    float sub = 1e-40f;
    const float *here = subnormal_product(&sub);
    CHECK(here[0] == 0.0f && here[1] == 0.0f);
    pthread_t t;
    void *res = NULL;
    CHECK(pthread_create(&t, NULL, subnormal_product, &sub) == 0 && pthread_join(t, &res) == 0);
    CHECK(res != NULL && ((const float *)res)[0] == 0.0f && ((const float *)res)[1] == 0.0f);
}
#else
static void check_subnormals_flushed(void) {}
#endif

static void test_device_selection(const uint8_t *pixels)
{
    (void)pixels;
    cuvae_config c;
    cuvae_config_defaults(&c);
    c.model.n_hidden = 1;
    c.model.hidden[0] = 8;
    c.model.latent = 2;
    cuvae_model m;
    cuvae_status st;
    CHECK(cuvae_model_layout(&m, &c, D, &st) == 0);
    cuvae_backend_spec spec = {.model = &m, .config = &c};
    char dir[256], path[300], text[512];
    if (cuvae_test_tmpdir(dir, sizeof dir, "cpu-backend")) {
        CHECK(!"temporary directory");
        return;
    }
    snprintf(path, sizeof path, "%s/log.txt", dir);
    FILE *log = fopen(path, "w+");
    CHECK(log != NULL);
    if (!log) return;
    cuvae_backend *be = cuvae_backend_create(CUVAE_DEV_CPU, &spec, log, &st);
    CHECK(be != NULL && strcmp(cuvae_backend_name(be), "cpu") == 0);
    check_subnormals_flushed();
    cuvae_backend_destroy(be);
    char name[256];
    int have_cuda = cuvae_cuda_available(name, sizeof name);
    if (!have_cuda) {
        be = cuvae_backend_create(CUVAE_DEV_AUTO, &spec, log, &st);
        CHECK(be != NULL && strcmp(cuvae_backend_name(be), "cpu") == 0);
        cuvae_backend_destroy(be);
        CHECK(cuvae_backend_create(CUVAE_DEV_CUDA, &spec, log, &st) == NULL);
        CHECK_MSG(st.msg, "--device cuda: no usable CUDA device (");
    }
    rewind(log);
    size_t len = fread(text, 1, sizeof text - 1, log);
    text[len] = '\0';
    fclose(log);
    remove(path);
    remove(dir);
    CHECK_MSG(text, "device: cpu\n");
    if (!have_cuda) CHECK_MSG(text, "device: cpu (no CUDA device: ");
}

int main(void)
{
    printf("test_cpu_backend\n");
    uint8_t *pixels = malloc((size_t)N * D);
    cuvae_test_make_images(pixels, NULL, N, SIDE, SIDE, 8);
    int32_t perm[N];
    cuvae_permutation(4, CUVAE_STREAM_SHUFFLE, 0, perm, N);
    test_gather();
    test_learning_and_determinism(pixels, perm, 1, CUVAE_OPT_ADAM, 0.0f);
    test_learning_and_determinism(pixels, perm, 0, CUVAE_OPT_ADAMW, 5.0f);
    test_nonfinite_and_state(pixels, perm);
    test_errors(pixels);
    test_device_selection(pixels);
    free(pixels);
    return cuvae_test_finish("test_cpu_backend");
}
