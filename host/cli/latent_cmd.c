/* The latent-space subcommands: `cuvae encode` (the encoder's mu and log-variance of a set, as
 * an .npz for t-SNE, UMAP or a downstream model), `cuvae traverse` (each active latent dimension
 * swept around an example's mu; with two latent dimensions, the decoder's map of the plane) and
 * `cuvae interpolate` (decoded points between two examples' mu). All run through the backend's
 * evaluate (mu, log-variance) and decode entries, on the CPU or the GPU. */
#include "commands.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_args.h"
#include "cli_model.h"
#include "evaluate.h"
#include "metrics.h"
#include "npy.h"
#include "train_images.h"

#define DECODE_BATCH 1024            /* latents per decode call */
#define MAX_STEPS 1024               /* points of a sweep or an interpolation */
#define MAX_RANGE 1000.0             /* |--range| in latent units */
#define MAX_GRID_VALUES (1ULL << 28) /* decoded floats of one traversal grid (1 GiB) */
#define PROGRESS_INTERVAL 0.25       /* seconds between redraws on a terminal */
#define PROGRESS_LOG_INTERVAL 30.0

/* ---- shared pieces --------------------------------------------------------------------------- */

/* "--name X" with X a finite number in [lo, hi]: 1, 0 when argv[*i] is another option, -1 after
 * the usage error (*err). */
static int float_option(const char *cmd, int argc, char **argv, int *i, const char *name, double lo,
                        double hi, double *out, int *err)
{
    const char *v = NULL;
    int r = cuvae_opt_value(argc, argv, i, name, &v);
    if (r == 0) return 0;
    if (r > 0) {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (!errno && end != v && *end == '\0' && isfinite(x) && x >= lo && x <= hi) {
            *out = x;
            return 1;
        }
    }
    *err = cuvae_usage_error(cmd, "%s: expected a number in [%g, %g], got '%s'", name, lo, hi,
                             r < 0 ? "" : v);
    return -1;
}

static int set_option(const char *cmd, int argc, char **argv, int *i, cuvae_set *set, int *err)
{
    const char *v = NULL;
    int r = cuvae_opt_value(argc, argv, i, "--set", &v);
    if (r == 0) return 0;
    if (r < 0 || cli_parse_set(v, set)) {
        *err = cuvae_usage_error(cmd, "--set: expected test, train or valid, got '%s'",
                                 r < 0 ? "" : v);
        return -1;
    }
    return 1;
}

/* mu (and logvar when not NULL) of examples [0, n) of the model's set, in backend calls of at
 * most `batch` examples, with a progress line on stderr for long sets. */
