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

from ..errors import BtrfsScanError
from ..format import fastparse
from ..format.constants import CompatRoFlag, ItemType, ObjectId, SuperFlag
from ..tree.walk import TreeRoot, find_item

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


def read_block_groups(fs) -> dict[int, BlockGroup]:
    """Block group of every chunk that has one, by chunk logical start."""
    roots = _trees(fs)
    groups: dict[int, BlockGroup] = {}
    for chunk in fs.volume.chunk_map:
        key = (chunk.logical, ItemType.BLOCK_GROUP_ITEM, chunk.length)
        for root in roots:
            try:
                data = find_item(fs.reader, root, key)
            except BtrfsScanError as exc:
                fs.warnings.add(f"block group of chunk {chunk.logical} unreadable: {exc}", f"tree {root.name}",
                                tree=root.tree_id)
                continue
            if data is None:
                continue
            if len(data) < _BG.size:
                fs.warnings.add(f"BLOCK_GROUP_ITEM of chunk {chunk.logical} is {len(data)} bytes, shorter than "
                                "btrfs_block_group_item", f"tree {root.name}", tree=root.tree_id)
                break
            used, _chunk_objectid, flags = _BG.unpack_from(data)
            groups[chunk.logical] = BlockGroup(chunk.logical, chunk.length, used, flags, root.tree_id)
            break
        else:
            if roots:
                fs.warnings.add(f"chunk {chunk.logical} has no BLOCK_GROUP_ITEM", "block groups")
    return groups
