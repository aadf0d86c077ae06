/* TensorBoard event files (see tb_events.h): CRC-32C, the protobuf encoding of the few Event
 * messages cuvae writes, TFRecord framing, and the append-only writer. */
#include "tb_events.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TB_FILE_PREFIX "events.out.tfevents."
#define TB_MAX_PNG (64u << 20) /* bytes; a larger image file is not put in the events */

uint32_t cuvae_crc32c(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t cuvae_crc32c_masked(const void *data, size_t len)
{
    uint32_t crc = cuvae_crc32c(0, data, len);
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* --- protobuf wire format ------------------------------------------------------------------ */

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_BYTES = 2, WIRE_FIXED32 = 5 };

void cuvae_pb_free(cuvae_pb_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void put(cuvae_pb_buf *b, const void *data, size_t len)
{
    if (b->oom) return;
    if (len > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < len) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void put_varint(cuvae_pb_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) tmp[n] |= 0x80;
        n++;
    } while (v);
    put(b, tmp, n);
}

static void put_key(cuvae_pb_buf *b, unsigned field, unsigned wire)
{
    put_varint(b, (uint64_t)field << 3 | wire);
}

static void put_le(cuvae_pb_buf *b, uint64_t v, int bytes)
{
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    put(b, tmp, (size_t)bytes);
}

static void put_double(cuvae_pb_buf *b, unsigned field, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(b, field, WIRE_FIXED64);
    put_le(b, bits, 8);
}

static void put_float(cuvae_pb_buf *b, unsigned field, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(b, field, WIRE_FIXED32);
    put_le(b, bits, 4);
}

/* int64 and int32 fields are varints of the two's complement (negatives take 10 bytes). */
static void put_int(cuvae_pb_buf *b, unsigned field, int64_t v)
{
    put_key(b, field, WIRE_VARINT);
    put_varint(b, (uint64_t)v);
}

static void put_bytes(cuvae_pb_buf *b, unsigned field, const void *data, size_t len)
{
    put_key(b, field, WIRE_BYTES);
    put_varint(b, len);
    put(b, data, len);
}

/* A nested message: its bytes, then freed. */
static void put_message(cuvae_pb_buf *b, unsigned field, cuvae_pb_buf *inner)
{
    if (inner->oom) b->oom = 1;
    put_bytes(b, field, inner->p, inner->len);
    cuvae_pb_free(inner);
}

/* Event fields. */
enum { EV_WALL_TIME = 1, EV_STEP = 2, EV_FILE_VERSION = 3, EV_SUMMARY = 5, EV_SESSION_LOG = 7 };
/* Summary.value, Summary.Value fields, Summary.Image fields, SessionLog fields. */
enum { SUM_VALUE = 1 };
enum { VAL_TAG = 1, VAL_SIMPLE = 2, VAL_IMAGE = 4 };
enum { IMG_HEIGHT = 1, IMG_WIDTH = 2, IMG_COLORSPACE = 3, IMG_ENCODED = 4 };
enum { SLOG_STATUS = 1, SLOG_START = 1 };

static void event_head(cuvae_pb_buf *out, double wall_time, int64_t step)
{
    put_double(out, EV_WALL_TIME, wall_time);
    if (step != 0) put_int(out, EV_STEP, step); /* proto3: a zero is not written */
}

void cuvae_tb_encode_file_version(cuvae_pb_buf *out, double wall_time)
{
    static const char version[] = "brain.Event:2";
    event_head(out, wall_time, 0);
    put_bytes(out, EV_FILE_VERSION, version, sizeof version - 1);
}

void cuvae_tb_encode_session_start(cuvae_pb_buf *out, double wall_time, int64_t step)
{
    cuvae_pb_buf log = {0};
    put_int(&log, SLOG_STATUS, SLOG_START);
    event_head(out, wall_time, step);
    put_message(out, EV_SESSION_LOG, &log);
}

void cuvae_tb_encode_scalars(cuvae_pb_buf *out, double wall_time, int64_t step, int n,
                             const char *const *tags, const float *values)
{
    cuvae_pb_buf summary = {0};
    for (int i = 0; i < n; i++) {
        cuvae_pb_buf value = {0};
        put_bytes(&value, VAL_TAG, tags[i], strlen(tags[i]));
        put_float(&value, VAL_SIMPLE, values[i]);
        put_message(&summary, SUM_VALUE, &value);
    }
    event_head(out, wall_time, step);
    put_message(out, EV_SUMMARY, &summary);
}

void cuvae_tb_encode_image(cuvae_pb_buf *out, double wall_time, int64_t step, const char *tag,
                           int height, int width, int colorspace, const uint8_t *png, size_t len)
{
    cuvae_pb_buf image = {0}, value = {0}, summary = {0};
    put_int(&image, IMG_HEIGHT, height);
    put_int(&image, IMG_WIDTH, width);
    put_int(&image, IMG_COLORSPACE, colorspace);
    put_bytes(&image, IMG_ENCODED, png, len);
    put_bytes(&value, VAL_TAG, tag, strlen(tag));
    put_message(&value, VAL_IMAGE, &image);
    put_message(&summary, SUM_VALUE, &value);
    event_head(out, wall_time, step);
    put_message(out, EV_SUMMARY, &summary);
}

void cuvae_tfrecord_frame(cuvae_pb_buf *out, const uint8_t *data, size_t len)
{
    uint8_t head[8];
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)((uint64_t)len >> (8 * i));
    put(out, head, 8);
    put_le(out, cuvae_crc32c_masked(head, 8), 4);
    put(out, data, len);
    put_le(out, cuvae_crc32c_masked(data, len), 4);
}

