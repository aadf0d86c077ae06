/* Config parsing: defaults, files and overrides, every error message's shape (file:line, key,
 * what was expected), the INI round trip, hidden-list parsing, cross-key checks, the key
 * reference and the resume report. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_keys.h"
#include "tests_util.h"

/* Loads `text` as origin "t.ini" over the defaults; returns the status code, message in st. */
static int load(cuvae_config *c, const char *text, cuvae_status *st)
{
    cuvae_config_defaults(c);
    st->msg[0] = '\0';
    return cuvae_config_load_string(c, text, "t.ini", st);
}

/* Loads text that must fail and checks the message contains `needle`. */
static void load_fails(const char *text, const char *needle)
{
    cuvae_config c;
    cuvae_status st;
    int rc = load(&c, text, &st);
    CHECK(rc != 0);
    CHECK_MSG(st.msg, needle);
}

static void override_fails(const char *assignment, const char *needle)
{
    cuvae_config c;
    cuvae_status st = {{0}};
    cuvae_config_defaults(&c);
    cuvae_config before = c;
    int rc = cuvae_config_override(&c, assignment, &st);
    CHECK(rc != 0);
    CHECK_MSG(st.msg, needle);
    CHECK(memcmp(&before, &c, sizeof c) == 0); /* a failed override changes nothing */
}

static void test_defaults(void)
{
    cuvae_config c;
    cuvae_status st;
    cuvae_config_defaults(&c);
    CHECK(!strcmp(c.data.train_images,
                  "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"));
    CHECK(
        !strcmp(c.data.test_labels, "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"));
    CHECK(c.data.validation == 5000 && c.data.binarize == CUVAE_BIN_DYNAMIC);
    CHECK(c.data.limit_train == 0 && c.data.limit_test == 0);
    CHECK(c.model.n_hidden == 2 && c.model.hidden[0] == 512 && c.model.hidden[1] == 256);
    CHECK(c.model.hidden[2] == 0 && c.model.latent == 32);
    CHECK(c.model.likelihood == CUVAE_LIK_BERNOULLI && c.model.gaussian_sigma == 1.0f);
    CHECK(c.train.epochs == 10 && c.train.batch_size == 128 && c.train.seed == 1);
    CHECK(c.train.beta == 1.0f && c.train.kl_warmup_steps == 0 && c.train.free_bits == 0.0f);
    CHECK(c.train.device == CUVAE_DEV_AUTO && c.train.precision == CUVAE_PREC_TF32);
    CHECK(c.train.log_every == 100 && c.train.on_nonfinite == CUVAE_NONFINITE_STOP);
    CHECK(c.optim.type == CUVAE_OPT_ADAM && c.optim.lr == 1e-3f && c.optim.beta1 == 0.9f);
    CHECK(c.optim.beta2 == 0.999f && c.optim.eps == 1e-8f && c.optim.weight_decay == 0.0f);
    CHECK(c.optim.grad_clip == 0.0f && c.optim.schedule == CUVAE_SCHED_CONSTANT);
    CHECK(c.optim.warmup_steps == 0 && c.optim.min_lr == 0.0f);
    CHECK(c.eval.samples == 5000 && c.eval.batch_size == 100);
    CHECK(c.output.dir[0] == '\0' && c.output.checkpoint_every_steps == 0);
    CHECK(c.output.checkpoint_every_epochs == 1 && c.output.keep_last == 3);
    CHECK(c.output.images == 1);
    CHECK(cuvae_config_validate(&c, &st) == 0);
    CHECK(!strcmp(cuvae_precision_name(CUVAE_PREC_BF16), "bf16"));
    CHECK(!strcmp(cuvae_device_name(CUVAE_DEV_CUDA), "cuda"));
}

static void test_load_values(void)
{
    cuvae_config c;
    cuvae_status st;
    const char *text = "\xEF\xBB\xBF; a comment\r\n"
                       "# another\n"
                       "[model]\n"
                       "hidden = 300, 200 ,100\n"
                       "latent=16 ; inline comment\n"
                       "likelihood = GAUSSIAN\n"
                       "gaussian_sigma = 0.25\n"
                       "\n"
                       "[data]\n"
                       "binarize = none\n"
                       "train_labels =\n"
                       "[train]\n"
                       "seed = 18446744073709551615\n"
                       "device = cpu\n"
                       "[optim]\n"
                       "lr = 3e-4\n"
                       "beta1 = 0\n"
                       "[output]\n"
                       "images = no\n"
                       "dir = somewhere/run1\n";
    CHECK(load(&c, text, &st) == 0);
    CHECK_MSG(st.msg, "");
    CHECK(c.model.n_hidden == 3 && c.model.hidden[0] == 300 && c.model.hidden[2] == 100);
    CHECK(c.model.latent == 16 && c.model.likelihood == CUVAE_LIK_GAUSSIAN);
    CHECK(c.model.gaussian_sigma == 0.25f && c.data.binarize == CUVAE_BIN_NONE);
    CHECK(c.data.train_labels[0] == '\0');
    CHECK(c.train.seed == UINT64_MAX && c.train.device == CUVAE_DEV_CPU);
    CHECK(c.optim.lr == 3e-4f && c.optim.beta1 == 0.0f && c.output.images == 0);
    CHECK(!strcmp(c.output.dir, "somewhere/run1")); /* from a string: as given */
    CHECK(cuvae_config_validate(&c, &st) == 0);

    /* Keys not in the text keep their earlier values. */
    CHECK(c.train.epochs == 10 && c.eval.samples == 5000);
}

