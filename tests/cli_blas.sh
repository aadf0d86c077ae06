#!/usr/bin/env bash
# The BLAS report and kernel correction (host/cpu/blas_info.c): `cuvae --version`, the run's header
# and `cuvae bench` (table and JSON) name the library, its version, the kernel family and the
# thread count; a family forced with OPENBLAS_CORETYPE is reported as the user's; by default the
# family is at the level CPUID reports (AVX-512F: SkylakeX or newer; AVX2+FMA: Haswell or newer),
# whether OpenBLAS chose it or cuvae corrected it.
set -euo pipefail
NAME=cli_blas
source "$(dirname "$0")/lib_cli.sh"

AVX512_FAMILIES="SkylakeX Cooperlake Sapphirerapids"
AVX2_FAMILIES="Haswell Zen $AVX512_FAMILIES"

# The family named in "kernels FAMILY (" of $T/out.
family_of_out() { sed -n 's/.*kernels \([A-Za-z0-9_]*\) (.*/\1/p' "$T/out" | head -1; }

# --- forced by the user ---------------------------------------------------------------------------
for fam in Prescott Haswell; do
    OPENBLAS_CORETYPE=$fam expect_rc 0 "$BIN" --version
    expect_out "BLAS: OpenBLAS "
    expect_out "kernels $fam (OPENBLAS_CORETYPE=$fam set by the user)"
    grep -Eq 'BLAS: OpenBLAS [0-9]+\.[0-9]+\.[0-9]+, .*, [0-9]+ threads?$' "$T/out" ||
        fail "--version's BLAS line lacks the version or the threads: $(cat "$T/out")"
done
# Even with cuvae's marker present, a different family than the marker's is the user's.
OPENBLAS_CORETYPE=Haswell CUVAE_BLAS_CORRECTED=Prescott:SkylakeX expect_rc 0 "$BIN" --version
expect_out "kernels Haswell (OPENBLAS_CORETYPE=Haswell set by the user)"
# Threads are reported as OpenBLAS runs them.
OPENBLAS_CORETYPE=Prescott OPENBLAS_NUM_THREADS=1 expect_rc 0 "$BIN" --version
expect_out ", 1 thread"

# bench: the table's BLAS line and the JSON's machine.blas.
OPENBLAS_CORETYPE=Prescott expect_rc 0 "$BIN" bench --batch 8 --steps 1 --warmup 0 --repeats 1 \
    --eval-samples 0 --device cpu --json "$T/bench.json"
expect_out "kernels Prescott (OPENBLAS_CORETYPE=Prescott set by the user)"
python3 - "$T/bench.json" <<'PY' || fail "bench JSON's machine.blas is wrong"
import json, sys
b = json.load(open(sys.argv[1]))["machine"]["blas"]
assert b["library"] == "OpenBLAS", b
assert b["version"][0].isdigit(), b
assert b["kernels"] == "Prescott", b
assert "set by the user" in b["kernels_source"], b
assert b["threads"] >= 1, b
assert "OpenBLAS" in b["config"], b
PY

# --- the default: a family at the CPU's level -----------------------------------------------------
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }
env -u OPENBLAS_CORETYPE -u CUVAE_BLAS_CORRECTED "$BIN" --version >"$T/out" 2>"$T/err" ||
    fail "--version failed: $(cat "$T/err")"
fam=$(family_of_out)
[ -n "$fam" ] || fail "no kernel family in '$(cat "$T/out")'"
if has avx512f && has avx2 && has fma; then
    want=$AVX512_FAMILIES
elif has avx2 && has fma; then
    want=$AVX2_FAMILIES
else
    want=""
fi
if [ -n "$want" ]; then
    [[ " $want " == *" $fam "* ]] ||
        fail "CPUID reports $( (has avx512f && echo AVX-512F) || echo AVX2+FMA), the default run uses $fam: $(cat "$T/out")"
    grep -Eq "kernels $fam \((chosen by OpenBLAS|set by cuvae: OpenBLAS picked [A-Za-z0-9]+), the CPU has" "$T/out" ||
        fail "the default run's kernel source is not OpenBLAS's or cuvae's: $(cat "$T/out")"
fi

# --- the correction itself, simulated ---------------------------------------------------------------
# A preloaded shim makes openblas_get_corename() answer "Prescott" while OPENBLAS_CORETYPE is unset
# (as OpenBLAS 0.3.21 does on the issue's Xeon) and logs each such answer: cuvae must re-execute
# itself exactly once with OPENBLAS_CORETYPE set to the CPU's minimum family, and say so. Skipped
# without a C compiler or under AddressSanitizer (its runtime must come first in the process).
# (ldd's output is read whole: `grep -q` would close the pipe early, and under pipefail ldd's
# SIGPIPE would read as "no libasan".)
libs=$(ldd "$BIN" 2>/dev/null || true)
if has avx2 && has fma && command -v cc >/dev/null && [[ $libs != *libasan* ]]; then
    cat >"$T/shim.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
char *openblas_get_corename(void)
{
    if (!getenv("OPENBLAS_CORETYPE")) {
        FILE *f = fopen(getenv("SHIM_LOG"), "a");
        if (f) fputs("low\n", f), fclose(f);
        return "Prescott";
    }
    char *(*real)(void) = (char *(*)(void))dlsym(RTLD_NEXT, "openblas_get_corename");
    return real();
}
C
    cc -shared -fPIC -o "$T/shim.so" "$T/shim.c" -ldl || fail "building the shim"
    if has avx512f; then min=SkylakeX; else min=Haswell; fi
    : >"$T/shim.log"
    expect_rc 0 env -u OPENBLAS_CORETYPE -u CUVAE_BLAS_CORRECTED SHIM_LOG="$T/shim.log" \
        LD_PRELOAD="$T/shim.so" "$BIN" --version
    expect_out "kernels $min (set by cuvae: OpenBLAS picked Prescott, the CPU has"
    [ "$(wc -l <"$T/shim.log")" -eq 1 ] ||
        fail "expected one start with the low kernels (one re-exec), got $(wc -l <"$T/shim.log")"
    # A user's variable stops it: no re-exec, the user's family reported.
    : >"$T/shim.log"
    OPENBLAS_CORETYPE=Prescott SHIM_LOG="$T/shim.log" LD_PRELOAD="$T/shim.so" \
        expect_rc 0 "$BIN" --version
    expect_out "kernels Prescott (OPENBLAS_CORETYPE=Prescott set by the user)"
    # The marker without the variable (a re-exec whose variable was lost): no second re-exec.
    : >"$T/shim.log"
    expect_rc 0 env -u OPENBLAS_CORETYPE CUVAE_BLAS_CORRECTED=Prescott:$min SHIM_LOG="$T/shim.log" \
        LD_PRELOAD="$T/shim.so" "$BIN" --version
    expect_out "kernels Prescott (below the CPU's"
fi

# The run's header (the device line) names them too.
make_data
make_config "$T/tiny.ini" "$T/run"
expect_rc 0 env -u OPENBLAS_CORETYPE -u CUVAE_BLAS_CORRECTED "$BIN" train "$T/tiny.ini" \
    train.epochs=1 output.images=0
grep -F "kernels $fam (" "$T/out" "$T/err" >/dev/null || fail "the run's header does not name kernels $fam"
echo "$NAME: ok"
