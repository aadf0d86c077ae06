#!/usr/bin/env python3
"""The cuvae model in JAX, as a benchmark peer: the whole training step (gather, dynamic
binarization, encoder, reparameterization, decoder, loss, gradient, clipping, Adam) is one
jax.jit-compiled function with the parameters and optimizer state donated, and the training set
lives on the device, indexed per step.

Same model and loss as cuvae and bench/peers/torch_vae.py (read from the same INI config through
vae_common.py): MLP encoder to [mu | log sigma^2], mirrored decoder, ReLU, Linear-style init
(uniform +-1/sqrt(fan_in)), Bernoulli logits (or Gaussian means) summed over pixels plus the
closed-form KL, mean over the batch; Adam/AdamW from optax when it is installed, else the same
update written out here (torch.optim.Adam's arithmetic). Precisions: fp32 (matmuls at HIGHEST
precision), tf32 (TensorFloat-32 matmuls), bf16 (bfloat16 matmul inputs, fp32 accumulation and
losses). Prints/writes the same JSON as torch_vae.py --bench."""

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import emit_json  # noqa: E402
import philox  # noqa: E402
from vae_common import EPOCH_EXAMPLES, Config, cpu_model, idx_x_dim, load_average  # noqa: E402
from vae_common import run_data  # noqa: E402