static int encode_rows(cli_model *m, int64_t n, int batch, float *mu, float *logvar, int progress,
                       cuvae_status *st)
{
    size_t L = (size_t)m->ck.model.latent;
    int32_t *idx = cuvae_malloc((size_t)batch * sizeof *idx, "encoder indices", st);
    if (!idx) return -1;
    int tty = progress && isatty(fileno(stderr));
    const char *env = getenv("CUVAE_PROGRESS_SECONDS");
    double interval = tty ? PROGRESS_INTERVAL : env && *env ? atof(env) : PROGRESS_LOG_INTERVAL;
    double start = cuvae_now(), last = start;
    int rc = 0;
    for (int64_t first = 0; first < n; first += batch) {
        int b = (int)(n - first < batch ? n - first : batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(first + i);
        cuvae_eval_out out = {.mu = mu + (size_t)first * L,
                              .logvar = logvar ? logvar + (size_t)first * L : NULL};
        if (cuvae_backend_evaluate(m->be, m->set, idx, b, 1, 0, &out, st)) {
            rc = cuvae_fail_prefix(st, "encoding examples %lld..%lld", (long long)first,
                                   (long long)(first + b - 1));
            break;
        }
        double now = cuvae_now();
        if (progress && now - last >= interval && first + b < n) {
            char rate[32];
            cuvae_format_rate(rate, sizeof rate, (double)(first + b) / (now - start));
            fprintf(stderr, "%sencode: %lld/%lld examples %s examples/s%s", tty ? "\r" : "",
                    (long long)(first + b), (long long)n, rate, tty ? "\033[K" : "\n");
            fflush(stderr);
            last = now;
        }
    }
    if (tty) fprintf(stderr, "\r\033[K");
    free(idx);
    return rc;
}

/* Writes z and the decoded x of a traversal or an interpolation as an .npz (--npz). */
static int write_points(const char *path, const float *z, const float *x, int n, int latent,
                        int x_dim, cuvae_status *st)
{
    cuvae_npz_member mem[2] = {
        {.name = "z", .descr = "<f4", .itemsize = 4, .ndim = 2, .shape = {n, latent}, .data = z},
        {.name = "x", .descr = "<f4", .itemsize = 4, .ndim = 2, .shape = {n, x_dim}, .data = x},
    };
    return cuvae_npz_write(path, mem, 2, st);
}

/* ---- encode ---------------------------------------------------------------------------------- */

static const char ENCODE_HELP[] =
    "usage: cuvae encode CHECKPOINT [options]\n"
    "Writes the encoder's outputs for every example of a set as a NumPy .npz (np.load reads it):\n"
    "mu and logvar, float32 [N, latent], and labels (uint8 [N]) when the set has them. The\n"
    "examples are those the run used, in the file's order: test (data.test_images), valid (the\n"
    "run's seeded validation split) or train (the rest); test and valid binarized once with their\n"
    "fixed seeds when the run binarizes, train binarized with train.seed (static) or grey (scaled\n"
    "to [0, 1]: dynamic binarization's mean).\n"
    "  --set test|train|valid   the set (default test)\n"
    "  --out FILE.npz           output file (default latents.npz; written atomically)\n"
    "  --limit N                only the first N examples\n"
    "  --batch B                examples per backend call (default: eval.batch_size)\n"
    "%s%s"
    "  -h, --help               this text\n"
    "Progress goes to stderr: an updating line on a terminal, otherwise a line every\n"
    "$CUVAE_PROGRESS_SECONDS seconds (default 30).\n";

int cuvae_cmd_encode(int argc, char **argv)
{
    const char *cmd = "encode";
    const char *ckpt_path = NULL, *out_path = "latents.npz";
    int limit = 0, batch = 0;
    cuvae_set set = CUVAE_SET_TEST;
    cli_common_opts co = {.device = CUVAE_DEV_AUTO};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(ENCODE_HELP, CLI_DEVICE_HELP, CLI_DATA_HELP);
            return CUVAE_EXIT_OK;
        }
        if ((r = cli_common_option(cmd, argc, argv, &i, 1, &co, &err)) ||
            (r = set_option(cmd, argc, argv, &i, &set, &err)) ||
            (r = cuvae_file_option(cmd, argc, argv, &i, "--out", &out_path, &err)) ||
            (r = cuvae_int_option(cmd, argc, argv, &i, "--limit", 1, INT32_MAX, &limit, &err)) ||
            (r = cuvae_int_option(cmd, argc, argv, &i, "--batch", 1, 1 << 20, &batch, &err))) {
            if (r < 0) return err;
        } else if (cli_operand(cmd, a, &ckpt_path, &err)) {
            return err;
        }
    }
    if (!ckpt_path) return cuvae_usage_error(cmd, "missing CHECKPOINT");

    cuvae_status st = {{0}};
    cli_model m;
    float *mu = NULL, *logvar = NULL;
    int rc = CUVAE_EXIT_RUNTIME;
    if (cli_model_open(&m, ckpt_path, &co, set, &st)) goto fail;
    int64_t n = m.data->n;
    if (limit && limit < n) n = limit;
    if (batch <= 0) batch = m.cfg.eval.batch_size > 0 ? m.cfg.eval.batch_size : 100;
    if (batch > n) batch = (int)n;
    int L = m.ck.model.latent;
    mu = cuvae_malloc((size_t)n * (size_t)L * sizeof *mu, "mu", &st);
    logvar = cuvae_malloc((size_t)n * (size_t)L * sizeof *logvar, "logvar", &st);
    if (!mu || !logvar) goto fail;
    double start = cuvae_now();
    if (encode_rows(&m, n, batch, mu, logvar, 1, &st)) goto fail;
    double seconds = cuvae_now() - start;
    cuvae_npz_member mem[3] = {
        {.name = "mu", .descr = "<f4", .itemsize = 4, .ndim = 2, .shape = {n, L}, .data = mu},
        {.name = "logvar",
         .descr = "<f4",
         .itemsize = 4,
         .ndim = 2,
         .shape = {n, L},
         .data = logvar},
        {.name = "labels",
         .descr = "|u1",
         .itemsize = 1,
         .ndim = 1,
         .shape = {n, 0},
         .data = m.data->labels},
    };
    int members = m.data->labels ? 3 : 2;
    if (cuvae_npz_write(out_path, mem, members, &st)) goto fail;
    printf("wrote mu and logvar [%lld, %d]%s of the %s set (%s) to %s in %.2f s\n", (long long)n, L,
           members == 3 ? " and labels" : "", cli_set_name(set),
           set == CUVAE_SET_TEST ? m.cfg.data.test_images : m.cfg.data.train_images, out_path,
           seconds);
    rc = CUVAE_EXIT_OK;
    goto out;
