/* Image folders at the pixel level (host/data/image_dir.c, image_decode.c, image_resize.c), on
 * PNG files written with libpng's writer and JPEGs with libjpeg's compressor: 16-bit samples
 * scaled to 8 bits, alpha composited over black, palette with tRNS, Adam7 interlacing, grey
 * replicated to RGB and RGB to BT.601 luma, planar layout; resize-and-centre-crop against pixels
 * computed here another way (box: means of 2 x 2 blocks; bilinear: the closed-form quarter weights
 * of a 2x enlargement; nearest: every other pixel); JPEG: a flat image decodes to its value, a
 * truncated one, a CMYK one and a header claiming 65500 x 65500 pixels are refused naming the
 * file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <libpng16/png.h>

#include "dataset.h"
#include "image_dir.h"
#include "tests_util.h"

/* rows: h rows of packed samples as PNG stores them (8 or 16 bits, big-endian for 16). */
static void write_png(const char *path, int w, int h, int ctype, int depth, const uint8_t *rows,
                      int interlace, const png_color *pal, int npal, const uint8_t *trns, int ntrns)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!f || !png || !info || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    int ch = ctype == PNG_COLOR_TYPE_RGB          ? 3
             : ctype == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
             : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                  : 1;
    size_t rb = (size_t)w * (size_t)ch * (size_t)(depth / 8);
    png_bytep *rp = malloc((size_t)h * sizeof *rp);
    for (int y = 0; y < h; y++) rp[y] = (png_bytep)(rows + (size_t)y * rb);
    png_write_image(png, rp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rp);
    fclose(f);
}

static void write_jpeg(const char *path, int w, int h, int comps, J_COLOR_SPACE cs,
                       const uint8_t *px)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    FILE *f = fopen(path, "wb");
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = comps;
    ci.in_color_space = cs;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 100, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)ci.next_scanline * (size_t)w * (size_t)comps);
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static int load(cuvae_dataset *ds, const char *dir, int rows, int cols, cuvae_resize_filter f,
                int channels, cuvae_status *st)
{
    cuvae_image_opts o = {.rows = rows, .cols = cols, .filter = f, .channels = channels};
    int64_t n_file;
    return cuvae_image_dir_load(ds, dir, &o, 0, &n_file, st);
}

