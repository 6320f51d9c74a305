"""Typed views of individual tree items (the cold path: one object per item).

Each class says what its key's objectid, type and offset mean. Every parser
checks the payload is long enough for its structure and that embedded name
lengths stay inside the item, raising CorruptionError naming the item
otherwise. Bulk data (inodes, file extents of whole trees) does not use these
classes; it is read into column tables by ``fs_tree``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import CorruptionError
from ..format import fastparse
from .plausibility import dir_item_problem

_ROOT_V1 = fastparse.ROOT_ITEM_V1
_ROOT_V2 = fastparse.ROOT_ITEM_V2
_ROOT_REF = fastparse.ROOT_REF
_INODE_REF = fastparse.INODE_REF
_INODE_EXTREF = fastparse.INODE_EXTREF
_DIR_ITEM = fastparse.DIR_ITEM
_INODE = fastparse.INODE_ITEM


def _need(data: bytes, size: int, what: str, where: str) -> None:
    if len(data) < size:
        raise CorruptionError(f"{what} is {len(data)} bytes, shorter than its {size}-byte structure ({where})")


@dataclass(frozen=True)
class RootItem:
    """ROOT_ITEM: key (tree id, ROOT_ITEM, 0 or the snapshot's creation transid).

    Where a tree starts (``bytenr``, ``level``), and for subvolumes their
    uuids, transids and flags. Items written before the v2 extension lack
    the uuid/transid fields; those read as zero.
    """

    bytenr: int
    level: int
    generation: int
    root_dirid: int
    flags: int
    refs: int
    last_snapshot: int
    drop_progress_objectid: int
    uuid: bytes = b"\0" * 16
    parent_uuid: bytes = b"\0" * 16
    received_uuid: bytes = b"\0" * 16
    ctransid: int = 0
    otransid: int = 0
    ctime: int = 0
    otime: int = 0


def parse_root_item(data: bytes, where: str) -> RootItem:
    _need(data, _ROOT_V1.size, "ROOT_ITEM", where)
    v1 = _ROOT_V1.as_dict(data)
    extra = {}
    if len(data) >= _ROOT_V1.size + _ROOT_V2.size:
        v2 = _ROOT_V2.as_dict(data, _ROOT_V1.size)
        if v2["generation_v2"] == v1["generation"]:  # the kernel's test for valid v2 fields
            extra = dict(
                uuid=v2["uuid"], parent_uuid=v2["parent_uuid"], received_uuid=v2["received_uuid"],
                ctransid=v2["ctransid"], otransid=v2["otransid"], ctime=v2["ctime.sec"], otime=v2["otime.sec"],
            )
    return RootItem(
        bytenr=v1["bytenr"], level=v1["level"], generation=v1["generation"], root_dirid=v1["root_dirid"],
        flags=v1["flags"], refs=v1["refs"], last_snapshot=v1["last_snapshot"],
        drop_progress_objectid=v1["drop_progress.objectid"], **extra,
    )


@dataclass(frozen=True)
class RootRef:
    """ROOT_REF (parent id, ROOT_REF, child id) / ROOT_BACKREF (child id, ROOT_BACKREF, parent id).

    The subvolume ``child`` is linked as ``name`` in directory ``dirid`` of
    subvolume ``parent``.
    """

    dirid: int
    sequence: int
    name: bytes


def parse_root_ref(data: bytes, where: str) -> RootRef:
    _need(data, _ROOT_REF.size, "ROOT_REF", where)
    dirid, sequence, name_len = _ROOT_REF.unpack_from(data)
    end = _ROOT_REF.size + name_len
    if end > len(data):
        raise CorruptionError(f"ROOT_REF name of {name_len} bytes runs past its {len(data)}-byte item ({where})")
    return RootRef(dirid, sequence, data[_ROOT_REF.size:end])


@dataclass(frozen=True)
class InodeRef:
    """INODE_REF (inode, INODE_REF, parent dir) or INODE_EXTREF (inode, INODE_EXTREF, name hash).

    One hard link of the inode: ``name`` in directory ``parent`` at ``index``.
    """

    parent: int
    index: int
    name: bytes


def iter_inode_refs(data: bytes, parent: int, where: str) -> Iterator[InodeRef]:
    """The refs packed in one INODE_REF item (key offset = parent dir)."""
    pos = 0
    while pos < len(data):
        _need(data[pos:], _INODE_REF.size, "INODE_REF", where)
        index, name_len = _INODE_REF.unpack_from(data, pos)
        start = pos + _INODE_REF.size
        if start + name_len > len(data):
            raise CorruptionError(f"INODE_REF name of {name_len} bytes runs past its {len(data)}-byte item ({where})")
        yield InodeRef(parent, index, data[start : start + name_len])
        pos = start + name_len


def iter_inode_extrefs(data: bytes, where: str) -> Iterator[InodeRef]:
    """The refs packed in one INODE_EXTREF item."""
    pos = 0
    while pos < len(data):
        _need(data[pos:], _INODE_EXTREF.size, "INODE_EXTREF", where)
        parent, index, name_len = _INODE_EXTREF.unpack_from(data, pos)
        start = pos + _INODE_EXTREF.size
        if start + name_len > len(data):
            raise CorruptionError(f"INODE_EXTREF name of {name_len} bytes runs past its {len(data)}-byte item ({where})")
        yield InodeRef(parent, index, data[start : start + name_len])
        pos = start + name_len


@dataclass(frozen=True)
class DirItem:
    """DIR_ITEM (dir, DIR_ITEM, name hash) / DIR_INDEX (dir, DIR_INDEX, index) / XATTR_ITEM.

    ``name`` in the directory points at ``location`` (an INODE_ITEM key, or a
    ROOT_ITEM key for a subvolume); ``type`` is a BTRFS_FT_* file type.
    """

    location: tuple[int, int, int]
    transid: int
    type: int
    name: bytes
    data_len: int


def iter_dir_items(data: bytes, where: str) -> Iterator[DirItem]:
    """The entries packed in one DIR_ITEM/DIR_INDEX/XATTR_ITEM item."""
    pos = 0
    while pos < len(data):
        _need(data[pos:], _DIR_ITEM.size, "DIR_ITEM", where)
        oid, ktype, koff, transid, data_len, name_len, ftype = _DIR_ITEM.unpack_from(data, pos)
        start = pos + _DIR_ITEM.size
        end = start + name_len + data_len
        if end > len(data):
            raise CorruptionError(
                f"DIR_ITEM name ({name_len} bytes) and data ({data_len} bytes) run past its {len(data)}-byte item ({where})"
            )
        problem = dir_item_problem(name_len, data_len, ftype)
        if problem:
            raise CorruptionError(f"DIR_ITEM implausible: {problem} ({where})")
        yield DirItem((oid, ktype, koff), transid, ftype, data[start : start + name_len], data_len)
        pos = end


@dataclass(frozen=True)
class InodeItem:
    """INODE_ITEM (inode, INODE_ITEM, 0): size, links, mode, owner and flags of an inode."""

    size: int
    nbytes: int
    nlink: int
    uid: int
    gid: int
    mode: int
    rdev: int
    flags: int
    generation: int
    transid: int
    atime: int
    ctime: int
    mtime: int
    otime: int


def parse_inode_item(data: bytes, where: str) -> InodeItem:
    _need(data, _INODE.size, "INODE_ITEM", where)
    f = _INODE.as_dict(data)
    return InodeItem(
        f["size"], f["nbytes"], f["nlink"], f["uid"], f["gid"], f["mode"], f["rdev"], f["flags"],
        f["generation"], f["transid"], f["atime.sec"], f["ctime.sec"], f["mtime.sec"], f["otime.sec"],
    )
