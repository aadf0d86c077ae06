/* SIGINT/SIGTERM handling for the training loop (see signals.h).
 *
 * The one piece of file-scope mutable state in cuvae lives here: a signal handler has no other
 * way to reach the program, and the only thing it may safely touch is a volatile sig_atomic_t. */
#include "signals.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal = 0;

static void record_stop(int sig)
{
    if (stop_signal != 0) {
        /* The user asked twice: they want out now, not after the checkpoint. */
        _exit(128 + sig);
    }
    stop_signal = sig;
}

static int set_handler(int sig, void (*handler)(int), const char *name, cuvae_status *st)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a blocking read or write in the middle of a step carries on; the loop looks at
     * the flag after the step anyway. */
    sa.sa_flags = SA_RESTART;
    if (sigaction(sig, &sa, NULL) != 0)
        return cuvae_fail(st, "cannot install the %s handler: %s", name, strerror(errno));
    return 0;
}

int cuvae_signals_ignore_sigpipe(cuvae_status *st)
{
    /* SIGXFSZ too: a write past the file-size limit (ulimit -f) then fails with EFBIG, and the
     * checkpoint writer reports it and keeps the previous checkpoint, instead of the process
     * dying in the middle of the write. */
    if (set_handler(SIGXFSZ, SIG_IGN, "SIGXFSZ", st)) return -1;
    return set_handler(SIGPIPE, SIG_IGN, "SIGPIPE", st);
}

int cuvae_signals_install(cuvae_status *st)
{
    stop_signal = 0;
    if (set_handler(SIGINT, record_stop, "SIGINT", st)) return -1;
    if (set_handler(SIGTERM, record_stop, "SIGTERM", st)) return -1;
    /* A closed terminal or an ssh session that drops: stop as for SIGTERM, with a checkpoint. */
    if (set_handler(SIGHUP, record_stop, "SIGHUP", st)) return -1;
    return 0;
}

void cuvae_signals_restore(void)
{
    set_handler(SIGINT, SIG_DFL, "SIGINT", NULL);
    set_handler(SIGTERM, SIG_DFL, "SIGTERM", NULL);
    set_handler(SIGHUP, SIG_DFL, "SIGHUP", NULL);
}

int cuvae_signals_pending(void)
{
    return (int)stop_signal;
}
