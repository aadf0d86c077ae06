#!/usr/bin/env bash
# `cuvae train --resume`: a run resumed from its mid-run checkpoint ends bit-identical to the run
# that went straight through (model.safetensors bytes compared), with a cosine schedule, LR and
# KL warm-up and dynamic binarization in play; so does 1 epoch + resume with train.epochs=2
# against 2 epochs straight. A resume that changes the model's shape is refused (exit 2);
# --resume auto on an empty directory starts fresh; with the newest checkpoint damaged it falls
# back to the one before and says so.
set -euo pipefail
NAME=cli_resume
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/tiny.ini" "$T/run"
R=$T/run
# 15 steps an epoch, 30 in all; a checkpoint at step 16 (mid-epoch, mid-interval of log_every=5).
SCHED=(train.epochs=2 optim.schedule=cosine optim.warmup_steps=7 optim.min_lr=1e-4
    train.kl_warmup_steps=20 output.checkpoint_every_steps=16 output.checkpoint_every_epochs=0)

# --- straight through --------------------------------------------------------------------------
expect_rc 0 "$BIN" train "$T/tiny.ini" "${SCHED[@]}"
mid=$R/checkpoints/step-000000000016.safetensors
[ -s "$mid" ] || { ls "$R/checkpoints"; fail "no checkpoint at step 16"; }
cp "$mid" "$T/mid.safetensors"
mv "$R" "$T/straight" # the run directory is in the saved config: resume in the same place

# --- stop at 16, resume from that file, finish ----------------------------------------------
expect_rc 0 "$BIN" train "$T/tiny.ini" "${SCHED[@]}" --resume "$T/mid.safetensors"
expect_out "resuming from $T/mid.safetensors at step 16"
cmp -s "$T/straight/model.safetensors" "$R/model.safetensors" ||
    fail "resumed at step 16: model.safetensors differs from the straight run"
python3 - "$R/metrics.jsonl" <<'EOF' || fail "the resumed run's metrics are wrong"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
starts = [r for r in recs if r["type"] == "start"]
assert len(starts) == 1 and starts[0]["step"] == 16 and starts[0]["resumed_from"], starts
steps = [r["step"] for r in recs if r["type"] == "step"]
assert steps[0] == 20 and steps[-1] == 30, steps
EOF
rm -rf "$R"

# --- 1 epoch, then resume with train.epochs=2 (a free change), constant schedule ---------------
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=2
mv "$R" "$T/two"
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1
n_lines=$(wc -l <"$R/metrics.jsonl")
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=2 --resume auto
expect_out "train.epochs 1 -> 2"
cmp -s "$T/two/model.safetensors" "$R/model.safetensors" ||
    fail "1 epoch + resume: model.safetensors differs from 2 epochs straight"
[ "$(wc -l <"$R/metrics.jsonl")" -gt "$n_lines" ] || fail "metrics.jsonl was not appended to"
[ "$(grep -c '"type":"start"' "$R/metrics.jsonl")" -eq 2 ] || fail "expected two start records"

# --- a change to the model's shape is refused ------------------------------------------------
expect_rc 2 "$BIN" train "$T/tiny.ini" train.epochs=3 model.latent=5 --resume auto
expect_one_line_error "model.latent"

# --- --resume auto on an empty directory: a fresh start ----------------------------------------
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 output.dir="$T/empty" --resume auto
expect_out "starting fresh"
[ -s "$T/empty/model.safetensors" ] || fail "the fresh start did not train"

# --- the newest checkpoint damaged: auto falls back to the one before --------------------------
make_config "$T/fallback.ini" "$T/fb"
expect_rc 0 "$BIN" train "$T/fallback.ini" train.epochs=2 output.checkpoint_every_steps=10
newest=$T/fb/checkpoints/step-000000000030.safetensors
previous=$T/fb/checkpoints/step-000000000020.safetensors
[ -s "$newest" ] && [ -s "$previous" ] || { ls "$T/fb/checkpoints"; fail "checkpoints missing"; }
size=$(wc -c <"$newest")
truncate -s $((size / 2)) "$newest"
expect_rc 0 "$BIN" train "$T/fallback.ini" train.epochs=3 output.checkpoint_every_steps=10 \
    --resume auto
expect_err "$newest"
expect_out "resuming from $previous at step 20"
python3 - "$T/fb/metrics.jsonl" <<'EOF' || fail "the fallback run did not finish"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert recs[-1]["type"] == "final" and recs[-1]["step"] == 45, recs[-1]
EOF

# --- all checkpoints damaged: --resume auto is an error, not a fresh start ---------------------
for f in "$T"/fb/checkpoints/*.safetensors; do truncate -s 10 "$f"; done
expect_rc 1 "$BIN" train "$T/fallback.ini" train.epochs=4 --resume auto
expect_err "--resume auto"

echo "cli_resume: ok"
