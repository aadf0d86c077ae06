#!/usr/bin/env bash
# Fault injection: `cuvae train --resume auto` killed with SIGKILL again and again (during
# start-up, mid-step, mid-checkpoint write, mid-rotation), then allowed to finish. After every
# kill, each step-*.safetensors, best.safetensors and the file `latest` names is either absent or
# good (lib_fault.sh: cuvae eval reads it, and an independent Python reader checks its layout and
# CRC-32); stale *.tmp.* files are allowed. Each restart resumes from the newest step file (never
# "skipping", never "no usable checkpoint", never a fresh start once a checkpoint exists). The
# finished run's model.safetensors, best.safetensors and final step checkpoints are byte-identical
# to those of an uninterrupted run: resuming is exact, and both runs resolve the same config text
# (same data paths, relative output.dir = run, started from sibling directories A and B), which
# every checkpoint stores.
#
# Kill timing: every third kill waits for this run's checkpoint temporary (*.tmp.<pid>) to appear
# and fires 0-15 ms later, so it lands inside a checkpoint write (or just after its rename); of the
# others, a third fire 5-60 ms after the start (start-up, resume), the rest 0-9 ms after the run
# has logged a step at or past a random target between the newest checkpoint and 12 steps before
# the end, so that the run makes progress but cannot finish first, at any machine speed. Only the
# timing is random (seeded: CUVAE_KILL_SEED=N repeats a sequence); every check holds for any
# timing.
set -euo pipefail
NAME=cli_kill
source "$(dirname "$0")/lib_cli.sh"
source "$(dirname "$0")/lib_fault.sh"

BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN") # the runs start from other directories
KILLS=${CUVAE_KILLS:-10}
SEED=${CUVAE_KILL_SEED:-$(($(date +%s%N) % 32768))}
RANDOM=$SEED
echo "cli_kill: kill-timing seed $SEED (set CUVAE_KILL_SEED=$SEED to repeat it)"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
sleep_ms() { sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"; }

make_data
make_config "$T/kill.ini" run
# A 144-512-256-4 model: a checkpoint with optimizer state is ~5 MB, so writing (and fsyncing) it
# takes a good share of the run. 15 steps an epoch, 60 in all, a checkpoint every 3 steps, and
# best.safetensors at each epoch end where validation improves.
OVR=("model.hidden=512,256" train.epochs=4 train.log_every=4 output.checkpoint_every_steps=3
    output.checkpoint_every_epochs=0 output.keep_last=2 output.images=0)
mkdir "$T/A" "$T/B"

# --- the uninterrupted run, in A ------------------------------------------------------------------
t0=$(now_ms)
(cd "$T/A" && exec "$BIN" train "$T/kill.ini" "${OVR[@]}" --device cpu) >"$T/A.out" 2>"$T/A.err" ||
    { cat "$T/A.err"; fail "the uninterrupted run failed"; }
ref_ms=$(($(now_ms) - t0))
total=$(json_field "$T/A/run/metrics.jsonl" step final)
[ "$total" = 60 ] || fail "the uninterrupted run ended at step '$total', expected 60"
echo "cli_kill: uninterrupted run: $total steps in $ref_ms ms"

# --- the checks after each kill -------------------------------------------------------------------
CK=$T/B/run/checkpoints
declare -A VALIDATED # "name inode size mtime" of files found good: a renamed-in file never changes

# The newest step file's name, or "" when there is none.
newest_step_file() {
    local f newest="" best=-1
    for f in "$CK"/step-*.safetensors; do
        [ -e "$f" ] || continue
        if [ "$(step_of "$f")" -gt "$best" ]; then
            best=$(step_of "$f")
            newest=${f##*/}
        fi
    done
    echo "$newest"
}

# Every checkpoint file present is good; the pointer names a checkpoint file, good or gone.
check_run_dir() {
    local f key target files=()
    [ -d "$CK" ] || return 0
    for f in "$CK"/step-*.safetensors "$CK/best.safetensors"; do
        [ -e "$f" ] && files+=("$f")
    done
    if [ -e "$CK/latest" ]; then
        target=$(head -n 1 "$CK/latest")
        case $target in
        step-*.safetensors | best.safetensors) ;;
        *) fail "after kill $1: latest holds '$target', not a checkpoint file name" ;;
        esac
        # (already in the list when it exists)
    fi
    local todo=()
    for f in "${files[@]}"; do
        key=$(stat -c '%n %i %s %y' "$f" 2>/dev/null) || fail "after kill $1: $f vanished"
        [ -n "${VALIDATED[$key]:-}" ] || todo+=("$f")
    done
    [ "${#todo[@]}" -eq 0 ] && return 0
    ckpt_ok --optim "${todo[@]}" || fail "after kill $1: a checkpoint file is not good"
    for f in "${todo[@]}"; do
        VALIDATED[$(stat -c '%n %i %s %y' "$f")]=1
    done
}

