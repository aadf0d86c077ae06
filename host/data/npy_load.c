/* Image sets and labels from .npy files and .npz members (npy.h), on the parser and directory
 * reader of npy.c. The file is mapped; a .npy's (or a stored member's) planar uint8 pixels stay in
 * the mapping, which the dataset then owns; a deflated member is inflated into a buffer of its
 * declared size, no more. float32 in [0, 1] becomes bytes of the dataset's own; other float32 data
 * stay float32 (in the mapping, or reordered when interleaved); interleaved colour (N x H x W x 3)
 * becomes planar values of the dataset's own. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "npy.h"

typedef struct {
    char name[CUVAE_PATH_LEN + 320]; /* "path" or "path: member 'x.npy'" for messages */
    uint8_t *map;                    /* the whole file, or NULL */
    size_t map_len;
    uint8_t *inflated;  /* a deflated member (or its first bytes, for a peek) */
    const uint8_t *npy; /* the .npy's bytes: in map or inflated */
    uint64_t npy_len;   /* what is there */
    uint64_t declared;  /* what the .npy should hold (the member's declared size) */
    uint64_t staging;   /* bytes a full read of a deflated member allocates */
} npy_source;

static void source_close(npy_source *s)
{
    if (s->map) munmap(s->map, s->map_len);
    free(s->inflated);
    memset(s, 0, sizeof *s);
}

/* Inflates (raw deflate) into out[0..cap), which must be the exact size of the member unless
 * `partial`; the stream must end within csize bytes, fit cap and match the CRC. */
static int inflate_member(npy_source *s, const uint8_t *in, uint64_t csize, uint8_t *out,
                          uint64_t cap, int partial, uint32_t crc, cuvae_status *st)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK) return cuvae_fail(st, "%s: cannot start inflate", s->name);
    uint64_t in_at = 0, out_at = 0;
    uint8_t extra;
    int rc = Z_OK;
    while (rc == Z_OK) {
        if (partial && out_at == cap) break;
        const uint64_t piece = (uint64_t)1 << 30;
        uint64_t ni = csize - in_at < piece ? csize - in_at : piece;
        int over = out_at == cap; /* room spent: one byte more would be a bomb */
        uint64_t no = over ? 1 : (cap - out_at < piece ? cap - out_at : piece);
        zs.next_in = (Bytef *)(uintptr_t)(in + in_at);
        zs.avail_in = (uInt)ni;
        zs.next_out = over ? &extra : out + out_at;
        zs.avail_out = (uInt)no;
        rc = inflate(&zs, Z_NO_FLUSH);
        in_at += ni - zs.avail_in;
        uint64_t made = no - zs.avail_out;
        if (over && made > 0) {
            inflateEnd(&zs);
            return cuvae_fail(st,
                              "%s: inflates to more than its declared %llu bytes (a "
                              "decompression bomb, or a corrupt archive)",
                              s->name, (unsigned long long)cap);
        }
        if (!over) out_at += made;
        if (rc == Z_BUF_ERROR) {
            if (in_at == csize) break; /* the input ends inside the stream */
            rc = Z_OK;
        }
    }
    const char *zmsg = zs.msg ? zs.msg : zError(rc);
    inflateEnd(&zs);
    if (partial && out_at == cap) return 0;
    if (rc != Z_STREAM_END)
        return cuvae_fail(st, "%s: corrupt or truncated deflate data (%s)", s->name,
                          rc == Z_BUF_ERROR ? "the data end inside the stream" : zmsg);
    if (out_at != cap)
        return cuvae_fail(st, "%s: inflates to %llu bytes, but the archive declares %llu", s->name,
                          (unsigned long long)out_at, (unsigned long long)cap);
    if (!partial) {
        uLong c = crc32(0L, Z_NULL, 0);
        for (uint64_t at = 0; at < cap;) {
            uint64_t k = cap - at < ((uint64_t)1 << 30) ? cap - at : ((uint64_t)1 << 30);
            c = crc32(c, out + at, (uInt)k);
            at += k;
        }
        if ((uint32_t)c != crc)
            return cuvae_fail(st, "%s: CRC mismatch (0x%08x, the archive says 0x%08x): corrupt",
                              s->name, (unsigned)c, (unsigned)crc);
    }
    return 0;
}

/* Maps `path` and finds its .npy bytes: the file itself, or the .npz member. header_only: a
 * deflated member is inflated only as far as its header can reach. */
