#!/usr/bin/env bash
# Image folders end to end (CPU), PNG files written by hand (tests/image_fixture.py: numpy + zlib):
# the generated IDX data as a folder of 8-bit grey PNGs (one per image, named in the IDX order)
# trains one epoch to exactly the losses and validation figures of the IDX files, with its labels
# from the IDX label file; `eval` on the folder gives the IDX figures; every PNG colour type and bit
# depth (grey 1/2/4/8/16, grey + alpha, RGB 8/16, RGBA, palette with tRNS) in one RGB folder
# trains, samples and reconstructs; images of mixed sizes train with data.image_size; labels come
# from subfolders and the class names are written to the run; bad folders and images get a
# one-line error naming the file (or folder).
set -euo pipefail
NAME=cli_image_dir
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
need_python numpy

make_data
D=$T/data
PYTHONPATH="$(dirname "$0")" "$py" - "$D" <<'EOF'
import os, sys
import numpy as np
from image_fixture import png_bytes, read_idx, write_png
d = sys.argv[1]
def mk(*parts):
    p = os.path.join(d, *parts)
    os.makedirs(p, exist_ok=True)
    return p
for split in ("train", "t10k"):
    x = read_idx(f"{d}/{split}-images-idx3-ubyte.gz")
    y = read_idx(f"{d}/{split}-labels-idx1-ubyte.gz")
    out = mk(f"{split}-png")
    for i, img in enumerate(x):
        write_png(f"{out}/{i:05d}.png", img)
    # labelled by subfolder: the label's name; a README beside the images is ignored
    for i, (img, lab) in enumerate(zip(x, y)):
        write_png(f"{mk(f'{split}-classes', 'bar' + str(lab))}/{i:05d}.png", img)
    open(f"{out}/README.txt", "w").write("not an image\n")

