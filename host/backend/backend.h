/* The backend interface: everything that touches the model's numbers goes through it, so the
 * trainer, eval, sample, reconstruct and bench run unchanged on the CPU reference and on CUDA.
 *
 * Data: the host uploads each set once, as bytes (0..255) or as float32 values (data outside
 * [0, 1], for the Gaussian likelihood: gathered as they are, never scaled or binarized). A byte
 * set uploaded with dynamic = 1 is
 * binarized afresh at every training step (Bernoulli(byte/255) drawn from
 * (seed, CUVAE_STREAM_BINARIZE, counter = step, element = slot*D + p)); otherwise pixels are
 * scaled by 1/255 (static binarization and the test set are binarized once on the host, to 0/255).
 * Evaluation of a set never binarizes dynamically (the host uploads such sets pre-binarized).
 *
 * Loss per example: rec = -log p(x|z) summed over pixels; kl = sum_d max(KL_d, free_bits) in closed
 * form (the floor applies to the training objective only; metrics report the plain KL);
 * loss = rec + beta * kl_floored. The batch objective is the mean over the batch. */
#ifndef CUVAE_BACKEND_H
#define CUVAE_BACKEND_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "config.h"
#include "memory_plan.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CUVAE_SET_TRAIN = 0,
    CUVAE_SET_VALID = 1,
    CUVAE_SET_TEST = 2,
    CUVAE_SET_COUNT
} cuvae_set;

/* What one training step needs from the host; nothing else crosses per step. */
typedef struct {
    uint64_t step;      /* global step index: keys the binarization and reparameterization noise */
    float lr;           /* learning rate of this step (schedule applied by the trainer) */
    float beta;         /* KL weight of this step (warm-up applied by the trainer) */
    const int32_t *idx; /* [batch] rows of the training set */
    int batch;
    /* Optional (NULL: unknown): the next step's rows, so that a backend streaming the training
     * set can copy them while this step runs. Only a hint: any step may follow. */
    const int32_t *next_idx;
    int next_batch;
} cuvae_step;

/* The values of an uploaded set. */
typedef enum { CUVAE_DATA_U8 = 0, CUVAE_DATA_F32 = 1 } cuvae_dtype;

/* data.stream (cuvae_stream_mode, config.h): where the training set lives while a run trains. off:
 * the backend holds a copy of its own (the GPU: the whole set in device memory); on: it stays in
 * the caller's memory (a .npy's mapping) and each step's rows are copied from there (the GPU:
 * through pinned staging buffers, the next batch's copy overlapping the current step); auto: the
 * CPU streams (a copy gains nothing), the GPU uploads whole when the set fits (memory_plan.h) and
 * streams otherwise. */

/* One set to upload. With stream (the backend decides: cuvae_backend_streams), `data` is
 * borrowed: the caller keeps it alive and unchanged until the set is replaced or the backend
 * destroyed. Only the training set streams; the other sets are copied. */
typedef struct {
    const void *data; /* [n, d] values of dtype (float32: little-endian, any alignment) */
    cuvae_dtype dtype;
    int64_t n;
    int d;
    int dynamic; /* bytes only */
} cuvae_upload_desc;

/* Accumulated since the last reset; the host reads it every train.log_every steps. */
typedef struct {
    double loss, rec, kl; /* sums over examples of the per-example loss, rec and plain KL */
    double grad_norm_sum; /* sum over steps of the global gradient norm (before clipping) */
    int64_t examples, steps;
    int64_t skipped;              /* steps whose update was withheld: loss or gradient non-finite */
    int64_t first_nonfinite_step; /* -1 when none since the reset */
} cuvae_metrics;

/* Optimizer and parameter state, host side, in the flat layout of cuvae_model. */
typedef struct {
    float *params, *m, *v; /* [n_params] each, owned by the caller */
    uint64_t adam_t;       /* updates applied so far (Adam's bias-correction count) */
} cuvae_train_state;

/* Outputs of an evaluation batch; any pointer may be NULL. Noise for sample k of example idx[i]
 * comes from (seed, CUVAE_STREAM_EVAL, counter, element = (idx[i]*K + k)*latent + d), so the
 * result for an example does not depend on how examples are batched. */
