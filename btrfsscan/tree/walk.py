"""Walking a tree in key order, whole or over a key range.

The walk is iterative (an explicit stack never deeper than BTRFS_MAX_LEVEL)
and guarded: a child must be one level below its parent, and a block met
twice in one walk (a cycle, or a pointer shared inside one tree) is skipped.
A damaged subtree is skipped with a warning naming the tree and block; the
walk goes on, so a result can be partial but never hangs.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, bisect_right
from collections.abc import Container, Iterator
from dataclasses import dataclass

from ..errors import CorruptionError, Warnings
from ..format.constants import ObjectId
from .block import Key, TreeBlock
from .owner import owner_problem
from .reader import TreeReader

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


def read_root(reader: TreeReader, root: TreeRoot) -> TreeBlock:
    """The root block of ``root``, checked as a tree's root: its level and generation as named, its own
    tree's (``owner_problem``); CorruptionError otherwise."""
    top = reader.read(root.bytenr, level=root.level, generation=root.generation)
    problem = owner_problem(root.tree_id, top.owner, is_root=True)
    if problem:
        raise CorruptionError(f"tree {root.name} root block {root.bytenr}: {problem}")
    return top


def iter_leaves(reader: TreeReader, root: TreeRoot, min_key: Key = MIN_KEY, max_key: Key = MAX_KEY) -> Iterator[TreeBlock]:
    """Leaves of ``root`` that may hold keys in [min_key, max_key], in key order."""
    for visit, _, block in walk_tree(reader, root, min_key, max_key):
        if visit is Visit.LEAF:
            yield block


class Visit(enum.Enum):
    """What ``walk_tree`` reports about a block."""

    ENTER = "enter"  # a node, before its children
    EXIT = "exit"  # the same node, after its children
    LEAF = "leaf"  # a leaf, read and checked
    KNOWN = "known"  # a block whose bytenr the caller already knows: not read, not descended


def walk_tree(reader: TreeReader, root: TreeRoot, min_key: Key = MIN_KEY, max_key: Key = MAX_KEY,
              known: Container[int] = ()) -> Iterator[tuple[Visit, int, TreeBlock | None]]:
    """Depth-first visits of the blocks of ``root`` that may hold keys in [min_key, max_key], in key order.

    Blocks (at any level) whose bytenr is in ``known`` are reported as KNOWN
    and neither read nor descended: callers that memoize per-block results
    (snapshots share most of their blocks) skip whole shared subtrees. A
    child that fails its checks is skipped with a warning; a block met twice
    in one walk is skipped too, so a cyclic tree cannot loop.
    """
    if root.bytenr in known:
        yield Visit.KNOWN, root.bytenr, None
        return
    top = read_root(reader, root)
    if top.level == 0:
        yield Visit.LEAF, top.bytenr, top
        return
    seen = {top.bytenr}
    top_keys = top.keys()
    stack: list[tuple[TreeBlock, list[Key], int]] = [(top, top_keys, max(bisect_right(top_keys, min_key) - 1, 0))]
    yield Visit.ENTER, top.bytenr, top
    while stack:
        node, keys, slot = stack[-1]
        if slot >= len(keys) or keys[slot] > max_key:
            stack.pop()
            yield Visit.EXIT, node.bytenr, node
            continue
        stack[-1] = (node, keys, slot + 1)
        child_ptr = int(node.ptrs["blockptr"][slot])
        child_gen = int(node.ptrs["generation"][slot])
        if child_ptr in seen:
            warn_twice(reader.warnings, root, node.bytenr, slot, child_ptr)
            continue
        seen.add(child_ptr)
        if child_ptr in known:
            yield Visit.KNOWN, child_ptr, None
            continue
        try:
            child = reader.read(child_ptr, level=node.level - 1, generation=child_gen, owner=root.tree_id,
                                first_key=keys[slot])
        except CorruptionError as exc:
            warn_skipped(reader.warnings, root, node.bytenr, slot, child_ptr, exc)
            continue
        if child.level == 0:
            yield Visit.LEAF, child_ptr, child
        else:
            child_keys = child.keys()
            stack.append((child, child_keys, max(bisect_right(child_keys, min_key) - 1, 0)))
            yield Visit.ENTER, child_ptr, child


def warn_twice(warnings: Warnings, root: TreeRoot, node: int, slot: int, child: int) -> None:
    """A pointer to a block already met in this walk: skipped, so a cycle cannot loop."""
    warnings.add(f"tree {root.name}: block {child} is referenced twice (cycle or shared pointer), skipped",
                 f"node {node} slot {slot}", tree=root.tree_id, bytenr=child)


def warn_skipped(warnings: Warnings, root: TreeRoot, node: int, slot: int, child: int, exc: CorruptionError) -> None:
    """A child no copy of which passes its checks: its subtree is left out."""
    warnings.add(f"tree {root.name}: subtree skipped: {exc}", f"node {node} slot {slot}", tree=root.tree_id,
                 bytenr=child)


def warn_item(warnings: Warnings, tree_id: int, leaf: int, what: str) -> None:
    """An item of a leaf that its parser skipped, located by the tree that first reached the leaf."""
    warnings.add(what, f"tree {tree_id} leaf {leaf}", tree=tree_id, bytenr=leaf)


def iter_located_items(reader: TreeReader, root: TreeRoot, min_key: Key = MIN_KEY,
                       max_key: Key = MAX_KEY) -> Iterator[tuple[int, int, Key, bytes]]:
    """(leaf bytenr, slot, key, payload) of every item of ``root`` with min_key <= key <= max_key: where
    each lies, for warnings that name block and slot."""
    for leaf in iter_leaves(reader, root, min_key, max_key):
        keys = leaf.keys()
        for slot in range(bisect_left(keys, min_key), len(keys)):
            key = keys[slot]
            if key > max_key:
                return
            yield leaf.bytenr, slot, key, leaf.item_data(slot)


def iter_items(reader: TreeReader, root: TreeRoot, min_key: Key = MIN_KEY, max_key: Key = MAX_KEY) -> Iterator[tuple[Key, bytes]]:
    """(key, payload) of every item of ``root`` with min_key <= key <= max_key."""
    for _, _, key, data in iter_located_items(reader, root, min_key, max_key):
        yield key, data


def find_item(reader: TreeReader, root: TreeRoot, key: Key) -> tuple[int, int, bytes] | None:
    """(leaf bytenr, slot, payload) of the item with exactly ``key``, or None."""
    for leaf, slot, _, data in iter_located_items(reader, root, key, key):
        return leaf, slot, data
    return None


def last_item(reader: TreeReader, root: TreeRoot, objectid: int, item_type: int) -> tuple[Key, bytes] | None:
    """The item (objectid, item_type, largest offset), as ROOT_ITEM lookups need."""
    result = None
    for key, data in iter_items(reader, root, (objectid, item_type, 0), (objectid, item_type, 2**64 - 1)):
        result = (key, data)
    return result