fail:
    rc = cli_runtime_error(cmd, &st);
out:
    free(mu);
    free(logvar);
    cli_model_close(&m);
    return rc;
}

/* ---- traverse -------------------------------------------------------------------------------- */

static const char TRAVERSE_HELP[] =
    "usage: cuvae traverse CHECKPOINT [options]\n"
    "Writes a PNG grid with one row per active latent dimension d: the decoder's mean at z = "
    "mu(x)\n"
    "of one example with z_d swept from mu_d - R to mu_d + R in S steps, the other dimensions\n"
    "fixed at the example's mu. A dimension is active when the variance of mu_d over the first N\n"
    "examples of the set exceeds T (Burda et al.'s active units, as `cuvae eval` counts them);\n"
    "stdout lists each row's dimension and variance.\n"
    "With --map (a model with 2 latent dimensions), the grid is instead the decoder's map of the\n"
    "plane: S x S images at z = (z1, z2) on [-R, R] x [-R, R], z1 growing to the right and z2\n"
    "upwards.\n"
    "  --example I              the example (default 0) of the set\n"
    "  --set test|train|valid   the set (default test; as `cuvae encode` reads it)\n"
    "  --range R                half-width of the sweep in latent units (default 3)\n"
    "  --steps S                points of each sweep (default 9; 2 to 1024)\n"
    "  --threshold T            activity threshold on Var(mu_d) (default 0.01)\n"
    "  --sample N               examples over which the variance is taken (default 1000)\n"
    "  --dims D1,D2,...         sweep these dimensions (0-based) instead of the active ones\n"
    "  --map                    the 2-D map of the decoder (latent = 2)\n"
    "  --out FILE.png           output file (default traverse.png)\n"
    "  --npz FILE.npz           also write the latents z [rows x S, latent] and the decoded\n"
    "                           images x [rows x S, C x H x W] (float32)\n"
    "%s%s%s"
    "  -h, --help               this text\n";

/* Parses "3,0,7" into dims (distinct, each < latent). Returns the count, or -1. */
static int parse_dims(const char *s, int latent, int *dims, int cap)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v >= latent || n >= cap) return -1;
        for (int k = 0; k < n; k++)
            if (dims[k] == v) return -1;
        dims[n++] = (int)v;
        if (*end == ',' && end[1])
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return n ? n : -1;
}

