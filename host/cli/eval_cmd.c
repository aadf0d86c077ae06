/* The `cuvae eval`, `cuvae sample` and `cuvae reconstruct` subcommands: each reads a checkpoint,
 * rebuilds the model on a backend from it, and reports on the test set (eval), draws from the
 * prior (sample) or shows test images beside their reconstructions (reconstruct). */
#include "commands.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "checkpoint.h"
#include "cli_args.h"
#include "dataset.h"
#include "evaluate.h"
#include "file_write.h"
#include "metrics.h"
#include "train_images.h"

#define MAX_SAMPLES 1000000 /* K */
#define MAX_IMAGES 65536    /* images in one grid */
#define DECODE_BATCH 1024   /* images per backend call when drawing grids */

/* ---- command-line parsing ------------------------------------------------------------------ */

static int runtime_error(const char *cmd, const cuvae_status *st)
{
    fprintf(stderr, "cuvae: %s: %s\n", cmd, st->msg);
    return CUVAE_EXIT_RUNTIME;
}

typedef struct {
    cuvae_device device;
    const char *data_dir, *test_images, *test_labels;
} common_opts;

/* Options shared by the three commands (the data ones when with_data). Returns 1 when argv[*i]
 * was one of them, 0 when not, and -1 on a bad value, with the usage exit status in *err. */

static int common_option(const char *cmd, int argc, char **argv, int *i, int with_data,
                         common_opts *o, int *err)
{
    const char *v = NULL;
    int r;
    if ((r = cuvae_opt_value(argc, argv, i, "--device", &v))) {
        if (r < 0 || cuvae_parse_device(v, &o->device)) {
            *err = cuvae_usage_error(cmd, "--device: expected auto, cpu or cuda, got '%s'",
                                     r < 0 ? "" : v);
            return -1;
        }
        return 1;
    }
    if (!with_data) return 0;
    const char *names[3] = {"--data-dir", "--test-images", "--test-labels"};
    const char **slots[3] = {&o->data_dir, &o->test_images, &o->test_labels};
    for (int k = 0; k < 3; k++) {
        if ((r = cuvae_opt_value(argc, argv, i, names[k], &v))) {
            /* An empty --test-labels means "no labels": evaluation does not need them. */
            if (r < 0 || (*v == '\0' && k != 2)) {
                *err = cuvae_usage_error(cmd, "%s: expected a path", names[k]);
                return -1;
            }
            if (strlen(v) >= CUVAE_PATH_LEN) {
                *err = cuvae_usage_error(cmd, "%s: path longer than %d bytes", names[k],
                                         CUVAE_PATH_LEN - 1);
                return -1;
            }
            *slots[k] = v;
            return 1;
        }
    }
    return 0;
}

static const char DEVICE_HELP[] =
    "  --device auto|cpu|cuda   backend to run on (default auto: CUDA when a GPU is usable)\n";

static const char DATA_HELP[] =
    "  --data-dir DIR           look for the checkpoint's test files (same file or folder\n"
    "                           names) in DIR\n"
    "  --test-images PATH       test images (IDX, .npy, .npz or a folder of PNG/JPEG images,\n"
    "                           read as the checkpoint's data.image_* keys say) instead of the\n"
    "                           checkpoint's\n"
    "                           (the checkpoint's labels are then not used)\n"
    "  --test-labels PATH       labels whose count must match the images (optional; \"\" = none)\n";

/* ---- shared steps ---------------------------------------------------------------------------- */

/* Reads and validates the checkpoint; the message always names the file. */
static int load_checkpoint(const char *path, cuvae_ckpt *ck, cuvae_status *st)
{
    memset(ck, 0, sizeof *ck);
    if (cuvae_ckpt_read(path, ck, st) == 0) {
        cuvae_ckpt_warn_unchecked(ck, path, stderr);
        return 0;
    }
    if (!strstr(st->msg, path)) cuvae_fail_prefix(st, "%s", path);
    return -1;
}

/* Creates the backend and loads the checkpoint's parameters into it. A checkpoint without
 * optimizer state gets zero m and v: evaluation never reads them. */
