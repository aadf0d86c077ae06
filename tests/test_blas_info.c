/* The BLAS kernel check: CPUID features to the minimum OpenBLAS family, the level of each family
 * name, and the start-up decision (respect the user's OPENBLAS_CORETYPE, re-execute at most
 * once, only when OpenBLAS picked below the CPU's level). */
#include <string.h>

#include "blas_info.h"
#include "tests_util.h"

static void test_cpu_level(void)
{
    struct {
        cuvae_cpu_features f;
        int level;
        const char *family;
    } cases[] = {
        {{0, 0, 0, 0}, CUVAE_BLAS_LEVEL_SSE, NULL},
        {{1, 0, 0, 0}, CUVAE_BLAS_LEVEL_AVX, "Sandybridge"},
        {{1, 1, 0, 0}, CUVAE_BLAS_LEVEL_AVX, "Sandybridge"}, /* AVX2 without FMA */
        {{1, 0, 1, 0}, CUVAE_BLAS_LEVEL_AVX, "Sandybridge"}, /* FMA without AVX2 */
        {{1, 1, 1, 0}, CUVAE_BLAS_LEVEL_AVX2, "Haswell"},
        {{1, 1, 1, 1}, CUVAE_BLAS_LEVEL_AVX512, "SkylakeX"},
        {{1, 0, 0, 1}, CUVAE_BLAS_LEVEL_AVX, "Sandybridge"}, /* inconsistent: no AVX2/FMA */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int level = cuvae_blas_cpu_level(&cases[i].f);
        const char *fam = cuvae_blas_level_family(level);
        if (level != cases[i].level ||
            (cases[i].family ? !fam || strcmp(fam, cases[i].family) : fam != NULL)) {
            fprintf(stderr, "case %zu: level %d family %s, expected %d %s\n", i, level,
                    fam ? fam : "(none)", cases[i].level,
                    cases[i].family ? cases[i].family : "(none)");
            cuvae_test_failures++;
        }
    }
}

static void test_family_level(void)
{
    CHECK(cuvae_blas_family_level("Prescott") == CUVAE_BLAS_LEVEL_SSE);
    CHECK(cuvae_blas_family_level("Core2") == CUVAE_BLAS_LEVEL_SSE);
    CHECK(cuvae_blas_family_level("Nehalem") == CUVAE_BLAS_LEVEL_SSE);
    CHECK(cuvae_blas_family_level("Sandybridge") == CUVAE_BLAS_LEVEL_AVX);
    CHECK(cuvae_blas_family_level("Haswell") == CUVAE_BLAS_LEVEL_AVX2);
    CHECK(cuvae_blas_family_level("Zen") == CUVAE_BLAS_LEVEL_AVX2);
    CHECK(cuvae_blas_family_level("SkylakeX") == CUVAE_BLAS_LEVEL_AVX512);
    CHECK(cuvae_blas_family_level("skylakex") == CUVAE_BLAS_LEVEL_AVX512);
    CHECK(cuvae_blas_family_level("Cooperlake") == CUVAE_BLAS_LEVEL_AVX512);
    CHECK(cuvae_blas_family_level("Sapphirerapids") == CUVAE_BLAS_LEVEL_AVX512);
    CHECK(cuvae_blas_family_level("Unknown") == CUVAE_BLAS_LEVEL_SSE);
    CHECK(cuvae_blas_family_level(NULL) == CUVAE_BLAS_LEVEL_SSE);
    /* Every level's minimum family is at that level. */
    for (int l = CUVAE_BLAS_LEVEL_AVX; l <= CUVAE_BLAS_LEVEL_AVX512; l++)
        CHECK(cuvae_blas_family_level(cuvae_blas_level_family(l)) == l);
}

static void test_decide(void)
{
    cuvae_blas_source src;
    /* The Xeon: AVX-512F, OpenBLAS picked Prescott, nothing set: re-exec with SkylakeX. */
    const char *w = cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX512, "Prescott", NULL, NULL, &src);
    CHECK(w && strcmp(w, "SkylakeX") == 0 && src == CUVAE_BLAS_SRC_CUVAE);
    /* An empty variable counts as unset. */
    w = cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX512, "Prescott", "", NULL, &src);
    CHECK(w && strcmp(w, "SkylakeX") == 0);
    /* AVX2 only: Haswell; Zen is already at that level. */
    w = cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX2, "Sandybridge", NULL, NULL, &src);
    CHECK(w && strcmp(w, "Haswell") == 0);
    CHECK(!cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX2, "Zen", NULL, NULL, &src));
    CHECK(src == CUVAE_BLAS_SRC_OPENBLAS);
    /* At or above the CPU's level: OpenBLAS's choice stands (no re-exec). */
    CHECK(!cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX512, "Cooperlake", NULL, NULL, &src));
    CHECK(src == CUVAE_BLAS_SRC_OPENBLAS);
    CHECK(!cuvae_blas_decide(CUVAE_BLAS_LEVEL_SSE, "Prescott", NULL, NULL, &src));
    CHECK(src == CUVAE_BLAS_SRC_OPENBLAS);
    /* The user's variable is respected, even when it is below the CPU's level. */
    CHECK(!cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX512, "Prescott", "Prescott", NULL, &src));
    CHECK(src == CUVAE_BLAS_SRC_USER);
    CHECK(!cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX512, "Haswell", "Haswell", NULL, &src));
    CHECK(src == CUVAE_BLAS_SRC_USER);
    /* A marker that names another family than the variable: the user changed it. */
    CHECK(!cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX512, "Haswell", "Haswell", "Prescott:SkylakeX",
                             &src));
    CHECK(src == CUVAE_BLAS_SRC_USER);
    /* After cuvae's re-exec: variable and marker agree; never a second re-exec, even when
     * OpenBLAS ignored the variable. */
    CHECK(!cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX512, "SkylakeX", "SkylakeX", "Prescott:SkylakeX",
                             &src));
    CHECK(src == CUVAE_BLAS_SRC_CUVAE);
    CHECK(!cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX512, "Prescott", "SkylakeX", "Prescott:SkylakeX",
                             &src));
    CHECK(src == CUVAE_BLAS_SRC_CUVAE);
    /* The marker without the variable (it was lost on the way): no loop, reported as low. */
    CHECK(!cuvae_blas_decide(CUVAE_BLAS_LEVEL_AVX512, "Prescott", NULL, "Prescott:SkylakeX", &src));
    CHECK(src == CUVAE_BLAS_SRC_LOW);
}

static void test_info(void)
{
    cuvae_blas_info b;
    cuvae_blas_get_info(&b);
    CHECK(strcmp(b.library, "OpenBLAS") == 0);
    CHECK(b.version[0] >= '0' && b.version[0] <= '9');
    CHECK(b.kernels[0] != '\0');
    CHECK(b.threads >= 1);
    char d[512];
    cuvae_blas_describe(d, sizeof d);
    CHECK_MSG(d, "OpenBLAS ");
    CHECK_MSG(d, b.kernels);
}

int main(void)
{
    test_cpu_level();
    test_family_level();
    test_decide();
    test_info();
    return cuvae_test_finish("test_blas_info");
}
