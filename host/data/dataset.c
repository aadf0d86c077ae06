/* IDX datasets: reading (gzip or raw, detected from the first bytes) with every header field
 * checked, and writing (for tests and tools); the entry points that pick IDX or NumPy (npy.c) by
 * a file's first bytes. The data of a run (split, binarization) are built on
 * this in run_data.c.
 *
 * Image files are 3-D (N x H x W, greyscale) or 4-D (N x H x W x C, C = 1 or 3: greyscale or RGB,
 * the channels interleaved per pixel as the file stores them). In memory every example is planar,
 * C x H x W (CHW): a 4-D file is transposed once as it is loaded (a no-op for C = 1, so a 4-D
 * greyscale file gives exactly the bytes of its 3-D twin). CHW is what convolution layers (and
 * PyTorch's NCHW tensors) take; the linear model flattens either; so upload, the batch gather and
 * evaluation see one flat vector of D = C*H*W bytes per example whatever the file's layout, and
 * the PNG writer (png.c) is the one place that interleaves the channels back.
 *
 * Reading never trusts the header's sizes for allocation: the payload buffer grows as bytes
 * actually arrive (doubling, up to what the header announces), so a 40-byte file claiming
 * 4000 x 1000 x 1000 pixels fails as truncated after a few kilobytes of work. The header must
 * describe the file exactly: a short payload, extra bytes after it, a gzip stream that is cut
 * short or fails its CRC are all errors naming the file. */
#include "dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <sys/mman.h>

#include "file_write.h"
#include "image_dir.h"
#include "npy.h"

/* The largest payload accepted: far above any IDX dataset in use (MNIST's training images are
 * 47 MB), small enough that a forged header cannot ask for absurd memory. */
#define IDX_MAX_PAYLOAD ((uint64_t)4 << 30)
#define IDX_IO_CHUNK ((size_t)1 << 16)
/* How much decompressed data past the announced payload is decoded to tell a corrupt stream
 * (which its CRC then reveals) from one that merely holds more than the header says. */
#define IDX_TRAILING_DRAIN ((uint64_t)64 << 20)

typedef struct {
    const char *path;
    FILE *f;
    int gz;         /* the file starts with the gzip magic 1f 8b */
    int zinit;      /* inflateInit2 succeeded: inflateEnd is owed */
    int in_eof;     /* fread has reached the end of the file */
    int stream_end; /* gz: the last member ended and no input follows */
    z_stream zs;    /* next_in/avail_in also serve raw files as the buffered input */
    unsigned char in[IDX_IO_CHUNK];
    unsigned char scratch[IDX_IO_CHUNK]; /* sink for payload bytes beyond `limit` */
} idx_reader;

static void reader_close(idx_reader *r)
{
    if (!r) return;
    if (r->zinit) inflateEnd(&r->zs);
    if (r->f) fclose(r->f);
    free(r);
}

static int reader_fill(idx_reader *r, cuvae_status *st)
{
    size_t n = fread(r->in, 1, sizeof r->in, r->f);
    if (n < sizeof r->in) {
        if (ferror(r->f)) return cuvae_fail(st, "%s: read error: %s", r->path, strerror(errno));
        r->in_eof = 1;
    }
    r->zs.next_in = r->in;
    r->zs.avail_in = (uInt)n;
    return 0;
}

static idx_reader *reader_open(const char *path, cuvae_status *st)
{
    idx_reader *r = cuvae_calloc(1, sizeof *r, "the IDX reader", st);
    if (!r) return NULL;
    r->path = path;
    r->f = cuvae_open_input(path, st);
    if (!r->f) {
        free(r);
        return NULL;
    }
    if (reader_fill(r, st)) goto fail;
    r->gz = r->zs.avail_in >= 2 && r->in[0] == 0x1f && r->in[1] == 0x8b;
    if (r->gz) {
        unsigned char *next = r->zs.next_in;
        uInt avail = r->zs.avail_in;
        /* 15 + 32: a 32 KiB window with gzip (or zlib) header detection and CRC checking. */
        int rc = inflateInit2(&r->zs, 15 + 32);
        if (rc != Z_OK) {
            cuvae_fail(st, "%s: cannot start gzip decoding: %s", path, zError(rc));
            goto fail;
        }
        r->zinit = 1;
        r->zs.next_in = next;
        r->zs.avail_in = avail;
    }
    return r;
fail:
    reader_close(r);
    return NULL;
}

