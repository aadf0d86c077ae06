/* PNG writer for 8-bit grayscale and RGB images (colour types 0 and 2: signature, IHDR, one IDAT of
 * zlib-compressed scanlines with filter type 0, IEND; every chunk with its CRC-32) and grids of
 * example images.
 *
 * Files are written by cuvae_write_file (file_write.h): a new or regular file is replaced
 * atomically, so a reader (or a crash) never sees half an image; a device, FIFO or symlink is
 * written in place.
 *
 * Grids: tiles in row-major order, `per_row` a row, separated by a 1-pixel gap. Gaps and the
 * unused tiles of the last row are mid-grey (128), which stays visible against both the dark
 * background and the bright strokes of MNIST-like images. Colour grids take planar (C x H x W)
 * examples, as the dataset holds them (dataset.c), and interleave them into RGB pixels. A styled
 * grid scales each tile up by an integer factor (nearest neighbour, so pixels stay sharp) and may
 * carry a one-line caption in the built-in font (font.h) on a black band above the tiles. */
#include "png.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "file_write.h"
#include "font.h"

#define PNG_GAP_VALUE 128
/* PNG stores widths and heights as 31-bit values. */
#define PNG_MAX_DIM 0x7fffffffL

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes one chunk: length, type, data, CRC-32 over type and data. Returns 0 or -1 (errno set
 * by stdio). */
static int write_chunk(FILE *f, const char type[4], const unsigned char *data, uint32_t len)
{
    unsigned char head[8], tail[4];
    put_be32(head, len);
    memcpy(head + 4, type, 4);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)type, 4);
    if (len) crc = crc32(crc, data, len);
    put_be32(tail, (uint32_t)crc);
    if (fwrite(head, 1, 8, f) != 8) return -1;
    if (len && fwrite(data, 1, len, f) != len) return -1;
    return fwrite(tail, 1, 4, f) == 4 ? 0 : -1;
}

/* The compressed image data: each scanline is a filter byte (0, none) and the row's pixels. */
static int compress_scanlines(const char *path, const uint8_t *pixels, int width, int height,
                              int channels, unsigned char **out, uLongf *out_len, cuvae_status *st)
{
    size_t row = (size_t)width * (size_t)channels, stride = row + 1;
    size_t raw_len = stride * (size_t)height;
    if (raw_len > ULONG_MAX / 2)
        return cuvae_fail(st, "cannot write PNG %s: %d x %d pixels is too large", path, width,
                          height);
    unsigned char *raw = cuvae_malloc(raw_len, "PNG scanlines", st);
    if (!raw) return -1;
    for (int y = 0; y < height; y++) {
        raw[(size_t)y * stride] = 0;
        memcpy(raw + (size_t)y * stride + 1, pixels + (size_t)y * row, row);
    }
    uLongf bound = compressBound((uLong)raw_len);
    unsigned char *z = cuvae_malloc(bound, "PNG image data", st);
    if (!z) {
        free(raw);
        return -1;
    }
    int rc = compress2(z, &bound, raw, (uLong)raw_len, 6);
    free(raw);
    if (rc != Z_OK) {
        free(z);
        return cuvae_fail(st, "cannot write PNG %s: zlib compress2 failed: %s", path, zError(rc));
    }
    if (bound > 0x7fffffffUL) {
        free(z);
        return cuvae_fail(st, "cannot write PNG %s: compressed data exceeds a PNG chunk", path);
    }
    *out = z;
    *out_len = bound;
    return 0;
}

int cuvae_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                    cuvae_status *st)
{
    /* An int is within PNG's 31-bit limit; only non-positive sizes need refusing. */
    if (width <= 0 || height <= 0)
        return cuvae_fail(st, "cannot write PNG %s: invalid size %d x %d", path, width, height);
    if (channels != 1 && channels != 3)
        return cuvae_fail(st, "cannot write PNG %s: %d channels, expected 1 (grey) or 3 (RGB)",
                          path, channels);
    unsigned char *idat = NULL;
    uLongf idat_len = 0;
    if (compress_scanlines(path, pixels, width, height, channels, &idat, &idat_len, st)) return -1;

    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char ihdr[13];
    put_be32(ihdr, (uint32_t)width);
    put_be32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8;                     /* bit depth */
    ihdr[9] = channels == 3 ? 2 : 0; /* colour type: 2 RGB, 0 grayscale */
    ihdr[10] = 0;                    /* compression: deflate */
    ihdr[11] = 0;                    /* filter method 0 */
    ihdr[12] = 0;                    /* no interlace */

    /* The image is assembled in memory and written by the one file writer (file_write.h). */
    char *buf = NULL;
    size_t buf_len = 0;
    int err = 0;
    FILE *f = open_memstream(&buf, &buf_len);
    if (!f) {
        err = errno ? errno : ENOMEM;
    } else {
        errno = 0;
        if (fwrite(signature, 1, sizeof signature, f) != sizeof signature ||
            write_chunk(f, "IHDR", ihdr, sizeof ihdr) ||
            write_chunk(f, "IDAT", idat, (uint32_t)idat_len) || write_chunk(f, "IEND", NULL, 0))
            err = errno ? errno : ENOMEM;
        if (fclose(f) != 0 && !err) err = errno ? errno : ENOMEM;
    }
    free(idat);
    int rc = 0;
    if (err)
        rc = cuvae_fail(st, "cannot write PNG %s: %s", path, strerror(err));
    else if (cuvae_write_file(path, buf, buf_len, st))
        rc = cuvae_fail_prefix(st, "cannot write PNG");
    free(buf);
    return rc;
}

