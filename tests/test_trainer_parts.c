/* The trainer's small parts, checked against values worked out by hand: the learning-rate
 * schedule (warm-up, constant, cosine endpoints and midpoint), the KL warm-up, the JSON line
 * writer (escaping, null for non-finite numbers, overflow refused), the number and duration
 * formats of the progress display, the non-terminal progress output (permanent lines only, no
 * carriage returns), the bar's fit to the terminal's width (never as wide as the terminal, the
 * loss kept down to narrow ones), the values a JSON line keeps for TensorBoard, and the
 * run-directory helpers (mkdir -p, atomic write, checkpoint probe). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "metrics.h"
#include "model.h"
#include "file_write.h"
#include "rundir.h"
#include "tests_util.h"
#include "trainer.h"

static void check_near(const char *what, double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol)) {
        fprintf(stderr, "%s: got %.9g, expected %.9g\n", what, got, want);
        cuvae_test_failures++;
    }
}

static void test_schedules(void)
{
    cuvae_config c;
    cuvae_config_defaults(&c);
    c.optim.lr = 1e-2f;
    c.optim.min_lr = 1e-4f;

    c.optim.schedule = CUVAE_SCHED_CONSTANT;
    c.optim.warmup_steps = 0;
    check_near("constant, step 0", cuvae_schedule_lr(&c, 0, 100), 1e-2, 1e-9);
    check_near("constant, step 99", cuvae_schedule_lr(&c, 99, 100), 1e-2, 1e-9);

    /* Linear warm-up over 4 steps: lr * (step + 1) / 4, then the peak. */
    c.optim.warmup_steps = 4;
    check_near("warm-up, step 0", cuvae_schedule_lr(&c, 0, 100), 2.5e-3, 1e-9);
    check_near("warm-up, step 2", cuvae_schedule_lr(&c, 2, 100), 7.5e-3, 1e-9);
    check_near("warm-up, step 3", cuvae_schedule_lr(&c, 3, 100), 1e-2, 1e-9);
    check_near("after warm-up", cuvae_schedule_lr(&c, 4, 100), 1e-2, 1e-9);

    /* Cosine after 4 warm-up steps over 104 in all: the peak at step 4, the midpoint of lr and
     * min_lr at step 54, min_lr from step 104 on. */
    c.optim.schedule = CUVAE_SCHED_COSINE;
    check_near("cosine, start", cuvae_schedule_lr(&c, 4, 104), 1e-2, 1e-9);
    check_near("cosine, middle", cuvae_schedule_lr(&c, 54, 104), 0.5 * (1e-2 + 1e-4), 1e-8);
    check_near("cosine, end", cuvae_schedule_lr(&c, 104, 104), 1e-4, 1e-9);
    check_near("cosine, past the end", cuvae_schedule_lr(&c, 500, 104), 1e-4, 1e-9);
    CHECK(cuvae_schedule_lr(&c, 30, 104) > cuvae_schedule_lr(&c, 31, 104));

    /* KL warm-up: beta * min(1, (step + 1) / steps). */
    c.train.beta = 2.0f;
    c.train.kl_warmup_steps = 0;
    check_near("beta, no warm-up", cuvae_schedule_beta(&c, 0), 2.0, 0);
    c.train.kl_warmup_steps = 10;
    check_near("beta, step 0", cuvae_schedule_beta(&c, 0), 0.2, 1e-7);
    check_near("beta, step 4", cuvae_schedule_beta(&c, 4), 1.0, 1e-7);
    check_near("beta, step 9", cuvae_schedule_beta(&c, 9), 2.0, 0);
    check_near("beta, step 1000", cuvae_schedule_beta(&c, 1000), 2.0, 0);
}

static void test_json(void)
{
    cuvae_json_line j;
    cuvae_json_begin(&j, "step");
    cuvae_json_int(&j, "step", 1234567890123LL);
    cuvae_json_num(&j, "loss", 98.25);
    cuvae_json_num(&j, "nan", NAN);
    cuvae_json_num(&j, "inf", -INFINITY);
    cuvae_json_str(&j, "path", "a\"b\\c\nd");
    cuvae_json_str(&j, "none", NULL);
    const char *text = cuvae_json_end(&j);
    CHECK(text != NULL);
    if (text) {
        const char *want = "{\"type\":\"step\",\"step\":1234567890123,\"loss\":98.25,\"nan\":null,"
                           "\"inf\":null,\"path\":\"a\\\"b\\\\c\\u000ad\",\"none\":null}";
        if (strcmp(text, want) != 0) {
            fprintf(stderr, "json: got  %s\n      want %s\n", text, want);
            cuvae_test_failures++;
        }
    }

    /* Past the buffer: refused, never cut. */
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cuvae_json_begin(&j, "step");
    for (int i = 0; i < 5; i++) cuvae_json_str(&j, "k", big);
    CHECK(cuvae_json_end(&j) == NULL);
}