/* Reads up to n decoded bytes; *got < n only at the clean end of the data. */
static int reader_read(idx_reader *r, unsigned char *out, size_t n, size_t *got, cuvae_status *st)
{
    *got = 0;
    while (*got < n) {
        if (r->zs.avail_in == 0 && !r->in_eof) {
            if (reader_fill(r, st)) return -1;
            continue;
        }
        if (!r->gz) {
            if (r->zs.avail_in == 0) break;
            size_t k = n - *got < r->zs.avail_in ? n - *got : r->zs.avail_in;
            memcpy(out + *got, r->zs.next_in, k);
            r->zs.next_in += k;
            r->zs.avail_in -= (uInt)k;
            *got += k;
            continue;
        }
        if (r->stream_end) break;
        if (r->zs.avail_in == 0)
            return cuvae_fail(st,
                              "%s: truncated gzip data: the file ends inside the compressed "
                              "stream (cut short, or corrupt)",
                              r->path);
        size_t want = n - *got < UINT_MAX ? n - *got : UINT_MAX;
        r->zs.next_out = out + *got;
        r->zs.avail_out = (uInt)want;
        int rc = inflate(&r->zs, Z_NO_FLUSH);
        *got += want - r->zs.avail_out;
        if (rc == Z_STREAM_END) {
            /* The member's CRC and length have been verified. Another member may follow
             * (concatenated gzip files are one stream); anything else is garbage. */
            if (r->zs.avail_in == 0 && !r->in_eof && reader_fill(r, st)) return -1;
            if (r->zs.avail_in == 0) {
                r->stream_end = 1;
            } else if (r->zs.next_in[0] == 0x1f) {
                inflateReset(&r->zs);
            } else {
                return cuvae_fail(st, "%s: trailing garbage after the end of the gzip stream",
                                  r->path);
            }
        } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) {
            return cuvae_fail(st, "%s: corrupt gzip data (%s)", r->path,
                              r->zs.msg ? r->zs.msg : "needs a preset dictionary");
        } else if (rc == Z_MEM_ERROR) {
            return cuvae_fail(st, "%s: out of memory while decompressing", r->path);
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return cuvae_fail(st, "%s: gzip decoding failed: %s", r->path, zError(rc));
        }
        /* Z_BUF_ERROR means no progress without more input: the loop refills or reports the
         * truncation above. */
    }
    return 0;
}

