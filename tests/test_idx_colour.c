/* 4-D IDX image files (N x H x W x C, C = 1 or 3) through the one IDX reader: the file's
 * interleaved pixels (HWC) become planar examples (CHW) and the writer interleaves them back; a
 * 4-D greyscale file loads to exactly the bytes of its 3-D twin; hostile 4-D headers (C = 2,
 * C = 0, absurd sizes, five dimensions) fail at once with one line naming the file and what was
 * expected. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "dataset.h"
#include "idx_fixture.h"
#include "tests_util.h"

static char g_dir[512];

static const char *tpath(const char *name)
{
    static char bufs[4][640];
    static int next = 0;
    char *p = bufs[next++ % 4];
    snprintf(p, sizeof bufs[0], "%s/%s", g_dir, name);
    return p;
}

/* Loads and expects failure: one line that starts with the file's name and holds `needle`. */
static void expect_fail_at(int line, const char *images, const char *needle)
{
    cuvae_dataset ds;
    cuvae_status st = {{0}};
    if (cuvae_dataset_load(&ds, images, "", 0, &st) == 0) {
        fprintf(stderr, "test_idx_colour.c:%d: load of %s unexpectedly succeeded\n", line, images);
        cuvae_test_failures++;
        cuvae_dataset_free(&ds);
        return;
    }
    cuvae_check_msg("test_idx_colour.c", line, st.msg, needle);
    CHECK(strncmp(st.msg, images, strlen(images)) == 0 && strchr(st.msg, '\n') == NULL);
    CHECK(ds.pixels == NULL && ds.n == 0);
}
#define EXPECT_FAIL(images, needle) expect_fail_at(__LINE__, images, needle)

/* Pixel value of example i, channel c, row y, column x: distinct for the small sets here. */
static unsigned char value(int i, int c, int y, int x)
{
    return (unsigned char)(i * 61 + c * 29 + y * 7 + x);
}

static void test_rgb_planar(void)
{
    enum { N = 3, H = 4, W = 5, C = 3 };
    unsigned char hwc[N * H * W * C];
    for (int i = 0; i < N; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++) hwc[((i * H + y) * W + x) * C + c] = value(i, c, y, x);
    uint32_t dims[4] = {N, H, W, C};
    size_t len;
    unsigned char *b = idx_bytes(0x804, dims, 4, hwc, sizeof hwc, &len);
    const char *gz = tpath("rgb.gz"), *again = tpath("again.gz");
    idx_write_gz(gz, b, len);

    cuvae_dataset ds;
    cuvae_status st = {{0}};
    CHECK(cuvae_dataset_load(&ds, gz, "", 0, &st) == 0);
    CHECK(ds.n == N && ds.channels == C && ds.rows == H && ds.cols == W && ds.d == C * H * W);
    int planar = 1;
    for (int i = 0; i < N && ds.pixels; i++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    planar &= ds.pixels[((i * C + c) * H + y) * W + x] == value(i, c, y, x);
    CHECK(planar);

    /* The header alone says the same shape. */
    int64_t kept = 0, n_file = 0;
    int ch = 0, r = 0, w = 0;
    CHECK(cuvae_idx_peek_images(gz, 2, &kept, &n_file, &ch, &r, &w, &st) == 0);
    CHECK(kept == 2 && n_file == N && ch == C && r == H && w == W);

    /* The writer interleaves back: the same bytes as the hand-made file; a limit keeps a prefix. */
    CHECK(cuvae_dataset_write_idx(&ds, again, "", &st) == 0);
    gzFile g = gzopen(again, "rb");
    unsigned char back[sizeof hwc + 64];
    int got = g ? gzread(g, back, sizeof back) : -1;
    if (g) gzclose(g);
    CHECK(got == (int)len && memcmp(back, b, len) == 0);
    cuvae_dataset two;
    CHECK(cuvae_dataset_load(&two, again, "", 2, &st) == 0);
    CHECK(two.n == 2 && two.d == ds.d && memcmp(two.pixels, ds.pixels, 2 * (size_t)ds.d) == 0);
    cuvae_dataset_free(&two);
    cuvae_dataset_free(&ds);
    free(b);
}

static void test_grey_4d_equals_3d(void)
{
    enum { N = 4, H = 6, W = 7 };
    unsigned char px[N * H * W];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 37 + 11);
    uint32_t d3[3] = {N, H, W}, d4[4] = {N, H, W, 1};
    size_t l3, l4;
    unsigned char *b3 = idx_bytes(0x803, d3, 3, px, sizeof px, &l3);
    unsigned char *b4 = idx_bytes(0x804, d4, 4, px, sizeof px, &l4);
    const char *p3 = tpath("g3.idx"), *p4 = tpath("g4.gz");
    cuvae_test_write_file(p3, b3, l3);
    idx_write_gz(p4, b4, l4);
    cuvae_dataset a, c;
    cuvae_status st = {{0}};
    CHECK(cuvae_dataset_load(&a, p3, "", 0, &st) == 0);
    CHECK(cuvae_dataset_load(&c, p4, "", 0, &st) == 0);
    CHECK(a.channels == 1 && c.channels == 1 && a.n == c.n && a.rows == c.rows &&
          a.cols == c.cols && a.d == c.d && a.d == H * W);
    CHECK(a.pixels && c.pixels && memcmp(a.pixels, c.pixels, sizeof px) == 0);
    cuvae_dataset_free(&a);
    cuvae_dataset_free(&c);
    free(b3);
    free(b4);
}

