/* The .npy header parser and the .npz directory reader of host/data/npy.c on hand-made bytes:
 * good headers (v1 and v2, the dtypes and shapes NumPy writes) and hostile ones (bad magic,
 * truncation, Fortran order, unknown dtypes, malformed dicts, absurd sizes), and zip directories
 * (stored and deflated members, defaults, missing members, not a zip, encrypted, truncated). And
 * the image shapes the loader accepts, from small files: greyscale ones, colour N x H x W x 3
 * (reordered to planar) and N x 3 x H x W, in a .npy and an .npz member, with the peek and the
 * load agreeing; other channel counts refused with the file, member and shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "dataset.h"
#include "npy.h"
#include "tests_util.h"

static int parse(const char *dict, cuvae_npy_header *h, cuvae_status *st)
{
    uint8_t buf[512];
    size_t n = cuvae_test_npy_header(buf, dict, 0);
    return cuvae_npy_parse_header(buf, n, "x.npy", h, st);
}

static void test_good_headers(void)
{
    cuvae_npy_header h;
    cuvae_status st;
    CHECK(parse("{'descr': '|u1', 'fortran_order': False, 'shape': (10, 28, 28), }", &h, &st) == 0);
    CHECK(h.ndim == 3 && h.shape[0] == 10 && h.shape[2] == 28 && h.itemsize == 1);
    CHECK(h.data_offset == 128 && h.data_bytes == 7840);
    CHECK(parse("{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(3,4,5,1)}", &h, &st) == 0);
    CHECK(h.is_float && h.data_bytes == 240 && h.ndim == 4);
    CHECK(parse("{'descr': '<i8', 'fortran_order': False, 'shape': (7,), }", &h, &st) == 0);
    CHECK(h.ndim == 1 && h.shape[0] == 7 && h.itemsize == 8 && h.is_signed);
    CHECK(parse("{'descr': '<u2', 'fortran_order': False, 'shape': (), }", &h, &st) == 0);
    CHECK(h.ndim == 0 && h.data_bytes == 2);
    uint8_t buf[512];
    size_t n = cuvae_test_npy_header(
        buf, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", 1);
    CHECK(cuvae_npy_parse_header(buf, n, "x.npy", &h, &st) == 0 && h.data_offset == n);
    CHECK(cuvae_npy_sniff(buf, n) == 1 && cuvae_npy_sniff((const uint8_t *)"PK\3\4xx", 6) == 2);
}

static void bad(const char *dict, const char *needle)
{
    cuvae_npy_header h;
    cuvae_status st;
    CHECK(parse(dict, &h, &st) == -1);
    CHECK_MSG(st.msg, needle);
    CHECK_MSG(st.msg, "x.npy");
}

static void test_hostile_headers(void)
{
    bad("{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }", "fortran_order is True");
    bad("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", "unsupported dtype '<f8'");
    bad("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", "unsupported dtype '>f4'");
    bad("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", "bad value");
    bad("{'descr': '|u1', 'shape': (2, 3), }", "expected the keys");
    bad("{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (2,)}", "repeated");
    bad("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", "unexpected");
    bad("{'descr': '|u1', 'fortran_order': False, 'shape': (2, -3), }", "bad value for 'shape'");
    bad("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3 }", "bad value for 'shape'");
    bad("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999, 3), }",
        "bad value for 'shape'");
    bad("{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000000, 1000000), }",
        "too large");
    bad("{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", "bad value");
    bad("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), } junk", "after the dict");
    bad("['descr', '|u1']", "expected a '{' dict");
    bad("{'descr': 'it\\'s', 'fortran_order': False, 'shape': (2,)}", "bad value for 'descr'");
    cuvae_npy_header h;
    cuvae_status st;
    uint8_t buf[512];
    size_t n = cuvae_test_npy_header(
        buf, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", 0);
    for (size_t cut = 0; cut < n; cut += 7) {
        CHECK(cuvae_npy_parse_header(buf, cut, "x.npy", &h, &st) == -1);
        CHECK_MSG(st.msg, "truncated");
    }
    buf[0] = 'N';
    CHECK(cuvae_npy_parse_header(buf, n, "x.npy", &h, &st) == -1);
    CHECK_MSG(st.msg, "wrong magic");
    buf[0] = 0x93;
    buf[6] = 4;
    CHECK(cuvae_npy_parse_header(buf, n, "x.npy", &h, &st) == -1);
    CHECK_MSG(st.msg, "version 4.0");
    buf[6] = 2; /* v2: the length is 4 bytes, here huge */
    buf[10] = 0xff;
    CHECK(cuvae_npy_parse_header(buf, n, "x.npy", &h, &st) == -1);
    CHECK_MSG(st.msg, "expected at most");
    buf[6] = 1;
    buf[20] = 0x80; /* not ASCII */
    CHECK(cuvae_npy_parse_header(buf, n, "x.npy", &h, &st) == -1);
    CHECK_MSG(st.msg, "not printable ASCII");
}

