"""Whether FIEMAP flags a file's data extent SHARED: the kernel's rule, read from the committed trees.

``btrfs_is_data_extent_shared`` (fs/btrfs/backref.c), asked by fiemap for each
file extent item of inode I in subvolume R, decides in three steps:

1. The data extent's backrefs. An EXTENT_DATA_REF of another inode, or more
   than one distinct backref (EXTENT_DATA_REF keyed by root, inode and file
   offset minus extent offset; SHARED_DATA_REF keyed by its parent leaf):
   shared. Backrefs with equal keys merge, so the two ends of an extent whose
   middle was overwritten (bookends: one key, count 2) are not shared by
   themselves.
2. Otherwise an item written after R's last snapshot (its generation above
   the ROOT_ITEM's ``last_snapshot``) is not shared.
3. Otherwise the one backref decides: of another root, shared; else the
   leaves holding the items it stands for and every tree block above them up
   to R's root are looked at: a block with more than one reference, or
   referenced by another tree, is reached through a snapshot's shared
   subtree: shared.

The kernel remembers the answer for an extent the file references more than
once under one backref (``prev_extents_cache``): the first item, in file
order, decides for all of them. After a log replay the backrefs are those
the replay leaves (``LogReplay.data_backrefs``); items it supplied (no
committed leaf holds them) get steps 1 and 2 only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CorruptionError
from ..format.constants import FileExtentType, ItemType, ObjectId
from ..format.items import Backref, FileExtentItem, parse_item
from ..tree.block import Key, TreeBlock
from ..tree.roots import find_root
from ..tree.walk import TreeRoot, Visit, walk_tree
from .extent_tree import ExtentRecord, lookup_extent

if TYPE_CHECKING:
    from .filesystem import Filesystem

_MAX_OFFSET = 2**64 - 1


@dataclass(frozen=True)
class CommittedItem:
    """A data EXTENT_DATA item of the inode as its subvolume's tree holds it."""

    file_offset: int
    disk_bytenr: int
    backref_offset: int  # file_offset - offset, the key of its EXTENT_DATA_REF
    generation: int
    leaf_owner: int
    path: tuple[int, ...]  # tree blocks from the root down to the leaf holding the item


def committed_items(fs: Filesystem, subvol: int, ino: int) -> list[CommittedItem]:
    """Every data extent item of inode ``ino`` in subvolume ``subvol``'s committed tree, in file order."""
    sub = fs.subvolumes.get(subvol)
    if sub is None:
        return []
    out: list[CommittedItem] = []
    stack: list[int] = []
    low, high = (ino, ItemType.EXTENT_DATA, 0), (ino, ItemType.EXTENT_DATA, _MAX_OFFSET)
    try:
        for visit, bytenr, block in walk_tree(fs.reader, sub.root, low, high):
            if visit is Visit.ENTER:
                stack.append(bytenr)
            elif visit is Visit.EXIT:
                stack.pop()
            elif visit is Visit.LEAF:
                out.extend(_leaf_items(block, (*stack, bytenr), low, high))
    except CorruptionError as exc:
        fs.warnings.add(f"SHARED flags from backrefs alone: {exc}", f"subvolume {subvol} inode {ino}", tree=subvol)
    return out


def _leaf_items(block: TreeBlock, path: tuple[int, ...], low: Key, high: Key) -> Iterable[CommittedItem]:
    for slot, key in enumerate(block.keys()):
        if not low <= key <= high:
            continue
        try:
            item = parse_item(key, block.item_data(slot), f"leaf {block.bytenr} slot {slot}")
        except CorruptionError:
            continue  # the fs-tree scan warns about the same item
        if isinstance(item, FileExtentItem) and item.type != FileExtentType.INLINE and item.disk_bytenr:
            yield CommittedItem(key[2], item.disk_bytenr, item.data_ref_offset(key[2]), item.generation,
                                block.owner, path)


