/* Convolutions on the CPU, the twin of cuda/conv.cu: conv2d and conv_transpose2d (model.h's
 * layouts: activations [rows, C*H*W] in NCHW order, conv2d weight [out, in, k, k],
 * conv_transpose2d weight [in, out, k, k], bias [out channels]), forward with bias and ReLU, and
 * backward with the gradients written (=), never accumulated.
 *
 * Both kinds are im2col/col2im around single-threaded OpenBLAS GEMMs, one example at a time, the
 * examples split over the backend's threads (cpu_threads.h). conv2d's forward is
 * W . im2col(x); its input gradient col2im(W^T . dy). conv_transpose2d is the adjoint: forward
 * col2im(W^T . x), input gradient W . im2col(dy). An example's forward is the same calls
 * whatever its position in the batch, so evaluation results do not depend on batching. The
 * weight gradients of each part of the examples go to the part's own buffer and are summed in
 * part order: the result depends on the thread count only. */
#include <cblas.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_threads.h"

/* The unfolding geometry: an image of C x IH x IW and a grid of GH x GW kernel positions; column
 * (gy, gx) of row (c, ki, kj) is image pixel (c, gy*s - p + ki, gx*s - p + kj), or 0 outside.
 * conv2d: image = input, grid = output; conv_transpose2d: image = output, grid = input. */
typedef struct {
    int C, IH, IW, GH, GW, k, s, p;
} unfold;

static unfold unfold_of(const cuvae_layer *l)
{
    int conv = l->kind == CUVAE_LAYER_CONV2D;
    cuvae_shape img = conv ? l->in_shape : l->out_shape, grid = conv ? l->out_shape : l->in_shape;
    return (unfold){img.c, img.h, img.w, grid.h, grid.w, l->kernel, l->stride, l->padding};
}

static void im2col(const unfold *u, const float *img, float *col)
{
    size_t G = (size_t)u->GH * (size_t)u->GW;
    for (int c = 0; c < u->C; c++)
        for (int ki = 0; ki < u->k; ki++)
            for (int kj = 0; kj < u->k; kj++) {
                float *row = col + ((size_t)(c * u->k + ki) * (size_t)u->k + (size_t)kj) * G;
                const float *plane = img + (size_t)c * (size_t)u->IH * (size_t)u->IW;
                for (int gy = 0; gy < u->GH; gy++) {
                    int iy = gy * u->s - u->p + ki;
                    float *out = row + (size_t)gy * (size_t)u->GW;
                    if (iy < 0 || iy >= u->IH) {
                        memset(out, 0, (size_t)u->GW * sizeof(float));
                        continue;
                    }
                    const float *line = plane + (size_t)iy * (size_t)u->IW;
                    for (int gx = 0; gx < u->GW; gx++) {
                        int ix = gx * u->s - u->p + kj;
                        out[gx] = ix >= 0 && ix < u->IW ? line[ix] : 0.0f;
                    }
                }
            }
}

/* img += the columns folded back (img must be initialised). */
static void col2im(const unfold *u, const float *col, float *img)
{
    size_t G = (size_t)u->GH * (size_t)u->GW;
    for (int c = 0; c < u->C; c++)
        for (int ki = 0; ki < u->k; ki++)
            for (int kj = 0; kj < u->k; kj++) {
                const float *row = col + ((size_t)(c * u->k + ki) * (size_t)u->k + (size_t)kj) * G;
                float *plane = img + (size_t)c * (size_t)u->IH * (size_t)u->IW;
                for (int gy = 0; gy < u->GH; gy++) {
                    int iy = gy * u->s - u->p + ki;
                    if (iy < 0 || iy >= u->IH) continue;
                    const float *in = row + (size_t)gy * (size_t)u->GW;
                    float *line = plane + (size_t)iy * (size_t)u->IW;
                    for (int gx = 0; gx < u->GW; gx++) {
                        int ix = gx * u->s - u->p + kj;
                        if (ix >= 0 && ix < u->IW) line[ix] += in[gx];
                    }
                }
            }
}

