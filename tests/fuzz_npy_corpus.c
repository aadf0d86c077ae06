/* Seed corpus for fuzz_npy: .npy headers NumPy writes (uint8 images, float32 N x H x W x 1, int64
 * labels, a version 2 header) and small .npz archives (one and several stored members, a
 * deflated one), written into the directory named by $CUVAE_FUZZ_CORPUS or the first argument. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests_util.h"

/* A .npy of header `dict` and `payload` bytes of a fixed pattern. */
static size_t npy(uint8_t *out, const char *dict, int v2, size_t payload)
{
    size_t total = cuvae_test_npy_header(out, dict, v2);
    for (size_t i = 0; i < payload; i++) out[total + i] = (uint8_t)(i * 37);
    return total + payload;
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
    const uint8_t *bodies[] = {a, c, b};
    size_t lens[] = {na, nc, nb};
    size_t nz = cuvae_test_zip(z, 1, names, bodies, lens, 0, 0);
    rc = rc || save(dir, "one.npz", z, nz);
    nz = cuvae_test_zip(z, 3, names, bodies, lens, 0, 0);
    rc = rc || save(dir, "three.npz", z, nz);
    nz = cuvae_test_zip(z, 2, names, bodies, lens, 8, 0);
    rc = rc || save(dir, "deflated.npz", z, nz);
    return rc ? 1 : 0;
}
