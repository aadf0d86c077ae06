"""What every Python peer of cuvae shares, with numpy only: the INI config (the same file and
keys as cuvae, defaults mirroring host/common/config.c, section.key=value overrides), the IDX reader, the
data of a run split and binarized exactly as cuvae_run_data_load does (through philox.py), and
the machine's description."""

import configparser
import gzip
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import philox  # noqa: E402
from report import cpu_model, load_average  # noqa: E402,F401 (re-exported to the peers)

EPOCH_EXAMPLES = 55000
DEBIAN_FMNIST = "/usr/share/datasets/fashion-mnist/"

# host/common/config.c's key table: section -> key -> default text.
DEFAULTS = {
    "data": {
        "train_images": DEBIAN_FMNIST + "train-images-idx3-ubyte.gz",
        "train_labels": DEBIAN_FMNIST + "train-labels-idx1-ubyte.gz",
        "test_images": DEBIAN_FMNIST + "t10k-images-idx3-ubyte.gz",
        "test_labels": DEBIAN_FMNIST + "t10k-labels-idx1-ubyte.gz",
        "train_key": "",  # .npz arrays: the peers read IDX files only
        "test_key": "",
        "validation": "5000",
        "binarize": "dynamic",
        "limit_train": "0",
        "limit_test": "0",
        "image_size": "",  # image folders: the peers read IDX files only
        "resize_filter": "box",
        "image_channels": "auto",
        "folder_labels": "0",
        "stream": "auto",  # where cuvae keeps the training set: no effect on the numbers
    },
    "model": {"hidden": "512,256", "encoder": "", "decoder": "", "latent": "32",
              "likelihood": "bernoulli", "gaussian_sigma": "1.0"},
    "train": {"epochs": "10", "batch_size": "128", "seed": "1", "beta": "1.0",
              "kl_warmup_steps": "0", "free_bits": "0", "device": "auto", "precision": "tf32",
              "log_every": "100", "on_nonfinite": "stop", "cuda_graph": "0"},
    "optim": {"type": "adam", "lr": "1e-3", "beta1": "0.9", "beta2": "0.999", "eps": "1e-8",
              "weight_decay": "0", "grad_clip": "0", "schedule": "constant", "warmup_steps": "0",
              "min_lr": "0"},
    "eval": {"samples": "5000", "batch_size": "100"},
    "output": {"dir": "", "checkpoint_every_steps": "0", "checkpoint_every_epochs": "1",
               "keep_last": "3", "images": "1", "tensorboard": "1", "image_scale": "0",
               "image_caption": "1"},
}


def parse_layers(text):
    """model.encoder / model.decoder (host/common/layer_spec.c): comma-separated `linear N`,
    `linear CxHxW`, `conv C [kK sS pP]`, `convt C [kK sS pP]` (defaults k4 s2 p1), as a list of
    (kind, out_shape, k, s, p) with kind "linear", "conv" or "convt" and out_shape (C,) or
    (C, H, W) for a linear, (C,) for a conv."""
    layers = []
    for item in (t.strip() for t in text.split(",")) if text.strip() else ():
        words = item.split()
        kind = words[0]
        if kind not in ("linear", "conv", "convt") or len(words) < 2:
            raise SystemExit("torch_vae: layer %r: expected linear, conv or convt and a size"
                             % item)
        size = tuple(int(v) for v in words[1].split("x"))
        ksp = {"k": 4, "s": 2, "p": 1} if kind != "linear" else {}
        for w in words[2:]:
            ksp[w[0]] = int(w[1:])
        layers.append((kind, size, ksp.get("k", 0), ksp.get("s", 0), ksp.get("p", 0)))
    return layers


