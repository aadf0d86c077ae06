/* Run configuration: INI files (sections [data] [model] [train] [optim] [eval] [output]) plus
 * `section.key=value` overrides from the command line. One key table drives parsing, range checks,
 * printing of the resolved config, --help and the README's key list. */
#ifndef CUVAE_CONFIG_H
#define CUVAE_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUVAE_MAX_HIDDEN 8
#define CUVAE_PATH_LEN 256

typedef enum { CUVAE_LIK_BERNOULLI = 0, CUVAE_LIK_GAUSSIAN = 1 } cuvae_likelihood;
typedef enum { CUVAE_BIN_NONE = 0, CUVAE_BIN_STATIC = 1, CUVAE_BIN_DYNAMIC = 2 } cuvae_binarize;
typedef enum { CUVAE_OPT_ADAM = 0, CUVAE_OPT_ADAMW = 1 } cuvae_optimizer;
typedef enum { CUVAE_SCHED_CONSTANT = 0, CUVAE_SCHED_COSINE = 1 } cuvae_schedule;
typedef enum { CUVAE_PREC_FP32 = 0, CUVAE_PREC_TF32 = 1, CUVAE_PREC_BF16 = 2 } cuvae_precision;
typedef enum { CUVAE_DEV_AUTO = 0, CUVAE_DEV_CPU = 1, CUVAE_DEV_CUDA = 2 } cuvae_device;
typedef enum { CUVAE_NONFINITE_STOP = 0, CUVAE_NONFINITE_SKIP = 1 } cuvae_on_nonfinite;
typedef enum {
    CUVAE_RESIZE_BOX = 0,
    CUVAE_RESIZE_BILINEAR = 1,
    CUVAE_RESIZE_NEAREST = 2
} cuvae_resize_filter;
/* The largest data.image_size side. */
#define CUVAE_IMAGE_SIZE_MAX 4096

/* One layer of model.encoder / model.decoder (the notation of cuvae_stack_spec_parse). kind is
 * a cuvae_layer_kind (model.h): 0 linear, 1 conv2d, 2 conv_transpose2d. */
typedef struct {
    int kind;
    int c;       /* output channels (linear: output features, or C of C x H x W) */
    int h, w;    /* linear: 0, or the output reshaped to c x h x w (then c*h*w features) */
    int k, s, p; /* conv kinds: kernel, stride, padding; 0 for linear */
} cuvae_layer_spec;

#define CUVAE_MAX_SPEC (CUVAE_MAX_HIDDEN + 1)

typedef struct {
    int n; /* 0: not given */
    cuvae_layer_spec layer[CUVAE_MAX_SPEC];
} cuvae_stack_spec;

/* data.stream (backend.h says what each does). */
typedef enum { CUVAE_STREAM_AUTO = 0, CUVAE_STREAM_ON = 1, CUVAE_STREAM_OFF = 2 } cuvae_stream_mode;

typedef struct {
    struct {
        char train_images[CUVAE_PATH_LEN]; /* IDX (gz or raw), .npy or .npz */
        char train_labels[CUVAE_PATH_LEN]; /* may be empty: no labels */
        char test_images[CUVAE_PATH_LEN];
        char test_labels[CUVAE_PATH_LEN];
        char train_key[CUVAE_PATH_LEN]; /* .npz array; empty = x_train, else the only array */
        char test_key[CUVAE_PATH_LEN];  /* .npz array; empty = x_test, else the only array */
        int validation;          /* examples carved from the training set (seeded permutation) */
        cuvae_binarize binarize; /* none | static | dynamic */
        int limit_train;         /* 0 = all; else use only the first N training examples */
        int limit_test;          /* 0 = all */
        /* Image folders (image_dir.h): */
        char image_size[CUVAE_PATH_LEN];   /* "" = the images' own; "N" or "HxW" */
        cuvae_resize_filter resize_filter; /* box | bilinear | nearest */
        int image_channels;                /* 0 auto, 1 grey, 2 rgb */
        int folder_labels;                 /* labels from the first-level subfolders (0/1) */
        /* auto | on | off: the training set streamed or copied (data.stream) */
        cuvae_stream_mode stream;
    } data;
    struct {
        int hidden[CUVAE_MAX_HIDDEN]; /* encoder hidden sizes; the decoder mirrors them */
        int n_hidden;
        cuvae_stack_spec encoder; /* given: replaces hidden (then n_hidden is 0) */
        cuvae_stack_spec decoder; /* given: the whole decoder; else the encoder's mirror */
        int latent;
        cuvae_likelihood likelihood;
        float gaussian_sigma; /* fixed sigma of the Gaussian likelihood */
    } model;
    struct {
        int epochs;
        int batch_size;
        uint64_t seed; /* keys every random stream: init, split, shuffle, binarization, noise */
        float beta;    /* KL weight after warm-up */
        int kl_warmup_steps; /* linear 0 -> beta over this many steps; 0 = off */
        float free_bits;     /* per-dimension KL floor (nats); 0 = off */
        cuvae_device device;
        cuvae_precision precision; /* GEMM precision on the GPU; the CPU always computes fp32 */
        int log_every;             /* steps between metric reads / log lines */
        cuvae_on_nonfinite on_nonfinite;
        int cuda_graph; /* CUDA: capture the training step once as a graph and replay it (0/1) */
    } train;
    struct {
        cuvae_optimizer type;
        float lr, beta1, beta2, eps, weight_decay;
        float grad_clip; /* max global L2 norm; 0 = off */
        cuvae_schedule schedule;
        int warmup_steps; /* linear warm-up of the learning rate */
        float min_lr;     /* cosine floor */
    } optim;
    struct {
        int samples;    /* K of the importance-weighted bound used by `eval` */
        int batch_size; /* examples per evaluation batch */
    } eval;
    struct {
        char dir[CUVAE_PATH_LEN];    /* run directory; default runs/<config name> */
        int checkpoint_every_steps;  /* 0 = off */
        int checkpoint_every_epochs; /* 0 = off */
        int keep_last;               /* checkpoints kept besides best */
        int images;                  /* write PNG grids each epoch (0/1) */
        int tensorboard;             /* write TensorBoard event files (0/1) */
        int image_scale;             /* tile scale of the grids; 0 = auto (png.h) */
        int image_caption;           /* caption "epoch E step S" on the grids (0/1) */
    } output;
} cuvae_config;