int cuvae_cmd_traverse(int argc, char **argv)
{
    const char *cmd = "traverse";
    const char *ckpt_path = NULL, *out_path = "traverse.png", *npz_path = NULL, *dims_text = NULL;
    int example = 0, steps = 9, sample = 1000, map = 0;
    double range = 3.0, threshold = CUVAE_ACTIVE_UNIT_THRESHOLD;
    cuvae_set set = CUVAE_SET_TEST;
    cli_common_opts co = {.device = CUVAE_DEV_AUTO};
    cli_grid_opts go = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(TRAVERSE_HELP, CLI_GRID_HELP, CLI_DEVICE_HELP, CLI_DATA_HELP);
            return CUVAE_EXIT_OK;
        }
        if (!strcmp(a, "--map")) {
            map = 1;
        } else if ((r = cli_common_option(cmd, argc, argv, &i, 1, &co, &err)) ||
                   (r = cli_grid_option(cmd, argc, argv, &i, &go, &err)) ||
                   (r = set_option(cmd, argc, argv, &i, &set, &err)) ||
                   (r = cuvae_file_option(cmd, argc, argv, &i, "--out", &out_path, &err)) ||
                   (r = cuvae_file_option(cmd, argc, argv, &i, "--npz", &npz_path, &err)) ||
                   (r = cuvae_int_option(cmd, argc, argv, &i, "--example", 0, INT32_MAX - 1,
                                         &example, &err)) ||
                   (r = cuvae_int_option(cmd, argc, argv, &i, "--steps", 2, MAX_STEPS, &steps,
                                         &err)) ||
                   (r = cuvae_int_option(cmd, argc, argv, &i, "--sample", 1, INT32_MAX, &sample,
                                         &err)) ||
                   (r = float_option(cmd, argc, argv, &i, "--range", 1e-6, MAX_RANGE, &range,
                                     &err)) ||
                   (r = float_option(cmd, argc, argv, &i, "--threshold", 0.0, 1e30, &threshold,
                                     &err))) {
            if (r < 0) return err;
        } else if ((r = cuvae_opt_value(argc, argv, &i, "--dims", &v))) {
            if (r < 0 || *v == '\0') return cuvae_usage_error(cmd, "--dims: expected a list");
            dims_text = v;
        } else if (cli_operand(cmd, a, &ckpt_path, &err)) {
            return err;
        }
    }
    if (!ckpt_path) return cuvae_usage_error(cmd, "missing CHECKPOINT");
    if (map && dims_text)
        return cuvae_usage_error(cmd, "--map draws the plane of both dimensions: drop --dims");

    cuvae_status st = {{0}};
    cli_model m;
    memset(&m, 0, sizeof m);
    float *mu = NULL, *z = NULL, *x = NULL;
    int *dims = NULL;
    double *var = NULL;
    int rc = CUVAE_EXIT_RUNTIME;
    char caption[96];
    if (map) {
        /* The plane needs no data: the checkpoint and a backend only. */
        if (cli_load_checkpoint(ckpt_path, &m.ck, &st)) goto fail;
        m.ck_loaded = 1;
        if (m.ck.model.latent != 2) {
            rc =
                cuvae_usage_error(cmd, "--map: the model has %d latent dimensions, the map needs 2",
                                  m.ck.model.latent);
            goto out;
        }
        if (!(m.be = cli_make_backend(&m.ck, &m.ck.config, co.device, &st))) goto fail;
    } else if (cli_model_open(&m, ckpt_path, &co, set, &st)) {
        goto fail;
    }
    const cuvae_model *md = &m.ck.model;
    int L = md->latent;
    int rows = 0;
    dims = cuvae_calloc((size_t)L, sizeof *dims, "the swept dimensions", &st);
    var = cuvae_calloc((size_t)L, sizeof *var, "the variances of mu", &st);
    if (!dims || !var) goto fail;
    if (map) {
        rows = steps;
    } else {
        if (example >= m.data->n) {
            rc = cuvae_usage_error(cmd, "--example %d: the %s set has %lld examples (0..%lld)",
                                   example, cli_set_name(set), (long long)m.data->n,
                                   (long long)m.data->n - 1);
            goto out;
        }
        /* mu of the first N examples: the activity of each dimension, and the example's mu. */
        int64_t n = m.data->n < sample ? m.data->n : sample;
        if (n <= example) n = example + 1;
        int batch = m.cfg.eval.batch_size > 0 ? m.cfg.eval.batch_size : 100;
        if (batch > n) batch = (int)n;
        mu = cuvae_malloc((size_t)n * (size_t)L * sizeof *mu, "mu", &st);
        if (!mu) goto fail;
        if (encode_rows(&m, n, batch, mu, NULL, 0, &st)) goto fail;
        int64_t nv = m.data->n < sample ? m.data->n : sample; /* the variance's examples */
        for (int d = 0; d < L; d++) {
            double mean = 0, m2 = 0;
            for (int64_t i = 0; i < nv; i++) { /* Welford, as evaluate.c */
                double v = mu[(size_t)i * (size_t)L + (size_t)d], delta = v - mean;
                mean += delta / (double)(i + 1);
                m2 += delta * (v - mean);
            }
            var[d] = m2 / (double)nv;
        }
        if (dims_text) {
            rows = parse_dims(dims_text, L, dims, L);
            if (rows < 0) {
                rc = cuvae_usage_error(cmd,
                                       "--dims: expected distinct dimensions in [0, %d] separated "
                                       "by commas, got '%s'",
                                       L - 1, dims_text);
                goto out;
            }
        } else {
            for (int d = 0; d < L; d++)
                if (var[d] > threshold) dims[rows++] = d;
            if (rows == 0) {
                cuvae_fail(&st,
                           "no latent dimension is active: Var(mu_d) <= %g over %lld examples for "
                           "all %d; pass --dims or a lower --threshold",
                           threshold, (long long)nv, L);
                goto fail;
            }
        }
    }
    size_t cells = (size_t)rows * (size_t)steps;
    if ((uint64_t)cells * (uint64_t)md->x_dim > MAX_GRID_VALUES) {
        rc = cuvae_usage_error(cmd,
                               "a grid of %zu images of %d values is too large (at most %llu "
                               "values): fewer --steps or --dims",
                               cells, md->x_dim, (unsigned long long)MAX_GRID_VALUES);
        goto out;
    }
    z = cuvae_malloc(cells * (size_t)L * sizeof *z, "the traversal's latents", &st);
    x = cuvae_malloc(cells * (size_t)md->x_dim * sizeof *x, "the traversal's images", &st);
    if (!z || !x) goto fail;
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < steps; k++) {
            float *zc = z + ((size_t)r * (size_t)steps + (size_t)k) * (size_t)L;
            double t = -range + 2.0 * range * (double)k / (double)(steps - 1);
            if (map) {
                zc[0] = (float)t; /* z1: x axis */
                zc[1] = (float)(range - 2.0 * range * (double)r / (double)(steps - 1)); /* z2: up */
            } else {
                memcpy(zc, mu + (size_t)example * (size_t)L, (size_t)L * sizeof *zc);
                zc[dims[r]] = (float)((double)zc[dims[r]] + t);
            }
        }
    if (cuvae_decode_all(m.be, md, z, (int)cells, DECODE_BATCH, x, &st)) goto fail;
    /* The .npz holds the decoder's means as they are; the picture maps float data's range. */
    if (npz_path && write_points(npz_path, z, x, (int)cells, L, md->x_dim, &st)) goto fail;
    cuvae_to_display(md, x, cells * (size_t)md->x_dim);
    cuvae_grid_style style = cli_grid_style(&go, &m.ck, caption, sizeof caption);
    if (cuvae_png_write_grid_styled(out_path, x, (int)cells, md->x_shape.c, md->x_shape.h,
                                    md->x_shape.w, steps, &style, &st))
        goto fail;
    if (map) {
        printf("wrote the decoder's map of z in [%g, %g]^2 (%d x %d images, z1 to the right, z2 "
               "upwards) to %s\n",
               -range, range, steps, steps, out_path);
    } else {
        printf("wrote %d rows of %d images (z_d swept over mu_d +- %g around example %d of the %s "
               "set) to %s\n",
               rows, steps, range, example, cli_set_name(set), out_path);
        for (int r = 0; r < rows; r++)
            printf("row %d: dimension %d, mu = %.4f, Var(mu_d) = %.4f%s\n", r + 1, dims[r],
                   mu[(size_t)example * (size_t)L + (size_t)dims[r]], var[dims[r]],
                   var[dims[r]] > threshold ? "" : " (inactive)");
    }
    rc = CUVAE_EXIT_OK;
    goto out;
