#!/usr/bin/env bash
# bench/device_check.sh, the GPU check that runs in the few minutes a device is lent: a dry run of
# both commands here (CUVAE_DEVICE_DRY, every step charged its whole timeout on a simulated clock,
# nothing run) must plan every step, in order and under the command's deadline when given the
# time, and say which steps it would not start when not. A typo or a broken step found here costs
# nothing; found there it costs the session's device time.
set -euo pipefail
NAME=cli_device_plan
source "$(dirname "$0")/lib_cli.sh"
SRC=$(cd "$(dirname "$0")/.." && pwd)
bash -n "$SRC/bench/device_check.sh" || fail "device_check.sh does not parse"
bash -n "$SRC/bench/device_prepare.sh" || fail "device_prepare.sh does not parse"
# A copy, so that its .device/out* land in the temporary directory, not in the source tree.
mkdir -p "$T/tree/bench"
cp "$SRC/bench/device_check.sh" "$T/tree/bench/"
plan() { # COMMAND LIMIT
    expect_rc 0 env CUVAE_DEVICE_DRY=1 CUVAE_DEVICE_ASSUME_GPU=1 CUVAE_DEVICE_LIMIT="$2" \
        bash "$T/tree/bench/device_check.sh" "$1"
}
# Markers found in this order in the plan (a marker may share the line of the one before it).
expect_order() {
    local at=1 line
    for s in "$@"; do
        line=$(awk -v from="$at" -v s="$s" 'NR >= from && index($0, s) { print NR; exit }' "$T/out")
        [ -n "$line" ] || { cat "$T/out"; fail "the plan lacks '$s' (after line $at)"; }
        at=$line
    done
}

# Given the time, every step of command 1 is planned and none is cut.
plan 1 100000
expect_order "dry: timeout 150 bash -c cmake -S . -B build-gpu" "build: ok" \
    "ctest -L gpu" \
    "compute-sanitizer --tool memcheck" "model.encoder=conv 8, conv 16, linear 32" \
    "train configs/fashion_mnist.ini" "--samples 5000" \
    "run_peers.py configs/fashion_mnist.ini" "train.cuda_graph=0 --cuvae" \
    "run_peers.py configs/fashion_mnist.ini" "train.cuda_graph=1 --cuvae" \
    "--tool memcheck" "train.cuda_graph=1 output.dir=/tmp/cuvae_sanitize" \
    "--tool memcheck" "eval /tmp/cuvae_sanitize/model.safetensors" \
    "--tool racecheck" "=== summary of command 1"
grep -q "not started" "$T/out" && { cat "$T/out"; fail "command 1 cut a step with time to spare"; }

plan 2 100000
expect_order "cmake -S . -B build-gpu" \
    "run_peers.py configs/fashion_mnist.ini" "--batch 128,4096" \
    "make_shapes.py --out /tmp/cuvae_sh64" \
    "run_peers.py configs/shapes64_conv.ini" "--batch 128,1024" "torch-eager,torch-compile" \
    "bench configs/large.ini" "gemm_ceiling.py configs/large.ini" \
    "train configs/fashion_mnist_long.ini" "torch_vae.py --checkpoint /tmp/cuvae_long" \
    "=== summary of command 2"
grep -q "not started" "$T/out" && { cat "$T/out"; fail "command 2 cut a step with time to spare"; }

# At the default deadlines the worst case runs out of time: the steps left are named, none runs
# past the deadline, and the summary still comes.
plan 1 470
expect_out "=== summary of command 1"
expect_out "not started, past the deadline"
last=$(grep -o '^\[[0-9]*s\]' "$T/out" | tail -1 | tr -d '[]s')
[ "$last" -le 470 ] || fail "command 1's plan runs to ${last} s, past its 470 s"
plan 2 230
expect_out "=== summary of command 2"
last=$(grep -o '^\[[0-9]*s\]' "$T/out" | tail -1 | tr -d '[]s')
[ "$last" -le 230 ] || fail "command 2's plan runs to ${last} s, past its 230 s"
echo "$NAME: ok"
