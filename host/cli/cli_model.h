/* What the subcommands that read a checkpoint share (eval_cmd.c, latent_cmd.c): common options,
 * reading the checkpoint, a backend holding its parameters, and the data set it runs on. */
#ifndef CUVAE_CLI_MODEL_H
#define CUVAE_CLI_MODEL_H

#include <stdint.h>

#include "backend.h"
#include "checkpoint.h"
#include "common.h"
#include "dataset.h"
#include "png.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Prints "cuvae: CMD: MESSAGE" and returns the runtime exit status. */
int cli_runtime_error(const char *cmd, const cuvae_status *st);

typedef struct {
    cuvae_device device;
    const char *data_dir, *test_images, *test_labels;
} cli_common_opts;

/* Options shared by the commands (the data ones when with_data). Returns 1 when argv[*i] was one
 * of them, 0 when not, and -1 on a bad value, with the usage exit status in *err. */
int cli_common_option(const char *cmd, int argc, char **argv, int *i, int with_data,
                      cli_common_opts *o, int *err);

extern const char CLI_DEVICE_HELP[]; /* the --device line of --help */
extern const char CLI_DATA_HELP[];   /* the data options' lines */

/* The checkpoint operand: the first argument that is not an option; an unknown option or a
 * second operand is a usage error (-1, *err = its exit status). */
int cli_operand(const char *cmd, const char *a, const char **ckpt_path, int *err);

/* Reads and validates the checkpoint; the message always names the file. */
int cli_load_checkpoint(const char *path, cuvae_ckpt *ck, cuvae_status *st);

/* A backend for the checkpoint's model with its parameters and no data set (sample, traverse
 * --map). */
cuvae_backend *cli_make_backend(const cuvae_ckpt *ck, const cuvae_config *cfg, cuvae_device device,
                                cuvae_status *st);

/* Puts the data paths asked for on the command line into the checkpoint's config. */
int cli_apply_data_options(cuvae_config *c, const cli_common_opts *o, cuvae_status *st);

/* --scale S and --caption of the commands that draw grids. */
typedef struct {
    int scale;   /* 0: auto (cuvae_grid_auto_scale) */
    int caption; /* draw "epoch E step S" of the checkpoint */
} cli_grid_opts;

extern const char CLI_GRID_HELP[];

/* 1 when argv[*i] was --scale or --caption, 0 when not, -1 on a bad value (*err set). */
int cli_grid_option(const char *cmd, int argc, char **argv, int *i, cli_grid_opts *g, int *err);

/* The style of a grid of the checkpoint's images; `caption` holds the caption's text. */
cuvae_grid_style cli_grid_style(const cli_grid_opts *g, const cuvae_ckpt *ck, char *caption,
                                size_t len);

/* train | valid | test: 0, or -1. */
int cli_parse_set(const char *s, cuvae_set *out);
const char *cli_set_name(cuvae_set set);

/* A checkpoint's model on a backend, with one of its run's sets uploaded. */
typedef struct {
    cuvae_ckpt ck;
    cuvae_config cfg; /* the checkpoint's, with the command line's data options */
    cuvae_run_data rd;
    cuvae_backend *be;
    cuvae_set set;
    /* The set as the run prepares it (run_data.c): test and validation binarized once with their
     * fixed seeds when the run binarizes, the training set binarized with train.seed (static) or
     * grey (dynamic: the encoder gets the mean of the draws it trained on) */
    const cuvae_dataset *data;
    const uint8_t *originals; /* [data->n, d] its grey bytes */
    int ck_loaded, rd_loaded;
    cuvae_device device;
} cli_model;

/* Reads the checkpoint, checks the set's header against the model, creates the backend (with the
 * memory estimate), loads the run's data and uploads `set`. On failure the caller still calls
 * cli_model_close. */
int cli_model_open(cli_model *m, const char *ckpt_path, const cli_common_opts *o, cuvae_set set,
                   cuvae_status *st);
/* cli_model_open in two halves, for a command that changes m->cfg between them (eval's --limit
 * and --precision, reconstruct's --n): read the checkpoint and put the data options into m->cfg;
 * then the rest, `advice` ending the memory estimate's refusal (NULL: a generic one). */
int cli_model_read(cli_model *m, const char *ckpt_path, const cli_common_opts *o, cuvae_set set,
                   cuvae_status *st);
int cli_model_start(cli_model *m, const char *advice, cuvae_status *st);
void cli_model_close(cli_model *m);

#ifdef __cplusplus
}
#endif
#endif
