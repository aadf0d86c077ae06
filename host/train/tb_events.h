/* TensorBoard event files: <run>/events.out.tfevents.<seconds>.<host>.<pid>.cuvae, one per process
 * start, read by `tensorboard --logdir runs` (each run directory is a run).
 *
 * A file is a sequence of TFRecord records (uint64 length, masked CRC-32C of the length, the data,
 * masked CRC-32C of the data; little-endian) each holding one protobuf `tensorboard.Event`:
 *   1 wall_time double, 2 step int64, 3 file_version string ("brain.Event:2", first record),
 *   5 summary Summary { 1 repeated Value { 1 tag, 2 simple_value float,
 *                                          4 image Image { 1 height, 2 width, 3 colorspace,
 *                                                          4 encoded_image_string (PNG) } } },
 *   7 session_log SessionLog { 1 status (START = 1) }.
 * The messages are encoded here by hand rather than with protobuf-c: five messages, a dozen
 * fields and three wire types are less code than a generated encoder, and the build keeps no
 * code generator and no extra library (the encoder's bytes are checked against known vectors in
 * tests/test_tb_events.c and decoded by TensorBoard's own reader in tests/cli_tensorboard.sh).
 *
 * Durability: records are appended with write(2) one whole record at a time, so a killed process
 * leaves every complete record readable (a reader treats a cut last record as not there yet). A
 * failed write (full disk, file-size limit, I/O error) cuts the file back to its last complete
 * record, says so once on the warning stream ("<path>: write failed: <reason>"), and turns the
 * events off for the rest of the run: training, metrics.jsonl and checkpoints go on.
 *
 * Resume: every process writes a SessionLog START at (its first step + 1) right after the
 * file_version; TensorBoard drops the points of the earlier files at that step or later (what a
 * killed process wrote after its last checkpoint), and this process writes them again. Points at
 * the first step itself (the epoch and step records written before the checkpoint it resumes
 * from) stay. */
#ifndef CUVAE_TB_EVENTS_H
#define CUVAE_TB_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reports a write failure (one line, no newline) where the caller shows warnings. */
typedef void (*cuvae_tb_warn_fn)(void *ctx, const char *message);

typedef struct {
    int fd; /* -1 when closed or turned off after a write error */
    char path[CUVAE_PATH_LEN + 160];
    uint64_t good; /* bytes of complete records in the file */
    cuvae_tb_warn_fn warn;
    void *warn_ctx;
} cuvae_tb_events;

/* The CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) of len bytes, continuing from crc
 * (0 to start), and TFRecord's mask of it: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t cuvae_crc32c(uint32_t crc, const void *data, size_t len);
uint32_t cuvae_crc32c_masked(const void *data, size_t len);

/* A growable byte buffer for the encoder. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom; /* an allocation failed: the contents are incomplete */
} cuvae_pb_buf;

void cuvae_pb_free(cuvae_pb_buf *b);

/* Encoders of one Event (appended to `out`). */
void cuvae_tb_encode_file_version(cuvae_pb_buf *out, double wall_time);
void cuvae_tb_encode_session_start(cuvae_pb_buf *out, double wall_time, int64_t step);
void cuvae_tb_encode_scalars(cuvae_pb_buf *out, double wall_time, int64_t step, int n,
                             const char *const *tags, const float *values);
/* colorspace: 1 grey, 3 RGB (Summary.Image's numbering). */
void cuvae_tb_encode_image(cuvae_pb_buf *out, double wall_time, int64_t step, const char *tag,
                           int height, int width, int colorspace, const uint8_t *png, size_t len);

/* Frames `data` as one TFRecord record (appended to `out`). */
void cuvae_tfrecord_frame(cuvae_pb_buf *out, const uint8_t *data, size_t len);

/* Creates a new events file in run_dir (its name's seconds later than every events file already
 * there, so that readers, which order the files by name, see this process's after the earlier
 * ones) and writes the file_version record and the SessionLog START at first_step + 1. Errors
 * (the file cannot be created or written) name the path. `warn` (may be NULL) receives the later
 * write failures. */
int cuvae_tb_open(cuvae_tb_events *w, const char *run_dir, uint64_t first_step,
                  cuvae_tb_warn_fn warn, void *warn_ctx, cuvae_status *st);

/* Appends one Event of scalars at `step` (values not finite are left out). Silent no-op when the
 * writer is closed or off. */
void cuvae_tb_scalars(cuvae_tb_events *w, int64_t step, int n, const char *const *tags,
                      const double *values);

/* Appends the PNG file at png_path as an image summary (its size and colour type read from its
 * IHDR). A file that cannot be read or is not an 8-bit grey or RGB PNG is reported through `warn`
 * and skipped. */
void cuvae_tb_image_file(cuvae_tb_events *w, int64_t step, const char *tag, const char *png_path);

/* 1 while events are being written. */
int cuvae_tb_active(const cuvae_tb_events *w);

void cuvae_tb_close(cuvae_tb_events *w);

#ifdef __cplusplus
}
#endif
#endif
