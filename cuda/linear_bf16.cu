/* The bf16 MLP halves of the training step (see linear_bf16.h). Every output is written ("="):
 * the GEMMs run with beta = 0 and the bias gradients are overwritten.
 *
 * The GEMMs are linear.cu's, with bf16 A and B: hidden forward outputs are bf16 (they only feed
 * GEMMs, and the ReLU test of the fallback below), the halves' last outputs and every gradient
 * GEMM's output are fp32. Where cuBLASLt offers no fused epilogue for these types, a plain GEMM
 * and the kernels below do the same arithmetic, in fp32, rounding to bf16 once at the end: a hidden
 * layer's plain GEMM writes its fp32 accumulators to a scratch buffer, not to the bf16 output, so
 * that the bias is added before the one rounding (as the epilogue adds it). */
#include "linear_bf16.h"

#include "gemm.h"

#define BF16_THREADS 256

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

/* y [B, out] = acc + b, then ReLU: the epilogue of a plain GEMM, for a bf16 output with a bf16
 * bias or an fp32 output with an fp32 bias (the bias the epilogue would add), the addition in fp32
 * from the fp32 accumulators acc (which may be y when y is fp32). NaN passes through, as in
 * linear.cu. */
template <typename T>
static __global__ void bias_act_kernel(const float *acc, const T *b, T *y, size_t total, int out,
                                       int relu)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = acc[i] + to_f32(b[i % (size_t)out]);
        store_f32(y, i, relu && v < 0.0f ? 0.0f : v);
    }
}

/* db [n] = sum over the B rows of dy [B, n] (fp32); one thread per column, rows in order, in
 * double: linear.cu's column sums. */
static __global__ void column_sum_kernel(const float *dy, int B, int n, float *db)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    double s = 0.0;
    for (int b = 0; b < B; b++) s += (double)dy[(size_t)b * (size_t)n + (size_t)o];
    db[o] = (float)s;
}

/* dx [B, n] *= (x16 > 0) (x16 is the bf16 ReLU output), dx16 = bf16(dx) and, when db is not
 * NULL, db [n] = the column sums of dx; one thread per column, rows in order. */
static __global__ void relu_backward_kernel(float *dx, const cuvae_bf16 *x16, int B, int n,
                                            float *db, cuvae_bf16 *dx16)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    double s = 0.0;
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)b * (size_t)n + (size_t)o;
        float v = __bfloat162float(x16[i]) > 0.0f ? dx[i] : 0.0f;
        dx[i] = v;
        dx16[i] = __float2bfloat16_rn(v);
        s += (double)v;
    }
    if (db) db[o] = (float)s;
}

/* ---- launchers ------------------------------------------------------------------------------- */

