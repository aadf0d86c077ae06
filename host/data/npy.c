/* NumPy .npy and .npz reading (see npy.h). The header parser and the zip directory reader work on
 * bytes in memory and trust nothing: every size is checked against what the file holds before it
 * is used, and every allocation is bounded by the header and the caps below. A .npy is mapped
 * (MAP_PRIVATE: the in-place binarization of run_data.c writes to private pages), so uint8 data
 * are never read whole; the backend's upload then copies them. A deflated .npz member is inflated
 * into a buffer of exactly its declared size: a stream that would write more is refused as a
 * decompression bomb, and the declared size itself is counted by the memory estimate. */
#include "npy.h"

#include <stdio.h>
#include <string.h>

/* As the IDX reader: at most 4 GiB of pixels (the bytes the data path holds); float32 files may
 * be four times that on disk. */
#define NPY_MAX_PIXELS ((uint64_t)4 << 30)
#define NPY_MAX_BYTES (4 * NPY_MAX_PIXELS + CUVAE_NPY_MAX_HEADER + 16)

int cuvae_npy_sniff(const uint8_t *p, size_t n)
{
    if (n >= 6 && memcmp(p, "\x93NUMPY", 6) == 0) return 1;
    if (n >= 4 && (memcmp(p, "PK\3\4", 4) == 0 || memcmp(p, "PK\5\6", 4) == 0)) return 2;
    return 0;
}

/* ---- the header's dict ------------------------------------------------------------------ */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int eat(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static int parse_string(cursor *c, char *out, size_t out_len)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || *c->p < 0x20 || n + 1 >= out_len) return -1;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return -1;
    c->p++;
    out[n] = '\0';
    return 0;
}

static int parse_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return 0;
    c->p += n;
    return 1;
}

/* (d0, d1, ...): non-negative integers below 2^40 each. */
static int parse_shape(cursor *c, cuvae_npy_header *h)
{
    if (!eat(c, '(')) return -1;
    h->ndim = 0;
    for (;;) {
        if (eat(c, ')')) return 0;
        skip_ws(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return -1;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            v = v * 10 + (*c->p++ - '0');
            if (v >= ((int64_t)1 << 40)) return -1;
        }
        if (h->ndim == CUVAE_NPY_MAX_DIMS) return -1;
        h->shape[h->ndim++] = v;
        if (eat(c, ')')) return 0;
        if (!eat(c, ',')) return -1;
    }
}

static int set_dtype(cuvae_npy_header *h, const char *name, cuvae_status *st)
{
    static const struct {
        const char *descr;
        int itemsize, is_float, is_signed;
    } known[] = {{"|u1", 1, 0, 0}, {"<u1", 1, 0, 0}, {"u1", 1, 0, 0},  {"|i1", 1, 0, 1},
                 {"<i1", 1, 0, 1}, {"i1", 1, 0, 1},  {"<u2", 2, 0, 0}, {"<i2", 2, 0, 1},
                 {"<u4", 4, 0, 0}, {"<i4", 4, 0, 1}, {"<u8", 8, 0, 0}, {"<i8", 8, 0, 1},
                 {"<f4", 4, 1, 1}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(h->descr, known[i].descr)) {
            h->itemsize = known[i].itemsize;
            h->is_float = known[i].is_float;
            h->is_signed = known[i].is_signed;
            return 0;
        }
    return cuvae_fail(st,
                      "%s: unsupported dtype '%s': expected uint8 ('|u1') or float32 ('<f4') "
                      "data, or little-endian integers for labels",
                      name, h->descr);
}