/* Fills every key with its default (the default config is Fashion-MNIST from Debian's
 * dataset-fashion-mnist package, MLP 784-512-256-32, Bernoulli, dynamic binarization). */
void cuvae_config_defaults(cuvae_config *c);

/* Reads an INI file over the current values of c. Errors name file, line, key and what is allowed:
 * "configs/x.ini:12: train.epochs: expected an integer in [1, 1000000], got 'ten'". When output.dir
 * was not set by the file, it becomes runs/<file name without .ini>. */
int cuvae_config_load_file(cuvae_config *c, const char *path, cuvae_status *st);

/* Same from a string; `origin` names the source in messages (e.g. "checkpoint metadata"). */
int cuvae_config_load_string(cuvae_config *c, const char *text, const char *origin,
                             cuvae_status *st);

/* Applies one command-line override "section.key=value". */
int cuvae_config_override(cuvae_config *c, const char *assignment, cuvae_status *st);

/* Cross-key checks (e.g. gaussian likelihood with binarize, validation smaller than the data). */
int cuvae_config_validate(const cuvae_config *c, cuvae_status *st);

/* The resolved config as INI text that cuvae_config_load_string reads back to the same values.
 * Returns a malloc'd string (NULL on out of memory). */
char *cuvae_config_to_ini(const cuvae_config *c);

/* Writes the key reference (section.key, type/allowed values, default, one-line description). */
void cuvae_config_print_keys(FILE *out, int markdown);

/* Compares the config saved in a checkpoint with the one a resume asks for. A change to the model's
 * shape (or anything else that makes the saved tensors meaningless) fails with a message naming the
 * key. Other changes are allowed and described in `report` ("train.epochs: 10 -> 20; ..."), with
 * keys that break exact continuation (seed, batch size, data) marked as such. */
int cuvae_config_resume_diff(const cuvae_config *saved, const cuvae_config *now, char *report,
                             size_t report_len, cuvae_status *st);

/* Parses the stack notation: comma-separated layers, each `linear N`, `linear CxHxW` (the output
 * reshaped to C x H x W), `conv C` or `convt C` with optional `kK sS pP` (defaults k4 s2 p1);
 * empty = not given. On failure writes what is wrong to why. */
int cuvae_stack_spec_parse(const char *text, cuvae_stack_spec *out, char *why, size_t why_len);

/* The notation of a spec, parsing back to the same spec. */
void cuvae_stack_spec_format(const cuvae_stack_spec *s, char *buf, size_t len);

/* data.image_size: "" (0 x 0), "N" (N x N) or "HxW", sides in [1, CUVAE_IMAGE_SIZE_MAX].
 * Returns 0, or -1 with *rows, *cols untouched. */
int cuvae_parse_image_size(const char *v, int *rows, int *cols);

const char *cuvae_precision_name(cuvae_precision p);
const char *cuvae_device_name(cuvae_device d);

#ifdef __cplusplus
}
#endif
#endif
