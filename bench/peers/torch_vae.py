#!/usr/bin/env python3
"""The cuvae model in PyTorch: the peer of `cuvae bench` and the reference the CPU trainer is
validated against.

The model, the loss and the optimizer are cuvae's (host/common/model.h, host/backend/backend.h, host/cpu/cpu_ops.h):
an MLP encoder x -> hidden... -> [mu | log sigma^2] and a mirrored decoder z -> ... -> logits
(Bernoulli) or means (Gaussian), ReLU between layers, torch.nn.Linear layers (whose state_dict names,
encoder.{i}.weight ..., are the checkpoint's tensor names); loss per example = -log p(x|z) summed
over pixels (BCEWithLogits for Bernoulli) + beta * closed-form KL (with the free-bits floor when
configured), mean over the batch; Adam or AdamW with the config's parameters. Everything is read
from the same INI file as cuvae (vae_common.py: configparser, defaults mirroring host/common/config.c).

Three uses:
  --bench (default)   time training steps: --device cpu|cuda, --mode eager|compile|compile-max|graph,
                      --precision fp32|tf32|bf16, the whole training set on the device and indexed
                      per step, dynamic binarization with torch.bernoulli each step. JSON: the
                      median step time, samples/s and the epoch time for 55000 examples.
  --train-epochs E    train on the config's real data for E epochs and report the test negative
                      ELBO (test set binarized once) and the epoch times: the reference for the
                      "ten epochs within 1% of PyTorch" check of the CPU trainer.
  --checkpoint FILE   load a cuvae checkpoint (safetensors) and evaluate the test set with cuvae's
                      own evaluation noise (bench/peers/philox.py), so the figure can be compared
                      with `cuvae eval` number for number; with --noise torch the noise is drawn
                      by torch.randn on the device instead, and the timed figure (seconds,
                      examples/s) is the peer's of the K-sample evaluation (--eval-rows: rows of
                      B x K decoded at once, as cuvae's 65536).

What --train-epochs shares with `cuvae train`, and what it does not:
  - the same validation split (philox.py reproduces cuvae_permutation(seed, SPLIT, 0): the first
    data.validation entries of the permutation are held out), the same per-epoch shuffle
    (cuvae_permutation(seed, SHUFFLE, epoch)), the same dropped partial last batch, the same
    learning-rate and KL schedules, and the same fixed binarization of the validation and test
    sets (CUVAE_TEST_BINARIZE_SEED and + 1);
  - by default its own initial parameters (torch.nn.Linear's init: the same distribution, other
    values) and its own noise (torch.bernoulli, torch.randn_like seeded by train.seed): an
    independent run, as the acceptance check wants. --init cuvae and --noise cuvae use cuvae's
    exact initial parameters and noise instead (computed with philox.py; slower), which makes
    the two trainers follow the same trajectory up to float rounding.
"""

import argparse
import json
import math
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import emit_json  # noqa: E402
import philox  # noqa: E402
from tuning import openblas_in_process  # noqa: E402
from vae_common import EPOCH_EXAMPLES, Config, cpu_model, idx_x_dim, load_average  # noqa: E402
from vae_common import image_shape, layer_plan, run_data  # noqa: E402

# ---- model ------------------------------------------------------------------------------------

def default_shape(x_dim):
    """cuvae_shape_default: one channel, square when x_dim is a perfect square, else one row."""
    r = int(round(math.sqrt(x_dim)))
    return (1, r, r) if r * r == x_dim else (1, 1, x_dim)


def make_layer(kind, in_shape, out_shape, k, s, p):
    """torch's module of a cuvae layer: Linear [out, in], Conv2d [out, in, k, k],
    ConvTranspose2d [in, out, k, k] (the checkpoint's layouts)."""
    if kind == "linear":
        return nn.Linear(int(np.prod(in_shape)), int(np.prod(out_shape)))
    if kind == "conv2d":
        return nn.Conv2d(in_shape[0], out_shape[0], k, stride=s, padding=p)
    return nn.ConvTranspose2d(in_shape[0], out_shape[0], k, stride=s, padding=p)