static const char *idx_type_name(unsigned t)
{
    switch (t) {
    case 0x09:
        return "signed byte";
    case 0x0b:
        return "short";
    case 0x0c:
        return "int";
    case 0x0d:
        return "float";
    case 0x0e:
        return "double";
    default:
        return "not an IDX type";
    }
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads and checks the magic (unsigned bytes, `ndims` dimensions, or ndims + 1 when `alt` names
 * what that extra dimension holds) and the dimensions; *ndims_out says which. */
static int read_header(idx_reader *r, int ndims, const char *alt, const char *kind, uint32_t *dims,
                       int *ndims_out, cuvae_status *st)
{
    unsigned char h[20];
    size_t want = 4 + 4 * (size_t)ndims, got = 0, part;
    if (reader_read(r, h, 4, &part, st)) return -1;
    got += part;
    if (got == 4) {
        uint32_t magic = be32(h), expected = 0x800u | (uint32_t)ndims;
        int alt_ok = alt && h[3] == (unsigned)ndims + 1;
        if (h[0] != 0 || h[1] != 0 || (h[3] != (unsigned)ndims && !alt_ok))
            return cuvae_fail(st, "%s: wrong magic 0x%08x, expected 0x%08x (an IDX %s file)%s%s",
                              r->path, magic, expected, kind, alt ? " or 0x00000804 " : "",
                              alt ? alt : "");
        if (h[2] != 0x08)
            return cuvae_fail(st, "%s: data type 0x%02x (%s), expected 0x08 (unsigned byte)",
                              r->path, h[2], idx_type_name(h[2]));
        if (alt_ok) {
            ndims++;
            want += 4;
        }
        if (reader_read(r, h + 4, want - 4, &part, st)) return -1;
        got += part;
    }
    *ndims_out = ndims;
    if (got < want)
        return cuvae_fail(st, "%s: truncated header: expected %zu bytes, got %zu%s", r->path, want,
                          got, got == 0 ? " (empty file)" : "");
    for (int i = 0; i < ndims; i++) dims[i] = be32(h + 4 + 4 * i);
    return 0;
}

/* Reads the `total` payload bytes, keeping the first `keep` in a buffer that grows only as data
 * arrives. */
static int read_payload(idx_reader *r, uint64_t total, uint64_t keep, const char *what,
                        uint8_t **out, cuvae_status *st)
{
    uint64_t cap = keep < ((uint64_t)1 << 20) ? keep : ((uint64_t)1 << 20);
    uint8_t *buf = cuvae_malloc((size_t)cap, what, st);
    if (!buf) return -1;
    uint64_t done = 0;
    while (done < total) {
        unsigned char *dst;
        size_t want, got;
        if (done < keep) {
            if (done == cap) {
                uint64_t ncap = cap * 2 < keep ? cap * 2 : keep;
                uint8_t *nb = realloc(buf, (size_t)ncap);
                if (!nb) {
                    free(buf);
                    return cuvae_fail(st, "%s: out of memory reading %s (%llu bytes)", r->path,
                                      what, (unsigned long long)ncap);
                }
                buf = nb;
                cap = ncap;
            }
            dst = buf + done;
            want = (size_t)(cap - done);
        } else {
            dst = r->scratch;
            want = total - done < sizeof r->scratch ? (size_t)(total - done) : sizeof r->scratch;
        }
        if (reader_read(r, dst, want, &got, st)) {
            free(buf);
            return -1;
        }
        done += got;
        if (got < want) break;
    }
    if (done < total) {
        free(buf);
        return cuvae_fail(st, "%s: truncated: expected %llu bytes of %s after the header, got %llu",
                          r->path, (unsigned long long)total, what, (unsigned long long)done);
    }
    *out = buf;
    return 0;
}

/* The header must account for every byte: anything after the payload is an error. For gzip the
 * extra output is decoded a little further first, since a corrupt stream (then reported by its
 * CRC) is the likelier cause. */
static int check_no_trailing(idx_reader *r, uint64_t total, const char *what, cuvae_status *st)
{
    size_t got;
    if (reader_read(r, r->scratch, 1, &got, st)) return -1;
    if (got == 0) return 0;
    if (r->gz) {
        uint64_t drained = 0;
        do {
            if (reader_read(r, r->scratch, sizeof r->scratch, &got, st)) return -1;
            drained += got;
        } while (got == sizeof r->scratch && drained < IDX_TRAILING_DRAIN);
    }
    return cuvae_fail(st,
                      "%s: trailing garbage: the file holds more than the %llu bytes of %s its "
                      "header announces",
                      r->path, (unsigned long long)total, what);
}

/* The image file's header, checked: dims (N, H, W, C; C = 1 for a 3-D file) and the payload's
 * size in bytes. */
static int image_header(idx_reader *r, const char *path, uint32_t *dims, uint64_t *total,
                        cuvae_status *st)
{
    int nd = 3;
    dims[3] = 1;
    if (read_header(r, 3, "(N x H x W x C, C = 1 or 3)", "image", dims, &nd, st)) return -1;
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[3] == 0)
        return cuvae_fail(st, "%s: a dimension is zero: header says %u images of %u x %u pixels%s",
                          path, dims[0], dims[1], dims[2], nd == 4 ? " x 0 channels" : "");
    if (dims[3] != 1 && dims[3] != 3)
        return cuvae_fail(st,
                          "%s: %u channels (header N x H x W x C = %u x %u x %u x %u), expected 1 "
                          "(greyscale) or 3 (RGB)",
                          path, dims[3], dims[0], dims[1], dims[2], dims[3]);
    uint64_t d = (uint64_t)dims[1] * dims[2];         /* < 2^64: both factors < 2^32 */
    d = d <= INT_MAX ? d * dims[3] : UINT64_MAX;      /* dims[3] <= 3 */
    *total = d <= INT_MAX ? d * dims[0] : UINT64_MAX; /* < 2^63 when d fits an int */
    if (dims[0] > INT32_MAX || *total > IDX_MAX_PAYLOAD)
        return cuvae_fail(st,
                          "%s: too large: header says %u images of %u x %u pixels%s, more than "
                          "the %d GiB and 2^31 images this reader accepts",
                          path, dims[0], dims[1], dims[2], dims[3] == 3 ? " x 3 channels" : "",
                          (int)(IDX_MAX_PAYLOAD >> 30));
    return 0;
}

