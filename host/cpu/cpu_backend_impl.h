/* Internals of the CPU backend shared by its two files: cpu_backend.c (state, upload, training
 * step, optimizer state) and cpu_eval.c (evaluation and decoding). Not an interface: the rest of
 * cuvae sees only cuvae_cpu_backend_create and the ops table of backend.h. */
#ifndef CUVAE_CPU_BACKEND_IMPL_H
#define CUVAE_CPU_BACKEND_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "model.h"

/* Evaluation computes its GEMMs in canonical blocks so that an example's results do not depend
 * on how a caller batches examples, to the last bit: BLAS results for a row depend on the row's
 * position in the call and on the call's shape (measured with OpenBLAS), so row g of a global
 * index space is always computed at position g % T of a call of exactly T rows for block g / T.
 * Encoder rows are examples (g = index in the set); decoder rows are samples (g = idx * K + k,
 * the noise's index). A block is computed whole from the uploaded set, and the latest blocks are
 * kept, so that consecutive calls over consecutive examples compute each block once. */
#define CPU_ENC_BLOCK 256
#define CPU_DEC_BLOCK 1024
#define CPU_ENC_MEMO 2 /* encoder blocks kept: a decoder block can straddle two */

typedef struct {
    const uint8_t *pixels; /* [n, d] values (dtype) as uploaded: `owned`, or the uploader's
                            * memory when streamed; NULL until uploaded */
    uint8_t *owned;        /* the backend's copy, or NULL when streamed */
    int64_t n;
    int d;
    cuvae_dtype dtype;
    int dynamic; /* binarize afresh at every training step */
} cpu_set;

/* x [n, d] = rows idx[0..n) of the set, scaled (bytes) or as they are (float32); never
 * binarized. */
void cuvae_cpu_set_gather(const cpu_set *s, const int32_t *idx, int n, float *x);

/* Training activations, all [rows, ...]: sized for the largest batch seen. */
typedef struct {
    int rows;
    float *x;                      /* [rows, x_dim] input (the likelihood's target) */
    float *enc[CUVAE_MAX_LAYERS];  /* [rows, enc.layer[i].out] post-activation; last = mu|logvar */
    float *eps;                    /* [rows, latent] */
    float *z;                      /* [rows, latent] */
    float *dec[CUVAE_MAX_LAYERS];  /* [rows, dec.layer[i].out] post-activation; last = output */
    float *grad_a, *grad_b;        /* [rows, max_width] gradient ping-pong */
    float *scratch;                /* the layer kinds' scratch; NULL when none needs any */
    uint8_t *stage;                /* [rows, x_dim] values: a streamed step's rows, else NULL */
    int32_t *stage_idx;            /* [rows] 0, 1, 2, ...: the staged rows' own indices */
    double *nll, *kl, *kl_floored; /* [rows] */
    void *block;                   /* the one allocation the buffers above are carved from */
    size_t bytes;
} cpu_train_acts;

/* Allocation aligned to 64 bytes (a non-zero multiple of it), freed with free(): every buffer
 * has the same alignment, so BLAS sees the same layout whenever a block is recomputed. */
void *cuvae_cpu_alloc(size_t bytes);

/* The buffer tables (acts_table, eval_table) lay a group of buffers out in one allocation, as
 * llm.c's tensor table does: CPU_CARVE points ptr at room for `count` of its elements at offset
 * `off` of the group's block `base` (NULL: counting only, ptr stays NULL) and advances `off` by
 * that room rounded up to 64 bytes. Every buffer starts 64-byte aligned, so BLAS sees the same
 * layout whenever a block is recomputed; the table's final offset is the group's size, which the
 * memory estimate and describe() report; releasing the group is one free(). */
#define CPU_CARVE(ptr, count, base, off)                                                           \
    do {                                                                                           \
        size_t n_ = (size_t)(count) * sizeof *(ptr);                                               \
        (ptr) = (base) ? (void *)((char *)(base) + (off)) : NULL;                                  \
        (off) += (n_ + 63) / 64 * 64;                                                              \
    } while (0)

