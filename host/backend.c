/* Backend selection per --device: auto takes CUDA when a device is usable (and falls back to the
 * CPU, saying why, when the CUDA backend cannot be created); cpu and cuda are taken as asked. The
 * choice is reported on the log so that every run says where it ran. */
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
