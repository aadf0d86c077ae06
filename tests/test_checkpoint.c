/* Checkpoint tests: round trips, an independent reading of the safetensors layout, rejection of
 * every kind of damage (truncation at each boundary, hostile headers, CRC, non-finite values) with
 * its own message, atomic writes under a full disk, and run-directory rotation and recovery. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <jansson.h>
#include <zlib.h>

#include "checkpoint.h"
#include "tests_util.h"

#define X_DIM 6

/* snprintf that stops the test on truncation: every path and phrase here is short, so a cut one
 * would be a bug of the test itself. */
static void sfmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sfmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "test_checkpoint: text too long for its buffer: %s\n", buf);
        exit(1);
    }
}

typedef struct {
    cuvae_config config;
    cuvae_model model;
    float *params, *m, *v;
    cuvae_ckpt_meta meta;
} fixture;

static void fixture_init(fixture *f, uint64_t seed)
{
    cuvae_status st;
    cuvae_config_defaults(&f->config);
    f->config.model.n_hidden = 2;
    f->config.model.hidden[0] = 5;
    f->config.model.hidden[1] = 4;
    f->config.model.latent = 3;
    f->config.train.seed = seed;
    if (cuvae_model_layout(&f->model, &f->config, X_DIM, &st)) {
        fprintf(stderr, "layout: %s\n", st.msg);
        exit(1);
    }
    size_t n = f->model.n_params;
    f->params = malloc(n * sizeof(float));
    f->m = malloc(n * sizeof(float));
    f->v = malloc(n * sizeof(float));
    cuvae_model_init(&f->model, seed, f->params);
    for (size_t i = 0; i < n; i++) {
        f->m[i] = 0.1f * f->params[i] - 1e-3f * (float)i;
        f->v[i] = f->params[i] * f->params[i] + 1e-8f * (float)i;
    }
    f->meta = (cuvae_ckpt_meta){.step = 1234,
                                .epoch = 3,
                                .epoch_step = 17,
                                .seed = seed,
                                .data_seed = seed,
                                .adam_t = 1230,
                                .rng_counter = 1234,
                                .best_valid = 87.123456789012345};
}

static void fixture_free(fixture *f)
{
    free(f->params);
    free(f->m);
    free(f->v);
}

static cuvae_train_state state_of(const fixture *f, int with_optim)
{
    cuvae_train_state s = {.params = f->params, .adam_t = f->meta.adam_t};
    if (with_optim) {
        s.m = f->m;
        s.v = f->v;
    }
    return s;
}