/* One encoded block of CPU_ENC_BLOCK examples; valid while `generation` matches. */
typedef struct {
    uint64_t generation; /* 0: empty */
    int set;
    int64_t block;
    uint64_t last_use;
    float *mu_lv;   /* [CPU_ENC_BLOCK, 2 latent] */
    float *sigma;   /* [CPU_ENC_BLOCK, latent] exp(logvar / 2) */
    double *kl;     /* [CPU_ENC_BLOCK] closed-form KL */
    double *lv_sum; /* [CPU_ENC_BLOCK] sum of logvar */
} cpu_enc_memo;

typedef struct {
    int allocated;
    /* encoder block activations */
    float *enc_x;                 /* [CPU_ENC_BLOCK, x_dim] */
    float *enc[CUVAE_MAX_LAYERS]; /* [CPU_ENC_BLOCK, enc.layer[i].out] */
    float *enc_zero, *enc_z;      /* [CPU_ENC_BLOCK, latent] zero noise and its z (KL) */
    cpu_enc_memo memo[CPU_ENC_MEMO];
    uint64_t uses;
    /* decoder block (also decode()'s passes) */
    float *eps, *z;               /* [CPU_DEC_BLOCK, latent] */
    float *target;                /* [CPU_DEC_BLOCK, x_dim] x of the block's examples, once each */
    const float **target_row;     /* [CPU_DEC_BLOCK] each row's target: a row of `target` */
    float *dec[CUVAE_MAX_LAYERS]; /* [CPU_DEC_BLOCK, dec.layer[i].out] */
    float *scratch;               /* the layer kinds' scratch for CPU_DEC_BLOCK rows; NULL: none */
    double *nll, *log_w;          /* [CPU_DEC_BLOCK] the block's results */
    double *row_lv_sum;           /* [CPU_DEC_BLOCK] sum of logvar of each row's example */
    uint8_t *valid;               /* [CPU_DEC_BLOCK] row inside the set */
    uint64_t dec_generation;      /* 0: none; else the key below is the block held */
    int dec_set, dec_K;
    int64_t dec_block;
    uint64_t dec_counter;
    void *block; /* the one allocation the buffers above are carved from */
    size_t bytes;
} cpu_eval_state;

/* Phases of the training step, timed for `cuvae bench`'s breakdown (cpu_profile.c). The GEMMs
 * have a slot each: CPU_PH_GEMM + cpu_gemm_slot(half, layer, kind). */
enum {
    CPU_PH_GATHER,         /* gather, scale, binarize */
    CPU_PH_NOISE,          /* the reparameterization's normal draws */
    CPU_PH_REPARAM_KL,     /* z and the KL terms */
    CPU_PH_LIKELIHOOD,     /* per-example -log p(x|z) and its gradient */
    CPU_PH_LOSS,           /* the batch's loss sums */
    CPU_PH_REPARAM_KL_BWD, /* gradient through z and the KL */
    CPU_PH_ADAM,           /* the optimizer's pass */
    CPU_PH_GEMM
};
/* A layer's forward slot holds its GEMM with the bias and ReLU passes; its backward slot dW, dX,
 * the bias gradient, the ReLU mask and its share of the gradient norm (cpu_linear.c runs them
 * together). */
enum { CPU_GEMM_FWD, CPU_GEMM_BWD, CPU_GEMM_KINDS };
#define CPU_PROF_SLOTS (CPU_PH_GEMM + 2 * CUVAE_MAX_LAYERS * CPU_GEMM_KINDS)

static inline int cpu_gemm_slot(int decoder, int layer, int kind)
{
    return CPU_PH_GEMM + (decoder * CUVAE_MAX_LAYERS + layer) * CPU_GEMM_KINDS + kind;
}

typedef struct {
    double last; /* time of the latest mark */
    double start;
    double seconds[CPU_PROF_SLOTS], flops[CPU_PROF_SLOTS];
    int64_t calls[CPU_PROF_SLOTS];
    int64_t steps;
    double step_seconds;
} cpu_prof;

/* Starts the timing of a step; each cpu_prof_mark charges the time since the previous mark to
 * `slot`. Two clock reads of ~20 ns per phase: always on. */
