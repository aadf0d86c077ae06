/* Parity of the CUDA conv layers (cuda/conv.h, through the stack loops of layers.h) with the CPU
 * backend's conv rows (cuvae_cpu_layer_ops), in fp32, tf32 and bf16: gpu_parity's conv2d and
 * conv_transpose2d rows. Setup failures end the test; mismatches are counted. */
#ifndef CUVAE_CONV_PARITY_H
#define CUVAE_CONV_PARITY_H

#include "cuda_common.h"
#include "model.h"

/* Every check of one conv kind: single layers (1 and 3 channels, odd and square sizes up to
 * 64x64, strides 1 and 2, padding 0 and 1, with and without ReLU), a stack mixing it with linear
 * layers (the ReLU masks and bias gradients across kinds), and a 256x256 layer; in fp32 on ctx
 * (an fp32 context), then in tf32 and bf16 on contexts of their own. */
void conv_parity_kind(cuvae_cuda_ctx *ctx, cuvae_layer_kind kind);

#endif
