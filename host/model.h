/* The VAE's shape and its one flat parameter layout. Parameters, gradients and Adam's m and v all
 * use this layout; the checkpoint's tensors are views into it, in this order:
 *   encoder.0.weight [h1, x_dim], encoder.0.bias [h1], ..., encoder.{n}.weight [2*latent, h_n],
 *   encoder.{n}.bias [2*latent], decoder.0.weight [h_n, latent], ..., decoder.{n}.bias [x_dim].
 * Weights are row-major [out, in] like torch.nn.Linear. The encoder's last layer outputs
 * [mu (latent) | log sigma^2 (latent)]; the decoder's last layer outputs logits (Bernoulli) or
 * means (Gaussian). Hidden layers use ReLU. */
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

typedef struct {
    int in, out;
    size_t w; /* offset of weight [out, in] in the flat buffer */
    size_t b; /* offset of bias [out] */
} cuvae_linear;

typedef struct {
    int x_dim, latent;
    int n_enc, n_dec; /* linear layers in each half (n_hidden + 1) */
    cuvae_linear enc[CUVAE_MAX_LAYERS];
    cuvae_linear dec[CUVAE_MAX_LAYERS];
    size_t n_params;
    cuvae_likelihood likelihood;
    float gaussian_sigma;
    int max_width; /* widest layer output (2*latent included): sizes activation buffers */
} cuvae_model;

typedef struct {
    char name[32]; /* "encoder.0.weight" */
    int ndim;      /* 1 or 2 */
    int64_t shape[2];
    size_t offset; /* in floats, into the flat buffer */
    size_t count;
} cuvae_tensor_info;

/* Layout from the config's [model] section and the data's pixel count. */
int cuvae_model_layout(cuvae_model *m, const cuvae_config *c, int x_dim, cuvae_status *st);

/* Number of tensors and their names/shapes/offsets in flat-buffer order. */
int cuvae_model_tensors(const cuvae_model *m, cuvae_tensor_info *out /* [CUVAE_MAX_TENSORS] */);

/* torch.nn.Linear-style init: weight and bias uniform in [-1/sqrt(in), 1/sqrt(in)), drawn from
 * (seed, CUVAE_STREAM_INIT, counter = tensor index, element = value index). */
void cuvae_model_init(const cuvae_model *m, uint64_t seed, float *params /* [n_params] */);

/* Floating-point operations of one training step on a batch (forward + backward, GEMMs only). */
double cuvae_model_train_flops(const cuvae_model *m, int batch);

#ifdef __cplusplus
}
#endif
#endif
