/* Writes the seeds of fuzz_image into $CUVAE_FUZZ_CORPUS: small PNGs of every colour type (with
 * libpng's simplified writer) and JPEGs (grey, colour, progressive) with libjpeg, so that the
 * fuzzer starts past the signatures and headers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <libpng16/png.h>

static int save(const char *dir, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) return -1;
    return fclose(f);
}

static int png_seed(const char *dir, const char *name, png_uint_32 format, int w, int h)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = format;
    size_t bytes = PNG_IMAGE_SIZE(img), len = 0;
    uint8_t *px = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) px[i] = (uint8_t)(i * 37 + 11);
    png_image_write_to_memory(&img, NULL, &len, 0, px, 0, NULL);
    uint8_t *out = malloc(len);
    int rc = png_image_write_to_memory(&img, out, &len, 0, px, 0, NULL) ? 0 : -1;
    if (!rc) rc = save(dir, name, out, len);
    free(px);
    free(out);
    return rc;
}

static int jpeg_seed(const char *dir, const char *name, int comps, int progressive)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    unsigned char *out = NULL;
    unsigned long len = 0;
    uint8_t px[16 * 16 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 13);
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &out, &len);
    ci.image_width = ci.image_height = 16;
    ci.input_components = comps;
    ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < 16) {
        JSAMPROW r = px + ci.next_scanline * 16 * comps;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    int rc = save(dir, name, out, len);
    jpeg_destroy_compress(&ci);
    free(out);
    return rc;
}

int main(void)
{
    const char *dir = getenv("CUVAE_FUZZ_CORPUS");
    if (!dir) {
        fprintf(stderr, "set CUVAE_FUZZ_CORPUS to the corpus directory\n");
        return 1;
    }
    int rc = png_seed(dir, "grey.png", PNG_FORMAT_GRAY, 5, 3) |
             png_seed(dir, "ga.png", PNG_FORMAT_GA, 4, 4) |
             png_seed(dir, "rgb.png", PNG_FORMAT_RGB, 3, 5) |
             png_seed(dir, "rgba.png", PNG_FORMAT_RGBA, 6, 2) |
             png_seed(dir, "grey16.png", PNG_FORMAT_LINEAR_Y, 4, 3) |
             jpeg_seed(dir, "grey.jpg", 1, 0) | jpeg_seed(dir, "rgb.jpg", 3, 0) |
             jpeg_seed(dir, "prog.jpg", 3, 1);
    if (rc) fprintf(stderr, "cuvae_fuzz_image_corpus: writing the seeds failed\n");
    return rc ? 1 : 0;
}
