/* Checkpoint tests: round trips, an independent reading of the safetensors layout, atomic writes
 * under a full disk, and run-directory rotation and recovery (rejection of damaged files:
 * test_checkpoint_hostile.c). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <jansson.h>
#include <zlib.h>

#include "checkpoint.h"
#include "ckpt_fixture.h"
#include "tests_util.h"

/* ---- round trips ------------------------------------------------------------------------------
 */

static void check_same(const fixture *f, const cuvae_ckpt *ck, int with_optim)
{
    size_t bytes = f->model.n_params * sizeof(float);
    CHECK(ck->model.n_params == f->model.n_params);
    CHECK(ck->model.x_dim == X_DIM);
    CHECK(memcmp(ck->state.params, f->params, bytes) == 0);
    if (with_optim) {
        CHECK(ck->state.m && memcmp(ck->state.m, f->m, bytes) == 0);
        CHECK(ck->state.v && memcmp(ck->state.v, f->v, bytes) == 0);
    } else {
        CHECK(ck->state.m == NULL && ck->state.v == NULL);
    }
    CHECK(ck->state.adam_t == f->meta.adam_t);
    CHECK(ck->meta.step == f->meta.step && ck->meta.epoch == f->meta.epoch);
    CHECK(ck->meta.epoch_step == f->meta.epoch_step && ck->meta.seed == f->meta.seed);
    CHECK(ck->meta.data_seed == f->meta.data_seed && ck->meta.adam_t == f->meta.adam_t);
    CHECK(ck->meta.rng_counter == f->meta.rng_counter);
    CHECK(memcmp(&ck->meta.best_valid, &f->meta.best_valid, sizeof(double)) == 0);
    char *a = cuvae_config_to_ini(&f->config), *b = cuvae_config_to_ini(&ck->config);
    CHECK(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);
}

static void test_round_trip(const char *dir, fixture *f)
{
    char path[512];
    cuvae_status st;
    for (int with_optim = 0; with_optim < 2; with_optim++) {
        sfmt(path, sizeof path, "%s/rt%d.safetensors", dir, with_optim);
        f->meta.best_valid = with_optim ? INFINITY : 87.123456789012345;
        CHECK(write_fixture(path, f, with_optim, &st) == 0);
        cuvae_ckpt ck;
        int rc = cuvae_ckpt_read(path, &ck, &st);
        CHECK_MSG(rc == 0 ? "ok" : st.msg, "ok");
        if (rc == 0) check_same(f, &ck, with_optim);
        cuvae_ckpt_free(&ck);
    }
    f->meta.best_valid = 87.123456789012345;
    /* Extreme counters survive too. */
    cuvae_ckpt_meta saved = f->meta;
    f->meta.step = UINT64_MAX;
    f->meta.rng_counter = UINT64_MAX; /* consistent metadata: rng_counter = step */
    f->meta.seed = UINT64_MAX - 1;
    f->meta.data_seed = UINT64_MAX - 1; /* data_seed = seed = train.seed */
    uint64_t seed = f->config.train.seed;
    f->config.train.seed = UINT64_MAX - 1;
    sfmt(path, sizeof path, "%s/big.safetensors", dir);
    CHECK(write_fixture(path, f, 1, &st) == 0);
    cuvae_ckpt ck;
    CHECK(cuvae_ckpt_read(path, &ck, &st) == 0);
    CHECK(ck.meta.step == UINT64_MAX && ck.meta.seed == UINT64_MAX - 1);
    cuvae_ckpt_free(&ck);
    f->meta = saved;
    f->config.train.seed = seed;
}

