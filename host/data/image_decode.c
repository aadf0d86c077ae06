/* PNG (libpng) and JPEG (libjpeg-turbo) decoding from memory for the image-folder reader: see
 * image_decode.h for what comes out. Both libraries report errors by longjmp: each decoder runs in
 * a function of its own that calls setjmp, with every object it allocates held by a job struct in
 * the caller's frame, so that the caller frees them whichever way the decoder ended. libpng's
 * warnings (an unknown ancillary chunk, an sRGB profile it dislikes) are ignored; libjpeg's
 * warnings all mean corrupt data (a premature end, bytes before a marker, a bad Huffman code) and
 * are errors. */
#include "image_decode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
/* libpng's header by its versioned path: host/common/png.h (the writer) shadows <png.h>. */
#include <libpng16/png.h>

/* Ancillary PNG chunks (text, profiles) are bounded so that a small file cannot ask libpng for
 * much memory; a progressive JPEG may not take an absurd number of scans to decode. */
#define PNG_CHUNK_MAX ((png_alloc_size_t)8 << 20)
#define JPEG_MAX_SCANS 1000

cuvae_image_kind cuvae_image_sniff(const uint8_t *p, size_t n)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(p, png_sig, 8) == 0) return CUVAE_IMAGE_PNG;
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return CUVAE_IMAGE_JPEG;
    return CUVAE_IMAGE_NONE;
}

/* The bounds, from the header: a decompression bomb stops here. */
static int check_size(const char *name, const char *kind, int64_t w, int64_t h, cuvae_status *st)
{
    if (w <= 0 || h <= 0)
        return cuvae_fail(st, "%s: %s header says %lld x %lld pixels", name, kind, (long long)w,
                          (long long)h);
    if (w > CUVAE_IMAGE_MAX_SIDE || h > CUVAE_IMAGE_MAX_SIDE || w * h > CUVAE_IMAGE_MAX_PIXELS)
        return cuvae_fail(st,
                          "%s: %s header says %lld x %lld pixels (W x H), more than the %lld "
                          "pixels and %d a side an image may have (not decoded)",
                          name, kind, (long long)w, (long long)h, (long long)CUVAE_IMAGE_MAX_PIXELS,
                          CUVAE_IMAGE_MAX_SIDE);
    return 0;
}

/* ---- PNG ------------------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t n, at;
    char err[256];
    png_structp png;
    png_infop info;
    uint8_t *buf;    /* [h, w, nc] */
    png_bytep *rows; /* [h] into buf */
    int nc;          /* channels of buf: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA */
} pjob;

static void pjob_read(png_structp png, png_bytep out, size_t len)
{
    pjob *j = png_get_io_ptr(png);
    if (len > j->n - j->at) png_error(png, "truncated: the file ends inside the image");
    memcpy(out, j->p + j->at, len);
    j->at += len;
}

static void pjob_error(png_structp png, png_const_charp msg)
{
    pjob *j = png_get_error_ptr(png);
    char esc[200];
    cuvae_escape(msg, esc, sizeof esc);
    snprintf(j->err, sizeof j->err, "%s", esc);
    png_longjmp(png, 1);
}

static void pjob_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static int pjob_run(pjob *j, const char *name, cuvae_image_info *info, int decode, cuvae_status *st)
{
    if (setjmp(png_jmpbuf(j->png))) return cuvae_fail(st, "%s: corrupt PNG: %s", name, j->err);
    /* The size is checked below, with a message of ours, for any width PNG allows. */
    png_set_user_limits(j->png, 0x7fffffffu, 0x7fffffffu);
    png_set_chunk_malloc_max(j->png, PNG_CHUNK_MAX);
    png_set_read_fn(j->png, j, pjob_read);
    png_read_info(j->png, j->info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0;
    png_get_IHDR(j->png, j->info, &w, &h, &depth, &ctype, NULL, NULL, NULL);
    info->kind = CUVAE_IMAGE_PNG;
    info->colour = (ctype & PNG_COLOR_MASK_COLOR) != 0;
    if (check_size(name, "PNG", w, h, st)) return -1;
    info->width = (int)w;
    info->height = (int)h;
    if (!decode) return 0;
    png_set_expand(j->png); /* palette -> RGB, grey < 8 bits -> 8, tRNS -> alpha */
    png_set_scale_16(j->png);
    png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);
    j->nc = png_get_channels(j->png, j->info);
    if (j->nc < 1 || j->nc > 4 || png_get_rowbytes(j->png, j->info) != (size_t)w * (size_t)j->nc)
        return cuvae_fail(st, "%s: PNG decodes to %d channels, %zu bytes a row, not 8-bit", name,
                          j->nc, (size_t)png_get_rowbytes(j->png, j->info));
    j->buf = cuvae_malloc((size_t)w * h * (size_t)j->nc, "a decoded PNG", st);
    j->rows = cuvae_malloc((size_t)h * sizeof *j->rows, "a decoded PNG", st);
    if (!j->buf || !j->rows) return cuvae_fail_prefix(st, "%s", name);
    for (size_t y = 0; y < h; y++) j->rows[y] = j->buf + y * (size_t)w * (size_t)j->nc;
    png_read_image(j->png, j->rows);
    png_read_end(j->png, NULL); /* the chunks after the image and their CRCs */
    return 0;
}