# What a run said (stdout $1, stderr $2) about the checkpoint it started from, given the newest
# step file that existed when it started ($3, "" for none). A kill may cut the messages short or,
# for buffered stdout, lose them.
check_resume_log() {
    local out=$1 err=$2 newest=$3
    if grep -q 'skipping\|no usable checkpoint' "$out" "$err"; then
        cat "$err"
        fail "$err: a checkpoint was rejected; every file the trainer leaves must be good"
    fi
    if [ -n "$newest" ]; then
        if grep -q 'starting fresh' "$out" "$err"; then
            cat "$out" "$err"
            fail "run started fresh although $newest existed"
        fi
        if grep -q 'resuming from' "$out" "$err" &&
            ! grep -qF "resuming from run/checkpoints/$newest at" "$out" "$err"; then
            cat "$out" "$err"
            fail "run did not resume from the newest checkpoint, $newest"
        fi
    fi
}

# --- kill -9, in B ----------------------------------------------------------------------------------
landed=0 mid_write=0 no_step_file=0
for ((i = 1; i <= KILLS; i++)); do
    newest=$(newest_step_file)
    done_steps=0
    [ -z "$newest" ] || done_steps=$(step_of "$CK/$newest")
    left_ms=$((ref_ms * (total - done_steps) / total))
    logged=0 # lines of metrics.jsonl before this run: its own step records come after them
    [ ! -f "$T/B/run/metrics.jsonl" ] || logged=$(wc -l <"$T/B/run/metrics.jsonl")
    (cd "$T/B" && exec "$BIN" train "$T/kill.ini" "${OVR[@]}" --device cpu --resume auto) \
        >"$T/B.out.$i" 2>"$T/B.err.$i" &
    pid=$!
    last=$((total - 12)) # the last step a progress-timed kill waits for
    if ((i % 3 == 0 && total - done_steps > 6)); then
        # Wait for this process's checkpoint temporary (not beyond the time the work left took);
        # two checkpoints at least are left, so the run cannot end within the next 15 ms.
        how="at a checkpoint write"
        t0=$(now_ms)
        while kill -0 "$pid" 2>/dev/null && ! compgen -G "$CK/*.tmp.$pid" >/dev/null &&
            (($(now_ms) - t0 < left_ms)); do
            sleep 0.002
        done
        delay_ms=$((RANDOM % 16))
    elif ((RANDOM % 3 == 0 || done_steps >= last)); then
        # During start-up: loading, resuming, the first steps.
        how="early"
        delay_ms=$((5 + RANDOM % 56))
    else
        # Once this run has logged a step at or past a target drawn between the newest
        # checkpoint and 12 steps before the end, and 0-9 ms more: mid-step or mid-write,
        # wherever that falls, and never after the end, however fast or loaded the machine is
        # (a delay from the uninterrupted run's time was not: a reference timed under ctest -j8
        # on 2 cores was 10 times slower than a kill run timed after it).
        target=$((done_steps + 1 + RANDOM % (last - done_steps)))
        how="after step $target"
        while kill -0 "$pid" 2>/dev/null; do
            at=$(tail -n +"$((logged + 1))" "$T/B/run/metrics.jsonl" 2>/dev/null |
                grep -o '"step":[0-9]*' | tail -n 1 | cut -d: -f2 || true)
            [ "${at:-0}" -lt "$target" ] || break
            sleep 0.002
        done
        delay_ms=$((RANDOM % 10))
    fi
    sleep_ms "$delay_ms"
    kill -KILL "$pid" 2>/dev/null || true
    rc=0
    { wait "$pid"; } 2>/dev/null || rc=$? # (no "Killed" job notice)
    after=$(newest_step_file)
    temps=$(compgen -G "$CK/*.tmp.$pid" | wc -l || true)
    echo "cli_kill: kill $i ($how, +$delay_ms ms, from ${newest:-nothing}): exit $rc," \
        "newest now ${after:-none}, $temps temporaries of this run left"
    case $rc in
    137) landed=$((landed + 1)) ;;
    0) echo "cli_kill: run $i finished before its kill" ;;
    *) cat "$T/B.err.$i"; fail "run $i exited $rc before its kill, expected to be killed (137)" ;;
    esac
    [ "$temps" -eq 0 ] || mid_write=$((mid_write + 1))
    [ -n "$after" ] || no_step_file=$((no_step_file + 1))
    check_run_dir "$i"
    check_resume_log "$T/B.out.$i" "$T/B.err.$i" "$newest"
    [ "$rc" -ne 0 ] || break
