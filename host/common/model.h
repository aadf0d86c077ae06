/* The VAE as a table of layers, and its one flat parameter layout derived from that table.
 * The encoder and the decoder are lists of layers (cuvae_stack); each layer (cuvae_layer) says
 * its kind, its input and output shapes, its activation and where its weight and bias sit in the
 * flat buffer. Tensor names, shapes, initialisation fan-in, FLOP counts, activation sizes and the
 * checkpoint's tensors all come from that table. Parameters, gradients and Adam's m and v use
 * the layout; the checkpoint's tensors are views into it, in this order:
 *   encoder.0.weight, encoder.0.bias, ..., encoder.{n}.bias, decoder.0.weight, ...,
 * decoder.{n}.bias. Linear weights are row-major [out, in] like torch.nn.Linear. The encoder's last
 * layer outputs [mu (latent) | log sigma^2 (latent)]; the decoder's last layer outputs logits
 * (Bernoulli) or means (Gaussian). Hidden layers use ReLU. */
#ifndef CUVAE_MODEL_H
#define CUVAE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUVAE_MAX_LAYERS (CUVAE_MAX_HIDDEN + 1)
#define CUVAE_MAX_TENSORS (4 * CUVAE_MAX_LAYERS)
#define CUVAE_MAX_DIMS 4 /* a tensor's dimensions: [out, in] today, [out, in, kh, kw] for conv */

/* Layer kinds. conv2d's weight is [out, in, kh, kw] and conv_transpose2d's [in, out, kh, kw]
 * (torch.nn.Conv2d's and ConvTranspose2d's layouts), their bias [out channels]; activations are
 * [rows, C*H*W] per example in C, H, W order (NCHW), so a linear layer after a conv sees
 * torch's flatten(1) of the NCHW tensor. */
typedef enum {
    CUVAE_LAYER_LINEAR,
    CUVAE_LAYER_CONV2D,
    CUVAE_LAYER_CONV_TRANSPOSE2D,
    CUVAE_LAYER_KINDS
} cuvae_layer_kind;

typedef enum { CUVAE_ACT_NONE, CUVAE_ACT_RELU } cuvae_activation;

/* The shape of one example: channels x height x width. A flat vector of n features is n x 1 x 1. */
typedef struct {
    int c, h, w;
} cuvae_shape;

typedef struct {
    cuvae_layer_kind kind;
    cuvae_shape in_shape, out_shape;
    int in, out;                 /* values per example in and out (c*h*w of the shapes) */
    int kernel, stride, padding; /* conv kinds; 0 for linear */
    cuvae_activation act;        /* applied to the output */
    int fan_in;                  /* inputs each output sees: the init's bound */
    double macs;                 /* multiply-adds of the forward pass per example */
    size_t w;                    /* offset of the weight in the flat buffer */
    size_t b;                    /* offset of the bias */
    int w_ndim;
    int64_t w_shape[CUVAE_MAX_DIMS]; /* linear: [out, in]; conv2d: [out_c, in_c, k, k];
                                        conv_transpose2d: [in_c, out_c, k, k] */
    size_t w_count, b_count;         /* values of the weight and of the bias ([b_count]) */
} cuvae_layer;

/* One half of the VAE: its layers in the order the forward pass runs them. */
typedef struct {
    int n;
    cuvae_layer layer[CUVAE_MAX_LAYERS];
} cuvae_stack;

typedef struct {
    cuvae_shape x_shape; /* one example of the data */
    int x_dim, latent;   /* x_dim = c*h*w of x_shape */
    cuvae_stack enc, dec;
    size_t n_params;
    cuvae_likelihood likelihood;
    float gaussian_sigma;
} cuvae_model;

typedef struct {
    char name[32]; /* "encoder.0.weight" */
    int ndim;      /* 1 to CUVAE_MAX_DIMS */
    int64_t shape[CUVAE_MAX_DIMS];
    size_t offset; /* in floats, into the flat buffer */
    size_t count;
} cuvae_tensor_info;

/* The shape assumed for data whose layout is not known (checkpoints written before the input
 * shape was recorded): one channel, square when x_dim is a perfect square (28x28 for 784),
 * otherwise one row of x_dim values. */
cuvae_shape cuvae_shape_default(int x_dim);

int cuvae_shape_equal(cuvae_shape a, cuvae_shape b);

/* Conv kinds' kernel, stride and padding bounds (cuvae_layer_make refuses others). */
#define CUVAE_CONV_MAX_KERNEL 64
#define CUVAE_CONV_MAX_STRIDE 64

/* One layer of `kind` on input shape `in`: out_c output channels (linear: output features, the
 * output shape flat, k/s/p ignored), kernel k, stride s, padding p, activation act; its weight at
 * offset 0 of a flat buffer and its bias right after. conv2d: out = (H + 2p - k) / s + 1;
 * conv_transpose2d: out = (H - 1) s - 2p + k. Shapes that cannot be built fail with the sizes
 * (the caller names the layer). */
int cuvae_layer_make(cuvae_layer *l, cuvae_layer_kind kind, cuvae_shape in, int out_c, int k, int s,
                     int p, cuvae_activation act, cuvae_status *st);

/* "linear", "conv2d", "conv_transpose2d". */
const char *cuvae_layer_kind_name(cuvae_layer_kind kind);

/* Layout from the config's [model] section and the shape of one example of the data. */
int cuvae_model_layout_shape(cuvae_model *m, const cuvae_config *c, cuvae_shape x,
                             cuvae_status *st);

/* The same for x_dim values per example of the default shape (cuvae_shape_default). */
int cuvae_model_layout(cuvae_model *m, const cuvae_config *c, int x_dim, cuvae_status *st);

/* The stack of a half: 0 the encoder, 1 the decoder. */
const cuvae_stack *cuvae_model_stack(const cuvae_model *m, int decoder);

/* The widest activation of one example over both stacks (inputs and outputs of every layer): the
 * size of a buffer any layer's input or output fits in. */
int cuvae_model_max_width(const cuvae_model *m);

/* Number of tensors and their names/shapes/offsets in flat-buffer order. */
int cuvae_model_tensors(const cuvae_model *m, cuvae_tensor_info *out /* [CUVAE_MAX_TENSORS] */);

/* torch.nn.Linear-style init: weight and bias uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)),
 * drawn from (seed, CUVAE_STREAM_INIT, counter = tensor index, element = value index). */
void cuvae_model_init(const cuvae_model *m, uint64_t seed, float *params /* [n_params] */);

/* Floating-point operations of one training step on a batch (forward + backward, GEMMs only). */
double cuvae_model_train_flops(const cuvae_model *m, int batch);

#ifdef __cplusplus
}
#endif
#endif
