/* The notation of model.encoder and model.decoder (config.h): comma-separated layers,
 *   linear N        N features
 *   linear CxHxW    C*H*W features, the output seen as C x H x W by a transposed conv after it
 *   conv C [kK sS pP]   conv2d to C channels (defaults k4 s2 p1: each side halves)
 *   convt C [kK sS pP]  conv_transpose2d to C channels (same defaults: each side doubles)
 * Parsing and the canonical text (defaults left out), which parses back to the same spec. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SPEC_MAX_SIZE 65536 /* channels, features, H and W of a linear's reshape */
#define SPEC_MAX_KSP 64     /* kernel and stride; padding below the kernel (model.c checks) */
#define CANON_ONE_LINE 180  /* canonical text past this uses "," alone (INI lines are short) */

static const char *const kind_words[] = {"linear", "conv", "convt"};

static int read_int(const char *s, size_t n, int lo, int hi, int *out)
{
    char buf[16];
    if (n == 0 || n >= sizeof buf) return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    long v = strtol(buf, NULL, 10);
    if (errno || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* One layer's text [s, s+n), without surrounding blanks. */
static int parse_layer(const char *s, size_t n, cuvae_layer_spec *l, char *why, size_t why_len)
{
    const char *end = s + n;
    const char *w = s;
    while (w < end && *w != ' ' && *w != '\t') w++;
    int kind = -1;
    for (int i = 0; i < 3; i++)
        if ((size_t)(w - s) == strlen(kind_words[i]) && !memcmp(s, kind_words[i], (size_t)(w - s)))
            kind = i;
    if (kind < 0) {
        snprintf(why, why_len, "'%.*s' is not a layer (expected linear, conv or convt)",
                 (int)(w - s), s);
        return -1;
    }
    memset(l, 0, sizeof *l);
    l->kind = kind;
    if (kind) l->k = 4, l->s = 2, l->p = 1;
    int seen_size = 0, seen_ksp[3] = {0, 0, 0};
    for (const char *t = w; t < end;) {
        while (t < end && (*t == ' ' || *t == '\t')) t++;
        if (t >= end) break;
        const char *te = t;
        while (te < end && *te != ' ' && *te != '\t') te++;
        size_t tn = (size_t)(te - t);
        int ok = 0;
        if (!seen_size && *t >= '0' && *t <= '9') {
            const char *x1 = kind == 0 ? memchr(t, 'x', tn) : NULL;
            if (!x1) {
                ok = !read_int(t, tn, 1, SPEC_MAX_SIZE, &l->c);
            } else {
                const char *x2 = memchr(x1 + 1, 'x', (size_t)(te - x1 - 1));
                ok = x2 && !read_int(t, (size_t)(x1 - t), 1, SPEC_MAX_SIZE, &l->c) &&
                     !read_int(x1 + 1, (size_t)(x2 - x1 - 1), 1, SPEC_MAX_SIZE, &l->h) &&
                     !read_int(x2 + 1, (size_t)(te - x2 - 1), 1, SPEC_MAX_SIZE, &l->w);
            }
            seen_size = ok;
        } else if (kind && seen_size && tn >= 2 && strchr("ksp", *t)) {
            int which = *t == 'k' ? 0 : *t == 's' ? 1 : 2;
            int *dst = which == 0 ? &l->k : which == 1 ? &l->s : &l->p;
            ok = !seen_ksp[which] && !read_int(t + 1, tn - 1, which == 2 ? 0 : 1,
                                               which == 2 ? SPEC_MAX_KSP - 1 : SPEC_MAX_KSP, dst);
            seen_ksp[which] = 1;
        }
        if (!ok) {
            snprintf(why, why_len, "'%.*s' in '%.*s': expected %s", (int)tn, t, (int)n, s,
                     kind == 0 ? "linear N or linear CxHxW (sizes in [1, 65536])"
                               : "conv|convt C [kK] [sS] [pP] (C in [1, 65536], K and S in [1, "
                                 "64], P in [0, 63], each once)");
            return -1;
        }
        t = te;
    }
    if (!seen_size) {
        snprintf(why, why_len, "'%.*s': the layer's size is missing", (int)n, s);
        return -1;
    }
    return 0;
}

int cuvae_stack_spec_parse(const char *text, cuvae_stack_spec *out, char *why, size_t why_len)
{
    cuvae_stack_spec spec;
    memset(&spec, 0, sizeof spec);
    const char *p = text;
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) {
        *out = spec;
        return 0;
    }
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (len == 0) {
            snprintf(why, why_len, "an empty layer between commas");
            return -1;
        }
        if (spec.n == CUVAE_MAX_SPEC) {
            snprintf(why, why_len, "more than %d layers", CUVAE_MAX_SPEC);
            return -1;
        }
        if (parse_layer(p, len, &spec.layer[spec.n], why, why_len)) return -1;
        spec.n++;
        if (!e) break;
        p = e + 1;
    }
    *out = spec;
    return 0;
}

static size_t format_with(const cuvae_stack_spec *s, const char *sep, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->n && i < CUVAE_MAX_SPEC && used < len; i++) {
        const cuvae_layer_spec *l = &s->layer[i];
        int kind = l->kind >= 0 && l->kind < 3 ? l->kind : 0;
        used += (size_t)snprintf(buf + used, len - used, "%s%s %d", i ? sep : "", kind_words[kind],
                                 l->c);
        if (used >= len) break;
        if (kind == 0 && l->h)
            used += (size_t)snprintf(buf + used, len - used, "x%dx%d", l->h, l->w);
        if (kind && l->k != 4 && used < len)
            used += (size_t)snprintf(buf + used, len - used, " k%d", l->k);
        if (kind && l->s != 2 && used < len)
            used += (size_t)snprintf(buf + used, len - used, " s%d", l->s);
        if (kind && l->p != 1 && used < len)
            used += (size_t)snprintf(buf + used, len - used, " p%d", l->p);
    }
    return used;
}

void cuvae_stack_spec_format(const cuvae_stack_spec *s, char *buf, size_t len)
{
    if (format_with(s, ", ", buf, len) > CANON_ONE_LINE) format_with(s, ",", buf, len);
}