static void test_png_types(void)
{
    char dir[512], p[600];
    cuvae_status st;
    enum { W = 5, H = 3 };
    /* a.png: 16-bit grey; b.png: RGBA; c.png: palette + tRNS; d.png: grey 8 (-> RGB) */
    uint16_t g16[H * W];
    uint8_t rows16[H * W * 2], rgba[H * W * 4], idx[H * W], g8[H * W];
    unsigned s = 9;
    for (int i = 0; i < H * W; i++) {
        g16[i] = (uint16_t)(i == 0 ? 128 : i == 1 ? 129 : i == 2 ? 65535 : rnd(&s) & 0xffff);
        rows16[2 * i] = (uint8_t)(g16[i] >> 8);
        rows16[2 * i + 1] = (uint8_t)g16[i];
        for (int c = 0; c < 4; c++) rgba[4 * i + c] = (uint8_t)rnd(&s);
        idx[i] = (uint8_t)(rnd(&s) % 4);
        g8[i] = (uint8_t)rnd(&s);
    }
    png_color pal[4] = {{10, 20, 30}, {200, 100, 50}, {0, 255, 0}, {1, 2, 3}};
    uint8_t trns[2] = {128, 0}; /* entries 0 and 1 partly and fully transparent */
    CHECK(cuvae_test_tmpdir(dir, sizeof dir, "imgdir") == 0);
    snprintf(p, sizeof p, "%s/a.png", dir);
    write_png(p, W, H, PNG_COLOR_TYPE_GRAY, 16, rows16, 0, NULL, 0, NULL, 0);
    snprintf(p, sizeof p, "%s/b.png", dir);
    write_png(p, W, H, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, 1, NULL, 0, NULL, 0);
    snprintf(p, sizeof p, "%s/c.png", dir);
    write_png(p, W, H, PNG_COLOR_TYPE_PALETTE, 8, idx, 0, pal, 4, trns, 2);
    snprintf(p, sizeof p, "%s/d.png", dir);
    write_png(p, W, H, PNG_COLOR_TYPE_GRAY, 8, g8, 1, NULL, 0, NULL, 0);
    for (int forced = 0; forced < 2; forced++) {
        cuvae_dataset ds;
        int ch = forced ? 1 : 3;
        CHECK(load(&ds, dir, 0, 0, CUVAE_RESIZE_BOX, forced ? 1 : 0, &st) == 0);
        CHECK(ds.n == 4 && ds.channels == ch && ds.rows == H && ds.cols == W);
        if (ds.n != 4) continue;
        size_t plane = H * W, d = (size_t)ds.d;
        int bad = 0;
        for (size_t i = 0; i < plane; i++) {
            int want[4][3];
            int v16 = (int)floor(g16[i] * 255.0 / 65535.0 + 0.5);
            for (int c = 0; c < 3; c++) {
                want[0][c] = v16;
                want[1][c] = (int)floor(rgba[4 * i + c] * rgba[4 * i + 3] / 255.0 + 0.5);
                const uint8_t *e = &pal[idx[i]].red;
                int a = idx[i] < 2 ? trns[idx[i]] : 255;
                want[2][c] = (int)floor(e[c] * a / 255.0 + 0.5);
                want[3][c] = g8[i];
            }
            for (int k = 0; k < 4; k++) {
                if (forced) {
                    int y = (int)floor(
                        (299.0 * want[k][0] + 587.0 * want[k][1] + 114.0 * want[k][2]) / 1000.0 +
                        0.5);
                    if (ds.pixels[k * d + i] != y) bad++;
                    continue;
                }
                for (int c = 0; c < 3; c++)
                    if (ds.pixels[k * d + (size_t)c * plane + i] != want[k][c]) bad++;
            }
        }
        CHECK(bad == 0);
        if (bad) fprintf(stderr, "png types (grey forced %d): %d pixels differ\n", forced, bad);
        cuvae_dataset_free(&ds);
    }
    cuvae_test_remove_dir(dir);
}

static void test_resize(void)
{
    char dir[512], p[600];
    cuvae_status st;
    unsigned s = 5;
    /* 6 x 10 -> 3 x 3 box: s = 2, window columns 2..7: 2 x 2 block means. */
    uint8_t a[6 * 10];
    for (int i = 0; i < 60; i++) a[i] = (uint8_t)rnd(&s);
    CHECK(cuvae_test_tmpdir(dir, sizeof dir, "imgresize") == 0);
    snprintf(p, sizeof p, "%s/a.png", dir);
    write_png(p, 10, 6, PNG_COLOR_TYPE_GRAY, 8, a, 0, NULL, 0, NULL, 0);
    cuvae_dataset ds;
    CHECK(load(&ds, dir, 3, 3, CUVAE_RESIZE_BOX, 0, &st) == 0);
    int bad = 0;
    for (int i = 0; i < 3 && ds.n == 1; i++)
        for (int j = 0; j < 3; j++) {
            int y = 2 * i, x = 2 + 2 * j;
            int sum =
                a[y * 10 + x] + a[y * 10 + x + 1] + a[(y + 1) * 10 + x] + a[(y + 1) * 10 + x + 1];
            if (ds.pixels[i * 3 + j] != (sum + 2) / 4) bad++;
        }
    CHECK(ds.n == 1 && bad == 0);
    cuvae_dataset_free(&ds);

    /* 4 x 4 -> 8 x 8 bilinear: output 2k takes 1/4 of source k-1 and 3/4 of k, output 2k+1 3/4
     * of k and 1/4 of k+1, the edges repeated. */
    uint8_t b[16];
    for (int i = 0; i < 16; i++) b[i] = (uint8_t)rnd(&s);
    remove(p);
    snprintf(p, sizeof p, "%s/b.png", dir);
    write_png(p, 4, 4, PNG_COLOR_TYPE_GRAY, 8, b, 0, NULL, 0, NULL, 0);
    CHECK(load(&ds, dir, 8, 8, CUVAE_RESIZE_BILINEAR, 0, &st) == 0);
    bad = 0;
    for (int i = 0; i < 8 && ds.n == 1; i++)
        for (int j = 0; j < 8; j++) {
            int yi[2], xi[2];
            double wy[2], wx[2];
            int k = i / 2, l = j / 2;
            yi[0] = i % 2 ? k : k - 1, yi[1] = i % 2 ? k + 1 : k;
            wy[0] = i % 2 ? 0.75 : 0.25, wy[1] = 1 - wy[0];
            xi[0] = j % 2 ? l : l - 1, xi[1] = j % 2 ? l + 1 : l;
            wx[0] = j % 2 ? 0.75 : 0.25, wx[1] = 1 - wx[0];
            double v = 0;
            for (int u = 0; u < 2; u++)
                for (int t = 0; t < 2; t++) {
                    int yy = yi[u] < 0 ? 0 : yi[u] > 3 ? 3 : yi[u];
                    int xx = xi[t] < 0 ? 0 : xi[t] > 3 ? 3 : xi[t];
                    v += wy[u] * wx[t] * b[yy * 4 + xx];
                }
            if (ds.pixels[i * 8 + j] != (int)floor(v + 0.5)) bad++;
        }
    CHECK(ds.n == 1 && bad == 0);
    cuvae_dataset_free(&ds);

    /* nearest, 4 x 4 -> 2 x 2: source pixels 1 and 3 of each axis. */
    CHECK(load(&ds, dir, 2, 2, CUVAE_RESIZE_NEAREST, 0, &st) == 0);
    CHECK(ds.n == 1 && ds.pixels[0] == b[5] && ds.pixels[1] == b[7] && ds.pixels[2] == b[13] &&
          ds.pixels[3] == b[15]);
    cuvae_dataset_free(&ds);
    cuvae_test_remove_dir(dir);
}

