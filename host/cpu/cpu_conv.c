/* Convolutions on the CPU, the twin of cuda/conv.cu: conv2d and conv_transpose2d (model.h's
 * layouts: activations [rows, C*H*W] in NCHW order, conv2d weight [out, in, k, k],
 * conv_transpose2d weight [in, out, k, k], bias [out channels]), forward with bias and ReLU, and
 * backward with the gradients written (=), never accumulated.
 *
 * Both kinds are im2col/col2im around single-threaded OpenBLAS GEMMs, the examples split over
 * the backend's threads (cpu_threads.h) and each part's examples taken a group at a time: the
 * columns of a group's examples sit side by side, so one GEMM covers the group (a 7x7 output is
 * 49 columns an example, too few for a GEMM to run well). conv2d's forward is W . im2col(x); its
 * input gradient col2im(W^T . dy). conv_transpose2d is the adjoint: forward col2im(W^T . x),
 * input gradient W . im2col(dy). The groups follow from the call's row count and the thread
 * count alone, so evaluation, which computes each example at one position of a block of fixed
 * size (cpu_backend_impl.h), gets the same bits however the examples are batched. The weight
 * gradients of each part go to the part's own buffer and are summed in part order: the result
 * depends on the thread count only. */
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

/* The grid positions [lo, hi) whose pixel gx*s - p + kk lies inside an image side of n. */
static void inside(int grid, int n, int s, int p, int kk, int *lo, int *hi)
{
    int first = p - kk; /* gx*s >= first */
    int a = first <= 0 ? 0 : (first + s - 1) / s;
    int last = n - 1 + p - kk; /* gx*s <= last */
    int b = last < 0 ? 0 : last / s + 1;
    *lo = a < grid ? a : grid;
    *hi = b < grid ? b : grid;
    if (*hi < *lo) *hi = *lo;
}

/* One example's columns into col, whose rows are ld floats apart. */
static void im2col(const unfold *u, const float *img, float *col, size_t ld)
{
    for (int c = 0; c < u->C; c++)
        for (int ki = 0; ki < u->k; ki++)
            for (int kj = 0; kj < u->k; kj++) {
                float *row = col + ((size_t)(c * u->k + ki) * (size_t)u->k + (size_t)kj) * ld;
                const float *plane = img + (size_t)c * (size_t)u->IH * (size_t)u->IW;
                int lo, hi;
                inside(u->GW, u->IW, u->s, u->p, kj, &lo, &hi);
                for (int gy = 0; gy < u->GH; gy++) {
                    int iy = gy * u->s - u->p + ki;
                    float *out = row + (size_t)gy * (size_t)u->GW;
                    if (iy < 0 || iy >= u->IH) {
                        memset(out, 0, (size_t)u->GW * sizeof(float));
                        continue;
                    }
                    /* pixel of gx: line[gx*s + off] */
                    const float *line = plane + (size_t)iy * (size_t)u->IW;
                    int off = kj - u->p;
                    for (int gx = 0; gx < lo; gx++) out[gx] = 0.0f;
                    if (u->s == 1)
                        memcpy(out + lo, line + lo + off, (size_t)(hi - lo) * sizeof(float));
                    else
                        for (int gx = lo; gx < hi; gx++) out[gx] = line[gx * u->s + off];
                    for (int gx = hi; gx < u->GW; gx++) out[gx] = 0.0f;
                }
            }
}

/* img += one example's columns folded back (img must be initialised); rows ld floats apart. */
static void col2im(const unfold *u, const float *col, size_t ld, float *img)
{
    for (int c = 0; c < u->C; c++)
        for (int ki = 0; ki < u->k; ki++)
            for (int kj = 0; kj < u->k; kj++) {
                const float *row = col + ((size_t)(c * u->k + ki) * (size_t)u->k + (size_t)kj) * ld;
                float *plane = img + (size_t)c * (size_t)u->IH * (size_t)u->IW;
                int lo, hi;
                inside(u->GW, u->IW, u->s, u->p, kj, &lo, &hi);
                int off = kj - u->p;
                for (int gy = 0; gy < u->GH; gy++) {
                    int iy = gy * u->s - u->p + ki;
                    if (iy < 0 || iy >= u->IH) continue;
                    const float *in = row + (size_t)gy * (size_t)u->GW;
                    float *line = plane + (size_t)iy * (size_t)u->IW;
                    for (int gx = lo; gx < hi; gx++) line[gx * u->s + off] += in[gx];
                }
            }
}

