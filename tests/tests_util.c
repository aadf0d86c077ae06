/* Shared test helpers (see tests_util.h). */
#include "tests_util.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "philox.h"

int cuvae_test_failures = 0;

void cuvae_check_msg(const char *file, int line, const char *msg, const char *needle)
{
    if (!msg || !strstr(msg, needle)) {
        fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", file, line, msg ? msg : "(null)",
                needle);
        cuvae_test_failures++;
    }
}

int cuvae_check_close(const char *what, const float *got, const float *ref, size_t n, double rtol,
                      double atol)
{
    int bad = 0;
    size_t worst = 0;
    double worst_excess = -1;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i];
        double limit = atol + rtol * fabs(r);
        double err = fabs(g - r);
        int fail = !isfinite(g) || !isfinite(r) || err > limit;
        if (fail) bad++;
        double excess = isfinite(err) ? err - limit : INFINITY;
        if (fail && excess > worst_excess) {
            worst_excess = excess;
            worst = i;
        }
    }
    if (bad) {
        fprintf(stderr,
                "%s: %d of %zu values out of tolerance (rtol %g, atol %g); worst [%zu]: got %.9g, "
                "expected %.9g\n",
                what, bad, n, rtol, atol, worst, (double)got[worst], (double)ref[worst]);
        cuvae_test_failures += bad;
    }
    return bad;
}

int cuvae_run_op_tests(const char *suite, const cuvae_op_test *tests, size_t n, void *ctx, int argc,
                       char **argv)
{
    for (int a = 1; a < argc; a++) {
        size_t i = 0;
        while (i < n && strcmp(tests[i].op, argv[a]) != 0) i++;
        if (i == n) {
            fprintf(stderr, "%s: no op \"%s\" in the table (op_table.h)\n", suite, argv[a]);
            cuvae_test_failures++;
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++) wanted |= strcmp(tests[i].op, argv[a]) == 0;
        if (!wanted) continue;
        if (!tests[i].run) {
            printf("%s: op %s: no backward: parity only\n", suite, tests[i].op);
            continue;
        }
        int before = cuvae_test_failures;
        tests[i].run(ctx);
        int failed = cuvae_test_failures - before;
        if (failed)
            fprintf(stderr, "%s: op %s: %d check(s) failed\n", suite, tests[i].op, failed);
        else
            printf("%s: op %s: ok\n", suite, tests[i].op);
    }
    return 0;
}

int cuvae_test_finish(const char *name)
{
    if (cuvae_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, cuvae_test_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

int cuvae_test_tmpdir(char *buf, size_t len, const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(buf, len, "%s/cuvae-%s-XXXXXX", base, tag);
    return mkdtemp(buf) ? 0 : -1;
}

void cuvae_test_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    char path[1024];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        remove(path);
    }
    closedir(d);
    rmdir(dir);
}

int cuvae_test_write_file(const char *path, const void *content, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(content, 1, len, f);
    int rc = fclose(f);
    return (w == len && rc == 0) ? 0 : -1;
}

void cuvae_test_make_images(uint8_t *pixels, uint8_t *labels, int n, int rows, int cols,
                            uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        int label = i % 10;
        if (labels) labels[i] = (uint8_t)label;
        /* Two strokes: a vertical one at a label-dependent column and a horizontal one at a
         * label-dependent row, each jittered per example. */
        float jitter = cuvae_u32_to_uniform(cuvae_philox_word(seed, 99, (uint64_t)i, 0)) - 0.5f;
        float cx = (0.2f + 0.06f * (float)label + 0.05f * jitter) * (float)cols;
        float cy = (0.8f - 0.06f * (float)label - 0.05f * jitter) * (float)rows;
        for (int y = 0; y < rows; y++) {
            for (int x = 0; x < cols; x++) {
                float dx = ((float)x - cx) / (0.08f * (float)cols);
                float dy = ((float)y - cy) / (0.08f * (float)rows);
                float v = expf(-dx * dx) + ((label & 1) ? expf(-dy * dy) : 0.0f);
                if (v > 1.0f) v = 1.0f;
                pixels[(size_t)i * rows * cols + (size_t)y * cols + x] =
                    (uint8_t)(v * 255.0f + 0.5f);
            }
        }
    }
}

