#!/usr/bin/env bash
# NumPy data end to end (CPU): the generated IDX data converted to .npy (uint8 N x H x W, float32
# N x H x W x 1 in [0, 1], uint8 N x D) and .npz (stored and deflated) train one epoch to exactly
# the losses and validation figures of the IDX files with the same seed, and `eval` reads them;
# bad NumPy input gets a one-line message naming the file (and the member).
set -euo pipefail
NAME=cli_numpy
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
need_python numpy

make_data
"$py" - "$T/data" <<'EOF'
import gzip, sys, zipfile
import numpy as np
d = sys.argv[1]
def idx(name, header):
    raw = gzip.open(f"{d}/{name}", "rb").read()
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(header)]
    return np.frombuffer(raw[4 + 4 * header:], np.uint8).reshape(dims)
for split, x_key, y_key in (("train", "x_train", "y_train"), ("t10k", "x_test", "y_test")):
    x = idx(f"{split}-images-idx3-ubyte.gz", 3)
    y = idx(f"{split}-labels-idx1-ubyte.gz", 1)
    np.save(f"{d}/{split}-u8.npy", x)
    np.save(f"{d}/{split}-f32.npy", (x.astype(np.float32) / 255)[..., None])
    np.save(f"{d}/{split}-flat.npy", x.reshape(len(x), -1))
    np.save(f"{d}/{split}-labels.npy", y.astype(np.int64))
    np.save(f"{d}/{split}-wide.npy", x.astype(np.float32) * 2 - 1)
np.savez(f"{d}/stored.npz", x_train=idx("train-images-idx3-ubyte.gz", 3),
         y_train=idx("train-labels-idx1-ubyte.gz", 1), x_test=idx("t10k-images-idx3-ubyte.gz", 3),
         y_test=idx("t10k-labels-idx1-ubyte.gz", 1))
np.savez_compressed(f"{d}/deflated.npz", images=idx("train-images-idx3-ubyte.gz", 3))
np.savez_compressed(f"{d}/test-deflated.npz", x_test=idx("t10k-images-idx3-ubyte.gz", 3),
                    y_test=idx("t10k-labels-idx1-ubyte.gz", 1))
