/* The single file writer (see file_write.h). */
#include "file_write.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every byte to fd, retrying short writes and EINTR; 0, or -1 with errno set. */
static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The directory part of path, for the fsync that makes the rename durable. */
static void parent_dir(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, len, ".");
    else if (slash == path)
        snprintf(dir, len, "/");
    else
        snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

static int write_atomic(const char *path, const void *data, size_t len, cuvae_status *st)
{
    size_t n = strlen(path) + 32;
    char *tmp = cuvae_malloc(n, "a temporary file name", st);
    char *dir = cuvae_malloc(n, "a directory name", st);
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        return -1;
    }
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        rc = cuvae_fail(st, "%s: creating %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    const char *what = NULL;
    if (write_all(fd, data, len) != 0)
        what = "writing";
    else if (fsync(fd) != 0)
        what = "syncing";
    int err = errno;
    if (close(fd) != 0 && !what) {
        what = "closing";
        err = errno;
    }
    if (what) {
        unlink(tmp);
        rc = cuvae_fail(st, "%s: %s %s: %s", path, what, tmp, strerror(err));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        unlink(tmp);
        rc = cuvae_fail(st, "%s: renaming %s into place: %s", path, tmp, strerror(err));
        goto out;
    }
    parent_dir(path, dir, n);
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd < 0) {
        rc = cuvae_fail(st, "%s: opening directory %s to sync it: %s", path, dir, strerror(errno));
        goto out;
    }
    int sync_rc = fsync(dfd);
    err = errno;
    close(dfd);
    if (sync_rc != 0 && err != EINVAL)
        rc = cuvae_fail(st, "%s: syncing directory %s: %s", path, dir, strerror(err));
out:
    free(tmp);
    free(dir);
    return rc;
}

/* A symlink, device or FIFO: opened without creating or following into a wait (a FIFO with no
 * reader fails with ENXIO), then written where it is. */
static int write_in_place(const char *path, const void *data, size_t len, cuvae_status *st)
{
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENXIO) return cuvae_fail(st, "%s: a FIFO with no reader", path);
        return cuvae_fail(st, "%s: opening: %s", path, strerror(err));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 ||
        !(S_ISREG(sb.st_mode) || S_ISCHR(sb.st_mode) || S_ISFIFO(sb.st_mode))) {
        close(fd);
        return cuvae_fail(st, "%s: not a regular file, character device or FIFO; not written",
                          path);
    }
    const char *what = NULL;
    int flags = fcntl(fd, F_GETFL);
    if (!what && (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)) what = "opening";
    if (!what && S_ISREG(sb.st_mode) && ftruncate(fd, 0) != 0) what = "truncating";
    if (!what && write_all(fd, data, len) != 0) what = "writing";
    /* Devices and pipes cannot be synced (EINVAL/EROFS); a regular target can. */
    if (!what && fsync(fd) != 0 && errno != EINVAL && errno != EROFS) what = "syncing";
    int err = errno;
    if (close(fd) != 0 && !what) {
        what = "closing";
        err = errno;
    }
    if (what) return cuvae_fail(st, "%s: %s: %s", path, what, strerror(err));
    return 0;
}

int cuvae_write_file(const char *path, const void *data, size_t len, cuvae_status *st)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno != ENOENT) return cuvae_fail(st, "%s: %s", path, strerror(errno));
        return write_atomic(path, data, len, st);
    }
    if (S_ISREG(sb.st_mode)) return write_atomic(path, data, len, st);
    if (S_ISLNK(sb.st_mode) || S_ISCHR(sb.st_mode) || S_ISFIFO(sb.st_mode))
        return write_in_place(path, data, len, st);
    if (S_ISDIR(sb.st_mode)) return cuvae_fail(st, "%s: %s; not written", path, strerror(EISDIR));
    return cuvae_fail(st, "%s: not a regular file, character device or FIFO; not written", path);
}

FILE *cuvae_open_input(const char *path, cuvae_status *st)
{
    /* O_NONBLOCK: opening a FIFO returns at once, and fstat then says what it is. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        cuvae_fail(st, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        cuvae_fail(st, "%s: cannot inspect: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        const char *kind = S_ISDIR(sb.st_mode)    ? "a directory"
                           : S_ISFIFO(sb.st_mode) ? "a FIFO"
                           : S_ISCHR(sb.st_mode)  ? "a character device"
                           : S_ISBLK(sb.st_mode)  ? "a block device"
                                                  : "a socket";
        cuvae_fail(st, "%s: %s, not a regular file", path, kind);
        close(fd);
        return NULL;
    }
    int flags = fcntl(fd, F_GETFL);
    FILE *f = flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        cuvae_fail(st, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}