static int source_open(npy_source *s, const char *path, const char *key, const char *fallback,
                       int header_only, cuvae_status *st)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cuvae_fail(st, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cuvae_fail(st, "%s: not a regular file: expected a .npy or .npz", path);
    }
    if (sb.st_size < 10) {
        close(fd);
        return cuvae_fail(st, "%s: truncated: %lld bytes, too short for a .npy or .npz", path,
                          (long long)sb.st_size);
    }
    s->map_len = (size_t)sb.st_size;
    void *m = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        s->map_len = 0;
        return cuvae_fail(st, "%s: cannot map: %s", path, strerror(errno));
    }
    s->map = m;
    int kind = cuvae_npy_sniff(s->map, s->map_len);
    if (kind == 1) {
        s->npy = s->map;
        s->npy_len = s->declared = s->map_len;
        return 0;
    }
    if (kind != 2) {
        source_close(s);
        return cuvae_fail(st, "%s: expected a .npy (magic \\x93NUMPY) or an .npz (a zip)", path);
    }
    uint64_t off, csize, usize;
    int method;
    uint32_t crc;
    char member[300];
    if (cuvae_npz_find(s->map, s->map_len, path, key, fallback, &off, &csize, &usize, &method, &crc,
                       member, sizeof member, st)) {
        source_close(s);
        return -1;
    }
    snprintf(s->name, sizeof s->name, "%s: member '%s'", path, member);
    s->declared = usize;
    if (method == 0) {
        s->npy = s->map + off;
        s->npy_len = usize;
        return 0;
    }
    s->staging = usize;
    uint64_t want = usize;
    if (header_only && want > 12 + CUVAE_NPY_MAX_HEADER) want = 12 + CUVAE_NPY_MAX_HEADER;
    s->inflated = cuvae_malloc(want ? (size_t)want : 1, "an inflated .npz member", st);
    if (!s->inflated ||
        inflate_member(s, s->map + off, csize, s->inflated, want, want < usize, crc, st)) {
        source_close(s);
        return -1;
    }
    s->npy = s->inflated;
    s->npy_len = want;
    return 0;
}

/* The header, checked against the size the file (or member) declares. */
static int source_header(npy_source *s, cuvae_npy_header *h, cuvae_status *st)
{
    if (cuvae_npy_parse_header(s->npy, (size_t)s->npy_len, s->name, h, st)) return -1;
    uint64_t need = h->data_offset + h->data_bytes;
    if (s->declared < need)
        return cuvae_fail(
            st, "%s: truncated: expected %llu bytes of data after the header, got %llu", s->name,
            (unsigned long long)h->data_bytes, (unsigned long long)(s->declared - h->data_offset));
    if (s->declared > need)
        return cuvae_fail(
            st, "%s: trailing garbage: %llu bytes after the %llu its header announces", s->name,
            (unsigned long long)(s->declared - need), (unsigned long long)need);
    return 0;
}

/* N x H x W, N x D (one row of D), N x H x W x C (interleaved) or N x C x H x W (planar) with
 * C = 1 or 3. A size-1 axis 3, then axis 1, is one channel (the greyscale shapes read as before
 * colour: N x 1 x H x 3 is H x 3 greyscale); a colour shape that fits both layouts (N x 3 x H x 3)
 * is read channels-last, as the IDX reader and the usual NumPy image arrays store them. */
static int image_shape(const npy_source *s, const cuvae_npy_header *h, int64_t *n, int *channels,
                       int *rows, int *cols, int *interleaved, cuvae_status *st)
{
    if (h->itemsize != 1 && !h->is_float)
        return cuvae_fail(st, "%s: dtype '%s': expected uint8 ('|u1') or float32 ('<f4') images",
                          s->name, h->descr);
    if (h->itemsize == 1 && h->is_signed)
        return cuvae_fail(st,
                          "%s: dtype '%s' (int8): expected uint8 ('|u1') or float32 ('<f4') "
                          "images",
                          s->name, h->descr);
    const int64_t *d = h->shape;
    int64_t r = 0, c = 0, ch = 1;
    int hwc = 0;
    if (h->ndim == 2) {
        r = 1;
        c = d[1];
    } else if (h->ndim == 3) {
        r = d[1];
        c = d[2];
    } else if (h->ndim == 4 && d[3] != 1 && d[1] != 1 && (d[3] == 3 || d[1] == 3)) {
        hwc = d[3] == 3;
        ch = 3;
        r = hwc ? d[1] : d[2];
        c = hwc ? d[2] : d[3];
    } else if (h->ndim == 4 && (d[3] == 1 || d[1] == 1)) {
        r = d[3] == 1 ? d[1] : d[2];
        c = d[3] == 1 ? d[2] : d[3];
    } else if (h->ndim == 4) {
        return cuvae_fail(st,
                          "%s: shape (%lld, %lld, %lld, %lld): expected N x H x W x C or "
                          "N x C x H x W with C = 1 (greyscale) or 3 (RGB)",
                          s->name, (long long)d[0], (long long)d[1], (long long)d[2],
                          (long long)d[3]);
    } else {
        return cuvae_fail(st,
                          "%s: %d dimensions: expected N x H x W, N x D, N x H x W x C or "
                          "N x C x H x W (C = 1 or 3)",
                          s->name, h->ndim);
    }
    if (d[0] == 0 || r == 0 || c == 0)
        return cuvae_fail(st, "%s: a dimension is zero: %lld images of %lld x %lld", s->name,
                          (long long)d[0], (long long)r, (long long)c);
    if (d[0] > INT32_MAX || r * c * ch > INT32_MAX)
        return cuvae_fail(st,
                          "%s: too large: %lld images of %lld x %lld%s, more than 2^31 images or "
                          "values an image",
                          s->name, (long long)d[0], (long long)r, (long long)c,
                          ch == 3 ? " x 3" : "");
    *n = d[0];
    *channels = (int)ch;
    *rows = (int)r;
    *cols = (int)c;
    *interleaved = hwc;
    return 0;
}

