/* Linear layers on cuBLASLt: y [B, out] = x [B, in] . w^T + b (optionally ReLU) and its gradients,
 * with the bias, the ReLU and the bias gradients fused into the GEMM epilogues where cuBLASLt
 * offers them, and small kernels where it does not. C twins: cuvae_cpu_linear_forward,
 * cuvae_cpu_linear_backward, cuvae_cpu_relu_backward. All outputs are written ("="), never
 * accumulated. Batch layout is row-major, one example a row; weights are row-major [out, in]. */
#ifndef CUVAE_CUDA_LINEAR_H
#define CUVAE_CUDA_LINEAR_H

#include "cuda_common.h"
#include "model.h"

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

/* y [B, out] = x [B, in] . w^T [in, out] + b, then ReLU when relu. When relu and mask is not
 * NULL, the forward also writes the ReLU mask if cuBLASLt can (mask->valid says whether it did).
 * x and y must not overlap. */
int cuvae_linear_forward(cuvae_cuda_ctx *ctx, const float *x, const float *w, const float *b, int B,
                         int in, int out, int relu, float *y, cuvae_relu_mask *mask,
                         cudaStream_t stream, cuvae_status *st);

/* Given dy [B, out], the gradient with respect to this layer's pre-activation output:
 *   dw [out, in] = dy^T . x              (always)
 *   db [out]     = sum over the batch of dy   (skipped when db is NULL: already computed by the
 *                                          next layer's fused epilogue, see db_prev)
 *   dx [B, in]   = dy . w                (skipped when dx is NULL)
 * When x_relu, x is the output of a ReLU and dx becomes the gradient with respect to the previous
 * layer's pre-activation: dx *= (x > 0) (from x_mask when it is valid), and db_prev [in] (when not
 * NULL) = sum over the batch of that dx, i.e. the previous layer's bias gradient.
 * dy must not overlap dx. */
int cuvae_linear_backward(cuvae_cuda_ctx *ctx, const float *x, const float *w, const float *dy,
                          int B, int in, int out, float *dw, float *db, float *dx, int x_relu,
                          const cuvae_relu_mask *x_mask, float *db_prev, cudaStream_t stream,
                          cuvae_status *st);

/* An MLP's forward over layers[0..n_layers) of the flat parameter buffer params: ReLU after every
 * layer but the last. act[i] [B, layers[i].out] receives layer i's output (consecutive layers must
 * not share a buffer); masks (NULL, or one per layer, the last unused) receive the ReLU masks for
 * the backward. x [B, layers[0].in]. */
int cuvae_mlp_forward(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                      const float *params, const float *x, int B, float *const *act,
                      cuvae_relu_mask *masks, cudaStream_t stream, cuvae_status *st);

/* The backward of cuvae_mlp_forward. dy [B, layers[n-1].out] holds the gradient with respect to
 * the last layer's output; every layer's weight and bias gradients are written into grads (the
 * flat layout of params). act and masks are the forward's; x is its input. dy and scratch (each
 * [B, widest layer]) are used in turn, so both are overwritten. Layer i > 0 also produces layer
 * i-1's bias gradient (its input is that layer's ReLU output). *result is the buffer holding the
 * gradient with respect to x when want_dx, else NULL (an encoder's input is data). */
int cuvae_mlp_backward(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                       const float *params, float *grads, const float *x, int B, float *const *act,
                       const cuvae_relu_mask *masks, float *dy, float *scratch, int want_dx,
                       float **result, cudaStream_t stream, cuvae_status *st);

/* Releases the cached GEMM plans (descriptors, layouts, algorithms) of the context. */
void cuvae_linear_plans_release(cuvae_cuda_ctx *ctx);

#endif
