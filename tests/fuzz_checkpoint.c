/* libFuzzer target: the checkpoint parser on arbitrary bytes (built with -DCUVAE_FUZZ=ON and
 * CC=clang). Besides what ASan and UBSan catch, it checks the parser's contract: a rejection
 * leaves nothing allocated and gives one line that starts with the input's name; an acceptance
 * gives a consistent layout and finite parameters. Seeds come from cuvae_fuzz_corpus. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "checkpoint.h"
#include "checkpoint_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A mutated data section almost never matches its CRC, which would hide every check after the
 * CRC from the fuzzer: a copy of the input with the header's crc32 recomputed goes through the
 * parser as well. Returns NULL when the input has no crc32 field to fix or needs no fix. */
static uint8_t *with_fixed_crc(const uint8_t *data, size_t size)
{
    if (size < 8) return NULL;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)data[i] << (8 * i);
    if (hlen > size - 8) return NULL;
    static const char field[] = "\"crc32\":\"";
    const size_t flen = sizeof field - 1;
    const uint8_t *at = NULL;
    for (size_t i = 8; !at && i + flen + 8 <= 8 + hlen; i++)
        if (memcmp(data + i, field, flen) == 0) at = data + i + flen;
    if (!at) return NULL;
    /* Format 2's checksum (metadata, names, data); the data alone when the header does not
     * parse far enough for it (format 1's checksum). */
    uint32_t crc;
    if (cuvae_ckpt_file_crc(data, size, &crc)) crc = cuvae_crc32(data + 8 + hlen, size - 8 - hlen);
    char hex[9];
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) hex[i] = digits[(crc >> (28 - 4 * i)) & 0xf];
    if (memcmp(at, hex, 8) == 0) return NULL;
    uint8_t *copy = malloc(size);
    if (!copy) return NULL;
    memcpy(copy, data, size);
    memcpy(copy + (at - data), hex, 8);
    return copy;
}

static void check_one(const uint8_t *data, size_t size)
{
    static const char name[] = "fuzz-input";
    cuvae_ckpt ck;
    cuvae_status st;
    st.msg[0] = '\0';
    if (cuvae_ckpt_parse(data, size, name, &ck, &st) != 0) {
        if (strncmp(st.msg, name, strlen(name)) != 0 || strncmp(st.msg + strlen(name), ": ", 2) ||
            strchr(st.msg, '\n') || ck.state.params || ck.state.m || ck.state.v)
            abort();
    } else {
        if (!ck.state.params || ck.model.n_params == 0 ||
            (ck.state.m == NULL) != (ck.state.v == NULL))
            abort();
        for (size_t i = 0; i < ck.model.n_params; i++)
            if (!isfinite(ck.state.params[i])) abort();
    }
    cuvae_ckpt_free(&ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size);
    uint8_t *fixed = with_fixed_crc(data, size);
    if (fixed) {
        check_one(fixed, size);
        free(fixed);
    }
    return 0;
}
