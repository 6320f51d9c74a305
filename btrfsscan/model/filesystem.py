"""The filesystem as the model layer sees it: volume, trees, subvolumes.

``open_filesystems`` opens the inputs, groups them by fsid and loads each
filesystem's chunk tree; everything else (root tree, subvolumes, fs trees,
extent tree) is read lazily on first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cached_property

from ..errors import CorruptionError, Warnings
from ..format.constants import ItemType, ObjectId
from ..tree.chunk_tree import load_chunk_tree
from ..tree.reader import TreeReader
from ..tree.walk import TreeRoot, last_item
from ..volumes.volume import Volume, open_volume, open_volumes
from . import items
from .namespace import Namespace, dir_path
from .subvolumes import SubvolumeSet, read_subvolumes


class Filesystem:
    """One btrfs filesystem opened read-only from its devices (or a dump)."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self.warnings: Warnings = volume.warnings
        if volume.bootstrap_error:
            raise CorruptionError(volume.bootstrap_error)
        self.reader = TreeReader(volume, self.warnings)
        load_chunk_tree(self.reader)

    @property
    def superblock(self):
        return self.volume.superblock

    @property
    def is_metadump(self) -> bool:
        return self.volume.metadump is not None

    @property
    def partial(self) -> bool:
        return bool(self.warnings)

    @cached_property
    def root_tree(self) -> TreeRoot:
        sb = self.superblock
        return TreeRoot(ObjectId.ROOT_TREE, sb.root, sb.root_level, sb.generation)

    @cached_property
    def subvolumes(self) -> SubvolumeSet:
        return read_subvolumes(self.reader, self.root_tree, self.warnings,
                               lambda sub, dirid: dir_path(self.reader, sub, dirid))

    @cached_property
    def namespace(self) -> Namespace:
        return Namespace(self.reader, self.subvolumes)

    def tree_root(self, tree_id: int) -> TreeRoot:
        """Where tree ``tree_id`` starts, from its ROOT_ITEM in the root tree."""
        found = last_item(self.reader, self.root_tree, tree_id, ItemType.ROOT_ITEM)
        if found is None:
            raise CorruptionError(f"no ROOT_ITEM for tree {ObjectId.describe(tree_id)} in the root tree")
        _, data = found
        root = items.parse_root_item(data, f"ROOT_ITEM of tree {tree_id}")
        return TreeRoot(tree_id, root.bytenr, root.level, root.generation)

    def close(self) -> None:
        self.volume.close()


def open_filesystems(paths: Iterable[str | os.PathLike], super_copy: int | None = None) -> list[Filesystem]:
    """Every filesystem found among ``paths`` (grouped by fsid); ``super_copy`` as ``open_volumes``."""
    volumes = open_volumes(paths, super_copy)
    try:
        return [Filesystem(volume) for volume in volumes]
    except BaseException:
        for volume in volumes:  # an unreadable chunk tree leaves no image open
            volume.close()
        raise


def open_filesystem(paths: Iterable[str | os.PathLike], super_copy: int | None = None) -> Filesystem:
    """The one filesystem ``paths`` belong to; an error if they span several."""
    volume = open_volume(paths, super_copy)
    try:
        return Filesystem(volume)
    except BaseException:
        volume.close()  # an unreadable chunk tree leaves no image open
        raise
