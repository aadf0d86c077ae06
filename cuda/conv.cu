/* Convolutional layers on cuDNN (see conv.h). Every output is written ("="): cuDNN runs with
 * beta = 0 and the kernels below overwrite.
 *
 * One convolution, three directions. A conv2d maps a "big" tensor to a "small" one with the
 * filter [K, C, k, k] (K small channels, C big ones); its transpose maps small to big with the
 * same filter, which is exactly PyTorch's [in, out, k, k] layout of ConvTranspose2d. So with
 *   Fwd  = cudnnConvolutionForward       (big -> small),
 *   Data = cudnnConvolutionBackwardData  (small -> big),
 *   Filt = cudnnConvolutionBackwardFilter (big, small -> dw),
 * conv2d (big = x, small = y):           y = Fwd(x),   dx = Data(dy), dw = Filt(x, dy);
 * conv_transpose2d (big = y, small = x): y = Data(x),  dx = Fwd(dy),  dw = Filt(dy, x).
 * The transposed size (H-1)s - 2p + k is the size whose convolution gives H back, so both
 * kinds describe one cuDNN geometry (checked against the layer's shapes).
 *
 * Algorithms: chosen once per plan (rows, geometry, data type, math) from cuDNN's heuristics
 * (cudnnGet*Algorithm_v7), the first in its ranking that succeeds within the workspace, has the
 * math the precision allows (fp32: no tensor ops, and no FFT or Winograd transform, whose
 * rounding exceeds fp32's tolerances; never a conversion to fp16), and is deterministic. Not Find
 * (which times the candidates): timings vary from run to run, so the chosen algorithm, and with it
 * the rounding, would too; cuvae's runs are reproducible (a resumed run repeats an uninterrupted
 * one's numbers, a captured step replays a direct one bit for bit), and the heuristics' choice is a
 * function of the shape, GPU and library only. Non-deterministic algorithms (atomics: BackwardData
 * ALGO_0, BackwardFilter ALGO_0 and ALGO_3) are taken only when no deterministic one qualifies, and
 * counted (ctx->conv_nondeterministic, shown by describe()).
 *
 * bf16: cuDNN's bf16 configuration has every tensor in bf16, so the fp32 results are widened
 * from bf16: the weight gradient goes through the workspace's tail, a stack's fp32 last output
 * through the forward's scratch, and the input gradient through the fp32 dx buffer's first half
 * (as bf16), then the masked bf16 copy (dx_op, or dy_op once read), then dx in fp32.
 *
 * Alignment: cuDNN gets 16-byte aligned tensors. Activations are (the buffer tables align them,
 * and a call's rows are a multiple of 16); a layer's weights and weight gradient sit at its
 * offset in the flat buffers, so when that is not aligned they go through the workspace's tail
 * (a copy on the stream, captured with the rest). */
#include "conv.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if CUVAE_HAVE_CUDNN
#include <cudnn.h>
#endif

#define CONV_THREADS 256
#define BIAS_GRAD_THREADS 256
#define CONV_MAX_PLANS 64

size_t cuvae_conv_scratch_floats(const cuvae_layer *l, int rows, cuvae_operand op,
                                 cudaDataType_t y_type)
{
    if (op != CUVAE_OPERAND_BF16 || y_type != CUDA_R_32F) return 0;
    return ((size_t)rows * (size_t)l->out + 1) / 2;
}

#if CUVAE_HAVE_CUDNN

/* ---- kernels --------------------------------------------------------------------------------- */

__device__ __forceinline__ static float load_f32(const float *p, size_t i)
{
    return p[i];
}
__device__ __forceinline__ static float load_f32(const cuvae_bf16 *p, size_t i)
{
    return __bfloat162float(p[i]);
}
__device__ __forceinline__ static void store_val(float *p, size_t i, float v)
{
    p[i] = v;
}
__device__ __forceinline__ static void store_val(cuvae_bf16 *p, size_t i, float v)
{
    p[i] = __float2bfloat16_rn(v);
}

/* y [B, C, HW] = src + b[c], then ReLU; in fp32, one rounding into T. src may be y. */
template <typename S, typename T>
static __global__ void bias_act_kernel(const S *src, const T *b, T *y, size_t total, int C, int HW,
                                       int relu)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)((i / (size_t)HW) % (size_t)C);
        float v = load_f32(src, i) + load_f32(b, (size_t)c);
        /* NaN passes through (as on the CPU), so the non-finite check still sees it. */
        store_val(y, i, relu && v < 0.0f ? 0.0f : v);
    }
}

/* db [C] = the sums of dy [B, C, HW] over B and HW: one block per channel, a fixed split of the
 * elements over the threads and a fixed tree, in double: the same bits at every run. */
