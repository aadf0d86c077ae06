/* The BLAS kernel check and report (see blas_info.h).
 *
 * Why a re-exec: OpenBLAS chooses its kernel table in a library constructor, before main runs,
 * and offers no call to choose again; OPENBLAS_CORETYPE is read only then. The other way to set
 * it first is to load OpenBLAS with dlopen after setenv, which would route every cblas call of
 * the backend, the tests and the tools through function pointers resolved by hand. Re-executing
 * /proc/self/exe once, with the variable set, costs a few milliseconds at start-up, keeps the
 * ordinary link, and changes nothing where OpenBLAS already chose well (no re-exec at all).
 * The marker variable CUVAE_BLAS_CORRECTED ("Picked:Family") goes along, so the new process
 * knows the variable was cuvae's and never re-executes again (cuvae_blas_decide asks for a
 * re-exec only when neither variable is set). */
#include "blas_info.h"
#include "cpu_threads.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MARKER "CUVAE_BLAS_CORRECTED"

int cuvae_blas_cpu_level(const cuvae_cpu_features *f)
{
    if (f->avx512f && f->avx2 && f->fma) return CUVAE_BLAS_LEVEL_AVX512;
    if (f->avx2 && f->fma) return CUVAE_BLAS_LEVEL_AVX2;
    if (f->avx) return CUVAE_BLAS_LEVEL_AVX;
    return CUVAE_BLAS_LEVEL_SSE;
}

const char *cuvae_blas_level_family(int level)
{
    switch (level) {
    case CUVAE_BLAS_LEVEL_AVX512:
        return "SkylakeX";
    case CUVAE_BLAS_LEVEL_AVX2:
        return "Haswell";
    case CUVAE_BLAS_LEVEL_AVX:
        return "Sandybridge";
    default:
        return NULL;
    }
}

static const char *level_name(int level)
{
    switch (level) {
    case CUVAE_BLAS_LEVEL_AVX512:
        return "AVX-512F";
    case CUVAE_BLAS_LEVEL_AVX2:
        return "AVX2+FMA";
    case CUVAE_BLAS_LEVEL_AVX:
        return "AVX";
    default:
        return "SSE";
    }
}

int cuvae_blas_family_level(const char *corename)
{
    /* OpenBLAS 0.3.x x86-64 families whose GEMM kernels need more than SSE3. Steamroller and
     * Excavator run the Piledriver (AVX/FMA3) kernels; Zen runs the Haswell ones. */
    static const struct {
        const char *name;
        int level;
    } known[] = {
        {"Sandybridge", CUVAE_BLAS_LEVEL_AVX},   {"Bulldozer", CUVAE_BLAS_LEVEL_AVX},
        {"Piledriver", CUVAE_BLAS_LEVEL_AVX},    {"Steamroller", CUVAE_BLAS_LEVEL_AVX},
        {"Excavator", CUVAE_BLAS_LEVEL_AVX},     {"Haswell", CUVAE_BLAS_LEVEL_AVX2},
        {"Zen", CUVAE_BLAS_LEVEL_AVX2},          {"SkylakeX", CUVAE_BLAS_LEVEL_AVX512},
        {"Cooperlake", CUVAE_BLAS_LEVEL_AVX512}, {"Sapphirerapids", CUVAE_BLAS_LEVEL_AVX512},
    };
    if (!corename) return CUVAE_BLAS_LEVEL_SSE;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcasecmp(corename, known[i].name) == 0) return known[i].level;
    return CUVAE_BLAS_LEVEL_SSE;
}

/* The family named after the ':' of a marker value ("Prescott:SkylakeX"), or NULL. */
static const char *marker_family(const char *marker)
{
    const char *colon = marker ? strchr(marker, ':') : NULL;
    return colon ? colon + 1 : NULL;
}

const char *cuvae_blas_decide(int cpu_level, const char *corename, const char *env_coretype,
                              const char *env_marker, cuvae_blas_source *source)
{
    if (env_coretype && *env_coretype) {
        const char *fam = marker_family(env_marker);
        *source =
            fam && strcmp(fam, env_coretype) == 0 ? CUVAE_BLAS_SRC_CUVAE : CUVAE_BLAS_SRC_USER;
        return NULL;
    }
    const char *want = cuvae_blas_level_family(cpu_level);
    if (!want || cuvae_blas_family_level(corename) >= cpu_level) {
        *source = CUVAE_BLAS_SRC_OPENBLAS;
        return NULL;
    }
    if (env_marker) { /* re-executed once already and the variable did not arrive: stop here */
        *source = CUVAE_BLAS_SRC_LOW;
        return NULL;
    }
    *source = CUVAE_BLAS_SRC_CUVAE;
    return want;
}

