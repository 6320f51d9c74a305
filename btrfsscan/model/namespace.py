"""Names: directory listings, inode paths and path lookup across subvolumes.

Paths start at the top-level subvolume (tree 5) as the kernel shows them
when it is mounted: a directory entry whose location is a ROOT_ITEM key leads
into that subvolume only when the subvolume's ROOT_BACKREF says it is linked
there; otherwise (the entry a snapshot keeps for a nested subvolume that was
not snapshotted) it is an empty directory.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BtrfsScanError, CorruptionError
from ..format.checksum import name_hash
from ..format.constants import FileType, ItemType, ObjectId
from ..format.items import DirItem, InodeItem, parse_item
from ..format.plausibility import Limits, finding, item_problem
from ..tree.reader import TreeReader
from ..tree.walk import iter_items, iter_located_items, warn_item
from .subvolumes import Subvolume, SubvolumeSet

ROOT_DIR_INO = ObjectId.FIRST_FREE  # inode 256 is every subvolume's root directory
EMPTY_SUBVOL_DIR_INO = 2  # what the kernel shows for a nested subvolume a snapshot did not take
MAX_PATH_DEPTH = 4096


class PathNotFound(BtrfsScanError):
    """A path component does not exist."""


@dataclass(frozen=True)
class Entry:
    """A resolved directory entry: the inode it names and in which subvolume."""

    subvol: int
    ino: int
    name: str
    type: int
    subvol_link: int | None = None  # set when the entry is a subvolume's root

    @property
    def is_dir(self) -> bool:
        return self.type == FileType.DIR


def _items(reader: TreeReader, sub: Subvolume, objectid: int, item_type: int):
    return _range(reader, sub, (objectid, item_type, 0), (objectid, item_type, 2**64 - 1))


def _range(reader: TreeReader, sub: Subvolume, min_key, max_key):
    """Items of one objectid: replayed from the log when the replay changed it, else committed."""
    if sub.replayed is not None and sub.replayed.covers(min_key[0]):
        return sub.replayed.items(min_key, max_key)
    return iter_items(reader, sub.root, min_key, max_key)


def parent_ref(reader: TreeReader, sub: Subvolume, ino: int) -> tuple[int, bytes] | None:
    """(parent dir, name) of one link of ``ino``: INODE_REF first, then INODE_EXTREF."""
    where = f"subvolume {sub.id} inode {ino}"
    for item_type in (ItemType.INODE_REF, ItemType.INODE_EXTREF):
        for key, data in _items(reader, sub, ino, item_type):
            for ref in parse_item(key, data, where):
                return ref.parent, ref.name
    return None


def dir_path(reader: TreeReader, sub: Subvolume, ino: int) -> str | None:
    """Path of inode ``ino`` relative to the root of ``sub`` ('' for the root), None if unresolvable."""
    parts: list[str] = []
    for _ in range(MAX_PATH_DEPTH):
        if ino == ROOT_DIR_INO:
            return "/".join(reversed(parts))
        try:
            ref = parent_ref(reader, sub, ino)
        except CorruptionError:
            return None
        if ref is None or ref[0] == ino:
            return None
        ino = ref[0]
        parts.append(ref[1].decode("utf-8", "surrogateescape"))
    return None


class Namespace:
    """Directory and path operations over the fs trees of a SubvolumeSet."""

    def __init__(self, reader: TreeReader, subvols: SubvolumeSet) -> None:
        self.reader = reader
        self.subvols = subvols
        self.limits = Limits.of(reader.volume.superblock)

    def inode(self, sub: Subvolume, ino: int) -> InodeItem | None:
        """The inode's INODE_ITEM; None when it has none, or (a damage finding) one the bulk scan would skip."""
        for key, data in self._plausible(sub, ino, ItemType.INODE_ITEM):
            return parse_item(key, data, f"subvolume {sub.id} inode {ino}")
        return None

    def _plausible(self, sub: Subvolume, objectid: int, item_type: int):
        """Items of one objectid and type read alone, skipping those that break a plausibility rule with the
        same finding as the bulk scan (``plausibility.item_problem``)."""
        low, high = (objectid, item_type, 0), (objectid, item_type, 2**64 - 1)
        if sub.replayed is not None and sub.replayed.covers(objectid):
            located = ((None, None, key, data) for key, data in sub.replayed.items(low, high))
        else:
            located = iter_located_items(self.reader, sub.root, low, high)
        for leaf, slot, key, data in located:
            what = item_problem(key, data, self.limits)
            if what is None:
                yield key, data
            elif leaf is None:
                self.reader.warnings.add(finding(key, what, None), f"subvolume {sub.id}", tree=sub.id)
            else:
                warn_item(self.reader.warnings, sub.id, leaf, finding(key, what, slot))

    def first_extent(self, sub: Subvolume, ino: int) -> bytes | None:
        """The EXTENT_DATA item at file offset 0 of ``ino`` (where an inline extent lives), None when it has
        none or one the bulk scan would skip."""
        for key, data in self._plausible(sub, ino, ItemType.EXTENT_DATA):
            return data if key[2] == 0 else None
        return None

    def xattr_names(self, sub: Subvolume, ino: int) -> list[str]:
        """Names of the extended attributes of ``ino`` (its XATTR_ITEMs), sorted."""
        names = []
        where = f"subvolume {sub.id} inode {ino} xattrs"
        for key, data in _items(self.reader, sub, ino, ItemType.XATTR_ITEM):
            names.extend(item.name.decode("utf-8", "surrogateescape") for item in parse_item(key, data, where))
        return sorted(names)

    def path_of(self, subvol_id: int, ino: int) -> str | None:
        """Full path from the top level of inode ``ino`` in subvolume ``subvol_id``."""
        sub = self.subvols.get(subvol_id)
        if sub is None:
            return None
        rel = dir_path(self.reader, sub, ino)
        if rel is None:
            return None
        return "/".join(p for p in (sub.path, rel) if p)

    def list_dir(self, sub: Subvolume, dir_ino: int) -> list[Entry]:
        """Entries of a directory in index order, subvolume links resolved."""
        entries = []
        where = f"subvolume {sub.id} directory {dir_ino}"
        for key, data in _items(self.reader, sub, dir_ino, ItemType.DIR_INDEX):
            for item in parse_item(key, data, where):
                entries.append(self._entry(sub, dir_ino, item))
        return entries

    def _entry(self, sub: Subvolume, dir_ino: int, item: DirItem) -> Entry:
        oid, ktype, _ = item.location
        return self.resolve(sub, dir_ino, item.name.decode("utf-8", "surrogateescape"), oid, ktype, item.type)

    def resolve(self, sub: Subvolume, dir_ino: int, name: str, oid: int, ktype: int, ftype: int) -> Entry:
        """The entry ``name`` of directory ``dir_ino`` whose location key is (``oid``, ``ktype``): a ROOT_ITEM
        leads into subvolume ``oid`` only when its ROOT_BACKREF links it exactly there."""
        if ktype == ItemType.ROOT_ITEM:
            child = self.subvols.get(oid)
            linked = (
                child is not None and not child.deleted and child.parent_id == sub.id
                and child.dirid == dir_ino and child.name == name
            )
            if linked:
                return Entry(oid, int(ROOT_DIR_INO), name, FileType.DIR, subvol_link=oid)
            # A nested subvolume a snapshot did not take: an empty directory placeholder.
            return Entry(sub.id, EMPTY_SUBVOL_DIR_INO, name, FileType.DIR)
        return Entry(sub.id, oid, name, ftype)

    def child(self, sub: Subvolume, dir_ino: int, name: str) -> Entry | None:
        """The entry ``name`` of a directory, found by its DIR_ITEM name hash."""
        raw = name.encode("utf-8", "surrogateescape")
        key = (dir_ino, ItemType.DIR_ITEM, name_hash(raw))
        where = f"subvolume {sub.id} directory {dir_ino}"
        for found, data in _range(self.reader, sub, key, key):
            for item in parse_item(found, data, where):
                if item.name == raw:
                    return self._entry(sub, dir_ino, item)
        return None

    def lookup(self, path: str, start: Subvolume) -> Entry:
        """Resolve ``path`` (relative to the root of ``start``), crossing into subvolumes."""
        entry = Entry(start.id, ROOT_DIR_INO, "", FileType.DIR)
        walked: list[str] = []
        for part in [p for p in path.split("/") if p and p != "."]:
            if not entry.is_dir:
                raise PathNotFound(f"{'/'.join(walked)} is not a directory")
            sub = self.subvols.get(entry.subvol)
            found = None
            if entry.ino != EMPTY_SUBVOL_DIR_INO and sub is not None:
                found = self.child(sub, entry.ino, part)
            walked.append(part)
            if found is None:
                raise PathNotFound(f"no such file or directory: {'/'.join(walked)}")
            entry = found
        return entry
