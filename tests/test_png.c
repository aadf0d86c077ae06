/* PNG writer: the file is read back by a reader written here from the PNG specification (its own
 * CRC-32, chunk walk and IHDR checks; only inflation comes from zlib), and the grid's layout,
 * clamping and NaN handling are compared pixel by pixel, filter bytes included. Failed writes
 * must report and leave no temporary file. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "font.h"
#include "png.h"
#include "tests_util.h"

static uint32_t spec_crc32(const unsigned char *p, size_t n, uint32_t crc)
{
    /* Bitwise CRC-32 (polynomial 0xedb88320, reflected), as in the PNG specification's annex. */
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Parses a grayscale 8-bit PNG, checking everything on the way; returns the decoded pixels or
 * NULL (after failed checks). */
/* Reads a PNG of `channels` (1: grayscale, 3: RGB) 8-bit samples a pixel. */
static uint8_t *read_png_channels(const char *path, int *w, int *h, int channels)
{
    size_t len = 0;
    unsigned char *file = slurp(path, &len);
    CHECK(file != NULL);
    if (!file) return NULL;
    static const unsigned char sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    CHECK(len >= 8 && memcmp(file, sig, 8) == 0);
    size_t at = 8, idat_len = 0;
    unsigned char *idat = NULL;
    int chunks = 0, seen_iend = 0;
    *w = *h = 0;
    while (at + 12 <= len && !seen_iend) {
        uint32_t clen = rd32(file + at);
        CHECK(clen <= len - at - 12);
        if (clen > len - at - 12) break;
        const unsigned char *type = file + at + 4, *data = file + at + 8;
        uint32_t crc = spec_crc32(type, 4 + (size_t)clen, 0);
        CHECK(crc == rd32(data + clen));
        if (chunks == 0) CHECK(memcmp(type, "IHDR", 4) == 0);
        if (memcmp(type, "IHDR", 4) == 0) {
            CHECK(chunks == 0 && clen == 13);
            *w = (int)rd32(data);
            *h = (int)rd32(data + 4);
            CHECK(data[8] == 8);                       /* bit depth */
            CHECK(data[9] == (channels == 3 ? 2 : 0)); /* grayscale, or RGB */
            CHECK(data[10] == 0);                      /* deflate */
            CHECK(data[11] == 0);                      /* filter method */
            CHECK(data[12] == 0);                      /* no interlace */
        } else if (memcmp(type, "IDAT", 4) == 0) {
            unsigned char *grown = realloc(idat, idat_len + clen + 1);
            CHECK(grown != NULL);
            if (!grown) break;
            idat = grown;
            memcpy(idat + idat_len, data, clen);
            idat_len += clen;
        } else if (memcmp(type, "IEND", 4) == 0) {
            CHECK(clen == 0);
            seen_iend = 1;
        }
        chunks++;
        at += 12 + (size_t)clen;
    }
    CHECK(seen_iend);
    CHECK(at == len); /* nothing after IEND */
    CHECK(*w > 0 && *h > 0 && idat_len > 0);
    uint8_t *pixels = NULL;
    if (*w > 0 && *h > 0 && idat_len > 0) {
        size_t row = (size_t)*w * (size_t)channels, stride = row + 1;
        uLongf raw_len = (uLongf)(stride * (size_t)*h);
        unsigned char *raw = malloc(raw_len + 1);
        uLongf got = raw_len + 1; /* one spare byte so that extra data is noticed */
        int rc = uncompress(raw, &got, idat, (uLong)idat_len);
        CHECK(rc == Z_OK);
        CHECK(got == raw_len);
        if (rc == Z_OK && got == raw_len) {
            pixels = malloc(row * (size_t)*h);
            for (int y = 0; y < *h; y++) {
                CHECK(raw[(size_t)y * stride] == 0); /* filter type none */
                memcpy(pixels + (size_t)y * row, raw + (size_t)y * stride + 1, row);
            }
        }
        free(raw);
    }
    free(idat);
    free(file);
    return pixels;
}

static uint8_t *read_png(const char *path, int *w, int *h)
{
    return read_png_channels(path, w, h, 1);
}

