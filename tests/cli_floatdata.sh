#!/usr/bin/env bash
# float32 data outside [0, 1] and the streamed training set (CPU):
#   - a float32 .npy with values in [-3, 5] trains with the Gaussian likelihood (kept float32,
#     not quantised: the first step's loss is the one computed from the float values), and
#     eval, sample and reconstruct read its checkpoint (input_range recorded);
#   - binarization and the Bernoulli likelihood are refused on it, naming the key, the file and
#     the range; a NaN or an infinity is refused naming the file and the element;
#   - float32 data in [0, 1] still train to exactly the figures of the same bytes (cli_numpy.sh
#     checks the same against IDX);
#   - data.stream = on (each batch's rows copied from the mapping into a staging buffer) and
#     data.stream = off (the backend's own copy of the set) give bit-identical parameters, for
#     bytes with dynamic binarization and for float data.
set -euo pipefail
NAME=cli_floatdata
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
need_python numpy

make_data
D=$T/data
"$py" - "$D" <<'EOF'
import gzip, sys
import numpy as np
d = sys.argv[1]
def idx(name, header):
    raw = gzip.open(f"{d}/{name}", "rb").read()
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(header)]
    return np.frombuffer(raw[4 + 4 * header:], np.uint8).reshape(dims)
for split in ("train", "t10k"):
    x = idx(f"{split}-images-idx3-ubyte.gz", 3)
    # Values in [-3, 5] that bytes cannot hold: x / 255 * 8 - 3, plus a small odd offset.
    wide = (x.astype(np.float32) / 255 * 8 - 3 + np.float32(1e-3) * (np.arange(x.size) % 7).reshape(x.shape)).astype(np.float32)
    np.save(f"{d}/{split}-wide.npy", wide)
    np.save(f"{d}/{split}-u8.npy", x)
    np.save(f"{d}/{split}-unit.npy", (x.astype(np.float32) / 255))
bad = np.load(f"{d}/t10k-wide.npy")
bad[3, 4, 5] = np.nan
np.save(f"{d}/nan.npy", bad)
bad[3, 4, 5] = np.inf
np.save(f"{d}/inf.npy", bad)
EOF

make_config "$T/tiny.ini" "$T/run"
WIDE=(data.train_images="$D/train-wide.npy" data.train_labels= data.test_images="$D/t10k-wide.npy"
    data.test_labels= data.binarize=none model.likelihood=gaussian)
