/* Run directories: creating the directory tree and telling whether a directory already holds a
 * run. Files are written through file_write.h. */
#ifndef CUVAE_RUNDIR_H
#define CUVAE_RUNDIR_H

#include <stddef.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mkdir -p: creates path and its missing parents (mode 0777 before the umask). */
int cuvae_mkdirs(const char *path, cuvae_status *st);

/* Takes the writer's lock on run_dir: an fcntl write lock on <run_dir>/lock, which holds the
 * PID of its holder. The lock is the process's: it goes when the process ends however it ends
 * (kill -9 included), so no stale lock is ever left. When another process holds it, fails at
 * once with a message naming that PID. *fd_out stays open while the lock is wanted; closing it
 * releases the lock. */
int cuvae_run_lock(const char *run_dir, int *fd_out, cuvae_status *st);

/* 1 when <run_dir>/checkpoints holds a checkpoint file (step-*.safetensors, best.safetensors or
 * latest), else 0. */
int cuvae_run_has_checkpoints(const char *run_dir);

#ifdef __cplusplus
}
#endif
#endif