static __global__ void bias_grad_kernel(const float *dy, int B, int C, int HW, float *db)
{
    __shared__ double part[BIAS_GRAD_THREADS];
    int c = blockIdx.x;
    size_t n = (size_t)B * (size_t)HW;
    double s = 0.0;
    for (size_t e = threadIdx.x; e < n; e += BIAS_GRAD_THREADS) {
        size_t b = e / (size_t)HW, p = e % (size_t)HW;
        s += (double)dy[(b * (size_t)C + (size_t)c) * (size_t)HW + p];
    }
    part[threadIdx.x] = s;
    __syncthreads();
    for (int half = BIAS_GRAD_THREADS / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) db[c] = (float)part[0];
}

/* v = src (masked by x > 0 when x is not NULL); d32 [i] = v and d16 [i] = bf16(v) where given. */
template <typename S, typename X>
static __global__ void mask_kernel(const S *src, const X *x, float *d32, cuvae_bf16 *d16, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = load_f32(src, i);
        if (x && !(load_f32(x, i) > 0.0f)) v = 0.0f;
        if (d32) d32[i] = v;
        if (d16) d16[i] = __float2bfloat16_rn(v);
    }
}

/* db [n] = the sums over the B rows of v [B, n]: one thread per column, rows in order, in
 * double. */
static __global__ void column_sum_kernel(const float *v, int B, int n, float *db)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n) return;
    double s = 0.0;
    for (int b = 0; b < B; b++) s += (double)v[(size_t)b * (size_t)n + (size_t)o];
    db[o] = (float)s;
}

static __global__ void f32_from_bf16_kernel(const cuvae_bf16 *x, float *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __bfloat162float(x[i]);
}

/* ---- geometry -------------------------------------------------------------------------------- */

/* The cuDNN view of a layer: the big and small sides and the filter (see the top comment). */
typedef struct {
    int big_c, big_h, big_w;
    int small_c, small_h, small_w;
    int k, s, p;
    int transposed;
} conv_geom;

static int layer_geom(const cuvae_layer *l, conv_geom *g, cuvae_status *st)
{
    if (l->kind != CUVAE_LAYER_CONV2D && l->kind != CUVAE_LAYER_CONV_TRANSPOSE2D)
        return cuvae_fail(st, "conv: layer kind %d is not a convolution", (int)l->kind);
    const cuvae_shape in = l->in_shape, out = l->out_shape;
    int k = l->kernel, s = l->stride, p = l->padding;
    if (k < 1 || s < 1 || p < 0 || in.c < 1 || in.h < 1 || in.w < 1 || out.c < 1 || out.h < 1 ||
        out.w < 1)
        return cuvae_fail(st,
                          "conv: kernel %d stride %d padding %d, shapes %dx%dx%d -> %dx%dx%d: "
                          "expected positive sizes",
                          k, s, p, in.c, in.h, in.w, out.c, out.h, out.w);
    g->transposed = l->kind == CUVAE_LAYER_CONV_TRANSPOSE2D;
    const cuvae_shape big = g->transposed ? out : in, small = g->transposed ? in : out;
    g->big_c = big.c;
    g->big_h = big.h;
    g->big_w = big.w;
    g->small_c = small.c;
    g->small_h = small.h;
    g->small_w = small.w;
    g->k = k;
    g->s = s;
    g->p = p;
    /* The small side is the convolution of the big one; for a transpose that is its definition
     * run backwards: (H-1)s - 2p + k gives H back exactly. */
    int want_h = (big.h + 2 * p - k) / s + 1, want_w = (big.w + 2 * p - k) / s + 1;
    if (big.h + 2 * p < k || big.w + 2 * p < k || want_h != small.h || want_w != small.w ||
        (g->transposed &&
         ((in.h - 1) * s - 2 * p + k != out.h || (in.w - 1) * s - 2 * p + k != out.w)))
        return cuvae_fail(st,
                          "conv: shapes %dx%dx%d -> %dx%dx%d do not fit kernel %d stride %d "
                          "padding %d",
                          in.c, in.h, in.w, out.c, out.h, out.w, k, s, p);
    if ((size_t)in.c * (size_t)in.h * (size_t)in.w != (size_t)l->in ||
        (size_t)out.c * (size_t)out.h * (size_t)out.w != (size_t)l->out ||
        l->w_count != (size_t)in.c * (size_t)out.c * (size_t)k * (size_t)k ||
        l->b_count != (size_t)out.c)
        return cuvae_fail(st, "conv: the layer's sizes disagree with its shapes");
    return 0;
}

/* ---- cuDNN plans ----------------------------------------------------------------------------- */

