/* Reading checkpoint files (see checkpoint.h) without trusting a single byte. The parser is the
 * fuzz target's entry point: every size is checked before it is used, every sum and product is
 * checked for overflow, and each failed check has its own one-line message naming the file. A
 * file is read in two steps: its header first, and the rest only once the header accounts for
 * every byte. Data are little-endian F32 on any host: values go through the load/store helpers of
 * checkpoint_format.c, so the code is correct on a big-endian machine too. */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "checkpoint_format.h"
#include "memory_plan.h"

#define MAX_DIMS 8   /* more dimensions than any safetensors file needs: a bad shape */
#define SHOWN_LEN 96 /* bytes of text from the file quoted in a message */

/* ---- messages -------------------------------------------------------------------------------- */

/* Text taken from a (possibly hostile) file, made safe to quote in a one-line message: bounded in
 * length, control characters and non-ASCII bytes shown as '?'. Returned by value so that several
 * can appear in one call. */
typedef struct {
    char s[SHOWN_LEN + 4];
} shown_text;

static shown_text show(const char *text)
{
    shown_text t;
    size_t i = 0;
    for (; text && text[i] && i < SHOWN_LEN; i++) {
        unsigned char c = (unsigned char)text[i];
        t.s[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    if (text && text[i]) {
        memcpy(t.s + i, "...", 3);
        i += 3;
    }
    t.s[i] = '\0';
    return t;
}

typedef struct {
    char s[MAX_DIMS * 22 + 4];
} shape_text;

static shape_text show_shape(int ndim, const uint64_t *shape)
{
    shape_text t;
    size_t at = 0;
    t.s[at++] = '[';
    /* Room for MAX_DIMS 20-digit sizes; the bound check only guards the arithmetic. */
    for (int i = 0; i < ndim && at < sizeof t.s - 2; i++) {
        int n = snprintf(t.s + at, sizeof t.s - 1 - at, "%s%" PRIu64, i ? "," : "", shape[i]);
        at = n > 0 && (size_t)n < sizeof t.s - 1 - at ? at + (size_t)n : sizeof t.s - 2;
    }
    t.s[at] = ']';
    t.s[at + 1] = '\0';
    return t;
}

/* ---- parsing --------------------------------------------------------------------------------- */

/* One tensor of the header, after the generic safetensors checks. */
typedef struct {
    const char *name; /* the header's key; owned by the parsed JSON */
    int ndim;
    uint64_t shape[MAX_DIMS];
    uint64_t begin, end; /* byte offsets into the data section */
} entry;

/* Decimal u64 with nothing else around it (no sign, no spaces), overflow refused. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s) return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* input_shape: "C,H,W", three positive decimal integers. */
static int parse_shape(const char *s, cuvae_shape *out)
{
    int v[3];
    for (int k = 0; k < 3; k++) {
        if (!s || *s < '0' || *s > '9') return -1;
        int64_t n = 0;
        for (; *s >= '0' && *s <= '9'; s++)
            if ((n = n * 10 + (*s - '0')) > INT32_MAX) return -1;
        if (n < 1 || *s != (k < 2 ? ',' : '\0')) return -1;
        v[k] = (int)n;
        s++;
    }
    *out = (cuvae_shape){v[0], v[1], v[2]};
    return 0;
}

/* best_valid: a number written with %.17g, or inf (no validation yet); never NaN or -inf. */
static int parse_best(const char *s, double *out)
{
    if (!s || !*s || *s == ' ' || (*s >= '\t' && *s <= '\r')) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || isnan(v) || v == -INFINITY) return -1;
    *out = v;
    return 0;
}

static int parse_crc(const char *s, uint32_t *out)
{
    if (!s || strlen(s) != 8) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* The metadata: format, version, counters, config text and CRC. */
static int parse_metadata(const json_t *md, const char *name, cuvae_ckpt_meta *meta,
                          int *format_version, const char **config_text, uint32_t *crc,
                          cuvae_status *st)
{
    if (!json_is_object(md))
        return cuvae_fail(st, "%s: __metadata__ missing or not an object of strings", name);
    for (void *it = json_object_iter((json_t *)md); it;
         it = json_object_iter_next((json_t *)md, it))
        if (!json_is_string(json_object_iter_value(it)))
            return cuvae_fail(st,
                              "%s: __metadata__ missing or not an object of strings (%s is not a "
                              "string)",
                              name, show(json_object_iter_key(it)).s);
    const char *format = json_string_value(json_object_get(md, "format"));
    if (!format || strcmp(format, CUVAE_CKPT_FORMAT_NAME) != 0)
        return cuvae_fail(st, "%s: format is not " CUVAE_CKPT_FORMAT_NAME " (got '%s')", name,
                          format ? show(format).s : "(none)");
    const char *version = json_string_value(json_object_get(md, "format_version"));
    *format_version = 0;
    for (int v = CUVAE_CKPT_FORMAT_OLDEST; v <= CUVAE_CKPT_FORMAT_VERSION; v++) {
        char text[16];
        snprintf(text, sizeof text, "%d", v);
        if (version && strcmp(version, text) == 0) *format_version = v;
    }
    if (!*format_version)
        return cuvae_fail(st, "%s: unsupported format_version '%s' (this build reads %d to %d)",
                          name, version ? show(version).s : "(none)", CUVAE_CKPT_FORMAT_OLDEST,
                          CUVAE_CKPT_FORMAT_VERSION);
    uint64_t *fields[CUVAE_CKPT_N_U64_KEYS] = {
        &meta->step,      &meta->epoch,  &meta->epoch_step, &meta->seed,
        &meta->data_seed, &meta->adam_t, &meta->rng_counter};
    for (size_t i = 0; i < CUVAE_CKPT_N_U64_KEYS; i++) {
        const char *s = json_string_value(json_object_get(md, cuvae_ckpt_u64_keys[i]));
        if (parse_u64(s, fields[i]))
            return cuvae_fail(st,
                              "%s: metadata key %s missing or malformed (expected a decimal "
                              "unsigned 64-bit integer, got '%s')",
                              name, cuvae_ckpt_u64_keys[i], s ? show(s).s : "(none)");
    }
    const char *s = json_string_value(json_object_get(md, "best_valid"));
    if (parse_best(s, &meta->best_valid))
        return cuvae_fail(st,
                          "%s: metadata key best_valid missing or malformed (expected a number "
                          "or inf, got '%s')",
                          name, s ? show(s).s : "(none)");
    *config_text = json_string_value(json_object_get(md, "config"));
    if (!*config_text)
        return cuvae_fail(st, "%s: metadata key config missing or malformed (expected INI text)",
                          name);
    s = json_string_value(json_object_get(md, "crc32"));
    if (parse_crc(s, crc))
        return cuvae_fail(st,
                          "%s: metadata key crc32 missing or malformed (expected 8 lowercase hex "
                          "digits, got '%s')",
                          name, s ? show(s).s : "(none)");
    return 0;
}

/* The generic safetensors checks of one tensor entry: dtype, shape, offsets, size. */
static int parse_entry(const char *key, const json_t *v, uint64_t data_len, const char *name,
                       entry *e, cuvae_status *st)
{
    shown_text k = show(key);
    e->name = key;
    if (!json_is_object(v))
        return cuvae_fail(st,
                          "%s: tensor %s: header entry is not an object with dtype, shape and "
                          "data_offsets",
                          name, k.s);
    const char *dtype = json_string_value(json_object_get(v, "dtype"));
    if (!dtype || strcmp(dtype, "F32") != 0)
        return cuvae_fail(st, "%s: tensor %s: dtype %s, expected F32", name, k.s,
                          dtype ? show(dtype).s : "(missing)");
    const json_t *shape = json_object_get(v, "shape");
    if (!json_is_array(shape) || json_array_size(shape) > MAX_DIMS)
        return cuvae_fail(st, "%s: tensor %s: bad shape (expected an array of at most %d sizes)",
                          name, k.s, MAX_DIMS);
    e->ndim = (int)json_array_size(shape);
    uint64_t count = 1;
    for (int i = 0; i < e->ndim; i++) {
        const json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return cuvae_fail(st,
                              "%s: tensor %s: bad shape (size %d is not a non-negative integer)",
                              name, k.s, i);
        e->shape[i] = (uint64_t)json_integer_value(d);
        if (e->shape[i] != 0 && count > UINT64_MAX / 4 / e->shape[i])
            return cuvae_fail(st, "%s: tensor %s: bad shape %s (the size overflows)", name, k.s,
                              show_shape(e->ndim, e->shape).s);
        count *= e->shape[i];
    }
    uint64_t bytes = count * 4; /* cannot overflow: count <= UINT64_MAX / 4 */
    const json_t *offs = json_object_get(v, "data_offsets");
    const json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(b) ||
        !json_is_integer(en) || json_integer_value(b) < 0 || json_integer_value(en) < 0)
        return cuvae_fail(st, "%s: tensor %s: data_offsets must be two non-negative integers", name,
                          k.s);
    e->begin = (uint64_t)json_integer_value(b);
    e->end = (uint64_t)json_integer_value(en);
    if (e->begin > e->end)
        return cuvae_fail(st, "%s: tensor %s: data_offsets [%" PRIu64 ",%" PRIu64 "] are reversed",
                          name, k.s, e->begin, e->end);
    if (e->end > data_len)
        return cuvae_fail(st,
                          "%s: tensor %s: data_offsets [%" PRIu64 ",%" PRIu64
                          "] lie outside the data section (%" PRIu64 " bytes)",
                          name, k.s, e->begin, e->end, data_len);
    if (e->end - e->begin != bytes)
        return cuvae_fail(st,
                          "%s: tensor %s: size %" PRIu64
                          " does not match shape %s (expected %" PRIu64 " bytes)",
                          name, k.s, e->end - e->begin, show_shape(e->ndim, e->shape).s, bytes);
    return 0;
}

/* Offsets sorted: each tensor starts where the previous one ended, the last one ends at the end. */
static int check_coverage(entry *e, size_t n, uint64_t data_len, const char *name, cuvae_status *st)
{
    qsort(e, n, sizeof *e, cmp_entry);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].begin != at) {
            if (i == 0)
                return cuvae_fail(st,
                                  "%s: tensors overlap or leave gaps in the data section (the "
                                  "first, %s, starts at byte %" PRIu64 ")",
                                  name, show(e[i].name).s, e[i].begin);
            return cuvae_fail(st,
                              "%s: tensors overlap or leave gaps in the data section (%s ends at "
                              "byte %" PRIu64 ", %s starts at %" PRIu64 ")",
                              name, show(e[i - 1].name).s, at, show(e[i].name).s, e[i].begin);
        }
        at = e[i].end;
    }
    if (at != data_len)
        return cuvae_fail(st, "%s: data section is %" PRIu64 " bytes but tensors cover %" PRIu64,
                          name, data_len, at);
    return 0;
}

