#!/usr/bin/env bash
# cuvae's checkpoints are ordinary safetensors files that PyTorch code can use: a tiny run is
# trained with cuvae on generated data, then Python (bench/peers/torch_vae.py) reads the
# checkpoint (with the safetensors package when installed, else the hand parser, and says which),
# checks every tensor, the optimizer state names and the metadata (CRC-32 included), loads the
# weights into the torch.nn.Linear model, and computes the negative ELBO and the K-sample bound of
# the first N test examples with the same noise as `cuvae eval` (philox.py: element (i*K+k)*L+d of
# (seed, CUVAE_STREAM_EVAL, counter 0)). Both must equal `cuvae eval --json`'s figures within
# 1e-5 relative (cuvae computes in float32, the reference in float64; they agree to ~1e-9). Then
# the same for a convolutional model (nn.Conv2d / nn.ConvTranspose2d / nn.Linear).
# Skipped (77) without a Python that imports torch and numpy.
set -euo pipefail
NAME=cli_checkpoint_torch
src=${CUVAE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}

source "$(dirname "$0")/lib_python.sh"
need_python "torch, numpy"

# shellcheck source=tests/lib_cli.sh
. "$src/tests/lib_cli.sh"
make_data
make_config "$T/tiny.ini" "$T/run"

N=60
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=2 output.images=0 --device cpu
ckpt="$T/run/checkpoints/$(cat "$T/run/checkpoints/latest")"
[ -f "$ckpt" ] || ckpt=$(cat "$T/run/checkpoints/latest")
[ -f "$ckpt" ] || fail "checkpoints/latest names no file: $(cat "$T/run/checkpoints/latest")"
for K in 1 5; do
    expect_rc 0 "$BIN" eval "$ckpt" --samples "$K" --limit "$N" --device cpu --json "$T/eval$K.json"
done
# The command-line path of the reference for K = 1; K = 5 is computed in-process below.
expect_rc 0 "$py" "$src/bench/peers/torch_vae.py" --checkpoint "$ckpt" --limit "$N" --device cpu \
    --float64 --json "$T/torch1.json"

PYTHONPATH="$src/bench/peers" "$py" - "$ckpt" "$T/run/model.safetensors" "$T" "$N" <<'EOF'
import argparse, json, os, struct, sys, zlib
import numpy as np
import torch
import philox
import torch_vae

ckpt, model_only, tmp, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("cli_checkpoint_torch: FAIL:", what)


tensors, meta, reader = torch_vae.read_safetensors(ckpt)
print("cli_checkpoint_torch: checkpoint read with the", reader)
try:
    import safetensors.torch  # the reader PyTorch users have
    st = safetensors.torch.load_file(ckpt)
    check(sorted(st) == sorted(tensors), "safetensors.torch.load_file sees the same tensors")
    for k, v in st.items():
        check(torch.equal(v, torch.from_numpy(tensors[k])), "safetensors.torch value of " + k)
    print("cli_checkpoint_torch: safetensors.torch.load_file read it too")
except ImportError:
    print("cli_checkpoint_torch: safetensors package not installed; hand parser only")

# Tensors: the model's layout, then optim.m.* and optim.v.* with the same shapes.
cfg = torch_vae.Config(text=meta.get("config", ""))
x_dim = tensors["encoder.0.weight"].shape[1]
layout = philox.model_layout(x_dim, cfg.hidden, cfg.latent)
names = [name for name, _ in layout]
want = set(names) | {"optim.m." + x for x in names} | {"optim.v." + x for x in names}
check(set(tensors) == want, "tensor names %s" % sorted(set(tensors) ^ want))
for name, shape in layout:
    for prefix in ("", "optim.m.", "optim.v."):
        t = tensors.get(prefix + name)
        check(t is not None and t.shape == shape and t.dtype == np.float32
              and np.isfinite(t).all(), "tensor %s%s shape %s" % (prefix, name, shape))
check(float(np.abs(tensors["optim.v." + names[0]]).sum()) > 0, "Adam's v is not all zero")

# Metadata: all strings, the documented keys, and the CRC-32 of the data section.
keys = {"format", "format_version", "step", "epoch", "epoch_step", "seed", "data_seed", "adam_t",
        "rng_counter", "best_valid", "config", "crc32"}
check(keys <= set(meta), "metadata keys missing: %s" % sorted(keys - set(meta)))
check(all(isinstance(v, str) for v in meta.values()), "metadata values are strings")
check(meta.get("format") == "cuvae-checkpoint", "format %r" % meta.get("format"))
check(int(meta.get("step", -1)) > 0 and int(meta.get("adam_t", -1)) == int(meta.get("step", -2)),
      "step %s and adam_t %s" % (meta.get("step"), meta.get("adam_t")))
raw = open(ckpt, "rb").read()
(hlen,) = struct.unpack("<Q", raw[:8])
sys.path.insert(0, os.path.join(os.environ["CUVAE_SOURCE_DIR"], "tests"))
import ckpt_crc
crc = ckpt_crc.crc_of_file(raw)
check(meta.get("format_version") == "2", "format_version %r" % meta.get("format_version"))
check(meta.get("crc32") == crc, "crc32 %s, metadata and data have %s" % (meta.get("crc32"), crc))

