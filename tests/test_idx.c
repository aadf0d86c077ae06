/* IDX reading and the data of a run. Good files (gzip, raw, concatenated gzip members) round-trip;
 * every kind of damage (short header or payload, wrong magic or type, zero or absurd dimensions,
 * label count mismatch, corrupt or cut gzip, trailing bytes, missing file) is an error whose
 * message names the problem, and absurd headers fail at once. cuvae_run_data_load's split is
 * checked as a partition in file order, deterministic per seed, and its binarizations against
 * cuvae_binarize_fixed. The MNIST test set is loaded when /work/shared holds it. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "dataset.h"
#include "philox.h"
#include "idx_fixture.h"
#include "tests_util.h"

static char g_dir[512];

static const char *tpath(const char *name)
{
    /* A few rotating buffers so that two paths can be live in one call. */
    static char bufs[4][640];
    static int next = 0;
    char *p = bufs[next++ % 4];
    snprintf(p, sizeof bufs[0], "%s/%s", g_dir, name);
    return p;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

/* Loads and expects failure with `needle` in the message and an empty dataset. */
static void expect_fail_at(int line, const char *images, const char *labels, int64_t limit,
                           const char *needle)
{
    cuvae_dataset ds;
    cuvae_status st = {{0}};
    int rc = cuvae_dataset_load(&ds, images, labels, limit, &st);
    if (rc == 0) {
        fprintf(stderr, "test_idx.c:%d: load of %s unexpectedly succeeded\n", line, images);
        cuvae_test_failures++;
        cuvae_dataset_free(&ds);
        return;
    }
    cuvae_check_msg("test_idx.c", line, st.msg, needle);
    CHECK(ds.pixels == NULL && ds.labels == NULL && ds.n == 0);
}
#define EXPECT_FAIL(images, labels, limit, needle)                                                 \
    expect_fail_at(__LINE__, images, labels, limit, needle)

static void make_set(cuvae_dataset *ds, int n, int rows, int cols, uint64_t seed)
{
    ds->n = n;
    ds->rows = rows;
    ds->cols = cols;
    ds->d = rows * cols;
    ds->pixels = malloc((size_t)n * ds->d);
    ds->labels = malloc((size_t)n);
    cuvae_test_make_images(ds->pixels, ds->labels, n, rows, cols, seed);
}

static int same_set(const cuvae_dataset *a, const cuvae_dataset *b, int64_t n)
{
    return a->rows == b->rows && a->cols == b->cols && a->d == b->d &&
           memcmp(a->pixels, b->pixels, (size_t)n * a->d) == 0 &&
           (!a->labels || !b->labels || memcmp(a->labels, b->labels, (size_t)n) == 0);
}

