/* Seed corpus for fuzz_checkpoint: valid checkpoints of a few model shapes (with and without
 * optimizer state, Bernoulli and Gaussian, no hidden layer to three) written into the directory
 * named by $CUVAE_FUZZ_CORPUS or the first argument. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

typedef struct {
    const char *name;
    int n_hidden, hidden[3], latent, x_dim, gaussian, optim;
} seed_spec;

static int write_seed(const char *dir, const seed_spec *s, cuvae_status *st)
{
    cuvae_config c;
    cuvae_config_defaults(&c);
    c.model.n_hidden = s->n_hidden;
    for (int i = 0; i < s->n_hidden; i++) c.model.hidden[i] = s->hidden[i];
    c.model.latent = s->latent;
    c.train.seed = 7; /* the metadata's seed: a checkpoint whose seeds disagree is refused */
    if (s->gaussian) {
        c.model.likelihood = CUVAE_LIK_GAUSSIAN;
        c.data.binarize = CUVAE_BIN_NONE;
    }
    cuvae_model m;
    if (cuvae_model_layout(&m, &c, s->x_dim, st)) return -1;
    float *p = calloc(3 * m.n_params, sizeof(float));
    if (!p) return cuvae_fail(st, "out of memory");
    cuvae_model_init(&m, 7, p);
    for (size_t i = 0; i < m.n_params; i++) {
        p[m.n_params + i] = 0.01f * p[i];
        p[2 * m.n_params + i] = p[i] * p[i];
    }
    cuvae_train_state state = {.params = p, .adam_t = 11};
    if (s->optim) {
        state.m = p + m.n_params;
        state.v = p + 2 * m.n_params;
    }
    cuvae_ckpt_meta meta = {.step = 11,
                            .epoch = 1,
                            .epoch_step = 2,
                            .seed = 7,
                            .data_seed = 7,
                            .adam_t = 11,
                            .rng_counter = 11,
                            .best_valid = s->optim ? 1.5 : INFINITY};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, s->name);
    int rc = cuvae_ckpt_write(path, &c, &m, &meta, &state, st);
    free(p);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("CUVAE_FUZZ_CORPUS");
    if (!dir || !*dir) {
        fprintf(stderr, "usage: cuvae_fuzz_corpus DIR (or set CUVAE_FUZZ_CORPUS)\n");
        return 2;
    }
    static const seed_spec seeds[] = {
        {"mlp2-optim", 2, {5, 4, 0}, 3, 6, 0, 1}, {"mlp2-model", 2, {5, 4, 0}, 3, 6, 0, 0},
        {"linear", 0, {0, 0, 0}, 2, 4, 0, 1},     {"gaussian", 1, {3, 0, 0}, 1, 2, 1, 0},
        {"mlp3-optim", 3, {4, 3, 2}, 1, 3, 0, 1},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        cuvae_status st;
        if (write_seed(dir, &seeds[i], &st)) {
            fprintf(stderr, "cuvae_fuzz_corpus: %s\n", st.msg);
            return 1;
        }
    }
    printf("cuvae_fuzz_corpus: %zu seeds in %s\n", sizeof seeds / sizeof seeds[0], dir);
    return 0;
}