static size_t col_floats(const cuvae_layer *l)
{
    unfold u = unfold_of(l);
    return (size_t)u.C * (size_t)u.k * (size_t)u.k * (size_t)u.GH * (size_t)u.GW;
}

/* Parts of a call over `rows` examples: one per thread, never more than rows. */
static int conv_parts(int rows)
{
    int parts = cuvae_cpu_threads();
    if (parts > CUVAE_CPU_MAX_PARTS) parts = CUVAE_CPU_MAX_PARTS;
    if (parts > rows) parts = rows;
    return parts > 0 ? parts : 1;
}

size_t cuvae_cpu_conv_scratch(const cuvae_layer *l, int rows)
{
    (void)rows; /* per part, not per row: the parts are the threads */
    int parts = conv_parts(CUVAE_CPU_MAX_PARTS);
    /* Each part: its columns, and (backward) its weight and bias gradients, each rounded up to
     * a cache line so the parts never share one. */
    size_t per =
        (col_floats(l) + 15) / 16 * 16 + (l->w_count + 15) / 16 * 16 + (l->b_count + 15) / 16 * 16;
    return (size_t)parts * per;
}

typedef struct {
    const cuvae_layer *l;
    const float *w, *b, *x, *dy, *relu_in;
    float *y, *dx, *dw, *db;
    float *scratch;
    int rows, parts, relu;
    size_t per; /* scratch floats per part */
} conv_job;

static void relu_in_place(float *y, size_t n)
{
    /* Written so that NaN passes through (max(NaN, 0) would hide it from the non-finite check). */
    for (size_t i = 0; i < n; i++) y[i] = y[i] < 0.0f ? 0.0f : y[i];
}

static void fill_bias(const float *b, int C, size_t plane, float *y)
{
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < plane; i++) y[(size_t)c * plane + i] = b[c];
}

static void forward_part(void *arg, int t)
{
    const conv_job *j = arg;
    const cuvae_layer *l = j->l;
    size_t r0, r1;
    cuvae_cpu_split((size_t)j->rows, j->parts, t, 1, &r0, &r1);
    float *col = j->scratch + (size_t)t * j->per;
    unfold u = unfold_of(l);
    int ckk = u.C * u.k * u.k; /* rows of the columns */
    int G = u.GH * u.GW;       /* columns */
    size_t out_plane = (size_t)l->out_shape.h * (size_t)l->out_shape.w;
    for (size_t r = r0; r < r1; r++) {
        const float *x = j->x + r * (size_t)l->in;
        float *y = j->y + r * (size_t)l->out;
        fill_bias(j->b, l->out_shape.c, out_plane, y);
        if (l->kind == CUVAE_LAYER_CONV2D) {
            /* y [out_c, G] += W [out_c, ckk] . col [ckk, G] */
            im2col(&u, x, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l->out_shape.c, G, ckk, 1.0f,
                        j->w, ckk, col, G, 1.0f, y, G);
        } else {
            /* col [ckk, G] = W^T [ckk, in_c] . x [in_c, G], folded into y */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, G, l->in_shape.c, 1.0f, j->w,
                        ckk, x, G, 0.0f, col, G);
            col2im(&u, col, y);
        }
        if (j->relu) relu_in_place(y, (size_t)l->out);
    }
}

void cuvae_cpu_conv_forward(const cuvae_layer *l, const float *w, const float *b, const float *x,
                            int rows, int relu, float *scratch, float *y)
{
    conv_job j = {.l = l, .w = w, .b = b, .x = x, .y = y, .scratch = scratch, .rows = rows};
    j.relu = relu;
    j.parts = conv_parts(rows);
    j.per = cuvae_cpu_conv_scratch(l, rows) / (size_t)conv_parts(CUVAE_CPU_MAX_PARTS);
    cuvae_cpu_parallel(j.parts, forward_part, &j);
}