int cuvae_bf16_from_f32(const float *x, cuvae_bf16 *y, size_t n, cudaStream_t stream,
                        cuvae_status *st)
{
    if (!x || !y) return cuvae_fail(st, "bf16 conversion: a NULL buffer");
    if (n == 0) return 0;
    bf16_from_f32_kernel<<<cuvae_grid_for(n, BF16_THREADS), BF16_THREADS, 0, stream>>>(x, y, n);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

static int try_gemm(cuvae_cuda_ctx *ctx, int epilogue, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, const cuvae_bf16 *A, int64_t lda, const cuvae_bf16 *B,
                    int64_t ldb, void *D, cudaDataType_t d_type, int64_t ldd, const void *bias,
                    const void *aux, int64_t aux_ld, int *done, cudaStream_t stream,
                    cuvae_status *st)
{
    cuvae_gemm g = {epilogue, ta,          tb,  m, n,      k,   A,    CUDA_R_16BF, lda,
                    B,        CUDA_R_16BF, ldb, D, d_type, ldd, bias, aux,         aux_ld};
    return cuvae_gemm_try(ctx, &g, done, stream, st);
}

/* One layer: y [B, out] = x16 . w16^T + bias, then ReLU when relu; y is bf16 (y_type CUDA_R_16BF,
 * bias b16) or fp32 (CUDA_R_32F, bias b32). The fallback adds the same bias to fp32 accumulators:
 * in y itself when it is fp32, in scratch [B, out] when y is bf16. */
static int layer_forward(cuvae_cuda_ctx *ctx, const cuvae_bf16 *x16, const cuvae_bf16 *w16,
                         const cuvae_bf16 *b16, const float *b32, int B, int in, int out, int relu,
                         void *y, cudaDataType_t y_type, float *scratch, cuvae_relu_mask *mask,
                         cudaStream_t stream, cuvae_status *st)
{
    const void *bias = y_type == CUDA_R_16BF ? (const void *)b16 : (const void *)b32;
    if (mask) {
        mask->valid = 0;
        mask->ld = ((int64_t)out + 127) / 128 * 128;
    }
    int done = 0;
    /* Y^T [out,B] = W [out,in] . X^T [in,B] (linear.cu's top comment). */
    if (ctx->use_epilogues) {
        if (relu && mask && mask->bits) {
            if (try_gemm(ctx, CUBLASLT_EPILOGUE_RELU_AUX_BIAS, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in,
                         w16, in, x16, in, y, y_type, out, bias, mask->bits, mask->ld, &done,
                         stream, st))
                return -1;
            if (done) {
                mask->valid = 1;
                return 0;
            }
        }
        int epi = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
        if (try_gemm(ctx, epi, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, w16, in, x16, in, y, y_type,
                     out, bias, NULL, 0, &done, stream, st))
            return -1;
        if (done) return 0;
    }
    float *acc = y_type == CUDA_R_16BF ? scratch : (float *)y;
    if (!acc) return cuvae_fail(st, "bf16 linear forward: a bf16 output needs an fp32 scratch");
    if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, w16, in, x16,
                 in, acc, CUDA_R_32F, out, NULL, NULL, 0, &done, stream, st))
        return -1;
    if (ctx->plan_only) return 0;
    size_t total = (size_t)B * (size_t)out;
    int grid = cuvae_grid_for(total, BF16_THREADS);
    if (y_type == CUDA_R_16BF)
        bias_act_kernel<cuvae_bf16>
            <<<grid, BF16_THREADS, 0, stream>>>(acc, b16, (cuvae_bf16 *)y, total, out, relu);
    else
        bias_act_kernel<float>
            <<<grid, BF16_THREADS, 0, stream>>>(acc, b32, (float *)y, total, out, relu);
    CUDA_CHECK_LAUNCH(st);
    return 0;
}

int cuvae_mlp_forward_bf16(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                           const float *params, const cuvae_bf16 *params16, const cuvae_bf16 *x16,
                           int B, cuvae_bf16 *const *act16, float *out, float *scratch,
                           cuvae_relu_mask *masks, cudaStream_t stream, cuvae_status *st)
{
    if (n_layers < 1) return cuvae_fail(st, "bf16 mlp forward: no layers");
    if (B < 1) return cuvae_fail(st, "bf16 mlp forward: batch %d: expected positive", B);
    if (!layers || !params || !params16 || !x16 || !out || (n_layers > 1 && (!act16 || !scratch)))
        return cuvae_fail(st, "bf16 mlp forward: a NULL buffer");
    const cuvae_bf16 *in = x16;
    for (int i = 0; i < n_layers; i++) {
        const cuvae_layer *l = &layers[i];
        int hidden = i + 1 < n_layers;
        if (hidden && !act16[i]) return cuvae_fail(st, "bf16 mlp forward: layer %d: no output", i);
        if (layer_forward(ctx, in, params16 + l->w, params16 + l->b, params + l->b, B, l->in,
                          l->out, hidden, hidden ? (void *)act16[i] : (void *)out,
                          hidden ? CUDA_R_16BF : CUDA_R_32F, scratch,
                          hidden && masks ? &masks[i] : NULL, stream, st))
            return cuvae_fail_prefix(st, "layer %d (bf16)", i);
        if (hidden) in = act16[i];
    }
    return 0;
}

/* One layer's backward (the conventions of cuvae_linear_backward): dw [out, in] = dy16^T . x16,
 * db [out] (unless NULL), and when dx: dx [B, in] = dy16 . w16, masked and with db_prev when
 * x_relu, then dx16 = bf16(dx) when dx16 is not NULL. dy16 may be dx16: the GEMMs that read it
 * are enqueued before anything writes it. */