/* The model's layout from the metadata's config and encoder.0.weight's input width, and every
 * tensor's name and shape against it. found[g * n_t + i] is the entry of tensor i of group g
 * (0 params, 1 optim.m, 2 optim.v), or -1. */
static int match_layout(const entry *e, size_t n, const char *name, const char *shape_text,
                        cuvae_ckpt *out, cuvae_tensor_info *t, int *n_t, long *found,
                        cuvae_status *st)
{
    const cuvae_config *c = &out->config;
    /* Sizes beyond these would overflow int arithmetic in the layout; the config's own range
     * checks are stricter, this only guards against a config that bypassed them. */
    int sane = c->model.latent >= 1 && c->model.latent <= INT_MAX / 2 && c->model.n_hidden >= 0 &&
               c->model.n_hidden <= CUVAE_MAX_HIDDEN;
    for (int i = 0; sane && i < c->model.n_hidden; i++) sane = c->model.hidden[i] >= 1;
    if (!sane) return cuvae_fail(st, "%s: config in metadata: model sizes out of range", name);
    const entry *first = NULL;
    for (size_t i = 0; i < n && !first; i++)
        if (strcmp(e[i].name, "encoder.0.weight") == 0) first = &e[i];
    if (!first) return cuvae_fail(st, "%s: tensor encoder.0.weight missing", name);
    int h1 = c->model.encoder.n > 0  ? c->model.encoder.layer[0].c
             : c->model.n_hidden > 0 ? c->model.hidden[0]
                                     : 2 * c->model.latent;
    /* A conv first layer ([out, in, k, k]) does not give the input's size: the input shape is
     * then always recorded. */
    int conv_first = first->ndim == 4 && c->model.encoder.n > 0 &&
                     c->model.encoder.layer[0].kind != CUVAE_LAYER_LINEAR;
    if (conv_first && !shape_text)
        return cuvae_fail(st,
                          "%s: metadata key input_shape missing (the model's first layer is a "
                          "convolution, so the tensors do not give the input's shape)",
                          name);
    if (!conv_first && (first->ndim != 2 || first->shape[1] < 1 || first->shape[1] > INT_MAX))
        return cuvae_fail(st,
                          "%s: tensor encoder.0.weight: shape %s, expected [%d,x_dim] with x_dim "
                          ">= 1 for the model in the checkpoint's config",
                          name, show_shape(first->ndim, first->shape).s, h1);
    /* The input shape: recorded when it is not the default one (cuvae_shape_default), which
     * checkpoints written before it was recorded keep. */
    int x_dim = 0;
    cuvae_shape x = {0, 0, 0};
    if (!conv_first) {
        x_dim = (int)first->shape[1];
        x = cuvae_shape_default(x_dim);
    }
    if (shape_text) {
        if (parse_shape(shape_text, &x))
            return cuvae_fail(st,
                              "%s: metadata key input_shape malformed (expected C,H,W: three "
                              "positive decimal integers, got '%s')",
                              name, show(shape_text).s);
        if (!conv_first && (int64_t)x.c * x.h * x.w != x_dim)
            return cuvae_fail(st,
                              "%s: metadata: input_shape %d,%d,%d holds %" PRId64
                              " values but encoder.0.weight takes %d",
                              name, x.c, x.h, x.w, (int64_t)x.c * x.h * x.w, x_dim);
    }
    if (cuvae_model_layout_shape(&out->model, c, x, st))
        return cuvae_fail_prefix(st, "%s: config in metadata", name);
    *n_t = cuvae_model_tensors(&out->model, t);
    int total = 3 * *n_t;
    char expected[3 * CUVAE_MAX_TENSORS][48];
    for (int i = 0; i < total; i++) {
        snprintf(expected[i], sizeof expected[i], "%s%.31s", cuvae_ckpt_group_prefix[i / *n_t],
                 t[i % *n_t].name);
        found[i] = -1;
    }
    for (size_t i = 0; i < n; i++) {
        int hit = -1;
        for (int j = 0; j < total && hit < 0; j++)
            if (strcmp(e[i].name, expected[j]) == 0) hit = j;
        if (hit < 0)
            return cuvae_fail(st, "%s: tensor %s: unexpected name", name, show(e[i].name).s);
        found[hit] = (long)i; /* names are unique: the JSON parser refused duplicate keys */
    }
    int have[3] = {0, 0, 0};
    for (int i = 0; i < total; i++) have[i / *n_t] += found[i] >= 0;
    for (int i = 0; i < *n_t; i++)
        if (found[i] < 0) return cuvae_fail(st, "%s: tensor %s missing", name, t[i].name);
    for (int i = 0; i < total; i++) {
        if (found[i] < 0) continue;
        const entry *x = &e[found[i]];
        const cuvae_tensor_info *want = &t[i % *n_t];
        uint64_t ws[CUVAE_MAX_DIMS];
        for (int d = 0; d < want->ndim; d++) ws[d] = (uint64_t)want->shape[d];
        int same = x->ndim == want->ndim;
        for (int d = 0; same && d < want->ndim; d++) same = x->shape[d] == ws[d];
        if (!same)
            return cuvae_fail(st,
                              "%s: tensor %s: shape %s, expected %s for the model in the "
                              "checkpoint's config",
                              name, expected[i], show_shape(x->ndim, x->shape).s,
                              show_shape(want->ndim, ws).s);
    }
    if (have[1] == *n_t && have[2] == 0)
        return cuvae_fail(st, "%s: optimizer state is partial (m without v)", name);
    if (have[2] == *n_t && have[1] == 0)
        return cuvae_fail(st, "%s: optimizer state is partial (v without m)", name);
    if (have[1] + have[2] > 0) {
        for (int i = *n_t; i < total; i++)
            if (found[i] < 0)
                return cuvae_fail(st, "%s: optimizer state is partial (%s missing)", name,
                                  expected[i]);
    }
    return 0;
}

