"""Editing fs-tree item payloads in memory, as log replay changes them.

Replay rewrites items the way the kernel does at mount: a field of an
INODE_ITEM (links, size, bytes), one name added to or dropped from an
INODE_REF or DIR_ITEM, an EXTENT_DATA item cut to a sub-range. Payloads stay
bytes in the on-disk layout, so the readers above (namespace, fs-tree
scanner) parse replayed items exactly like committed ones. Reading goes
through the item table (``format.items``); writing packs the same layouts.
"""

from __future__ import annotations

import stat
import struct

from ..format.constants import FileExtentType, FileType, ItemType
from ..format.fastparse import StructLayout
from ..format.items import (
    DirItem,
    DirItemList,
    FileExtentItem,
    InodeExtrefList,
    InodeItem,
    InodeRef,
    InodeRefList,
    Key,
    parse_item,
)

_WHERE = "an item the log replay rewrote"


def _offsets(layout: StructLayout) -> dict[str, tuple[int, str]]:
    """Byte offset and struct code of each field of ``layout``."""
    out, at = {}, 0
    for name, code in layout.fields:
        out[name] = (at, code)
        at += struct.calcsize("<" + code)
    return out


_INODE_AT = _offsets(InodeItem.LAYOUT)
_FE_AT = _offsets(FileExtentItem.LAYOUT)

#: BTRFS_FT_* of a mode's file type, for the directory entries replay creates.
_FILE_TYPES = {stat.S_IFREG: FileType.REG_FILE, stat.S_IFDIR: FileType.DIR, stat.S_IFCHR: FileType.CHRDEV,
               stat.S_IFBLK: FileType.BLKDEV, stat.S_IFIFO: FileType.FIFO, stat.S_IFSOCK: FileType.SOCK,
               stat.S_IFLNK: FileType.SYMLINK}


def file_type(mode: int) -> int:
    return int(_FILE_TYPES.get(stat.S_IFMT(mode), FileType.UNKNOWN))


def _set(data: bytes, at: dict[str, tuple[int, str]], **fields: int) -> bytes:
    out = bytearray(data)
    for name, value in fields.items():
        offset, code = at[name]
        struct.pack_into("<" + code, out, offset, value)
    return bytes(out)


def inode(data: bytes, where: str = _WHERE) -> InodeItem:
    """An INODE_ITEM payload as its record (``size``, ``nlink``, ``mode``, ``generation``, ...)."""
    return InodeItem.parse((0, ItemType.INODE_ITEM, 0), data, where)


def with_inode_fields(data: bytes, **fields: int) -> bytes:
    """The INODE_ITEM payload with ``fields`` replaced."""
    return _set(data, _INODE_AT, **fields)


def extent(data: bytes, where: str = _WHERE) -> FileExtentItem:
    return FileExtentItem.parse((0, ItemType.EXTENT_DATA, 0), data, where)


def is_inline(data: bytes) -> bool:
    return extent(data).type == FileExtentType.INLINE


def extent_end(data: bytes, file_offset: int, sectorsize: int | None = None) -> int:
    """Where an extent item's range ends; an inline extent's rounded up to a sector when ``sectorsize`` is given."""
    item = extent(data)
    if item.type == FileExtentType.INLINE:
        end = file_offset + item.ram_bytes
        return -(-end // sectorsize) * sectorsize if sectorsize else end
    return file_offset + item.num_bytes


def extent_piece(data: bytes, file_offset: int, start: int, end: int) -> bytes:
    """A regular or prealloc extent item cut to file range [start, end) (within its own range)."""
    return _set(data, _FE_AT, **{"reg.offset": extent(data).offset + (start - file_offset),
                                 "reg.num_bytes": end - start})


def data_extent(data: bytes) -> int:
    """The disk_bytenr of the data extent an extent item references; 0 for inline extents and holes."""
    item = extent(data)
    return 0 if item.type == FileExtentType.INLINE else item.disk_bytenr


def csum_range(data: bytes) -> tuple[int, int]:
    """The logical range whose checksums replaying a regular or prealloc extent item takes from the log: the
    part it references, or the whole extent when compressed (as replay_one_extent)."""
    item = extent(data)
    if item.compression:
        return item.disk_bytenr, item.disk_bytenr + item.disk_num_bytes
    return item.disk_bytenr + item.offset, item.disk_bytenr + item.offset + item.num_bytes


def extent_bytes(data: bytes) -> int:
    """What an extent item adds to its inode's ``nbytes``: 0 for holes."""
    item = extent(data)
    if item.type == FileExtentType.INLINE:
        return item.ram_bytes
    return item.num_bytes if item.disk_bytenr else 0


def entries(key: Key, data: bytes, where: str) -> list:
    """The entries of a DIR_ITEM / DIR_INDEX (``DirItem``) or INODE_REF / INODE_EXTREF (``InodeRef``) item."""
    return list(parse_item(key, data, where))


def pack_dir_entries(items: list[DirItem]) -> bytes:
    pack = DirItemList.LAYOUT.struct.pack
    return b"".join(pack(*e.location, e.transid, 0, len(e.name), e.type) + e.name for e in items)


def pack_inode_refs(refs: list[InodeRef]) -> bytes:
    return b"".join(InodeRefList.LAYOUT.struct.pack(r.index, len(r.name)) + r.name for r in refs)


def pack_inode_extrefs(refs: list[InodeRef]) -> bytes:
    return b"".join(InodeExtrefList.LAYOUT.struct.pack(r.parent, r.index, len(r.name)) + r.name for r in refs)
