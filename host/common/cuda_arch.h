/* Which GPUs a build can run on: the CUDA architectures it was compiled for (CMake's
 * CMAKE_CUDA_ARCHITECTURES, embedded as CUVAE_CUDA_ARCHS) against a device's compute capability.
 * Pure C, so that the rule is tested without a GPU.
 *
 * The list is CMake's, with ',' or ';' between entries: "90" (machine code and PTX), "90-real"
 * (machine code, SASS), "90-virtual" (PTX), "90a-real" (architecture-specific), "100f-real"
 * (family-specific). The rules (CUDA's compatibility guide):
 *   SASS for sm_XY runs on devices of compute capability X.Z with Z >= Y (same major version);
 *   SASS for sm_XYa runs on X.Y only; SASS for sm_XYf on X.Z with Z >= Y;
 *   PTX for compute_XY is compiled by the driver for any device of capability >= X.Y. */
#ifndef CUVAE_CUDA_ARCH_H
#define CUVAE_CUDA_ARCH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when code in `archs` runs on a device of capability major.minor, 0 when none does, -1 when
 * the list has an entry this rule does not know ("native", "all", "all-major": not checked). On
 * 1, `how` (may be NULL) says which entry serves the device ("sm_86 machine code", "compute_90
 * PTX, compiled by the driver"). */
int cuvae_cuda_arch_runs(const char *archs, int major, int minor, char *how, size_t len);

/* The list for people: "sm_80 sm_86 sm_89 sm_90 machine code, compute_90 PTX". */
void cuvae_cuda_arch_describe(const char *archs, char *buf, size_t len);

/* 1 when no code in `archs` runs on `device` of capability major.minor, with `msg` naming both
 * and how to rebuild (what --device auto falls back with and --device cuda fails with); 0 when
 * some code runs or the list is not checked (msg then empty). */
int cuvae_cuda_arch_mismatch(const char *archs, const char *device, int major, int minor, char *msg,
                             size_t len);

#ifdef __cplusplus
}
#endif
#endif
