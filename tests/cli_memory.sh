#!/usr/bin/env bash
# Issue 11, classes 5 and 6: sizes taken from the input are bounded before anything is allocated
# from them, and a run that cannot fit is refused by the memory estimate (with the sizes and the
# keys to change) before it allocates. Nothing here allocates what it asks for: the refusals come
# from headers and from CUVAE_MEMORY_LIMIT, which caps what cuvae counts as available; the forged
# data files are a few kilobytes whose payload is cut short, so reading it before the checks would
# fail as truncated instead.
set -euo pipefail
NAME=cli_memory
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/tiny.ini" "$T/run"

# Without the checks a regression would really allocate: cap the address space where that works
# (not under AddressSanitizer, which reserves terabytes of it).
# ldd's output is read whole (grep -q would close the pipe early, and under pipefail ldd's
# SIGPIPE would read as "no libasan").
VMEM=unlimited
libs=$(ldd "$BIN" 2>/dev/null || true)
[[ $libs == *libasan* ]] || VMEM=$((6 << 20))

# --- class 6: the memory estimate -------------------------------------------------------------
# model.hidden=20000,20000: about 0.8 billion parameters; parameters, gradients, Adam, the
# trainer's copies and the checkpoint buffers come to about 39 GiB.
CAPPED='[ "$0" = unlimited ] || ulimit -v "$0"; exec "$@"'
expect_rc 1 env CUVAE_MEMORY_LIMIT=4G timeout 60 bash -c "$CAPPED" "$VMEM" \
    "$BIN" train "$T/tiny.ini" model.hidden=20000,20000 output.dir="$T/big"
expect_one_line_error "memory: the run needs about"
expect_err "parameters 3.00 GiB"
expect_err "Adam moments 6.01 GiB"
expect_err "but this machine has 4.00 GiB available (CUVAE_MEMORY_LIMIT)"
expect_err "model.hidden"
expect_err "train.batch_size"
ls "$T/big/checkpoints/"*.safetensors >/dev/null 2>&1 && fail "the refused run wrote a checkpoint"
# The tiny model fits in 64 MiB: the estimate is no blanket refusal.
expect_rc 0 env CUVAE_MEMORY_LIMIT=64M "$BIN" train "$T/tiny.ini" train.epochs=1 output.images=0
# A malformed cap is an error, not ignored.
expect_rc 1 env CUVAE_MEMORY_LIMIT=lots "$BIN" train "$T/tiny.ini" output.dir="$T/r_bad"
expect_one_line_error "CUVAE_MEMORY_LIMIT: 'lots' is not a size"
# eval and sample: the checkpoint's model, the backend and the test set.
MODEL=$T/run/model.safetensors
expect_rc 1 env CUVAE_MEMORY_LIMIT=1M "$BIN" eval "$MODEL" --device cpu
expect_one_line_error "memory: the run needs about"
expect_err "(--limit)"
expect_rc 1 env CUVAE_MEMORY_LIMIT=1M "$BIN" sample "$MODEL" --device cpu --out "$T/s.png"
expect_err "memory: the run needs about"
[ -e "$T/s.png" ] && fail "the refused sample wrote its image"

# --- class 5: sizes from the input, bounded before allocating ---------------------------------
python3 - "$T" <<'PY'
import struct, sys, zlib
t = sys.argv[1]
def gz(path, header):
    # The header and 64 KiB of pixels: the stream is cut short after them.
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    open(path, "wb").write(c.compress(header + bytes(1 << 16)) + c.flush(zlib.Z_SYNC_FLUSH))
gz(t + "/many.gz", struct.pack(">IIII", 0x803, 2**31 - 1, 1, 1))   # 2^31-1 images of 1 pixel
gz(t + "/huge.gz", struct.pack(">IIII", 0x803, 1, 46000, 46000))  # one 2 GB image
gz(t + "/tests.gz", struct.pack(">IIII", 0x803, 29000000, 12, 12)) # 4 GB of 12x12 test images
PY
# 2^31-1 tiny images pass the 4 GiB payload cap; their index arrays would take about 34 GiB (the
# split's three, the training rows it keeps and the epoch permutation).
expect_rc 1 env CUVAE_MEMORY_LIMIT=16G timeout 60 "$BIN" train "$T/tiny.ini" \
    output.dir="$T/r_many" \
    data.train_images="$T/many.gz" data.train_labels= data.test_images="$T/many.gz" \
    data.test_labels= data.limit_test=10
expect_one_line_error "memory: the run needs about"
expect_err "index arrays 34.00 GiB"
expect_err "data.limit_train"
# One 2 GB image: the model is refused from the header, before the image is inflated.
expect_rc 1 timeout 60 "$BIN" train "$T/tiny.ini" output.dir="$T/r_huge" \
    data.train_images="$T/huge.gz" data.train_labels= data.test_images="$T/huge.gz" \
    data.test_labels= data.validation=0 train.batch_size=1
expect_one_line_error "memory: the run needs about"
# eval: a test set of another image size is refused from its header, a large one by the estimate.
expect_rc 1 timeout 60 "$BIN" eval "$MODEL" --device cpu --test-images "$T/huge.gz"
expect_one_line_error "46000x46000 = 2116000000 pixels an image, but the checkpoint's model takes 144"
expect_rc 1 env CUVAE_MEMORY_LIMIT=2G timeout 60 "$BIN" eval "$MODEL" --device cpu \
    --test-images "$T/tests.gz"
expect_one_line_error "memory: the run needs about"
expect_err ", data 3.89 GiB"

# A large file that is no checkpoint is refused from its first bytes, not read whole: peak memory
# stays far below the file's 1 GiB (sparse: it takes no disk).
truncate -s 1G "$T/zeros.safetensors"
python3 - "$MODEL" "$T/padded.safetensors" <<'PY'
import sys
raw = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "wb") as f:
    f.write(raw)
    f.truncate(len(raw) + (1 << 30))  # a real header, then a GiB the header does not account for
PY
for f in zeros padded; do
    python3 - "$BIN" "$T/$f.safetensors" "$T" <<'PY'
import resource, subprocess, sys
binary, path, t = sys.argv[1:4]
with open(t + "/out", "wb") as out, open(t + "/err", "wb") as err:
    rc = subprocess.call([binary, "eval", path, "--device", "cpu"], stdout=out, stderr=err)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
if rc != 1 or peak > 640:
    sys.exit(f"{path}: exit {rc}, peak {peak} MiB (expected exit 1 well below 1 GiB)")
PY
done
expect_err "data section is 10737"
expect_err "bytes but tensors cover"

echo "$NAME: ok"
