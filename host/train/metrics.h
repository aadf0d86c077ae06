/* What a training run tells the outside world while it runs: <run>/metrics.jsonl (one JSON object
 * a line, appended and flushed line by line, so a run that dies leaves every line it wrote), the
 * same numbers as TensorBoard scalars (tb_events.h) when an events writer is attached, and the
 * progress display on stderr (an updating bar on a terminal, one line per epoch otherwise). */
#ifndef CUVAE_METRICS_H
#define CUVAE_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "tb_events.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUVAE_JSON_MAX_NUMS 32

/* One JSON object being built: {"type":"step","step":12,...}. Non-finite numbers are written as
 * null (JSON has no NaN). Text past the buffer sets `overflow`, and the line is then refused.
 * The record's type, its "step" and its numbers (cuvae_json_num) are also kept as values, for the
 * TensorBoard scalars. */
typedef struct {
    char buf[2048];
    size_t len;
    int overflow;
    char type[16];
    int has_step;
    int64_t step;
    int n_nums;
    char num_keys[CUVAE_JSON_MAX_NUMS][32];
    double nums[CUVAE_JSON_MAX_NUMS];
} cuvae_json_line;

void cuvae_json_begin(cuvae_json_line *j, const char *type);
void cuvae_json_int(cuvae_json_line *j, const char *key, int64_t value);
void cuvae_json_num(cuvae_json_line *j, const char *key, double value);
void cuvae_json_str(cuvae_json_line *j, const char *key, const char *value); /* NULL -> null */
/* Closes the object; returns the text (without newline) or NULL on overflow. */
const char *cuvae_json_end(cuvae_json_line *j);

typedef struct {
    FILE *f;
    char path[512];
    /* When not NULL, every record with a "step" also goes there: each number but wall_s as the
     * scalar "<type>/<key>" (step/loss, epoch/valid_neg_elbo, final/test_neg_elbo...) at that
     * step. TensorBoard has each event's wall time already. */
    cuvae_tb_events *tb;
} cuvae_metrics_log;

/* Opens <run_dir>/metrics.jsonl for appending (created when absent; never truncated). */
int cuvae_metrics_open(cuvae_metrics_log *log, const char *run_dir, cuvae_status *st);

/* Appends the closed object as one line and flushes it; then its scalars to log->tb. */
int cuvae_metrics_append(cuvae_metrics_log *log, cuvae_json_line *j, cuvae_status *st);

/* The run's elapsed wall time (wall_s) at the checkpoint of `step`, from <run_dir>/metrics.jsonl:
 * the last "checkpoint" record of that step, else the last record of a step at or before it (a
 * log written before checkpoint records existed), else 0 (no log). Lines that are not such
 * records are passed over. The checkpoint itself holds no time, so that two runs' files stay
 * byte-identical. */
double cuvae_metrics_wall_at(const char *run_dir, uint64_t step);

/* Closes the file; reports a failed final flush. */
int cuvae_metrics_close(cuvae_metrics_log *log, cuvae_status *st);

/* The progress display. On a terminal: one line redrawn in place (\r, clear to end of line) at
 * most ~10 times a second, "epoch 3/10 [#####.....] step 1234/4290 loss 98.31 412k samples/s
 * ETA 0:42", and a permanent line per epoch. The line is kept shorter than the terminal's width
 * (TIOCGWINSZ at each redraw, else $COLUMNS, else 80), so it never wraps: the bar narrows first,
 * then the rate, the ETA and the step count go, and the rest is cut. Elsewhere (a file, a pipe,
 * CI): only the permanent lines. Messages printed through cuvae_progress_message clear the bar
 * first. */
typedef struct {
    FILE *out;
    int tty;
    int bar_shown;    /* a bar is on screen and must be cleared before other text */
    double last_draw; /* cuvae_now() of the last redraw */
    int epochs;
    int64_t steps_per_epoch, total_steps;
    int64_t first_step; /* step at which this process started: the ETA uses the steps since */
    double start_time;
    double loss, samples_per_s; /* latest interval's figures; loss < 0 or NaN: none yet */
} cuvae_progress;

/* tty < 0: decide from isatty(fileno(out)); 0 or 1 forces the mode. */
void cuvae_progress_init(cuvae_progress *p, FILE *out, int tty, int epochs, int64_t steps_per_epoch,
                         int64_t first_step);

/* The latest interval's mean loss and throughput, for the bar. */
void cuvae_progress_set(cuvae_progress *p, double loss, double samples_per_s);

/* After each step: redraws the bar when a terminal and ~0.1 s have passed since the last draw.
 * `epoch` is 0-based; `step` counts completed steps. */
void cuvae_progress_step(cuvae_progress *p, int epoch, int64_t step);

/* Figures of a finished epoch, printed as a permanent line. */
typedef struct {
    int epoch; /* 0-based */
    int64_t step;
    double loss, rec, kl;
    int has_valid; /* 0 when the run has no validation set */
    double valid_neg_elbo;
    double samples_per_s;
    double epoch_s;
} cuvae_epoch_summary;

void cuvae_progress_epoch(cuvae_progress *p, const cuvae_epoch_summary *e);

/* A permanent line (warning, note): clears the bar first; adds the newline. */
void cuvae_progress_message(cuvae_progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Clears the bar (end of run, before an error message). */
void cuvae_progress_clear(cuvae_progress *p);

/* The bar's text for a terminal of `columns` columns (at most columns - 1 characters, so that the
 * cursor never reaches the last column and wraps): what cuvae_progress_step draws. */
void cuvae_progress_format(const cuvae_progress *p, int epoch, int64_t step, double now,
                           int columns, char *buf, size_t len);

/* The width of the terminal at fd (TIOCGWINSZ), else $COLUMNS when a positive number, else 80. */
int cuvae_terminal_columns(int fd);

/* Formats "412k", "1.23M", "950" into buf. */
void cuvae_format_rate(char *buf, size_t len, double per_s);

/* Formats seconds as "0:42", "12:05" or "3:07:59". */
void cuvae_format_duration(char *buf, size_t len, double seconds);

#ifdef __cplusplus
}
#endif
#endif