static int cudnn_result(cudnnStatus_t s, cuvae_status *st, const char *stmt, const char *file,
                        int line)
{
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    char name[32];
    snprintf(name, sizeof name, "status %d", (int)s);
    return cuvae_check_failed(st, "cuDNN", name, cudnnGetErrorString(s), stmt, file, line);
}
#define CUDNN_OK(st, call) cudnn_result((call), (st), #call, __FILE__, __LINE__)
#define CUDNN_CHECK(st, call)                                                                      \
    do {                                                                                           \
        if (CUDNN_OK(st, call)) return -1;                                                         \
    } while (0)

enum { DIR_FWD, DIR_DATA, DIR_FILT, DIRS };

typedef struct {
    int rows;
    conv_geom g;
    int bf16;        /* operand type */
    int tensor_ops;  /* 1: tensor-op math allowed (tf32, bf16); 0: FMA only */
    size_t ws_limit; /* workspace the algorithms may use */
} conv_key;

struct cuvae_conv_plan {
    conv_key key;
    cudnnTensorDescriptor_t big, small;
    cudnnFilterDescriptor_t filt;
    cudnnConvolutionDescriptor_t conv[DIRS]; /* each with its algorithm's math type */
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t data;
    cudnnConvolutionBwdFilterAlgo_t filt_algo;
    size_t ws[DIRS];
    cudnnMathType_t math[DIRS];
    int det[DIRS]; /* the algorithm is deterministic */
};

static void plan_destroy(cuvae_conv_plan *p)
{
    if (p->big) cudnnDestroyTensorDescriptor(p->big);
    if (p->small) cudnnDestroyTensorDescriptor(p->small);
    if (p->filt) cudnnDestroyFilterDescriptor(p->filt);
    for (int d = 0; d < DIRS; d++)
        if (p->conv[d]) cudnnDestroyConvolutionDescriptor(p->conv[d]);
    memset(p, 0, sizeof *p);
}

int cuvae_conv_built(void)
{
    return 1;
}

void cuvae_conv_release(cuvae_cuda_ctx *ctx)
{
    for (int i = 0; i < ctx->n_conv_plans; i++) plan_destroy(&ctx->conv_plans[i]);
    free(ctx->conv_plans);
    ctx->conv_plans = NULL;
    ctx->n_conv_plans = ctx->cap_conv_plans = ctx->next_conv_evict = 0;
    cuvae_cuda_free(ctx, ctx->conv_ws, ctx->conv_ws_bytes);
    ctx->conv_ws = NULL;
    ctx->conv_ws_bytes = 0;
    if (ctx->cudnn) cudnnDestroy(ctx->cudnn);
    ctx->cudnn = NULL;
    ctx->cudnn_stream = NULL;
}

/* The handle (bound to the stream) and the workspace, once per context. */
static int conv_setup(cuvae_cuda_ctx *ctx, cudaStream_t stream, cuvae_status *st)
{
    if (!ctx->cudnn) {
        cudnnHandle_t h = NULL;
        if (CUDNN_OK(st, cudnnCreate(&h))) return cuvae_fail_prefix(st, "conv: creating cuDNN");
        ctx->cudnn = h;
        ctx->cudnn_stream = NULL;
        size_t v = cudnnGetVersion();
        if (v / 10000 != CUDNN_MAJOR)
            return cuvae_fail(st, "conv: cuDNN %zu loaded, built against %d.%d", v, CUDNN_MAJOR,
                              CUDNN_MINOR);
    }
    if (ctx->cudnn_stream != stream || !ctx->cudnn_stream) {
        CUDNN_CHECK(st, cudnnSetStream(ctx->cudnn, stream));
        ctx->cudnn_stream = stream;
    }
    if (!ctx->conv_ws) {
        if (cuvae_cuda_alloc(ctx, &ctx->conv_ws, CUVAE_CONV_WORKSPACE_BYTES, "the cuDNN workspace",
                             st))
            return -1;
        ctx->conv_ws_bytes = CUVAE_CONV_WORKSPACE_BYTES;
    }
    return 0;
}

/* Algorithms that sum the products as a GEMM does. fp32 takes only these: the FFT and Winograd
 * transforms round in ways a direct sum does not, beyond fp32's tolerances against the C twin. */
static bool sums_products(cudnnConvolutionFwdAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}
static bool sums_products(cudnnConvolutionBwdDataAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
}
static bool sums_products(cudnnConvolutionBwdFilterAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
           a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
}

/* The first of cuDNN's ranked results that ran, fits the workspace, has an allowed math type
 * (and, under fp32, sums its products directly) and, on the first pass, is deterministic; -1
 * when none. */