/* Copies one group (params, m or v) into a flat buffer, refusing values a run must never get. */
static int load_group(const uint8_t *section, const entry *e, const long *found,
                      const cuvae_tensor_info *t, int n_t, int group, size_t n_params,
                      const char *name, float **dst, cuvae_status *st)
{
    float *buf = cuvae_malloc(n_params * sizeof(float), "checkpoint tensors", st);
    if (!buf) return cuvae_fail_prefix(st, "%s", name);
    for (int i = 0; i < n_t; i++) {
        const entry *x = &e[found[group * n_t + i]];
        const uint8_t *src = section + x->begin;
        float *out = buf + t[i].offset;
        int finite = 1, negative = 0;
        for (size_t j = 0; j < t[i].count; j++) {
            float f = cuvae_load_f32_le(src + 4 * j);
            finite &= isfinite(f) != 0;
            negative |= f < 0.0f;
            out[j] = f;
        }
        if (!finite || (group == 2 && negative)) {
            free(buf);
            return cuvae_fail(st, "%s: tensor %s%s holds %s values", name,
                              cuvae_ckpt_group_prefix[group], t[i].name,
                              finite ? "negative" : "non-finite");
        }
    }
    *dst = buf;
    return 0;
}

/* Every check after the JSON parse; out is filled on success and left for the caller to free.
 * section NULL: the checks the header alone allows (all but the CRC and the values), nothing of
 * the data section read or allocated. */
