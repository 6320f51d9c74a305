"""Where each tree starts: the chunk tree and the root tree from the superblock, every other tree
from its ROOT_ITEM in the root tree (the kernel's ``btrfs_read_tree_root``)."""

from __future__ import annotations

from ..errors import CorruptionError
from ..format.constants import ItemType, ObjectId
from ..format.items import parse_item
from ..volumes.superblock import Superblock
from .reader import TreeReader
from .walk import TreeRoot, last_item


def chunk_root(superblock: Superblock) -> TreeRoot:
    return TreeRoot(ObjectId.CHUNK_TREE, superblock.chunk_root, superblock.chunk_root_level,
                    superblock.chunk_root_generation)


def root_tree(superblock: Superblock) -> TreeRoot:
    return TreeRoot(ObjectId.ROOT_TREE, superblock.root, superblock.root_level, superblock.generation)


def find_root(reader: TreeReader, tree_id: int) -> TreeRoot:
    """Where tree ``tree_id`` starts, from its ROOT_ITEM in the root tree."""
    found = last_item(reader, root_tree(reader.volume.superblock), tree_id, ItemType.ROOT_ITEM)
    if found is None:
        raise CorruptionError(f"no ROOT_ITEM for tree {ObjectId.describe(tree_id)} in the root tree")
    key, data = found
    root = parse_item(key, data, f"ROOT_ITEM of tree {tree_id}")
    return TreeRoot(tree_id, root.bytenr, root.level, root.generation)