static int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void test_grid(const char *dir)
{
    /* 5 images of 3 x 4, 3 a row: 2 rows of tiles, the last row one tile short. */
    enum { N = 5, R = 3, C = 4, PER = 3 };
    float img[N * R * C];
    for (int i = 0; i < N * R * C; i++) img[i] = (float)(i % 13) / 12.0f;
    img[0] = -0.5f;        /* clamps to 0 */
    img[1] = 1.7f;         /* clamps to 255 */
    img[2] = NAN;          /* becomes 0 */
    img[3] = INFINITY;     /* clamps to 255 */
    img[R * C + 5] = 0.5f; /* 127.5 rounds to 128 */
    char path[1024];
    snprintf(path, sizeof path, "%s/grid.png", dir);
    cuvae_status st = {{0}};
    CHECK(cuvae_png_write_grid(path, img, N, R, C, PER, &st) == 0);
    int w, h;
    uint8_t *px = read_png(path, &w, &h);
    const int ew = PER * (C + 1) - 1, eh = 2 * (R + 1) - 1;
    CHECK(w == ew && h == eh);
    if (px && w == ew && h == eh) {
        int bad = 0;
        for (int y = 0; y < eh; y++) {
            for (int x = 0; x < ew; x++) {
                int tx = x / (C + 1), ty = y / (R + 1), ix = x % (C + 1), iy = y % (R + 1);
                int i = ty * PER + tx;
                int expect = 128; /* gap or unused tile */
                if (ix < C && iy < R && i < N) {
                    float v = img[(i * R + iy) * C + ix];
                    expect = isnan(v) || v <= 0 ? 0 : v >= 1 ? 255 : (int)floorf(v * 255 + 0.5f);
                }
                if (px[y * ew + x] != expect && bad++ < 5)
                    fprintf(stderr, "grid pixel (%d, %d): got %d, expected %d\n", x, y,
                            px[y * ew + x], expect);
            }
        }
        CHECK(bad == 0);
        CHECK(px[0] == 0 && px[1] == 255 && px[2] == 0 && px[3] == 255);
        CHECK(px[C + 1 + 5 % C + (5 / C) * ew] == 128); /* image 1, pixel 5 = (1, 1) */
    }
    free(px);
    CHECK(count_temp_files(dir) == 0);
}

static void test_gray_roundtrip(const char *dir)
{
    /* A larger image with incompressible content exercises multi-block deflate output. */
    const int w = 301, h = 97;
    uint8_t *img = malloc((size_t)w * h);
    uint32_t s = 12345;
    for (int i = 0; i < w * h; i++) img[i] = (uint8_t)((s = s * 1664525u + 1013904223u) >> 24);
    char path[1024];
    snprintf(path, sizeof path, "%s/noise.png", dir);
    cuvae_status st = {{0}};
    CHECK(cuvae_png_write_gray(path, img, w, h, &st) == 0);
    /* Writing again replaces the file atomically. */
    CHECK(cuvae_png_write_gray(path, img, w, h, &st) == 0);
    int rw, rh;
    uint8_t *px = read_png(path, &rw, &rh);
    CHECK(rw == w && rh == h);
    CHECK(px && rw == w && rh == h && memcmp(px, img, (size_t)w * h) == 0);
    free(px);
    /* A 1 x 1 image is the smallest legal PNG. */
    snprintf(path, sizeof path, "%s/one.png", dir);
    CHECK(cuvae_png_write_gray(path, img, 1, 1, &st) == 0);
    px = read_png(path, &rw, &rh);
    CHECK(px && rw == 1 && rh == 1 && px[0] == img[0]);
    free(px);
    free(img);
    CHECK(count_temp_files(dir) == 0);
}

static void test_failures(const char *dir)
{
    uint8_t img[4] = {1, 2, 3, 4};
    char path[1024];
    cuvae_status st = {{0}};
    snprintf(path, sizeof path, "%s/missing/sub/x.png", dir);
    CHECK(cuvae_png_write_gray(path, img, 2, 2, &st) != 0);
    CHECK_MSG(st.msg, "cannot write PNG");
    CHECK_MSG(st.msg, path);
    CHECK_MSG(st.msg, "No such file or directory");
    /* The target is a directory: the temporary file is written, the rename fails, and the
     * temporary must be gone afterwards. */
    snprintf(path, sizeof path, "%s/adir", dir);
    CHECK(mkdir(path, 0700) == 0);
    memset(&st, 0, sizeof st);
    CHECK(cuvae_png_write_gray(path, img, 2, 2, &st) != 0);
    CHECK_MSG(st.msg, "cannot write PNG");
    CHECK_MSG(st.msg, "Is a directory");
    CHECK(count_temp_files(dir) == 0);
    rmdir(path);
    snprintf(path, sizeof path, "%s/bad.png", dir);
    CHECK(cuvae_png_write_gray(path, img, 0, 2, &st) != 0);
    CHECK_MSG(st.msg, "invalid size 0 x 2");
    float f[4] = {0};
    CHECK(cuvae_png_write_grid(path, f, 0, 2, 2, 1, &st) != 0);
    CHECK_MSG(st.msg, "invalid grid");
    CHECK(access(path, F_OK) != 0);
}

/* RGB: planar (C x H x W) images become interleaved RGB pixels, colour type 2, gaps grey in all
 * three channels. */