static int write_fixture(const char *path, const fixture *f, int with_optim, cuvae_status *st)
{
    cuvae_train_state s = state_of(f, with_optim);
    return cuvae_ckpt_write(path, &f->config, &f->model, &f->meta, &s, st);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    return buf;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- round trips ------------------------------------------------------------------------------
 */

static void check_same(const fixture *f, const cuvae_ckpt *ck, int with_optim)
{
    size_t bytes = f->model.n_params * sizeof(float);
    CHECK(ck->model.n_params == f->model.n_params);
    CHECK(ck->model.x_dim == X_DIM);
    CHECK(memcmp(ck->state.params, f->params, bytes) == 0);
    if (with_optim) {
        CHECK(ck->state.m && memcmp(ck->state.m, f->m, bytes) == 0);
        CHECK(ck->state.v && memcmp(ck->state.v, f->v, bytes) == 0);
    } else {
        CHECK(ck->state.m == NULL && ck->state.v == NULL);
    }
    CHECK(ck->state.adam_t == f->meta.adam_t);
    CHECK(ck->meta.step == f->meta.step && ck->meta.epoch == f->meta.epoch);
    CHECK(ck->meta.epoch_step == f->meta.epoch_step && ck->meta.seed == f->meta.seed);
    CHECK(ck->meta.data_seed == f->meta.data_seed && ck->meta.adam_t == f->meta.adam_t);
    CHECK(ck->meta.rng_counter == f->meta.rng_counter);
    CHECK(memcmp(&ck->meta.best_valid, &f->meta.best_valid, sizeof(double)) == 0);
    char *a = cuvae_config_to_ini(&f->config), *b = cuvae_config_to_ini(&ck->config);
    CHECK(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);
}

static void test_round_trip(const char *dir, fixture *f)
{
    char path[512];
    cuvae_status st;
    for (int with_optim = 0; with_optim < 2; with_optim++) {
        sfmt(path, sizeof path, "%s/rt%d.safetensors", dir, with_optim);
        f->meta.best_valid = with_optim ? INFINITY : 87.123456789012345;
        CHECK(write_fixture(path, f, with_optim, &st) == 0);
        cuvae_ckpt ck;
        int rc = cuvae_ckpt_read(path, &ck, &st);
        CHECK_MSG(rc == 0 ? "ok" : st.msg, "ok");
        if (rc == 0) check_same(f, &ck, with_optim);
        cuvae_ckpt_free(&ck);
    }
    f->meta.best_valid = 87.123456789012345;
    /* Extreme counters survive too. */
    cuvae_ckpt_meta saved = f->meta;
    f->meta.step = UINT64_MAX;
    f->meta.seed = UINT64_MAX - 1;
    sfmt(path, sizeof path, "%s/big.safetensors", dir);
    CHECK(write_fixture(path, f, 1, &st) == 0);
    cuvae_ckpt ck;
    CHECK(cuvae_ckpt_read(path, &ck, &st) == 0);
    CHECK(ck.meta.step == UINT64_MAX && ck.meta.seed == UINT64_MAX - 1);
    cuvae_ckpt_free(&ck);
    f->meta = saved;
}

/* Reads the file as a plain safetensors reader would, sharing no code with checkpoint.c. */
static void test_independent_layout(const char *dir, const fixture *f)
{
    char path[512];
    cuvae_status st;
    sfmt(path, sizeof path, "%s/layout.safetensors", dir);
    CHECK(write_fixture(path, f, 1, &st) == 0);
    size_t len = 0;
    uint8_t *buf = read_all(path, &len);
    CHECK(buf && len > 8);
    if (!buf) return;
    uint64_t hlen = le64(buf);
    CHECK(hlen % 8 == 0 && 8 + hlen <= len);
    const char *opening = "{\"__metadata__\":{\"format\":\"cuvae-checkpoint\",";
    CHECK(memcmp(buf + 8, opening, strlen(opening)) == 0);
    json_error_t err;
    json_t *root = json_loadb((const char *)buf + 8, hlen, 0, &err);
    CHECK(root != NULL);
    const uint8_t *data = buf + 8 + hlen;
    size_t dlen = len - 8 - hlen;
    CHECK(dlen == 3 * f->model.n_params * 4);
    json_t *md = json_object_get(root, "__metadata__");
    char crc[16];
    sfmt(crc, sizeof crc, "%08lx", (unsigned long)crc32(0L, data, (uInt)dlen));
    CHECK(strcmp(json_string_value(json_object_get(md, "crc32")), crc) == 0);
    CHECK(strcmp(json_string_value(json_object_get(md, "step")), "1234") == 0);
    CHECK(strcmp(json_string_value(json_object_get(md, "format_version")), "1") == 0);
    /* Tensors in file order cover the data section back to back, in the documented order. */
    cuvae_tensor_info t[CUVAE_MAX_TENSORS];
    int n_t = cuvae_model_tensors(&f->model, t);
    uint64_t at = 0;
    int idx = 0;
    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        const char *key = json_object_iter_key(it);
        json_t *val = json_object_iter_value(it);
        if (strcmp(key, "__metadata__") == 0) continue;
        char want[64];
        static const char *const prefix[3] = {"", "optim.m.", "optim.v."};
        sfmt(want, sizeof want, "%s%s", prefix[idx / n_t], t[idx % n_t].name);
        CHECK_MSG(key, want);
        CHECK(strcmp(json_string_value(json_object_get(val, "dtype")), "F32") == 0);
        json_t *offs = json_object_get(val, "data_offsets");
        uint64_t b = (uint64_t)json_integer_value(json_array_get(offs, 0));
        uint64_t e = (uint64_t)json_integer_value(json_array_get(offs, 1));
        CHECK(b == at && e == b + 4 * t[idx % n_t].count);
        json_t *shape = json_object_get(val, "shape");
        CHECK((int)json_array_size(shape) == t[idx % n_t].ndim);
        /* Little-endian F32 values equal to the flat buffer. */
        const float *src = idx < n_t ? f->params : idx < 2 * n_t ? f->m : f->v;
        for (size_t j = 0; j < t[idx % n_t].count; j++) {
            const uint8_t *p = data + b + 4 * j;
            uint32_t u =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            float x;
            memcpy(&x, &u, 4);
            if (memcmp(&x, &src[t[idx % n_t].offset + j], 4) != 0) {
                CHECK_MSG("value differs", key);
                break;
            }
        }
        at = e;
        idx++;
    }
    CHECK(idx == 3 * n_t && at == dlen);
    json_decref(root);
    free(buf);
}

/* ---- rejection ------------------------------------------------------------------------------- */

static int expect_reject_at(const uint8_t *buf, size_t len, const char *phrase, int line)
{
    cuvae_ckpt ck;
    cuvae_status st;
    st.msg[0] = '\0';
    int rc = cuvae_ckpt_parse(buf, len, "ckpt.safetensors", &ck, &st);
    if (rc == 0) {
        fprintf(stderr, "test_checkpoint.c:%d: accepted, expected \"%s\"\n", line, phrase);
        cuvae_test_failures++;
        cuvae_ckpt_free(&ck);
        return -1;
    }
    CHECK(ck.state.params == NULL && ck.state.m == NULL);
    cuvae_check_msg(__FILE__, line, st.msg, "ckpt.safetensors: ");
    if (phrase) cuvae_check_msg(__FILE__, line, st.msg, phrase);
    CHECK(strchr(st.msg, '\n') == NULL);
    return 0;
}
#define EXPECT_REJECT(buf, len, phrase) expect_reject_at((buf), (len), (phrase), __LINE__)

/* A checkpoint split into its parts, so that a test can change the header and put it back. */
typedef struct {
    uint8_t *file;
    size_t len;
    uint64_t hlen;
    json_t *header;
    const uint8_t *data;
    size_t dlen;
} parts;

static void split(parts *p, uint8_t *file, size_t len)
{
    p->file = file;
    p->len = len;
    p->hlen = le64(file);
    json_error_t err;
    p->header = json_loadb((const char *)file + 8, p->hlen, 0, &err);
    p->data = file + 8 + p->hlen;
    p->dlen = len - 8 - p->hlen;
}

/* Header text (padded to 8 unless pad is 0) + data -> a new file. */
static uint8_t *assemble_text(const char *text, const uint8_t *data, size_t dlen, int pad,
                              size_t *len)
{
    size_t tl = strlen(text), hl = pad ? (tl + 7) / 8 * 8 : tl;
    uint8_t *out = malloc(8 + hl + dlen + 1);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(out + 8, text, tl);
    memset(out + 8 + tl, ' ', hl - tl);
    if (dlen) memcpy(out + 8 + hl, data, dlen);
    *len = 8 + hl + dlen;
    return out;
}

