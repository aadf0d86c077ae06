/* Linear layers on cuBLASLt with fused epilogues (see linear.h). Every output is written ("="):
 * the weight GEMMs run with beta = 0 and the bias gradients are overwritten.
 *
 * Row-major data seen column-major. cuBLASLt is column-major: a row-major matrix M [r, c] with
 * leading dimension c is, in the same memory, the column-major matrix M^T [c, r] (ld = c). So
 *   x  [B, in]  row-major  = X^T  [in, B]   column-major, ld = in
 *   w  [out,in] row-major  = W^T  [in, out] column-major, ld = in
 *   y  [B, out] row-major  = Y^T  [out, B]  column-major, ld = out
 * and each product is written for the transposes, D = op(A) . op(B) with D [m, n]:
 *   forward   Y = X W^T + 1 b^T     <=>  Y^T [out,B] = W [out,in] . X^T [in,B] + b 1^T
 *             A = w (stored W^T, opA = T gives W), B = x (X^T, opB = N);
 *             m = out, n = B, k = in, ldd = out. The epilogue's bias has m = out entries and is
 *             broadcast over the columns (the examples): exactly + b per example.
 *   weights   dW = dY^T X          <=>  dW^T [in,out] = X^T [in,B] . dY [B,out]
 *             A = x (X^T, opA = N), B = dy (stored dY^T, opB = T gives dY);
 *             m = in, n = out, k = B, ldd = in: dW^T column-major is dw [out, in] row-major.
 *             db [out] = sum over the batch of dY = the sums of op(B) over k, one per column of
 *             D: epilogue BGRADB ("bias gradient of B, one per column of D, reduced over k").
 *   input     dX = dY W            <=>  dX^T [in,B] = W^T [in,out] . dY^T [out,B]
 *             A = w (W^T, opA = N), B = dy (dY^T, opB = N); m = in, n = B, k = out, ldd = in.
 *             D has the shape of the previous layer's forward output [in rows, B columns], so the
 *             ReLU mask its forward wrote (RELU_AUX_BIAS, aux ld in bits) applies to it as is:
 *             epilogue DRELU_BGRAD multiplies by the mask and writes the previous layer's bias
 *             gradient (m = in entries, reduced over the n = B columns).
 * The GEMMs go through the plan cache of gemm.cu, which chooses each shape's algorithm once. A
 * plan whose epilogue cuBLASLt does not offer is cached as unsupported and the layer falls back to
 * a plain GEMM plus the small kernels below. The bf16 layers (linear_bf16.cu) use the same
 * mapping with bf16 operands. */
#include "linear.h"

#include <stdlib.h>
#include <string.h>

#include "gemm.h"

#define LINEAR_THREADS 256

/* ---- kernels --------------------------------------------------------------------------------- */

/* y [B, out] += b, then ReLU: the epilogue of a plain GEMM. */
static __global__ void bias_act_kernel(float *y, const float *b, size_t total, int out, int relu)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = y[i] + b[i % (size_t)out];
        /* NaN passes through (as on the CPU), so the non-finite check still sees it. */
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

/* db [n] = sum over the B rows of dy [B, n]; one thread per column, rows in order, in double. */
static __global__ void column_sum_kernel(const float *dy, int B, int n, float *db)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    double s = 0.0;
    for (int b = 0; b < B; b++) s += (double)dy[(size_t)b * (size_t)n + (size_t)o];
    db[o] = (float)s;
}

/* dx [B, n] *= (x > 0) (x is the ReLU's output) and, when db is not NULL, db [n] = the column
 * sums of the result; one thread per column, rows in order. */
static __global__ void relu_backward_kernel(float *dx, const float *x, int B, int n, float *db)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    double s = 0.0;
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)b * (size_t)n + (size_t)o;
        float v = x[i] > 0.0f ? dx[i] : 0.0f;
        dx[i] = v;
        s += (double)v;
    }
    if (db) db[o] = (float)s;
}

/* ---- fp32 GEMMs ------------------------------------------------------------------------------ */

