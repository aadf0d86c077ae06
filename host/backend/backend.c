/* The backends' front door. Selection per --device: auto takes CUDA when a device is usable (and
 * falls back to the CPU, saying why, when the CUDA backend cannot be created); cpu and cuda are
 * taken as asked. The choice is reported on the log so that every run says where it ran. Then
 * every call: the checks that do not depend on the backend happen here, once, before dispatch
 * (as ggml_backend_tensor_set asserts, then calls the backend), so neither backend repeats them. */
#include "backend.h"

#include <string.h>

/* Why no CUDA device is used: the runtime's reason when cuvae_cuda_available gave one. */
static const char *no_cuda_reason(const char *name)
{
    if (name[0]) return name;
#ifdef CUVAE_HAVE_CUDA
    return "none usable";
#else
    return "this cuvae was built without CUDA";
#endif
}

cuvae_backend *cuvae_backend_create(cuvae_device device, const cuvae_backend_spec *spec, FILE *log,
                                    cuvae_status *st)
{
    char name[256] = "";
    cuvae_backend *be = NULL;
    switch (device) {
    case CUVAE_DEV_CPU:
        be = cuvae_cpu_backend_create(spec, st);
        if (be && log) fprintf(log, "device: cpu\n");
        return be;
    case CUVAE_DEV_CUDA:
        if (!cuvae_cuda_available(name, sizeof name)) {
            cuvae_fail(st, "--device cuda: no usable CUDA device (%s)", no_cuda_reason(name));
            return NULL;
        }
        be = cuvae_cuda_backend_create(spec, st);
        if (!be) {
            cuvae_fail_prefix(st, "--device cuda");
            return NULL;
        }
        if (log) fprintf(log, "device: cuda (%s)\n", name);
        return be;
    case CUVAE_DEV_AUTO:
        break;
    }
    if (cuvae_cuda_available(name, sizeof name)) {
        cuvae_status cuda_st = {{0}};
        be = cuvae_cuda_backend_create(spec, &cuda_st);
        if (be) {
            if (log) fprintf(log, "device: cuda (%s)\n", name);
            return be;
        }
        be = cuvae_cpu_backend_create(spec, st);
        if (be && log)
            fprintf(log, "device: cpu (the CUDA backend on %s failed: %s)\n", name, cuda_st.msg);
        return be;
    }
    be = cuvae_cpu_backend_create(spec, st);
    if (be && log) fprintf(log, "device: cpu (no CUDA device: %s)\n", no_cuda_reason(name));
    return be;
}

/* ---- the front door ----------------------------------------------------------------------------
 */

static const char *set_name(cuvae_set set)
{
    return set == CUVAE_SET_TRAIN ? "training" : set == CUVAE_SET_VALID ? "validation" : "test";
}

static int bad_set(const cuvae_backend *be, cuvae_set set, const char *what, cuvae_status *st)
{
    if ((int)set >= 0 && set < CUVAE_SET_COUNT) return 0;
    return cuvae_fail(st, "%s backend: %s: unknown set %d", be->ops->name, what, (int)set);
}

/* Every index names an example of the uploaded set. */
static int check_indices(const cuvae_backend *be, cuvae_set set, const int32_t *idx, int n,
                         const char *what, cuvae_status *st)
{
    if (!be->set_uploaded[set])
        return cuvae_fail(st, "%s backend: %s: the %s set was not uploaded", be->ops->name, what,
                          set_name(set));
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= be->set_rows[set])
            return cuvae_fail(st,
                              "%s backend: %s: index %d at position %d is outside the %s set "
                              "(%lld examples)",
                              be->ops->name, what, idx[i], i, set_name(set),
                              (long long)be->set_rows[set]);
    return 0;
}

void cuvae_backend_destroy(cuvae_backend *be)
{
    if (be) be->ops->destroy(be);
}

const char *cuvae_backend_name(const cuvae_backend *be)
{
    return be->ops->name;
}