/* A zip of stored members names[i] of sizes[i] bytes each, member i filled with 'a' + i (method
 * and flags as given). */
static size_t zip_bytes(uint8_t *out, int n, const char *const *names, const uint32_t *sizes,
                        unsigned method, unsigned flags)
{
    static uint8_t bodies[CUVAE_TEST_ZIP_MAX][1024];
    const uint8_t *b[CUVAE_TEST_ZIP_MAX];
    size_t lens[CUVAE_TEST_ZIP_MAX];
    for (int i = 0; i < n; i++) {
        if (sizes[i] > sizeof bodies[i]) abort();
        memset(bodies[i], 'a' + i, sizes[i]);
        b[i] = bodies[i];
        lens[i] = sizes[i];
    }
    return cuvae_test_zip(out, n, names, b, lens, method, flags);
}

static void test_npz_directory(void)
{
    uint8_t z[4096];
    const char *names[] = {"x_train.npy", "y_train.npy", "other.npy"};
    const uint32_t sizes[] = {100, 20, 5};
    size_t n = zip_bytes(z, 3, names, sizes, 0, 0);
    uint64_t off, cs, us;
    int method;
    uint32_t crc;
    char member[300];
    cuvae_status st;
    CHECK(cuvae_npz_find(z, n, "a.npz", NULL, "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == 0);
    CHECK(!strcmp(member, "x_train.npy") && us == 100 && z[off] == 'a' && method == 0);
    CHECK(cuvae_npz_find(z, n, "a.npz", "other", "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == 0);
    CHECK(us == 5 && z[off] == 'c');
    CHECK(cuvae_npz_find(z, n, "a.npz", "nope", "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "no member 'nope.npy'");
    CHECK_MSG(st.msg, "x_train.npy, y_train.npy, other.npy");
    /* The default name absent: the only array, else an error. */
    size_t n1 = zip_bytes(z, 1, names + 2, sizes + 2, 0, 0);
    CHECK(cuvae_npz_find(z, n1, "a.npz", NULL, "x_test", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == 0);
    CHECK(!strcmp(member, "other.npy"));
    n = zip_bytes(z, 3, names, sizes, 0, 0);
    CHECK(cuvae_npz_find(z, n, "a.npz", NULL, "x_test", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "the default");
    /* Hostile archives. */
    n = zip_bytes(z, 1, names, sizes, 12, 0);
    CHECK(cuvae_npz_find(z, n, "a.npz", NULL, "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "compression method 12");
    n = zip_bytes(z, 1, names, sizes, 0, 1);
    CHECK(cuvae_npz_find(z, n, "a.npz", NULL, "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "encrypted");
    n = zip_bytes(z, 1, names, sizes, 0, 0);
    cuvae_test_put32(z + n - 22 + 16, 4000); /* the directory points past the end */
    CHECK(cuvae_npz_find(z, n, "a.npz", NULL, "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "outside the file");
    n = zip_bytes(z, 1, names, sizes, 0, 0);
    cuvae_test_put32(z + 30 + 11 + 100 + 20, 100000); /* the member's size past the end */
    cuvae_test_put32(z + 30 + 11 + 100 + 24, 100000);
    CHECK(cuvae_npz_find(z, n, "a.npz", NULL, "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "truncated");
    memset(z, 0, 200);
    CHECK(cuvae_npz_find(z, 200, "a.npz", NULL, "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "a.npz: not a zip archive");
}

/* A .npy of `shape` (a tuple's text) and dtype holding data[0..len) at path. */
static void write_npy(const char *path, const char *descr, const char *shape, const void *data,
                      size_t len)
{
    uint8_t buf[4096];
    char dict[256];
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
             shape);
    size_t n = cuvae_test_npy_header(buf, dict, 0);
    memcpy(buf + n, data, len);
    CHECK(cuvae_test_write_file(path, buf, n + len) == 0);
}

/* Peeks and loads path (an .npz: member `key`), checking the two agree on C, H, W; 0 on success,
 * else -1 with the message in st. */
static int load(const char *path, const char *key, cuvae_dataset *ds, cuvae_status *st)
{
    int64_t kept = 0, n_file = 0;
    int c = 0, r = 0, w = 0;
    uint64_t staging = 0;
    memset(ds, 0, sizeof *ds);
    if (cuvae_dataset_peek_any(path, key, "x_train", 0, &kept, &n_file, &c, &r, &w, &staging, st))
        return -1;
    CHECK(cuvae_dataset_load_any(ds, path, key, "x_train", NULL, NULL, 0, st) == 0);
    CHECK(ds->n == kept && ds->channels == c && ds->rows == r && ds->cols == w);
    CHECK(ds->d == c * r * w && staging == 0);
    return 0;
}

static void test_image_shapes(void)
{
    char dir[512], path[700], npz[700];
    CHECK(cuvae_test_tmpdir(dir, sizeof dir, "npy") == 0);
    snprintf(path, sizeof path, "%s/x.npy", dir);
    snprintf(npz, sizeof npz, "%s/x.npz", dir);
    /* Two 2 x 3 RGB images; interleaved value (e, p, c) = 100 e + 10 c + p. */
    uint8_t hwc[36], chw[36];
    float f[36];
    for (int e = 0; e < 2; e++)
        for (int p = 0; p < 6; p++)
            for (int c = 0; c < 3; c++) {
                uint8_t v = (uint8_t)(100 * e + 10 * c + p);
                hwc[e * 18 + p * 3 + c] = chw[e * 18 + c * 6 + p] = v;
                f[e * 18 + p * 3 + c] = (float)v / 255.0f;
            }
    cuvae_dataset ds;
    cuvae_status st;

    write_npy(path, "|u1", "(2, 2, 3, 3)", hwc, sizeof hwc); /* N x H x W x 3: reordered */
    CHECK(load(path, NULL, &ds, &st) == 0);
    CHECK(ds.channels == 3 && ds.rows == 2 && ds.cols == 3 && ds.d == 18 && !ds.block);
    CHECK(ds.pixels && memcmp(ds.pixels, chw, sizeof chw) == 0);
    cuvae_dataset_free(&ds);
    write_npy(path, "|u1", "(2, 3, 3, 2)", chw, sizeof chw); /* N x 3 x H x W: stays mapped */
    CHECK(load(path, NULL, &ds, &st) == 0);
    CHECK(ds.channels == 3 && ds.rows == 3 && ds.cols == 2 && ds.block_mapped);
    CHECK(ds.pixels && memcmp(ds.pixels, chw, sizeof chw) == 0);
    cuvae_dataset_free(&ds);
    write_npy(path, "<f4", "(2, 2, 3, 3)", f, sizeof f); /* float32 interleaved */
    CHECK(load(path, NULL, &ds, &st) == 0);
    CHECK(ds.channels == 3 && ds.pixels && memcmp(ds.pixels, chw, sizeof chw) == 0);
    cuvae_dataset_free(&ds);
    /* Both axes could be C: channels-last, as NumPy's image arrays and the IDX files. */
    write_npy(path, "|u1", "(1, 3, 4, 3)", hwc, 36);
    CHECK(load(path, NULL, &ds, &st) == 0);
    CHECK(ds.channels == 3 && ds.rows == 3 && ds.cols == 4);
    cuvae_dataset_free(&ds);
    /* Greyscale stays greyscale, N x 1 x H x 3 and N x 3 x H x 1 included. */
    write_npy(path, "|u1", "(2, 1, 6, 3)", hwc, 36);
    CHECK(load(path, NULL, &ds, &st) == 0);
    CHECK(ds.channels == 1 && ds.rows == 6 && ds.cols == 3 && ds.d == 18);
    cuvae_dataset_free(&ds);
    write_npy(path, "|u1", "(2, 3, 6, 1)", hwc, 36);
    CHECK(load(path, NULL, &ds, &st) == 0);
    CHECK(ds.channels == 1 && ds.rows == 3 && ds.cols == 6);
    cuvae_dataset_free(&ds);
    /* Other channel counts: one line with the file and the shape. */
    write_npy(path, "|u1", "(3, 2, 3, 2)", hwc, 36);
    CHECK(load(path, NULL, &ds, &st) == -1);
    CHECK_MSG(st.msg, "x.npy: shape (3, 2, 3, 2): expected N x H x W x C or N x C x H x W");
    CHECK(strchr(st.msg, '\n') == NULL);
    write_npy(path, "|u1", "(1, 4, 3, 3)", hwc, 36); /* C = 4 in front, 3 last: channels-last */
    CHECK(load(path, NULL, &ds, &st) == 0 && ds.channels == 3 && ds.rows == 4);
    cuvae_dataset_free(&ds);
    write_npy(path, "|u1", "(1, 4, 9, 1, 1)", hwc, 36);
    CHECK(load(path, NULL, &ds, &st) == -1);
    CHECK_MSG(st.msg, "5 dimensions");

    /* An .npz member: a stored N x H x W x 3, then an N x 2 x H x 2 named with its member. */
    static uint8_t z[8192];
    const char *names[] = {"x_train.npy"};
    uint8_t npy[512];
    size_t hl = cuvae_test_npy_header(
        npy, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 3, 3), }", 0);
    memcpy(npy + hl, hwc, sizeof hwc);
    uint32_t sizes[] = {(uint32_t)(hl + sizeof hwc)};
    size_t zn = zip_bytes(z, 1, names, sizes, 0, 0);
    memcpy(z + 30 + strlen(names[0]), npy, sizes[0]);
    CHECK(cuvae_test_write_file(npz, z, zn) == 0);
    CHECK(load(npz, NULL, &ds, &st) == 0);
    CHECK(ds.channels == 3 && ds.pixels && memcmp(ds.pixels, chw, sizeof chw) == 0);
    cuvae_dataset_free(&ds);
    hl = cuvae_test_npy_header(
        npy, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 3, 2), }", 0);
    CHECK(hl + 36 == sizes[0]); /* the same member size: the zip stays valid */
    memcpy(z + 30 + strlen(names[0]), npy, hl);
    CHECK(cuvae_test_write_file(npz, z, zn) == 0);
    CHECK(load(npz, NULL, &ds, &st) == -1);
    CHECK_MSG(st.msg, "x.npz: member 'x_train.npy': shape (3, 2, 3, 2): expected");
    cuvae_test_remove_dir(dir);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = malloc(1 << 16);
    *len = buf ? fread(buf, 1, 1 << 16, f) : 0;
    fclose(f);
    return buf;
}

/* cuvae_npz_write: the archive's members read back through the .npz reader and header parser. */
static void test_npz_write(void)
{
    char dir[512], path[700];
    CHECK(cuvae_test_tmpdir(dir, sizeof dir, "npzw") == 0);
    snprintf(path, sizeof path, "%s/out.npz", dir);
    float mu[6] = {0.5f, -1.0f, 2.0f, 3.25f, -0.0f, 1e-30f};
    uint8_t labels[3] = {7, 0, 255};
    cuvae_npz_member m[2] = {
        {.name = "mu", .descr = "<f4", .itemsize = 4, .ndim = 2, .shape = {3, 2}, .data = mu},
        {.name = "labels", .descr = "|u1", .itemsize = 1, .ndim = 1, .shape = {3}, .data = labels},
    };
    cuvae_status st = {{0}};
    CHECK(cuvae_npz_write(path, m, 2, &st) == 0);
    size_t len = 0;
    uint8_t *file = read_whole(path, &len);
    CHECK(file != NULL);
    for (int k = 0; file && k < 2; k++) {
        uint64_t off = 0, csize = 0, usize = 0;
        int method = -1;
        uint32_t crc = 0;
        char member[64];
        CHECK(cuvae_npz_find(file, len, path, m[k].name, NULL, &off, &csize, &usize, &method, &crc,
                             member, sizeof member, &st) == 0);
        CHECK(method == 0 && csize == usize);
        cuvae_npy_header h;
        CHECK(cuvae_npy_parse_header(file + off, (size_t)usize, member, &h, &st) == 0);
        CHECK(h.ndim == m[k].ndim && h.shape[0] == 3 && (h.ndim == 1 || h.shape[1] == 2));
        CHECK(h.data_offset % 64 == 0 && h.data_offset + h.data_bytes == usize);
        CHECK(memcmp(file + off + h.data_offset, m[k].data, (size_t)h.data_bytes) == 0);
        CHECK(crc == (uint32_t)crc32(0L, file + off, (uInt)usize));
    }
    free(file);
    /* A directory that does not exist: the error names the file. */
    snprintf(path, sizeof path, "%s/no/such.npz", dir);
    CHECK(cuvae_npz_write(path, m, 2, &st) == -1);
    CHECK_MSG(st.msg, "no/such.npz");
    cuvae_npz_member bad = {.name = "x", .descr = "<f4", .itemsize = 4, .ndim = 3, .data = mu};
    CHECK(cuvae_npz_write(path, &bad, 1, &st) == -1);
    CHECK_MSG(st.msg, "cannot write array 'x'");
    cuvae_test_remove_dir(dir);
}

int main(void)
{
    test_good_headers();
    test_hostile_headers();
    test_npz_directory();
    test_image_shapes();
    test_npz_write();
    return cuvae_test_finish("npy");
}