static int parse_header(const json_t *root, const uint8_t *section, uint64_t data_len,
                        const char *name, cuvae_ckpt *out, cuvae_status *st)
{
    if (!json_is_object(root)) return cuvae_fail(st, "%s: header is not a JSON object", name);
    const char *config_text = NULL;
    uint32_t crc_header = 0;
    const json_t *md = json_object_get(root, "__metadata__");
    if (parse_metadata(md, name, &out->meta, &out->format_version, &config_text, &crc_header, st))
        return -1;

    size_t n = json_object_size(root) - 1; /* __metadata__ is present */
    entry *e = cuvae_calloc(n, sizeof *e, "checkpoint header entries", st);
    if (!e) return cuvae_fail_prefix(st, "%s", name);
    int rc = -1;
    size_t k = 0;
    /* jansson keeps the file's order, so the first bad entry in the file is the one reported. */
    for (void *it = json_object_iter((json_t *)root); it;
         it = json_object_iter_next((json_t *)root, it)) {
        const char *key = json_object_iter_key(it);
        if (strcmp(key, "__metadata__") == 0) continue;
        if (parse_entry(key, json_object_iter_value(it), data_len, name, &e[k++], st)) goto done;
    }
    if (check_coverage(e, n, data_len, name, st)) goto done;

    cuvae_config_defaults(&out->config);
    if (cuvae_config_load_string(&out->config, config_text, "checkpoint metadata", st)) {
        cuvae_fail_prefix(st, "%s: config in metadata", name);
        goto done;
    }
    cuvae_tensor_info t[CUVAE_MAX_TENSORS];
    long found[3 * CUVAE_MAX_TENSORS];
    int n_t = 0;
    const char *shape_text = json_string_value(json_object_get(md, CUVAE_CKPT_INPUT_SHAPE_KEY));
    if (match_layout(e, n, name, shape_text, out, t, &n_t, found, st)) goto done;

    /* The values' consistency before the checksum, so that an edited field is named. */
    if (cuvae_ckpt_check_meta(out, name, st)) goto done;
    if (!section) {
        rc = 0;
        goto done;
    }
    uint32_t crc_data;
    if (out->format_version < 2) {
        crc_data = cuvae_crc32(section, (size_t)data_len);
    } else {
        const char *names[3 * CUVAE_MAX_TENSORS];
        for (size_t i = 0; i < n; i++) names[i] = e[i].name; /* in data order: e is sorted */
        if (cuvae_ckpt_crc_v2(md, names, n, section, (size_t)data_len, &crc_data)) {
            cuvae_fail(st, "%s: out of memory computing the CRC-32", name);
            goto done;
        }
    }
    if (crc_data != crc_header) {
        cuvae_fail(st, "%s: CRC-32 mismatch: header says %08" PRIx32 ", %s has %08" PRIx32, name,
                   crc_header, out->format_version < 2 ? "data" : "metadata+data", crc_data);
        goto done;
    }
    size_t np = out->model.n_params;
    if (load_group(section, e, found, t, n_t, 0, np, name, &out->state.params, st)) goto done;
    if (found[n_t] >= 0 && (load_group(section, e, found, t, n_t, 1, np, name, &out->state.m, st) ||
                            load_group(section, e, found, t, n_t, 2, np, name, &out->state.v, st)))
        goto done;
    out->state.adam_t = out->meta.adam_t;
    rc = 0;
done:
    free(e);
    return rc;
}

