#!/usr/bin/env bash
# Makes tests/.venv-tb (git-ignored): a virtual environment over Debian's python3 (its numpy
# stays visible, --system-site-packages) with the `tensorboard` package from PyPI, whose event
# reader tests/cli_tensorboard.sh uses (Debian 12 has no tensorboard package). Does nothing when
# the environment already imports it. Exit 0 when it does afterwards, 1 when it cannot be made
# (no venv module, no network): the test then skips.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
venv=$src/tests/.venv-tb
py=/usr/bin/python3
command -v "$py" >/dev/null 2>&1 || py=python3
if "$venv/bin/python" -c "import tensorboard.backend.event_processing.event_accumulator" \
    >/dev/null 2>&1; then
    exit 0
fi
echo "install_tensorboard: making $venv with tensorboard from PyPI"
rm -rf "$venv"
"$py" -m venv --system-site-packages "$venv" || exit 1
"$venv/bin/pip" install -q --disable-pip-version-check tensorboard || exit 1
"$venv/bin/python" -c "import tensorboard.backend.event_processing.event_accumulator"