/* Interleaved (HWC, as the file stores it) to planar (CHW), example by example, in place. */
static int to_planar(uint8_t *pixels, int64_t n, int hw, int channels, const char *path,
                     cuvae_status *st)
{
    if (channels == 1) return 0;
    size_t d = (size_t)hw * (size_t)channels;
    uint8_t *tmp = cuvae_malloc(d, "a colour image", st);
    if (!tmp) return cuvae_fail_prefix(st, "%s", path);
    for (int64_t i = 0; i < n; i++) {
        uint8_t *ex = pixels + (size_t)i * d;
        memcpy(tmp, ex, d);
        for (int c = 0; c < channels; c++)
            for (int p = 0; p < hw; p++) ex[(size_t)c * hw + p] = tmp[(size_t)p * channels + c];
    }
    free(tmp);
    return 0;
}

static int load_images(cuvae_dataset *ds, const char *path, int64_t limit, uint32_t *n_file,
                       cuvae_status *st)
{
    idx_reader *r = reader_open(path, st);
    if (!r) return -1;
    uint32_t dims[4];
    uint64_t total = 0;
    int rc = -1;
    if (image_header(r, path, dims, &total, st)) goto done;
    uint64_t d = (uint64_t)dims[1] * dims[2] * dims[3];
    int64_t n = (limit > 0 && limit < (int64_t)dims[0]) ? limit : (int64_t)dims[0];
    if (read_payload(r, total, (uint64_t)n * d, "pixels", &ds->pixels, st)) goto done;
    if (check_no_trailing(r, total, "pixels", st)) goto done;
    if (to_planar(ds->pixels, n, (int)(dims[1] * dims[2]), (int)dims[3], path, st)) goto done;
    ds->n = n;
    ds->channels = (int)dims[3];
    ds->rows = (int)dims[1];
    ds->cols = (int)dims[2];
    ds->d = (int)d;
    *n_file = dims[0];
    rc = 0;
done:
    reader_close(r);
    return rc;
}

int cuvae_idx_peek_images(const char *path, int64_t limit, int64_t *n_kept, int64_t *n_file,
                          int *channels, int *rows, int *cols, cuvae_status *st)
{
    if (!path || !*path) return cuvae_fail(st, "dataset: no image file given");
    idx_reader *r = reader_open(path, st);
    if (!r) return -1;
    uint32_t dims[4];
    uint64_t total = 0;
    int rc = image_header(r, path, dims, &total, st);
    reader_close(r);
    if (rc) return -1;
    *n_file = dims[0];
    *n_kept = (limit > 0 && limit < (int64_t)dims[0]) ? limit : (int64_t)dims[0];
    *channels = (int)dims[3];
    *rows = (int)dims[1];
    *cols = (int)dims[2];
    return 0;
}