template <typename P>
static int pick(const P *r, int n, int tensor_ops, size_t limit, int *deterministic)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            if (r[i].status != CUDNN_STATUS_SUCCESS || r[i].memory > limit) continue;
            if (!tensor_ops && !sums_products(r[i].algo)) continue;
            /* Never a conversion to fp16 (ALLOW_CONVERSION); under fp32 no tensor-op math
             * (TF32) either: the descriptor keeps CUDNN_FMA_MATH. */
            if (r[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION ||
                (!tensor_ops && r[i].mathType == CUDNN_TENSOR_OP_MATH))
                continue;
            if (pass == 0 && r[i].determinism != CUDNN_DETERMINISTIC) continue;
            *deterministic = pass == 0;
            return i;
        }
    return -1;
}

#define MAX_ALGOS 16

static int choose_algorithms(cuvae_cuda_ctx *ctx, cuvae_conv_plan *p, cuvae_status *st)
{
    const conv_key *k = &p->key;
    cudnnHandle_t h = ctx->cudnn;
    int n = 0, i, det = 1, all_det = 1;
    cudnnConvolutionFwdAlgoPerf_t fr[MAX_ALGOS];
    CUDNN_CHECK(st, cudnnGetConvolutionForwardAlgorithm_v7(h, p->big, p->filt, p->conv[DIR_FWD],
                                                           p->small, MAX_ALGOS, &n, fr));
    if ((i = pick(fr, n, k->tensor_ops, k->ws_limit, &det)) < 0)
        return cuvae_fail(st, "conv: cuDNN offers no forward algorithm for this shape");
    p->fwd = fr[i].algo;
    p->ws[DIR_FWD] = fr[i].memory;
    p->math[DIR_FWD] = k->tensor_ops ? fr[i].mathType : CUDNN_FMA_MATH;
    p->det[DIR_FWD] = det;
    all_det &= det;
    if (k->tensor_ops)
        CUDNN_CHECK(st, cudnnSetConvolutionMathType(p->conv[DIR_FWD], fr[i].mathType));
    cudnnConvolutionBwdDataAlgoPerf_t dr[MAX_ALGOS];
    CUDNN_CHECK(st, cudnnGetConvolutionBackwardDataAlgorithm_v7(
                        h, p->filt, p->small, p->conv[DIR_DATA], p->big, MAX_ALGOS, &n, dr));
    if ((i = pick(dr, n, k->tensor_ops, k->ws_limit, &det)) < 0)
        return cuvae_fail(st, "conv: cuDNN offers no backward-data algorithm for this shape");
    p->data = dr[i].algo;
    p->ws[DIR_DATA] = dr[i].memory;
    p->math[DIR_DATA] = k->tensor_ops ? dr[i].mathType : CUDNN_FMA_MATH;
    p->det[DIR_DATA] = det;
    all_det &= det;
    if (k->tensor_ops)
        CUDNN_CHECK(st, cudnnSetConvolutionMathType(p->conv[DIR_DATA], dr[i].mathType));
    cudnnConvolutionBwdFilterAlgoPerf_t wr[MAX_ALGOS];
    CUDNN_CHECK(st, cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                        h, p->big, p->small, p->conv[DIR_FILT], p->filt, MAX_ALGOS, &n, wr));
    if ((i = pick(wr, n, k->tensor_ops, k->ws_limit, &det)) < 0)
        return cuvae_fail(st, "conv: cuDNN offers no backward-filter algorithm for this shape");
    p->filt_algo = wr[i].algo;
    p->ws[DIR_FILT] = wr[i].memory;
    p->math[DIR_FILT] = k->tensor_ops ? wr[i].mathType : CUDNN_FMA_MATH;
    p->det[DIR_FILT] = det;
    all_det &= det;
    if (k->tensor_ops)
        CUDNN_CHECK(st, cudnnSetConvolutionMathType(p->conv[DIR_FILT], wr[i].mathType));
    if (!all_det) ctx->conv_nondeterministic++;
    return 0;
}

