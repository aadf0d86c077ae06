#!/usr/bin/env bash
# Optimizer state that overflows: with train.beta=1e25 the loss and the gradient stay finite
# (the loss is summed in double, the KL gradient is ~1e25/B), but Adam's second moment
# (1 - beta2) g^2 would be inf. That counts as non-finite: under `stop` the run ends with status
# 3 at the first such step, no checkpoint is written at or after it, and the last good one
# still loads; under `skip` the run completes from finite state.
set -euo pipefail
NAME=cli_optim_overflow
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/tiny.ini" "$T/run"
R=$T/run
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1
good=$R/checkpoints/step-000000000015.safetensors
[ -s "$good" ] || { ls "$R/checkpoints"; fail "no checkpoint after epoch 1"; }
cp "$good" "$T/good.safetensors"

expect_rc 3 "$BIN" train "$T/tiny.ini" train.beta=1e25 train.epochs=2 train.log_every=1 \
    output.checkpoint_every_steps=1 --resume auto
grep -q "non-finite loss or gradient at step 16; stopping; the last good checkpoint is $good" \
    "$T/err" || { cat "$T/err"; fail "the overflow at step 16 was not a non-finite stop"; }
cmp -s "$good" "$T/good.safetensors" || fail "the last good checkpoint changed"
for f in "$R"/checkpoints/step-*.safetensors; do
    s=$((10#$(basename "$f" .safetensors | sed 's/step-//')))
    [ "$s" -le 15 ] || fail "$f was written after the overflow"
done
expect_rc 0 "$BIN" eval "$good" --samples 1 --device cpu
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 --resume "$good" output.dir="$T/again"

# skip: every step's update overflows and is withheld; the run ends with finite state, saved.
expect_rc 0 "$BIN" train "$T/tiny.ini" train.beta=1e25 train.epochs=2 train.on_nonfinite=skip \
    --resume auto
grep -q "non-finite steps (first at step 16)" "$T/err" || { cat "$T/err"; fail "no skip warning"; }
[ -s "$R/model.safetensors" ] || fail "the skipping run wrote no model"
echo "cli_optim_overflow: ok"
