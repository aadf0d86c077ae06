/* The training loop (see trainer.h).
 *
 * Position in the run is (epoch, epoch_step, step): the epoch in progress (0-based), the batches of
 * its shuffled order already done, and the steps done in all. A checkpoint stores exactly that, so
 * a resumed run draws the same permutation for that epoch and continues at the same batch with the
 * same step counter, which keys all training noise: N steps straight and N/2 + resume + N/2 give
 * the same parameters bit for bit on the CPU.
 *
 * Each epoch takes floor(N / batch_size) steps; the examples of the shuffled order past the last
 * full batch sit that epoch out (a different set each epoch).
 *
 * The host reads the backend's accumulated metrics only at "sync points": every train.log_every
 * steps, before a checkpoint and at the end of an epoch; training time is measured between them
 * so that evaluation, images and checkpoint writing do not count as training throughput. */
#include "trainer.h"
#include "trainer_internal.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "checkpoint.h"
#include "dataset.h"
#include "evaluate.h"
#include "metrics.h"
#include "model.h"
#include "philox.h"
#include "signals.h"
#include "train_images.h"

#define IMAGE_RECON 32   /* validation examples beside their reconstructions */
#define IMAGE_SAMPLES 64 /* prior samples per grid */
#define IMAGE_PER_ROW 8

float cuvae_schedule_lr(const cuvae_config *c, uint64_t step, uint64_t total_steps)
{
    double lr = c->optim.lr, min_lr = c->optim.min_lr;
    uint64_t warm = c->optim.warmup_steps > 0 ? (uint64_t)c->optim.warmup_steps : 0;
    if (step < warm) return (float)(lr * (double)(step + 1) / (double)warm);
    if (c->optim.schedule == CUVAE_SCHED_CONSTANT) return (float)lr;
    double span = total_steps > warm ? (double)(total_steps - warm) : 1.0;
    double progress = (double)(step - warm) / span;
    if (progress > 1.0) progress = 1.0;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(3.14159265358979323846 * progress)));
}

float cuvae_schedule_beta(const cuvae_config *c, uint64_t step)
{
    if (c->train.kl_warmup_steps <= 0) return c->train.beta;
    double ramp = (double)(step + 1) / (double)c->train.kl_warmup_steps;
    if (ramp > 1.0) ramp = 1.0;
    return (float)((double)c->train.beta * ramp);
}

static void accum_add(cuvae_trainer_accum *a, const cuvae_metrics *m, double seconds)
{
    a->loss += m->loss;
    a->rec += m->rec;
    a->kl += m->kl;
    a->grad_norm_sum += m->grad_norm_sum;
    a->examples += m->examples;
    a->steps += m->steps;
    a->skipped += m->skipped;
    a->seconds += seconds;
    if (m->first_nonfinite_step >= 0 &&
        (a->first_nonfinite < 0 || m->first_nonfinite_step < a->first_nonfinite))
        a->first_nonfinite = m->first_nonfinite_step;
}

void cuvae_trainer_accum_reset(cuvae_trainer_accum *a)
{
    memset(a, 0, sizeof *a);
    a->first_nonfinite = -1;
}

static double per_example(double sum, int64_t examples)
{
    return examples > 0 ? sum / (double)examples : NAN;
}

static double wall(const cuvae_trainer *t)
{
    return cuvae_now() - t->t_start;
}

/* Reads and resets the backend's metrics. Returns 1 when a non-finite step was met and the
 * config says stop, 0 otherwise, -1 on error. */
static int sync_point(cuvae_trainer *t, cuvae_status *st)
{
    cuvae_metrics m;
    if (cuvae_backend_read_metrics(t->be, &m, 1, st)) return -1;
    double now = cuvae_now();
    double dt = now - t->mark;
    t->mark = now;
    accum_add(&t->interval, &m, dt);
    accum_add(&t->epoch_acc, &m, dt);
    if (t->interval.skipped > 0 && t->cfg->train.on_nonfinite == CUVAE_NONFINITE_STOP) return 1;
    return 0;
}

