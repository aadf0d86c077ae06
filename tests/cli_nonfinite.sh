#!/usr/bin/env bash
# Non-finite losses: after one good epoch, a resume with optim.lr=10 (Adam then moves every
# weight by ~10 a step, the encoder's log-variance passes 88 and exp() overflows within a few
# steps) stops with status 3, naming the step and the last good checkpoint, which is left
# byte-for-byte intact and still resumable; with train.on_nonfinite=skip the same run completes,
# warning about the skipped steps.
set -euo pipefail
NAME=cli_nonfinite
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/tiny.ini" "$T/run"
R=$T/run
HOT=(optim.lr=10 train.epochs=3 train.log_every=1 output.checkpoint_every_steps=1)

expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1
good=$R/checkpoints/step-000000000015.safetensors
[ -s "$good" ] || { ls "$R/checkpoints"; fail "no checkpoint after epoch 1"; }
cp "$good" "$T/good.safetensors"
cp "$R/checkpoints/latest" "$T/latest.before"

# --- stop (the default) --------------------------------------------------------------------
# A checkpoint every step: none may be written at or after the non-finite step.
expect_rc 3 "$BIN" train "$T/tiny.ini" "${HOT[@]}" --resume auto
grep -q "cuvae: non-finite loss or gradient at step [0-9]*; stopping; the last good checkpoint is $R/checkpoints/step-[0-9]*.safetensors" "$T/err" ||
    { cat "$T/err"; fail "the message lacks the step or the checkpoint"; }
bad_step=$(sed -n 's/.*non-finite loss or gradient at step \([0-9]*\);.*/\1/p' "$T/err")
last_good=$(sed -n 's/.*the last good checkpoint is \(.*\)$/\1/p' "$T/err")
[ "$bad_step" -gt 15 ] || fail "non-finite step $bad_step is not after the resume at 15"
echo "cli_nonfinite: optim.lr=10 went non-finite at step $bad_step"
cmp -s "$good" "$T/good.safetensors" || fail "the epoch-1 checkpoint changed"
[ -s "$last_good" ] || fail "the named last good checkpoint $last_good does not exist"
last_good_step=$((10#$(basename "$last_good" .safetensors | sed 's/step-//')))
[ "$last_good_step" -lt "$bad_step" ] || fail "checkpoint $last_good is not before step $bad_step"
for f in "$R"/checkpoints/step-*.safetensors; do
    s=$((10#$(basename "$f" .safetensors | sed 's/step-//')))
    [ "$s" -lt "$bad_step" ] || fail "$f was written at or after the non-finite step $bad_step"
done
python3 - "$R/metrics.jsonl" <<'EOF' || fail "no nonfinite stop record"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert recs[-1]["type"] == "stop" and recs[-1]["reason"] == "nonfinite", recs[-1]
assert any(r["type"] == "step" and r["skipped"] > 0 for r in recs)
EOF
# The last good checkpoint still loads: resumed with train.epochs=1 (already done) it goes
# straight to the final files.
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 --resume "$last_good" output.dir="$T/again"
[ -s "$T/again/model.safetensors" ] || fail "resuming from the last good checkpoint failed"

# --- skip ------------------------------------------------------------------------------------
rm -rf "$R"
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1
expect_rc 0 "$BIN" train "$T/tiny.ini" "${HOT[@]}" output.checkpoint_every_steps=0 \
    train.on_nonfinite=skip --resume auto
expect_err "warning: skipped"
grep -q "non-finite steps (first at step [0-9]*)" "$T/err" || { cat "$T/err"; fail "no skip warning"; }
[ -s "$R/model.safetensors" ] || fail "the skipping run wrote no model"
python3 - "$R/metrics.jsonl" <<'EOF' || fail "the skipping run did not finish"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert recs[-1]["type"] == "final" and recs[-1]["step"] == 45, recs[-1]
assert sum(r.get("skipped", 0) for r in recs if r["type"] == "step") > 0
EOF

echo "cli_nonfinite: ok"
