/* The CUDA backend's layer kinds and its one stack loop per direction, the twin of
 * host/cpu/cpu_layers.c. Each kind of the model's layer table (model.h) has a row: forward,
 * backward and the scratch its calls need; the loops run an encoder or decoder stack through those
 * rows in any operand type (linear.h: fp32, which is also tf32, or bf16). Only linear is
 * implemented: cuvae_cuda_layer_ops says NULL for the others, and the backend refuses them at
 * creation. A new kind adds its row here (and its launchers, like linear.cu).
 *
 * Activations: act[i] [B, layers[i].out] holds layer i's output, in the operand type for every
 * layer but the last, in fp32 for the last (a stack's last outputs, [mu | logvar] and the logits,
 * stay fp32 so that the losses run in fp32). Parameters: params is the fp32 flat buffer,
 * params_op its copy in the operand type (the bf16 shadow; NULL under fp32, where params is
 * read); an fp32 output takes its bias from params, an operand-type one from params_op. Every
 * weight and bias gradient is written ("=") into grads (fp32, the flat layout). */
#ifndef CUVAE_CUDA_LAYERS_H
#define CUVAE_CUDA_LAYERS_H

#include "cuda_common.h"
#include "linear.h"
#include "model.h"

/* One layer kind's calls. w_src is the parameter buffer the GEMMs read (params, or params_op
 * under bf16), b_src the one holding y's bias (y_type's); the conventions of the arguments are
 * those of cuvae_linear_forward and cuvae_linear_backward (a conv row's are cuvae_conv_forward's
 * and cuvae_conv_backward's, which may also rewrite dy_op under bf16: see conv.h).
 * scratch_floats is the fp32 scratch a forward of `rows` rows in operand type op needs (y_type
 * its output's type). */
typedef struct {
    int (*forward)(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l, const void *w_src,
                   const void *b_src, const void *x, int rows, void *y, cudaDataType_t y_type,
                   float *scratch, cuvae_relu_mask *mask, cudaStream_t stream, cuvae_status *st);
    int (*backward)(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l, const void *w_src,
                    float *grads, const void *x, const float *dy, const void *dy_op, int rows,
                    float *dx, void *dx_op, int x_relu, const cuvae_relu_mask *x_mask, int db_done,
                    float *db_prev, cudaStream_t stream, cuvae_status *st);
    size_t (*scratch_floats)(const cuvae_layer *l, int rows, cuvae_operand op,
                             cudaDataType_t y_type);
} cuvae_cuda_layer_kind_ops;

/* The row of a layer kind; NULL for a kind the CUDA backend does not implement. */
const cuvae_cuda_layer_kind_ops *cuvae_cuda_layer_ops(cuvae_layer_kind kind);

/* Why the CUDA backend cannot run a layer kind ("conv2d layers need cuDNN 9, which this build
 * was made without"), or NULL when it can. */
const char *cuvae_cuda_layer_missing(cuvae_layer_kind kind);

/* The fp32 scratch (floats) the forward of a stack of n_layers needs for `rows` rows in operand
 * type op: the most any of its layers needs. */
size_t cuvae_stack_scratch_floats(const cuvae_layer *layers, int n_layers, int rows,
                                  cuvae_operand op);

/* A stack's forward over layers[0..n_layers): x [B, layers[0].in] in the operand type; act as
 * the top comment says (consecutive layers must not share a buffer). scratch (fp32,
 * cuvae_stack_scratch_floats; may be NULL when that is 0) is overwritten. masks (NULL, or one per
 * layer) receive the ReLU masks of the layers with a ReLU, for the backward. */
int cuvae_stack_forward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *layers,
                        int n_layers, const float *params, const void *params_op, const void *x,
                        int B, void *const *act, float *scratch, cuvae_relu_mask *masks,
                        cudaStream_t stream, cuvae_status *st);

/* The backward of cuvae_stack_forward. dy [B, layers[n-1].out] (fp32) holds the gradient with
 * respect to the last layer's output and, under bf16, dy_op (room for [B, widest layer]) its bf16
 * copy (NULL under fp32). dy and scratch (fp32, each [B, widest layer]) are used in turn and
 * dy_op is rewritten with each layer's input gradient, so all are overwritten. A layer whose
 * input is the ReLU output of a layer with one bias per output value (a linear one) also
 * produces that layer's bias gradient; a conv layer sums its own. x, act and masks are
 * the forward's. *result is the fp32 buffer holding the gradient with respect to x when want_dx,
 * else NULL (an encoder's input is data). */
int cuvae_stack_backward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *layers,
                         int n_layers, const float *params, const void *params_op, float *grads,
                         const void *x, int B, void *const *act, const cuvae_relu_mask *masks,
                         float *dy, void *dy_op, float *scratch, int want_dx, float **result,
                         cudaStream_t stream, cuvae_status *st);

#endif
