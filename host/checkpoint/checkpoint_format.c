/* What both sides of the checkpoint format share (checkpoint_format.h): the metadata key tables,
 * the little-endian load/store helpers (correct on a big-endian host too: the bytes are assembled
 * explicitly) and the CRC-32 over any length. */
#include <string.h>

#include <zlib.h>

#include "checkpoint_format.h"

const char *const cuvae_ckpt_u64_keys[CUVAE_CKPT_N_U64_KEYS] = {
    "step", "epoch", "epoch_step", "seed", "data_seed", "adam_t", "rng_counter"};
const char *const cuvae_ckpt_group_prefix[3] = {"", "optim.m.", "optim.v."};

/* ---- byte order ------------------------------------------------------------------------------ */

void cuvae_store_u64_le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t cuvae_load_u64_le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void cuvae_store_f32_le(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

float cuvae_load_f32_le(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint32_t cuvae_crc32(const uint8_t *p, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt piece = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, piece);
        p += piece;
        n -= piece;
    }
    return (uint32_t)crc;
}

uint32_t cuvae_crc32_more(uint32_t crc, const uint8_t *p, size_t n)
{
    uLong c = crc;
    while (n > 0) {
        uInt piece = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, piece);
        p += piece;
        n -= piece;
    }
    return (uint32_t)c;
}
