/* The checkpoint's metadata beyond its syntax (see checkpoint.h): the format-2 checksum, which
 * covers the metadata and the tensors' order as well as the data, and the consistency of the
 * counters with each other and with the config in the file. Shared by the reader (checkpoint.c)
 * and the writer (checkpoint_write.c). */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "checkpoint.h"
#include "checkpoint_format.h"

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint32_t crc_text(uint32_t crc, const char *s)
{
    /* With its NUL: "ab","c" and "a","bc" differ. JSON strings here never hold a NUL. */
    return cuvae_crc32_more(crc, (const uint8_t *)s, strlen(s) + 1);
}

int cuvae_ckpt_crc_v2(const json_t *md, const char *const *names, size_t n_names,
                      const uint8_t *section, size_t len, uint32_t *out)
{
    size_t n = json_object_size(md);
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys) return -1;
    size_t k = 0;
    for (void *it = json_object_iter((json_t *)md); it;
         it = json_object_iter_next((json_t *)md, it))
        keys[k++] = json_object_iter_key(it);
    qsort(keys, k, sizeof *keys, cmp_key);
    uint32_t crc = 0;
    for (size_t i = 0; i < k; i++) {
        const char *v = json_string_value(json_object_get(md, keys[i]));
        if (strcmp(keys[i], "crc32") == 0 || !v) continue;
        crc = crc_text(crc_text(crc, keys[i]), v);
    }
    free(keys);
    for (size_t i = 0; i < n_names; i++) crc = crc_text(crc, names[i]);
    *out = cuvae_crc32_more(crc, section, len);
    return 0;
}

int cuvae_ckpt_check_meta(const cuvae_ckpt *ck, const char *name, cuvae_status *st)
{
    const cuvae_ckpt_meta *m = &ck->meta;
    const cuvae_config *c = &ck->config;
    if (cuvae_config_validate(c, st)) return cuvae_fail_prefix(st, "%s: config in metadata", name);
    if (m->rng_counter != m->step)
        return cuvae_fail(st,
                          "%s: metadata: step %" PRIu64 " does not match rng_counter %" PRIu64
                          " (the noise counter is the step count)",
                          name, m->step, m->rng_counter);
    if (m->adam_t > m->step)
        return cuvae_fail(st,
                          "%s: metadata: adam_t %" PRIu64 " exceeds step %" PRIu64
                          " (Adam counts the updates applied, at most one a step)",
                          name, m->adam_t, m->step);
    if (m->seed != c->train.seed)
        return cuvae_fail(st,
                          "%s: metadata: seed %" PRIu64 " differs from train.seed %" PRIu64
                          " of the config in the file",
                          name, m->seed, c->train.seed);
    if (m->data_seed != m->seed)
        return cuvae_fail(st, "%s: metadata: data_seed %" PRIu64 " differs from seed %" PRIu64,
                          name, m->data_seed, m->seed);
    /* Every epoch has at least one step. (epoch_step is bounded by the epoch's batches, which
     * only the data know: the resume checks it; a changed batch size rescales it.) */
    if (m->epoch > m->step)
        return cuvae_fail(st,
                          "%s: metadata: epoch %" PRIu64 " exceeds step %" PRIu64
                          " (every epoch takes at least one step)",
                          name, m->epoch, m->step);
    if (!(isfinite(m->best_valid) || m->best_valid == INFINITY))
        return cuvae_fail(st, "%s: metadata: best_valid %g is neither finite nor inf", name,
                          m->best_valid);
    /* Validation runs at the end of an epoch, before the epoch count moves on. */
    if (isfinite(m->best_valid) && m->epoch == 0)
        return cuvae_fail(st,
                          "%s: metadata: best_valid %.17g in epoch 0 (no validation has run yet)",
                          name, m->best_valid);
    return 0;
}

void cuvae_ckpt_warn_unchecked(const cuvae_ckpt *ck, const char *path, FILE *out)
{
    if (ck->format_version < 2)
        fprintf(out,
                "warning: %s: format_version %d: the metadata is unchecked (its CRC-32 covers "
                "the data only); the values were checked for consistency\n",
                path, ck->format_version);
}

typedef struct {
    const char *name;
    json_int_t begin;
} named_offset;

static int cmp_offset(const void *a, const void *b)
{
    const named_offset *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

int cuvae_ckpt_file_crc(const uint8_t *file, size_t len, uint32_t *out)
{
    if (len < 8) return -1;
    uint64_t hl = cuvae_load_u64_le(file);
    if (hl > CUVAE_CKPT_MAX_HEADER || hl > len - 8) return -1;
    json_t *root = json_loadb((const char *)file + 8, (size_t)hl, 0, NULL);
    const json_t *md = json_object_get(root, "__metadata__");
    size_t n = json_object_size(root);
    named_offset *t = malloc((n ? n : 1) * sizeof *t);
    int rc = -1;
    if (!json_is_object(md) || !t) goto done;
    size_t k = 0;
    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        const json_t *b =
            json_array_get(json_object_get(json_object_iter_value(it), "data_offsets"), 0);
        if (strcmp(json_object_iter_key(it), "__metadata__") == 0) continue;
        if (!json_is_integer(b)) goto done;
        t[k++] = (named_offset){json_object_iter_key(it), json_integer_value(b)};
    }
    qsort(t, k, sizeof *t, cmp_offset);
    const char **names = malloc((k ? k : 1) * sizeof *names);
    if (!names) goto done;
    for (size_t i = 0; i < k; i++) names[i] = t[i].name;
    rc = cuvae_ckpt_crc_v2(md, names, k, file + 8 + hl, (size_t)(len - 8 - hl), out);
    free(names);
done:
    free(t);
    json_decref(root);
    return rc;
}
