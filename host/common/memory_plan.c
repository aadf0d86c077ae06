/* The memory estimate (see memory_plan.h): parts, totals, what the host has, and the refusal. */
#include "memory_plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

uint64_t cuvae_mem_mul(uint64_t a, uint64_t b)
{
    if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

uint64_t cuvae_mem_add_bytes(uint64_t a, uint64_t b)
{
    return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

void cuvae_mem_add(cuvae_mem_plan *p, const char *name, uint64_t bytes)
{
    if (bytes == 0) return;
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->part[i].name, name) == 0) {
            p->part[i].bytes = cuvae_mem_add_bytes(p->part[i].bytes, bytes);
            return;
        }
    /* The table is sized for every part cuvae has; a further one joins the last. */
    if (p->n == CUVAE_MEM_MAX_PARTS) {
        p->part[p->n - 1].bytes = cuvae_mem_add_bytes(p->part[p->n - 1].bytes, bytes);
        return;
    }
    p->part[p->n].name = name;
    p->part[p->n].bytes = bytes;
    p->n++;
}

void cuvae_mem_merge(cuvae_mem_plan *to, const cuvae_mem_plan *from)
{
    for (int i = 0; from && i < from->n; i++)
        cuvae_mem_add(to, from->part[i].name, from->part[i].bytes);
}

uint64_t cuvae_mem_total(const cuvae_mem_plan *p)
{
    uint64_t t = 0;
    for (int i = 0; i < p->n; i++) t = cuvae_mem_add_bytes(t, p->part[i].bytes);
    return t;
}

/* MemAvailable from /proc/meminfo in bytes; 0 when it cannot be read. */
static uint64_t proc_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
    fclose(f);
    return cuvae_mem_mul(kib, 1024);
}

/* "123", "64M", "16G": bytes, powers of 1024. */
static int parse_size(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    int shift = 0;
    switch (*end) {
    case '\0':
        break;
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    case 'T':
    case 't':
        shift = 40;
        break;
    default:
        return -1;
    }
    if (*end && end[1] != '\0') return -1;
    *out = cuvae_mem_mul(v, (uint64_t)1 << shift);
    return 0;
}

static void lower(uint64_t *bytes, uint64_t v, const char *what, char *source, size_t len)
{
    if (v < *bytes) {
        *bytes = v;
        snprintf(source, len, "%s", what);
    }
}

int cuvae_mem_host_available(uint64_t *bytes, char *source, size_t source_len, cuvae_status *st)
{
    *bytes = UINT64_MAX;
    snprintf(source, source_len, "unknown");
    uint64_t avail = proc_mem_available();
    if (avail) {
        lower(bytes, avail, "MemAvailable", source, source_len);
    } else {
        long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0)
            lower(bytes, cuvae_mem_mul((uint64_t)pages, (uint64_t)page), "free pages", source,
                  source_len);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        lower(bytes, (uint64_t)rl.rlim_cur, "RLIMIT_AS (ulimit -v)", source, source_len);
    if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        lower(bytes, (uint64_t)rl.rlim_cur, "RLIMIT_DATA (ulimit -d)", source, source_len);
    const char *env = getenv("CUVAE_MEMORY_LIMIT");
    if (env && *env) {
        uint64_t cap;
        if (parse_size(env, &cap)) {
            char shown[96];
            cuvae_escape(env, shown, sizeof shown);
            return cuvae_fail(st,
                              "CUVAE_MEMORY_LIMIT: '%s' is not a size (bytes, or a number with "
                              "K, M, G or T)",
                              shown);
        }
        lower(bytes, cap, "CUVAE_MEMORY_LIMIT", source, source_len);
    }
    return 0;
}

/* "1.50 GiB" or "12.3 MiB": sizes readable whatever their scale. */
typedef struct {
    char s[32];
} size_text;

static size_text show_size(uint64_t b)
{
    size_text t;
    if (b >= ((uint64_t)1 << 30))
        snprintf(t.s, sizeof t.s, "%.2f GiB", (double)b / 1073741824.0);
    else
        snprintf(t.s, sizeof t.s, "%.1f MiB", (double)b / 1048576.0);
    return t;
}

int cuvae_mem_check(const cuvae_mem_plan *p, uint64_t available, const char *where,
                    const char *source, const char *advice, cuvae_status *st)
{
    uint64_t total = cuvae_mem_total(p);
    if (total <= available) return 0;
    char parts[640];
    size_t at = 0;
    parts[0] = '\0';
    for (int i = 0; i < p->n && at < sizeof parts; i++) {
        int k = snprintf(parts + at, sizeof parts - at, "%s%s %s", i ? ", " : "", p->part[i].name,
                         show_size(p->part[i].bytes).s);
        if (k < 0) break;
        at += (size_t)k;
    }
    return cuvae_fail(st, "memory: the run needs about %s (%s) but %s has %s available (%s); %s",
                      show_size(total).s, parts, where, show_size(available).s, source, advice);
}

int cuvae_mem_check_host(const cuvae_mem_plan *p, const char *advice, cuvae_status *st)
{
    uint64_t avail;
    char source[64];
    if (cuvae_mem_host_available(&avail, source, sizeof source, st)) return -1;
    return cuvae_mem_check(p, avail, "this machine", source, advice, st);
}

void cuvae_mem_add_uploads(cuvae_mem_plan *p, const int64_t *rows, int sets, uint64_t row_bytes)
{
    uint64_t data = 0;
    for (int s = 0; s < sets; s++)
        if (rows[s] > 0)
            data = cuvae_mem_add_bytes(data, cuvae_mem_mul((uint64_t)rows[s], row_bytes));
    cuvae_mem_add(p, "uploaded data", data);
}

int cuvae_mem_should_stream(uint64_t others, uint64_t set_bytes, uint64_t available)
{
    uint64_t margin = available / 100 * CUVAE_STREAM_MARGIN_PCT;
    if (margin < CUVAE_STREAM_MARGIN_MIN) margin = CUVAE_STREAM_MARGIN_MIN;
    uint64_t need = cuvae_mem_add_bytes(cuvae_mem_add_bytes(others, set_bytes), margin);
    return need > available;
}