static int check_header_len(uint64_t header_len, size_t size, const char *name, cuvae_status *st)
{
    if (header_len > CUVAE_CKPT_MAX_HEADER)
        return cuvae_fail(st, "%s: header length %" PRIu64 " exceeds the limit of %u bytes", name,
                          header_len, (unsigned)CUVAE_CKPT_MAX_HEADER);
    if (header_len > size - 8)
        return cuvae_fail(st, "%s: header length %" PRIu64 " exceeds the file size (%zu bytes)",
                          name, header_len, size);
    return 0;
}

static json_t *load_header_json(const uint8_t *text, size_t len, const char *name, cuvae_status *st)
{
    json_error_t jerr;
    /* Duplicate keys are refused (a name must mean one tensor); NUL inside strings is refused
     * because JSON_ALLOW_NUL is not given; any top-level value is parsed so that a non-object
     * gets its own message. */
    json_t *root =
        json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        cuvae_fail(st, "%s: header is not valid JSON (line %d column %d: %s)", name, jerr.line,
                   jerr.column, show(jerr.text).s);
    return root;
}

/* Before a file is read whole: its 8-byte length, its header (at most CUVAE_CKPT_MAX_HEADER
 * bytes) and everything the header alone can tell (parse_header without the data), so that the
 * file's size is trusted only once the header accounts for every byte of it; then the memory
 * estimate of reading it. Leaves f at an unspecified position. */
