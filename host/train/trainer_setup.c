/* Preparing a training run and tearing it down (see trainer_internal.h): everything before the
 * first step, including the resume checks, which run before the data is loaded so that a
 * refused resume fails fast. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file_write.h"
#include "rundir.h"
#include "trainer_internal.h"

/* Marks the failure as the user's request (exit status 2), not a runtime error. */
static int usage_fail(cuvae_trainer *t)
{
    t->res->usage_error = 1;
    return -1;
}

/* Reads the checkpoint a resume asks for and checks the config change; before the data is
 * loaded, so a refused resume fails fast. */
static int open_resume(cuvae_trainer *t, cuvae_status *st)
{
    const char *want = t->opt->resume;
    const char *dir = t->res->run_dir;
    if (!want) {
        /* A fresh run would prune the earlier run's checkpoints and interleave its steps. */
        if (cuvae_run_has_checkpoints(dir)) {
            cuvae_fail(st,
                       "%s/checkpoints already holds checkpoints of an earlier run; continue it "
                       "with --resume auto, or set output.dir to another directory",
                       dir);
            return usage_fail(t);
        }
        return 0;
    }
    if (strcmp(want, "auto") == 0) {
        int r = cuvae_ckpt_find_latest(dir, t->log, &t->resume_ck, t->resume_path,
                                       sizeof t->resume_path, st);
        if (r < 0) return cuvae_fail_prefix(st, "--resume auto");
        if (r == 0) {
            fprintf(t->opt->out, "--resume auto: no checkpoint in %s/checkpoints; starting fresh\n",
                    dir);
            return 0;
        }
    } else {
        if (cuvae_ckpt_read(want, &t->resume_ck, st)) return cuvae_fail_prefix(st, "--resume");
        snprintf(t->resume_path, sizeof t->resume_path, "%s", want);
    }
    t->resuming = 1;
    const cuvae_ckpt *ck = &t->resume_ck;
    cuvae_ckpt_warn_unchecked(ck, t->resume_path, t->log);
    if (!ck->state.m || !ck->state.v) {
        cuvae_fail(st,
                   "--resume %s: the file holds no optimizer state (a model-only file such as "
                   "model.safetensors); resume from a file in %s/checkpoints",
                   t->resume_path, dir);
        return usage_fail(t);
    }
    char report[4096];
    report[0] = '\0';
    if (cuvae_config_resume_diff(&ck->config, t->cfg, report, sizeof report, st)) {
        cuvae_fail_prefix(st, "%s", t->resume_path);
        return usage_fail(t);
    }
    if (report[0]) fprintf(t->opt->out, "resuming with config changes: %s\n", report);
    return 0;
}

/* Puts the resumed state into the backend and the position into the loop. */
static int apply_resume(cuvae_trainer *t, cuvae_status *st)
{
    const cuvae_ckpt *ck = &t->resume_ck;
    if (ck->model.x_dim != t->model.x_dim || ck->model.n_params != t->model.n_params) {
        cuvae_fail(st,
                   "--resume %s: the checkpoint's model (%d values per example, %zu parameters) "
                   "does not fit this run's (%d values per example, %zu parameters)",
                   t->resume_path, ck->model.x_dim, ck->model.n_params, t->model.x_dim,
                   t->model.n_params);
        return usage_fail(t);
    }
    if (cuvae_backend_set_state(t->be, &ck->state, st))
        return cuvae_fail_prefix(st, "--resume %s", t->resume_path);
    /* Same batches per epoch as when it was saved: its epoch_step must lie inside an epoch. */
    const cuvae_config *sc = &ck->config, *nc = t->cfg;
    if (sc->train.batch_size == nc->train.batch_size &&
        sc->data.limit_train == nc->data.limit_train &&
        sc->data.validation == nc->data.validation &&
        strcmp(sc->data.train_images, nc->data.train_images) == 0 &&
        ck->meta.epoch_step > (uint64_t)t->steps_per_epoch) {
        cuvae_fail(
            st, "--resume %s: metadata: epoch_step %llu exceeds the %lld batches of an epoch",
            t->resume_path, (unsigned long long)ck->meta.epoch_step, (long long)t->steps_per_epoch);
        return usage_fail(t);
    }
    t->step = ck->meta.step;
    t->epoch = ck->meta.epoch;
    t->epoch_step = ck->meta.epoch_step;
    /* A changed batch size (allowed, not exact) keeps the position in examples. */
    int old_bs = ck->config.train.batch_size, bs = t->cfg->train.batch_size;
    if (old_bs != bs && old_bs > 0) t->epoch_step = t->epoch_step * (uint64_t)old_bs / (uint64_t)bs;
    if (t->epoch_step > (uint64_t)t->steps_per_epoch) t->epoch_step = (uint64_t)t->steps_per_epoch;
    t->best_valid = ck->meta.best_valid;
    t->saved_any = 1;
    t->saved_step = t->step;
    snprintf(t->res->checkpoint, sizeof t->res->checkpoint, "%s", t->resume_path);
    fprintf(t->opt->out, "resuming from %s at step %llu (epoch %llu, batch %llu of %lld)\n",
            t->resume_path, (unsigned long long)t->step, (unsigned long long)t->epoch + 1,
            (unsigned long long)t->epoch_step, (long long)t->steps_per_epoch);
    return 0;
}

