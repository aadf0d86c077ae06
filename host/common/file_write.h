/* The one way cuvae writes a file (checkpoints, config.ini, latest, PNGs, eval's and bench's
 * JSON, IDX files): the durability policy lives here once; and the one way it opens an input
 * file (config, data). metrics.jsonl alone appends instead (metrics.c says why). */
#ifndef CUVAE_FILE_WRITE_H
#define CUVAE_FILE_WRITE_H

#include <stddef.h>
#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes len bytes to path.
 * - A new path, or a regular file (not reached through a symlink), is replaced atomically:
 *   <path>.tmp.<pid> in the same directory, every write checked, fsync, rename over path, fsync
 *   of the directory (EINVAL, a file system that cannot sync a directory, is accepted). A reader
 *   sees the old file or the new one; whatever fails, the old file stays and the temporary goes.
 * - A symlink, character device or FIFO is written in place, never replaced: the link stays a
 *   link (its target is truncated and rewritten, not atomically), /dev/null stays a device. A
 *   FIFO with no reader is refused at once, not waited on.
 * - Anything else (a directory, a socket, a block device) is refused.
 * Errors read "<path>: <what failed>: <reason>". */
int cuvae_write_file(const char *path, const void *data, size_t len, cuvae_status *st);

/* Opens path for reading when it is a regular file. A FIFO (which would block until a writer
 * comes), a directory or a device is refused with "<path>: <what it is>, not a regular file".
 * NULL on failure. */
FILE *cuvae_open_input(const char *path, cuvae_status *st);

#ifdef __cplusplus
}
#endif
#endif
