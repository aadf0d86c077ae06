#!/usr/bin/env bash
# Issue 11: hostile and unlucky surroundings. The run directory's lock (a second trainer is
# refused naming the holder's PID; kill -9 leaves no stale lock); outputs that are devices,
# symlinks or FIFOs are written in place, never replaced; inputs that are not regular files;
# ELOOP in output.dir; overrides with newlines or bytes that are not UTF-8; SIGHUP; stdout
# errors; eval results that are not finite.
set -euo pipefail
NAME=cli_hostile
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/tiny.ini" "$T/run"
R=$T/run
LONG=(train.epochs=100000 train.log_every=1 output.checkpoint_every_epochs=0 output.images=0)

# --- the run directory's lock ----------------------------------------------------------------
"$BIN" train "$T/tiny.ini" "${LONG[@]}" >"$T/out1" 2>"$T/err1" &
pid=$!
tries=0
until [ -s "$R/metrics.jsonl" ] && grep -q '"type":"step"' "$R/metrics.jsonl"; do
    tries=$((tries + 1))
    [ $tries -lt 600 ] || { kill -KILL $pid; fail "the first run logged no steps within 60 s"; }
    kill -0 $pid 2>/dev/null || { cat "$T/err1"; fail "the first run ended early"; }
    sleep 0.1
done
[ "$(cat "$R/lock")" = "$pid" ] || fail "the lock file holds '$(cat "$R/lock")', not PID $pid"
before=$(stat -c '%Y %s' "$R/config.ini" "$R/metrics.jsonl" | tr '\n' ' ')
# timeout: without the lock the second run would join the first and train on.
expect_rc 1 timeout 30 "$BIN" train "$T/tiny.ini" "${LONG[@]}" --resume auto
expect_one_line_error "PID $pid"
expect_err "$R is in use"
grep -q 'resolved configuration' "$T/out" && fail "the refused run printed its report"
sleep 0.3
kill -0 $pid 2>/dev/null || fail "the first run died when the second was refused"
# The refused run touched nothing: the first run's files only grow, config.ini is the same.
[ "$(stat -c '%Y %s' "$R/config.ini")" = "$(echo "$before" | cut -d' ' -f1,2)" ] ||
    fail "the refused run rewrote config.ini"
kill -KILL $pid
wait $pid 2>/dev/null || true
# kill -9 leaves the file but no lock: the next trainer takes it at once.
[ -f "$R/lock" ] || fail "the lock file is gone"
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1 output.images=0 --resume auto
[ "$(cat "$R/lock")" != "$pid" ] || fail "the new holder did not write its PID"

# --- outputs that must not be replaced ------------------------------------------------------
MODEL=$R/model.safetensors
[ -f "$MODEL" ] || fail "no model.safetensors"
# First on a private copy of the null device (as root), so that a regression replaces that one,
# fails here and never reaches the machine's /dev/null.
if mknod "$T/null" c 1 3 2>/dev/null; then
    expect_rc 0 "$BIN" sample "$MODEL" --n 4 --device cpu --out "$T/null"
    [ -c "$T/null" ] || fail "a character device given as --out was replaced"
    ln -s "$T/null" "$T/stdout_link"
    expect_rc 0 "$BIN" eval "$MODEL" --device cpu --limit 50 --samples 2 --json "$T/stdout_link"
    [ -L "$T/stdout_link" ] && [ -c "$T/null" ] || fail "--json through a symlink to a device"
fi
expect_rc 0 "$BIN" sample "$MODEL" --n 4 --device cpu --out /dev/null
[ -c /dev/null ] || fail "/dev/null is no longer a character device"
[ "$(stat -c %t:%T /dev/null)" = "1:3" ] || fail "/dev/null was replaced"
ls /dev/null.tmp.* 2>/dev/null && fail "a temporary was left in /dev"

