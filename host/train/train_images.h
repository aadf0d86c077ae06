/* The trainer's per-epoch image grids, written against the backend interface: validation inputs
 * beside their reconstructions, and decoded prior samples. */
#ifndef CUVAE_TRAIN_IMAGES_H
#define CUVAE_TRAIN_IMAGES_H

#include <stdint.h>

#include "backend.h"
#include "common.h"
#include "dataset.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A PNG of the first n examples of `data` (uploaded as `set`) beside their reconstructions
 * (encoder mean decoded), RGB when the data has 3 channels: rows of `per_row` inputs alternate with
 * rows of their reconstructions. */
int cuvae_write_recon_grid(cuvae_backend *be, const cuvae_model *m, const cuvae_dataset *data,
                           cuvae_set set, int n, int per_row, int batch, const char *path,
                           cuvae_status *st);

/* A PNG of n decoded prior samples, z drawn from (seed, CUVAE_STREAM_SAMPLE, counter), as images
 * of the model's input shape (m->x_shape: RGB when it has 3 channels). */
int cuvae_write_sample_grid(cuvae_backend *be, const cuvae_model *m, uint64_t seed,
                            uint64_t counter, int n, int per_row, int batch, const char *path,
                            cuvae_status *st);

#ifdef __cplusplus
}
#endif
#endif