static int pjob_start(const uint8_t *p, size_t n, const char *name, cuvae_image_info *info,
                      int decode, pjob *j, cuvae_status *st)
{
    j->p = p;
    j->n = n;
    j->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, pjob_error, pjob_warning);
    if (j->png) j->info = png_create_info_struct(j->png);
    if (!j->png || !j->info) return cuvae_fail(st, "%s: out of memory starting libpng", name);
    return pjob_run(j, name, info, decode, st);
}

static void pjob_free(pjob *j)
{
    if (j->png) png_destroy_read_struct(&j->png, j->info ? &j->info : NULL, NULL);
    free(j->rows);
    free(j->buf);
}

/* ---- JPEG ----------------------------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jjob_err;

typedef struct {
    struct jpeg_decompress_struct ci;
    jjob_err err;
    struct jpeg_progress_mgr progress;
    int created;
    uint8_t *buf; /* [h, w, nc] */
    int nc;       /* 1 grey or 3 RGB */
} jjob;

static void jjob_error(j_common_ptr ci)
{
    jjob_err *e = (jjob_err *)ci->err;
    ci->err->format_message(ci, e->msg);
    longjmp(e->jb, 1);
}

/* Level < 0: a warning, i.e. corrupt or missing data: an error here. Trace messages are dropped. */
static void jjob_message(j_common_ptr ci, int level)
{
    if (level < 0) jjob_error(ci);
}

static void jjob_output(j_common_ptr ci)
{
    (void)ci;
}

static void jjob_progress(j_common_ptr ci)
{
    if (!ci->is_decompressor || ((j_decompress_ptr)ci)->input_scan_number <= JPEG_MAX_SCANS) return;
    jjob_err *e = (jjob_err *)ci->err;
    snprintf(e->msg, sizeof e->msg, "more than %d scans", JPEG_MAX_SCANS);
    longjmp(e->jb, 1);
}

static int jjob_run(jjob *j, const uint8_t *p, size_t n, const char *name, cuvae_image_info *info,
                    int decode, cuvae_status *st)
{
    j->ci.err = jpeg_std_error(&j->err.pub);
    j->err.pub.error_exit = jjob_error;
    j->err.pub.emit_message = jjob_message;
    j->err.pub.output_message = jjob_output;
    if (setjmp(j->err.jb)) {
        char esc[200];
        cuvae_escape(j->err.msg, esc, sizeof esc);
        return cuvae_fail(st, "%s: corrupt JPEG: %s", name, esc);
    }
    jpeg_create_decompress(&j->ci);
    j->created = 1;
    j->progress.progress_monitor = jjob_progress;
    j->ci.progress = &j->progress;
    jpeg_mem_src(&j->ci, p, (unsigned long)n);
    jpeg_read_header(&j->ci, TRUE);
    info->kind = CUVAE_IMAGE_JPEG;
    J_COLOR_SPACE cs = j->ci.jpeg_color_space;
    if (cs == JCS_CMYK || cs == JCS_YCCK ||
        (j->ci.num_components != 1 && j->ci.num_components != 3))
        return cuvae_fail(st,
                          "%s: a JPEG of %d components (CMYK, YCCK or other): expected grey or "
                          "colour (YCbCr, RGB)",
                          name, j->ci.num_components);
    info->colour = j->ci.num_components == 3;
    if (check_size(name, "JPEG", j->ci.image_width, j->ci.image_height, st)) return -1;
    info->width = (int)j->ci.image_width;
    info->height = (int)j->ci.image_height;
    if (!decode) return 0;
    j->ci.out_color_space = info->colour ? JCS_RGB : JCS_GRAYSCALE;
    j->ci.dct_method = JDCT_ISLOW;
    jpeg_start_decompress(&j->ci);
    j->nc = j->ci.output_components;
    if ((int)j->ci.output_width != info->width || (int)j->ci.output_height != info->height ||
        (j->nc != 1 && j->nc != 3))
        return cuvae_fail(st, "%s: JPEG decodes to %u x %u x %d, not its header's size", name,
                          j->ci.output_width, j->ci.output_height, j->nc);
    size_t row = (size_t)info->width * (size_t)j->nc;
    j->buf = cuvae_malloc(row * (size_t)info->height, "a decoded JPEG", st);
    if (!j->buf) return cuvae_fail_prefix(st, "%s", name);
    while (j->ci.output_scanline < j->ci.output_height) {
        JSAMPROW r = j->buf + (size_t)j->ci.output_scanline * row;
        if (jpeg_read_scanlines(&j->ci, &r, 1) != 1)
            return cuvae_fail(st, "%s: corrupt JPEG: no more scanlines at row %u", name,
                              j->ci.output_scanline);
    }
    jpeg_finish_decompress(&j->ci);
    return 0;
}