static void test_roundtrip(void)
{
    cuvae_dataset ref = {0};
    make_set(&ref, 37, 5, 7, 3);
    cuvae_status st = {{0}};
    const char *pairs[2][2] = {{"rt-images.gz", "rt-labels.gz"},
                               {"rt-images.idx", "rt-labels.idx"}};
    for (int k = 0; k < 2; k++) {
        const char *im = tpath(pairs[k][0]), *lb = tpath(pairs[k][1]);
        CHECK(cuvae_dataset_write_idx(&ref, im, lb, &st) == 0);
        size_t len;
        unsigned char *b = read_all(im, &len);
        CHECK(b && len >= 2 && ((b[0] == 0x1f && b[1] == 0x8b) == (k == 0))); /* gzip iff .gz */
        free(b);
        cuvae_dataset ds;
        CHECK(cuvae_dataset_load(&ds, im, lb, 0, &st) == 0);
        CHECK(ds.n == 37 && ds.rows == 5 && ds.cols == 7 && ds.d == 35 && ds.labels);
        CHECK(ds.pixels && same_set(&ds, &ref, 37));
        cuvae_dataset_free(&ds);
        /* limit keeps a prefix; a limit beyond the file keeps everything. */
        CHECK(cuvae_dataset_load(&ds, im, lb, 10, &st) == 0);
        CHECK(ds.n == 10 && same_set(&ds, &ref, 10));
        cuvae_dataset_free(&ds);
        CHECK(cuvae_dataset_load(&ds, im, lb, 1000, &st) == 0);
        CHECK(ds.n == 37);
        cuvae_dataset_free(&ds);
        /* No label file: no labels. */
        CHECK(cuvae_dataset_load(&ds, im, "", 0, &st) == 0);
        CHECK(ds.n == 37 && ds.labels == NULL && same_set(&ds, &ref, 37));
        cuvae_dataset_free(&ds);
    }
    /* Subset copies rows and labels in the order given. */
    int32_t idx[3] = {36, 0, 5};
    cuvae_dataset sub;
    CHECK(cuvae_dataset_subset(&sub, &ref, idx, 3, &st) == 0);
    CHECK(sub.n == 3 && sub.d == 35);
    for (int i = 0; i < 3; i++) {
        CHECK(memcmp(sub.pixels + i * 35, ref.pixels + idx[i] * 35, 35) == 0);
        CHECK(sub.labels[i] == ref.labels[idx[i]]);
    }
    cuvae_dataset_free(&sub);
    idx[1] = 37;
    CHECK(cuvae_dataset_subset(&sub, &ref, idx, 3, &st) != 0);
    CHECK_MSG(st.msg, "outside [0, 37)");
    /* A gzip file made of two members reads as one stream. */
    size_t len;
    uint32_t dims[3] = {37, 5, 7};
    unsigned char *b = idx_bytes(0x803, dims, 3, ref.pixels, 37 * 35, &len);
    const char *two = tpath("two-members.gz");
    idx_write_gz(two, b, 100);
    idx_write_gz(tpath("second.gz"), b + 100, len - 100);
    size_t l1, l2;
    unsigned char *m1 = read_all(two, &l1), *m2 = read_all(tpath("second.gz"), &l2);
    unsigned char *cat = malloc(l1 + l2);
    memcpy(cat, m1, l1);
    memcpy(cat + l1, m2, l2);
    cuvae_test_write_file(two, cat, l1 + l2);
    cuvae_dataset ds;
    CHECK(cuvae_dataset_load(&ds, two, "", 0, &st) == 0);
    CHECK(ds.n == 37 && same_set(&ds, &ref, 37));
    cuvae_dataset_free(&ds);
    free(m1);
    free(m2);
    free(cat);
    free(b);
    /* The writer refuses what the reader would refuse. */
    cuvae_dataset empty = ref;
    empty.n = 0;
    CHECK(cuvae_dataset_write_idx(&empty, tpath("empty.idx"), "", &st) != 0);
    CHECK(cuvae_dataset_write_idx(&ref, tpath("nodir/x.gz"), "", &st) != 0);
    CHECK_MSG(st.msg, "cannot create");
    cuvae_dataset_free(&ref);
}

