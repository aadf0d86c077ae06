/* libFuzzer target: the .npy header parser and the .npz directory reader (host/data/npy.c) on
 * arbitrary bytes (built with -DCUVAE_FUZZ=ON and CC=clang). Besides what ASan and UBSan catch,
 * it checks their contract: a rejection gives one line that starts with the input's name; an
 * acceptance describes bytes inside the input (a member's data, a header's data offset) and sizes
 * that agree with the shape. A stored member found in an archive goes through the header parser
 * too. Seeds come from cuvae_fuzz_npy_corpus. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const cuvae_status *st, const char *name)
{
    if (strncmp(st->msg, name, strlen(name)) != 0 || strchr(st->msg, '\n')) abort();
}

static void check_header(const uint8_t *p, size_t n, const char *name)
{
    cuvae_npy_header h;
    cuvae_status st;
    if (cuvae_npy_parse_header(p, n, name, &h, &st)) {
        check_msg(&st, name);
        return;
    }
    if (h.data_offset > n || h.ndim < 0 || h.ndim > CUVAE_NPY_MAX_DIMS || h.itemsize < 1) abort();
    uint64_t count = 1;
    for (int i = 0; i < h.ndim; i++) {
        if (h.shape[i] < 0) abort();
        count *= (uint64_t)h.shape[i];
    }
    if (count * (uint64_t)h.itemsize != h.data_bytes) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_header(data, size, "fuzz.npy");
    static const char *const keys[] = {NULL, "x_train", "a"};
    for (int k = 0; k < 3; k++) {
        uint64_t off, csize, usize;
        int method;
        uint32_t crc;
        char member[300];
        cuvae_status st;
        if (cuvae_npz_find(data, size, "fuzz.npz", keys[k], "x_train", &off, &csize, &usize,
                           &method, &crc, member, sizeof member, &st)) {
            check_msg(&st, "fuzz.npz");
            continue;
        }
        if (off > size || csize > size - off || (method != 0 && method != 8)) abort();
        if (method == 0) {
            if (csize != usize) abort();
            check_header(data + off, (size_t)csize, "fuzz.npz: member");
        }
    }
    return 0;
}
