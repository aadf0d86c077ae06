/* Image sets: IDX files (MNIST, Fashion-MNIST, KMNIST: N x H x W unsigned bytes; colour sets as
 * 4-D N x H x W x C with C = 1 or 3; and N labels), gzip or raw, read through zlib with every
 * header field validated; NumPy .npy and .npz (npy.h), chosen by the file's first bytes. In memory
 * each example is planar, C x H x W (see dataset.c for why). */
#ifndef CUVAE_DATASET_H
#define CUVAE_DATASET_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "config.h"
#include "memory_plan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint8_t *pixels; /* [n, channels, rows, cols]: planar (CHW); owned, or inside `block`. Bytes,
                      * or with is_float the bytes of float32 values (little-endian, maybe
                      * unaligned in a mapping: read them with memcpy) */
    uint8_t *labels; /* [n] or NULL */
    int64_t n;
    int channels;     /* C: 1 (greyscale) or 3 (RGB); the writer also takes 0 for 1 */
    int rows, cols;   /* H, W */
    int d;            /* channels * rows * cols */
    void *block;      /* what pixels point into (a .npy's mapping, an inflated .npz member) */
    size_t block_len; /* of a mapping */
    int block_mapped; /* block is mmap'ed (munmap), else malloc'ed (free) */

    /* An image folder labelled by its subfolders (image_dir.h): the class name of each label,
     * [n_classes], owned; else NULL. */
    char **class_names;
    int n_classes;
    int is_float; /* float32 values not all in [0, 1] (.npy/.npz): kept as they are, for
                   * the Gaussian likelihood; float32 data in [0, 1] become bytes */
    float lo, hi; /* the values' range: 0 and 1 for bytes */
} cuvae_dataset;

struct cuvae_image_opts;

/* Reads an image file (magic 0x00000803, or 0x00000804 for N x H x W x C) and, when labels_path is
 * non-empty, its label file (0x00000801) whose count must match. Errors name the file and what was
 * wrong ("...: truncated: expected 47040000 bytes of pixels, got 1000", "...: wrong magic
 * 0x00000801, expected 0x00000803 (an IDX image file)", "...: corrupt gzip data: ..."). limit > 0
 * keeps the first `limit` examples. */
int cuvae_dataset_load(cuvae_dataset *ds, const char *images_path, const char *labels_path,
                       int64_t limit, cuvae_status *st);

/* The same for any format: IDX, .npy or .npz, by the files' first bytes. For an .npz, `key` names
 * the images' array (NULL or empty: `fallback`, e.g. "x_train", else the only array) and the
 * labels' are `label_fallback` or the only array. float32 data outside [0, 1] come back with
 * is_float set and their range; a value that is not finite is refused, naming its element. */
int cuvae_dataset_load_any(cuvae_dataset *ds, const char *images_path, const char *key,
                           const char *fallback, const char *labels_path,
                           const char *label_fallback, int64_t limit, cuvae_status *st);

/* The same, where images_path may also be a folder of PNG/JPEG images read with `img`
 * (image_dir.h; NULL: the images' own size and channels, no labels from subfolders). Labels
 * from the subfolders and a labels file are refused together. */
int cuvae_dataset_load_img(cuvae_dataset *ds, const char *images_path, const char *key,
                           const char *fallback, const char *labels_path,
                           const char *label_fallback, int64_t limit,
                           const struct cuvae_image_opts *img, cuvae_status *st);

/* cuvae_idx_peek_images for any format (as cuvae_dataset_load_any); *staging: the bytes reading
 * takes beyond the kept pixels (an .npz member's inflated size), 0 for IDX and mapped files. */
int cuvae_dataset_peek_any(const char *path, const char *key, const char *fallback, int64_t limit,
                           int64_t *n_kept, int64_t *n_file, int *channels, int *rows, int *cols,
                           uint64_t *staging, cuvae_status *st);

/* cuvae_dataset_peek_any with an image folder read as `img` says (NULL: defaults); *staging is
 * then the bytes one image's decoding takes. */
int cuvae_dataset_peek_img(const char *path, const char *key, const char *fallback, int64_t limit,
                           const struct cuvae_image_opts *img, int64_t *n_kept, int64_t *n_file,
                           int *channels, int *rows, int *cols, uint64_t *staging,
                           cuvae_status *st);

/* 1 in *is_float when the images of `path` (a .npy/.npz) are float32, 0 for bytes (IDX too);
 * *resident: bytes a value that loading allocates (IDX: 1; .npy: cuvae_npy_peek_float's). */
int cuvae_dataset_peek_float(const char *path, const char *key, const char *fallback, int *is_float,
                             int *resident, cuvae_status *st);

void cuvae_dataset_free(cuvae_dataset *ds);

/* Only the header of an image file, checked as cuvae_dataset_load checks it: the examples kept
 * (limit > 0 keeps the first `limit`), the file's count and the image shape (C, H, W). Nothing of
 * the payload is read. */