static void test_header_errors(void)
{
    uint8_t px[2 * 3 * 4];
    for (int i = 0; i < 24; i++) px[i] = (uint8_t)i;
    uint8_t lab[2] = {1, 2};
    size_t len;
    uint32_t dims[3] = {2, 3, 4};
    unsigned char *good = idx_bytes(0x803, dims, 3, px, 24, &len);
    const char *raw = tpath("h.idx"), *gz = tpath("h.gz");

    /* Truncated header, raw and gzip, at every length short of 16 bytes. */
    for (size_t cut = 0; cut < 16; cut++) {
        char needle[96];
        snprintf(needle, sizeof needle, "truncated header: expected 16 bytes, got %zu", cut);
        cuvae_test_write_file(raw, good, cut);
        EXPECT_FAIL(raw, "", 0, needle);
        idx_write_gz(gz, good, cut);
        EXPECT_FAIL(gz, "", 0, needle);
    }
    cuvae_test_write_file(raw, good, 0);
    EXPECT_FAIL(raw, "", 0, "got 0 (empty file)");

    /* Truncated payload at several offsets. */
    size_t cuts[] = {16, 17, 16 + 12, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char needle[128];
        snprintf(needle, sizeof needle,
                 "%s: truncated: expected 24 bytes of pixels after the "
                 "header, got %zu",
                 raw, cuts[i] - 16);
        cuvae_test_write_file(raw, good, cuts[i]);
        EXPECT_FAIL(raw, "", 0, needle);
        EXPECT_FAIL(raw, "", 1, "truncated: expected 24 bytes"); /* limit still checks it all */
        idx_write_gz(gz, good, cuts[i]);
        EXPECT_FAIL(gz, "", 0, "truncated: expected 24 bytes of pixels after the header");
    }

    /* Wrong magic: a label file as images and the other way round. */
    unsigned char *labels = idx_bytes(0x801, dims, 1, lab, 2, &len);
    const char *lraw = tpath("l.idx");
    cuvae_test_write_file(lraw, labels, len);
    EXPECT_FAIL(lraw, "", 0, "wrong magic 0x00000801, expected 0x00000803 (an IDX image file)");
    cuvae_test_write_file(raw, good, 16 + 24);
    EXPECT_FAIL(raw, raw, 0, "wrong magic 0x00000803, expected 0x00000801 (an IDX label file)");
    unsigned char junk[16] = "not an idx file";
    cuvae_test_write_file(tpath("junk"), junk, 16);
    EXPECT_FAIL(tpath("junk"), "", 0, "wrong magic 0x6e6f7420");

    /* Data type byte other than unsigned byte. */
    unsigned char *fl = idx_bytes(0xd03, dims, 3, px, 24, &len);
    cuvae_test_write_file(raw, fl, len);
    EXPECT_FAIL(raw, "", 0, "data type 0x0d (float), expected 0x08 (unsigned byte)");
    free(fl);

    /* Zero dimensions, each position. */
    for (int z = 0; z < 3; z++) {
        uint32_t zd[3] = {2, 3, 4};
        zd[z] = 0;
        unsigned char *b = idx_bytes(0x803, zd, 3, px, 0, &len);
        cuvae_test_write_file(raw, b, len);
        EXPECT_FAIL(raw, "", 0, "a dimension is zero");
        free(b);
    }
    cuvae_test_write_file(raw, good, 16 + 24);
    uint32_t zero = 0;
    unsigned char *zl = idx_bytes(0x801, &zero, 1, lab, 0, &len);
    cuvae_test_write_file(lraw, zl, len);
    EXPECT_FAIL(raw, lraw, 0, "a dimension is zero: header says 0 labels");
    free(zl);

    /* Label count differing from the image count (also when a limit keeps fewer images). */
    uint32_t three = 3;
    unsigned char lab3[3] = {0, 1, 2};
    unsigned char *l3 = idx_bytes(0x801, &three, 1, lab3, 3, &len);
    cuvae_test_write_file(lraw, l3, len);
    char needle[700];
    snprintf(needle, sizeof needle, "%s: 3 labels but %s has 2 images", lraw, raw);
    EXPECT_FAIL(raw, lraw, 0, needle);
    EXPECT_FAIL(raw, lraw, 1, needle);
    free(l3);
    /* Labels: truncated and trailing. */
    unsigned char *l2 = idx_bytes(0x801, dims, 1, lab, 2, &len);
    cuvae_test_write_file(lraw, l2, len - 1);
    EXPECT_FAIL(raw, lraw, 0, "truncated: expected 2 bytes of labels after the header, got 1");
    l2[len] = 7;
    cuvae_test_write_file(lraw, l2, len + 1);
    EXPECT_FAIL(raw, lraw, 0, "trailing garbage");
    free(l2);

    /* Trailing bytes after the payload: raw, inside the gzip stream, and after it. */
    unsigned char *longer = malloc(16 + 24 + 5);
    memcpy(longer, good, 16 + 24);
    memcpy(longer + 40, "extra", 5);
    cuvae_test_write_file(raw, longer, 41);
    EXPECT_FAIL(raw, "", 0, "trailing garbage: the file holds more than the 24 bytes of pixels");
    EXPECT_FAIL(raw, "", 1, "trailing garbage"); /* limit still checks the whole file */
    idx_write_gz(gz, longer, 45);
    EXPECT_FAIL(gz, "", 0, "trailing garbage: the file holds more than the 24 bytes of pixels");
    idx_write_gz(gz, good, 40);
    size_t glen;
    unsigned char *g = read_all(gz, &glen);
    unsigned char *gj = malloc(glen + 4);
    memcpy(gj, g, glen);
    memcpy(gj + glen, "JUNK", 4);
    cuvae_test_write_file(gz, gj, glen + 4);
    EXPECT_FAIL(gz, "", 0, "trailing garbage after the end of the gzip stream");
    free(gj);
    free(g);
    free(longer);

    /* Missing files, and a directory where a file should be. */
    EXPECT_FAIL(tpath("absent.gz"), "", 0, "absent.gz: cannot open: No such file or directory");
    cuvae_test_write_file(raw, good, 40);
    EXPECT_FAIL(raw, tpath("absent-labels.gz"), 0,
                "absent-labels.gz: cannot open: No such file or directory");
    /* issue 11: named up front; a directory is read as an image folder (image_dir.h) */
    EXPECT_FAIL(g_dir, "", 0, "no PNG or JPEG images in the folder");
    EXPECT_FAIL("", "", 0, "no image file given");
    free(labels);
    free(good);
}

