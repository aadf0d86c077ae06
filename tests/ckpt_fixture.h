/* The fixture shared by the checkpoint tests (test_checkpoint.c, test_checkpoint_hostile.c): a
 * small model with known parameters, Adam moments and metadata, and file helpers. */
#ifndef CUVAE_CKPT_FIXTURE_H
#define CUVAE_CKPT_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"

#define X_DIM 6

typedef struct {
    cuvae_config config;
    cuvae_model model;
    float *params, *m, *v;
    cuvae_ckpt_meta meta;
} fixture;

/* snprintf that stops the test on truncation: every path and phrase here is short, so a cut one
 * would be a bug of the test itself. */
void sfmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A 6-5-4-3 model (mirrored decoder) from `seed`, with m, v and metadata derived from it. */
void fixture_init(fixture *f, uint64_t seed);
void fixture_free(fixture *f);
/* The fixture's training state, with or without the optimizer's moments. */
cuvae_train_state state_of(const fixture *f, int with_optim);
/* cuvae_ckpt_write of the fixture to path. */
int write_fixture(const char *path, const fixture *f, int with_optim, cuvae_status *st);
/* The whole file in a malloc'ed buffer (NULL when unreadable). */
uint8_t *read_all(const char *path, size_t *len);
/* A little-endian 64-bit integer. */
uint64_t le64(const uint8_t *p);

#endif