/* Field-by-field equality through the public struct (padding never compared). */
static int configs_equal(const cuvae_config *a, const cuvae_config *b)
{
    return !memcmp(&a->data, &b->data, sizeof a->data) &&
           !memcmp(&a->model, &b->model, sizeof a->model) && a->train.epochs == b->train.epochs &&
           a->train.batch_size == b->train.batch_size && a->train.seed == b->train.seed &&
           !memcmp(&a->train.beta, &b->train.beta, 4) &&
           a->train.kl_warmup_steps == b->train.kl_warmup_steps &&
           !memcmp(&a->train.free_bits, &b->train.free_bits, 4) &&
           a->train.device == b->train.device && a->train.precision == b->train.precision &&
           a->train.log_every == b->train.log_every &&
           a->train.on_nonfinite == b->train.on_nonfinite &&
           !memcmp(&a->optim, &b->optim, sizeof a->optim) &&
           !memcmp(&a->eval, &b->eval, sizeof a->eval) &&
           !memcmp(&a->output, &b->output, sizeof a->output);
}

static void round_trip(const cuvae_config *c, const char *what)
{
    cuvae_status st = {{0}};
    char *ini = cuvae_config_to_ini(c);
    CHECK(ini != NULL);
    if (!ini) return;
    cuvae_config back;
    memset(&back, 0, sizeof back);
    cuvae_config_defaults(&back);
    int rc = cuvae_config_load_string(&back, ini, what, &st);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s: %s\n%s", what, st.msg, ini);
    CHECK(configs_equal(c, &back));
    CHECK(memcmp(c, &back, sizeof back) == 0); /* defaults() zeroes padding too */
    free(ini);
}

static void test_round_trip(void)
{
    cuvae_config c;
    cuvae_status st;
    cuvae_config_defaults(&c);
    round_trip(&c, "defaults");

    /* Every key moved off its default, awkward floats included. */
    const char *changes[] = {
        "data.train_images=/tmp/a b/train.gz",
        "data.train_labels=",
        "data.validation=7",
        "data.binarize=static",
        "data.limit_train=1000",
        "data.limit_test=99",
        "model.hidden=",
        "model.latent=4096",
        "model.likelihood=gaussian",
        "model.gaussian_sigma=0.1",
        "train.epochs=1000000",
        "train.batch_size=65536",
        "train.seed=12345678901234567890",
        "train.beta=0.333333343",
        "train.kl_warmup_steps=77",
        "train.free_bits=1e-7",
        "train.device=cuda",
        "train.precision=bf16",
        "train.log_every=1",
        "train.on_nonfinite=skip",
        "optim.type=adamw",
        "optim.lr=10",
        "optim.beta1=0.99999994",
        "optim.beta2=0",
        "optim.eps=1.17549435e-38",
        "optim.weight_decay=3.4e38",
        "optim.grad_clip=2.5",
        "optim.schedule=cosine",
        "optim.warmup_steps=5",
        "optim.min_lr=1e-45",
        "eval.samples=1",
        "eval.batch_size=2147483647",
        "output.dir=x/y=z: #1",
        "output.checkpoint_every_steps=9",
        "output.checkpoint_every_epochs=0",
        "output.keep_last=1",
        "output.images=false",
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        int rc = cuvae_config_override(&c, changes[i], &st);
        CHECK(rc == 0);
        if (rc) fprintf(stderr, "%s\n", st.msg);
    }
    CHECK(c.model.n_hidden == 0 && c.optim.min_lr > 0.0f);
    round_trip(&c, "modified");

    /* 8 hidden layers and a 255-character path (longer than one inih line: it is split). */
    char path[300] = "data.test_images=";
    size_t at = strlen(path);
    for (int i = 0; i < 255; i++) path[at + i] = (char)(i % 10 == 9 ? '/' : 'a' + i % 7);
    path[at + 255] = '\0';
    CHECK(cuvae_config_override(&c, path, &st) == 0);
    CHECK(strlen(c.data.test_images) == 255);
    CHECK(cuvae_config_override(&c, "model.hidden=1,2,3,4,5,6,7,65536", &st) == 0);
    CHECK(c.model.n_hidden == 8 && c.model.hidden[7] == 65536);
    round_trip(&c, "long");
}

