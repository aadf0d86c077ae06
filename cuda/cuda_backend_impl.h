/* Internals of the CUDA backend shared by its two files: cuda_backend.cu (the training step,
 * metrics, state, data, evaluation and the ops table) and cuda_backend_create.cu (the buffer
 * table, creation, description, release). Not an interface: the rest of cuvae sees
 * cuvae_cuda_backend_create and the ops table of backend.h. */
#ifndef CUVAE_CUDA_BACKEND_IMPL_H
#define CUVAE_CUDA_BACKEND_IMPL_H

#include "backend.h"
#include "cuda_common.h"
#include "eval.h"
#include "layers.h"
#include "optimizer.h"

#define STAGING_SLOTS 4

/* The groups of the buffer table (cuda_backend_create.cu): one device allocation each, carved
 * into the table's buffers; allocation, release, the memory estimate and describe() all come
 * from that table. */
typedef enum {
    CUDA_BUF_PARAMS,      /* the fp32 parameters */
    CUDA_BUF_GRADS,       /* their gradients */
    CUDA_BUF_ADAM,        /* Adam's m and v */
    CUDA_BUF_ACTIVATIONS, /* the step's buffers for max_batch rows, operand copies included */
    CUDA_BUF_GROUPS
} cuda_buffer_group;

typedef struct {
    void *pixels; /* device [n, d] values (dtype) as uploaded; NULL until uploaded or streamed */
    const uint8_t *host; /* streamed: the uploader's [n, d] values, borrowed; else NULL */
    int64_t n;
    int d;
    cuvae_dtype dtype;
    int dynamic; /* binarize afresh at every training step */
    size_t bytes;
} cuda_set;

/* A streamed training set (data.stream; cuda_backend.cu): each step's rows are copied on the
 * host from the uploader's memory into a pinned slot, sent to the device on a copy stream of
 * their own, and copied on the step's stream into `batch`, which the gather reads as rows
 * 0..B-1. Two slots: the next step's rows are copied while this step runs. */
typedef struct {
    cudaStream_t copy;
    uint8_t *pinned[2];      /* host, pinned: [max_batch, row bytes] */
    void *slot[2];           /* device: [max_batch, row bytes] */
    void *batch;             /* device: [max_batch, row bytes], the step's rows */
    cudaEvent_t copied[2];   /* on `copy`: slot's rows have arrived (pinned[s] is free again) */
    cudaEvent_t consumed[2]; /* on the step's stream: slot's rows were copied into `batch` */
    int32_t *rows[2];        /* [max_batch]: the set rows each slot holds */
    int count[2];            /* how many (0: none) */
    int ready;               /* the slot staged for the next step, -1 when none */
    int current;             /* the slot the step in flight read */
    size_t row_bytes, host_bytes, device_bytes;
} cuda_stream;

/* One step's host-side inputs in pinned memory: the scalars, then the indices. */
typedef struct {
    cuvae_step_scalars *scalars;
    int32_t *idx;     /* [max_batch] */
    cudaEvent_t read; /* recorded after the copies that read this slot */
    int pending;
} staging_slot;

typedef struct {
    cuvae_backend base;
    cuvae_model m;
    cuvae_config c;
    cuvae_cuda_ctx ctx;
    cuvae_adam_hparams hp;
    char device_name[256];
    int max_batch; /* train.batch_size: rows of the training buffers */
    /* The buffer table's allocations, one per group, and their sizes. */
    void *group_mem[CUDA_BUF_GROUPS];
    size_t group_bytes[CUDA_BUF_GROUPS];
    /* Flat buffers, [n_params] each, cuvae_model layout. */
    float *params, *grads, *adam_m, *adam_v;
    /* Training activations for max_batch rows. */
    int32_t *idx; /* [max_batch] */
    float *x;     /* [max_batch, x_dim] */
    /* [stack: 0 encoder, 1 decoder][layer] [max_batch, layer's out], as the stack loops take them
     * (layers.h): a hidden layer's output in the step's operand type, the last's in fp32 (the
     * encoder's [mu | logvar], the decoder's logits or means: stack_output). */
    void *act[2][CUVAE_MAX_LAYERS];
    cuvae_relu_mask mask[2][CUVAE_MAX_LAYERS]; /* the layers with a ReLU */
    float *eps, *z;                            /* [max_batch, latent] */
    float *grad_a, *grad_b;                    /* [max_batch, max_width] gradient ping-pong */
    double *nll, *kl, *kl_floored;             /* [max_batch] */
    /* The step's operand type (train.precision) and, when it is not fp32 (bf16), the operand
     * copies the GEMMs read; NULL under fp32 and tf32. Evaluation and decoding never use them. */
    cuvae_operand op;
    void *params_op;   /* [n_params] bf16(params), refreshed by the optimizer's update pass */
    void *x_op, *z_op; /* [max_batch, x_dim], [max_batch, latent]: the stacks' inputs */
    void *dy_op;       /* [max_batch, max_width]: activation gradients */
    staging_slot slots[STAGING_SLOTS];
    int next_slot;
    cuda_set sets[CUVAE_SET_COUNT];
    cuda_stream stream; /* used when base.stream_train */
    cuvae_eval_buffers ev;
    /* train.cuda_graph: the step's device work captured once for max_batch rows and replayed. */
    cudaGraphExec_t step_graph; /* NULL until the second full-batch step captures it */
    int graph_warm;             /* a full-batch step ran directly: its plans are cached */
} cuda_backend;

static inline cuda_backend *cuda_of(cuvae_backend *be)
{
    return (cuda_backend *)be;
}

/* The fp32 output of a stack's last layer: [mu | logvar] (encoder), logits or means (decoder). */
static inline float *stack_output(const cuda_backend *cb, int decoder)
{
    return (float *)cb->act[decoder][cuvae_model_stack(&cb->m, decoder)->n - 1];
}

/* cuda_backend.cu */
extern const cuvae_backend_ops cuvae_cuda_backend_ops;
/* Waits for the stream; a failure of anything enqueued before surfaces here. */
int cuvae_cuda_backend_sync(cuda_backend *cb, const char *what, cuvae_status *st);
/* Chooses and caches the GEMM plans of a training step of B rows. */
int cuvae_cuda_backend_prepare_plans(cuda_backend *cb, int B, cuvae_status *st);
/* params16 = bf16(params) under bf16, after anything but the optimizer wrote the parameters. */
int cuvae_cuda_backend_refresh_params16(cuda_backend *cb, cuvae_status *st);

/* Allocates (free: releases) the streaming buffers for rows of row_bytes. */
int cuvae_cuda_stream_alloc(cuda_backend *cb, size_t row_bytes, cuvae_status *st);
void cuvae_cuda_stream_free(cuda_backend *cb);
/* Before a streamed step's device work: its rows into stream.batch (staged now unless the step
 * before prefetched them), on the step's stream. */
int cuvae_cuda_stream_step(cuda_backend *cb, const cuvae_step *step, cuvae_status *st);
/* After it: the next step's rows (step->next_idx, when given) copied while this step runs. */
int cuvae_cuda_stream_prefetch(cuda_backend *cb, const cuvae_step *step, cuvae_status *st);

/* cuda_backend_create.cu */
void cuvae_cuda_backend_describe(cuvae_backend *be, char *buf, size_t len);
void cuvae_cuda_backend_destroy(cuvae_backend *be);

#endif