/* --- the writer ---------------------------------------------------------------------------- */

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void turn_off(cuvae_tb_events *w, const char *what, int err)
{
    if (w->fd < 0) return;
    /* The file ends at its last complete record again: a reader never meets a torn one. */
    int cut = ftruncate(w->fd, (off_t)w->good);
    close(w->fd);
    w->fd = -1;
    if (w->warn) {
        char msg[sizeof w->path + 256];
        snprintf(msg, sizeof msg,
                 "%s: %s: %s; TensorBoard events are off for the rest of the run%s "
                 "(metrics.jsonl has every record)",
                 w->path, what, strerror(err), cut ? " (and the file could not be cut back)" : "");
        w->warn(w->warn_ctx, msg);
    }
}

/* Frames and appends one encoded Event. 0, or -1 after turning the writer off (errno kept). */
static int append_event(cuvae_tb_events *w, cuvae_pb_buf *ev)
{
    if (w->fd < 0) {
        cuvae_pb_free(ev);
        return -1;
    }
    cuvae_pb_buf rec = {0};
    if (!ev->oom) cuvae_tfrecord_frame(&rec, ev->p, ev->len);
    int oom = ev->oom || rec.oom;
    cuvae_pb_free(ev);
    if (oom) {
        cuvae_pb_free(&rec);
        turn_off(w, "encoding an event", ENOMEM);
        errno = ENOMEM;
        return -1;
    }
    size_t done = 0;
    while (done < rec.len) {
        ssize_t n = write(w->fd, rec.p + done, rec.len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : ENOSPC;
            cuvae_pb_free(&rec);
            turn_off(w, "write failed", err);
            errno = err;
            return -1;
        }
        done += (size_t)n;
    }
    w->good += rec.len;
    cuvae_pb_free(&rec);
    return 0;
}

/* The seconds of the new file's name: now, or later than every events file already in run_dir. */
static long long file_seconds(const char *run_dir)
{
    long long t = (long long)time(NULL);
    DIR *d = opendir(run_dir);
    if (!d) return t;
    const size_t plen = strlen(TB_FILE_PREFIX);
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, TB_FILE_PREFIX, plen) != 0) continue;
        long long s = 0;
        const char *c = e->d_name + plen;
        int digits = 0;
        for (; *c >= '0' && *c <= '9' && digits < 18; c++, digits++) s = s * 10 + (*c - '0');
        if (digits > 0 && s >= t) t = s + 1;
    }
    closedir(d);
    return t;
}

