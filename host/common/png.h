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

#ifdef __cplusplus
}
#endif
#endif
