#!/usr/bin/env bash
# What bench/run_peers.py decides without timing anything (bench/peers/tuning.py): the OpenBLAS
# kernel family the PyTorch peers get, from /proc/cpuinfo flags, as cuvae's host/cpu/blas_info.c
# decides it (its family table is read from the C source, so the two cannot drift apart); the
# thread counts a calibration tries and picks; the batch size read from a config. Standard
# library only; $1 (the cuvae binary) is used for the cross-check on this machine's CPU.
set -euo pipefail
NAME=cli_peers_tuning
src=${CUVAE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
bin=${1:-${CUVAE_BINARY:-$src/build/cuvae}}
py=$(command -v python3 || command -v /usr/bin/python3) || { echo "$NAME: skipped: no python3"; exit 77; }

PYTHONPATH="$src/bench/peers:$src/bench" "$py" - "$src" "$bin" <<'PY'
import os
import re
import subprocess
import sys
import tempfile

import run_peers
import tuning as t

src, binary = sys.argv[1], sys.argv[2]
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


# cuvae_blas_cpu_level on flag sets.
check(t.cpu_level({"avx512f", "avx2", "fma", "avx"}) == t.LEVEL_AVX512, "AVX-512F level")
check(t.cpu_level({"avx512f", "avx"}) == t.LEVEL_AVX, "AVX-512F without AVX2+FMA is AVX")
check(t.cpu_level({"avx2", "fma", "avx"}) == t.LEVEL_AVX2, "AVX2+FMA level")
check(t.cpu_level({"avx2", "avx"}) == t.LEVEL_AVX, "AVX2 without FMA is AVX")
check(t.cpu_level({"sse2"}) == t.LEVEL_SSE, "SSE level")
with tempfile.NamedTemporaryFile("w", suffix=".cpuinfo", delete=False) as f:
    f.write("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t: fpu\n")
check(t.cpu_flags(f.name) == {"fpu", "sse2", "avx", "avx2", "fma"}, "first CPU's flags")
os.unlink(f.name)
check(t.cpu_flags("/nonexistent/cpuinfo") == set(), "unreadable cpuinfo: no flags")

# The family table is host/cpu/blas_info.c's.
c = open(os.path.join(src, "host", "cpu", "blas_info.c")).read()
known = dict((n.lower(), getattr(t, "LEVEL_" + lv))
             for n, lv in re.findall(r'\{"(\w+)", CUVAE_BLAS_LEVEL_(\w+)\}', c))
check(known and known == t.FAMILY_LEVEL, "FAMILY_LEVEL differs from blas_info.c: %s" % known)
for lv, fam in t.LEVEL_FAMILY.items():
    name = {t.LEVEL_AVX512: "AVX512", t.LEVEL_AVX2: "AVX2", t.LEVEL_AVX: "AVX"}[lv]
    check(re.search(r'case CUVAE_BLAS_LEVEL_%s:\s*return "%s";' % (name, fam), c),
          "blas_info.c does not map level %s to %s" % (name, fam))

# cuvae_blas_decide for a peer.
AVX512, AVX2 = t.LEVEL_AVX512, t.LEVEL_AVX2
check(t.decide_coretype(AVX512, "Prescott", None)[0] == "SkylakeX", "Prescott on AVX-512F")
check(t.decide_coretype(AVX512, "Haswell", None)[0] == "SkylakeX", "Haswell on AVX-512F")
check(t.decide_coretype(AVX2, "Prescott", "")[0] == "Haswell", "Prescott on AVX2, empty env")
check(t.decide_coretype(AVX512, "Cooperlake", None)[0] is None, "a newer AVX-512 family stands")
check(t.decide_coretype(AVX2, "Zen", None)[0] is None, "Zen on AVX2 stands")
check(t.decide_coretype(t.LEVEL_SSE, "Prescott", None)[0] is None, "SSE: nothing to set")
check(t.decide_coretype(AVX512, None, None)[0] == "SkylakeX", "unknown pick: the CPU's family")
ct, why = t.decide_coretype(AVX512, "Prescott", "Haswell")
check(ct is None and "set by the user" in why, "a user's OPENBLAS_CORETYPE stands: %s" % why)
check("OpenBLAS picked Prescott, the CPU has AVX-512F" in t.decide_coretype(AVX512, "Prescott",
                                                                            None)[1], "why")

# This machine: the family run_peers gives PyTorch is the one cuvae's --version reports when
# cuvae corrected OpenBLAS, and at most the level of the one OpenBLAS kept otherwise.
if os.access(binary, os.X_OK) and "OPENBLAS_CORETYPE" not in os.environ:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"kernels (\w+) \((.*)\)", out)
    check(m, "cuvae --version has no kernels: %r" % out)
    if m:
        level = t.cpu_level(t.cpu_flags())
        if m.group(2).startswith("set by cuvae"):
            check(t.LEVEL_FAMILY.get(level) == m.group(1),
                  "cuvae set %s, run_peers would set %s" % (m.group(1), t.LEVEL_FAMILY.get(level)))
        elif m.group(2).startswith("chosen by OpenBLAS"):
            check(t.decide_coretype(level, m.group(1), None)[0] is None,
                  "cuvae kept %s, run_peers would change it" % m.group(1))

# Thread candidates and the choice.
check(t.thread_candidates(1) == [1], "1 CPU")
check(t.thread_candidates(2) == [1, 2], "2 CPUs")
check(t.thread_candidates(6) == [1, 2, 4, 6], "6 CPUs")
check(t.thread_candidates(8) == [1, 2, 4, 8], "8 CPUs")
check(t.thread_candidates(None) == [1], "unknown CPU count")
cal = {1: {128: 9000.0, 1024: 10000.0}, 2: {128: 3000.0, 1024: 15000.0}, 4: {128: None}}
check(t.best_threads(cal) == {128: 1, 1024: 2}, "fastest per batch: %s" % t.best_threads(cal))
check(t.best_threads({1: {128: 5.0}, 2: {128: 5.0}}) == {128: 1}, "a tie goes to fewer threads")
check(t.best_threads({1: {128: 0.0}, 2: {128: 1.0}}) == {128: 2}, "a zero rate loses")
check(t.group_by_threads({4096: 2, 128: 1, 1024: 2}) == {1: [128], 2: [1024, 4096]}, "groups")

# Overrides win over calibration; the config's batch size.
ns = run_peers.argparse.Namespace(threads=None, peer_threads=3, cuvae_threads=None)
check(run_peers.tool_threads(ns, "torch-eager") == 3, "--peer-threads")
check(run_peers.tool_threads(ns, "cuvae") is None, "cuvae calibrates")
ns.threads = 2
check(run_peers.tool_threads(ns, "jax") == 2 and run_peers.tool_threads(ns, "cuvae") == 2,
      "--threads fixes every tool")
ini = os.path.join(src, "configs", "fashion_mnist.ini")
check(run_peers.config_batch(ini, ["train.batch_size=64"]) == 64, "override of the batch size")
check(run_peers.config_batch(ini, []) > 0, "the config's batch size")

if failures:
    print("%d check(s) failed" % failures)
    sys.exit(1)
print("cli_peers_tuning: ok")
PY
