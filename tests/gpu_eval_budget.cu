/* The CUDA evaluation's pass size (eval.h): its memory budget from free device memory and the rows
 * that budget buys. Host arithmetic only: it runs, and can fail, without a GPU. That the bound
 * does not depend on the pass size is gpu_training's (one batch against the same rows split). */
#include <stdio.h>

extern "C" {
#include "tests_util.h"
}
#include "config.h"
#include "eval.h"
#include "evaluate.h"
#include "model.h"

int main(void)
{
    const size_t mib = (size_t)1 << 20, gib = (size_t)1 << 30;
    CHECK(cuvae_eval_budget_bytes(0) == 32 * mib);
    CHECK(cuvae_eval_budget_bytes(512 * mib) == 128 * mib); /* a quarter under the reserve */
    CHECK(cuvae_eval_budget_bytes(gib + 512 * mib) == 256 * mib);
    CHECK(cuvae_eval_budget_bytes(9 * gib) == 4 * gib);
    CHECK(cuvae_eval_budget_bytes(139 * gib) == 8 * gib); /* an H200's: capped */
    for (size_t f = 0; f < 64 * gib; f += 97 * mib) /* never more than is free beyond 32 MiB */
        CHECK(cuvae_eval_budget_bytes(f) <= (f > 128 * mib ? f : 32 * mib));

    cuvae_config c;
    cuvae_model m;
    cuvae_status st;
    cuvae_config_defaults(&c); /* 784-512-256-32 */
    CHECK(cuvae_model_layout(&m, &c, 784, &st) == 0);
    int old_rows = cuvae_eval_rows_for(&m, 1, 256 * mib); /* the fixed budget of before */
    printf("gpu_eval_budget: default model: %d rows in 256 MiB, %d with 8 GiB\n", old_rows,
           cuvae_eval_rows_for(&m, 1, 8 * gib));
    CHECK(old_rows > 20000 && old_rows < 30000);
    /* A large GPU's budget buys passes far beyond the host's default rows per call (which the
     * CUDA backend raises, eval_rows_per_call), and 12x the fixed budget of before. */
    int big = cuvae_eval_rows_for(&m, 1, cuvae_eval_budget_bytes(139 * gib));
    printf("gpu_eval_budget: default model, 139 GiB free: %d rows a pass\n", big);
    CHECK(big > 10 * CUVAE_EVAL_MAX_ROWS && big > 12 * old_rows);
    CHECK(big <= CUVAE_CUDA_EVAL_MAX_ROWS);
    /* A small model's rows are capped (int indexing, one call's host arrays). */
    cuvae_config cs;
    cuvae_model ms;
    cuvae_config_defaults(&cs);
    cs.model.n_hidden = 1;
    cs.model.hidden[0] = 8;
    cs.model.latent = 2;
    CHECK(cuvae_model_layout(&ms, &cs, 16, &st) == 0);
    CHECK(cuvae_eval_rows_for(&ms, 1, cuvae_eval_budget_bytes(139 * gib)) ==
          CUVAE_CUDA_EVAL_MAX_ROWS);
    CHECK(cuvae_eval_rows_for(&m, 1, cuvae_eval_budget_bytes(4 * gib)) > old_rows);
    /* At least min_rows (K samples of one example), however small the budget. */
    CHECK(cuvae_eval_rows_for(&m, 5000, 0) == 5000);
    CHECK(cuvae_eval_rows_for(&m, 1, 0) == 1);
    return cuvae_test_finish("gpu_eval_budget");
}