static void test_huge_headers(void)
{
    /* Headers claiming absurd sizes must fail at once, without allocating what they claim. */
    struct {
        uint32_t dims[3];
        const char *needle;
    } cases[] = {
        {{0xffffffffu, 0xffffffffu, 0xffffffffu}, "too large: header says 4294967295 images"},
        {{0x80000000u, 1, 1}, "too large"},
        {{1, 0x10000u, 0x10000u}, "too large"},
        {{5000, 1000, 1000}, "too large"},
        /* Under the cap (4e9 bytes), so only the missing data stops it: */
        {{4000, 1000, 1000},
         "truncated: expected 4000000000 bytes of pixels after the header, got 8"},
        {{60000, 28, 28}, "truncated: expected 47040000 bytes of pixels after the header, got 8"},
    };
    unsigned char payload[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len;
        unsigned char *b = idx_bytes(0x803, cases[i].dims, 3, payload, 8, &len);
        const char *raw = tpath("huge.idx"), *gz = tpath("huge.gz");
        cuvae_test_write_file(raw, b, len);
        idx_write_gz(gz, b, len);
        double t0 = cuvae_now();
        EXPECT_FAIL(raw, "", 0, cases[i].needle);
        EXPECT_FAIL(gz, "", 0, cases[i].needle);
        EXPECT_FAIL(gz, "", 10, cases[i].needle);
        double dt = cuvae_now() - t0;
        if (dt > 0.5) fprintf(stderr, "huge header case %zu took %.3f s\n", i, dt);
        CHECK(dt < 0.5);
        free(b);
    }
}

