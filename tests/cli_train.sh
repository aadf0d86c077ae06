#!/usr/bin/env bash
# End-to-end test of `cuvae train` on generated 12x12 data with a 144-32-4 model on the CPU:
# the loss falls below a stated threshold, every output file exists and is well formed
# (config.ini reads back, metrics.jsonl is JSON a line, PNGs, checkpoints, model.safetensors),
# two runs with the same seed give identical losses and identical model bytes, progress is one
# line per epoch when stderr is not a terminal, and --help/--version answer for every subcommand.
set -euo pipefail
NAME=cli_train
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/tiny.ini" "$T/run"

# --- a training run ----------------------------------------------------------------------------
expect_rc 0 "$BIN" train "$T/tiny.ini" --device cpu
cp "$T/out" "$T/run1.out"
cp "$T/err" "$T/run1.err"
R=$T/run

# The resolved config is printed, and saved as config.ini, which trains again (it reads back).
grep -q '^\[model\]' "$T/run1.out" || fail "stdout lacks the resolved config"
grep -q "$R/model.safetensors" "$T/run1.out" || fail "stdout does not say where the model is"
[ -s "$R/config.ini" ] || fail "config.ini missing"
grep -q '^\[train\]' "$R/config.ini" || fail "config.ini lacks [train]"

# Progress when stderr is not a terminal: one line per epoch, no carriage returns.
epochs_seen=$(grep -c '^epoch [0-9]*/3 ' "$T/run1.err" || true)
[ "$epochs_seen" -eq 3 ] || { cat "$T/run1.err"; fail "expected 3 epoch lines on stderr, got $epochs_seen"; }
if grep -q $'\r' "$T/run1.err"; then fail "carriage returns in non-terminal progress"; fi
grep -q 'backend cpu' "$T/run1.out" || fail "stdout does not say which device trains"

# metrics.jsonl: JSON a line, with the documented fields.
python3 - "$R/metrics.jsonl" <<'EOF' || fail "metrics.jsonl is malformed"
import json, math, sys
kinds = {}
for n, line in enumerate(open(sys.argv[1]), 1):
    rec = json.loads(line)
    kinds.setdefault(rec["type"], []).append(rec)
need = {"step": ["step", "epoch", "loss", "rec", "kl", "lr", "beta", "grad_norm", "samples_per_s",
                 "wall_s"],
        "epoch": ["epoch", "step", "loss", "rec", "kl", "valid_neg_elbo", "samples_per_s",
                  "epoch_s", "wall_s"],
        "final": ["step", "test_neg_elbo", "wall_s"]}
for kind, fields in need.items():
    assert kind in kinds, f"no {kind} lines"
    for rec in kinds[kind]:
        for f in fields:
            assert f in rec, f"{kind} line lacks {f}: {rec}"
steps = [r["step"] for r in kinds["step"]]
assert steps == sorted(steps) and steps[0] == 5, steps
assert [r["epoch"] for r in kinds["epoch"]] == [1, 2, 3]
# 500 training examples (100 held out) in batches of 32: 15 steps an epoch, 45 in all.
assert kinds["epoch"][-1]["step"] == 45, kinds["epoch"][-1]
assert kinds["final"][0]["step"] == 45
for r in kinds["epoch"]:
    assert math.isfinite(r["valid_neg_elbo"]) and r["valid_neg_elbo"] > 0, r
assert math.isfinite(kinds["final"][0]["test_neg_elbo"])
EOF

# The loss falls: the first logged interval starts near 144 * log 2 = 99.8 nats (random init,
# Bernoulli over 144 pixels); after 3 epochs the mean training loss is well below it.
python3 - "$R/metrics.jsonl" <<'EOF' || fail "training did not lower the loss enough"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
first = [r for r in recs if r["type"] == "step"][0]["loss"]
last = [r for r in recs if r["type"] == "epoch"][-1]["loss"]
print(f"cli_train: first interval loss {first:.2f}, last epoch loss {last:.2f}")
assert first > 80, first
assert last < 60 and last < 0.7 * first, (first, last)
EOF

