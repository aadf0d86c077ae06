/* The rule that decides whether a build's CUDA code runs on a device (cuda_arch.h): machine code
 * for the same major version and an equal or lower minor, PTX for any capability at or above its
 * own, architecture-specific code on its own capability only; lists it cannot read are not
 * checked. And the list as --version prints it. */
#include <string.h>

#include "cuda_arch.h"
#include "tests_util.h"

#define DEFAULT_ARCHS "80-real,86-real,89-real,90-real,90-virtual"

static void test_default_list(void)
{
    char how[64];
    /* A100, A10G/RTX 30xx, Jetson Orin (8.7), L4/RTX 40xx, H100/H200: machine code. */
    CHECK(cuvae_cuda_arch_runs(DEFAULT_ARCHS, 8, 0, how, sizeof how) == 1);
    CHECK_MSG(how, "sm_80 machine code");
    CHECK(cuvae_cuda_arch_runs(DEFAULT_ARCHS, 8, 6, how, sizeof how) == 1);
    CHECK_MSG(how, "sm_86");
    CHECK(cuvae_cuda_arch_runs(DEFAULT_ARCHS, 8, 7, how, sizeof how) == 1);
    CHECK_MSG(how, "sm_86"); /* 8.7 runs sm_86 SASS (same major, higher minor) */
    CHECK(cuvae_cuda_arch_runs(DEFAULT_ARCHS, 8, 9, how, sizeof how) == 1);
    CHECK_MSG(how, "sm_89");
    CHECK(cuvae_cuda_arch_runs(DEFAULT_ARCHS, 9, 0, how, sizeof how) == 1);
    CHECK_MSG(how, "sm_90 machine code");
    /* Blackwell (10.0, 12.0): only the PTX serves them. */
    CHECK(cuvae_cuda_arch_runs(DEFAULT_ARCHS, 10, 0, how, sizeof how) == 1);
    CHECK_MSG(how, "compute_90 PTX");
    CHECK(cuvae_cuda_arch_runs(DEFAULT_ARCHS, 12, 0, how, sizeof how) == 1);
    /* Turing (7.5) and older: nothing. */
    CHECK(cuvae_cuda_arch_runs(DEFAULT_ARCHS, 7, 5, how, sizeof how) == 0);
    CHECK(cuvae_cuda_arch_runs(DEFAULT_ARCHS, 6, 1, NULL, 0) == 0);
}

static void test_rules(void)
{
    char how[64];
    /* SASS does not run on another major version, nor on a lower minor. */
    CHECK(cuvae_cuda_arch_runs("90-real", 8, 9, how, sizeof how) == 0);
    CHECK(cuvae_cuda_arch_runs("90-real", 10, 0, how, sizeof how) == 0);
    CHECK(cuvae_cuda_arch_runs("86-real", 8, 0, how, sizeof how) == 0);
    CHECK(cuvae_cuda_arch_runs("80-real", 8, 9, how, sizeof how) == 1);
    /* PTX runs at or above its capability, never below. */
    CHECK(cuvae_cuda_arch_runs("86-virtual", 8, 0, how, sizeof how) == 0);
    CHECK(cuvae_cuda_arch_runs("86-virtual", 8, 6, how, sizeof how) == 1);
    CHECK(cuvae_cuda_arch_runs("86-virtual", 9, 0, how, sizeof how) == 1);
    /* A bare number is both; ';' separates as CMake does. */
    CHECK(cuvae_cuda_arch_runs("90", 9, 0, how, sizeof how) == 1);
    CHECK_MSG(how, "sm_90 machine code");
    CHECK(cuvae_cuda_arch_runs("90", 12, 0, how, sizeof how) == 1);
    CHECK_MSG(how, "compute_90 PTX");
    CHECK(cuvae_cuda_arch_runs("75-real;80-real", 8, 6, how, sizeof how) == 1);
    CHECK_MSG(how, "sm_80");
    /* Architecture-specific code runs on its own capability only; family-specific on its major. */
    CHECK(cuvae_cuda_arch_runs("90a-real", 9, 0, how, sizeof how) == 1);
    CHECK_MSG(how, "sm_90a");
    CHECK(cuvae_cuda_arch_runs("90a", 10, 0, how, sizeof how) == 0);
    CHECK(cuvae_cuda_arch_runs("100f-real", 10, 3, how, sizeof how) == 1);
    CHECK(cuvae_cuda_arch_runs("100f-real", 12, 0, how, sizeof how) == 0);
    /* Lists the rule cannot read are not checked. */
    CHECK(cuvae_cuda_arch_runs("native", 9, 0, how, sizeof how) == -1);
    CHECK(cuvae_cuda_arch_runs("all-major", 9, 0, how, sizeof how) == -1);
    CHECK(cuvae_cuda_arch_runs("80-real,sm_90", 9, 0, how, sizeof how) == -1);
    CHECK(cuvae_cuda_arch_runs("", 9, 0, how, sizeof how) == -1);
    CHECK(cuvae_cuda_arch_runs(NULL, 9, 0, how, sizeof how) == -1);
}

