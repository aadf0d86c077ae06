#!/usr/bin/env bash
# The checkpoint records the input shape of non-square data, and `cuvae sample` draws images of
# that shape: 1 epoch on generated 6x10 (rows x cols) IDX data, then a grid of 6 samples, 3 a row,
# whose PNG (IHDR) is 3x(10+1)-1 = 32 pixels wide and 2x(6+1)-1 = 13 high. The same checkpoint
# without its input_shape key (as written before the key existed, CRC re-sealed) still loads and
# draws 1x60 strips, as before; an input_shape that does not match the tensors is refused.
set -euo pipefail
NAME=cli_sample_shape
source "$(dirname "$0")/lib_cli.sh"
TESTS_DIR=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$T/data"
python3 - "$T/data" <<'EOF'
import gzip, random, struct, sys
d = sys.argv[1]
H, W = 6, 10
for name, n, seed in (("train", 300, 1), ("t10k", 100, 2)):
    rnd = random.Random(seed)
    px = bytearray()
    for i in range(n):
        row = i % H
        px.extend(255 if y == row else rnd.randint(0, 40) for y in range(H) for x in range(W))
    with gzip.open(f"{d}/{name}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, H, W) + bytes(px))
    with gzip.open(f"{d}/{name}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
EOF
make_config "$T/tiny.ini" "$T/run"
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 output.images=0
CK=$T/run/checkpoints/$(cat "$T/run/checkpoints/latest")
[ -f "$CK" ] || fail "no checkpoint at $CK"

# Width and height of a PNG from its IHDR chunk.
png_size() {
    python3 - "$1" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", "not a PNG"
print("%dx%d" % struct.unpack(">II", b[16:24]))
EOF
}

shape=$(python3 -c 'import json, struct, sys
b = open(sys.argv[1], "rb").read(); (n,) = struct.unpack("<Q", b[:8])
print(json.loads(b[8:8 + n])["__metadata__"].get("input_shape"))' "$CK")
[ "$shape" = "1,6,10" ] || fail "input_shape in the checkpoint's metadata is '$shape', expected 1,6,10"

expect_rc 0 "$BIN" sample "$CK" --n 6 --per-row 3 --scale 1 --out "$T/s.png"
expect_out "(6x10,"
[ "$(png_size "$T/s.png")" = "32x13" ] || fail "sample grid is $(png_size "$T/s.png"), expected 32x13"

# Writes the checkpoint $1 with its metadata key input_shape set to $2 ("" removes it) to $3,
# the CRC-32 re-sealed.
reseal() {
    python3 - "$1" "$2" "$3" "$TESTS_DIR" <<'EOF'
import json, struct, sys
src, value, dst, tests = sys.argv[1:5]
sys.path.insert(0, tests)
import ckpt_crc
raw = open(src, "rb").read()
header, hlen = ckpt_crc.split(raw)
meta = header["__metadata__"]
if value:
    meta["input_shape"] = value
else:
    del meta["input_shape"]
data = raw[8 + hlen:]
meta["crc32"] = ckpt_crc.crc_of(header, data)
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
open(dst, "wb").write(struct.pack("<Q", len(text)) + text + data)
EOF
}

reseal "$CK" "" "$T/old.safetensors"
expect_rc 0 "$BIN" sample "$T/old.safetensors" --n 6 --per-row 3 --scale 1 --out "$T/old.png"
expect_out "(1x60,"
[ "$(png_size "$T/old.png")" = "182x3" ] || fail "old-style grid is $(png_size "$T/old.png"), expected 182x3"

reseal "$CK" "1,6,11" "$T/bad.safetensors"
expect_rc 1 "$BIN" sample "$T/bad.safetensors" --out "$T/bad.png"
expect_one_line_error "input_shape 1,6,11 holds 66 values but encoder.0.weight takes 60"
reseal "$CK" "6x10" "$T/bad2.safetensors"
expect_rc 1 "$BIN" sample "$T/bad2.safetensors" --out "$T/bad2.png"
expect_one_line_error "metadata key input_shape malformed"
echo "$NAME: ok"