size_t cuvae_test_npy_header(uint8_t *out, const char *dict, int v2)
{
    size_t pre = v2 ? 12 : 10, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64, hlen = total - pre;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = v2 ? 2 : 1;
    out[7] = 0;
    out[8] = (uint8_t)hlen;
    out[9] = (uint8_t)(hlen >> 8);
    if (v2) out[10] = out[11] = 0;
    memcpy(out + pre, dict, dl);
    memset(out + pre + dl, ' ', hlen - dl - 1);
    out[total - 1] = '\n';
    return total;
}

void cuvae_test_put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void cuvae_test_put32(uint8_t *p, uint32_t v)
{
    cuvae_test_put16(p, v & 0xffff);
    cuvae_test_put16(p + 2, v >> 16);
}

size_t cuvae_test_zip(uint8_t *out, int n, const char *const *names, const uint8_t *const *bodies,
                      const size_t *lens, unsigned method, unsigned flags)
{
    size_t at = 0, offs[CUVAE_TEST_ZIP_MAX], cl[CUVAE_TEST_ZIP_MAX];
    uint32_t crcs[CUVAE_TEST_ZIP_MAX];
    if (n > CUVAE_TEST_ZIP_MAX) abort();
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        offs[i] = at;
        crcs[i] = (uint32_t)crc32(0, bodies[i], (uInt)lens[i]);
        memset(out + at, 0, 30);
        cuvae_test_put32(out + at, 0x04034b50u);
        cuvae_test_put16(out + at + 8, method);
        cuvae_test_put16(out + at + 26, (unsigned)nl);
        memcpy(out + at + 30, names[i], nl);
        at += 30 + nl;
        if (method == 8) {
            z_stream zs;
            memset(&zs, 0, sizeof zs);
            if (deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
            zs.next_in = (Bytef *)bodies[i];
            zs.avail_in = (uInt)lens[i];
            zs.next_out = out + at;
            zs.avail_out = (uInt)deflateBound(&zs, (uLong)lens[i]);
            if (deflate(&zs, Z_FINISH) != Z_STREAM_END) abort();
            cl[i] = zs.total_out;
            deflateEnd(&zs);
        } else {
            memcpy(out + at, bodies[i], lens[i]);
            cl[i] = lens[i];
        }
        cuvae_test_put32(out + offs[i] + 14, crcs[i]);
        cuvae_test_put32(out + offs[i] + 18, (uint32_t)cl[i]);
        cuvae_test_put32(out + offs[i] + 22, (uint32_t)lens[i]);
        at += cl[i];
    }
    size_t cd = at;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        memset(out + at, 0, 46);
        cuvae_test_put32(out + at, 0x02014b50u);
        cuvae_test_put16(out + at + 8, flags);
        cuvae_test_put16(out + at + 10, method);
        cuvae_test_put32(out + at + 16, crcs[i]);
        cuvae_test_put32(out + at + 20, (uint32_t)cl[i]);
        cuvae_test_put32(out + at + 24, (uint32_t)lens[i]);
        cuvae_test_put16(out + at + 28, (unsigned)nl);
        cuvae_test_put32(out + at + 42, (uint32_t)offs[i]);
        memcpy(out + at + 46, names[i], nl);
        at += 46 + nl;
    }
    memset(out + at, 0, 22);
    cuvae_test_put32(out + at, 0x06054b50u);
    cuvae_test_put16(out + at + 8, (unsigned)n);
    cuvae_test_put16(out + at + 10, (unsigned)n);
    cuvae_test_put32(out + at + 12, (uint32_t)(at - cd));
    cuvae_test_put32(out + at + 16, (uint32_t)cd);
    return at + 22;
}