static uint8_t *assemble(json_t *header, const uint8_t *data, size_t dlen, size_t *len)
{
    char *text = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    uint8_t *out = assemble_text(text, data, dlen, 1, len);
    free(text);
    return out;
}

/* Applies `edit` to a copy of the header and expects the result to be rejected with phrase. */
#define WITH_HEADER(p, h) for (json_t *h = json_deep_copy((p)->header); h; json_decref(h), h = NULL)

static void expect_header_reject(const parts *p, json_t *h, const char *phrase, int line)
{
    size_t len;
    uint8_t *f = assemble(h, p->data, p->dlen, &len);
    expect_reject_at(f, len, phrase, line);
    free(f);
}
#define EXPECT_HEADER_REJECT(p, h, phrase) expect_header_reject((p), (h), (phrase), __LINE__)

static json_t *tensor(json_t *h, const char *name)
{
    return json_object_get(h, name);
}

static void set_offsets(json_t *h, const char *name, long long b, long long e)
{
    json_object_set_new(tensor(h, name), "data_offsets", json_pack("[II]", b, e));
}

static void set_meta(json_t *h, const char *key, const char *value)
{
    json_t *md = json_object_get(h, "__metadata__");
    if (value)
        json_object_set_new(md, key, json_string(value));
    else
        json_object_del(md, key);
}

static void test_truncation(const parts *p)
{
    int rejected = 0, tried = 0;
    /* Every byte count up to the end of the header, then each tensor's boundaries and insides. */
    for (size_t cut = 0; cut <= 8 + p->hlen; cut++, tried++)
        rejected += EXPECT_REJECT(p->file, cut, NULL) == 0;
    for (void *it = json_object_iter(p->header); it; it = json_object_iter_next(p->header, it)) {
        json_t *offs = json_object_get(json_object_iter_value(it), "data_offsets");
        if (!offs) continue;
        size_t b = (size_t)json_integer_value(json_array_get(offs, 0));
        size_t e = (size_t)json_integer_value(json_array_get(offs, 1));
        size_t cuts[5] = {b, b + 1, (b + e) / 2, e - 1, e};
        for (int i = 0; i < 5; i++) {
            size_t cut = 8 + p->hlen + cuts[i];
            if (cut >= p->len) continue;
            tried++;
            rejected += EXPECT_REJECT(p->file, cut, NULL) == 0;
        }
    }
    tried++;
    rejected += EXPECT_REJECT(p->file, p->len - 1, "optim.v.decoder.2.bias: data_offsets") == 0;
    CHECK(rejected == tried);
    /* Specific messages at the first boundaries. */
    EXPECT_REJECT(p->file, 0, "file too small");
    EXPECT_REJECT(p->file, 7, "file too small");
    EXPECT_REJECT(p->file, 8, "exceeds the file size");
    EXPECT_REJECT(p->file, 8 + p->hlen - 1, "exceeds the file size");
    EXPECT_REJECT(p->file, 8 + p->hlen, "lie outside the data section");
    EXPECT_REJECT(NULL, 0, "file too small");
}

