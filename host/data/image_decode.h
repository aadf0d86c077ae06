/* One PNG or JPEG image in memory: its kind by the first bytes, its header (checked against the
 * size bounds before anything is decoded) and its pixels as 8-bit grey or RGB, for the image-folder
 * reader (image_dir.c) and its fuzz target. Decoded by libpng and libjpeg-turbo, whose errors come
 * back through setjmp/longjmp as one line naming the image. */
#ifndef CUVAE_IMAGE_DECODE_H
#define CUVAE_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest image decoded: 2^27 pixels (e.g. 11585 x 11585), 65535 on a side. A header that
 * claims more (a decompression bomb) is refused before any pixel is decoded. */
#define CUVAE_IMAGE_MAX_PIXELS ((int64_t)1 << 27)
#define CUVAE_IMAGE_MAX_SIDE 65535
/* The largest image file read (whole, into memory). */
#define CUVAE_IMAGE_MAX_FILE ((int64_t)1 << 30)

typedef enum { CUVAE_IMAGE_NONE = 0, CUVAE_IMAGE_PNG = 1, CUVAE_IMAGE_JPEG = 2 } cuvae_image_kind;

typedef struct {
    cuvae_image_kind kind;
    int width, height;
    int colour; /* 1: the image holds colour (RGB, palette, YCbCr); 0: grey */
} cuvae_image_info;

/* PNG by its 8-byte signature, JPEG by FF D8 FF; n may be short (then NONE). */
cuvae_image_kind cuvae_image_sniff(const uint8_t *p, size_t n);

/* The header only: kind, size and whether it holds colour; refuses an image larger than the
 * bounds above and a JPEG in CMYK/YCCK. Errors start with `name`. */
int cuvae_image_header(const uint8_t *p, size_t n, const char *name, cuvae_image_info *info,
                       cuvae_status *st);

/* Decodes into out (info->width * info->height * channels bytes, interleaved), channels 1 or 3:
 * palette expanded, 16-bit samples scaled to 8 bits (rounded), alpha composited over black
 * (v * a / 255, rounded), grey replicated into R = G = B, colour to grey as the BT.601 luma
 * (299 R + 587 G + 114 B + 500) / 1000. PNG gamma and colour profiles are not applied: the stored
 * values are used. A truncated or corrupt image (libjpeg's warnings included) is an error. */
int cuvae_image_decode(const uint8_t *p, size_t n, const char *name, int channels,
                       const cuvae_image_info *info, uint8_t *out, cuvae_status *st);

#ifdef __cplusplus
}
#endif
#endif
