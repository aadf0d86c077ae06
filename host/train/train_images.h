/* The trainer's per-epoch image grids, written against the backend interface: validation inputs
 * beside their reconstructions, and decoded prior samples. */
#ifndef CUVAE_TRAIN_IMAGES_H
#define CUVAE_TRAIN_IMAGES_H

#include <stdint.h>

#include "backend.h"
#include "common.h"
#include "dataset.h"
#include "model.h"
#include "png.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A PNG of the first n examples of `data` (uploaded as `set`) beside their reconstructions
 * (encoder mean decoded), RGB when the data has 3 channels: rows of `per_row` originals alternate
 * with rows of their reconstructions. The originals drawn are `originals` ([data->n, d] grey
 * bytes: what the data hold, not the binarized draw the encoder saw; NULL: data->pixels). `style`
 * (may be NULL) scales the tiles and adds a caption (png.h). */
int cuvae_write_recon_grid(cuvae_backend *be, const cuvae_model *m, const cuvae_dataset *data,
                           const uint8_t *originals, cuvae_set set, int n, int per_row, int batch,
                           const cuvae_grid_style *style, const char *path, cuvae_status *st);

/* A PNG of n decoded prior samples, z drawn from (seed, CUVAE_STREAM_SAMPLE, counter), as images
 * of the model's input shape (m->x_shape: RGB when it has 3 channels). */
int cuvae_write_sample_grid(cuvae_backend *be, const cuvae_model *m, uint64_t seed,
                            uint64_t counter, int n, int per_row, int batch,
                            const cuvae_grid_style *style, const char *path, cuvae_status *st);

/* Maps the model's data range (x_lo..x_hi: 0..1 for bytes, min..max of float data outside
 * [0, 1]) to black..white in place; the writer clamps what lies outside. A no-op for 0..1. */
void cuvae_to_display(const cuvae_model *m, float *v, size_t n);

/* Decodes n latents z [n, latent] in backend calls of at most `batch` into x [n, x_dim]. */
int cuvae_decode_all(cuvae_backend *be, const cuvae_model *m, const float *z, int n, int batch,
                     float *x, cuvae_status *st);

#ifdef __cplusplus
}
#endif
#endif