class VAE(nn.Module):
    """cuvae's model: layer_plan's layers (an MLP for model.hidden), ReLU between layers,
    activations flattened in C, H, W order between convolutions and linears."""

    def __init__(self, x_dim, hidden, latent, likelihood="bernoulli", sigma=1.0, cfg=None,
                 x_shape=None):
        super().__init__()
        self.x_dim, self.latent, self.likelihood, self.sigma = x_dim, latent, likelihood, sigma
        if cfg is None:  # the MLP of model.hidden
            cfg = argparse.Namespace(encoder=[], decoder=[], hidden=list(hidden), latent=latent)
        self.x_shape = tuple(x_shape or default_shape(x_dim))
        enc, dec = layer_plan(self.x_shape, cfg)
        self.enc_plan, self.dec_plan = enc, dec
        self.encoder = nn.ModuleList(make_layer(*layer) for layer in enc)
        self.decoder = nn.ModuleList(make_layer(*layer) for layer in dec)

    @staticmethod
    def _run(layers, plan, h):
        for i, (layer, (kind, in_shape, _, _, _, _)) in enumerate(zip(layers, plan)):
            h = h.reshape(h.shape[0], -1) if kind == "linear" else h.reshape(h.shape[0], *in_shape)
            h = layer(h)
            if i + 1 < len(layers):
                h = F.relu(h)
        return h.reshape(h.shape[0], -1)

    def encode(self, x):
        h = self._run(self.encoder, self.enc_plan, x)
        return h[:, :self.latent], h[:, self.latent:]

    def decode(self, z):
        return self._run(self.decoder, self.dec_plan, z)

    def rec(self, out, x):
        """-log p(x|z) per example, summed over pixels, in fp32 (or wider) whatever the GEMMs."""
        out = out.to(x.dtype) if x.dtype == torch.float64 else out.float()
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
        s = self.sigma
        return (0.5 * ((x - out) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)).sum(1)


def kl_terms(mu, logvar):
    """Closed-form KL(q || N(0, I)) per example and dimension."""
    mu, logvar = mu.float() if mu.dtype != torch.float64 else mu, \
        logvar.float() if logvar.dtype != torch.float64 else logvar
    return 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar)


def make_model(cfg, x_dim, device, init="torch"):
    torch.manual_seed(cfg.seed)
    shape = image_shape(cfg.train_images) if (cfg.encoder or cfg.decoder) else None
    if shape and shape[0] * shape[1] * shape[2] != x_dim:
        shape = None
    model = VAE(x_dim, cfg.hidden, cfg.latent, cfg.likelihood, cfg.gaussian_sigma, cfg=cfg,
                x_shape=shape)
    if init == "cuvae" and (cfg.encoder or cfg.decoder):
        raise SystemExit("torch_vae: --init cuvae draws the MLP of model.hidden only")
    if init == "cuvae":
        sd = {name: torch.from_numpy(a.copy())
              for name, a in philox.model_init(cfg.seed, x_dim, cfg.hidden, cfg.latent)}
        model.load_state_dict(sd)
    return model.to(device)


def make_optimizer(cfg, model, lr=None, **extra):
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=cfg.lr if lr is None else lr, betas=(cfg.beta1, cfg.beta2),
               eps=cfg.eps, weight_decay=cfg.weight_decay, **extra)


# ---- precision and machine --------------------------------------------------------------------

def set_precision(precision, device):
    """fp32: no TF32 anywhere; tf32: TF32 matmuls and convolutions; bf16: autocast to bfloat16."""
    if device.type == "cpu" and precision == "tf32":
        raise SystemExit("torch_vae: tf32 is a CUDA precision; the CPU computes fp32 or bf16")
    tf32 = precision == "tf32"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        if hasattr(torch, "set_float32_matmul_precision"):
            torch.set_float32_matmul_precision("high" if tf32 else "highest")


def autocast(precision, device, cache=True):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return torch.autocast(device_type=device.type, enabled=False)


