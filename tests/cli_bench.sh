#!/usr/bin/env bash
# `cuvae bench` on the CPU: the step breakdown (table and JSON: a row for each layer's forward
# and backward pass and for every other phase, shares adding up to the whole step), and
# evaluation timings that measure real work: with examples x K within one decoder block, a pass
# must not be timed as a lookup of the previous pass's memoized block.
set -euo pipefail
NAME=cli_bench
source "$(dirname "$0")/lib_cli.sh"

expect_rc 0 "$BIN" bench --device cpu --batch 16 --steps 2 --warmup 1 --repeats 2 \
    --eval-samples 2 --eval-examples 4 --json "$T/bench.json"
expect_out "step breakdown, batch 16 (fp32)"
for phase in "enc.0 fwd 512x784" "enc.0 bwd 512x784" "dec.2 fwd 784x512" "dec.2 bwd 784x512" \
    "gather + binarize" "likelihood + gradient" "Adam" "all GEMMs"; do
    expect_out "  $phase "
done
python3 - "$T/bench.json" <<'PY' || fail "bench JSON's breakdown or evaluation is wrong"
import json, sys
s = json.load(open(sys.argv[1]))["settings"][0]
rows = s["breakdown"]
names = [r["phase"] for r in rows]
layers = [n for n in names if " fwd " in n or " bwd " in n]
assert len(layers) == 12, names  # 3 layers a half, forward and backward, encoder and decoder
assert abs(sum(r["share"] for r in rows) - 1.0) < 1e-6, rows
total = sum(r["ms_per_step"] for r in rows)
# The phases cover the step: at most the timed step, and most of it.
assert 0.5 * s["step_ms"] < total <= s["step_ms"] * 1.05, (total, s["step_ms"])
assert all(r["gflop_per_s"] > 0 for r in rows if " fwd " in r["phase"] or " bwd " in r["phase"])
# One decoder block of 1024 rows through 32-256-512-784 is over 1 GFLOP: no CPU evaluates it in
# 0.1 ms. A pass that took less was a memo lookup.
assert s["eval"]["pass_s"] > 1e-4, s["eval"]
PY

# --json goes through the one writer (file_write.h): an existing regular file is replaced whole (a
# new file renamed over it, no temporary left behind); a symlink stays a link and its target gets
# the report.
ino_before=$(stat -c %i "$T/bench.json")
quick=(bench --device cpu --batch 8 --steps 1 --warmup 0 --repeats 1 --eval-samples 0)
expect_rc 0 "$BIN" "${quick[@]}" --json "$T/bench.json"
[ "$(stat -c %i "$T/bench.json")" != "$ino_before" ] || fail "--json rewrote the file in place"
ls "$T" | grep -q '\.tmp\.' && fail "--json left a temporary file: $(ls "$T")"
python3 -c 'import json, sys; json.load(open(sys.argv[1]))["settings"][0]' "$T/bench.json" ||
    fail "--json over a regular file did not write the report"
echo old >"$T/target.json"
ln -s target.json "$T/link.json"
expect_rc 0 "$BIN" "${quick[@]}" --json "$T/link.json"
[ -L "$T/link.json" ] || fail "--json replaced the symlink instead of writing through it"
python3 -c 'import json, sys; json.load(open(sys.argv[1]))["settings"][0]' "$T/target.json" ||
    fail "--json through a symlink did not write the report to its target"
# A directory is refused with a message naming the path, and nothing is written.
mkdir "$T/dir.json"
expect_rc 1 "$BIN" "${quick[@]}" --json "$T/dir.json"
grep -qF -- "--json: $T/dir.json" "$T/err" || { cat "$T/err"; fail "no message naming --json's path"; }
echo "$NAME: ok"