static void test_describe(void)
{
    char buf[128];
    cuvae_cuda_arch_describe(DEFAULT_ARCHS, buf, sizeof buf);
    CHECK(strcmp(buf, "sm_80 sm_86 sm_89 sm_90 machine code, compute_90 PTX") == 0);
    cuvae_cuda_arch_describe("90", buf, sizeof buf);
    CHECK(strcmp(buf, "sm_90 machine code, compute_90 PTX") == 0);
    cuvae_cuda_arch_describe("86-real", buf, sizeof buf);
    CHECK(strcmp(buf, "sm_86 machine code") == 0);
    cuvae_cuda_arch_describe("90-virtual", buf, sizeof buf);
    CHECK(strcmp(buf, "compute_90 PTX") == 0);
    cuvae_cuda_arch_describe("native", buf, sizeof buf);
    CHECK(strcmp(buf, "CUDA architectures 'native'") == 0);
    char small[12];
    cuvae_cuda_arch_describe(DEFAULT_ARCHS, small, sizeof small); /* truncates, terminated */
    CHECK(strlen(small) < sizeof small);
}

/* What --device auto falls back with and --device cuda fails with: the device, its capability,
 * what the build holds and the option to rebuild with. */
static void test_mismatch(void)
{
    char msg[256];
    CHECK(cuvae_cuda_arch_mismatch(DEFAULT_ARCHS, "Tesla T4", 7, 5, msg, sizeof msg) == 1);
    CHECK_MSG(msg, "Tesla T4 has compute capability 7.5, and this cuvae holds sm_80 sm_86 sm_89 "
                   "sm_90 machine code, compute_90 PTX only (rebuild with "
                   "-DCMAKE_CUDA_ARCHITECTURES=75-real)");
    CHECK(cuvae_cuda_arch_mismatch("90-real", "NVIDIA A100", 8, 0, msg, sizeof msg) == 1);
    CHECK_MSG(msg, "NVIDIA A100 has compute capability 8.0, and this cuvae holds sm_90 machine "
                   "code only");
    CHECK(cuvae_cuda_arch_mismatch(DEFAULT_ARCHS, "NVIDIA H200", 9, 0, msg, sizeof msg) == 0);
    CHECK(msg[0] == '\0');
    CHECK(cuvae_cuda_arch_mismatch(DEFAULT_ARCHS, "NVIDIA B200", 10, 0, msg, sizeof msg) == 0);
    CHECK(cuvae_cuda_arch_mismatch("native", "NVIDIA A100", 8, 0, msg, sizeof msg) == 0);
    char small[16]; /* truncated, terminated */
    CHECK(cuvae_cuda_arch_mismatch("90-real", "NVIDIA A100", 8, 0, small, sizeof small) == 1);
    CHECK(strlen(small) < sizeof small);
}

int main(void)
{
    test_default_list();
    test_rules();
    test_describe();
    test_mismatch();
    return cuvae_test_finish("test_cuda_arch");
}