class SharedCheck:
    """The kernel's SHARED rule for the extents of one inode, with the extent-tree lookups memoized."""

    def __init__(self, fs: Filesystem, subvol: int, ino: int) -> None:
        self.fs, self.subvol, self.ino = fs, subvol, ino
        sub = fs.subvolumes.get(subvol)
        self.last_snapshot = sub.root_item.last_snapshot if sub is not None else 0
        self._items: dict[int, list[CommittedItem]] = {}
        for item in committed_items(fs, subvol, ino):
            self._items.setdefault(item.disk_bytenr, []).append(item)
        self._extent_root: TreeRoot | CorruptionError | None = None
        self._blocks: dict[int, bool] = {}
        self._decided: dict[int, bool] = {}

    def shared(self, file_offset: int, disk_bytenr: int) -> bool:
        """FIEMAP's SHARED for the item at ``file_offset`` referencing the data extent at ``disk_bytenr``."""
        if disk_bytenr in self._decided:
            return self._decided[disk_bytenr]
        backrefs = self._backrefs(disk_bytenr)
        if backrefs is None:
            return False
        verdict, single = _by_backrefs(backrefs, self.ino)
        if verdict is not None:
            return verdict
        items = self._items.get(disk_bytenr, [])
        item = next((i for i in items if i.file_offset == file_offset), None)
        generation = item.generation if item is not None else _MAX_OFFSET
        answer = generation <= self.last_snapshot and self._through_snapshot(single, items)
        if single.type == ItemType.EXTENT_DATA_REF and single.root == self.subvol and single.count > 1:
            self._decided[disk_bytenr] = answer  # the kernel's prev_extents_cache
        return answer

    def _through_snapshot(self, ref: Backref, items: list[CommittedItem]) -> bool:
        """Step 3: the one backref is another tree's, or a block above the leaves of ``items`` (the inode's
        references to the extent) that it stands for is shared."""
        if ref.type == ItemType.EXTENT_DATA_REF:
            if ref.root != self.subvol:
                return True
            leaves = [i.path for i in items if i.backref_offset == ref.offset and i.leaf_owner == self.subvol]
        else:
            leaves = [i.path for i in items if i.path[-1] == ref.parent]
        return any(self._block_shared(bytenr) for path in set(leaves) for bytenr in reversed(path))

    def _block_shared(self, bytenr: int) -> bool:
        if bytenr not in self._blocks:
            record = self._lookup(bytenr)
            self._blocks[bytenr] = record is not None and (record.refs > 1 or any(
                ref.type == ItemType.TREE_BLOCK_REF and ref.root != self.subvol for ref in record.backrefs))
        return self._blocks[bytenr]

    def _backrefs(self, disk_bytenr: int) -> tuple[Backref, ...] | None:
        """The extent's backrefs, after the log replay where it ran (which may create the extent)."""
        record = self._lookup(disk_bytenr)
        committed = None if record is None else record.backrefs
        if not self.fs.log.replayed:
            return committed
        return self.fs.log.data_backrefs(disk_bytenr, committed or ())

    def _lookup(self, bytenr: int) -> ExtentRecord | None:
        """The extent item at ``bytenr`` with its backrefs; None (and one warning) when it cannot be read."""
        if self._extent_root is None:
            try:
                self._extent_root = find_root(self.fs.reader, ObjectId.EXTENT_TREE)
            except CorruptionError as exc:
                self._extent_root = exc
        if isinstance(self._extent_root, CorruptionError):
            self.fs.warnings.add(f"SHARED flags not known: {self._extent_root}", "extent tree",
                                 tree=ObjectId.EXTENT_TREE)
            return None
        try:
            return lookup_extent(self.fs.reader, self._extent_root, bytenr)
        except CorruptionError as exc:
            self.fs.warnings.add(f"SHARED flag not known: {exc}", f"extent {bytenr}", tree=ObjectId.EXTENT_TREE)
            return None


def _by_backrefs(backrefs: Iterable[Backref], ino: int) -> tuple[bool | None, Backref | None]:
    """Step 1: (True, None) when the data backrefs alone make the extent shared, else (None, the one backref);
    (False, None) when it has none."""
    keys: dict[tuple, Backref] = {}
    for ref in backrefs:
        if ref.type == ItemType.EXTENT_DATA_REF:
            if ref.objectid != ino:
                return True, None
            keys.setdefault((ref.root, ref.objectid, ref.offset), ref)
        elif ref.type == ItemType.SHARED_DATA_REF:
            keys.setdefault(("parent", ref.parent), ref)
        if len(keys) > 1:
            return True, None
    if not keys:
        return False, None
    return None, next(iter(keys.values()))
