/* Checkpoint metadata: format 2's CRC-32 covers the metadata (an edited field without a matching
 * CRC is refused), every value is checked against the others and the config even when the CRC
 * matches (a forged or format-1 file; the message names the field), and format-1 files written
 * with the old writer's checksum (data only) still read, marked as unchecked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>

#include "checkpoint.h"
#include "checkpoint_format.h"
#include "ckpt_fixture.h"
#include "tests_util.h"

typedef struct {
    json_t *header;
    const uint8_t *data;
    size_t dlen;
} parts;

/* Header + data -> a file; crc: 2 = format 2's checksum, 1 = format 1's (data only), 0 = the
 * header's crc32 left as it is. */
static uint8_t *assemble(json_t *h, const parts *p, int crc, size_t *len)
{
    json_t *md = json_object_get(h, "__metadata__");
    for (int pass = 0; pass < 2; pass++) {
        char *text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
        size_t tl = strlen(text), hl = (tl + 7) / 8 * 8;
        uint8_t *out = malloc(8 + hl + p->dlen);
        for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)hl >> (8 * i));
        memcpy(out + 8, text, tl);
        memset(out + 8 + tl, ' ', hl - tl);
        memcpy(out + 8 + hl, p->data, p->dlen);
        free(text);
        *len = 8 + hl + p->dlen;
        if (pass == 1 || crc == 0) return out;
        uint32_t c = 0;
        if (crc == 2)
            CHECK(cuvae_ckpt_file_crc(out, *len, &c) == 0);
        else
            c = (uint32_t)crc32(0L, p->data, (uInt)p->dlen);
        free(out);
        char hex[16];
        sfmt(hex, sizeof hex, "%08lx", (unsigned long)c);
        json_object_set_new(md, "crc32", json_string(hex)); /* same length: offsets stay */
    }
    return NULL;
}

static void set_meta(json_t *h, const char *key, const char *value)
{
    json_object_set_new(json_object_get(h, "__metadata__"), key, json_string(value));
}

/* Parses; phrase NULL: expects acceptance (returns the format version), else a one-line refusal
 * holding phrase. */
static int parse_at(json_t *h, const parts *p, int crc, const char *phrase, int line)
{
    size_t len;
    uint8_t *f = assemble(h, p, crc, &len);
    cuvae_ckpt ck;
    cuvae_status st;
    st.msg[0] = '\0';
    int rc = cuvae_ckpt_parse(f, len, "ck.safetensors", &ck, &st);
    free(f);
    int version = rc == 0 ? ck.format_version : -1;
    if (rc == 0) cuvae_ckpt_free(&ck);
    if (!phrase) {
        if (rc != 0) {
            fprintf(stderr, "test_checkpoint_meta.c:%d: refused: %s\n", line, st.msg);
            cuvae_test_failures++;
        }
        return version;
    }
    if (rc == 0) {
        fprintf(stderr, "test_checkpoint_meta.c:%d: accepted, expected \"%s\"\n", line, phrase);
        cuvae_test_failures++;
        return version;
    }
    cuvae_check_msg(__FILE__, line, st.msg, phrase);
    CHECK(strchr(st.msg, '\n') == NULL);
    return version;
}
#define EXPECT(h, p, crc, phrase) parse_at((h), (p), (crc), (phrase), __LINE__)
#define WITH(p, h) for (json_t *h = json_deep_copy((p)->header); h; json_decref(h), h = NULL)

/* One edited field, three ways: format 2 with the CRC left, format 2 re-sealed and format 1:
 * the consistency check refuses each, naming the field. */
static void edit_each_way(const parts *p, const char *key, const char *value, const char *phrase,
                          int line)
{
    WITH(p, h)
    {
        set_meta(h, key, value);
        parse_at(h, p, 0, phrase, line); /* the consistency checks come before the CRC */
        parse_at(h, p, 2, phrase, line);
        set_meta(h, "format_version", "1");
        parse_at(h, p, 1, phrase, line);
    }
}
#define EDIT(p, key, value, phrase) edit_each_way((p), (key), (value), (phrase), __LINE__)

static char *config_with(const parts *p, const char *from, const char *to)
{
    const char *ini =
        json_string_value(json_object_get(json_object_get(p->header, "__metadata__"), "config"));
    const char *at = strstr(ini, from);
    CHECK(at != NULL);
    if (!at) return NULL;
    size_t n = strlen(ini) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    sfmt(out, n, "%.*s%s%s", (int)(at - ini), ini, to, at + strlen(from));
    return out;
}