static void test_jpeg(void)
{
    char dir[512], p[600];
    cuvae_status st;
    uint8_t flat[16 * 16], cmyk[8 * 8 * 4];
    memset(flat, 77, sizeof flat);
    memset(cmyk, 40, sizeof cmyk);
    CHECK(cuvae_test_tmpdir(dir, sizeof dir, "imgjpeg") == 0);
    snprintf(p, sizeof p, "%s/a.jpg", dir);
    write_jpeg(p, 16, 16, 1, JCS_GRAYSCALE, flat);
    cuvae_dataset ds;
    CHECK(load(&ds, dir, 0, 0, CUVAE_RESIZE_BOX, 0, &st) == 0);
    int bad = 0;
    for (int i = 0; i < 256 && ds.n == 1; i++) bad += ds.pixels[i] != 77;
    CHECK(ds.n == 1 && ds.channels == 1 && bad == 0);
    cuvae_dataset_free(&ds);

    size_t n;
    uint8_t *bytes = slurp(p, &n);
    /* cut short */
    spit(p, bytes, n / 2);
    CHECK(load(&ds, dir, 0, 0, CUVAE_RESIZE_BOX, 0, &st) != 0);
    CHECK_MSG(st.msg, "a.jpg: corrupt JPEG: Premature end of JPEG file");
    /* a header claiming 65500 x 65500: SOF0's height and width */
    for (size_t i = 0; i + 9 < n; i++)
        if (bytes[i] == 0xff && bytes[i + 1] == 0xc0) {
            bytes[i + 5] = bytes[i + 7] = 0xff;
            bytes[i + 6] = bytes[i + 8] = 0xdc;
            break;
        }
    spit(p, bytes, n);
    CHECK(load(&ds, dir, 0, 0, CUVAE_RESIZE_BOX, 0, &st) != 0);
    CHECK_MSG(st.msg, "a.jpg: JPEG header says 65500 x 65500 pixels (W x H), more than");
    free(bytes);
    write_jpeg(p, 8, 8, 4, JCS_CMYK, cmyk);
    CHECK(load(&ds, dir, 0, 0, CUVAE_RESIZE_BOX, 0, &st) != 0);
    CHECK_MSG(st.msg, "a.jpg: a JPEG of 4 components (CMYK");
    cuvae_test_remove_dir(dir);
}

int main(void)
{
    test_png_types();
    test_resize();
    test_jpeg();
    return cuvae_test_finish("test_image_dir");
}
