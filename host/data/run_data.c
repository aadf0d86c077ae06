/* The data of a run (see dataset.h), from the readers of dataset.c (IDX, .npy, .npz):
 *   - test set: data.test_images/test_labels, first data.limit_test examples (0 = all);
 *   - training file: data.train_images/train_labels, first data.limit_train examples; its images
 *     must have the test set's size;
 *   - validation split: p = cuvae_permutation(train.seed, CUVAE_STREAM_SPLIT, counter 0) of
 *     [0, n); the examples p[0..data.validation) form the validation set and the others the
 *     training set, both kept in the file's order (ascending indices); the validation examples
 *     are copied, the training examples stay in the file's data (rows train_rows) unless static
 *     binarization copies them to binarize them;
 *   - binarization (data.binarize):
 *       none:    every set stays as bytes 0..255;
 *       static:  the training set (after the split; image i is its i-th example) is binarized once
 *                with cuvae_binarize_fixed(seed = train.seed);
 *       dynamic: the training set stays as bytes and train_dynamic = 1, so the backend draws a
 *                fresh binarization each step;
 *     whenever binarize != none, the test set is binarized once with seed
 *     CUVAE_TEST_BINARIZE_SEED and the validation set with CUVAE_TEST_BINARIZE_SEED + 1: fixed
 *     seeds, so their figures compare across runs and training seeds (the published-likelihood
 *     protocol). Before a set is binarized its grey bytes are copied (train_grey, valid_grey,
 *     test_grey), so pictures and the reconstruction error can show and use the originals.
 *
 * cuvae_run_data_peek reads only the files' headers, so that the model and the memory estimate
 * (cuvae_run_data_memory) are checked before any payload is inflated. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "dataset.h"
#include "file_write.h"
#include "image_dir.h"
#include "philox.h"

/* Splits `all` into validation (the first n_valid entries of the seeded permutation) and training
 * (the rest), both in ascending index order. The validation examples are copied; the training
 * examples are copied too only when `copy_train` (static binarization rewrites them), else
 * rd->train takes `all` over and rd->train_rows lists them. */
static int split_train_valid(cuvae_run_data *rd, cuvae_dataset *all, int64_t n_valid, uint64_t seed,
                             int copy_train, cuvae_status *st)
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
    rd->n_train = n - n_valid;
    if (copy_train) {
        if (cuvae_dataset_subset(&rd->train, all, idx + n_valid, n - n_valid, st)) goto done;
    } else {
        rd->train_rows =
            cuvae_malloc((size_t)rd->n_train * sizeof *rd->train_rows, "the training rows", st);
        if (!rd->train_rows) goto done;
        memcpy(rd->train_rows, idx + n_valid, (size_t)rd->n_train * sizeof *rd->train_rows);
        rd->train = *all;
        memset(all, 0, sizeof *all);
    }
    rc = 0;
done:
    free(perm);
    free(in_valid);
    free(idx);
    return rc;
}

/* The channels in a size message: nothing for greyscale (H x W), " x 3 (RGB)" for colour. */
static const char *rgb(int channels)
{
    return channels == 3 ? " x 3 (RGB)" : "";
}

