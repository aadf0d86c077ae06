/* The MLP halves of the training step under train.precision = bf16: GEMM operands in bf16
 * (weights from a bf16 shadow of the flat parameter buffer that the optimizer refreshes in the
 * same pass as the update; activations and activation gradients as bf16 copies), fp32
 * accumulation (CUBLAS_COMPUTE_32F), fp32 weight and bias gradients, fp32 master weights.
 *
 *   forward  hidden layer: y16 [B, out] bf16 = relu(x16 . w16^T + b16)   (bias from the shadow,
 *                          the epilogue's bias having D's type), with the ReLU mask
 *            last layer:   y [B, out] fp32 = x16 . w16^T + b             (fp32 bias: the
 *                          encoder's [mu | logvar] and the decoder's logits stay fp32, so that
 *                          the losses and their gradients are computed in fp32)
 *   backward dW [out, in] fp32 = dy16^T . x16,  db fp32 (BGRADB, or the column sums of dy)
 *            dx [B, in] fp32 = dy16 . w16 (masked by the ReLU, with the previous layer's bias
 *            gradient), then dx16 = bf16(dx) for the previous layer's GEMMs.
 * The same row-major/column-major mapping as linear.cu. C twins: the fp32 ones
 * (cuvae_cpu_linear_forward/backward, cuvae_cpu_relu_backward) on bf16-rounded operands, within
 * the bf16 tolerances. Every output is written ("="). */
#ifndef CUVAE_CUDA_LINEAR_BF16_H
#define CUVAE_CUDA_LINEAR_BF16_H

#include <cuda_bf16.h>

#include "cuda_common.h"
#include "linear.h"
#include "model.h"

typedef __nv_bfloat16 cuvae_bf16;

/* y [n] = bf16(x [n]), round to nearest even. */
int cuvae_bf16_from_f32(const float *x, cuvae_bf16 *y, size_t n, cudaStream_t stream,
                        cuvae_status *st);

/* An MLP's forward in bf16 over layers[0..n_layers): x16 [B, layers[0].in]; act16[i]
 * [B, layers[i].out] receives hidden layer i's output (i < n_layers - 1; consecutive layers must
 * not share a buffer); out [B, layers[n-1].out] the last layer's, in fp32. params is the fp32
 * flat buffer (the last layer's bias is read from it), params16 its bf16 shadow. scratch (fp32,
 * [B, widest hidden layer]; may be NULL for a single layer) holds a hidden layer's accumulators
 * where no fused epilogue runs, and is overwritten. masks (NULL, or one per layer, the last
 * unused) receive the ReLU masks. */
int cuvae_mlp_forward_bf16(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                           const float *params, const cuvae_bf16 *params16, const cuvae_bf16 *x16,
                           int B, cuvae_bf16 *const *act16, float *out, float *scratch,
                           cuvae_relu_mask *masks, cudaStream_t stream, cuvae_status *st);

/* The backward of cuvae_mlp_forward_bf16. dy [B, layers[n-1].out] (fp32) and dy16 (its bf16
 * copy, room for [B, widest layer]) hold the gradient with respect to the last layer's output;
 * every layer's weight and bias gradients are written into grads (fp32, the flat layout). dy and
 * scratch (fp32, each [B, widest layer]) are used in turn and dy16 is rewritten with each
 * layer's input gradient, so all three are overwritten. *result is the fp32 buffer holding the
 * gradient with respect to the input when want_dx (the decoder's dz), else NULL. */
int cuvae_mlp_backward_bf16(cuvae_cuda_ctx *ctx, const cuvae_layer *layers, int n_layers,
                            const cuvae_bf16 *params16, float *grads, const cuvae_bf16 *x16, int B,
                            cuvae_bf16 *const *act16, const cuvae_relu_mask *masks, float *dy,
                            cuvae_bf16 *dy16, float *scratch, int want_dx, float **result,
                            cudaStream_t stream, cuvae_status *st);

#endif
