/* Files of a run directory that are not checkpoints: creating the directory tree, writing small
 * files atomically (config.ini), and telling whether a directory already holds a run. */
#ifndef CUVAE_RUNDIR_H
#define CUVAE_RUNDIR_H

#include <stddef.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mkdir -p: creates path and its missing parents (mode 0777 before the umask). */
int cuvae_mkdirs(const char *path, cuvae_status *st);

/* Writes len bytes to path through <path>.tmp.<pid> in the same directory, fsync and rename: a
 * reader sees the old file or the new one, never half of one. */
int cuvae_write_file_atomic(const char *path, const void *data, size_t len, cuvae_status *st);

/* 1 when <run_dir>/checkpoints holds a checkpoint file (step-*.safetensors, best.safetensors or
 * latest), else 0. */
int cuvae_run_has_checkpoints(const char *run_dir);

#ifdef __cplusplus
}
#endif
#endif
