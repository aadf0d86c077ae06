/* Writes NumPy .npz archives (see npy.h): a stored (uncompressed) zip of .npy members, each a
 * version 1.0 header padded to 64 bytes and C-order little-endian data, as np.savez writes them.
 * The archive is built in memory and written through the one file writer (file_write.h), so it
 * replaces an old file atomically. No zip64: an archive that would pass 4 GiB is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "file_write.h"
#include "npy.h"

#define ZIP_LIMIT 0xffffffffULL
#define NPY_ALIGN 64

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

/* The .npy header of a member: magic, version 1.0, length, the dict padded with spaces and ended
 * by a newline so that the data start at a multiple of 64 bytes. Returns its length, 0 when the
 * header does not fit (a shape of absurd rank). */
static size_t npy_header(const cuvae_npz_member *m, uint8_t *out, size_t cap)
{
    char dict[512], shape[256] = "";
    size_t used = 0;
    for (int k = 0; k < m->ndim; k++)
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%lld,%s",
                                 (long long)m->shape[k], k + 1 < m->ndim ? " " : "");
    if (m->ndim > 1) shape[used - 1] = '\0'; /* (N, L); one axis keeps its comma: (N,) */
    int len = snprintf(dict, sizeof dict,
                       "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", m->descr, shape);
    size_t total = 10 + (size_t)len + 1;
    total = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    if (total > cap || total - 10 > 0xffff) return 0;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    put16(out + 8, (uint32_t)(total - 10));
    memset(out + 10, ' ', total - 10);
    memcpy(out + 10, dict, (size_t)len);
    out[total - 1] = '\n';
    return total;
}

static uint64_t member_bytes(const cuvae_npz_member *m)
{
    uint64_t n = (uint64_t)m->itemsize;
    for (int k = 0; k < m->ndim; k++) n *= (uint64_t)m->shape[k];
    return n;
}

int cuvae_npz_write(const char *path, const cuvae_npz_member *members, int count, cuvae_status *st)
{
    enum { LOCAL = 30, CENTRAL = 46, END = 22, HEADER_CAP = 1024 };
    if (count < 0 || count >= 0xffff)
        return cuvae_fail(st, "%s: %d arrays: an archive holds fewer than 65535", path, count);
    uint64_t total = END;
    for (int i = 0; i < count; i++) {
        const cuvae_npz_member *m = &members[i];
        if (m->ndim < 1 || m->ndim > 2 || m->itemsize < 1 || !m->name || !m->descr)
            return cuvae_fail(st, "%s: cannot write array '%s': unsupported shape or type", path,
                              m->name ? m->name : "?");
        for (int k = 0; k < m->ndim; k++)
            if (m->shape[k] < 0 || m->shape[k] > (int64_t)ZIP_LIMIT)
                return cuvae_fail(st, "%s: array '%s': bad size %lld", path, m->name,
                                  (long long)m->shape[k]);
        uint64_t name = strlen(m->name) + 4; /* + ".npy" */
        total += LOCAL + CENTRAL + 2 * name + HEADER_CAP + member_bytes(m);
        if (total > ZIP_LIMIT)
            return cuvae_fail(st, "%s: the archive would pass 4 GiB (zip64 is not written)", path);
    }
    uint8_t *buf = cuvae_malloc((size_t)total, "the .npz archive", st);
    uint64_t *offsets = cuvae_calloc((size_t)count + 1, sizeof *offsets, "the .npz directory", st);
    uint32_t *crcs = cuvae_calloc((size_t)count + 1, sizeof *crcs, "the .npz directory", st);
    uint64_t *sizes = cuvae_calloc((size_t)count + 1, sizeof *sizes, "the .npz directory", st);
    int rc = -1;
    if (!buf || !offsets || !crcs || !sizes) goto done;
    size_t pos = 0;
    for (int i = 0; i < count; i++) {
        const cuvae_npz_member *m = &members[i];
        char name[256];
        int nlen = snprintf(name, sizeof name, "%s.npy", m->name);
        if (nlen <= 0 || (size_t)nlen >= sizeof name) {
            cuvae_fail(st, "%s: array name '%s' is too long", path, m->name);
            goto done;
        }
        uint8_t header[HEADER_CAP];
        size_t hlen = npy_header(m, header, sizeof header);
        if (!hlen) {
            cuvae_fail(st, "%s: array '%s': header too long", path, m->name);
            goto done;
        }
        uint64_t data = member_bytes(m);
        uLong crc = crc32(0L, Z_NULL, 0);
        crc = crc32(crc, header, (uInt)hlen);
        for (uint64_t off = 0; off < data;) { /* crc32 takes uInt lengths */
            uint64_t part = data - off < (1u << 30) ? data - off : (1u << 30);
            crc = crc32(crc, (const Bytef *)m->data + off, (uInt)part);
            off += part;
        }
        offsets[i] = pos;
        crcs[i] = (uint32_t)crc;
        sizes[i] = hlen + data;
        uint8_t *h = buf + pos;
        memset(h, 0, LOCAL);
        put32(h, 0x04034b50);
        put16(h + 4, 20);    /* version needed: 2.0 */
        put16(h + 12, 0x21); /* date: 1980-01-01 */
        put32(h + 14, crcs[i]);
        put32(h + 18, (uint32_t)sizes[i]); /* compressed = uncompressed: stored */
        put32(h + 22, (uint32_t)sizes[i]);
        put16(h + 26, (uint32_t)nlen);
        memcpy(h + LOCAL, name, (size_t)nlen);
        pos += LOCAL + (size_t)nlen;
        memcpy(buf + pos, header, hlen);
        pos += hlen;
        if (data) memcpy(buf + pos, m->data, (size_t)data);
        pos += (size_t)data;
    }
    size_t dir = pos;
    for (int i = 0; i < count; i++) {
        char name[256];
        int nlen = snprintf(name, sizeof name, "%s.npy", members[i].name);
        uint8_t *c = buf + pos;
        memset(c, 0, CENTRAL);
        put32(c, 0x02014b50);
        put16(c + 4, 20); /* made by: 2.0 */
        put16(c + 6, 20);
        put16(c + 14, 0x21);
        put32(c + 16, crcs[i]);
        put32(c + 20, (uint32_t)sizes[i]);
        put32(c + 24, (uint32_t)sizes[i]);
        put16(c + 28, (uint32_t)nlen);
        put32(c + 42, (uint32_t)offsets[i]);
        memcpy(c + CENTRAL, name, (size_t)nlen);
        pos += CENTRAL + (size_t)nlen;
    }
    uint8_t *e = buf + pos;
    memset(e, 0, END);
    put32(e, 0x06054b50);
    put16(e + 8, (uint32_t)count);
    put16(e + 10, (uint32_t)count);
    put32(e + 12, (uint32_t)(pos - dir));
    put32(e + 16, (uint32_t)dir);
    pos += END;
    rc = cuvae_write_file(path, buf, pos, st);
done:
    free(buf);
    free(offsets);
    free(crcs);
    free(sizes);
    return rc;
}