static cuvae_backend *make_backend(const cuvae_ckpt *ck, const cuvae_config *cfg,
                                   cuvae_device device, int64_t n_test, uint64_t staging,
                                   cuvae_status *st)
{
    /* The memory estimate: the backend's own, the checkpoint's tensors held here, and the test
     * set as cuvae_run_data_load will hold it (n_test from its header). */
    cuvae_mem_plan host = {.n = 0};
    cuvae_mem_add(
        &host, "checkpoint",
        cuvae_mem_mul(cuvae_mem_mul(ck->model.n_params, sizeof(float)), ck->state.m ? 3 : 1));
    cuvae_mem_add(&host, "data", cuvae_mem_mul((uint64_t)n_test, (uint64_t)ck->model.x_dim + 1));
    cuvae_mem_add(&host, "data staging (.npz)", staging); /* a deflated member, inflated whole */
    cuvae_backend_spec spec = {
        .model = &ck->model,
        .config = cfg,
        .host_needs = &host,
        .upload_rows = {0, 0, n_test},
        .advice = "evaluate on a machine with more memory, or use fewer test examples (--limit)",
    };
    cuvae_backend *be = cuvae_backend_create(device, &spec, stderr, st);
    if (!be) return NULL;
    float *zeros = NULL;
    cuvae_train_state state = ck->state;
    state.adam_t = ck->meta.adam_t;
    if (!state.m || !state.v) {
        zeros = cuvae_calloc(ck->model.n_params, sizeof *zeros, "zero optimizer state", st);
        if (!zeros) goto fail;
        if (!state.m) state.m = zeros;
        if (!state.v) state.v = zeros;
    }
    if (cuvae_backend_set_state(be, &state, st)) goto fail;
    free(zeros);
    return be;
fail:
    free(zeros);
    cuvae_backend_destroy(be);
    return NULL;
}

/* Puts the test-set paths asked for on the command line into the checkpoint's config. With
 * --data-dir the file names of the configured paths are kept and the directory replaced. */
static int apply_data_options(cuvae_config *c, const common_opts *o, cuvae_status *st)
{
    char *targets[2] = {c->data.test_images, c->data.test_labels};
    if (o->data_dir) {
        for (int k = 0; k < 2; k++) {
            if (!targets[k][0]) continue;
            /* The last name of the path; an image folder's may end in '/'. */
            size_t end = strlen(targets[k]);
            while (end > 1 && targets[k][end - 1] == '/') end--;
            size_t start = end;
            while (start > 0 && targets[k][start - 1] != '/') start--;
            char joined[2 * CUVAE_PATH_LEN];
            snprintf(joined, sizeof joined, "%s/%.*s", o->data_dir, (int)(end - start),
                     targets[k] + start);
            if (strlen(joined) >= CUVAE_PATH_LEN)
                return cuvae_fail(st, "--data-dir: '%s' is longer than %d bytes", joined,
                                  CUVAE_PATH_LEN - 1);
            memcpy(targets[k], joined, strlen(joined) + 1);
        }
    }
    /* Labels only serve to check the images' count; the checkpoint's belong to its own images. */
    if (o->test_images) {
        snprintf(c->data.test_images, CUVAE_PATH_LEN, "%s", o->test_images);
        c->data.test_labels[0] = '\0';
    }
    if (o->test_labels) snprintf(c->data.test_labels, CUVAE_PATH_LEN, "%s", o->test_labels);
    if (!c->data.test_images[0])
        return cuvae_fail(st, "the checkpoint's config names no test set (data.test_images is "
                              "empty): pass --test-images PATH");
    return 0;
}

/* The test set's header against the model, before the backend is created (a bad data file
 * costs no device start-up) and before its payload is read (the memory estimate comes first). */
static int peek_test_set(const cuvae_ckpt *ck, const cuvae_config *c, int64_t *n_test,
                         uint64_t *staging, cuvae_status *st)
{
    cuvae_run_shape sh;
    if (cuvae_run_data_peek(c, 0, &sh, st)) return -1;
    if (sh.d != ck->model.x_dim)
        return cuvae_fail(st, "%s: %dx%d = %d pixels an image, but the checkpoint's model takes %d",
                          c->data.test_images, sh.rows, sh.cols, sh.d, ck->model.x_dim);
    if (sh.channels != ck->model.x_shape.c)
        return cuvae_fail(st, "%s: %d channels an image, but the checkpoint's model takes %d",
                          c->data.test_images, sh.channels, ck->model.x_shape.c);
    *n_test = sh.n_test;
    *staging = sh.staging;
    return 0;
}

/* Loads the test set exactly as training does (binarized once with the fixed test seed when
 * data.binarize != none) and checks it against the model. */