void cuvae_cpu_prof_start(cpu_prof *p);
void cuvae_cpu_prof_mark(cpu_prof *p, int slot, double flops);
void cuvae_cpu_prof_end(cpu_prof *p);

typedef struct {
    cuvae_backend base;
    cuvae_model m;
    cuvae_config c;
    float *params, *grads, *adam_m, *adam_v; /* [n_params] each, cuvae_model layout */
    uint64_t adam_t;
    /* Bumped whenever parameters or data change: evaluation blocks of older generations are
     * stale. Starts at 1. */
    uint64_t generation;
    cpu_set sets[CUVAE_SET_COUNT];
    int value_bytes; /* of the uploads (spec->upload_value_bytes): 1 or 4 */
    cuvae_metrics metrics;
    cpu_train_acts a;
    cpu_eval_state e;
    cpu_prof prof;
} cpu_backend;

/* cpu_layers.c: one row per layer kind (model.h), and the stack loops over a model's layer
 * table. Kinds write their gradients (=), never accumulate. */
typedef struct {
    /* out [rows, l->out] = the layer of in [rows, l->in], its activation applied. */
    void (*forward)(const float *params, const cuvae_layer *l, const float *in, int rows,
                    float *scratch, float *out);
    /* Given dy [rows, l->out] (the gradient w.r.t. the pre-activation): the layer's weight and
     * bias gradients into grads, dx [rows, l->in] (skipped when NULL) masked by relu_in > 0 when
     * relu_in (the ReLU output feeding the layer) is given, *sq = the sum of squares of the
     * layer's gradients. */
    void (*backward)(const float *params, float *grads, const cuvae_layer *l, const float *in,
                     const float *dy, int rows, float *scratch, float *dx, const float *relu_in,
                     double *sq);
    size_t (*scratch)(const cuvae_layer *l, int rows); /* floats of scratch a call needs */
} cpu_layer_ops;

/* The row of a kind; NULL when the CPU backend does not implement it. */
const cpu_layer_ops *cuvae_cpu_layer_ops(cuvae_layer_kind kind);

/* The most scratch (floats) any layer of m needs for `rows` rows. */
size_t cuvae_cpu_stack_scratch(const cuvae_model *m, int rows);

/* The forward pass of a stack (0 encoder, 1 decoder) over `rows` rows of `in`; outs[i]
 * [rows, layer[i].out] receives each layer's output. With prof, each layer is timed. */
void cuvae_cpu_stack_forward(const float *params, const cuvae_model *m, int decoder,
                             const float *in, int rows, float *scratch, float *const *outs,
                             cpu_prof *prof);

/* Backward through a stack. dy holds the gradient w.r.t. the last layer's pre-activation; dy
 * and dx ([rows, max_width] each) are used in turn. Returns the buffer that holds the gradient
 * w.r.t. the stack's input, or NULL when want_dx is 0 (the encoder's input is data). *sq gets
 * each layer's sum of squared gradients added. */
float *cuvae_cpu_stack_backward(const float *params, float *grads, const cuvae_model *m,
                                int decoder, float *const *outs, const float *input, int rows,
                                float *dy, float *dx, float *scratch, int want_dx, double *sq,
                                cpu_prof *prof);

/* cpu_eval.c: the evaluate and decode entries, and the evaluation buffers. */
int cuvae_cpu_evaluate(cuvae_backend *be, cuvae_set set, const int32_t *idx, int n, int K,
                       uint64_t counter, cuvae_eval_out *out, cuvae_status *st);
int cuvae_cpu_decode(cuvae_backend *be, const float *z, int n, float *x_mean, cuvae_status *st);
void cuvae_cpu_eval_free(cpu_eval_state *e);

/* cpu_profile.c: the profile entry. */
int cuvae_cpu_profile(cuvae_backend *be, cuvae_profile *out, int reset, cuvae_status *st);

/* The bytes of the evaluation buffers of model m, from the table that allocates them. */
size_t cuvae_cpu_eval_bytes(const cuvae_model *m);

#endif
