/* Linear layers on the CPU, the twin of cuda/linear.cu: y = x.w^T + b (+ ReLU) and its backward
 * pass, written (=), never accumulated.
 *
 * Each call splits its work over the backend's threads (cpu_threads.h), every BLAS call
 * single-threaded: the forward GEMM by output columns, each part with its bias rows and ReLU
 * while the part is in cache; the backward pass runs dW (with the bias gradient of its rows) and
 * dX (with the ReLU mask of its columns) side by side, since they are independent and of equal
 * size. The split depends only on the thread count, so results are the same whenever the thread
 * count and the BLAS kernels are. */
#include <cblas.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_threads.h"

/* GEMM column parts start on multiples of this (a cache line of floats). */
#define COL_ALIGN 16

typedef struct {
    const float *x, *w, *b, *dy, *relu_y;
    float *y, *dw, *db, *dx;
    int B, in, out, relu;
    int parts, w_parts; /* backward: the first w_parts parts are dW's, the rest dX's */
    int want_sq;
    double sq[CUVAE_CPU_MAX_PARTS]; /* backward: each dW part's sum of squares of dw and db */
} linear_job;

static void relu_in_place(float *y, int rows, int cols, int ld)
{
    /* Written so that NaN passes through (max(NaN, 0) would hide it from the non-finite check). */
    for (int r = 0; r < rows; r++) {
        float *row = y + (size_t)r * (size_t)ld;
        for (int i = 0; i < cols; i++) row[i] = row[i] < 0.0f ? 0.0f : row[i];
    }
}

static void forward_part(void *arg, int t)
{
    const linear_job *j = arg;
    size_t c0, c1;
    cuvae_cpu_split((size_t)j->out, j->parts, t, COL_ALIGN, &c0, &c1);
    int n = (int)(c1 - c0);
    if (n <= 0) return;
    /* y starts as the bias and the GEMM adds x.w^T with beta = 1: each element is rounded once
     * from (bias + dot), the same value as dot + bias. */
    for (int r = 0; r < j->B; r++)
        memcpy(j->y + (size_t)r * (size_t)j->out + c0, j->b + c0, (size_t)n * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->B, n, j->in, 1.0f, j->x, j->in,
                j->w + c0 * (size_t)j->in, j->in, 1.0f, j->y + c0, j->out);
    if (j->relu) relu_in_place(j->y + c0, j->B, n, j->out);
}

void cuvae_cpu_linear_forward(const float *x, const float *w, const float *b, int B, int in,
                              int out, int relu, float *y)
{
    int threads = cuvae_cpu_threads();
    if (threads > CUVAE_CPU_MAX_PARTS) threads = CUVAE_CPU_MAX_PARTS;
    int max_parts = (out + COL_ALIGN - 1) / COL_ALIGN;
    linear_job j = {.x = x, .w = w, .b = b, .y = y, .B = B, .in = in, .out = out, .relu = relu};
    j.parts = threads < max_parts ? threads : max_parts;
    cuvae_cpu_parallel(j.parts, forward_part, &j);
}

/* Column chunk of the bias-gradient reduction: a double accumulator per column on the stack. */
#define DB_CHUNK 256

/* db [c0, c1) = column sums of dy, in double, rows in order. */
static void bias_grad(const float *dy, int B, int out, size_t c0, size_t c1, float *db)
{
    for (size_t a = c0; a < c1; a += DB_CHUNK) {
        size_t nc = c1 - a < DB_CHUNK ? c1 - a : DB_CHUNK;
        double acc[DB_CHUNK];
        for (size_t k = 0; k < nc; k++) acc[k] = 0.0;
        for (int r = 0; r < B; r++) {
            const float *row = dy + (size_t)r * (size_t)out + a;
            for (size_t k = 0; k < nc; k++) acc[k] += (double)row[k];
        }
        for (size_t k = 0; k < nc; k++) db[a + k] = (float)acc[k];
    }
}

static void backward_part(void *arg, int t)
{
    const linear_job *j = arg;
    size_t a, e;
    if (t < j->w_parts) {
        /* dw rows [a, e) = dy[:, a:e]^T . x, and the bias gradient of those rows. */
        cuvae_cpu_split((size_t)j->out, j->w_parts, t, COL_ALIGN, &a, &e);
        if (e <= a) return;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(e - a), j->in, j->B, 1.0f,
                    j->dy + a, j->out, j->x, j->in, 0.0f, j->dw + a * (size_t)j->in, j->in);
        bias_grad(j->dy, j->B, j->out, a, e, j->db);
        /* The gradient norm's share of these rows, while they are in cache. */
        if (j->want_sq)
            ((linear_job *)arg)->sq[t] =
                cuvae_cpu_sum_squares_range(j->dw + a * (size_t)j->in, (e - a) * (size_t)j->in) +
                cuvae_cpu_sum_squares_range(j->db + a, e - a);
        return;
    }
    /* dx columns [a, e) = dy . w[:, a:e], then the ReLU mask of those columns. */
    cuvae_cpu_split((size_t)j->in, j->parts - j->w_parts, t - j->w_parts, COL_ALIGN, &a, &e);
    if (e <= a) return;
    int n = (int)(e - a);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->B, n, j->out, 1.0f, j->dy, j->out,
                j->w + a, j->in, 0.0f, j->dx + a, j->in);
    if (!j->relu_y) return;
    for (int r = 0; r < j->B; r++) {
        size_t at = (size_t)r * (size_t)j->in + a;
        cuvae_cpu_relu_backward(j->relu_y + at, j->dx + at, (size_t)n);
    }
}

void cuvae_cpu_linear_backward_relu(const float *x, const float *w, const float *dy, int B, int in,
                                    int out, float *dw, float *db, float *dx, const float *relu_y,
                                    double *sq)
{
    int threads = cuvae_cpu_threads();
    if (threads > CUVAE_CPU_MAX_PARTS) threads = CUVAE_CPU_MAX_PARTS;
    linear_job j = {.x = x,
                    .w = w,
                    .dy = dy,
                    .relu_y = dx ? relu_y : NULL,
                    .dw = dw,
                    .db = db,
                    .dx = dx,
                    .B = B,
                    .in = in,
                    .out = out};
    if (threads <= 1) {
        j.parts = dx ? 2 : 1;
        j.w_parts = 1;
    } else if (dx) {
        j.parts = threads;
        j.w_parts = threads - threads / 2;
    } else {
        j.parts = j.w_parts = threads;
    }
    j.want_sq = sq != NULL;
    cuvae_cpu_parallel(j.parts, backward_part, &j);
    if (sq) {
        double sum = 0.0; /* in part order: the same for a given thread count */
        for (int t = 0; t < j.w_parts; t++) sum += j.sq[t];
        *sq = sum;
    }
}

void cuvae_cpu_linear_backward(const float *x, const float *w, const float *dy, int B, int in,
                               int out, float *dw, float *db, float *dx)
{
    cuvae_cpu_linear_backward_relu(x, w, dy, B, in, out, dw, db, dx, NULL, NULL);
}

void cuvae_cpu_relu_backward(const float *y, float *dy, size_t n)
{
    for (size_t i = 0; i < n; i++) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
