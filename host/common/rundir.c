/* Run-directory helpers (see rundir.h). */
#include "rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
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
        if (stat(buf, &sb) != 0)
            return cuvae_fail(st, "%s: cannot use as a directory: %s", buf, strerror(errno));
        if (!S_ISDIR(sb.st_mode)) return cuvae_fail(st, "%s: exists and is not a directory", buf);
        buf[i] = saved;
    }
    return 0;
}

int cuvae_run_lock(const char *run_dir, int *fd_out, cuvae_status *st)
{
    char path[1100];
    if (snprintf(path, sizeof path, "%s/lock", run_dir) >= (int)sizeof path)
        return cuvae_fail(st, "%s: path too long", run_dir);
    /* O_NONBLOCK: a FIFO planted as the lock file must not block the open. */
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0) return cuvae_fail(st, "%s: cannot open the run lock: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cuvae_fail(st, "%s: the run lock is not a regular file", path);
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int err = errno;
        if (err != EACCES && err != EAGAIN) {
            close(fd);
            return cuvae_fail(st, "%s: cannot lock: %s", path, strerror(err));
        }
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        long pid = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : 0;
        if (pid <= 0) {
            char text[32] = {0};
            ssize_t n = pread(fd, text, sizeof text - 1, 0);
            pid = n > 0 ? strtol(text, NULL, 10) : 0;
        }
        close(fd);
        return cuvae_fail(st,
                          "%s is in use: another cuvae train (PID %ld) holds %s; wait for it to "
                          "end, stop it, or set output.dir to another directory",
                          run_dir, pid, path);
    }
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        int err = errno;
        close(fd);
        return cuvae_fail(st, "%s: cannot write the holder's PID: %s", path, strerror(err));
    }
    *fd_out = fd;
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