static int check_before_reading(FILE *f, size_t size, const char *name, cuvae_status *st)
{
    uint8_t len8[8];
    if (size < 8) return 0; /* cuvae_ckpt_parse names it */
    if (fread(len8, 1, 8, f) != 8)
        return cuvae_fail(st, "%s: read failed: %s", name, ferror(f) ? strerror(errno) : "short");
    uint64_t header_len = cuvae_load_u64_le(len8);
    if (check_header_len(header_len, size, name, st)) return -1;
    uint8_t *text = cuvae_malloc((size_t)header_len, "checkpoint header", st);
    if (!text) return cuvae_fail_prefix(st, "%s", name);
    size_t got = fread(text, 1, (size_t)header_len, f);
    if (got != header_len) {
        int err = ferror(f) ? errno : 0;
        free(text);
        return cuvae_fail(st, "%s: read failed: %s", name,
                          err ? strerror(err) : "the file changed size while being read");
    }
    json_t *root = load_header_json(text, (size_t)header_len, name, st);
    free(text);
    if (!root) return -1;
    cuvae_ckpt probe;
    memset(&probe, 0, sizeof probe);
    uint64_t data_len = (uint64_t)(size - 8 - (size_t)header_len);
    int rc = parse_header(root, NULL, data_len, name, &probe, st);
    json_decref(root);
    cuvae_ckpt_free(&probe);
    if (rc) return -1;
    /* Reading holds the file and the tensors copied out of it. */
    cuvae_mem_plan plan = {.n = 0};
    cuvae_mem_add(&plan, "checkpoint file", size);
    cuvae_mem_add(&plan, "checkpoint tensors", data_len);
    if (cuvae_mem_check_host(&plan, "read it on a machine with more memory", st))
        return cuvae_fail_prefix(st, "%s", name);
    return 0;
}

