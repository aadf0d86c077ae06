/* NumPy data: .npy files (memory-mapped) and .npz archives (a member, stored or deflated), read as
 * image sets and label arrays for dataset.c, which picks this reader by the file's first bytes. */
#ifndef CUVAE_NPY_H
#define CUVAE_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUVAE_NPY_MAX_DIMS 8
/* The largest header accepted (NumPy itself reads at most 10000 bytes by default). */
#define CUVAE_NPY_MAX_HEADER 65536u

typedef struct {
    char descr[16]; /* as written: "|u1", "<f4", ... */
    int itemsize;   /* bytes an element */
    int is_float;   /* '<f4' */
    int is_signed;  /* an integer type with a sign */
    int ndim;
    int64_t shape[CUVAE_NPY_MAX_DIMS];
    uint64_t data_offset; /* from the start of the .npy to the first element */
    uint64_t data_bytes;  /* elements x itemsize */
} cuvae_npy_header;

/* Parses the header at p[0..len) (len may stop short of the data; it must hold the header).
 * Accepts C-order little-endian (or byte-sized) unsigned/signed integers of 1, 2, 4, 8 bytes and
 * float32; refuses Fortran order, other dtypes, malformed or oversized headers with one line
 * naming `name` (the file, or "file: member"). Sizes are checked for overflow. */
int cuvae_npy_parse_header(const uint8_t *p, size_t len, const char *name, cuvae_npy_header *h,
                           cuvae_status *st);

/* The .npz directory: finds the member `key` + ".npy" (or `key`; with key NULL or empty, `fallback`
 * + ".npy", else the only member). On success data_off, csize, usize, method and crc describe it
 * within p[0..len). Refuses what is not a zip, encrypted or otherwise compressed members, zip64
 * directories, entries that point outside the file. `member` receives the member's name. */
int cuvae_npz_find(const uint8_t *p, size_t len, const char *path, const char *key,
                   const char *fallback, uint64_t *data_off, uint64_t *csize, uint64_t *usize,
                   int *method, uint32_t *crc, char *member, size_t member_len, cuvae_status *st);

/* 1 when the first bytes (n >= 6 of them) are a .npy's magic, 2 a zip's ("PK\3\4" or an empty
 * archive's "PK\5\6"), else 0. */
int cuvae_npy_sniff(const uint8_t *p, size_t n);

/* As cuvae_idx_peek_images, for a .npy or .npz (key/fallback as cuvae_npz_find): images are
 * N x H x W, N x D, N x H x W x C or N x C x H x W with C = 1 or 3 (channels-last where a shape
 * fits both). *staging: the bytes a deflated member takes while it is read (0 for .npy and stored
 * members: mapped). */
int cuvae_npy_peek_images(const char *path, const char *key, const char *fallback, int64_t limit,
                          int64_t *n_kept, int64_t *n_file, int *channels, int *rows, int *cols,
                          uint64_t *staging, cuvae_status *st);

/* For the memory estimate, from the header: 1 in *is_float when the images' array of a .npy or
 * .npz is float32 (their values, unread, may turn out to be in [0, 1] and load as bytes), 0 when
 * uint8; *resident: the bytes a value loading allocates beyond the file's mapping (or an inflated
 * member, counted as staging): 0 for planar uint8 data, which stay in the mapping. */
int cuvae_npy_peek_float(const char *path, const char *key, const char *fallback, int *is_float,
                         int *resident, cuvae_status *st);

/* Loads the first `limit` (0 = all) images, planar (C x H x W). Planar uint8 data stay in the
 * file's mapping (or the inflated member); interleaved colour (N x H x W x 3) is reordered into
 * pixels of the dataset's own; float32 data all in [0, 1] become bytes round(255 x), other float32
 * data stay float32 (is_float, with their range; planar ones in the mapping); a value that is not
 * finite is refused, naming its element and example. */
int cuvae_npy_load_images(cuvae_dataset *ds, const char *path, const char *key,
                          const char *fallback, int64_t limit, int64_t *n_file, cuvae_status *st);

/* Labels: a 1-D integer array (or N x 1) of n_file values in 0..255; keeps ds->n of them. */
int cuvae_npy_load_labels(cuvae_dataset *ds, const char *path, const char *fallback, int64_t n_file,
                          const char *images_path, cuvae_status *st);

/* One array of an .npz being written: `name` (".npy" is added), a NumPy type string ("<f4",
 * "|u1") with its element size, 1 or 2 axes, and C-order data of shape[0] x ... elements. */
typedef struct {
    const char *name;
    const char *descr;
    int itemsize;
    int ndim;
    int64_t shape[2];
    const void *data;
} cuvae_npz_member;

/* Writes the arrays as a stored (uncompressed) .npz, as np.savez does, through the one file
 * writer (atomic replacement); numpy.load and cuvae_npz_find read it. Fewer than 65535 members,
 * at most 4 GiB in all (no zip64). npz_write.c. */
int cuvae_npz_write(const char *path, const cuvae_npz_member *members, int count, cuvae_status *st);

#ifdef __cplusplus
}
#endif
#endif