done
echo "cli_kill: $landed kills landed; $mid_write inside a file write (a temporary was left)," \
    "$no_step_file before any step file existed"
[ "$landed" -ge 8 ] || fail "only $landed kills landed before the run finished; expected at least 8"

# --- let it finish, then compare with the uninterrupted run ---------------------------------------
newest=$(newest_step_file)
(cd "$T/B" && exec "$BIN" train "$T/kill.ini" "${OVR[@]}" --device cpu --resume auto) \
    >"$T/B.out.final" 2>"$T/B.err.final" || { cat "$T/B.err.final"; fail "the final resume failed"; }
check_resume_log "$T/B.out.final" "$T/B.err.final" "$newest"
if [ -n "$newest" ]; then
    grep -qF "resuming from run/checkpoints/$newest at" "$T/B.out.final" "$T/B.err.final" ||
        fail "the final run does not say it resumed from $newest"
fi
[ "$(json_field "$T/B/run/metrics.jsonl" step final | tail -n 1)" = 60 ] ||
    fail "the killed-and-resumed run did not end at step 60"
cmp "$T/A/run/model.safetensors" "$T/B/run/model.safetensors" ||
    fail "model.safetensors differs between the uninterrupted and the killed-and-resumed run"
# The files of checkpoints/ at the end: best.safetensors and every step file the uninterrupted run
# kept are byte-identical, and the newest step file is the final one in both. (B may hold one step
# file more and an older `latest`: a kill after the final checkpoint's rename but before its
# rotation leaves them so, and the finishing run has nothing left to save.)
cmp "$T/A/run/checkpoints/best.safetensors" "$CK/best.safetensors" ||
    fail "best.safetensors differs between the uninterrupted and the killed-and-resumed run"
for f in "$T"/A/run/checkpoints/step-*.safetensors; do
    cmp "$f" "$CK/${f##*/}" || fail "checkpoints/${f##*/} differs from the uninterrupted run's"
done
[ "$(newest_step_file)" = step-000000000060.safetensors ] ||
    fail "the newest step file is $(newest_step_file), expected step-000000000060.safetensors"
check_run_dir final

echo "cli_kill: ok"
