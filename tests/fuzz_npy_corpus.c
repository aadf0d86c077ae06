/* Seed corpus for fuzz_npy: .npy headers NumPy writes (uint8 images, float32 N x H x W x 1, int64
 * labels, a version 2 header) and small .npz archives (one and several stored members, a
 * deflated one), written into the directory named by $CUVAE_FUZZ_CORPUS or the first argument. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static size_t npy(uint8_t *out, const char *dict, int v2, size_t payload)
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
    for (size_t i = 0; i < payload; i++) out[total + i] = (uint8_t)(i * 37);
    return total + payload;
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

/* A zip of the given members: stored, or deflated when `deflated`. */
static size_t zip(uint8_t *out, int n, const char *const *names, uint8_t *const *bodies,
                  const size_t *lens, int deflated)
{
    size_t at = 0, offs[4], cl[4];
    uint32_t crcs[4];
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        offs[i] = at;
        crcs[i] = (uint32_t)crc32(0, bodies[i], (uInt)lens[i]);
        memset(out + at, 0, 30);
        put32(out + at, 0x04034b50u);
        put16(out + at + 8, deflated ? 8 : 0);
        put16(out + at + 26, (unsigned)nl);
        memcpy(out + at + 30, names[i], nl);
        at += 30 + nl;
        if (deflated) {
            z_stream zs;
            memset(&zs, 0, sizeof zs);
            deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
            zs.next_in = bodies[i];
            zs.avail_in = (uInt)lens[i];
            zs.next_out = out + at;
            zs.avail_out = 4096;
            deflate(&zs, Z_FINISH);
            cl[i] = zs.total_out;
            deflateEnd(&zs);
        } else {
            memcpy(out + at, bodies[i], lens[i]);
            cl[i] = lens[i];
        }
        put32(out + offs[i] + 14, crcs[i]);
        put32(out + offs[i] + 18, (uint32_t)cl[i]);
        put32(out + offs[i] + 22, (uint32_t)lens[i]);
        at += cl[i];
    }
    size_t cd = at;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        memset(out + at, 0, 46);
        put32(out + at, 0x02014b50u);
        put16(out + at + 10, deflated ? 8 : 0);
        put32(out + at + 16, crcs[i]);
        put32(out + at + 20, (uint32_t)cl[i]);
        put32(out + at + 24, (uint32_t)lens[i]);
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

static int save(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cuvae_fuzz_npy_corpus: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = getenv("CUVAE_FUZZ_CORPUS");
    if (argc > 1) dir = argv[1];
    if (!dir) {
        fprintf(stderr, "usage: CUVAE_FUZZ_CORPUS=DIR %s (or %s DIR)\n", argv[0], argv[0]);
        return 2;
    }
    static uint8_t a[1024], b[1024], c[1024], z[8192];
    size_t na = npy(a, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4), }", 0, 24);
    size_t nb = npy(b, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2, 1), }", 0, 32);
    size_t nc = npy(c, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", 0, 16);
    int rc =
        save(dir, "u8.npy", a, na) || save(dir, "f32.npy", b, nb) || save(dir, "labels.npy", c, nc);
    size_t nv = npy(z, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 5), }", 1, 15);
    rc = rc || save(dir, "v2.npy", z, nv);
    const char *names[] = {"x_train.npy", "y_train.npy", "a.npy"};
    uint8_t *bodies[] = {a, c, b};
    size_t lens[] = {na, nc, nb};
    size_t nz = zip(z, 1, names, bodies, lens, 0);
    rc = rc || save(dir, "one.npz", z, nz);
    nz = zip(z, 3, names, bodies, lens, 0);
    rc = rc || save(dir, "three.npz", z, nz);
    nz = zip(z, 2, names, bodies, lens, 1);
    rc = rc || save(dir, "deflated.npz", z, nz);
    return rc ? 1 : 0;
}