def pin_threads(argv):
    """--threads N (CPU): run on the first N CPUs this process may use. XLA sizes its CPU thread
    pools from the CPUs it may be scheduled on when it starts, so this happens before jax is
    imported; it is the one setting that bounds every pool of every jaxlib version (the
    xla_cpu_multi_thread_eigen flag is gone from newer ones). Returns N, or None."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=0)
    n = pre.parse_known_args(argv)[0].threads
    if n <= 0 or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:n])
    return min(n, len(cpus))


PINNED_THREADS = pin_threads(sys.argv[1:]) if __name__ == "__main__" else None

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

try:
    import optax
except ImportError:
    optax = None


def init_params(key, x_dim, hidden, latent):
    """[(W [out, in], b [out])] for the encoder then the decoder, like torch.nn.Linear."""
    dims_enc = [x_dim] + list(hidden) + [2 * latent]
    dims_dec = [latent] + list(reversed(hidden)) + [x_dim]
    params = []
    for dims in (dims_enc, dims_dec):
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            key, kw, kb = jax.random.split(key, 3)
            bound = 1.0 / math.sqrt(a)
            layers.append((jax.random.uniform(kw, (b, a), jnp.float32, -bound, bound),
                           jax.random.uniform(kb, (b,), jnp.float32, -bound, bound)))
        params.append(layers)
    return {"encoder": params[0], "decoder": params[1]}


def dense(h, w, b, precision):
    if precision == "bf16":
        y = jax.lax.dot_general(h.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                                (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
    else:
        p = jax.lax.Precision.HIGHEST if precision == "fp32" else jax.lax.Precision.DEFAULT
        y = jax.lax.dot_general(h, w, (((1,), (1,)), ((), ())), precision=p)
    return y + b


def mlp(layers, h, precision):
    for i, (w, b) in enumerate(layers):
        h = dense(h, w, b, precision)
        if i + 1 < len(layers):
            h = jax.nn.relu(h)
    return h


def make_loss(cfg, precision, dynamic):
    L = cfg.latent
    sigma = cfg.gaussian_sigma

    def loss_fn(params, x_bytes, key, beta):
        kb, ke = jax.random.split(key)
        x = x_bytes.astype(jnp.float32) / 255.0
        if dynamic:
            x = (jax.random.uniform(kb, x.shape) < x).astype(jnp.float32)
        enc = mlp(params["encoder"], x, precision)
        mu, logvar = enc[:, :L], enc[:, L:]
        eps = jax.random.normal(ke, mu.shape, jnp.float32)
        z = mu + jnp.exp(0.5 * logvar) * eps
        out = mlp(params["decoder"], z, precision).astype(jnp.float32)
        if cfg.likelihood == "bernoulli":
            rec = jnp.sum(jax.nn.softplus(out) - x * out, axis=1)
        else:
            rec = jnp.sum(0.5 * ((x - out) / sigma) ** 2 + math.log(sigma)
                          + 0.5 * math.log(2 * math.pi), axis=1)
        kl = 0.5 * (mu * mu + jnp.exp(logvar) - 1.0 - logvar)
        if cfg.free_bits > 0:
            kl = jnp.maximum(kl, cfg.free_bits)
        per_example = rec + beta * jnp.sum(kl, axis=1)
        return jnp.mean(per_example), jnp.sum(per_example)

    return loss_fn


def make_optimizer(cfg):
    """(init(params) -> state, update(grads, state, params) -> (params, state))."""
    if optax is not None:
        if cfg.optimizer == "adamw":
            tx = optax.adamw(cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, weight_decay=cfg.weight_decay)
        else:
            tx = optax.adam(cfg.lr, cfg.beta1, cfg.beta2, cfg.eps)
            if cfg.weight_decay > 0:
                tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay), tx)

        def update(grads, state, params):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state
        return tx.init, update, "optax"

    def init(params):
        # Separate buffers for m and v: the step donates them, and one buffer cannot be donated twice.
        return {"m": jax.tree_util.tree_map(jnp.zeros_like, params),
                "v": jax.tree_util.tree_map(jnp.zeros_like, params),
                "t": jnp.zeros((), jnp.int32)}

    def update(grads, state, params):
        t = state["t"] + 1
        b1, b2 = cfg.beta1, cfg.beta2
        if cfg.optimizer == "adam" and cfg.weight_decay > 0:
            grads = jax.tree_util.tree_map(lambda g, p: g + cfg.weight_decay * p, grads, params)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], grads)
        tf = t.astype(jnp.float32)
        step = cfg.lr / (1 - b1 ** tf)
        corr2 = jnp.sqrt(1 - b2 ** tf)

        def apply(p, m, v):
            if cfg.optimizer == "adamw":
                p = p - cfg.lr * cfg.weight_decay * p
            return p - step * m / (jnp.sqrt(v) / corr2 + cfg.eps)
        params = jax.tree_util.tree_map(apply, params, m, v)
        return params, {"m": m, "v": v, "t": t}
    return init, update, "hand-written Adam"


def make_step(cfg, precision, dynamic):
    loss_fn = make_loss(cfg, precision, dynamic)
    opt_init, opt_update, opt_name = make_optimizer(cfg)

    def step(params, opt_state, acc, data, idx, key, step_no):
        k = jax.random.fold_in(key, step_no)
        (_, total), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, data[idx], k,
                                                                      cfg.beta)
        if cfg.grad_clip > 0:
            norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
            scale = jnp.minimum(1.0, cfg.grad_clip / (norm + 1e-6))
            grads = jax.tree_util.tree_map(lambda g: g * scale, grads)
        params, opt_state = opt_update(grads, opt_state, params)
        return params, opt_state, acc + total

    return jax.jit(step, donate_argnums=(0, 1, 2)), opt_init, opt_name


def bench_one(cfg, precision, batch, pixels, args, device):
    if cfg.encoder or cfg.decoder:
        raise SystemExit("jax_vae: model.encoder / model.decoder (conv models) are not built by "
                         "the JAX peer: the MLP of model.hidden only")
    dynamic = cfg.binarize == "dynamic"
    step, opt_init, opt_name = make_step(cfg, precision, dynamic)
    key = jax.random.PRNGKey(cfg.seed)
    params = jax.device_put(init_params(key, pixels.shape[1], cfg.hidden, cfg.latent), device)
    opt_state = opt_init(params)
    data = jax.device_put(jnp.asarray(pixels), device)  # uploaded once
    n = pixels.shape[0]
    order = np.random.default_rng(cfg.seed).permutation(n).astype(np.int32)
    steps_needed = 1 + args.warmup + args.repeats * args.steps
    starts = (np.arange(steps_needed, dtype=np.int64) * batch) % n
    all_idx = order[(starts[:, None] + np.arange(batch)[None, :]) % n]
    all_idx = jax.device_put(jnp.asarray(all_idx), device)  # every step's rows, on the device
    acc = jnp.zeros((), jnp.float32)
    noise_key = jax.random.PRNGKey(cfg.seed + 1)
    position = 0

    def run(count):
        nonlocal params, opt_state, acc, position
        for _ in range(count):
            params, opt_state, acc = step(params, opt_state, acc, data, all_idx[position],
                                          noise_key, position)
            position += 1
        total = float(acc)  # the sync point
        acc = jnp.zeros((), jnp.float32)
        return total

    first = run(1) / batch  # validates and compiles
    if not math.isfinite(first):
        raise SystemExit("jax_vae: %s batch %d: the first step gave a non-finite loss"
                         % (precision, batch))
    if args.warmup:
        run(args.warmup)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        total = run(args.steps)
        times.append(time.perf_counter() - t0)
        if not math.isfinite(total):
            raise SystemExit("jax_vae: %s batch %d: a timed step gave a non-finite loss"
                             % (precision, batch))
    step_s = statistics.median(times) / args.steps
    return {
        "batch": batch, "precision": precision, "mode": "jit", "status": "ok",
        "first_loss": first, "optimizer": opt_name,
        "step_ms": step_s * 1e3, "samples_per_s": batch / step_s,
        "epoch_s_55000": EPOCH_EXAMPLES / (batch / step_s),
        "repeat_step_ms": [t * 1e3 / args.steps for t in times],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch", default="128,1024,4096")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", action="store_true")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU: run on the first N CPUs (XLA's threads follow; default: all)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    config_path, overrides = args.config, list(args.overrides)
    if config_path and "=" in config_path and not os.path.exists(config_path):
        overrides.insert(0, config_path)
        config_path = None
    cfg = Config(config_path, overrides=overrides)
    precisions = [p for p in args.precision.split(",") if p]
    batches = [int(b) for b in args.batch.split(",") if b]

    if args.device == "cpu":
        device = jax.devices("cpu")[0]
    else:
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if args.device == "cuda" and not gpus:
            raise SystemExit("jax_vae: --device cuda: JAX sees no GPU (%s)" % jax.devices())
        device = gpus[0] if gpus else jax.devices("cpu")[0]
    on_gpu = device.platform == "gpu"
    for p in precisions:
        if p not in ("fp32", "tf32", "bf16"):
            raise SystemExit("jax_vae: --precision: expected fp32, tf32 or bf16, got %r" % p)
        if p == "tf32" and not on_gpu:
            raise SystemExit("jax_vae: tf32 is a CUDA precision")

    if args.data:
        pixels, _, _ = run_data(cfg)
    else:
        n = max(16384, max(batches))
        pixels = np.random.default_rng(cfg.seed).integers(0, 256, size=(n, idx_x_dim(
            cfg.train_images)), dtype=np.uint8)
        if cfg.binarize == "static":
            pixels = philox.binarize_fixed(pixels, cfg.seed)
    results = []
    for p in precisions:
        for b in batches:
            r = bench_one(cfg, p, b, pixels, args, device)
            print("jax jit %-4s batch %5d: %8.3f ms/step %10.0f samples/s"
                  % (p, b, r["step_ms"], r["samples_per_s"]), file=sys.stderr)
            results.append(r)
    result = {
        "peer": "jax", "jax_version": jax.__version__,
        "jaxlib_version": getattr(getattr(jax, "lib", None), "__version__", None) or
        jax.__version__,
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "matmul": "XLA %s (its own kernels; OpenBLAS not used)" % device.platform,
        "optax_version": getattr(optax, "__version__", None) if optax else None,
        "device": "cuda" if on_gpu else "cpu",
        "machine": device.device_kind if on_gpu else cpu_model(), "cpu": cpu_model(),
        "load_average": load_average(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "mode": "jit", "data": "config" if args.data else "synthetic",
        "train_examples": int(len(pixels)), "steps": args.steps, "warmup": args.warmup,
        "repeats": args.repeats, "epoch_examples": EPOCH_EXAMPLES, "settings": results,
    }
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
