#!/usr/bin/env bash
# `cuvae --version` says whether the CUDA backend is compiled in and, when it is, the toolkit and
# every architecture the build holds (ctest passes what the build was configured with:
# CUVAE_BUILT_CUDA, CUVAE_BUILT_ARCHS as CMake's list with commas).
set -euo pipefail
NAME=cli_version
source "$(dirname "$0")/lib_cli.sh"

expect_rc 0 "$BIN" --version
# Line 1: the version and the backends; line 2: the BLAS library (tests/cli_blas.sh checks it).
v=$(head -n 1 "$T/out")
[ "$(grep -c . "$T/out")" -eq 2 ] || fail "--version prints other than two lines: $(cat "$T/out")"
sed -n 2p "$T/out" | grep -q '^BLAS: ' || fail "--version's second line is not the BLAS line"
echo "$v" | grep -Eq '^cuvae [0-9]+\.[0-9]+\.[0-9]+, ' || fail "--version prints '$v'"
built=${CUVAE_BUILT_CUDA:?run under ctest (CUVAE_BUILT_CUDA unset)}
if [ "$built" = ON ]; then
    echo "$v" | grep -Eq 'CPU and CUDA backends \(CUDA [0-9]+\.[0-9]+' ||
        fail "a CUDA build's --version does not name the toolkit: $v"
    echo "$v" | grep -q 'without CUDA' && fail "a CUDA build says it is without CUDA: $v"
    archs=${CUVAE_BUILT_ARCHS:?}
    IFS=, read -ra entries <<<"$archs"
    [ ${#entries[@]} -gt 0 ] || fail "no architectures passed"
    for e in "${entries[@]}"; do
        num=${e%%-*}
        case $e in
            *-real) want=("sm_$num") ;;
            *-virtual) want=("compute_$num") ;;
            *) want=("sm_$num" "compute_$num") ;;
        esac
        for w in "${want[@]}"; do
            echo "$v" | grep -Eq "(^|[ (;])$w( |,|\))" || fail "--version lacks $w (built for $archs): $v"
        done
    done
    # Machine code and PTX are told apart.
    case $archs in *-virtual*) echo "$v" | grep -qE ' PTX[;)]' || fail "no PTX named: $v" ;; esac
else
    echo "$v" | grep -q 'CPU backend only (built without CUDA)' ||
        fail "a CPU-only build's --version does not say so: $v"
    echo "$v" | grep -Eq 'sm_|compute_' && fail "a CPU-only build names architectures: $v"
fi
# `cuvae version` is the same.
expect_rc 0 "$BIN" version
[ "$(head -n 1 "$T/out")" = "$v" ] || fail "'cuvae version' differs from --version"
echo "$NAME: ok"
