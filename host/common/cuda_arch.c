/* The compatibility rule of cuda_arch.h. */
#include "cuda_arch.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    int number;  /* 86 for sm_86, 100 for sm_100 */
    char suffix; /* 'a', 'f' or 0 */
    int sass, ptx;
} arch_entry;

/* Parses one entry of `len` characters; 0 on success. */
static int parse_entry(const char *s, size_t len, arch_entry *e)
{
    memset(e, 0, sizeof *e);
    size_t i = 0;
    while (i < len && isdigit((unsigned char)s[i])) {
        if (e->number > 10000) return -1;
        e->number = e->number * 10 + (s[i] - '0');
        i++;
    }
    if (i == 0 || e->number < 10) return -1;
    if (i < len && (s[i] == 'a' || s[i] == 'f')) e->suffix = s[i++];
    if (i == len) {
        e->sass = e->ptx = 1;
    } else if (len - i == 5 && strncmp(s + i, "-real", 5) == 0) {
        e->sass = 1;
    } else if (len - i == 8 && strncmp(s + i, "-virtual", 8) == 0) {
        e->ptx = 1;
    } else {
        return -1;
    }
    return 0;
}

/* Calls fn on every entry; -1 when one does not parse. */
static int each_entry(const char *archs, int (*fn)(const arch_entry *, void *), void *arg)
{
    const char *p = archs ? archs : "";
    int any = 0;
    while (*p) {
        while (*p == ',' || *p == ';' || *p == ' ') p++;
        if (!*p) break;
        size_t n = strcspn(p, ",; ");
        arch_entry e;
        if (parse_entry(p, n, &e)) return -1;
        any = 1;
        if (fn(&e, arg)) return 1;
        p += n;
    }
    return any ? 0 : -1;
}

/* The driver takes the newest machine code the device runs, else the newest PTX it can compile:
 * so does this, to say which one serves the device. */
typedef struct {
    int cc, major, minor;
    arch_entry sass, ptx; /* the best of each kind so far (number 0: none) */
} match_arg;

static int matches(const arch_entry *e, void *arg)
{
    match_arg *m = (match_arg *)arg;
    int major = e->number / 10, minor = e->number % 10;
    if (e->sass) {
        int ok = e->suffix == 'a' ? m->major == major && m->minor == minor
                                  : m->major == major && m->minor >= minor;
        if (ok && e->number >= m->sass.number) m->sass = *e;
    }
    /* Architecture- and family-specific PTX is not forward compatible; plain PTX is. */
    if (e->ptx && !e->suffix && m->cc >= e->number && e->number > m->ptx.number) m->ptx = *e;
    return 0;
}

static const char *suffix_of(const arch_entry *e)
{
    return e->suffix == 'a' ? "a" : e->suffix == 'f' ? "f" : "";
}

int cuvae_cuda_arch_runs(const char *archs, int major, int minor, char *how, size_t len)
{
    if (how && len) how[0] = '\0';
    match_arg m;
    memset(&m, 0, sizeof m);
    m.cc = major * 10 + minor;
    m.major = major;
    m.minor = minor;
    /* A list that does not parse is not checked: the runtime then decides. */
    if (each_entry(archs, matches, &m) < 0) return -1;
    if (m.sass.number) {
        if (how && len)
            snprintf(how, len, "sm_%d%s machine code", m.sass.number, suffix_of(&m.sass));
        return 1;
    }
    if (m.ptx.number) {
        if (how && len) snprintf(how, len, "compute_%d PTX, compiled by the driver", m.ptx.number);
        return 1;
    }
    return 0;
}

typedef struct {
    char *buf;
    size_t len, used;
    int want_ptx, count;
} describe_arg;

static int describe_one(const arch_entry *e, void *arg)
{
    describe_arg *d = (describe_arg *)arg;
    if (d->want_ptx ? !e->ptx : !e->sass) return 0;
    if (d->used >= d->len) return 0;
    int n = snprintf(d->buf + d->used, d->len - d->used, "%s%s_%d%s", d->count ? " " : "",
                     d->want_ptx ? "compute" : "sm", e->number, suffix_of(e));
    if (n > 0) d->used += (size_t)n;
    if (d->used > d->len) d->used = d->len;
    d->count++;
    return 0;
}

void cuvae_cuda_arch_describe(const char *archs, char *buf, size_t len)
{
    if (!len) return;
    buf[0] = '\0';
    describe_arg d = {buf, len, 0, 0, 0};
    if (each_entry(archs, describe_one, &d) < 0) {
        snprintf(buf, len, "CUDA architectures '%s'", archs ? archs : "");
        return;
    }
    int sass = d.count;
    if (sass && d.used < len)
        d.used += (size_t)snprintf(buf + d.used, len - d.used, " machine code");
    if (d.used > len) d.used = len;
    d.count = 0;
    d.want_ptx = 1;
    size_t before = d.used;
    if (sass && d.used < len) {
        d.used += (size_t)snprintf(buf + d.used, len - d.used, ", ");
        if (d.used > len) d.used = len;
    }
    each_entry(archs, describe_one, &d);
    if (d.count && d.used < len) {
        snprintf(buf + d.used, len - d.used, " PTX");
    } else if (!d.count && before < len) {
        buf[before] = '\0'; /* no PTX: drop the ", " */
    }
}

int cuvae_cuda_arch_mismatch(const char *archs, const char *device, int major, int minor, char *msg,
                             size_t len)
{
    if (msg && len) msg[0] = '\0';
    if (cuvae_cuda_arch_runs(archs, major, minor, NULL, 0) != 0) return 0;
    if (msg && len) {
        char held[160];
        cuvae_cuda_arch_describe(archs, held, sizeof held);
        snprintf(msg, len,
                 "%s has compute capability %d.%d, and this cuvae holds %s only (rebuild with "
                 "-DCMAKE_CUDA_ARCHITECTURES=%d%d-real)",
                 device, major, minor, held, major, minor);
    }
    return 1;
}
