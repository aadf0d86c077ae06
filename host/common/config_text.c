/* Config as text: the resolved INI (saved in run directories and checkpoints), the key reference
 * for --help and the README, and the report of what a resume changes. All driven by the key table
 * in config.c. */
#include "config.h"
#include "config_keys.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#ifndef CUVAE_VERSION
#define CUVAE_VERSION "unknown"
#endif

/* Bytes of a path per INI line: Debian's inih reads lines of at most 198 characters, so longer
 * paths continue on indented lines (which the loader joins back). */
#define INI_PIECE 150

static const void *field_of(const cuvae_key_spec *k, const cuvae_config *c)
{
    return (const char *)c + k->offset;
}

static void format_bound(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%.9g", v);
}

void cuvae_key_allowed(const cuvae_key_spec *k, char *buf, size_t len)
{
    char lo[32], hi[32];
    format_bound(lo, sizeof lo, k->min);
    format_bound(hi, sizeof hi, k->max);
    const char *what = k->type == CUVAE_KEY_FLOAT ? "a number" : "an integer";
    switch (k->type) {
    case CUVAE_KEY_INT:
    case CUVAE_KEY_FLOAT:
        if (k->flags & CUVAE_KEY_NO_MAX)
            snprintf(buf, len, "%s %s %s", what, k->flags & CUVAE_KEY_MIN_OPEN ? ">" : ">=", lo);
        else
            snprintf(buf, len, "%s in %c%s, %s%c", what, k->flags & CUVAE_KEY_MIN_OPEN ? '(' : '[',
                     lo, hi, k->flags & CUVAE_KEY_MAX_OPEN ? ')' : ']');
        break;
    case CUVAE_KEY_U64:
        snprintf(buf, len, "an integer in [0, %" PRIu64 "]", UINT64_MAX);
        break;
    case CUVAE_KEY_BOOL:
        snprintf(buf, len, "a boolean (0, 1, true, false, yes, no)");
        break;
    case CUVAE_KEY_STRING:
        if (!strcmp(k->section, "data") && !strcmp(k->key, "image_size"))
            snprintf(buf, len, "empty, N or HxW with sides in [1, %d]", CUVAE_IMAGE_SIZE_MAX);
        else
            snprintf(buf, len, "a path of at most %d characters", CUVAE_PATH_LEN - 1);
        break;
    case CUVAE_KEY_ENUM: {
        size_t used = (size_t)snprintf(buf, len, "one of ");
        for (int i = 0; k->names[i] && used < len; i++)
            used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", k->names[i]);
        break;
    }
    case CUVAE_KEY_INT_LIST:
        snprintf(buf, len,
                 "a comma-separated list of at most %d integers in [%s, %s] (empty = none)",
                 CUVAE_MAX_HIDDEN, lo, hi);
        break;
    case CUVAE_KEY_LAYERS:
        snprintf(buf, len,
                 "comma-separated layers (at most %d): linear N, linear CxHxW, conv C or convt C "
                 "with optional kK sS pP (defaults k4 s2 p1); empty = none",
                 CUVAE_MAX_SPEC);
        break;
    }
}

