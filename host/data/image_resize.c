/* Resize-and-centre-crop of one decoded image for the image-folder reader (image_dir.h says what
 * each filter computes). The crop is taken in the source's continuous coordinates: one scale s
 * (source pixels per output pixel) for both axes, the smaller of h / rows and w / cols, so that
 * the short side (relative to the target's shape) fills the target, and the window of rows x cols
 * output pixels centred on the source. Where the resized image's crop offset is a whole number of
 * its pixels this is exactly "resize, then crop" (pixels near the crop's edge see their true
 * neighbours); otherwise it is the same without rounding the offset. Separable: for each output
 * row the weighted source rows are summed into one row of doubles, which the horizontal taps then
 * read; the result is rounded half up and clamped to 0..255. */
#include "image_dir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int *first; /* [m] first source index of each output index's taps */
    int *count; /* [m] */
    double *w;  /* [m, taps] */
    int taps;
} axis_taps;

static void axis_free(axis_taps *a)
{
    free(a->first);
    free(a->count);
    free(a->w);
}

/* Output index i of m covers source [o + i s, o + (i + 1) s); the taps' indices may fall outside
 * the source (clampi repeats its edge). */
static int axis_build(axis_taps *a, int m, double s, double o, cuvae_resize_filter f,
                      cuvae_status *st)
{
    a->taps = f == CUVAE_RESIZE_BOX ? (int)ceil(s) + 2 : 2;
    a->first = cuvae_malloc((size_t)m * sizeof *a->first, "resize taps", st);
    a->count = cuvae_malloc((size_t)m * sizeof *a->count, "resize taps", st);
    a->w = cuvae_malloc((size_t)m * (size_t)a->taps * sizeof *a->w, "resize taps", st);
    if (!a->first || !a->count || !a->w) return -1;
    for (int i = 0; i < m; i++) {
        double *w = a->w + (size_t)i * (size_t)a->taps;
        int j0, k = 0;
        if (f == CUVAE_RESIZE_NEAREST) {
            j0 = (int)floor(o + (i + 0.5) * s);
            w[k++] = 1;
        } else if (f == CUVAE_RESIZE_BILINEAR) {
            double x = o + (i + 0.5) * s - 0.5;
            j0 = (int)floor(x);
            w[k++] = 1 - (x - j0);
            w[k++] = x - j0;
        } else { /* box: the overlap of each source pixel with the interval, over its length */
            double lo = o + i * s, hi = lo + s;
            j0 = (int)floor(lo);
            for (int j = j0; j < hi && k < a->taps; j++) {
                double ov = (hi < j + 1 ? hi : j + 1) - (lo > j ? lo : j);
                w[k++] = ov > 0 ? ov / s : 0;
            }
        }
        a->first[i] = j0;
        a->count[i] = k;
    }
    return 0;
}

/* A tap's source index, the edge pixel repeated past the border. */
static int clampi(int j, int n)
{
    return j < 0 ? 0 : j >= n ? n - 1 : j;
}

int cuvae_image_resize(const uint8_t *src, int w, int h, int channels, int rows, int cols,
                       cuvae_resize_filter f, uint8_t *out, cuvae_status *st)
{
    double sy = (double)h / rows, sx = (double)w / cols, s = sy < sx ? sy : sx;
    axis_taps ay = {0}, ax = {0};
    double *acc = cuvae_malloc((size_t)w * (size_t)channels * sizeof *acc, "a resized row", st);
    int rc = -1;
    if (!acc || axis_build(&ay, rows, s, (h - rows * s) / 2, f, st) ||
        axis_build(&ax, cols, s, (w - cols * s) / 2, f, st))
        goto done;
    size_t plane = (size_t)rows * (size_t)cols, rw = (size_t)w * (size_t)channels;
    for (int r = 0; r < rows; r++) {
        memset(acc, 0, rw * sizeof *acc);
        const double *wy = ay.w + (size_t)r * (size_t)ay.taps;
        for (int t = 0; t < ay.count[r]; t++) {
            if (wy[t] == 0) continue;
            const uint8_t *row = src + (size_t)clampi(ay.first[r] + t, h) * rw;
            for (size_t k = 0; k < rw; k++) acc[k] += wy[t] * row[k];
        }
        for (int c = 0; c < cols; c++) {
            const double *wx = ax.w + (size_t)c * (size_t)ax.taps;
            for (int ch = 0; ch < channels; ch++) {
                double v = 0;
                for (int t = 0; t < ax.count[c]; t++)
                    v += wx[t] *
                         acc[(size_t)clampi(ax.first[c] + t, w) * (size_t)channels + (size_t)ch];
                v = floor(v + 0.5);
                out[(size_t)ch * plane + (size_t)r * (size_t)cols + (size_t)c] =
                    (uint8_t)(v < 0     ? 0
                              : v > 255 ? 255
                                        : v);
            }
        }
    }
    rc = 0;
done:
    axis_free(&ay);
    axis_free(&ax);
    free(acc);
    return rc;
}
