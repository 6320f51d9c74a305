"""The filesystem as the model layer sees it: volume, trees, subvolumes.

``open_filesystems`` opens the inputs, groups them by fsid and assembles each
filesystem's volume (``tree.assemble``: every chunk and device); everything
else (root tree, subvolumes, fs trees, extent tree) is read lazily on first
use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cached_property

from ..errors import Warnings
from ..format.constants import ObjectId
from ..tree.assemble import open_volume, open_volumes
from ..tree.reader import TreeReader
from ..tree.roots import find_root, root_in_use, root_tree
from ..tree.walk import TreeRoot
from ..volumes.superblock import Superblock
from ..volumes.volume import Volume
from .extent_tree import data_extent_refs
from .log_replay import LogReplay, replay_log
from .namespace import Namespace, dir_path
from .subvolumes import SubvolumeSet, assign_paths, read_subvolumes


class Filesystem:
    """One btrfs filesystem opened read-only from its devices (or a dump)."""

    def __init__(self, volume: Volume, *, log_replay: bool = True) -> None:
        """``log_replay=False`` shows the last committed transaction even when the superblock points at a log."""
        self.volume = volume
        self.log_replay = log_replay
        self.log = LogReplay(present=bool(volume.superblock.log_root), replayed=False)
        self.warnings: Warnings = volume.warnings
        self.reader = TreeReader(volume, self.warnings)

    @property
    def superblock(self) -> Superblock:
        return self.volume.superblock

    @property
    def is_metadump(self) -> bool:
        return self.volume.metadump is not None

    @property
    def partial(self) -> bool:
        return bool(self.warnings)

    @property
    def root_tree(self) -> TreeRoot:
        """Where the root tree starts: the superblock's root, or the backup slot standing in for it when that
        is unusable (``tree.roots``, the choice every tree read through ``reader`` follows)."""
        return root_tree(self.reader)

    @property
    def uses_backup_root(self) -> bool:
        """Whether the root tree is read from a backup slot: an older transaction than the superblock's."""
        return root_in_use(self.reader, ObjectId.ROOT_TREE).slot is not None

    @cached_property
    def subvolumes(self) -> SubvolumeSet:
        """Every subvolume; with a log tree (and ``log_replay``, and the superblock's own root tree), each
        carrying what the replay changed, and paths through the replayed names (a renamed directory moves the
        subvolumes below it)."""
        def resolve(sub, dirid):
            return dir_path(self.reader, sub, dirid)

        subvols = read_subvolumes(self.reader, self.root_tree, self.warnings, resolve)
        if self.log.present and self.uses_backup_root:
            # As the kernel clears log_root when it mounts a backup root: the log continues a newer transaction.
            self.log = LogReplay(present=True, replayed=False, left_out="a backup root is in use, and the log "
                                 "continues the superblock's newer transaction")
        elif self.log.present and self.log_replay:
            self.log = replay_log(self.reader, subvols, self.warnings)
            if self.log.subvolumes:
                assign_paths(subvols, self.warnings, resolve)
        return subvols

    def data_extent_refs(self, bytenrs: Iterable[int], where: str = "extent tree") -> dict[int, int]:
        """``refs`` of the data extents starting at ``bytenrs`` as the kernel counts them after mounting: the
        extent tree's, changed by what the log replay adds and drops (``extent_tree.data_extent_refs``)."""
        bytenrs = list(bytenrs)
        refs = data_extent_refs(self.reader, bytenrs, where)
        self.subvolumes  # the replay runs with them
        if not self.log.subvolumes:
            return refs
        return self.log.adjust_refs(refs, bytenrs, self.warnings, where)

    @property
    def notes(self) -> list[str]:
        """Remarks on what is shown that are not warnings (the log replay)."""
        if self.log.present:
            self.subvolumes  # the replay runs with the subvolumes
        note = self.log.note()
        return [note] if note else []

    @cached_property
    def namespace(self) -> Namespace:
        return Namespace(self.reader, self.subvolumes)

    def tree_root(self, tree_id: int) -> TreeRoot:
        """Where tree ``tree_id`` starts, from its ROOT_ITEM in the root tree."""
        return find_root(self.reader, tree_id)

    def close(self) -> None:
        self.volume.close()


def open_filesystems(paths: Iterable[str | os.PathLike], super_copy: int | None = None, *,
                     log_replay: bool = True) -> list[Filesystem]:
    """Every filesystem found among ``paths`` (grouped by fsid); ``super_copy`` as ``open_volumes``."""
    return [Filesystem(volume, log_replay=log_replay) for volume in open_volumes(paths, super_copy)]


def open_filesystem(paths: Iterable[str | os.PathLike], super_copy: int | None = None, *,
                    log_replay: bool = True, mounted_ok: bool = False) -> Filesystem:
    """The one filesystem ``paths`` belong to; an error if they span several (``mounted_ok``: a device of a
    mounted filesystem is expected, see ``volumes.volume.find_device_sets``)."""
    return Filesystem(open_volume(paths, super_copy, mounted_ok=mounted_ok), log_replay=log_replay)