/* A data file that cannot be opened: the key, the absolute path tried and how paths resolve. */
static int check_found(const char *key, const char *path, cuvae_status *st)
{
    if (!path[0] || access(path, R_OK) == 0) return 0;
    int err = errno;
    char cwd[CUVAE_PATH_LEN] = "";
    if (path[0] != '/' && !getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
    return cuvae_fail(st,
                      "%s: %s%s%s: cannot open: %s (a relative path in a config file is resolved "
                      "against the file's directory, on the command line against the working "
                      "directory; for eval, --data-dir replaces the directory)",
                      key, cwd, cwd[0] ? "/" : "", path, strerror(err));
}

static int check_files(const cuvae_config *c, int need_train, cuvae_status *st)
{
    if (check_found("data.test_images", c->data.test_images, st) ||
        check_found("data.test_labels", c->data.test_labels, st))
        return -1;
    if (!need_train) return 0;
    return check_found("data.train_images", c->data.train_images, st) ||
                   check_found("data.train_labels", c->data.train_labels, st)
               ? -1
               : 0;
}

/* float32 data outside [0, 1] go to the Gaussian likelihood as they are: binarization and the
 * Bernoulli likelihood (which need values in [0, 1]) are refused, naming the file and the range. */
static int check_float(const cuvae_config *c, const char *key, const char *path,
                       const cuvae_dataset *ds, cuvae_status *st)
{
    if (!ds->is_float) return 0;
    if (c->data.binarize != CUVAE_BIN_NONE)
        return cuvae_fail(st,
                          "data.binarize = %s: %s %s holds float32 values from %g to %g, outside "
                          "[0, 1]: binarization needs data in [0, 1] (set data.binarize = none "
                          "and model.likelihood = gaussian, or rescale the data)",
                          c->data.binarize == CUVAE_BIN_STATIC ? "static" : "dynamic", key, path,
                          (double)ds->lo, (double)ds->hi);
    if (c->model.likelihood == CUVAE_LIK_BERNOULLI)
        return cuvae_fail(st,
                          "model.likelihood = bernoulli: %s %s holds float32 values from %g to "
                          "%g, outside [0, 1]: such data need model.likelihood = gaussian (or "
                          "rescale them to [0, 1])",
                          key, path, (double)ds->lo, (double)ds->hi);
    return 0;
}

static int load_set(cuvae_dataset *ds, const cuvae_config *c, int train, cuvae_status *st)
{
    const char *images = train ? c->data.train_images : c->data.test_images;
    const char *labels = train ? c->data.train_labels : c->data.test_labels;
    const char *key = train ? c->data.train_key : c->data.test_key;
    cuvae_image_opts img;
    cuvae_image_opts_from_config(&img, c);
    int rc = cuvae_dataset_load_img(ds, images, key, train ? "x_train" : "x_test", labels,
                                    train ? "y_train" : "y_test",
                                    train ? c->data.limit_train : c->data.limit_test, &img, st);
    if (rc) return -1;
    if (check_float(c, train ? "data.train_images" : "data.test_images", images, ds, st)) {
        cuvae_dataset_free(ds);
        return -1;
    }
    return 0;
}

/* Image folders labelled by their subfolders: the test set's classes must be the training set's,
 * or the same id would name different classes. */
static int same_classes(const cuvae_dataset *train, const cuvae_dataset *test,
                        const cuvae_config *c, cuvae_status *st)
{
    if (!train->n_classes || !test->n_classes) return 0;
    for (int k = 0; k < train->n_classes || k < test->n_classes; k++) {
        const char *a = k < train->n_classes ? train->class_names[k] : NULL;
        const char *b = k < test->n_classes ? test->class_names[k] : NULL;
        if (a && b && !strcmp(a, b)) continue;
        char ea[200] = "(none)", eb[200] = "(none)";
        if (a) cuvae_escape(a, ea, sizeof ea);
        if (b) cuvae_escape(b, eb, sizeof eb);
        return cuvae_fail(st,
                          "data.test_images: class %d is '%s' in %s but '%s' in "
                          "data.train_images %s: both folders need the same subfolders (classes)",
                          k, eb, c->data.test_images, ea, c->data.train_images);
    }
    return 0;
}

/* Both files on one scale: float32 data outside [0, 1] in one and bytes (or float32 in [0, 1],
 * read as bytes) in the other cannot be uploaded as one type. */
static int check_same_scale(const cuvae_config *c, const cuvae_dataset *train,
                            const cuvae_dataset *test, cuvae_status *st)
{
    if (train->is_float == test->is_float) return 0;
    const cuvae_dataset *f = train->is_float ? train : test;
    return cuvae_fail(st,
                      "data.%s: %s holds values in [0, 1] but data.%s %s holds float32 values "
                      "from %g to %g: the two sets must be on one scale",
                      train->is_float ? "test_images" : "train_images",
                      train->is_float ? c->data.test_images : c->data.train_images,
                      train->is_float ? "train_images" : "test_images",
                      train->is_float ? c->data.train_images : c->data.test_images, (double)f->lo,
                      (double)f->hi);
}

int cuvae_run_data_value_bytes(const cuvae_run_data *rd)
{
    return rd->is_float ? (int)sizeof(float) : 1;
}

/* A copy of the set's bytes before it is binarized in place (nothing for an empty set). */
static int keep_grey(const cuvae_dataset *ds, uint8_t **grey, cuvae_status *st)
{
    if (ds->n <= 0) return 0;
    size_t bytes = (size_t)ds->n * (size_t)ds->d;
    *grey = cuvae_malloc(bytes, "the grey originals of a binarized set", st);
    if (!*grey) return -1;
    memcpy(*grey, ds->pixels, bytes);
    return 0;
}

const uint8_t *cuvae_run_data_originals(const cuvae_run_data *rd, const cuvae_dataset *set)
{
    if (set == &rd->train && rd->train_grey) return rd->train_grey;
    if (set == &rd->valid && rd->valid_grey) return rd->valid_grey;
    if (set == &rd->test && rd->test_grey) return rd->test_grey;
    return set->pixels;
}

static int load_run_data(cuvae_run_data *rd, const cuvae_config *c, int need_train, int in_place,
                         cuvae_status *st)
{
    memset(rd, 0, sizeof *rd);
    if (check_files(c, need_train, st) || load_set(&rd->test, c, 0, st)) return -1;
    rd->is_float = rd->test.is_float;
    rd->lo = rd->test.is_float ? rd->test.lo : 0.0f;
    rd->hi = rd->test.is_float ? rd->test.hi : 1.0f;
    if (need_train) {
        cuvae_dataset all;
        if (load_set(&all, c, 1, st)) {
            cuvae_run_data_free(rd);
            return -1;
        }
        int rc = 0;
        if (all.is_float) {
            rd->lo = all.lo < rd->lo ? all.lo : rd->lo;
            rd->hi = all.hi > rd->hi ? all.hi : rd->hi;
        }
        if (check_same_scale(c, &all, &rd->test, st)) {
            rc = -1;
        } else if (all.rows != rd->test.rows || all.cols != rd->test.cols ||
                   all.channels != rd->test.channels) {
            rc = cuvae_fail(st,
                            "data.train_images: %s has %d x %d%s images but data.test_images %s "
                            "has %d x %d%s",
                            c->data.train_images, all.rows, all.cols, rgb(all.channels),
                            c->data.test_images, rd->test.rows, rd->test.cols,
                            rgb(rd->test.channels));
        } else if (same_classes(&all, &rd->test, c, st)) {
            rc = -1;
        } else if (c->data.validation < 0 || c->data.validation >= all.n) {
            rc = cuvae_fail(st,
                            "data.validation: %d must be smaller than the %lld training "
                            "examples in %s%s",
                            c->data.validation, (long long)all.n, c->data.train_images,
                            c->data.validation < 0 ? " and not negative" : "");
        } else if (c->data.validation == 0) {
            rd->train = all; /* the whole file, already in order: no copy */
            rd->n_train = all.n;
            memset(&all, 0, sizeof all);
        } else {
            rc = split_train_valid(rd, &all, c->data.validation, c->train.seed,
                                   !in_place || c->data.binarize == CUVAE_BIN_STATIC, st);
            /* The class names stay with the training set (a copied split leaves them in all). */
            if (all.class_names) {
                rd->train.class_names = all.class_names;
                rd->train.n_classes = all.n_classes;
                all.class_names = NULL;
                all.n_classes = 0;
            }
        }
        cuvae_dataset_free(&all);
        if (rc) {
            cuvae_run_data_free(rd);
            return -1;
        }
        if (c->data.binarize == CUVAE_BIN_STATIC) {
            if (keep_grey(&rd->train, &rd->train_grey, st)) {
                cuvae_run_data_free(rd);
                return -1;
            }
            cuvae_binarize_fixed(rd->train.pixels, rd->train.n, rd->train.d, c->train.seed);
        }
        rd->train_dynamic = c->data.binarize == CUVAE_BIN_DYNAMIC;
    }
    if (c->data.binarize != CUVAE_BIN_NONE) {
        if (keep_grey(&rd->test, &rd->test_grey, st) ||
            keep_grey(&rd->valid, &rd->valid_grey, st)) {
            cuvae_run_data_free(rd);
            return -1;
        }
        cuvae_binarize_fixed(rd->test.pixels, rd->test.n, rd->test.d, CUVAE_TEST_BINARIZE_SEED);
        if (rd->valid.n > 0)
            cuvae_binarize_fixed(rd->valid.pixels, rd->valid.n, rd->valid.d,
                                 CUVAE_TEST_BINARIZE_SEED + 1);
    }
    return 0;
}

/* The staging bytes of a set: an image folder decodes one image at a time (the largest counts),
 * an .npz member is inflated whole (they add up). */
static void add_staging(cuvae_run_shape *sh, const char *path, uint64_t bytes)
{
    if (!cuvae_image_dir_is(path))
        sh->staging = cuvae_mem_add_bytes(sh->staging, bytes);
    else if (bytes > sh->image_decode)
        sh->image_decode = bytes;
}

int cuvae_run_data_load(cuvae_run_data *rd, const cuvae_config *c, int need_train, cuvae_status *st)
{
    return load_run_data(rd, c, need_train, 0, st);
}

int cuvae_run_data_load_in_place(cuvae_run_data *rd, const cuvae_config *c, int need_train,
                                 cuvae_status *st)
{
    return load_run_data(rd, c, need_train, 1, st);
}

int cuvae_run_data_peek(const cuvae_config *c, int need_train, cuvae_run_shape *sh,
                        cuvae_status *st)
{
    memset(sh, 0, sizeof *sh);
    int64_t n_file = 0;
    uint64_t staging = 0;
    if (check_files(c, need_train, st)) return -1;
    cuvae_image_opts img;
    cuvae_image_opts_from_config(&img, c);
    if (cuvae_dataset_peek_img(c->data.test_images, c->data.test_key, "x_test", c->data.limit_test,
                               &img, &sh->n_test, &n_file, &sh->channels, &sh->rows, &sh->cols,
                               &staging, st))
        return -1;
    add_staging(sh, c->data.test_images, staging);
    sh->d = sh->channels * sh->rows * sh->cols; /* <= INT_MAX: the header readers checked it */
    int is_float = 0;
    if (cuvae_dataset_peek_float(c->data.test_images, c->data.test_key, "x_test", &is_float,
                                 &sh->resident_test, st))
        return -1;
    sh->value_bytes = is_float ? (int)sizeof(float) : 1;
    if (!need_train) return 0;
    if (cuvae_dataset_peek_float(c->data.train_images, c->data.train_key, "x_train", &is_float,
                                 &sh->resident_train, st))
        return -1;
    if (is_float) sh->value_bytes = (int)sizeof(float);
    int channels = 0, rows = 0, cols = 0;
    if (cuvae_dataset_peek_img(c->data.train_images, c->data.train_key, "x_train",
                               c->data.limit_train, &img, &sh->n_kept, &n_file, &channels, &rows,
                               &cols, &staging, st))
        return -1;
    add_staging(sh, c->data.train_images, staging);
    if (rows != sh->rows || cols != sh->cols || channels != sh->channels)
        return cuvae_fail(st,
                          "data.train_images: %s has %d x %d%s images but data.test_images %s "
                          "has %d x %d%s",
                          c->data.train_images, rows, cols, rgb(channels), c->data.test_images,
                          sh->rows, sh->cols, rgb(sh->channels));
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
    /* Copies count 4 bytes a value for float32 files (they stay float32 unless all in [0, 1]). */
    uint64_t d = (uint64_t)sh->d * (uint64_t)(sh->value_bytes > 1 ? sh->value_bytes : 1);
    uint64_t nt = (uint64_t)sh->n_test, nk = (uint64_t)sh->n_kept;
    /* What loading allocates (and a byte of label each) for the test set and the kept training
     * examples: nothing for values that stay in a file's mapping (the page cache holds them, and
     * gives them back: a mapped set may be larger than memory). */
    uint64_t dt = (uint64_t)sh->d * (uint64_t)sh->resident_test;
    uint64_t dk = (uint64_t)sh->d * (uint64_t)sh->resident_train;
    uint64_t held = cuvae_mem_mul(nt, dt + (c->data.test_labels[0] ? 1 : 0));
    held = cuvae_mem_add_bytes(held, cuvae_mem_mul(nk, dk + (c->data.train_labels[0] ? 1 : 0)));
    cuvae_mem_add(p, "data", held);
    /* Deflated .npz members are inflated whole while they are read. */
    if (sh->staging) cuvae_mem_add(p, "data staging (.npz)", sh->staging);
    if (sh->image_decode) cuvae_mem_add(p, "image decoding", sh->image_decode);
    if (sh->n_valid > 0) {
        /* The split copies the validation examples (and, for static binarization, the training
         * examples), holds three index arrays while it does, and keeps the training rows. */
        uint64_t copied = c->data.binarize == CUVAE_BIN_STATIC ? nk : (uint64_t)sh->n_valid;
        if (!sh->in_place) copied = nk;
        cuvae_mem_add(p, "data", cuvae_mem_mul(copied, d + (c->data.train_labels[0] ? 1 : 0)));
        cuvae_mem_add(p, "index arrays", cuvae_mem_mul(nk, 2 * sizeof(int32_t) + sizeof(uint8_t)));
        if (sh->in_place)
            cuvae_mem_add(p, "index arrays", cuvae_mem_mul((uint64_t)sh->n_train, sizeof(int32_t)));
    }
    /* The grey originals kept of the sets binarized on the host. */
    if (c->data.binarize != CUVAE_BIN_NONE) {
        uint64_t grey = cuvae_mem_mul(nt + (uint64_t)sh->n_valid, d);
        if (c->data.binarize == CUVAE_BIN_STATIC)
            grey = cuvae_mem_add_bytes(grey, cuvae_mem_mul((uint64_t)sh->n_train, d));
        cuvae_mem_add(p, "grey originals", grey);
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
    free(rd->train_rows);
    rd->train_rows = NULL;
    rd->n_train = 0;
    free(rd->train_grey);
    free(rd->valid_grey);
    free(rd->test_grey);
    rd->train_grey = rd->valid_grey = rd->test_grey = NULL;
    rd->train_dynamic = 0;
}

/* A JSON string of s, with bytes that are not UTF-8 written as \\xNN. */
static json_t *utf8_string(const char *s)
{
    json_t *v = json_string(s);
    if (v) return v;
    char e[4 * CUVAE_PATH_LEN];
    cuvae_escape(s, e, sizeof e);
    return json_string(e);
}

int cuvae_run_data_write_classes(const cuvae_run_data *rd, const cuvae_config *c, const char *dir,
                                 FILE *out, cuvae_status *st)
{
    const cuvae_dataset *ds = &rd->train;
    if (!ds->n_classes) return 0;
    json_t *root = json_object(), *names = json_array();
    int rc = root && names ? 0 : -1;
    for (int k = 0; k < ds->n_classes && !rc; k++)
        rc = json_array_append_new(names, utf8_string(ds->class_names[k]));
    if (!rc) rc = json_object_set_new(root, "folder", utf8_string(c->data.train_images));
    if (!rc) rc = json_object_set(root, "classes", names);
    char *text = rc ? NULL : json_dumps(root, JSON_INDENT(1));
    json_decref(names);
    json_decref(root);
    if (!text)
        return cuvae_fail(st, "%s/classes.json: cannot format the class names (not UTF-8?)", dir);
    char path[2 * CUVAE_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/classes.json", dir);
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps leaves no newline; its terminator makes room for one */
    rc = cuvae_write_file(path, text, len + 1, st);
    free(text);
    if (rc) return -1;
    fprintf(out, "classes: %d from the subfolders of %s (ids in %s):", ds->n_classes,
            c->data.train_images, path);
    for (int k = 0; k < ds->n_classes && k < 10; k++) {
        char e[64];
        cuvae_escape(ds->class_names[k], e, sizeof e);
        fprintf(out, " %d %s%s", k, e, k + 1 < ds->n_classes ? "," : "");
    }
    fprintf(out, "%s\n", ds->n_classes > 10 ? " ..." : "");
    return 0;
}
