/* Hand-made IDX files for the IDX reader's tests (test_idx.c, test_idx_colour.c). */
#ifndef CUVAE_TESTS_IDX_FIXTURE_H
#define CUVAE_TESTS_IDX_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

/* v big-endian at p[0..4). */
void idx_be32(unsigned char *p, uint32_t v);

/* IDX bytes: magic, the ndims dimensions, then the payload. *len gets the size; caller frees. */
unsigned char *idx_bytes(uint32_t magic, const uint32_t *dims, int ndims,
                         const unsigned char *payload, size_t plen, size_t *len);

/* Writes b [len] gzip-compressed (gzopen "wb6") to path; a failure fails the test. */
void idx_write_gz(const char *path, const unsigned char *b, size_t len);

#endif
