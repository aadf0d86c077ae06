/* Shared test helpers: checks that count failures, tolerance comparison with the project's
 * tolerances (written once per precision), temporary directories and small generated data. */
#ifndef CUVAE_TESTS_UTIL_H
#define CUVAE_TESTS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Tolerances, once per precision: |a - ref| <= atol + rtol * |ref|. */
#define CUVAE_FP32_RTOL 1e-5
#define CUVAE_FP32_ATOL 1e-6
#define CUVAE_TF32_RTOL 5e-3
#define CUVAE_TF32_ATOL 5e-4
#define CUVAE_BF16_RTOL 3e-2
#define CUVAE_BF16_ATOL 3e-3

/* Exit status ctest reads as "skipped". */
#define CUVAE_TEST_SKIP 77

extern int cuvae_test_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            cuvae_test_failures++;                                                                 \
        }                                                                                          \
    } while (0)

/* A setup step that must hold (the status `st` says why it did not): prints and exits 1. */
#define REQUIRE_ST(cond, st)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #cond, (st).msg);        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Checks that st->msg contains `needle` (a failed check prints both). */
#define CHECK_MSG(msg, needle) cuvae_check_msg(__FILE__, __LINE__, (msg), (needle))
void cuvae_check_msg(const char *file, int line, const char *msg, const char *needle);

/* Compares n values: every one finite and within atol + rtol*|ref|. Prints the worst offender and
 * returns the number of failures (also added to cuvae_test_failures). */
int cuvae_check_close(const char *what, const float *got, const float *ref, size_t n, double rtol,
                      double atol);

/* One entry of a generic op test program (op_table.h): run(ctx) makes the op's checks, counting
 * failures in cuvae_test_failures; NULL when the program has nothing to check for the op. */
typedef struct {
    const char *op;
    void (*run)(void *ctx);
} cuvae_op_test;

/* Runs the entries, or only those named as arguments (`program OP...`), and reports each op by
 * name: "ok", "n check(s) failed" or what it skips. Returns 0, or -1 when an argument names no op
 * of the table (counted as a failure). */
int cuvae_run_op_tests(const char *suite, const cuvae_op_test *tests, size_t n, void *ctx, int argc,
                       char **argv);

/* Ends a test: prints "<name>: ok" or the failure count; returns the exit status. */
int cuvae_test_finish(const char *name);

/* A fresh directory under $TMPDIR (or /tmp); path is written to buf. */
int cuvae_test_tmpdir(char *buf, size_t len, const char *tag);

/* Removes dir and the files directly in it (what a test made in its cuvae_test_tmpdir). */
void cuvae_test_remove_dir(const char *dir);

/* Writes `content` to path; returns 0 on success. */
int cuvae_test_write_file(const char *path, const void *content, size_t len);

/* Small synthetic image data with structure a VAE can learn: n images of rows x cols bytes made of
 * a few blurred strokes whose position depends on the label (label = i % 10). */
void cuvae_test_make_images(uint8_t *pixels, uint8_t *labels, int n, int rows, int cols,
                            uint64_t seed);

/* A .npy header (version 1, or 2 when v2) holding the dict text `dict`, padded to 64 bytes as
 * NumPy writes it, into out. Returns its length (the array's bytes follow it). */
size_t cuvae_test_npy_header(uint8_t *out, const char *dict, int v2);

/* Little-endian 16- and 32-bit fields of zip and other binary formats. */
void cuvae_test_put16(uint8_t *p, unsigned v);
void cuvae_test_put32(uint8_t *p, uint32_t v);

/* A zip archive as NumPy's savez writes it (no data descriptors, no extra fields) of n members
 * (at most CUVAE_TEST_ZIP_MAX): names[i] holding bodies[i][0..lens[i]), deflated when method is 8,
 * else stored and labelled with `method` (an unsupported one for the refusal tests); `flags` are
 * the central directory's general-purpose flags. Returns the archive's length; `out` must hold
 * the members, their headers and the directory. */
#define CUVAE_TEST_ZIP_MAX 8
size_t cuvae_test_zip(uint8_t *out, int n, const char *const *names, const uint8_t *const *bodies,
                      const size_t *lens, unsigned method, unsigned flags);

#endif
