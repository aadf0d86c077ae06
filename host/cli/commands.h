/* The subcommands of the cuvae program. main() dispatches `cuvae NAME ...` to the function of
 * that name with argv[0] = "NAME" and argv[1..argc) its arguments (the same shape as main's own
 * arguments), and exits with the status the function returns:
 *   0   success
 *   1   runtime error: bad data, I/O failure, bad or unreadable checkpoint, no usable device
 *   2   usage or configuration error: unknown option, missing argument, bad config key or value
 *   3   training stopped by a non-finite loss or gradient (train.on_nonfinite = stop)
 *   130 interrupted by SIGINT after a checkpoint was written
 *   143 stopped by SIGTERM after a checkpoint was written
 * Each command prints its errors itself as one line "cuvae: ..." on stderr, and answers --help
 * with every option it takes. */
#ifndef CUVAE_COMMANDS_H
#define CUVAE_COMMANDS_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CUVAE_EXIT_OK = 0,
    CUVAE_EXIT_RUNTIME = 1,
    CUVAE_EXIT_USAGE = 2,
    CUVAE_EXIT_NONFINITE = 3,
    CUVAE_EXIT_SIGINT = 130,
    CUVAE_EXIT_SIGTERM = 143
};

/* cuvae train CONFIG [section.key=value ...] [--device auto|cpu|cuda] [--resume PATH|auto]
 * (host/cli/main.c, host/train/trainer.c) */
int cuvae_cmd_train(int argc, char **argv);

/* cuvae eval CHECKPOINT ...: negative ELBO and the K-sample bound on a data set
 * (host/cli/eval_cmd.c)
 */
int cuvae_cmd_eval(int argc, char **argv);

/* cuvae sample CHECKPOINT ...: a PNG grid of samples from the prior (host/cli/eval_cmd.c) */
int cuvae_cmd_sample(int argc, char **argv);

/* cuvae reconstruct CHECKPOINT ...: inputs beside their reconstructions (host/cli/eval_cmd.c) */
int cuvae_cmd_reconstruct(int argc, char **argv);

/* cuvae encode CHECKPOINT ...: mu and logvar of a set as an .npz (host/cli/latent_cmd.c) */
int cuvae_cmd_encode(int argc, char **argv);

/* cuvae traverse CHECKPOINT ...: latent traversals or the 2-D map (host/cli/latent_cmd.c) */
int cuvae_cmd_traverse(int argc, char **argv);

/* cuvae interpolate CHECKPOINT --from I --to J ...: decoded interpolations (latent_cmd.c) */
int cuvae_cmd_interpolate(int argc, char **argv);

/* cuvae bench ...: throughput of the training step and its parts (bench/bench_cmd.c) */
int cuvae_cmd_bench(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
