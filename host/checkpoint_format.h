/* Internal to the checkpoint module (checkpoint.c reads, checkpoint_write.c writes): what both
 * sides of the file format share. Data are little-endian on any host: the load/store helpers
 * assemble the bytes explicitly, so the format code is correct on a big-endian machine too. */
#ifndef CUVAE_CHECKPOINT_FORMAT_H
#define CUVAE_CHECKPOINT_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define CUVAE_CKPT_FORMAT_NAME "cuvae-checkpoint"
#define CUVAE_CKPT_HEADER_ALIGN 8 /* JSON padded with spaces so that the data are 8-aligned */
#define CUVAE_CKPT_N_U64_KEYS 7

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

#endif