def machine(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pick_device(name):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch_vae: --device cuda: torch.cuda.is_available() is False")
    return torch.device(name)


# ---- benchmark --------------------------------------------------------------------------------

def make_step(mode, model, opt, data, dynamic, precision, device, beta, free_bits, grad_clip):
    """A function run_step(idx) -> None that performs one training step on the rows `idx` (a
    device tensor) and adds the batch's per-example loss sum to the returned accumulator."""
    acc = torch.zeros((), dtype=torch.float32, device=device)

    def forward_loss(idx):
        x = data[idx].float().div_(255.0)
        if dynamic:
            x = torch.bernoulli(x)
        with autocast(precision, device, cache=(mode != "graph")):
            mu, logvar = model.encode(x)
            eps = torch.randn_like(mu, dtype=torch.float32)
            return batch_loss_parts(model, x, mu, logvar, eps, beta, free_bits)

    def update():
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()

    if mode == "eager":
        def run_step(idx):
            opt.zero_grad(set_to_none=True)
            loss, total = forward_loss(idx)
            loss.backward()
            update()
            acc.add_(total.detach())
        return run_step, acc

    if mode in ("compile", "compile-max"):
        if not hasattr(torch, "compile"):
            raise SystemExit("torch_vae: --mode %s needs torch.compile (PyTorch 2); this is %s"
                             % (mode, torch.__version__))
        kw = {"mode": "max-autotune"} if mode == "compile-max" else {}
        loss_fn = torch.compile(forward_loss, **kw)
        # The compiled-optimizer recipe of the PyTorch tutorial: torch.compile around opt.step.
        opt_step = torch.compile(update, fullgraph=False, **kw)

        def run_step(idx):
            opt.zero_grad(set_to_none=True)
            loss, total = loss_fn(idx)
            loss.backward()
            opt_step()
            acc.add_(total.detach())
        return run_step, acc

    if mode == "graph":
        # Whole-step capture as in the CUDA-graphs section of the PyTorch docs: static input
        # (the index buffer), warm-up on a side stream, then capture forward, backward and the
        # (capturable) optimizer step; each step copies its indices in and replays.
        if device.type != "cuda":
            raise SystemExit("torch_vae: --mode graph needs --device cuda")
        static_idx = None

        def capture(batch):
            nonlocal static_idx
            static_idx = torch.arange(batch, dtype=torch.long, device=device)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    opt.zero_grad(set_to_none=True)
                    loss, _ = forward_loss(static_idx)
                    loss.backward()
                    update()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                loss, total = forward_loss(static_idx)
                loss.backward()
                update()
                acc.add_(total.detach())
            return graph

        graph = None

        def run_step(idx):
            nonlocal graph
            if graph is None:
                graph = capture(idx.shape[0])
            static_idx.copy_(idx)
            graph.replay()
        return run_step, acc

    raise SystemExit("torch_vae: unknown --mode %r" % mode)


def batch_loss_parts(model, x, mu, logvar, eps, beta, free_bits):
    z = mu + torch.exp(0.5 * logvar) * eps.to(mu.dtype)
    rec = model.rec(model.decode(z), x)
    kl = kl_terms(mu, logvar)
    if free_bits > 0:
        kl = torch.clamp(kl, min=free_bits)
    per_example = rec + beta * kl.sum(1)
    return per_example.mean(), per_example.sum()


def bench_one(cfg, device, mode, precision, batch, pixels, args):
    set_precision(precision, device)
    # The peer's best setting for a timed run of fixed shapes: cuDNN times its convolution
    # algorithms at the first call of each shape and keeps the fastest (convs only; the
    # evaluation and interop paths keep cuDNN's default choice).
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = make_model(cfg, pixels.shape[1], device)
    extra = {"capturable": True} if mode == "graph" else {}
    opt = make_optimizer(cfg, model, **extra)
    data = torch.from_numpy(pixels).to(device)  # uploaded once
    n = data.shape[0]
    gen = torch.Generator(device="cpu")
    gen.manual_seed(cfg.seed)
    order = torch.randperm(n, generator=gen).to(device)
    dynamic = cfg.binarize == "dynamic"
    run_step, acc = make_step(mode, model, opt, data, dynamic, precision, device, cfg.beta,
                              cfg.free_bits, cfg.grad_clip)
    position = [0]

    def indices():
        start = (position[0] * batch) % n
        position[0] += 1
        idx = order[start:start + batch]
        if idx.shape[0] < batch:
            idx = torch.cat([idx, order[:batch - idx.shape[0]]])
        return idx

    def run(count):
        for _ in range(count):
            run_step(indices())
        total = acc.item()  # the sync point, as cuvae's read_metrics
        acc.zero_()
        return total

    first = run(1) / batch  # validate before timing (and compile / capture)
    if not math.isfinite(first):
        raise SystemExit("torch_vae: %s %s batch %d: the first step gave a non-finite loss"
                         % (mode, precision, batch))
    if args.warmup:
        run(args.warmup)
    times = []
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        total = run(args.steps)
        sync(device)
        times.append(time.perf_counter() - t0)
        if not math.isfinite(total):
            raise SystemExit("torch_vae: %s %s batch %d: a timed step gave a non-finite loss"
                             % (mode, precision, batch))
    step_s = statistics.median(times) / args.steps
    result = {
        "batch": batch, "precision": precision, "mode": mode, "status": "ok",
        "first_loss": first,
        "step_ms": step_s * 1e3,
        "samples_per_s": batch / step_s,
        "epoch_s_55000": EPOCH_EXAMPLES / (batch / step_s),
        "repeat_step_ms": [t * 1e3 / args.steps for t in times],
    }
    if device.type == "cuda":
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    return result


def bench(cfg, args):
    device = pick_device(args.device)
    if args.data:
        pixels, _, _ = run_data(cfg)
    else:
        x_dim = idx_x_dim(cfg.train_images)
        n = max(16384, max(args.batch))
        pixels = np.random.default_rng(cfg.seed).integers(0, 256, size=(n, x_dim),
                                                          dtype=np.uint8)
        if cfg.binarize == "static":
            pixels = philox.binarize_fixed(pixels, cfg.seed)
    results = []
    for precision in args.precision:
        for batch in args.batch:
            if batch > len(pixels):
                raise SystemExit("torch_vae: --batch %d: larger than the %d training examples"
                                 % (batch, len(pixels)))
            r = bench_one(cfg, device, args.mode, precision, batch, pixels, args)
            print("torch %-11s %-4s batch %5d: %8.3f ms/step %10.0f samples/s"
                  % (args.mode, precision, batch, r["step_ms"], r["samples_per_s"]),
                  file=sys.stderr)
            results.append(r)
    return {
        "peer": "torch", "torch_version": torch.__version__, "device": device.type,
        "machine": machine(device), "cpu": cpu_model(), "threads": torch.get_num_threads(),
        "blas": openblas_in_process(), "load_average": load_average(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "mode": args.mode, "data": "config" if args.data else "synthetic",
        "train_examples": int(len(pixels)), "steps": args.steps, "warmup": args.warmup,
        "repeats": args.repeats, "epoch_examples": EPOCH_EXAMPLES, "settings": results,
    }


# ---- evaluation -------------------------------------------------------------------------------

LOG_2PI = math.log(2.0 * math.pi)


@torch.no_grad()
def evaluate(model, pixels, K, noise, batch=100, dtype=torch.float32):
    """Mean negative ELBO and K-sample bound over `pixels` (uint8 [n, d], already binarized when
    the config binarizes). noise(first, count) returns standard normals for elements
    [first, first + count) of the evaluation stream, element (i*K + k)*L + d for example i."""
    device = next(model.parameters()).device
    L = model.latent
    sums = {"neg_elbo": 0.0, "neg_iw_bound": 0.0, "rec": 0.0, "kl": 0.0}
    n = len(pixels)
    for a in range(0, n, batch):
        b = min(n, a + batch)
        x = torch.from_numpy(np.asarray(pixels[a:b], dtype=np.float64) / 255.0).to(device, dtype)
        mu, logvar = model.encode(x)
        mu, logvar = mu.to(dtype), logvar.to(dtype)
        eps = noise(a * K * L, (b - a) * K * L).to(device, dtype).reshape(b - a, K, L)
        z = mu[:, None, :] + torch.exp(0.5 * logvar)[:, None, :] * eps
        out = model.decode(z.reshape(-1, L).to(next(model.parameters()).dtype))
        rec = model.rec(out.to(dtype), x.repeat_interleave(K, dim=0)).reshape(b - a, K)
        kl = kl_terms(mu, logvar).sum(1)
        log_p_z = (-0.5 * z * z - 0.5 * LOG_2PI).sum(2)
        log_q_z = (-0.5 * eps * eps - 0.5 * logvar[:, None, :] - 0.5 * LOG_2PI).sum(2)
        log_w = -rec + log_p_z - log_q_z
        neg_iw = -(torch.logsumexp(log_w.double(), dim=1) - math.log(K))
        sums["neg_elbo"] += float((rec.double().mean(1) + kl.double()).sum())
        sums["neg_iw_bound"] += float(neg_iw.sum())
        sums["rec"] += float(rec.double().mean(1).sum())
        sums["kl"] += float(kl.double().sum())
    return {k: v / n for k, v in sums.items()}


def cuvae_eval_noise(seed, counter=0):
    return lambda first, count: torch.from_numpy(
        philox.normals(seed, philox.STREAM_EVAL, counter, first, count))


def torch_eval_noise(seed, device=torch.device("cpu")):
    gen = torch.Generator(device=device)
    gen.manual_seed(seed + 1)
    return lambda first, count: torch.randn(count, generator=gen, device=device)


# ---- training on the real data ----------------------------------------------------------------

def train_epochs(cfg, args):
    device = pick_device(args.device)
    set_precision(args.precision[0], device)
    precision = args.precision[0]
    train, valid, test = run_data(cfg)
    d = train.shape[1]
    model = make_model(cfg, d, device, init=args.init)
    opt = make_optimizer(cfg, model)
    data = torch.from_numpy(train).to(device)
    n = len(train)
    bs = cfg.batch_size
    if bs > n:
        raise SystemExit("torch_vae: train.batch_size %d is larger than the %d training examples"
                         % (bs, n))
    steps_per_epoch = n // bs
    total_steps = steps_per_epoch * args.train_epochs
    dynamic = cfg.binarize == "dynamic"
    torch.manual_seed(cfg.seed)
    eval_noise = cuvae_eval_noise if args.noise == "cuvae" else torch_eval_noise
    step = 0
    epochs = []
    t_run = time.perf_counter()
    for epoch in range(args.train_epochs):
        t0 = time.perf_counter()
        order = philox.permutation(cfg.seed, philox.STREAM_SHUFFLE, epoch, n)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for s in range(steps_per_epoch):
            rows = order[s * bs:(s + 1) * bs]
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(step, total_steps)
            beta = cfg.beta_at(step)
            if args.noise == "cuvae":
                raw = train[rows]
                if dynamic:
                    w = philox.word_range(cfg.seed, philox.STREAM_BINARIZE, step, 0, raw.size)
                    raw = philox.bernoulli_bytes(w, raw.reshape(-1)).reshape(raw.shape) * 255
                x = torch.from_numpy(raw.astype(np.float32) / np.float32(255)).to(device)
                eps = torch.from_numpy(philox.normals(cfg.seed, philox.STREAM_REPARAM, step, 0,
                                                      bs * cfg.latent).reshape(bs, cfg.latent))
                eps = eps.to(device)
            else:
                idx = torch.from_numpy(rows).to(device)
                x = data[idx].float().div_(255.0)
                if dynamic:
                    x = torch.bernoulli(x)
                eps = None
            opt.zero_grad(set_to_none=True)
            with autocast(precision, device):
                mu, logvar = model.encode(x)
                if eps is None:
                    eps = torch.randn_like(mu, dtype=torch.float32)
                loss, total = batch_loss_parts(model, x, mu, logvar, eps, beta, cfg.free_bits)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss_sum += total.detach().double()
            step += 1
        train_loss = float(loss_sum) / (steps_per_epoch * bs)
        sync(device)
        train_s = time.perf_counter() - t0
        entry = {"epoch": epoch + 1, "step": step, "loss": train_loss, "train_s": train_s}
        if len(valid):
            v = evaluate(model, valid, 1, eval_noise(cfg.seed), cfg.eval_batch_size)
            entry["valid_neg_elbo"] = v["neg_elbo"]
        entry["epoch_s"] = time.perf_counter() - t0  # training plus validation, as cuvae's
        epochs.append(entry)
        print("torch epoch %d/%d: loss %.4f valid %.4f (%.1f s)"
              % (epoch + 1, args.train_epochs, train_loss, entry.get("valid_neg_elbo", float("nan")),
                 entry["epoch_s"]), file=sys.stderr)
    result = {
        "peer": "torch", "torch_version": torch.__version__, "device": device.type,
        "machine": machine(device), "cpu": cpu_model(), "threads": torch.get_num_threads(),
        "blas": openblas_in_process(), "load_average": load_average(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "precision": precision, "init": args.init, "noise": args.noise,
        "train_examples": n, "valid_examples": int(len(valid)), "batch": bs,
        "steps": step, "epochs": epochs, "train_wall_s": time.perf_counter() - t_run,
        "split": "cuvae's (philox.py permutation of (seed, SPLIT, 0))",
    }
    t = evaluate(model, test, 1, eval_noise(cfg.seed), cfg.eval_batch_size)
    result["test_neg_elbo"] = t["neg_elbo"]
    result["test_rec"], result["test_kl"] = t["rec"], t["kl"]
    if args.eval_samples and args.eval_samples > 1:
        k = args.eval_samples
        iw = evaluate(model, test, k, eval_noise(cfg.seed), max(1, 16384 // k))
        result["test_neg_iw_bound"] = iw["neg_iw_bound"]
        result["test_iw_samples"] = k
    return result


# ---- cuvae checkpoints ------------------------------------------------------------------------

def read_safetensors(path):
    """(tensors: name -> float32 numpy array, metadata: dict, reader: str). Uses the safetensors
    package when importable; otherwise parses the format by hand: 8-byte little-endian header
    length, JSON header, raw little-endian F32 data."""
    try:
        from safetensors import safe_open
        from safetensors.numpy import load_file
    except ImportError:
        safe_open = None
    if safe_open is not None:
        tensors = load_file(path)
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
        return {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, metadata, \
            "safetensors"
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: shorter than the 8-byte header length" % path)
    (hlen,) = struct.unpack("<Q", raw[:8])
    if hlen > len(raw) - 8:
        raise ValueError("%s: header length %d runs past the end of the file" % (path, hlen))
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    data = memoryview(raw)[8 + hlen:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError("%s: tensor %s has dtype %s, expected F32" % (path, name, info["dtype"]))
        a, b = info["data_offsets"]
        shape = tuple(int(s) for s in info["shape"])
        if not 0 <= a <= b <= len(data) or b - a != 4 * int(np.prod(shape, dtype=np.int64)):
            raise ValueError("%s: tensor %s: data_offsets %s do not fit shape %s"
                             % (path, name, info["data_offsets"], shape))
        tensors[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(shape).astype(np.float32)
    return tensors, metadata, "hand parser (json + numpy)"


def load_checkpoint(path, device="cpu", dtype=torch.float32):
    """A cuvae checkpoint as (model, config, metadata, tensors, reader)."""
    tensors, metadata, reader = read_safetensors(path)
    if "config" not in metadata:
        raise ValueError("%s: metadata has no config" % path)
    cfg = Config(text=metadata["config"])
    if "input_shape" in metadata:
        x_shape = tuple(int(v) for v in metadata["input_shape"].split(","))
    else:  # written before the shape was recorded: the default shape of encoder.0's inputs
        x_shape = default_shape(tensors["encoder.0.weight"].shape[1])
    x_dim = int(np.prod(x_shape))
    model = VAE(x_dim, cfg.hidden, cfg.latent, cfg.likelihood, cfg.gaussian_sigma, cfg=cfg,
                x_shape=x_shape)
    state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()
             if k.startswith("encoder.") or k.startswith("decoder.")}
    model.load_state_dict(state, strict=True)  # names map onto the layers in order
    return model.to(device, dtype), cfg, metadata, tensors, reader


def eval_checkpoint(args):
    device = pick_device(args.device)
    precision = (getattr(args, "precision", None) or ["fp32"])[0]
    if precision == "bf16":
        raise SystemExit("torch_vae: --checkpoint evaluates in fp32 or tf32 (as cuvae eval)")
    set_precision(precision, device)
    dtype = torch.float64 if args.float64 else torch.float32
    model, cfg, metadata, tensors, reader = load_checkpoint(args.checkpoint, device, dtype)
    if args.test_images:
        cfg.test_images = args.test_images
    if args.limit:
        cfg.limit_test = args.limit
    _, _, test = run_data(cfg, need_train=False)
    K = args.eval_samples or 1
    seed = int(metadata.get("seed", cfg.seed))
    noise_kind = getattr(args, "noise", None) or "cuvae"
    noise = cuvae_eval_noise(seed) if noise_kind == "cuvae" else torch_eval_noise(seed, device)
    batch = max(1, min(cfg.eval_batch_size, getattr(args, "eval_rows", 16384) // K))
    sync(device)
    t0 = time.perf_counter()
    r = evaluate(model, test, K, noise, batch, dtype)
    sync(device)
    seconds = time.perf_counter() - t0
    r.update({"checkpoint": args.checkpoint, "reader": reader, "examples": int(len(test)),
              "samples": K, "step": int(metadata.get("step", -1)), "noise": noise_kind,
              "dtype": str(dtype).replace("torch.", ""), "precision": precision,
              "device": device.type,
              "machine": machine(device), "threads": torch.get_num_threads(),
              "blas": openblas_in_process(), "batch": batch, "seconds": seconds,
              "examples_per_s": len(test) / seconds if seconds > 0 else None})
    return r


# ---- command line -----------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", help="cuvae INI config (default: cuvae's defaults)")
    ap.add_argument("overrides", nargs="*", help="section.key=value, as for cuvae")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--mode", default="eager", choices=["eager", "compile", "compile-max", "graph"])
    ap.add_argument("--precision", default="fp32",
                    help="comma-separated list of fp32, tf32, bf16 (default fp32)")
    ap.add_argument("--batch", default=None, help="comma-separated batch sizes "
                    "(default 128,1024,4096 for --bench)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", action="store_true", help="bench on the config's training set")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (CPU)")
    ap.add_argument("--flush-denormal", action="store_true",
                    help="torch.set_flush_denormal(True), as cuvae's CPU backend does (CPU)")
    ap.add_argument("--train-epochs", type=int, default=0, metavar="E")
    ap.add_argument("--init", default="torch", choices=["torch", "cuvae"])
    ap.add_argument("--noise", default=None, choices=["torch", "cuvae"],
                    help="noise of training and evaluation: torch's own generator (the default "
                    "for --train-epochs) or cuvae's Philox streams (the default for --checkpoint)")
    ap.add_argument("--eval-rows", type=int, default=16384, metavar="R",
                    help="--checkpoint: examples x K rows evaluated at once (default 16384)")
    ap.add_argument("--eval-samples", type=int, default=0, metavar="K",
                    help="also report the K-sample bound (--train-epochs, --checkpoint)")
    ap.add_argument("--checkpoint", help="evaluate a cuvae checkpoint on its test set")
    ap.add_argument("--limit", type=int, default=0, help="--checkpoint: first N test examples")
    ap.add_argument("--test-images", help="--checkpoint: test images instead of the config's")
    ap.add_argument("--float64", action="store_true", help="--checkpoint: evaluate in float64")
    ap.add_argument("--json", help="write the result here (default: stdout)")
    args = ap.parse_args(argv)

    config_path = args.config
    overrides = list(args.overrides)
    if config_path and "=" in config_path and not os.path.exists(config_path):
        overrides.insert(0, config_path)
        config_path = None
    args.precision = [p for p in args.precision.split(",") if p]
    for p in args.precision:
        if p not in ("fp32", "tf32", "bf16"):
            ap.error("--precision: expected fp32, tf32 or bf16, got %r" % p)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.flush_denormal and not torch.set_flush_denormal(True):
        ap.error("--flush-denormal: this CPU does not support flushing denormals")

    if args.eval_rows < 1:
        ap.error("--eval-rows: expected a positive number of rows")
    if args.checkpoint:
        result = eval_checkpoint(args)
    else:
        cfg = Config(config_path, overrides=overrides)
        if args.batch:
            args.batch = [int(b) for b in args.batch.split(",") if b]
        if args.train_epochs > 0:
            args.noise = args.noise or "torch"
            if args.batch:
                cfg.batch_size = args.batch[0]
            result = train_epochs(cfg, args)
        else:
            args.batch = args.batch or [128, 1024, 4096]
            result = bench(cfg, args)
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
