/* The CPU backend's team (cpu_threads.c) and the linear layers that split their GEMMs over it
 * (cpu_linear.c): the split covers every element once on aligned boundaries for any part count;
 * each task runs exactly once; forward and backward of layers of awkward sizes (narrower than a
 * column part, not a multiple of it) match a plain double-precision triple loop, and repeated
 * calls give the same bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_threads.h"
#include "philox.h"
#include "tests_util.h"

static void check_split(void)
{
    const size_t totals[] = {0, 1, 15, 16, 17, 100, 784, 1000003};
    const size_t aligns[] = {1, 16, 64};
    for (size_t ti = 0; ti < sizeof totals / sizeof *totals; ti++)
        for (size_t ai = 0; ai < sizeof aligns / sizeof *aligns; ai++)
            for (int n = 1; n <= 9; n++) {
                size_t at = 0;
                for (int t = 0; t < n; t++) {
                    size_t b, e;
                    cuvae_cpu_split(totals[ti], n, t, aligns[ai], &b, &e);
                    CHECK(b == at); /* contiguous, in order */
                    CHECK(e >= b);
                    CHECK(e <= totals[ti]);
                    CHECK(b % aligns[ai] == 0 || b == totals[ti]);
                    at = e;
                }
                CHECK(at == totals[ti]); /* everything covered */
            }
}

static void count_task(void *arg, int t)
{
    int *hits = arg;
    __atomic_fetch_add(&hits[t], 1, __ATOMIC_RELAXED);
}

static void check_parallel(void)
{
    CHECK(cuvae_cpu_threads() >= 1);
    for (int n = 1; n <= 17; n++) {
        int hits[17] = {0};
        cuvae_cpu_parallel(n, count_task, hits);
        for (int t = 0; t < n; t++) CHECK(hits[t] == 1);
        for (int t = n; t < 17; t++) CHECK(hits[t] == 0);
    }
}

static void fill(float *p, size_t n, uint64_t counter)
{
    for (size_t i = 0; i < n; i++)
        p[i] = cuvae_u32_to_uniform(cuvae_philox_word(5, 9, counter, i)) * 2.0f - 1.0f;
}

static void check_linear(int B, int in, int out)
{
    size_t nx = (size_t)B * in, nw = (size_t)out * in, ny = (size_t)B * out;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)out * 4);
    float *y = malloc(ny * 4), *y2 = malloc(ny * 4), *ref = malloc(ny * 4);
    float *dy = malloc(ny * 4), *dw = malloc(nw * 4), *db = malloc((size_t)out * 4);
    float *dx = malloc(nx * 4), *dw2 = malloc(nw * 4), *dx2 = malloc(nx * 4);
    float *rdw = malloc(nw * 4), *rdb = malloc((size_t)out * 4), *rdx = malloc(nx * 4);
    float *relu_y = malloc(nx * 4);
    fill(x, nx, 1);
    fill(w, nw, 2);
    fill(b, (size_t)out, 3);
    fill(dy, ny, 4);
    fill(relu_y, nx, 5);
    for (int r = 0; r < B; r++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++) s += (double)x[(size_t)r * in + i] * w[(size_t)o * in + i];
            ref[(size_t)r * out + o] = s < 0 ? 0.0f : (float)s;
        }
    cuvae_cpu_linear_forward(x, w, b, B, in, out, 1, y);
    cuvae_cpu_linear_forward(x, w, b, B, in, out, 1, y2);
    CHECK(cuvae_check_close("forward", y, ref, ny, 1e-5, 1e-5) == 0);
    CHECK(memcmp(y, y2, ny * 4) == 0);

    for (int o = 0; o < out; o++) {
        double sb = 0;
        for (int r = 0; r < B; r++) sb += dy[(size_t)r * out + o];
        rdb[o] = (float)sb;
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (int r = 0; r < B; r++)
                s += (double)dy[(size_t)r * out + o] * x[(size_t)r * in + i];
            rdw[(size_t)o * in + i] = (float)s;
        }
    }
    double sq_ref = 0;
    for (size_t k = 0; k < nw; k++) sq_ref += (double)rdw[k] * rdw[k];
    for (int o = 0; o < out; o++) sq_ref += (double)rdb[o] * rdb[o];
    for (int r = 0; r < B; r++)
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (int o = 0; o < out; o++)
                s += (double)dy[(size_t)r * out + o] * w[(size_t)o * in + i];
            rdx[(size_t)r * in + i] = relu_y[(size_t)r * in + i] > 0 ? (float)s : 0.0f;
        }
    double sq = -1, sq2 = -1;
    cuvae_cpu_linear_backward_relu(x, w, dy, B, in, out, dw, db, dx, relu_y, &sq);
    cuvae_cpu_linear_backward_relu(x, w, dy, B, in, out, dw2, db, dx2, relu_y, &sq2);
    CHECK(cuvae_check_close("dW", dw, rdw, nw, 1e-5, 1e-5) == 0);
    CHECK(cuvae_check_close("db", db, rdb, (size_t)out, 1e-5, 1e-5) == 0);
    CHECK(cuvae_check_close("dX (masked)", dx, rdx, nx, 1e-5, 1e-5) == 0);
    CHECK(fabs(sq - sq_ref) <= 1e-5 * sq_ref);
    CHECK(memcmp(dw, dw2, nw * 4) == 0 && memcmp(dx, dx2, nx * 4) == 0 && sq == sq2);
    /* Without dx: the first layer's case, every part on dW. */
    memset(dw2, 0, nw * 4);
    cuvae_cpu_linear_backward(x, w, dy, B, in, out, dw2, db, NULL);
    CHECK(cuvae_check_close("dW without dX", dw2, rdw, nw, 1e-5, 1e-5) == 0);
    free(x), free(w), free(b), free(y), free(y2), free(ref), free(dy), free(dw), free(db);
    free(dx), free(dw2), free(dx2), free(rdw), free(rdb), free(rdx), free(relu_y);
}

int main(void)
{
    check_split();
    check_parallel();
    /* Narrower than one column part, one part and a bit, the default model's shapes. */
    const int shapes[][3] = {{3, 5, 7},      {4, 33, 10},  {5, 17, 20},   {7, 70, 33},
                             {16, 784, 512}, {9, 32, 256}, {128, 256, 64}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        check_linear(shapes[i][0], shapes[i][1], shapes[i][2]);
    return cuvae_test_finish("test_cpu_threads");
}
