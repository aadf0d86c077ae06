/* Internal to the checkpoint module (checkpoint.c reads, checkpoint_write.c writes): what both
 * sides of the file format share. Data are little-endian on any host: the load/store helpers
 * assemble the bytes explicitly, so the format code is correct on a big-endian machine too. */
#ifndef CUVAE_CHECKPOINT_FORMAT_H
#define CUVAE_CHECKPOINT_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "checkpoint.h"

#define CUVAE_CKPT_FORMAT_NAME "cuvae-checkpoint"
#define CUVAE_CKPT_HEADER_ALIGN 8 /* JSON padded with spaces so that the data are 8-aligned */
#define CUVAE_CKPT_N_U64_KEYS 7
/* Optional metadata key: the input shape "C,H,W", written only when it differs from
 * cuvae_shape_default(x_dim) (model.h), which a file without it gets. */
#define CUVAE_CKPT_INPUT_SHAPE_KEY "input_shape"
/* "lo,hi" (%.9g each) of float32 data outside [0, 1]; absent: 0,1. */
#define CUVAE_CKPT_INPUT_RANGE_KEY "input_range"

/* Metadata keys holding decimal u64 values, in the order they are written:
 * step, epoch, epoch_step, seed, data_seed, adam_t, rng_counter. */
extern const char *const cuvae_ckpt_u64_keys[CUVAE_CKPT_N_U64_KEYS];

/* Name prefixes of the three tensor groups: parameters, Adam's m, Adam's v. */
extern const char *const cuvae_ckpt_group_prefix[3];

void cuvae_store_u64_le(uint8_t *p, uint64_t v);
uint64_t cuvae_load_u64_le(const uint8_t *p);
void cuvae_store_f32_le(uint8_t *p, float f);
float cuvae_load_f32_le(const uint8_t *p);

/* zlib's CRC-32 of any length (zlib itself takes a uInt). */
uint32_t cuvae_crc32(const uint8_t *p, size_t n);
/* The CRC-32 continued from crc over p[0..n). */
uint32_t cuvae_crc32_more(uint32_t crc, const uint8_t *p, size_t n);

/* The checksum of format 2: CRC-32 of every metadata key but crc32, in byte order of the keys,
 * each as key NUL value NUL; then the tensor names in the order of their data, each followed by
 * NUL; then the data section. -1 only when out of memory. */
int cuvae_ckpt_crc_v2(const json_t *md, const char *const *names, size_t n_names,
                      const uint8_t *section, size_t len, uint32_t *out);

/* cuvae_ckpt_crc_v2 of a whole file as it is (tensors ordered by their first data offset), for
 * tests and tools that edit a file on purpose and re-seal it. -1 when the header does not parse. */
int cuvae_ckpt_file_crc(const uint8_t *file, size_t len, uint32_t *out);

/* The metadata's values against each other and the config in the file (ck->meta and ck->config
 * filled): rng_counter = step, adam_t <= step, epoch <= step, seed = train.seed = data_seed,
 * best_valid finite or inf and inf in epoch 0, the config passing cuvae_config_validate. The
 * message names the field. */
int cuvae_ckpt_check_meta(const cuvae_ckpt *ck, const char *name, cuvae_status *st);

#endif
