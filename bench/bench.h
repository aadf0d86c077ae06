/* Internals of `cuvae bench` shared by its two files: bench_cmd.c (options, data, timing, the
 * command) and bench_report.c (machine facts, the table, the JSON). Not an interface. */
#ifndef CUVAE_BENCH_H
#define CUVAE_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "config.h"
#include "dataset.h"
#include "evaluate.h"

#define MAX_BATCHES 16
#define MAX_STEPS 1000000
#define MAX_REPEATS 1000
#define MAX_BATCH (1 << 20)
#define EPOCH_EXAMPLES 55000 /* Fashion-MNIST's training set less the default validation split */
#define SYNTHETIC_MIN_EXAMPLES 16384

typedef struct {
    const char *config_path;
    const char **overrides;
    int n_overrides;
    int batches[MAX_BATCHES];
    int n_batches;
    cuvae_precision precisions[3];
    int n_precisions;
    int device_set;
    cuvae_device device;
    int steps, warmup, repeats;
    int eval_samples;  /* -1: the config's eval.samples; 0: no evaluation */
    int eval_examples; /* -1: 1000 on CUDA, 20 on the CPU (K = 5000 is ~5 GFLOP an example) */
    const char *json_path;
    int use_data;
} bench_opts;

/* The figures of one (batch, precision) setting. */
typedef struct {
    int batch;
    cuvae_precision precision;
    enum { SETTING_OK, SETTING_SKIPPED, SETTING_FAILED } status;
    char reason[sizeof((cuvae_status *)0)->msg];
    double first_loss; /* per-example loss of the validation step */
    double *repeat_s;  /* [repeats] seconds of each repeat of `steps` steps */
    double step_s;     /* median repeat / steps */
    double samples_per_s, gflops, epoch_s;
    double peak_mib;  /* CPU: process max RSS after the setting */
    char memory[512]; /* CUDA: the backend's describe() text */
    int has_eval;
    cuvae_eval_result eval; /* the median repeat's result */
    double eval_per_s;
    int has_profile;
    cuvae_profile profile; /* the timed repeats' breakdown, when the backend gives one */
} setting;

/* The data a bench runs on: synthetic bytes of the config's shape, or the config's sets. */
typedef struct {
    uint8_t *train, *test;
    int64_t n_train, n_test;
    int d;
    int train_dynamic;
    int synthetic;
    cuvae_run_data rd; /* --data: owns the real sets */
} bench_data;

/* ---- bench_report.c ----------------------------------------------------------------------------
 */

/* The CPU's model name from /proc/cpuinfo ("unknown CPU" when unreadable). */
void cuvae_bench_cpu_model(char *buf, size_t len);

/* The process's peak resident memory in MiB (NAN when unknown). */
double cuvae_bench_peak_rss_mib(void);

/* "784-512-256-32": the encoder's widths, input first. */
void cuvae_bench_model_text(const cuvae_config *c, int d, char *buf, size_t len);

/* Each setting's step breakdown (backends with a profile entry): ms a step, share of the step,
 * GFLOP/s of each GEMM. */
void cuvae_bench_print_breakdown(FILE *out, const setting *s, int n);

/* The settings as a table on `out` (and the evaluation table and CUDA memory lines). */
void cuvae_bench_print_table(FILE *out, const setting *s, int n, int eval_K, int64_t eval_n,
                             cuvae_device device);

/* The whole result as JSON, written atomically to `path`, with the machine, the date, the
 * command line and every setting's figures. */
int cuvae_bench_write_json(const char *path, const bench_opts *o, int argc, char **argv,
                           const char *machine, const char *cpu, const char *device_name,
                           const cuvae_config *c, const char *model, const bench_data *bd,
                           const setting *s, int n, int eval_K, cuvae_status *st);

#endif
