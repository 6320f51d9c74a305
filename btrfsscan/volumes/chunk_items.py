"""Decoding CHUNK_ITEM payloads, from the sys_chunk_array or from chunk-tree leaves.

Both places hold the same ``btrfs_chunk`` + ``num_stripes`` x ``btrfs_stripe``
layout; lengths are checked before any stripe is read, so a damaged
``num_stripes`` is a clear error rather than a short read.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import CorruptionError
from ..format import fastparse
from ..format.constants import ItemType
from .chunks import Chunk, Stripe

_CHUNK = fastparse.CHUNK
_STRIPE = fastparse.STRIPE
_KEY = fastparse.DISK_KEY
_NUM_STRIPES = _CHUNK.index("num_stripes")


def parse_chunk(logical: int, buf: bytes, offset: int, size: int, where: str) -> Chunk:
    """The chunk whose item payload is ``buf[offset:offset+size]``."""
    if size >= _CHUNK.size and _CHUNK.unpack_from(buf, offset)[_NUM_STRIPES] == 0:
        raise CorruptionError(f"chunk item at logical {logical} ({where}): num_stripes 0")
    if size < _CHUNK.size + _STRIPE.size:
        raise CorruptionError(f"chunk item at logical {logical} ({where}) is {size} bytes, shorter than one chunk with one stripe")
    head = _CHUNK.unpack_from(buf, offset)
    num_stripes = head[_NUM_STRIPES]
    needed = _CHUNK.size + num_stripes * _STRIPE.size
    if num_stripes == 0 or needed > size:
        raise CorruptionError(
            f"chunk item at logical {logical} ({where}): num_stripes {num_stripes} needs {needed} bytes, item has {size}"
        )
    stripes = tuple(
        Stripe(*_STRIPE.unpack_from(buf, offset + _CHUNK.size + i * _STRIPE.size)) for i in range(num_stripes)
    )
    length, owner, stripe_len, type_, io_align, io_width, sector_size, _, sub_stripes = head
    return Chunk(logical, length, owner, stripe_len, type_, io_align, io_width, sector_size, num_stripes, sub_stripes, stripes)


def iter_sys_chunk_array(array: bytes, device: str) -> Iterator[Chunk]:
    """Chunks of a superblock's sys_chunk_array (key, chunk, stripes, repeated)."""
    pos = 0
    where = f"sys_chunk_array of {device}"
    while pos < len(array):
        if pos + _KEY.size > len(array):
            raise CorruptionError(f"{where}: truncated key at byte {pos}")
        objectid, key_type, key_offset = _KEY.unpack_from(array, pos)
        if key_type != ItemType.CHUNK_ITEM:
            raise CorruptionError(f"{where}: key type {ItemType.describe(key_type)} at byte {pos}, expected CHUNK_ITEM")
        pos += _KEY.size
        if pos + _CHUNK.size > len(array):
            raise CorruptionError(f"{where}: truncated chunk at byte {pos}")
        num_stripes = _CHUNK.unpack_from(array, pos)[_NUM_STRIPES]
        size = _CHUNK.size + num_stripes * _STRIPE.size
        chunk = parse_chunk(key_offset, array, pos, min(size, len(array) - pos), where)
        yield chunk
        pos += size