/* Planes [C, n] of g examples ([g][C][n] in src) side by side as [C, g*n], and back. */
static void gather_planes(const float *src, int g, int C, size_t n, float *dst)
{
    size_t ld = (size_t)g * n;
    for (int e = 0; e < g; e++)
        for (int c = 0; c < C; c++)
            memcpy(dst + (size_t)c * ld + (size_t)e * n, src + ((size_t)e * C + (size_t)c) * n,
                   n * sizeof(float));
}

static void scatter_planes(const float *src, int g, int C, size_t n, float *dst)
{
    size_t ld = (size_t)g * n;
    for (int e = 0; e < g; e++)
        for (int c = 0; c < C; c++)
            memcpy(dst + ((size_t)e * C + (size_t)c) * n, src + (size_t)c * ld + (size_t)e * n,
                   n * sizeof(float));
}

static size_t col_floats(const cuvae_layer *l)
{
    unfold u = unfold_of(l);
    return (size_t)u.C * (size_t)u.k * (size_t)u.k * (size_t)u.GH * (size_t)u.GW;
}

/* Examples a GEMM covers: enough columns for a GEMM to run well, the group's columns at most
 * GROUP_FLOATS (a few MiB of scratch a thread). */
#define GROUP_MAX 16
#define GROUP_FLOATS (1u << 19)

static int group_of(const cuvae_layer *l)
{
    size_t per = col_floats(l) + (size_t)(l->in > l->out ? l->in : l->out);
    size_t g = GROUP_FLOATS / (per ? per : 1);
    return g < 1 ? 1 : g > GROUP_MAX ? GROUP_MAX : (int)g;
}

static size_t round16(size_t n)
{
    return (n + 15) / 16 * 16;
}

/* Parts of a call over `rows` examples: one per thread, never more than rows. */
static int conv_parts(int rows)
{
    int parts = cuvae_cpu_threads();
    if (parts > CUVAE_CPU_MAX_PARTS) parts = CUVAE_CPU_MAX_PARTS;
    if (parts > rows) parts = rows;
    return parts > 0 ? parts : 1;
}

/* A part's scratch: a group's columns, a group's planes side by side (the GEMM's other operand
 * or its result), and (backward) the part's weight and bias gradients, each rounded up to a
 * cache line so the parts never share one. */
static size_t part_floats(const cuvae_layer *l)
{
    size_t g = (size_t)group_of(l);
    return round16(g * col_floats(l)) + round16(g * (size_t)(l->in > l->out ? l->in : l->out)) +
           round16(l->w_count) + round16(l->b_count);
}

size_t cuvae_cpu_conv_scratch(const cuvae_layer *l, int rows)
{
    (void)rows; /* per part, not per row: the parts are the threads */
    return (size_t)conv_parts(CUVAE_CPU_MAX_PARTS) * part_floats(l);
}

typedef struct {
    const cuvae_layer *l;
    const float *w, *b, *x, *dy, *relu_in;
    float *y, *dx, *dw, *db;
    float *scratch;
    int rows, parts, relu;
} conv_job;

static void relu_in_place(float *y, size_t n)
{
    /* Written so that NaN passes through (max(NaN, 0) would hide it from the non-finite check). */
    for (size_t i = 0; i < n; i++) y[i] = y[i] < 0.0f ? 0.0f : y[i];
}

/* The part's buffers in its scratch. */
typedef struct {
    float *col, *planes, *dw, *db;
} part_bufs;

