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
 * a plain GEMM plus the small kernels below.
 *
 * One path for both operand types (linear.h): A and B of every GEMM have the operand type, D is
 * fp32 except a bf16 hidden output. Under bf16 the plain-GEMM fallback does the epilogue's
 * arithmetic in fp32 and rounds to bf16 once at the end: a hidden layer's plain GEMM writes its
 * fp32 accumulators to a scratch buffer, not to the bf16 output, so that the bias is added before
 * the one rounding (as the epilogue adds it). Under fp32 the accumulators are the output itself. */
#include "linear.h"

#include <stdlib.h>
#include <string.h>

#include "gemm.h"

#define LINEAR_THREADS 256

/* ---- kernels --------------------------------------------------------------------------------- */

__device__ __forceinline__ static float to_f32(float v)
{
    return v;
}
__device__ __forceinline__ static float to_f32(cuvae_bf16 v)
{
    return __bfloat162float(v);
}
__device__ __forceinline__ static void store_f32(float *p, size_t i, float v)
{
    p[i] = v;
}
__device__ __forceinline__ static void store_f32(cuvae_bf16 *p, size_t i, float v)
{
    p[i] = __float2bfloat16_rn(v);
}

static __global__ void bf16_from_f32_kernel(const float *x, cuvae_bf16 *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

/* y [B, out] = acc + b, then ReLU: the epilogue of a plain GEMM, for an fp32 output with an fp32
 * bias (acc is then y itself) or a bf16 output with a bf16 bias (the bias the epilogue would
 * add), the addition in fp32 from the fp32 accumulators acc. */
template <typename T>
static __global__ void bias_act_kernel(const float *acc, const T *b, T *y, size_t total, int out,
                                       int relu)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = acc[i] + to_f32(b[i % (size_t)out]);
        /* NaN passes through (as on the CPU), so the non-finite check still sees it. */
        store_f32(y, i, relu && v < 0.0f ? 0.0f : v);
    }
}

/* db [n] = sum over the B rows of dy [B, n] (fp32); one thread per column, rows in order, in
 * double. */
static __global__ void column_sum_kernel(const float *dy, int B, int n, float *db)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    double s = 0.0;
    for (int b = 0; b < B; b++) s += (double)dy[(size_t)b * (size_t)n + (size_t)o];
    db[o] = (float)s;
}

/* dx [B, n] *= (x > 0) (x is the ReLU's output, in the operand type), dx16 = bf16(dx) when dx16
 * is not NULL and, when db is not NULL, db [n] = the column sums of dx; one thread per column,
 * rows in order. */
template <typename T>
static __global__ void relu_backward_kernel(float *dx, const T *x, int B, int n, float *db,
                                            cuvae_bf16 *dx16)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    double s = 0.0;
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)b * (size_t)n + (size_t)o;
        float v = to_f32(x[i]) > 0.0f ? dx[i] : 0.0f;
        dx[i] = v;
        if (dx16) dx16[i] = __float2bfloat16_rn(v);
        s += (double)v;
    }
    if (db) db[o] = (float)s;
}

/* ---- GEMMs ----------------------------------------------------------------------------------- */

/* A GEMM with A and B of type ab through the plan cache (gemm.h); *done says whether it ran. */
static int try_gemm(cuvae_cuda_ctx *ctx, int epilogue, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, cudaDataType_t ab, const void *A, int64_t lda,
                    const void *B, int64_t ldb, void *D, cudaDataType_t d_type, int64_t ldd,
                    const void *bias, const void *aux, int64_t aux_ld, int *done,
                    cudaStream_t stream, cuvae_status *st)
{
    cuvae_gemm g = {epilogue, ta, tb,  m, n,      k,   A,    ab,  lda,
                    B,        ab, ldb, D, d_type, ldd, bias, aux, aux_ld};
    return cuvae_gemm_try(ctx, &g, done, stream, st);
}

/* ---- launchers ------------------------------------------------------------------------------- */

