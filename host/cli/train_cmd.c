/* `cuvae train`: the command line (CONFIG, overrides, --device, --resume), the resolved config,
 * and the mapping of the training outcome to a message and an exit status (commands.h). */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "cli_args.h"
#include "config.h"
#include "trainer.h"

static const char TRAIN_HELP[] =
    "usage: cuvae train CONFIG [section.key=value ...] [--device auto|cpu|cuda]\n"
    "                   [--resume PATH|auto]\n"
    "\n"
    "Trains a VAE as the INI file CONFIG says. Each section.key=value after it overrides one key\n"
    "(the keys are listed below). The resolved configuration is printed at the start and saved\n"
    "as <output.dir>/config.ini; the run directory then holds metrics.jsonl (one JSON object a\n"
    "line: start, step, epoch, checkpoint, stop and final records), checkpoints/ (step-<12 "
    "digits>.safetensors,\n"
    "best.safetensors, latest), images/ (recon-epoch-NNN.png and samples-epoch-NNN.png when\n"
    "output.images = 1) and, at the end, model.safetensors (parameters only).\n"
    "\n"
    "TensorBoard (output.tensorboard = 1, the default): events.out.tfevents.* files in the run\n"
    "directory, one per process start, hold every number of metrics.jsonl (wall_s and the\n"
    "counters aside) as the scalar <type>/<key> at its step (step/loss, epoch/valid_neg_elbo,\n"
    "final/test_neg_elbo...) and the epoch grids as images/recon and images/samples; see them\n"
    "with `tensorboard --logdir runs`. A resumed run's file starts with a SessionLog START at\n"
    "the step after its checkpoint, so TensorBoard drops what a killed process logged after it.\n"
    "A failed events write is a warning: training, metrics.jsonl and checkpoints go on.\n"
    "\n"
    "Each epoch visits a fresh seeded permutation of the training set in floor(N / batch_size)\n"
    "full batches; the examples past the last full batch sit that epoch out. best.safetensors is\n"
    "written whenever the validation negative ELBO improves, on top of the periodic checkpoints\n"
    "(output.checkpoint_every_epochs, output.checkpoint_every_steps); a final checkpoint is\n"
    "always written.\n"
    "\n"
    "Options:\n"
    "  --device auto|cpu|cuda  where to train (overrides train.device); auto picks CUDA when a\n"
    "                          GPU is usable, else the CPU\n"
    "  --resume PATH|auto      continue from a checkpoint file, or from the newest good one in\n"
    "                          <output.dir>/checkpoints (auto; a fresh start when there is none).\n"
    "                          The loop continues at the saved epoch, batch and step, with the\n"
    "                          same shuffling and noise: the result equals an uninterrupted run.\n"
    "                          Changes to the model's shape are refused; other config changes are\n"
    "                          listed, with those that break exact continuation marked.\n"
    "  -h, --help              this text\n"
    "\n"
    "SIGINT (Ctrl-C), SIGTERM or SIGHUP: the step in progress finishes, a checkpoint is\n"
    "written, and the command prints how to resume; also during the final checkpoint and\n"
    "test evaluation. A second Ctrl-C exits at once.\n"
    "\n"
    "Non-finite losses or gradients: the step's update is always withheld. The trainer sees\n"
    "them when it reads the metrics (every train.log_every steps, before each checkpoint and at\n"
    "each epoch end); train.on_nonfinite = stop then ends the run without saving anything, skip\n"
    "warns and goes on.\n"
    "\n"
    "The run's report (resolved config, data, device, resume, where the results are) goes to\n"
    "stdout; progress, warnings and errors to stderr: an updating line on a terminal, one line\n"
    "per epoch otherwise.\n"
    "\n"
    "Exit status:\n"
    "  0    training finished\n"
    "  1    runtime error (bad data, I/O failure, bad checkpoint, no usable device, the run\n"
    "       directory locked by another trainer)\n"
    "  2    usage or configuration error (also: a refused resume)\n"
    "  3    stopped at a non-finite loss or gradient (train.on_nonfinite = stop); no checkpoint\n"
    "       is written, the last good one stays\n"
    "  130  interrupted by SIGINT after a checkpoint was written\n"
    "  143  stopped by SIGTERM after a checkpoint was written\n"
    "  129  stopped by SIGHUP after a checkpoint was written\n"
    "\n"
    "Convolutional models: model.encoder and model.decoder list layers, comma-separated:\n"
    "  conv C [kK] [sS] [pP]   conv2d to C channels: out = (in + 2P - K) / S + 1 a side\n"
    "  convt C [kK] [sS] [pP]  conv_transpose2d to C channels: out = (in - 1) S - 2P + K\n"
    "  linear N                N features; linear CxHxW: C*H*W features seen as C x H x W\n"
    "                          by a transposed conv after it\n"
    "Convs default to k4 s2 p1 (each halves a side; convt doubles it). The encoder's layers\n"
    "(at most 8) are followed by the linear to [mu | logvar]. Without model.decoder the\n"
    "decoder mirrors the encoder: its linears reversed, a linear to the last conv's C x H x W,\n"
    "then a transposed conv (same k, s, p) for each conv, the last to the data's channels.\n"
    "Every layer but the last of each half has a ReLU; activations are C, H, W planar, as\n"
    "torch's NCHW flatten(1). model.hidden = 512,256 is model.encoder = linear 512, linear\n"
    "256; giving both is an error. Fashion-MNIST, for example (configs/fashion_mnist_conv.ini):\n"
    "  model.encoder = conv 32, conv 64, linear 256\n"
    "    1x28x28 -> 32x14x14 -> 64x7x7 -> 256 -> [mu | logvar]; decoder: latent -> 256 ->\n"
    "    3136 (64x7x7) -> convt 32 (14x14) -> convt 1 (28x28, logits)\n"
    "Checkpoints hold torch.nn.Conv2d weights [out, in, k, k], ConvTranspose2d weights\n"
    "[in, out, k, k] and biases [out] under encoder.{i} / decoder.{i}.\n"
    "\n"
    "Configuration keys:\n";