static part_bufs bufs_of(const conv_job *j, int t)
{
    const cuvae_layer *l = j->l;
    size_t g = (size_t)group_of(l);
    float *base = j->scratch + (size_t)t * part_floats(l);
    part_bufs b;
    b.col = base;
    b.planes = b.col + round16(g * col_floats(l));
    b.dw = b.planes + round16(g * (size_t)(l->in > l->out ? l->in : l->out));
    b.db = b.dw + round16(l->w_count);
    return b;
}

static void forward_part(void *arg, int t)
{
    const conv_job *j = arg;
    const cuvae_layer *l = j->l;
    size_t r0, r1;
    cuvae_cpu_split((size_t)j->rows, j->parts, t, 1, &r0, &r1);
    part_bufs pb = bufs_of(j, t);
    unfold u = unfold_of(l);
    int ckk = u.C * u.k * u.k;              /* rows of the columns */
    size_t G = (size_t)u.GH * (size_t)u.GW; /* columns an example */
    int out_c = l->out_shape.c, in_c = l->in_shape.c;
    size_t out_plane = (size_t)l->out_shape.h * (size_t)l->out_shape.w;
    size_t in_plane = (size_t)l->in_shape.h * (size_t)l->in_shape.w;
    int group = group_of(l);
    for (size_t r = r0; r < r1; r += (size_t)group) {
        int g = r1 - r < (size_t)group ? (int)(r1 - r) : group;
        size_t ld = (size_t)g * G;
        const float *x = j->x + r * (size_t)l->in;
        float *y = j->y + r * (size_t)l->out;
        if (l->kind == CUVAE_LAYER_CONV2D) {
            /* planes [out_c, g*G] = W [out_c, ckk] . col [ckk, g*G], plus the bias */
            for (int e = 0; e < g; e++) im2col(&u, x + (size_t)e * l->in, pb.col + e * G, ld);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out_c, (int)ld, ckk, 1.0f, j->w,
                        ckk, pb.col, (int)ld, 0.0f, pb.planes, (int)ld);
            scatter_planes(pb.planes, g, out_c, out_plane, y);
            for (int e = 0; e < g; e++)
                for (int c = 0; c < out_c; c++) {
                    float *yc = y + ((size_t)e * out_c + (size_t)c) * out_plane;
                    for (size_t i = 0; i < out_plane; i++) yc[i] += j->b[c];
                }
        } else {
            /* col [ckk, g*G] = W^T [ckk, in_c] . planes [in_c, g*G], folded into y = bias */
            gather_planes(x, g, in_c, in_plane, pb.planes);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, (int)ld, in_c, 1.0f, j->w,
                        ckk, pb.planes, (int)ld, 0.0f, pb.col, (int)ld);
            for (int e = 0; e < g; e++) {
                float *ye = y + (size_t)e * l->out;
                for (int c = 0; c < out_c; c++)
                    for (size_t i = 0; i < out_plane; i++) ye[(size_t)c * out_plane + i] = j->b[c];
                col2im(&u, pb.col + e * G, ld, ye);
            }
        }
        if (j->relu) relu_in_place(y, (size_t)g * l->out);
    }
}

void cuvae_cpu_conv_forward(const cuvae_layer *l, const float *w, const float *b, const float *x,
                            int rows, int relu, float *scratch, float *y)
{
    conv_job j = {.l = l, .w = w, .b = b, .x = x, .y = y, .scratch = scratch, .rows = rows};
    j.relu = relu;
    j.parts = conv_parts(rows);
    if (rows > 0) cuvae_cpu_parallel(j.parts, forward_part, &j);
}