/* On a terminal, about twice a second: the loss and throughput since the last log line, read from
 * the backend without resetting its sums (a look, not a sync point: nothing is logged), so that
 * the bar's loss moves between the train.log_every metric reads. */
static int peek_progress(cuvae_trainer *t, cuvae_status *st)
{
    if (!t->prog.tty) return 0;
    double now = cuvae_now();
    if (now < t->next_peek) return 0;
    t->next_peek = now + 0.5;
    cuvae_metrics m;
    if (cuvae_backend_read_metrics(t->be, &m, 0, st)) return -1;
    int64_t examples = t->interval.examples + m.examples;
    double seconds = t->interval.seconds + (now - t->mark);
    if (examples > 0)
        cuvae_progress_set(&t->prog, (t->interval.loss + m.loss) / (double)examples,
                           seconds > 0 ? (double)examples / seconds : NAN);
    return 0;
}

/* Writes the step line of the interval since the last one, and the skip warning. */
static int log_interval(cuvae_trainer *t, cuvae_status *st)
{
    cuvae_trainer_accum *a = &t->interval;
    if (a->steps == 0 && a->skipped == 0) return 0;
    double samples_per_s = a->seconds > 0 ? (double)a->examples / a->seconds : NAN;
    double loss = per_example(a->loss, a->examples);
    /* The epoch of the interval's last step: at an epoch's end the position has already moved to
     * the next epoch (epoch_step 0), but the step belonged to the one before. */
    uint64_t epoch = t->epoch_step == 0 && t->epoch > 0 ? t->epoch : t->epoch + 1;
    cuvae_json_line j;
    cuvae_json_begin(&j, "step");
    cuvae_json_int(&j, "step", (int64_t)t->step);
    cuvae_json_int(&j, "epoch", (int64_t)epoch);
    cuvae_json_num(&j, "loss", loss);
    cuvae_json_num(&j, "rec", per_example(a->rec, a->examples));
    cuvae_json_num(&j, "kl", per_example(a->kl, a->examples));
    cuvae_json_num(&j, "lr", t->last_lr);
    cuvae_json_num(&j, "beta", t->last_beta);
    cuvae_json_num(&j, "grad_norm", a->steps > 0 ? a->grad_norm_sum / (double)a->steps : NAN);
    cuvae_json_num(&j, "samples_per_s", samples_per_s);
    cuvae_json_int(&j, "skipped", a->skipped);
    cuvae_json_num(&j, "wall_s", wall(t));
    if (cuvae_metrics_append(&t->mlog, &j, st)) return -1;
    cuvae_progress_set(&t->prog, loss, samples_per_s);
    if (a->skipped > 0 && t->cfg->train.on_nonfinite == CUVAE_NONFINITE_SKIP)
        cuvae_progress_message(&t->prog,
                               "cuvae: warning: skipped %lld non-finite steps (first at step %lld)",
                               (long long)a->skipped, (long long)a->first_nonfinite + 1);
    cuvae_trainer_accum_reset(a);
    return 0;
}

static int log_stop(cuvae_trainer *t, const char *reason, cuvae_status *st)
{
    cuvae_json_line j;
    cuvae_json_begin(&j, "stop");
    cuvae_json_str(&j, "reason", reason);
    cuvae_json_int(&j, "step", (int64_t)t->step);
    cuvae_json_str(&j, "checkpoint", t->res->checkpoint[0] ? t->res->checkpoint : NULL);
    cuvae_json_num(&j, "wall_s", wall(t));
    return cuvae_metrics_append(&t->mlog, &j, st);
}

/* The non-finite stop: log what happened, save nothing (the newest checkpoint stays the last good
 * state). */
static int stop_nonfinite(cuvae_trainer *t, cuvae_status *st)
{
    t->res->nonfinite_step = (uint64_t)t->interval.first_nonfinite + 1;
    if (log_interval(t, st) || log_stop(t, "nonfinite", st)) return -1;
    cuvae_progress_clear(&t->prog);
    t->res->outcome = CUVAE_TRAIN_NONFINITE;
    return 1;
}

/* The metadata of every file the run writes (step files, best, model.safetensors): the position
 * of the run now and the state last read from the backend (t->state). */