# Files.
for f in model.safetensors checkpoints/latest checkpoints/best.safetensors \
    images/recon-epoch-001.png images/recon-epoch-003.png images/samples-epoch-001.png \
    images/samples-epoch-003.png; do
    [ -s "$R/$f" ] || fail "$f missing"
done
ls "$R"/checkpoints/step-*.safetensors >/dev/null 2>&1 || fail "no step checkpoints"
for png in "$R"/images/*.png; do
    head -c 8 "$png" | od -An -tx1 | tr -d ' \n' | grep -q '^89504e470d0a1a0a$' || fail "$png is not a PNG"
done
# model.safetensors: an 8-byte header length, a JSON header, model tensors only (no optimizer).
python3 - "$R/model.safetensors" <<'EOF' || fail "model.safetensors is malformed"
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
names = [k for k in header if k != "__metadata__"]
assert "encoder.0.weight" in names and "decoder.1.bias" in names, names
assert not any(k.startswith("optim.") for k in names), names
assert header["encoder.0.weight"]["shape"] == [32, 144], header["encoder.0.weight"]
assert header["__metadata__"]["step"] == "45", header["__metadata__"]
EOF

# --- the same seed again: identical losses and identical model bytes -------------------------
# The run directory is part of the saved config, so the second run trains in the same place.
mv "$R" "$T/run1"
expect_rc 0 "$BIN" train "$T/tiny.ini" --device cpu
diff <(json_field "$T/run1/metrics.jsonl" loss step) <(json_field "$R/metrics.jsonl" loss step) \
    >/dev/null || fail "step losses differ between two runs with the same seed"
diff <(json_field "$T/run1/metrics.jsonl" valid_neg_elbo epoch) \
    <(json_field "$R/metrics.jsonl" valid_neg_elbo epoch) >/dev/null ||
    fail "validation figures differ between two runs with the same seed"
cmp -s "$T/run1/model.safetensors" "$R/model.safetensors" ||
    fail "model.safetensors differs between two runs with the same seed"

# A different seed trains a different model.
mv "$R" "$T/run2"
expect_rc 0 "$BIN" train "$T/tiny.ini" train.seed=8 train.epochs=1 output.images=0
if cmp -s "$T/run1/model.safetensors" "$R/model.safetensors"; then
    fail "a different seed gave the same model"
fi
[ ! -e "$R/images" ] || [ -z "$(ls "$R/images")" ] || fail "output.images=0 still wrote images"

# The saved config.ini is a config: training from it (in a new directory) works.
expect_rc 0 "$BIN" train "$T/run1/config.ini" output.dir="$T/from_saved" train.epochs=1

# --- help and version ----------------------------------------------------------------------------
expect_rc 0 "$BIN" --help
for sub in train eval sample reconstruct bench; do
    grep -q "^  $sub " "$T/out" || fail "cuvae --help does not list $sub"
done
grep -q '^  143' "$T/out" || fail "cuvae --help lacks the exit statuses"
expect_rc 0 "$BIN" --version
grep -q '^cuvae [0-9]' "$T/out" || fail "--version prints '$(cat "$T/out")'"
for sub in train eval sample reconstruct bench; do
    expect_rc 0 "$BIN" "$sub" --help
    grep -qi 'usage' "$T/out" || fail "cuvae $sub --help prints no usage"
done
expect_rc 0 "$BIN" train --help
for opt in --device --resume train.epochs optim.lr output.dir 130 143; do
    grep -qF -- "$opt" "$T/out" || fail "cuvae train --help does not mention $opt"
done
expect_rc 0 "$BIN" help train
grep -q -- '--resume' "$T/out" || fail "cuvae help train does not show train's help"

echo "cli_train: ok"
