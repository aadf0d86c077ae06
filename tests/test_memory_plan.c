/* The memory estimate (memory_plan.h): saturating arithmetic, the parts, the host figure and
 * CUVAE_MEMORY_LIMIT, the refusal's message; and the CPU backend's plan against what it really
 * allocates (the same tables, counted dry), so that the estimate cannot drift from the code. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "memory_plan.h"
#include "model.h"
#include "tests_util.h"

static void test_arithmetic_and_parts(void)
{
    CHECK(cuvae_mem_mul(3, 4) == 12);
    CHECK(cuvae_mem_mul(UINT64_MAX / 2, 3) == UINT64_MAX);
    CHECK(cuvae_mem_add_bytes(UINT64_MAX - 1, 5) == UINT64_MAX);
    cuvae_mem_plan p = {.n = 0};
    cuvae_mem_add(&p, "a", 10);
    cuvae_mem_add(&p, "b", 0); /* left out */
    cuvae_mem_add(&p, "a", 5); /* merged */
    cuvae_mem_add(&p, "c", UINT64_MAX);
    CHECK(p.n == 2 && p.part[0].bytes == 15);
    CHECK(cuvae_mem_total(&p) == UINT64_MAX);
    cuvae_status st = {{0}};
    CHECK(cuvae_mem_check(&p, UINT64_MAX, "here", "test", "advice", &st) == 0);
    p.n = 1;
    CHECK(cuvae_mem_check(&p, 14, "this machine", "test", "change x", &st) != 0);
    CHECK_MSG(st.msg, "memory: the run needs about 0.0 MiB (a 0.0 MiB) but this machine has 0.0 "
                      "MiB available (test); change x");
    cuvae_mem_plan q = {.n = 0};
    cuvae_mem_add(&q, "parameters", (uint64_t)3 << 30);
    cuvae_mem_add(&q, "data", (uint64_t)5 << 20);
    CHECK(cuvae_mem_check(&q, (uint64_t)2 << 30, "the GPU (x)", "cudaMemGetInfo, free", "k", &st));
    CHECK_MSG(st.msg, "about 3.00 GiB (parameters 3.00 GiB, data 5.0 MiB) but the GPU (x) has "
                      "2.00 GiB available (cudaMemGetInfo, free); k");
}

static void test_host_available(void)
{
    cuvae_status st = {{0}};
    uint64_t avail = 0;
    char source[64];
    unsetenv("CUVAE_MEMORY_LIMIT");
    CHECK(cuvae_mem_host_available(&avail, source, sizeof source, &st) == 0);
    CHECK(avail > 0);
    setenv("CUVAE_MEMORY_LIMIT", "3M", 1);
    CHECK(cuvae_mem_host_available(&avail, source, sizeof source, &st) == 0);
    CHECK(avail == (uint64_t)3 << 20 && strcmp(source, "CUVAE_MEMORY_LIMIT") == 0);
    setenv("CUVAE_MEMORY_LIMIT", "4096", 1);
    CHECK(cuvae_mem_host_available(&avail, source, sizeof source, &st) == 0 && avail == 4096);
    /* The variable only lowers the figure: a cap above what the machine has changes nothing. */
    setenv("CUVAE_MEMORY_LIMIT", "1000000T", 1);
    CHECK(cuvae_mem_host_available(&avail, source, sizeof source, &st) == 0);
    CHECK(strcmp(source, "CUVAE_MEMORY_LIMIT") != 0);
    const char *bad[] = {"", "x", "-1", "12Q", "3MB", "99999999999999999999"};
    for (size_t i = 1; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("CUVAE_MEMORY_LIMIT", bad[i], 1);
        CHECK(cuvae_mem_host_available(&avail, source, sizeof source, &st) != 0);
        CHECK_MSG(st.msg, "CUVAE_MEMORY_LIMIT: '");
    }
    unsetenv("CUVAE_MEMORY_LIMIT");
}

/* The part named `name` of the plan, 0 when absent. */
static uint64_t part(const cuvae_mem_plan *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->part[i].name, name) == 0) return p->part[i].bytes;
    return 0;
}

/* The CPU backend's plan equals what describe() reports after the training activations and the
 * evaluation buffers exist, and creation refuses what the cap does not allow. */
static void test_cpu_plan(void)
{
    enum { D = 100, N = 40 };
    cuvae_config c;
    cuvae_config_defaults(&c);
    c.model.n_hidden = 2;
    c.model.hidden[0] = 48;
    c.model.hidden[1] = 24;
    c.model.latent = 6;
    c.train.batch_size = 20;
    cuvae_model m;
    cuvae_status st = {{0}};
    CHECK(cuvae_model_layout(&m, &c, D, &st) == 0);
    cuvae_backend_spec spec = {.model = &m, .config = &c, .upload_rows = {0, 0, N}};
    cuvae_mem_plan plan = {.n = 0};
    cuvae_cpu_memory_plan(&spec, &plan);
    CHECK(part(&plan, "parameters") == m.n_params * sizeof(float));
    CHECK(part(&plan, "Adam moments") == 2 * m.n_params * sizeof(float));
    CHECK(part(&plan, "uploaded data") == (uint64_t)N * D);

    cuvae_backend *be = cuvae_cpu_backend_create(&spec, &st);
    CHECK(be != NULL);
    if (!be) return;
    uint8_t pixels[N * D];
    for (int i = 0; i < N * D; i++) pixels[i] = (uint8_t)(i * 37);
    int32_t idx[N];
    for (int i = 0; i < N; i++) idx[i] = i;
    double elbo[N];
    cuvae_eval_out out = {.neg_elbo = elbo};
    CHECK(cuvae_backend_upload(be, CUVAE_SET_TEST, pixels, N, D, 0, &st) == 0);
    CHECK(cuvae_backend_evaluate(be, CUVAE_SET_TEST, idx, N, 2, 0, &out, &st) == 0);
    char desc[1024], want[64];
    cuvae_backend_describe(be, desc, sizeof desc);
    snprintf(want, sizeof want, "activations %.1f MiB",
             (double)part(&plan, "activations") / 1048576.0);
    CHECK_MSG(desc, want);
    cuvae_backend_destroy(be);

    /* Refused before allocating, with the backend's parts and the caller's. */
    cuvae_mem_plan host = {.n = 0};
    cuvae_mem_add(&host, "state copies", (uint64_t)1 << 20);
    spec.host_needs = &host;
    spec.advice = "try less";
    setenv("CUVAE_MEMORY_LIMIT", "1M", 1);
    CHECK(cuvae_cpu_backend_create(&spec, &st) == NULL);
    CHECK_MSG(st.msg, "state copies 1.0 MiB) but this machine has 1.0 MiB available "
                      "(CUVAE_MEMORY_LIMIT); try less");
    unsetenv("CUVAE_MEMORY_LIMIT");
}

int main(void)
{
    printf("test_memory_plan\n");
    test_arithmetic_and_parts();
    test_host_available();
    test_cpu_plan();
    return cuvae_test_finish("test_memory_plan");
}
