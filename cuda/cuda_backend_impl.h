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
    uint8_t *pixels; /* device [n, d] bytes as uploaded; NULL until uploaded */
    int64_t n;
    int d;
    int dynamic; /* binarize afresh at every training step */
    size_t bytes;
} cuda_set;

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

/* cuda_backend_create.cu */
void cuvae_cuda_backend_describe(cuvae_backend *be, char *buf, size_t len);
void cuvae_cuda_backend_destroy(cuvae_backend *be);

#endif
