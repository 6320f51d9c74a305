"""Walking a tree in key order, whole or over a key range.

The walk is iterative (an explicit stack never deeper than BTRFS_MAX_LEVEL)
and guarded: a child must be one level below its parent, and a block met
twice in one walk (a cycle, or a pointer shared inside one tree) is skipped.
A damaged subtree is skipped with a warning naming the tree and block; the
walk goes on, so a result can be partial but never hangs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Container, Iterator
from dataclasses import dataclass

from ..errors import CorruptionError
from ..format.constants import ObjectId
from .block import TreeBlock
from .reader import TreeReader

Key = tuple[int, int, int]
MIN_KEY: Key = (0, 0, 0)
MAX_KEY: Key = (2**64 - 1, 255, 2**64 - 1)


@dataclass(frozen=True)
class TreeRoot:
    """Where a tree starts: its id (owner objectid), root block and level."""

    tree_id: int
    bytenr: int
    level: int
    generation: int | None = None

    @property
    def name(self) -> str:
        return ObjectId.describe(self.tree_id)


def iter_leaves(reader: TreeReader, root: TreeRoot, min_key: Key = MIN_KEY, max_key: Key = MAX_KEY) -> Iterator[TreeBlock]:
    """Leaves of ``root`` that may hold keys in [min_key, max_key], in key order."""
    for _, leaf in iter_leaf_refs(reader, root, min_key, max_key):
        yield leaf


def iter_leaf_refs(reader: TreeReader, root: TreeRoot, min_key: Key = MIN_KEY, max_key: Key = MAX_KEY,
                   known: Container[int] = ()) -> Iterator[tuple[int, TreeBlock | None]]:
    """(bytenr, leaf) in key order; leaves whose bytenr is in ``known`` are not read (leaf None).

    ``known`` lets a caller that memoizes per-leaf results skip reading leaves
    it has already seen in another tree (snapshots share most leaves).
    """
    if root.level == 0 and root.bytenr in known:
        yield root.bytenr, None
        return
    top = reader.read(root.bytenr, level=root.level, generation=root.generation)
    seen = {top.bytenr}
    stack: list[tuple[TreeBlock, list[Key], int]] = []

    def enter(block: TreeBlock) -> TreeBlock | None:
        if block.level == 0:
            return block
        keys = block.keys()
        first = max(bisect_right(keys, min_key) - 1, 0)
        stack.append((block, keys, first))
        return None

    leaf = enter(top)
    if leaf is not None:
        yield leaf.bytenr, leaf
        return
    while stack:
        node, keys, slot = stack[-1]
        if slot >= len(keys) or keys[slot] > max_key:
            stack.pop()
            continue
        stack[-1] = (node, keys, slot + 1)
        child_ptr = int(node.ptrs["blockptr"][slot])
        child_gen = int(node.ptrs["generation"][slot])
        if child_ptr in seen:
            reader.warnings.add(
                f"tree {root.name}: block {child_ptr} is referenced twice (cycle or shared pointer), skipped",
                f"node {node.bytenr} slot {slot}", tree=root.tree_id, bytenr=child_ptr)
            continue
        seen.add(child_ptr)
        if node.level == 1 and child_ptr in known:
            yield child_ptr, None
            continue
        try:
            child = reader.read(child_ptr, level=node.level - 1, generation=child_gen)
        except CorruptionError as exc:
            reader.warnings.add(f"tree {root.name}: subtree skipped: {exc}", f"node {node.bytenr} slot {slot}",
                                tree=root.tree_id, bytenr=child_ptr)
            continue
        leaf = enter(child)
        if leaf is not None:
            yield leaf.bytenr, leaf


def iter_items(reader: TreeReader, root: TreeRoot, min_key: Key = MIN_KEY, max_key: Key = MAX_KEY) -> Iterator[tuple[Key, bytes]]:
    """(key, payload) of every item of ``root`` with min_key <= key <= max_key."""
    for leaf in iter_leaves(reader, root, min_key, max_key):
        keys = leaf.keys()
        for slot in range(bisect_left(keys, min_key), len(keys)):
            key = keys[slot]
            if key > max_key:
                return
            yield key, leaf.item_data(slot)


def find_item(reader: TreeReader, root: TreeRoot, key: Key) -> bytes | None:
    """Payload of the item with exactly ``key``, or None."""
    for found, data in iter_items(reader, root, key, key):
        return data
    return None


def last_item(reader: TreeReader, root: TreeRoot, objectid: int, item_type: int) -> tuple[Key, bytes] | None:
    """The item (objectid, item_type, largest offset), as ROOT_ITEM lookups need."""
    result = None
    for key, data in iter_items(reader, root, (objectid, item_type, 0), (objectid, item_type, 2**64 - 1)):
        result = (key, data)
    return result