# eval --json /dev/stdout: the JSON goes down the pipe; /dev/stdout stays a symlink.
"$BIN" eval "$MODEL" --device cpu --limit 50 --samples 2 --json /dev/stdout 2>"$T/err" | cat >"$T/out"
[ -L /dev/stdout ] || fail "/dev/stdout is no longer a symlink"
grep -q '"type":"eval"' "$T/out" || { cat "$T/out"; fail "no JSON on stdout"; }

# A symlink given as --out stays a symlink; its target gets the image.
touch "$T/target.png"
ln -s "$T/target.png" "$T/link.png"
expect_rc 0 "$BIN" sample "$MODEL" --n 4 --device cpu --out "$T/link.png"
[ -L "$T/link.png" ] || fail "the symlink was replaced by a file"
[ "$(head -c 4 "$T/target.png" | od -An -tx1 | tr -d ' ')" = "89504e47" ] ||
    fail "the symlink's target holds no PNG"
ln -s "$T/target.json" "$T/link.json"
touch "$T/target.json"
expect_rc 0 "$BIN" eval "$MODEL" --device cpu --limit 50 --samples 2 --json "$T/link.json"
[ -L "$T/link.json" ] && grep -q '"type":"eval"' "$T/target.json" || fail "--json through a symlink"

# A FIFO with no reader is refused at once, not waited on.
mkfifo "$T/fifo.png"
expect_rc 1 timeout 20 "$BIN" sample "$MODEL" --n 4 --device cpu --out "$T/fifo.png"
expect_err "a FIFO with no reader"
# A directory as --out is refused naming it.
mkdir "$T/adir.png"
expect_rc 1 "$BIN" sample "$MODEL" --n 4 --device cpu --out "$T/adir.png"
expect_err "Is a directory"

# --- inputs that are not regular files ------------------------------------------------------
mkfifo "$T/fifo.ini" "$T/fifo.idx"
expect_rc 2 timeout 20 "$BIN" train "$T/fifo.ini"
expect_one_line_error "fifo.ini: a FIFO, not a regular file"
expect_rc 2 "$BIN" train "$T/data"
expect_one_line_error "data: a directory, not a regular file"
expect_rc 1 timeout 20 "$BIN" train "$T/tiny.ini" output.dir="$T/run_fifo" data.train_images="$T/fifo.idx"
expect_err "fifo.idx: a FIFO, not a regular file"

# The test set a checkpoint names (or --test-images gives) goes through the same check.
expect_rc 1 timeout 20 "$BIN" eval "$MODEL" --device cpu --test-images "$T/fifo.idx"
expect_err "fifo.idx: a FIFO, not a regular file"

# --- output.dir in a symlink loop: ELOOP, not "not a directory" -------------------------------
ln -s "$T/loop" "$T/loop"
expect_rc 1 "$BIN" train "$T/tiny.ini" output.dir="$T/loop/run"
expect_err "Too many levels of symbolic links"

# --- overrides: a newline is refused and shown escaped; sigma is bounded -----------------------
expect_rc 2 "$BIN" train "$T/tiny.ini" "train.epochs=1
2"
expect_one_line_error "'train.epochs=1\x0A2': holds a control character"
expect_rc 2 "$BIN" train "$T/tiny.ini" data.binarize=none model.likelihood=gaussian model.gaussian_sigma=1e-45
expect_one_line_error "model.gaussian_sigma"
expect_rc 2 "$BIN" train "$T/tiny.ini" "output.dir=$T/$(printf '\xff')"
expect_one_line_error "is not valid UTF-8"

# --- stdout that cannot be written: a non-zero exit --------------------------------------------
if [ -w /dev/full ]; then
    rc=0
    "$BIN" train "$T/tiny.ini" output.dir="$T/run_full" train.epochs=1 output.images=0 \
        >/dev/full 2>"$T/err" || rc=$?
    [ $rc -ne 0 ] || fail "train >/dev/full exited 0"
    expect_err "writing to stdout failed"