static void test_errors(void)
{
    /* Unknown key: line number, section, nearest key. */
    load_fails("[train]\n\nepochs = 3\n; c\nepoch = 4\n",
               "t.ini:5: unknown key 'epoch' in [train] (did you mean 'epochs'?)");
    load_fails("[train]\nlr = 0.1\n", "t.ini:2: unknown key 'lr' in [train] (did you mean "
                                      "'optim.lr'?)");
    {
        cuvae_config c;
        cuvae_status st;
        CHECK(load(&c, "[train]\nzzzzzzzz = 1\n", &st) != 0);
        CHECK_MSG(st.msg, "t.ini:2: unknown key 'zzzzzzzz' in [train]");
        CHECK(strstr(st.msg, "did you mean") == NULL);
    }
    /* Unknown section, reported at its header even when empty. */
    load_fails("[train]\nepochs=2\n[trian]\nepochs = 3\n",
               "t.ini:3: unknown section [trian] (sections: data, model, train, optim, eval, "
               "output)");
    load_fails("[bogus]\n", "t.ini:1: unknown section [bogus]");
    load_fails("epochs = 3\n", "t.ini:1: key 'epochs' comes before any [section]");
    load_fails("[train]\n = 3\n", "t.ini:2: missing key name before '='");
    /* Bad numbers: words, trailing junk, overflow, out of range at both ends, not finite. */
    load_fails("[train]\nepochs = ten\n",
               "t.ini:2: train.epochs: expected an integer in [1, 1000000], got 'ten'");
    load_fails("[train]\nepochs = 10x\n", "t.ini:2: train.epochs: expected an integer");
    load_fails("[train]\nepochs = 1.5\n", "got '1.5'");
    load_fails("[train]\nepochs = 0\n", "expected an integer in [1, 1000000], got '0'");
    load_fails("[train]\nepochs = 1000001\n", "got '1000001'");
    load_fails("[train]\nepochs = 99999999999999999999999\n", "train.epochs: expected");
    load_fails("[train]\nepochs =\n", "got ''");
    load_fails("[train]\nseed = -1\n", "train.seed: expected an integer in [0, "
                                       "18446744073709551615], got '-1'");
    load_fails("[train]\nseed = 18446744073709551616\n", "train.seed: expected");
    load_fails("[optim]\nlr = 0\n", "t.ini:2: optim.lr: expected a number in (0, 10], got '0'");
    load_fails("[optim]\nlr = 10.5\n", "optim.lr: expected a number in (0, 10], got '10.5'");
    load_fails("[optim]\nlr = 1e-3junk\n", "got '1e-3junk'");
    load_fails("[optim]\nbeta1 = 1\n", "optim.beta1: expected a number in [0, 1), got '1'");
    load_fails("[optim]\nbeta2 = -0.1\n", "optim.beta2: expected a number in [0, 1)");
    load_fails("[optim]\neps = nan\n", "optim.eps: expected a number > 0, got 'nan'");
    load_fails("[train]\nbeta = inf\n", "train.beta: expected a number >= 0, got 'inf'");
    load_fails("[train]\nbeta = 1e39\n", "got '1e39'");   /* finite double, not a float */
    load_fails("[train]\nbeta = 1e-50\n", "got '1e-50'"); /* would silently become 0 */
    load_fails("[optim]\ngrad_clip = -1\n", "optim.grad_clip: expected a number >= 0");
    load_fails("[eval]\nsamples = 1000001\n", "eval.samples: expected an integer in [1, 1000000]");
    load_fails("[output]\nkeep_last = 0\n", "output.keep_last: expected an integer >= 1");
    load_fails("[output]\nimages = maybe\n", "output.images: expected a boolean");
    /* Enums list the allowed names. */
    load_fails("[model]\nlikelihood = poisson\n",
               "t.ini:2: model.likelihood: expected one of bernoulli, gaussian, got 'poisson'");
    load_fails("[train]\nprecision = fp16\n", "expected one of fp32, tf32, bf16, got 'fp16'");
    /* Duplicates name both lines. */
    load_fails("[train]\nepochs = 2\nseed = 3\nepochs = 4\n",
               "t.ini:4: train.epochs is given twice (lines 2 and 4)");
    /* Syntax errors from inih itself. */
    load_fails("[train]\nepochs = 2\nthis line has no equals\n", "t.ini:3: malformed line");
    load_fails("[train\nepochs = 2\n", "t.ini:1: malformed line");
    /* An indented key after another is a continuation in inih: said plainly. */
    load_fails("[train]\nepochs = 2\n  seed = 3\n",
               "t.ini:3: indented line is read as a continuation of train.epochs");
    /* Errors keep their order: the first bad line wins. */
    load_fails("[train]\nnot a pair\nepochs = x\n", "t.ini:2: malformed line");
    load_fails("[train]\nepochs = x\nnot a pair\n", "t.ini:2: train.epochs");
    /* Over-long lines are refused, not cut. */
    {
        char text[400] = "[data]\ntrain_images = ";
        size_t at = strlen(text);
        memset(text + at, 'p', 250);
        strcpy(text + at + 250, "\n");
        load_fails(text, "t.ini:2: line too long (265 characters; at most 198)");
    }
    /* Strings longer than the field. */
    {
        char text[400] = "data.train_images=";
        size_t at = strlen(text);
        memset(text + at, 'p', 300);
        text[at + 300] = '\0';
        override_fails(text, "expected a path of at most 255 characters, got 300 characters");
    }
    override_fails("output.dir=a\tb ;c", "expected a path without");
    /* A failed load leaves the config untouched. */
    {
        cuvae_config c, before;
        cuvae_status st;
        cuvae_config_defaults(&c);
        before = c;
        CHECK(cuvae_config_load_string(&c, "[train]\nepochs = 5\nseed = x\n", "t", &st) != 0);
        CHECK(memcmp(&c, &before, sizeof c) == 0);
    }
}