static void test_header_damage(const parts *p)
{
    uint8_t *f = malloc(p->len);
    memcpy(f, p->file, p->len);
    /* Header lengths: 2^63, past the limit, past the file. */
    for (int i = 0; i < 8; i++) f[i] = (uint8_t)((UINT64_C(1) << 63) >> (8 * i));
    EXPECT_REJECT(f, p->len, "header length 9223372036854775808 exceeds the limit");
    for (int i = 0; i < 8; i++) f[i] = (uint8_t)((uint64_t)(CUVAE_CKPT_MAX_HEADER + 1) >> (8 * i));
    EXPECT_REJECT(f, p->len, "exceeds the limit");
    for (int i = 0; i < 8; i++) f[i] = (uint8_t)((uint64_t)p->len >> (8 * i));
    EXPECT_REJECT(f, p->len, "header length");
    EXPECT_REJECT(f, p->len, "exceeds the file size");
    free(f);

    size_t len;
    uint8_t *g;
    /* Not JSON, with jansson's position in the message. */
    g = assemble_text("{\"__metadata__\": {\"format\": }", p->data, p->dlen, 1, &len);
    EXPECT_REJECT(g, len, "header is not valid JSON (line 1 column");
    free(g);
    g = assemble_text("{\"a\":\"x\xff\"}", p->data, p->dlen, 1, &len); /* not UTF-8 */
    EXPECT_REJECT(g, len, "header is not valid JSON");
    free(g);
    g = assemble_text("{\"a\":\"\\u0000\"}", p->data, p->dlen, 1, &len);
    EXPECT_REJECT(g, len, "header is not valid JSON");
    free(g);
    /* Duplicate key: the first tensor's entry again, in front. */
    char *text = json_dumps(p->header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t tl = strlen(text);
    char *dup = malloc(tl + 64);
    sfmt(dup, tl + 64, "{\"encoder.0.bias\":{},%s", text + 1);
    g = assemble_text(dup, p->data, p->dlen, 1, &len);
    EXPECT_REJECT(g, len, "header is not valid JSON");
    EXPECT_REJECT(g, len, "duplicate");
    free(g);
    free(dup);
    /* A header without padding (other writers need not align) still reads. */
    g = assemble_text(text, p->data, p->dlen, 0, &len);
    cuvae_ckpt ck;
    cuvae_status st;
    CHECK(tl % 8 == 0 || cuvae_ckpt_parse(g, len, "unpadded", &ck, &st) == 0);
    cuvae_ckpt_free(&ck);
    free(g);
    free(text);
    /* Nesting far beyond any real header, and non-objects. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    g = assemble_text(deep, p->data, p->dlen, 1, &len);
    EXPECT_REJECT(g, len, NULL);
    free(g);
    free(deep);
    g = assemble_text("[1,2,3]", p->data, p->dlen, 1, &len);
    EXPECT_REJECT(g, len, "header is not a JSON object");
    free(g);
    g = assemble_text("\"cuvae\"", p->data, p->dlen, 1, &len);
    EXPECT_REJECT(g, len, "header is not a JSON object");
    free(g);

    /* Metadata. */
    WITH_HEADER(p, h)
    {
        json_object_del(h, "__metadata__");
        EXPECT_HEADER_REJECT(p, h, "__metadata__ missing or not an object of strings");
    }
    WITH_HEADER(p, h)
    {
        json_object_set_new(json_object_get(h, "__metadata__"), "step", json_integer(5));
        EXPECT_HEADER_REJECT(p, h, "__metadata__ missing or not an object of strings");
    }
    WITH_HEADER(p, h)
    {
        json_object_set_new(h, "__metadata__", json_string("x"));
        EXPECT_HEADER_REJECT(p, h, "__metadata__ missing or not an object of strings");
    }
    WITH_HEADER(p, h)
    {
        set_meta(h, "format", "pytorch");
        EXPECT_HEADER_REJECT(p, h, "format is not cuvae-checkpoint");
    }
    WITH_HEADER(p, h)
    {
        set_meta(h, "format", NULL);
        EXPECT_HEADER_REJECT(p, h, "format is not cuvae-checkpoint");
    }
    WITH_HEADER(p, h)
    {
        set_meta(h, "format_version", "2");
        EXPECT_HEADER_REJECT(p, h, "unsupported format_version");
    }
    static const char *const keys[] = {"step",   "epoch",       "epoch_step", "seed",   "data_seed",
                                       "adam_t", "rng_counter", "best_valid", "config", "crc32"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) WITH_HEADER(p, h)
        {
            char want[96];
            sfmt(want, sizeof want, "metadata key %s missing or malformed", keys[i]);
            set_meta(h, keys[i], NULL);
            EXPECT_HEADER_REJECT(p, h, want);
        }
    static const char *const bad_u64[] = {
        "", "12x", "-1", " 1", "1 ", "+1", "0x10", "1e3", "18446744073709551616"};
    for (size_t i = 0; i < sizeof bad_u64 / sizeof bad_u64[0]; i++) WITH_HEADER(p, h)
        {
            set_meta(h, "adam_t", bad_u64[i]);
            EXPECT_HEADER_REJECT(p, h, "metadata key adam_t missing or malformed");
        }
    WITH_HEADER(p, h)
    {
        set_meta(h, "rng_counter", "18446744073709551615"); /* the largest u64 reads */
        set_meta(h, "best_valid", "inf");
        size_t n;
        uint8_t *ok = assemble(h, p->data, p->dlen, &n);
        CHECK(cuvae_ckpt_parse(ok, n, "max", &ck, &st) == 0);
        CHECK(ck.meta.rng_counter == UINT64_MAX && isinf(ck.meta.best_valid));
        cuvae_ckpt_free(&ck);
        free(ok);
    }
    static const char *const bad_best[] = {"nan", "-inf", "", "1.5x", " 2"};
    for (size_t i = 0; i < sizeof bad_best / sizeof bad_best[0]; i++) WITH_HEADER(p, h)
        {
            set_meta(h, "best_valid", bad_best[i]);
            EXPECT_HEADER_REJECT(p, h, "metadata key best_valid missing or malformed");
        }
    static const char *const bad_crc[] = {"ABCDEF01", "abcdef0", "abcdef012", "abcdefgh"};
    for (size_t i = 0; i < sizeof bad_crc / sizeof bad_crc[0]; i++) WITH_HEADER(p, h)
        {
            set_meta(h, "crc32", bad_crc[i]);
            EXPECT_HEADER_REJECT(p, h, "metadata key crc32 missing or malformed");
        }
}

static void test_tensor_damage(const parts *p, const fixture *f)
{
    static const char *const dtypes[] = {"F16", "I64", "BF16", "f32"};
    for (size_t i = 0; i < 4; i++) WITH_HEADER(p, h)
        {
            char want[64];
            json_object_set_new(tensor(h, "encoder.1.weight"), "dtype", json_string(dtypes[i]));
            sfmt(want, sizeof want, "tensor encoder.1.weight: dtype %s, expected F32", dtypes[i]);
            EXPECT_HEADER_REJECT(p, h, want);
        }
    WITH_HEADER(p, h)
    {
        json_object_del(tensor(h, "encoder.1.weight"), "dtype");
        EXPECT_HEADER_REJECT(p, h, "tensor encoder.1.weight: dtype (missing), expected F32");
    }
    WITH_HEADER(p, h)
    {
        json_object_set_new(h, "encoder.1.weight", json_integer(3));
        EXPECT_HEADER_REJECT(p, h, "tensor encoder.1.weight: header entry is not an object");
    }
    const char *bad_shapes[] = {
        "[-1,5]",  "[\"4\",5]",           "[4.0,5]",
        "\"4x5\"", "[1,1,1,1,1,1,1,1,1]", "[4611686018427387904,4611686018427387904]"};
    for (size_t i = 0; i < sizeof bad_shapes / sizeof bad_shapes[0]; i++) WITH_HEADER(p, h)
        {
            json_error_t err;
            json_object_set_new(tensor(h, "encoder.1.weight"), "shape",
                                json_loads(bad_shapes[i], JSON_DECODE_ANY, &err));
            EXPECT_HEADER_REJECT(p, h, "tensor encoder.1.weight: bad shape");
        }
    /* Offsets: weight encoder.0.weight is [0,120), encoder.0.bias [120,140). */
    uint64_t dl = p->dlen;
    WITH_HEADER(p, h)
    {
        set_offsets(h, "encoder.0.bias", 140, 120);
        EXPECT_HEADER_REJECT(p, h, "tensor encoder.0.bias: data_offsets [140,120] are reversed");
    }
    WITH_HEADER(p, h)
    {
        set_offsets(h, "encoder.0.bias", (long long)dl, (long long)dl + 20);
        EXPECT_HEADER_REJECT(p, h, "tensor encoder.0.bias: data_offsets");
        EXPECT_HEADER_REJECT(p, h, "lie outside the data section");
    }
    WITH_HEADER(p, h)
    {
        set_offsets(h, "encoder.0.bias", 9223372036854775787LL, 9223372036854775807LL);
        EXPECT_HEADER_REJECT(p, h, "lie outside the data section");
    }
    WITH_HEADER(p, h)
    {
        set_offsets(h, "encoder.0.bias", -20, 0);
        EXPECT_HEADER_REJECT(p, h, "tensor encoder.0.bias: data_offsets must be two");
    }
    WITH_HEADER(p, h)
    {
        json_object_set_new(tensor(h, "encoder.0.bias"), "data_offsets", json_pack("[i]", 120));
        EXPECT_HEADER_REJECT(p, h, "tensor encoder.0.bias: data_offsets must be two");
    }
    WITH_HEADER(p, h)
    {
        set_offsets(h, "encoder.0.bias", 100, 120);
        EXPECT_HEADER_REJECT(p, h, "tensors overlap or leave gaps in the data section");
    }
    WITH_HEADER(p, h)
    {
        /* Any order of tensors in the data section is valid safetensors (other writers sort
         * them differently): values are taken from where the offsets say. */
        set_offsets(h, "encoder.0.weight", 20, 140);
        set_offsets(h, "encoder.0.bias", 0, 20);
        size_t n;
        uint8_t *g = assemble(h, p->data, p->dlen, &n);
        cuvae_ckpt ck;
        cuvae_status st;
        CHECK(cuvae_ckpt_parse(g, n, "swapped", &ck, &st) == 0);
        if (ck.state.params) {
            CHECK(memcmp(ck.state.params + f->model.enc[0].b, f->params, 5 * sizeof(float)) == 0);
            CHECK(memcmp(ck.state.params, f->params + 5, 30 * sizeof(float)) == 0);
        }
        cuvae_ckpt_free(&ck);
        free(g);
    }
    WITH_HEADER(p, h)
    {
        /* Overlap alone: the last tensor moved inside the one before it. */
        set_offsets(h, "optim.v.decoder.2.bias", (long long)dl - 48, (long long)dl - 24);
        EXPECT_HEADER_REJECT(p, h, "tensors overlap or leave gaps in the data section");
    }
    WITH_HEADER(p, h)
    {
        json_object_del(h, "encoder.0.bias");
        EXPECT_HEADER_REJECT(p, h, "tensors overlap or leave gaps in the data section");
    }
    WITH_HEADER(p, h)
    {
        set_offsets(h, "encoder.0.weight", 4, 124);
        EXPECT_HEADER_REJECT(p, h, "tensors overlap or leave gaps in the data section");
    }
    WITH_HEADER(p, h)
    {
        json_object_del(h, "optim.v.decoder.2.bias");
        char want[96];
        sfmt(want, sizeof want, "data section is %zu bytes but tensors cover %zu", p->dlen,
             p->dlen - 4 * (size_t)X_DIM);
        EXPECT_HEADER_REJECT(p, h, want);
    }
    WITH_HEADER(p, h)
    {
        json_object_set_new(tensor(h, "encoder.0.weight"), "shape", json_pack("[ii]", 5, 5));
        EXPECT_HEADER_REJECT(p, h,
                             "tensor encoder.0.weight: size 120 does not match shape [5,5] "
                             "(expected 100 bytes)");
    }
    /* Against the config in the metadata. */
    WITH_HEADER(p, h)
    {
        set_meta(h, "config", "[model]\nlatent = zero\n");
        EXPECT_HEADER_REJECT(p, h, "config in metadata: ");
        EXPECT_HEADER_REJECT(p, h, "model.latent");
    }
    WITH_HEADER(p, h)
    {
        json_object_set(h, "encoder.0.biass", tensor(h, "encoder.0.bias"));
        json_object_del(h, "encoder.0.bias");
        EXPECT_HEADER_REJECT(p, h, "tensor encoder.0.biass: unexpected name");
    }
    cuvae_config c = f->config;
    c.model.n_hidden = 3;
    c.model.hidden[2] = 4;
    char *ini = cuvae_config_to_ini(&c);
    WITH_HEADER(p, h)
    {
        set_meta(h, "config", ini);
        EXPECT_HEADER_REJECT(p, h, "tensor encoder.3.weight missing");
    }
    free(ini);
    c = f->config;
    c.model.latent = 2;
    ini = cuvae_config_to_ini(&c);
    WITH_HEADER(p, h)
    {
        set_meta(h, "config", ini);
        EXPECT_HEADER_REJECT(p, h,
                             "tensor encoder.2.weight: shape [6,4], expected [4,4] for the model "
                             "in the checkpoint's config");
    }
    free(ini);
    WITH_HEADER(p, h)
    {
        json_object_set_new(tensor(h, "encoder.0.weight"), "shape", json_pack("[i]", 30));
        EXPECT_HEADER_REJECT(p, h, "tensor encoder.0.weight: shape [30], expected [5,x_dim]");
    }
    /* Optimizer state without v: the v tensors are the last third of the data. */
    WITH_HEADER(p, h)
    {
        cuvae_tensor_info t[CUVAE_MAX_TENSORS];
        int n_t = cuvae_model_tensors(&f->model, t);
        for (int i = 0; i < n_t; i++) {
            char name[64];
            sfmt(name, sizeof name, "optim.v.%s", t[i].name);
            json_object_del(h, name);
        }
        size_t n;
        uint8_t *g = assemble(h, p->data, p->dlen / 3 * 2, &n);
        EXPECT_REJECT(g, n, "optimizer state is partial (m without v)");
        free(g);
    }
}

/* Rewrites the crc32 of a file in place (same length) after its data were changed on purpose. */
static void fix_crc(uint8_t *file, size_t len)
{
    uint64_t hl = le64(file);
    char want[16];
    sfmt(want, sizeof want, "%08lx", (unsigned long)crc32(0L, file + 8 + hl, (uInt)(len - 8 - hl)));
    char *at = strstr((char *)file + 8, "\"crc32\":\"");
    if (at) memcpy(at + 9, want, 8);
}

static void put_f32(uint8_t *p, float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(u >> (8 * i));
}

static void test_data_damage(const parts *p, const fixture *f)
{
    uint8_t *g = malloc(p->len);
    uint8_t *d = g + 8 + p->hlen;
    memcpy(g, p->file, p->len);
    d[200] ^= 0x01;
    EXPECT_REJECT(g, p->len, "CRC-32 mismatch: header says ");
    EXPECT_REJECT(g, p->len, ", data has ");
    /* Non-finite values with a CRC that matches them: the reader still refuses them. encoder.1
     * .weight starts at byte 140. */
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        memcpy(g, p->file, p->len);
        put_f32(d + 140 + 8, bad[i]);
        fix_crc(g, p->len);
        EXPECT_REJECT(g, p->len, "tensor encoder.1.weight holds non-finite values");
    }
    memcpy(g, p->file, p->len);
    size_t third = p->dlen / 3;
    put_f32(d + third + 4, NAN);
    fix_crc(g, p->len);
    EXPECT_REJECT(g, p->len, "tensor optim.m.encoder.0.weight holds non-finite values");
    memcpy(g, p->file, p->len);
    put_f32(d + 2 * third + 4, -1.0f);
    fix_crc(g, p->len);
    EXPECT_REJECT(g, p->len, "tensor optim.v.encoder.0.weight holds negative values");
    /* The unchanged file with a recomputed CRC is accepted (fix_crc itself is right). */
    memcpy(g, p->file, p->len);
    fix_crc(g, p->len);
    cuvae_ckpt ck;
    cuvae_status st;
    CHECK(cuvae_ckpt_parse(g, p->len, "same", &ck, &st) == 0);
    cuvae_ckpt_free(&ck);
    free(g);
    (void)f;
}

