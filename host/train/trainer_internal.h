/* Internal to the trainer (trainer.c runs the loop, trainer_setup.c prepares and tears down
 * the run): the state of one training run. */
#ifndef CUVAE_TRAINER_INTERNAL_H
#define CUVAE_TRAINER_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "checkpoint.h"
#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "tb_events.h"
#include "trainer.h"

/* Metric sums over a stretch of steps (an interval between log lines, or an epoch). */
typedef struct {
    double loss, rec, kl, grad_norm_sum, seconds;
    int64_t examples, steps, skipped;
    int64_t first_nonfinite; /* 0-based step index, -1 when none */
} cuvae_trainer_accum;

typedef struct {
    const cuvae_train_options *opt;
    const cuvae_config *cfg;
    cuvae_train_result *res;
    FILE *log;
    cuvae_model model;
    cuvae_run_data data;
    int data_loaded;
    cuvae_backend *be;
    cuvae_train_state state; /* host copies for checkpoints */
    int32_t *perm;           /* [n_train] this epoch's order */
    int lock_fd;             /* the run directory's lock (rundir.h), valid when locked */
    int locked;
    cuvae_ckpt resume_ck;
    int resuming;
    char resume_path[CUVAE_PATH_LEN + 64];

    int64_t n_train, steps_per_epoch, total_steps;
    uint64_t step, epoch, epoch_step;
    double best_valid;
    int saved_any;       /* a checkpoint of this run exists (written, or resumed from) */
    uint64_t saved_step; /* the step of the newest one */
    float last_lr, last_beta;

    cuvae_trainer_accum interval, epoch_acc;
    double mark; /* start of the current stretch of training time */
    double
        t_start; /* start of the run (a resumed one: moved back by the time before), for wall_s */
    uint64_t epoch_first_step; /* the step at which this process's figures of the epoch begin */
    double next_peek;          /* cuvae_now() of the bar's next look at the running loss */
    cuvae_metrics_log mlog;
    cuvae_tb_events tb; /* fd -1 when output.tensorboard is off */
    cuvae_progress prog;
} cuvae_trainer;

/* Zero sums and no non-finite step. */
void cuvae_trainer_accum_reset(cuvae_trainer_accum *a);

/* Run directory, printed config, resume checkpoint (read and checked), data, model layout,
 * backend with the sets uploaded and the resumed state, config.ini, the metrics file with its
 * start record, and the progress display. On failure t->res->usage_error tells a refused request
 * from a runtime error. */
int cuvae_trainer_setup(cuvae_trainer *t, cuvae_status *st);

/* Frees whatever setup acquired (safe after a partial setup). */
void cuvae_trainer_cleanup(cuvae_trainer *t);

#endif