static void test_overrides(void)
{
    cuvae_config c;
    cuvae_status st;
    cuvae_config_defaults(&c);
    CHECK(cuvae_config_override(&c, "train.epochs=20", &st) == 0 && c.train.epochs == 20);
    CHECK(cuvae_config_override(&c, " optim.lr = 0.002 ", &st) == 0 && c.optim.lr == 0.002f);
    CHECK(cuvae_config_override(&c, "output.dir=runs/x", &st) == 0);
    CHECK(!strcmp(c.output.dir, "runs/x"));
    override_fails("train.epochs=abc",
                   "command line: train.epochs=abc: expected an integer in [1, 1000000], got "
                   "'abc'");
    override_fails("trainepochs", "command line: 'trainepochs': expected section.key=value");
    override_fails("trainepochs=3", "command line: 'trainepochs=3': expected section.key=value");
    override_fails("train.epochs", "expected section.key=value");
    override_fails("foo.bar=1", "command line: unknown section 'foo' in 'foo.bar=1'");
    override_fails("train.epoch=5", "command line: train.epoch=5: unknown key 'epoch' in [train] "
                                    "(did you mean 'epochs'?)");
    override_fails("optim.eps=inf", "optim.eps=inf: expected a number > 0, got 'inf'");
}

static void test_hidden_list(void)
{
    cuvae_config c;
    cuvae_status st;
    cuvae_config_defaults(&c);
    CHECK(cuvae_config_override(&c, "model.hidden=512,256", &st) == 0);
    CHECK(c.model.n_hidden == 2 && c.model.hidden[0] == 512 && c.model.hidden[1] == 256);
    CHECK(cuvae_config_override(&c, "model.hidden=", &st) == 0);
    CHECK(c.model.n_hidden == 0 && c.model.hidden[0] == 0 && c.model.hidden[1] == 0);
    CHECK(cuvae_config_override(&c, "model.hidden=7", &st) == 0);
    CHECK(c.model.n_hidden == 1 && c.model.hidden[0] == 7 && c.model.hidden[1] == 0);
    override_fails("model.hidden=0", "model.hidden=0: expected a comma-separated list of at most 8 "
                                     "integers in [1, 65536] (empty = none), got '0'");
    override_fails("model.hidden=1,2,3,4,5,6,7,8,9", "got '1,2,3,4,5,6,7,8,9'");
    override_fails("model.hidden=512,,256", "model.hidden=512,,256: expected");
    override_fails("model.hidden=512,", "model.hidden=512,: expected");
    override_fails("model.hidden=65537", "model.hidden=65537: expected");
    override_fails("model.hidden=12a", "model.hidden=12a: expected");
    load_fails("[model]\nhidden = 64,0\n", "t.ini:2: model.hidden: expected");
}

static void test_files(void)
{
    char dir[512], path[700];
    cuvae_config c;
    cuvae_status st;
    if (cuvae_test_tmpdir(dir, sizeof dir, "config")) {
        CHECK(0);
        return;
    }
    /* output.dir from the file name when the file leaves it out or empty. */
    snprintf(path, sizeof path, "%s/my_run.ini", dir);
    const char *text = "[train]\nepochs = 3\n";
    CHECK(cuvae_test_write_file(path, text, strlen(text)) == 0);
    cuvae_config_defaults(&c);
    CHECK(cuvae_config_load_file(&c, path, &st) == 0);
    CHECK(!strcmp(c.output.dir, "runs/my_run") && c.train.epochs == 3);

    snprintf(path, sizeof path, "%s/empty_dir", dir);
    text = "[output]\ndir =\n";
    CHECK(cuvae_test_write_file(path, text, strlen(text)) == 0);
    cuvae_config_defaults(&c);
    CHECK(cuvae_config_load_file(&c, path, &st) == 0);
    CHECK(!strcmp(c.output.dir, "runs/empty_dir"));

    snprintf(path, sizeof path, "%s/given.ini", dir);
    text = "[output]\ndir = elsewhere\n";
    CHECK(cuvae_test_write_file(path, text, strlen(text)) == 0);
    CHECK(cuvae_config_load_file(&c, path, &st) == 0);
    CHECK(!strcmp(c.output.dir, "elsewhere"));

    /* Relative data paths name files next to the config file (made absolute); absolute and empty
     * ones stay; overrides are not touched. */
    snprintf(path, sizeof path, "%s/data.ini", dir);
    text = "[data]\ntrain_images = a.npy\ntrain_labels =\ntest_images = ./sub/b.npz\n"
           "test_labels = /abs/l.gz\n";
    CHECK(cuvae_test_write_file(path, text, strlen(text)) == 0);
    cuvae_config_defaults(&c);
    CHECK(cuvae_config_load_file(&c, path, &st) == 0);
    char cwd[512] = "", base[1200], expect[1400];
    if (dir[0] != '/') CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(base, sizeof base, "%s%s%s", cwd, cwd[0] ? "/" : "", dir);
    snprintf(expect, sizeof expect, "%s/a.npy", base);
    CHECK(!strcmp(c.data.train_images, expect));
    snprintf(expect, sizeof expect, "%s/sub/b.npz", base);
    CHECK(!strcmp(c.data.test_images, expect));
    CHECK(c.data.train_labels[0] == '\0' && !strcmp(c.data.test_labels, "/abs/l.gz"));
    CHECK(cuvae_config_override(&c, "data.train_images=rel.npy", &st) == 0);
    CHECK(!strcmp(c.data.train_images, "rel.npy"));

    /* Errors carry the path. */
    snprintf(path, sizeof path, "%s/bad.ini", dir);
    text = "[train]\n\nepochs = ten\n";
    CHECK(cuvae_test_write_file(path, text, strlen(text)) == 0);
    CHECK(cuvae_config_load_file(&c, path, &st) != 0);
    char want[800];
    snprintf(want, sizeof want,
             "%s:3: train.epochs: expected an integer in [1, 1000000], got "
             "'ten'",
             path);
    CHECK_MSG(st.msg, want);
    snprintf(path, sizeof path, "%s/nul.ini", dir);
    CHECK(cuvae_test_write_file(path, "[train]\nepochs = 1\0\n", 20) == 0);
    CHECK(cuvae_config_load_file(&c, path, &st) != 0);
    CHECK_MSG(st.msg, ":2: NUL byte");
    snprintf(path, sizeof path, "%s/missing.ini", dir);
    CHECK(cuvae_config_load_file(&c, path, &st) != 0);
    CHECK_MSG(st.msg, "missing.ini: cannot open");
    cuvae_test_remove_dir(dir);
}

