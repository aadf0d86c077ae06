/* libFuzzer target: the PNG/JPEG decoding entry of the image-folder reader
 * (host/data/image_decode.c) on arbitrary bytes (built with -DCUVAE_FUZZ=ON and CC=clang). Besides
 * what ASan and UBSan catch, it checks the contract: a rejection gives one line that starts with
 * the input's name; an accepted header is within the size bounds, and decoding it (to grey and to
 * RGB) either fails the same way or fills exactly the pixels the header announces. Seeds come from
 * cuvae_fuzz_image_corpus. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const cuvae_status *st)
{
    if (strncmp(st->msg, "fuzz.img: ", 10) != 0 || strchr(st->msg, '\n')) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cuvae_image_info info;
    cuvae_status st;
    if (cuvae_image_header(data, size, "fuzz.img", &info, &st)) {
        check_msg(&st);
        return 0;
    }
    if (info.width < 1 || info.height < 1 || info.width > CUVAE_IMAGE_MAX_SIDE ||
        info.height > CUVAE_IMAGE_MAX_SIDE ||
        (int64_t)info.width * info.height > CUVAE_IMAGE_MAX_PIXELS)
        abort();
    /* Large claims decode slowly without finding more: the header checks are what they test. */
    if ((int64_t)info.width * info.height > (1 << 20)) return 0;
    for (int ch = 1; ch <= 3; ch += 2) {
        size_t n = (size_t)info.width * (size_t)info.height * (size_t)ch;
        uint8_t *out = malloc(n + 1);
        if (!out) return 0;
        out[n] = 0xa5; /* a canary past the end */
        if (cuvae_image_decode(data, size, "fuzz.img", ch, &info, out, &st)) check_msg(&st);
        if (out[n] != 0xa5) abort();
        free(out);
    }
    return 0;
}
