/* The .npy header parser and the .npz directory reader of host/data/npy.c on hand-made bytes:
 * good headers (v1 and v2, the dtypes and shapes NumPy writes) and hostile ones (bad magic,
 * truncation, Fortran order, unknown dtypes, malformed dicts, absurd sizes), and zip directories
 * (stored and deflated members, defaults, missing members, not a zip, encrypted, truncated). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"
#include "tests_util.h"

/* A .npy header (version 1 unless v2) with `dict` padded to 64 bytes. Returns its length. */
static size_t npy_bytes(uint8_t *out, const char *dict, int v2)
{
    size_t pre = v2 ? 12 : 10, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64, hlen = total - pre;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = v2 ? 2 : 1;
    out[7] = 0;
    out[8] = (uint8_t)hlen;
    out[9] = (uint8_t)(hlen >> 8);
    if (v2) out[10] = out[11] = 0;
    memcpy(out + pre, dict, dl);
    memset(out + pre + dl, ' ', hlen - dl - 1);
    out[total - 1] = '\n';
    return total;
}

static int parse(const char *dict, cuvae_npy_header *h, cuvae_status *st)
{
    uint8_t buf[512];
    size_t n = npy_bytes(buf, dict, 0);
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
    size_t n = npy_bytes(buf, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", 1);
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
    size_t n = npy_bytes(buf, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", 0);
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

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

/* A zip of members names[i] holding sizes[i] stored bytes each (method, flags as given). */
static size_t zip_bytes(uint8_t *out, int n, const char *const *names, const uint32_t *sizes,
                        unsigned method, unsigned flags)
{
    size_t at = 0, offs[8];
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        offs[i] = at;
        memset(out + at, 0, 30);
        put32(out + at, 0x04034b50u);
        put16(out + at + 26, (unsigned)nl);
        memcpy(out + at + 30, names[i], nl);
        at += 30 + nl;
        memset(out + at, 'a' + i, sizes[i]);
        at += sizes[i];
    }
    size_t cd = at;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        memset(out + at, 0, 46);
        put32(out + at, 0x02014b50u);
        put16(out + at + 8, flags);
        put16(out + at + 10, method);
        put32(out + at + 20, sizes[i]);
        put32(out + at + 24, sizes[i]);
        put16(out + at + 28, (unsigned)nl);
        put32(out + at + 42, (uint32_t)offs[i]);
        memcpy(out + at + 46, names[i], nl);
        at += 46 + nl;
    }
    memset(out + at, 0, 22);
    put32(out + at, 0x06054b50u);
    put16(out + at + 8, (unsigned)n);
    put16(out + at + 10, (unsigned)n);
    put32(out + at + 12, (uint32_t)(at - cd));
    put32(out + at + 16, (uint32_t)cd);
    return at + 22;
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
    put32(z + n - 22 + 16, 4000); /* the directory points past the end */
    CHECK(cuvae_npz_find(z, n, "a.npz", NULL, "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "outside the file");
    n = zip_bytes(z, 1, names, sizes, 0, 0);
    put32(z + 30 + 11 + 100 + 20, 100000); /* the member's size past the end */
    put32(z + 30 + 11 + 100 + 24, 100000);
    CHECK(cuvae_npz_find(z, n, "a.npz", NULL, "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "truncated");
    memset(z, 0, 200);
    CHECK(cuvae_npz_find(z, 200, "a.npz", NULL, "x_train", &off, &cs, &us, &method, &crc, member,
                         sizeof member, &st) == -1);
    CHECK_MSG(st.msg, "a.npz: not a zip archive");
}

int main(void)
{
    test_good_headers();
    test_hostile_headers();
    test_npz_directory();
    return cuvae_test_finish("npy");
}
