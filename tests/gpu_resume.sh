#!/usr/bin/env bash
# Exact resume on the GPU (fp32 GEMMs): a run resumed from its mid-run checkpoint ends with
# model.safetensors byte-identical to the run that went straight through, as cli_resume.sh checks
# on the CPU: the noise counter, the data order, Adam's state and the schedules all continue, and
# the CUDA backend's reductions are deterministic. Skipped (77) where no GPU is usable.
set -euo pipefail
NAME=gpu_resume
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/tiny.ini" "$T/run"
R=$T/run
# 15 steps an epoch, 30 in all; a checkpoint at step 16 (mid-epoch, mid-interval of log_every=5).
RUN=(train.device=cuda train.precision=fp32 train.epochs=2 optim.schedule=cosine
    optim.warmup_steps=7 optim.min_lr=1e-4 train.kl_warmup_steps=20
    output.checkpoint_every_steps=16 output.checkpoint_every_epochs=0)

rc=0
"$BIN" train "$T/tiny.ini" "${RUN[@]}" >"$T/out" 2>"$T/err" || rc=$?
if [ "$rc" -ne 0 ] && grep -q "no usable CUDA device" "$T/err"; then
    echo "$NAME: skipped: $(head -n 1 "$T/err")"
    exit 77
fi
[ "$rc" -eq 0 ] || { cat "$T/err"; fail "the straight GPU run exited $rc"; }
grep -q '"device":"cuda"' "$R/metrics.jsonl" || fail "the run did not train on the GPU"
mid=$R/checkpoints/step-000000000016.safetensors
[ -s "$mid" ] || { ls "$R/checkpoints"; fail "no checkpoint at step 16"; }
cp "$mid" "$T/mid.safetensors"
mv "$R" "$T/straight"

expect_rc 0 "$BIN" train "$T/tiny.ini" "${RUN[@]}" --resume "$T/mid.safetensors"
expect_out "resuming from $T/mid.safetensors at step 16"
cmp -s "$T/straight/model.safetensors" "$R/model.safetensors" ||
    fail "resumed at step 16 on the GPU: model.safetensors differs from the straight run"
echo "$NAME: ok"
