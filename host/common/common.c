/* Status messages, checked allocation and the wall clock. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdarg.h>
#include <stdint.h>
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

/* Length of the UTF-8 sequence at s (at most n bytes), 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        cp = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        cp = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int cuvae_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

void cuvae_escape(const char *s, char *out, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t at = 0, n = strlen(s);
    if (len == 0) return;
    for (size_t i = 0; i < n;) {
        size_t k = p[i] < 0x20 || p[i] == 0x7F ? 0 : utf8_seq(p + i, n - i);
        if (k == 0) {
            if (at + 5 > len) break;
            snprintf(out + at, len - at, "\\x%02X", p[i]);
            at += 4;
            i++;
        } else {
            if (at + k + 1 > len) break;
            memcpy(out + at, p + i, k);
            at += k;
            i += k;
        }
    }
    out[at] = '\0';
}