/* Reads the file as a plain safetensors reader would, sharing no code with checkpoint.c. */
static void test_independent_layout(const char *dir, const fixture *f)
{
    char path[512];
    cuvae_status st;
    sfmt(path, sizeof path, "%s/layout.safetensors", dir);
    CHECK(write_fixture(path, f, 1, &st) == 0);
    size_t len = 0;
    uint8_t *buf = read_all(path, &len);
    CHECK(buf && len > 8);
    if (!buf) return;
    uint64_t hlen = le64(buf);
    CHECK(hlen % 8 == 0 && 8 + hlen <= len);
    const char *opening = "{\"__metadata__\":{\"format\":\"cuvae-checkpoint\",";
    CHECK(memcmp(buf + 8, opening, strlen(opening)) == 0);
    json_error_t err;
    json_t *root = json_loadb((const char *)buf + 8, hlen, 0, &err);
    CHECK(root != NULL);
    const uint8_t *data = buf + 8 + hlen;
    size_t dlen = len - 8 - hlen;
    CHECK(dlen == 3 * f->model.n_params * 4);
    json_t *md = json_object_get(root, "__metadata__");
    char crc[16];
    /* Format 2: the CRC-32 of each metadata key but crc32 (sorted) as key NUL value NUL, the
     * tensor names in data order each with its NUL, then the data; computed here by hand. */
    uLong want = crc32(0L, Z_NULL, 0);
    const char *sorted[] = {"adam_t",      "best_valid", "config", "data_seed",
                            "epoch",       "epoch_step", "format", "format_version",
                            "rng_counter", "seed",       "step"};
    CHECK(json_object_size(md) == sizeof sorted / sizeof sorted[0] + 1);
    for (size_t i = 0; i < sizeof sorted / sizeof sorted[0]; i++) {
        const char *v = json_string_value(json_object_get(md, sorted[i]));
        CHECK(v != NULL);
        if (!v) continue;
        want = crc32(want, (const Bytef *)sorted[i], (uInt)strlen(sorted[i]) + 1);
        want = crc32(want, (const Bytef *)v, (uInt)strlen(v) + 1);
    }
    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        const char *k = json_object_iter_key(it); /* the writer's order is the data order */
        if (strcmp(k, "__metadata__") != 0)
            want = crc32(want, (const Bytef *)k, (uInt)strlen(k) + 1);
    }
    want = crc32(want, data, (uInt)dlen);
    sfmt(crc, sizeof crc, "%08lx", (unsigned long)want);
    CHECK(strcmp(json_string_value(json_object_get(md, "crc32")), crc) == 0);
    CHECK(strcmp(json_string_value(json_object_get(md, "step")), "1234") == 0);
    CHECK(strcmp(json_string_value(json_object_get(md, "format_version")), "2") == 0);
    /* Tensors in file order cover the data section back to back, in the documented order. */
    cuvae_tensor_info t[CUVAE_MAX_TENSORS];
    int n_t = cuvae_model_tensors(&f->model, t);
    uint64_t at = 0;
    int idx = 0;
    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        const char *key = json_object_iter_key(it);
        json_t *val = json_object_iter_value(it);
        if (strcmp(key, "__metadata__") == 0) continue;
        char want[64];
        static const char *const prefix[3] = {"", "optim.m.", "optim.v."};
        sfmt(want, sizeof want, "%s%s", prefix[idx / n_t], t[idx % n_t].name);
        CHECK_MSG(key, want);
        CHECK(strcmp(json_string_value(json_object_get(val, "dtype")), "F32") == 0);
        json_t *offs = json_object_get(val, "data_offsets");
        uint64_t b = (uint64_t)json_integer_value(json_array_get(offs, 0));
        uint64_t e = (uint64_t)json_integer_value(json_array_get(offs, 1));
        CHECK(b == at && e == b + 4 * t[idx % n_t].count);
        json_t *shape = json_object_get(val, "shape");
        CHECK((int)json_array_size(shape) == t[idx % n_t].ndim);
        /* Little-endian F32 values equal to the flat buffer. */
        const float *src = idx < n_t ? f->params : idx < 2 * n_t ? f->m : f->v;
        for (size_t j = 0; j < t[idx % n_t].count; j++) {
            const uint8_t *p = data + b + 4 * j;
            uint32_t u =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            float x;
            memcpy(&x, &u, 4);
            if (memcmp(&x, &src[t[idx % n_t].offset + j], 4) != 0) {
                CHECK_MSG("value differs", key);
                break;
            }
        }
        at = e;
        idx++;
    }
    CHECK(idx == 3 * n_t && at == dlen);
    json_decref(root);
    free(buf);
}

/* ---- writing under failure ---------------------------------------------------------------------
 */

static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