int cuvae_tb_open(cuvae_tb_events *w, const char *run_dir, uint64_t first_step,
                  cuvae_tb_warn_fn warn, void *warn_ctx, cuvae_status *st)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    char host[64];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_'))
            *c = '_'; /* a dot would split the name's fields */
    int n = snprintf(w->path, sizeof w->path, "%s/" TB_FILE_PREFIX "%010lld.%s.%ld.cuvae", run_dir,
                     file_seconds(run_dir), host, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof w->path)
        return cuvae_fail(st, "%s: run directory path too long for an events file", run_dir);
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (w->fd < 0) return cuvae_fail(st, "%s: cannot create: %s", w->path, strerror(errno));
    double now = wall_clock();
    cuvae_pb_buf ev = {0};
    cuvae_tb_encode_file_version(&ev, now);
    if (append_event(w, &ev) == 0) {
        cuvae_tb_encode_session_start(&ev, now, (int64_t)first_step + 1);
        if (append_event(w, &ev) == 0) {
            w->warn = warn;
            w->warn_ctx = warn_ctx;
            return 0;
        }
    }
    return cuvae_fail(st, "%s: write failed: %s", w->path, strerror(errno));
}

int cuvae_tb_active(const cuvae_tb_events *w)
{
    return w->fd >= 0;
}

void cuvae_tb_scalars(cuvae_tb_events *w, int64_t step, int n, const char *const *tags,
                      const double *values)
{
    if (w->fd < 0 || n <= 0) return;
    const char *keep_tags[64];
    float keep[64];
    int k = 0;
    for (int i = 0; i < n && k < 64; i++)
        if (isfinite(values[i]) && isfinite((float)values[i])) {
            keep_tags[k] = tags[i];
            keep[k++] = (float)values[i];
        }
    if (k == 0) return;
    cuvae_pb_buf ev = {0};
    cuvae_tb_encode_scalars(&ev, wall_clock(), step, k, keep_tags, keep);
    append_event(w, &ev);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads the whole PNG into *data; width, height and colorspace from its IHDR. */
static int read_png(const char *path, uint8_t **data, size_t *len, int *width, int *height,
                    int *colorspace, char *why, size_t why_len)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_len, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat sb;
    uint8_t *buf = NULL;
    int rc = -1;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 33 ||
        (uint64_t)sb.st_size > TB_MAX_PNG) {
        snprintf(why, why_len, "not a regular file of 33 bytes to %u MiB", TB_MAX_PNG >> 20);
        goto done;
    }
    buf = malloc((size_t)sb.st_size);
    if (!buf) {
        snprintf(why, why_len, "out of memory");
        goto done;
    }
    if (fread(buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
        snprintf(why, why_len, "read failed");
        goto done;
    }
    /* Signature, then IHDR: length 13, "IHDR", width, height, bit depth, colour type. */
    if (memcmp(buf, sig, 8) != 0 || be32(buf + 8) != 13 || memcmp(buf + 12, "IHDR", 4) != 0 ||
        buf[24] != 8 || (buf[25] != 0 && buf[25] != 2) || be32(buf + 16) == 0 ||
        be32(buf + 16) > 0x7fffffffu || be32(buf + 20) == 0 || be32(buf + 20) > 0x7fffffffu) {
        snprintf(why, why_len, "not an 8-bit grey or RGB PNG");
        goto done;
    }
    *width = (int)be32(buf + 16);
    *height = (int)be32(buf + 20);
    *colorspace = buf[25] == 2 ? 3 : 1;
    *data = buf;
    *len = (size_t)sb.st_size;
    buf = NULL;
    rc = 0;
done:
    free(buf);
    fclose(f);
    return rc;
}

void cuvae_tb_image_file(cuvae_tb_events *w, int64_t step, const char *tag, const char *png_path)
{
    if (w->fd < 0) return;
    uint8_t *png = NULL;
    size_t len = 0;
    int width = 0, height = 0, colorspace = 0;
    char why[128];
    if (read_png(png_path, &png, &len, &width, &height, &colorspace, why, sizeof why)) {
        if (w->warn) {
            char msg[CUVAE_PATH_LEN + 256];
            snprintf(msg, sizeof msg, "%s: %s; not put in the TensorBoard events", png_path, why);
            w->warn(w->warn_ctx, msg);
        }
        return;
    }
    cuvae_pb_buf ev = {0};
    cuvae_tb_encode_image(&ev, wall_clock(), step, tag, height, width, colorspace, png, len);
    free(png);
    append_event(w, &ev);
}

void cuvae_tb_close(cuvae_tb_events *w)
{
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
}
