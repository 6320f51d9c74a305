"""Editing fs-tree item payloads in memory, as log replay changes them.

Replay rewrites items the way the kernel does at mount: a field of an
INODE_ITEM (links, size, bytes), one name added to or dropped from an
INODE_REF or DIR_ITEM, an EXTENT_DATA item cut to a sub-range. Payloads stay
bytes in the on-disk layout, so the readers above (namespace, fs-tree
scanner) parse replayed items exactly like committed ones.
"""

from __future__ import annotations

import stat
import struct

from ..format import fastparse
from ..format.constants import FileExtentType, FileType
from .items import DirItem, InodeRef, iter_dir_items, iter_inode_extrefs, iter_inode_refs

_INODE = fastparse.INODE_ITEM
_FE = fastparse.FILE_EXTENT
_DIR = fastparse.DIR_ITEM
_REF = fastparse.INODE_REF


def _offsets(layout: fastparse.Layout) -> dict[str, tuple[int, str]]:
    """Byte offset and struct code of each field of ``layout``."""
    out, at = {}, 0
    for name, code in layout.fields:
        out[name] = (at, code)
        at += struct.calcsize("<" + code)
    return out


_INODE_AT = _offsets(_INODE)
_FE_AT = _offsets(_FE)

#: BTRFS_FT_* of a mode's file type, for the directory entries replay creates.
_FILE_TYPES = {stat.S_IFREG: FileType.REG_FILE, stat.S_IFDIR: FileType.DIR, stat.S_IFCHR: FileType.CHRDEV,
               stat.S_IFBLK: FileType.BLKDEV, stat.S_IFIFO: FileType.FIFO, stat.S_IFSOCK: FileType.SOCK,
               stat.S_IFLNK: FileType.SYMLINK}


def file_type(mode: int) -> int:
    return int(_FILE_TYPES.get(stat.S_IFMT(mode), FileType.UNKNOWN))


def _get(data: bytes, at: dict[str, tuple[int, str]], name: str) -> int:
    offset, code = at[name]
    return struct.unpack_from("<" + code, data, offset)[0]


def _set(data: bytes, at: dict[str, tuple[int, str]], **fields: int) -> bytes:
    out = bytearray(data)
    for name, value in fields.items():
        offset, code = at[name]
        struct.pack_into("<" + code, out, offset, value)
    return bytes(out)


def inode_field(data: bytes, name: str) -> int:
    """One field of an INODE_ITEM payload (``size``, ``nlink``, ``mode``, ``generation``, ...)."""
    return _get(data, _INODE_AT, name)


def with_inode_fields(data: bytes, **fields: int) -> bytes:
    """The INODE_ITEM payload with ``fields`` replaced."""
    return _set(data, _INODE_AT, **fields)


def extent_field(data: bytes, name: str) -> int:
    """One field of an EXTENT_DATA payload: ``head.type``, ``head.ram_bytes``, ``reg.num_bytes``, ..."""
    return _get(data, _FE_AT, name)


def extent_end(data: bytes, file_offset: int, sectorsize: int | None = None) -> int:
    """Where an extent item's range ends; an inline extent's rounded up to a sector when ``sectorsize`` is given."""
    if extent_field(data, "head.type") == FileExtentType.INLINE:
        end = file_offset + extent_field(data, "head.ram_bytes")
        return -(-end // sectorsize) * sectorsize if sectorsize else end
    return file_offset + extent_field(data, "reg.num_bytes")


def extent_piece(data: bytes, file_offset: int, start: int, end: int) -> bytes:
    """A regular or prealloc extent item cut to file range [start, end) (within its own range)."""
    return _set(data, _FE_AT, **{"reg.offset": extent_field(data, "reg.offset") + (start - file_offset),
                                 "reg.num_bytes": end - start})


def is_inline(data: bytes) -> bool:
    return extent_field(data, "head.type") == FileExtentType.INLINE


def extent_bytes(data: bytes) -> int:
    """What an extent item adds to its inode's ``nbytes``: 0 for holes."""
    if is_inline(data):
        return extent_field(data, "head.ram_bytes")
    return extent_field(data, "reg.num_bytes") if extent_field(data, "reg.disk_bytenr") else 0


def dir_entries(data: bytes, where: str) -> list[DirItem]:
    return list(iter_dir_items(data, where))


def dir_entry(location: tuple[int, int, int], transid: int, ftype: int, name: bytes) -> bytes:
    """One ``btrfs_dir_item`` with its name (no data)."""
    return _DIR.struct.pack(*location, transid, 0, len(name), ftype) + name


def pack_dir_entries(entries: list[DirItem]) -> bytes:
    return b"".join(_DIR.struct.pack(*e.location, e.transid, 0, len(e.name), e.type) + e.name for e in entries)


def inode_refs(data: bytes, parent: int, where: str) -> list[InodeRef]:
    return list(iter_inode_refs(data, parent, where))


def inode_extrefs(data: bytes, where: str) -> list[InodeRef]:
    return list(iter_inode_extrefs(data, where))


def pack_inode_refs(refs: list[InodeRef]) -> bytes:
    return b"".join(_REF.struct.pack(r.index, len(r.name)) + r.name for r in refs)


def pack_inode_extrefs(refs: list[InodeRef]) -> bytes:
    return b"".join(fastparse.INODE_EXTREF.struct.pack(r.parent, r.index, len(r.name)) + r.name for r in refs)