static void test_rgb_grid(const char *dir)
{
    enum { N = 3, R = 2, C = 3, PER = 2 };
    float img[N * 3 * R * C];
    for (int i = 0; i < N; i++)
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < R * C; p++)
                img[(i * 3 + c) * R * C + p] = (float)(i * 60 + c * 20 + p) / 255.0f;
    char path[600];
    snprintf(path, sizeof path, "%s/rgb.png", dir);
    cuvae_status st = {{0}};
    CHECK(cuvae_png_write_image_grid(path, img, N, 3, R, C, PER, &st) == 0);
    int w = 0, h = 0;
    uint8_t *px = read_png_channels(path, &w, &h, 3);
    CHECK(w == PER * (C + 1) - 1 && h == 2 * (R + 1) - 1);
    int ok = px != NULL;
    for (int y = 0; ok && y < h; y++)
        for (int x = 0; x < w; x++) {
            int tx = x / (C + 1), ty = y / (R + 1), cx = x % (C + 1), cy = y % (R + 1);
            int i = ty * PER + tx, tile = cx < C && cy < R && i < N;
            for (int c = 0; c < 3; c++) {
                int want = tile ? i * 60 + c * 20 + cy * C + cx : 128;
                ok &= px[((size_t)y * w + x) * 3 + c] == want;
            }
        }
    CHECK(ok);
    free(px);
    CHECK(cuvae_png_write_image_grid(path, img, N, 2, R, C, PER, &st) != 0);
    CHECK_MSG(st.msg, "2 channels");
    remove(path);
}

/* Scaled tiles (nearest neighbour), the caption band and the default scale. */
static void test_styled_grid(const char *dir)
{
    enum { N = 2, R = 3, C = 4, S = 3 };
    float img[N * R * C];
    for (int i = 0; i < N * R * C; i++) img[i] = (float)i / (float)(N * R * C - 1);
    char path[1024];
    snprintf(path, sizeof path, "%s/styled.png", dir);
    cuvae_status st = {{0}};
    cuvae_grid_style style = {.scale = S, .caption = "1"};
    CHECK(cuvae_png_write_grid_styled(path, img, N, 1, R, C, N, &style, &st) == 0);
    int w, h;
    uint8_t *px = read_png(path, &w, &h);
    const int band = (CUVAE_GLYPH_H + 4) * 2, ew = N * (C * S + 1) - 1, eh = band + R * S;
    CHECK(w == ew && h == eh);
    if (px && w == ew && h == eh) {
        int bad = 0;
        for (int y = band; y < eh; y++)
            for (int x = 0; x < ew; x++) {
                int i = x / (C * S + 1), ix = x % (C * S + 1), iy = y - band;
                int expect = 128;
                if (ix < C * S)
                    expect = (int)floorf(img[(i * R + iy / S) * C + ix / S] * 255.0f + 0.5f);
                if (px[y * ew + x] != expect) bad++;
            }
        CHECK(bad == 0);
        /* The band is black but for the glyph: '1' starts "..#.." at (4, 4), font scale 2. */
        CHECK(px[0] == 0 && px[4 * ew + 4] == 0 && px[4 * ew + 8] == 255 && px[5 * ew + 9] == 255);
        int white = 0;
        for (int k = 0; k < band * ew; k++) white += px[k] == 255;
        CHECK(white > 0 && white < band * ew / 4);
    }
    free(px);
    /* Scale 0 or 1 and no caption: the plain grid. */
    cuvae_grid_style plain = {.scale = 1, .caption = ""};
    CHECK(cuvae_png_write_grid_styled(path, img, N, 1, R, C, N, &plain, &st) == 0);
    px = read_png(path, &w, &h);
    CHECK(w == N * (C + 1) - 1 && h == R);
    free(px);
    cuvae_grid_style huge = {.scale = CUVAE_GRID_MAX_SCALE + 1};
    CHECK(cuvae_png_write_grid_styled(path, img, N, 1, R, C, N, &huge, &st) == -1);
    CHECK_MSG(st.msg, "scale 17");
    CHECK(cuvae_grid_auto_scale(28, 28) == 2 && cuvae_grid_auto_scale(12, 12) == 5);
    CHECK(cuvae_grid_auto_scale(64, 64) == 1 && cuvae_grid_auto_scale(6, 10) == 6);
    CHECK(cuvae_grid_auto_scale(1, 1) == CUVAE_GRID_MAX_SCALE);
    CHECK(cuvae_font_width("ab", 2) == (2 * CUVAE_GLYPH_ADVANCE - 1) * 2);
}

int main(void)
{
    char dir[512];
    if (cuvae_test_tmpdir(dir, sizeof dir, "png") != 0) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_grid(dir);
    test_gray_roundtrip(dir);
    test_failures(dir);
    test_rgb_grid(dir);
    test_styled_grid(dir);
    const char *names[] = {"grid.png", "noise.png", "one.png", "styled.png"};
    char path[600];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        remove(path);
    }
    rmdir(dir);
    return cuvae_test_finish("png");
}
