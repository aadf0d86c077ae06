# Sourced by the tests that run Python (cli_checkpoint_torch.sh, cli_philox_python.sh): sets
# $py to the first of /usr/bin/python3 (Debian's, where python3-torch installs) and python3 that
# imports every module named in $1 (comma-separated), or exits 77 (skipped) naming what is missing.
need_python() {
    local modules=$1 cand
    py=""
    for cand in /usr/bin/python3 python3; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import $modules" >/dev/null 2>&1; then
            py=$cand
            return 0
        fi
    done
    echo "$NAME: skipped: no python3 that imports $modules (Debian: python3-numpy, python3-torch)"
    exit 77
}

# need_tensorboard: sets $tbpy to tests/.venv-tb/bin/python, making that environment first when it
# is missing (tests/install_tensorboard.sh: tensorboard from PyPI), or exits 77 (skipped) when it
# cannot be made.
need_tensorboard() {
    local src
    src=${CUVAE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
    if ! bash "$src/tests/install_tensorboard.sh" >&2; then
        echo "$NAME: skipped: tests/.venv-tb with the tensorboard package could not be made (python3-venv, PyPI)"
        exit 77
    fi
    tbpy=$src/tests/.venv-tb/bin/python
}
