#!/usr/bin/env bash
# The README's CPU epoch-time figure: one full epoch of configs/fashion_mnist.ini (55000 training
# examples, batch 128, validation pass included, PNG images off) with `cuvae train` and with the
# PyTorch reference (bench/peers/torch_vae.py --train-epochs 1) on this CPU, one after the other,
# each at the thread count a short calibration found fastest for it (--threads N: both at N) and
# PyTorch on the OpenBLAS kernels cuvae uses, printing both epoch times and test negative ELBOs.
#   bench/cpu_epoch.sh [path/to/cuvae] [more bench/run_peers.py options, e.g. --epoch 10 --json F]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cuvae=${1:-${CUVAE_BINARY:-$root/build/cuvae}}
[ $# -gt 0 ] && shift
py=python3
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then
        py=$cand
        break
    fi
done
epoch_args=(--epoch 1)
for a in "$@"; do
    [ "$a" = "--epoch" ] && epoch_args=()
done
exec "$py" "$root/bench/run_peers.py" "$root/configs/fashion_mnist.ini" --cuvae "$cuvae" \
    --device cpu "${epoch_args[@]}" "$@"