/* An fp32 GEMM through the plan cache (gemm.h); *done says whether it ran. */
static int try_gemm(cuvae_cuda_ctx *ctx, int epilogue, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *D, int64_t ldd, const void *bias, const void *aux, int64_t aux_ld,
                    int *done, cudaStream_t stream, cuvae_status *st)
{
    cuvae_gemm g = {epilogue, ta,         tb,  m, n,          k,   A,    CUDA_R_32F, lda,
                    B,        CUDA_R_32F, ldb, D, CUDA_R_32F, ldd, bias, aux,        aux_ld};
    return cuvae_gemm_try(ctx, &g, done, stream, st);
}

/* ---- launchers ------------------------------------------------------------------------------- */

size_t cuvae_relu_mask_bytes(int B, int out)
{
    size_t ld_bits = ((size_t)out + 127) / 128 * 128;
    return ld_bits / 8 * (size_t)B;
}

static int check_shape(const char *what, int B, int in, int out, cuvae_status *st)
{
    if (B < 1 || in < 1 || out < 1)
        return cuvae_fail(st, "%s: shape B=%d in=%d out=%d: expected positive sizes", what, B, in,
                          out);
    return 0;
}

int cuvae_linear_forward(cuvae_cuda_ctx *ctx, const float *x, const float *w, const float *b, int B,
                         int in, int out, int relu, float *y, cuvae_relu_mask *mask,
                         cudaStream_t stream, cuvae_status *st)
{
    if (check_shape("linear forward", B, in, out, st)) return -1;
    if (!x || !w || !b || !y) return cuvae_fail(st, "linear forward: a NULL buffer");
    if (mask) {
        mask->valid = 0;
        mask->ld = ((int64_t)out + 127) / 128 * 128;
    }
    int done = 0;
    /* Y^T [out,B] = W [out,in] . X^T [in,B] (see the top comment). */
    if (ctx->use_epilogues) {
        if (relu && mask && mask->bits) {
            if (try_gemm(ctx, CUBLASLT_EPILOGUE_RELU_AUX_BIAS, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in,
                         w, in, x, in, y, out, b, mask->bits, mask->ld, &done, stream, st))
                return -1;
            if (done) {
                mask->valid = 1;
                return 0;
            }
        }
        int epi = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
        if (try_gemm(ctx, epi, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, w, in, x, in, y, out, b, NULL,
                     0, &done, stream, st))
            return -1;
        if (done) return 0;
    }
    if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, w, in, x, in,
                 y, out, NULL, NULL, 0, &done, stream, st))
        return -1;
    if (ctx->plan_only) return 0;
    size_t total = (size_t)B * (size_t)out;
    bias_act_kernel<<<cuvae_grid_for(total, LINEAR_THREADS), LINEAR_THREADS, 0, stream>>>(
        y, b, total, out, relu);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_linear_backward(cuvae_cuda_ctx *ctx, const float *x, const float *w, const float *dy,
                          int B, int in, int out, float *dw, float *db, float *dx, int x_relu,
                          const cuvae_relu_mask *x_mask, float *db_prev, cudaStream_t stream,
                          cuvae_status *st)
{
    if (check_shape("linear backward", B, in, out, st)) return -1;
    if (!x || !w || !dy || !dw) return cuvae_fail(st, "linear backward: a NULL buffer");
    if (db_prev && (!dx || !x_relu))
        return cuvae_fail(st, "linear backward: the previous layer's bias gradient needs dx of a "
                              "ReLU input");
    int done = 0;
    /* dW^T [in,out] = X^T [in,B] . dY [B,out]; db from op(B) by BGRADB. */
    if (db && ctx->use_epilogues) {
        if (try_gemm(ctx, CUBLASLT_EPILOGUE_BGRADB, CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, x, in, dy,
                     out, dw, in, db, NULL, 0, &done, stream, st))
            return -1;
    }
    if (!done) {
        if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, x, in,
                     dy, out, dw, in, NULL, NULL, 0, &done, stream, st))
            return -1;
        if (db && !ctx->plan_only) {
            column_sum_kernel<<<cuvae_grid_for((size_t)out, LINEAR_THREADS), LINEAR_THREADS, 0,
                                stream>>>(dy, B, out, db);
            CUDA_CHECK_LAUNCH(st);
        }
    }
    if (!dx) return 0;
    /* dX^T [in,B] = W^T [in,out] . dY^T [out,B]; the ReLU mask of x has D's shape. */
    done = 0;
    if (x_relu && x_mask && x_mask->valid && ctx->use_epilogues) {
        int epi = db_prev ? CUBLASLT_EPILOGUE_DRELU_BGRAD : CUBLASLT_EPILOGUE_DRELU;
        if (try_gemm(ctx, epi, CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, w, in, dy, out, dx, in,
                     db_prev, x_mask->bits, x_mask->ld, &done, stream, st))
            return -1;
        if (done) return 0;
    }
    if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, w, in, dy,
                 out, dx, in, NULL, NULL, 0, &done, stream, st))
        return -1;
    if (x_relu && !ctx->plan_only) {
        relu_backward_kernel<<<cuvae_grid_for((size_t)in, LINEAR_THREADS), LINEAR_THREADS, 0,
                               stream>>>(dx, x, B, in, db_prev);
        CUDA_CHECK_LAUNCH(st);
    }
    return 0;
}

