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
#include "cli_model.h"
#include "dataset.h"
#include "evaluate.h"
#include "file_write.h"
#include "metrics.h"
#include "train_images.h"

#define MAX_SAMPLES 1000000 /* K */
#define MAX_IMAGES 65536    /* images in one grid */
#define DECODE_BATCH 1024   /* images per backend call when drawing grids */

/* ---- eval ------------------------------------------------------------------------------------ */

static const char EVAL_HELP[] =
    "usage: cuvae eval CHECKPOINT [options]\n"
    "Evaluates a checkpoint on its test set (binarized once with the fixed test seed when the\n"
    "run binarizes): mean negative ELBO, the K-sample importance-weighted bound on -log p(x),\n"
    "reconstruction error, KL, the number of active latent units (Var_x E[z_d|x] > 0.01), and\n"
    "the reconstruction MSE and PSNR on [0, 1] pixels (the decoder's mean at z = mu(x) against\n"
    "the grey original; PSNR = 10 log10(1 / MSE) over the set).\n"
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
    cli_common_opts co = {.device = CUVAE_DEV_AUTO};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(EVAL_HELP, CUVAE_EVAL_MAX_ROWS, CLI_DEVICE_HELP, CLI_DATA_HELP);
            return CUVAE_EXIT_OK;
        }
        if ((r = cli_common_option(cmd, argc, argv, &i, 1, &co, &err)) ||
            (r = cuvae_int_option(cmd, argc, argv, &i, "--samples", 1, MAX_SAMPLES, &samples,
                                  &err)) ||
            (r = cuvae_int_option(cmd, argc, argv, &i, "--limit", 1, INT_MAX, &limit, &err)) ||
            (r = cuvae_int_option(cmd, argc, argv, &i, "--batch", 1, 1 << 20, &batch, &err)) ||
            (r = cuvae_file_option(cmd, argc, argv, &i, "--json", &json_path, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--precision", &v))) {
            if (r < 0 || cuvae_parse_precision(v, &precision) || precision == CUVAE_PREC_BF16)
                return cuvae_usage_error(cmd,
                                         "--precision: expected fp32 or tf32 (evaluation has no "
                                         "bf16 path), got '%s'",
                                         r < 0 ? "" : v);
        } else if (cli_operand(cmd, a, &ckpt_path, &err)) {
            return err;
        }
    }
    if (!ckpt_path) return cuvae_usage_error(cmd, "missing CHECKPOINT");

    cuvae_status st = {{0}};
    cli_model m;
    int rc = CUVAE_EXIT_RUNTIME;
    if (cli_model_read(&m, ckpt_path, &co, CUVAE_SET_TEST, &st)) goto fail;
    cuvae_config *cfg = &m.cfg;
    if (limit) cfg->data.limit_test = limit;
    cfg->train.precision = precision;
    int K = samples ? samples : cfg->eval.samples;
    if (batch <= 0) batch = cfg->eval.batch_size;
    if (K < 1 || batch < 1) {
        rc = cuvae_usage_error(cmd,
                               "the checkpoint's eval.samples = %d / eval.batch_size = %d: pass "
                               "--samples and --batch",
                               cfg->eval.samples, cfg->eval.batch_size);
        goto out;
    }
    if (cli_model_start(&m,
                        "evaluate on a machine with more memory, or use fewer test examples "
                        "(--limit)",
                        &st))
        goto fail;
    cuvae_backend *be = m.be;
    int64_t n = m.data->n;
    if (limit && limit < n) n = limit;

    cuvae_eval_result res;
    if (cuvae_evaluate_set(be, &m.ck.model, CUVAE_SET_TEST, n, K, 0, batch, NULL, stderr, &res,
                           &st))
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
    /* After the timed bound: the decoder mean at mu against the grey originals (evaluate.h). */
    cuvae_recon_error recon;
    if (cuvae_recon_error_set(be, &m.ck.model, CUVAE_SET_TEST, m.originals, n, batch, &recon, &st))
        goto fail;

    printf("%-22s %s (step %llu)\n", "checkpoint", ckpt_path, (unsigned long long)m.ck.meta.step);
    printf("%-22s %s\n", "test set", cfg->data.test_images);
    printf("%-22s %s%s%s\n", "device", cuvae_backend_name(be),
           strcmp(cuvae_backend_name(be), "cpu") ? ", " : "",
           strcmp(cuvae_backend_name(be), "cpu") ? cuvae_precision_name(precision) : "");
    printf("%-22s %d\n", "samples (K)", K);
    printf("%-22s %lld\n", "examples", (long long)res.n);
    printf("%-22s %.4f nats\n", "negative ELBO", res.neg_elbo);
    printf("%-22s %.4f nats (K = %d)\n", "-log p(x) bound", res.neg_iw, K);
    printf("%-22s %.4f nats\n", "reconstruction", res.rec);
    printf("%-22s %.4f nats\n", "KL", res.kl);
    printf("%-22s %.6f (decoder mean at mu vs the [0, 1] originals)\n", "reconstruction MSE",
           recon.mse);
    printf("%-22s %.3f dB\n", "reconstruction PSNR", recon.psnr);
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
        cuvae_json_int(&j, "step", (int64_t)m.ck.meta.step);
        cuvae_json_str(&j, "test_images", cfg->data.test_images);
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
        cuvae_json_num(&j, "recon_mse", recon.mse);
        cuvae_json_num(&j, "recon_psnr", recon.psnr);
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
    rc = cli_runtime_error(cmd, &st);
out:
    cli_model_close(&m);
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
    "%s%s"
    "  -h, --help               this text\n";

int cuvae_cmd_sample(int argc, char **argv)
{
    const char *cmd = "sample";
    const char *ckpt_path = NULL, *out_path = "samples.png";
    int n = 64, per_row = 0, have_seed = 0;
    uint64_t seed = 0;
    cli_common_opts co = {.device = CUVAE_DEV_AUTO};
    cli_grid_opts go = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(SAMPLE_HELP, CLI_GRID_HELP, CLI_DEVICE_HELP);
            return CUVAE_EXIT_OK;
        }
        if ((r = cli_common_option(cmd, argc, argv, &i, 0, &co, &err)) ||
            (r = cli_grid_option(cmd, argc, argv, &i, &go, &err)) ||
            (r = cuvae_int_option(cmd, argc, argv, &i, "--n", 1, MAX_IMAGES, &n, &err)) ||
            (r = cuvae_int_option(cmd, argc, argv, &i, "--per-row", 1, MAX_IMAGES, &per_row,
                                  &err)) ||
            (r = cuvae_file_option(cmd, argc, argv, &i, "--out", &out_path, &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cuvae_parse_u64(v, &seed))
                return cuvae_usage_error(
                    cmd, "--seed: expected an unsigned 64-bit integer, got '%s'", r < 0 ? "" : v);
            have_seed = 1;
        } else if (cli_operand(cmd, a, &ckpt_path, &err)) {
            return err;
        }
    }
    if (!ckpt_path) return cuvae_usage_error(cmd, "missing CHECKPOINT");
    if (!per_row) per_row = (int)ceil(sqrt((double)n));

    cuvae_status st = {{0}};
    cuvae_ckpt ck;
    cuvae_backend *be = NULL;
    int rc = CUVAE_EXIT_RUNTIME;
    if (cli_load_checkpoint(ckpt_path, &ck, &st)) return cli_runtime_error(cmd, &st);
    if (!have_seed) seed = ck.config.train.seed;
    cuvae_shape x = ck.model.x_shape;
    if (!(be = cli_make_backend(&ck, &ck.config, co.device, &st))) goto fail;
    char caption[96];
    cuvae_grid_style style = cli_grid_style(&go, &ck, caption, sizeof caption);
    if (cuvae_write_sample_grid(be, &ck.model, seed, 0, n, per_row, DECODE_BATCH, &style, out_path,
                                &st))
        goto fail;
    printf("wrote %d samples (%dx%d%s, drawn %dx, %d per row, seed %llu) to %s\n", n, x.h, x.w,
           x.c == 3 ? " RGB" : "", style.scale, per_row, (unsigned long long)seed, out_path);
    rc = CUVAE_EXIT_OK;
    goto out;
fail:
    rc = cli_runtime_error(cmd, &st);
out:
    cuvae_backend_destroy(be);
    cuvae_ckpt_free(&ck);
    return rc;
}

