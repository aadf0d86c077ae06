#!/usr/bin/env bash
# Each kind of bad input to `cuvae train` and to the program itself gets a one-line error on
# stderr that names what was wrong, and the documented exit status (2 usage/config, 1 runtime);
# nothing crashes (no status above 128, no core file).
set -euo pipefail
NAME=cli_errors
source "$(dirname "$0")/lib_cli.sh"

make_data
make_config "$T/tiny.ini" "$T/run"
cd "$T" # a core file, if any, would land here

# Usage errors: exit 2 with a pointer to the help.
expect_rc 2 "$BIN"
expect_one_line_error "cuvae --help"
expect_rc 2 "$BIN" frobnicate
expect_one_line_error "unknown subcommand 'frobnicate'"
expect_rc 2 "$BIN" --frobnicate
expect_one_line_error "'--frobnicate'"
expect_rc 2 "$BIN" train
expect_one_line_error "missing CONFIG"
expect_rc 2 "$BIN" train "$T/tiny.ini" --frobnicate
expect_one_line_error "unknown option '--frobnicate'; see 'cuvae train --help'"
expect_rc 2 "$BIN" train "$T/tiny.ini" --resume
expect_one_line_error "--resume needs a value"
expect_rc 2 "$BIN" train "$T/tiny.ini" --device
expect_one_line_error "--device needs a value"
expect_rc 2 "$BIN" train "$T/tiny.ini" --device bogus
expect_one_line_error "--device: expected auto, cpu or cuda, got 'bogus'"
expect_rc 2 "$BIN" train "$T/tiny.ini" stray
expect_one_line_error "unexpected argument 'stray'"

# Config errors: exit 2, naming the file (and line) or the override.
expect_rc 2 "$BIN" train "$T/missing.ini"
expect_one_line_error "$T/missing.ini"
sed 's/^latent = 4$/latnet = 4/' "$T/tiny.ini" >"$T/typo.ini"
line=$(grep -n '^latnet' "$T/typo.ini" | cut -d: -f1)
expect_rc 2 "$BIN" train "$T/typo.ini"
expect_one_line_error "$T/typo.ini:$line:"
expect_err "latnet"
sed 's/^epochs = 3$/epochs = ten/' "$T/tiny.ini" >"$T/badvalue.ini"
line=$(grep -n '^epochs = ten' "$T/badvalue.ini" | cut -d: -f1)
expect_rc 2 "$BIN" train "$T/badvalue.ini"
expect_one_line_error "$T/badvalue.ini:$line:"
expect_err "train.epochs"
expect_rc 2 "$BIN" train "$T/tiny.ini" train.epochs=ten
expect_one_line_error "train.epochs"
expect_rc 2 "$BIN" train "$T/tiny.ini" train.epoch=3
expect_one_line_error "train.epoch"
expect_rc 2 "$BIN" train "$T/tiny.ini" optim.lr=-1
expect_one_line_error "optim.lr"
expect_rc 2 "$BIN" train "$T/tiny.ini" train.batch_size=5000
expect_one_line_error "train.batch_size"
[ ! -e "$T/run/checkpoints/latest" ] || fail "a refused run wrote a checkpoint"

# Runtime errors: exit 1, naming the file.
expect_rc 1 "$BIN" train "$T/tiny.ini" data.train_images="$T/data/nothing-here.gz"
expect_one_line_error "$T/data/nothing-here.gz"
printf 'not an idx file at all' | gzip >"$T/data/junk.gz"
expect_rc 1 "$BIN" train "$T/tiny.ini" data.train_images="$T/data/junk.gz"
expect_one_line_error "$T/data/junk.gz"
if "$BIN" --version | grep -q 'without CUDA'; then
    expect_rc 1 "$BIN" train "$T/tiny.ini" --device cuda
    expect_one_line_error "cuda"
fi

# A fresh start over an earlier run's checkpoints is refused (it would prune them).
expect_rc 0 "$BIN" train "$T/tiny.ini" train.epochs=1
expect_rc 2 "$BIN" train "$T/tiny.ini" train.epochs=1
expect_one_line_error "--resume auto"
ls "$T"/run/checkpoints/step-*.safetensors >/dev/null || fail "the earlier checkpoints are gone"

# A model-only file cannot be resumed from (no optimizer state).
expect_rc 2 "$BIN" train "$T/tiny.ini" output.dir="$T/other" --resume "$T/run/model.safetensors"
expect_one_line_error "optimizer state"
# A damaged checkpoint: runtime error naming the file.
head -c 100 "$T/run/model.safetensors" >"$T/short.safetensors"
expect_rc 1 "$BIN" train "$T/tiny.ini" output.dir="$T/other" --resume "$T/short.safetensors"
expect_one_line_error "$T/short.safetensors"

ls "$T"/core* >/dev/null 2>&1 && fail "a core file was written"
echo "cli_errors: ok"