int cuvae_mlp_forward(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                      const float *params, const float *x, int B, float *const *act,
                      cuvae_relu_mask *masks, cudaStream_t stream, cuvae_status *st)
{
    if (n_layers < 1) return cuvae_fail(st, "mlp forward: no layers");
    /* params + offset is never NULL: a missing parameter buffer must be caught here, before the
     * layers see a bogus pointer. */
    if (!layers || !params || !x || !act) return cuvae_fail(st, "mlp forward: a NULL buffer");
    const float *in = x;
    for (int i = 0; i < n_layers; i++) {
        int relu = i + 1 < n_layers;
        if (cuvae_linear_forward(ctx, in, params + layers[i].w, params + layers[i].b, B,
                                 layers[i].in, layers[i].out, relu, act[i],
                                 relu && masks ? &masks[i] : NULL, stream, st))
            return cuvae_fail_prefix(st, "layer %d", i);
        in = act[i];
    }
    return 0;
}

int cuvae_mlp_backward(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                       const float *params, float *grads, const float *x, int B, float *const *act,
                       const cuvae_relu_mask *masks, float *dy, float *scratch, int want_dx,
                       float **result, cudaStream_t stream, cuvae_status *st)
{
    float *dx = scratch;
    int db_done = 0; /* this layer's bias gradient came with the next layer's backward */
    if (!result) return cuvae_fail(st, "mlp backward: no result pointer");
    *result = NULL;
    if (n_layers < 1) return cuvae_fail(st, "mlp backward: no layers");
    /* params + offset and grads + offset are never NULL: check the buffers themselves. */
    if (!layers || !params || !grads || !x || !dy || !scratch || (n_layers > 1 && !act))
        return cuvae_fail(st, "mlp backward: a NULL buffer");
    for (int i = n_layers - 1; i >= 0; i--) {
        const cuvae_layer *l = &layers[i];
        int hidden_input = i > 0;
        int need_dx = hidden_input || want_dx;
        if (cuvae_linear_backward(ctx, hidden_input ? act[i - 1] : x, params + l->w, dy, B, l->in,
                                  l->out, grads + l->w, db_done ? NULL : grads + l->b,
                                  need_dx ? dx : NULL, hidden_input,
                                  hidden_input && masks ? &masks[i - 1] : NULL,
                                  hidden_input ? grads + layers[i - 1].b : NULL, stream, st))
            return cuvae_fail_prefix(st, "layer %d backward", i);
        db_done = hidden_input;
        if (!need_dx) return 0;
        float *t = dy;
        dy = dx;
        dx = t;
    }
    *result = dy;
    return 0;
}
