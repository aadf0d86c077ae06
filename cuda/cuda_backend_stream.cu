/* A streamed training set (data.stream, backend.h) on the CUDA backend: the set stays in the
 * uploader's host memory (a .npy's mapping, larger than the GPU or than RAM), and each step's rows
 * travel to the device as the step needs them, double-buffered:
 *
 *   host: copy the rows of step t+1 from the mapping into pinned slot s' (while step t runs)
 *   copy stream: wait until slot s' was consumed by step t-1; H2D pinned[s'] -> slot[s'];
 *                record copied[s']
 *   step stream (step t+1): wait copied[s']; D2D slot[s'] -> batch; record consumed[s'];
 *                the step's gather reads batch as rows 0..B-1
 *
 * Dynamic binarization keys its noise by the batch slot (b * d + p), not the set row, and the
 * scaling is per value, so a streamed step computes exactly what a resident one does. The step
 * reads `batch`, a fixed address, so a captured step graph replays unchanged; the slot copy stays
 * outside the graph with the indices' copy. The host waits only when it would overwrite a pinned
 * slot whose previous copy has not run yet (two steps ahead of the device). */
#include <stdlib.h>
#include <string.h>

#include "cuda_backend_impl.h"

void cuvae_cuda_stream_free(cuda_backend *cb)
{
    cuda_stream *s = &cb->stream;
    if (s->copy) cudaStreamSynchronize(s->copy);
    for (int i = 0; i < 2; i++) {
        if (s->pinned[i]) cudaFreeHost(s->pinned[i]);
        cuvae_cuda_free(&cb->ctx, s->slot[i], s->device_bytes);
        if (s->copied[i]) cudaEventDestroy(s->copied[i]);
        if (s->consumed[i]) cudaEventDestroy(s->consumed[i]);
        free(s->rows[i]);
    }
    cuvae_cuda_free(&cb->ctx, s->batch, s->device_bytes);
    if (s->copy) cudaStreamDestroy(s->copy);
    memset(s, 0, sizeof *s);
    s->ready = -1;
}

int cuvae_cuda_stream_alloc(cuda_backend *cb, size_t row_bytes, cuvae_status *st)
{
    cuda_stream *s = &cb->stream;
    if (s->row_bytes == row_bytes && s->batch) return 0;
    cuvae_cuda_stream_free(cb);
    size_t bytes = row_bytes * (size_t)cb->max_batch;
    s->row_bytes = row_bytes;
    s->device_bytes = bytes;
    s->host_bytes = 2 * bytes;
    if (CUDA_OK(st, cudaStreamCreateWithFlags(&s->copy, cudaStreamNonBlocking))) goto fail;
    for (int i = 0; i < 2; i++) {
        if (CUDA_OK(st, cudaHostAlloc((void **)&s->pinned[i], bytes, cudaHostAllocDefault))) {
            s->pinned[i] = NULL;
            goto fail;
        }
        if (cuvae_cuda_alloc(&cb->ctx, &s->slot[i], bytes, "a streamed batch's rows", st) ||
            CUDA_OK(st, cudaEventCreateWithFlags(&s->copied[i], cudaEventDisableTiming)) ||
            CUDA_OK(st, cudaEventCreateWithFlags(&s->consumed[i], cudaEventDisableTiming)))
            goto fail;
        s->rows[i] = (int32_t *)cuvae_malloc((size_t)cb->max_batch * sizeof(int32_t),
                                             "a streamed batch's indices", st);
        if (!s->rows[i]) goto fail;
    }
    if (cuvae_cuda_alloc(&cb->ctx, &s->batch, bytes, "a streamed batch's rows", st)) goto fail;
    s->ready = -1;
    return 0;
fail:
    cuvae_cuda_stream_free(cb);
    return cuvae_fail_prefix(st,
                             "cuda backend: streaming buffers (2 x %zu bytes pinned, 3 x %zu "
                             "on the device)",
                             bytes, bytes);
}

/* Copies rows idx[0..n) of the streamed set into pinned slot `k` and enqueues their copy to the
 * device on the copy stream, behind the step that last read that slot. */
static int stage(cuda_backend *cb, int k, const int32_t *idx, int n, cuvae_status *st)
{
    cuda_stream *s = &cb->stream;
    const cuda_set *set = &cb->sets[CUVAE_SET_TRAIN];
    /* The pinned slot is rewritten below: its previous copy to the device must have run. */
    if (CUDA_OK(st, cudaEventSynchronize(s->copied[k])))
        return cuvae_fail_prefix(st, "cuda backend: streaming the training set");
    size_t row = s->row_bytes;
    for (int b = 0; b < n; b++)
        memcpy(s->pinned[k] + (size_t)b * row, set->host + (size_t)idx[b] * row, row);
    memcpy(s->rows[k], idx, (size_t)n * sizeof *idx);
    s->count[k] = n;
    CUDA_CHECK(st, cudaStreamWaitEvent(s->copy, s->consumed[k], 0));
    CUDA_CHECK(st, cudaMemcpyAsync(s->slot[k], s->pinned[k], (size_t)n * row,
                                   cudaMemcpyHostToDevice, s->copy));
    CUDA_CHECK(st, cudaEventRecord(s->copied[k], s->copy));
    return 0;
}

int cuvae_cuda_stream_step(cuda_backend *cb, const cuvae_step *step, cuvae_status *st)
{
    cuda_stream *s = &cb->stream;
    cudaStream_t stream = cb->ctx.stream;
    int B = step->batch, k = s->ready;
    /* The rows staged for this step, or (first step, an unforeseen batch) stage them now. */
    if (k < 0 || s->count[k] != B ||
        memcmp(s->rows[k], step->idx, (size_t)B * sizeof *step->idx) != 0) {
        k = k < 0 ? 0 : 1 - k;
        if (stage(cb, k, step->idx, B, st)) return -1;
    }
    CUDA_CHECK(st, cudaStreamWaitEvent(stream, s->copied[k], 0));
    CUDA_CHECK(st, cudaMemcpyAsync(s->batch, s->slot[k], (size_t)B * s->row_bytes,
                                   cudaMemcpyDeviceToDevice, stream));
    CUDA_CHECK(st, cudaEventRecord(s->consumed[k], stream));
    s->ready = -1;
    s->current = k;
    return 0;
}

int cuvae_cuda_stream_prefetch(cuda_backend *cb, const cuvae_step *step, cuvae_status *st)
{
    cuda_stream *s = &cb->stream;
    int k = s->current;
    if (step->next_idx && step->next_batch > 0 && step->next_batch <= cb->max_batch) {
        int64_t n = cb->sets[CUVAE_SET_TRAIN].n;
        for (int b = 0; b < step->next_batch; b++)
            if (step->next_idx[b] < 0 || step->next_idx[b] >= n) return 0; /* not a valid hint */
        if (stage(cb, 1 - k, step->next_idx, step->next_batch, st)) return -1;
        s->ready = 1 - k;
    }
    return 0;
}