static int load_test_set(const cuvae_ckpt *ck, const cuvae_config *c, cuvae_run_data *rd,
                         cuvae_status *st)
{
    memset(rd, 0, sizeof *rd);
    if (cuvae_run_data_load(rd, c, 0, st)) return -1;
    if (rd->test.n <= 0)
        return cuvae_fail(st, "%s: the test set has no examples", c->data.test_images);
    if (rd->test.d != ck->model.x_dim || rd->test.channels != ck->model.x_shape.c)
        return cuvae_fail(st,
                          "%s: %dx%dx%d = %d values an image, but the checkpoint's model takes %d "
                          "(%d channels)",
                          c->data.test_images, rd->test.channels, rd->test.rows, rd->test.cols,
                          rd->test.d, ck->model.x_dim, ck->model.x_shape.c);
    return 0;
}

static int upload_test_set(cuvae_backend *be, const cuvae_config *c, const cuvae_run_data *rd,
                           cuvae_status *st)
{
    if (cuvae_backend_upload(be, CUVAE_SET_TEST, rd->test.pixels, rd->test.n, rd->test.d, 0, st))
        return cuvae_fail_prefix(st, "uploading the test set %s", c->data.test_images);
    return 0;
}

/* ---- eval ------------------------------------------------------------------------------------ */

static const char EVAL_HELP[] =
    "usage: cuvae eval CHECKPOINT [options]\n"
    "Evaluates a checkpoint on its test set (binarized once with the fixed test seed when the\n"
    "run binarizes): mean negative ELBO, the K-sample importance-weighted bound on -log p(x),\n"
    "reconstruction error, KL, and the number of active latent units (Var_x E[z_d|x] > 0.01).\n"
    "  --samples K              importance samples per example (default: eval.samples)\n"
    "  --limit N                evaluate only the first N test examples (default: all)\n"
    "  --batch B                examples per backend call (default: eval.batch_size; fewer when\n"
    "                           B x K exceeds the backend's rows per call: %d on the CPU; the\n"
    "                           GPU takes more, in passes sized from its free memory)\n"
    "  --precision P            GEMM precision on the GPU: fp32 (default, whatever the run\n"
    "                           trained with) or tf32 (evaluation has no bf16 path); the CPU\n"
    "                           always computes fp32\n"
    "%s%s"
    "  --json FILE              also write the results as a JSON object to FILE (atomically)\n"
    "  -h, --help               this text\n"
    "Progress goes to stderr: an updating line on a terminal, otherwise a line every\n"
    "$CUVAE_PROGRESS_SECONDS seconds (default 30).\n";

