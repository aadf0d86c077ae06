# Checks shared by the fault-injection CLI tests (cli_kill.sh, cli_fulldisk.sh), sourced after
# lib_cli.sh. A checkpoint counts as good only when two independent readers accept it: cuvae itself
# (`cuvae eval` reads and validates the file, rebuilds the model and evaluates one test example)
# and a separate reading of the safetensors layout and the CRC-32 in Python, so that a reader bug
# accepting a torn file cannot hide a torn write. Not a test itself (tests are cli_*.sh).

# ckpt_ok [--optim] FILE...: 0 when every FILE is a complete, consistent checkpoint (with --optim:
# one that also holds the optimizer state a resume needs); otherwise prints why on stderr and
# returns 1.
ckpt_ok() {
    local want_optim="" file rc
    if [ "${1:-}" = --optim ]; then
        want_optim=--optim
        shift
    fi
    for file in "$@"; do
        rc=0
        "$BIN" eval "$file" --samples 1 --limit 1 --device cpu >"$T/ckpt_ok.out" \
            2>"$T/ckpt_ok.err" || rc=$?
        if [ "$rc" -ne 0 ]; then
            echo "$NAME: 'cuvae eval $file' exited $rc: $(head -3 "$T/ckpt_ok.err")" >&2
            return 1
        fi
    done
    python3 - "$want_optim" "$@" <<'EOF'
import json, os, struct, sys, zlib
sys.path.insert(0, os.path.join(os.environ["CUVAE_SOURCE_DIR"], "tests"))
import ckpt_crc
want_optim = sys.argv[1] == "--optim"

def check(path):
    def bad(why):
        print(f"{path}: {why}", file=sys.stderr)
        sys.exit(1)
    raw = open(path, "rb").read()
    if len(raw) < 8:
        bad(f"{len(raw)} bytes, shorter than the header length field")
    n = struct.unpack("<Q", raw[:8])[0]
    if 8 + n > len(raw):
        bad(f"header of {n} bytes runs past the end of the {len(raw)}-byte file")
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError as e:
        bad(f"header is not JSON: {e}")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != "cuvae-checkpoint":
        bad("no cuvae __metadata__")
    data = raw[8 + n:]
    spans = sorted((t["data_offsets"][0], t["data_offsets"][1], name) for name, t in header.items())
    at = 0
    for begin, end, name in spans:
        t = header[name]
        count = 1
        for d in t["shape"]:
            count *= d
        if t["dtype"] != "F32" or end - begin != 4 * count or begin != at:
            bad(f"tensor {name}: dtype {t['dtype']}, bytes [{begin}, {end}) do not follow {at} "
                f"or do not hold {count} F32 values")
        at = end
    if at != len(data):
        bad(f"tensors cover {at} of the {len(data)} data bytes")
    crc = ckpt_crc.crc_of(dict(header, __metadata__=meta), data)
    if crc != meta.get("crc32", "").lower():
        bad(f"CRC-32 of the metadata and data is {crc}, the header says {meta.get('crc32')}")
    if want_optim and not any(name.startswith("optim.m.") for name in header):
        bad("no optimizer state")

for path in sys.argv[2:]:
    check(path)
EOF
}

# The step number in a checkpoint file name (step-000000000042.safetensors -> 42).
step_of() {
    local base=${1##*/step-}
    base=${base%.safetensors}
    echo $((10#$base))
}

# The last command's stdout or stderr ($T/out, $T/err) contains $1: the trainer's notes (resuming
# from ..., starting fresh) may go to either.
expect_said() {
    grep -qF -- "$1" "$T/out" "$T/err" || {
        cat "$T/err"
        fail "neither stdout nor stderr mentions '$1'"
    }
}