static void test_corrupt_gzip(void)
{
    cuvae_dataset ref = {0};
    make_set(&ref, 200, 28, 28, 11);
    cuvae_status st = {{0}};
    const char *gz = tpath("c.gz"), *bad = tpath("c-bad.gz");
    CHECK(cuvae_dataset_write_idx(&ref, gz, "", &st) == 0);
    size_t len;
    unsigned char *b = read_all(gz, &len);
    CHECK(b && len > 1000);
    /* Flipped bytes in the compressed blocks, in the CRC and in the length of the trailer. */
    size_t flips[] = {len / 3, len / 2, 3 * len / 4, len - 6, len - 2};
    for (size_t i = 0; i < sizeof flips / sizeof *flips; i++) {
        b[flips[i]] ^= 0x55;
        cuvae_test_write_file(bad, b, len);
        EXPECT_FAIL(bad, "", 0, "corrupt gzip data (");
        EXPECT_FAIL(bad, "", 5, "corrupt gzip data (");
        b[flips[i]] ^= 0x55;
    }
    /* Near the end of the deflate data a flip may hide the end-of-block code, so that the decoder
     * runs into the trailer and off the end of the file: corrupt either way. */
    for (size_t at = len - 24; at < len - 8; at++) {
        b[at] ^= 0x55;
        cuvae_test_write_file(bad, b, len);
        EXPECT_FAIL(bad, "", 0, "gzip data");
        b[at] ^= 0x55;
    }
    b[len - 6] ^= 1;
    cuvae_test_write_file(bad, b, len);
    EXPECT_FAIL(bad, "", 0, "corrupt gzip data (incorrect data check)");
    b[len - 6] ^= 1;
    b[2] = 7; /* compression method */
    cuvae_test_write_file(bad, b, len);
    EXPECT_FAIL(bad, "", 0, "corrupt gzip data (unknown compression method)");
    b[2] = 8;
    /* The file cut short: in the gzip header, the deflate data, and the 8-byte trailer. */
    size_t cuts[] = {2, 5, 12, len / 2, len - 8, len - 3, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        cuvae_test_write_file(bad, b, cuts[i]);
        EXPECT_FAIL(bad, "", 0, "truncated gzip data");
    }
    cuvae_test_write_file(bad, b, len);
    cuvae_dataset ds;
    CHECK(cuvae_dataset_load(&ds, bad, "", 0, &st) == 0); /* the restored file is fine */
    CHECK(ds.n == 200 && same_set(&ds, &ref, 200));
    cuvae_dataset_free(&ds);
    free(b);
    cuvae_dataset_free(&ref);
}

/* Training data whose images carry their index in the first two pixels, so that the split can be
 * traced. */
static void write_run_files(int n, int rows, int cols, const char *im, const char *lb)
{
    cuvae_dataset ds = {0};
    make_set(&ds, n, rows, cols, 5);
    for (int i = 0; i < n; i++) {
        ds.pixels[(size_t)i * ds.d] = (uint8_t)(i & 255);
        ds.pixels[(size_t)i * ds.d + 1] = (uint8_t)(i >> 8);
    }
    cuvae_status st = {{0}};
    CHECK(cuvae_dataset_write_idx(&ds, im, lb, &st) == 0);
    cuvae_dataset_free(&ds);
}

static int id_of(const cuvae_dataset *ds, int64_t i)
{
    return ds->pixels[i * ds->d] | ds->pixels[i * ds->d + 1] << 8;
}

static int only_binary(const cuvae_dataset *ds)
{
    for (int64_t i = 0; i < ds->n * ds->d; i++)
        if (ds->pixels[i] != 0 && ds->pixels[i] != 255) return 0;
    return 1;
}

static void config_for(cuvae_config *c, int validation, cuvae_binarize bin, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    snprintf(c->data.train_images, sizeof c->data.train_images, "%s", tpath("run-train.gz"));
    snprintf(c->data.train_labels, sizeof c->data.train_labels, "%s", tpath("run-train-lab.gz"));
    snprintf(c->data.test_images, sizeof c->data.test_images, "%s", tpath("run-test.gz"));
    snprintf(c->data.test_labels, sizeof c->data.test_labels, "%s", tpath("run-test-lab.gz"));
    c->data.validation = validation;
    c->data.binarize = bin;
    c->train.seed = seed;
}

