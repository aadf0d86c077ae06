/* The subcommands' shared argument helpers (host/cli/cli_args.h): both option spellings, a missing
 * value, strict integers (no trailing text, bounds inclusive), unsigned 64-bit seeds, the device
 * and precision names, and the one-line usage error with its exit status. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_args.h"
#include "commands.h"
#include "tests_util.h"

static void test_opt_value(void)
{
    char *argv[] = {"x", "--n", "5", "--n=7", "--nope", "--n"};
    int argc = 6, i = 1;
    const char *v = NULL;
    CHECK(cuvae_opt_value(argc, argv, &i, "--n", &v) == 1 && i == 2 && !strcmp(v, "5"));
    i = 3;
    CHECK(cuvae_opt_value(argc, argv, &i, "--n", &v) == 1 && i == 3 && !strcmp(v, "7"));
    i = 4;
    CHECK(cuvae_opt_value(argc, argv, &i, "--n", &v) == 0 && i == 4); /* a longer name */
    i = 5;
    CHECK(cuvae_opt_value(argc, argv, &i, "--n", &v) == -1); /* value missing */
}

static void test_numbers(void)
{
    int x = -1;
    CHECK(cuvae_parse_int("12", 1, 12, &x) == 0 && x == 12);
    CHECK(cuvae_parse_int("13", 1, 12, &x) == -1 && x == 12);
    CHECK(cuvae_parse_int("0", 1, 12, &x) == -1);
    CHECK(cuvae_parse_int("3x", 1, 12, &x) == -1);
    CHECK(cuvae_parse_int("", 1, 12, &x) == -1);
    CHECK(cuvae_parse_int("99999999999999999999", 1, 12, &x) == -1);
    uint64_t u = 0;
    CHECK(cuvae_parse_u64("18446744073709551615", &u) == 0 && u == UINT64_MAX);
    CHECK(cuvae_parse_u64("0x10", &u) == 0 && u == 16);
    CHECK(cuvae_parse_u64("-1", &u) == -1);
    CHECK(cuvae_parse_u64("18446744073709551616", &u) == -1);
    CHECK(cuvae_parse_u64("", &u) == -1);
}

static void test_names(void)
{
    cuvae_device d = CUVAE_DEV_AUTO;
    CHECK(cuvae_parse_device("cuda", &d) == 0 && d == CUVAE_DEV_CUDA);
    CHECK(cuvae_parse_device("cpu", &d) == 0 && d == CUVAE_DEV_CPU);
    CHECK(cuvae_parse_device("gpu", &d) == -1 && d == CUVAE_DEV_CPU);
    cuvae_precision p = CUVAE_PREC_FP32;
    CHECK(cuvae_parse_precision("bf16", &p) == 0 && p == CUVAE_PREC_BF16);
    CHECK(cuvae_parse_precision("tf32", &p) == 0 && p == CUVAE_PREC_TF32);
    CHECK(cuvae_parse_precision("fp16", &p) == -1 && p == CUVAE_PREC_TF32);
}

/* cuvae_int_option's error goes to stderr: capture it through a temporary file. */
static void test_int_option(void)
{
    char *argv[] = {"x", "--steps", "0", "--steps=40", "--other"};
    int argc = 5, i = 1, steps = 0, err = 0;
    char dir[256], path[300], text[512] = "";
    if (cuvae_test_tmpdir(dir, sizeof dir, "cli-args")) {
        CHECK(!"temporary directory");
        return;
    }
    snprintf(path, sizeof path, "%s/err.txt", dir);
    fflush(stderr);
    int saved = dup(fileno(stderr));
    CHECK(freopen(path, "w", stderr) != NULL);
    int r = cuvae_int_option("bench", argc, argv, &i, "--steps", 1, 100, &steps, &err);
    fflush(stderr);
    dup2(saved, fileno(stderr));
    close(saved);
    CHECK(r == -1 && err == CUVAE_EXIT_USAGE && steps == 0);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    CHECK(!strcmp(text, "cuvae: bench: --steps: expected an integer in [1, 100], got '0'; see "
                        "'cuvae bench --help'\n"));
    i = 3;
    CHECK(cuvae_int_option("bench", argc, argv, &i, "--steps", 1, 100, &steps, &err) == 1 &&
          steps == 40);
    i = 4;
    CHECK(cuvae_int_option("bench", argc, argv, &i, "--steps", 1, 100, &steps, &err) == 0);
    remove(path);
    remove(dir);
}

int main(void)
{
    test_opt_value();
    test_numbers();
    test_names();
    test_int_option();
    return cuvae_test_finish("test_cli_args");
}