int cuvae_png_write_gray(const char *path, const uint8_t *pixels, int width, int height,
                         cuvae_status *st)
{
    return cuvae_png_write(path, pixels, width, height, 1, st);
}

static uint8_t unit_to_byte(float v)
{
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 1.0f) return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

int cuvae_png_write_grid(const char *path, const float *images, int n, int rows, int cols,
                         int per_row, cuvae_status *st)
{
    return cuvae_png_write_image_grid(path, images, n, 1, rows, cols, per_row, st);
}

int cuvae_png_write_image_grid(const char *path, const float *images, int n, int channels, int rows,
                               int cols, int per_row, cuvae_status *st)
{
    return cuvae_png_write_grid_styled(path, images, n, channels, rows, cols, per_row, NULL, st);
}

int cuvae_grid_auto_scale(int rows, int cols)
{
    int side = rows > cols ? rows : cols, s = 1;
    while (side > 0 && s < CUVAE_GRID_MAX_SCALE && side * s < CUVAE_GRID_MIN_TILE) s++;
    return s;
}

int cuvae_png_write_grid_styled(const char *path, const float *images, int n, int channels,
                                int rows, int cols, int per_row, const cuvae_grid_style *style,
                                cuvae_status *st)
{
    int s = style && style->scale > 1 ? style->scale : 1;
    const char *caption = style && style->caption && style->caption[0] ? style->caption : NULL;
    if (n <= 0 || rows <= 0 || cols <= 0 || per_row <= 0 || (channels != 1 && channels != 3) ||
        s > CUVAE_GRID_MAX_SCALE)
        return cuvae_fail(st,
                          "cannot write PNG %s: invalid grid of %d images of %d x %d x %d "
                          "channels, %d a row, scale %d",
                          path, n, rows, cols, channels, per_row, s);
    int64_t th = (int64_t)rows * s, tw = (int64_t)cols * s; /* a tile, scaled */
    int fs = s > 1 ? 2 : 1;                                 /* the caption's font scale */
    int64_t cap_h = caption ? (int64_t)(CUVAE_GLYPH_H + 4) * fs : 0;
    int64_t tiles_x = n < per_row ? n : per_row;
    int64_t tiles_y = ((int64_t)n + per_row - 1) / per_row;
    int64_t width = tiles_x * (tw + 1) - 1, height = cap_h + tiles_y * (th + 1) - 1;
    if (width > PNG_MAX_DIM || height > PNG_MAX_DIM || width * height > ((int64_t)1 << 34))
        return cuvae_fail(st, "cannot write PNG %s: a grid of %lld x %lld pixels is too large",
                          path, (long long)width, (long long)height);
    size_t bytes = (size_t)(width * height) * (size_t)channels, plane = (size_t)rows * cols;
    uint8_t *grid = cuvae_malloc(bytes, "the image grid", st);
    if (!grid) return -1;
    memset(grid, PNG_GAP_VALUE, bytes);
    if (caption) {
        /* White text on a black band above the tiles. */
        memset(grid, 0, (size_t)(cap_h * width) * (size_t)channels);
        cuvae_font_draw(grid, (int)width, (int)cap_h, channels, 2 * fs, 2 * fs, caption, fs, 255);
    }
    for (int i = 0; i < n; i++) {
        int64_t x0 = (int64_t)(i % per_row) * (tw + 1);
        int64_t y0 = cap_h + (int64_t)(i / per_row) * (th + 1);
        const float *img = images + (size_t)i * plane * (size_t)channels;
        for (int c = 0; c < channels; c++)
            for (int64_t y = 0; y < th; y++)
                for (int64_t x = 0; x < tw; x++)
                    grid[((y0 + y) * width + x0 + x) * channels + c] = unit_to_byte(
                        img[(size_t)c * plane + (size_t)(y / s) * (size_t)cols + (size_t)(x / s)]);
    }
    int rc = cuvae_png_write(path, grid, (int)width, (int)height, channels, st);
    free(grid);
    return rc;
}