def layer_plan(x_shape, cfg):
    """The layers of cuvae's model (host/common/model.c's cuvae_model_layout_shape) as two lists
    of (kind, in_shape, out_shape, k, s, p), kind "linear", "conv2d" or "conv_transpose2d",
    shapes (C, H, W); a linear's output is (N, 1, 1) unless reshaped."""
    def out_of(kind, shp, size, k, s, p):
        if kind == "linear":
            return size if len(size) == 3 else (size[0], 1, 1)
        c, h, w = shp
        if kind == "conv":
            return (size[0], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
        return (size[0], (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k)

    names = {"linear": "linear", "conv": "conv2d", "convt": "conv_transpose2d"}
    spec = cfg.encoder or [("linear", (h,), 0, 0, 0) for h in cfg.hidden]
    enc, shp = [], tuple(x_shape)
    for kind, size, k, s, p in spec:
        out = out_of(kind, shp, size, k, s, p)
        enc.append((names[kind], shp, out, k, s, p))
        shp = out
    enc.append(("linear", shp, (2 * cfg.latent, 1, 1), 0, 0, 0))
    dec, shp = [], (cfg.latent, 1, 1)
    if cfg.decoder:
        for kind, size, k, s, p in cfg.decoder:
            out = out_of(kind, shp, size, k, s, p)
            dec.append((names[kind], shp, out, k, s, p))
            shp = out
    else:  # the mirror: every encoder layer reversed, mapping its output back to its input
        for i in range(len(enc) - 1, -1, -1):
            kind, e_in, e_out, k, s, p = enc[i]
            if kind == "linear":
                n = e_in[0] * e_in[1] * e_in[2]
                out = e_in if i > 0 and e_in[1] * e_in[2] > 1 else (n, 1, 1)
                dec.append(("linear", shp, out, 0, 0, 0))
            else:
                out = e_in
                dec.append(("conv_transpose2d", shp, out, k, s, p))
            shp = out
    return enc, dec


class Config:
    """The typed values of a cuvae INI config (file, INI text, or defaults) plus overrides."""

    def __init__(self, path=None, text=None, overrides=()):
        cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None,
                                       strict=False)
        cp.read_dict(DEFAULTS)
        origin = "defaults"
        if path is not None:
            origin = path
            with open(path, encoding="utf-8") as f:
                cp.read_file(f, source=path)
        if text is not None:
            origin = "checkpoint metadata"
            cp.read_string(text, source=origin)
        for ov in overrides:
            key, sep, value = ov.partition("=")
            section, dot, name = key.partition(".")
            if not sep or not dot:
                raise SystemExit("torch_vae: override %r: expected section.key=value" % ov)
            if section not in DEFAULTS or name not in DEFAULTS[section]:
                raise SystemExit("torch_vae: override %r: unknown key %s" % (ov, key))
            cp.set(section, name, value)
        for section in cp.sections():
            for name in cp[section]:
                if section not in DEFAULTS or name not in DEFAULTS[section]:
                    raise SystemExit("torch_vae: %s: unknown key %s.%s" % (origin, section, name))

        def get(s, k):
            return cp.get(s, k).strip().strip('"')

        self.train_images = get("data", "train_images")
        self.test_images = get("data", "test_images")
        self.validation = int(get("data", "validation"))
        self.binarize = get("data", "binarize").lower()
        self.limit_train = int(get("data", "limit_train"))
        self.limit_test = int(get("data", "limit_test"))
        hidden = get("model", "hidden")
        self.hidden = [int(h) for h in hidden.split(",") if h.strip()]
        self.encoder = parse_layers(get("model", "encoder"))
        self.decoder = parse_layers(get("model", "decoder"))
        if self.encoder:
            self.hidden = []  # model.encoder replaces model.hidden (cuvae refuses both given)
        self.latent = int(get("model", "latent"))
        self.likelihood = get("model", "likelihood").lower()
        self.gaussian_sigma = float(get("model", "gaussian_sigma"))
        self.epochs = int(get("train", "epochs"))
        self.batch_size = int(get("train", "batch_size"))
        self.seed = int(get("train", "seed"), 0)
        self.beta = float(get("train", "beta"))
        self.kl_warmup_steps = int(get("train", "kl_warmup_steps"))
        self.free_bits = float(get("train", "free_bits"))
        self.optimizer = get("optim", "type").lower()
        self.lr = float(get("optim", "lr"))
        self.beta1 = float(get("optim", "beta1"))
        self.beta2 = float(get("optim", "beta2"))
        self.eps = float(get("optim", "eps"))
        self.weight_decay = float(get("optim", "weight_decay"))
        self.grad_clip = float(get("optim", "grad_clip"))
        self.schedule = get("optim", "schedule").lower()
        self.warmup_steps = int(get("optim", "warmup_steps"))
        self.min_lr = float(get("optim", "min_lr"))
        self.eval_samples = int(get("eval", "samples"))
        self.eval_batch_size = int(get("eval", "batch_size"))
        if self.binarize not in ("none", "static", "dynamic"):
            raise SystemExit("torch_vae: %s: data.binarize: expected none, static or dynamic, "
                             "got %r" % (origin, self.binarize))
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise SystemExit("torch_vae: %s: model.likelihood: expected bernoulli or gaussian, "
                             "got %r" % (origin, self.likelihood))
        if self.optimizer not in ("adam", "adamw"):
            raise SystemExit("torch_vae: %s: optim.type: expected adam or adamw, got %r"
                             % (origin, self.optimizer))

    def lr_at(self, step, total_steps):
        """cuvae_schedule_lr: linear warm-up, then constant or cosine down to min_lr."""
        warm = max(self.warmup_steps, 0)
        if step < warm:
            return self.lr * (step + 1) / warm
        if self.schedule == "constant":
            return self.lr
        span = float(total_steps - warm) if total_steps > warm else 1.0
        progress = min(1.0, (step - warm) / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def beta_at(self, step):
        """cuvae_schedule_beta: linear KL warm-up from 0 to beta."""
        if self.kl_warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, (step + 1) / self.kl_warmup_steps)


# ---- data -------------------------------------------------------------------------------------

def read_idx_images(path, limit=0):
    """An IDX image file (gzip or raw) as uint8 [n, rows*cols], plus (rows, cols)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 16:
        raise SystemExit("torch_vae: %s: shorter than an IDX image header" % path)
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x803:
        raise SystemExit("torch_vae: %s: magic 0x%08x, expected 0x00000803" % (path, magic))
    if len(raw) != 16 + n * rows * cols:
        raise SystemExit("torch_vae: %s: %d bytes of pixels, expected %d"
                         % (path, len(raw) - 16, n * rows * cols))
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows * cols)
    if limit > 0:
        pixels = pixels[:limit]
    return np.ascontiguousarray(pixels), (rows, cols)


def run_data(cfg, need_train=True):
    """cuvae_run_data_load's sets: (train, valid, test) uint8 arrays, split and binarized as cuvae
    does (dynamic binarization is left to each step)."""
    test, shape = read_idx_images(cfg.test_images, cfg.limit_test)
    train = valid = None
    if need_train:
        everything, tshape = read_idx_images(cfg.train_images, cfg.limit_train)
        if tshape != shape:
            raise SystemExit("torch_vae: %s has %s images but %s has %s"
                             % (cfg.train_images, tshape, cfg.test_images, shape))
        if not 0 <= cfg.validation < len(everything):
            raise SystemExit("torch_vae: data.validation %d must be smaller than the %d training "
                             "examples" % (cfg.validation, len(everything)))
        if cfg.validation == 0:
            train, valid = everything, everything[:0]
        else:
            perm = philox.permutation(cfg.seed, philox.STREAM_SPLIT, 0, len(everything))
            held = np.zeros(len(everything), dtype=bool)
            held[perm[:cfg.validation]] = True
            valid, train = everything[held], everything[~held]
        if cfg.binarize == "static":
            train = philox.binarize_fixed(train, cfg.seed)
    if cfg.binarize != "none":
        test = philox.binarize_fixed(test, philox.TEST_BINARIZE_SEED)
        if valid is not None and len(valid):
            valid = philox.binarize_fixed(valid, philox.TEST_BINARIZE_SEED + 1)
    return train, valid, test


def image_shape(path):
    """(C, H, W) of one image of an IDX or .npy file's header (cuvae's readers' rules: IDX N x H x
    W is one channel, N x H x W x 3 three; .npy N x H x W, N x H x W x 1|3, N x 1|3 x H x W or N x
    D), or None when it cannot be read."""
    try:
        if path.endswith(".npy"):
            a = np.load(path, mmap_mode="r")
            s = a.shape[1:]
            if len(s) == 1:
                return (1, 1, s[0])
            if len(s) == 2:
                return (1, s[0], s[1])
            if len(s) == 3 and s[0] in (1, 3) and s[2] not in (1, 3):
                return (s[0], s[1], s[2])
            if len(s) == 3:
                return (s[2], s[0], s[1])
            return None
        with open(path, "rb") as f:
            opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            magic = struct.unpack(">I", f.read(4))[0]
            if magic == 0x803:
                rows, cols = struct.unpack(">III", f.read(12))[1:]
                return (1, rows, cols)
            if magic == 0x804:
                rows, cols, ch = struct.unpack(">IIII", f.read(16))[1:]
                return (ch, rows, cols)
    except (OSError, ValueError, struct.error):
        pass
    return None


def idx_x_dim(path):
    """Pixels per image from an IDX header (28x28 when the file cannot be read)."""
    shape = image_shape(path) if path.endswith(".npy") else None
    if shape:
        return shape[0] * shape[1] * shape[2]
    try:
        with open(path, "rb") as f:
            opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            magic, _, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic == 0x803:
            return rows * cols
    except (OSError, struct.error):
        pass
    print("note: %s not readable; synthetic data uses 28x28 images" % path,
          file=sys.stderr)
    return 784
