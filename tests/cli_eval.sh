#!/usr/bin/env bash
# End-to-end test of `cuvae eval`, `cuvae sample` and `cuvae reconstruct`: trains a tiny model on
# generated 8x8 IDX data, then checks the bounds (the K=50 importance-weighted bound is finite and
# no worse than the ELBO), the JSON report, batch invariance, the PNG files, and the exit status
# and one-line message of each kind of bad input.
set -euo pipefail

BIN=${1:?usage: cli_eval.sh path/to/cuvae}
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")" # absolute: one step runs elsewhere
command -v python3 >/dev/null || { echo "cli_eval: python3 not found, skipping"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/cuvae_cli_eval.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT

fail() { echo "cli_eval: FAIL: $*" >&2; exit 1; }

# Runs the command, expects exit status $1; leaves stdout and stderr in $T/out and $T/err.
expect_rc() {
    local want=$1; shift
    local rc=0
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "--- stdout"; cat "$T/out"; echo "--- stderr"; cat "$T/err"
        fail "'$*' exited $rc, expected $want"
    fi
}

# The error of a failed command: exactly one line on stderr, containing $1 (besides the
# "device: ..." note a command prints once its backend is up).
expect_one_line_error() {
    local lines
    lines=$(grep -v '^device: ' "$T/err" | grep -c . || true)
    [ "$lines" -eq 1 ] || { cat "$T/err"; fail "expected a one-line error, got $lines lines"; }
    grep -qF -- "$1" "$T/err" || { cat "$T/err"; fail "error does not mention '$1'"; }
}

# --- data: 8x8 images, a blurred bar whose position and direction depend on the label --------
python3 - "$T" <<'EOF'
import gzip, random, struct, sys
d = sys.argv[1]
def images(n, seed):
    rnd = random.Random(seed)
    px, lab = bytearray(), bytearray()
    for i in range(n):
        label = i % 10
        img = [[0] * 8 for _ in range(8)]
        pos = (label % 5) + rnd.randint(0, 2)
        for t in range(8):
            y, x = (pos, t) if label < 5 else (t, pos)
            img[y][x] = 255
            for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < 8 and 0 <= xx < 8:
                    img[yy][xx] = max(img[yy][xx], rnd.randint(60, 160))
        for row in img: px.extend(row)
        lab.append(label)
    return px, lab
for name, n, seed in (("train", 600, 1), ("t10k", 200, 2)):
    px, lab = images(n, seed)
    with gzip.open(f"{d}/{name}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 8, 8) + bytes(px))
    with gzip.open(f"{d}/{name}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(lab))
# A 6x6 test file: the wrong size for the model.
with gzip.open(f"{d}/small-images-idx3-ubyte.gz", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 3, 6, 6) + bytes(3 * 36))
EOF

LATENT=4
cat >"$T/tiny.ini" <<EOF
[data]
train_images = $T/train-images-idx3-ubyte.gz
train_labels = $T/train-labels-idx1-ubyte.gz
test_images = $T/t10k-images-idx3-ubyte.gz
test_labels = $T/t10k-labels-idx1-ubyte.gz
validation = 100
binarize = dynamic

[model]
hidden = 32
latent = $LATENT
likelihood = bernoulli

[train]
epochs = 3
batch_size = 50
seed = 7
device = cpu

[optim]
lr = 0.003

[eval]
samples = 10
batch_size = 64

[output]
dir = $T/run
images = 0
EOF

expect_rc 0 "$BIN" train "$T/tiny.ini"
MODEL="$T/run/model.safetensors" # parameters only: no optimizer state
[ -s "$MODEL" ] || fail "training wrote no $MODEL"
LATEST=$(ls "$T"/run/checkpoints/step-*.safetensors | tail -n 1) # with optimizer state

# --- help and usage errors ------------------------------------------------------------------
for c in eval sample reconstruct; do
    expect_rc 0 "$BIN" "$c" --help
    grep -q -- "--device" "$T/out" || fail "$c --help does not describe --device"
done
grep -q -- "--samples" <("$BIN" eval --help) || fail "eval --help does not describe --samples"
expect_rc 2 "$BIN" eval "$MODEL" --samples 0
expect_one_line_error "--samples"
expect_rc 2 "$BIN" eval "$MODEL" --samples=-3
expect_rc 2 "$BIN" eval "$MODEL" --samples
expect_rc 2 "$BIN" eval "$MODEL" --frobnicate
expect_one_line_error "--frobnicate"
expect_rc 2 "$BIN" eval "$MODEL" --precision bf16
expect_one_line_error "evaluation has no bf16 path"
expect_rc 2 "$BIN" eval
expect_rc 2 "$BIN" eval "$MODEL" --device tpu
expect_rc 2 "$BIN" eval "$MODEL" --precision fp64
expect_rc 2 "$BIN" sample "$MODEL" --n 0
expect_rc 2 "$BIN" reconstruct "$MODEL" --per-row x

# --- bad checkpoints: exit 1, one line naming the file ------------------------------------------
expect_rc 1 "$BIN" eval "$T/missing.safetensors"
expect_one_line_error "$T/missing.safetensors"
head -c 1000 "$MODEL" >"$T/truncated.safetensors"
for c in eval sample reconstruct; do
    expect_rc 1 "$BIN" "$c" "$T/truncated.safetensors"
    expect_one_line_error "$T/truncated.safetensors"
done
printf 'not a checkpoint' >"$T/garbage.safetensors"
expect_rc 1 "$BIN" eval "$T/garbage.safetensors"
expect_one_line_error "$T/garbage.safetensors"

# --- bad data: a test set of the wrong image size --------------------------------------------------
expect_rc 1 "$BIN" eval "$MODEL" --samples 1 --device cpu \
    --test-images "$T/small-images-idx3-ubyte.gz" --test-labels ""
expect_rc 1 "$BIN" eval "$MODEL" --samples 1 --device cpu \
    --test-images "$T/small-images-idx3-ubyte.gz"
expect_one_line_error "small-images-idx3-ubyte.gz"
expect_rc 1 "$BIN" eval "$MODEL" --samples 1 --device cpu --data-dir "$T/nowhere"
expect_one_line_error "$T/nowhere"
expect_rc 1 "$BIN" eval "$MODEL" --samples 1 --device cpu --json "$T/nowhere/e.json"
expect_one_line_error "$T/nowhere/e.json"

# --- eval: K = 1 and K = 50 ------------------------------------------------------------------
expect_rc 0 "$BIN" eval "$MODEL" --samples 1 --device cpu --json "$T/k1.json"
grep -q "negative ELBO" "$T/out" || fail "eval prints no negative ELBO"
grep -q "active units" "$T/out" || fail "eval prints no active units"
expect_rc 0 "$BIN" eval "$MODEL" --samples 50 --device cpu --json "$T/k50.json"
cp "$T/out" "$T/k50.txt"
CUVAE_PROGRESS_SECONDS=0 expect_rc 0 "$BIN" eval "$MODEL" --samples 50 --device cpu --batch 7 \
    --json "$T/k50b7.json"
# Not a terminal: with CUVAE_PROGRESS_SECONDS=0 a plain progress line after every call but the last.
[ "$(grep -c '^eval K=50: [0-9]*/200 examples' "$T/err")" -eq 28 ] ||
    { cat "$T/err"; fail "expected 28 progress lines (200 examples in calls of 7)"; }
grep -q $'\r' "$T/err" && fail "progress off a terminal must not redraw lines"
expect_rc 0 "$BIN" eval "$LATEST" --samples 3 --limit 37 --device cpu --json "$T/latest.json"
expect_rc 0 "$BIN" eval "$MODEL" --samples 2 --device cpu --data-dir "$T" --json "$T/dd.json"
[ -z "$(ls "$T" | grep '\.tmp\.' || true)" ] || fail "eval left a temporary file behind"

python3 - "$T" "$LATENT" <<'EOF'
import json, math, sys
d, latent = sys.argv[1], int(sys.argv[2])
def load(name):
    with open(f"{d}/{name}") as f:
        return json.load(f)
k1, k50, k50b7, latest, dd = (load(n) for n in ("k1.json", "k50.json", "k50b7.json",
                                                "latest.json", "dd.json"))
def check(cond, what):
    if not cond:
        sys.exit(f"cli_eval: FAIL: {what}")
for r, K in ((k1, 1), (k50, 50), (k50b7, 50)):
    for key in ("neg_elbo", "neg_iw_bound", "rec", "kl", "seconds", "examples_per_s"):
        check(isinstance(r[key], (int, float)) and math.isfinite(r[key]), f"K={K}: {key} = {r[key]}")
    check(r["samples"] == K and r["examples"] == 200, f"K={K}: samples/examples {r}")
    check(0 <= r["active_units"] <= latent and r["latent"] == latent, f"active units {r}")
    check(r["nonfinite"] == 0, f"non-finite examples {r}")
    check(r["kl"] >= 0 and r["rec"] > 0, f"terms {r}")
    check(abs(r["neg_elbo"] - (r["rec"] + r["kl"])) <= 1e-6 * abs(r["neg_elbo"]) + 1e-6,
          f"neg ELBO != rec + KL: {r}")
# The K-sample bound is an upper bound on -log p(x) no looser than the ELBO (in expectation;
# 200 examples leave a little noise, hence the slack), and it tightens from K = 1 to K = 50.
slack = 0.05
check(k50["neg_iw_bound"] <= k50["neg_elbo"] + slack, f"bound(K=50) > ELBO: {k50}")
check(k50["neg_iw_bound"] <= k1["neg_iw_bound"] + slack, f"bound(K=50) > bound(K=1): {k1} {k50}")
# The closed-form KL and the encoder means do not depend on K.
check(abs(k1["kl"] - k50["kl"]) <= 1e-9 * k1["kl"] + 1e-9, "KL depends on K")
check(k1["active_units"] == k50["active_units"], "active units depend on K")
# The noise of an example is keyed by its index: batching changes nothing (up to the GEMM's
# rounding, which may depend on the batch's shape).
for key in ("neg_elbo", "neg_iw_bound", "rec", "kl"):
    check(abs(k50[key] - k50b7[key]) <= 1e-5 * abs(k50[key]), f"batch 7 vs 64: {key}")
check(latest["examples"] == 37 and latest["samples"] == 3, f"--limit: {latest}")
check(dd["examples"] == 200 and math.isfinite(dd["neg_iw_bound"]), f"--data-dir: {dd}")
EOF
grep -q "examples/s" "$T/k50.txt" || fail "eval prints no throughput"

# --- active units: a copy of the model whose mu_0 and mu_1 are constant (their rows of the
# encoder's last layer zeroed, the CRC recomputed) has those two units inactive, the others as
# before.
python3 - "$MODEL" "$T/dead.safetensors" <<'EOF2'
import json, os, re, struct, sys, zlib
src, dst = sys.argv[1], sys.argv[2]
data = bytearray(open(src, "rb").read())
hlen = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + hlen])
base = 8 + hlen
last = max(int(m.group(1)) for k in header if (m := re.fullmatch(r"encoder\.(\d+)\.weight", k)))
w, b = header[f"encoder.{last}.weight"], header[f"encoder.{last}.bias"]
cols = w["shape"][1]
for t, count in ((w, 2 * cols), (b, 2)):
    start = base + t["data_offsets"][0]
    data[start:start + 4 * count] = bytes(4 * count)
