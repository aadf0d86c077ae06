/* metrics.jsonl writer and the progress display (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void json_raw(cuvae_json_line *j, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void json_raw(cuvae_json_line *j, const char *fmt, ...)
{
    if (j->overflow) return;
    size_t room = sizeof j->buf - j->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->buf + j->len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        j->overflow = 1;
        return;
    }
    j->len += (size_t)n;
}

/* Writes a JSON string literal: quotes, backslashes and control characters escaped. */
static void json_string(cuvae_json_line *j, const char *s)
{
    json_raw(j, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c && !j->overflow; c++) {
        if (*c == '"' || *c == '\\')
            json_raw(j, "\\%c", *c);
        else if (*c < 0x20)
            json_raw(j, "\\u%04x", *c);
        else
            json_raw(j, "%c", *c);
    }
    json_raw(j, "\"");
}

static void json_key(cuvae_json_line *j, const char *key)
{
    json_raw(j, ",");
    json_string(j, key);
    json_raw(j, ":");
}

void cuvae_json_begin(cuvae_json_line *j, const char *type)
{
    j->len = 0;
    j->overflow = 0;
    j->buf[0] = '\0';
    snprintf(j->type, sizeof j->type, "%s", type);
    j->has_step = 0;
    j->step = 0;
    j->n_nums = 0;
    json_raw(j, "{\"type\":");
    json_string(j, type);
}

void cuvae_json_int(cuvae_json_line *j, const char *key, int64_t value)
{
    json_key(j, key);
    json_raw(j, "%lld", (long long)value);
    if (strcmp(key, "step") == 0) {
        j->has_step = 1;
        j->step = value;
    }
}

void cuvae_json_num(cuvae_json_line *j, const char *key, double value)
{
    json_key(j, key);
    if (isfinite(value))
        json_raw(j, "%.10g", value);
    else
        json_raw(j, "null");
    if (j->n_nums < CUVAE_JSON_MAX_NUMS) {
        snprintf(j->num_keys[j->n_nums], sizeof j->num_keys[0], "%s", key);
        j->nums[j->n_nums++] = value;
    } else {
        j->overflow = 1; /* a record TensorBoard would get only part of */
    }
}

void cuvae_json_str(cuvae_json_line *j, const char *key, const char *value)
{
    json_key(j, key);
    if (value)
        json_string(j, value);
    else
        json_raw(j, "null");
}

const char *cuvae_json_end(cuvae_json_line *j)
{
    json_raw(j, "}");
    return j->overflow ? NULL : j->buf;
}

/* The one file cuvae does not write through cuvae_write_file (file_write.h), on purpose: it is an
 * append log, not a document replaced whole. Rewriting it atomically at every log line would copy
 * the whole history each time, and a resumed run must keep the lines of the run before it. A
 * crash can at worst cut its last line short; every line before stays, flushed as written. */
int cuvae_metrics_open(cuvae_metrics_log *log, const char *run_dir, cuvae_status *st)
{
    int n = snprintf(log->path, sizeof log->path, "%s/metrics.jsonl", run_dir);
    if (n < 0 || (size_t)n >= sizeof log->path)
        return cuvae_fail(st, "%s: run directory path too long", run_dir);
    log->f = fopen(log->path, "a");
    if (!log->f)
        return cuvae_fail(st, "%s: cannot open for appending: %s", log->path, strerror(errno));
    return 0;
}

int cuvae_metrics_append(cuvae_metrics_log *log, cuvae_json_line *j, cuvae_status *st)
{
    const char *text = cuvae_json_end(j);
    if (!text)
        return cuvae_fail(st, "%s: a metrics line exceeded %zu bytes or %d numbers", log->path,
                          sizeof j->buf, CUVAE_JSON_MAX_NUMS);
    if (fprintf(log->f, "%s\n", text) < 0 || fflush(log->f) != 0)
        return cuvae_fail(st, "%s: write failed: %s", log->path, strerror(errno));
    if (log->tb && j->has_step) {
        char tags[CUVAE_JSON_MAX_NUMS][sizeof j->type + sizeof j->num_keys[0] + 1];
        const char *tag_of[CUVAE_JSON_MAX_NUMS];
        double values[CUVAE_JSON_MAX_NUMS];
        int n = 0;
        for (int i = 0; i < j->n_nums; i++) {
            if (strcmp(j->num_keys[i], "wall_s") == 0) continue;
            snprintf(tags[n], sizeof tags[0], "%s/%s", j->type, j->num_keys[i]);
            tag_of[n] = tags[n];
            values[n++] = j->nums[i];
        }
        cuvae_tb_scalars(log->tb, j->step, n, tag_of, values);
    }
    return 0;
}

int cuvae_metrics_close(cuvae_metrics_log *log, cuvae_status *st)
{
    if (!log->f) return 0;
    int rc = fclose(log->f);
    log->f = NULL;
    if (rc != 0) return cuvae_fail(st, "%s: close failed: %s", log->path, strerror(errno));
    return 0;
}

void cuvae_format_rate(char *buf, size_t len, double per_s)
{
    if (!isfinite(per_s) || per_s < 0)
        snprintf(buf, len, "-");
    else if (per_s >= 1e9)
        snprintf(buf, len, "%.2fG", per_s / 1e9);
    else if (per_s >= 1e6)
        snprintf(buf, len, "%.2fM", per_s / 1e6);
    else if (per_s >= 1e4)
        snprintf(buf, len, "%.0fk", per_s / 1e3);
    else if (per_s >= 1e3)
        snprintf(buf, len, "%.1fk", per_s / 1e3);
    else
        snprintf(buf, len, "%.0f", per_s);
}