/* ---- writing under failure ---------------------------------------------------------------------
 */

static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

static void test_write_failures(const char *base, fixture *f)
{
    char dir[512], path[600];
    sfmt(dir, sizeof dir, "%s/fail", base);
    mkdir(dir, 0777);
    sfmt(path, sizeof path, "%s/ckpt.safetensors", dir);
    cuvae_status st;
    CHECK(write_fixture(path, f, 0, &st) == 0);
    size_t good_len, new_len;
    uint8_t *good = read_all(path, &good_len);

    /* Full disk: a child with a file-size limit between the old file's size and the new one's. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {.rlim_cur = good_len + 256, .rlim_max = good_len + 256};
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
        cuvae_status cst;
        int rc = write_fixture(path, f, 1, &cst);
        if (rc == 0) _exit(1);
        if (!strstr(cst.msg, "cannot write checkpoint") || !strstr(cst.msg, path) ||
            !strstr(cst.msg, strerror(EFBIG))) {
            fprintf(stderr, "unexpected message: %s\n", cst.msg);
            _exit(2);
        }
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    uint8_t *now = read_all(path, &new_len);
    CHECK(now && new_len == good_len && memcmp(now, good, good_len) == 0);
    free(now);
    CHECK(count_temps(dir) == 0);
    /* The bigger file does fit without the limit. */
    char big[600];
    sfmt(big, sizeof big, "%s/big.safetensors", dir);
    CHECK(write_fixture(big, f, 1, &st) == 0);
    uint8_t *b = read_all(big, &new_len);
    CHECK(new_len > good_len + 256);
    free(b);
    unlink(big);

    /* Values a run must never get are refused before anything is written. */
    float saved = f->params[7];
    f->params[7] = NAN;
    CHECK(write_fixture(path, f, 1, &st) != 0);
    CHECK_MSG(st.msg, "cannot write checkpoint");
    CHECK_MSG(st.msg, "holds non-finite values");
    f->params[7] = saved;
    cuvae_train_state half = {.params = f->params, .m = f->m};
    CHECK(cuvae_ckpt_write(path, &f->config, &f->model, &f->meta, &half, &st) != 0);
    CHECK_MSG(st.msg, "optimizer state is partial");
    cuvae_model other;
    cuvae_model_layout(&other, &f->config, X_DIM + 1, &st);
    cuvae_train_state s = state_of(f, 0);
    float *p2 = calloc(other.n_params, sizeof(float));
    s.params = p2;
    cuvae_config c2 = f->config;
    c2.model.latent = 4;
    CHECK(cuvae_ckpt_write(path, &c2, &other, &f->meta, &s, &st) != 0);
    CHECK_MSG(st.msg, "does not follow the config");
    free(p2);
    now = read_all(path, &new_len);
    CHECK(now && new_len == good_len && memcmp(now, good, good_len) == 0);
    free(now);

    /* A parent that is a regular file (fails for root too), then a read-only directory. */
    char under_file[700];
    sfmt(under_file, sizeof under_file, "%s/ckpt.safetensors", path);
    CHECK(write_fixture(under_file, f, 0, &st) != 0);
    CHECK_MSG(st.msg, "cannot write checkpoint");
    CHECK_MSG(st.msg, strerror(ENOTDIR));
    /* A read-only directory. Root ignores permissions, so as root the attempt runs in a child
     * that drops to nobody (skipped when that is impossible). */
    chmod(base, 0755);
    chmod(dir, 0555);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(CUVAE_TEST_SKIP);
        if (geteuid() == 0) _exit(CUVAE_TEST_SKIP);
        cuvae_status cst;
        if (write_fixture(path, f, 1, &cst) == 0) _exit(1);
        if (!strstr(cst.msg, "cannot write checkpoint") || !strstr(cst.msg, strerror(EACCES))) {
            fprintf(stderr, "unexpected message: %s\n", cst.msg);
            _exit(2);
        }
        _exit(0);
    }
    waitpid(pid, &status, 0);
    chmod(dir, 0755);
    chmod(base, 0700);
    CHECK(WIFEXITED(status));
    if (WIFEXITED(status) && WEXITSTATUS(status) == CUVAE_TEST_SKIP)
        printf("test_checkpoint: cannot drop root privileges, read-only directory case skipped\n");
    else
        CHECK(WEXITSTATUS(status) == 0);
    now = read_all(path, &new_len);
    CHECK(now && new_len == good_len && memcmp(now, good, good_len) == 0);
    free(now);
    CHECK(count_temps(dir) == 0);
    free(good);

    /* Reading what is not a checkpoint file. */
    cuvae_ckpt ck;
    CHECK(cuvae_ckpt_read(dir, &ck, &st) != 0);
    CHECK_MSG(st.msg, dir);
    CHECK_MSG(st.msg, "not a regular file");
    char missing[600];
    sfmt(missing, sizeof missing, "%s/none.safetensors", dir);
    CHECK(cuvae_ckpt_read(missing, &ck, &st) != 0);
    CHECK_MSG(st.msg, missing);
    CHECK_MSG(st.msg, "cannot open");
    char fifo[600];
    sfmt(fifo, sizeof fifo, "%s/fifo.safetensors", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK(cuvae_ckpt_read(fifo, &ck, &st) != 0); /* refused, without waiting for a writer */
    CHECK_MSG(st.msg, "not a regular file");
    unlink(fifo);
}

