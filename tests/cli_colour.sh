#!/usr/bin/env bash
# Colour end to end on the CPU, with 4-D IDX (N x H x W x C) as the data: a generated RGB 32x32 set
# trains 1 epoch and writes RGB grids (IHDR colour type 2, the grid's size), the checkpoint records
# input_shape 3,32,32, and `sample`, `reconstruct` and `eval` work from it with RGB output. The
# same greyscale data as 4-D IDX (C = 1) and as 3-D IDX train to exactly the same losses. Hostile
# 4-D headers (C = 2, C = 0, absurd sizes) and a colour/greyscale mismatch get one line naming the
# file and what was expected.
set -euo pipefail
NAME=cli_colour
source "$(dirname "$0")/lib_cli.sh"
TESTS_DIR=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$T/rgb"
python3 - "$T/rgb" <<'EOF'
import gzip, random, struct, sys
d = sys.argv[1]
S = 32
for name, n, seed in (("train", 300, 1), ("t10k", 100, 2)):
    rnd = random.Random(seed)
    px, lab = bytearray(), bytearray()
    for i in range(n):
        label = i % 3  # the square's colour: red, green or blue
        y0, x0, side = rnd.randint(0, 16), rnd.randint(0, 16), rnd.randint(6, 14)
        for y in range(S):
            for x in range(S):
                inside = y0 <= y < y0 + side and x0 <= x < x0 + side
                for c in range(3):  # interleaved: N x H x W x C
                    px.append(230 if inside and c == label else rnd.randint(0, 30))
        lab.append(label)
    with gzip.open(f"{d}/{name}-images-idx4-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIIII", 0x804, n, S, S, 3) + bytes(px))
    with gzip.open(f"{d}/{name}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(lab))
EOF

# "WIDTHxHEIGHT colour-type" of a PNG from its IHDR chunk.
png_info() {
    python3 - "$1" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", "not a PNG"
w, h = struct.unpack(">II", b[16:24])
print("%dx%d %d" % (w, h, b[25]))
EOF
}
expect_png() {
    [ -f "$1" ] || fail "no $1"
    local got
    got=$(png_info "$1")
    [ "$got" = "$2" ] || fail "$1: IHDR says '$got', expected '$2' (WIDTHxHEIGHT colour-type)"
}

make_config "$T/rgb.ini" "$T/run"
sed -i "s#$T/data/train-images-idx3-ubyte.gz#$T/rgb/train-images-idx4-ubyte.gz#;
        s#$T/data/t10k-images-idx3-ubyte.gz#$T/rgb/t10k-images-idx4-ubyte.gz#;
        s#$T/data/\([a-z0-9]*\)-labels#$T/rgb/\1-labels#" "$T/rgb.ini"
expect_rc 0 "$BIN" train "$T/rgb.ini" train.epochs=1
expect_out "examples of 32x32 RGB"
# 32 validation images over their reconstructions, 8 a row: 8 rows of 32+1 pixels less the gap;
# 64 samples, 8 a row; by default the 32x32 tiles are drawn 2x (64+1 pixels a tile) under a
# caption band of (8 + 4) x 2 pixels.
expect_png "$T/run/images/recon-epoch-001.png" "519x543 2"
expect_png "$T/run/images/samples-epoch-001.png" "519x543 2"
expect_rc 0 "$BIN" train "$T/rgb.ini" train.epochs=1 output.dir="$T/run1" output.image_scale=1 \
    output.image_caption=0
expect_png "$T/run1/images/recon-epoch-001.png" "263x263 2"
CK=$T/run/checkpoints/$(cat "$T/run/checkpoints/latest")
shape=$(python3 -c 'import json, struct, sys
b = open(sys.argv[1], "rb").read(); (n,) = struct.unpack("<Q", b[:8])
print(json.loads(b[8:8 + n])["__metadata__"].get("input_shape"))' "$CK")
[ "$shape" = "3,32,32" ] || fail "input_shape in the checkpoint's metadata is '$shape', expected 3,32,32"

expect_rc 0 "$BIN" sample "$CK" --n 6 --per-row 3 --scale 1 --out "$T/s.png"
expect_out "(32x32 RGB,"
expect_png "$T/s.png" "98x65 2"
expect_rc 0 "$BIN" reconstruct "$CK" --n 4 --per-row 4 --scale 1 --device cpu --out "$T/r.png"
expect_out "(32x32 RGB,"
expect_png "$T/r.png" "131x65 2"
expect_rc 0 "$BIN" eval "$CK" --samples 2 --limit 20 --device cpu --json "$T/eval.json"
python3 -c 'import json, math, sys
r = json.load(open(sys.argv[1]))
v = [x for k, x in r.items() if isinstance(x, float)]
assert v and all(math.isfinite(x) for x in v), r' "$T/eval.json" || fail "eval.json: $(cat "$T/eval.json")"

# The recorded C,H,W is checked against encoder.0.weight's width, and the test set's channels
# against the checkpoint's.
reseal() {
    python3 - "$1" "$2" "$3" "$TESTS_DIR" <<'EOF'
import json, struct, sys
src, value, dst, tests = sys.argv[1:5]
sys.path.insert(0, tests)
import ckpt_crc
raw = open(src, "rb").read()
header, hlen = ckpt_crc.split(raw)
meta = header["__metadata__"]
meta["input_shape"] = value
data = raw[8 + hlen:]
meta["crc32"] = ckpt_crc.crc_of(header, data)
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
open(dst, "wb").write(struct.pack("<Q", len(text)) + text + data)
EOF
}
reseal "$CK" "3,32,33" "$T/bad.safetensors"
expect_rc 1 "$BIN" sample "$T/bad.safetensors" --out "$T/bad.png"
expect_one_line_error "input_shape 3,32,33 holds 3168 values but encoder.0.weight takes 3072"
reseal "$CK" "1,32,96" "$T/grey.safetensors"
expect_rc 0 "$BIN" sample "$T/grey.safetensors" --n 2 --out "$T/grey.png"
expect_png "$T/grey.png" "193x32 0"
expect_rc 1 "$BIN" eval "$T/grey.safetensors" --samples 2 --limit 20 --device cpu
expect_one_line_error "t10k-images-idx4-ubyte.gz: 3 channels an image, but the checkpoint's model takes 1"

# Greyscale: the same data as 3-D and as 4-D IDX with C = 1 train to exactly the same losses.
make_data
python3 - "$T/data" <<'EOF'
import gzip, struct, sys
d = sys.argv[1]
for name in ("train", "t10k"):
    b = gzip.open(f"{d}/{name}-images-idx3-ubyte.gz").read()
    magic, n, h, w = struct.unpack(">IIII", b[:16])
    with gzip.open(f"{d}/{name}-images-idx4-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIIII", 0x804, n, h, w, 1) + b[16:])
EOF
make_config "$T/g3.ini" "$T/g3"
make_config "$T/g4.ini" "$T/g4"
sed -i "s#images-idx3-ubyte#images-idx4-ubyte#" "$T/g4.ini"
expect_rc 0 "$BIN" train "$T/g3.ini" train.epochs=1 output.images=0
expect_rc 0 "$BIN" train "$T/g4.ini" train.epochs=1 output.images=0
for field in "loss step" "valid_neg_elbo epoch"; do
    a=$(json_field "$T/g3/metrics.jsonl" $field)
    [ -n "$a" ] || fail "no $field values in $T/g3/metrics.jsonl"
    [ "$a" = "$(json_field "$T/g4/metrics.jsonl" $field)" ] ||
        fail "4-D greyscale IDX trained to other $field values than the 3-D file"
done

# Hostile 4-D headers: one line naming the file and what was expected, before any training.
bad() {
    python3 -c 'import gzip, struct, sys
dims = [int(x) for x in sys.argv[2:]]
with gzip.open(sys.argv[1], "wb") as f:
    f.write(struct.pack(">I" + "I" * len(dims), 0x804, *dims) + bytes(64))' "$@"
}
bad "$T/c2.gz" 2 3 4 2
expect_rc 1 "$BIN" train "$T/g3.ini" output.dir="$T/h" data.test_images="$T/c2.gz"
expect_one_line_error "$T/c2.gz: 2 channels (header N x H x W x C = 2 x 3 x 4 x 2), expected 1 (greyscale) or 3 (RGB)"
bad "$T/c0.gz" 2 3 4 0
expect_rc 1 "$BIN" train "$T/g3.ini" output.dir="$T/h" data.test_images="$T/c0.gz"
expect_one_line_error "$T/c0.gz: a dimension is zero"
bad "$T/huge.gz" 4294967295 65536 65536 3
expect_rc 1 "$BIN" train "$T/g3.ini" output.dir="$T/h" data.test_images="$T/huge.gz"
expect_one_line_error "$T/huge.gz: too large: header says 4294967295 images of 65536 x 65536 pixels x 3 channels"
# Colour training images with a greyscale test set.
expect_rc 1 "$BIN" train "$T/rgb.ini" output.dir="$T/h" data.test_images="$T/data/t10k-images-idx3-ubyte.gz"
expect_one_line_error "has 32 x 32 x 3 (RGB) images but data.test_images"
echo "$NAME: ok"
