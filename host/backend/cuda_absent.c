/* The CUDA entry points of a CPU-only build: no device is ever available. */
#include "backend.h"

#include <string.h>

int cuvae_cuda_available(char *name, size_t len)
{
    if (name && len) name[0] = '\0';
    return 0;
}

cuvae_backend *cuvae_cuda_backend_create(const cuvae_backend_spec *spec, cuvae_status *st)
{
    (void)spec;
    cuvae_fail(st, "--device cuda: this cuvae was built without CUDA (rebuild with the CUDA "
                   "toolkit installed, or use --device cpu)");
    return NULL;
}