int cuvae_npy_parse_header(const uint8_t *p, size_t len, const char *name, cuvae_npy_header *h,
                           cuvae_status *st)
{
    memset(h, 0, sizeof *h);
    if (len < 10 || memcmp(p, "\x93NUMPY", 6) != 0)
        return cuvae_fail(st, "%s: %s: expected a .npy file (magic \\x93NUMPY)", name,
                          len < 10 ? "truncated header" : "wrong magic");
    unsigned major = p[6], minor = p[7];
    size_t pre = major == 1 ? 10 : 12;
    if (major < 1 || major > 3 || minor != 0)
        return cuvae_fail(st, "%s: .npy format version %u.%u: expected 1.0, 2.0 or 3.0", name,
                          major, minor);
    if (len < pre) return cuvae_fail(st, "%s: truncated header", name);
    uint64_t hlen = (uint64_t)p[8] | (uint64_t)p[9] << 8;
    if (major > 1) hlen |= (uint64_t)p[10] << 16 | (uint64_t)p[11] << 24;
    if (hlen > CUVAE_NPY_MAX_HEADER)
        return cuvae_fail(st, "%s: header of %llu bytes: expected at most %u", name,
                          (unsigned long long)hlen, CUVAE_NPY_MAX_HEADER);
    if (len - pre < hlen)
        return cuvae_fail(st, "%s: truncated header: expected %llu bytes, the file holds %zu", name,
                          (unsigned long long)(pre + hlen), len);
    cursor c = {(const char *)p + pre, (const char *)p + pre + hlen};
    for (const char *q = c.p; q < c.end; q++)
        if ((unsigned char)*q >= 0x80 || (*q < 0x20 && *q != '\n' && *q != '\t' && *q != '\r'))
            return cuvae_fail(st, "%s: header is not printable ASCII", name);
    int seen_descr = 0, seen_order = 0, seen_shape = 0, fortran = 0;
    if (!eat(&c, '{')) return cuvae_fail(st, "%s: malformed header: expected a '{' dict", name);
    while (!eat(&c, '}')) {
        char key[32];
        if (parse_string(&c, key, sizeof key) || !eat(&c, ':'))
            return cuvae_fail(st, "%s: malformed header: expected 'key': value", name);
        int bad = 0;
        if (!strcmp(key, "descr") && !seen_descr++) {
            bad = parse_string(&c, h->descr, sizeof h->descr);
        } else if (!strcmp(key, "fortran_order") && !seen_order++) {
            if (parse_word(&c, "True"))
                fortran = 1;
            else if (!parse_word(&c, "False"))
                bad = 1;
        } else if (!strcmp(key, "shape") && !seen_shape++) {
            bad = parse_shape(&c, h);
        } else {
            return cuvae_fail(st, "%s: malformed header: unexpected or repeated key '%s'", name,
                              key);
        }
        if (bad) return cuvae_fail(st, "%s: malformed header: bad value for '%s'", name, key);
        if (!eat(&c, ',')) {
            if (!eat(&c, '}'))
                return cuvae_fail(st, "%s: malformed header: expected ',' or '}'", name);
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.end) return cuvae_fail(st, "%s: malformed header: text after the dict", name);
    if (!seen_descr || !seen_order || !seen_shape)
        return cuvae_fail(st, "%s: malformed header: expected the keys descr, fortran_order, shape",
                          name);
    if (fortran)
        return cuvae_fail(st,
                          "%s: fortran_order is True: expected a C-order array "
                          "(np.ascontiguousarray before np.save)",
                          name);
    if (set_dtype(h, name, st)) return -1;
    uint64_t count = 1;
    for (int i = 0; i < h->ndim; i++) {
        count *= (uint64_t)h->shape[i]; /* each < 2^40; stop before the product can overflow */
        if (count > NPY_MAX_PIXELS)
            return cuvae_fail(st,
                              "%s: too large: more than %llu elements, the most this reader "
                              "accepts",
                              name, (unsigned long long)NPY_MAX_PIXELS);
    }
    h->data_offset = pre + hlen;
    h->data_bytes = count * (uint64_t)h->itemsize;
    return 0;
}

/* ---- the .npz directory ----------------------------------------------------------------- */

static uint32_t le16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t le32(const uint8_t *p)
{
    return le16(p) | le16(p + 2) << 16;
}
static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* The zip64 extra field (tag 1) holds, in order, those of usize, csize, offset that are
 * 0xffffffff in the fixed fields. */
static int zip64_extra(const uint8_t *x, size_t n, uint64_t *usize, uint64_t *csize, uint64_t *off)
{
    while (n >= 4) {
        uint32_t tag = le16(x), sz = le16(x + 2);
        if (sz > n - 4) return -1;
        if (tag == 1) {
            uint64_t *f[3] = {usize, csize, off};
            size_t at = 4;
            for (int i = 0; i < 3; i++) {
                if (*f[i] != 0xffffffffu) continue;
                if (at + 8 > 4 + (size_t)sz) return -1;
                *f[i] = le64(x + at);
                at += 8;
            }
            return 0;
        }
        x += 4 + sz;
        n -= 4 + sz;
    }
    return 0;
}

int cuvae_npz_find(const uint8_t *p, size_t len, const char *path, const char *key,
                   const char *fallback, uint64_t *data_off, uint64_t *csize, uint64_t *usize,
                   int *method, uint32_t *crc, char *member, size_t member_len, cuvae_status *st)
{
    size_t eocd = SIZE_MAX;
    for (size_t back = 22; back <= len && back <= 22 + 65535; back++)
        if (memcmp(p + len - back, "PK\5\6", 4) == 0) {
            eocd = len - back;
            break;
        }
    if (eocd == SIZE_MAX)
        return cuvae_fail(st,
                          "%s: not a zip archive (no end-of-central-directory record): "
                          "expected an .npz",
                          path);
    const uint8_t *e = p + eocd;
    uint32_t entries = le16(e + 10), cd_size = le32(e + 12), cd_off = le32(e + 16);
    if (le16(e + 4) != 0 || le16(e + 6) != 0 || entries != le16(e + 8))
        return cuvae_fail(st, "%s: a multi-part zip archive: expected a single .npz file", path);
    if (entries == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu)
        return cuvae_fail(st, "%s: a zip64 directory (over 65535 members or 4 GiB): not supported",
                          path);
    if ((uint64_t)cd_off + cd_size > eocd)
        return cuvae_fail(st, "%s: truncated or corrupt zip: the directory lies outside the file",
                          path);
    char want[300], only[300] = "", names[200] = "";
    const char *k = key && *key ? key : fallback;
    snprintf(want, sizeof want, "%s.npy", k ? k : "");
    int n_npy = 0, found = 0;
    uint64_t fo = 0, fc = 0, fu = 0;
    uint32_t fm = 0, fcrc = 0, fflags = 0;
    const uint8_t *cd = p + cd_off, *cd_end = p + cd_off + cd_size;
    for (uint32_t i = 0; i < entries; i++) {
        if (cd_end - cd < 46 || le32(cd) != 0x02014b50u)
            return cuvae_fail(st, "%s: corrupt zip directory at entry %u", path, i);
        uint32_t nlen = le16(cd + 28), xlen = le16(cd + 30), clen = le16(cd + 32);
        if ((size_t)(cd_end - cd) < 46 + (size_t)nlen + xlen + clen)
            return cuvae_fail(st, "%s: corrupt zip directory at entry %u", path, i);
        char name[300];
        if (nlen >= sizeof name) nlen = sizeof name - 1; /* longer names cannot match */
        memcpy(name, cd + 46, nlen);
        name[nlen] = '\0';
        if (strlen(name) != nlen) name[0] = '\0'; /* an embedded NUL matches nothing */
        for (char *q = name; *q; q++)             /* names go into one-line messages */
            if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f) *q = '?';
        int is_npy = nlen > 4 && !strcmp(name + nlen - 4, ".npy");
        n_npy += is_npy;
        if (is_npy && n_npy == 1) snprintf(only, sizeof only, "%s", name);
        size_t used = strlen(names);
        if (used + nlen + 3 < sizeof names)
            snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", name);
        int match =
            (k && (!strcmp(name, want) || !strcmp(name, k))) || (!k && is_npy && n_npy == 1);
        if (match && !found) {
            found = 1;
            fflags = le16(cd + 8);
            fm = le16(cd + 10);
            fcrc = le32(cd + 16);
            fc = le32(cd + 20);
            fu = le32(cd + 24);
            fo = le32(cd + 42);
            if (zip64_extra(cd + 46 + le16(cd + 28), xlen, &fu, &fc, &fo))
                return cuvae_fail(st, "%s: corrupt zip64 field in member '%s'", path, name);
            snprintf(member, member_len, "%s", name);
        }
        cd += 46 + (size_t)le16(cd + 28) + xlen + clen;
    }
    /* The default name is absent but the archive holds one array: that one. */
    if (!found && !(key && *key) && n_npy == 1)
        return cuvae_npz_find(p, len, path, NULL, NULL, data_off, csize, usize, method, crc, member,
                              member_len, st);
    if (!found)
        return cuvae_fail(st, "%s: no member '%s' in the .npz%s (it holds: %s)", path, want,
                          k == fallback ? " (the default; set the data key)" : "",
                          names[0] ? names : "nothing");
    if (fflags & 1) return cuvae_fail(st, "%s: member '%s' is encrypted", path, member);
    if (fm != 0 && fm != 8)
        return cuvae_fail(st,
                          "%s: member '%s': compression method %u: expected stored (0) or "
                          "deflated (8)",
                          path, member, fm);
    if (fo > len || len - fo < 30 || le32(p + fo) != 0x04034b50u)
        return cuvae_fail(st, "%s: member '%s': corrupt or truncated zip (no local header)", path,
                          member);
    uint64_t start = fo + 30 + le16(p + fo + 26) + le16(p + fo + 28);
    if (start > len || fc > len - start)
        return cuvae_fail(st, "%s: member '%s': truncated: %llu compressed bytes announced", path,
                          member, (unsigned long long)fc);
    if (fm == 0 && fc != fu)
        return cuvae_fail(st, "%s: member '%s': stored with %llu bytes but %llu announced", path,
                          member, (unsigned long long)fc, (unsigned long long)fu);
    if (fu > NPY_MAX_BYTES)
        return cuvae_fail(st,
                          "%s: member '%s': %llu bytes uncompressed, more than this reader "
                          "accepts",
                          path, member, (unsigned long long)fu);
    *data_off = start;
    *csize = fc;
    *usize = fu;
    *method = (int)fm;
    *crc = fcrc;
    return 0;
}
