/* The checkpoint tests' fixture (see ckpt_fixture.h). */
#include "ckpt_fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* snprintf that stops the test on truncation: every path and phrase here is short, so a cut one
 * would be a bug of the test itself. */
void sfmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "checkpoint test: text too long for its buffer: %s\n", buf);
        exit(1);
    }
}

void fixture_init(fixture *f, uint64_t seed)
{
    cuvae_status st;
    cuvae_config_defaults(&f->config);
    f->config.model.n_hidden = 2;
    f->config.model.hidden[0] = 5;
    f->config.model.hidden[1] = 4;
    f->config.model.latent = 3;
    f->config.train.seed = seed;
    if (cuvae_model_layout(&f->model, &f->config, X_DIM, &st)) {
        fprintf(stderr, "layout: %s\n", st.msg);
        exit(1);
    }
    size_t n = f->model.n_params;
    f->params = malloc(n * sizeof(float));
    f->m = malloc(n * sizeof(float));
    f->v = malloc(n * sizeof(float));
    cuvae_model_init(&f->model, seed, f->params);
    for (size_t i = 0; i < n; i++) {
        f->m[i] = 0.1f * f->params[i] - 1e-3f * (float)i;
        f->v[i] = f->params[i] * f->params[i] + 1e-8f * (float)i;
    }
    f->meta = (cuvae_ckpt_meta){.step = 1234,
                                .epoch = 3,
                                .epoch_step = 17,
                                .seed = seed,
                                .data_seed = seed,
                                .adam_t = 1230,
                                .rng_counter = 1234,
                                .best_valid = 87.123456789012345};
}

void fixture_free(fixture *f)
{
    free(f->params);
    free(f->m);
    free(f->v);
}

cuvae_train_state state_of(const fixture *f, int with_optim)
{
    cuvae_train_state s = {.params = f->params, .adam_t = f->meta.adam_t};
    if (with_optim) {
        s.m = f->m;
        s.v = f->v;
    }
    return s;
}

int write_fixture(const char *path, const fixture *f, int with_optim, cuvae_status *st)
{
    cuvae_train_state s = state_of(f, with_optim);
    return cuvae_ckpt_write(path, &f->config, &f->model, &f->meta, &s, st);
}

uint8_t *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    return buf;
}

uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