static int upload_sets(cuvae_trainer *t, cuvae_status *st)
{
    const struct {
        cuvae_set set;
        const cuvae_dataset *ds;
        int dynamic;
        const char *name;
    } sets[] = {
        {CUVAE_SET_TRAIN, &t->data.train, t->data.train_dynamic, "training"},
        {CUVAE_SET_VALID, &t->data.valid, 0, "validation"},
        {CUVAE_SET_TEST, &t->data.test, 0, "test"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        if (sets[i].ds->n <= 0) continue;
        /* The training set may be streamed (borrowed): t->data outlives the backend. */
        cuvae_upload_desc u = {.data = sets[i].ds->pixels,
                               .dtype = t->data.is_float ? CUVAE_DATA_F32 : CUVAE_DATA_U8,
                               .n = sets[i].ds->n,
                               .d = sets[i].ds->d,
                               .dynamic = sets[i].dynamic};
        if (cuvae_backend_upload_data(t->be, sets[i].set, &u, st))
            return cuvae_fail_prefix(st, "uploading the %s set", sets[i].name);
    }
    if (t->data.is_float)
        fprintf(t->opt->out,
                "data: float32 values from %g to %g, kept as they are (images map that range to "
                "black..white)\n",
                (double)t->data.lo, (double)t->data.hi);
    fprintf(t->opt->out, "data: the training set is %s (data.stream = %s)\n",
            cuvae_backend_streams(t->be, CUVAE_SET_TRAIN)
                ? "streamed: each batch's rows are copied from the data file as it trains"
                : "held by the backend whole",
            t->cfg->data.stream == CUVAE_STREAM_ON    ? "on"
            : t->cfg->data.stream == CUVAE_STREAM_OFF ? "off"
                                                      : "auto");
    return 0;
}

/* A failed events write: a warning, and the run goes on (tb_events.h). */
static void tb_warn(void *ctx, const char *message)
{
    cuvae_trainer *t = ctx;
    cuvae_progress_message(&t->prog, "cuvae: warning: %s", message);
}

static int write_config_ini(cuvae_trainer *t, cuvae_status *st)
{
    char *ini = cuvae_config_to_ini(t->cfg);
    if (!ini) return cuvae_fail(st, "out of memory printing the configuration");
    char path[CUVAE_PATH_LEN + 64];
    snprintf(path, sizeof path, "%s/config.ini", t->res->run_dir);
    int rc = cuvae_write_file(path, ini, strlen(ini), st);
    free(ini);
    return rc;
}

int cuvae_trainer_setup(cuvae_trainer *t, cuvae_status *st)
{
    const cuvae_config *c = t->cfg;
    const char *dir = t->res->run_dir;
    char path[CUVAE_PATH_LEN + 64];
    if (cuvae_mkdirs(dir, st)) return -1;
    /* Before anything in the directory is read or written: a second trainer on it would mix
     * checkpoints, config.ini and metrics. */
    if (cuvae_run_lock(dir, &t->lock_fd, st)) return -1;
    t->locked = 1;
    snprintf(path, sizeof path, "%s/checkpoints", dir);
    if (cuvae_mkdirs(path, st)) return -1;
    if (c->output.images) {
        snprintf(path, sizeof path, "%s/images", dir);
        if (cuvae_mkdirs(path, st)) return -1;
    }

    char *ini = cuvae_config_to_ini(c);
    if (!ini) return cuvae_fail(st, "out of memory printing the configuration");
    fprintf(t->opt->out, "# resolved configuration (saved as %s/config.ini)\n%s\n", dir, ini);
    fflush(t->opt->out);
    free(ini);

    if (open_resume(t, st)) return -1;

    /* The headers first: the model and the memory estimate are checked before any payload is
     * read or anything sized from the data is allocated. */
    cuvae_run_shape shape;
    if (cuvae_run_data_peek(c, 1, &shape, st)) return -1;
    if (cuvae_model_layout_shape(&t->model, c,
                                 (cuvae_shape){shape.channels, shape.rows, shape.cols}, st))
        return usage_fail(t);
    t->n_train = shape.n_train;
    t->steps_per_epoch = t->n_train / c->train.batch_size;
    if (t->steps_per_epoch <= 0) {
        cuvae_fail(st, "train.batch_size: %d exceeds the %lld training examples",
                   c->train.batch_size, (long long)t->n_train);
        return usage_fail(t);
    }
    t->total_steps = (int64_t)c->train.epochs * t->steps_per_epoch;
    size_t n = t->model.n_params;
    cuvae_mem_plan host = {.n = 0};
    shape.in_place = 1;
    cuvae_run_data_memory(&shape, c, &host);
    uint64_t state_bytes = cuvae_mem_mul(cuvae_mem_mul(n, sizeof(float)), 3);
    cuvae_mem_add(&host, "state copies", state_bytes);
    /* Writing a checkpoint holds its data section and the whole file, then reads it back. */
    cuvae_mem_add(&host, "checkpoint buffers", cuvae_mem_mul(state_bytes, 2));
    if (t->resuming) cuvae_mem_add(&host, "resumed checkpoint", state_bytes);
    cuvae_backend_spec spec = {
        .model = &t->model,
        .config = c,
        .host_needs = &host,
        /* The split leaves the training examples in the kept file unless static binarization
         * copies them (run_data.c). */
        .upload_rows = {c->data.binarize == CUVAE_BIN_STATIC ? shape.n_train : shape.n_kept,
                        shape.n_valid, shape.n_test},
        .upload_value_bytes = shape.value_bytes,
        .stream = c->data.stream,
    };
    t->be = cuvae_backend_create(c->train.device, &spec, t->opt->out, st);
    if (!t->be) return -1;

    if (cuvae_run_data_load_in_place(&t->data, c, 1, st)) return -1;
    t->data_loaded = 1;
    /* The checkpoint records the data's range, for the images of sample and reconstruct. */
    t->model.x_lo = t->data.lo;
    t->model.x_hi = t->data.hi;
    if (t->data.n_train != shape.n_train || t->data.test.n != shape.n_test ||
        t->data.train.d != shape.d)
        return cuvae_fail(st, "%s or %s changed while being read", c->data.train_images,
                          c->data.test_images);
    fprintf(t->opt->out, "data: %lld training, %lld validation, %lld test examples of %dx%d%s\n",
            (long long)t->data.n_train, (long long)t->data.valid.n, (long long)t->data.test.n,
            t->data.train.rows, t->data.train.cols, t->data.train.channels == 3 ? " RGB" : "");
    if (cuvae_run_data_write_classes(&t->data, c, dir, t->opt->out, st)) return -1;
    t->perm = cuvae_malloc((size_t)t->n_train * sizeof *t->perm, "epoch permutation", st);
    t->state.params = cuvae_malloc(n * sizeof(float), "parameter copy", st);
    t->state.m = cuvae_malloc(n * sizeof(float), "optimizer state copy", st);
    t->state.v = cuvae_malloc(n * sizeof(float), "optimizer state copy", st);
    if (!t->perm || !t->state.params || !t->state.m || !t->state.v) return -1;

    char desc[1024];
    desc[0] = '\0';
    cuvae_backend_describe(t->be, desc, sizeof desc);
    fprintf(t->opt->out, "model: %zu parameters; backend %s%s%s\n", n, cuvae_backend_name(t->be),
            desc[0] ? ": " : "", desc);
    if (upload_sets(t, st)) return -1;
    if (t->resuming && apply_resume(t, st)) return -1;
    if (write_config_ini(t, st)) return -1;

    t->epoch_first_step = t->step;
    /* wall_s goes on from where the run stood at the checkpoint. */
    if (t->resuming) t->t_start -= cuvae_metrics_wall_at(dir, t->step);
    if (cuvae_metrics_open(&t->mlog, dir, st)) return -1;
    if (c->output.tensorboard) {
        if (cuvae_tb_open(&t->tb, dir, t->step, tb_warn, t, st)) return -1;
        t->mlog.tb = &t->tb;
    }
    cuvae_json_line j;
    cuvae_json_begin(&j, "start");
    cuvae_json_int(&j, "step", (int64_t)t->step);
    cuvae_json_int(&j, "epoch", (int64_t)t->epoch + 1);
    cuvae_json_int(&j, "epochs", c->train.epochs);
    cuvae_json_int(&j, "steps_per_epoch", t->steps_per_epoch);
    cuvae_json_int(&j, "batch_size", c->train.batch_size);
    cuvae_json_int(&j, "n_params", (int64_t)n);
    cuvae_json_str(&j, "device", cuvae_backend_name(t->be));
    cuvae_json_str(&j, "resumed_from", t->resuming ? t->resume_path : NULL);
    cuvae_json_num(&j, "wall_s", cuvae_now() - t->t_start);
    if (cuvae_metrics_append(&t->mlog, &j, st)) return -1;

    fprintf(t->opt->out,
            "training %d epochs x %lld steps of %d examples (%lld left out per epoch), "
            "from step %llu\n",
            c->train.epochs, (long long)t->steps_per_epoch, c->train.batch_size,
            (long long)(t->n_train - t->steps_per_epoch * c->train.batch_size),
            (unsigned long long)t->step);
    fflush(t->opt->out);
    cuvae_progress_init(&t->prog, t->log, t->opt->progress_tty, c->train.epochs, t->steps_per_epoch,
                        (int64_t)t->step);
    return 0;
}

void cuvae_trainer_cleanup(cuvae_trainer *t)
{
    cuvae_backend_destroy(t->be);
    if (t->data_loaded) cuvae_run_data_free(&t->data);
    if (t->resuming) cuvae_ckpt_free(&t->resume_ck);
    cuvae_metrics_close(&t->mlog, NULL);
    cuvae_tb_close(&t->tb);
    free(t->perm);
    free(t->state.params);
    free(t->state.m);
    free(t->state.v);
    if (t->locked) close(t->lock_fd); /* releases the lock, last */
}
