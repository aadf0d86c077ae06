#!/usr/bin/env bash
# The streamed training set on the GPU (data.stream = on: each batch's rows through pinned host
# buffers and a copy stream, double-buffered) against the whole set uploaded (data.stream = off):
# the same seed gives bit-identical parameters and the same losses, for bytes with dynamic
# binarization (step graph off and on) and for float32 data outside [0, 1] (Gaussian likelihood,
# the float32 gather). Skipped (77) where no GPU is usable. Run by bench/device_check.sh 1 with
# the other gpu-labelled tests.
set -euo pipefail
NAME=gpu_stream
source "$(dirname "$0")/lib_cli.sh"
make_data
D=$T/data
# .npy files written by hand (no NumPy needed on the GPU machine): version 1.0 headers.
python3 - "$D" <<'EOF'
import array, gzip, sys
d = sys.argv[1]
def npy(path, descr, shape, payload):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, ", ".join(str(v) for v in shape) + ("," if len(shape) == 1 else ""))
    h += " " * (63 - (10 + len(h)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h.encode() + payload)
assert sys.byteorder == "little"
for split in ("train", "t10k"):
    raw = gzip.open(f"{d}/{split}-images-idx3-ubyte.gz", "rb").read()
    n, r, c = (int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    px = raw[16:]
    npy(f"{d}/{split}-u8.npy", "|u1", (n, r, c), px)
    wide = array.array("f", (v / 255 * 8 - 3 for v in px))
    npy(f"{d}/{split}-wide.npy", "<f4", (n, r, c), wide.tobytes())
EOF
make_config "$T/tiny.ini" "$T/run"
U8=(data.train_images="$D/train-u8.npy" data.test_images="$D/t10k-u8.npy")
WIDE=(data.train_images="$D/train-wide.npy" data.train_labels= data.test_images="$D/t10k-wide.npy"
    data.test_labels= data.binarize=none model.likelihood=gaussian)
GPU=(train.device=cuda train.precision=fp32 train.epochs=2 output.images=0)

rc=0
"$BIN" train "$T/tiny.ini" "${GPU[@]}" "${U8[@]}" data.stream=off output.dir="$T/u8-off" \
    >"$T/out" 2>"$T/err" || rc=$?
if [ "$rc" -ne 0 ] && grep -q "no usable CUDA device" "$T/err"; then
    echo "$NAME: skipped: $(head -n 1 "$T/err")"
    exit 77
fi
[ "$rc" -eq 0 ] || { cat "$T/err"; fail "the GPU run exited $rc"; }
grep -q '"device":"cuda"' "$T/u8-off/metrics.jsonl" || fail "the run did not train on the GPU"
expect_out "the training set is held by the backend whole"

same() { # runs $1 and $2: the same tensors (data sections) and step losses
    python3 - "$T/$1/model.safetensors" "$T/$2/model.safetensors" <<'EOF' ||
import struct, sys
def data(p):
    raw = open(p, "rb").read()
    return raw[8 + struct.unpack("<Q", raw[:8])[0]:]
sys.exit(0 if data(sys.argv[1]) == data(sys.argv[2]) else 1)
EOF
        fail "$1 and $2: the parameters differ"
    diff <(json_field "$T/$1/metrics.jsonl" loss step) <(json_field "$T/$2/metrics.jsonl" loss step) \
        >/dev/null || fail "$1 and $2: step losses differ"
}
run() { # $1: run name, the rest: overrides
    local name=$1; shift
    expect_rc 0 "$BIN" train "$T/tiny.ini" "${GPU[@]}" output.dir="$T/$name" "$@"
}
run u8-on "${U8[@]}" data.stream=on
expect_out "the training set is streamed"
same u8-off u8-on
run u8-on-graph "${U8[@]}" data.stream=on train.cuda_graph=1
same u8-off u8-on-graph
run wide-off "${WIDE[@]}" data.stream=off
run wide-on "${WIDE[@]}" data.stream=on
expect_out "the training set is streamed"
same wide-off wide-on
# auto on a set this small: uploaded whole.
run u8-auto "${U8[@]}"
expect_out "the training set is held by the backend whole"
same u8-off u8-auto
echo "$NAME: ok"
