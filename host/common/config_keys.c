/* The key table: every INI key of cuvae_config with its type, range, default, meaning and resume
 * class. Parsing, defaults, range checks, printing and the resume report all read this one table,
 * so they cannot disagree. */
#include "config.h"
#include "config_keys.h"

#include <limits.h>

#include "png.h"

#define OFF(field) offsetof(cuvae_config, field)
#define DEBIAN_FMNIST "/usr/share/datasets/fashion-mnist/"

_Static_assert(sizeof(cuvae_binarize) == sizeof(int) && sizeof(cuvae_likelihood) == sizeof(int) &&
                   sizeof(cuvae_optimizer) == sizeof(int) &&
                   sizeof(cuvae_schedule) == sizeof(int) &&
                   sizeof(cuvae_precision) == sizeof(int) && sizeof(cuvae_device) == sizeof(int) &&
                   sizeof(cuvae_on_nonfinite) == sizeof(int) &&
                   sizeof(cuvae_resize_filter) == sizeof(int) &&
                   sizeof(cuvae_stream_mode) == sizeof(int),
               "enum keys are stored through an int pointer");

static const char *const binarize_names[] = {"none", "static", "dynamic", NULL};
static const char *const likelihood_names[] = {"bernoulli", "gaussian", NULL};
static const char *const device_names[] = {"auto", "cpu", "cuda", NULL};
static const char *const precision_names[] = {"fp32", "tf32", "bf16", NULL};
static const char *const nonfinite_names[] = {"stop", "skip", NULL};
static const char *const optimizer_names[] = {"adam", "adamw", NULL};
static const char *const schedule_names[] = {"constant", "cosine", NULL};
static const char *const resize_filter_names[] = {"box", "bilinear", "nearest", NULL};
static const char *const image_channels_names[] = {"auto", "grey", "rgb", NULL};
static const char *const stream_names[] = {"auto", "on", "off", NULL};

const char *const cuvae_config_sections[] = {"data", "model", "train", "optim", "eval", "output"};
const size_t cuvae_config_n_sections =
    sizeof cuvae_config_sections / sizeof cuvae_config_sections[0];

#define INT_KEY(sec, name, field, lo, hi, fl, def, doc, rc)                                        \
    {                                                                                              \
        sec, name, CUVAE_KEY_INT, OFF(field), 0, lo, hi, fl, NULL, def, doc, rc, NULL              \
    }
#define FLOAT_KEY(sec, name, field, lo, hi, fl, def, doc, rc)                                      \
    {                                                                                              \
        sec, name, CUVAE_KEY_FLOAT, OFF(field), 0, lo, hi, fl, NULL, def, doc, rc, NULL            \
    }
#define ENUM_KEY(sec, name, field, names, def, doc, rc)                                            \
    {                                                                                              \
        sec, name, CUVAE_KEY_ENUM, OFF(field), 0, 0, 0, 0, names, def, doc, rc, NULL               \
    }
#define PATH_KEY(sec, name, field, def, doc, rc)                                                   \
    {                                                                                              \
        sec, name, CUVAE_KEY_STRING, OFF(field), 0, 0, 0, 0, NULL, def, doc, rc, NULL              \
    }
#define FREE CUVAE_RESUME_FREE
#define EXACT CUVAE_RESUME_EXACT
#define NOMAX CUVAE_KEY_NO_MAX