int cuvae_idx_peek_images(const char *path, int64_t limit, int64_t *n_kept, int64_t *n_file,
                          int *channels, int *rows, int *cols, cuvae_status *st);

/* Copies rows idx[0..n) of src into dst (allocating). */
int cuvae_dataset_subset(cuvae_dataset *dst, const cuvae_dataset *src, const int32_t *idx,
                         int64_t n, cuvae_status *st);

/* Writes an IDX image file (and labels when ds->labels and labels_path): used by tests and tools
 * to make small data. Greyscale as 3-D IDX, colour as 4-D (N x H x W x C). gzip when the path ends
 * in .gz (the bytes gzopen "wb6" writes). Through the one writer (file_write.h), built in memory
 * first. */
int cuvae_dataset_write_idx(const cuvae_dataset *ds, const char *images_path,
                            const char *labels_path, cuvae_status *st);

/* The training data of a run (run_data.c): train/validation split by a seeded permutation (the
 * validation examples copied, the training examples left where they are unless static
 * binarization needs a copy to binarize), test set, each binarized as the config says (static:
 * train once with train.seed; validation and test: once with a fixed seed, the published-likelihood
 * protocol, whenever binarize != none). */
typedef struct {
    cuvae_dataset train, valid, test;
    /* The training examples: rows train_rows[0..n_train) of `train` (a validation split that
     * copies only the validation examples: `train` is the whole kept file, its mapping), or,
     * when train_rows is NULL, all n_train = train.n rows in order. */
    int32_t *train_rows;
    int64_t n_train;
    int train_dynamic; /* upload the training set with dynamic binarization */
    int is_float;      /* float32 values outside [0, 1] (every set then is_float) */
    float lo, hi;      /* the range of all the sets' values together (0, 1 for bytes) */
    /* The grey originals ([n, d] bytes, as read) of the sets binarized on the host, for the
     * pictures and the reconstruction error, which compare with what the data hold rather than
     * with the draw the model saw; NULL where a set is not binarized on the host. */
    uint8_t *train_grey, *valid_grey, *test_grey;
} cuvae_run_data;

/* What run data's sets are uploaded as: dtype and bytes a value (1 or 4). */
int cuvae_run_data_value_bytes(const cuvae_run_data *rd);

/* The grey originals of one of rd's sets: its *_grey copy, or its pixels when it has none. */
const uint8_t *cuvae_run_data_originals(const cuvae_run_data *rd, const cuvae_dataset *set);

int cuvae_run_data_load(cuvae_run_data *rd, const cuvae_config *c, int need_train,
                        cuvae_status *st);
/* The same, but a validation split leaves the training examples where they are (train is the
 * whole kept file, train_rows lists them) unless static binarization copies them: the trainer's
 * way, so that a mapped .npy is never copied whole. */
int cuvae_run_data_load_in_place(cuvae_run_data *rd, const cuvae_config *c, int need_train,
                                 cuvae_status *st);
void cuvae_run_data_free(cuvae_run_data *rd);

/* When the training set is an image folder labelled by its subfolders: writes dir/classes.json
 * ({"folder": ..., "classes": [name of id 0, ...]}) and says so on out. Otherwise nothing. */
int cuvae_run_data_write_classes(const cuvae_run_data *rd, const cuvae_config *c, const char *dir,
                                 FILE *out, cuvae_status *st);

/* What a run's data will be, from the files' headers alone: nothing of the payload is read or
 * allocated, so that the model and the memory estimate are checked before a large (or forged)
 * file is inflated. The training file's image size must match the test set's, and data.validation
 * must leave training examples (the same checks, and messages, as cuvae_run_data_load). */
typedef struct {
    int64_t n_test; /* test examples kept (data.limit_test applied) */
    int64_t n_kept; /* training-file examples kept (data.limit_train applied); 0 without training */
    int64_t n_valid; /* of them, the validation split */
    int64_t n_train; /* and the training set */
    int channels, rows, cols, d;
    uint64_t staging; /* bytes of deflated .npz members inflated while the sets are read */

    /* Image folders: the bytes decoding their largest image takes. */
    uint64_t image_decode;
    int value_bytes; /* 4 when a file is float32 (kept so unless all in [0, 1]), else 1 */
    int resident_test, resident_train; /* bytes a value loading allocates: 0 when mapped */
    int in_place; /* for the estimate: loaded by cuvae_run_data_load_in_place (set by the
                   * caller) */
} cuvae_run_shape;

int cuvae_run_data_peek(const cuvae_config *c, int need_train, cuvae_run_shape *sh,
                        cuvae_status *st);

/* The host memory cuvae_run_data_load and the trainer's epoch permutation take for that shape at
 * their peak (the split's copies and index arrays included): parts "data" and "index arrays". */
void cuvae_run_data_memory(const cuvae_run_shape *sh, const cuvae_config *c, cuvae_mem_plan *p);

#ifdef __cplusplus
}
#endif
#endif