np.save(f"{d}/fortran.npy", np.asfortranarray(np.zeros((4, 3, 5), np.uint8)))
np.save(f"{d}/f64.npy", np.zeros((4, 3, 3)))
np.save(f"{d}/rgb2.npy", np.zeros((4, 2, 3, 2), np.uint8))
raw = open(f"{d}/t10k-u8.npy", "rb").read()
open(f"{d}/cut.npy", "wb").write(raw[:-7])
open(f"{d}/notzip.npz", "wb").write(b"PK\3\4" + b"\0" * 100)
# A bomb: the member declares fewer bytes than its stream inflates to.
big = np.zeros((1000, 12, 12), np.uint8)
np.savez_compressed(f"{d}/bomb.npz", x_train=big)
z = bytearray(open(f"{d}/bomb.npz", "rb").read())
cd = z.rfind(b"PK\1\2")
z[cd + 24:cd + 28] = (2000).to_bytes(4, "little")
open(f"{d}/bomb.npz", "wb").write(bytes(z))
# A deflated member whose CRC does not match, and one cut short.
z = bytearray(open(f"{d}/test-deflated.npz", "rb").read())
cd = z.find(b"PK\1\2")
z[cd + 16] ^= 0xff
open(f"{d}/badcrc.npz", "wb").write(bytes(z))
np.savez_compressed(f"{d}/cut.npz", x_test=idx("t10k-images-idx3-ubyte.gz", 3))
z = bytearray(open(f"{d}/cut.npz", "rb").read())
cd = z.find(b"PK\1\2")
z[cd + 20:cd + 24] = (int.from_bytes(z[cd + 20:cd + 24], "little") // 2).to_bytes(4, "little")
open(f"{d}/cut.npz", "wb").write(bytes(z))
# A deflated member that declares 2.9 GB of 12x12 images: refused by the memory estimate from the
# headers (its first 128 KiB are real, the rest never inflated).
import io
b = io.BytesIO()
np.lib.format.write_array_header_1_0(b, {"descr": "|u1", "fortran_order": False,
                                         "shape": (20000000, 12, 12)})
h = b.getvalue()
with zipfile.ZipFile(f"{d}/big.npz", "w", zipfile.ZIP_DEFLATED) as zf:
    zf.writestr("x_test.npy", h + bytes(1 << 17))
z = bytearray(open(f"{d}/big.npz", "rb").read())
cd = z.find(b"PK\1\2")
z[cd + 24:cd + 28] = (len(h) + 20000000 * 144).to_bytes(4, "little")
open(f"{d}/big.npz", "wb").write(bytes(z))
EOF

D=$T/data
make_config "$T/tiny.ini" "$T/run"
train() { # $1: run name, the rest: overrides
    local run=$1; shift
    expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 output.images=0 output.dir="$T/$run" "$@"
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
train npy data.train_images="$D/train-u8.npy" data.train_labels="$D/train-labels.npy" \
    data.test_images="$D/t10k-u8.npy" data.test_labels="$D/t10k-labels.npy"
same npy
train f32 data.train_images="$D/train-f32.npy" data.train_labels= data.test_images="$D/t10k-f32.npy" \
    data.test_labels=
same f32
train flat data.train_images="$D/train-flat.npy" data.test_images="$D/t10k-flat.npy"
same flat
train stored data.train_images="$D/stored.npz" data.train_labels="$D/stored.npz" \
    data.test_images="$D/stored.npz" data.test_labels="$D/stored.npz"
same stored
train deflated data.train_images="$D/deflated.npz" data.train_key=images \
    data.test_images="$D/test-deflated.npz" data.test_labels="$D/test-deflated.npz"
same deflated

# Relative data paths in a config file are resolved against its directory, whatever the working
# directory; a missing one is named with its key and the absolute path tried.
mkdir -p "$T/rel"
sed -e "s|^train_images = .*|train_images = ../data/train-u8.npy|" \
    -e "s|^train_labels = .*|train_labels = ./../data/train-labels.npy|" \
    -e "s|^test_images = .*|test_images = ../data/t10k-u8.npy|" \
    -e "s|^test_labels = .*|test_labels = ../data/t10k-labels.npy|" "$T/tiny.ini" >"$T/rel/tiny.ini"
(cd / && expect_rc 0 "$BIN" train "$T/rel/tiny.ini" train.epochs=1 output.images=0 \
    output.dir="$T/rel-run")
same rel-run
grep -qF "train_images = $T/rel/../data/train-u8.npy" "$T/rel-run/config.ini" ||
    fail "the saved config does not hold the resolved path"
sed -i "s|^test_images = .*|test_images = missing.npy|" "$T/rel/tiny.ini"
(cd / && expect_rc 1 "$BIN" train "$T/rel/tiny.ini" output.dir="$T/rel-bad")
expect_one_line_error "data.test_images: $T/rel/missing.npy: cannot open"

# eval on the NumPy test sets gives the IDX figures.
expect_rc 0 "$BIN" eval "$T/idx/model.safetensors" --samples 5 --device cpu
grep -vE '^(device|seconds|examples/s)' "$T/out" >"$T/eval-idx"
for f in t10k-u8.npy t10k-f32.npy test-deflated.npz; do
    expect_rc 0 "$BIN" eval "$T/idx/model.safetensors" --samples 5 --device cpu \
        --test-images "$D/$f"
    grep -vE '^(device|seconds|examples/s)' "$T/out" | sed "s|$D/$f|X|g" >"$T/eval-np"
    sed "s|$D/t10k-images-idx3-ubyte.gz|X|g" "$T/eval-idx" | diff - "$T/eval-np" >/dev/null ||
        { diff <(sed "s|$D/t10k-images-idx3-ubyte.gz|X|g" "$T/eval-idx") "$T/eval-np" || true;
          fail "eval on $f differs from eval on the IDX file"; }
done

# sample and reconstruct from runs on NumPy data (reconstruct reads the run's test set).
for run in npy flat deflated; do
    expect_rc 0 "$BIN" sample "$T/$run/model.safetensors" --n 4 --device cpu --out "$T/$run-s.png"
    expect_rc 0 "$BIN" reconstruct "$T/$run/model.safetensors" --n 4 --device cpu \
        --out "$T/$run-r.png"
    [ -s "$T/$run-s.png" ] && [ -s "$T/$run-r.png" ] || fail "$run: no sample or reconstruction"
done

# Bad input: one line naming the file and what was expected.
bad() { # $1: what the message must say, the rest: overrides
    local want=$1; shift
    expect_rc 1 "$BIN" train "$T/tiny.ini" train.epochs=1 output.dir="$T/bad" "$@"
    expect_one_line_error "$want"
}
bad "$D/fortran.npy: fortran_order is True" data.test_images="$D/fortran.npy"
bad "$D/f64.npy: unsupported dtype '<f8'" data.test_images="$D/f64.npy"
bad "$D/rgb2.npy: shape (4, 2, 3, 2): expected N x H x W x C or N x C x H x W" \
    data.test_images="$D/rgb2.npy"
bad "$D/cut.npy: truncated" data.test_images="$D/cut.npy"
bad "$D/notzip.npz: not a zip archive" data.test_images="$D/notzip.npz"
bad "member 'x_train.npy': inflates to more than its declared 2000 bytes" \
    data.train_images="$D/bomb.npz" data.train_labels=
bad "badcrc.npz: member 'x_test.npy': CRC mismatch" data.test_images="$D/badcrc.npz" \
    data.test_labels=
bad "cut.npz: member 'x_test.npy': corrupt or truncated deflate data" \
    data.test_images="$D/cut.npz" data.test_labels=
bad "no member 'nope.npy'" data.train_images="$D/stored.npz" data.train_key=nope
bad "data.binarize = dynamic: data.test_images $D/t10k-wide.npy holds float32 values from -1 to 509" \
    data.test_images="$D/t10k-wide.npy" data.test_labels=
bad "model.likelihood = bernoulli: data.test_images $D/t10k-wide.npy holds float32 values" \
    data.test_images="$D/t10k-wide.npy" data.test_labels= data.binarize=none
bad "the two sets must be on one scale" \
    data.test_images="$D/t10k-wide.npy" data.test_labels= data.binarize=none model.likelihood=gaussian
expect_rc 1 env CUVAE_MEMORY_LIMIT=4G "$BIN" eval "$T/idx/model.safetensors" --device cpu \
    --test-images "$D/big.npz"
expect_one_line_error "memory: the run needs about"
expect_err "data staging (.npz) 2.68 GiB"
echo "$NAME: ok"
