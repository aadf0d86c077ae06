#!/usr/bin/env bash
# The conv VAE at the largest size issue 14 names, on the CPU: 3x256x256 colour shapes
# (bench/make_shapes.py --size 256 --colour) through four stride-2 convs to 16x16x16 and back;
# it trains an epoch with finite figures, resumes, evaluates, and its sample, reconstruction and
# epoch grids are 256x256 RGB PNGs; the checkpoint records the input shape.
set -euo pipefail
NAME=cli_conv_rgb256
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
need_python numpy
GEN=$(cd "$(dirname "$0")/.." && pwd)/bench/make_shapes.py
expect_rc 0 "$py" "$GEN" --out "$T/d" --seed 5 --n-train 40 --n-test 8 --size 256 --colour
expect_out "wrote $T/d/train-images.npy: uint8 40 x 256 x 256 x 3"

cat >"$T/c.ini" <<INI
[data]
train_images = $T/d/train-images.npy
test_images = $T/d/test-images.npy
train_labels = $T/d/train-labels.npy
test_labels = $T/d/test-labels.npy
validation = 8
[model]
encoder = conv 8, conv 16, conv 16, conv 16, linear 32
latent = 8
[train]
epochs = 1
batch_size = 8
seed = 3
[output]
dir = $T/run
image_scale = 1
INI
expect_rc 0 "$BIN" train "$T/c.ini" --device cpu
expect_out "examples of 256x256 RGB"
expect_rc 0 "$BIN" train "$T/c.ini" --device cpu train.epochs=2 --resume auto
"$py" - "$T/run/metrics.jsonl" <<'PY' || fail "epochs: $(grep epoch "$T/run/metrics.jsonl")"
import json, math, sys
v = [r for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "epoch"]
assert [r["epoch"] for r in v] == [1, 2], v
assert all(math.isfinite(r["loss"]) and math.isfinite(r["valid_neg_elbo"]) for r in v), v
PY
CK=$T/run/model.safetensors
"$py" - "$CK" <<'PY' || fail "the checkpoint's input shape or layouts"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
assert h["__metadata__"]["input_shape"] == "3,256,256", h["__metadata__"]
assert h["encoder.0.weight"]["shape"] == [8, 3, 4, 4], h["encoder.0.weight"]
assert h["encoder.4.weight"]["shape"] == [32, 16 * 16 * 16], h["encoder.4.weight"]
assert h["decoder.5.weight"]["shape"] == [8, 3, 4, 4], h["decoder.5.weight"]
PY
expect_rc 0 "$BIN" eval "$CK" --samples 4 --json "$T/e.json"
"$py" -c 'import json, math, sys
r = json.load(open(sys.argv[1]))
assert r["examples"] == 8 and all(math.isfinite(r[k]) for k in ("neg_elbo", "neg_iw_bound", "recon_psnr")), r' \
    "$T/e.json" || fail "eval: $(cat "$T/e.json")"
expect_rc 0 "$BIN" sample "$CK" --n 4 --per-row 2 --out "$T/s.png"
expect_out "(256x256 RGB"
expect_rc 0 "$BIN" reconstruct "$CK" --n 2 --per-row 2 --out "$T/r.png"
# Width and height from IHDR, colour type 2 (RGB): 2 images a row at scale 1 (with the grid's
# spacing between them) for sample and reconstruct, 8 a row in the epoch's grid.
"$py" - "$T/s.png" 2 "$T/r.png" 2 "$T/run/images/samples-epoch-002.png" 8 <<'PY' || fail "the grids are not 256x256 RGB tiles"
import struct, sys
for p, per_row in zip(sys.argv[1::2], map(int, sys.argv[2::2])):
    b = open(p, "rb").read()
    w, h = struct.unpack(">II", b[16:24])
    assert b[12:16] == b"IHDR" and b[25] == 2, (p, b[25])
    assert per_row * 256 <= w < per_row * 256 + 64 and h >= 256, (p, w, h)
PY
echo "$NAME: ok"
