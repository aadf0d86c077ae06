/* Checkpoint rejection: every kind of damage to a good file (truncation at each region boundary,
 * hostile headers, offsets, shapes, dtypes, bad JSON, CRC, non-finite values) is rejected with
 * its own message, and nothing crashes (this suite also runs under ASan/UBSan). */
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
#include "checkpoint_format.h"
#include "ckpt_fixture.h"
#include "tests_util.h"

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

/* Rewrites the crc32 of a file in place (same length) after its data were changed on purpose. */
static void fix_crc(uint8_t *file, size_t len)
{
    uint32_t crc = 0;
    CHECK(cuvae_ckpt_file_crc(file, len, &crc) == 0);
    char want[16];
    sfmt(want, sizeof want, "%08lx", (unsigned long)crc);
    char *at = strstr((char *)file + 8, "\"crc32\":\"");
    if (at) memcpy(at + 9, want, 8);
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
        set_meta(h, "format_version", "3");
        EXPECT_HEADER_REJECT(p, h, "unsupported format_version");
    }
    WITH_HEADER(p, h)
    {
        set_meta(h, "format_version", "0");
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
        set_meta(h, "step", "18446744073709551615");        /* (rng_counter = step) */
        set_meta(h, "best_valid", "inf");
        size_t n;
        uint8_t *ok = assemble(h, p->data, p->dlen, &n);
        fix_crc(ok, n); /* format 2's CRC covers the metadata */
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
        fix_crc(g, n); /* format 2's CRC covers the tensors' order */
        cuvae_ckpt ck;
        cuvae_status st;
        CHECK(cuvae_ckpt_parse(g, n, "swapped", &ck, &st) == 0);
        if (ck.state.params) {
            CHECK(memcmp(ck.state.params + f->model.enc.layer[0].b, f->params, 5 * sizeof(float)) ==
                  0);
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
    EXPECT_REJECT(g, p->len, ", metadata+data has ");
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

int main(void)
{
    char dir[512];
    if (cuvae_test_tmpdir(dir, sizeof dir, "ckpt-hostile")) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    fixture f;
    fixture_init(&f, 42);
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
    fixture_free(&f);
    remove(path);
    remove(dir);
    return cuvae_test_finish("checkpoint_hostile");
}
