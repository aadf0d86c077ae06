/* The memory estimate: what a run will allocate, part by part, compared before allocating with
 * what the machine (or the GPU) has, so that a model or data set that cannot fit is refused at
 * once with the sizes and the keys to change, instead of being granted memory that the first
 * steps (or the kernel's OOM killer) take back.
 *
 * Host memory available: MemAvailable of /proc/meminfo (else the free pages sysconf reports),
 * lowered by RLIMIT_AS and RLIMIT_DATA when they are set, and by the environment variable
 * CUVAE_MEMORY_LIMIT (bytes, or a number with a K, M, G or T suffix, powers of 1024) when it
 * is given: a cap for containers that /proc does not describe, and for tests. */
#ifndef CUVAE_MEMORY_PLAN_H
#define CUVAE_MEMORY_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUVAE_MEM_MAX_PARTS 16

typedef struct {
    const char *name; /* "parameters", "training data", ... (a string literal) */
    uint64_t bytes;
} cuvae_mem_part;

typedef struct {
    cuvae_mem_part part[CUVAE_MEM_MAX_PARTS];
    int n;
} cuvae_mem_plan;

/* a * b and a + b, saturating at UINT64_MAX: an estimate from hostile sizes never wraps. */
uint64_t cuvae_mem_mul(uint64_t a, uint64_t b);
uint64_t cuvae_mem_add_bytes(uint64_t a, uint64_t b);

/* Adds a part (merged with a part of the same name); parts of 0 bytes are left out. */
void cuvae_mem_add(cuvae_mem_plan *p, const char *name, uint64_t bytes);

/* Adds the "uploaded data" part: rows[s] examples of x_dim bytes for each set s of `sets`. */
void cuvae_mem_add_uploads(cuvae_mem_plan *p, const int64_t *rows, int sets, int x_dim);

/* Appends every part of `from` to `to`. */
void cuvae_mem_merge(cuvae_mem_plan *to, const cuvae_mem_plan *from);

uint64_t cuvae_mem_total(const cuvae_mem_plan *p);

/* The host memory this process may still take (see the top comment), with where the figure
 * comes from ("MemAvailable", "CUVAE_MEMORY_LIMIT", ...) in source. Fails only when
 * CUVAE_MEMORY_LIMIT is malformed; *bytes is UINT64_MAX when nothing is known. */
int cuvae_mem_host_available(uint64_t *bytes, char *source, size_t source_len, cuvae_status *st);

/* Fails when the plan's total exceeds `available`, with one line naming the total, every part,
 * what is available (where, source) and `advice` (the keys to change). */
int cuvae_mem_check(const cuvae_mem_plan *p, uint64_t available, const char *where,
                    const char *source, const char *advice, cuvae_status *st);

/* cuvae_mem_host_available, then cuvae_mem_check against it ("this machine"). */
int cuvae_mem_check_host(const cuvae_mem_plan *p, const char *advice, cuvae_status *st);

/* The advice of a refused training run: the keys that change what it needs. */
#define CUVAE_MEM_ADVICE                                                                           \
    "make model.hidden (or model.encoder's layers) or model.latent smaller, or train.batch_size, " \
    "or use fewer examples "                                                                       \
    "(data.limit_train, data.limit_test)"

#ifdef __cplusplus
}
#endif
#endif
