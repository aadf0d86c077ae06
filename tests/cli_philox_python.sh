#!/usr/bin/env bash
# bench/peers/philox.py reproduces cuvae's random numbers: Random123's known-answer vectors, the
# words pinned in tests/test_philox.c for (seed, stream, counter, element), the pinned Box-Muller
# normals (to float32 rounding), and the draw helpers' basic properties. Needs a Python with numpy;
# skipped (77) otherwise. $1 (the cuvae binary) is not used: the reference values come from the C
# test, which checks them against the C implementation.
set -euo pipefail
NAME=cli_philox_python
src=${CUVAE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}

source "$(dirname "$0")/lib_python.sh"
need_python "numpy"

PYTHONPATH="$src/bench/peers" "$py" - <<'EOF'
import numpy as np
import philox

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


kat = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
for ctr, key, want in kat:
    got = tuple(int(x) for x in philox.philox4x32_10(*ctr, *key))
    check(got == want, "KAT %s: %s" % (ctr, [hex(g) for g in got]))

# The same table as tests/test_philox.c's test_layout.
pinned = [
    (0x0000000000000000, 1, 0x0, 0x0, 0xE6073E71),
    (0x000000000000002A, 5, 0x7, 0x3, 0xC6503141),
    (0x0123456789ABCDEF, 6, 0x0, 0x3039, 0x98039330),
    (0xFFFFFFFFFFFFFFFF, 8, 0xFFFFFFFFFFFF, 0x7FFFFFFFF, 0xBD01CB95),
    (0x000000000134D8D9, 4, 0x75BCD15, 0x18805, 0x979D6B2B),
    (0x0000000000000007, 3, 0x10000000000, 0x400000002, 0xD890DF4A),
]
for seed, stream, counter, element, want in pinned:
    got = int(philox.words(seed, stream, counter, [element])[0])
    check(got == want, "word (%#x, %d, %#x, %#x): %#010x, expected %#010x"
          % (seed, stream, counter, element, got, want))
    # word_range agrees with words for a window around the element.
    first = max(0, element - 5)
    window = philox.word_range(seed, stream, counter, first, 11)
    check(int(window[element - first]) == want, "word_range at %#x" % element)

# The pinned normals of test_philox.c (element 0..7 of (42, REPARAM, 7)).
want = np.array([0.382208467, 0.0832160935, 0.221131399, -1.41566885, -0.759743929, -0.492357999,
                 0.775928557, 1.63209617], dtype=np.float32)
got = philox.normals(42, philox.STREAM_REPARAM, 7, 0, 8)
check(np.allclose(got, want, rtol=1e-6, atol=1e-7), "normals %s" % got)
# A fill that starts mid-block is the same slice of a longer fill.
long = philox.normals(11, philox.STREAM_REPARAM, 5, 0, 1010)
check(np.array_equal(philox.normals(11, philox.STREAM_REPARAM, 5, 1001, 7), long[1001:1008]),
      "normals offset slice")

# Uniforms in (0, 1] only through the documented formula; Bernoulli thresholds exact.
u = philox.u32_to_uniform(philox.word_range(3, philox.STREAM_SAMPLE, 0, 0, 100000))
check(bool(np.all(u > 0)) and abs(float(u.mean()) - 0.5) < 5e-3, "uniform range/mean")
w = np.array([0, 1, 0x7FFFFFFF, 0xFFFFFFFF], dtype=np.uint32)
check(not philox.bernoulli_bytes(w, np.zeros(4, np.uint8)).any(), "byte 0 never 1")
check(philox.bernoulli_bytes(w, np.full(4, 255, np.uint8)).all(), "byte 255 always 1")
b = np.arange(1, 255, dtype=np.uint64)
edge = ((b << np.uint64(32)) + np.uint64(254)) // np.uint64(255)
check(philox.bernoulli_bytes(edge - np.uint64(1), b).all(), "below the threshold gives 1")
check(not philox.bernoulli_bytes(edge, b).any(), "at the threshold gives 0")

perm = philox.permutation(9, philox.STREAM_SHUFFLE, 0, 1000)
check(sorted(perm.tolist()) == list(range(1000)), "permutation is a permutation")
check(not np.array_equal(perm, philox.permutation(9, philox.STREAM_SHUFFLE, 1, 1000)),
      "permutation differs per counter")

print("cli_philox_python:", "ok" if failures == 0 else "%d failure(s)" % failures)
raise SystemExit(1 if failures else 0)
EOF
