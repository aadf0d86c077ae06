/* Command-line helpers shared by the subcommands (train_cmd.c, eval_cmd.c, bench/bench_cmd.c):
 * option matching, strict number and enum parsing, and the one-line usage error. */
#ifndef CUVAE_CLI_ARGS_H
#define CUVAE_CLI_ARGS_H

#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Prints "cuvae: CMD: MESSAGE; see 'cuvae CMD --help'" on stderr as one line and returns the
 * usage exit status (CUVAE_EXIT_USAGE). */
int cuvae_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Matches argv[*i] against `name` given as "--name VALUE" or "--name=VALUE". Returns 1 with
 * *value set (and *i advanced past a separate value), 0 when argv[*i] is another option, -1 when
 * the value is missing. */
int cuvae_opt_value(int argc, char **argv, int *i, const char *name, const char **value);

/* An integer in [lo, hi] written in full (no sign games, no trailing text): 0, or -1. */
int cuvae_parse_int(const char *s, long lo, long hi, int *out);

/* "--name N" with N an integer in [lo, hi]: 1 with *out set, 0 when argv[*i] is another option,
 * -1 on a missing or bad value after printing the usage error (*err = its exit status). */
int cuvae_int_option(const char *cmd, int argc, char **argv, int *i, const char *name, long lo,
                     long hi, int *out, int *err);

/* "--name FILE" with a non-empty FILE: as cuvae_int_option. */
int cuvae_file_option(const char *cmd, int argc, char **argv, int *i, const char *name,
                      const char **out, int *err);

/* An unsigned 64-bit integer (decimal, or 0x hexadecimal), no sign: 0, or -1. */
int cuvae_parse_u64(const char *s, uint64_t *out);

/* auto | cpu | cuda: 0, or -1. */
int cuvae_parse_device(const char *s, cuvae_device *out);

/* fp32 | tf32 | bf16: 0, or -1. */
int cuvae_parse_precision(const char *s, cuvae_precision *out);

#ifdef __cplusplus
}
#endif
#endif