static void test_formats(void)
{
    char buf[32];
    cuvae_format_rate(buf, sizeof buf, 412345);
    CHECK(strcmp(buf, "412k") == 0);
    cuvae_format_rate(buf, sizeof buf, 1234567);
    CHECK(strcmp(buf, "1.23M") == 0);
    cuvae_format_rate(buf, sizeof buf, 950);
    CHECK(strcmp(buf, "950") == 0);
    cuvae_format_rate(buf, sizeof buf, NAN);
    CHECK(strcmp(buf, "-") == 0);
    cuvae_format_duration(buf, sizeof buf, 42);
    CHECK(strcmp(buf, "0:42") == 0);
    cuvae_format_duration(buf, sizeof buf, 725);
    CHECK(strcmp(buf, "12:05") == 0);
    cuvae_format_duration(buf, sizeof buf, 3 * 3600 + 7 * 60 + 59);
    CHECK(strcmp(buf, "3:07:59") == 0);
}

static void test_progress_plain(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/progress.txt", dir);
    FILE *f = fopen(path, "w+");
    CHECK(f != NULL);
    if (!f) return;
    cuvae_progress p;
    cuvae_progress_init(&p, f, 0, 2, 10, 0);
    for (int s = 1; s <= 10; s++) cuvae_progress_step(&p, 0, s);
    cuvae_epoch_summary e = {.epoch = 0,
                             .step = 10,
                             .loss = 98.314,
                             .rec = 90,
                             .kl = 8.314,
                             .has_valid = 1,
                             .valid_neg_elbo = 101.2,
                             .samples_per_s = 412000,
                             .epoch_s = 12.3};
    cuvae_progress_epoch(&p, &e);
    cuvae_progress_message(&p, "note %d", 7);
    rewind(f);
    char text[512] = {0};
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *want = "epoch 1/2 step 10 loss 98.31 (rec 90.00 kl 8.31) valid 101.20 412k "
                       "samples/s 12.3 s\nnote 7\n";
    if (strcmp(text, want) != 0) {
        fprintf(stderr, "progress: got  [%s]\n          want [%s]\n", text, want);
        cuvae_test_failures++;
    }
}

static void test_json_values(void)
{
    cuvae_json_line j;
    cuvae_json_begin(&j, "epoch");
    cuvae_json_int(&j, "epoch", 3);
    cuvae_json_int(&j, "step", 42);
    cuvae_json_num(&j, "loss", 98.25);
    cuvae_json_num(&j, "valid_neg_elbo", NAN);
    CHECK(strcmp(j.type, "epoch") == 0 && j.has_step && j.step == 42);
    CHECK(j.n_nums == 2 && strcmp(j.num_keys[0], "loss") == 0 && j.nums[0] == 98.25);
    CHECK(strcmp(j.num_keys[1], "valid_neg_elbo") == 0 && isnan(j.nums[1]));
    CHECK(cuvae_json_end(&j) != NULL);
    /* More numbers than TensorBoard's copy holds: the line is refused, not sent in part. */
    cuvae_json_begin(&j, "step");
    for (int i = 0; i <= CUVAE_JSON_MAX_NUMS; i++) cuvae_json_num(&j, "x", i);
    CHECK(cuvae_json_end(&j) == NULL);
}

/* The bar at widths from 200 columns down to 1: never longer than width - 1 (the cursor must not
 * reach the last column, or the terminal wraps and each redraw leaves a copy of the line), the
 * loss kept as long as there is room for it; and drawn to a "terminal" of $COLUMNS = 50. */
