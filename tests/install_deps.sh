#!/usr/bin/env bash
# Installs what cuvae needs on Debian (12 or newer) when it is missing. `--test` adds what only the
# test suite uses (clang's libFuzzer runtime, Python with PyTorch for the interop test, Pillow to
# write the JPEG test images, and tests/.venv-tb: the tensorboard package from PyPI for the
# event-file test).
set -euo pipefail
pkgs=(build-essential cmake pkg-config zlib1g-dev libopenblas-dev libinih-dev libjansson-dev
      libpng-dev libjpeg62-turbo-dev dataset-fashion-mnist python3)
if [ "${1:-}" = "--test" ]; then
    pkgs+=(clang libclang-rt-dev python3-numpy python3-torch python3-pil python3-venv)
    # After the Debian packages, whichever way this script ends (python3-venv makes the venv).
    trap 'bash "$(dirname "$0")/install_tensorboard.sh" || echo "install_deps: tests/.venv-tb not made: cli_tensorboard will skip"' EXIT
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# libclang-rt-dev is a virtual-ish name on some releases; accept any installed clang runtime.
if printf '%s\n' "${missing[@]:-}" | grep -qx libclang-rt-dev; then
    if ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
        missing=("${missing[@]/libclang-rt-dev/}")
    else
        v=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)
        missing=("${missing[@]/libclang-rt-dev/libclang-rt-${v:-14}-dev}")
    fi
fi
read -r -a missing <<<"${missing[*]:-}"
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_deps: everything is installed"
    exit 0
fi
echo "install_deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