# One colour folder of every colour type and bit depth, 12 x 12.
rng = np.random.default_rng(3)
col = mk("colour")
pal = rng.integers(0, 256, (16, 3))
for i in range(40):
    g = rng.integers(0, 256, (12, 12))
    rgb = rng.integers(0, 256, (12, 12, 3))
    k = i % 10
    p = f"{col}/{i:03d}.png"
    if k == 0: write_png(p, g)
    elif k == 1: write_png(p, g // 64, depth=2)
    elif k == 2: write_png(p, g // 16, depth=4)
    elif k == 3: write_png(p, g * 257, depth=16)
    elif k == 4: write_png(p, np.dstack([g, 255 - g]))
    elif k == 5: write_png(p, rgb)
    elif k == 6: write_png(p, rgb * 257, depth=16)
    elif k == 7: write_png(p, np.dstack([rgb, g]))
    elif k == 8: write_png(p, g // 16, palette=pal, trns=[255, 128, 0])
    else: write_png(p, g // 128, depth=1)
# Mixed sizes, for data.image_size.
mixed = mk("mixed")
for i in range(40):
    h, w = 12 + (i % 3) * 5, 12 + (i % 4) * 7
    write_png(f"{mixed}/{i:03d}.png", rng.integers(0, 256, (h, w)))

# Bad folders, one problem each (with a good image beside it where that matters).
good = png_bytes(np.zeros((12, 12), np.uint8))
def bad(name, files):
    p = mk("bad", name)
    for f, data in files.items():
        os.makedirs(os.path.dirname(f"{p}/{f}"), exist_ok=True)
        open(f"{p}/{f}", "wb").write(data)
bad("sizes", {"a.png": good, "b.png": png_bytes(np.zeros((12, 14), np.uint8))})
bad("cut", {"a.png": good, "b.png": good[:-30]})
z = bytearray(good); z[45] ^= 0xff
bad("crc", {"a.png": good, "b.png": bytes(z)})
bad("bomb", {"a.png": png_bytes(np.zeros((1, 1), np.uint8), ihdr_size=(100000, 100000))})
bad("named", {"a.png": good, "b.png": b"hello, not a picture\n"})
bad("classdirect", {"x.png": good, "cls/a.png": good})
bad("onlysub", {"cls/a.png": good})
bad("test-classes", {"bar0/a.png": good, "bar1/a.png": good, "barX/a.png": good})
os.makedirs(f"{d}/bad/empty", exist_ok=True)
open(f"{d}/bad/empty/notes.txt", "w").write("nothing here\n")
EOF

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
train png data.train_images="$D/train-png" data.test_images="$D/t10k-png"
same png
expect_out "data: 500 training, 100 validation, 200 test examples of 12x12"
# eval on the folder gives the IDX figures.
expect_rc 0 "$BIN" eval "$T/idx/model.safetensors" --samples 5 --device cpu
grep -vE '^(device|seconds|examples/s)' "$T/out" | sed "s|$D/t10k-images-idx3-ubyte.gz|X|g" \
    >"$T/eval-idx"
expect_rc 0 "$BIN" eval "$T/idx/model.safetensors" --samples 5 --device cpu \
    --test-images "$D/t10k-png"
grep -vE '^(device|seconds|examples/s)' "$T/out" | sed "s|$D/t10k-png|X|g" >"$T/eval-png"
diff "$T/eval-idx" "$T/eval-png" >/dev/null ||
    { diff "$T/eval-idx" "$T/eval-png" || true; fail "eval on the PNG folder differs from IDX"; }

# A folder path may end in '/'; eval --data-dir keeps the folder's name; limits keep the first
# images in name order.
train slash data.train_images="$D/train-png/" data.test_images="$D/t10k-png/"
same slash
mkdir -p "$T/moved" && cp -r "$D/t10k-png" "$D/t10k-labels-idx1-ubyte.gz" "$T/moved/"
expect_rc 0 "$BIN" eval "$T/slash/model.safetensors" --samples 5 --device cpu --data-dir "$T/moved"
expect_out "$T/moved/t10k-png"
train limited data.train_images="$D/train-png" data.test_images="$D/t10k-png" \
    data.limit_train=300 data.limit_test=50 data.train_labels= data.test_labels=
expect_out "data: 200 training, 100 validation, 50 test examples of 12x12"
train limited-idx data.limit_train=300 data.limit_test=50 data.train_labels= data.test_labels=
diff <(json_field "$T/limited-idx/metrics.jsonl" loss step) \
    <(json_field "$T/limited/metrics.jsonl" loss step) >/dev/null ||
    fail "limited: the first 300 images of the folder train unlike the first 300 of the IDX file"

# Labels from subfolders: classes sorted by name, written to the run; the test folder's classes
# must be the training folder's.
train classes data.train_images="$D/train-classes" data.train_labels= \
    data.test_images="$D/t10k-classes" data.test_labels= data.folder_labels=1
expect_out "classes: 10 from the subfolders of $D/train-classes"
expect_out "0 bar0, 1 bar1,"
"$py" - "$T/classes/classes.json" <<'EOF' || fail "classes.json is wrong"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["classes"] == [f"bar{i}" for i in range(10)], j
EOF
expect_rc 0 "$BIN" eval "$T/classes/model.safetensors" --samples 5 --device cpu

# Every PNG colour type: an RGB set (auto), trained with samples and reconstructions; forced grey.
train colour data.train_images="$D/colour" data.train_labels= data.test_images="$D/colour" \
    data.test_labels= data.validation=8 data.binarize=none
expect_out "examples of 12x12 RGB"
for run in colour classes; do
    expect_rc 0 "$BIN" sample "$T/$run/model.safetensors" --n 4 --device cpu --out "$T/$run-s.png"
    expect_rc 0 "$BIN" reconstruct "$T/$run/model.safetensors" --n 4 --device cpu \
        --out "$T/$run-r.png"
    [ -s "$T/$run-s.png" ] && [ -s "$T/$run-r.png" ] || fail "$run: no sample or reconstruction"
done
train grey data.train_images="$D/colour" data.train_labels= data.test_images="$D/colour" \
    data.test_labels= data.validation=8 data.image_channels=grey
expect_out "examples of 12x12"
grep -q "12x12 RGB" "$T/out" && fail "data.image_channels=grey gave RGB"

# Mixed sizes: refused without data.image_size, resized and centre-cropped with it.
for filter in box bilinear nearest; do
    train "mixed-$filter" data.train_images="$D/mixed" data.train_labels= \
        data.test_images="$D/mixed" data.test_labels= data.validation=8 data.image_size=10x8 \
        data.resize_filter=$filter
    expect_out "examples of 10x8"
done

# Bad input: one line naming the file or folder and what was expected.
bad() { # $1: what the message must say, the rest: overrides
    local want=$1; shift
    expect_rc 1 "$BIN" train "$T/tiny.ini" train.epochs=1 output.dir="$T/bad" "$@"
    expect_one_line_error "$want"
}
B=$D/bad
bad "$B/sizes: images of different sizes: a.png is 12 x 12 (H x W) but b.png is 12 x 14" \
    data.test_images="$B/sizes" data.test_labels=
bad "$B/cut/b.png: corrupt PNG" data.test_images="$B/cut" data.test_labels=
bad "$B/crc/b.png: corrupt PNG" data.test_images="$B/crc" data.test_labels=
bad "$B/bomb/a.png: PNG header says 100000 x 100000 pixels" data.test_images="$B/bomb" \
    data.test_labels=
bad "$B/named/b.png: named as an image but neither PNG nor JPEG" data.test_images="$B/named" \
    data.test_labels=
bad "$B/empty: no PNG or JPEG images in the folder" data.test_images="$B/empty" data.test_labels=
bad "$B/onlysub: no PNG or JPEG images in the folder (its subfolders are read only with" \
    data.test_images="$B/onlysub" data.test_labels=
bad "$B/classdirect/x.png: an image directly in the folder" data.test_images="$B/classdirect" \
    data.test_labels= data.folder_labels=1
bad "labels both from its subfolders (data.folder_labels = 1) and from" \
    data.test_images="$D/t10k-classes" data.folder_labels=1
bad "data.test_images: class 2 is 'barX' in $B/test-classes but 'bar2'" \
    data.train_images="$D/train-classes" data.train_labels= data.test_images="$B/test-classes" \
    data.test_labels= data.folder_labels=1
bad "200 labels but $D/train-png has 600 images" data.train_images="$D/train-png" \
    data.train_labels="$D/t10k-labels-idx1-ubyte.gz"
for v in 12x 0 5000 x12 12x12x3; do # a config error: exit status 2
    expect_rc 2 "$BIN" train "$T/tiny.ini" output.dir="$T/bad" data.image_size=$v
    expect_one_line_error "data.image_size=$v: expected empty, N or HxW"
done
echo "$NAME: ok"