int cuvae_cmd_eval(int argc, char **argv)
{
    const char *cmd = "eval";
    const char *ckpt_path = NULL, *json_path = NULL;
    int samples = 0, limit = 0, batch = 0;
    /* The reported bound is the figure of merit: full-precision GEMMs unless asked otherwise. */
    cuvae_precision precision = CUVAE_PREC_FP32;
    common_opts co = {.device = CUVAE_DEV_AUTO};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(EVAL_HELP, CUVAE_EVAL_MAX_ROWS, DEVICE_HELP, DATA_HELP);
            return CUVAE_EXIT_OK;
        }
        if ((r = common_option(cmd, argc, argv, &i, 1, &co, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option(cmd, argc, argv, &i, "--samples", 1, MAX_SAMPLES, &samples,
                                         &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option(cmd, argc, argv, &i, "--limit", 1, INT_MAX, &limit,
                                         &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option(cmd, argc, argv, &i, "--batch", 1, 1 << 20, &batch,
                                         &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--precision", &v))) {
            if (r < 0 || cuvae_parse_precision(v, &precision) || precision == CUVAE_PREC_BF16)
                return cuvae_usage_error(cmd,
                                         "--precision: expected fp32 or tf32 (evaluation has no "
                                         "bf16 path), got '%s'",
                                         r < 0 ? "" : v);
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--json", &v))) {
            if (r < 0 || *v == '\0') return cuvae_usage_error(cmd, "--json: expected a file name");
            json_path = v;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cuvae_usage_error(cmd, "unknown option '%s'", a);
        } else if (!ckpt_path) {
            ckpt_path = a;
        } else {
            return cuvae_usage_error(cmd, "unexpected argument '%s' (one checkpoint only)", a);
        }
    }
    if (!ckpt_path) return cuvae_usage_error(cmd, "missing CHECKPOINT");

    cuvae_status st = {{0}};
    cuvae_ckpt ck;
    cuvae_run_data rd;
    memset(&rd, 0, sizeof rd);
    int64_t n_test = 0;
    uint64_t staging = 0;
    cuvae_backend *be = NULL;
    int rc = CUVAE_EXIT_RUNTIME;
    if (load_checkpoint(ckpt_path, &ck, &st)) return runtime_error(cmd, &st);
    cuvae_config cfg = ck.config;
    if (limit) cfg.data.limit_test = limit;
    cfg.train.precision = precision;
    if (apply_data_options(&cfg, &co, &st)) goto fail;
    int K = samples ? samples : cfg.eval.samples;
    if (batch <= 0) batch = cfg.eval.batch_size;
    if (K < 1 || batch < 1) {
        rc = cuvae_usage_error(cmd,
                               "the checkpoint's eval.samples = %d / eval.batch_size = %d: pass "
                               "--samples and --batch",
                               cfg.eval.samples, cfg.eval.batch_size);
        goto out;
    }
    if (peek_test_set(&ck, &cfg, &n_test, &staging, &st)) goto fail;
    if (!(be = make_backend(&ck, &cfg, co.device, n_test, staging, &st))) goto fail;
    if (load_test_set(&ck, &cfg, &rd, &st)) goto fail;
    if (upload_test_set(be, &cfg, &rd, &st)) goto fail;
    int64_t n = rd.test.n;
    if (limit && limit < n) n = limit;

    cuvae_eval_result res;
    if (cuvae_evaluate_set(be, &ck.model, CUVAE_SET_TEST, n, K, 0, batch, stderr, &res, &st))
        goto fail;
    if (!isfinite(res.neg_elbo) || !isfinite(res.neg_iw) || !isfinite(res.rec) ||
        !isfinite(res.kl)) {
        cuvae_fail(&st,
                   "%s: the results are not finite (negative ELBO %g, bound %g, %lld non-finite "
                   "examples): the model's parameters overflow on this test set",
                   ckpt_path, res.neg_elbo, res.neg_iw, (long long)res.nonfinite);
        goto fail;
    }
    double per_s = res.seconds > 0 ? (double)res.n / res.seconds : 0.0;

    printf("%-22s %s (step %llu)\n", "checkpoint", ckpt_path, (unsigned long long)ck.meta.step);
    printf("%-22s %s\n", "test set", cfg.data.test_images);
    printf("%-22s %s%s%s\n", "device", cuvae_backend_name(be),
           strcmp(cuvae_backend_name(be), "cpu") ? ", " : "",
           strcmp(cuvae_backend_name(be), "cpu") ? cuvae_precision_name(precision) : "");
    printf("%-22s %d\n", "samples (K)", K);
    printf("%-22s %lld\n", "examples", (long long)res.n);
    printf("%-22s %.4f nats\n", "negative ELBO", res.neg_elbo);
    printf("%-22s %.4f nats (K = %d)\n", "-log p(x) bound", res.neg_iw, K);
    printf("%-22s %.4f nats\n", "reconstruction", res.rec);
    printf("%-22s %.4f nats\n", "KL", res.kl);
    printf("%-22s %d / %d\n", "active units", res.active_units, res.latent);
    printf("%-22s %.3f\n", "seconds", res.seconds);
    printf("%-22s %.1f\n", "examples/s", per_s);
    if (res.nonfinite)
        fprintf(stderr, "cuvae: eval: warning: %lld examples gave a non-finite bound or ELBO\n",
                (long long)res.nonfinite);
    if (fflush(stdout)) {
        cuvae_fail(&st, "writing the results to stdout: %s", strerror(errno));
        goto fail;
    }

    if (json_path) {
        cuvae_json_line j;
        cuvae_json_begin(&j, "eval");
        cuvae_json_str(&j, "checkpoint", ckpt_path);
        cuvae_json_int(&j, "step", (int64_t)ck.meta.step);
        cuvae_json_str(&j, "test_images", cfg.data.test_images);
        cuvae_json_str(&j, "device", cuvae_backend_name(be));
        cuvae_json_str(&j, "precision",
                       strcmp(cuvae_backend_name(be), "cpu") ? cuvae_precision_name(precision)
                                                             : "fp32");
        cuvae_json_int(&j, "samples", K);
        cuvae_json_int(&j, "examples", res.n);
        cuvae_json_num(&j, "neg_elbo", res.neg_elbo);
        cuvae_json_num(&j, "neg_iw_bound", res.neg_iw);
        cuvae_json_num(&j, "rec", res.rec);
        cuvae_json_num(&j, "kl", res.kl);
        cuvae_json_int(&j, "active_units", res.active_units);
        cuvae_json_int(&j, "latent", res.latent);
        cuvae_json_int(&j, "nonfinite", res.nonfinite);
        cuvae_json_num(&j, "seconds", res.seconds);
        cuvae_json_num(&j, "examples_per_s", per_s);
        const char *text = cuvae_json_end(&j);
        if (!text) {
            cuvae_fail(&st, "--json %s: the result object is too long", json_path);
            goto fail;
        }
        char *line = cuvae_malloc(strlen(text) + 2, "JSON text", &st);
        if (!line) goto fail;
        snprintf(line, strlen(text) + 2, "%s\n", text);
        int w = cuvae_write_file(json_path, line, strlen(line), &st);
        free(line);
        if (w) goto fail;
    }
    rc = CUVAE_EXIT_OK;
    goto out;
fail:
    rc = runtime_error(cmd, &st);
out:
    cuvae_backend_destroy(be);
    cuvae_run_data_free(&rd);
    cuvae_ckpt_free(&ck);
    return rc;
}

/* ---- sample ---------------------------------------------------------------------------------- */

static const char SAMPLE_HELP[] =
    "usage: cuvae sample CHECKPOINT [options]\n"
    "Decodes draws z ~ N(0, I) from the prior and writes the decoder means as a PNG grid. Images\n"
    "have the height and width of the training data, as the checkpoint records them (a checkpoint\n"
    "written before cuvae recorded them: square when x_dim is a perfect square, else one row).\n"
    "  --n N                    number of samples (default 64)\n"
    "  --out FILE.png           output file (default samples.png in the current directory)\n"
    "  --seed S                 seed of the prior draws (default: the run's train.seed); the\n"
    "                           draws are (S, sample stream, counter 0), so a seed always gives\n"
    "                           the same grid\n"
    "  --per-row R              images per grid row (default ceil(sqrt(N)))\n"
    "%s"
    "  -h, --help               this text\n";

int cuvae_cmd_sample(int argc, char **argv)
{
    const char *cmd = "sample";
    const char *ckpt_path = NULL, *out_path = "samples.png";
    int n = 64, per_row = 0, have_seed = 0;
    uint64_t seed = 0;
    common_opts co = {.device = CUVAE_DEV_AUTO};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(SAMPLE_HELP, DEVICE_HELP);
            return CUVAE_EXIT_OK;
        }
        if ((r = common_option(cmd, argc, argv, &i, 0, &co, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option(cmd, argc, argv, &i, "--n", 1, MAX_IMAGES, &n, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option(cmd, argc, argv, &i, "--per-row", 1, MAX_IMAGES, &per_row,
                                         &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cuvae_parse_u64(v, &seed))
                return cuvae_usage_error(
                    cmd, "--seed: expected an unsigned 64-bit integer, got '%s'", r < 0 ? "" : v);
            have_seed = 1;
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--out", &v))) {
            if (r < 0 || *v == '\0') return cuvae_usage_error(cmd, "--out: expected a file name");
            out_path = v;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cuvae_usage_error(cmd, "unknown option '%s'", a);
        } else if (!ckpt_path) {
            ckpt_path = a;
        } else {
            return cuvae_usage_error(cmd, "unexpected argument '%s' (one checkpoint only)", a);
        }
    }
    if (!ckpt_path) return cuvae_usage_error(cmd, "missing CHECKPOINT");
    if (!per_row) per_row = (int)ceil(sqrt((double)n));

    cuvae_status st = {{0}};
    cuvae_ckpt ck;
    cuvae_backend *be = NULL;
    int rc = CUVAE_EXIT_RUNTIME;
    if (load_checkpoint(ckpt_path, &ck, &st)) return runtime_error(cmd, &st);
    if (!have_seed) seed = ck.config.train.seed;
    cuvae_shape x = ck.model.x_shape;
    if (!(be = make_backend(&ck, &ck.config, co.device, 0, 0, &st))) goto fail;
    if (cuvae_write_sample_grid(be, &ck.model, seed, 0, n, per_row, DECODE_BATCH, out_path, &st))
        goto fail;
    printf("wrote %d samples (%dx%d%s, %d per row, seed %llu) to %s\n", n, x.h, x.w,
           x.c == 3 ? " RGB" : "", per_row, (unsigned long long)seed, out_path);
    rc = CUVAE_EXIT_OK;
    goto out;
fail:
    rc = runtime_error(cmd, &st);
out:
    cuvae_backend_destroy(be);
    cuvae_ckpt_free(&ck);
    return rc;
}

/* ---- reconstruct ----------------------------------------------------------------------------- */

static const char RECONSTRUCT_HELP[] =
    "usage: cuvae reconstruct CHECKPOINT [options]\n"
    "Writes the first N test images (as the model sees them: binarized when the run binarizes)\n"
    "and their reconstructions (the decoder's mean at z = mu(x)) as a PNG grid of row pairs: a\n"
    "row of R inputs, then the row of their reconstructions below it, and so on.\n"
    "  --n N                    number of test images (default 32)\n"
    "  --out FILE.png           output file (default reconstructions.png in the current\n"
    "                           directory)\n"
    "  --per-row R              images per row (default 8)\n"
    "%s%s"
    "  -h, --help               this text\n";

int cuvae_cmd_reconstruct(int argc, char **argv)
{
    const char *cmd = "reconstruct";
    const char *ckpt_path = NULL, *out_path = "reconstructions.png";
    int n = 32, per_row = 8;
    common_opts co = {.device = CUVAE_DEV_AUTO};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(RECONSTRUCT_HELP, DEVICE_HELP, DATA_HELP);
            return CUVAE_EXIT_OK;
        }
        if ((r = common_option(cmd, argc, argv, &i, 1, &co, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option(cmd, argc, argv, &i, "--n", 1, MAX_IMAGES / 2, &n,
                                         &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_int_option(cmd, argc, argv, &i, "--per-row", 1, MAX_IMAGES, &per_row,
                                         &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--out", &v))) {
            if (r < 0 || *v == '\0') return cuvae_usage_error(cmd, "--out: expected a file name");
            out_path = v;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cuvae_usage_error(cmd, "unknown option '%s'", a);
        } else if (!ckpt_path) {
            ckpt_path = a;
        } else {
            return cuvae_usage_error(cmd, "unexpected argument '%s' (one checkpoint only)", a);
        }
    }
    if (!ckpt_path) return cuvae_usage_error(cmd, "missing CHECKPOINT");

    cuvae_status st = {{0}};
    cuvae_ckpt ck;
    cuvae_run_data rd;
    memset(&rd, 0, sizeof rd);
    int64_t n_test = 0;
    uint64_t staging = 0;
    cuvae_backend *be = NULL;
    int rc = CUVAE_EXIT_RUNTIME;
    if (load_checkpoint(ckpt_path, &ck, &st)) return runtime_error(cmd, &st);
    cuvae_config cfg = ck.config;
    cfg.data.limit_test = n; /* only the first n images are shown */
    if (apply_data_options(&cfg, &co, &st)) goto fail;
    if (peek_test_set(&ck, &cfg, &n_test, &staging, &st)) goto fail;
    if (!(be = make_backend(&ck, &cfg, co.device, n_test, staging, &st))) goto fail;
    if (load_test_set(&ck, &cfg, &rd, &st)) goto fail;
    if (upload_test_set(be, &cfg, &rd, &st)) goto fail;
    if (rd.test.n < n) n = (int)rd.test.n;
    if (per_row > n) per_row = n;
    if (cuvae_write_recon_grid(be, &ck.model, &rd.test, CUVAE_SET_TEST, n, per_row, DECODE_BATCH,
                               out_path, &st))
        goto fail;
    printf("wrote %d test images and their reconstructions (%dx%d%s, rows alternate input / "
           "reconstruction, %d per row) to %s\n",
           n, rd.test.rows, rd.test.cols, rd.test.channels == 3 ? " RGB" : "", per_row, out_path);
    rc = CUVAE_EXIT_OK;
    goto out;
fail:
    rc = runtime_error(cmd, &st);
out:
    cuvae_backend_destroy(be);
    cuvae_run_data_free(&rd);
    cuvae_ckpt_free(&ck);
    return rc;
}