static int layer_backward(cuvae_cuda_ctx *ctx, const cuvae_bf16 *x16, const cuvae_bf16 *w16,
                          const float *dy, const cuvae_bf16 *dy16, int B, int in, int out,
                          float *dw, float *db, float *dx, cuvae_bf16 *dx16, int x_relu,
                          const cuvae_relu_mask *x_mask, float *db_prev, cudaStream_t stream,
                          cuvae_status *st)
{
    int done = 0;
    /* dW^T [in,out] = X^T [in,B] . dY [B,out]; db from op(B) by BGRADB, so it sums the bf16 copy
     * of dY (the unfused path below sums the fp32 dY: the two differ by bf16 rounding). */
    if (db && ctx->use_epilogues) {
        if (try_gemm(ctx, CUBLASLT_EPILOGUE_BGRADB, CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, x16, in,
                     dy16, out, dw, CUDA_R_32F, in, db, NULL, 0, &done, stream, st))
            return -1;
    }
    if (!done) {
        if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, x16, in,
                     dy16, out, dw, CUDA_R_32F, in, NULL, NULL, 0, &done, stream, st))
            return -1;
        if (db && !ctx->plan_only) {
            /* From the fp32 gradient, in order. */
            column_sum_kernel<<<cuvae_grid_for((size_t)out, BF16_THREADS), BF16_THREADS, 0,
                                stream>>>(dy, B, out, db);
            CUDA_CHECK_LAUNCH(st);
        }
    }
    if (!dx) return 0;
    /* dX^T [in,B] = W^T [in,out] . dY^T [out,B] in fp32; the ReLU mask of x has D's shape. */
    done = 0;
    if (x_relu && x_mask && x_mask->valid && ctx->use_epilogues) {
        int epi = db_prev ? CUBLASLT_EPILOGUE_DRELU_BGRAD : CUBLASLT_EPILOGUE_DRELU;
        if (try_gemm(ctx, epi, CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, w16, in, dy16, out, dx,
                     CUDA_R_32F, in, db_prev, x_mask->bits, x_mask->ld, &done, stream, st))
            return -1;
    }
    size_t total = (size_t)B * (size_t)in;
    if (done) {
        if (dx16 && !ctx->plan_only && cuvae_bf16_from_f32(dx, dx16, total, stream, st)) return -1;
        return 0;
    }
    if (try_gemm(ctx, CUBLASLT_EPILOGUE_DEFAULT, CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, w16, in,
                 dy16, out, dx, CUDA_R_32F, in, NULL, NULL, 0, &done, stream, st))
        return -1;
    if (ctx->plan_only) return 0;
    if (x_relu) {
        if (!dx16) return cuvae_fail(st, "bf16 linear backward: a ReLU input needs its bf16 copy");
        relu_backward_kernel<<<cuvae_grid_for((size_t)in, BF16_THREADS), BF16_THREADS, 0, stream>>>(
            dx, x16, B, in, db_prev, dx16);
        CUDA_CHECK_LAUNCH(st);
    } else if (dx16 && cuvae_bf16_from_f32(dx, dx16, total, stream, st)) {
        return -1;
    }
    return 0;
}

int cuvae_mlp_backward_bf16(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                            const cuvae_bf16 *params16, float *grads, const cuvae_bf16 *x16, int B,
                            cuvae_bf16 *const *act16, const cuvae_relu_mask *masks, float *dy,
                            cuvae_bf16 *dy16, float *scratch, int want_dx, float **result,
                            cudaStream_t stream, cuvae_status *st)
{
    float *dx = scratch;
    int db_done = 0; /* this layer's bias gradient came with the next layer's backward */
    if (!result) return cuvae_fail(st, "bf16 mlp backward: no result pointer");
    *result = NULL;
    if (n_layers < 1) return cuvae_fail(st, "bf16 mlp backward: no layers");
    if (B < 1) return cuvae_fail(st, "bf16 mlp backward: batch %d: expected positive", B);
    if (!layers || !params16 || !grads || !x16 || !dy || !dy16 || !scratch ||
        (n_layers > 1 && !act16))
        return cuvae_fail(st, "bf16 mlp backward: a NULL buffer");
    for (int i = n_layers - 1; i >= 0; i--) {
        const cuvae_layer *l = &layers[i];
        int hidden_input = i > 0;
        int need_dx = hidden_input || want_dx;
        /* The previous layer's GEMMs read the input gradient in bf16; the decoder's dz goes to
         * the reparameterization's backward in fp32 only. */
        if (layer_backward(ctx, hidden_input ? act16[i - 1] : x16, params16 + l->w, dy, dy16, B,
                           l->in, l->out, grads + l->w, db_done ? NULL : grads + l->b,
                           need_dx ? dx : NULL, hidden_input ? dy16 : NULL, hidden_input,
                           hidden_input && masks ? &masks[i - 1] : NULL,
                           hidden_input ? grads + layers[i - 1].b : NULL, stream, st))
            return cuvae_fail_prefix(st, "layer %d backward (bf16)", i);
        db_done = hidden_input;
        if (!need_dx) return 0;
        float *t = dy;
        dy = dx;
        dx = t;
    }
    *result = dy;
    return 0;
}
