/* Writing checkpoint files (see checkpoint.h): the whole safetensors file is built in memory,
 * read back through the parser, and only then handed to cuvae_write_file (file_write.h: a
 * temporary, fsync, rename, directory fsync). Whatever fails, a good file at path stays as it
 * was and no temporary is left behind. */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "checkpoint_format.h"
#include "file_write.h"

/* The header entry of one tensor; NULL when out of memory. */
static json_t *tensor_json(const cuvae_tensor_info *t, uint64_t begin)
{
    json_t *o = json_object(), *shape = json_array();
    int bad = !o || !shape;
    for (int d = 0; !bad && d < t->ndim; d++)
        bad = json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0;
    uint64_t end = begin + 4 * (uint64_t)t->count;
    /* json_object_set_new takes the value even when it fails, so nothing leaks on the way out. */
    if (bad || json_object_set_new(o, "dtype", json_string("F32")) ||
        json_object_set_new(o, "shape", json_incref(shape)) ||
        json_object_set_new(o, "data_offsets",
                            json_pack("[II]", (json_int_t)begin, (json_int_t)end))) {
        json_decref(shape);
        json_decref(o);
        return NULL;
    }
    json_decref(shape);
    return o;
}

/* Checks what the writer is given, so that it never writes a file the reader would refuse. */
static int check_inputs(const cuvae_config *config, const cuvae_model *model,
                        const cuvae_ckpt_meta *meta, const cuvae_train_state *state,
                        const cuvae_tensor_info *t, int n_t, cuvae_status *st)
{
    cuvae_model ref;
    if (cuvae_model_layout_shape(&ref, config, model->x_shape, st))
        return cuvae_fail_prefix(st, "the model does not follow the config");
    cuvae_tensor_info rt[CUVAE_MAX_TENSORS];
    int n_r = cuvae_model_tensors(&ref, rt);
    int same = n_r == n_t && ref.n_params == model->n_params;
    for (int i = 0; same && i < n_t; i++) {
        same = strcmp(rt[i].name, t[i].name) == 0 && rt[i].offset == t[i].offset &&
               rt[i].count == t[i].count && rt[i].ndim == t[i].ndim;
        for (int d = 0; same && d < t[i].ndim; d++) same = rt[i].shape[d] == t[i].shape[d];
    }
    if (!same) return cuvae_fail(st, "the model's layout does not follow the config");
    if (!state || !state->params) return cuvae_fail(st, "no parameters given");
    if ((state->m == NULL) != (state->v == NULL))
        return cuvae_fail(st, "optimizer state is partial (%s given without %s)",
                          state->m ? "m" : "v", state->m ? "v" : "m");
    if (isnan(meta->best_valid) || meta->best_valid == -INFINITY)
        return cuvae_fail(st, "best_valid is %g (a number or inf expected)", meta->best_valid);
    const float *groups[3] = {state->params, state->m, state->v};
    for (int g = 0; g < 3 && groups[g]; g++)
        for (int i = 0; i < n_t; i++)
            for (size_t j = 0; j < t[i].count; j++) {
                float f = groups[g][t[i].offset + j];
                if (!isfinite(f))
                    return cuvae_fail(st, "tensor %s%s holds non-finite values",
                                      cuvae_ckpt_group_prefix[g], t[i].name);
                if (g == 2 && f < 0.0f)
                    return cuvae_fail(st, "tensor %s%s holds negative values",
                                      cuvae_ckpt_group_prefix[g], t[i].name);
            }
    return 0;
}