old_crc = header["__metadata__"]["crc32"]
sys.path.insert(0, os.path.join(os.environ["CUVAE_SOURCE_DIR"], "tests"))
import ckpt_crc
new_crc = ckpt_crc.crc_of(header, bytes(data[base:]))
head = bytes(data[8:base]).replace(f'"{old_crc}"'.encode(), f'"{new_crc}"'.encode())
assert len(head) == hlen
open(dst, "wb").write(bytes(data[:8]) + head + bytes(data[base:]))
EOF2
expect_rc 0 "$BIN" eval "$T/dead.safetensors" --samples 1 --device cpu --json "$T/dead.json"
python3 - "$T/k1.json" "$T/dead.json" "$LATENT" <<'EOF2'
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:3])
latent = int(sys.argv[3])
if not (before["active_units"] - 2 <= after["active_units"] <= latent - 2):
    sys.exit(f"cli_eval: FAIL: active units {before['active_units']} -> {after['active_units']} "
             "with two units made constant")
EOF2

# --- sample and reconstruct: valid PNGs of the documented geometry --------------------------------
expect_rc 0 "$BIN" sample "$MODEL" --n 10 --per-row 4 --seed 3 --scale 1 --device cpu --out "$T/s.png"
grep -qF "$T/s.png" "$T/out" || fail "sample does not say where it wrote"
expect_rc 0 "$BIN" sample "$MODEL" --n 10 --per-row 4 --seed 3 --scale 1 --device cpu --out "$T/s2.png"
expect_rc 0 "$BIN" sample "$MODEL" --n 10 --per-row 4 --seed 4 --scale 1 --device cpu --out "$T/s3.png"
cmp -s "$T/s.png" "$T/s2.png" || fail "sample with the same seed gave different images"
cmp -s "$T/s.png" "$T/s3.png" && fail "sample with another seed gave the same images"
(cd "$T" && expect_rc 0 "$BIN" sample "$MODEL" --device cpu)
[ -s "$T/samples.png" ] || fail "sample wrote no samples.png by default"
expect_rc 0 "$BIN" reconstruct "$MODEL" --n 10 --per-row 4 --scale 1 --device cpu --out "$T/r.png"
grep -qF "$T/r.png" "$T/out" || fail "reconstruct does not say where it wrote"
expect_rc 1 "$BIN" sample "$MODEL" --device cpu --out "$T/nowhere/s.png"
expect_one_line_error "$T/nowhere/s.png"

