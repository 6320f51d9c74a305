"""Block groups: how much of each chunk is allocated.

A BLOCK_GROUP_ITEM (chunk logical start, BLOCK_GROUP_ITEM, chunk length)
lives in the extent tree, or in the block group tree when the filesystem has
compat_ro BLOCK_GROUP_TREE. While a conversion is half done (superblock flag
CHANGING_BG_TREE) items sit in both trees, so both are searched. Items are
looked up per chunk by key, so the cost is a search per chunk, not a walk of
the (large) extent tree.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from ..errors import BtrfsScanError
from ..format import fastparse
from ..format.constants import CompatRoFlag, ItemType, ObjectId, SuperFlag
from ..tree.block import Key
from ..tree.walk import TreeRoot, iter_leaves
from .plausibility import block_group_problem

_BG = fastparse.BLOCK_GROUP_ITEM


@dataclass(frozen=True)
class BlockGroup:
    """BLOCK_GROUP_ITEM (logical, BLOCK_GROUP_ITEM, length): ``used`` bytes of the chunk, its ``flags``."""

    logical: int
    length: int
    used: int
    flags: int
    tree: int


def _trees(fs) -> list[TreeRoot]:
    sb = fs.superblock
    has_bgt = bool(sb.compat_ro_flags & CompatRoFlag.BLOCK_GROUP_TREE)
    converting = bool(sb.flags & SuperFlag.CHANGING_BG_TREE)
    ids = [ObjectId.BLOCK_GROUP_TREE] if has_bgt else [ObjectId.EXTENT_TREE]
    if converting:
        ids = [ObjectId.BLOCK_GROUP_TREE, ObjectId.EXTENT_TREE]
    roots = []
    for tree_id in ids:
        try:
            roots.append(fs.tree_root(tree_id))
        except BtrfsScanError as exc:
            fs.warnings.add(f"block groups: {exc}", "root tree", tree=tree_id)
    return roots


def _find(fs, root: TreeRoot, key: Key) -> tuple[int, int, bytes] | None:
    """(leaf, slot, payload) of the item with exactly ``key``, or None: where it lies, for the warnings."""
    for leaf in iter_leaves(fs.reader, root, key, key):
        keys = leaf.keys()
        slot = bisect_left(keys, key)
        if slot < len(keys) and keys[slot] == key:
            return leaf.bytenr, slot, leaf.item_data(slot)
    return None


def read_block_groups(fs) -> dict[int, BlockGroup]:
    """Block group of every chunk that has one, by chunk logical start."""
    roots = _trees(fs)
    groups: dict[int, BlockGroup] = {}
    for chunk in fs.volume.chunk_map:
        key = (chunk.logical, ItemType.BLOCK_GROUP_ITEM, chunk.length)
        for root in roots:
            try:
                found = _find(fs, root, key)
            except BtrfsScanError as exc:
                fs.warnings.add(f"block group of chunk {chunk.logical} unreadable: {exc}", f"tree {root.name}",
                                tree=root.tree_id)
                continue
            if found is None:
                continue
            leaf, slot, data = found
            where = f"tree {root.name} block {leaf} slot {slot}"
            if len(data) < _BG.size:
                fs.warnings.add(f"BLOCK_GROUP_ITEM of chunk {chunk.logical} is {len(data)} bytes, shorter than "
                                "btrfs_block_group_item", where, tree=root.tree_id, bytenr=leaf)
                break
            used, chunk_objectid, flags = _BG.unpack_from(data)
            problem = block_group_problem(chunk.length, used, chunk_objectid, flags)
            if problem:
                fs.warnings.add(f"BLOCK_GROUP_ITEM of chunk {chunk.logical} implausible: {problem}, skipped", where,
                                tree=root.tree_id, bytenr=leaf)
                break
            groups[chunk.logical] = BlockGroup(chunk.logical, chunk.length, used, flags, root.tree_id)
            break
        else:
            if roots:
                fs.warnings.add(f"chunk {chunk.logical} has no BLOCK_GROUP_ITEM", "block groups")
    return groups
