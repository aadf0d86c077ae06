/* Which BLAS kernels the CPU backend runs, and the one correction cuvae makes to them.
 *
 * OpenBLAS built with DYNAMIC_ARCH (Debian's) picks a kernel family for the CPU when it loads.
 * On CPUs it does not recognise (a Xeon with AVX-512 that 0.3.21 reports as "Prescott") it falls
 * back to its SSE3 kernels, 4x slower on the training step's GEMMs. cuvae compares the family it
 * picked with what CPUID says the CPU can run and, when it is below, runs itself again once with
 * OPENBLAS_CORETYPE naming the minimum family the CPU supports (cuvae_blas_ensure_kernels). A
 * user's own OPENBLAS_CORETYPE is always respected. */
#ifndef CUVAE_BLAS_INFO_H
#define CUVAE_BLAS_INFO_H

#include <stddef.h>

/* Kernel levels: what a family's GEMM kernels need, and what a CPU supports. */
enum {
    CUVAE_BLAS_LEVEL_SSE = 0,    /* anything below AVX */
    CUVAE_BLAS_LEVEL_AVX = 1,    /* Sandybridge */
    CUVAE_BLAS_LEVEL_AVX2 = 2,   /* Haswell: AVX2 + FMA */
    CUVAE_BLAS_LEVEL_AVX512 = 3, /* SkylakeX: AVX-512F */
};

/* CPU features as CPUID (and the OS's saved register state) report them. */
typedef struct {
    int avx, avx2, fma, avx512f;
} cuvae_cpu_features;

/* The highest level the features allow (pure). */
int cuvae_blas_cpu_level(const cuvae_cpu_features *f);

/* The minimum OpenBLAS family that uses a level's kernels: "SkylakeX", "Haswell", "Sandybridge",
 * or NULL for CUVAE_BLAS_LEVEL_SSE (nothing to ask for) (pure). */
const char *cuvae_blas_level_family(int level);

/* The level of an OpenBLAS family name as openblas_get_corename() spells it (pure; unknown names
 * are CUVAE_BLAS_LEVEL_SSE, matched case-insensitively). */
int cuvae_blas_family_level(const char *corename);

/* Where the kernel family came from. */
typedef enum {
    CUVAE_BLAS_SRC_OPENBLAS, /* OpenBLAS's own choice, at or above the CPU's level */
    CUVAE_BLAS_SRC_USER,     /* OPENBLAS_CORETYPE set by the user */
    CUVAE_BLAS_SRC_CUVAE,    /* set by cuvae: OpenBLAS had picked a lower family */
    CUVAE_BLAS_SRC_LOW,      /* below the CPU's level and not corrected (re-exec failed) */
} cuvae_blas_source;

/* What to do at start-up (pure). env_coretype and env_marker are the values of OPENBLAS_CORETYPE
 * and of cuvae's marker variable (NULL when unset). Returns the family to re-execute with, or
 * NULL to go on as is; *source says where the current family comes from. A re-exec is asked
 * for only when neither variable is set, so a re-executed process never asks again. */
const char *cuvae_blas_decide(int cpu_level, const char *corename, const char *env_coretype,
                              const char *env_marker, cuvae_blas_source *source);

/* Called first thing in main: may replace the process by itself with OPENBLAS_CORETYPE set (see
 * the file comment). Returns only when nothing needs doing or the re-exec failed. */
void cuvae_blas_ensure_kernels(char **argv);

/* "OpenBLAS 0.3.21, kernels SkylakeX (set by cuvae: OpenBLAS picked Prescott, the CPU has
 * AVX-512F), 2 threads": library, version, family, where it came from, threads. */
void cuvae_blas_describe(char *buf, size_t len);

/* The parts of the description, for JSON. */
typedef struct {
    char library[32];   /* "OpenBLAS" */
    char version[32];   /* "0.3.21" */
    char config[160];   /* openblas_get_config() */
    char kernels[32];   /* openblas_get_corename() */
    char source[160];   /* "openblas", "user (OPENBLAS_CORETYPE=...)", "cuvae (...)", ... */
    char cpu_level[16]; /* "AVX-512F", "AVX2+FMA", "AVX", "SSE" */
    int threads;
} cuvae_blas_info;

void cuvae_blas_get_info(cuvae_blas_info *out);

#endif