static int cpu_level_now(void)
{
#if defined(__x86_64__) || defined(__i386__)
    /* GCC's and clang's checks read CPUID and also require the OS to save the AVX / AVX-512
     * register state (XGETBV), so a feature reported here is usable. */
    __builtin_cpu_init();
    cuvae_cpu_features f = {
        .avx = __builtin_cpu_supports("avx"),
        .avx2 = __builtin_cpu_supports("avx2"),
        .fma = __builtin_cpu_supports("fma"),
        .avx512f = __builtin_cpu_supports("avx512f"),
    };
    return cuvae_blas_cpu_level(&f);
#else
    return CUVAE_BLAS_LEVEL_SSE; /* other architectures: OpenBLAS's choice stands */
#endif
}

void cuvae_blas_ensure_kernels(char **argv)
{
    cuvae_blas_source src;
    const char *picked = openblas_get_corename();
    const char *want = cuvae_blas_decide(cpu_level_now(), picked, getenv("OPENBLAS_CORETYPE"),
                                         getenv(MARKER), &src);
    if (!want) return;
    char marker[96];
    snprintf(marker, sizeof marker, "%s:%s", picked ? picked : "unknown", want);
    if (setenv("OPENBLAS_CORETYPE", want, 1) || setenv(MARKER, marker, 1)) goto undo;
    execv("/proc/self/exe", argv);
undo:
    /* The re-exec failed: run on with the kernels OpenBLAS picked; the report says so. */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(MARKER);
}

void cuvae_blas_get_info(cuvae_blas_info *out)
{
    memset(out, 0, sizeof *out);
    const char *config = openblas_get_config(), *core = openblas_get_corename();
    snprintf(out->config, sizeof out->config, "%s", config ? config : "");
    snprintf(out->kernels, sizeof out->kernels, "%s", core ? core : "unknown");
    /* openblas_get_config(): "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." */
    if (sscanf(out->config, "%31s %31s", out->library, out->version) != 2) {
        snprintf(out->library, sizeof out->library, "OpenBLAS");
        snprintf(out->version, sizeof out->version, "unknown");
    }
    /* The CPU backend's team when it has one (OpenBLAS is then single-threaded), else OpenBLAS's
     * own threads. */
    int team = cuvae_cpu_threads(), blas = openblas_get_num_threads();
    out->threads = team > blas ? team : blas;
    int level = cpu_level_now();
    snprintf(out->cpu_level, sizeof out->cpu_level, "%s", level_name(level));
    cuvae_blas_source src;
    const char *env = getenv("OPENBLAS_CORETYPE"), *marker = getenv(MARKER);
    if (cuvae_blas_decide(level, core, env, marker, &src)) src = CUVAE_BLAS_SRC_LOW;
    switch (src) {
    case CUVAE_BLAS_SRC_OPENBLAS:
        snprintf(out->source, sizeof out->source, "chosen by OpenBLAS, the CPU has %s",
                 out->cpu_level);
        break;
    case CUVAE_BLAS_SRC_USER:
        snprintf(out->source, sizeof out->source, "OPENBLAS_CORETYPE=%s set by the user", env);
        break;
    case CUVAE_BLAS_SRC_CUVAE: {
        char picked[32] = "";
        size_t n = strcspn(marker, ":");
        snprintf(picked, sizeof picked, "%.*s", (int)(n < 31 ? n : 31), marker);
        snprintf(out->source, sizeof out->source,
                 "set by cuvae: OpenBLAS picked %s, the CPU has %s", picked, out->cpu_level);
        break;
    }
    default:
        snprintf(out->source, sizeof out->source,
                 "below the CPU's %s and not corrected: set OPENBLAS_CORETYPE=%s", out->cpu_level,
                 cuvae_blas_level_family(level));
        break;
    }
}

void cuvae_blas_describe(char *buf, size_t len)
{
    cuvae_blas_info b;
    cuvae_blas_get_info(&b);
    snprintf(buf, len, "%s %s, kernels %s (%s), %d thread%s", b.library, b.version, b.kernels,
             b.source, b.threads, b.threads == 1 ? "" : "s");
}