int cuvae_npy_peek_images(const char *path, const char *key, const char *fallback, int64_t limit,
                          int64_t *n_kept, int64_t *n_file, int *channels, int *rows, int *cols,
                          uint64_t *staging, cuvae_status *st)
{
    npy_source s;
    cuvae_npy_header h;
    int interleaved = 0;
    if (source_open(&s, path, key, fallback, 1, st)) return -1;
    int rc = source_header(&s, &h, st) ||
                     image_shape(&s, &h, n_file, channels, rows, cols, &interleaved, st)
                 ? -1
                 : 0;
    *staging = s.staging;
    source_close(&s);
    if (rc) return -1;
    *n_kept = (limit > 0 && limit < *n_file) ? limit : *n_file;
    return 0;
}

int cuvae_npy_peek_float(const char *path, const char *key, const char *fallback, int *is_float,
                         int *resident, cuvae_status *st)
{
    npy_source s;
    cuvae_npy_header h;
    int64_t n = 0;
    int channels = 1, rows = 0, cols = 0, interleaved = 0;
    if (source_open(&s, path, key, fallback, 1, st)) return -1;
    int rc = source_header(&s, &h, st) ||
                     image_shape(&s, &h, &n, &channels, &rows, &cols, &interleaved, st)
                 ? -1
                 : 0;
    source_close(&s);
    if (rc) return -1;
    *is_float = h.is_float;
    /* What cuvae_npy_load_images allocates a value beyond the mapping (or the inflated member,
     * counted as staging): interleaved data are reordered (float32 kept float32 at worst), and
     * float32 data become bytes when they turn out to lie in [0, 1]. */
    *resident = h.is_float ? (interleaved ? 4 : 1) : (interleaved ? 1 : 0);
    return 0;
}

/* The range of the first `count` float32 values at src (file order); fails on the first value
 * that is not finite, naming its element and example. */
static int float_range(const npy_source *s, const uint8_t *src, uint64_t count, uint64_t d,
                       float *lo, float *hi, cuvae_status *st)
{
    float l = INFINITY, h = -INFINITY;
    for (uint64_t i = 0; i < count; i++) {
        float v;
        memcpy(&v, src + 4 * i, 4); /* '<f4' on a little-endian host */
        if (!isfinite(v))
            return cuvae_fail(st,
                              "%s: element %llu (example %llu) is %s: expected finite pixel "
                              "values",
                              s->name, (unsigned long long)i, (unsigned long long)(i / d),
                              isnan(v) ? "NaN" : "infinite");
        l = v < l ? v : l;
        h = v > h ? v : h;
    }
    *lo = l;
    *hi = h;
    return 0;
}

/* The first n examples of hw pixels x channels into dst, planar (CHW): from interleaved (HWC)
 * source order when `interleaved`. to_bytes (float32 data, all in [0, 1]): each value becomes
 * the byte round(255 x), exact for data written as bytes / 255; otherwise values of `size` bytes
 * are copied as they are. */
static void copy_pixels(const uint8_t *src, int64_t n, int hw, int channels, int interleaved,
                        int to_bytes, int size, uint8_t *dst)
{
    uint64_t d = (uint64_t)hw * (uint64_t)channels;
    for (int64_t e = 0; e < n; e++)
        for (int c = 0; c < channels; c++)
            for (int p = 0; p < hw; p++) {
                uint64_t o = (uint64_t)e * d + (uint64_t)c * hw + (uint64_t)p;
                uint64_t i = interleaved ? (uint64_t)e * d + (uint64_t)p * channels + c : o;
                if (to_bytes) {
                    float v;
                    memcpy(&v, src + 4 * i, 4);
                    dst[o] = (uint8_t)lrintf(v * 255.0f);
                } else {
                    memcpy(dst + (size_t)size * o, src + (size_t)size * i, (size_t)size);
                }
            }
}

