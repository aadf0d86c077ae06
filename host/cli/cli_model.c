/* What the subcommands that read a checkpoint share (eval_cmd.c, latent_cmd.c): the options
 * --device, --data-dir, --test-images, --test-labels; reading the checkpoint; the backend built
 * from it with the checkpoint's parameters; and the data set it is run on. */
#include "cli_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"

/* ---- command-line parsing -------------------------------------------------------------------- */

int cli_runtime_error(const char *cmd, const cuvae_status *st)
{
    fprintf(stderr, "cuvae: %s: %s\n", cmd, st->msg);
    return CUVAE_EXIT_RUNTIME;
}

/* Options shared by the commands (the data ones when with_data). Returns 1 when argv[*i]
 * was one of them, 0 when not, and -1 on a bad value, with the usage exit status in *err. */

int cli_common_option(const char *cmd, int argc, char **argv, int *i, int with_data,
                      cli_common_opts *o, int *err)
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

const char CLI_DEVICE_HELP[] =
    "  --device auto|cpu|cuda   backend to run on (default auto: CUDA when a GPU is usable)\n";

const char CLI_DATA_HELP[] =
    "  --data-dir DIR           look for the checkpoint's data files (same file or folder\n"
    "                           names) in DIR\n"
    "  --test-images PATH       test images (IDX, .npy, .npz or a folder of PNG/JPEG images,\n"
    "                           read as the checkpoint's data.image_* keys say) instead of the\n"
    "                           checkpoint's\n"
    "                           (the checkpoint's labels are then not used)\n"
    "  --test-labels PATH       labels whose count must match the images (optional; \"\" = none)\n";

/* ---- shared steps ---------------------------------------------------------------------------- */

/* Reads and validates the checkpoint; the message always names the file. */
int cli_load_checkpoint(const char *path, cuvae_ckpt *ck, cuvae_status *st)
{
    memset(ck, 0, sizeof *ck);
    if (cuvae_ckpt_read(path, ck, st) == 0) {
        cuvae_ckpt_warn_unchecked(ck, path, stderr);
        return 0;
    }
    if (!strstr(st->msg, path)) cuvae_fail_prefix(st, "%s", path);
    return -1;
}

/* A model of float32 data outside [0, 1] records their range (input_range); others are 0..1. */
static int model_is_float(const cuvae_model *m)
{
    return m->x_lo != 0.0f || m->x_hi != 1.0f;
}

/* The data must be on the scale the model was trained on. */
static int check_scale(const cuvae_ckpt *ck, const cuvae_run_data *rd, const char *path,
                       cuvae_status *st)
{
    int model_float = model_is_float(&ck->model);
    if (model_float == rd->is_float) return 0;
    return cuvae_fail(st,
                      "%s: %s, but the checkpoint's model was trained on %s (its "
                      "input_range): the data must be on the training data's scale",
                      path, rd->is_float ? "float32 values outside [0, 1]" : "values in [0, 1]",
                      model_float ? "float32 data outside [0, 1]" : "data in [0, 1]");
}

/* Uploads one of rd's sets as evaluation takes it (never binarized on the device). */
static int upload_set(cuvae_backend *be, cuvae_set set, const cuvae_run_data *rd,
                      const cuvae_dataset *ds, cuvae_status *st)
{
    cuvae_upload_desc u = {.data = ds->pixels,
                           .dtype = rd->is_float ? CUVAE_DATA_F32 : CUVAE_DATA_U8,
                           .n = ds->n,
                           .d = ds->d};
    return cuvae_backend_upload_data(be, set, &u, st);
}

/* Creates the backend for `host` (the data parts; the checkpoint's tensors are added here) and
 * the rows each set will upload, and loads the checkpoint's parameters into it. A checkpoint
 * without optimizer state gets zero m and v: evaluation never reads them. */