static int plan_build(cuvae_cuda_ctx *ctx, cuvae_conv_plan *p, cuvae_status *st)
{
    const conv_key *k = &p->key;
    const conv_geom *g = &k->g;
    cudnnDataType_t t = k->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    CUDNN_CHECK(st, cudnnCreateTensorDescriptor(&p->big));
    CUDNN_CHECK(st, cudnnCreateTensorDescriptor(&p->small));
    CUDNN_CHECK(st, cudnnCreateFilterDescriptor(&p->filt));
    CUDNN_CHECK(st, cudnnSetTensor4dDescriptor(p->big, CUDNN_TENSOR_NCHW, t, k->rows, g->big_c,
                                               g->big_h, g->big_w));
    CUDNN_CHECK(st, cudnnSetTensor4dDescriptor(p->small, CUDNN_TENSOR_NCHW, t, k->rows, g->small_c,
                                               g->small_h, g->small_w));
    CUDNN_CHECK(st, cudnnSetFilter4dDescriptor(p->filt, t, CUDNN_TENSOR_NCHW, g->small_c, g->big_c,
                                               g->k, g->k));
    for (int d = 0; d < DIRS; d++) {
        CUDNN_CHECK(st, cudnnCreateConvolutionDescriptor(&p->conv[d]));
        /* PyTorch's convolution is a cross-correlation; accumulation in fp32 either way. */
        CUDNN_CHECK(st, cudnnSetConvolution2dDescriptor(p->conv[d], g->p, g->p, g->s, g->s, 1, 1,
                                                        CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        CUDNN_CHECK(st, cudnnSetConvolutionMathType(p->conv[d], k->tensor_ops ? CUDNN_TENSOR_OP_MATH
                                                                              : CUDNN_FMA_MATH));
    }
    return choose_algorithms(ctx, p, st);
}

/* The cached plan of key, made now when it is new (never inside a graph capture). */
static int plan_get(cuvae_cuda_ctx *ctx, const conv_key *key, cudaStream_t stream,
                    cuvae_conv_plan **out, cuvae_status *st)
{
    *out = NULL;
    if (conv_setup(ctx, stream, st)) return -1;
    for (int i = 0; i < ctx->n_conv_plans; i++)
        if (memcmp(&ctx->conv_plans[i].key, key, sizeof *key) == 0) {
            *out = &ctx->conv_plans[i];
            return 0;
        }
    if (ctx->capturing)
        return cuvae_fail(st, "conv: a plan was not chosen before the graph capture (%d rows)",
                          key->rows);
    if (ctx->n_conv_plans == ctx->cap_conv_plans && ctx->cap_conv_plans < CONV_MAX_PLANS) {
        int cap = ctx->cap_conv_plans ? 2 * ctx->cap_conv_plans : 8;
        cuvae_conv_plan *grown =
            (cuvae_conv_plan *)realloc(ctx->conv_plans, sizeof *grown * (size_t)cap);
        if (!grown) return cuvae_fail(st, "conv: out of memory for the plan cache");
        ctx->conv_plans = grown;
        ctx->cap_conv_plans = cap;
    }
    cuvae_conv_plan *p;
    if (ctx->n_conv_plans < ctx->cap_conv_plans) {
        p = &ctx->conv_plans[ctx->n_conv_plans++];
    } else { /* full: replace the plans in turn (evaluation's odd row counts) */
        p = &ctx->conv_plans[ctx->next_conv_evict];
        ctx->next_conv_evict = (ctx->next_conv_evict + 1) % ctx->n_conv_plans;
        plan_destroy(p);
    }
    memset(p, 0, sizeof *p);
    p->key = *key;
    if (plan_build(ctx, p, st)) {
        plan_destroy(p);
        /* The slot stays zeroed; a zero key matches no real shape (rows >= 1). */
        return cuvae_fail_prefix(st,
                                 "conv %dx%dx%d <-> %dx%dx%d, kernel %d stride %d padding %d, "
                                 "%d rows, %s",
                                 key->g.big_c, key->g.big_h, key->g.big_w, key->g.small_c,
                                 key->g.small_h, key->g.small_w, key->g.k, key->g.s, key->g.p,
                                 key->rows, key->bf16 ? "bf16" : "fp32");
    }
    *out = p;
    return 0;
}

static const char *math_name(cudnnMathType_t m)
{
    return m == CUDNN_TENSOR_OP_MATH ? "tensor-op" : m == CUDNN_FMA_MATH ? "fma" : "default";
}

void cuvae_conv_plans_describe(const cuvae_cuda_ctx *ctx, char *buf, size_t len)
{
    size_t at = 0;
    if (len) buf[0] = '\0';
    for (int i = 0; i < ctx->n_conv_plans && at < len; i++) {
        const cuvae_conv_plan *p = &ctx->conv_plans[i];
        const conv_key *k = &p->key;
        if (k->rows < 1) continue; /* a slot whose plan failed */
        int n = snprintf(buf + at, len - at,
                         "conv plan %dx%dx%d <-> %dx%dx%d k%d s%d p%d, %d rows, %s%s: forward algo "
                         "%d (%s, %zu B%s), backward-data algo %d (%s, %zu B%s), backward-filter "
                         "algo %d (%s, %zu B%s)\n",
                         k->g.big_c, k->g.big_h, k->g.big_w, k->g.small_c, k->g.small_h,
                         k->g.small_w, k->g.k, k->g.s, k->g.p, k->rows, k->bf16 ? "bf16" : "fp32",
                         k->tensor_ops && !k->bf16 ? " tf32" : "", (int)p->fwd,
                         math_name(p->math[DIR_FWD]), p->ws[DIR_FWD],
                         p->det[DIR_FWD] ? "" : ", non-deterministic", (int)p->data,
                         math_name(p->math[DIR_DATA]), p->ws[DIR_DATA],
                         p->det[DIR_DATA] ? "" : ", non-deterministic", (int)p->filt_algo,
                         math_name(p->math[DIR_FILT]), p->ws[DIR_FILT],
                         p->det[DIR_FILT] ? "" : ", non-deterministic");
        if (n < 0) break;
        at += (size_t)n;
    }
}

/* The workspace's tail, two slots of the layer's weight size in the operand type: a copy of the
 * weights when theirs is not 16-byte aligned (a layer's offset in the flat buffer is arbitrary;
 * cuDNN's vectorised kernels want aligned tensors), then the weight gradient when it cannot be
 * written in place (bf16, widened afterwards; or fp32 at an unaligned address). */
static size_t tail_slot_bytes(const cuvae_layer *l, cuvae_operand op)
{
    return (l->w_count * cuvae_operand_size(op) + 255) / 256 * 256;
}

static size_t tail_bytes(const cuvae_layer *l, cuvae_operand op)
{
    return 2 * tail_slot_bytes(l, op);
}

static int misaligned(const void *p)
{
    return ((uintptr_t)p & 15u) != 0;
}

/* The tail takes at most half the workspace. */
static int check_tail(size_t tail, cuvae_status *st)
{
    if (tail > CUVAE_CONV_WORKSPACE_BYTES / 2)
        return cuvae_fail(st,
                          "conv: the weights need %.1f MiB of the cuDNN workspace, more than half "
                          "of its %.0f MiB",
                          cuvae_mib(tail), cuvae_mib(CUVAE_CONV_WORKSPACE_BYTES));
    return 0;
}

/* The weights as cuDNN reads them: w itself, or its copy in the tail's first slot. */
static int aligned_weights(cuvae_cuda_ctx *ctx, const cuvae_layer *l, cuvae_operand op,
                           const void **w, cudaStream_t stream, cuvae_status *st)
{
    if (!misaligned(*w)) return 0;
    void *copy = (char *)ctx->conv_ws + (ctx->conv_ws_bytes - tail_bytes(l, op));
    CUDA_CHECK(st, cudaMemcpyAsync(copy, *w, l->w_count * cuvae_operand_size(op),
                                   cudaMemcpyDeviceToDevice, stream));
    *w = copy;
    return 0;
}

static void make_key(cuvae_cuda_ctx *ctx, const conv_geom *g, int rows, cuvae_operand op,
                     size_t tail, conv_key *k)
{
    memset(k, 0, sizeof *k); /* padding too: keys are compared with memcmp */
    k->rows = rows;
    k->g = *g;
    k->bf16 = op == CUVAE_OPERAND_BF16;
    k->tensor_ops = k->bf16 || ctx->precision == CUVAE_PREC_TF32;
    k->ws_limit = CUVAE_CONV_WORKSPACE_BYTES - tail;
}

/* Rows one cuDNN call takes: its tensors must stay under 2^31 values. */
static int rows_per_call(const cuvae_layer *l)
{
    int widest = l->in > l->out ? l->in : l->out;
    int most = INT_MAX / widest;
    /* A multiple of 16 rows, so that every call's tensors start 16-byte aligned. */
    return most >= 16 ? most / 16 * 16 : most < 1 ? 1 : most;
}

/* ---- launchers ------------------------------------------------------------------------------- */

int cuvae_conv_forward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l, const void *x,
                       const void *w, const void *b, int B, void *y, cudaDataType_t y_type,
                       float *scratch, cuvae_relu_mask *mask, cudaStream_t stream, cuvae_status *st)
{
    conv_geom g;
    if (layer_geom(l, &g, st)) return -1;
    if (B < 1) return cuvae_fail(st, "conv forward: batch %d: expected positive", B);
    if (!x || !w || !b || !y) return cuvae_fail(st, "conv forward: a NULL buffer");
    int bf16 = op == CUVAE_OPERAND_BF16;
    cudaDataType_t ab = cuvae_operand_type(op);
    if (y_type != ab && y_type != CUDA_R_32F)
        return cuvae_fail(st, "conv forward: the output is neither fp32 nor the operand type");
    int widen = bf16 && y_type == CUDA_R_32F; /* cuDNN's bf16 result widened into fp32 y */
    if (widen && !scratch)
        return cuvae_fail(st, "conv forward: an fp32 output of bf16 operands needs a scratch");
    if (mask) {
        mask->valid = 0;
        mask->ld = ((int64_t)l->out + 127) / 128 * 128;
    }
    size_t osz = cuvae_operand_size(op), ysz = y_type == CUDA_R_32F ? 4 : osz;
    int relu = l->act == CUVAE_ACT_RELU;
    int C = l->out_shape.c, HW = l->out_shape.h * l->out_shape.w;
    int step = rows_per_call(l);
    size_t tail = tail_bytes(l, op);
    if (check_tail(tail, st)) return -1;
    const float one = 1.0f, zero = 0.0f;
    for (int r0 = 0; r0 < B; r0 += step) {
        int rows = B - r0 < step ? B - r0 : step;
        conv_key key;
        make_key(ctx, &g, rows, op, tail, &key);
        cuvae_conv_plan *p;
        if (plan_get(ctx, &key, stream, &p, st)) return cuvae_fail_prefix(st, "conv forward");
        if (ctx->plan_only) continue;
        if (r0 == 0 && aligned_weights(ctx, l, op, &w, stream, st)) return -1;
        const char *xi = (const char *)x + (size_t)r0 * (size_t)l->in * osz;
        char *yo = (char *)y + (size_t)r0 * (size_t)l->out * ysz;
        /* cuDNN's result: y itself, or (bf16 into fp32 y) the scratch. */
        void *res = widen ? (void *)scratch : (void *)yo;
        if (g.transposed)
            CUDNN_CHECK(st, cudnnConvolutionBackwardData(ctx->cudnn, &one, p->filt, w, p->small, xi,
                                                         p->conv[DIR_DATA], p->data, ctx->conv_ws,
                                                         p->ws[DIR_DATA], &zero, p->big, res));
        else
            CUDNN_CHECK(st, cudnnConvolutionForward(ctx->cudnn, &one, p->big, xi, p->filt, w,
                                                    p->conv[DIR_FWD], p->fwd, ctx->conv_ws,
                                                    p->ws[DIR_FWD], &zero, p->small, res));
        size_t total = (size_t)rows * (size_t)l->out;
        int grid = cuvae_grid_for(total, CONV_THREADS);
        if (widen)
            bias_act_kernel<cuvae_bf16, float><<<grid, CONV_THREADS, 0, stream>>>(
                (const cuvae_bf16 *)res, (const float *)b, (float *)yo, total, C, HW, relu);
        else if (bf16)
            bias_act_kernel<cuvae_bf16, cuvae_bf16>
                <<<grid, CONV_THREADS, 0, stream>>>((const cuvae_bf16 *)yo, (const cuvae_bf16 *)b,
                                                    (cuvae_bf16 *)yo, total, C, HW, relu);
        else
            bias_act_kernel<float, float><<<grid, CONV_THREADS, 0, stream>>>(
                (const float *)yo, (const float *)b, (float *)yo, total, C, HW, relu);
        CUDA_CHECK_LAUNCH(st);
    }
    return 0;
}

int cuvae_conv_backward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l, const void *x,
                        const void *w, const float *dy, void *dy_op, int B, float *dw, float *db,
                        float *dx, void *dx_op, int x_relu, float *db_prev, cudaStream_t stream,
                        cuvae_status *st)
{
    conv_geom g;
    if (layer_geom(l, &g, st)) return -1;
    if (B < 1) return cuvae_fail(st, "conv backward: batch %d: expected positive", B);
    int bf16 = op == CUVAE_OPERAND_BF16;
    const void *dy_in = bf16 ? (const void *)dy_op : (const void *)dy;
    if (!x || !w || !dy || !dy_in || !dw) return cuvae_fail(st, "conv backward: a NULL buffer");
    if (!bf16 && dx_op) return cuvae_fail(st, "conv backward: an operand copy of dx under fp32");
    if (db_prev && (!dx || !x_relu))
        return cuvae_fail(st, "conv backward: the previous layer's bias gradient needs dx of a "
                              "ReLU input");
    if (B > rows_per_call(l))
        return cuvae_fail(st, "conv backward: %d rows of %d and %d values exceed cuDNN's 2^31", B,
                          l->in, l->out);
    size_t tail = tail_bytes(l, op);
    if (check_tail(tail, st)) return -1;
    conv_key key;
    make_key(ctx, &g, B, op, tail, &key);
    cuvae_conv_plan *p;
    if (plan_get(ctx, &key, stream, &p, st)) return cuvae_fail_prefix(st, "conv backward");
    if (ctx->plan_only) return 0;
    if (aligned_weights(ctx, l, op, &w, stream, st)) return -1;
    const float one = 1.0f, zero = 0.0f;
    /* The weight gradient: straight into dw (fp32, aligned), else into the tail's second slot. */
    int dw_via_tail = bf16 || misaligned(dw);
    void *dw_out =
        dw_via_tail
            ? (void *)((char *)ctx->conv_ws + (ctx->conv_ws_bytes - tail) + tail_slot_bytes(l, op))
            : (void *)dw;
    /* big/small operands of Filt and the input-gradient direction, by kind. */
    const void *big_in = g.transposed ? dy_in : x, *small_in = g.transposed ? x : dy_in;
    CUDNN_CHECK(st, cudnnConvolutionBackwardFilter(
                        ctx->cudnn, &one, p->big, big_in, p->small, small_in, p->conv[DIR_FILT],
                        p->filt_algo, ctx->conv_ws, p->ws[DIR_FILT], &zero, p->filt, dw_out));
    if (bf16) {
        f32_from_bf16_kernel<<<cuvae_grid_for(l->w_count, CONV_THREADS), CONV_THREADS, 0, stream>>>(
            (const cuvae_bf16 *)dw_out, dw, l->w_count);
        CUDA_CHECK_LAUNCH(st);
    } else if (dw_via_tail) {
        CUDA_CHECK(st, cudaMemcpyAsync(dw, dw_out, l->w_count * sizeof(float),
                                       cudaMemcpyDeviceToDevice, stream));
    }
    if (db) {
        bias_grad_kernel<<<l->out_shape.c, BIAS_GRAD_THREADS, 0, stream>>>(
            dy, B, l->out_shape.c, l->out_shape.h * l->out_shape.w, db);
        CUDA_CHECK_LAUNCH(st);
    }
    if (!dx) return 0;
    /* The input gradient, in the operand type: into dx itself (fp32), or as bf16 into dx's
     * first half, widened below. */
    if (g.transposed)
        CUDNN_CHECK(st, cudnnConvolutionForward(ctx->cudnn, &one, p->big, dy_in, p->filt, w,
                                                p->conv[DIR_FWD], p->fwd, ctx->conv_ws,
                                                p->ws[DIR_FWD], &zero, p->small, dx));
    else
        CUDNN_CHECK(st, cudnnConvolutionBackwardData(ctx->cudnn, &one, p->filt, w, p->small, dy_in,
                                                     p->conv[DIR_DATA], p->data, ctx->conv_ws,
                                                     p->ws[DIR_DATA], &zero, p->big, dx));
    size_t n = (size_t)B * (size_t)l->in;
    int grid = cuvae_grid_for(n, CONV_THREADS);
    if (bf16) {
        /* Every read of dy_op is enqueued above: the staging copy may now take its place. */
        cuvae_bf16 *stage = (cuvae_bf16 *)(dx_op ? dx_op : dy_op);
        const cuvae_bf16 *xr = x_relu ? (const cuvae_bf16 *)x : NULL;
        mask_kernel<cuvae_bf16, cuvae_bf16>
            <<<grid, CONV_THREADS, 0, stream>>>((const cuvae_bf16 *)dx, xr, NULL, stage, n);
        CUDA_CHECK_LAUNCH(st);
        mask_kernel<cuvae_bf16, cuvae_bf16>
            <<<grid, CONV_THREADS, 0, stream>>>(stage, NULL, dx, NULL, n);
        CUDA_CHECK_LAUNCH(st);
    } else if (x_relu) {
        mask_kernel<float, float>
            <<<grid, CONV_THREADS, 0, stream>>>(dx, (const float *)x, dx, NULL, n);
        CUDA_CHECK_LAUNCH(st);
    }
    if (db_prev) {
        column_sum_kernel<<<cuvae_grid_for((size_t)l->in, CONV_THREADS), CONV_THREADS, 0, stream>>>(
            dx, B, l->in, db_prev);
        CUDA_CHECK_LAUNCH(st);
    }
    return 0;
}