static void backward_part(void *arg, int t)
{
    const conv_job *j = arg;
    const cuvae_layer *l = j->l;
    size_t r0, r1;
    cuvae_cpu_split((size_t)j->rows, j->parts, t, 1, &r0, &r1);
    part_bufs pb = bufs_of(j, t);
    /* Part 0 writes the gradients in place; the others into their scratch, summed after. */
    float *dw = t == 0 ? j->dw : pb.dw;
    float *db = t == 0 ? j->db : pb.db;
    memset(dw, 0, l->w_count * sizeof(float));
    memset(db, 0, l->b_count * sizeof(float));
    unfold u = unfold_of(l);
    int ckk = u.C * u.k * u.k;
    size_t G = (size_t)u.GH * (size_t)u.GW;
    int out_c = l->out_shape.c, in_c = l->in_shape.c;
    size_t out_plane = (size_t)l->out_shape.h * (size_t)l->out_shape.w;
    size_t in_plane = (size_t)l->in_shape.h * (size_t)l->in_shape.w;
    int group = group_of(l);
    for (size_t r = r0; r < r1; r += (size_t)group) {
        int g = r1 - r < (size_t)group ? (int)(r1 - r) : group;
        size_t ld = (size_t)g * G;
        const float *x = j->x + r * (size_t)l->in;
        const float *dy = j->dy + r * (size_t)l->out;
        for (int e = 0; e < g; e++)
            for (int c = 0; c < out_c; c++) {
                const float *dyc = dy + ((size_t)e * out_c + (size_t)c) * out_plane;
                double acc = 0.0;
                for (size_t i = 0; i < out_plane; i++) acc += (double)dyc[i];
                db[c] += (float)acc;
            }
        float *dx = j->dx ? j->dx + r * (size_t)l->in : NULL;
        if (l->kind == CUVAE_LAYER_CONV2D) {
            /* dW [out_c, ckk] += dy [out_c, g*G] . col^T; dcol = W^T . dy, folded into dx */
            for (int e = 0; e < g; e++) im2col(&u, x + (size_t)e * l->in, pb.col + e * G, ld);
            gather_planes(dy, g, out_c, out_plane, pb.planes);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out_c, ckk, (int)ld, 1.0f,
                        pb.planes, (int)ld, pb.col, (int)ld, 1.0f, dw, ckk);
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, (int)ld, out_c, 1.0f,
                            j->w, ckk, pb.planes, (int)ld, 0.0f, pb.col, (int)ld);
                memset(dx, 0, (size_t)g * l->in * sizeof(float));
                for (int e = 0; e < g; e++) col2im(&u, pb.col + e * G, ld, dx + (size_t)e * l->in);
            }
        } else {
            /* dcol = im2col(dy); dW [in_c, ckk] += x [in_c, g*G] . dcol^T; dx = W . dcol */
            for (int e = 0; e < g; e++) im2col(&u, dy + (size_t)e * l->out, pb.col + e * G, ld);
            gather_planes(x, g, in_c, in_plane, pb.planes);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in_c, ckk, (int)ld, 1.0f,
                        pb.planes, (int)ld, pb.col, (int)ld, 1.0f, dw, ckk);
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in_c, (int)ld, ckk, 1.0f,
                            j->w, ckk, pb.col, (int)ld, 0.0f, pb.planes, (int)ld);
                scatter_planes(pb.planes, g, in_c, in_plane, dx);
            }
        }
        if (dx && j->relu_in)
            cuvae_cpu_relu_backward(j->relu_in + r * (size_t)l->in, dx, (size_t)g * l->in);
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
    if (rows <= 0) {
        memset(dw, 0, l->w_count * sizeof(float));
        memset(db, 0, l->b_count * sizeof(float));
    } else {
        cuvae_cpu_parallel(j.parts, backward_part, &j);
    }
    /* The parts' gradients, added in part order. */
    for (int t = 1; t < j.parts; t++) {
        part_bufs pb = bufs_of(&j, t);
        for (size_t i = 0; i < l->w_count; i++) dw[i] += pb.dw[i];
        for (size_t i = 0; i < l->b_count; i++) db[i] += pb.db[i];
    }
    if (sq)
        *sq = cuvae_cpu_sum_squares_range(dw, l->w_count) +
              cuvae_cpu_sum_squares_range(db, l->b_count);
}