train() { # $1: run name, the rest: overrides
    local run=$1; shift
    expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=2 output.dir="$T/$run" "$@"
}
# The data sections (every tensor) of two checkpoints are the same bytes.
same_tensors() {
    "$py" - "$1" "$2" <<'EOF' || fail "$1 and $2: the parameters differ"
import struct, sys
def data(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return raw[8 + n:]
a, b = (data(p) for p in sys.argv[1:3])
sys.exit(0 if a == b and len(a) > 0 else 1)
EOF
}

# Float data outside [0, 1]: Gaussian, kept as float32.
train wide "${WIDE[@]}" data.stream=off
expect_out "data: float32 values from -3 to 5"
grep -q '"loss"' "$T/wide/metrics.jsonl" || fail "wide: no losses logged"
grep -q input_range "$T/wide/model.safetensors" || fail "wide: no input_range"
# Not quantised: the same values rounded to bytes and mapped back train to other numbers.
"$py" - "$D" <<'EOF'
import sys
import numpy as np
d = sys.argv[1]
for s in ("train", "t10k"):
    w = np.load(f"{d}/{s}-wide.npy")
    q = (np.round((w + 3) / 8 * 255) / 255 * 8 - 3).astype(np.float32)
    np.save(f"{d}/{s}-quant.npy", q)
EOF
train quant data.train_images="$D/train-quant.npy" data.train_labels= \
    data.test_images="$D/t10k-quant.npy" data.test_labels= data.binarize=none \
    model.likelihood=gaussian data.stream=off
if diff <(json_field "$T/wide/metrics.jsonl" loss step) <(json_field "$T/quant/metrics.jsonl" loss step) >/dev/null; then
    fail "float data trained like their quantised copy: they were quantised"
fi

expect_rc 0 "$BIN" eval "$T/wide/model.safetensors" --samples 5 --device cpu
expect_out "negative ELBO"
expect_rc 0 "$BIN" sample "$T/wide/model.safetensors" --n 8 --device cpu --out "$T/wide-s.png"
expect_rc 0 "$BIN" reconstruct "$T/wide/model.safetensors" --n 8 --device cpu --out "$T/wide-r.png"
[ -s "$T/wide-s.png" ] && [ -s "$T/wide-r.png" ] || fail "wide: no sample or reconstruction"
# The reconstruction grid's input cells show the data mapped from [lo, hi] to black..white: not
# all clamped to one level.
"$py" - "$T/wide-r.png" <<'EOF' || fail "wide: the reconstruction grid is flat"
import sys, zlib, struct
raw = open(sys.argv[1], "rb").read()
at, idat = 8, b""
while at < len(raw):
    n, kind = struct.unpack(">I4s", raw[at:at + 8])
    if kind == b"IDAT":
        idat += raw[at + 8:at + 8 + n]
    at += 12 + n
px = zlib.decompress(idat)
sys.exit(0 if len(set(px)) > 20 else 1)
EOF
# eval of the float model on data in [0, 1] is refused (another scale).
expect_rc 1 "$BIN" eval "$T/wide/model.safetensors" --samples 5 --device cpu \
    --test-images "$D/t10k-u8.npy"
expect_err "the data must be on the training data's scale"

# Refusals: binarization, Bernoulli, NaN, infinity, mixed scales.
bad() { # $1: what the message must say, the rest: overrides
    local want=$1; shift
    expect_rc 1 "$BIN" train "$T/tiny.ini" train.epochs=1 output.dir="$T/bad" "$@"
    expect_one_line_error "$want"
}
bad "data.binarize = dynamic: data.test_images $D/t10k-wide.npy holds float32 values from -3" \
    "${WIDE[@]}" data.binarize=dynamic model.likelihood=bernoulli
bad "model.likelihood = bernoulli: data.test_images $D/t10k-wide.npy holds float32 values from -3" \
    "${WIDE[@]}" model.likelihood=bernoulli
bad "$D/nan.npy: element 485 (example 3) is NaN" "${WIDE[@]}" data.test_images="$D/nan.npy"
bad "$D/inf.npy: element 485 (example 3) is infinite" "${WIDE[@]}" data.test_images="$D/inf.npy"
bad "the two sets must be on one scale" "${WIDE[@]}" data.test_images="$D/t10k-u8.npy"

# float32 in [0, 1]: the numbers of the same bytes, as before.
train u8 data.train_images="$D/train-u8.npy" data.test_images="$D/t10k-u8.npy"
train unit data.train_images="$D/train-unit.npy" data.test_images="$D/t10k-unit.npy"
diff <(json_field "$T/u8/metrics.jsonl" loss step) <(json_field "$T/unit/metrics.jsonl" loss step) \
    >/dev/null || fail "float32 in [0, 1]: losses differ from the bytes'"
same_tensors "$T/u8/model.safetensors" "$T/unit/model.safetensors"
grep -q input_range "$T/unit/model.safetensors" && fail "float32 in [0, 1]: an input_range recorded"

# Streaming vs the backend's own copy: bit-identical (bytes, dynamic binarization; float data).
train u8-on data.train_images="$D/train-u8.npy" data.test_images="$D/t10k-u8.npy" data.stream=on
expect_out "the training set is streamed"
train u8-off data.train_images="$D/train-u8.npy" data.test_images="$D/t10k-u8.npy" data.stream=off
expect_out "the training set is held by the backend whole"
same_tensors "$T/u8-on/model.safetensors" "$T/u8-off/model.safetensors"
train wide-on "${WIDE[@]}" data.stream=on
expect_out "the training set is streamed"
same_tensors "$T/wide-on/model.safetensors" "$T/wide/model.safetensors"
diff <(json_field "$T/wide/metrics.jsonl" valid_neg_elbo epoch) \
    <(json_field "$T/wide-on/metrics.jsonl" valid_neg_elbo epoch) >/dev/null ||
    fail "streamed: validation figures differ"

# Larger than the memory granted: a 65 MB .npy trains under CUVAE_MEMORY_LIMIT=48M (the set stays in
# the mapping, the split copies only the validation examples), and the same run with
# data.stream = off (a copy of the set) is refused by the memory estimate.
"$py" - "$D" <<'EOF'
import sys
import numpy as np
d = sys.argv[1]
big = np.lib.format.open_memmap(f"{d}/big.npy", mode="w+", dtype=np.uint8, shape=(64000, 32, 32))
big[::97] = 200
del big
np.save(f"{d}/bigtest.npy", np.full((200, 32, 32), 7, np.uint8))
EOF
BIG=(data.train_images="$D/big.npy" data.train_labels= data.test_images="$D/bigtest.npy"
    data.test_labels= data.validation=1000 model.hidden=16 model.latent=2 train.batch_size=1000
    train.epochs=1 train.log_every=20 output.images=0)
expect_rc 0 env CUVAE_MEMORY_LIMIT=48M "$BIN" train "$T/tiny.ini" "${BIG[@]}" output.dir="$T/big"
expect_out "the training set is streamed"
expect_rc 1 env CUVAE_MEMORY_LIMIT=48M "$BIN" train "$T/tiny.ini" "${BIG[@]}" data.stream=off \
    output.dir="$T/big-off"
expect_one_line_error "memory: the run needs about"
expect_err "uploaded data 63.7 MiB"
echo "$NAME: ok"