int cuvae_ckpt_parse(const uint8_t *data, size_t size, const char *name, cuvae_ckpt *out,
                     cuvae_status *st)
{
    memset(out, 0, sizeof *out);
    if (!name) name = "checkpoint";
    if (!data || size < 8)
        return cuvae_fail(st,
                          "%s: file too small (%zu bytes; a checkpoint starts with an 8-byte "
                          "header length)",
                          name, data ? size : 0);
    uint64_t header_len = cuvae_load_u64_le(data);
    if (check_header_len(header_len, size, name, st)) return -1;
    json_t *root = load_header_json(data + 8, (size_t)header_len, name, st);
    if (!root) return -1;
    const uint8_t *section = data + 8 + header_len;
    uint64_t data_len = (uint64_t)(size - 8 - (size_t)header_len);
    int rc = parse_header(root, section, data_len, name, out, st);
    json_decref(root);
    if (rc) cuvae_ckpt_free(out);
    return rc;
}

void cuvae_ckpt_free(cuvae_ckpt *ck)
{
    if (!ck) return;
    free(ck->state.params);
    free(ck->state.m);
    free(ck->state.v);
    memset(ck, 0, sizeof *ck);
}

int cuvae_ckpt_read(const char *path, cuvae_ckpt *out, cuvae_status *st)
{
    memset(out, 0, sizeof *out);
    /* O_NONBLOCK: a FIFO in place of the file must not hang the reader (regular files ignore
     * the flag). */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        int err = errno;
        if (fd >= 0) close(fd);
        return cuvae_fail(st, "%s: cannot open: %s", path, strerror(err));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        fclose(f);
        return cuvae_fail(st, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        fclose(f);
        return cuvae_fail(st, "%s: not a regular file%s", path,
                          S_ISDIR(sb.st_mode) ? " (a directory)" : "");
    }
    if (sb.st_size < 0 || (uintmax_t)sb.st_size > (uintmax_t)SIZE_MAX) {
        fclose(f);
        return cuvae_fail(st, "%s: file too large to read", path);
    }
    size_t size = (size_t)sb.st_size;
    if (check_before_reading(f, size, path, st)) {
        fclose(f);
        return -1;
    }
    if (fseek(f, 0, SEEK_SET) != 0) {
        int err = errno;
        fclose(f);
        return cuvae_fail(st, "%s: cannot seek: %s", path, strerror(err));
    }
    uint8_t *buf = cuvae_malloc(size, "checkpoint file", st);
    if (!buf) {
        fclose(f);
        return cuvae_fail_prefix(st, "%s", path);
    }
    size_t got = fread(buf, 1, size, f);
    int read_err = ferror(f) ? errno : 0;
    int more = got == size && fgetc(f) != EOF;
    fclose(f);
    if (got != size || more) {
        free(buf);
        if (read_err) return cuvae_fail(st, "%s: read failed: %s", path, strerror(read_err));
        return cuvae_fail(st, "%s: the file changed size while being read (%zu bytes expected)",
                          path, size);
    }
    int rc = cuvae_ckpt_parse(buf, size, path, out, st);
    free(buf);
    return rc;
}
