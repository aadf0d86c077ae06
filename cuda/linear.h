/* Linear layers on cuBLASLt: y [B, out] = x [B, in] . w^T + b (optionally ReLU) and its gradients,
 * with the bias, the ReLU and the bias gradients fused into the GEMM epilogues where cuBLASLt
 * offers them, and small kernels where it does not. One code path for every precision, chosen by
 * the operand type of the GEMMs (cuvae_operand):
 *   fp32 (train.precision fp32 or tf32; the context's compute type says which, see gemm.h):
 *        every operand, output and gradient in fp32.
 *   bf16: A and B of every GEMM in bf16 (weights from the bf16 shadow of the flat parameter
 *        buffer, activations and activation gradients as bf16 copies), fp32 accumulation
 *        (CUBLAS_COMPUTE_32F), fp32 weight and bias gradients. A hidden layer's output is bf16
 *        with a bf16 bias (the epilogue's bias has D's type); a stack's last output stays fp32
 *        with an fp32 bias, so that the losses and their gradients are computed in fp32.
 * C twins: cuvae_cpu_linear_forward, cuvae_cpu_linear_backward, cuvae_cpu_relu_backward (on
 * bf16-rounded operands under bf16, within the bf16 tolerances). All outputs are written ("="),
 * never accumulated. Batch layout is row-major, one example a row; weights are row-major
 * [out, in]. */
#ifndef CUVAE_CUDA_LINEAR_H
#define CUVAE_CUDA_LINEAR_H

#include <cuda_bf16.h>

#include "cuda_common.h"
#include "model.h"

typedef __nv_bfloat16 cuvae_bf16;

/* The operand type of the GEMMs' A and B (and of hidden layers' outputs). */
typedef enum { CUVAE_OPERAND_F32, CUVAE_OPERAND_BF16 } cuvae_operand;

/* cuBLASLt's data type of an operand type (CUDA_R_32F, CUDA_R_16BF). */
cudaDataType_t cuvae_operand_type(cuvae_operand op);

/* Bytes of one value of an operand type. */
size_t cuvae_operand_size(cuvae_operand op);

/* y [n] = bf16(x [n]), round to nearest even. */
int cuvae_bf16_from_f32(const float *x, cuvae_bf16 *y, size_t n, cudaStream_t stream,
                        cuvae_status *st);

/* y_op [n] = x [n] in operand type op: bf16(x) under bf16; nothing to do under fp32 (y_op is
 * then unused and may be NULL). With ctx->plan_only nothing is enqueued. */
int cuvae_operand_from_f32(cuvae_cuda_ctx *ctx, cuvae_operand op, const float *x, void *y_op,
                           size_t n, cudaStream_t stream, cuvae_status *st);

/* The ReLU bit-mask cuBLASLt writes in a forward GEMM (epilogue RELU_AUX_BIAS) and reads in the
 * backward GEMM of the next layer (DRELU_BGRAD). Its bit layout is cuBLASLt's own: only cuBLASLt
 * writes or reads it, and `valid` says whether the forward did write it; when not (epilogue
 * unavailable or disabled), the backward tests the ReLU output (x > 0) instead. */
typedef struct {
    void *bits; /* device, cuvae_relu_mask_bytes(B, out) bytes */
    int64_t ld; /* bits per example: out rounded up to a multiple of 128 */
    int valid;  /* set by cuvae_linear_forward */
} cuvae_relu_mask;

/* Bytes of the ReLU mask of a layer output [B, out]. */
size_t cuvae_relu_mask_bytes(int B, int out);

/* y [B, out] = x [B, in] . w^T [in, out] + b, then ReLU when relu. x and w are in operand type
 * op; y and b are in y_type (op's type, or CUDA_R_32F). When relu and mask is not NULL, the
 * forward also writes the ReLU mask if cuBLASLt can (mask->valid says whether it did). Without a
 * fused epilogue a plain GEMM writes fp32 accumulators, to y itself when it is fp32, else to
 * scratch (fp32 [B, out], overwritten), and a kernel adds the bias and rounds once. x and y must
 * not overlap. */
int cuvae_linear_forward(cuvae_cuda_ctx *ctx, cuvae_operand op, const void *x, const void *w,
                         const void *b, int B, int in, int out, int relu, void *y,
                         cudaDataType_t y_type, float *scratch, cuvae_relu_mask *mask,
                         cudaStream_t stream, cuvae_status *st);

/* Given dy [B, out] (fp32) and dy_op (its copy in operand type op; ignored under fp32, where the
 * GEMMs read dy), the gradient with respect to this layer's pre-activation output; x and w are in
 * op: dw [out, in] = dy^T . x              (always) db [out]     = sum over the batch of dy
 * (skipped when db is NULL: already computed by the next layer's fused epilogue, see db_prev) dx
 * [B, in]   = dy . w                (skipped when dx is NULL) When x_relu, x is the output of a
 * ReLU and dx becomes the gradient with respect to the previous layer's pre-activation: dx *= (x >
 * 0) (from x_mask when it is valid), and db_prev [in] (when not NULL) = sum over the batch of that
 * dx, i.e. the previous layer's bias gradient. When dx_op is not NULL (bf16 only), dx_op = bf16(dx)
 * for the previous layer's GEMMs; it may be dy_op (the GEMMs that read dy_op are enqueued before
 * anything writes dx_op). dy must not overlap dx. */
int cuvae_linear_backward(cuvae_cuda_ctx *ctx, cuvae_operand op, const void *x, const void *w,
                          const float *dy, const void *dy_op, int B, int in, int out, float *dw,
                          float *db, float *dx, void *dx_op, int x_relu,
                          const cuvae_relu_mask *x_mask, float *db_prev, cudaStream_t stream,
                          cuvae_status *st);

/* Releases the cached GEMM plans (descriptors, layouts, algorithms) of the context. */
void cuvae_linear_plans_release(cuvae_cuda_ctx *ctx);

#endif
