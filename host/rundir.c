/* Run-directory helpers (see rundir.h). */
#include "rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cuvae_mkdirs(const char *path, cuvae_status *st)
{
    char buf[1024];
    size_t len = strlen(path);
    if (len == 0) return cuvae_fail(st, "empty directory path");
    if (len >= sizeof buf) return cuvae_fail(st, "%s: path too long", path);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return cuvae_fail(st, "%s: cannot create directory: %s", buf, strerror(errno));
        struct stat sb;
        if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return cuvae_fail(st, "%s: exists and is not a directory", buf);
        buf[i] = saved;
    }
    return 0;
}

/* The directory part of path, for the fsync that makes a rename durable. */
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

int cuvae_write_file_atomic(const char *path, const void *data, size_t len, cuvae_status *st)
{
    char tmp[1100];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) return cuvae_fail(st, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return cuvae_fail(st, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int err = errno;
            close(fd);
            unlink(tmp);
            return cuvae_fail(st, "%s: write failed: %s", path, strerror(err));
        }
        p += w;
        left -= (size_t)w;
    }
    int sync_rc = fsync(fd), sync_err = errno;
    if (close(fd) != 0 && sync_rc == 0) {
        sync_rc = -1;
        sync_err = errno;
    }
    if (sync_rc != 0) {
        int err = sync_err;
        unlink(tmp);
        return cuvae_fail(st, "%s: write failed: %s", path, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return cuvae_fail(st, "%s: cannot replace: %s", path, strerror(err));
    }
    char dir[1100];
    parent_dir(path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        /* Best effort: some file systems refuse fsync on a directory; the data is written. */
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

int cuvae_run_has_checkpoints(const char *run_dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/checkpoints", run_dir);
    DIR *d = opendir(path);
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        size_t len = strlen(name);
        const char *ext = ".safetensors";
        size_t elen = strlen(ext);
        if (strcmp(name, "latest") == 0 || strcmp(name, "best.safetensors") == 0 ||
            (strncmp(name, "step-", 5) == 0 && len > elen && strcmp(name + len - elen, ext) == 0))
            found = 1;
    }
    closedir(d);
    return found;
}