static int load_labels(cuvae_dataset *ds, const char *path, const char *images_path,
                       uint32_t n_images, cuvae_status *st)
{
    idx_reader *r = reader_open(path, st);
    if (!r) return -1;
    uint32_t count = 0;
    int rc = -1, nd = 1;
    if (read_header(r, 1, NULL, "label", &count, &nd, st)) goto done;
    if (count == 0) {
        cuvae_fail(st, "%s: a dimension is zero: header says 0 labels", path);
        goto done;
    }
    if (count != n_images) {
        cuvae_fail(st, "%s: %u labels but %s has %u images", path, count, images_path, n_images);
        goto done;
    }
    if (read_payload(r, count, (uint64_t)ds->n, "labels", &ds->labels, st)) goto done;
    if (check_no_trailing(r, count, "labels", st)) goto done;
    rc = 0;
done:
    reader_close(r);
    return rc;
}

/* 0: IDX (or anything else: the IDX reader says what is wrong), 1: .npy, 2: .npz, -1: cannot open.
 */
static int sniff_format(const char *path, cuvae_status *st)
{
    FILE *f = cuvae_open_input(path, st);
    if (!f) return -1;
    uint8_t head[8];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return cuvae_npy_sniff(head, n);
}

int cuvae_dataset_load_any(cuvae_dataset *ds, const char *images_path, const char *key,
                           const char *fallback, const char *labels_path,
                           const char *label_fallback, int64_t limit, cuvae_status *st)
{
    return cuvae_dataset_load_img(ds, images_path, key, fallback, labels_path, label_fallback,
                                  limit, NULL, st);
}

int cuvae_dataset_load_img(cuvae_dataset *ds, const char *images_path, const char *key,
                           const char *fallback, const char *labels_path,
                           const char *label_fallback, int64_t limit, const cuvae_image_opts *img,
                           cuvae_status *st)
{
    memset(ds, 0, sizeof *ds);
    if (!images_path || !*images_path) return cuvae_fail(st, "dataset: no image file given");
    cuvae_image_opts defaults = {0};
    if (!img) img = &defaults;
    int dir = cuvae_image_dir_is(images_path);
    if (dir && img->labels && labels_path && *labels_path)
        return cuvae_fail(st,
                          "%s: labels both from its subfolders (data.folder_labels = 1) and from "
                          "%s: set the labels key empty, or data.folder_labels = 0",
                          images_path, labels_path);
    int kind = dir ? 3 : sniff_format(images_path, st);
    if (kind < 0) return -1;
    int64_t n_file = 0; /* the label file must match the whole image file, not the kept prefix */
    int rc = 0;
    if (kind == 3) {
        rc = cuvae_image_dir_load(ds, images_path, img, limit, &n_file, st);
    } else if (kind > 0) {
        rc = cuvae_npy_load_images(ds, images_path, key, fallback, limit, &n_file, st);
    } else {
        uint32_t n32 = 0;
        rc = load_images(ds, images_path, limit, &n32, st);
        n_file = n32;
    }
    if (!rc && labels_path && *labels_path) {
        int lkind = sniff_format(labels_path, st);
        if (lkind < 0)
            rc = -1;
        else if (lkind > 0)
            rc = cuvae_npy_load_labels(ds, labels_path, label_fallback, n_file, images_path, st);
        else if (n_file > UINT32_MAX)
            rc = cuvae_fail(st, "%s: %lld images: more than an IDX label file can count",
                            images_path, (long long)n_file);
        else
            rc = load_labels(ds, labels_path, images_path, (uint32_t)n_file, st);
    }
    if (rc) cuvae_dataset_free(ds);
    return rc;
}

int cuvae_dataset_load(cuvae_dataset *ds, const char *images_path, const char *labels_path,
                       int64_t limit, cuvae_status *st)
{
    int rc = cuvae_dataset_load_any(ds, images_path, NULL, NULL, labels_path, NULL, limit, st);
    return rc ? -1 : 0;
}

