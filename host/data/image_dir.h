/* A directory of PNG and JPEG images as an image set (image_dir.c), read into the same planar
 * N x C x H x W bytes as the other formats (dataset.h).
 *
 * Which files: those whose first bytes are a PNG or JPEG signature, whatever their names; a file
 * named *.png, *.jpg, *.jpeg, *.jpe or *.jfif (any case) that is neither is an error (a broken
 * image); any other file is ignored, and so is every name that starts with '.'. Without labels
 * only the folder's own files are read (subfolders are ignored); with labels (data.folder_labels)
 * each first-level subfolder is a class, its images found at any depth below it, and an image
 * directly in the folder is an error. Order: names sorted byte-wise at each level, depth first;
 * class ids are the subfolders' positions in that order (at most 256 classes).
 *
 * Size: with no target size every image must have the first one's; with one, each image is
 * resized so that it covers the target and centre-cropped (image_resize.c):
 *   box:      each output pixel is the mean of the source area it covers (fractional pixels
 *             weighted by their overlap): antialiased, the right filter for shrinking;
 *   bilinear: the four source pixels around the output pixel's centre (x = (i + 0.5) s - 0.5,
 *             edges repeated), as OpenCV's INTER_LINEAR and PyTorch's bilinear with
 *             align_corners=False, no antialiasing;
 *   nearest:  the source pixel under the output pixel's centre (floor((i + 0.5) s)), as
 *             PyTorch's "nearest-exact".
 * Channels: 1 or 3 for the whole set; by default 3 when any image of the folder holds colour (grey
 * images are then replicated), else 1; forced to 1 (luma) or 3 by the options. Decoding:
 * image_decode.h (alpha composited over black, 16-bit scaled to 8). */
#ifndef CUVAE_IMAGE_DIR_H
#define CUVAE_IMAGE_DIR_H

#include <stdint.h>

#include "common.h"
#include "config.h"
#include "dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUVAE_IMAGE_MAX_CLASSES 256

typedef struct cuvae_image_opts {
    int rows, cols;             /* target size; 0 = every image's own (they must agree) */
    cuvae_resize_filter filter; /* when resizing */
    int channels;               /* 0 = by the images (3 when any holds colour), else 1 or 3 */
    int labels;                 /* labels from the first-level subfolders */
} cuvae_image_opts;

/* The options a config asks for (data.image_size, resize_filter, image_channels, folder_labels);
 * data.image_size was checked by cuvae_config_validate. */
void cuvae_image_opts_from_config(cuvae_image_opts *o, const cuvae_config *c);

/* 1 when path names a directory (following symbolic links), else 0. */
int cuvae_image_dir_is(const char *path);

/* The folder's files and all their headers (limit > 0 keeps the first `limit` images, but the
 * shape and channels are the whole folder's): as cuvae_idx_peek_images, no pixel decoded. *staging:
 * the bytes decoding one image takes at most (the file, its decoded pixels, a resize row). */
int cuvae_image_dir_peek(const char *dir, const cuvae_image_opts *o, int64_t limit, int64_t *n_kept,
                         int64_t *n_file, int *channels, int *rows, int *cols, uint64_t *staging,
                         cuvae_status *st);

/* Loads the first `limit` (0 = all) images; with o->labels also ds->labels and the class names
 * (ds->class_names). *n_file: the images in the folder. */
int cuvae_image_dir_load(cuvae_dataset *ds, const char *dir, const cuvae_image_opts *o,
                         int64_t limit, int64_t *n_file, cuvae_status *st);

/* Resizes src (h x w pixels of `channels` interleaved bytes) to cover rows x cols and
 * centre-crops it, writing planar out [channels, rows, cols]. */
int cuvae_image_resize(const uint8_t *src, int w, int h, int channels, int rows, int cols,
                       cuvae_resize_filter f, uint8_t *out, cuvae_status *st);

#ifdef __cplusplus
}
#endif
#endif