/* The whole file in memory: header length, padded JSON, data section. */
static int build_file(const cuvae_config *config, const cuvae_model *model,
                      const cuvae_ckpt_meta *meta, const cuvae_train_state *state,
                      uint8_t **file_out, size_t *len_out, cuvae_status *st)
{
    cuvae_tensor_info t[CUVAE_MAX_TENSORS];
    int n_t = cuvae_model_tensors(model, t);
    if (check_inputs(config, model, meta, state, t, n_t, st)) return -1;
    int groups = state->m ? 3 : 1;
    const float *src[3] = {state->params, state->m, state->v};
    size_t data_len = (size_t)groups * model->n_params * 4;
    uint8_t *section = cuvae_malloc(data_len, "checkpoint data", st);
    if (!section) return -1;

    /* __metadata__ first: jansson keeps insertion order, and md is filled through the reference
     * the root holds. */
    json_t *root = json_object(), *md = json_object();
    int bad = !root || !md || json_object_set(root, "__metadata__", md) != 0;
    char *ini = cuvae_config_to_ini(config);
    char num[32];
    bad |= !ini;
    bad |= json_object_set_new(md, "format", json_string(CUVAE_CKPT_FORMAT_NAME)) != 0;
    snprintf(num, sizeof num, "%d", CUVAE_CKPT_FORMAT_VERSION);
    bad |= json_object_set_new(md, "format_version", json_string(num)) != 0;
    const uint64_t values[CUVAE_CKPT_N_U64_KEYS] = {
        meta->step,      meta->epoch,  meta->epoch_step, meta->seed,
        meta->data_seed, meta->adam_t, meta->rng_counter};
    for (size_t i = 0; i < CUVAE_CKPT_N_U64_KEYS; i++) {
        snprintf(num, sizeof num, "%" PRIu64, values[i]);
        bad |= json_object_set_new(md, cuvae_ckpt_u64_keys[i], json_string(num)) != 0;
    }
    snprintf(num, sizeof num, "%.17g", meta->best_valid);
    bad |= json_object_set_new(md, "best_valid", json_string(num)) != 0;
    /* The input shape only when it is not the one a reader assumes without it (or when the
     * first layer is a convolution, whose weight does not give the input's size): the files of
     * square one-channel MLPs stay as they were, and older readers read the others. */
    cuvae_shape x = model->x_shape;
    if (!cuvae_shape_equal(x, cuvae_shape_default(model->x_dim)) ||
        (model->enc.n > 0 && model->enc.layer[0].kind != CUVAE_LAYER_LINEAR)) {
        snprintf(num, sizeof num, "%d,%d,%d", x.c, x.h, x.w);
        bad |= json_object_set_new(md, CUVAE_CKPT_INPUT_SHAPE_KEY, json_string(num)) != 0;
    }
    /* json_string refuses text that is not UTF-8 (a path in the config, say). */
    json_t *ini_json = ini ? json_string(ini) : NULL;
    int ini_bad = ini && !ini_json;
    bad |= json_object_set_new(md, "config", ini_json) != 0;

    uint64_t at = 0;
    char keys[3 * CUVAE_MAX_TENSORS][64];
    const char *names[3 * CUVAE_MAX_TENSORS];
    size_t n_names = 0;
    for (int g = 0; g < groups; g++)
        for (int i = 0; i < n_t; i++) {
            char *key = keys[n_names];
            snprintf(key, sizeof keys[0], "%s%.31s", cuvae_ckpt_group_prefix[g], t[i].name);
            names[n_names++] = key;
            bad |= json_object_set_new(root, key, tensor_json(&t[i], at)) != 0;
            for (size_t j = 0; j < t[i].count; j++)
                cuvae_store_f32_le(section + at + 4 * j, src[g][t[i].offset + j]);
            at += 4 * (uint64_t)t[i].count;
        }
    /* Format 2: the CRC covers the metadata written so far (all of it but crc32), the names
     * in data order and the data. */
    uint32_t crc = 0;
    bad |= cuvae_ckpt_crc_v2(md, names, n_names, section, data_len, &crc) != 0;
    snprintf(num, sizeof num, "%08" PRIx32, crc);
    bad |= json_object_set_new(md, "crc32", json_string(num)) != 0;
    char *text = bad ? NULL : json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(md);
    json_decref(root);
    free(ini);
    if (!text) {
        free(section);
        if (ini_bad) return cuvae_fail(st, "the config text is not valid UTF-8");
        return cuvae_fail(st, "out of memory building the header");
    }
    size_t json_len = strlen(text);
    size_t header_len = (json_len + CUVAE_CKPT_HEADER_ALIGN - 1) / CUVAE_CKPT_HEADER_ALIGN *
                        CUVAE_CKPT_HEADER_ALIGN;
    size_t len = 8 + header_len + data_len;
    uint8_t *file = cuvae_malloc(len, "checkpoint file", st);
    if (!file) {
        free(text);
        free(section);
        return -1;
    }
    cuvae_store_u64_le(file, (uint64_t)header_len);
    memcpy(file + 8, text, json_len);
    memset(file + 8 + json_len, ' ', header_len - json_len);
    memcpy(file + 8 + header_len, section, data_len);
    free(text);
    free(section);
    *file_out = file;
    *len_out = len;
    return 0;
}

int cuvae_ckpt_write(const char *path, const cuvae_config *config, const cuvae_model *model,
                     const cuvae_ckpt_meta *meta, const cuvae_train_state *state, cuvae_status *st)
{
    uint8_t *file = NULL;
    size_t len = 0;
    if (build_file(config, model, meta, state, &file, &len, st))
        return cuvae_fail_prefix(st, "cannot write checkpoint %s", path);
    /* The bytes go through the reader before they replace anything: a file that would not read
     * back (a config that does not survive its INI text, say) is never written. */
    cuvae_ckpt check;
    if (cuvae_ckpt_parse(file, len, path, &check, st)) {
        free(file);
        return cuvae_fail_prefix(st, "cannot write checkpoint %s: it would not read back", path);
    }
    cuvae_ckpt_free(&check);
    int rc = cuvae_write_file(path, file, len, st);
    free(file);
    return rc ? cuvae_fail_prefix(st, "cannot write checkpoint") : 0;
}