static void test_progress_width(const char *dir)
{
    cuvae_progress p;
    cuvae_progress_init(&p, stderr, 1, 1000, 1000000, 0);
    cuvae_progress_set(&p, 12345.67, 1234567);
    const int widths[] = {200, 120, 91, 90, 80, 60, 40, 30, 24, 10, 2, 1};
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        char line[512];
        int w = widths[i];
        cuvae_progress_format(&p, 999, 999123456, p.start_time + 100, w, line, sizeof line);
        size_t room = w > 1 ? (size_t)w - 1 : 1;
        if (strlen(line) > room) {
            fprintf(stderr, "bar at %d columns is %zu long: %s\n", w, strlen(line), line);
            cuvae_test_failures++;
        }
        CHECK(strncmp(line, "epoch 1000/1000", room < 15 ? room : 15) == 0);
        if (w >= 40) CHECK(strstr(line, "loss 12345.67") != NULL);
        if (w >= 80) CHECK(strstr(line, " [") != NULL);
        if (w >= 120) CHECK(strstr(line, "samples/s ETA") != NULL);
    }
    /* The figures of the 80-column terminal: everything but a shorter bar. */
    cuvae_progress_init(&p, stderr, 1, 10, 4290, 0);
    cuvae_progress_set(&p, 98.31, 412345);
    char line[512];
    cuvae_progress_format(&p, 2, 12345, p.start_time + 100, 80, line, sizeof line);
    CHECK(strlen(line) <= 79);
    CHECK(strncmp(line, "epoch 3/10 [", 12) == 0);
    CHECK(strstr(line, "] step 12345/42900 loss 98.31 412k samples/s ETA ") != NULL);

    setenv("COLUMNS", "50", 1);
    CHECK(cuvae_terminal_columns(-1) == 50);
    char path[512];
    snprintf(path, sizeof path, "%s/bar.txt", dir);
    FILE *f = fopen(path, "w+");
    CHECK(f != NULL);
    if (f) {
        cuvae_progress_init(&p, f, 1, 3, 100, 0);
        cuvae_progress_set(&p, 543.21, 98765);
        for (int s = 1; s <= 300; s++) {
            p.last_draw = -1.0; /* draw every step */
            cuvae_progress_step(&p, (s - 1) / 100, s);
        }
        cuvae_progress_clear(&p);
        rewind(f);
        static char text[65536];
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        fclose(f);
        int draws = 0;
        for (char *seg = strstr(text, "\r\033[K"); seg; draws++) {
            seg += 4;
            char *next = strstr(seg, "\r\033[K");
            size_t len = next ? (size_t)(next - seg) : strlen(seg);
            if (len > 49) {
                fprintf(stderr, "a draw at $COLUMNS=50 is %zu long: %.*s\n", len, (int)len, seg);
                cuvae_test_failures++;
            }
            seg = next;
        }
        CHECK(draws == 301); /* 300 draws and the clear */
    }
    setenv("COLUMNS", "wide", 1);
    CHECK(cuvae_terminal_columns(-1) == 80);
    unsetenv("COLUMNS");
    CHECK(cuvae_terminal_columns(-1) == 80);
}

static void test_rundir(const char *dir)
{
    char path[512], file[600];
    cuvae_status st;
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    CHECK(cuvae_mkdirs(path, &st) == 0);
    CHECK(cuvae_mkdirs(path, &st) == 0); /* exists: fine */
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));

    snprintf(file, sizeof file, "%s/config.ini", path);
    CHECK(cuvae_write_file(file, "old\n", 4, &st) == 0);
    CHECK(cuvae_write_file(file, "new text\n", 9, &st) == 0);
    FILE *f = fopen(file, "rb");
    char buf[32] = {0};
    if (f) {
        CHECK(fread(buf, 1, sizeof buf - 1, f) == 9);
        fclose(f);
    }
    CHECK(strcmp(buf, "new text\n") == 0);

    /* A regular file in the way of a directory: an error naming it. */
    snprintf(path, sizeof path, "%s/a/b/c/config.ini/d", dir);
    CHECK(cuvae_mkdirs(path, &st) != 0);
    CHECK_MSG(st.msg, "config.ini");
    /* A write into a missing directory: an error naming the file, no temporary left. */
    snprintf(file, sizeof file, "%s/missing/x.ini", dir);
    CHECK(cuvae_write_file(file, "x", 1, &st) != 0);
    CHECK_MSG(st.msg, "missing/x.ini");

    snprintf(path, sizeof path, "%s/run", dir);
    CHECK(cuvae_run_has_checkpoints(path) == 0);
    snprintf(file, sizeof file, "%s/run/checkpoints", dir);
    CHECK(cuvae_mkdirs(file, &st) == 0);
    CHECK(cuvae_run_has_checkpoints(path) == 0);
    snprintf(file, sizeof file, "%s/run/checkpoints/step-000000000001.safetensors.tmp.12", dir);
    CHECK(cuvae_test_write_file(file, "x", 1) == 0);
    CHECK(cuvae_run_has_checkpoints(path) == 0); /* a stale temporary is not a checkpoint */
    snprintf(file, sizeof file, "%s/run/checkpoints/step-000000000001.safetensors", dir);
    CHECK(cuvae_test_write_file(file, "x", 1) == 0);
    CHECK(cuvae_run_has_checkpoints(path) == 1);
}

/* The step's GEMM work of the default model (784-512-256-32) at batch 128, by hand: 1089536
 * multiply-adds a row in all layers, 6 FLOP each, less the 2 x 784 x 512 of the input gradient the
 * first encoder layer does not compute: 5734400 a row. (bench/peers/gemm_ceiling.py times the same
 * products.) */
static void test_train_flops(void)
{
    cuvae_config c;
    cuvae_config_defaults(&c);
    cuvae_model m;
    cuvae_status st;
    CHECK(cuvae_model_layout(&m, &c, 784, &st) == 0);
    CHECK(cuvae_model_train_flops(&m, 128) == 5734400.0 * 128);
}

int main(void)
{
    char dir[256];
    if (cuvae_test_tmpdir(dir, sizeof dir, "trainer_parts")) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_schedules();
    test_json();
    test_formats();
    test_train_flops();
    test_progress_plain(dir);
    test_json_values();
    test_progress_width(dir);
    test_rundir(dir);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return cuvae_test_finish("test_trainer_parts");
}