static void test_write_failures(const char *base, fixture *f)
{
    char dir[512], path[600];
    sfmt(dir, sizeof dir, "%s/fail", base);
    mkdir(dir, 0777);
    sfmt(path, sizeof path, "%s/ckpt.safetensors", dir);
    cuvae_status st;
    CHECK(write_fixture(path, f, 0, &st) == 0);
    size_t good_len, new_len;
    uint8_t *good = read_all(path, &good_len);

    /* Full disk: a child with a file-size limit between the old file's size and the new one's. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {.rlim_cur = good_len + 256, .rlim_max = good_len + 256};
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
        cuvae_status cst;
        int rc = write_fixture(path, f, 1, &cst);
        if (rc == 0) _exit(1);
        if (!strstr(cst.msg, "cannot write checkpoint") || !strstr(cst.msg, path) ||
            !strstr(cst.msg, strerror(EFBIG))) {
            fprintf(stderr, "unexpected message: %s\n", cst.msg);
            _exit(2);
        }
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    uint8_t *now = read_all(path, &new_len);
    CHECK(now && new_len == good_len && memcmp(now, good, good_len) == 0);
    free(now);
    CHECK(count_temps(dir) == 0);
    /* The bigger file does fit without the limit. */
    char big[600];
    sfmt(big, sizeof big, "%s/big.safetensors", dir);
    CHECK(write_fixture(big, f, 1, &st) == 0);
    uint8_t *b = read_all(big, &new_len);
    CHECK(new_len > good_len + 256);
    free(b);
    unlink(big);

    /* Values a run must never get are refused before anything is written. */
    float saved = f->params[7];
    f->params[7] = NAN;
    CHECK(write_fixture(path, f, 1, &st) != 0);
    CHECK_MSG(st.msg, "cannot write checkpoint");
    CHECK_MSG(st.msg, "holds non-finite values");
    f->params[7] = saved;
    cuvae_train_state half = {.params = f->params, .m = f->m};
    CHECK(cuvae_ckpt_write(path, &f->config, &f->model, &f->meta, &half, &st) != 0);
    CHECK_MSG(st.msg, "optimizer state is partial");
    cuvae_model other;
    cuvae_model_layout(&other, &f->config, X_DIM + 1, &st);
    cuvae_train_state s = state_of(f, 0);
    float *p2 = calloc(other.n_params, sizeof(float));
    s.params = p2;
    cuvae_config c2 = f->config;
    c2.model.latent = 4;
    CHECK(cuvae_ckpt_write(path, &c2, &other, &f->meta, &s, &st) != 0);
    CHECK_MSG(st.msg, "does not follow the config");
    free(p2);
    now = read_all(path, &new_len);
    CHECK(now && new_len == good_len && memcmp(now, good, good_len) == 0);
    free(now);

    /* A parent that is a regular file (fails for root too), then a read-only directory. */
    char under_file[700];
    sfmt(under_file, sizeof under_file, "%s/ckpt.safetensors", path);
    CHECK(write_fixture(under_file, f, 0, &st) != 0);
    CHECK_MSG(st.msg, "cannot write checkpoint");
    CHECK_MSG(st.msg, strerror(ENOTDIR));
    /* A read-only directory. Root ignores permissions, so as root the attempt runs in a child
     * that drops to nobody (skipped when that is impossible). */
    chmod(base, 0755);
    chmod(dir, 0555);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(CUVAE_TEST_SKIP);
        if (geteuid() == 0) _exit(CUVAE_TEST_SKIP);
        cuvae_status cst;
        if (write_fixture(path, f, 1, &cst) == 0) _exit(1);
        if (!strstr(cst.msg, "cannot write checkpoint") || !strstr(cst.msg, strerror(EACCES))) {
            fprintf(stderr, "unexpected message: %s\n", cst.msg);
            _exit(2);
        }
        _exit(0);
    }
    waitpid(pid, &status, 0);
    chmod(dir, 0755);
    chmod(base, 0700);
    CHECK(WIFEXITED(status));
    if (WIFEXITED(status) && WEXITSTATUS(status) == CUVAE_TEST_SKIP)
        printf("test_checkpoint: cannot drop root privileges, read-only directory case skipped\n");
    else
        CHECK(WEXITSTATUS(status) == 0);
    now = read_all(path, &new_len);
    CHECK(now && new_len == good_len && memcmp(now, good, good_len) == 0);
    free(now);
    CHECK(count_temps(dir) == 0);
    free(good);

    /* Reading what is not a checkpoint file. */
    cuvae_ckpt ck;
    CHECK(cuvae_ckpt_read(dir, &ck, &st) != 0);
    CHECK_MSG(st.msg, dir);
    CHECK_MSG(st.msg, "not a regular file");
    char missing[600];
    sfmt(missing, sizeof missing, "%s/none.safetensors", dir);
    CHECK(cuvae_ckpt_read(missing, &ck, &st) != 0);
    CHECK_MSG(st.msg, missing);
    CHECK_MSG(st.msg, "cannot open");
    char fifo[600];
    sfmt(fifo, sizeof fifo, "%s/fifo.safetensors", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK(cuvae_ckpt_read(fifo, &ck, &st) != 0); /* refused, without waiting for a writer */
    CHECK_MSG(st.msg, "not a regular file");
    unlink(fifo);
}

