"""PNG files written by hand (numpy + zlib) for the image-folder tests (cli_image_*.sh): every
colour type and bit depth PNG has, so that the reader is tested on files no cuvae code wrote, and
IDX files read back to arrays. Not a test itself."""
import gzip
import struct
import zlib

import numpy as np


def _chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bytes(px, colour_type=None, depth=8, palette=None, trns=None, ihdr_size=None):
    """px: H x W (grey), H x W x C (C = 2 grey+alpha, 3 RGB, 4 RGBA) or palette indices (with
    `palette`, N x 3). depth 16 takes uint16 values; depth < 8 grey or palette values that fit."""
    px = np.asarray(px)
    if colour_type is None:
        colour_type = 3 if palette is not None else {2: 0, 3: {2: 4, 3: 2, 4: 6}}[px.ndim].get(
            px.shape[-1], 0) if px.ndim == 3 else 0
    h, w = px.shape[:2]
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    flat = px.reshape(h, w * chans)
    rows = []
    for r in flat:
        if depth == 16:
            raw = r.astype(">u2").tobytes()
        elif depth == 8:
            raw = r.astype(np.uint8).tobytes()
        else:
            per = 8 // depth
            vals = list(r.astype(int)) + [0] * (-len(r) % per)
            raw = bytes(
                sum(v << (8 - depth * (k + 1)) for k, v in enumerate(vals[i:i + per]))
                for i in range(0, len(vals), per))
        rows.append(b"\0" + raw)
    hh, ww = ihdr_size if ihdr_size else (h, w)
    out = b"\x89PNG\r\n\x1a\n"
    out += _chunk(b"IHDR", struct.pack(">IIBBBBB", ww, hh, depth, colour_type, 0, 0, 0))
    if palette is not None:
        out += _chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        out += _chunk(b"tRNS", bytes(trns))
    out += _chunk(b"IDAT", zlib.compress(b"".join(rows)))
    out += _chunk(b"IEND", b"")
    return out


def write_png(path, px, **kw):
    with open(path, "wb") as f:
        f.write(png_bytes(px, **kw))


def read_idx(path):
    raw = gzip.open(path, "rb").read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw[4 + 4 * nd:], np.uint8).reshape(dims)
