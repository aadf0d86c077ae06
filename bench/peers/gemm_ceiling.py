#!/usr/bin/env python3
"""The GEMM ceiling of one cuvae training step: the same matrix products that the step's linear
layers do (for every layer of the encoder and the decoder: the forward product, the weight
gradient and, but for the first layer, the input gradient), each alone through PyTorch's matmul
(cuBLAS/cuBLASLt), timed back to back with CUDA events, and reported as achieved TFLOP/s. The
figure `cuvae bench` reports for the whole step (GEMMs plus everything else) is held against it:
the large config's target is 60 % of this ceiling in bf16.

    python3 bench/peers/gemm_ceiling.py configs/large.ini --batch 4096 --precision bf16

The layer shapes come from the config (model.hidden, model.latent; the input size from the
training images' header, or --x-dim). JSON on stdout (or --json FILE).
"""

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import emit_json  # noqa: E402
from vae_common import Config, idx_x_dim  # noqa: E402


def layer_shapes(x_dim, hidden, latent):
    """(in, out) of every linear layer: encoder x -> hidden... -> 2 latent, decoder mirrored."""
    enc = [x_dim] + hidden + [2 * latent]
    dec = [latent] + hidden[::-1] + [x_dim]
    return [(enc[i], enc[i + 1]) for i in range(len(enc) - 1)] + \
        [(dec[i], dec[i + 1]) for i in range(len(dec) - 1)]


def step_products(B, layers):
    """(m, k, n) of each product of one step: forward [B,in]x[in,out], weight gradient
    [out,B]x[B,in], and input gradient [B,out]x[out,in] for every layer but the encoder's first
    (the data needs no gradient; the decoder's first layer gives the latent's)."""
    out = []
    for i, (fan_in, fan_out) in enumerate(layers):
        out.append((B, fan_in, fan_out))
        out.append((fan_out, B, fan_in))
        if i != 0:
            out.append((B, fan_out, fan_in))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", help="cuvae INI config (default: cuvae's defaults)")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--precision", default="bf16", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--x-dim", type=int, default=0, help="input size (default: from the data)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", help="write the result here (default: stdout)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gemm_ceiling: no CUDA device")
    cfg = Config(args.config)
    x_dim = args.x_dim or idx_x_dim(cfg.train_images)
    layers = layer_shapes(x_dim, cfg.hidden, cfg.latent)
    prods = step_products(args.batch, layers)
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    gen = torch.Generator(device="cuda").manual_seed(1)
    mats = [(torch.rand(m, k, device="cuda", dtype=dtype, generator=gen) - 0.5,
             torch.rand(k, n, device="cuda", dtype=dtype, generator=gen) - 0.5)
            for m, k, n in prods]
    flops = sum(2.0 * m * k * n for m, k, n in prods)

    def once():
        for a, b in mats:
            torch.matmul(a, b)

    for _ in range(3):
        once()
    torch.cuda.synchronize()
    times = []
    for _ in range(args.repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        once()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    t = statistics.median(times)
    result = {"tool": "bench/peers/gemm_ceiling.py", "device": torch.cuda.get_device_name(0),
              "torch": torch.__version__, "config": args.config, "batch": args.batch,
              "precision": args.precision, "products": len(prods), "gflop_per_step": flops / 1e9,
              "gemm_s_per_step": t, "tflops": flops / t / 1e12}
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
