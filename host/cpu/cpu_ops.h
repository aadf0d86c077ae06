/* The model's operations on the CPU. Each is the C twin of a CUDA launcher in cuda/ and the
 * reference the parity tests compare against. Batch layout is row-major: X [B, n] (one example a
 * row). Outputs marked "=" are overwritten, "+=" accumulated.
 *
 * The loss of a batch is (1/B) sum_b [ rec_b + beta * sum_d max(KL_bd, free_bits) ] where
 *   rec_b (Bernoulli, logits l) = sum_p softplus(l_bp) - x_bp * l_bp
 *   rec_b (Gaussian, means m)   = sum_p 0.5 ((x_bp - m_bp)/sigma)^2 + log sigma + 0.5 log(2 pi)
 *   KL_bd = 0.5 (mu_bd^2 + exp(lv_bd) - 1 - lv_bd)   (per example and dimension; the free-bits
 *           floor is per example and dimension, and passes no gradient where it binds)
 * and z_bd = mu_bd + exp(0.5 lv_bd) * eps_bd. */
#ifndef CUVAE_CPU_OPS_H
#define CUVAE_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most parts one operation is split into (at most one per thread). */
#define CUVAE_CPU_MAX_PARTS 256

/* Makes this thread and the backend's team (and the threads they start) flush subnormal floats to
 * zero, as inputs and as results (x86 MXCSR FTZ + DAZ; a no-op elsewhere). The CPU backend calls it
 * when it is created: as a model trains, sigmoid gradients of pixels that are always 0 fall below
 * FLT_MIN, and every SSE/AVX operation on a subnormal takes a microcode assist, which made epoch
 * 10 of the default config 1.9x slower than epoch 1 on the 2-core Xeon we measured on. Results
 * differ from IEEE only where a value is below 1.2e-38 in magnitude. */
void cuvae_cpu_flush_subnormals(void);

/* x [batch, d] = pixels[idx[b]] / 255, or Bernoulli(pixels/255) drawn from
 * (seed, CUVAE_STREAM_BINARIZE, counter = step, element = b*d + p) when dynamic. */
void cuvae_cpu_gather(const uint8_t *pixels, int d, const int32_t *idx, int batch, int dynamic,
                      uint64_t seed, uint64_t step, float *x);

/* Convolutions (cpu_conv.c, the twin of cuda/conv.cu), conv2d and conv_transpose2d by the
 * layer's kind: y [rows, l->out] = the layer of x [rows, l->in] with its bias (and ReLU when
 * relu); backward: dw, db written (=), dx [rows, l->in] (skipped when NULL) masked by
 * relu_in > 0 when relu_in is given, *sq (when sq) the sum of squares of dw and db. scratch holds
 * cuvae_cpu_conv_scratch(l, rows) floats. */
size_t cuvae_cpu_conv_scratch(const cuvae_layer *l, int rows);
void cuvae_cpu_conv_forward(const cuvae_layer *l, const float *w, const float *b, const float *x,
                            int rows, int relu, float *scratch, float *y);
void cuvae_cpu_conv_backward(const cuvae_layer *l, const float *w, const float *x, const float *dy,
                             int rows, float *scratch, float *dw, float *db, float *dx,
                             const float *relu_in, double *sq);

/* Linear layers (cpu_linear.c, the twin of cuda/linear.cu): each call splits its GEMMs over the
 * backend's threads (cpu_threads.h), every BLAS call single-threaded. */

/* y [B, out] = x [B, in] . w^T [in, out] + b, then ReLU when relu. */
void cuvae_cpu_linear_forward(const float *x, const float *w, const float *b, int B, int in,
                              int out, int relu, float *y);

/* Given dy [B, out] (the gradient w.r.t. the pre-activation): dw [out, in] =, db [out] =,
 * dx [B, in] = dy . w (skipped when dx is NULL). */
void cuvae_cpu_linear_backward(const float *x, const float *w, const float *dy, int B, int in,
                               int out, float *dw, float *db, float *dx);

/* cuvae_cpu_linear_backward, then dx *= (relu_y > 0) when relu_y [B, in] (the output of the ReLU
 * before this layer) is given: the backward pass of a hidden layer in one call. With sq, also
 * *sq = the sum of squares of dw and db (in double; parts added in order), for the gradient norm.
 */
void cuvae_cpu_linear_backward_relu(const float *x, const float *w, const float *dy, int B, int in,
                                    int out, float *dw, float *db, float *dx, const float *relu_y,
                                    double *sq);

/* dy [n] *= (y > 0), y being the ReLU's output. */
void cuvae_cpu_relu_backward(const float *y, float *dy, size_t n);

/* cuvae_normal_fill (philox.h) split over the backend's threads: the same values. */
void cuvae_cpu_normal_fill(uint64_t seed, uint32_t stream, uint64_t counter, uint64_t first,
                           float *out, size_t n);

/* enc [B, 2L] = [mu | logvar] per row; eps [B, L]. Writes z [B, L] =, kl [B] = (plain, no floor),
 * kl_floored [B] = sum_d max(KL_bd, free_bits) (may be NULL). */
void cuvae_cpu_reparam_kl_forward(const float *enc, const float *eps, int B, int L, float free_bits,
                                  float *z, double *kl, double *kl_floored);

/* Given dz [B, L] (gradient of the batch loss w.r.t. z, already including 1/B), writes
 * denc [B, 2L] = gradient w.r.t. [mu | logvar] of the batch loss, adding the KL term's
 * kl_scale * d(max(KL_bd, free_bits)) where kl_scale = beta / B. */
void cuvae_cpu_reparam_kl_backward(const float *enc, const float *eps, const float *dz, int B,
                                   int L, float kl_scale, float free_bits, float *denc);

/* out [B, D]: logits (Bernoulli) or means (Gaussian). nll [B] = rec_b; dout [B, D] =
 * grad_scale * d rec_b / d out (may be NULL: forward only). */
void cuvae_cpu_likelihood(const float *out, const float *x, int B, int D, cuvae_likelihood lik,
                          float sigma, float grad_scale, double *nll, float *dout);

/* cuvae_cpu_likelihood without the gradient, row b's target being x_rows[b] (evaluation: the
 * rows of one example share its pixels). */
void cuvae_cpu_likelihood_rows_of(const float *out, const float *const *x_rows, int B, int D,
                                  cuvae_likelihood lik, float sigma, double *nll);

/* Sum of squares of g [n] in double, on this thread: eight interleaved accumulators, combined
 * pairwise. */
double cuvae_cpu_sum_squares_range(const float *g, size_t n);

/* Sum of squares of g [n] (for the global gradient norm), accumulated in double. */
double cuvae_cpu_sum_squares(const float *g, size_t n);

/* One Adam (decoupled = 0; weight decay added to the gradient, as torch.optim.Adam) or AdamW
 * (decoupled = 1; p -= lr * wd * p, as torch.optim.AdamW) update over the flat buffers, with the
 * gradient multiplied by grad_scale first (the clipping factor, 1 when not clipping).
 * t is the 1-based update count. Same arithmetic as PyTorch's single-tensor implementation:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
int cuvae_cpu_adam(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                   float beta2, float eps, float weight_decay, int decoupled, uint64_t t,
                   float grad_scale);

#ifdef __cplusplus
}
#endif
#endif
