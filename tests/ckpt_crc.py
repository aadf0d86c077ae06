"""The CRC-32 of a cuvae checkpoint, written from the README's rule alone (no code shared with
host/checkpoint/checkpoint_meta.c), for the shell tests that check or re-seal files.

Format 2: zlib CRC-32 of every __metadata__ key but crc32, in byte order of the keys, each as
key NUL value NUL; then the tensor names in the order of their data, each followed by NUL; then
the data section. Format 1: the data section only."""
import json
import struct
import zlib


def split(raw):
    (hlen,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + hlen]), hlen


def crc_of(header, data):
    meta = header["__metadata__"]
    if meta.get("format_version") == "1":
        return "%08x" % (zlib.crc32(data) & 0xFFFFFFFF)
    crc = 0
    for key in sorted(k for k in meta if k != "crc32"):
        for text in (key, meta[key]):
            crc = zlib.crc32(text.encode() + b"\0", crc)
    names = sorted((t["data_offsets"][0], n) for n, t in header.items() if n != "__metadata__")
    for _, name in names:
        crc = zlib.crc32(name.encode() + b"\0", crc)
    return "%08x" % (zlib.crc32(data, crc) & 0xFFFFFFFF)


def crc_of_file(raw):
    header, hlen = split(raw)
    return crc_of(header, raw[8 + hlen:])
