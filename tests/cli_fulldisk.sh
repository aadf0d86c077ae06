#!/usr/bin/env bash
# Fault injection: checkpoint writes that fail. (1) A resumed run under a file-size limit
# (`ulimit -f`, which makes write() fail with EFBIG, or kills the process with SIGXFSZ unless it
# ignores that signal) cannot write its next checkpoint: it must stop with exit status 1 and one
# error line naming the checkpoint and "File too large" (no crash signal), leave no temporary
# behind, leave every earlier file of checkpoints/ byte-identical and loadable, and a later
# `--resume auto` without the limit must finish with the same model bytes as a run that never
# failed. (2) The write of best.safetensors fails (a directory sits at its name) at the epoch end:
# the run stops with exit 1, and resuming afterwards still produces the best.safetensors of an
# uninterrupted run.
set -euo pipefail
NAME=cli_fulldisk
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_fault.sh"

make_data
make_config "$T/fd.ini" "$T/run"
R=$T/run
CK=$R/checkpoints
# 500 training examples after the validation split: 15 steps an epoch; a checkpoint every 4 steps.
OVR=(output.checkpoint_every_steps=4 output.checkpoint_every_epochs=0 output.keep_last=2
    output.images=0 optim.schedule=constant)

# --- the reference: 3 epochs straight -----------------------------------------------------------
expect_rc 0 "$BIN" train "$T/fd.ini" "${OVR[@]}" train.epochs=3
mv "$R" "$T/straight"

# --- 1 epoch: checkpoints at steps 12 and 15 remain (keep_last = 2), plus best -------------------
expect_rc 0 "$BIN" train "$T/fd.ini" "${OVR[@]}" train.epochs=1
[ -s "$CK/step-000000000015.safetensors" ] || { ls -l "$CK"; fail "no checkpoint at step 15"; }
cp -a "$CK" "$T/before"

# --- resume to 3 epochs with a file-size limit below one checkpoint ------------------------------
size=$(wc -c <"$CK/step-000000000015.safetensors")
limit_kb=$((size / 2 / 1024)) # bash's ulimit -f counts 1024-byte blocks
[ "$(wc -c <"$R/metrics.jsonl")" -lt $((limit_kb * 1024 / 2)) ] ||
    fail "metrics.jsonl is too large for a file-size limit of $limit_kb KiB"
rc=0
(
    ulimit -f "$limit_kb"
    exec "$BIN" train "$T/fd.ini" "${OVR[@]}" train.epochs=3 --resume auto
) >"$T/out" 2>"$T/err" || rc=$?
if [ "$rc" -ne 1 ]; then
    cat "$T/err"
    [ "$rc" -eq $((128 + $(kill -l XFSZ))) ] &&
        fail "killed by SIGXFSZ (exit $rc): the trainer does not ignore SIGXFSZ, so a full file-size quota is a crash instead of an error"
    fail "under 'ulimit -f $limit_kb' the resumed run exited $rc, expected 1"
fi
next=$CK/step-000000000016.safetensors
expect_said "resuming from $CK/step-000000000015.safetensors at step 15"
n_errors=$(grep -c '^cuvae: .*File too large' "$T/err" || true)
[ "$n_errors" -eq 1 ] || { cat "$T/err"; fail "expected one 'File too large' line, got $n_errors"; }
last=$(tail -n 1 "$T/err")
case $last in
*"$next"*"File too large"*) ;;
*) cat "$T/err"; fail "the last stderr line does not name $next and 'File too large': $last" ;;
esac
# Nothing new in checkpoints/ (no temporary, no partial step file) and nothing changed.
diff -r "$T/before" "$CK" >"$T/diff" 2>&1 || { cat "$T/diff"; fail "checkpoints/ changed"; }
ckpt_ok --optim "$CK"/step-*.safetensors "$CK/best.safetensors" ||
    fail "a checkpoint no longer loads after the failed write"

# --- without the limit, --resume auto continues from step 15 to the end --------------------------
expect_rc 0 "$BIN" train "$T/fd.ini" "${OVR[@]}" train.epochs=3 --resume auto
expect_said "resuming from $CK/step-000000000015.safetensors at step 15"
cmp -s "$T/straight/model.safetensors" "$R/model.safetensors" ||
    fail "after the failed write and a resume, model.safetensors differs from the straight run"
cmp -s "$T/straight/checkpoints/best.safetensors" "$CK/best.safetensors" ||
    fail "after the failed write and a resume, best.safetensors differs from the straight run"

# --- the write of best.safetensors fails at the first epoch's end ---------------------------------
# 1 epoch straight is the reference: validation improves at its end (from none), so
# best.safetensors is the state after step 15.
R2=$T/run2
expect_rc 0 "$BIN" train "$T/fd.ini" "${OVR[@]}" train.epochs=1 output.dir="$R2"
mv "$R2" "$T/straight1"
# Resume from its step-12 checkpoint (same config, output.dir included) with a directory in the
# way of best.safetensors: the save at the epoch end (step 15, validation improved) fails.
mkdir -p "$R2/checkpoints/best.safetensors"
cp "$T/straight1/checkpoints/step-000000000012.safetensors" "$R2/checkpoints/"
expect_rc 1 "$BIN" train "$T/fd.ini" "${OVR[@]}" train.epochs=1 output.dir="$R2" --resume auto
expect_said "at step 12"
last=$(tail -n 1 "$T/err")
case $last in
*"$R2/checkpoints/best.safetensors"*) ;;
*) cat "$T/err"; fail "the last stderr line does not name best.safetensors: $last" ;;
esac
rmdir "$R2/checkpoints/best.safetensors"
ckpt_ok --optim "$R2"/checkpoints/step-*.safetensors ||
    fail "a step checkpoint does not load after the failed write of best.safetensors"
# Whatever checkpoint the resume picks, it must not skip the improvement that best.safetensors
# failed to record.
expect_rc 0 "$BIN" train "$T/fd.ini" "${OVR[@]}" train.epochs=1 output.dir="$R2" --resume auto
[ -f "$R2/checkpoints/best.safetensors" ] ||
    fail "best.safetensors was never written: the checkpoint saved before it already counted the improvement"
cmp -s "$T/straight1/checkpoints/best.safetensors" "$R2/checkpoints/best.safetensors" ||
    fail "after the failed write of best.safetensors and a resume, it differs from the straight run"
cmp -s "$T/straight1/model.safetensors" "$R2/model.safetensors" ||
    fail "after the failed write of best.safetensors and a resume, model.safetensors differs"

echo "cli_fulldisk: ok"
