"""What it takes for a peer to run at its best on this machine, as cuvae does: the OpenBLAS
kernel family (the same decision as cuvae's host/cpu/blas_info.c) and the thread count (a short
calibration, chosen here). Standard library only: bench/run_peers.py imports it under any Python,
and torch_vae.py uses it to report the OpenBLAS it runs on."""

import ctypes

# host/cpu/blas_info.h's levels and families.
LEVEL_SSE, LEVEL_AVX, LEVEL_AVX2, LEVEL_AVX512 = 0, 1, 2, 3
LEVEL_NAMES = {LEVEL_SSE: "SSE", LEVEL_AVX: "AVX", LEVEL_AVX2: "AVX2+FMA",
               LEVEL_AVX512: "AVX-512F"}
LEVEL_FAMILY = {LEVEL_AVX: "Sandybridge", LEVEL_AVX2: "Haswell", LEVEL_AVX512: "SkylakeX"}
# OpenBLAS 0.3.x x86-64 families whose GEMM kernels need more than SSE3 (as cuvae_blas_family_level).
FAMILY_LEVEL = {
    "sandybridge": LEVEL_AVX, "bulldozer": LEVEL_AVX, "piledriver": LEVEL_AVX,
    "steamroller": LEVEL_AVX, "excavator": LEVEL_AVX, "haswell": LEVEL_AVX2, "zen": LEVEL_AVX2,
    "skylakex": LEVEL_AVX512, "cooperlake": LEVEL_AVX512, "sapphirerapids": LEVEL_AVX512,
}


def cpu_flags(path="/proc/cpuinfo"):
    """The feature flags of the first CPU in /proc/cpuinfo, as a set (empty when unreadable).
    Linux lists avx/avx2/avx512f only when the kernel saves their register state, which is what
    cuvae's __builtin_cpu_supports checks (CPUID plus XGETBV) also require."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_level(flags):
    """cuvae_blas_cpu_level on a set of /proc/cpuinfo flags."""
    if {"avx512f", "avx2", "fma"} <= flags:
        return LEVEL_AVX512
    if {"avx2", "fma"} <= flags:
        return LEVEL_AVX2
    if "avx" in flags:
        return LEVEL_AVX
    return LEVEL_SSE


def family_level(corename):
    return FAMILY_LEVEL.get((corename or "").lower(), LEVEL_SSE)


def decide_coretype(level, picked, env_coretype):
    """(OPENBLAS_CORETYPE to set or None, why): cuvae_blas_decide for a peer. A user's
    OPENBLAS_CORETYPE stands; otherwise the CPU's family is set when the family OpenBLAS picked
    on its own (`picked`; None when unknown) is below the CPU's level."""
    if env_coretype:
        return None, "OPENBLAS_CORETYPE=%s set by the user" % env_coretype
    want = LEVEL_FAMILY.get(level)
    if want is None or (picked is not None and family_level(picked) >= level):
        return None, "chosen by OpenBLAS, the CPU has %s" % LEVEL_NAMES[level]
    if picked is None:
        return want, "set by run_peers: the CPU has %s" % LEVEL_NAMES[level]
    return want, "set by run_peers: OpenBLAS picked %s, the CPU has %s" % (picked,
                                                                          LEVEL_NAMES[level])


def openblas_in_process():
    """The OpenBLAS this process has loaded (found in /proc/self/maps) as {library, version,
    kernels, threads, path}, or None when none is loaded. Asks the library itself, so it names
    the kernels that run, whatever chose them."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.split()[-1].lower()
                     and ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            core = lib.openblas_get_corename().decode()
            config = lib.openblas_get_config().decode()
            threads = lib.openblas_get_num_threads()
        except (OSError, AttributeError):
            continue
        words = config.split()
        return {"library": words[0] if words else "OpenBLAS",
                "version": words[1] if len(words) > 1 else "unknown",
                "kernels": core, "threads": threads, "path": path}
    return None


def thread_candidates(ncpu):
    """1, the powers of two below ncpu, and ncpu: the thread counts a calibration tries."""
    ncpu = max(1, int(ncpu or 1))
    out, t = [], 1
    while t < ncpu:
        out.append(t)
        t *= 2
    out.append(ncpu)
    return out


def best_threads(calibration):
    """{key: threads}: for each key (a batch size) the thread count with the highest rate in
    calibration = {threads: {key: rate}}; ties go to fewer threads; missing or zero rates lose."""
    best = {}
    for threads in sorted(calibration):
        for key, rate in calibration[threads].items():
            if rate and (key not in best or rate > best[key][1]):
                best[key] = (threads, rate)
    return {key: t for key, (t, _) in best.items()}


def group_by_threads(choice):
    """{threads: [keys]} from {key: threads}, keys in ascending order: one run per thread count."""
    groups = {}
    for key in sorted(choice):
        groups.setdefault(choice[key], []).append(key)
    return groups
