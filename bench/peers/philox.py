"""cuvae's counter-based random numbers in numpy: Philox4x32-10 with the key/counter layout of
host/common/philox.h, and every draw built on it (uniforms, Box-Muller normals, Bernoulli bytes, the fixed
binarization, seeded permutations, the model's initial parameters).

Python code that must see the same noise as cuvae (the PyTorch reference, the checkpoint interop
test) uses this module. The 32-bit words are bit-exact. Normals follow the C code's float32 chain
(logf, sqrtf, cosf, sinf, each result rounded to float32): every step is computed in float64 and
rounded to float32, which equals the C result wherever glibc's float functions are correctly
rounded and is otherwise within one float32 ulp per operation.

Layout (host/common/philox.h):
  key     = { seed & 0xffffffff, seed >> 32 }
  counter = { block & 0xffffffff, block >> 32, counter & 0xffffffff,
              ((counter >> 32) & 0xffff) | (stream << 16) }
  block = element // 4; the element takes word element % 4 of its block.
"""

import numpy as np

PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)

# Streams (host/common/philox.h): one per use.
STREAM_INIT = 1
STREAM_SPLIT = 2
STREAM_SHUFFLE = 3
STREAM_BINARIZE = 4
STREAM_REPARAM = 5
STREAM_EVAL = 6
STREAM_FIXED_BINARIZE = 7
STREAM_SAMPLE = 8

# The seed that binarizes the test set once (CUVAE_TEST_BINARIZE_SEED).
TEST_BINARIZE_SEED = 0x7E57


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds over counter words c0..c3 (arrays or scalars, uint32 values) with key
    words k0, k1 (scalars). Returns four uint32 arrays. The 32x32->64 products are taken in uint64,
    which holds them exactly."""
    c0 = np.asarray(c0, dtype=np.uint64)
    c1 = np.asarray(c1, dtype=np.uint64)
    c2 = np.asarray(c2, dtype=np.uint64)
    c3 = np.asarray(c3, dtype=np.uint64)
    k0 = int(k0) & 0xFFFFFFFF
    k1 = int(k1) & 0xFFFFFFFF
    for _ in range(10):
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        hi0, lo0 = p0 >> SHIFT32, p0 & MASK32
        hi1, lo1 = p1 >> SHIFT32, p1 & MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + PHILOX_W0) & 0xFFFFFFFF
        k1 = (k1 + PHILOX_W1) & 0xFFFFFFFF
    return tuple(np.asarray(c, dtype=np.uint32) for c in (c0, c1, c2, c3))


def _blocks(seed, stream, counter, blocks):
    """The four words of each block index in `blocks` (uint64 array): shape [len(blocks), 4]."""
    seed = int(seed)
    counter = int(counter)
    blocks = np.asarray(blocks, dtype=np.uint64)
    c0 = blocks & MASK32
    c1 = blocks >> SHIFT32
    c2 = np.full(blocks.shape, counter & 0xFFFFFFFF, dtype=np.uint64)
    c3 = np.full(blocks.shape, ((counter >> 32) & 0xFFFF) | ((int(stream) << 16) & 0xFFFFFFFF),
                 dtype=np.uint64)
    w = philox4x32_10(c0, c1, c2, c3, seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    return np.stack(w, axis=-1)


def words(seed, stream, counter, elements):
    """The 32-bit words for the given element indices (array-like of non-negative ints)."""
    e = np.asarray(elements, dtype=np.uint64)
    w = _blocks(seed, stream, counter, e // np.uint64(4))
    return np.take_along_axis(w, (e % np.uint64(4)).astype(np.int64)[..., None], axis=-1)[..., 0]


def word_range(seed, stream, counter, first, n):
    """Words for elements [first, first + n), computed a block at a time."""
    first = int(first)
    n = int(n)
    if n <= 0:
        return np.zeros(0, dtype=np.uint32)
    b0 = first // 4
    b1 = (first + n + 3) // 4
    w = _blocks(seed, stream, counter, np.arange(b0, b1, dtype=np.uint64)).reshape(-1)
    off = first - 4 * b0
    return w[off:off + n]


def u32_to_uniform(w):
    """Uniform in (0, 1) as float32: ((w >> 9) + 0.5) * 2^-23, exact, never 0 or 1."""
    w = np.asarray(w, dtype=np.uint32)
    return ((w >> np.uint32(9)).astype(np.float32) + np.float32(0.5)) * np.float32(1.0 / 8388608.0)


def _f32(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32)


def normals(seed, stream, counter, first, n):
    """Standard normals for elements [first, first + n) as float32, by cuvae_normal_fill's
    Box-Muller: words (0,1) and (2,3) of each block give elements (0,1) and (2,3)."""
    first = int(first)
    n = int(n)
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    b0 = first // 4
    b1 = (first + n + 3) // 4
    w = _blocks(seed, stream, counter, np.arange(b0, b1, dtype=np.uint64))  # [blocks, 4]
    u = u32_to_uniform(w).astype(np.float64)
    u1 = u[:, 0::2]  # words 0 and 2
    u2 = u[:, 1::2]  # words 1 and 3
    two_pi = np.float32(6.2831853071795864769)
    log_u1 = _f32(np.log(u1))
    r = _f32(np.sqrt(_f32(np.float32(-2.0) * log_u1)))  # -2 * logf(u1) is exact in float32
    theta = _f32(np.float64(two_pi) * u2)
    cos_t = _f32(np.cos(theta.astype(np.float64)))
    sin_t = _f32(np.sin(theta.astype(np.float64)))
    z = np.empty(w.shape, dtype=np.float32)
    z[:, 0::2] = _f32(r.astype(np.float64) * cos_t)
    z[:, 1::2] = _f32(r.astype(np.float64) * sin_t)
    z = z.reshape(-1)
    off = first - 4 * b0
    return z[off:off + n]


def bernoulli_bytes(w, byte):
    """Bernoulli(byte / 255) exactly in integers: 1 iff w * 255 < byte * 2^32."""
    w = np.asarray(w, dtype=np.uint64)
    byte = np.asarray(byte, dtype=np.uint64)
    return (w * np.uint64(255) < (byte << SHIFT32)).astype(np.uint8)


def binarize_fixed(pixels, seed):
    """cuvae_binarize_fixed: pixels [n, d] uint8 -> 0/255, pixel p of image i from element i*d+p of
    (seed, STREAM_FIXED_BINARIZE, counter 0). Returns a new array."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    flat = pixels.reshape(-1)
    out = np.empty_like(flat)
    chunk = 1 << 22
    for start in range(0, flat.size, chunk):
        stop = min(flat.size, start + chunk)
        w = word_range(seed, STREAM_FIXED_BINARIZE, 0, start, stop - start)
        out[start:stop] = bernoulli_bytes(w, flat[start:stop]) * np.uint8(255)
    return out.reshape(pixels.shape)


