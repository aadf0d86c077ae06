#!/usr/bin/env bash
# JPEG folders end to end (CPU), written by Pillow (python3-pil): the generated data as baseline
# and progressive grey JPEGs and as colour JPEGs (with a few PNGs mixed in: a folder may hold
# both), labelled by subfolders, train, evaluate, sample and reconstruct; a truncated JPEG and a
# CMYK one are refused with one line naming the file.
set -euo pipefail
NAME=cli_image_jpeg
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
need_python numpy,PIL

make_data
D=$T/data
PYTHONPATH="$(dirname "$0")" "$py" - "$D" <<'EOF2'
import os, sys
import numpy as np
from PIL import Image
from image_fixture import read_idx
d = sys.argv[1]
for split in ("train", "t10k"):
    x = read_idx(f"{d}/{split}-images-idx3-ubyte.gz")
    y = read_idx(f"{d}/{split}-labels-idx1-ubyte.gz")
    for i, (img, lab) in enumerate(zip(x, y)):
        for kind in ("grey", "colour"):
            out = f"{d}/{split}-{kind}/c{lab}"
            os.makedirs(out, exist_ok=True)
            if kind == "grey":
                Image.fromarray(img).save(f"{out}/{i:05d}.jpg", quality=95,
                                          progressive=i % 2 == 1)
            else:
                rgb = np.dstack([img, img[::-1], 255 - img])
                ext = "png" if i % 7 == 0 else "jpeg"
                Image.fromarray(rgb).save(f"{out}/{i:05d}.{ext}")
os.makedirs(f"{d}/bad/cut", exist_ok=True)
os.makedirs(f"{d}/bad/cmyk", exist_ok=True)
raw = open(f"{d}/t10k-grey/c0/00000.jpg", "rb").read()
open(f"{d}/bad/cut/a.jpg", "wb").write(raw[: len(raw) // 2])
Image.new("CMYK", (12, 12), (10, 20, 30, 40)).save(f"{d}/bad/cmyk/a.jpg")
EOF2

make_config "$T/tiny.ini" "$T/run"
for kind in grey colour; do
    expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 output.dir="$T/$kind" \
        data.train_images="$D/train-$kind" data.train_labels= data.test_images="$D/t10k-$kind" \
        data.test_labels= data.folder_labels=1
    expect_out "classes: 10 from the subfolders of $D/train-$kind"
    [ -s "$T/$kind/classes.json" ] || fail "$kind: no classes.json"
    [ "$kind" = colour ] && expect_out "examples of 12x12 RGB"
    expect_rc 0 "$BIN" eval "$T/$kind/model.safetensors" --samples 5 --device cpu
    expect_out "examples               200"
    expect_rc 0 "$BIN" sample "$T/$kind/model.safetensors" --n 4 --device cpu --out "$T/$kind-s.png"
    expect_rc 0 "$BIN" reconstruct "$T/$kind/model.safetensors" --n 4 --device cpu \
        --out "$T/$kind-r.png"
    [ -s "$T/$kind-s.png" ] && [ -s "$T/$kind-r.png" ] || fail "$kind: no sample or reconstruction"
done

expect_rc 1 "$BIN" train "$T/tiny.ini" output.dir="$T/bad" data.test_images="$D/bad/cut" \
    data.test_labels=
expect_one_line_error "$D/bad/cut/a.jpg: corrupt JPEG: Premature end of JPEG file"
expect_rc 1 "$BIN" train "$T/tiny.ini" output.dir="$T/bad" data.test_images="$D/bad/cmyk" \
    data.test_labels=
expect_one_line_error "$D/bad/cmyk/a.jpg: a JPEG of 4 components (CMYK, YCCK or other)"
echo "$NAME: ok"