/* ---- run directories ---------------------------------------------------------------------------
 */

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void test_run_dir(const char *base, fixture *f)
{
    char run[512], ck_dir[600], path[700], saved[700];
    cuvae_status st;
    cuvae_ckpt ck;
    sfmt(run, sizeof run, "%s/run", base);
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, path, sizeof path, &st) == 0);
    mkdir(run, 0777);
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, path, sizeof path, &st) == 0);
    sfmt(ck_dir, sizeof ck_dir, "%s/checkpoints", run);
    mkdir(ck_dir, 0777);
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, path, sizeof path, &st) == 0);

    cuvae_train_state s = state_of(f, 1);
    for (uint64_t step = 100; step <= 600; step += 100) {
        if (step == 300) {
            /* A stale temporary from a killed writer: removed by the next save. */
            sfmt(path, sizeof path, "%s/step-000000000700.safetensors.tmp.999999", ck_dir);
            cuvae_test_write_file(path, "partial", 7);
        }
        f->meta.step = step;
        f->meta.rng_counter = step; /* the metadata stays consistent: rng_counter = step */
        f->meta.adam_t = step;
        f->meta.best_valid = 100.0 - (double)step / 100.0;
        int is_best = step == 200 || step == 500;
        CHECK(cuvae_ckpt_save_run(run, 3, &f->config, &f->model, &f->meta, &s, is_best, saved,
                                  sizeof saved, &st) == 0);
        sfmt(path, sizeof path, "%s/step-%012" PRIu64 ".safetensors", ck_dir, step);
        CHECK(strcmp(saved, path) == 0);
    }
    for (uint64_t step = 100; step <= 600; step += 100) {
        sfmt(path, sizeof path, "%s/step-%012" PRIu64 ".safetensors", ck_dir, step);
        CHECK(exists(path) == (step >= 400));
    }
    CHECK(count_temps(ck_dir) == 0);
    sfmt(path, sizeof path, "%s/best.safetensors", ck_dir);
    CHECK(cuvae_ckpt_read(path, &ck, &st) == 0 && ck.meta.step == 500);
    cuvae_ckpt_free(&ck);
    sfmt(path, sizeof path, "%s/latest", ck_dir);
    size_t n;
    char *latest = (char *)read_all(path, &n);
    CHECK(latest && n == 30 && memcmp(latest, "step-000000000600.safetensors\n", 30) == 0);
    free(latest);

    /* A stale temporary is never read; the newest good file is found. */
    sfmt(path, sizeof path, "%s/step-000000000900.safetensors.tmp.12345", ck_dir);
    cuvae_test_write_file(path, "garbage", 7);
    char found[700];
    uint8_t *bytes;
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, found, sizeof found, &st) == 1);
    CHECK(ck.meta.step == 600 && strstr(found, "step-000000000600.safetensors"));
    cuvae_ckpt_free(&ck);

    /* What "latest" names: a hand-pointed file goes first; a missing step file is reported and
     * passed over; a name outside the directory is ignored. */
    char latest_path[700], manual[700];
    sfmt(latest_path, sizeof latest_path, "%s/latest", ck_dir);
    sfmt(path, sizeof path, "%s/step-000000000400.safetensors", ck_dir);
    sfmt(manual, sizeof manual, "%s/manual.safetensors", ck_dir);
    bytes = read_all(path, &n);
    cuvae_test_write_file(manual, bytes, n);
    free(bytes);
    static const struct {
        const char *content, *log, *found;
    } pointers[] = {
        {"manual.safetensors\n", NULL, "manual.safetensors"},
        {"step-000000000700.safetensors\n", "step-000000000700.safetensors: cannot open",
         "step-000000000600.safetensors"},
        {"../escape.safetensors\n", "latest: it does not name a checkpoint file",
         "step-000000000600.safetensors"},
    };
    for (size_t i = 0; i < sizeof pointers / sizeof pointers[0]; i++) {
        cuvae_test_write_file(latest_path, pointers[i].content, strlen(pointers[i].content));
        char *text = NULL;
        size_t text_len = 0;
        FILE *lg = open_memstream(&text, &text_len);
        CHECK(cuvae_ckpt_find_latest(run, lg, &ck, found, sizeof found, &st) == 1);
        fclose(lg);
        CHECK_MSG(found, pointers[i].found);
        if (pointers[i].log)
            CHECK_MSG(text, pointers[i].log);
        else
            CHECK(text_len == 0);
        free(text);
        cuvae_ckpt_free(&ck);
    }
    unlink(manual);
    cuvae_test_write_file(latest_path, "step-000000000600.safetensors\n", 30);

    /* The newest is damaged: the previous one is used, and the log says why. */
    sfmt(path, sizeof path, "%s/step-000000000600.safetensors", ck_dir);
    bytes = read_all(path, &n);
    bytes[n - 3] ^= 0x40;
    cuvae_test_write_file(path, bytes, n);
    free(bytes);
    char *log_text = NULL;
    size_t log_len = 0;
    FILE *log = open_memstream(&log_text, &log_len);
    CHECK(cuvae_ckpt_find_latest(run, log, &ck, found, sizeof found, &st) == 1);
    fclose(log);
    CHECK(ck.meta.step == 500 && strstr(found, "step-000000000500.safetensors"));
    CHECK_MSG(log_text, "cuvae: skipping ");
    CHECK_MSG(log_text, "step-000000000600.safetensors: CRC-32 mismatch");
    free(log_text);
    cuvae_ckpt_free(&ck);

    /* Every step file damaged: best.safetensors is the last resort; without it, an error. */
    for (uint64_t step = 400; step <= 500; step += 100) {
        sfmt(path, sizeof path, "%s/step-%012" PRIu64 ".safetensors", ck_dir, step);
        CHECK(truncate(path, 100) == 0);
    }
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, found, sizeof found, &st) == 1);
    CHECK(ck.meta.step == 500 && strstr(found, "best.safetensors"));
    cuvae_ckpt_free(&ck);
    sfmt(path, sizeof path, "%s/best.safetensors", ck_dir);
    unlink(path);
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, found, sizeof found, &st) == -1);
    CHECK_MSG(st.msg, "no usable checkpoint in");
    CHECK(ck.state.params == NULL);

    /* Saving again after a resume from an older step never deletes the file just written. */
    f->meta.step = f->meta.rng_counter = f->meta.adam_t = 50;
    CHECK(cuvae_ckpt_save_run(run, 1, &f->config, &f->model, &f->meta, &s, 0, saved, sizeof saved,
                              &st) == 0);
    CHECK(exists(saved));
    CHECK(cuvae_ckpt_find_latest(run, NULL, &ck, found, sizeof found, &st) == 1);
    CHECK(ck.meta.step == 50);
    cuvae_ckpt_free(&ck);

    /* best.safetensors cannot be written (a directory sits at its name): the step file that
     * counts the improvement is not written either, so a resume repeats the improvement. */
    char best_dir[700];
    sfmt(best_dir, sizeof best_dir, "%s/best.safetensors", ck_dir);
    CHECK(mkdir(best_dir, 0777) == 0);
    f->meta.step = 60;
    CHECK(cuvae_ckpt_save_run(run, 1, &f->config, &f->model, &f->meta, &s, 1, saved, sizeof saved,
                              &st) != 0);
    CHECK_MSG(st.msg, best_dir);
    sfmt(path, sizeof path, "%s/step-000000000060.safetensors", ck_dir);
    CHECK(!exists(path));
    CHECK(count_temps(ck_dir) == 0);
    rmdir(best_dir);
    f->meta.step = 1234;
}

int main(void)
{
    char dir[512];
    if (cuvae_test_tmpdir(dir, sizeof dir, "ckpt")) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    fixture f;
    fixture_init(&f, 42);
    test_round_trip(dir, &f);
    test_independent_layout(dir, &f);

    test_write_failures(dir, &f);
    test_run_dir(dir, &f);
    fixture_free(&f);

    if (cuvae_test_failures == 0) {
        char cmd[600];
        sfmt(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    return cuvae_test_finish("checkpoint");
}
