/* Command-line helpers shared by the subcommands (see cli_args.h). */
#include "cli_args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

int cuvae_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cuvae: %s: %s; see 'cuvae %s --help'\n", cmd, msg, cmd);
    return CUVAE_EXIT_USAGE;
}

int cuvae_opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t len = strlen(name);
    if (strncmp(a, name, len) != 0) return 0;
    if (a[len] == '=') {
        *value = a + len + 1;
        return 1;
    }
    if (a[len] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *value = argv[++*i];
    return 1;
}

int cuvae_parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int cuvae_int_option(const char *cmd, int argc, char **argv, int *i, const char *name, long lo,
                     long hi, int *out, int *err)
{
    const char *v = NULL;
    int r = cuvae_opt_value(argc, argv, i, name, &v);
    if (r == 0) return 0;
    if (r > 0 && cuvae_parse_int(v, lo, hi, out) == 0) return 1;
    *err = cuvae_usage_error(cmd, "%s: expected an integer in [%ld, %ld], got '%s'", name, lo, hi,
                             r < 0 ? "" : v);
    return -1;
}

int cuvae_file_option(const char *cmd, int argc, char **argv, int *i, const char *name,
                      const char **out, int *err)
{
    const char *v = NULL;
    int r = cuvae_opt_value(argc, argv, i, name, &v);
    if (r == 0) return 0;
    if (r < 0 || *v == '\0') {
        *err = cuvae_usage_error(cmd, "%s: expected a file name", name);
        return -1;
    }
    *out = v;
    return 1;
}

int cuvae_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (*s == '-' || *s == '+' || *s == '\0') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end != '\0') return -1;
    *out = (uint64_t)v;
    return 0;
}

int cuvae_parse_device(const char *s, cuvae_device *out)
{
    static const struct {
        const char *name;
        cuvae_device dev;
    } devs[] = {{"auto", CUVAE_DEV_AUTO}, {"cpu", CUVAE_DEV_CPU}, {"cuda", CUVAE_DEV_CUDA}};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
        if (!strcmp(s, devs[i].name)) {
            *out = devs[i].dev;
            return 0;
        }
    }
    return -1;
}

int cuvae_parse_precision(const char *s, cuvae_precision *out)
{
    for (int p = CUVAE_PREC_FP32; p <= CUVAE_PREC_BF16; p++) {
        if (!strcmp(s, cuvae_precision_name((cuvae_precision)p))) {
            *out = (cuvae_precision)p;
            return 0;
        }
    }
    return -1;
}