/* Every shipped config loads and validates. */
/* model.encoder / model.decoder: the layer notation, its canonical text, and model.hidden's
 * place beside it. */
static void test_layer_notation(void)
{
    cuvae_config c;
    cuvae_status st = {{0}};
    cuvae_config_defaults(&c);
    CHECK(c.model.encoder.n == 0 && c.model.decoder.n == 0);
    CHECK(cuvae_config_override(&c, "model.encoder= conv 32 ,conv 64 k3 s1 p0,  linear 256 ",
                                &st) == 0);
    const cuvae_stack_spec *e = &c.model.encoder;
    CHECK(e->n == 3 && e->layer[0].kind == 1 && e->layer[0].c == 32 && e->layer[0].k == 4 &&
          e->layer[0].s == 2 && e->layer[0].p == 1);
    CHECK(e->layer[1].k == 3 && e->layer[1].s == 1 && e->layer[1].p == 0);
    CHECK(e->layer[2].kind == 0 && e->layer[2].c == 256 && e->layer[2].k == 0);
    CHECK(c.model.n_hidden == 0); /* the encoder replaces hidden's default */
    char text[400];
    cuvae_stack_spec_format(e, text, sizeof text);
    CHECK(!strcmp(text, "conv 32, conv 64 k3 s1 p0, linear 256"));
    CHECK(cuvae_config_override(&c, "model.decoder=linear 64x7x7, convt 32 p1 s2 k4, convt 1",
                                &st) == 0);
    const cuvae_stack_spec *d = &c.model.decoder;
    CHECK(d->n == 3 && d->layer[0].c == 64 && d->layer[0].h == 7 && d->layer[0].w == 7);
    CHECK(d->layer[1].kind == 2 && d->layer[1].k == 4);
    cuvae_stack_spec_format(d, text, sizeof text);
    CHECK(!strcmp(text, "linear 64x7x7, convt 32, convt 1"));
    round_trip(&c, "conv config");
    CHECK(cuvae_config_validate(&c, &st) == 0);

    override_fails("model.encoder=conv", "the layer's size is missing");
    override_fails("model.encoder=conv 0", "'0' in 'conv 0': expected conv|convt C");
    override_fails("model.encoder=conv 8 k65", "'k65' in 'conv 8 k65'");
    override_fails("model.encoder=conv 8 p64", "'p64' in 'conv 8 p64'");
    override_fails("model.encoder=conv 8 s0", "'s0' in 'conv 8 s0'");
    override_fails("model.encoder=conv 8 s2 s2", "'s2' in 'conv 8 s2 s2'");
    override_fails("model.encoder=conv 8x2x2", "'8x2x2' in 'conv 8x2x2'");
    override_fails("model.encoder=linear 8x2", "'8x2' in 'linear 8x2'");
    override_fails("model.encoder=linear 8 k3", "'k3' in 'linear 8 k3'");
    override_fails("model.encoder=linear 65537", "'65537' in 'linear 65537'");
    override_fails("model.encoder=conv 8,,linear 4", "an empty layer between commas");
    override_fails("model.encoder=conv 8,", "an empty layer between commas");
    override_fails("model.encoder=dense 8",
                   "'dense' is not a layer (expected linear, conv or convt)");
    override_fails("model.encoder=linear 1,linear 1,linear 1,linear 1,linear 1,linear 1,linear "
                   "1,linear 1,linear 1,linear 1",
                   "more than 9 layers");
    override_fails("model.encoder=convt 65536 k63 s63 p62, convt 65536 k63 s63 p62, convt 65536 "
                   "k63 s63 p62, convt 65536 k63 s63 p62, convt 65536 k63 s63 p62, convt 65536 k63 "
                   "s63 p62, convt 65536 k63 s63 p62, convt 65536 k63 s63 p62",
                   "the layers take 191 characters written out, at most 190");
    /* hidden and encoder: one or the other. */
    cuvae_config_defaults(&c);
    CHECK(cuvae_config_override(&c, "model.encoder=conv 8", &st) == 0);
    CHECK(cuvae_config_override(&c, "model.hidden=64", &st) != 0);
    CHECK_MSG(st.msg, "command line: model.hidden and model.encoder both describe the encoder");
    CHECK(cuvae_config_override(&c, "model.hidden=", &st) == 0);
    load_fails(
        "[model]\nencoder = conv 8\nhidden = 64\n",
        "t.ini:3: model.hidden (line 3) and model.encoder (line 2) both describe the encoder");
    CHECK(load(&c, "[model]\nhidden =\nencoder = conv 8\n", &st) == 0);
    CHECK(load(&c, "[model]\nencoder = conv 8\n", &st) == 0 && c.model.n_hidden == 0);
    c.model.n_hidden = 1;
    c.model.hidden[0] = 64;
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "model.hidden and model.encoder both describe the encoder");
    cuvae_config_defaults(&c);
    CHECK(cuvae_config_override(&c, "model.decoder=linear 784", &st) == 0);
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "model.decoder is given without model.encoder");

    /* Mutated conv configs either fail with one line or round-trip. */
    cuvae_config_defaults(&c);
    CHECK(cuvae_config_override(&c, "model.encoder=conv 3 k5 s1 p2, conv 9, linear 17", &st) == 0);
    CHECK(cuvae_config_override(&c, "model.decoder=linear 9x3x3, convt 3 s3 p0, convt 1 k3", &st) ==
          0);
    char *ini = cuvae_config_to_ini(&c);
    CHECK(ini != NULL);
    if (!ini) return;
    size_t n = strlen(ini);
    char *buf = malloc(n + 64);
    uint64_t rng = 12345;
    int loaded = 0, failed = 0;
    const char *at_enc = strstr(ini, "encoder = ");
    for (int iter = 0; iter < 3000 && buf && at_enc; iter++) {
        memcpy(buf, ini, n + 1);
        size_t len = n;
        static const char alphabet[] = "kspx, 0123456789cvlinert\t=";
        for (int e = 0; e < 1 + iter % 3; e++) {
            rng = rng * 6364136223846793005u + 1442695040888963407u;
            /* edits inside the [model] section's two layer lines */
            size_t at = (size_t)(at_enc - ini) + (size_t)(rng >> 33) % 110;
            char ch = alphabet[(rng >> 20) % (sizeof alphabet - 1)];
            if ((rng >> 10) % 2 && at < len) {
                buf[at] = ch;
            } else {
                memmove(buf + at + 1, buf + at, len - at + 1);
                buf[at] = ch;
                len++;
            }
        }
        cuvae_config m;
        cuvae_status mst = {{0}};
        cuvae_config_defaults(&m);
        if (cuvae_config_load_string(&m, buf, "fuzz", &mst)) {
            failed++;
            CHECK(strncmp(mst.msg, "fuzz", 4) == 0 && !strchr(mst.msg, '\n'));
            continue;
        }
        loaded++;
        round_trip(&m, "mutated conv");
    }
    CHECK(loaded > 50 && failed > 50);
    free(buf);
    free(ini);
}