cudaDataType_t cuvae_operand_type(cuvae_operand op)
{
    return op == CUVAE_OPERAND_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

size_t cuvae_operand_size(cuvae_operand op)
{
    return op == CUVAE_OPERAND_BF16 ? sizeof(cuvae_bf16) : sizeof(float);
}

int cuvae_bf16_from_f32(const float *x, cuvae_bf16 *y, size_t n, cudaStream_t stream,
                        cuvae_status *st)
{
    if (!x || !y) return cuvae_fail(st, "bf16 conversion: a NULL buffer");
    if (n == 0) return 0;
    bf16_from_f32_kernel<<<cuvae_grid_for(n, LINEAR_THREADS), LINEAR_THREADS, 0, stream>>>(x, y, n);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_operand_from_f32(cuvae_cuda_ctx *ctx, cuvae_operand op, const float *x, void *y_op,
                           size_t n, cudaStream_t stream, cuvae_status *st)
{
    if (op != CUVAE_OPERAND_BF16 || ctx->plan_only) return 0;
    return cuvae_bf16_from_f32(x, (cuvae_bf16 *)y_op, n, stream, st);
}

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

int cuvae_linear_forward(cuvae_cuda_ctx *ctx, cuvae_operand op, const void *x, const void *w,
                         const void *b, int B, int in, int out, int relu, void *y,
                         cudaDataType_t y_type, float *scratch, cuvae_relu_mask *mask,
                         cudaStream_t stream, cuvae_status *st)
{
    if (check_shape("linear forward", B, in, out, st)) return -1;
    if (!x || !w || !b || !y) return cuvae_fail(st, "linear forward: a NULL buffer");
    cudaDataType_t ab = cuvae_operand_type(op);
    if (y_type != ab && y_type != CUDA_R_32F)
        return cuvae_fail(st, "linear forward: the output is neither fp32 nor the operand type");
    if (mask) {
        mask->valid = 0;
        mask->ld = ((int64_t)out + 127) / 128 * 128;
    }
    int done = 0;
    /* Y^T [out,B] = W [out,in] . X^T [in,B] (see the top comment). */
    if (ctx->use_epilogues) {
        if (relu && mask && mask->bits) {
            if (try_gemm(ctx, CUBLASLT_EPILOGUE_RELU_AUX_BIAS, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in,
                         ab, w, in, x, in, y, y_type, out, b, mask->bits, mask->ld, &done, stream,
                         st))
                return -1;
            if (done) {
                mask->valid = 1;
                return 0;
            }
        }
        int epi = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
        if (try_gemm(ctx, epi, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, ab, w, in, x, in, y, y_type,
                     out, b, NULL, 0, &done, stream, st))
            return -1;
        if (done) return 0;
    }
    /* The fp32 accumulators: y itself when it is fp32, else scratch. */
    float *acc = y_type == CUDA_R_32F ? (float *)y : scratch;
    if (!acc) return cuvae_fail(st, "linear forward: a bf16 output needs an fp32 scratch");
    if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, ab, w, in, x,
                 in, acc, CUDA_R_32F, out, NULL, NULL, 0, &done, stream, st))
        return -1;
    if (ctx->plan_only) return 0;
    size_t total = (size_t)B * (size_t)out;
    int grid = cuvae_grid_for(total, LINEAR_THREADS);
    if (y_type == CUDA_R_16BF)
        bias_act_kernel<cuvae_bf16><<<grid, LINEAR_THREADS, 0, stream>>>(
            acc, (const cuvae_bf16 *)b, (cuvae_bf16 *)y, total, out, relu);
    else
        bias_act_kernel<float><<<grid, LINEAR_THREADS, 0, stream>>>(acc, (const float *)b,
                                                                    (float *)y, total, out, relu);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_linear_backward(cuvae_cuda_ctx *ctx, cuvae_operand op, const void *x, const void *w,
                          const float *dy, const void *dy_op, int B, int in, int out, float *dw,
                          float *db, float *dx, void *dx_op, int x_relu,
                          const cuvae_relu_mask *x_mask, float *db_prev, cudaStream_t stream,
                          cuvae_status *st)
{
    if (check_shape("linear backward", B, in, out, st)) return -1;
    int bf16 = op == CUVAE_OPERAND_BF16;
    if (!bf16) dy_op = dy;
    if (!x || !w || !dy || !dy_op || !dw) return cuvae_fail(st, "linear backward: a NULL buffer");
    if (!bf16 && dx_op) return cuvae_fail(st, "linear backward: an operand copy of dx under fp32");
    if (db_prev && (!dx || !x_relu))
        return cuvae_fail(st, "linear backward: the previous layer's bias gradient needs dx of a "
                              "ReLU input");
    cudaDataType_t ab = cuvae_operand_type(op);
    int done = 0;
    /* dW^T [in,out] = X^T [in,B] . dY [B,out]; db from op(B) by BGRADB, so under bf16 it sums the
     * bf16 copy of dY (the unfused path below sums the fp32 dY: the two differ by bf16 rounding).
     */
    if (db && ctx->use_epilogues) {
        if (try_gemm(ctx, CUBLASLT_EPILOGUE_BGRADB, CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, ab, x, in,
                     dy_op, out, dw, CUDA_R_32F, in, db, NULL, 0, &done, stream, st))
            return -1;
    }
    if (!done) {
        if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, ab, x,
                     in, dy_op, out, dw, CUDA_R_32F, in, NULL, NULL, 0, &done, stream, st))
            return -1;
        if (db && !ctx->plan_only) {
            /* From the fp32 gradient, in order. */
            column_sum_kernel<<<cuvae_grid_for((size_t)out, LINEAR_THREADS), LINEAR_THREADS, 0,
                                stream>>>(dy, B, out, db);
            CUDA_CHECK_LAUNCH(st);
        }
    }
    if (!dx) return 0;
    /* dX^T [in,B] = W^T [in,out] . dY^T [out,B] in fp32; the ReLU mask of x has D's shape. */
    done = 0;
    if (x_relu && x_mask && x_mask->valid && ctx->use_epilogues) {
        int epi = db_prev ? CUBLASLT_EPILOGUE_DRELU_BGRAD : CUBLASLT_EPILOGUE_DRELU;
        if (try_gemm(ctx, epi, CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, ab, w, in, dy_op, out, dx,
                     CUDA_R_32F, in, db_prev, x_mask->bits, x_mask->ld, &done, stream, st))
            return -1;
    }
    size_t total = (size_t)B * (size_t)in;
    cuvae_bf16 *dx16 = (cuvae_bf16 *)dx_op;
    if (done) {
        if (dx16 && !ctx->plan_only && cuvae_bf16_from_f32(dx, dx16, total, stream, st)) return -1;
        return 0;
    }
    if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, ab, w, in,
                 dy_op, out, dx, CUDA_R_32F, in, NULL, NULL, 0, &done, stream, st))
        return -1;
    if (ctx->plan_only) return 0;
    if (x_relu) {
        int grid = cuvae_grid_for((size_t)in, LINEAR_THREADS);
        if (bf16) {
            if (!dx16)
                return cuvae_fail(st, "linear backward: a bf16 ReLU input needs its bf16 copy");
            relu_backward_kernel<cuvae_bf16><<<grid, LINEAR_THREADS, 0, stream>>>(
                dx, (const cuvae_bf16 *)x, B, in, db_prev, dx16);
        } else {
            relu_backward_kernel<float>
                <<<grid, LINEAR_THREADS, 0, stream>>>(dx, (const float *)x, B, in, db_prev, NULL);
        }
        CUDA_CHECK_LAUNCH(st);
    } else if (dx16 && cuvae_bf16_from_f32(dx, dx16, total, stream, st)) {
        return -1;
    }
    return 0;
}
