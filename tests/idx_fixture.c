/* Hand-made IDX files for the IDX reader's tests (see idx_fixture.h). */
#include "idx_fixture.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tests_util.h"

void idx_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

unsigned char *idx_bytes(uint32_t magic, const uint32_t *dims, int ndims,
                         const unsigned char *payload, size_t plen, size_t *len)
{
    *len = 4 + 4 * (size_t)ndims + plen;
    unsigned char *b = malloc(*len + 1);
    idx_be32(b, magic);
    for (int i = 0; i < ndims; i++) idx_be32(b + 4 + 4 * i, dims[i]);
    if (plen) memcpy(b + 4 + 4 * ndims, payload, plen);
    return b;
}

void idx_write_gz(const char *path, const unsigned char *b, size_t len)
{
    gzFile g = gzopen(path, "wb6");
    CHECK(g != NULL);
    if (!g) return;
    CHECK(len == 0 || gzwrite(g, b, (unsigned)len) == (int)len);
    CHECK(gzclose(g) == Z_OK);
}
