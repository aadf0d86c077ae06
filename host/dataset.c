/* IDX datasets: reading (gzip or raw, detected from the first bytes) with every header field
 * checked, writing (for tests and tools), and the data of a run (split and binarization).
 *
 * Reading never trusts the header's sizes for allocation: the payload buffer grows as bytes
 * actually arrive (doubling, up to what the header announces), so a 40-byte file claiming
 * 4000 x 1000 x 1000 pixels fails as truncated after a few kilobytes of work. The header must
 * describe the file exactly: a short payload, extra bytes after it, a gzip stream that is cut
 * short or fails its CRC are all errors naming the file.
 *
 * The data of a run (cuvae_run_data_load):
 *   - test set: data.test_images/test_labels, first data.limit_test examples (0 = all);
 *   - training file: data.train_images/train_labels, first data.limit_train examples; its images
 *     must have the test set's size;
 *   - validation split: p = cuvae_permutation(train.seed, CUVAE_STREAM_SPLIT, counter 0) of
 *     [0, n); the examples p[0..data.validation) form the validation set and the others the
 *     training set, both kept in the file's order (ascending indices);
 *   - binarization (data.binarize):
 *       none:    every set stays as bytes 0..255;
 *       static:  the training set (after the split; image i is its i-th example) is binarized once
 *                with cuvae_binarize_fixed(seed = train.seed);
 *       dynamic: the training set stays as bytes and train_dynamic = 1, so the backend draws a
 *                fresh binarization each step;
 *     whenever binarize != none, the test set is binarized once with seed
 *     CUVAE_TEST_BINARIZE_SEED and the validation set with CUVAE_TEST_BINARIZE_SEED + 1: fixed
 *     seeds, so their figures compare across runs and training seeds (the published-likelihood
 *     protocol). */
#include "dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "file_write.h"
#include "philox.h"

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

/* Reads and checks the magic (unsigned bytes, `ndims` dimensions) and the dimensions. */
static int read_header(idx_reader *r, int ndims, const char *kind, uint32_t *dims, cuvae_status *st)
{
    unsigned char h[16];
    size_t want = 4 + 4 * (size_t)ndims, got = 0, part;
    if (reader_read(r, h, 4, &part, st)) return -1;
    got += part;
    if (got == 4) {
        uint32_t magic = be32(h), expected = 0x800u | (uint32_t)ndims;
        if (h[0] != 0 || h[1] != 0 || h[3] != (unsigned)ndims)
            return cuvae_fail(st, "%s: wrong magic 0x%08x, expected 0x%08x (an IDX %s file)",
                              r->path, magic, expected, kind);
        if (h[2] != 0x08)
            return cuvae_fail(st, "%s: data type 0x%02x (%s), expected 0x08 (unsigned byte)",
                              r->path, h[2], idx_type_name(h[2]));
        if (reader_read(r, h + 4, want - 4, &part, st)) return -1;
        got += part;
    }
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

/* The image file's header, checked: dims and the payload's size in bytes. */
static int image_header(idx_reader *r, const char *path, uint32_t *dims, uint64_t *total,
                        cuvae_status *st)
{
    if (read_header(r, 3, "image", dims, st)) return -1;
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0)
        return cuvae_fail(st, "%s: a dimension is zero: header says %u images of %u x %u pixels",
                          path, dims[0], dims[1], dims[2]);
    uint64_t d = (uint64_t)dims[1] * dims[2];         /* < 2^64: both factors < 2^32 */
    *total = d <= INT_MAX ? d * dims[0] : UINT64_MAX; /* < 2^63 when d fits an int */
    if (dims[0] > INT32_MAX || *total > IDX_MAX_PAYLOAD)
        return cuvae_fail(st,
                          "%s: too large: header says %u images of %u x %u pixels, more than the "
                          "%d GiB and 2^31 images this reader accepts",
                          path, dims[0], dims[1], dims[2], (int)(IDX_MAX_PAYLOAD >> 30));
    return 0;
}