#else /* no cuDNN in this build */

int cuvae_conv_built(void)
{
    return 0;
}

void cuvae_conv_plans_describe(const cuvae_cuda_ctx *ctx, char *buf, size_t len)
{
    (void)ctx;
    if (len) buf[0] = '\0';
}

void cuvae_conv_release(cuvae_cuda_ctx *ctx)
{
    (void)ctx;
}

static int no_cudnn(cuvae_status *st)
{
    return cuvae_fail(st, "conv layers on CUDA need cuDNN 9, which this build was made without");
}

int cuvae_conv_forward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l, const void *x,
                       const void *w, const void *b, int B, void *y, cudaDataType_t y_type,
                       float *scratch, cuvae_relu_mask *mask, cudaStream_t stream, cuvae_status *st)
{
    (void)ctx, (void)op, (void)l, (void)x, (void)w, (void)b, (void)B, (void)y, (void)y_type;
    (void)scratch, (void)mask, (void)stream;
    return no_cudnn(st);
}

int cuvae_conv_backward(cuvae_cuda_ctx *ctx, cuvae_operand op, const cuvae_layer *l, const void *x,
                        const void *w, const float *dy, void *dy_op, int B, float *dw, float *db,
                        float *dx, void *dx_op, int x_relu, float *db_prev, cudaStream_t stream,
                        cuvae_status *st)
{
    (void)ctx, (void)op, (void)l, (void)x, (void)w, (void)dy, (void)dy_op, (void)B, (void)dw;
    (void)db, (void)dx, (void)dx_op, (void)x_relu, (void)db_prev, (void)stream;
    return no_cudnn(st);
}

#endif
