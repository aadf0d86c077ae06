#!/usr/bin/env bash
# Fashion-MNIST (Debian's dataset-fashion-mnist IDX files; skipped where absent) converted to
# .npy and .npz (stored and deflated): its first 3000 training and 1000 test images train one
# epoch and evaluate to exactly the numbers of the IDX files (data.limit_* on the IDX files):
# the same step losses, validation figures, eval report and parameters, bit for bit.
#   CUVAE_FMNIST_DIR  where the four IDX files are (default /usr/share/datasets/fashion-mnist)
set -euo pipefail
NAME=cli_fmnist_numpy
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
F=${CUVAE_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
    t10k-labels-idx1-ubyte.gz; do
    [ -r "$F/$f" ] || { echo "$NAME: skipped: no $F/$f (Debian: dataset-fashion-mnist)"; exit 77; }
done
need_python numpy
NT=3000 NE=1000
D=$T/np
mkdir -p "$D"
"$py" - "$F" "$D" "$NT" "$NE" <<'EOF'
import gzip, sys
import numpy as np
f, d, nt, ne = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def idx(name, header, n):
    raw = gzip.open(f"{f}/{name}", "rb").read()
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(header)]
    return np.frombuffer(raw[4 + 4 * header:], np.uint8).reshape(dims)[:n]
x_train, y_train = idx("train-images-idx3-ubyte.gz", 3, nt), idx("train-labels-idx1-ubyte.gz", 1, nt)
x_test, y_test = idx("t10k-images-idx3-ubyte.gz", 3, ne), idx("t10k-labels-idx1-ubyte.gz", 1, ne)
np.save(f"{d}/x_train.npy", x_train)
np.save(f"{d}/y_train.npy", y_train.astype(np.int64))
np.save(f"{d}/x_test.npy", x_test)
np.save(f"{d}/y_test.npy", y_test.astype(np.int64))
np.savez(f"{d}/stored.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
np.savez_compressed(f"{d}/deflated.npz", x_train=x_train, y_train=y_train, x_test=x_test,
                    y_test=y_test)
EOF

cat >"$T/fm.ini" <<EOF
[data]
train_images = $F/train-images-idx3-ubyte.gz
train_labels = $F/train-labels-idx1-ubyte.gz
test_images = $F/t10k-images-idx3-ubyte.gz
test_labels = $F/t10k-labels-idx1-ubyte.gz
validation = 500
binarize = dynamic
[model]
hidden = 64
latent = 8
[train]
epochs = 1
batch_size = 100
seed = 3
log_every = 5
device = cpu
[output]
dir = $T/run
images = 0
EOF
train() { # $1: run name, the rest: overrides
    local run=$1; shift
    expect_rc 0 "$BIN" train "$T/fm.ini" output.dir="$T/$run" "$@"
}
evaluate() { # $1: run name; the eval report without timings and paths
    expect_rc 0 "$BIN" eval "$T/$1/model.safetensors" --samples 10 --device cpu
    grep -vE '^(device|seconds|examples/s|checkpoint|test set)' "$T/out" >"$T/eval-$1"
    [ -s "$T/eval-$1" ] || fail "$1: empty eval report"
}
same() { # run $1 against the IDX run
    diff <(json_field "$T/idx/metrics.jsonl" loss step) <(json_field "$T/$1/metrics.jsonl" loss step) \
        >/dev/null || fail "$1: step losses differ from the IDX run"
    diff <(json_field "$T/idx/metrics.jsonl" valid_neg_elbo epoch) \
        <(json_field "$T/$1/metrics.jsonl" valid_neg_elbo epoch) >/dev/null ||
        fail "$1: validation figures differ from the IDX run"
    "$py" - "$T/idx/model.safetensors" "$T/$1/model.safetensors" <<'EOF' ||
import struct, sys
def data(p):
    raw = open(p, "rb").read()
    return raw[8 + struct.unpack("<Q", raw[:8])[0]:]
sys.exit(0 if data(sys.argv[1]) == data(sys.argv[2]) else 1)
EOF
        fail "$1: parameters differ from the IDX run"
    evaluate "$1"
    diff "$T/eval-idx" "$T/eval-$1" || fail "$1: eval differs from the IDX run"
}

train idx data.limit_train=$NT data.limit_test=$NE
[ -n "$(json_field "$T/idx/metrics.jsonl" loss step)" ] || fail "idx: no losses logged"
evaluate idx
grep -q "examples  *$NE" "$T/eval-idx" || { cat "$T/eval-idx"; fail "idx: not $NE test examples"; }
train npy data.train_images="$D/x_train.npy" data.train_labels="$D/y_train.npy" \
    data.test_images="$D/x_test.npy" data.test_labels="$D/y_test.npy"
same npy
for z in stored deflated; do
    train "$z" data.train_images="$D/$z.npz" data.train_labels="$D/$z.npz" \
        data.test_images="$D/$z.npz" data.test_labels="$D/$z.npz"
    same "$z"
done
echo "$NAME: ok"
