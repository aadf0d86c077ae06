#!/usr/bin/env bash
# TensorBoard event files, read back with the `tensorboard` package's own reader (its
# EventAccumulator, which checks every record's two CRC-32Cs, and its EventFileLoader), installed
# from PyPI into tests/.venv-tb (tests/install_tensorboard.sh; skipped only when that cannot be
# done). (1) A run of 2 epochs: every number of every metrics.jsonl record with a step (wall_s
# aside) is the scalar <type>/<key> at that step with the same value, no tag holds a step twice, and
# the epoch grids are images/recon and images/samples at each epoch's last step, byte for byte the
# PNGs of images/. (2) The same run resumed from its step-8 checkpoint, as after a process killed
# past step 8 whose later checkpoints were lost: a second events file, named after the first, that
# starts with a SessionLog START at step 9; TensorBoard drops the first file's points from step 9
# on and every tag again holds each step once, with the values of the records written last.
# (3) output.tensorboard=0 writes no events file.
set -euo pipefail
NAME=cli_tensorboard
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_python.sh"
need_tensorboard

make_data
make_config "$T/tb.ini" "$T/run"
R=$T/run
# 15 steps an epoch, 30 in all; checkpoints every 8 steps and at each epoch's end.
OVR=(train.epochs=2 output.checkpoint_every_steps=8 output.keep_last=20)

check_events() { # $1: expected number of events files
    "$tbpy" - "$R" "$1" <<'EOF'
import glob, json, math, os, struct, sys
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

run, n_files = sys.argv[1], int(sys.argv[2])
files = sorted(glob.glob(os.path.join(run, "events.out.tfevents.*")))
assert len(files) == n_files, files

# What TensorBoard should show, worked out from metrics.jsonl: each record's numbers at its step;
# a start record at step S (a new process) drops what earlier processes logged after S.
want = {}
for line in open(os.path.join(run, "metrics.jsonl")):
    r = json.loads(line)
    if r["type"] == "start":
        for pts in want.values():
            for s in [s for s in pts if s > r["step"]]:
                del pts[s]
        continue
    if "step" not in r:
        continue
    for k, v in r.items():
        if k in ("wall_s", "type") or isinstance(v, (str, bool)) or v is None:
            continue
        want.setdefault(r["type"] + "/" + k, {})[r["step"]] = v
want = {k: v for k, v in want.items() if v}
# The integer counters of the records (positions, not measurements) are not plotted.
counters = {"step", "epoch", "first_step", "steps", "skipped"}

acc = ea.EventAccumulator(run, size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
acc.Reload()
tags = acc.Tags()
plotted = sorted(k for k in want if k.split("/", 1)[1] not in counters)
assert sorted(tags["scalars"]) == plotted, (sorted(tags["scalars"]), plotted)
want = {k: want[k] for k in plotted}
for tag in ("step/loss", "step/rec", "step/kl", "step/lr", "step/beta", "step/grad_norm",
            "step/samples_per_s", "epoch/loss", "epoch/valid_neg_elbo", "final/test_neg_elbo",
            "final/best_valid_neg_elbo"):
    assert tag in want, tag
n_points = exact = 0
for tag, pts in want.items():
    got = acc.Scalars(tag)
    steps = [e.step for e in got]
    assert steps == sorted(set(steps)), (tag, "steps repeated or out of order", steps)
    assert steps == sorted(pts), (tag, steps, sorted(pts))
    for e in got:
        # The event holds float32(x) of the run's double x; metrics.jsonl holds x to 10
        # significant digits (%.10g). Rounding that text to float32 gives the event's value, or,
        # when x lies within 1e-10 (relative) of the midpoint between two floats, its neighbour:
        # the two agree within one float32 step, and exactly almost always.
        ref = struct.unpack("<f", struct.pack("<f", pts[e.step]))[0]
        ulp = math.ldexp(1.0, math.frexp(ref)[1] - 24) if ref else 0.0
        assert e.value == ref or abs(e.value - ref) <= ulp, (tag, e.step, e.value, pts[e.step])
        exact += e.value == ref
        n_points += 1

# The grids: at each epoch's last step, the bytes of the PNG files.
epochs = {}
for line in open(os.path.join(run, "metrics.jsonl")):
    r = json.loads(line)
    if r["type"] == "epoch":
        epochs[r["epoch"]] = r["step"]
assert sorted(tags["images"]) == ["images/recon", "images/samples"], tags["images"]
for tag, stem in (("images/recon", "recon"), ("images/samples", "samples")):
    got = acc.Images(tag)
    assert [e.step for e in got] == [epochs[k] for k in sorted(epochs)], (tag, got)
    for k, e in zip(sorted(epochs), got):
        png = open(os.path.join(run, "images", f"{stem}-epoch-{k:03d}.png"), "rb").read()
        assert e.encoded_image_string == png, (tag, k)
        w, h = struct.unpack(">II", png[16:24])
        assert (e.width, e.height) == (w, h), (tag, e.width, e.height, w, h)

# Each file: file_version first, then the SessionLog START at (the process's first step + 1).
starts = []
for path in files:
    events = list(EventFileLoader(path).Load())
    assert events[0].file_version == "brain.Event:2", path
    assert events[1].session_log.status == 1, path  # START
    starts.append(events[1].step)
assert exact * 10 >= n_points * 9, (exact, n_points)  # the neighbour is the rare case
print(f"{len(want)} tags, {n_points} points ({exact} exact), files start at {starts}")
with open(os.path.join(os.path.dirname(run), "starts"), "w") as f:
    f.write(" ".join(map(str, starts)))
EOF
}

# --- (1) a run straight through --------------------------------------------------------------------
expect_rc 0 "$BIN" train "$T/tb.ini" "${OVR[@]}"
check_events 1 || fail "the events of the run do not match metrics.jsonl"
[ "$(cat "$T/starts")" = "1" ] || fail "the first file's START is at $(cat "$T/starts"), expected 1"
expect_out "  metrics:    $R/metrics.jsonl"

# --- (2) resumed from the step-8 checkpoint --------------------------------------------------------
sleep 1 # the files' names differ by their seconds anyway; this keeps the wall times apart too
expect_rc 0 "$BIN" train "$T/tb.ini" "${OVR[@]}" --resume "$R/checkpoints/step-000000000008.safetensors"
check_events 2 || fail "after the resume, the events do not match metrics.jsonl"
[ "$(cat "$T/starts")" = "1 9" ] || fail "the files' STARTs are at $(cat "$T/starts"), expected 1 9"

# --- (3) off ---------------------------------------------------------------------------------------
expect_rc 0 "$BIN" train "$T/tb.ini" train.epochs=1 output.tensorboard=0 output.dir="$T/off"
if ls "$T/off"/events.out.tfevents.* >/dev/null 2>&1; then fail "output.tensorboard=0 wrote events"; fi
echo "$NAME: ok"
