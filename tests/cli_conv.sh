#!/usr/bin/env bash
# A convolutional VAE end to end on the CPU (model.encoder / model.decoder): a tiny conv config
# on 12x12 data trains and learns, its resolved config and checkpoint rebuild it, a resume equals
# the uninterrupted run, eval gives the same figures whatever the batch, sample and reconstruct
# write their grids; an explicit decoder trains; bad stacks get one line naming the layer.
set -euo pipefail
NAME=cli_conv
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/conv.ini" "$T/run"
# model.encoder replaces the file's model.hidden: set it in the file instead.
sed -i 's/^hidden = 32$/encoder = conv 4, conv 8 k3 s1 p1, linear 16/' "$T/conv.ini"

# 12x12 -> 4x6x6 -> 8x6x6 -> 16 -> [mu | logvar]; the mirror: 16, 288 (8x6x6), convt 4 (k3 s1
# p1), convt 1 (6 -> 12).
expect_rc 0 "$BIN" train "$T/conv.ini" train.epochs=2
expect_out "encoder = conv 4, conv 8 k3 s1, linear 16"
grep -qx "hidden =" "$T/run/config.ini" || fail "config.ini keeps model.hidden: $(grep hidden "$T/run/config.ini")"
grep -qx "encoder = conv 4, conv 8 k3 s1, linear 16" "$T/run/config.ini" || fail "config.ini: no encoder line"
python3 - "$T/run/metrics.jsonl" <<'EOF' || fail "the conv VAE does not learn: $(grep epoch "$T/run/metrics.jsonl")"
import json, math, sys
v = [r["valid_neg_elbo"] for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "epoch"]
assert len(v) == 2 and all(math.isfinite(x) for x in v) and v[1] < v[0], v
EOF

# Resume from epoch 2 to 3 equals a 3-epoch run from scratch, to the bit of the parameters.
expect_rc 0 "$BIN" train "$T/conv.ini" train.epochs=3 --resume auto
expect_rc 0 "$BIN" train "$T/conv.ini" train.epochs=3 output.dir="$T/straight"
python3 - "$T/run/model.safetensors" "$T/straight/model.safetensors" <<'EOF' || fail "resumed and uninterrupted runs differ"
import json, struct, sys
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a[k] != b.get(k)]
# PyTorch's layouts: conv2d [out, in, k, k], conv_transpose2d [in, out, k, k], biases [out].
h = json.loads(open(sys.argv[1], "rb").read()[8:8 + struct.unpack("<Q", open(sys.argv[1], "rb").read(8))[0]])
shapes = {k: v["shape"] for k, v in h.items() if k != "__metadata__"}
want = {"encoder.0.weight": [4, 1, 4, 4], "encoder.1.weight": [8, 4, 3, 3], "encoder.2.weight": [16, 288],
        "encoder.3.weight": [8, 16], "decoder.0.weight": [16, 4], "decoder.1.weight": [288, 16],
        "decoder.2.weight": [8, 4, 3, 3], "decoder.3.weight": [4, 1, 4, 4], "decoder.3.bias": [1]}
for k, v in want.items():
    assert shapes[k] == v, (k, shapes[k], v)
assert h["__metadata__"]["input_shape"] == "1,12,12", h["__metadata__"]
EOF

# eval: the same figures whatever the batch (the canonical blocks hold for conv layers).
CK=$T/run/checkpoints/$(cat "$T/run/checkpoints/latest")
expect_rc 0 "$BIN" eval "$CK" --samples 20 --json "$T/e1.json"
expect_rc 0 "$BIN" eval "$CK" --samples 20 --batch 7 --json "$T/e2.json"
python3 - "$T/e1.json" "$T/e2.json" <<'EOF' || fail "eval depends on the batch: $(cat "$T/e1.json" "$T/e2.json")"
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
keys = [k for k, v in a.items() if isinstance(v, float) and k not in ("seconds", "examples_per_s")]
assert "bound" in " ".join(keys), keys
for k in keys:
    assert math.isfinite(a[k]) and a[k] == b[k], (k, a[k], b[k])