static int load_images(cuvae_dataset *ds, const char *path, int64_t limit, uint32_t *n_file,
                       cuvae_status *st)
{
    idx_reader *r = reader_open(path, st);
    if (!r) return -1;
    uint32_t dims[3];
    uint64_t total = 0;
    int rc = -1;
    if (image_header(r, path, dims, &total, st)) goto done;
    uint64_t d = (uint64_t)dims[1] * dims[2];
    int64_t n = (limit > 0 && limit < (int64_t)dims[0]) ? limit : (int64_t)dims[0];
    if (read_payload(r, total, (uint64_t)n * d, "pixels", &ds->pixels, st)) goto done;
    if (check_no_trailing(r, total, "pixels", st)) goto done;
    ds->n = n;
    ds->rows = (int)dims[1];
    ds->cols = (int)dims[2];
    ds->d = (int)d;
    *n_file = dims[0];
    rc = 0;
done:
    reader_close(r);
    return rc;
}

/* Only the header of an image file: the examples kept (limit applied), the file's count and the
 * image size. */
static int peek_images(const char *path, int64_t limit, int64_t *n_kept, int64_t *n_file, int *rows,
                       int *cols, cuvae_status *st)
{
    if (!path || !*path) return cuvae_fail(st, "dataset: no image file given");
    idx_reader *r = reader_open(path, st);
    if (!r) return -1;
    uint32_t dims[3];
    uint64_t total = 0;
    int rc = image_header(r, path, dims, &total, st);
    reader_close(r);
    if (rc) return -1;
    *n_file = dims[0];
    *n_kept = (limit > 0 && limit < (int64_t)dims[0]) ? limit : (int64_t)dims[0];
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
    int rc = -1;
    if (read_header(r, 1, "label", &count, st)) goto done;
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

int cuvae_dataset_load(cuvae_dataset *ds, const char *images_path, const char *labels_path,
                       int64_t limit, cuvae_status *st)
{
    memset(ds, 0, sizeof *ds);
    if (!images_path || !*images_path) return cuvae_fail(st, "dataset: no image file given");
    uint32_t n_file = 0; /* the label file must match the whole image file, not the kept prefix */
    if (load_images(ds, images_path, limit, &n_file, st) ||
        (labels_path && *labels_path && load_labels(ds, labels_path, images_path, n_file, st))) {
        cuvae_dataset_free(ds);
        return -1;
    }
    return 0;
}

void cuvae_dataset_free(cuvae_dataset *ds)
{
    if (!ds) return;
    free(ds->pixels);
    free(ds->labels);
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

/* Writes header + data to path (gzip when it ends in .gz); a failed write removes the file. */
static int write_idx_file(const char *path, const unsigned char *hdr, size_t hlen,
                          const uint8_t *data, size_t len, cuvae_status *st)
{
    if (ends_with(path, ".gz")) {
        gzFile g = gzopen(path, "wb6");
        if (!g) return cuvae_fail(st, "%s: cannot create: %s", path, strerror(errno));
        const uint8_t *parts[2] = {hdr, data};
        size_t sizes[2] = {hlen, len};
        for (int p = 0; p < 2; p++) {
            for (size_t at = 0; at < sizes[p];) {
                /* gzwrite counts in unsigned int and answers in int: write in 1 GiB pieces. */
                size_t k = sizes[p] - at < ((size_t)1 << 30) ? sizes[p] - at : ((size_t)1 << 30);
                if (gzwrite(g, parts[p] + at, (unsigned)k) != (int)k) {
                    int zerr = Z_OK;
                    const char *why = gzerror(g, &zerr);
                    cuvae_fail(st, "%s: write failed: %s", path,
                               zerr == Z_ERRNO ? strerror(errno) : why);
                    gzclose(g);
                    remove(path);
                    return -1;
                }
                at += k;
            }
        }
        int rc = gzclose(g);
        if (rc != Z_OK) {
            cuvae_fail(st, "%s: write failed when closing: %s", path,
                       rc == Z_ERRNO ? strerror(errno) : zError(rc));
            remove(path);
            return -1;
        }
        return 0;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return cuvae_fail(st, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(hdr, 1, hlen, f) == hlen && fwrite(data, 1, len, f) == len;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        remove(path);
        return cuvae_fail(st, "%s: write failed: %s", path, strerror(err));
    }
    return 0;
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
    /* The reader refuses empty dimensions, so the writer does not produce them. */
    if (ds->n <= 0 || ds->n > INT32_MAX || ds->rows <= 0 || ds->cols <= 0 ||
        (int64_t)ds->rows * ds->cols != ds->d)
        return cuvae_fail(st, "%s: cannot write %lld images of %d x %d pixels (d = %d)",
                          images_path, (long long)ds->n, ds->rows, ds->cols, ds->d);
    unsigned char hdr[16] = {0, 0, 0x08, 0x03};
    put_be32(hdr + 4, (uint32_t)ds->n);
    put_be32(hdr + 8, (uint32_t)ds->rows);
    put_be32(hdr + 12, (uint32_t)ds->cols);
    if (write_idx_file(images_path, hdr, sizeof hdr, ds->pixels, (size_t)ds->n * (size_t)ds->d, st))
        return -1;
    if (ds->labels && labels_path && *labels_path) {
        unsigned char lhdr[8] = {0, 0, 0x08, 0x01};
        put_be32(lhdr + 4, (uint32_t)ds->n);
        if (write_idx_file(labels_path, lhdr, sizeof lhdr, ds->labels, (size_t)ds->n, st))
            return -1;
    }
    return 0;
}

/* Splits `all` into validation (the first n_valid entries of the seeded permutation) and training
 * (the rest), both in ascending index order. */
static int split_train_valid(cuvae_run_data *rd, cuvae_dataset *all, int64_t n_valid, uint64_t seed,
                             cuvae_status *st)
{
    int64_t n = all->n;
    int32_t *perm = cuvae_malloc((size_t)n * sizeof *perm, "the validation split", st);
    uint8_t *in_valid = cuvae_calloc((size_t)n, 1, "the validation split", st);
    int32_t *idx = cuvae_malloc((size_t)n * sizeof *idx, "the validation split", st);
    int rc = -1;
    if (!perm || !in_valid || !idx) goto done;
    cuvae_permutation(seed, CUVAE_STREAM_SPLIT, 0, perm, n);
    for (int64_t i = 0; i < n_valid; i++) in_valid[perm[i]] = 1;
    /* idx: validation indices ascending, then training indices ascending (a counting sort). */
    int64_t nv = 0, nt = n_valid;
    for (int64_t i = 0; i < n; i++) idx[in_valid[i] ? nv++ : nt++] = (int32_t)i;
    if (cuvae_dataset_subset(&rd->valid, all, idx, n_valid, st)) goto done;
    if (cuvae_dataset_subset(&rd->train, all, idx + n_valid, n - n_valid, st)) goto done;
    rc = 0;
done:
    free(perm);
    free(in_valid);
    free(idx);
    return rc;
}

int cuvae_run_data_load(cuvae_run_data *rd, const cuvae_config *c, int need_train, cuvae_status *st)
{
    memset(rd, 0, sizeof *rd);
    if (cuvae_dataset_load(&rd->test, c->data.test_images, c->data.test_labels, c->data.limit_test,
                           st))
        return -1;
    if (need_train) {
        cuvae_dataset all;
        if (cuvae_dataset_load(&all, c->data.train_images, c->data.train_labels,
                               c->data.limit_train, st)) {
            cuvae_run_data_free(rd);
            return -1;
        }
        int rc = 0;
        if (all.rows != rd->test.rows || all.cols != rd->test.cols) {
            rc = cuvae_fail(st,
                            "data.train_images: %s has %d x %d images but data.test_images %s "
                            "has %d x %d",
                            c->data.train_images, all.rows, all.cols, c->data.test_images,
                            rd->test.rows, rd->test.cols);
        } else if (c->data.validation < 0 || c->data.validation >= all.n) {
            rc = cuvae_fail(st,
                            "data.validation: %d must be smaller than the %lld training "
                            "examples in %s%s",
                            c->data.validation, (long long)all.n, c->data.train_images,
                            c->data.validation < 0 ? " and not negative" : "");
        } else if (c->data.validation == 0) {
            rd->train = all; /* the whole file, already in order: no copy */
            memset(&all, 0, sizeof all);
        } else {
            rc = split_train_valid(rd, &all, c->data.validation, c->train.seed, st);
        }
        cuvae_dataset_free(&all);
        if (rc) {
            cuvae_run_data_free(rd);
            return -1;
        }
        if (c->data.binarize == CUVAE_BIN_STATIC)
            cuvae_binarize_fixed(rd->train.pixels, rd->train.n, rd->train.d, c->train.seed);
        rd->train_dynamic = c->data.binarize == CUVAE_BIN_DYNAMIC;
    }
    if (c->data.binarize != CUVAE_BIN_NONE) {
        cuvae_binarize_fixed(rd->test.pixels, rd->test.n, rd->test.d, CUVAE_TEST_BINARIZE_SEED);
        if (rd->valid.n > 0)
            cuvae_binarize_fixed(rd->valid.pixels, rd->valid.n, rd->valid.d,
                                 CUVAE_TEST_BINARIZE_SEED + 1);
    }
    return 0;
}

int cuvae_run_data_peek(const cuvae_config *c, int need_train, cuvae_run_shape *sh,
                        cuvae_status *st)
{
    memset(sh, 0, sizeof *sh);
    int64_t n_file = 0;
    if (peek_images(c->data.test_images, c->data.limit_test, &sh->n_test, &n_file, &sh->rows,
                    &sh->cols, st))
        return -1;
    sh->d = sh->rows * sh->cols; /* <= INT_MAX: image_header checked it */
    if (!need_train) return 0;
    int rows = 0, cols = 0;
    if (peek_images(c->data.train_images, c->data.limit_train, &sh->n_kept, &n_file, &rows, &cols,
                    st))
        return -1;
    if (rows != sh->rows || cols != sh->cols)
        return cuvae_fail(st,
                          "data.train_images: %s has %d x %d images but data.test_images %s "
                          "has %d x %d",
                          c->data.train_images, rows, cols, c->data.test_images, sh->rows,
                          sh->cols);
    if (c->data.validation < 0 || c->data.validation >= sh->n_kept)
        return cuvae_fail(st,
                          "data.validation: %d must be smaller than the %lld training "
                          "examples in %s%s",
                          c->data.validation, (long long)sh->n_kept, c->data.train_images,
                          c->data.validation < 0 ? " and not negative" : "");
    sh->n_valid = c->data.validation;
    sh->n_train = sh->n_kept - sh->n_valid;
    return 0;
}

void cuvae_run_data_memory(const cuvae_run_shape *sh, const cuvae_config *c, cuvae_mem_plan *p)
{
    uint64_t d = (uint64_t)sh->d, nt = (uint64_t)sh->n_test, nk = (uint64_t)sh->n_kept;
    /* Pixels (and a byte of label each) of the test set and of the kept training examples. */
    uint64_t held = cuvae_mem_mul(nt, d + (c->data.test_labels[0] ? 1 : 0));
    held = cuvae_mem_add_bytes(held, cuvae_mem_mul(nk, d + (c->data.train_labels[0] ? 1 : 0)));
    cuvae_mem_add(p, "data", held);
    if (sh->n_valid > 0) {
        /* The split copies the kept examples and holds three index arrays while it does. */
        cuvae_mem_add(p, "data", cuvae_mem_mul(nk, d + (c->data.train_labels[0] ? 1 : 0)));
        cuvae_mem_add(p, "index arrays", cuvae_mem_mul(nk, 2 * sizeof(int32_t) + sizeof(uint8_t)));
    }
    /* The trainer's epoch permutation. */
    cuvae_mem_add(p, "index arrays", cuvae_mem_mul((uint64_t)sh->n_train, sizeof(int32_t)));
}

void cuvae_run_data_free(cuvae_run_data *rd)
{
    if (!rd) return;
    cuvae_dataset_free(&rd->train);
    cuvae_dataset_free(&rd->valid);
    cuvae_dataset_free(&rd->test);
    rd->train_dynamic = 0;
}