def permutation(seed, stream, counter, n):
    """cuvae_permutation: Fisher-Yates over [0, n) driven by 64-bit draws hi:lo from elements
    2i and 2i+1 for i = n-1 .. 1."""
    n = int(n)
    perm = np.arange(n, dtype=np.int64)
    if n < 2:
        return perm
    w = word_range(seed, stream, counter, 0, 2 * n).astype(np.uint64)
    draws = (w[0::2] << SHIFT32) | w[1::2]  # draws[i] for i in [0, n)
    i = np.arange(n, dtype=np.uint64)
    i[0] = 1  # unused (no swap at i = 0); avoids a modulo by zero below
    js = (draws % (i + np.uint64(1))).astype(np.int64)
    for k in range(n - 1, 0, -1):
        j = js[k]
        perm[k], perm[j] = perm[j], perm[k]
    return perm


def model_layout(x_dim, hidden, latent):
    """Tensor names and shapes in flat-buffer order (host/common/model.h)."""
    tensors = []
    dims = [x_dim] + list(hidden) + [2 * latent]
    for i in range(len(dims) - 1):
        tensors.append(("encoder.%d.weight" % i, (dims[i + 1], dims[i])))
        tensors.append(("encoder.%d.bias" % i, (dims[i + 1],)))
    dims = [latent] + list(reversed(hidden)) + [x_dim]
    for i in range(len(dims) - 1):
        tensors.append(("decoder.%d.weight" % i, (dims[i + 1], dims[i])))
        tensors.append(("decoder.%d.bias" % i, (dims[i + 1],)))
    return tensors


def model_init(seed, x_dim, hidden, latent):
    """cuvae_model_init: tensor t (flat-buffer order), value j = bound * (2u - 1) in float32 with
    u from element j of (seed, STREAM_INIT, counter t) and bound = 1/sqrtf(fan_in). Returns an
    ordered list of (name, float32 array)."""
    out = []
    fan_in = None
    for t, (name, shape) in enumerate(model_layout(x_dim, hidden, latent)):
        if len(shape) == 2:
            fan_in = shape[1]
        count = int(np.prod(shape))
        bound = np.float32(1.0) / np.float32(np.sqrt(np.float32(fan_in), dtype=np.float32))
        u = u32_to_uniform(word_range(seed, STREAM_INIT, t, 0, count))
        values = bound * (np.float32(2.0) * u - np.float32(1.0))
        out.append((name, values.astype(np.float32).reshape(shape)))
    return out


if __name__ == "__main__":
    # Random123's published known-answer vectors (its tests/kat_vectors).
    kat = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    bad = 0
    for ctr, key, want in kat:
        got = tuple(int(x) for x in philox4x32_10(*ctr, *key))
        if got != want:
            bad += 1
            print("KAT mismatch: ctr %s key %s: got %s want %s" %
                  (ctr, key, [hex(g) for g in got], [hex(x) for x in want]))
    print("philox.py known-answer vectors:", "ok" if not bad else "%d failed" % bad)
    raise SystemExit(1 if bad else 0)
