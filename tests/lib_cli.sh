# Helpers sourced by the `cuvae train` CLI tests (cli_train.sh, cli_errors.sh, cli_resume.sh,
# cli_signals.sh, cli_nonfinite.sh): a temporary directory, small generated IDX data, a tiny
# config, and checks on exit statuses and messages. Not a test itself (tests are cli_*.sh).
#
# The sourcing script sets NAME and passes the cuvae binary as $1; after sourcing, $BIN is the
# binary and $T the temporary directory (removed on exit).

BIN=${1:?usage: $0 path/to/cuvae}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
command -v python3 >/dev/null || { echo "$NAME: python3 not found, skipping"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/cuvae_${NAME}.XXXXXX")
trap 'rm -rf "$T"' EXIT

fail() { echo "$NAME: FAIL: $*" >&2; exit 1; }

# Runs the command, expects exit status $1; leaves stdout and stderr in $T/out and $T/err.
expect_rc() {
    local want=$1; shift
    local rc=0
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "--- stdout"; tail -20 "$T/out"; echo "--- stderr"; cat "$T/err"
        fail "'$*' exited $rc, expected $want"
    fi
}

# The error of a failed command: exactly one line on stderr, containing $1.
expect_one_line_error() {
    local lines
    lines=$(grep -c . "$T/err" || true)
    [ "$lines" -eq 1 ] || { cat "$T/err"; fail "expected a one-line error, got $lines lines"; }
    grep -qF -- "$1" "$T/err" || { cat "$T/err"; fail "error does not mention '$1'"; }
}

# stderr of the last command contains $1.
expect_err() {
    grep -qF -- "$1" "$T/err" || { cat "$T/err"; fail "stderr does not mention '$1'"; }
}

# stdout of the last command (the run's report: config, data, device, resume) contains $1.
expect_out() {
    grep -qF -- "$1" "$T/out" || { cat "$T/out"; fail "stdout does not mention '$1'"; }
}

# Writes 12x12 IDX data into $T/data: 600 training and 200 test images of a blurred bar whose
# position and direction depend on the label, with jitter, so a VAE has something to learn.
make_data() {
    mkdir -p "$T/data"
    python3 - "$T/data" <<'EOF'
import gzip, random, struct, sys
d = sys.argv[1]
S = 12
def images(n, seed):
    rnd = random.Random(seed)
    px, lab = bytearray(), bytearray()
    for i in range(n):
        label = i % 10
        img = [[0] * S for _ in range(S)]
        pos = 2 * (label % 5) + rnd.randint(0, 2)
        for t in range(1, S - 1):
            y, x = (pos, t) if label < 5 else (t, pos)
            img[y][x] = 255
            for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < S and 0 <= xx < S:
                    img[yy][xx] = max(img[yy][xx], rnd.randint(60, 160))
        for row in img:
            px.extend(row)
        lab.append(label)
    return px, lab
for name, n, seed in (("train", 600, 1), ("t10k", 200, 2)):
    px, lab = images(n, seed)
    with gzip.open(f"{d}/{name}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, S, S) + bytes(px))
    with gzip.open(f"{d}/{name}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(lab))
EOF
}

# Writes a tiny config to $1 with run directory $2 (tests vary it with command-line overrides).
make_config() {
    local path=$1 dir=$2
    cat >"$path" <<EOF
[data]
train_images = $T/data/train-images-idx3-ubyte.gz
train_labels = $T/data/train-labels-idx1-ubyte.gz
test_images = $T/data/t10k-images-idx3-ubyte.gz
test_labels = $T/data/t10k-labels-idx1-ubyte.gz
validation = 100
binarize = dynamic

[model]
hidden = 32
latent = 4

[train]
epochs = 3
batch_size = 32
seed = 7
log_every = 5
device = cpu

[optim]
lr = 1e-2

[eval]
batch_size = 64

[output]
dir = $dir
checkpoint_every_epochs = 1
keep_last = 100
images = 1
EOF
}

# Field $2 of the JSON lines of type $3 in metrics file $1, one value a line.
json_field() {
    python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
path, field, kind = sys.argv[1:4]
for line in open(path):
    rec = json.loads(line)
    if rec.get("type") == kind:
        print(repr(rec.get(field)))
EOF
}