static cuvae_backend *backend_for(const cuvae_ckpt *ck, const cuvae_config *cfg,
                                  cuvae_device device, cuvae_mem_plan *host,
                                  const int64_t rows[CUVAE_SET_COUNT], const char *advice,
                                  cuvae_status *st)
{
    int vb = model_is_float(&ck->model) ? (int)sizeof(float) : 1;
    cuvae_mem_add(
        host, "checkpoint",
        cuvae_mem_mul(cuvae_mem_mul(ck->model.n_params, sizeof(float)), ck->state.m ? 3 : 1));
    cuvae_backend_spec spec = {
        .model = &ck->model,
        .config = cfg,
        .host_needs = host,
        .upload_rows = {rows[0], rows[1], rows[2]},
        .upload_value_bytes = vb,
        .advice = advice,
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

cuvae_backend *cli_make_backend(const cuvae_ckpt *ck, const cuvae_config *cfg, cuvae_device device,
                                cuvae_status *st)
{
    /* The memory estimate: the backend's own and the checkpoint's tensors held here. */
    cuvae_mem_plan host = {.n = 0};
    int64_t rows[CUVAE_SET_COUNT] = {0, 0, 0};
    return backend_for(ck, cfg, device, &host, rows, "run on a machine with more memory", st);
}

/* Puts the test-set paths asked for on the command line into the checkpoint's config. With
 * --data-dir the file names of the configured paths are kept and the directory replaced. */
int cli_apply_data_options(cuvae_config *c, const cli_common_opts *o, cuvae_status *st)
{
    /* The training files too, for the commands that read the training or validation set. */
    char *targets[4] = {c->data.test_images, c->data.test_labels, c->data.train_images,
                        c->data.train_labels};
    if (o->data_dir) {
        for (int k = 0; k < 4; k++) {
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

/* ---- a model and one of its data sets -------------------------------------------------------- */

int cli_parse_set(const char *s, cuvae_set *out)
{
    static const char *const names[CUVAE_SET_COUNT] = {"train", "valid", "test"};
    for (int k = 0; k < CUVAE_SET_COUNT; k++)
        if (!strcmp(s, names[k])) {
            *out = (cuvae_set)k;
            return 0;
        }
    return -1;
}

const char *cli_set_name(cuvae_set set)
{
    return set == CUVAE_SET_TRAIN ? "train" : set == CUVAE_SET_VALID ? "valid" : "test";
}

int cli_model_read(cli_model *m, const char *ckpt_path, const cli_common_opts *o, cuvae_set set,
                   cuvae_status *st)
{
    memset(m, 0, sizeof *m);
    m->set = set;
    m->device = o->device;
    if (cli_load_checkpoint(ckpt_path, &m->ck, st)) return -1;
    m->ck_loaded = 1;
    m->cfg = m->ck.config;
    return cli_apply_data_options(&m->cfg, o, st);
}

int cli_model_start(cli_model *m, const char *advice, cuvae_status *st)
{
    cuvae_config *c = &m->cfg;
    cuvae_set set = m->set;
    int need_train = set != CUVAE_SET_TEST;
    const char *file = need_train ? c->data.train_images : c->data.test_images;
    if (need_train && !c->data.train_images[0])
        return cuvae_fail(st, "the checkpoint's config names no training set (data.train_images "
                              "is empty)");
    if (set == CUVAE_SET_VALID && c->data.validation <= 0)
        return cuvae_fail(st, "the checkpoint's run has no validation set (data.validation = %d)",
                          c->data.validation);
    /* Headers first: a bad data file costs no device start-up, and a wrong image size or a set
     * too large for memory costs no payload. */
    cuvae_run_shape sh;
    if (cuvae_run_data_peek(c, need_train, &sh, st)) return -1;
    if (sh.d != m->ck.model.x_dim)
        return cuvae_fail(st, "%s: %dx%d = %d pixels an image, but the checkpoint's model takes %d",
                          file, sh.rows, sh.cols, sh.d, m->ck.model.x_dim);
    if (sh.channels != m->ck.model.x_shape.c)
        return cuvae_fail(st, "%s: %d channels an image, but the checkpoint's model takes %d", file,
                          sh.channels, m->ck.model.x_shape.c);
    cuvae_mem_plan host = {.n = 0};
    cuvae_run_data_memory(&sh, c, &host);
    int64_t rows[CUVAE_SET_COUNT] = {0, 0, 0};
    rows[set] = set == CUVAE_SET_TEST    ? sh.n_test
                : set == CUVAE_SET_VALID ? sh.n_valid
                                         : sh.n_train;
    m->be = backend_for(&m->ck, c, m->device, &host, rows,
                        advice ? advice : "run on a machine with more memory, or use a smaller set",
                        st);
    if (!m->be) return -1;
    if (cuvae_run_data_load(&m->rd, c, need_train, st)) return -1;
    m->rd_loaded = 1;
    m->data = set == CUVAE_SET_TEST    ? &m->rd.test
              : set == CUVAE_SET_VALID ? &m->rd.valid
                                       : &m->rd.train;
    if (m->data->n <= 0)
        return cuvae_fail(st, "%s: the %s set has no examples", file, cli_set_name(set));
    if (check_scale(&m->ck, &m->rd, file, st)) return -1;
    m->originals = cuvae_run_data_originals(&m->rd, m->data);
    if (upload_set(m->be, set, &m->rd, m->data, st))
        return cuvae_fail_prefix(st, "uploading the %s set %s", cli_set_name(set), file);
    return 0;
}

int cli_model_open(cli_model *m, const char *ckpt_path, const cli_common_opts *o, cuvae_set set,
                   cuvae_status *st)
{
    if (cli_model_read(m, ckpt_path, o, set, st)) return -1;
    return cli_model_start(m, NULL, st);
}

void cli_model_close(cli_model *m)
{
    cuvae_backend_destroy(m->be);
    if (m->rd_loaded) cuvae_run_data_free(&m->rd);
    if (m->ck_loaded) cuvae_ckpt_free(&m->ck);
    memset(m, 0, sizeof *m);
}

/* ---- pictures -------------------------------------------------------------------------------- */

const char CLI_GRID_HELP[] =
    "  --scale S                pixels a data pixel takes, each way (nearest neighbour), 1 to 16\n"
    "                           (default: tiles of at least 56 pixels; 28x28 images drawn 2x)\n"
    "  --caption                a line \"epoch E step S\" (the checkpoint's) above the grid\n";

int cli_grid_option(const char *cmd, int argc, char **argv, int *i, cli_grid_opts *g, int *err)
{
    if (!strcmp(argv[*i], "--caption")) {
        g->caption = 1;
        return 1;
    }
    return cuvae_int_option(cmd, argc, argv, i, "--scale", 1, CUVAE_GRID_MAX_SCALE, &g->scale, err);
}

cuvae_grid_style cli_grid_style(const cli_grid_opts *g, const cuvae_ckpt *ck, char *caption,
                                size_t len)
{
    const cuvae_shape *x = &ck->model.x_shape;
    /* The epoch the checkpoint finished, or the one in progress when it was saved mid-epoch. */
    uint64_t epoch = ck->meta.epoch + (ck->meta.epoch_step > 0 ? 1 : 0);
    snprintf(caption, len, "epoch %llu step %llu", (unsigned long long)epoch,
             (unsigned long long)ck->meta.step);
    cuvae_grid_style s = {
        .scale = g->scale > 0 ? g->scale : cuvae_grid_auto_scale(x->h, x->w),
        .caption = g->caption ? caption : NULL,
    };
    return s;
}

/* The checkpoint operand: the first argument that is not an option. */
int cli_operand(const char *cmd, const char *a, const char **ckpt_path, int *err)
{
    if (a[0] == '-' && a[1] != '\0') {
        *err = cuvae_usage_error(cmd, "unknown option '%s'", a);
        return -1;
    }
    if (*ckpt_path) {
        *err = cuvae_usage_error(cmd, "unexpected argument '%s' (one checkpoint only)", a);
        return -1;
    }
    *ckpt_path = a;
    return 0;
}