/* Appends one shell word to buf, single-quoted when it holds anything but plain characters. */
static void append_shell_word(char *buf, size_t len, const char *word)
{
    size_t at = strlen(buf);
    int plain = word[0] != '\0';
    for (const char *c = word; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,:/@%", *c))
            plain = 0;
    if (plain) {
        snprintf(buf + at, len - at, " %s", word);
        return;
    }
    at += (size_t)snprintf(buf + at, len - at, " '");
    for (const char *c = word; *c && at + 5 < len; c++) {
        if (*c == '\'')
            at += (size_t)snprintf(buf + at, len - at, "'\\''");
        else
            buf[at++] = *c, buf[at] = '\0';
    }
    if (at < len) snprintf(buf + at, len - at, "'");
}

int cuvae_cmd_train(int argc, char **argv)
{
    const char *config_path = NULL, *resume = NULL;
    cuvae_device device = CUVAE_DEV_AUTO;
    int have_device = 0;
    const char *overrides[256];
    int n_overrides = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(TRAIN_HELP, stdout);
            cuvae_config_print_keys(stdout, 0);
            return CUVAE_EXIT_OK;
        }
        int r = cuvae_opt_value(argc, argv, &i, "--device", &value);
        if (r < 0) return cuvae_usage_error("train", "--device needs a value: auto, cpu or cuda");
        if (r > 0) {
            if (cuvae_parse_device(value, &device))
                return cuvae_usage_error("train", "--device: expected auto, cpu or cuda, got '%s'",
                                         value);
            have_device = 1;
            continue;
        }
        r = cuvae_opt_value(argc, argv, &i, "--resume", &value);
        if (r < 0)
            return cuvae_usage_error("train",
                                     "--resume needs a value: a checkpoint file or 'auto'");
        if (r > 0) {
            if (!value[0])
                return cuvae_usage_error("train", "--resume: expected a checkpoint file or 'auto'");
            resume = value;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0')
            return cuvae_usage_error("train", "unknown option '%s'", a);
        if (!config_path) {
            config_path = a;
        } else if (strchr(a, '=')) {
            if (n_overrides == (int)(sizeof overrides / sizeof overrides[0]))
                return cuvae_usage_error("train", "more than %d overrides", n_overrides);
            overrides[n_overrides++] = a;
        } else {
            return cuvae_usage_error(
                "train", "unexpected argument '%s' (overrides are section.key=value)", a);
        }
    }
    if (!config_path)
        return cuvae_usage_error("train", "missing CONFIG, the INI file to train from");

    cuvae_status st;
    cuvae_config cfg;
    cuvae_config_defaults(&cfg);
    if (cuvae_config_load_file(&cfg, config_path, &st)) {
        fprintf(stderr, "cuvae: %s\n", st.msg);
        return CUVAE_EXIT_USAGE;
    }
    for (int i = 0; i < n_overrides; i++) {
        if (cuvae_config_override(&cfg, overrides[i], &st)) {
            fprintf(stderr, "cuvae: %s\n", st.msg);
            return CUVAE_EXIT_USAGE;
        }
    }
    if (have_device) cfg.train.device = device;
    if (cuvae_config_validate(&cfg, &st)) {
        fprintf(stderr, "cuvae: %s\n", st.msg);
        return CUVAE_EXIT_USAGE;
    }

    cuvae_train_options opt = {
        .config = &cfg, .resume = resume, .out = stdout, .log = stderr, .progress_tty = -1};
    cuvae_train_result res;
    if (cuvae_train(&opt, &res, &st)) {
        fflush(stdout);
        fprintf(stderr, "cuvae: %s\n", st.msg);
        return res.usage_error ? CUVAE_EXIT_USAGE : CUVAE_EXIT_RUNTIME;
    }
    fflush(stdout);
    switch (res.outcome) {
    case CUVAE_TRAIN_NONFINITE:
        if (res.checkpoint[0])
            fprintf(stderr,
                    "cuvae: non-finite loss or gradient at step %llu; stopping; the last good "
                    "checkpoint is %s\n",
                    (unsigned long long)res.nonfinite_step, res.checkpoint);
        else
            fprintf(stderr,
                    "cuvae: non-finite loss or gradient at step %llu; stopping; no checkpoint "
                    "was written before it\n",
                    (unsigned long long)res.nonfinite_step);
        return CUVAE_EXIT_NONFINITE;
    case CUVAE_TRAIN_INTERRUPTED: {
        char again[4096] = "cuvae train";
        append_shell_word(again, sizeof again, config_path);
        for (int i = 0; i < n_overrides; i++) append_shell_word(again, sizeof again, overrides[i]);
        if (have_device) {
            append_shell_word(again, sizeof again, "--device");
            append_shell_word(again, sizeof again, cuvae_device_name(device));
        }
        append_shell_word(again, sizeof again, "--resume");
        append_shell_word(again, sizeof again, "auto");
        fprintf(stderr, "cuvae: interrupted at step %llu; checkpoint %s; resume with: %s\n",
                (unsigned long long)res.step, res.checkpoint, again);
        return res.signal == SIGINT ? CUVAE_EXIT_SIGINT : 128 + res.signal;
    }
    case CUVAE_TRAIN_FINISHED:
        return CUVAE_EXIT_OK;
    case CUVAE_TRAIN_FAILED:
        break;
    }
    fprintf(stderr, "cuvae: training ended without an outcome\n");
    return CUVAE_EXIT_RUNTIME;
}
