#!/usr/bin/env bash
# NumPy colour data end to end (CPU): a generated RGB set written as 4-D IDX (N x H x W x 3) and as
# NumPy arrays, uint8 N x H x W x 3 (interleaved), uint8 N x 3 x H x W (planar), float32
# N x H x W x 3 in [0, 1], an .npz with deflated members and one with stored planar members, trains
# one epoch to exactly the losses and validation figures of the IDX files with the same seed, and
# `eval` reads them to the same figures; other channel counts get one line naming the file (and
# the member) and the shape.
set -euo pipefail
NAME=cli_numpy_colour
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
need_python numpy

mkdir -p "$T/rgb"
"$py" - "$T/rgb" <<'EOF'
import gzip, struct, sys
import numpy as np
d = sys.argv[1]
S = 16
for split, n, seed in (("train", 300, 1), ("t10k", 100, 2)):
    rnd = np.random.default_rng(seed)
    x = rnd.integers(0, 31, (n, S, S, 3), dtype=np.uint8)  # interleaved: N x H x W x C
    y = (np.arange(n) % 3).astype(np.uint8)  # the square's colour: red, green or blue
    for i in range(n):
        y0, x0, side = rnd.integers(0, 8), rnd.integers(0, 8), rnd.integers(4, 8)
        x[i, y0:y0 + side, x0:x0 + side, y[i]] = 230
    with gzip.open(f"{d}/{split}-images-idx4-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIIII", 0x804, n, S, S, 3) + x.tobytes())
    with gzip.open(f"{d}/{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + y.tobytes())
    np.save(f"{d}/{split}-hwc.npy", x)
    np.save(f"{d}/{split}-chw.npy", np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    np.save(f"{d}/{split}-f32.npy", x.astype(np.float32) / 255)
    np.save(f"{d}/{split}-labels.npy", y.astype(np.int64))
    if split == "train":
        xt, yt = x, y
np.savez_compressed(f"{d}/deflated.npz", x_train=xt, y_train=yt, x_test=x, y_test=y)
np.savez(f"{d}/planar.npz", x_train=np.ascontiguousarray(xt.transpose(0, 3, 1, 2)), y_train=yt,
         x_test=np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y_test=y)
np.save(f"{d}/c4.npy", np.zeros((4, 5, 6, 4), np.uint8))
np.savez(f"{d}/c2.npz", x_test=np.zeros((4, 2, 5, 6), np.uint8))
EOF

D=$T/rgb
make_config "$T/rgb.ini" "$T/run"
sed -i "s#$T/data/train-images-idx3-ubyte.gz#$D/train-images-idx4-ubyte.gz#;
        s#$T/data/t10k-images-idx3-ubyte.gz#$D/t10k-images-idx4-ubyte.gz#;
        s#$T/data/\([a-z0-9]*\)-labels#$D/\1-labels#" "$T/rgb.ini"
train() { # $1: run name, the rest: overrides
    local run=$1; shift
    expect_rc 0 "$BIN" train "$T/rgb.ini" train.epochs=1 output.images=0 output.dir="$T/$run" "$@"
}
same() { # the losses and validation figures of run $1 are those of the IDX run
    diff <(json_field "$T/idx/metrics.jsonl" loss step) <(json_field "$T/$1/metrics.jsonl" loss step) \
        >/dev/null || fail "$1: step losses differ from the IDX run"
    diff <(json_field "$T/idx/metrics.jsonl" valid_neg_elbo epoch) \
        <(json_field "$T/$1/metrics.jsonl" valid_neg_elbo epoch) >/dev/null ||
        fail "$1: validation figures differ from the IDX run"
    [ -n "$(json_field "$T/$1/metrics.jsonl" loss step)" ] || fail "$1: no losses logged"
}

train idx
expect_out "examples of 16x16 RGB"
for layout in hwc chw f32; do
    train "$layout" data.train_images="$D/train-$layout.npy" data.train_labels="$D/train-labels.npy" \
        data.test_images="$D/t10k-$layout.npy" data.test_labels="$D/t10k-labels.npy"
    expect_out "examples of 16x16 RGB"
    same "$layout"
done
for z in deflated planar; do
    train "$z" data.train_images="$D/$z.npz" data.train_labels="$D/$z.npz" \
        data.test_images="$D/$z.npz" data.test_labels="$D/$z.npz"
    same "$z"
done

# eval on the NumPy test sets gives the IDX figures.
expect_rc 0 "$BIN" eval "$T/idx/model.safetensors" --samples 5 --device cpu
grep -vE '^(device|seconds|examples/s)' "$T/out" | sed "s|$D/t10k-images-idx4-ubyte.gz|X|g" \
    >"$T/eval-idx"
for f in t10k-hwc.npy t10k-chw.npy deflated.npz; do
    expect_rc 0 "$BIN" eval "$T/idx/model.safetensors" --samples 5 --device cpu \
        --test-images "$D/$f"
    grep -vE '^(device|seconds|examples/s)' "$T/out" | sed "s|$D/$f|X|g" >"$T/eval-np"
    diff "$T/eval-idx" "$T/eval-np" >/dev/null ||
        { diff "$T/eval-idx" "$T/eval-np" || true; fail "eval on $f differs from eval on the IDX file"; }
done

# Other channel counts: one line naming the file (and the member) and the shape.
expect_rc 1 "$BIN" train "$T/rgb.ini" train.epochs=1 output.dir="$T/bad" \
    data.test_images="$D/c4.npy" data.test_labels=
expect_one_line_error "$D/c4.npy: shape (4, 5, 6, 4): expected N x H x W x C or N x C x H x W with C = 1 (greyscale) or 3 (RGB)"
expect_rc 1 "$BIN" eval "$T/idx/model.safetensors" --device cpu --test-images "$D/c2.npz"
expect_one_line_error "$D/c2.npz: member 'x_test.npy': shape (4, 2, 5, 6): expected N x H x W x C"
echo "$NAME: ok"
