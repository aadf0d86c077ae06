/* The cuvae program: dispatches `cuvae SUBCOMMAND ...` to the subcommands of commands.h.
 *
 * Exit statuses (every subcommand):
 *   0    success
 *   1    runtime error: bad data, I/O failure, bad or unreadable checkpoint, no usable device
 *   2    usage or configuration error: unknown option or subcommand, missing argument, bad
 *        config key or value, refused resume
 *   3    training stopped by a non-finite loss or gradient (train.on_nonfinite = stop)
 *   130  training interrupted by SIGINT after a checkpoint was written
 *   143  training stopped by SIGTERM after a checkpoint was written
 * Errors are one line on stderr starting "cuvae: ". */
#include <stdio.h>
#include <string.h>

#include "blas_info.h"
#include "commands.h"
#include "cuda_arch.h"
#include "signals.h"

#ifndef CUVAE_VERSION
#define CUVAE_VERSION "unknown"
#endif

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand SUBCOMMANDS[] = {
    {"train", cuvae_cmd_train, "train a VAE from an INI config (resumable)"},
    {"eval", cuvae_cmd_eval, "negative ELBO and the K-sample bound of a checkpoint on a data set"},
    {"sample", cuvae_cmd_sample, "decode samples from the prior into a PNG grid"},
    {"reconstruct", cuvae_cmd_reconstruct, "test images beside their reconstructions, as a PNG"},
    {"encode", cuvae_cmd_encode, "the encoder's mu and logvar of a data set, as an .npz"},
    {"traverse", cuvae_cmd_traverse, "latent traversals (or the 2-D latent map) as a PNG grid"},
    {"interpolate", cuvae_cmd_interpolate,
     "decoded points between two examples' latents, as a PNG"},
    {"bench", cuvae_cmd_bench, "throughput of the training step and its parts"},
};
#define N_SUBCOMMANDS (sizeof SUBCOMMANDS / sizeof SUBCOMMANDS[0])

static void print_help(FILE *out)
{
    fprintf(out, "usage: cuvae SUBCOMMAND [ARGS...]\n"
                 "       cuvae SUBCOMMAND --help\n"
                 "       cuvae --version\n"
                 "\n"
                 "A variational autoencoder trainer (C11, CUDA).\n"
                 "\n"
                 "Subcommands:\n");
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        fprintf(out, "  %-12s %s\n", SUBCOMMANDS[i].name, SUBCOMMANDS[i].summary);
    fprintf(out, "\n"
                 "Exit status:\n"
                 "  0    success\n"
                 "  1    runtime error (bad data, I/O failure, bad checkpoint, no usable device)\n"
                 "  2    usage or configuration error\n"
                 "  3    training stopped at a non-finite loss or gradient\n"
                 "  130  training interrupted by SIGINT after a checkpoint was written\n"
                 "  143  training stopped by SIGTERM after a checkpoint was written\n");
}

static void print_version(void)
{
#ifdef CUVAE_HAVE_CUDA
    char archs[256];
    cuvae_cuda_arch_describe(CUVAE_CUDA_ARCHS, archs, sizeof archs);
#ifdef CUVAE_HAVE_CUDNN
    const char *conv = "conv layers on cuDNN " CUVAE_CUDNN_VERSION;
#else
    const char *conv = "conv layers CPU-only: built without cuDNN";
#endif
    printf("cuvae %s, CPU and CUDA backends (CUDA %s; %s; %s)\n", CUVAE_VERSION, CUVAE_CUDA_TOOLKIT,
           archs, conv);
#else
    printf("cuvae %s, CPU backend only (built without CUDA)\n", CUVAE_VERSION);
#endif
    char blas[512];
    cuvae_blas_describe(blas, sizeof blas);
    printf("BLAS: %s\n", blas);
}

static const subcommand *find(const char *name)
{
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        if (strcmp(SUBCOMMANDS[i].name, name) == 0) return &SUBCOMMANDS[i];
    return NULL;
}

int main(int argc, char **argv)
{
    cuvae_blas_ensure_kernels(argv); /* first: it may run the program again with other kernels */
    cuvae_status st;
    if (cuvae_signals_ignore_sigpipe(&st)) {
        fprintf(stderr, "cuvae: %s\n", st.msg);
        return CUVAE_EXIT_RUNTIME;
    }
    if (argc < 2) {
        fprintf(stderr, "cuvae: missing subcommand; see 'cuvae --help'\n");
        return CUVAE_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        print_help(stdout);
        return CUVAE_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        print_version();
        return CUVAE_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            print_help(stdout);
            return CUVAE_EXIT_OK;
        }
        const subcommand *sub = find(argv[2]);
        if (!sub) {
            fprintf(stderr, "cuvae: help: unknown subcommand '%s'; see 'cuvae --help'\n", argv[2]);
            return CUVAE_EXIT_USAGE;
        }
        char help_flag[] = "--help";
        char *sub_argv[] = {argv[2], help_flag, NULL};
        return sub->run(2, sub_argv);
    }
    const subcommand *sub = find(cmd);
    if (!sub) {
        fprintf(stderr, "cuvae: unknown %s '%s'; see 'cuvae --help'\n",
                cmd[0] == '-' ? "option" : "subcommand", cmd);
        return CUVAE_EXIT_USAGE;
    }
    int rc = sub->run(argc - 1, argv + 1);
    /* ferror too: an earlier failed flush (a full disk, /dev/full) leaves an empty buffer that
     * flushes fine now, but what was written is lost. */
    if ((fflush(stdout) != 0 || ferror(stdout)) && rc == CUVAE_EXIT_OK) {
        fprintf(stderr, "cuvae: writing to stdout failed\n");
        return CUVAE_EXIT_RUNTIME;
    }
    return rc;
}