static void backward_part(void *arg, int t)
{
    const conv_job *j = arg;
    const cuvae_layer *l = j->l;
    size_t r0, r1;
    cuvae_cpu_split((size_t)j->rows, j->parts, t, 1, &r0, &r1);
    float *col = j->scratch + (size_t)t * j->per;
    size_t col_n = (col_floats(l) + 15) / 16 * 16;
    /* Part 0 writes the gradients in place; the others into their scratch, summed after. */
    float *dw = t == 0 ? j->dw : col + col_n;
    float *db = t == 0 ? j->db : col + col_n + (l->w_count + 15) / 16 * 16;
    memset(dw, 0, l->w_count * sizeof(float));
    memset(db, 0, l->b_count * sizeof(float));
    unfold u = unfold_of(l);
    int ckk = u.C * u.k * u.k;
    int G = u.GH * u.GW;
    int out_c = l->out_shape.c, in_c = l->in_shape.c;
    size_t out_plane = (size_t)l->out_shape.h * (size_t)l->out_shape.w;
    for (size_t r = r0; r < r1; r++) {
        const float *x = j->x + r * (size_t)l->in;
        const float *dy = j->dy + r * (size_t)l->out;
        for (int c = 0; c < out_c; c++) {
            double acc = 0.0;
            for (size_t i = 0; i < out_plane; i++) acc += (double)dy[(size_t)c * out_plane + i];
            db[c] += (float)acc;
        }
        float *dx = j->dx ? j->dx + r * (size_t)l->in : NULL;
        if (l->kind == CUVAE_LAYER_CONV2D) {
            /* dW [out_c, ckk] += dy [out_c, G] . col^T; dcol = W^T . dy, folded into dx */
            im2col(&u, x, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out_c, ckk, G, 1.0f, dy, G, col, G,
                        1.0f, dw, ckk);
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, G, out_c, 1.0f, j->w, ckk,
                            dy, G, 0.0f, col, G);
                memset(dx, 0, (size_t)l->in * sizeof(float));
                col2im(&u, col, dx);
            }
        } else {
            /* dcol = im2col(dy); dW [in_c, ckk] += x [in_c, G] . dcol^T; dx = W . dcol */
            im2col(&u, dy, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in_c, ckk, G, 1.0f, x, G, col, G,
                        1.0f, dw, ckk);
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in_c, G, ckk, 1.0f, j->w,
                            ckk, col, G, 0.0f, dx, G);
        }
        if (dx && j->relu_in)
            cuvae_cpu_relu_backward(j->relu_in + r * (size_t)l->in, dx, (size_t)l->in);
    }
}

void cuvae_cpu_conv_backward(const cuvae_layer *l, const float *w, const float *x, const float *dy,
                             int rows, float *scratch, float *dw, float *db, float *dx,
                             const float *relu_in, double *sq)
{
    conv_job j = {.l = l,
                  .w = w,
                  .x = x,
                  .dy = dy,
                  .relu_in = relu_in,
                  .dx = dx,
                  .dw = dw,
                  .db = db,
                  .scratch = scratch,
                  .rows = rows};
    j.parts = conv_parts(rows);
    j.per = cuvae_cpu_conv_scratch(l, rows) / (size_t)conv_parts(CUVAE_CPU_MAX_PARTS);
    if (rows <= 0) {
        memset(dw, 0, l->w_count * sizeof(float));
        memset(db, 0, l->b_count * sizeof(float));
    } else {
        cuvae_cpu_parallel(j.parts, backward_part, &j);
    }
    /* The parts' gradients, added in part order. */
    size_t col_n = (col_floats(l) + 15) / 16 * 16;
    for (int t = 1; t < j.parts; t++) {
        const float *pw = scratch + (size_t)t * j.per + col_n;
        const float *pb = pw + (l->w_count + 15) / 16 * 16;
        for (size_t i = 0; i < l->w_count; i++) dw[i] += pw[i];
        for (size_t i = 0; i < l->b_count; i++) db[i] += pb[i];
    }
    if (sq)
        *sq = cuvae_cpu_sum_squares_range(dw, l->w_count) +
              cuvae_cpu_sum_squares_range(db, l->b_count);
}