int main(void)
{
    char dir[512];
    if (cuvae_test_tmpdir(dir, sizeof dir, "ckpt-meta")) return 1;
    fixture f;
    fixture_init(&f, 42); /* step 1234, epoch 3, epoch_step 17, adam_t 1230, best 87.12... */
    char path[600];
    cuvae_status st;
    sfmt(path, sizeof path, "%s/base.safetensors", dir);
    CHECK(write_fixture(path, &f, 1, &st) == 0);
    size_t len = 0;
    uint8_t *file = read_all(path, &len);
    uint64_t hl = le64(file);
    parts p = {json_loadb((const char *)file + 8, hl, 0, NULL), file + 8 + hl, len - 8 - hl};
    CHECK(p.header != NULL);
    if (!p.header) return cuvae_test_finish("checkpoint_meta");

    /* The file as written is format 2; re-sealed unchanged it still reads. */
    WITH(&p, h) CHECK(EXPECT(h, &p, 0, NULL) == 2);
    WITH(&p, h) CHECK(EXPECT(h, &p, 2, NULL) == 2);
    /* Format 1 as the old writer made it (CRC-32 of the data only) reads, marked unchecked. */
    WITH(&p, h)
    {
        set_meta(h, "format_version", "1");
        CHECK(EXPECT(h, &p, 1, NULL) == 1);
        /* A format-2 checksum on a format-1 file, or the reverse, is a mismatch. */
        EXPECT(h, &p, 2, "CRC-32 mismatch: header says ");
        set_meta(h, "format_version", "2");
        EXPECT(h, &p, 1, ", metadata+data has ");
    }
    WITH(&p, h)
    {
        set_meta(h, "format_version", "3");
        EXPECT(h, &p, 2, "unsupported format_version '3' (this build reads 1 to 2)");
    }
    /* The warning line names the file and "unchecked"; nothing for format 2. */
    {
        cuvae_ckpt ck = {.format_version = 1};
        char buf[512] = "";
        FILE *mem = fmemopen(buf, sizeof buf, "w");
        cuvae_ckpt_warn_unchecked(&ck, "old.safetensors", mem);
        ck.format_version = 2;
        cuvae_ckpt_warn_unchecked(&ck, "new.safetensors", mem);
        fclose(mem);
        CHECK_MSG(buf, "warning: old.safetensors: format_version 1: the metadata is unchecked");
        CHECK(strstr(buf, "new.safetensors") == NULL && strchr(buf, '\n') == strrchr(buf, '\n'));
    }

    /* A bit of step flipped (1234 = 0x4d2 -> 0x4f2 = 1266). */
    EDIT(&p, "step", "1266", "metadata: step 1266 does not match rng_counter 1234");
    EDIT(&p, "rng_counter", "1235", "metadata: step 1234 does not match rng_counter 1235");
    EDIT(&p, "adam_t", "1235", "metadata: adam_t 1235 exceeds step 1234");
    EDIT(&p, "epoch", "1235", "metadata: epoch 1235 exceeds step 1234");
    EDIT(&p, "seed", "43", "metadata: seed 43 differs from train.seed 42");
    EDIT(&p, "data_seed", "43", "metadata: data_seed 43 differs from seed 42");
    /* A validation result before any epoch ended. */
    EDIT(&p, "epoch", "0", "metadata: best_valid 87.1234567890123");
    /* A value the consistency rules allow is still caught by format 2's checksum. */
    WITH(&p, h)
    {
        set_meta(h, "best_valid", "80.5");
        EXPECT(h, &p, 0, "CRC-32 mismatch");
        set_meta(h, "epoch_step", "16");
        EXPECT(h, &p, 0, "CRC-32 mismatch");
    }
    /* The config against itself and the tensors. */
    char *gauss = config_with(&p, "likelihood = bernoulli", "likelihood = gaussian");
    if (gauss) EDIT(&p, "config", gauss, "config in metadata: config: model.likelihood=gaussian");
    free(gauss);
    char *wide = config_with(&p, "hidden = 5,4", "hidden = 5,3");
    if (wide) EDIT(&p, "config", wide, "shape [4,5], expected [3,5]");
    free(wide);
    /* Two tensors of the same shape swapped in the data: the CRC of format 2 covers the order. */
    WITH(&p, h)
    {
        json_t *a = json_object_get(h, "optim.m.encoder.0.weight");
        json_t *b = json_object_get(h, "optim.v.encoder.0.weight");
        json_t *oa = json_incref(json_object_get(a, "data_offsets"));
        json_object_set(a, "data_offsets", json_object_get(b, "data_offsets"));
        json_object_set_new(b, "data_offsets", oa);
        EXPECT(h, &p, 0, "CRC-32 mismatch");
    }

    json_decref(p.header);
    free(file);
    fixture_free(&f);
    remove(path);
    remove(dir);
    return cuvae_test_finish("checkpoint_meta");
}
