/* `cuvae bench`: throughput of the production training step and of evaluation, through the same
 * backend interface the trainer uses, over a grid of batch sizes and precisions. Each setting is
 * validated before it is timed (one step must give a finite loss), warmed up, then timed as R
 * repeats of N steps, each repeat ended by read_metrics (the backend's sync point); the median
 * repeat is reported as a table and as JSON with the machine, the date and the command line.
 * Precisions a backend cannot compute (tf32 and bf16 on the CPU) are reported as skipped. */
#include "commands.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "bench.h"
#include "blas_info.h"
#include "cli_args.h"
#include "config.h"
#include "dataset.h"
#include "evaluate.h"
#include "model.h"
#include "philox.h"

static const char BENCH_HELP[] =
    "usage: cuvae bench [CONFIG] [section.key=value ...] [options]\n"
    "Times the training step and evaluation of the production backend on synthetic data of the\n"
    "config's shape (or the config's training set with --data). Default CONFIG: the built-in\n"
    "defaults (Fashion-MNIST, 784-512-256-32).\n"
    "  --batch LIST             training batch sizes (default 128,1024,4096)\n"
    "  --precision LIST         fp32,tf32,bf16 (default: fp32 on the CPU, all three on CUDA);\n"
    "                           precisions the backend cannot compute are reported as skipped\n"
    "  --device auto|cpu|cuda   backend (default: the config's train.device)\n"
    "  --steps N                steps per timed repeat (default 50)\n"
    "  --warmup N               untimed steps before the repeats (default 10)\n"
    "  --repeats R              timed repeats; the median is reported (default 5)\n"
    "  --eval-samples K         importance samples of the timed evaluation (default: the config's\n"
    "                           eval.samples; 0 = no evaluation)\n"
    "  --eval-examples N        examples evaluated per repeat (default 1000 on CUDA, 20 on CPU)\n"
    "  --data                   use the config's training and test sets instead of random bytes\n"
    "  --json FILE              also write the results as JSON\n"
    "  -h, --help               this text\n";

/* Comma-separated integers in [1, MAX_BATCH]; returns the count or -1. */
static int parse_batches(const char *s, int *out)
{
    int n = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf) return -1;
    memcpy(buf, s, strlen(s) + 1);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == MAX_BATCHES || cuvae_parse_int(tok, 1, MAX_BATCH, &out[n])) return -1;
        n++;
    }
    return n > 0 ? n : -1;
}

static int parse_precisions(const char *s, cuvae_precision *out)
{
    int n = 0;
    char buf[64];
    if (strlen(s) >= sizeof buf) return -1;
    memcpy(buf, s, strlen(s) + 1);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        cuvae_precision p;
        if (n == 3 || cuvae_parse_precision(tok, &p)) return -1;
        for (int i = 0; i < n; i++)
            if (out[i] == p) return -1;
        out[n++] = p;
    }
    return n > 0 ? n : -1;
}