static void jjob_free(jjob *j)
{
    if (j->created) jpeg_destroy_decompress(&j->ci);
    free(j->buf);
}

/* ---- entry points --------------------------------------------------------------------------- */

int cuvae_image_header(const uint8_t *p, size_t n, const char *name, cuvae_image_info *info,
                       cuvae_status *st)
{
    memset(info, 0, sizeof *info);
    cuvae_image_kind kind = cuvae_image_sniff(p, n);
    int rc;
    if (kind == CUVAE_IMAGE_PNG) {
        pjob j = {0};
        rc = pjob_start(p, n, name, info, 0, &j, st);
        pjob_free(&j);
    } else if (kind == CUVAE_IMAGE_JPEG) {
        jjob j;
        memset(&j, 0, sizeof j);
        rc = jjob_run(&j, p, n, name, info, 0, st);
        jjob_free(&j);
    } else {
        return cuvae_fail(st, "%s: not a PNG or JPEG image (by its first bytes)", name);
    }
    return rc;
}

/* nc channels (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) of n pixels to `channels` (1 or 3). */
static void convert(const uint8_t *in, int nc, size_t n, int channels, uint8_t *out)
{
    int alpha = nc == 2 || nc == 4, colour = nc >= 3;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *px = in + i * (size_t)nc;
        unsigned a = alpha ? px[nc - 1] : 255, v[3];
        for (int c = 0; c < 3; c++) {
            unsigned s = px[colour ? c : 0];
            v[c] = alpha ? (s * a + 127) / 255 : s;
        }
        if (channels == 3) {
            for (int c = 0; c < 3; c++) out[i * 3 + (size_t)c] = (uint8_t)v[c];
        } else {
            out[i] = colour ? (uint8_t)((299 * v[0] + 587 * v[1] + 114 * v[2] + 500) / 1000)
                            : (uint8_t)v[0];
        }
    }
}

/* The file may have changed since its header was read (the output is sized from that). */
static int same_size(const char *name, const cuvae_image_info *got, const cuvae_image_info *want,
                     cuvae_status *st)
{
    if (got->width == want->width && got->height == want->height) return 0;
    return cuvae_fail(st, "%s: %d x %d pixels, but its header said %d x %d when first read", name,
                      got->width, got->height, want->width, want->height);
}

int cuvae_image_decode(const uint8_t *p, size_t n, const char *name, int channels,
                       const cuvae_image_info *info, uint8_t *out, cuvae_status *st)
{
    cuvae_image_info got = {0};
    size_t pixels = (size_t)info->width * (size_t)info->height;
    int rc;
    if (info->kind == CUVAE_IMAGE_PNG) {
        pjob j = {0};
        rc = pjob_start(p, n, name, &got, 1, &j, st);
        if (!rc) rc = same_size(name, &got, info, st);
        if (!rc) convert(j.buf, j.nc, pixels, channels, out);
        pjob_free(&j);
    } else if (info->kind == CUVAE_IMAGE_JPEG) {
        jjob j;
        memset(&j, 0, sizeof j);
        rc = jjob_run(&j, p, n, name, &got, 1, st);
        if (!rc) rc = same_size(name, &got, info, st);
        if (!rc) convert(j.buf, j.nc, pixels, channels, out);
        jjob_free(&j);
    } else {
        return cuvae_fail(st, "%s: not a PNG or JPEG image", name);
    }
    return rc;
}
