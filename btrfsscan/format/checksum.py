"""Block checksums of every type mkfs.btrfs offers.

The checksum covers bytes [32, end) of a superblock or tree block and is stored
in the first ``CsumType.size`` bytes, zero-padded to 32. crc32c is the hot
path (one per tree block): google-crc32c's C implementation when present,
else crcmod's C extension; crcmod without its extension is pure Python and
about 30x slower, which ``crc32c_backend`` reports so the CLI can warn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from ..errors import UnsupportedError
from .constants import BTRFS_CSUM_SIZE, CsumType


def _pick_crc32c() -> tuple[Callable[[int, bytes], int], str]:
    """``extend(crc, data)``: continue a standard crc32c over ``data``."""
    try:
        import google_crc32c

        if google_crc32c.implementation == "c":
            return google_crc32c.extend, "google-crc32c (C)"
    except ImportError:  # pragma: no cover - depends on the installation
        pass
    import crcmod.predefined

    fn = crcmod.predefined.mkPredefinedCrcFun("crc-32c")
    try:
        import crcmod._crcfunext  # noqa: F401

        backend = "crcmod (C extension)"
    except ImportError:  # pragma: no cover - depends on the installation
        backend = "crcmod (pure Python, slow)"
    return (lambda crc, data: fn(data, crc)), backend


crc32c_extend, crc32c_backend = _pick_crc32c()


def crc32c(data: bytes) -> int:
    return crc32c_extend(0, data)


def name_hash(name: bytes) -> int:
    """btrfs_name_hash: the key offset of a DIR_ITEM (kernel crc32c seeded with ~1, not inverted)."""
    return crc32c_extend(1, name) ^ 0xFFFFFFFF


def crc32c_is_slow() -> bool:
    """True when only the pure-Python crc32c is available."""
    return "pure Python" in crc32c_backend


def _xxhash64(data: bytes) -> bytes:
    import xxhash

    return xxhash.xxh64_intdigest(data).to_bytes(8, "little")


_DIGESTS: dict[CsumType, Callable[[bytes], bytes]] = {
    CsumType.CRC32C: lambda data: crc32c(data).to_bytes(4, "little"),
    CsumType.XXHASH64: _xxhash64,
    CsumType.SHA256: lambda data: hashlib.sha256(data).digest(),
    CsumType.BLAKE2B: lambda data: hashlib.blake2b(data, digest_size=32).digest(),
}


def csum_type_of(value: int) -> CsumType:
    """The CsumType for a superblock's ``csum_type``; unknown types are refused."""
    try:
        return CsumType(value)
    except ValueError:
        raise UnsupportedError(f"unknown checksum type {value} in superblock") from None


def data_checksum(csum_type: CsumType, sector: bytes) -> bytes:
    """What the csum tree stores for one data sector: the digest of all its bytes, ``csum_type.size`` long."""
    return _DIGESTS[csum_type](sector)


def compute(csum_type: CsumType, block: bytes) -> bytes:
    """The 32-byte on-disk checksum field btrfs stores for ``block``."""
    return _DIGESTS[csum_type](block[BTRFS_CSUM_SIZE:]).ljust(BTRFS_CSUM_SIZE, b"\0")


def block_digests(csum_type: CsumType, data, starts: list[int], block_size: int) -> bytes:
    """What btrfs stores as the checksum of each block ``data[start:start + block_size]``, back to back,
    ``csum_type.size`` bytes each: one digest call per block, nothing looked up per block.

    ``data`` is any buffer (a mapped device too). Each block is copied once
    (google-crc32c's C code takes only ``bytes``), into memory freed at once.
    """
    view = memoryview(data)
    if csum_type is CsumType.CRC32C:
        crcs = [crc32c_extend(0, bytes(view[start + BTRFS_CSUM_SIZE:start + block_size])) for start in starts]
        return np.array(crcs, "<u4").tobytes()
    digest = _DIGESTS[csum_type]
    return b"".join([digest(bytes(view[start + BTRFS_CSUM_SIZE:start + block_size])) for start in starts])


def verify(csum_type: CsumType, block: bytes) -> bool:
    """Whether the stored checksum of ``block`` matches its content."""
    size = csum_type.size
    return _DIGESTS[csum_type](block[BTRFS_CSUM_SIZE:]) == bytes(block[:size])