fail:
    rc = cli_runtime_error(cmd, &st);
out:
    free(mu);
    free(z);
    free(x);
    free(dims);
    free(var);
    cli_model_close(&m);
    return rc;
}

/* ---- interpolate ----------------------------------------------------------------------------- */

static const char INTERPOLATE_HELP[] =
    "usage: cuvae interpolate CHECKPOINT --from I --to J [options]\n"
    "Writes one row of N decoded points (the decoder's mean) between the mu of examples I and J "
    "of\n"
    "a set: z(t) = (1 - t) mu_I + t mu_J, t = 0, 1/(N-1), ..., 1, or with --spherical the\n"
    "spherical interpolation sin((1-t) W)/sin W mu_I + sin(t W)/sin W mu_J (W the angle between\n"
    "them; linear where they are parallel). The first and last images are the decoded mu of I\n"
    "and J, the reconstructions `cuvae reconstruct` shows.\n"
    "  --from I, --to J         the two examples (0-based) of the set\n"
    "  --set test|train|valid   the set (default test; as `cuvae encode` reads it)\n"
    "  --steps N                points, endpoints included (default 10; 2 to 1024)\n"
    "  --spherical              spherical instead of linear interpolation\n"
    "  --per-row R              images per grid row (default: all N in one row)\n"
    "  --out FILE.png           output file (default interpolate.png)\n"
    "  --npz FILE.npz           also write the latents z [N, latent] and the decoded images\n"
    "                           x [N, C x H x W] (float32)\n"
    "%s%s%s"
    "  -h, --help               this text\n";

