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

/* data.stream's planning: the GPU's auto rule with its margin, and the CPU backend's parts for a
 * streamed, a copied and a float32 training set. */
static void test_stream_plan(void)
{
    const uint64_t G = (uint64_t)1 << 30, M = (uint64_t)1 << 20;
    /* 10 GiB free: a margin of 1 GiB; 8 GiB of set beside 1 GiB fits, 1 MiB more does not. */
    CHECK(cuvae_mem_should_stream(G, 8 * G, 10 * G) == 0);
    CHECK(cuvae_mem_should_stream(G, 8 * G + M, 10 * G) == 1);
    /* 1 GiB free: the 512 MiB floor of the margin applies. */
    CHECK(cuvae_mem_should_stream(0, 512 * M, G) == 0);
    CHECK(cuvae_mem_should_stream(0, 512 * M + 1, G) == 1);
    CHECK(cuvae_mem_should_stream(UINT64_MAX, 1, G) == 1); /* saturates, never wraps */

    enum { D = 100, N = 40, NT = 1000 };
    cuvae_config c;
    cuvae_config_defaults(&c);
    c.model.n_hidden = 1;
    c.model.hidden[0] = 16;
    c.model.latent = 4;
    c.train.batch_size = 20;
    cuvae_model m;
    cuvae_status st = {{0}};
    CHECK(cuvae_model_layout(&m, &c, D, &st) == 0);
    cuvae_backend_spec spec = {.model = &m, .config = &c, .upload_rows = {NT, 0, N}};
    cuvae_mem_plan on = {.n = 0}, off = {.n = 0}, f32 = {.n = 0};
    spec.stream = CUVAE_STREAM_ON;
    cuvae_cpu_memory_plan(&spec, &on);
    spec.stream = CUVAE_STREAM_OFF;
    cuvae_cpu_memory_plan(&spec, &off);
    spec.upload_value_bytes = 4;
    cuvae_cpu_memory_plan(&spec, &f32);
    CHECK(part(&on, "uploaded data") == (uint64_t)N * D);
    CHECK(part(&off, "uploaded data") == (uint64_t)(N + NT) * D);
    CHECK(part(&f32, "uploaded data") == (uint64_t)(N + NT) * D * 4);
    /* The streamed set's staging: a batch of rows (and their indices) among the activations. */
    CHECK(part(&on, "activations") >= part(&off, "activations") + 20 * D);

    /* A streamed CPU backend reports it; the byte interface never borrows. */
    spec.upload_value_bytes = 0;
    spec.stream = CUVAE_STREAM_AUTO;
    cuvae_backend *be = cuvae_cpu_backend_create(&spec, &st);
    CHECK(be != NULL);
    if (!be) return;
    CHECK(cuvae_backend_streams(be, CUVAE_SET_TRAIN) == 1);
    CHECK(cuvae_backend_streams(be, CUVAE_SET_TEST) == 0);
    static uint8_t px[NT * D];
    CHECK(cuvae_backend_upload(be, CUVAE_SET_TRAIN, px, NT, D, 1, &st) == 0);
    CHECK(cuvae_backend_streams(be, CUVAE_SET_TRAIN) == 0);
    cuvae_upload_desc u = {.data = px, .dtype = CUVAE_DATA_F32, .n = NT, .d = D, .dynamic = 1};
    CHECK(cuvae_backend_upload_data(be, CUVAE_SET_TEST, &u, &st) != 0);
    CHECK_MSG(st.msg, "float32 values cannot be binarized dynamically");
    cuvae_backend_destroy(be);
}

int main(void)
{
    printf("test_memory_plan\n");
    test_arithmetic_and_parts();
    test_host_available();
    test_cpu_plan();
    test_stream_plan();
    return cuvae_test_finish("test_memory_plan");
}