static void test_hostile_4d(void)
{
    unsigned char px[24] = {0};
    struct {
        uint32_t magic;
        uint32_t dims[4];
        int ndims;
        const char *needle;
    } cases[] = {
        {0x804,
         {2, 3, 4, 2},
         4,
         "2 channels (header N x H x W x C = 2 x 3 x 4 x 2), expected 1 (greyscale) or 3 (RGB)"},
        {0x804, {2, 3, 4, 0}, 4, "a dimension is zero: header says 2 images of 3 x 4 pixels x 0"},
        {0x804, {0, 3, 4, 3}, 4, "a dimension is zero"},
        {0x804, {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 4, "4294967295 channels"},
        {0x804, {0xffffffffu, 0xffffffffu, 0xffffffffu, 3}, 4, "too large: header says"},
        {0x804, {1, 0x10000u, 0x10000u, 3}, 4, "too large"},
        {0x804, {1, 30000, 30000, 3}, 4, "x 3 channels, more than the 4 GiB"},
        {0x804, {60000, 32, 32, 3}, 4, "truncated: expected 184320000 bytes of pixels"},
        {0x805,
         {1, 2, 3, 1},
         4,
         "wrong magic 0x00000805, expected 0x00000803 (an IDX image file) "
         "or 0x00000804 (N x H x W x C, C = 1 or 3)"},
        {0xd04, {1, 2, 3, 1}, 4, "data type 0x0d (float), expected 0x08 (unsigned byte)"},
        {0x804, {1, 2, 3, 1}, 3, "truncated header: expected 20 bytes, got 16"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len;
        unsigned char *b = idx_bytes(cases[i].magic, cases[i].dims, cases[i].ndims, px, 0, &len);
        const char *raw = tpath("bad.idx"), *gz = tpath("bad.gz");
        /* A few payload bytes, except where the header itself is cut short. */
        unsigned char *full = malloc(len + 8);
        memcpy(full, b, len);
        memset(full + len, 1, 8);
        size_t flen = cases[i].ndims == 4 ? len + 8 : len;
        cuvae_test_write_file(raw, full, flen);
        idx_write_gz(gz, full, flen);
        double t0 = cuvae_now();
        EXPECT_FAIL(raw, cases[i].needle);
        EXPECT_FAIL(gz, cases[i].needle);
        CHECK(cuvae_now() - t0 < 1.0); /* refused from the header, nothing inflated */
        free(full);
        free(b);
    }
    /* A 4-D image file where labels are expected is named as the wrong kind. */
    uint32_t dims[4] = {1, 2, 2, 3};
    size_t len;
    unsigned char *b = idx_bytes(0x804, dims, 4, px, 12, &len);
    cuvae_test_write_file(tpath("img.idx"), b, len);
    cuvae_dataset ds;
    cuvae_status st = {{0}};
    CHECK(cuvae_dataset_load(&ds, tpath("img.idx"), tpath("img.idx"), 0, &st) != 0);
    CHECK_MSG(st.msg, "wrong magic 0x00000804, expected 0x00000801 (an IDX label file)");
    free(b);
}

int main(void)
{
    if (cuvae_test_tmpdir(g_dir, sizeof g_dir, "idxc") != 0) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_rgb_planar();
    test_grey_4d_equals_3d();
    test_hostile_4d();
    cuvae_test_remove_dir(g_dir);
    return cuvae_test_finish("idx_colour");
}
