"""Content hashes of pages and inline extents, as the content models compare them.

A page is hashed as the page cache holds it (the bytes inside EOF,
zero-filled to the page size) with xxh3-128, its trailing zero bytes left
out: two pages hash alike exactly when they are equal once zero-filled, the
hash does not depend on the page size, and an inline extent's data hashes
like the page that holds it.
"""

from __future__ import annotations

import xxhash

from ..format.compression import decompress

#: The hash of data that could not be read or decompressed: content unknown.
UNKNOWN_HASH = bytes(16)
#: The hash of the zero page (every hole and prealloc page).
ZERO_PAGE_HASH = xxhash.xxh3_128_digest(b"")


def inline_hash(data: bytes | memoryview, compression: int, ram_bytes: int, sectorsize: int,
                decompressed: bool) -> bytes:
    """What identifies an inline extent's data: xxh3-128 of its bytes without trailing zeros, so it equals
    the hash of the page holding it (``page_hash``) at any page size.

    Compressed data is decompressed only when ``decompressed``; otherwise it is
    identified by the stored bytes and the algorithm (equal only where
    compressed identically). DecompressionError when it does not decompress.
    """
    if compression and not decompressed:
        return xxhash.xxh3_128_digest(bytes((compression,)) + bytes(data), seed=1)
    if compression:
        data = decompress(compression, data, ram_bytes, sectorsize)
    return page_hash(data)


def page_hash(data: bytes | memoryview) -> bytes:
    """xxh3-128 of a page as the page cache holds it, trailing zero bytes left out: pages that are equal
    once zero-filled to the page size hash alike, and the zero page hashes as ``b""``."""
    if len(data) and data[-1]:
        return xxhash.xxh3_128_digest(data)
    return xxhash.xxh3_128_digest(bytes(data).rstrip(b"\0"))