typedef struct {
    double *neg_elbo; /* [n] mean over k of rec_k, plus the closed-form KL (beta = 1, no floor) */
    double *neg_iw; /* [n] -(logsumexp_k log w_k - log K), log w_k = log p(x,z_k) - log q(z_k|x) */
    double *rec;    /* [n] mean over k of -log p(x|z_k) */
    double *kl;     /* [n] closed-form KL */
    float *mu;      /* [n, latent] encoder means */
    float *logvar;  /* [n, latent] encoder log-variances */
} cuvae_eval_out;

/* A breakdown of the training step by phase: wall seconds, calls and FLOPs of each (FLOPs for the
 * GEMMs, 0 elsewhere), over `steps` steps. */
#define CUVAE_PROFILE_MAX 80
typedef struct {
    char name[32]; /* "gemm enc.1 dW", "adam", ... */
    double seconds, flops;
    int64_t calls;
} cuvae_profile_entry;

typedef struct {
    int n;
    int64_t steps;
    double seconds; /* wall time of the steps, from their first phase to their last */
    cuvae_profile_entry e[CUVAE_PROFILE_MAX];
} cuvae_profile;

typedef struct cuvae_backend cuvae_backend;

typedef struct {
    const char *name; /* "cpu" or "cuda" */
    void (*destroy)(cuvae_backend *be);
    int (*upload)(cuvae_backend *be, cuvae_set set, const cuvae_upload_desc *u, cuvae_status *st);
    int (*train_step)(cuvae_backend *be, const cuvae_step *step, cuvae_status *st);
    int (*read_metrics)(cuvae_backend *be, cuvae_metrics *out, int reset, cuvae_status *st);
    int (*evaluate)(cuvae_backend *be, cuvae_set set, const int32_t *idx, int n, int K,
                    uint64_t counter, cuvae_eval_out *out, cuvae_status *st);
    /* x_mean [n, x_dim]: Bernoulli probabilities (sigmoid of the logits) or Gaussian means. */
    int (*decode)(cuvae_backend *be, const float *z, int n, float *x_mean, cuvae_status *st);
    int (*get_state)(cuvae_backend *be, cuvae_train_state *out, cuvae_status *st);
    int (*set_state)(cuvae_backend *be, const cuvae_train_state *in, cuvae_status *st);
    /* Frees nothing; prints what each part of the backend's memory takes (MiB). */
    void (*describe)(cuvae_backend *be, char *buf, size_t len);
    /* Optional (NULL: no breakdown): where the training steps since the last reset spent their
     * time, phase by phase; resets the counts when `reset`. */
    int (*profile)(cuvae_backend *be, cuvae_profile *out, int reset, cuvae_status *st);
} cuvae_backend_ops;

struct cuvae_backend {
    const cuvae_backend_ops *ops;
    /* Rows (examples x K) that one evaluate call may take; 0: CUVAE_EVAL_MAX_ROWS (evaluate.h).
     * A backend that splits a call into passes of its own memory budget sets more, so that the
     * host's calls (and their synchronizations) do not cut its passes short. */
    int64_t eval_rows_per_call;
    int x_dim; /* the model's values per example, set by the backend at creation */
    /* Kept by the front door (below), which checks indices against them. */
    int64_t set_rows[CUVAE_SET_COUNT]; /* examples of each uploaded set */
    int set_uploaded[CUVAE_SET_COUNT]; /* 0 until an upload of the set succeeds */
    /* Set by the backend at creation (from spec->stream): the training set is streamed from the
     * uploader's memory rather than copied (cuvae_upload_desc). */
    int stream_train;
};

/* Everything a backend is created from. Parameters start at cuvae_model_init(seed) and zero Adam
 * state; set_state replaces them (resume, eval). */
/* Creation estimates what the backend will allocate (parameters, gradients, Adam's moments,
 * activations, evaluation buffers, the uploaded sets), adds the caller's own host needs, and
 * refuses before allocating when that exceeds what the machine (for CUDA: also the GPU) has. */
