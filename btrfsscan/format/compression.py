"""Decompressing btrfs extents: zlib, lzo (in btrfs's own framing) and zstd.

A compressed extent (or inline item) holds one stream that decompresses to
``ram_bytes``. zlib and zstd are plain streams. lzo is btrfs's framing
(``fs/btrfs/lzo.c``): a little-endian 4-byte total length (header included),
then one segment per sector of decompressed data, each a 4-byte length and
that many bytes of LZO1X; a segment header never straddles a sector of the
compressed data, so fewer than 4 bytes left in a sector are zero padding.
zstd comes from the ``zstandard`` package and LZO1X from ``python-lzo`` (the
optional extra ``btrfsscan[lzo]``: without it lzo data has unknown content).
"""

from __future__ import annotations

import zlib

from ..errors import CorruptionError
from .constants import Compression

_LZO_LEN = 4


class DecompressionError(CorruptionError):
    """A compressed extent that does not decompress to its ``ram_bytes``."""


def decompress(compression: int, data: bytes | memoryview, ram_bytes: int, sectorsize: int) -> bytes:
    """The ``ram_bytes`` bytes that ``data`` decompresses to (shorter output is zero-filled, as the
    kernel's page cache sees it); DecompressionError when the stream is damaged."""
    try:
        kind = Compression(compression)
    except ValueError:
        raise DecompressionError(f"unknown compression type {compression}") from None
    try:
        if kind is Compression.ZLIB:
            out = zlib.decompressobj().decompress(bytes(data), ram_bytes)
        elif kind is Compression.ZSTD:
            out = _zstd(bytes(data), ram_bytes)
        elif kind is Compression.LZO:
            out = _lzo(memoryview(data), ram_bytes, sectorsize)
        else:
            out = bytes(data)
    except DecompressionError:
        raise
    except Exception as exc:  # each library has its own error classes
        raise DecompressionError(f"{kind.name.lower()} stream does not decompress: {exc}") from None
    return out[:ram_bytes].ljust(ram_bytes, b"\0")


def _zstd(data: bytes, ram_bytes: int) -> bytes:
    import zstandard

    # btrfs writes frames without a content size: the streaming reader bounds the output instead
    reader = zstandard.ZstdDecompressor().decompressobj()
    return reader.decompress(data)[:ram_bytes]


def _lzo(data: memoryview, ram_bytes: int, sectorsize: int) -> bytes:
    try:
        import lzo
    except ImportError:  # an optional extra: it builds against the system's liblzo2
        raise DecompressionError("lzo data needs the python-lzo package (pip install 'btrfsscan[lzo]', "
                                 "which builds against liblzo2)") from None

    if len(data) < _LZO_LEN:
        raise DecompressionError(f"lzo stream of {len(data)} bytes has no header")
    total = int.from_bytes(data[:_LZO_LEN], "little")
    if total > len(data) or total < _LZO_LEN:
        raise DecompressionError(f"lzo header says {total} bytes, the extent holds {len(data)}")
    out: list[bytes] = []
    produced = 0
    pos = _LZO_LEN
    while pos < total and produced < ram_bytes:
        left_in_sector = sectorsize - pos % sectorsize
        if left_in_sector < _LZO_LEN:  # the segment header starts in the next sector
            pos += left_in_sector
            if pos >= total:
                break
        seg_len = int.from_bytes(data[pos:pos + _LZO_LEN], "little")
        pos += _LZO_LEN
        if seg_len == 0 or pos + seg_len > total:
            raise DecompressionError(f"lzo segment of {seg_len} bytes at {pos - _LZO_LEN} runs past the stream")
        want = min(sectorsize, ram_bytes - produced)
        piece = lzo.decompress(bytes(data[pos:pos + seg_len]), False, sectorsize)
        out.append(piece[:want])
        produced += len(out[-1])
        pos += seg_len
    return b"".join(out)