# The weights load into torch.nn.Linear layers in order and reproduce the stored values.
model, _, _, _, _ = torch_vae.load_checkpoint(ckpt)
sd = model.state_dict()
check(list(sd) == names, "state_dict order %s" % list(sd))
for name in names:
    check(np.array_equal(sd[name].numpy(), tensors[name]), "loaded " + name)
# The model-only file holds the same final weights and no optimizer state.
mt, mmeta, _ = torch_vae.read_safetensors(model_only)
check(sorted(mt) == sorted(names), "model.safetensors tensors %s" % sorted(mt))

# The negative ELBO (K = 1) and the bound (K = 5) against `cuvae eval`.
rtol = 1e-5
t5 = torch_vae.eval_checkpoint(argparse.Namespace(
    checkpoint=ckpt, device="cpu", float64=True, test_images=None, limit=n, eval_samples=5))
for K in (1, 5):
    c = json.load(open("%s/eval%d.json" % (tmp, K)))
    t = json.load(open("%s/torch1.json" % tmp)) if K == 1 else t5
    check(c["examples"] == n and t["examples"] == n, "examples %s / %s" % (c["examples"], t["examples"]))
    for ck, tk in (("neg_elbo", "neg_elbo"), ("neg_iw_bound", "neg_iw_bound"), ("rec", "rec"),
                   ("kl", "kl")):
        a, b = c[ck], t[tk]
        ok = abs(a - b) <= rtol * abs(b)
        print("cli_checkpoint_torch: K=%d %-12s cuvae %.6f torch %.6f (rel %.2e)%s"
              % (K, ck, a, b, abs(a - b) / max(abs(b), 1e-30), "" if ok else "  <-- FAIL"))
        check(ok, "K=%d %s: cuvae %.6f vs torch %.6f" % (K, ck, a, b))
raise SystemExit(1 if failures else 0)
EOF

# A convolutional model (model.encoder; the decoder its mirror): the tensors load into
# nn.Conv2d ([out, in, k, k]), nn.ConvTranspose2d ([in, out, k, k]) and nn.Linear layers,
# flattened in C, H, W order between them, and give `cuvae eval`'s figures.
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=2 output.images=0 --device cpu \
    output.dir="$T/conv" model.hidden= model.encoder="conv 4, conv 8 k3 s1, linear 16"
ckpt="$T/conv/checkpoints/$(cat "$T/conv/checkpoints/latest")"
for K in 1 5; do
    expect_rc 0 "$BIN" eval "$ckpt" --samples "$K" --limit "$N" --device cpu --json "$T/conv$K.json"
done
PYTHONPATH="$src/bench/peers" "$py" - "$ckpt" "$T" "$N" <<'EOF'
import argparse, json, sys
import numpy as np
import torch
import torch_vae

ckpt, tmp, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("cli_checkpoint_torch: FAIL:", what)


model, cfg, meta, tensors, _ = torch_vae.load_checkpoint(ckpt)
kinds = [type(m).__name__ for m in list(model.encoder) + list(model.decoder)]
check(kinds == ["Conv2d", "Conv2d", "Linear", "Linear", "Linear", "Linear", "ConvTranspose2d",
                "ConvTranspose2d"], "layers %s" % kinds)
want = {"encoder.0.weight": (4, 1, 4, 4), "encoder.1.weight": (8, 4, 3, 3),
        "encoder.2.weight": (16, 288), "decoder.1.weight": (288, 16),
        "decoder.2.weight": (8, 4, 3, 3), "decoder.3.weight": (4, 1, 4, 4), "decoder.3.bias": (1,)}
for k, v in want.items():
    check(tensors[k].shape == v, "%s shape %s, expected %s" % (k, tensors[k].shape, v))
sd = model.state_dict()
for k in sd:
    check(np.array_equal(sd[k].numpy(), tensors[k]), "loaded " + k)
rtol = 1e-5
for K in (1, 5):
    t = torch_vae.eval_checkpoint(argparse.Namespace(
        checkpoint=ckpt, device="cpu", float64=True, test_images=None, limit=n, eval_samples=K))
    c = json.load(open("%s/conv%d.json" % (tmp, K)))
    for key in ("neg_elbo", "neg_iw_bound", "rec", "kl"):
        a, b = c[key], t[key]
        ok = abs(a - b) <= rtol * abs(b)
        print("cli_checkpoint_torch: conv K=%d %-12s cuvae %.6f torch %.6f (rel %.2e)%s"
              % (K, key, a, b, abs(a - b) / max(abs(b), 1e-30), "" if ok else "  <-- FAIL"))
        check(ok, "conv K=%d %s: cuvae %.6f vs torch %.6f" % (K, key, a, b))
raise SystemExit(1 if failures else 0)
EOF
echo "$NAME: ok"
