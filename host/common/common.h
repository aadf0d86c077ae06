/* Status reporting shared by every host module: library code fills a cuvae_status and returns
 * non-zero; only main() decides to print and exit. */
#ifndef CUVAE_COMMON_H
#define CUVAE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char msg[1024]; /* one line, no trailing newline: "what: where: expected" */
} cuvae_status;

/* Formats the message into st (when st is not NULL) and returns -1, so callers can write
 * `return cuvae_fail(st, "...", ...);`. */
int cuvae_fail(cuvae_status *st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefixes an existing message: "prefix: old message". Returns -1. */
int cuvae_fail_prefix(cuvae_status *st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Allocation helpers that fail with a message naming what was being allocated. */
void *cuvae_malloc(size_t bytes, const char *what, cuvae_status *st);
void *cuvae_calloc(size_t count, size_t size, const char *what, cuvae_status *st);

/* Monotonic wall clock in seconds. */
double cuvae_now(void);

/* 1 when the n bytes at s are valid UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF), else 0. */
int cuvae_utf8_valid(const char *s, size_t n);

/* Copies s into out (len bytes, always terminated) with control characters and bytes that are
 * not UTF-8 written as \xNN, so a message that quotes user text stays one printable line. */
void cuvae_escape(const char *s, char *out, size_t len);

#ifdef __cplusplus
}
#endif
#endif