/* The point at t of the interpolation from a to b, exact at both ends. */
static void interpolate_point(const float *a, const float *b, int L, double t, int spherical,
                              float *out)
{
    double w = 0, sw = 0;
    if (spherical) {
        double ab = 0, aa = 0, bb = 0;
        for (int d = 0; d < L; d++) {
            ab += (double)a[d] * b[d];
            aa += (double)a[d] * a[d];
            bb += (double)b[d] * b[d];
        }
        double c = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 1.0;
        c = c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c;
        w = acos(c);
        sw = sin(w);
    }
    double ca = 1.0 - t, cb = t;
    if (spherical && sw > 1e-6) {
        ca = sin((1.0 - t) * w) / sw;
        cb = sin(t * w) / sw;
    }
    for (int d = 0; d < L; d++) out[d] = (float)(ca * a[d] + cb * b[d]);
    if (t == 0.0) memcpy(out, a, (size_t)L * sizeof *out);
    if (t == 1.0) memcpy(out, b, (size_t)L * sizeof *out);
}

int cuvae_cmd_interpolate(int argc, char **argv)
{
    const char *cmd = "interpolate";
    const char *ckpt_path = NULL, *out_path = "interpolate.png", *npz_path = NULL;
    int from = -1, to = -1, steps = 10, spherical = 0, per_row = 0;
    cuvae_set set = CUVAE_SET_TEST;
    cli_common_opts co = {.device = CUVAE_DEV_AUTO};
    cli_grid_opts go = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r, err = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(INTERPOLATE_HELP, CLI_GRID_HELP, CLI_DEVICE_HELP, CLI_DATA_HELP);
            return CUVAE_EXIT_OK;
        }
        if (!strcmp(a, "--spherical")) {
            spherical = 1;
        } else if ((r = cli_common_option(cmd, argc, argv, &i, 1, &co, &err)) ||
                   (r = cli_grid_option(cmd, argc, argv, &i, &go, &err)) ||
                   (r = set_option(cmd, argc, argv, &i, &set, &err)) ||
                   (r = cuvae_file_option(cmd, argc, argv, &i, "--out", &out_path, &err)) ||
                   (r = cuvae_file_option(cmd, argc, argv, &i, "--npz", &npz_path, &err)) ||
                   (r = cuvae_int_option(cmd, argc, argv, &i, "--from", 0, INT32_MAX - 1, &from,
                                         &err)) ||
                   (r = cuvae_int_option(cmd, argc, argv, &i, "--to", 0, INT32_MAX - 1, &to,
                                         &err)) ||
                   (r = cuvae_int_option(cmd, argc, argv, &i, "--steps", 2, MAX_STEPS, &steps,
                                         &err)) ||
                   (r = cuvae_int_option(cmd, argc, argv, &i, "--per-row", 1, MAX_STEPS, &per_row,
                                         &err))) {
            if (r < 0) return err;
        } else if (cli_operand(cmd, a, &ckpt_path, &err)) {
            return err;
        }
    }
    if (!ckpt_path) return cuvae_usage_error(cmd, "missing CHECKPOINT");
    if (from < 0 || to < 0) return cuvae_usage_error(cmd, "missing --from I and --to J");
    if (!per_row || per_row > steps) per_row = steps;

    cuvae_status st = {{0}};
    cli_model m;
    float *mu = NULL, *z = NULL, *x = NULL;
    int rc = CUVAE_EXIT_RUNTIME;
    char caption[96];
    if (cli_model_open(&m, ckpt_path, &co, set, &st)) goto fail;
    if (from >= m.data->n || to >= m.data->n) {
        rc = cuvae_usage_error(cmd, "--%s %d: the %s set has %lld examples (0..%lld)",
                               from >= m.data->n ? "from" : "to", from >= m.data->n ? from : to,
                               cli_set_name(set), (long long)m.data->n, (long long)m.data->n - 1);
        goto out;
    }
    const cuvae_model *md = &m.ck.model;
    int L = md->latent;
    int64_t n = (from > to ? from : to) + 1;
    int batch = m.cfg.eval.batch_size > 0 ? m.cfg.eval.batch_size : 100;
    if (batch > n) batch = (int)n;
    mu = cuvae_malloc((size_t)n * (size_t)L * sizeof *mu, "mu", &st);
    z = cuvae_malloc((size_t)steps * (size_t)L * sizeof *z, "the interpolation's latents", &st);
    x = cuvae_malloc((size_t)steps * (size_t)md->x_dim * sizeof *x, "the interpolation's images",
                     &st);
    if (!mu || !z || !x) goto fail;
    if (encode_rows(&m, n, batch, mu, NULL, 0, &st)) goto fail;
    for (int k = 0; k < steps; k++)
        interpolate_point(mu + (size_t)from * (size_t)L, mu + (size_t)to * (size_t)L, L,
                          k == steps - 1 ? 1.0 : (double)k / (double)(steps - 1), spherical,
                          z + (size_t)k * (size_t)L);
    if (cuvae_decode_all(m.be, md, z, steps, DECODE_BATCH, x, &st)) goto fail;
    if (npz_path && write_points(npz_path, z, x, steps, L, md->x_dim, &st)) goto fail;
    cuvae_to_display(md, x, (size_t)steps * (size_t)md->x_dim);
    cuvae_grid_style style = cli_grid_style(&go, &m.ck, caption, sizeof caption);
    if (cuvae_png_write_grid_styled(out_path, x, steps, md->x_shape.c, md->x_shape.h, md->x_shape.w,
                                    per_row, &style, &st))
        goto fail;
    printf("wrote %d points (%s) from example %d to example %d of the %s set to %s\n", steps,
           spherical ? "spherical" : "linear", from, to, cli_set_name(set), out_path);
    rc = CUVAE_EXIT_OK;
    goto out;
fail:
    rc = cli_runtime_error(cmd, &st);
out:
    free(mu);
    free(z);
    free(x);
    cli_model_close(&m);
    return rc;
}