python3 - "$T" <<'EOF'
import struct, sys, zlib
d = sys.argv[1]
def png_size(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"cli_eval: FAIL: {path}: bad PNG signature")
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        sys.exit(f"cli_eval: FAIL: {path}: first chunk is not IHDR")
    w, h, depth, color = struct.unpack(">IIBB", data[16:26])
    if (depth, color) != (8, 0):
        sys.exit(f"cli_eval: FAIL: {path}: not 8-bit grayscale")
    if zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]:
        sys.exit(f"cli_eval: FAIL: {path}: IHDR CRC mismatch")
    return w, h
def expect(path, w, h):
    got = png_size(path)
    if got != (w, h):
        sys.exit(f"cli_eval: FAIL: {path}: {got[0]}x{got[1]}, expected {w}x{h}")
# 8x8 tiles (--scale 1), 1-pixel gaps. sample: 10 images, 4 a row -> 3 rows.
expect(f"{d}/s.png", 4 * 9 - 1, 3 * 9 - 1)
# default: 64 samples, 8 a row, tiles drawn 7x (the smallest scale giving 56 pixels).
expect(f"{d}/samples.png", 8 * 57 - 1, 8 * 57 - 1)
# reconstruct: 10 inputs, 4 a row -> 3 pairs of rows.
expect(f"{d}/r.png", 4 * 9 - 1, 6 * 9 - 1)
EOF

echo "cli_eval: ok"
