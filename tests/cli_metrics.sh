#!/usr/bin/env bash
# metrics.jsonl across epochs and resumes. (1) The step records name the epoch of their last step:
# with train.log_every = 7 the record of steps 29-30, written after the last epoch's end, says epoch
# 2 of 2 (it said 3). (2) Epoch records say which steps their training figures cover (first_step,
# steps): the whole epoch in a straight run; after a resume from the step-8 checkpoint, steps 9-15
# of epoch 1 (this process's part) and the whole of epoch 2. (3) A checkpoint record (step, path,
# wall_s) follows every checkpoint, and wall_s goes on across a resume from the time of the
# checkpoint record of the step resumed from (set to 1000 s here, so the check does not depend on
# how fast the machine is), or, in a log without checkpoint records, from the last record at or
# before that step.
set -euo pipefail
NAME=cli_metrics
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/m.ini" "$T/run"
R=$T/run
OVR=(train.epochs=2 train.log_every=7 output.checkpoint_every_steps=8 output.keep_last=20
    output.images=0)

expect_rc 0 "$BIN" train "$T/m.ini" "${OVR[@]}"
python3 - "$R/metrics.jsonl" <<'EOF' || fail "the straight run's metrics are wrong"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [(r["step"], r["epoch"]) for r in recs if r["type"] == "step"]
assert steps == [(7, 1), (14, 1), (21, 2), (28, 2), (30, 2)], steps
ep = [(r["epoch"], r["step"], r["first_step"], r["steps"]) for r in recs if r["type"] == "epoch"]
assert ep == [(1, 15, 1, 15), (2, 30, 16, 15)], ep
ck = [r["step"] for r in recs if r["type"] == "checkpoint"]
assert ck == [8, 15, 16, 24, 30], ck
for r in recs:
    if r["type"] == "checkpoint":
        assert r["path"].endswith("step-%012d.safetensors" % r["step"]), r
fin = [r for r in recs if r["type"] == "final"]
assert len(fin) == 1 and fin[0]["epoch"] == 2 and recs[-1] is fin[0], fin
EOF

# The run as it would stand after 1000 s at its step-8 checkpoint.
python3 - "$R/metrics.jsonl" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
for r in recs:
    if r["type"] == "checkpoint" and r["step"] == 8:
        r["wall_s"] = 1000.0
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in recs))
EOF
expect_rc 0 "$BIN" train "$T/m.ini" "${OVR[@]}" --resume "$R/checkpoints/step-000000000008.safetensors"
python3 - "$R/metrics.jsonl" <<'EOF' || fail "the resumed run's metrics are wrong"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
i = max(k for k, r in enumerate(recs) if r["type"] == "start")
start, after = recs[i], recs[i + 1:]
assert start["step"] == 8 and 1000 <= start["wall_s"] < 1600, start
ep = [(r["epoch"], r["step"], r["first_step"], r["steps"]) for r in after if r["type"] == "epoch"]
assert ep == [(1, 15, 9, 7), (2, 30, 16, 15)], ep
walls = [r["wall_s"] for r in after]
assert all(1000 <= w < 1600 for w in walls) and walls == sorted(walls), walls
EOF

# A log from before checkpoint records: the last record at or before step 8 (step 7's) gives it.
python3 - "$R/metrics.jsonl" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
i = min(k for k, r in enumerate(recs) if r["type"] == "start" and r["step"] == 8)
recs = [r for r in recs[:i] if r["type"] != "checkpoint"]
for r in recs:
    if r["type"] == "step" and r["step"] == 7:
        r["wall_s"] = 500.0
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in recs))
EOF
expect_rc 0 "$BIN" train "$T/m.ini" "${OVR[@]}" --resume "$R/checkpoints/step-000000000008.safetensors"
python3 - "$R/metrics.jsonl" <<'EOF' || fail "resumed from a log without checkpoint records: wall_s"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
start = [r for r in recs if r["type"] == "start"][-1]
assert start["step"] == 8 and 500 <= start["wall_s"] < 1000, start
EOF
echo "$NAME: ok"