EOF
expect_rc 0 "$BIN" sample "$CK" --n 16 --out "$T/s.png"
expect_out "(12x12"
expect_rc 0 "$BIN" reconstruct "$CK" --n 8 --out "$T/r.png"
[ -s "$T/s.png" ] && [ -s "$T/r.png" ] || fail "sample / reconstruct wrote no PNG"

# An explicit decoder (linear CxHxW reshapes) trains; a stride-1 conv too.
expect_rc 0 "$BIN" train "$T/conv.ini" train.epochs=1 output.dir="$T/explicit" \
    model.encoder="conv 4 k3 s1 p0, conv 8" model.decoder="linear 8x5x5, convt 4, convt 1 k3 s1 p0"
expect_out "decoder = linear 8x5x5, convt 4, convt 1 k3 s1 p0"
CK2=$T/explicit/checkpoints/$(cat "$T/explicit/checkpoints/latest")
expect_rc 0 "$BIN" eval "$CK2" --samples 2

# Errors: one line, naming the key or the layer.
bad() { rm -rf "$T/bad"; expect_rc 2 "$BIN" train "$T/conv.ini" output.dir="$T/bad" "$@"; }
bad model.encoder="conv 4, conv 8, conv 8, conv 8"
expect_one_line_error "model.encoder layer 4 (conv 8): conv2d k4 s2 p1: input 8x1x1 gives an output of 8x0x0"
bad model.encoder="conv 4 k3"
expect_one_line_error "the mirror of encoder layer 1 (conv2d k3 s2 p1, 1x12x12 -> 4x6x6) gives 1x11x11, not 1x12x12"
bad model.encoder="conv 4, pool 2"
expect_one_line_error "model.encoder=conv 4, pool 2: 'pool' is not a layer (expected linear, conv or convt)"
bad model.encoder="conv 4 k4 k3"
expect_one_line_error "'k3' in 'conv 4 k4 k3': expected conv|convt C [kK] [sS] [pP]"
bad model.encoder="conv 4 k2 p2"
expect_one_line_error "conv2d: kernel 2, stride 2, padding 2 (expected kernel in [1, 64]"
bad model.decoder="linear 16, convt 1"
expect_one_line_error "model.decoder: the last layer gives 1x2x2 (4 values), the data is 1x12x12"
bad model.hidden=32
expect_one_line_error "model.hidden and model.encoder both describe the encoder; give one"
sed 's/^latent = 4$/latent = 4\nhidden = 16/' "$T/conv.ini" >"$T/both.ini"
expect_rc 2 "$BIN" train "$T/both.ini"
expect_one_line_error "both.ini:12: model.hidden (line 12) and model.encoder (line 10) both describe the encoder"
make_config "$T/mlp.ini" "$T/mlp"
expect_rc 2 "$BIN" train "$T/mlp.ini" model.decoder="linear 144"
expect_one_line_error "model.decoder is given without model.encoder"

# The shape model.hidden changes on resume is refused for the encoder too.
expect_rc 2 "$BIN" train "$T/conv.ini" train.epochs=4 model.encoder="conv 4, linear 16" --resume auto
expect_one_line_error "resume: model.encoder changed conv 4, conv 8 k3 s1, linear 16 -> conv 4, linear 16"

# A conv checkpoint without its input_shape (the tensors do not give it) is refused by name.
python3 - "$CK" "$T/noshape.safetensors" "$(cd "$(dirname "$0")" && pwd)" <<'EOF'
import json, struct, sys
src, dst, tests = sys.argv[1:4]
sys.path.insert(0, tests)
import ckpt_crc
raw = open(src, "rb").read()
header, hlen = ckpt_crc.split(raw)
del header["__metadata__"]["input_shape"]
data = raw[8 + hlen:]
header["__metadata__"]["crc32"] = ckpt_crc.crc_of(header, data)
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
open(dst, "wb").write(struct.pack("<Q", len(text)) + text + data)
EOF
expect_rc 1 "$BIN" eval "$T/noshape.safetensors"
expect_one_line_error "metadata key input_shape missing (the model's first layer is a convolution"
echo "$NAME: ok"
