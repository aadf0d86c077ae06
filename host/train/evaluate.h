/* Evaluation of a whole uploaded set through the backend: the mean negative ELBO, the K-sample
 * importance-weighted bound on -log p(x) (Burda et al., 2016), reconstruction and KL terms, and the
 * number of active latent units. Shared by `cuvae eval` and the trainer's validation pass so that
 * both report the same protocol. */
#ifndef CUVAE_EVALUATE_H
#define CUVAE_EVALUATE_H

#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "common.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Unless the backend says otherwise (cuvae_backend.eval_rows_per_call), an evaluate call takes at
 * most this many rows, examples x K (and at least one example), which keeps each call short enough
 * for the progress line and a stop request. (The CPU backend decodes in passes of its own; the
 * CUDA backend splits a call into passes sized from free device memory, and asks for more rows
 * per call, so that its passes are not cut to this size.) */
#define CUVAE_EVAL_MAX_ROWS 65536

/* Burda et al.'s threshold: unit d is active when Var_x(E_q[z_d|x]) exceeds it. */
#define CUVAE_ACTIVE_UNIT_THRESHOLD 0.01

typedef struct {
    double neg_elbo;  /* mean over the examples of the per-example negative ELBO (nats) */
    double neg_iw;    /* mean of the K-sample bound: an upper bound on -log p(x) (nats) */
    double rec;       /* mean reconstruction error -log p(x|z), averaged over the K samples */
    double kl;        /* mean closed-form KL(q(z|x) || p(z)) */
    int active_units; /* latent dimensions whose mean varies over the set by more than 0.01 */
    int latent;
    int64_t n;                    /* examples evaluated */
    int K;                        /* importance samples per example */
    int64_t nonfinite;            /* examples whose bound or ELBO came back NaN or infinite */
    double seconds;               /* wall time of the evaluation */
    double recon_mse, recon_psnr; /* with originals: as cuvae_recon_error; else NaN */
} cuvae_eval_result;

/* Evaluates examples [0, n) of `set` (already uploaded to the backend) with K importance samples,
 * noise counter `counter`, at most `batch` examples per backend call (fewer when batch * K passes
 * the backend's rows per call, be->eval_rows_per_call or CUVAE_EVAL_MAX_ROWS). Means are
 * accumulated in double; the active-unit variance is Welford's, in double. When `progress` is a
 * terminal, a line "eval 1200/10000 examples ... ETA 1:51" is redrawn on it and cleared at the end;
 * otherwise nothing is printed. With `originals` ([n, x_dim] grey bytes of the set; NULL: none)
 * the same pass also decodes mu and fills recon_mse and recon_psnr (cuvae_recon_error below),
 * which otherwise are NaN. Returns 0, or -1 with st set (a backend error); non-finite
 * per-example values are counted in res->nonfinite and propagate into the means rather than
 * failing. */
int cuvae_evaluate_set(cuvae_backend *be, const cuvae_model *model, cuvae_set set, int64_t n, int K,
                       uint64_t counter, int batch, const uint8_t *originals, FILE *progress,
                       cuvae_eval_result *res, cuvae_status *st);

/* The reconstruction error on [0, 1] pixels, the picture a person judges: the decoder's mean at
 * z = mu(x) (Bernoulli probabilities or Gaussian means, clamped to [0, 1] as images show them)
 * against the grey original bytes / 255 (not the binarized draw the encoder saw). For float32
 * data outside [0, 1] (the model's x_lo..x_hi), both are first mapped from that range to
 * [0, 1], as the pictures map them, so PSNR is relative to the data's range. */
typedef struct {
    double mse;  /* mean over examples and values (C x H x W) of the squared difference */
    double psnr; /* 10 log10(1 / mse) in dB, from the set's mse (infinite when mse = 0) */
    int64_t n;   /* examples */
} cuvae_recon_error;

/* The reconstruction error of examples [0, n) of `set` (uploaded), `originals` [n, x_dim] their
 * grey bytes (float32 values for a model of float data), at most `batch` examples per backend
 * call. Deterministic: mu and the decoder use no
 * noise. */
int cuvae_recon_error_set(cuvae_backend *be, const cuvae_model *model, cuvae_set set,
                          const uint8_t *originals, int64_t n, int batch, cuvae_recon_error *res,
                          cuvae_status *st);

/* PSNR in dB of a mean squared error on [0, 1] values. */
double cuvae_psnr(double mse);

#ifdef __cplusplus
}
#endif
#endif
