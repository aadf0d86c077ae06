#!/usr/bin/env bash
# Fashion-MNIST (Debian's dataset-fashion-mnist; skipped when absent) as PNG folders: the first
# 2000 training and 1000 test images written as 8-bit grey PNGs (tests/image_fixture.py) and as
# IDX files of the same images train one epoch and evaluate to bit-identical figures (PNG is
# lossless, and a folder sorted by name keeps the IDX order).
set -euo pipefail
NAME=cli_image_fmnist
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
FM=${CUVAE_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
[ -r "$FM/train-images-idx3-ubyte.gz" ] && [ -r "$FM/t10k-images-idx3-ubyte.gz" ] ||
    { echo "$NAME: skipped: no Fashion-MNIST in $FM (Debian: dataset-fashion-mnist)"; exit 77; }
need_python numpy

D=$T/data
mkdir -p "$D"
PYTHONPATH="$(dirname "$0")" "$py" - "$FM" "$D" <<'EOF2'
import gzip, os, struct, sys
from image_fixture import read_idx, write_png
fm, d = sys.argv[1:3]
for split, n in (("train", 2000), ("t10k", 1000)):
    x = read_idx(f"{fm}/{split}-images-idx3-ubyte.gz")[:n]
    with gzip.open(f"{d}/{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + x.tobytes())
    os.makedirs(f"{d}/{split}-png")
    for i, img in enumerate(x):
        write_png(f"{d}/{split}-png/{i:05d}.png", img)
EOF2

cat >"$T/fm.ini" <<EOF3
[data]
train_images = $D/train-images-idx3-ubyte.gz
train_labels =
test_images = $D/t10k-images-idx3-ubyte.gz
test_labels =
validation = 200
binarize = dynamic
[model]
hidden = 64
latent = 8
[train]
epochs = 1
batch_size = 100
seed = 3
log_every = 3
device = cpu
[output]
images = 0
EOF3
expect_rc 0 "$BIN" train "$T/fm.ini" output.dir="$T/idx"
expect_rc 0 "$BIN" train "$T/fm.ini" output.dir="$T/png" data.train_images="$D/train-png" \
    data.test_images="$D/t10k-png"
expect_out "data: 1800 training, 200 validation, 1000 test examples of 28x28"
for field in "loss step" "valid_neg_elbo epoch" "test_neg_elbo epoch"; do
    a=$(json_field "$T/idx/metrics.jsonl" $field)
    b=$(json_field "$T/png/metrics.jsonl" $field)
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "PNG run's $field differs from the IDX run's: $a vs $b"
done
expect_rc 0 "$BIN" eval "$T/idx/model.safetensors" --samples 10 --device cpu
grep -vE '^(device|seconds|examples/s)' "$T/out" | sed -e "s|$D/t10k-images-idx3-ubyte.gz|X|" \
    -e "s|$T/idx/|RUN/|" >"$T/eval-idx"
expect_rc 0 "$BIN" eval "$T/png/model.safetensors" --samples 10 --device cpu
grep -vE '^(device|seconds|examples/s)' "$T/out" | sed -e "s|$D/t10k-png|X|" -e "s|$T/png/|RUN/|" \
    >"$T/eval-png"
grep -q "neg_elbo\|bound\|ELBO" "$T/eval-png" || { cat "$T/eval-png"; fail "eval printed no figures"; }
diff "$T/eval-idx" "$T/eval-png" || fail "eval of the PNG run differs from the IDX run's"
echo "$NAME: ok"