static void test_run_data(void)
{
    const int N = 300, NT = 40, V = 50;
    cuvae_config c;
    config_for(&c, V, CUVAE_BIN_NONE, 7);
    write_run_files(N, 10, 12, c.data.train_images, c.data.train_labels);
    write_run_files(NT, 10, 12, c.data.test_images, c.data.test_labels);
    cuvae_status st = {{0}};
    cuvae_run_data a, b;

    CHECK(cuvae_run_data_load(&a, &c, 1, &st) == 0);
    CHECK(a.train.n == N - V && a.valid.n == V && a.test.n == NT && a.train_dynamic == 0);
    CHECK(a.train.d == 120 && a.valid.d == 120 && a.test.rows == 10 && a.test.cols == 12);
    /* A partition of [0, N), each part ascending, validation = the permutation's first V. */
    int32_t perm[300];
    cuvae_permutation(7, CUVAE_STREAM_SPLIT, 0, perm, N);
    char seen[300] = {0}, in_valid[300] = {0};
    for (int i = 0; i < V; i++) in_valid[perm[i]] = 1;
    int ok = 1;
    for (int64_t i = 0; i < a.valid.n; i++) {
        int id = id_of(&a.valid, i);
        ok &= id < N && !seen[id] && in_valid[id] && a.valid.labels[i] == id % 10;
        ok &= i == 0 || id > id_of(&a.valid, i - 1);
        seen[id % N] = 1;
    }
    for (int64_t i = 0; i < a.train.n; i++) {
        int id = id_of(&a.train, i);
        ok &= id < N && !seen[id] && !in_valid[id] && a.train.labels[i] == id % 10;
        ok &= i == 0 || id > id_of(&a.train, i - 1);
        seen[id % N] = 1;
    }
    CHECK(ok);
    CHECK(memchr(seen, 0, (size_t)N) == NULL);

    /* The same seed gives the same split; another seed another one. */
    CHECK(cuvae_run_data_load(&b, &c, 1, &st) == 0);
    CHECK(b.valid.n == V && same_set(&a.valid, &b.valid, V));
    CHECK(same_set(&a.train, &b.train, N - V));
    cuvae_run_data_free(&b);
    config_for(&c, V, CUVAE_BIN_NONE, 8);
    CHECK(cuvae_run_data_load(&b, &c, 1, &st) == 0);
    CHECK(b.valid.n == V && !same_set(&a.valid, &b.valid, V));
    cuvae_run_data_free(&b);

    /* Static binarization: only 0/255 everywhere, each set with its documented seed. */
    config_for(&c, V, CUVAE_BIN_STATIC, 7);
    CHECK(cuvae_run_data_load(&b, &c, 1, &st) == 0);
    CHECK(b.train_dynamic == 0);
    CHECK(only_binary(&b.train) && only_binary(&b.valid) && only_binary(&b.test));
    cuvae_binarize_fixed(a.train.pixels, a.train.n, a.train.d, 7);
    cuvae_binarize_fixed(a.valid.pixels, a.valid.n, a.valid.d, CUVAE_TEST_BINARIZE_SEED + 1);
    cuvae_binarize_fixed(a.test.pixels, a.test.n, a.test.d, CUVAE_TEST_BINARIZE_SEED);
    CHECK(same_set(&a.train, &b.train, N - V));
    CHECK(same_set(&a.valid, &b.valid, V));
    CHECK(same_set(&a.test, &b.test, NT));

    /* Dynamic: training bytes untouched; test binarized exactly as before, whatever the seed. */
    cuvae_run_data none, dyn;
    config_for(&c, V, CUVAE_BIN_NONE, 9);
    CHECK(cuvae_run_data_load(&none, &c, 1, &st) == 0);
    config_for(&c, V, CUVAE_BIN_DYNAMIC, 9);
    CHECK(cuvae_run_data_load(&dyn, &c, 1, &st) == 0);
    CHECK(dyn.train_dynamic == 1);
    CHECK(same_set(&none.train, &dyn.train, N - V) && !only_binary(&dyn.train));
    CHECK(only_binary(&dyn.valid) && only_binary(&dyn.test));
    CHECK(same_set(&b.test, &dyn.test, NT));
    cuvae_run_data_free(&none);
    cuvae_run_data_free(&dyn);
    cuvae_run_data_free(&b);
    cuvae_run_data_free(&a);

    /* Only the test set when no training is asked for; limits; no validation. */
    config_for(&c, V, CUVAE_BIN_STATIC, 7);
    c.data.limit_test = 15;
    CHECK(cuvae_run_data_load(&b, &c, 0, &st) == 0);
    CHECK(b.test.n == 15 && b.train.n == 0 && b.valid.n == 0 && only_binary(&b.test));
    cuvae_run_data_free(&b);
    config_for(&c, 0, CUVAE_BIN_NONE, 7);
    c.data.limit_train = 100;
    CHECK(cuvae_run_data_load(&b, &c, 1, &st) == 0);
    CHECK(b.train.n == 100 && b.valid.n == 0 && id_of(&b.train, 99) == 99);
    cuvae_run_data_free(&b);

    /* Errors. */
    config_for(&c, N, CUVAE_BIN_NONE, 7);
    CHECK(cuvae_run_data_load(&b, &c, 1, &st) != 0);
    char needle[400];
    snprintf(needle, sizeof needle,
             "data.validation: 300 must be smaller than the 300 training examples in %s",
             c.data.train_images);
    CHECK_MSG(st.msg, needle);
    CHECK(b.test.pixels == NULL && b.train.pixels == NULL);
    c.data.validation = 20;
    c.data.limit_train = 20;
    CHECK(cuvae_run_data_load(&b, &c, 1, &st) != 0);
    CHECK_MSG(st.msg, "data.validation: 20 must be smaller than the 20 training examples");
    config_for(&c, 10, CUVAE_BIN_NONE, 7);
    write_run_files(NT, 10, 10, c.data.test_images, c.data.test_labels);
    CHECK(cuvae_run_data_load(&b, &c, 1, &st) != 0);
    CHECK_MSG(st.msg, "has 10 x 12 images but data.test_images");
    CHECK(cuvae_run_data_load(&b, &c, 0, &st) == 0); /* fine when only the test set is used */
    cuvae_run_data_free(&b);
    snprintf(c.data.train_images, sizeof c.data.train_images, "%s", tpath("nope.gz"));
    CHECK(cuvae_run_data_load(&b, &c, 1, &st) != 0);
    CHECK_MSG(st.msg, "nope.gz: cannot open");
}