static cuvae_ckpt_meta run_meta(const cuvae_trainer *t)
{
    return (cuvae_ckpt_meta){
        .step = t->step,
        .epoch = t->epoch,
        .epoch_step = t->epoch_step,
        .seed = t->cfg->train.seed,
        .data_seed = t->cfg->train.seed,
        .adam_t = t->state.adam_t,
        .rng_counter = t->step,
        .best_valid = t->best_valid,
    };
}

/* Writes a checkpoint of the current position. Returns 1 when the sync point before it found a
 * non-finite step to stop at (nothing is written then), 0 when saved, -1 on error. */
static int save_checkpoint(cuvae_trainer *t, int is_best, cuvae_status *st)
{
    int r = sync_point(t, st);
    if (r) return r > 0 ? stop_nonfinite(t, st) : -1;
    if (cuvae_backend_get_state(t->be, &t->state, st)) return -1;
    cuvae_ckpt_meta meta = run_meta(t);
    /* best.safetensors goes first when is_best: the rule and its reason live in save_run. */
    if (cuvae_ckpt_save_run(t->res->run_dir, t->cfg->output.keep_last, t->cfg, &t->model, &meta,
                            &t->state, is_best, t->res->checkpoint, sizeof t->res->checkpoint, st))
        return -1;
    t->saved_any = 1;
    t->saved_step = t->step;
    /* The run's wall time at this checkpoint, which a resume from it continues (the file holds no
     * time, so that two runs' checkpoints stay byte-identical). */
    cuvae_json_line j;
    cuvae_json_begin(&j, "checkpoint");
    cuvae_json_int(&j, "step", (int64_t)t->step);
    cuvae_json_str(&j, "path", t->res->checkpoint);
    cuvae_json_num(&j, "wall_s", wall(t));
    if (cuvae_metrics_append(&t->mlog, &j, st)) return -1;
    t->mark = cuvae_now();
    return 0;
}

/* Honours a stop request: a checkpoint of the current position (unless the newest one is already
 * at this step), then the INTERRUPTED outcome. */
