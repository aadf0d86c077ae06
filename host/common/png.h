/* PNG writer (8-bit grayscale or RGB, zlib-compressed IDAT) and image grids of examples. */
#ifndef CUVAE_PNG_H
#define CUVAE_PNG_H

#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes an 8-bit PNG atomically (temporary file + rename): channels 1 (grayscale, colour type 0)
 * or 3 (RGB interleaved per pixel, colour type 2). */
int cuvae_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                    cuvae_status *st);

/* Writes a grayscale PNG atomically (temporary file + rename). */
int cuvae_png_write_gray(const char *path, const uint8_t *pixels, int width, int height,
                         cuvae_status *st);

/* Tiles n images of rows x cols floats in [0,1] (clamped) into a grid with `per_row` images a row
 * and a 1-pixel gap, and writes it. */
int cuvae_png_write_grid(const char *path, const float *images, int n, int rows, int cols,
                         int per_row, cuvae_status *st);

/* The same for images of `channels` (1 or 3) planes of rows x cols each (C x H x W, as the dataset
 * holds examples): grayscale for 1, RGB for 3. */
int cuvae_png_write_image_grid(const char *path, const float *images, int n, int channels, int rows,
                               int cols, int per_row, cuvae_status *st);

/* Tiles smaller than this many pixels a side are scaled up by default; the scale is at most
 * CUVAE_GRID_MAX_SCALE. */
#define CUVAE_GRID_MIN_TILE 56
#define CUVAE_GRID_MAX_SCALE 16

/* How a grid is drawn; a NULL style is scale 1, no caption. */
typedef struct {
    int scale;           /* each data pixel drawn as scale x scale (nearest neighbour); <= 1: 1 */
    const char *caption; /* one line on a black band above the tiles; NULL or "": none */
} cuvae_grid_style;

/* The default scale of tiles of rows x cols: the smallest integer that makes the larger side at
 * least CUVAE_GRID_MIN_TILE pixels (28 x 28: 2, 12 x 12: 5, 64 x 64: 1), at most
 * CUVAE_GRID_MAX_SCALE. */
int cuvae_grid_auto_scale(int rows, int cols);

/* cuvae_png_write_image_grid with a style: tiles of (rows x scale) x (cols x scale) pixels, still
 * 1-pixel gaps, and the caption band's (8 + 4) x f pixels on top (f = 2 when scale > 1, else 1). */
int cuvae_png_write_grid_styled(const char *path, const float *images, int n, int channels,
                                int rows, int cols, int per_row, const cuvae_grid_style *style,
                                cuvae_status *st);

#ifdef __cplusplus
}
#endif
#endif