static const cuvae_key_spec key_table[] = {
    PATH_KEY("data", "train_images", data.train_images, DEBIAN_FMNIST "train-images-idx3-ubyte.gz",
             "training images: IDX (gzip or raw), .npy or .npz (uint8, or float32: in [0, 1] read "
             "as scaled bytes, other float data kept for model.likelihood = gaussian; N x H x W, "
             "N x H x W x C, N x C x H x W or N x D), chosen by the file's content; or a folder "
             "of PNG/JPEG images (the data.image_* keys)",
             EXACT),
    PATH_KEY("data", "train_labels", data.train_labels, DEBIAN_FMNIST "train-labels-idx1-ubyte.gz",
             "training labels (IDX, or an integer .npy/.npz array); empty = none (or "
             "data.folder_labels)",
             EXACT),
    PATH_KEY("data", "test_images", data.test_images, DEBIAN_FMNIST "t10k-images-idx3-ubyte.gz",
             "test images (the formats of data.train_images)", EXACT),
    PATH_KEY("data", "test_labels", data.test_labels, DEBIAN_FMNIST "t10k-labels-idx1-ubyte.gz",
             "test labels (IDX, or an integer .npy/.npz array); empty = none (or "
             "data.folder_labels)",
             EXACT),
    PATH_KEY("data", "train_key", data.train_key, "",
             "the array of an .npz data.train_images holds; empty = x_train, else its only array "
             "(labels: y_train, else the only array)",
             EXACT),
    PATH_KEY("data", "test_key", data.test_key, "",
             "the array of an .npz data.test_images holds; empty = x_test, else its only array "
             "(labels: y_test, else the only array)",
             EXACT),
    INT_KEY("data", "validation", data.validation, 0, INT_MAX, NOMAX, "5000",
            "training examples held out for validation (seeded split)", EXACT),
    ENUM_KEY("data", "binarize", data.binarize, binarize_names, "dynamic",
             "pixels as grey levels (none), fixed 0/1 draws (static) or fresh draws every step "
             "(dynamic)",
             EXACT),
    INT_KEY("data", "limit_train", data.limit_train, 0, INT_MAX, NOMAX, "0",
            "use only the first N training examples; 0 = all", EXACT),
    INT_KEY("data", "limit_test", data.limit_test, 0, INT_MAX, NOMAX, "0",
            "use only the first N test examples; 0 = all", EXACT),
    PATH_KEY("data", "image_size", data.image_size, "",
             "image folders: resize each image to cover N x N (\"N\") or H x W (\"HxW\") and "
             "centre-crop it; empty = the images' own size, which must then be the same for all",
             EXACT),
    ENUM_KEY("data", "resize_filter", data.resize_filter, resize_filter_names, "box",
             "image folders: the filter of data.image_size: box (area mean, antialiased), "
             "bilinear (no antialiasing) or nearest",
             EXACT),
    ENUM_KEY("data", "image_channels", data.image_channels, image_channels_names, "auto",
             "image folders: channels of the set; auto = rgb when any image holds colour, else "
             "grey; grey converts colour to BT.601 luma",
             EXACT),
    {"data", "folder_labels", CUVAE_KEY_BOOL, OFF(data.folder_labels), 0, 0, 1, 0, NULL, "0",
     "image folders: label each image by its first-level subfolder (classes sorted by name; the "
     "names are saved as classes.json in the run directory); the labels key must then be empty",
     EXACT, NULL},
    ENUM_KEY("data", "stream", data.stream, stream_names, "auto",
             "the training set copied to the backend (off: on a GPU, uploaded whole) or each "
             "batch's rows copied from the data file as it trains (on: on a GPU, through pinned "
             "buffers overlapping the step); auto: the CPU streams, a GPU uploads whole when the "
             "set fits with a margin; the same batches and numbers either way",
             FREE),

    {"model", "hidden", CUVAE_KEY_INT_LIST, OFF(model.hidden), OFF(model.n_hidden), 1, 65536, 0,
     NULL, "512,256", "the MLP shorthand: encoder hidden layer sizes; the decoder mirrors them",
     CUVAE_RESUME_REFUSE, "the checkpoint's tensors have another shape"},
    {"model", "encoder", CUVAE_KEY_LAYERS, OFF(model.encoder), 0, 0, 0, 0, NULL, "",
     "the encoder's layers before the linear to [mu | logvar], e.g. 'conv 32, conv 64, linear "
     "256' (see above); replaces model.hidden",
     CUVAE_RESUME_REFUSE, "the checkpoint's tensors have another shape"},
    {"model", "decoder", CUVAE_KEY_LAYERS, OFF(model.decoder), 0, 0, 0, 0, NULL, "",
     "the decoder's layers, the last giving the data's shape, e.g. 'linear 256, linear 64x7x7, "
     "convt 32, convt 1'; empty = the encoder's mirror",
     CUVAE_RESUME_REFUSE, "the checkpoint's tensors have another shape"},
    {"model", "latent", CUVAE_KEY_INT, OFF(model.latent), 0, 1, 4096, 0, NULL, "32",
     "latent dimensions", CUVAE_RESUME_REFUSE, "the checkpoint's tensors have another shape"},
    {"model", "likelihood", CUVAE_KEY_ENUM, OFF(model.likelihood), 0, 0, 0, 0, likelihood_names,
     "bernoulli", "decoder output distribution", CUVAE_RESUME_REFUSE,
     "the checkpoint's decoder was trained for another output distribution"},
    FLOAT_KEY("model", "gaussian_sigma", model.gaussian_sigma, 1e-3, 0, NOMAX, "1.0",
              "fixed standard deviation of the Gaussian likelihood", EXACT),

    INT_KEY("train", "epochs", train.epochs, 1, 1000000, 0, "10", "passes over the training set",
            FREE),
    INT_KEY("train", "batch_size", train.batch_size, 1, 65536, 0, "128", "examples per step",
            EXACT),
    {"train", "seed", CUVAE_KEY_U64, OFF(train.seed), 0, 0, 0, 0, NULL, "1",
     "keys every random stream: init, split, shuffle, binarization, noise", EXACT, NULL},
    FLOAT_KEY("train", "beta", train.beta, 0, 0, NOMAX, "1.0", "KL weight after the warm-up",
              EXACT),
    INT_KEY("train", "kl_warmup_steps", train.kl_warmup_steps, 0, INT_MAX, NOMAX, "0",
            "steps of linear KL warm-up from 0 to beta; 0 = off", EXACT),
    FLOAT_KEY("train", "free_bits", train.free_bits, 0, 0, NOMAX, "0",
              "per-dimension KL floor in nats; 0 = off", EXACT),
    ENUM_KEY("train", "device", train.device, device_names, "auto",
             "where to train; auto = CUDA when a GPU is usable", FREE),
    ENUM_KEY("train", "precision", train.precision, precision_names, "tf32",
             "GEMM precision on the GPU (the CPU always computes fp32); bf16: the training "
             "step's GEMMs take bf16 operands, evaluation stays fp32",
             FREE),
    INT_KEY("train", "log_every", train.log_every, 1, INT_MAX, NOMAX, "100",
            "steps between metric reads and log lines", FREE),
    ENUM_KEY("train", "on_nonfinite", train.on_nonfinite, nonfinite_names, "stop",
             "on a NaN/Inf loss or gradient: stop the run, or skip the step", FREE),
    {"train", "cuda_graph", CUVAE_KEY_BOOL, OFF(train.cuda_graph), 0, 0, 1, 0, NULL, "0",
     "CUDA: capture the training step once as a CUDA graph and replay it (not yet verified on a "
     "GPU: off by default)",
     FREE, NULL},

    ENUM_KEY("optim", "type", optim.type, optimizer_names, "adam",
             "Adam, or AdamW (decoupled weight decay)", EXACT),
    FLOAT_KEY("optim", "lr", optim.lr, 0, 10, CUVAE_KEY_MIN_OPEN, "1e-3", "peak learning rate",
              EXACT),
    FLOAT_KEY("optim", "beta1", optim.beta1, 0, 1, CUVAE_KEY_MAX_OPEN, "0.9",
              "Adam first-moment decay", EXACT),
    FLOAT_KEY("optim", "beta2", optim.beta2, 0, 1, CUVAE_KEY_MAX_OPEN, "0.999",
              "Adam second-moment decay", EXACT),
    FLOAT_KEY("optim", "eps", optim.eps, 0, 0, CUVAE_KEY_MIN_OPEN | NOMAX, "1e-8",
              "Adam denominator epsilon", EXACT),
    FLOAT_KEY("optim", "weight_decay", optim.weight_decay, 0, 0, NOMAX, "0",
              "weight decay (L2 for adam, decoupled for adamw)", EXACT),
    FLOAT_KEY("optim", "grad_clip", optim.grad_clip, 0, 0, NOMAX, "0",
              "max global gradient L2 norm; 0 = off", EXACT),
    ENUM_KEY("optim", "schedule", optim.schedule, schedule_names, "constant",
             "learning-rate schedule after the warm-up", EXACT),
    INT_KEY("optim", "warmup_steps", optim.warmup_steps, 0, INT_MAX, NOMAX, "0",
            "steps of linear learning-rate warm-up; 0 = off", EXACT),
    FLOAT_KEY("optim", "min_lr", optim.min_lr, 0, 0, NOMAX, "0", "floor of the cosine schedule",
              FREE),

    INT_KEY("eval", "samples", eval.samples, 1, 1000000, 0, "5000",
            "importance samples K of the bound reported by eval", FREE),
    INT_KEY("eval", "batch_size", eval.batch_size, 1, INT_MAX, NOMAX, "100",
            "examples per evaluation batch", FREE),

    PATH_KEY("output", "dir", output.dir, "",
             "run directory; empty = runs/<config file name without .ini>", FREE),
    INT_KEY("output", "checkpoint_every_steps", output.checkpoint_every_steps, 0, INT_MAX, NOMAX,
            "0", "steps between checkpoints; 0 = off", FREE),
    INT_KEY("output", "checkpoint_every_epochs", output.checkpoint_every_epochs, 0, INT_MAX, NOMAX,
            "1", "epochs between checkpoints; 0 = off", FREE),
    INT_KEY("output", "keep_last", output.keep_last, 1, INT_MAX, NOMAX, "3",
            "step checkpoints kept (besides the best)", FREE),
    {"output", "images", CUVAE_KEY_BOOL, OFF(output.images), 0, 0, 1, 0, NULL, "1",
     "write PNG grids of reconstructions and samples each epoch", FREE, NULL},
    {"output", "tensorboard", CUVAE_KEY_BOOL, OFF(output.tensorboard), 0, 0, 1, 0, NULL, "1",
     "write TensorBoard event files (events.out.tfevents.*) in the run directory: the "
     "metrics.jsonl numbers as scalars and the epoch image grids",
     FREE, NULL},
    INT_KEY("output", "image_scale", output.image_scale, 0, CUVAE_GRID_MAX_SCALE, 0, "0",
            "pixels a data pixel takes in the PNG grids, each way (nearest neighbour); 0 = auto: "
            "tiles of at least 56 pixels (28 x 28 images drawn 2x)",
            FREE),
    {"output", "image_caption", CUVAE_KEY_BOOL, OFF(output.image_caption), 0, 0, 1, 0, NULL, "1",
     "a caption line (epoch, step) above each PNG grid", FREE, NULL},
};
_Static_assert(sizeof key_table / sizeof key_table[0] == CUVAE_CONFIG_N_KEYS,
               "a key was added or removed: update CUVAE_CONFIG_N_KEYS in config_keys.h");
const cuvae_key_spec *const cuvae_config_keys = key_table;
const size_t cuvae_config_n_keys = CUVAE_CONFIG_N_KEYS;

const char *cuvae_precision_name(cuvae_precision p)
{
    return (unsigned)p < 3 ? precision_names[p] : "?";
}

const char *cuvae_device_name(cuvae_device d)
{
    return (unsigned)d < 3 ? device_names[d] : "?";
}
