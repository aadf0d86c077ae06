/* Status messages, checked allocation and the wall clock. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cuvae_fail(cuvae_status *st, const char *fmt, ...)
{
    if (st) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->msg, sizeof st->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int cuvae_fail_prefix(cuvae_status *st, const char *fmt, ...)
{
    if (st) {
        char prefix[512], old[sizeof st->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, st->msg, sizeof old);
        snprintf(st->msg, sizeof st->msg, "%.500s: %.500s", prefix, old);
    }
    return -1;
}

void *cuvae_malloc(size_t bytes, const char *what, cuvae_status *st)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) cuvae_fail(st, "out of memory allocating %s (%zu bytes)", what, bytes);
    return p;
}

void *cuvae_calloc(size_t count, size_t size, const char *what, cuvae_status *st)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) cuvae_fail(st, "out of memory allocating %s (%zu x %zu bytes)", what, count, size);
    return p;
}

double cuvae_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
