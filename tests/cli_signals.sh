#!/usr/bin/env bash
# Stop requests: SIGTERM to a training run that has started stepping ends it with status 143
# after writing a checkpoint, with a message naming the step, the file and the command to resume;
# `--resume auto` continues from that checkpoint and finishes. SIGINT does the same with 130; two
# SIGINTs in a row exit at once with 130 and leave every checkpoint good.
set -euo pipefail
NAME=cli_signals
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/tiny.ini" "$T/run"
R=$T/run
# Far more epochs than the test waits for, a metrics line every step, no periodic checkpoints:
# the checkpoint found afterwards can only come from the stop request.
LONG=(train.epochs=100000 train.log_every=1 output.checkpoint_every_epochs=0 output.images=0)

# Starts a long run in the background, waits until it has logged a few steps, sends signal $1
# (and at once a second one when $2 is given, as kill's option: -INT), and leaves the exit status in $rc and the output in $T/out, $T/err.
run_and_signal() {
    local sig=$1 pid tries=0
    rm -rf "$R"
    "$BIN" train "$T/tiny.ini" "${LONG[@]}" >"$T/out" 2>"$T/err" &
    pid=$!
    until [ -s "$R/metrics.jsonl" ] && [ "$(grep -c '"type":"step"' "$R/metrics.jsonl")" -ge 3 ]; do
        tries=$((tries + 1))
        [ $tries -lt 600 ] || { kill -KILL $pid; fail "the run logged no steps within 60 s"; }
        kill -0 $pid 2>/dev/null || { cat "$T/err"; fail "the run ended before the signal"; }
        sleep 0.1
    done
    kill -"$sig" $pid
    [ $# -lt 2 ] || kill "$2" $pid 2>/dev/null || true
    rc=0
    wait $pid || rc=$?
}

# --- SIGTERM -----------------------------------------------------------------------------------
run_and_signal TERM
[ "$rc" -eq 143 ] || { cat "$T/err"; fail "SIGTERM: exit status $rc, expected 143"; }
grep -q "cuvae: interrupted at step [0-9]*; checkpoint $R/checkpoints/step-[0-9]*.safetensors; resume with: cuvae train $T/tiny.ini .*--resume auto" "$T/err" ||
    { cat "$T/err"; fail "SIGTERM: the message lacks the step, checkpoint or resume command"; }
step=$(sed -n 's/.*interrupted at step \([0-9]*\);.*/\1/p' "$T/err")
ckpt=$(printf '%s/checkpoints/step-%012d.safetensors' "$R" "$step")
[ -s "$ckpt" ] || { ls "$R/checkpoints"; fail "SIGTERM: $ckpt missing"; }
[ "$(cat "$R/checkpoints/latest")" = "$(basename "$ckpt")" ] || fail "latest does not name $ckpt"
python3 - "$R/metrics.jsonl" "$step" <<'EOF' || fail "SIGTERM: no stop record"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert recs[-1]["type"] == "stop" and recs[-1]["reason"] == "SIGTERM", recs[-1]
assert recs[-1]["step"] == int(sys.argv[2]), recs[-1]
EOF

# Resume and finish: the epoch count now ends one epoch after the interrupted one (a free change).
epochs=$((step / 15 + 2))
expect_rc 0 "$BIN" train "$T/tiny.ini" "${LONG[@]}" train.epochs=$epochs --resume auto
expect_out "resuming from $ckpt at step $step"
python3 - "$R/metrics.jsonl" "$((epochs * 15))" <<'EOF' || fail "the resumed run did not finish"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert recs[-1]["type"] == "final" and recs[-1]["step"] == int(sys.argv[2]), recs[-1]
EOF
[ -s "$R/model.safetensors" ] || fail "the resumed run wrote no model"

# --- SIGINT ------------------------------------------------------------------------------------
run_and_signal INT
[ "$rc" -eq 130 ] || { cat "$T/err"; fail "SIGINT: exit status $rc, expected 130"; }
grep -q "cuvae: interrupted at step" "$T/err" || { cat "$T/err"; fail "SIGINT: no message"; }
expect_rc 0 "$BIN" train "$T/tiny.ini" "${LONG[@]}" train.epochs=1 --resume auto

# --- SIGINT twice: out at once (130), whatever was being written; no good checkpoint is lost ----
LONG+=(output.checkpoint_every_steps=3)
run_and_signal INT -INT
[ "$rc" -eq 130 ] || { cat "$T/err"; fail "SIGINT twice: exit status $rc, expected 130"; }
expect_rc 0 "$BIN" train "$T/tiny.ini" "${LONG[@]}" train.epochs=1 --resume auto
expect_out "resuming from $R/checkpoints/step-"
if grep -q "skipping" "$T/err"; then cat "$T/err"; fail "a checkpoint was damaged by the exit"; fi

echo "cli_signals: ok"