int cuvae_dataset_peek_any(const char *path, const char *key, const char *fallback, int64_t limit,
                           int64_t *n_kept, int64_t *n_file, int *channels, int *rows, int *cols,
                           uint64_t *staging, cuvae_status *st)
{
    return cuvae_dataset_peek_img(path, key, fallback, limit, NULL, n_kept, n_file, channels, rows,
                                  cols, staging, st);
}

int cuvae_dataset_peek_img(const char *path, const char *key, const char *fallback, int64_t limit,
                           const cuvae_image_opts *img, int64_t *n_kept, int64_t *n_file,
                           int *channels, int *rows, int *cols, uint64_t *staging, cuvae_status *st)
{
    *staging = 0;
    if (!path || !*path) return cuvae_fail(st, "dataset: no image file given");
    if (cuvae_image_dir_is(path)) {
        cuvae_image_opts defaults = {0};
        return cuvae_image_dir_peek(path, img ? img : &defaults, limit, n_kept, n_file, channels,
                                    rows, cols, staging, st);
    }
    int kind = sniff_format(path, st);
    if (kind < 0) return -1;
    if (kind > 0) {
        return cuvae_npy_peek_images(path, key, fallback, limit, n_kept, n_file, channels, rows,
                                     cols, staging, st);
    }
    return cuvae_idx_peek_images(path, limit, n_kept, n_file, channels, rows, cols, st);
}

void cuvae_dataset_free(cuvae_dataset *ds)
{
    if (!ds) return;
    if (ds->block_mapped)
        munmap(ds->block, ds->block_len);
    else if (ds->block)
        free(ds->block);
    else
        free(ds->pixels);
    free(ds->labels);
    for (int i = 0; i < ds->n_classes; i++) free(ds->class_names[i]);
    free(ds->class_names);
    memset(ds, 0, sizeof *ds);
}

