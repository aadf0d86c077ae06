/* TensorBoard events (host/train/tb_events.c): the CRC-32C against the published check values
 * (RFC 3720 B.4 and "123456789"), TFRecord's mask against values of TensorBoard's own
 * masked_crc32c, the encoder's bytes against what the protobuf library serialises for the same
 * Event messages (hex captured from tensorboard.compat.proto's event_pb2), and the writer: a file
 * of whole records with good CRCs, and a write that fails (a file-size limit) cut back to the last
 * complete record, reported once, later writes no-ops. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "png.h"
#include "tb_events.h"
#include "tests_util.h"

static void check_bytes(const char *what, const cuvae_pb_buf *b, const char *hex)
{
    size_t n = strlen(hex) / 2;
    int same = !b->oom && b->len == n;
    for (size_t i = 0; same && i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        same = b->p[i] == v;
    }
    if (!same) {
        fprintf(stderr, "%s: got %zu bytes:", what, b->len);
        for (size_t i = 0; i < b->len; i++) fprintf(stderr, "%02x", b->p[i]);
        fprintf(stderr, "\n  expected %s\n", hex);
        cuvae_test_failures++;
    }
}

static void test_crc32c(void)
{
    uint8_t zeros[32] = {0}, ones[32], up[32], down[32];
    for (int i = 0; i < 32; i++) {
        ones[i] = 0xff;
        up[i] = (uint8_t)i;
        down[i] = (uint8_t)(31 - i);
    }
    CHECK(cuvae_crc32c(0, "123456789", 9) == 0xe3069283u);
    CHECK(cuvae_crc32c(0, zeros, 32) == 0x8a9136aau);
    CHECK(cuvae_crc32c(0, ones, 32) == 0x62a8ab43u);
    CHECK(cuvae_crc32c(0, up, 32) == 0x46dd794eu);
    CHECK(cuvae_crc32c(0, down, 32) == 0x113fdb5cu);
    CHECK(cuvae_crc32c(0, "", 0) == 0);
    /* Continuing a CRC over a split input. */
    CHECK(cuvae_crc32c(cuvae_crc32c(0, "1234", 4), "56789", 5) == 0xe3069283u);
    /* Masked, as TensorBoard's masked_crc32c computes them. */
    CHECK(cuvae_crc32c_masked("123456789", 9) == 0xc78ab0e5u);
    CHECK(cuvae_crc32c_masked(zeros, 32) == 0x0fd7fffau);
    CHECK(cuvae_crc32c_masked(up, 32) == 0x951f7892u);
    CHECK(cuvae_crc32c_masked("", 0) == 0xa282ead8u);
}

static void test_encoder(void)
{
    cuvae_pb_buf b = {0};
    const char *tags[1] = {"a"};
    const float values[1] = {2.0f};
    cuvae_tb_encode_scalars(&b, 1.5, 3, 1, tags, values);
    check_bytes("scalar event", &b, "09000000000000f83f10032a0a0a080a01611500000040");
    cuvae_pb_free(&b);

    cuvae_tb_encode_file_version(&b, 1.5);
    check_bytes("file_version event", &b, "09000000000000f83f1a0d627261696e2e4576656e743a32");
    cuvae_pb_free(&b);

    cuvae_tb_encode_session_start(&b, 1.5, 300); /* a two-byte varint step */
    check_bytes("SessionLog START event", &b, "09000000000000f83f10ac023a020801");
    cuvae_pb_free(&b);

    cuvae_tb_encode_image(&b, 1.5, 7, "im", 2, 3, 1, (const uint8_t *)"PNG", 3);
    check_bytes("image event", &b,
                "09000000000000f83f10072a130a110a02696d220b0802100318012203504e47");

    /* The record around it: length 32 (LE), masked CRC-32C of the length, data, masked CRC. */
    cuvae_pb_buf rec = {0};
    cuvae_tfrecord_frame(&rec, b.p, b.len);
    CHECK(rec.len == 8 + 4 + b.len + 4);
    if (rec.len == 8 + 4 + b.len + 4) {
        CHECK(rec.p[0] == b.len && rec.p[1] == 0 && rec.p[7] == 0);
        uint32_t c1 = cuvae_crc32c_masked(rec.p, 8), c2 = cuvae_crc32c_masked(b.p, b.len);
        CHECK(memcmp(rec.p + 8,
                     &(uint8_t[4]){(uint8_t)c1, (uint8_t)(c1 >> 8), (uint8_t)(c1 >> 16),
                                   (uint8_t)(c1 >> 24)},
                     4) == 0);
        CHECK(memcmp(rec.p + 12, b.p, b.len) == 0);
        CHECK(memcmp(rec.p + 12 + b.len,
                     &(uint8_t[4]){(uint8_t)c2, (uint8_t)(c2 >> 8), (uint8_t)(c2 >> 16),
                                   (uint8_t)(c2 >> 24)},
                     4) == 0);
    }
    cuvae_pb_free(&rec);
    cuvae_pb_free(&b);
}

