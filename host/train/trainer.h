/* The training loop of `cuvae train`: run directory, data, backend, resume, epochs of shuffled
 * mini-batches with the learning-rate and KL schedules, metrics, validation, images, checkpoints,
 * non-finite handling and stop requests (SIGINT/SIGTERM). It prints the run's report (config,
 * data, device, resume, final summary) on `out` and progress and warnings on `log`, but no errors:
 * the outcome and any error message go back to the caller, which picks the exit status.
 *
 * <run>/metrics.jsonl gets one JSON object a line, appended (a resumed run adds to it); epochs are
 * numbered from 1, `step` counts the steps completed, figures are per-example means, and a figure
 * that is not finite is written as null:
 *   start  step epoch epochs steps_per_epoch batch_size n_params device resumed_from wall_s
 *   step   step epoch loss rec kl lr beta grad_norm samples_per_s skipped wall_s
 *          (every train.log_every steps, over the steps since the previous line; lr and beta of
 *          the last step, epoch that of the last step; skipped steps are left out of the means)
 *   epoch  epoch step first_step steps loss rec kl valid_neg_elbo samples_per_s epoch_s wall_s
 *          (training figures over steps first_step..step: the epoch's steps run by this process;
 *          validation with K = 1)
 *   checkpoint  step path wall_s (after each checkpoint written)
 *   stop   reason (nonfinite, SIGINT, SIGTERM) step checkpoint wall_s
 *   final  step epoch test_neg_elbo best_valid_neg_elbo checkpoint model wall_s
 * wall_s counts the run's time: from the start of a fresh run, and in a resumed one from the
 * wall_s of the checkpoint record it resumes from; samples_per_s leaves out evaluation, images and
 * checkpoint writing. With output.tensorboard the numbers also go to the run's TensorBoard events
 * (metrics.h, tb_events.h). */
#ifndef CUVAE_TRAINER_H
#define CUVAE_TRAINER_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const cuvae_config *config; /* resolved and validated */
    const char *resume;         /* NULL: fresh start; "auto": newest good checkpoint of the run
                                   directory (fresh start when it has none); else a file */
    FILE *out;                  /* resolved config and the final summary (stdout) */
    FILE *log;                  /* progress, device, notes and warnings (stderr) */
    int progress_tty;           /* -1: ask isatty(log); 0/1 force plain lines / the bar */
} cuvae_train_options;

typedef enum {
    CUVAE_TRAIN_FINISHED = 0,    /* every epoch done, final files written */
    CUVAE_TRAIN_NONFINITE = 1,   /* stopped at a non-finite loss or gradient, nothing saved */
    CUVAE_TRAIN_INTERRUPTED = 2, /* stop request honoured after writing a checkpoint */
    CUVAE_TRAIN_FAILED = 3       /* error: see the status and usage_error */
} cuvae_train_outcome;

typedef struct {
    cuvae_train_outcome outcome;
    int usage_error; /* FAILED because of what was asked (resume refused, batch too large) */
    int signal;      /* INTERRUPTED: the signal number */
    uint64_t step;   /* steps completed when the run ended */
    uint64_t nonfinite_step; /* NONFINITE: 1-based number of the first non-finite step */
    char run_dir[CUVAE_PATH_LEN];
    char checkpoint[CUVAE_PATH_LEN + 64]; /* newest checkpoint written or resumed from; "" = none */
} cuvae_train_result;

/* Runs the training. Returns 0 when the run ended as the outcome says (FINISHED, NONFINITE,
 * INTERRUPTED) and -1 on error (outcome FAILED, st says why). */
int cuvae_train(const cuvae_train_options *opt, cuvae_train_result *res, cuvae_status *st);

/* The learning rate of a step (0-based): linear warm-up over optim.warmup_steps, then constant or
 * cosine from optim.lr down to optim.min_lr at total_steps. */
float cuvae_schedule_lr(const cuvae_config *c, uint64_t step, uint64_t total_steps);

/* The KL weight of a step: train.beta * min(1, (step + 1) / kl_warmup_steps), or train.beta
 * when the warm-up is off. */
float cuvae_schedule_beta(const cuvae_config *c, uint64_t step);

#ifdef __cplusplus
}
#endif
#endif
