/* Checkpoints as safetensors files: 8-byte little-endian header length, JSON header, raw
 * little-endian F32 data. Tensors: the model's (encoder.{i}.weight ...), plus optim.m.<name> and
 * optim.v.<name> when the optimizer state is saved. __metadata__ (all values strings): format
 * ("cuvae-checkpoint"), format_version, step, epoch, epoch_step, seed, data_seed, adam_t,
 * rng_counter, best_valid, config (the resolved INI text), crc32 (8 hex digits), and input_shape
 * ("C,H,W" of one example) when it is not the default of cuvae_shape_default (one channel, square
 * when x_dim is a perfect square, else one row: what files without the key get). Format 2 (written
 * today): the zlib CRC-32 covers the metadata, the tensors' order and the data
 * (cuvae_ckpt_crc_v2 in checkpoint_format.h); format 1 (still read, its metadata "unchecked"):
 * the data section only. PyTorch's safetensors.torch.load_file reads both. */
#ifndef CUVAE_CHECKPOINT_H
#define CUVAE_CHECKPOINT_H

#include <stdint.h>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUVAE_CKPT_FORMAT_VERSION 2
#define CUVAE_CKPT_FORMAT_OLDEST 1        /* the oldest version read (metadata not checksummed) */
#define CUVAE_CKPT_MAX_HEADER (16u << 20) /* bytes; a longer header is rejected */

typedef struct {
    uint64_t step;       /* training steps completed */
    uint64_t epoch;      /* epoch in progress (0-based) */
    uint64_t epoch_step; /* batches of that epoch completed */
    uint64_t seed;       /* train.seed: keys init, noise */
    uint64_t data_seed;  /* keys the split and epoch shuffles (equal to seed today) */
    uint64_t adam_t;
    uint64_t rng_counter; /* noise counter: the next step's counter (= step) */
    double best_valid;    /* best validation negative ELBO so far (inf when none) */
} cuvae_ckpt_meta;

typedef struct {
    cuvae_config config; /* parsed from the metadata */
    cuvae_model model;   /* layout rebuilt from that config and the tensors' shapes */
    cuvae_ckpt_meta meta;
    cuvae_train_state state; /* params always; m and v NULL when the file has no optimizer state */
    int format_version;      /* below 2: the CRC did not cover the metadata (unchecked) */
} cuvae_ckpt;

/* Writes atomically: <path>.tmp.<pid> in the same directory, fsync, rename, fsync of the
 * directory. On any failure (full disk, permission) the temporary is removed, an existing file at
 * path is untouched, and the message names the path and the system error. state->m/v may be NULL
 * (model only). */
int cuvae_ckpt_write(const char *path, const cuvae_config *config, const cuvae_model *model,
                     const cuvae_ckpt_meta *meta, const cuvae_train_state *state, cuvae_status *st);

/* Reads and validates everything before trusting it: file size, header length bounded and inside
 * the file, JSON well formed, every tensor F32 with a valid shape, offsets in order,
 * non-overlapping, covering the data section exactly, sizes = shape x 4, names and shapes equal to
 * the layout of the config in the metadata, the metadata's values consistent with each other and
 * with that config (cuvae_ckpt_check_meta), CRC-32 matches. Each failed check has its own message
 * naming the file and the check (the field, for the metadata). */
int cuvae_ckpt_read(const char *path, cuvae_ckpt *out, cuvae_status *st);

/* Same from memory (the fuzz target's entry). `name` is used in messages. */
int cuvae_ckpt_parse(const uint8_t *data, size_t size, const char *name, cuvae_ckpt *out,
                     cuvae_status *st);

void cuvae_ckpt_free(cuvae_ckpt *ck);

/* One "warning: ..." line on out when ck is of a format whose CRC did not cover the metadata. */
void cuvae_ckpt_warn_unchecked(const cuvae_ckpt *ck, const char *path, FILE *out);

/* Run-directory management. Checkpoints are <dir>/checkpoints/step-<12-digit step>.safetensors,
 * the best by validation loss is <dir>/checkpoints/best.safetensors, and <dir>/checkpoints/latest
 * is a small text file naming the newest file (written atomically after it). Saving keeps the
 * newest keep_last step files and deletes older ones only after the new one is durable. */
int cuvae_ckpt_save_run(const char *run_dir, int keep_last, const cuvae_config *config,
                        const cuvae_model *model, const cuvae_ckpt_meta *meta,
                        const cuvae_train_state *state, int is_best, char *saved_path,
                        size_t saved_len, cuvae_status *st);

/* Finds the newest checkpoint in the run directory that passes cuvae_ckpt_read, trying older ones
 * when a newer one is rejected; each rejection is reported on `log` ("skipping ...: reason").
 * Returns 1 when found (out filled, path copied), 0 when the directory has no checkpoint at all,
 * -1 when checkpoints exist but none is good (st says why). */
int cuvae_ckpt_find_latest(const char *run_dir, FILE *log, cuvae_ckpt *out, char *path,
                           size_t path_len, cuvae_status *st);

#ifdef __cplusplus
}
#endif
#endif