static void test_mnist(void)
{
    const char *src = getenv("CUVAE_SOURCE_DIR");
    char im[1024], lb[1024];
    snprintf(im, sizeof im, "%s/../shared/data/mnist/t10k-images-idx3-ubyte.gz", src ? src : ".");
    snprintf(lb, sizeof lb, "%s/../shared/data/mnist/t10k-labels-idx1-ubyte.gz", src ? src : ".");
    if (!src || access(im, R_OK) != 0 || access(lb, R_OK) != 0) {
        printf("test_idx: MNIST test set not found at %s, that part skipped\n", im);
        return;
    }
    cuvae_dataset ds;
    cuvae_status st = {{0}};
    double t0 = cuvae_now();
    int rc = cuvae_dataset_load(&ds, im, lb, 0, &st);
    double dt = cuvae_now() - t0;
    if (rc) fprintf(stderr, "%s\n", st.msg);
    CHECK(rc == 0);
    if (rc) return;
    CHECK(ds.n == 10000 && ds.rows == 28 && ds.cols == 28 && ds.d == 784 && ds.labels);
    int count[256] = {0};
    for (int64_t i = 0; i < ds.n; i++) count[ds.labels[i]]++;
    int in_range = 1;
    for (int k = 10; k < 256; k++) in_range &= count[k] == 0;
    CHECK(in_range);
    for (int k = 0; k < 10; k++) CHECK(count[k] > 800);
    printf("test_idx: MNIST t10k loaded in %.3f s (%lld images %dx%d)\n", dt, (long long)ds.n,
           ds.rows, ds.cols);
    cuvae_dataset_free(&ds);
}

int main(void)
{
    if (cuvae_test_tmpdir(g_dir, sizeof g_dir, "idx") != 0) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_roundtrip();
    test_header_errors();
    test_huge_headers();
    test_corrupt_gzip();
    test_run_data();
    test_mnist();
    cuvae_test_remove_dir(g_dir);
    return cuvae_test_finish("idx");
}