static void test_shipped_configs(void)
{
    const char *src = getenv("CUVAE_SOURCE_DIR");
    if (!src) src = ".";
    char dir[600];
    snprintf(dir, sizeof dir, "%s/configs", src);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int seen = 0, smoke = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".ini")) continue;
        char path[1000];
        cuvae_config c;
        cuvae_status st = {{0}};
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        cuvae_config_defaults(&c);
        int rc = cuvae_config_load_file(&c, path, &st);
        if (!rc) rc = cuvae_config_validate(&c, &st);
        if (rc) fprintf(stderr, "%s: %s\n", e->d_name, st.msg);
        CHECK(rc == 0);
        seen++;
        if (!strcmp(e->d_name, "smoke.ini")) {
            smoke = 1;
            CHECK(c.data.limit_train == 2000 && c.data.limit_test == 500);
            CHECK(c.data.validation == 200 && c.model.n_hidden == 1 && c.model.hidden[0] == 64);
            CHECK(c.model.latent == 8 && c.train.epochs == 2 && c.train.batch_size == 64);
            CHECK(!strcmp(c.output.dir, "runs/smoke"));
        }
        if (!strcmp(e->d_name, "fashion_mnist.ini")) {
            cuvae_config def;
            cuvae_config_defaults(&def);
            CHECK(!strcmp(c.output.dir, "runs/fashion_mnist"));
            c.output.dir[0] = '\0';
            memset(c.output.dir, 0, sizeof c.output.dir);
            CHECK(memcmp(&c, &def, sizeof c) == 0); /* the default file is the defaults */
        }
    }
    closedir(d);
    CHECK(seen >= 3 && smoke);
}