void cuvae_key_format(const cuvae_key_spec *k, const cuvae_config *c, char *buf, size_t len)
{
    const void *f = field_of(k, c);
    switch (k->type) {
    case CUVAE_KEY_INT:
    case CUVAE_KEY_BOOL:
        snprintf(buf, len, "%d", *(const int *)f);
        break;
    case CUVAE_KEY_U64:
        snprintf(buf, len, "%" PRIu64, *(const uint64_t *)f);
        break;
    case CUVAE_KEY_FLOAT: {
        /* The shortest decimal that reads back to the same float (9 digits always do). */
        float v = *(const float *)f;
        for (int digits = 1; digits <= 9; digits++) {
            snprintf(buf, len, "%.*g", digits, (double)v);
            float back = strtof(buf, NULL);
            if (!memcmp(&back, &v, sizeof v)) break;
        }
        break;
    }
    case CUVAE_KEY_STRING:
        snprintf(buf, len, "%s", (const char *)f);
        break;
    case CUVAE_KEY_ENUM: {
        int v = *(const int *)f, n = 0;
        while (k->names[n]) n++;
        snprintf(buf, len, "%s", v >= 0 && v < n ? k->names[v] : "?");
        break;
    }
    case CUVAE_KEY_INT_LIST: {
        const int *v = f;
        int n = *(const int *)((const char *)c + k->offset2);
        size_t used = 0;
        buf[0] = '\0';
        for (int i = 0; i < n && i < CUVAE_MAX_HIDDEN && used < len; i++)
            used += (size_t)snprintf(buf + used, len - used, "%s%d", i ? "," : "", v[i]);
        break;
    }
    case CUVAE_KEY_LAYERS:
        cuvae_stack_spec_format(f, buf, len);
        break;
    }
}

int cuvae_key_equal(const cuvae_key_spec *k, const cuvae_config *a, const cuvae_config *b)
{
    const void *fa = field_of(k, a), *fb = field_of(k, b);
    switch (k->type) {
    case CUVAE_KEY_INT:
    case CUVAE_KEY_BOOL:
    case CUVAE_KEY_ENUM:
        return *(const int *)fa == *(const int *)fb;
    case CUVAE_KEY_U64:
        return *(const uint64_t *)fa == *(const uint64_t *)fb;
    case CUVAE_KEY_FLOAT:
        return !memcmp(fa, fb, sizeof(float));
    case CUVAE_KEY_STRING:
        return !strncmp(fa, fb, CUVAE_PATH_LEN);
    case CUVAE_KEY_INT_LIST: {
        int na = *(const int *)((const char *)a + k->offset2);
        int nb = *(const int *)((const char *)b + k->offset2);
        if (na != nb) return 0;
        if (na < 0 || na > CUVAE_MAX_HIDDEN) return 1;
        return !memcmp(fa, fb, (size_t)na * sizeof(int));
    }
    case CUVAE_KEY_LAYERS: {
        const cuvae_stack_spec *sa = fa, *sb = fb;
        if (sa->n != sb->n) return 0;
        if (sa->n < 0 || sa->n > CUVAE_MAX_SPEC) return 1;
        return !memcmp(sa->layer, sb->layer, (size_t)sa->n * sizeof sa->layer[0]);
    }
    }
    return 0;
}

/* ---- resolved INI ------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} text_buf;

static void put(text_buf *t, const char *s, size_t n)
{
    if (t->oom) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void puts_(text_buf *t, const char *s)
{
    put(t, s, strlen(s));
}

/* Writes "key = value", splitting a long string value over indented continuation lines. A split
 * never lands next to a blank (inih trims each piece) nor before ';' or '#' (a comment there). */
static void put_value_line(text_buf *t, const char *key, const char *value, int may_split)
{
    puts_(t, key);
    puts_(t, *value ? " = " : " =");
    size_t n = strlen(value), at = 0;
    while (may_split && n - at > INI_PIECE) {
        size_t cut = at + INI_PIECE;
        while (cut > at + 1 &&
               (value[cut - 1] == ' ' || value[cut - 1] == '\t' || value[cut] == ' ' ||
                value[cut] == '\t' || value[cut] == ';' || value[cut] == '#'))
            cut--;
        if (cut <= at + 1) break; /* no safe place: one long line, which the loader will name */
        put(t, value + at, cut - at);
        puts_(t, "\n    ");
        at = cut;
    }
    puts_(t, value + at);
    puts_(t, "\n");
}

