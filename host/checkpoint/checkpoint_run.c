/* Checkpoints of a run directory (see checkpoint.h): <dir>/checkpoints/step-<step>.safetensors,
 * best.safetensors and the "latest" pointer; saving with rotation, and finding the newest file that
 * reads back, falling back to older ones when the newest is damaged. Stale temporaries
 * (*.tmp.<pid>, left by a killed writer) are never read and are removed by the next save. */
#include "checkpoint.h"
#include "file_write.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rundir.h"

#define STEP_PREFIX "step-"
#define STEP_SUFFIX ".safetensors"
#define BEST_NAME "best.safetensors"
#define LATEST_NAME "latest"
#define NAME_LEN 256 /* the longest file name looked at in checkpoints/ */

typedef struct {
    char name[NAME_LEN];
    uint64_t step;
} step_file;

typedef struct {
    step_file *v;
    size_t n, cap;
} step_list;

/* step-<decimal>.safetensors (the writer pads to 12 digits; any width up to u64 is read). */
static int parse_step_name(const char *name, uint64_t *step)
{
    size_t len = strlen(name), pre = strlen(STEP_PREFIX), suf = strlen(STEP_SUFFIX);
    if (len <= pre + suf || len >= NAME_LEN || strncmp(name, STEP_PREFIX, pre) != 0 ||
        strcmp(name + len - suf, STEP_SUFFIX) != 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = pre; i < len - suf; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        unsigned d = (unsigned)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *step = v;
    return 0;
}

static int is_temp_name(const char *name)
{
    return strstr(name, ".tmp.") != NULL;
}

static int cmp_newest_first(const void *a, const void *b)
{
    const step_file *x = a, *y = b;
    if (x->step != y->step) return x->step > y->step ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Lists the step files of dir, newest first; with remove_temps, also removes stale temporaries.
 * Returns 0, or -1 with a message (errno is kept from a failed opendir, so ENOENT can be told). */
static int list_steps(const char *dir, step_list *out, int remove_temps, cuvae_status *st)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) {
        int err = errno;
        cuvae_fail(st, "cannot list %s: %s", dir, strerror(err));
        errno = err;
        return -1;
    }
    struct dirent *ent;
    int rc = 0;
    while ((ent = readdir(d)) != NULL) {
        uint64_t step;
        if (remove_temps && is_temp_name(ent->d_name)) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
            if (unlink(path) != 0 && errno != ENOENT) {
                rc = cuvae_fail(st, "cannot remove the stale temporary %s: %s", path,
                                strerror(errno));
                break;
            }
            continue;
        }
        if (parse_step_name(ent->d_name, &step)) continue;
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 16;
            step_file *v = realloc(out->v, cap * sizeof *v);
            if (!v) {
                rc = cuvae_fail(st, "out of memory listing %s", dir);
                break;
            }
            out->v = v;
            out->cap = cap;
        }
        snprintf(out->v[out->n].name, NAME_LEN, "%s", ent->d_name);
        out->v[out->n].step = step;
        out->n++;
    }
    closedir(d);
    if (rc) {
        free(out->v);
        memset(out, 0, sizeof *out);
        return rc;
    }
    if (out->n) qsort(out->v, out->n, sizeof *out->v, cmp_newest_first);
    return 0;
}

int cuvae_ckpt_save_run(const char *run_dir, int keep_last, const cuvae_config *config,
                        const cuvae_model *model, const cuvae_ckpt_meta *meta,
                        const cuvae_train_state *state, int is_best, char *saved_path,
                        size_t saved_len, cuvae_status *st)
{
    char dir[4096], name[NAME_LEN], path[4096 + NAME_LEN];
    int n = snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    if (n < 0 || (size_t)n >= sizeof dir) return cuvae_fail(st, "%s: path too long", run_dir);
    if (cuvae_mkdirs(dir, st)) return cuvae_fail_prefix(st, "cannot save a checkpoint");
    snprintf(name, sizeof name, STEP_PREFIX "%012" PRIu64 STEP_SUFFIX, meta->step);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    /* best.safetensors before the step file, the one place this rule lives: a step file whose
     * best_valid counts an improvement must never exist without the best file that records it, or
     * a resume from it would never write that best file again. Were the step file durable first
     * and the best write then failed, that is what would happen; this way a failure leaves the
     * older step file newest, and the resume redoes the epoch end and writes the same best file.
     * (A crash in between leaves best one save ahead; the resumed run recomputes the same steps
     * and writes the same best.) */
    if (is_best) {
        char best[sizeof path];
        snprintf(best, sizeof best, "%s/" BEST_NAME, dir);
        if (cuvae_ckpt_write(best, config, model, meta, state, st)) return -1;
    }
    if (cuvae_ckpt_write(path, config, model, meta, state, st)) return -1;
    if (saved_path && saved_len) snprintf(saved_path, saved_len, "%s", path);
    /* The pointer is written only after the file it names is durable. */
    char latest[sizeof path], line[NAME_LEN + 2];
    snprintf(latest, sizeof latest, "%s/" LATEST_NAME, dir);
    n = snprintf(line, sizeof line, "%s\n", name);
    if (cuvae_write_file(latest, line, (size_t)n, st))
        return cuvae_fail_prefix(st, "cannot write the checkpoint pointer");

    /* Rotation, now that the new file and the pointer are durable: keep the newest keep_last step
     * files and, whatever their numbers say, the one just written. */
    if (keep_last < 1) keep_last = 1;
    step_list list;
    if (list_steps(dir, &list, 1, st))
        return cuvae_fail_prefix(st, "checkpoint %s saved, but rotation failed", path);
    int rc = 0;
    for (size_t i = (size_t)keep_last; i < list.n && !rc; i++) {
        if (strcmp(list.v[i].name, name) == 0) continue;
        char old[sizeof path];
        snprintf(old, sizeof old, "%s/%s", dir, list.v[i].name);
        if (unlink(old) != 0 && errno != ENOENT)
            rc = cuvae_fail(st,
                            "checkpoint %s saved, but the old checkpoint %s cannot be removed: %s",
                            path, old, strerror(errno));
    }
    free(list.v);
    return rc;
}