static void test_validate(void)
{
    cuvae_config c;
    cuvae_status st;
    cuvae_config_defaults(&c);
    c.model.likelihood = CUVAE_LIK_GAUSSIAN;
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "model.likelihood=gaussian needs data.binarize=none (got dynamic)");
    c.data.binarize = CUVAE_BIN_NONE;
    CHECK(cuvae_config_validate(&c, &st) == 0);

    cuvae_config_defaults(&c);
    c.optim.min_lr = 0.01f;
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "optim.min_lr (0.01) is above optim.lr (0.001)");

    cuvae_config_defaults(&c);
    c.data.limit_train = 100;
    c.data.validation = 100;
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "data.validation (100) leaves no training examples");

    cuvae_config_defaults(&c);
    c.data.limit_train = 1000; /* 1000 - 5000 validation would fail: keep it consistent */
    c.data.validation = 200;
    c.train.batch_size = 100;
    c.train.epochs = 2; /* 8 steps an epoch, 16 in all */
    c.optim.warmup_steps = 16;
    CHECK(cuvae_config_validate(&c, &st) == 0);
    c.optim.warmup_steps = 17;
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "optim.warmup_steps (17) is longer than the whole run (at most 16 steps)");

    /* Values set in code are range-checked too. */
    cuvae_config_defaults(&c);
    c.train.epochs = 0;
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "train.epochs: expected an integer in [1, 1000000], got '0'");
    cuvae_config_defaults(&c);
    c.optim.lr = (float)NAN;
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "optim.lr: expected a number in (0, 10]");
    cuvae_config_defaults(&c);
    c.model.likelihood = (cuvae_likelihood)7;
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "model.likelihood: invalid value 7");
    cuvae_config_defaults(&c);
    c.model.n_hidden = 9;
    CHECK(cuvae_config_validate(&c, &st) != 0);
    cuvae_config_defaults(&c);
    c.data.train_images[0] = '\0';
    CHECK(cuvae_config_validate(&c, &st) != 0);
    CHECK_MSG(st.msg, "data.train_images is empty");
}

static void test_print_keys(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    if (!f) return;
    cuvae_config_print_keys(f, 1);
    fclose(f);
    CHECK_MSG(buf, "| key | default | allowed | meaning |");
    CHECK_MSG(buf, "| `train.epochs` | `10` | an integer in [1, 1000000] |");
    CHECK_MSG(buf, "| `model.likelihood` | `bernoulli` | one of bernoulli, gaussian |");
    CHECK_MSG(buf, "| `output.dir` | (empty) |");
    CHECK_MSG(buf, "empty = runs/&lt;config file name without .ini&gt; |");
    int rows = 0;
    for (char *p = buf; *p; p++) rows += *p == '\n';
    CHECK(rows == 2 + (int)cuvae_config_n_keys); /* header, rule, one row per key */
    free(buf);

    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    if (!f) return;
    cuvae_config_print_keys(f, 0);
    fclose(f);
    CHECK_MSG(buf, "  optim.lr");
    CHECK_MSG(buf, "= 1e-3\n");
    CHECK_MSG(buf, "peak learning rate; a number in (0, 10]");
    free(buf);
}

static void test_resume_diff(void)
{
    cuvae_config a, b;
    cuvae_status st = {{0}};
    char report[512];
    cuvae_config_defaults(&a);
    b = a;
    CHECK(cuvae_config_resume_diff(&a, &b, report, sizeof report, &st) == 0);
    CHECK(report[0] == '\0');

    b.train.epochs = 20;
    b.train.seed = 2;
    CHECK(cuvae_config_resume_diff(&a, &b, report, sizeof report, &st) == 0);
    CHECK(!strcmp(report, "train.epochs 10 -> 20; train.seed 1 -> 2 (resume is no longer exact)"));
    if (strcmp(report, "train.epochs 10 -> 20; train.seed 1 -> 2 (resume is no longer exact)"))
        fprintf(stderr, "report: %s\n", report);

    b.output.dir[0] = '\0';
    strcpy(a.output.dir, "runs/a");
    CHECK(cuvae_config_resume_diff(&a, &b, report, sizeof report, &st) == 0);
    CHECK_MSG(report, "output.dir runs/a -> ''");

    /* A report too small is cut at an entry and says more changed. */
    char tiny[30];
    CHECK(cuvae_config_resume_diff(&a, &b, tiny, sizeof tiny, &st) == 0);
    CHECK(!strcmp(tiny, "train.epochs 10 -> 20; ..."));

    b = a;
    b.model.latent = 16;
    CHECK(cuvae_config_resume_diff(&a, &b, report, sizeof report, &st) != 0);
    CHECK_MSG(st.msg, "resume: model.latent changed 32 -> 16: the checkpoint's tensors have "
                      "another shape; start a new run directory");
    b = a;
    b.model.n_hidden = 1;
    CHECK(cuvae_config_resume_diff(&a, &b, report, sizeof report, &st) != 0);
    CHECK_MSG(st.msg, "resume: model.hidden changed 512,256 -> 512:");
    b = a;
    b.model.likelihood = CUVAE_LIK_GAUSSIAN;
    CHECK(cuvae_config_resume_diff(&a, &b, report, sizeof report, &st) != 0);
    CHECK_MSG(st.msg, "resume: model.likelihood changed bernoulli -> gaussian");
    b = a;
    b.data.binarize = CUVAE_BIN_STATIC;
    b.optim.min_lr = 1e-5f;
    CHECK(cuvae_config_resume_diff(&a, &b, report, sizeof report, &st) == 0);
    CHECK(!strcmp(report, "data.binarize dynamic -> static (resume is no longer exact); "
                          "optim.min_lr 0 -> 1e-05"));
}