typedef struct {
    const cuvae_model *model;
    const cuvae_config *config; /* optim.*, train.seed, train.precision, free bits, clip */
    /* Optional: what the caller itself holds on the host while the backend lives (data, index
     * arrays, copies of the state, checkpoint buffers), and the examples it will upload to each
     * set. Zero: nothing beyond the backend's own buffers. */
    const cuvae_mem_plan *host_needs;
    int64_t upload_rows[CUVAE_SET_COUNT];
    int upload_value_bytes;   /* bytes a value of the uploads: 1 (bytes, also for 0) or 4 */
    cuvae_stream_mode stream; /* data.stream (see cuvae_stream_mode); AUTO for a zero spec */
    const char *advice;       /* the keys to change, for the refusal; NULL: CUVAE_MEM_ADVICE */
} cuvae_backend_spec;

/* The CPU backend's own host memory for spec (what cuvae_cpu_backend_create would allocate, the
 * evaluation buffers included), from the tables that allocate it. */
void cuvae_cpu_memory_plan(const cuvae_backend_spec *spec, cuvae_mem_plan *plan);

cuvae_backend *cuvae_cpu_backend_create(const cuvae_backend_spec *spec, cuvae_status *st);

/* Built only with CUDA; returns NULL with a message when no device can be used. */
cuvae_backend *cuvae_cuda_backend_create(const cuvae_backend_spec *spec, cuvae_status *st);

/* 1 when a CUDA device is usable (any failure of the runtime counts as "no GPU"), with its name. */
int cuvae_cuda_available(char *name, size_t len);

/* Picks per --device: auto = CUDA when available, else CPU; says which on `log` (may be NULL). */
cuvae_backend *cuvae_backend_create(cuvae_device device, const cuvae_backend_spec *spec, FILE *log,
                                    cuvae_status *st);

/* The front door: every caller goes through these. They check what does not depend on the
 * backend (the set, counts, K, indices within the uploaded set, the values per example) once,
 * with messages that name the backend and the call, then dispatch to be->ops. The backends
 * assume arguments that passed these checks. */
void cuvae_backend_destroy(cuvae_backend *be); /* NULL: nothing */
const char *cuvae_backend_name(const cuvae_backend *be);
int cuvae_backend_upload(cuvae_backend *be, cuvae_set set, const uint8_t *pixels, int64_t n, int d,
                         int dynamic, cuvae_status *st); /* bytes, copied (never streamed) */
/* Any dtype; the training set is borrowed when be->stream_train (see cuvae_upload_desc). */
int cuvae_backend_upload_data(cuvae_backend *be, cuvae_set set, const cuvae_upload_desc *u,
                              cuvae_status *st);
/* 1 when a set uploaded to `set` is streamed from the uploader's memory (borrowed). */
int cuvae_backend_streams(const cuvae_backend *be, cuvae_set set);
int cuvae_backend_train_step(cuvae_backend *be, const cuvae_step *step, cuvae_status *st);
int cuvae_backend_read_metrics(cuvae_backend *be, cuvae_metrics *out, int reset, cuvae_status *st);
int cuvae_backend_evaluate(cuvae_backend *be, cuvae_set set, const int32_t *idx, int n, int K,
                           uint64_t counter, cuvae_eval_out *out, cuvae_status *st);
int cuvae_backend_decode(cuvae_backend *be, const float *z, int n, float *x_mean, cuvae_status *st);
int cuvae_backend_get_state(cuvae_backend *be, cuvae_train_state *out, cuvae_status *st);
int cuvae_backend_set_state(cuvae_backend *be, const cuvae_train_state *in, cuvae_status *st);
void cuvae_backend_describe(cuvae_backend *be, char *buf, size_t len);
/* 1 when the backend can break its training steps down by phase (the profile op). */
int cuvae_backend_has_profile(const cuvae_backend *be);
/* The breakdown since the last reset; a backend without one reports no phases (out->n = 0). */
int cuvae_backend_profile(cuvae_backend *be, cuvae_profile *out, int reset, cuvae_status *st);

#ifdef __cplusplus
}
#endif
#endif