/* Reads <dir>/latest: the file name it holds, or "" when there is none. A pointer that names
 * anything but a plain file of dir is reported and ignored. */
static void read_latest(const char *dir, FILE *log, char *name, size_t len)
{
    name[0] = '\0';
    char path[4096 + 16];
    snprintf(path, sizeof path, "%s/" LATEST_NAME, dir);
    struct stat sb;
    FILE *f = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? fopen(path, "rb") : NULL;
    if (!f) return;
    char buf[NAME_LEN + 2];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r')) buf[--got] = '\0';
    int ok = got > 0 && got < len && strlen(buf) == got && strchr(buf, '/') == NULL &&
             strcmp(buf, ".") != 0 && strcmp(buf, "..") != 0 && !is_temp_name(buf);
    for (size_t i = 0; ok && i < got; i++) ok = (unsigned char)buf[i] >= 0x20;
    if (!ok) {
        if (log) fprintf(log, "cuvae: skipping %s: it does not name a checkpoint file\n", path);
        return;
    }
    memcpy(name, buf, got + 1);
}

static void add_candidate(char (*cand)[NAME_LEN], size_t *n, size_t cap, const char *name)
{
    if (*n < cap) snprintf(cand[(*n)++], NAME_LEN, "%s", name);
}

/* A rejection's reason without the path the message starts with (the log line names it). */
static const char *reason_of(const char *msg, const char *path)
{
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') return msg + n + 2;
    return msg;
}

int cuvae_ckpt_find_latest(const char *run_dir, FILE *log, cuvae_ckpt *out, char *path,
                           size_t path_len, cuvae_status *st)
{
    memset(out, 0, sizeof *out);
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    if (n < 0 || (size_t)n >= sizeof dir) return cuvae_fail(st, "%s: path too long", run_dir);
    step_list list;
    if (list_steps(dir, &list, 0, st)) return errno == ENOENT ? 0 : -1;

    /* Candidates, best first: step files by step number, newest first; the file "latest" names
     * when the listing lacks it (a hand-pointed file goes first, a missing step file in its
     * place by number, to be reported); best.safetensors last, as the final fallback. */
    size_t cap = list.n + 2, nc = 0;
    char(*cand)[NAME_LEN] = calloc(cap, NAME_LEN);
    if (!cand) {
        free(list.v);
        return cuvae_fail(st, "out of memory listing %s", dir);
    }
    char latest[NAME_LEN];
    read_latest(dir, log, latest, sizeof latest);
    uint64_t latest_step = 0;
    int latest_is_step = latest[0] && parse_step_name(latest, &latest_step) == 0;
    int latest_pending = latest[0] && strcmp(latest, BEST_NAME) != 0;
    for (size_t i = 0; i < list.n; i++)
        if (strcmp(list.v[i].name, latest) == 0) latest_pending = 0;
    if (latest_pending && !latest_is_step) {
        add_candidate(cand, &nc, cap, latest);
        latest_pending = 0;
    }
    for (size_t i = 0; i < list.n; i++) {
        if (latest_pending && latest_step > list.v[i].step) {
            add_candidate(cand, &nc, cap, latest);
            latest_pending = 0;
        }
        add_candidate(cand, &nc, cap, list.v[i].name);
    }
    if (latest_pending) add_candidate(cand, &nc, cap, latest);
    free(list.v);
    char best[4096 + 32];
    struct stat sb;
    snprintf(best, sizeof best, "%s/" BEST_NAME, dir);
    if (stat(best, &sb) == 0) add_candidate(cand, &nc, cap, BEST_NAME);

    int result = 0;
    char first_reason[NAME_LEN + sizeof st->msg + 2];
    first_reason[0] = '\0';
    for (size_t i = 0; i < nc; i++) {
        char file[4096 + NAME_LEN];
        snprintf(file, sizeof file, "%s/%s", dir, cand[i]);
        cuvae_status why;
        if (cuvae_ckpt_read(file, out, &why) == 0) {
            if (path && path_len) snprintf(path, path_len, "%s", file);
            result = 1;
            break;
        }
        const char *reason = reason_of(why.msg, file);
        if (log) fprintf(log, "cuvae: skipping %s: %s\n", file, reason);
        if (!first_reason[0])
            snprintf(first_reason, sizeof first_reason, "%s: %s", cand[i], reason);
    }
    if (!result && nc > 0)
        result = cuvae_fail(st, "no usable checkpoint in %s: %zu rejected; the newest, %s", dir, nc,
                            first_reason);
    free(cand);
    return result;
}