/* The parser also reads checkpoint metadata, i.e. untrusted text: mutated INI must give either an
 * error message or a config that validates its own round trip, never a crash (ASan/UBSan builds
 * check the memory side). */
static void test_mutations(void)
{
    cuvae_config base;
    cuvae_config_defaults(&base);
    base.model.n_hidden = 3;
    base.model.hidden[2] = 7;
    char *ini = cuvae_config_to_ini(&base);
    CHECK(ini != NULL);
    if (!ini) return;
    size_t n = strlen(ini);
    char *text = malloc(n + 64);
    uint64_t rng = 0x9E3779B97F4A7C15u;
    int loaded = 0, failed = 0;
    static const char alphabet[] = "=[];#:,. \t\n\r-+0123456789eEaxz\x01\xff";
    for (int iter = 0; iter < 3000 && text; iter++) {
        memcpy(text, ini, n + 1);
        size_t len = n;
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            rng = rng * 6364136223846793005u + 1442695040888963407u;
            size_t at = (size_t)(rng >> 33) % (len + 1);
            char ch = alphabet[(rng >> 20) % (sizeof alphabet - 1)];
            int op = (int)((rng >> 10) % 3);
            if (op == 0 && at < len) {
                text[at] = ch; /* replace */
            } else if (op == 1 && at < len) {
                memmove(text + at, text + at + 1, len - at); /* delete */
                len--;
            } else {
                memmove(text + at + 1, text + at, len - at + 1); /* insert */
                text[at] = ch;
                len++;
            }
        }
        cuvae_config c;
        cuvae_status st = {{0}};
        cuvae_config_defaults(&c);
        if (cuvae_config_load_string(&c, text, "fuzz", &st)) {
            failed++;
            CHECK(strncmp(st.msg, "fuzz", 4) == 0 && !strchr(st.msg, '\n'));
            continue;
        }
        loaded++;
        round_trip(&c, "mutated");
    }
    CHECK(loaded > 100 && failed > 100); /* both paths were exercised */
    free(text);
    free(ini);
}

/* Issue 11, classes 3 and 4: nothing the parser reads is dropped, and nothing it accepts is text
 * a checkpoint could not hold. */
static void test_hostile_text(void)
{
    cuvae_config c;
    cuvae_status st;
    /* Text after a section header is an error naming the line, not silently dropped. */
    load_fails("[model] latent = 16\n", "t.ini:1: text after the section header");
    load_fails("[train]\nepochs = 2\n[model]latent=16\n", "t.ini:3: text after the section");
    CHECK(load(&c, "[model] ; a comment\nlatent = 16\n[train] # another\nepochs = 2\n", &st) == 0);
    CHECK(c.model.latent == 16 && c.train.epochs == 2);
    /* CR-only line endings are lines, and the line numbers count them. */
    CHECK(load(&c, "[model]\rlatent = 16\r[train]\repochs = 2\r", &st) == 0);
    CHECK(c.model.latent == 16 && c.train.epochs == 2);
    load_fails("[model]\rlatent = 16\repoch = 2\r", "t.ini:3: unknown key 'epoch'");
    load_fails("[model]\r\nlatent = 16\r\nlatnt = 2\r\n", "t.ini:3: unknown key 'latnt'");
    /* A path that is not UTF-8 is refused where it is read, naming the key and the line. */
    load_fails("[data]\ntrain_images = /tmp/\xff\xfe.idx\n",
               "t.ini:2: data.train_images: expected a path without bytes that are not UTF-8, "
               "got '/tmp/\\xFF\\xFE.idx'");
    load_fails("[output]\ndir = runs/\xC0\xAF\n", "t.ini:2: output.dir: expected a path without "
                                                  "bytes that are not UTF-8");
    CHECK(load(&c, "[output]\ndir = runs/caf\xC3\xA9\n", &st) == 0);
    override_fails("output.dir=runs/\xff",
                   "command line: 'output.dir=runs/\\xFF': is not valid UTF-8");
    /* A newline (or any control character) in an override is refused, and quoted escaped. */
    override_fails("train.epochs=1\n2", "command line: 'train.epochs=1\\x0A2': holds a control");
    override_fails("output.dir=a\nb", "holds a control character");
    /* 1/sigma^2 must stay finite: sigma is bounded below. */
    load_fails("[model]\ngaussian_sigma = 1e-45\n", "t.ini:2: model.gaussian_sigma: expected");
    override_fails("model.gaussian_sigma=1e-4", "model.gaussian_sigma");
    CHECK(load(&c, "[model]\ngaussian_sigma = 0.001\n", &st) == 0);
}

int main(void)
{
    test_defaults();
    test_load_values();
    test_round_trip();
    test_errors();
    test_overrides();
    test_hidden_list();
    test_layer_notation();
    test_files();
    test_shipped_configs();
    test_validate();
    test_print_keys();
    test_resume_diff();
    test_mutations();
    test_hostile_text();
    return cuvae_test_finish("config");
}