void cuvae_format_duration(char *buf, size_t len, double seconds)
{
    if (!isfinite(seconds) || seconds < 0) {
        snprintf(buf, len, "-");
        return;
    }
    long long s = (long long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, len, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
    else
        snprintf(buf, len, "%lld:%02lld", s / 60, s % 60);
}

void cuvae_progress_init(cuvae_progress *p, FILE *out, int tty, int epochs, int64_t steps_per_epoch,
                         int64_t first_step)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = tty >= 0 ? tty : isatty(fileno(out));
    p->epochs = epochs;
    p->steps_per_epoch = steps_per_epoch;
    p->total_steps = (int64_t)epochs * steps_per_epoch;
    p->first_step = first_step;
    p->start_time = cuvae_now();
    p->last_draw = -1.0;
    p->loss = NAN;
    p->samples_per_s = NAN;
}

void cuvae_progress_set(cuvae_progress *p, double loss, double samples_per_s)
{
    p->loss = loss;
    p->samples_per_s = samples_per_s;
}

void cuvae_progress_clear(cuvae_progress *p)
{
    if (p->tty && p->bar_shown) {
        fputs("\r\033[K", p->out);
        fflush(p->out);
    }
    p->bar_shown = 0;
}

int cuvae_terminal_columns(int fd)
{
    struct winsize ws;
    if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *env = getenv("COLUMNS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v > 0 && v <= 10000) return (int)v;
    }
    return 80;
}

void cuvae_progress_format(const cuvae_progress *p, int epoch, int64_t step, double now,
                           int columns, char *buf, size_t len)
{
    char loss[32], rate[32], eta[32], head[48], steps[64], tail[256];
    if (isfinite(p->loss))
        snprintf(loss, sizeof loss, "%.2f", p->loss);
    else
        snprintf(loss, sizeof loss, "-");
    cuvae_format_rate(rate, sizeof rate, p->samples_per_s);
    int64_t done = step - p->first_step;
    double elapsed = now - p->start_time;
    double remaining = done > 0 ? elapsed / (double)done * (double)(p->total_steps - step) : NAN;
    cuvae_format_duration(eta, sizeof eta, remaining);
    snprintf(head, sizeof head, "epoch %d/%d", epoch + 1, p->epochs);
    snprintf(steps, sizeof steps, " step %lld/%lld", (long long)step, (long long)p->total_steps);

    /* Drop parts, least useful first, until the line fits with a bar of at least 5 cells; with
     * no part left to drop the bar goes too, and what remains is cut at the width. */
    int room = columns - 1;
    int show_rate = 1, show_eta = 1, show_steps = 1, bar = 20;
    for (int pass = 0; pass < 4; pass++) {
        snprintf(tail, sizeof tail, "%s loss %s%s%s%s%s", show_steps ? steps : "", loss,
                 show_rate ? " " : "", show_rate ? rate : "", show_rate ? " samples/s" : "",
                 show_eta ? " ETA " : "");
        if (show_eta) {
            size_t n = strlen(tail);
            snprintf(tail + n, sizeof tail - n, "%s", eta);
        }
        int fixed = (int)(strlen(head) + strlen(tail)) + 3; /* " [" and "]" */
        bar = room - fixed < 20 ? room - fixed : 20;
        if (bar >= 5) break;
        if (show_rate)
            show_rate = 0;
        else if (show_eta)
            show_eta = 0;
        else if (show_steps)
            show_steps = 0;
    }
    char cells[21];
    if (bar >= 5) {
        int64_t in_epoch = step - (int64_t)epoch * p->steps_per_epoch;
        int filled = p->steps_per_epoch > 0 ? (int)(bar * in_epoch / p->steps_per_epoch) : bar;
        if (filled < 0) filled = 0;
        if (filled > bar) filled = bar;
        for (int i = 0; i < bar; i++) cells[i] = i < filled ? '#' : '.';
        cells[bar] = '\0';
        snprintf(buf, len, "%s [%s]%s", head, cells, tail);
    } else {
        snprintf(buf, len, "%s%s", head, tail);
    }
    if (room < 1) room = 1;
    if (strlen(buf) > (size_t)room && (size_t)room < len) buf[room] = '\0';
}

void cuvae_progress_step(cuvae_progress *p, int epoch, int64_t step)
{
    if (!p->tty) return;
    double now = cuvae_now();
    if (p->last_draw >= 0 && now - p->last_draw < 0.1 && step < p->total_steps) return;
    p->last_draw = now;
    char line[512];
    cuvae_progress_format(p, epoch, step, now, cuvae_terminal_columns(fileno(p->out)), line,
                          sizeof line);
    fprintf(p->out, "\r\033[K%s", line);
    fflush(p->out);
    p->bar_shown = 1;
}

void cuvae_progress_epoch(cuvae_progress *p, const cuvae_epoch_summary *e)
{
    char rate[32], valid[48];
    cuvae_format_rate(rate, sizeof rate, e->samples_per_s);
    if (e->has_valid)
        snprintf(valid, sizeof valid, "%.2f", e->valid_neg_elbo);
    else
        snprintf(valid, sizeof valid, "-");
    cuvae_progress_message(p,
                           "epoch %d/%d step %lld loss %.2f (rec %.2f kl %.2f) valid %s "
                           "%s samples/s %.1f s",
                           e->epoch + 1, p->epochs, (long long)e->step, e->loss, e->rec, e->kl,
                           valid, rate, e->epoch_s);
}

void cuvae_progress_message(cuvae_progress *p, const char *fmt, ...)
{
    cuvae_progress_clear(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    fflush(p->out);
    /* Redraw the bar soon after a message rather than leaving the terminal without one. */
    p->last_draw = -1.0;
}