fi

# --- SIGHUP stops like SIGTERM: a checkpoint, then 128 + 1 ---------------------------------------
rm -rf "$T/run_hup"
"$BIN" train "$T/tiny.ini" "${LONG[@]}" output.dir="$T/run_hup" >"$T/out" 2>"$T/err" &
pid=$!
tries=0
until [ -s "$T/run_hup/metrics.jsonl" ] && grep -q '"type":"step"' "$T/run_hup/metrics.jsonl"; do
    tries=$((tries + 1))
    [ $tries -lt 600 ] || { kill -KILL $pid; fail "the SIGHUP run logged no steps within 60 s"; }
    sleep 0.1
done
kill -HUP $pid
rc=0
wait $pid || rc=$?
[ $rc -eq 129 ] || { cat "$T/err"; fail "SIGHUP: exit $rc, expected 129"; }
expect_err "interrupted at step"
ls "$T/run_hup/checkpoints/"step-*.safetensors >/dev/null || fail "SIGHUP: no checkpoint"

# --- SIGTERM during the final test evaluation: honoured when it ends (exit 143, no "final") ----
# 60000 test examples and hidden layers of 512 make that evaluation last about two seconds (BLAS
# bound, so under ASan too); the signal goes 0.2 s after model.safetensors (written just before
# it) appears.
python3 - "$T" <<'PY'
import gzip, struct, sys
t = sys.argv[1]
src = gzip.open(t + "/data/t10k-images-idx3-ubyte.gz").read()[16:]
n = 60000
with gzip.open(t + "/big-test.gz", "wb", compresslevel=1) as f:
    f.write(struct.pack(">IIII", 0x803, n, 12, 12) + src * (n // 200))
PY
rm -rf "$T/run_final"
"$BIN" train "$T/tiny.ini" output.dir="$T/run_final" train.epochs=1 output.images=0 \
    data.test_images="$T/big-test.gz" data.test_labels= data.limit_train=300 data.validation=50 \
    model.hidden=512,512 >"$T/out" 2>"$T/err" &
pid=$!
tries=0
until [ -f "$T/run_final/model.safetensors" ]; do
    tries=$((tries + 1))
    [ $tries -lt 3000 ] || { kill -KILL $pid; fail "no model.safetensors within 60 s"; }
    kill -0 $pid 2>/dev/null || { cat "$T/err"; fail "the run ended before its model was written"; }
    sleep 0.02
done
sleep 0.2
kill -TERM $pid
rc=0
wait $pid || rc=$?
[ $rc -eq 143 ] || { cat "$T/err"; fail "SIGTERM during the test evaluation: exit $rc, expected 143"; }
tail -1 "$T/run_final/metrics.jsonl" | grep -q '"type":"stop","reason":"SIGTERM"' ||
    fail "the last metrics record is not the SIGTERM stop: $(tail -1 "$T/run_final/metrics.jsonl")"
grep -q '"type":"final"' "$T/run_final/metrics.jsonl" && fail "a run stopped by SIGTERM logged final"

# --- eval with results that are not finite: an error, not -nan and exit 0 --------------------
python3 - "$MODEL" "$T/huge.safetensors" <<'PY'
import json, os, struct, sys
sys.path.insert(0, os.path.join(os.environ["CUVAE_SOURCE_DIR"], "tests"))
import ckpt_crc
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
data = bytearray(raw[8 + n:])
data[:] = struct.pack("<f", 3e38) * (len(data) // 4)
head["__metadata__"]["crc32"] = ckpt_crc.crc_of(head, bytes(data))
text = json.dumps(head, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + bytes(data))
PY
expect_rc 1 "$BIN" eval "$T/huge.safetensors" --device cpu --limit 50 --samples 2
expect_err "the results are not finite"
grep -q nan "$T/out" && fail "eval printed nan"

echo "$NAME: ok"
