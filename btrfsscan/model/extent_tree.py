"""Extent tree items: allocated extents, their reference counts and backrefs.

An EXTENT_ITEM (bytenr, EXTENT_ITEM, length) or skinny METADATA_ITEM
(bytenr, METADATA_ITEM, level) carries ``refs``; its backrefs are packed
inline after it or follow as keyed items with the same objectid. A data
extent's ``refs`` counts tree references, not files: snapshots share leaves,
so one reference can stand for many (subvolume, inode) mappings; those are
counted from the fs trees instead (``FileTables``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import CorruptionError
from ..format import fastparse
from ..format.constants import ExtentFlag, ItemType, ObjectId
from ..tree.reader import TreeReader
from ..tree.walk import TreeRoot, iter_items

_EXTENT = fastparse.EXTENT_ITEM
_TREE_INFO = fastparse.TREE_BLOCK_INFO
_DATA_REF = fastparse.EXTENT_DATA_REF
_SHARED_DATA = fastparse.SHARED_DATA_REF
_OFFSET = fastparse.INLINE_REF_OFFSET

_BACKREF_TYPES = (ItemType.TREE_BLOCK_REF, ItemType.EXTENT_DATA_REF, ItemType.SHARED_BLOCK_REF,
                  ItemType.SHARED_DATA_REF, ItemType.EXTENT_OWNER_REF)


@dataclass(frozen=True)
class Backref:
    """One backref: ``type`` (an ItemType), ``root``/``objectid``/``offset`` for
    EXTENT_DATA_REF, ``parent`` for SHARED_* refs, ``root`` for TREE_BLOCK_REF, and ``count``."""

    type: int
    root: int = 0
    objectid: int = 0
    offset: int = 0
    parent: int = 0
    count: int = 1
    inline: bool = True


@dataclass
class ExtentRecord:
    """An allocated extent: EXTENT_ITEM/METADATA_ITEM plus its backrefs."""

    bytenr: int
    num_bytes: int
    refs: int
    generation: int
    flags: int
    backrefs: list[Backref] = field(default_factory=list)

    @property
    def is_data(self) -> bool:
        return bool(self.flags & ExtentFlag.DATA)


def parse_inline_refs(data: bytes, pos: int, where: str) -> list[Backref]:
    """Inline backrefs packed from ``pos`` to the end of an extent item."""
    refs = []
    while pos < len(data):
        ref_type = data[pos]
        pos += 1
        if ref_type == ItemType.EXTENT_DATA_REF:
            if pos + _DATA_REF.size > len(data):
                raise CorruptionError(f"inline EXTENT_DATA_REF runs past its extent item ({where})")
            root, objectid, offset, count = _DATA_REF.unpack_from(data, pos)
            refs.append(Backref(ref_type, root=root, objectid=objectid, offset=offset, count=count))
            pos += _DATA_REF.size
        elif ref_type in (ItemType.TREE_BLOCK_REF, ItemType.SHARED_BLOCK_REF, ItemType.SHARED_DATA_REF,
                          ItemType.EXTENT_OWNER_REF):
            if pos + _OFFSET.size > len(data):
                raise CorruptionError(f"inline {ItemType.describe(ref_type)} runs past its extent item ({where})")
            (value,) = _OFFSET.unpack_from(data, pos)
            pos += _OFFSET.size
            if ref_type == ItemType.SHARED_DATA_REF:
                if pos + _SHARED_DATA.size > len(data):
                    raise CorruptionError(f"inline SHARED_DATA_REF runs past its extent item ({where})")
                (count,) = _SHARED_DATA.unpack_from(data, pos)
                pos += _SHARED_DATA.size
                refs.append(Backref(ref_type, parent=value, count=count))
            elif ref_type == ItemType.SHARED_BLOCK_REF:
                refs.append(Backref(ref_type, parent=value))
            else:
                refs.append(Backref(ref_type, root=value))
        else:
            raise CorruptionError(f"unknown inline backref type {ref_type} ({where})")
    return refs


def parse_extent_item(key: tuple[int, int, int], data: bytes, where: str) -> ExtentRecord:
    bytenr, item_type, offset = key
    if len(data) < _EXTENT.size:
        raise CorruptionError(f"extent item of {len(data)} bytes is shorter than btrfs_extent_item ({where})")
    refs, generation, flags = _EXTENT.unpack_from(data)
    pos = _EXTENT.size
    if item_type == ItemType.EXTENT_ITEM and flags & ExtentFlag.TREE_BLOCK:
        pos += _TREE_INFO.size  # non-skinny tree block: btrfs_tree_block_info follows
    num_bytes = offset if item_type == ItemType.EXTENT_ITEM else 0
    return ExtentRecord(bytenr, num_bytes, refs, generation, flags, parse_inline_refs(data, pos, where))


def _keyed_backref(key: tuple[int, int, int], data: bytes, where: str) -> Backref:
    _, ref_type, offset = key
    if ref_type == ItemType.EXTENT_DATA_REF:
        if len(data) < _DATA_REF.size:
            raise CorruptionError(f"EXTENT_DATA_REF item too short ({where})")
        root, objectid, file_offset, count = _DATA_REF.unpack_from(data)
        return Backref(ref_type, root=root, objectid=objectid, offset=file_offset, count=count, inline=False)
    if ref_type == ItemType.SHARED_DATA_REF:
        if len(data) < _SHARED_DATA.size:
            raise CorruptionError(f"SHARED_DATA_REF item too short ({where})")
        return Backref(ref_type, parent=offset, count=_SHARED_DATA.unpack_from(data)[0], inline=False)
    if ref_type == ItemType.SHARED_BLOCK_REF:
        return Backref(ref_type, parent=offset, inline=False)
    return Backref(ref_type, root=offset, inline=False)


def lookup_extent(reader: TreeReader, extent_root: TreeRoot, bytenr: int) -> ExtentRecord | None:
    """The extent item starting at ``bytenr`` with all its backrefs, or None."""
    record = None
    for key, data in iter_items(reader, extent_root, (bytenr, 0, 0), (bytenr, 255, 2**64 - 1)):
        where = f"extent tree item {key}"
        if key[1] in (ItemType.EXTENT_ITEM, ItemType.METADATA_ITEM):
            record = parse_extent_item(key, data, where)
        elif key[1] in _BACKREF_TYPES and record is not None:
            record.backrefs.append(_keyed_backref(key, data, where))
    return record


#: More data extents than this: one walk over their key range instead of a lookup each.
LOOKUPS_MAX = 64


def data_extent_refs(fs, bytenrs: Iterable[int], where: str = "extent tree") -> dict[int, int]:
    """``refs`` of the extent items starting at ``bytenrs`` (addresses without one are left out).

    Damage (no extent tree, an unreadable block, a bad item) is a warning:
    the counts that could be read are returned.
    """
    wanted = sorted({int(b) for b in bytenrs if b})
    out: dict[int, int] = {}
    if not wanted:
        return out

    def warn(exc: CorruptionError) -> None:
        fs.warnings.add(f"reference counts not read: {exc}", where, tree=ObjectId.EXTENT_TREE)

    try:
        root = fs.tree_root(ObjectId.EXTENT_TREE)
        if len(wanted) > LOOKUPS_MAX:
            want = set(wanted)
            low, high = (wanted[0], 0, 0), (wanted[-1], 255, 2**64 - 1)
            for (objectid, item_type, _), data in iter_items(fs.reader, root, low, high):
                if item_type == ItemType.EXTENT_ITEM and objectid in want and len(data) >= _EXTENT.size:
                    out[objectid] = _EXTENT.unpack_from(data)[0]
            return out
    except CorruptionError as exc:
        warn(exc)
        return out
    for bytenr in wanted:
        try:
            record = lookup_extent(fs.reader, root, bytenr)
        except CorruptionError as exc:
            warn(exc)
            continue
        if record is not None:
            out[bytenr] = record.refs
    return out
