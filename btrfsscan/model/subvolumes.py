"""Subvolumes and snapshots, from the root tree.

Every fs tree has a ROOT_ITEM (where it starts, uuids, flags); ROOT_BACKREF
items say where a subvolume is linked (parent subvolume, directory, name);
ORPHAN_ITEMs in the root tree mark deleted subvolumes the cleaner has not
removed yet; the DIR_ITEM "default" in the root tree directory names the
default subvolume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import CorruptionError, Warnings
from ..format.constants import ItemType, ObjectId, RootFlag, is_fs_tree
from ..format.items import ZERO_UUID, DirItemList, OrphanItem, RootItem, RootRef, parse_item
from ..tree.reader import TreeReader
from ..format.plausibility import Limits, root_item_problem
from ..tree.walk import TreeRoot, iter_located_items

if TYPE_CHECKING:
    from .log_replay import ReplayedItems

__all__ = ["ZERO_UUID", "Subvolume", "SubvolumeSet", "assign_paths", "read_subvolumes"]


@dataclass
class Subvolume:
    """One subvolume or snapshot (tree id >= 256, or 5 for the top level)."""

    id: int
    root_item: RootItem
    parent_id: int | None = None
    dirid: int | None = None
    name: str = ""
    path: str = ""
    deleted: bool = False
    children: list[int] = field(default_factory=list)
    #: Items the log replay changed: they replace the committed items of their objectids.
    replayed: ReplayedItems | None = None

    @property
    def root(self) -> TreeRoot:
        return TreeRoot(self.id, self.root_item.bytenr, self.root_item.level, self.root_item.generation)

    @property
    def readonly(self) -> bool:
        return bool(self.root_item.flags & RootFlag.SUBVOL_RDONLY)

    @property
    def uuid(self) -> bytes:
        return self.root_item.uuid

    @property
    def parent_uuid(self) -> bytes:
        return self.root_item.parent_uuid


@dataclass
class SubvolumeSet:
    """All subvolumes by id, the default one, and lookups between them."""

    by_id: dict[int, Subvolume]
    default_id: int = ObjectId.FS_TREE

    def __iter__(self):
        return iter(sorted(self.by_id.values(), key=lambda s: s.id))

    def live(self) -> list[Subvolume]:
        """Subvolumes whose files are walked (deleted ones are left out)."""
        return [s for s in self if not s.deleted]

    def get(self, subvol_id: int) -> Subvolume | None:
        return self.by_id.get(subvol_id)

    def by_uuid(self, uuid: bytes) -> Subvolume | None:
        for sub in self.by_id.values():
            if sub.uuid == uuid and uuid != ZERO_UUID:
                return sub
        return None

    def by_path(self, path: str) -> Subvolume | None:
        path = path.strip("/")
        for sub in self.by_id.values():
            if sub.path == path and not sub.deleted:
                return sub
        return None


def _wanted(objectid: int, item_type: int) -> bool:
    """The root tree items that describe subvolumes: their ROOT_ITEMs and ROOT_BACKREFs, the orphans
    of deleted ones, and the root tree directory's entries (the "default" one)."""
    if item_type == ItemType.ROOT_ITEM:
        return is_fs_tree(objectid) and objectid < ObjectId.LAST_FREE
    if item_type == ItemType.ROOT_BACKREF:
        return is_fs_tree(objectid)
    if item_type == ItemType.ORPHAN_ITEM:
        return objectid == ObjectId.ORPHAN
    return item_type == ItemType.DIR_ITEM and objectid == ObjectId.ROOT_TREE_DIR


def read_subvolumes(reader: TreeReader, root_tree: TreeRoot, warnings: Warnings, dir_path) -> SubvolumeSet:
    """Every subvolume listed in the root tree.

    ``dir_path(subvol, dirid) -> str`` resolves a directory inside a subvolume
    (from the namespace module) so each subvolume gets its full path.
    """
    subvols: dict[int, Subvolume] = {}
    backrefs: dict[int, tuple[int, RootRef]] = {}
    orphans: set[int] = set()
    default_id = ObjectId.FS_TREE
    limits = Limits.of(reader.volume.superblock)
    for block, slot, key, data in iter_located_items(reader, root_tree):
        objectid, item_type, offset = key
        if not _wanted(objectid, item_type):
            continue
        where = (f"root tree block {block} slot {slot}, item ({ObjectId.describe(objectid)} "
                 f"{ItemType.describe(item_type)} {offset})")
        try:
            record = parse_item(key, data, where)
            if isinstance(record, RootItem):
                problem = root_item_problem(record.bytenr, record.level, record.generation, limits)
                if problem:
                    raise CorruptionError(f"ROOT_ITEM implausible: {problem} ({where})")
                subvols[objectid] = Subvolume(objectid, record)
            elif isinstance(record, RootRef):
                backrefs[objectid] = (offset, record)
            elif isinstance(record, OrphanItem):
                orphans.add(record.objectid)
            elif isinstance(record, DirItemList):
                for entry in record:
                    if entry.name == b"default":
                        default_id = entry.location[0]
        except CorruptionError as exc:
            # The parsers' messages already end with "(<where>)": not repeated.
            warnings.add(f"root tree item skipped: {exc}", tree=ObjectId.ROOT_TREE)
    for sub_id, sub in subvols.items():
        sub.deleted = sub_id in orphans or sub.root_item.refs == 0
        if sub_id in backrefs:
            parent_id, ref = backrefs[sub_id]
            sub.parent_id, sub.dirid = parent_id, ref.dirid
            sub.name = ref.name.decode("utf-8", "surrogateescape")
            if parent_id in subvols:
                subvols[parent_id].children.append(sub_id)
    result = SubvolumeSet(subvols, default_id)
    assign_paths(result, warnings, dir_path)
    return result


def assign_paths(subvols: SubvolumeSet, warnings: Warnings, dir_path) -> None:
    """Full path from the top level for every subvolume reachable from it (again after a log replay renamed
    directories)."""
    if ObjectId.FS_TREE not in subvols.by_id:
        warnings.add("the top-level subvolume (tree 5) has no ROOT_ITEM", "root tree", tree=ObjectId.ROOT_TREE)
        return
    stack = [(ObjectId.FS_TREE, "")]
    seen = set()
    while stack:
        sub_id, path = stack.pop()
        if sub_id in seen:
            continue
        seen.add(sub_id)
        sub = subvols.by_id[sub_id]
        sub.path = path
        for child_id in sub.children:
            child = subvols.by_id[child_id]
            if child.deleted:
                continue
            parent_dir = dir_path(sub, child.dirid)
            if parent_dir is None:
                warnings.add(f"subvolume {child_id}: directory {child.dirid} of subvolume {sub_id} not found",
                             "root tree", tree=ObjectId.ROOT_TREE)
                parent_dir = f"<dir {child.dirid}>"
            stack.append((child_id, "/".join(p for p in (path, parent_dir, child.name) if p)))
    for sub in subvols.by_id.values():
        if sub.id not in seen and not sub.deleted and sub.id >= ObjectId.FIRST_FREE:
            sub.path = f"<unlinked subvolume {sub.id}>"