int cuvae_dataset_subset(cuvae_dataset *dst, const cuvae_dataset *src, const int32_t *idx,
                         int64_t n, cuvae_status *st)
{
    memset(dst, 0, sizeof *dst);
    if (n < 0) return cuvae_fail(st, "dataset subset: negative count %lld", (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= src->n)
            return cuvae_fail(st, "dataset subset: index %d at position %lld is outside [0, %lld)",
                              idx[i], (long long)i, (long long)src->n);
    size_t d = (size_t)src->d;
    dst->pixels = cuvae_malloc((size_t)n * d, "dataset subset pixels", st);
    if (!dst->pixels) return -1;
    if (src->labels) {
        dst->labels = cuvae_malloc((size_t)n, "dataset subset labels", st);
        if (!dst->labels) {
            cuvae_dataset_free(dst);
            return -1;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(dst->pixels + (size_t)i * d, src->pixels + (size_t)idx[i] * d, d);
        if (src->labels) dst->labels[i] = src->labels[idx[i]];
    }
    dst->n = n;
    dst->channels = src->channels;
    dst->rows = src->rows;
    dst->cols = src->cols;
    dst->d = src->d;
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* out = in compressed as gzip exactly as gzopen(path, "wb6") would write it (the same zlib
 * settings, so the same bytes), in memory, for the one writer. */
static int gzip_buffer(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len,
                       const char *path, cuvae_status *st)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, MAX_WBITS + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return cuvae_fail(st, "%s: cannot start gzip compression", path);
    size_t cap = (size_t)deflateBound(&zs, (uLong)n), in_at = 0, out_at = 0;
    uint8_t *buf = cuvae_malloc(cap, "a compressed IDX file", st);
    int zrc = Z_OK;
    /* zlib counts in unsigned int: 1 GiB pieces; the buffer grows should the bound fall short. */
    const size_t piece = (size_t)1 << 30;
    while (buf && zrc == Z_OK) {
        if (out_at == cap) {
            uint8_t *more = realloc(buf, cap * 2);
            if (!more) break;
            buf = more;
            cap *= 2;
        }
        size_t ni = n - in_at < piece ? n - in_at : piece;
        size_t no = cap - out_at < piece ? cap - out_at : piece;
        zs.next_in = (Bytef *)(uintptr_t)(in + in_at);
        zs.avail_in = (uInt)ni;
        zs.next_out = buf + out_at;
        zs.avail_out = (uInt)no;
        zrc = deflate(&zs, in_at + ni == n ? Z_FINISH : Z_NO_FLUSH);
        in_at += ni - zs.avail_in;
        out_at += no - zs.avail_out;
        if (zrc == Z_BUF_ERROR && out_at == cap) zrc = Z_OK; /* out of room: grow and go on */
    }
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        free(buf);
        return buf ? cuvae_fail(st, "%s: gzip compression failed", path) : -1;
    }
    *out = buf;
    *out_len = out_at;
    return 0;
}

/* Writes header + data to path (gzip when it ends in .gz) through the one writer (file_write.h):
 * whatever fails, no partial file is left. */
static int write_idx_file(const char *path, const unsigned char *hdr, size_t hlen,
                          const uint8_t *data, size_t len, cuvae_status *st)
{
    uint8_t *raw = cuvae_malloc(hlen + len, "an IDX file", st), *gz = NULL;
    if (!raw) return -1;
    memcpy(raw, hdr, hlen);
    memcpy(raw + hlen, data, len);
    size_t out_len = hlen + len;
    int rc = ends_with(path, ".gz") ? gzip_buffer(raw, hlen + len, &gz, &out_len, path, st) : 0;
    if (!rc && cuvae_write_file(path, gz ? gz : raw, out_len, st))
        rc = cuvae_fail_prefix(st, "cannot create the IDX file");
    free(gz);
    free(raw);
    return rc;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

int cuvae_dataset_write_idx(const cuvae_dataset *ds, const char *images_path,
                            const char *labels_path, cuvae_status *st)
{
    /* The reader refuses empty dimensions, so the writer does not produce them. Greyscale (0 or
     * 1 channel) is written 3-D, colour 4-D with the planar examples interleaved back (HWC). */
    int ch = ds->channels > 1 ? ds->channels : 1;
    if (ds->n <= 0 || ds->n > INT32_MAX || ds->rows <= 0 || ds->cols <= 0 || (ch != 1 && ch != 3) ||
        (int64_t)ch * ds->rows * ds->cols != ds->d)
        return cuvae_fail(st, "%s: cannot write %lld images of %d x %d pixels x %d (d = %d)",
                          images_path, (long long)ds->n, ds->rows, ds->cols, ch, ds->d);
    unsigned char hdr[20] = {0, 0, 0x08, ch == 1 ? 0x03 : 0x04};
    put_be32(hdr + 4, (uint32_t)ds->n);
    put_be32(hdr + 8, (uint32_t)ds->rows);
    put_be32(hdr + 12, (uint32_t)ds->cols);
    put_be32(hdr + 16, (uint32_t)ch);
    size_t len = (size_t)ds->n * (size_t)ds->d, hw = (size_t)ds->rows * (size_t)ds->cols;
    uint8_t *hwc = ch == 1 ? NULL : cuvae_malloc(len, "interleaved pixels", st);
    if (ch != 1 && !hwc) return -1;
    for (size_t i = 0; hwc && i < (size_t)ds->n; i++)
        for (int c = 0; c < ch; c++)
            for (size_t p = 0; p < hw; p++)
                hwc[i * ds->d + p * ch + c] = ds->pixels[i * ds->d + c * hw + p];
    int rc = write_idx_file(images_path, hdr, ch == 1 ? 16 : 20, hwc ? hwc : ds->pixels, len, st);
    free(hwc);
    if (rc) return -1;
    if (ds->labels && labels_path && *labels_path) {
        unsigned char lhdr[8] = {0, 0, 0x08, 0x01};
        put_be32(lhdr + 4, (uint32_t)ds->n);
        if (write_idx_file(labels_path, lhdr, sizeof lhdr, ds->labels, (size_t)ds->n, st))
            return -1;
    }
    return 0;
}