int cuvae_npy_load_images(cuvae_dataset *ds, const char *path, const char *key,
                          const char *fallback, int64_t limit, int64_t *n_file, cuvae_status *st)
{
    npy_source s;
    cuvae_npy_header h;
    int channels = 1, rows = 0, cols = 0, interleaved = 0, rc = -1;
    if (source_open(&s, path, key, fallback, 0, st)) return -1;
    if (source_header(&s, &h, st) ||
        image_shape(&s, &h, n_file, &channels, &rows, &cols, &interleaved, st))
        goto done;
    int64_t n = (limit > 0 && limit < *n_file) ? limit : *n_file;
    uint64_t kept = (uint64_t)n * (uint64_t)channels * (uint64_t)rows * (uint64_t)cols;
    const uint8_t *data = s.npy + h.data_offset;
    float lo = 0.0f, hi = 1.0f;
    if (h.is_float && float_range(&s, data, kept, kept / (uint64_t)n, &lo, &hi, st)) goto done;
    /* float32 in [0, 1] works as scaled bytes; other float data stay float32 (the Gaussian
     * likelihood's), with their range kept for display. */
    int to_bytes = h.is_float && lo >= 0.0f && hi <= 1.0f;
    int size = h.is_float && !to_bytes ? 4 : 1;
    if (to_bytes || interleaved) {
        /* Converted (or, for interleaved colour, reordered) into pixels of our own; the mapping
         * or the inflated member goes when this returns. The memory estimate counts these as the
         * data and an inflated member as staging, so the peak is what it announces. */
        ds->pixels = cuvae_malloc((size_t)kept * (size_t)size, "pixels", st);
        if (!ds->pixels) goto done;
        copy_pixels(data, n, rows * cols, channels, interleaved, to_bytes, size, ds->pixels);
    } else {
        /* The values stay where they are; the dataset takes over the mapping or the buffer. */
        ds->pixels = (uint8_t *)(uintptr_t)data;
        if (s.inflated) {
            ds->block = s.inflated;
            s.inflated = NULL;
        } else {
            ds->block = s.map;
            ds->block_len = s.map_len;
            ds->block_mapped = 1;
            s.map = NULL;
        }
    }
    ds->is_float = size == 4;
    ds->lo = size == 4 ? lo : 0.0f;
    ds->hi = size == 4 ? hi : 1.0f;
    ds->n = n;
    ds->channels = channels;
    ds->rows = rows;
    ds->cols = cols;
    ds->d = channels * rows * cols;
    rc = 0;
done:
    source_close(&s);
    return rc;
}

static int64_t label_at(const cuvae_npy_header *h, const uint8_t *p)
{
    uint64_t u = 0;
    for (int b = h->itemsize - 1; b >= 0; b--) u = u << 8 | p[b];
    if (h->is_signed && h->itemsize < 8 && (u >> (8 * h->itemsize - 1)) & 1)
        u |= ~(uint64_t)0 << (8 * h->itemsize);
    return h->is_signed ? (int64_t)u : (u > INT64_MAX ? -1 : (int64_t)u);
}

int cuvae_npy_load_labels(cuvae_dataset *ds, const char *path, const char *fallback, int64_t n_file,
                          const char *images_path, cuvae_status *st)
{
    npy_source s;
    cuvae_npy_header h;
    int rc = -1;
    if (source_open(&s, path, NULL, fallback, 0, st)) return -1;
    if (source_header(&s, &h, st)) goto done;
    if (h.is_float) {
        cuvae_fail(st, "%s: dtype '%s': expected integer labels", s.name, h.descr);
        goto done;
    }
    if (!(h.ndim == 1 || (h.ndim == 2 && h.shape[1] == 1))) {
        cuvae_fail(st, "%s: %d dimensions: expected labels of shape (N,) or (N, 1)", s.name,
                   h.ndim);
        goto done;
    }
    if (h.shape[0] != n_file) {
        cuvae_fail(st, "%s: %lld labels but %s has %lld images", s.name, (long long)h.shape[0],
                   images_path, (long long)n_file);
        goto done;
    }
    ds->labels = cuvae_malloc(ds->n > 0 ? (size_t)ds->n : 1, "labels", st);
    if (!ds->labels) goto done;
    const uint8_t *data = s.npy + h.data_offset;
    for (int64_t i = 0; i < ds->n; i++) {
        int64_t v = label_at(&h, data + (size_t)i * (size_t)h.itemsize);
        if (v < 0 || v > 255) {
            cuvae_fail(st, "%s: label %lld at position %lld: expected 0 to 255", s.name,
                       (long long)v, (long long)i);
            goto done;
        }
        ds->labels[i] = (uint8_t)v;
    }
    rc = 0;
done:
    source_close(&s);
    return rc;
}
