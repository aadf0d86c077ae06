#!/usr/bin/env python3
"""A procedural shapes dataset for cuvae (dSprites-like), the data the conv configs and benchmarks
use: one white shape on black per image, drawn from independent factors

    shape     0 square, 1 ellipse, 2 heart, 3 triangle
    scale     0.5 .. 1 (1: the shape's extent is about 0.36 of the image side)
    rotation  0 .. 2*pi radians, counter-clockwise
    x, y      the shape's centre, 0.25 .. 0.75 of the image (y downwards), so it stays inside
    hue       --colour only: 0 .. 1, the shape's colour at full saturation and value

Each image is rendered with numpy alone: the pixel grid (supersampled --aa x --aa times, then
averaged, for anti-aliased edges) is moved into the shape's own frame (translate, rotate, scale)
and the shape's implicit function is evaluated there. Deterministic from --seed: the training and
test sets are drawn from separate streams of it, and the same command writes the same bytes.

Writes into --out:
    train-images.npy, test-images.npy    uint8 N x S x S (N x S x S x 3 with --colour)
    train-factors.npy, test-factors.npy  float32 N x F, the columns named in factors.json
    train-labels.npy, test-labels.npy    uint8 N, the shape index (cuvae's optional labels)
    factors.json                         the columns, shape names, ranges and the command's options
  with --idx also the gzipped IDX twins, which cuvae reads for colour today:
    {train,t10k}-images-idx3-ubyte.gz (idx4 with --colour: N x S x S x 3), -labels-idx1-ubyte.gz

Usage: python3 bench/make_shapes.py --out data/shapes64 [--colour] [--idx] [--seed 1]
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np

SHAPES = ("square", "ellipse", "heart", "triangle")
SCALE = (0.5, 1.0)
POSITION = (0.25, 0.75)
# Image units per shape unit at scale 1: the shapes' implicit functions below are drawn in about
# [-1, 1] (the heart a little wider), so the largest one spans about 0.36 of the image.
EXTENT = 0.18


def inside(shape, u, v):
    """Whether the points (u, v) of the shape's frame (v upwards) lie inside shape number `shape`.
    Square, ellipse and triangle are convex; the heart is the classic sextic
    (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, shifted to centre it."""
    if shape == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == 1:
        return u * u + (v / 0.55) ** 2 <= 1.0
    if shape == 2:
        hx, hy = u * 1.25, v * 1.25 + 0.15
        r = hx * hx + hy * hy - 1.0
        return r * r * r <= hx * hx * hy * hy * hy
    # An equilateral triangle with its centroid at the origin, a vertex up: three half-planes.
    out = np.ones(u.shape, bool)
    for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        out &= u * np.float32(np.cos(a)) + v * np.float32(np.sin(a)) >= -0.5
    return out


def render(factors, size, aa):
    """Coverage in [0, 1] of each image's shape, (B, size, size), from factors (B, >= 5)."""
    shape = factors[:, 0].astype(np.int64)
    scale, rot, cx, cy = (factors[:, k:k + 1].astype(np.float32) for k in range(1, 5))
    n = size * aa
    t = (np.arange(n, dtype=np.float32) + 0.5) / n  # sample centres in image units
    gy, gx = np.meshgrid(t, t, indexing="ij")
    dx, dy = gx.reshape(1, -1) - cx, -(gy.reshape(1, -1) - cy)  # y upwards in the shape frame
    c, s = np.cos(rot), np.sin(rot)
    k = 1.0 / (EXTENT * scale)
    u = (c * dx + s * dy) * k  # the inverse rotation, then the inverse scale
    v = (-s * dx + c * dy) * k
    cover = np.empty(u.shape, np.float32)
    for i in range(len(SHAPES)):
        rows = shape == i
        if rows.any():
            cover[rows] = inside(i, u[rows], v[rows])
    return cover.reshape(-1, size, aa, size, aa).mean(axis=(2, 4))


def hue_to_rgb(h):
    """Full-saturation, full-value colours of hues h (B,) in [0, 1): (B, 3) in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6.0) % 6.0
    return 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def draw_factors(rng, n, colour):
    cols = [
        rng.integers(0, len(SHAPES), n).astype(np.float64),
        rng.uniform(*SCALE, n),
        rng.uniform(0.0, 2 * np.pi, n),
        rng.uniform(*POSITION, n),
        rng.uniform(*POSITION, n),
    ]
    if colour:
        cols.append(rng.uniform(0.0, 1.0, n))
    return np.stack(cols, axis=1)


def make_images(factors, size, aa, colour):
    chunk = max(1, (1 << 22) // (size * aa) ** 2)  # ~4 M samples: a few hundred MB of temporaries
    out = np.empty((len(factors), size, size, 3) if colour else (len(factors), size, size), np.uint8)
    for i in range(0, len(factors), chunk):
        f = factors[i:i + chunk]
        cover = render(f, size, aa)
        if colour:
            cover = cover[..., None] * hue_to_rgb(f[:, 5])[:, None, None, :]
        out[i:i + chunk] = np.rint(cover * 255.0).astype(np.uint8)
    return out


def write_idx(path, array):
    """Gzipped IDX, unsigned bytes, with a zero mtime so the same data give the same bytes."""
    magic = 0x800 + array.ndim
    header = struct.pack(">I" + "I" * array.ndim, magic, *array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + np.ascontiguousarray(array).tobytes())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/shapes64", help="output directory (made if missing)")
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--colour", action="store_true", help="RGB images with a hue factor")
    ap.add_argument("--idx", action="store_true", help="also write gzipped IDX files")
    ap.add_argument("--aa", type=int, default=2,
                    help="anti-aliasing: samples per pixel along each axis (1: hard edges)")
    a = ap.parse_args(argv)
    if a.n_train < 1 or a.n_test < 1 or a.size < 4 or a.aa < 1:
        ap.error("--n-train and --n-test must be >= 1, --size >= 4, --aa >= 1")
    os.makedirs(a.out, exist_ok=True)
    columns = ["shape", "scale", "rotation", "x", "y"] + (["hue"] if a.colour else [])
    written = []
    for split, idx_split, n, stream in (("train", "train", a.n_train, 0),
                                        ("test", "t10k", a.n_test, 1)):
        rng = np.random.default_rng([a.seed, stream])
        factors = draw_factors(rng, n, a.colour)
        images = make_images(factors, a.size, a.aa, a.colour)
        labels = factors[:, 0].astype(np.uint8)
        for name, array in (("images", images), ("factors", factors.astype(np.float32)),
                            ("labels", labels)):
            path = os.path.join(a.out, f"{split}-{name}.npy")
            np.save(path, array)
            written.append((path, array))
        if a.idx:
            for name, array in ((f"images-idx{images.ndim}", images), ("labels-idx1", labels)):
                path = os.path.join(a.out, f"{idx_split}-{name}-ubyte.gz")
                write_idx(path, array)
                written.append((path, array))
    meta = {
        "columns": columns,
        "shapes": list(SHAPES),
        "ranges": {"shape": [0, len(SHAPES) - 1], "scale": list(SCALE),
                   "rotation": [0.0, 2 * np.pi], "x": list(POSITION), "y": list(POSITION),
                   **({"hue": [0.0, 1.0]} if a.colour else {})},
        "units": "x and y: the shape's centre as a fraction of the image side, y downwards; "
                 "rotation: radians, counter-clockwise; shape: index into shapes",
        "seed": a.seed, "size": a.size, "aa": a.aa, "colour": a.colour,
        "n_train": a.n_train, "n_test": a.n_test,
    }
    path = os.path.join(a.out, "factors.json")
    with open(path, "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    for p, array in written:
        print(f"wrote {p}: {array.dtype} {' x '.join(map(str, array.shape))}")
    print(f"wrote {path}: factor columns {', '.join(columns)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
