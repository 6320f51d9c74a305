"""Extent tree lookups: allocated extents, their reference counts and backrefs.

An EXTENT_ITEM (bytenr, EXTENT_ITEM, length) or skinny METADATA_ITEM
(bytenr, METADATA_ITEM, level) carries ``refs``; its backrefs are packed
inline after it or follow as keyed items with the same objectid. A data
extent's ``refs`` counts tree references, not files: snapshots share leaves,
so one reference can stand for many (subvolume, inode) mappings; those are
counted from the fs trees instead (``FileTables``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import CorruptionError
from ..format.constants import ItemType, ObjectId
from ..format.items import Backref, ExtentItem, parse_item
from ..tree.reader import TreeReader
from ..tree.roots import find_root
from ..tree.walk import TreeRoot, iter_items

_BACKREF_TYPES = (ItemType.TREE_BLOCK_REF, ItemType.EXTENT_DATA_REF, ItemType.SHARED_BLOCK_REF,
                  ItemType.SHARED_DATA_REF, ItemType.EXTENT_OWNER_REF)


@dataclass(frozen=True)
class ExtentRecord:
    """An allocated extent: its EXTENT_ITEM/METADATA_ITEM and every backref, inline ones first."""

    item: ExtentItem
    backrefs: tuple[Backref, ...]

    @property
    def refs(self) -> int:
        return self.item.refs


def lookup_extent(reader: TreeReader, extent_root: TreeRoot, bytenr: int) -> ExtentRecord | None:
    """The extent item starting at ``bytenr`` with all its backrefs, or None."""
    item: ExtentItem | None = None
    keyed: list[Backref] = []
    for key, data in iter_items(reader, extent_root, (bytenr, 0, 0), (bytenr, 255, 2**64 - 1)):
        if key[1] in (ItemType.EXTENT_ITEM, ItemType.METADATA_ITEM) or (key[1] in _BACKREF_TYPES and item is not None):
            record = parse_item(key, data, f"extent tree item {key}")
            if isinstance(record, ExtentItem):
                item, keyed = record, []
            else:
                keyed.append(record)
    return ExtentRecord(item, item.inline_refs + tuple(keyed)) if item is not None else None


#: More data extents than this: one walk over their key range instead of a lookup each.
LOOKUPS_MAX = 64


def data_extent_refs(reader: TreeReader, bytenrs: Iterable[int], where: str = "extent tree") -> dict[int, int]:
    """``refs`` of the extent items starting at ``bytenrs`` (addresses without one are left out).

    Damage (no extent tree, an unreadable block, a bad item) is a warning in
    ``reader.warnings``: the counts that could be read are returned.
    """
    wanted = sorted({int(b) for b in bytenrs if b})
    out: dict[int, int] = {}
    if not wanted:
        return out

    def warn(exc: CorruptionError) -> None:
        reader.warnings.add(f"reference counts not read: {exc}", where, tree=ObjectId.EXTENT_TREE)

    refs_of = ExtentItem.LAYOUT
    try:
        root = find_root(reader, ObjectId.EXTENT_TREE)
        if len(wanted) > LOOKUPS_MAX:
            want = set(wanted)
            low, high = (wanted[0], 0, 0), (wanted[-1], 255, 2**64 - 1)
            for (objectid, item_type, _), data in iter_items(reader, root, low, high):
                if item_type == ItemType.EXTENT_ITEM and objectid in want and len(data) >= refs_of.size:
                    out[objectid] = refs_of.unpack_from(data)[0]  # refs alone: no backref is parsed here
            return out
    except CorruptionError as exc:
        warn(exc)
        return out
    for bytenr in wanted:
        try:
            record = lookup_extent(reader, root, bytenr)
        except CorruptionError as exc:
            warn(exc)
            continue
        if record is not None:
            out[bytenr] = record.refs
    return out
