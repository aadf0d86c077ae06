#!/usr/bin/env bash
# bench/make_shapes.py, the shapes dataset the conv configs use: a tiny 32x32 set is the same bytes
# from the same seed and other bytes from another, its factor files are N x F float32 with the
# columns named in factors.json, the greyscale .npy set trains 1 epoch and evaluates, and the
# colour set's 4-D IDX twin (--colour --idx) trains 1 epoch and writes RGB grids.
set -euo pipefail
NAME=cli_shapes
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
need_python numpy
GEN=$(cd "$(dirname "$0")/.." && pwd)/bench/make_shapes.py

shapes() { # OUT SEED [options]
    local out=$1 seed=$2
    shift 2
    expect_rc 0 "$py" "$GEN" --out "$out" --seed "$seed" --n-train 200 --n-test 50 --size 32 "$@"
}
shapes "$T/a" 3
expect_out "wrote $T/a/train-images.npy: uint8 200 x 32 x 32"
expect_out "wrote $T/a/factors.json: factor columns shape, scale, rotation, x, y"
shapes "$T/b" 3
shapes "$T/c" 4
for f in train-images.npy test-images.npy train-factors.npy test-factors.npy factors.json; do
    cmp -s "$T/a/$f" "$T/b/$f" || fail "$f differs between two runs with --seed 3"
done
for f in train-images.npy test-images.npy train-factors.npy; do
    ! cmp -s "$T/a/$f" "$T/c/$f" || fail "$f is the same with --seed 3 and --seed 4"
done
"$py" - "$T/a" <<'PY' || fail "factor files of $T/a"
import json, sys
import numpy as np
d = sys.argv[1]
cols = json.load(open(f"{d}/factors.json"))["columns"]
assert cols == ["shape", "scale", "rotation", "x", "y"], cols
for split, n in (("train", 200), ("test", 50)):
    f = np.load(f"{d}/{split}-factors.npy")
    assert f.dtype == np.float32 and f.shape == (n, len(cols)), (f.dtype, f.shape)
    assert set(np.unique(f[:, 0])) <= {0, 1, 2, 3}, np.unique(f[:, 0])
    x = np.load(f"{d}/{split}-images.npy")
    assert x.dtype == np.uint8 and x.shape == (n, 32, 32), (x.dtype, x.shape)
    assert (x.reshape(n, -1).max(axis=1) > 200).all(), "an image without its shape"
PY

make_config "$T/grey.ini" "$T/grey"
expect_rc 0 "$BIN" train "$T/grey.ini" train.epochs=1 output.images=0 data.validation=50 \
    data.train_images="$T/a/train-images.npy" data.train_labels="$T/a/train-labels.npy" \
    data.test_images="$T/a/test-images.npy" data.test_labels="$T/a/test-labels.npy"
CK=$T/grey/checkpoints/$(cat "$T/grey/checkpoints/latest")
expect_rc 0 "$BIN" eval "$CK" --samples 2 --device cpu --json "$T/eval.json"
"$py" -c 'import json, math, sys
r = json.load(open(sys.argv[1]))
v = [x for x in r.values() if isinstance(x, float)]
assert v and all(math.isfinite(x) for x in v), r' "$T/eval.json" || fail "eval.json: $(cat "$T/eval.json")"

shapes "$T/rgb" 3 --colour --idx
expect_out "wrote $T/rgb/train-images-idx4-ubyte.gz: uint8 200 x 32 x 32 x 3"
expect_out "factor columns shape, scale, rotation, x, y, hue"
make_config "$T/rgb.ini" "$T/rgbrun"
expect_rc 0 "$BIN" train "$T/rgb.ini" train.epochs=1 data.validation=50 \
    data.train_images="$T/rgb/train-images-idx4-ubyte.gz" \
    data.train_labels="$T/rgb/train-labels-idx1-ubyte.gz" \
    data.test_images="$T/rgb/t10k-images-idx4-ubyte.gz" \
    data.test_labels="$T/rgb/t10k-labels-idx1-ubyte.gz"
expect_out "examples of 32x32 RGB"
# IHDR colour type 2: RGB.
"$py" -c 'import sys
b = open(sys.argv[1], "rb").read()
assert b[12:16] == b"IHDR" and b[25] == 2, b[25]' "$T/rgbrun/images/samples-epoch-001.png" ||
    fail "$T/rgbrun/images/samples-epoch-001.png is not an RGB PNG"
echo "$NAME: ok"