/* ---- run directories ---------------------------------------------------------------------------
 */

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void test_run_dir(const char *base, fixture *f)
{
    char run[512], ck_dir[600], path[700], saved[700];
    cuvae_status st;
    cuvae_ckpt ck;
    sfmt(run, sizeof run, "%s/run", base);
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, path, sizeof path, &st) == 0);
    mkdir(run, 0777);
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, path, sizeof path, &st) == 0);
    sfmt(ck_dir, sizeof ck_dir, "%s/checkpoints", run);
    mkdir(ck_dir, 0777);
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, path, sizeof path, &st) == 0);

    cuvae_train_state s = state_of(f, 1);
    for (uint64_t step = 100; step <= 600; step += 100) {
        if (step == 300) {
            /* A stale temporary from a killed writer: removed by the next save. */
            sfmt(path, sizeof path, "%s/step-000000000700.safetensors.tmp.999999", ck_dir);
            cuvae_test_write_file(path, "partial", 7);
        }
        f->meta.step = step;
        f->meta.best_valid = 100.0 - (double)step / 100.0;
        int is_best = step == 200 || step == 500;
        CHECK(cuvae_ckpt_save_run(run, 3, &f->config, &f->model, &f->meta, &s, is_best, saved,
                                  sizeof saved, &st) == 0);
        sfmt(path, sizeof path, "%s/step-%012" PRIu64 ".safetensors", ck_dir, step);
        CHECK(strcmp(saved, path) == 0);
    }
    for (uint64_t step = 100; step <= 600; step += 100) {
        sfmt(path, sizeof path, "%s/step-%012" PRIu64 ".safetensors", ck_dir, step);
        CHECK(exists(path) == (step >= 400));
    }
    CHECK(count_temps(ck_dir) == 0);
    sfmt(path, sizeof path, "%s/best.safetensors", ck_dir);
    CHECK(cuvae_ckpt_read(path, &ck, &st) == 0 && ck.meta.step == 500);
    cuvae_ckpt_free(&ck);
    sfmt(path, sizeof path, "%s/latest", ck_dir);
    size_t n;
    char *latest = (char *)read_all(path, &n);
    CHECK(latest && n == 30 && memcmp(latest, "step-000000000600.safetensors\n", 30) == 0);
    free(latest);

    /* A stale temporary is never read; the newest good file is found. */
    sfmt(path, sizeof path, "%s/step-000000000900.safetensors.tmp.12345", ck_dir);
    cuvae_test_write_file(path, "garbage", 7);
    char found[700];
    uint8_t *bytes;
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, found, sizeof found, &st) == 1);
    CHECK(ck.meta.step == 600 && strstr(found, "step-000000000600.safetensors"));
    cuvae_ckpt_free(&ck);

    /* What "latest" names: a hand-pointed file goes first; a missing step file is reported and
     * passed over; a name outside the directory is ignored. */
    char latest_path[700], manual[700];
    sfmt(latest_path, sizeof latest_path, "%s/latest", ck_dir);
    sfmt(path, sizeof path, "%s/step-000000000400.safetensors", ck_dir);
    sfmt(manual, sizeof manual, "%s/manual.safetensors", ck_dir);
    bytes = read_all(path, &n);
    cuvae_test_write_file(manual, bytes, n);
    free(bytes);
    static const struct {
        const char *content, *log, *found;
    } pointers[] = {
        {"manual.safetensors\n", NULL, "manual.safetensors"},
        {"step-000000000700.safetensors\n", "step-000000000700.safetensors: cannot open",
         "step-000000000600.safetensors"},
        {"../escape.safetensors\n", "latest: it does not name a checkpoint file",
         "step-000000000600.safetensors"},
    };
    for (size_t i = 0; i < sizeof pointers / sizeof pointers[0]; i++) {
        cuvae_test_write_file(latest_path, pointers[i].content, strlen(pointers[i].content));
        char *text = NULL;
        size_t text_len = 0;
        FILE *lg = open_memstream(&text, &text_len);
        CHECK(cuvae_ckpt_find_latest(run, lg, &ck, found, sizeof found, &st) == 1);
        fclose(lg);
        CHECK_MSG(found, pointers[i].found);
        if (pointers[i].log)
            CHECK_MSG(text, pointers[i].log);
        else
            CHECK(text_len == 0);
        free(text);
        cuvae_ckpt_free(&ck);
    }
    unlink(manual);
    cuvae_test_write_file(latest_path, "step-000000000600.safetensors\n", 30);

    /* The newest is damaged: the previous one is used, and the log says why. */
    sfmt(path, sizeof path, "%s/step-000000000600.safetensors", ck_dir);
    bytes = read_all(path, &n);
    bytes[n - 3] ^= 0x40;
    cuvae_test_write_file(path, bytes, n);
    free(bytes);
    char *log_text = NULL;
    size_t log_len = 0;
    FILE *log = open_memstream(&log_text, &log_len);
    CHECK(cuvae_ckpt_find_latest(run, log, &ck, found, sizeof found, &st) == 1);
    fclose(log);
    CHECK(ck.meta.step == 500 && strstr(found, "step-000000000500.safetensors"));
    CHECK_MSG(log_text, "cuvae: skipping ");
    CHECK_MSG(log_text, "step-000000000600.safetensors: CRC-32 mismatch");
    free(log_text);
    cuvae_ckpt_free(&ck);

    /* Every step file damaged: best.safetensors is the last resort; without it, an error. */
    for (uint64_t step = 400; step <= 500; step += 100) {
        sfmt(path, sizeof path, "%s/step-%012" PRIu64 ".safetensors", ck_dir, step);
        CHECK(truncate(path, 100) == 0);
    }
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, found, sizeof found, &st) == 1);
    CHECK(ck.meta.step == 500 && strstr(found, "best.safetensors"));
    cuvae_ckpt_free(&ck);
    sfmt(path, sizeof path, "%s/best.safetensors", ck_dir);
    unlink(path);
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, found, sizeof found, &st) == -1);
    CHECK_MSG(st.msg, "no usable checkpoint in");
    CHECK(ck.state.params == NULL);

    /* Saving again after a resume from an older step never deletes the file just written. */
    f->meta.step = 50;
    CHECK(cuvae_ckpt_save_run(run, 1, &f->config, &f->model, &f->meta, &s, 0, saved, sizeof saved,
                              &st) == 0);
    CHECK(exists(saved));
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, found, sizeof found, &st) == 1);
    CHECK(ck.meta.step == 50);
    cuvae_ckpt_free(&ck);

    /* best.safetensors cannot be written (a directory sits at its name): the step file that
     * counts the improvement is not written either, so a resume repeats the improvement. */
    char best_dir[700];
    sfmt(best_dir, sizeof best_dir, "%s/best.safetensors", ck_dir);
    CHECK(mkdir(best_dir, 0777) == 0);
    f->meta.step = 60;
    CHECK(cuvae_ckpt_save_run(run, 1, &f->config, &f->model, &f->meta, &s, 1, saved, sizeof saved,
                              &st) != 0);
    CHECK_MSG(st.msg, best_dir);
    sfmt(path, sizeof path, "%s/step-000000000060.safetensors", ck_dir);
    CHECK(!exists(path));
    CHECK(count_temps(ck_dir) == 0);
    rmdir(best_dir);
    f->meta.step = 1234;
}

int main(void)
{
    char dir[512];
    if (cuvae_test_tmpdir(dir, sizeof dir, "ckpt")) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    fixture f;
    fixture_init(&f, 42);
    test_round_trip(dir, &f);
    test_independent_layout(dir, &f);

    char path[600];
    cuvae_status st;
    sfmt(path, sizeof path, "%s/base.safetensors", dir);
    CHECK(write_fixture(path, &f, 1, &st) == 0);
    size_t len = 0;
    parts p;
    uint8_t *file = read_all(path, &len);
    split(&p, file, len);
    CHECK(p.header != NULL);
    if (p.header) {
        test_truncation(&p);
        test_header_damage(&p);
        test_tensor_damage(&p, &f);
        test_data_damage(&p, &f);
    }
    json_decref(p.header);
    free(p.file);

    test_write_failures(dir, &f);
    test_run_dir(dir, &f);
    fixture_free(&f);

    if (cuvae_test_failures == 0) {
        char cmd[600];
        sfmt(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    return cuvae_test_finish("checkpoint");
}