int cuvae_backend_upload_data(cuvae_backend *be, cuvae_set set, const cuvae_upload_desc *u,
                              cuvae_status *st)
{
    const char *name = be->ops->name;
    if (bad_set(be, set, "upload", st)) return -1;
    if (u->d != be->x_dim)
        return cuvae_fail(st,
                          "%s backend: upload of the %s set: %d values per example, the model "
                          "expects %d",
                          name, set_name(set), u->d, be->x_dim);
    if (u->n < 0 || u->n > INT32_MAX)
        return cuvae_fail(st, "%s backend: upload of the %s set: %lld examples (expected 0 to %d)",
                          name, set_name(set), (long long)u->n, INT32_MAX);
    if (u->dtype != CUVAE_DATA_U8 && u->dtype != CUVAE_DATA_F32)
        return cuvae_fail(st, "%s backend: upload of the %s set: unknown value type %d", name,
                          set_name(set), (int)u->dtype);
    if (u->dtype == CUVAE_DATA_F32 && u->dynamic)
        return cuvae_fail(st,
                          "%s backend: upload of the %s set: float32 values cannot be binarized "
                          "dynamically",
                          name, set_name(set));
    /* What a failed upload leaves in the set is the backend's business: none of it is used. */
    be->set_uploaded[set] = 0;
    if (be->ops->upload(be, set, u, st)) return -1;
    be->set_rows[set] = u->n;
    be->set_uploaded[set] = 1;
    return 0;
}

int cuvae_backend_upload(cuvae_backend *be, cuvae_set set, const uint8_t *pixels, int64_t n, int d,
                         int dynamic, cuvae_status *st)
{
    /* A caller of the byte interface may free its pixels at once: never borrowed. */
    int streams = be->stream_train;
    be->stream_train = 0;
    cuvae_upload_desc u = {
        .data = pixels, .dtype = CUVAE_DATA_U8, .n = n, .d = d, .dynamic = dynamic};
    int rc = cuvae_backend_upload_data(be, set, &u, st);
    be->stream_train = streams && set != CUVAE_SET_TRAIN;
    return rc;
}

int cuvae_backend_streams(const cuvae_backend *be, cuvae_set set)
{
    return set == CUVAE_SET_TRAIN && be->stream_train;
}

int cuvae_backend_train_step(cuvae_backend *be, const cuvae_step *step, cuvae_status *st)
{
    if (step->batch <= 0)
        return cuvae_fail(st, "%s backend: train step: batch of %d examples", be->ops->name,
                          step->batch);
    if (check_indices(be, CUVAE_SET_TRAIN, step->idx, step->batch, "train step", st)) return -1;
    return be->ops->train_step(be, step, st);
}

int cuvae_backend_read_metrics(cuvae_backend *be, cuvae_metrics *out, int reset, cuvae_status *st)
{
    return be->ops->read_metrics(be, out, reset, st);
}

int cuvae_backend_evaluate(cuvae_backend *be, cuvae_set set, const int32_t *idx, int n, int K,
                           uint64_t counter, cuvae_eval_out *out, cuvae_status *st)
{
    const char *name = be->ops->name;
    if (bad_set(be, set, "evaluate", st)) return -1;
    if (n <= 0) return cuvae_fail(st, "%s backend: evaluate: %d examples", name, n);
    if (K <= 0) return cuvae_fail(st, "%s backend: evaluate: K = %d, expected at least 1", name, K);
    if (check_indices(be, set, idx, n, "evaluate", st)) return -1;
    return be->ops->evaluate(be, set, idx, n, K, counter, out, st);
}

int cuvae_backend_decode(cuvae_backend *be, const float *z, int n, float *x_mean, cuvae_status *st)
{
    if (n <= 0) return cuvae_fail(st, "%s backend: decode: %d latents", be->ops->name, n);
    return be->ops->decode(be, z, n, x_mean, st);
}

int cuvae_backend_get_state(cuvae_backend *be, cuvae_train_state *out, cuvae_status *st)
{
    return be->ops->get_state(be, out, st);
}

int cuvae_backend_set_state(cuvae_backend *be, const cuvae_train_state *in, cuvae_status *st)
{
    if (!in->params)
        return cuvae_fail(st, "%s backend: set_state without parameters", be->ops->name);
    return be->ops->set_state(be, in, st);
}

void cuvae_backend_describe(cuvae_backend *be, char *buf, size_t len)
{
    be->ops->describe(be, buf, len);
}

int cuvae_backend_has_profile(const cuvae_backend *be)
{
    return be->ops->profile != NULL;
}

int cuvae_backend_profile(cuvae_backend *be, cuvae_profile *out, int reset, cuvae_status *st)
{
    if (!be->ops->profile) {
        out->n = 0;
        out->steps = 0;
        out->seconds = 0.0;
        return 0;
    }
    return be->ops->profile(be, out, reset, st);
}