/* ---- reconstruct ----------------------------------------------------------------------------- */

static const char RECONSTRUCT_HELP[] =
    "usage: cuvae reconstruct CHECKPOINT [options]\n"
    "Writes the first N test images and their reconstructions (the decoder's mean at z = mu(x))\n"
    "as a PNG grid of row pairs: a row of R originals, then the row of their reconstructions\n"
    "below it, and so on. The originals are the data's grey images; the encoder sees them as\n"
    "the model does (binarized once with the fixed test seed when the run binarizes).\n"
    "  --n N                    number of test images (default 32)\n"
    "  --out FILE.png           output file (default reconstructions.png in the current\n"
    "                           directory)\n"
    "  --per-row R              images per row (default 8)\n"
    "%s%s%s"
    "  -h, --help               this text\n";

int cuvae_cmd_reconstruct(int argc, char **argv)
{
    const char *cmd = "reconstruct";
    const char *ckpt_path = NULL, *out_path = "reconstructions.png";
    int n = 32, per_row = 8;
    cli_common_opts co = {.device = CUVAE_DEV_AUTO};
    cli_grid_opts go = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(RECONSTRUCT_HELP, CLI_GRID_HELP, CLI_DEVICE_HELP, CLI_DATA_HELP);
            return CUVAE_EXIT_OK;
        }
        if ((r = cli_common_option(cmd, argc, argv, &i, 1, &co, &err)) ||
            (r = cli_grid_option(cmd, argc, argv, &i, &go, &err)) ||
            (r = cuvae_int_option(cmd, argc, argv, &i, "--n", 1, MAX_IMAGES / 2, &n, &err)) ||
            (r = cuvae_int_option(cmd, argc, argv, &i, "--per-row", 1, MAX_IMAGES, &per_row,
                                  &err)) ||
            (r = cuvae_file_option(cmd, argc, argv, &i, "--out", &out_path, &err))) {
            if (r < 0) return err;
        } else if (cli_operand(cmd, a, &ckpt_path, &err)) {
            return err;
        }
    }
    if (!ckpt_path) return cuvae_usage_error(cmd, "missing CHECKPOINT");

    cuvae_status st = {{0}};
    cli_model m;
    int rc = CUVAE_EXIT_RUNTIME;
    if (cli_model_read(&m, ckpt_path, &co, CUVAE_SET_TEST, &st)) goto fail;
    m.cfg.data.limit_test = n; /* only the first n images are shown */
    if (cli_model_start(&m, "run on a machine with more memory, or show fewer images (--n)", &st))
        goto fail;
    const cuvae_dataset *test = m.data;
    if (test->n < n) n = (int)test->n;
    if (per_row > n) per_row = n;
    char caption[96];
    cuvae_grid_style style = cli_grid_style(&go, &m.ck, caption, sizeof caption);
    if (cuvae_write_recon_grid(m.be, &m.ck.model, test, m.originals, CUVAE_SET_TEST, n, per_row,
                               DECODE_BATCH, &style, out_path, &st))
        goto fail;
    printf("wrote %d test images and their reconstructions (%dx%d%s, drawn %dx, rows alternate "
           "original / reconstruction, %d per row) to %s\n",
           n, test->rows, test->cols, test->channels == 3 ? " RGB" : "", style.scale, per_row,
           out_path);
    rc = CUVAE_EXIT_OK;
    goto out;
fail:
    rc = cli_runtime_error(cmd, &st);
out:
    cli_model_close(&m);
    return rc;
}