static int interrupt(cuvae_trainer *t, int sig, cuvae_status *st)
{
    if (!t->saved_any || t->saved_step != t->step) {
        int r = save_checkpoint(t, 0, st);
        if (r) return r;
    } else {
        int r = sync_point(t, st);
        if (r) return r > 0 ? stop_nonfinite(t, st) : -1;
    }
    if (log_interval(t, st)) return -1;
    if (log_stop(t, sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGTERM", st)) return -1;
    cuvae_progress_clear(&t->prog);
    t->res->outcome = CUVAE_TRAIN_INTERRUPTED;
    t->res->signal = sig;
    return 1;
}

static int write_images(cuvae_trainer *t, int epoch, cuvae_status *st)
{
    char path[CUVAE_PATH_LEN + 64];
    const cuvae_dataset *ds = t->data.valid.n > 0 ? &t->data.valid : &t->data.test;
    cuvae_set set = t->data.valid.n > 0 ? CUVAE_SET_VALID : CUVAE_SET_TEST;
    int batch = t->cfg->eval.batch_size;
    char caption[64];
    snprintf(caption, sizeof caption, "epoch %d step %llu", epoch + 1, (unsigned long long)t->step);
    cuvae_grid_style style = {
        .scale = t->cfg->output.image_scale > 0 ? t->cfg->output.image_scale
                                                : cuvae_grid_auto_scale(ds->rows, ds->cols),
        .caption = t->cfg->output.image_caption ? caption : NULL,
    };
    if (ds->n > 0) {
        snprintf(path, sizeof path, "%s/images/recon-epoch-%03d.png", t->res->run_dir, epoch + 1);
        if (cuvae_write_recon_grid(t->be, &t->model, ds, cuvae_run_data_originals(&t->data, ds),
                                   set, IMAGE_RECON, IMAGE_PER_ROW, batch, &style, path, st))
            return -1;
        cuvae_tb_image_file(&t->tb, (int64_t)t->step, "images/recon", path);
    }
    snprintf(path, sizeof path, "%s/images/samples-epoch-%03d.png", t->res->run_dir, epoch + 1);
    if (cuvae_write_sample_grid(t->be, &t->model, t->cfg->train.seed, (uint64_t)epoch,
                                IMAGE_SAMPLES, IMAGE_PER_ROW, batch, &style, path, st))
        return -1;
    cuvae_tb_image_file(&t->tb, (int64_t)t->step, "images/samples", path);
    return 0;
}

/* Validation, the epoch line, images and the epoch's checkpoint. Advances the position to the
 * start of the next epoch. Returns 1 at a non-finite stop. */
static int end_epoch(cuvae_trainer *t, double epoch_start, cuvae_status *st)
{
    int r = sync_point(t, st);
    if (r) return r > 0 ? stop_nonfinite(t, st) : -1;
    int epoch = (int)t->epoch;
    cuvae_epoch_summary e = {
        .epoch = epoch,
        .step = (int64_t)t->step,
        .loss = per_example(t->epoch_acc.loss, t->epoch_acc.examples),
        .rec = per_example(t->epoch_acc.rec, t->epoch_acc.examples),
        .kl = per_example(t->epoch_acc.kl, t->epoch_acc.examples),
        .has_valid = t->data.valid.n > 0,
        .valid_neg_elbo = NAN,
        .samples_per_s =
            t->epoch_acc.seconds > 0 ? (double)t->epoch_acc.examples / t->epoch_acc.seconds : NAN,
    };
    cuvae_recon_error recon = {.mse = NAN, .psnr = NAN};
    if (e.has_valid) {
        /* The same pass gives the reconstruction error on the grey originals (evaluate.h). */
        cuvae_eval_result v;
        if (cuvae_evaluate_set(t->be, &t->model, CUVAE_SET_VALID, t->data.valid.n, 1, 0,
                               t->cfg->eval.batch_size,
                               cuvae_run_data_originals(&t->data, &t->data.valid), NULL, &v, st))
            return cuvae_fail_prefix(st, "validation after epoch %d", epoch + 1);
        e.valid_neg_elbo = v.neg_elbo;
        recon.mse = v.recon_mse;
        recon.psnr = v.recon_psnr;
    }
    if (t->cfg->output.images && write_images(t, epoch, st)) return -1;
    e.epoch_s = cuvae_now() - epoch_start;

    cuvae_json_line j;
    cuvae_json_begin(&j, "epoch");
    cuvae_json_int(&j, "epoch", epoch + 1);
    cuvae_json_int(&j, "step", e.step);
    /* The training figures cover the steps first_step..step: the whole epoch, or after a resume
     * inside it, the part this process ran. */
    cuvae_json_int(&j, "first_step", (int64_t)t->epoch_first_step + 1);
    cuvae_json_int(&j, "steps", e.step - (int64_t)t->epoch_first_step);
    cuvae_json_num(&j, "loss", e.loss);
    cuvae_json_num(&j, "rec", e.rec);
    cuvae_json_num(&j, "kl", e.kl);
    if (e.has_valid)
        cuvae_json_num(&j, "valid_neg_elbo", e.valid_neg_elbo);
    else
        cuvae_json_str(&j, "valid_neg_elbo", NULL);
    /* On the validation set's grey originals (evaluate.h); null without a validation set. */
    cuvae_json_num(&j, "recon_mse", recon.mse);
    cuvae_json_num(&j, "recon_psnr", recon.psnr);
    cuvae_json_num(&j, "samples_per_s", e.samples_per_s);
    cuvae_json_num(&j, "epoch_s", e.epoch_s);
    cuvae_json_num(&j, "wall_s", wall(t));
    if (cuvae_metrics_append(&t->mlog, &j, st)) return -1;
    cuvae_progress_epoch(&t->prog, &e);

    /* Validation, images and logging are not training time. */
    t->mark = cuvae_now();
    int improved = e.has_valid && isfinite(e.valid_neg_elbo) && e.valid_neg_elbo < t->best_valid;
    if (improved) t->best_valid = e.valid_neg_elbo;
    t->epoch++;
    t->epoch_step = 0;
    t->epoch_first_step = t->step;
    cuvae_trainer_accum_reset(&t->epoch_acc);
    int every = t->cfg->output.checkpoint_every_epochs;
    /* best.safetensors follows every improvement, whatever the periodic cadence. */
    if (improved || (every > 0 && t->epoch % (uint64_t)every == 0)) {
        r = save_checkpoint(t, improved, st);
        if (r) return r;
    }
    t->mark = cuvae_now();
    return 0;
}

/* The epochs from the current position. Returns 0 when all are done, 1 at a stop (outcome set),
 * -1 on error. */
static int run_epochs(cuvae_trainer *t, cuvae_status *st)
{
    const cuvae_config *c = t->cfg;
    int bs = c->train.batch_size;
    uint64_t every_steps =
        c->output.checkpoint_every_steps > 0 ? (uint64_t)c->output.checkpoint_every_steps : 0;
    uint64_t log_every = c->train.log_every > 0 ? (uint64_t)c->train.log_every : 1;
    t->mark = cuvae_now();
    while (t->epoch < (uint64_t)c->train.epochs) {
        double epoch_start = cuvae_now();
        cuvae_permutation(c->train.seed, CUVAE_STREAM_SHUFFLE, t->epoch, t->perm, t->n_train);
        /* Training example i is row train_rows[i] of the uploaded set when the split left the
         * examples in place. */
        if (t->data.train_rows)
            for (int64_t i = 0; i < t->n_train; i++) t->perm[i] = t->data.train_rows[t->perm[i]];
        while (t->epoch_step < (uint64_t)t->steps_per_epoch) {
            cuvae_step s = {
                .step = t->step,
                .lr = cuvae_schedule_lr(c, t->step, (uint64_t)t->total_steps),
                .beta = cuvae_schedule_beta(c, t->step),
                .idx = t->perm + t->epoch_step * (uint64_t)bs,
                .batch = bs,
            };
            /* The next batch of this epoch, for a backend that streams its rows (the next
             * epoch's permutation is not drawn yet: its first step copies its own rows). */
            if (t->epoch_step + 1 < (uint64_t)t->steps_per_epoch) {
                s.next_idx = s.idx + bs;
                s.next_batch = bs;
            }
            if (cuvae_backend_train_step(t->be, &s, st))
                return cuvae_fail_prefix(st, "training step %llu", (unsigned long long)t->step + 1);
            t->last_lr = s.lr;
            t->last_beta = s.beta;
            t->step++;
            t->epoch_step++;
            if (t->step % log_every == 0) {
                int r = sync_point(t, st);
                if (r) return r > 0 ? stop_nonfinite(t, st) : -1;
                if (log_interval(t, st)) return -1;
            }
            if (peek_progress(t, st)) return -1;
            cuvae_progress_step(&t->prog, (int)t->epoch, (int64_t)t->step);
            if (every_steps && t->step % every_steps == 0) {
                int r = save_checkpoint(t, 0, st);
                if (r) return r;
            }
            int sig = cuvae_signals_pending();
            if (sig) return interrupt(t, sig, st);
        }
        int r = end_epoch(t, epoch_start, st);
        if (r) return r;
        int sig = cuvae_signals_pending();
        if (sig) return interrupt(t, sig, st);
    }
    return 0;
}

/* Final checkpoint, model.safetensors, test figures and the summary. */
static int finish(cuvae_trainer *t, cuvae_status *st)
{
    if (!t->saved_any || t->saved_step != t->step) {
        int r = save_checkpoint(t, 0, st);
        if (r) return r;
    } else {
        int r = sync_point(t, st);
        if (r) return r > 0 ? stop_nonfinite(t, st) : -1;
    }
    if (log_interval(t, st)) return -1;

    char model_path[CUVAE_PATH_LEN + 64];
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", t->res->run_dir);
    if (cuvae_backend_get_state(t->be, &t->state, st)) return -1;
    cuvae_train_state model_only = {.params = t->state.params, .adam_t = t->state.adam_t};
    cuvae_ckpt_meta meta = run_meta(t);
    if (cuvae_ckpt_write(model_path, t->cfg, &t->model, &meta, &model_only, st)) return -1;

    /* A stop request that came during the final checkpoint or model write is honoured before the
     * test evaluation, one that comes during it right after: the run ends as interrupted (both
     * files are written), not as finished. */
    int sig = cuvae_signals_pending();
    if (sig) return interrupt(t, sig, st);
    double test = NAN;
    if (t->data.test.n > 0) {
        cuvae_eval_result r;
        if (cuvae_evaluate_set(t->be, &t->model, CUVAE_SET_TEST, t->data.test.n, 1, 0,
                               t->cfg->eval.batch_size, NULL, t->log, &r, st))
            return cuvae_fail_prefix(st, "test-set evaluation");
        test = r.neg_elbo;
        sig = cuvae_signals_pending();
        if (sig) return interrupt(t, sig, st);
    }
    double total = wall(t);
    cuvae_json_line j;
    cuvae_json_begin(&j, "final");
    cuvae_json_int(&j, "step", (int64_t)t->step);
    cuvae_json_int(&j, "epoch", (int64_t)t->epoch);
    if (t->data.test.n > 0)
        cuvae_json_num(&j, "test_neg_elbo", test);
    else
        cuvae_json_str(&j, "test_neg_elbo", NULL);
    cuvae_json_num(&j, "best_valid_neg_elbo", t->best_valid);
    cuvae_json_str(&j, "checkpoint", t->res->checkpoint);
    cuvae_json_str(&j, "model", model_path);
    cuvae_json_num(&j, "wall_s", total);
    if (cuvae_metrics_append(&t->mlog, &j, st)) return -1;
    cuvae_progress_clear(&t->prog);

    FILE *out = t->opt->out;
    char dur[32];
    cuvae_format_duration(dur, sizeof dur, total);
    if (t->data.test.n > 0)
        fprintf(out, "finished: %llu steps in %s (%.1f s); test negative ELBO %.4f nats (K = 1)\n",
                (unsigned long long)t->step, dur, total, test);
    else
        fprintf(out, "finished: %llu steps in %s (%.1f s); no test set\n",
                (unsigned long long)t->step, dur, total);
    fprintf(out, "run directory: %s\n", t->res->run_dir);
    fprintf(out, "  model:      %s\n", model_path);
    fprintf(out, "  checkpoint: %s\n", t->res->checkpoint);
    fprintf(out, "  metrics:    %s\n", t->mlog.path);
    fprintf(out, "  config:     %s/config.ini\n", t->res->run_dir);
    if (t->cfg->output.images) fprintf(out, "  images:     %s/images/\n", t->res->run_dir);
    fflush(out);
    t->res->outcome = CUVAE_TRAIN_FINISHED;
    return 0;
}

int cuvae_train(const cuvae_train_options *opt, cuvae_train_result *res, cuvae_status *st)
{
    cuvae_trainer t;
    memset(&t, 0, sizeof t);
    memset(res, 0, sizeof *res);
    res->outcome = CUVAE_TRAIN_FAILED;
    t.opt = opt;
    t.cfg = opt->config;
    t.res = res;
    t.log = opt->log;
    t.best_valid = INFINITY;
    t.t_start = cuvae_now();
    t.tb.fd = -1;
    cuvae_trainer_accum_reset(&t.interval);
    cuvae_trainer_accum_reset(&t.epoch_acc);
    snprintf(res->run_dir, sizeof res->run_dir, "%s", t.cfg->output.dir);
    cuvae_progress_init(&t.prog, opt->log, 0, 1, 1, 0);

    int rc = cuvae_trainer_setup(&t, st);
    if (rc == 0) {
        rc = cuvae_signals_install(st);
        if (rc == 0) {
            rc = run_epochs(&t, st);
            if (rc == 0) rc = finish(&t, st);
            cuvae_signals_restore();
        }
    }
    if (rc < 0) cuvae_progress_clear(&t.prog);
    res->step = t.step;
    cuvae_trainer_cleanup(&t);
    if (rc < 0) {
        res->outcome = CUVAE_TRAIN_FAILED;
        return -1;
    }
    return 0;
}
