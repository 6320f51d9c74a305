"""Block groups: how much of each chunk is allocated.

A BLOCK_GROUP_ITEM (chunk logical start, BLOCK_GROUP_ITEM, chunk length)
lives in the extent tree, or in the block group tree when the filesystem has
compat_ro BLOCK_GROUP_TREE. While a conversion is half done (superblock flag
CHANGING_BG_TREE) items sit in both trees, so both are searched. Items are
looked up per chunk by key, so the cost is a search per chunk, not a walk of
the (large) extent tree.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BtrfsScanError, CorruptionError
from ..format.constants import CompatRoFlag, ItemType, ObjectId, SuperFlag
from ..format.items import parse_item
from ..tree.reader import TreeReader
from ..tree.roots import find_root
from ..tree.walk import TreeRoot, find_item


@dataclass(frozen=True)
class BlockGroup:
    """The BLOCK_GROUP_ITEM of one chunk: ``used`` bytes of it, its ``flags``, the tree it was found in."""

    logical: int
    length: int
    used: int
    flags: int
    tree: int


def _trees(reader: TreeReader) -> list[TreeRoot]:
    sb = reader.volume.superblock
    has_bgt = bool(sb.compat_ro_flags & CompatRoFlag.BLOCK_GROUP_TREE)
    converting = bool(sb.flags & SuperFlag.CHANGING_BG_TREE)
    ids = [ObjectId.BLOCK_GROUP_TREE] if has_bgt else [ObjectId.EXTENT_TREE]
    if converting:
        ids = [ObjectId.BLOCK_GROUP_TREE, ObjectId.EXTENT_TREE]
    roots = []
    for tree_id in ids:
        try:
            roots.append(find_root(reader, tree_id))
        except BtrfsScanError as exc:
            reader.warnings.add(f"block groups: {exc}", "root tree", tree=tree_id)
    return roots


def read_block_groups(reader: TreeReader) -> dict[int, BlockGroup]:
    """Block group of every chunk that has one, by chunk logical start; problems are warnings."""
    roots = _trees(reader)
    warnings = reader.warnings
    groups: dict[int, BlockGroup] = {}
    for chunk in reader.volume.chunk_map:
        key = (chunk.logical, ItemType.BLOCK_GROUP_ITEM, chunk.length)
        for root in roots:
            where = f"tree {root.name}"
            try:
                found = find_item(reader, root, key)
            except BtrfsScanError as exc:
                warnings.add(f"block group of chunk {chunk.logical} unreadable: {exc}", where, tree=root.tree_id)
                continue
            if found is None:
                continue
            leaf, slot, data = found
            where = f"tree {root.name} block {leaf} slot {slot}"
            try:
                item = parse_item(key, data, where)
            except CorruptionError as exc:
                warnings.add(f"{exc}, skipped", where, tree=root.tree_id, bytenr=leaf)
                break
            groups[chunk.logical] = BlockGroup(chunk.logical, chunk.length, item.used, item.flags, root.tree_id)
            break
        else:
            if roots:
                warnings.add(f"chunk {chunk.logical} has no BLOCK_GROUP_ITEM", "block groups")
    return groups
