/* Stop requests for the training loop: SIGINT and SIGTERM are recorded, not acted on, so the loop
 * can finish its step, write a checkpoint and exit with 130 or 143. A second signal while the
 * first is being handled ends the process at once (128 + signal number). */
#ifndef CUVAE_SIGNALS_H
#define CUVAE_SIGNALS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Ignores SIGPIPE and SIGXFSZ, so that writing to a closed pipe or past a file-size limit
 * (ulimit -f) is an error (EPIPE, EFBIG) reported with the file's name, not a silent death that
 * leaves a half-written temporary behind. */
int cuvae_signals_ignore_sigpipe(cuvae_status *st);

/* Installs the recording handlers for SIGINT and SIGTERM and clears any earlier request. */
int cuvae_signals_install(cuvae_status *st);

/* Puts back the default dispositions of SIGINT and SIGTERM. */
void cuvae_signals_restore(void);

/* The signal number of the first stop request since cuvae_signals_install, or 0 when none. */
int cuvae_signals_pending(void);

#ifdef __cplusplus
}
#endif
#endif
