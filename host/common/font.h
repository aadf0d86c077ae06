/* A tiny built-in bitmap font (5 x 8 pixels a glyph: 7 above the baseline, 1 below) for one-line
 * captions on image grids: digits, the Latin letters (capitals drawn as small letters) and a few
 * signs. */
#ifndef CUVAE_FONT_H
#define CUVAE_FONT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUVAE_GLYPH_W 5
#define CUVAE_GLYPH_H 8                         /* 7 rows and a row for descenders */
#define CUVAE_GLYPH_ADVANCE (CUVAE_GLYPH_W + 1) /* a glyph and a column of space */

/* Width in pixels of `text` drawn at `scale` (each font pixel scale x scale). */
int cuvae_font_width(const char *text, int scale);

/* Draws `text` into an 8-bit image of width x height x channels (interleaved) with its top-left
 * corner at (x0, y0), every channel of a glyph pixel set to `value`; pixels outside the image are
 * clipped. A character without a glyph is drawn as '?'. */
void cuvae_font_draw(uint8_t *img, int width, int height, int channels, int x0, int y0,
                     const char *text, int scale, uint8_t value);

#ifdef __cplusplus
}
#endif
#endif