char *cuvae_config_to_ini(const cuvae_config *c)
{
    text_buf t = {0};
    puts_(&t, "; cuvae " CUVAE_VERSION " resolved configuration: every key, as the run used it.\n"
              "; Load it with `cuvae train <this file>`; `cuvae help train` explains each key.\n");
    const char *section = "";
    for (size_t i = 0; i < cuvae_config_n_keys; i++) {
        const cuvae_key_spec *k = &cuvae_config_keys[i];
        char value[2 * CUVAE_PATH_LEN];
        if (strcmp(section, k->section)) {
            section = k->section;
            puts_(&t, "\n[");
            puts_(&t, section);
            puts_(&t, "]\n");
        }
        cuvae_key_format(k, c, value, sizeof value);
        put_value_line(&t, k->key, value, k->type == CUVAE_KEY_STRING);
    }
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    return t.p;
}

/* ---- key reference ------------------------------------------------------------------------ */

/* Table cells: '|' would end the cell and <...> would be read as an HTML tag. */
static void markdown_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", out);
        else if (*s == '>')
            fputs("&gt;", out);
        else if (*s == '|')
            fputs("\\|", out);
        else
            fputc(*s, out);
    }
}

void cuvae_config_print_keys(FILE *out, int markdown)
{
    size_t width = 0;
    for (size_t i = 0; i < cuvae_config_n_keys; i++) {
        size_t w = strlen(cuvae_config_keys[i].section) + 1 + strlen(cuvae_config_keys[i].key);
        if (w > width) width = w;
    }
    if (markdown) fprintf(out, "| key | default | allowed | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < cuvae_config_n_keys; i++) {
        const cuvae_key_spec *k = &cuvae_config_keys[i];
        char name[128], allowed[256];
        snprintf(name, sizeof name, "%s.%s", k->section, k->key);
        cuvae_key_allowed(k, allowed, sizeof allowed);
        if (markdown) {
            fprintf(out, "| `%s` | ", name);
            if (*k->def) {
                fputc('`', out);
                markdown_cell(out, k->def);
                fputc('`', out);
            } else {
                fputs("(empty)", out);
            }
            fputs(" | ", out);
            markdown_cell(out, allowed);
            fputs(" | ", out);
            markdown_cell(out, k->doc);
            fputs(" |\n", out);
        } else {
            fprintf(out, "  %-*s = %s\n  %*s   %s; %s\n", (int)width, name,
                    *k->def ? k->def : "(empty)", (int)width, "", k->doc, allowed);
        }
    }
}

/* ---- resume ------------------------------------------------------------------------------- */

static void display(const cuvae_key_spec *k, const cuvae_config *c, char *buf, size_t len)
{
    cuvae_key_format(k, c, buf, len);
    if (!buf[0]) snprintf(buf, len, "''");
}

int cuvae_config_resume_diff(const cuvae_config *saved, const cuvae_config *now, char *report,
                             size_t report_len, cuvae_status *st)
{
    size_t used = 0;
    int truncated = 0;
    if (report && report_len) report[0] = '\0';
    for (size_t i = 0; i < cuvae_config_n_keys; i++) {
        const cuvae_key_spec *k = &cuvae_config_keys[i];
        if (cuvae_key_equal(k, saved, now)) continue;
        char was[2 * CUVAE_PATH_LEN], is[2 * CUVAE_PATH_LEN];
        display(k, saved, was, sizeof was);
        display(k, now, is, sizeof is);
        if (k->resume == CUVAE_RESUME_REFUSE)
            return cuvae_fail(st, "resume: %s.%s changed %s -> %s: %s; start a new run directory",
                              k->section, k->key, was, is, k->refuse_why);
        if (!report || !report_len || truncated) continue;
        int n = snprintf(report + used, report_len - used, "%s%s.%s %s -> %s%s", used ? "; " : "",
                         k->section, k->key, was, is,
                         k->resume == CUVAE_RESUME_EXACT ? " (resume is no longer exact)" : "");
        if (n < 0 || (size_t)n >= report_len - used) {
            /* Cut at the last whole entry and say that more changed. */
            report[used] = '\0';
            if (used + 6 < report_len) memcpy(report + used, used ? "; ..." : "...", 6);
            truncated = 1;
        } else {
            used += (size_t)n;
        }
    }
    return 0;
}
