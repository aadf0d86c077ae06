/* Convolutional layers on cuDNN 9: conv2d and conv_transpose2d (model.h's CUVAE_LAYER_CONV2D and
 * CUVAE_LAYER_CONV_TRANSPOSE2D), forward and backward (weight, bias and input gradients), in the
 * operand types of linear.h:
 *   fp32 operands: every tensor fp32; under train.precision fp32 only FMA algorithms
 *        (CUDNN_FMA_MATH: no TF32), under tf32 tensor-op math is allowed (TF32 tensor cores),
 *        as ctx->compute says for the GEMMs.
 *   bf16 operands: x, w, y and dy in bf16 (CUDNN_DATA_BFLOAT16) with fp32 accumulation
 *        (cuDNN's bf16 configuration, whose tensors share one type). So what cuDNN writes is
 *        bf16 and is widened where fp32 is wanted: an fp32 output (a stack's last layer) and
 *        the fp32 input gradient are bf16-rounded values; the weight gradient is bf16-rounded
 *        before it lands in the fp32 gradients. Bias and bias gradients are added and summed in
 *        fp32 by the kernels of conv.cu.
 * Activations are [B, C*H*W] per example, NCHW. Weights: conv2d [out_c, in_c, k, k],
 * conv_transpose2d [in_c, out_c, k, k] (PyTorch's layouts); biases [out_c]. C twins:
 * cuvae_cpu_conv_forward and cuvae_cpu_conv_backward (host/cpu/cpu_conv.c, the CPU backend's
 * conv rows). Every output is written ("="), never accumulated.
 *
 * Plans: the descriptors and the three algorithms of a shape (rows, geometry, data type, math)
 * are chosen once, by cuDNN's heuristics (cudnnGet*Algorithm_v7), preferring deterministic
 * algorithms (see conv.cu), and cached in the context. Without cuDNN in the build
 * (CUVAE_HAVE_CUDNN unset) every launcher fails with a message naming cuDNN. */
#ifndef CUVAE_CUDA_CONV_H
#define CUVAE_CUDA_CONV_H

#include "cuda_common.h"
#include "linear.h"
#include "model.h"

/* The workspace every cuDNN call of a context shares, allocated once at the first conv plan;
 * algorithms needing more are not chosen. */
#define CUVAE_CONV_WORKSPACE_BYTES ((size_t)128 << 20)

/* 1 when this build runs convolutions (it was built with cuDNN). */
int cuvae_conv_built(void);

/* The fp32 scratch (floats) cuvae_conv_forward needs for `rows` rows: room for the bf16 result
 * of a bf16-operand convolution whose output is fp32; 0 otherwise. */
size_t cuvae_conv_scratch_floats(const cuvae_layer *l, int rows, cuvae_operand op,
                                 cudaDataType_t y_type);

/* y [B, l->out] = conv(x [B, l->in]) + b, then ReLU when l->act says so. x and w are in operand
 * type op, y and b in y_type (op's type, or fp32). scratch: cuvae_conv_scratch_floats floats
 * (may be NULL when that is 0). A ReLU mask, when given, is marked not valid (its bits are
 * cuBLASLt's, which a convolution does not write): the layer after tests x > 0 instead. x and y
 * must not overlap. With ctx->plan_only the plan is chosen and nothing is enqueued. */
int cuvae_conv_forward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l, const void *x,
                       const void *w, const void *b, int B, void *y, cudaDataType_t y_type,
                       float *scratch, cuvae_relu_mask *mask, cudaStream_t stream,
                       cuvae_status *st);

/* Given dy [B, l->out] (fp32, the gradient w.r.t. the pre-activation output) and, under bf16,
 * dy_op = bf16(dy): dw [w_count] (always), db [out_c] = sums of dy over the batch and the pixels
 * (skipped when NULL), and dx [B, l->in] (fp32; skipped when NULL). When x_relu, x is a ReLU's
 * output and dx is masked by x > 0; db_prev (when not NULL) [l->in] = the sums of that masked dx
 * over the batch: the bias gradient of a previous layer with one bias per value (a linear one).
 * Under bf16, dx_op (when not NULL) = bf16(dx) for the previous layer; dx_op may be dy_op, and
 * when dx_op is NULL, dy_op is overwritten the same way (it stages the input gradient): every
 * read of dy_op is enqueued first. dy must not overlap dx. */
int cuvae_conv_backward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l, const void *x,
                        const void *w, const float *dy, void *dy_op, int B, float *dw, float *db,
                        float *dx, void *dx_op, int x_relu, float *db_prev, cudaStream_t stream,
                        cuvae_status *st);

/* Writes one line per cached plan into buf: its geometry, rows and type, and the algorithm, math
 * type, workspace and determinism chosen in each direction ("" when there are none). */
void cuvae_conv_plans_describe(const cuvae_cuda_ctx *ctx, char *buf, size_t len);

/* Releases the plans, the workspace and the cuDNN handle of the context (safe when none). */
void cuvae_conv_release(cuvae_cuda_ctx *ctx);

#endif
