"""Listing the namespace: every entry with its inode facts and an extent summary.

``iter_listing`` walks the directory tree from the top-level subvolume (or
from any path) across subvolume and snapshot boundaries, the way ``find``
on a filesystem mounted with ``subvolid=5`` sees it: parents before their
children, a subvolume's root directory in place of the entry that links it,
and the empty placeholder directory (inode 2, mode 040755) that a snapshot
shows for a nested subvolume it did not take.

Each entry carries what ``ls -li`` shows (inode, mode, links, size) plus
two numbers from the file extents (``InodeSummary``):

* ``extents``: the EXTENT_DATA items of the inode that hold data: regular
  and preallocated extents with a disk address, and inline extents; holes
  (explicit ones, and the implicit ones of NO_HOLES filesystems) are not
  counted.
* ``shared_bytes``: the bytes of the inode's regular and preallocated extent
  references that another reference of the live fs trees also maps: another
  file, the same inode in a snapshot, another position of the same file
  (``byte_sharing``). The two ends of an overwritten extent (bookends) map
  disjoint bytes: not shared. It is the sum of ``shared_bytes`` over the
  extents ``filemap.build_file_map`` lists.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptionError
from ..format.constants import FileExtentType, FileType, ObjectId
from .byte_sharing import shared_bytes
from .namespace import EMPTY_SUBVOL_DIR_INO, ROOT_DIR_INO, Entry
from .tables import FileTables

if TYPE_CHECKING:
    from .filesystem import Filesystem

#: What the kernel shows for the placeholder of a nested subvolume in a snapshot.
PLACEHOLDER_MODE = stat.S_IFDIR | 0o755

TYPE_NAMES = {
    stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket", stat.S_IFCHR: "chardev", stat.S_IFBLK: "blockdev",
}
_DIR_TYPE_MODES = {
    FileType.REG_FILE: stat.S_IFREG, FileType.DIR: stat.S_IFDIR, FileType.CHRDEV: stat.S_IFCHR,
    FileType.BLKDEV: stat.S_IFBLK, FileType.FIFO: stat.S_IFIFO, FileType.SOCK: stat.S_IFSOCK,
    FileType.SYMLINK: stat.S_IFLNK,
}


def type_name(mode: int) -> str:
    """``file``, ``dir``, ``symlink``, ``fifo``, ``socket``, ``chardev``, ``blockdev`` or ``unknown``."""
    return TYPE_NAMES.get(stat.S_IFMT(mode), "unknown")


@dataclass(frozen=True)
class Listed:
    """One entry of a listing. ``path`` is from the top level ("." for its root)."""

    path: str
    name: str
    subvolume: int
    inode: int
    type: str
    mode: int
    nlink: int
    size: int
    extents: int
    shared_bytes: int
    depth: int = 0
    subvol_root: bool = False


class InodeSummary:
    """Per-inode facts of every inode in ``tables``: mode, links, size, extent count, shared bytes."""

    def __init__(self, tables: FileTables, only: Iterable[tuple[int, int]] | None = None) -> None:
        """``only``: the (subvolume, inode) pairs that will be asked about (default: every inode).

        Shared bytes always count the references of every fs tree in
        ``tables``; ``only`` just limits the per-inode sums.
        """
        self.tables = tables
        inodes = tables.inodes
        wanted = None if only is None else set(only)
        self._inodes = {
            (s, i): (m, n, z)
            for s, i, m, n, z in zip(inodes["subvol"].tolist(), inodes["ino"].tolist(), inodes["mode"].tolist(),
                                     inodes["nlink"].tolist(), inodes["size"].tolist())
            if wanted is None or (s, i) in wanted
        }
        all_ext = tables.extents
        shared = shared_bytes(all_ext)
        ext = all_ext
        if wanted is not None:
            rows = np.array([(s, i) in wanted for s, i in zip(all_ext["subvol"].tolist(), all_ext["ino"].tolist())],
                            dtype=bool)
            ext, shared = (all_ext[rows], shared[rows]) if len(rows) else (all_ext, shared)
        inline = ext["type"] == FileExtentType.INLINE
        data = ~inline & (ext["disk_bytenr"] != 0)
        keys = np.empty(len(ext), dtype=[("s", "<u8"), ("i", "<u8")])
        keys["s"], keys["i"] = ext["subvol"], ext["ino"]
        groups, inverse = np.unique(keys, return_inverse=True)
        n_extents = np.zeros(len(groups), np.int64)
        np.add.at(n_extents, inverse, (inline | data).astype(np.int64))
        per_inode_shared = np.zeros(len(groups), np.uint64)
        np.add.at(per_inode_shared, inverse, shared)
        self._extents = {
            (s, i): (n, b)
            for s, i, n, b in zip(groups["s"].tolist(), groups["i"].tolist(), n_extents.tolist(), per_inode_shared.tolist())
        }

    def inode(self, subvol: int, ino: int) -> tuple[int, int, int] | None:
        """(mode, nlink, size) from the INODE_ITEM, None if the inode has none."""
        return self._inodes.get((subvol, ino))

    def extents(self, subvol: int, ino: int) -> tuple[int, int]:
        """(extent count, shared bytes) of an inode."""
        return self._extents.get((subvol, ino), (0, 0))


def _name_key(entry: Entry) -> bytes:
    return entry.name.encode("utf-8", "surrogateescape")


class Lister:
    """Listings over the namespace of ``fs`` with the facts of ``summary``."""

    def __init__(self, fs: Filesystem, summary: InodeSummary | None = None) -> None:
        """``summary`` is needed by ``describe``/``iter_listing``, not by ``children``."""
        self.fs = fs
        self.ns = fs.namespace
        self.summary = summary

    def root_entry(self) -> Entry:
        return Entry(ObjectId.FS_TREE, ROOT_DIR_INO, "", FileType.DIR, subvol_link=ObjectId.FS_TREE)

    def describe(self, entry: Entry, path: str, depth: int = 0) -> Listed:
        """The listing record of one resolved entry."""
        name = entry.name or path.rsplit("/", 1)[-1]
        is_root = entry.ino == ROOT_DIR_INO
        if entry.ino == EMPTY_SUBVOL_DIR_INO and entry.subvol_link is None:
            return Listed(path, name, entry.subvol, entry.ino, "dir", PLACEHOLDER_MODE, 1, 0, 0, 0, depth)
        facts = self.summary.inode(entry.subvol, entry.ino)
        if facts is None:
            self.fs.warnings.add(f"{path}: inode {entry.ino} has no INODE_ITEM (shown with mode and size 0)",
                                 f"subvolume {entry.subvol}", tree=entry.subvol)
            mode = _DIR_TYPE_MODES.get(entry.type, 0)
            return Listed(path, name, entry.subvol, entry.ino, type_name(mode) if mode else "unknown", mode, 0, 0,
                          0, 0, depth, is_root)
        mode, nlink, size = facts
        n_extents, shared_bytes = self.summary.extents(entry.subvol, entry.ino)
        return Listed(path, name, entry.subvol, entry.ino, type_name(mode), mode, nlink, size, n_extents,
                      shared_bytes, depth, is_root)

    def children(self, entry: Entry, sort: bool = False) -> list[Entry]:
        """Entries of a directory (index order, or by name bytes with ``sort``); none for a placeholder."""
        if entry.ino == EMPTY_SUBVOL_DIR_INO and entry.subvol_link is None:
            return []
        sub = self.fs.subvolumes.get(entry.subvol)
        if sub is None:
            return []
        try:
            found = self.ns.list_dir(sub, entry.ino)
        except CorruptionError as exc:
            self.fs.warnings.add(f"directory {entry.ino} of subvolume {entry.subvol} listed in part: {exc}",
                                 f"subvolume {entry.subvol}", tree=entry.subvol)
            return []
        return sorted(found, key=_name_key) if sort else found

    def iter_listing(self, start: Entry | None = None, start_path: str = ".", *, recursive: bool = True,
                     include_start: bool = True, sort: bool = False) -> Iterator[Listed]:
        """Entries from ``start`` (the top-level root by default), parents before children.

        ``recursive=False`` lists ``start`` and its direct entries only;
        ``include_start=False`` leaves ``start`` itself out. Children come in
        directory index order (what ``find`` shows) or, with ``sort``, by the
        bytes of their names (what ``ls`` shows).
        """
        start = start or self.root_entry()
        stack: list[tuple[Entry, str, int]] = [(start, start_path or ".", 0)]
        seen: set[tuple[int, int]] = set()
        while stack:
            entry, path, depth = stack.pop()
            record = self.describe(entry, path, depth)
            if depth > 0 or include_start:
                yield record
            if record.type != "dir" or (depth > 0 and not recursive):
                continue
            if entry.ino == EMPTY_SUBVOL_DIR_INO and entry.subvol_link is None:
                continue  # a placeholder: empty, and every placeholder of a subvolume is inode 2
            key = (entry.subvol, entry.ino)
            if key in seen:
                self.fs.warnings.add(f"{path}: directory met twice (a loop in the directory tree), not entered again",
                                     f"subvolume {entry.subvol} inode {entry.ino}", tree=entry.subvol)
                continue
            seen.add(key)
            prefix = "" if path == "." else path + "/"
            for child in reversed(self.children(entry, sort)):
                stack.append((child, prefix + child.name, depth + 1))


def normalize_path(path: str) -> str:
    """``path`` without empty and ``.`` components ("." for the root)."""
    parts = [p for p in path.split("/") if p and p != "."]
    return "/".join(parts) or "."