/* Walks the records of a file: counts them, checks both CRCs; -1 on a bad or torn record. */
static int count_records(const char *path, long *bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int n = 0;
    uint8_t head[12];
    size_t got;
    long total = 0;
    while ((got = fread(head, 1, 12, f)) == 12) {
        uint64_t len = 0;
        for (int i = 0; i < 8; i++) len |= (uint64_t)head[i] << (8 * i);
        uint32_t crc = (uint32_t)head[8] | (uint32_t)head[9] << 8 | (uint32_t)head[10] << 16 |
                       (uint32_t)head[11] << 24;
        if (crc != cuvae_crc32c_masked(head, 8) || len > (1u << 26)) break;
        uint8_t *data = malloc(len + 4);
        if (!data || fread(data, 1, len + 4, f) != len + 4) {
            free(data);
            break;
        }
        crc = (uint32_t)data[len] | (uint32_t)data[len + 1] << 8 | (uint32_t)data[len + 2] << 16 |
              (uint32_t)data[len + 3] << 24;
        int ok = crc == cuvae_crc32c_masked(data, len);
        free(data);
        if (!ok) break;
        n++;
        total += (long)(12 + len + 4);
        got = 0;
    }
    int clean = got == 0 && feof(f);
    fclose(f);
    *bytes = total;
    return clean ? n : -1;
}

static int n_warnings;
static char last_warning[1024];

static void on_warn(void *ctx, const char *msg)
{
    (void)ctx;
    n_warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", msg);
}

static void test_writer(void)
{
    char dir[512], png[600];
    if (cuvae_test_tmpdir(dir, sizeof dir, "tb_events")) {
        CHECK(0);
        return;
    }
    cuvae_status st;
    cuvae_tb_events w;
    CHECK(cuvae_tb_open(&w, dir, 12, on_warn, NULL, &st) == 0);
    CHECK(cuvae_tb_active(&w));
    CHECK(strstr(w.path, "/events.out.tfevents.") != NULL);
    const char *tags[3] = {"step/loss", "step/kl", "step/nan"};
    const double values[3] = {98.5, 3.25, NAN};
    cuvae_tb_scalars(&w, 13, 3, tags, values);

    /* An image file: a 20 x 30 grey PNG. */
    uint8_t pixels[20 * 30];
    for (int i = 0; i < 600; i++) pixels[i] = (uint8_t)(i * 7);
    snprintf(png, sizeof png, "%s/grid.png", dir);
    CHECK(cuvae_png_write(png, pixels, 30, 20, 1, &st) == 0);
    cuvae_tb_image_file(&w, 13, "images/recon", png);
    CHECK(n_warnings == 0);
    long bytes = 0;
    CHECK(count_records(w.path, &bytes) == 4); /* version, START, scalars, image */
    CHECK((uint64_t)bytes == w.good);

    /* Not a PNG: warned about and skipped, the writer stays on. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.png", dir);
    FILE *f = fopen(bad, "wb");
    CHECK(f && fputs("this is not a PNG file, but long enough to be read", f) >= 0);
    if (f) fclose(f);
    cuvae_tb_image_file(&w, 14, "images/recon", bad);
    CHECK(n_warnings == 1 && strstr(last_warning, "not an 8-bit grey or RGB PNG"));
    CHECK(cuvae_tb_active(&w));

    /* A write past a file-size limit (EFBIG; SIGXFSZ ignored as cuvae does): the file is cut
     * back to its complete records, one warning names the file, later writes do nothing. */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {.rlim_cur = (rlim_t)w.good + 40, .rlim_max = old.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    cuvae_tb_image_file(&w, 15, "images/recon", png); /* ~100 bytes: does not fit */
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CHECK(n_warnings == 2);
    CHECK(strstr(last_warning, w.path) != NULL && strstr(last_warning, "write failed") &&
          strstr(last_warning, "File too large"));
    CHECK(!cuvae_tb_active(&w));
    cuvae_tb_scalars(&w, 16, 1, tags, values);
    CHECK(n_warnings == 2);
    CHECK(count_records(w.path, &bytes) == 4);
    struct stat sb;
    CHECK(stat(w.path, &sb) == 0 && sb.st_size == bytes);
    char first[sizeof w.path];
    snprintf(first, sizeof first, "%s", w.path);
    cuvae_tb_close(&w);

    /* A second process start: a new file whose name sorts after the first. */
    CHECK(cuvae_tb_open(&w, dir, 12, on_warn, NULL, &st) == 0);
    CHECK(strcmp(w.path, first) > 0);
    CHECK(count_records(w.path, &bytes) == 2);
    cuvae_tb_close(&w);

    /* A run directory that is not there: an error naming the path. */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir", dir);
    CHECK(cuvae_tb_open(&w, missing, 0, on_warn, NULL, &st) != 0);
    CHECK_MSG(st.msg, "no/such/dir/events.out.tfevents.");
    CHECK_MSG(st.msg, "cannot create");
    cuvae_test_remove_dir(dir);
}

int main(void)
{
    test_crc32c();
    test_encoder();
    test_writer();
    return cuvae_test_finish("test_tb_events");
}