static int parse_args(int argc, char **argv, bench_opts *o, int *help)
{
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *help = 1;
            return 0;
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--batch", &v))) {
            if (r < 0 || (o->n_batches = parse_batches(v, o->batches)) < 0)
                return cuvae_usage_error("bench",
                                         "--batch: expected up to %d comma-separated integers in "
                                         "[1, %d], got '%s'",
                                         MAX_BATCHES, MAX_BATCH, r < 0 ? "" : v);
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--precision", &v))) {
            if (r < 0 || (o->n_precisions = parse_precisions(v, o->precisions)) < 0)
                return cuvae_usage_error("bench",
                                         "--precision: expected a comma-separated list of distinct "
                                         "fp32, tf32, bf16, got '%s'",
                                         r < 0 ? "" : v);
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--device", &v))) {
            if (r < 0 || cuvae_parse_device(v, &o->device))
                return cuvae_usage_error("bench", "--device: expected auto, cpu or cuda, got '%s'",
                                         r < 0 ? "" : v);
            o->device_set = 1;
        } else if ((r = cuvae_int_option("bench", argc, argv, &i, "--steps", 1, MAX_STEPS,
                                         &o->steps, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option("bench", argc, argv, &i, "--warmup", 0, MAX_STEPS,
                                         &o->warmup, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option("bench", argc, argv, &i, "--repeats", 1, MAX_REPEATS,
                                         &o->repeats, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option("bench", argc, argv, &i, "--eval-samples", 0, 1000000,
                                         &o->eval_samples, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option("bench", argc, argv, &i, "--eval-examples", 1, INT_MAX,
                                         &o->eval_examples, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_file_option("bench", argc, argv, &i, "--json", &o->json_path,
                                          &err))) {
            if (r < 0) return err;
        } else if (!strcmp(a, "--data")) {
            o->use_data = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cuvae_usage_error("bench", "unknown option '%s'", a);
        } else if (strchr(a, '=')) {
            o->overrides[o->n_overrides++] = a;
        } else if (!o->config_path) {
            o->config_path = a;
        } else {
            return cuvae_usage_error("bench",
                                     "unexpected argument '%s' (one CONFIG only; overrides are "
                                     "section.key=value)",
                                     a);
        }
    }
    return 0;
}

/* ---- data ------------------------------------------------------------------------------------ */

/* splitmix64: a private generator for the synthetic bytes (their values do not matter to the
 * timing; only that they are not all equal). */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void random_bytes(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = splitmix64(&s);
        for (size_t k = 0; k < 8 && i + k < n; k++) p[i + k] = (uint8_t)(w >> (8 * k));
    }
}

/* The image shape of the config's training images from the file's header alone (IDX, .npy or
 * .npz member: dataset.c's readers), so the synthetic data has the real data's shape without
 * reading it. Sizes beyond 4096 x 4096 are refused here: the synthetic sets are made in memory. */
static int idx_image_dims(const char *path, const char *key, int *channels, int *rows, int *cols,
                          cuvae_status *st)
{
    int64_t n_kept = 0, n_file = 0;
    int ch = 0, r = 0, c = 0;
    uint64_t staging = 0;
    if (cuvae_dataset_peek_any(path, key, "x_train", 1, &n_kept, &n_file, &ch, &r, &c, &staging,
                               st))
        return -1;
    if (r > 4096 || c > 4096)
        return cuvae_fail(st, "%s: image size %dx%d out of range", path, r, c);
    *channels = ch;
    *rows = r;
    *cols = c;
    return 0;
}

/* What every setting uploads: the training set and the evaluation set, bytes 0..255. */

static int make_data(bench_data *bd, const bench_opts *o, const cuvae_config *c, int max_batch,
                     int eval_examples, FILE *log, cuvae_status *st)
{
    memset(bd, 0, sizeof *bd);
    if (o->use_data) {
        if (cuvae_run_data_load(&bd->rd, c, 1, st)) return -1;
        bd->train = bd->rd.train.pixels;
        bd->n_train = bd->rd.train.n;
        bd->test = bd->rd.test.pixels;
        bd->n_test = bd->rd.test.n < eval_examples ? bd->rd.test.n : eval_examples;
        bd->d = bd->rd.train.d;
        bd->train_dynamic = bd->rd.train_dynamic;
        return 0;
    }
    int channels = 1, rows = 28, cols = 28;
    cuvae_status hs;
    if (idx_image_dims(c->data.train_images, c->data.train_key, &channels, &rows, &cols, &hs)) {
        channels = 1;
        rows = cols = 28;
        fprintf(log, "cuvae: bench: note: %s; the synthetic data uses 28x28 images\n", hs.msg);
    }
    bd->synthetic = 1;
    bd->d = channels * rows * cols;
    bd->n_train = max_batch > SYNTHETIC_MIN_EXAMPLES ? max_batch : SYNTHETIC_MIN_EXAMPLES;
    bd->n_test = eval_examples;
    size_t ntr = (size_t)bd->n_train * (size_t)bd->d, nte = (size_t)bd->n_test * (size_t)bd->d;
    bd->train = cuvae_malloc(ntr, "synthetic training data", st);
    bd->test = cuvae_malloc(nte ? nte : 1, "synthetic test data", st);
    if (!bd->train || !bd->test) return -1;
    random_bytes(bd->train, ntr, c->train.seed ^ 0x7261696eULL);
    random_bytes(bd->test, nte, c->train.seed ^ 0x74657374ULL);
    /* As cuvae_run_data_load prepares each set: static binarization once, dynamic on the
     * backend; the test set is binarized once whenever the config binarizes. */
    if (c->data.binarize == CUVAE_BIN_STATIC)
        cuvae_binarize_fixed(bd->train, bd->n_train, bd->d, c->train.seed);
    if (c->data.binarize != CUVAE_BIN_NONE)
        cuvae_binarize_fixed(bd->test, bd->n_test, bd->d, CUVAE_TEST_BINARIZE_SEED);
    bd->train_dynamic = c->data.binarize == CUVAE_BIN_DYNAMIC;
    return 0;
}

static void free_data(bench_data *bd)
{
    if (bd->synthetic) {
        free(bd->train);
        free(bd->test);
    } else {
        cuvae_run_data_free(&bd->rd);
    }
    memset(bd, 0, sizeof *bd);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return NAN;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

/* ---- one setting ----------------------------------------------------------------------------- */

/* Indices of step s: a window of the shuffled order, wrapping around. */
static void step_indices(const int32_t *order, int64_t n, uint64_t s, int batch, int32_t *idx)
{
    uint64_t start = (s * (uint64_t)batch) % (uint64_t)n;
    for (int b = 0; b < batch; b++) idx[b] = order[(start + (uint64_t)b) % (uint64_t)n];
}

/* Runs `count` steps from *next_step and ends at the sync point (read_metrics with reset). The
 * metrics must show every step finite. */
static int run_steps(cuvae_backend *be, const cuvae_config *c, const int32_t *order, int64_t n,
                     int batch, int count, uint64_t *next_step, int32_t *idx, cuvae_metrics *m,
                     cuvae_status *st)
{
    for (int k = 0; k < count; k++) {
        step_indices(order, n, *next_step, batch, idx);
        cuvae_step s = {.step = *next_step,
                        .lr = c->optim.lr,
                        .beta = c->train.beta,
                        .idx = idx,
                        .batch = batch};
        if (cuvae_backend_train_step(be, &s, st))
            return cuvae_fail_prefix(st, "training step %llu", (unsigned long long)*next_step + 1);
        (*next_step)++;
    }
    if (cuvae_backend_read_metrics(be, m, 1, st)) return -1;
    if (m->first_nonfinite_step >= 0 || m->skipped > 0 || !isfinite(m->loss))
        return cuvae_fail(st,
                          "step %lld gave a non-finite loss or gradient (%lld of %lld steps "
                          "skipped)",
                          (long long)m->first_nonfinite_step + 1, (long long)m->skipped,
                          (long long)m->steps);
    return 0;
}

static int bench_setting(setting *r, const bench_opts *o, const cuvae_config *base,
                         cuvae_device device, const bench_data *bd, const int32_t *order,
                         int eval_K, int do_eval, FILE *log, cuvae_status *st)
{
    cuvae_config c = *base;
    c.train.batch_size = r->batch;
    c.train.precision = r->precision;
    cuvae_model model;
    if (cuvae_model_layout(&model, &c, bd->d, st)) return -1;
    cuvae_backend_spec spec = {.model = &model, .config = &c};
    cuvae_backend *be = cuvae_backend_create(device, &spec, log, st);
    if (!be) return -2; /* no backend at all: the other settings would fail the same way */
    int rc = -1;
    int32_t *idx = cuvae_malloc((size_t)r->batch * sizeof *idx, "batch indices", st);
    if (!idx) goto done;
    if (cuvae_backend_upload(be, CUVAE_SET_TRAIN, bd->train, bd->n_train, bd->d, bd->train_dynamic,
                             st)) {
        cuvae_fail_prefix(st, "uploading the training set");
        goto done;
    }

    /* Validate before timing: one step, a finite loss. */
    uint64_t step = 0;
    cuvae_metrics m;
    if (run_steps(be, &c, order, bd->n_train, r->batch, 1, &step, idx, &m, st)) {
        cuvae_fail_prefix(st, "validation step");
        goto done;
    }
    if (m.steps != 1 || m.examples != r->batch) {
        cuvae_fail(st,
                   "validation step: the backend counted %lld steps and %lld examples, "
                   "expected 1 and %d",
                   (long long)m.steps, (long long)m.examples, r->batch);
        goto done;
    }
    r->first_loss = m.loss / (double)m.examples;
    if (o->warmup > 0 &&
        run_steps(be, &c, order, bd->n_train, r->batch, o->warmup, &step, idx, &m, st))
        goto done;
    cuvae_profile *prof = &r->profile;
    if (cuvae_backend_profile(be, prof, 1, st)) goto done; /* drop the warm-up's */
    for (int k = 0; k < o->repeats; k++) {
        double t0 = cuvae_now();
        if (run_steps(be, &c, order, bd->n_train, r->batch, o->steps, &step, idx, &m, st))
            goto done;
        r->repeat_s[k] = cuvae_now() - t0;
    }
    if (cuvae_backend_has_profile(be)) {
        if (cuvae_backend_profile(be, prof, 1, st)) goto done;
        r->has_profile = prof->steps > 0;
    }
    double med = median(r->repeat_s, o->repeats);
    r->step_s = med / o->steps;
    r->samples_per_s = (double)r->batch / r->step_s;
    r->gflops = cuvae_model_train_flops(&model, r->batch) / r->step_s * 1e-9;
    r->epoch_s = (double)EPOCH_EXAMPLES / r->samples_per_s;

    if (do_eval) {
        double secs[MAX_REPEATS];
        cuvae_eval_result e;
        /* The first pass validates (every value finite) and warms up; R timed passes follow.
         * Every pass draws the same noise (counter 0), so the figures are the same each time.
         * The set is uploaded afresh before each pass: a backend may keep the results of its
         * latest blocks (the CPU's memo), and a pass must not time a lookup of the last one's. */
        for (int k = -1; k < o->repeats; k++) {
            if (cuvae_backend_upload(be, CUVAE_SET_TEST, bd->test, bd->n_test, bd->d, 0, st)) {
                cuvae_fail_prefix(st, "uploading the evaluation set");
                goto done;
            }
            if (cuvae_evaluate_set(be, &model, CUVAE_SET_TEST, bd->n_test, eval_K, 0,
                                   c.eval.batch_size, NULL, NULL, &e, st)) {
                cuvae_fail_prefix(st, "evaluation");
                goto done;
            }
            if (e.nonfinite) {
                cuvae_fail(st, "evaluation: %lld of %lld examples gave a non-finite bound",
                           (long long)e.nonfinite, (long long)e.n);
                goto done;
            }
            if (k >= 0) secs[k] = e.seconds;
        }
        r->eval = e;
        r->eval.seconds = median(secs, o->repeats);
        r->eval_per_s = (double)bd->n_test / r->eval.seconds;
        r->has_eval = 1;
    }
    r->peak_mib = cuvae_bench_peak_rss_mib();
    cuvae_backend_describe(be, r->memory, sizeof r->memory);
    rc = 0;
done:
    free(idx);
    cuvae_backend_destroy(be);
    return rc;
}

/* ---- the command ----------------------------------------------------------------------------- */

int cuvae_cmd_bench(int argc, char **argv)
{
    const char **overrides = calloc((size_t)(argc > 0 ? argc : 1), sizeof *overrides);
    if (!overrides) {
        fprintf(stderr, "cuvae: bench: out of memory\n");
        return CUVAE_EXIT_RUNTIME;
    }
    bench_opts o = {.overrides = overrides,
                    .batches = {128, 1024, 4096},
                    .n_batches = 3,
                    .steps = 50,
                    .warmup = 10,
                    .repeats = 5,
                    .eval_samples = -1,
                    .eval_examples = -1};
    int help = 0, rc = parse_args(argc, argv, &o, &help);
    if (rc || help) {
        if (help) fputs(BENCH_HELP, stdout);
        free(overrides);
        return rc;
    }

    cuvae_status st = {{0}};
    cuvae_config cfg;
    cuvae_config_defaults(&cfg);
    if (o.config_path && cuvae_config_load_file(&cfg, o.config_path, &st)) goto usage;
    for (int i = 0; i < o.n_overrides; i++)
        if (cuvae_config_override(&cfg, o.overrides[i], &st)) goto usage;
    if (cuvae_config_validate(&cfg, &st)) goto usage;

    /* The device every setting runs on: decided once, so that the table is one backend's. */
    cuvae_device device = o.device_set ? o.device : cfg.train.device;
    char gpu_name[256] = "";
    if (device == CUVAE_DEV_AUTO)
        device = cuvae_cuda_available(gpu_name, sizeof gpu_name) ? CUVAE_DEV_CUDA : CUVAE_DEV_CPU;
    else if (device == CUVAE_DEV_CUDA)
        cuvae_cuda_available(gpu_name, sizeof gpu_name);
    if (o.n_precisions == 0) {
        o.precisions[0] = CUVAE_PREC_FP32;
        o.precisions[1] = CUVAE_PREC_TF32;
        o.precisions[2] = CUVAE_PREC_BF16;
        o.n_precisions = device == CUVAE_DEV_CPU ? 1 : 3;
    }
    int eval_K = o.eval_samples >= 0 ? o.eval_samples : cfg.eval.samples;
    int eval_n = o.eval_examples > 0 ? o.eval_examples : device == CUVAE_DEV_CPU ? 20 : 1000;
    int max_batch = 0;
    for (int i = 0; i < o.n_batches; i++)
        if (o.batches[i] > max_batch) max_batch = o.batches[i];

    char cpu[256], machine[512];
    cuvae_bench_cpu_model(cpu, sizeof cpu);
    snprintf(machine, sizeof machine, "%s",
             device == CUVAE_DEV_CUDA && gpu_name[0] ? gpu_name : cpu);

    bench_data bd;
    int32_t *order = NULL;
    int n = o.n_batches * o.n_precisions;
    setting *s = calloc((size_t)n, sizeof *s);
    double *rep = calloc((size_t)n * (size_t)o.repeats, sizeof *rep);
    if (!s || !rep) {
        cuvae_fail(&st, "out of memory for the results");
        free(s);
        free(rep);
        goto runtime;
    }
    if (make_data(&bd, &o, &cfg, max_batch, eval_n, stderr, &st)) {
        free_data(&bd);
        free(s);
        free(rep);
        goto runtime;
    }
    if (o.use_data && bd.n_train < max_batch) {
        cuvae_fail(&st, "--batch %d: larger than the %lld training examples of %s", max_batch,
                   (long long)bd.n_train, cfg.data.train_images);
        free_data(&bd);
        free(s);
        free(rep);
        goto usage;
    }
    order = cuvae_malloc((size_t)bd.n_train * sizeof *order, "the example order", &st);
    if (!order) {
        free_data(&bd);
        free(s);
        free(rep);
        goto runtime;
    }
    cuvae_permutation(cfg.train.seed, CUVAE_STREAM_SHUFFLE, 0, order, bd.n_train);

    char model[128];
    cuvae_bench_model_text(&cfg, bd.d, model, sizeof model);
    fprintf(stderr,
            "cuvae bench: %s on %s; model %s; %s data (%lld training examples); %d x %d "
            "steps after %d warm-up\n",
            device == CUVAE_DEV_CPU ? "cpu" : "cuda", machine, model,
            bd.synthetic ? "synthetic" : "real", (long long)bd.n_train, o.repeats, o.steps,
            o.warmup);

    int failed = 0, created = 0;
    char no_backend[sizeof st.msg] = "";
    for (int p = 0; p < o.n_precisions; p++) {
        int eval_done = 0;
        for (int b = 0; b < o.n_batches; b++) {
            setting *r = &s[p * o.n_batches + b];
            r->batch = o.batches[b];
            r->precision = o.precisions[p];
            r->repeat_s = rep + (size_t)(p * o.n_batches + b) * (size_t)o.repeats;
            r->peak_mib = NAN;
            if (device == CUVAE_DEV_CPU && r->precision != CUVAE_PREC_FP32) {
                r->status = SETTING_SKIPPED;
                snprintf(r->reason, sizeof r->reason, "the CPU backend computes in fp32 only");
                continue;
            }
            int do_eval = eval_K > 0 && !eval_done;
            cuvae_status ss = {{0}};
            if (no_backend[0]) {
                r->status = SETTING_FAILED;
                snprintf(r->reason, sizeof r->reason, "%s", no_backend);
                failed++;
                continue;
            }
            int br = bench_setting(r, &o, &cfg, device, &bd, order, eval_K, do_eval,
                                   created ? NULL : stderr, &ss);
            if (br == -2) snprintf(no_backend, sizeof no_backend, "%s", ss.msg);
            if (br) {
                r->status = SETTING_FAILED;
                snprintf(r->reason, sizeof r->reason, "%s", ss.msg);
                fprintf(stderr, "cuvae: bench: batch %d, %s: %s\n", r->batch,
                        cuvae_precision_name(r->precision), ss.msg);
                failed++;
            } else {
                r->status = SETTING_OK;
                eval_done |= do_eval;
            }
            created = 1;
        }
    }

    printf("cuvae bench: %s (%s); model %s, %s; %s data\n",
           device == CUVAE_DEV_CPU ? "cpu" : "cuda", machine, model,
           cfg.model.likelihood == CUVAE_LIK_BERNOULLI ? "bernoulli" : "gaussian",
           bd.synthetic ? "synthetic" : "real");
    char blas[512];
    cuvae_blas_describe(blas, sizeof blas);
    printf("BLAS: %s\n", blas);
    cuvae_bench_print_table(stdout, s, n, eval_K, bd.n_test, device);
    cuvae_bench_print_breakdown(stdout, s, n);
    rc = failed ? CUVAE_EXIT_RUNTIME : CUVAE_EXIT_OK;
    if (o.json_path && cuvae_bench_write_json(o.json_path, &o, argc, argv, machine, cpu,
                                              device == CUVAE_DEV_CPU ? "cpu" : "cuda", &cfg, model,
                                              &bd, s, n, eval_K, &st)) {
        fprintf(stderr, "cuvae: bench: %s\n", st.msg);
        rc = CUVAE_EXIT_RUNTIME;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "cuvae: bench: writing the table to stdout: %s\n", strerror(errno));
        rc = CUVAE_EXIT_RUNTIME;
    }
    free(order);
    free_data(&bd);
    free(s);
    free(rep);
    free(overrides);
    return rc;

usage:
    fprintf(stderr, "cuvae: bench: %s\n", st.msg);
    free(overrides);
    return CUVAE_EXIT_USAGE;
runtime:
    fprintf(stderr, "cuvae: bench: %s\n", st.msg);
    free(overrides);
    return CUVAE_EXIT_RUNTIME;
}
