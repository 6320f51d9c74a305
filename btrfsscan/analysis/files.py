"""What the file-level commands compute: a file's extent map, listings, the subvolume list.

Paths are written from the top-level subvolume (id 5), ``"."`` for its root
directory, as ``find`` prints them on a filesystem mounted with
``subvolid=5``.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..errors import BtrfsScanError
from ..model.filemap import FileMap, build_file_map
from ..model.fs_tree import FileScanner
from ..model.dir_index import EntryLeaves, scan_entries
from ..model.listing import Listed, Lister, normalize_path, type_name
from ..model.namespace import EMPTY_SUBVOL_DIR_INO, Entry, PathNotFound
from ..model.subvolumes import Subvolume
from ..model.tables import FileTables, LeafTables
from .refs import resolve_subvolume, subvolume_by_id, top_level

if TYPE_CHECKING:
    from ..model.filesystem import Filesystem
    from .report import ScanProgress


def scan_files(fs: Filesystem) -> FileTables:
    """Every inode and file extent of every live subvolume (for mapping counts)."""
    return FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())


def lookup(fs: Filesystem, path: str, start: Subvolume) -> Entry:
    """``path`` from ``start``'s root; the error names where the lookup began."""
    where = "the top-level subvolume" if start.id == 5 else f"subvolume {start.id} ({start.path})"
    try:
        return fs.namespace.lookup(path, start)
    except PathNotFound as exc:
        raise PathNotFound(f"{exc} (looking up {path!r} from {where})") from None


def _join(*parts: str) -> str:
    return normalize_path("/".join(p for p in parts if p))


def _not_a_file(path: str, mode: int) -> str | None:
    kind = type_name(mode)
    if kind == "file":
        return None
    if kind == "dir":
        return f"{path} is a directory: map shows the extents of a regular file (use ls)"
    if kind == "symlink":
        return f"{path} is a symbolic link: map does not follow symlinks, give the target's path"
    return f"{path} is a {kind}, not a regular file: it has no extents"


def file_map_of(fs: Filesystem, tables: FileTables | None, path: str | None = None, *, subvol: str | None = None,
                inode: tuple[int, int] | None = None) -> FileMap:
    """The file map of a regular file named by ``path`` (from ``subvol``) or by ``inode``.

    The name is resolved and checked first; ``tables`` (every live subvolume,
    for the mapping counts) is scanned only then when not given.
    """
    if inode is not None:
        sub_id, ino = inode
        subvolume_by_id(fs, sub_id)
        shown = fs.namespace.path_of(sub_id, ino)
        label = shown if shown is not None else f"subvolume {sub_id} inode {ino}"
        entry = Entry(sub_id, ino, label, 0)
    else:
        start = resolve_subvolume(fs, subvol) if subvol is not None else top_level(fs)
        entry = lookup(fs, path, start)
        rel = normalize_path(path)
        shown = label = _join(start.path, "" if rel == "." else rel)
    if entry.ino == EMPTY_SUBVOL_DIR_INO and entry.subvol_link is None:
        raise BtrfsScanError(_not_a_file(label, stat.S_IFDIR | 0o755))
    item = fs.namespace.inode(fs.subvolumes.get(entry.subvol), entry.ino)
    if item is None:
        raise BtrfsScanError(f"{label}: inode {entry.ino} of subvolume {entry.subvol} has no INODE_ITEM")
    problem = _not_a_file(label, item.mode)
    if problem:
        raise BtrfsScanError(problem)
    return build_file_map(fs, entry.subvol, entry.ino, shown, tables if tables is not None else scan_files(fs))


class ListingTables(NamedTuple):
    """What listings read: the inodes and extents of every live subvolume, and their directory entries."""

    leaves: LeafTables
    entries: EntryLeaves


def scan_listing(fs: Filesystem, progress: ScanProgress | None = None) -> ListingTables:
    """The tables of every live subvolume (``progress``: the scan, one step per subvolume)."""
    subvols = list(fs.subvolumes.live())
    if progress:
        progress.start(f"scanning {fs.volume.fsid}", len(subvols), "subvolumes")
    leaves = FileScanner(fs.reader, fs.warnings).scan_leaves(
        subvols, progress=(lambda sub: progress.advance()) if progress else None)
    entries = scan_entries(fs.reader, fs.warnings, subvols)
    if progress:
        progress.done()
    return ListingTables(leaves, entries)


@dataclass(frozen=True)
class Listing:
    """What ``ls [-R] PATH`` shows: the entries, paths from the top level, names sorted by their bytes.

    ``batches`` gives the entries in lists as the walk makes them (each
    iteration walks the tree again), ``entries`` one by one; ``expected`` is
    how many a whole walk gives when known up front (the listing of the top
    level: every directory entry and the root), for a progress bar;
    ``largest`` bounds the numbers of any entry, by field (a table's columns
    are laid out before its first entry).
    """

    path: str
    recursive: bool
    batches: Iterable[list[Listed]]
    expected: int | None
    largest: dict[str, int]

    @property
    def entries(self) -> Iterator[Listed]:
        return chain.from_iterable(self.batches)


class _Rewalk:
    """An iterable that walks the listing each time it is iterated."""

    def __init__(self, walk: Callable[[], Iterator[list[Listed]]]) -> None:
        self._walk = walk

    def __iter__(self) -> Iterator[list[Listed]]:
        return self._walk()


def _largest(fs: Filesystem, leaves: LeafTables) -> dict[str, int]:
    """Bounds on the numbers of any entry: per inode number over every leaf, so at least any one inode's."""
    inodes, ext = leaves.inodes, leaves.extents
    largest = {name: int(inodes[name].max()) if len(inodes) else 0 for name in ("ino", "nlink", "size")}
    groups, inverse = np.unique(ext["ino"], return_inverse=True)
    per_ino = np.bincount(inverse, weights=ext["num_bytes"].astype(np.float64), minlength=len(groups))
    return {"inode": largest["ino"], "nlink": max(largest["nlink"], 1), "size": largest["size"],
            "extents": int(np.bincount(inverse).max()) if len(ext) else 0,
            "shared_bytes": int(per_ino.max()) + 1 if len(ext) else 0,
            "subvolume": max(s.id for s in fs.subvolumes)}


def listing(fs: Filesystem, path: str | None = None, *, recursive: bool = False, tables: ListingTables | None = None,
            progress: ScanProgress | None = None) -> Listing:
    """The entries of ``path`` (a directory's children, or the file itself; ``recursive``: everything below).

    The path is resolved first; ``tables`` (``scan_listing``) are scanned
    only then when not given. ``progress`` follows the scan, then the entries
    as they are produced.
    """
    top = top_level(fs)
    rel = normalize_path(path or ".")
    entry = lookup(fs, rel, top) if rel != "." else None
    tables = tables if tables is not None else scan_listing(fs, progress)
    lister = Lister(fs, tables.leaves, tables.entries)
    start = entry or lister.root_entry()
    expected = None
    if recursive and entry is None:
        expected = 1 + sum(tables.entries.count(sub.id) for sub in fs.subvolumes.live())

    def walk() -> Iterator[list[Listed]]:
        if progress:
            progress.start(f"listing {fs.volume.fsid}", expected, "entries")
        yield from lister.iter_batches(start, rel, recursive=recursive, include_start=recursive,
                                       progress=progress.update if progress else None)
        if progress:
            progress.done()

    first = lister.describe(start, rel)
    if first.type != "dir":
        return Listing(rel, recursive, ([first],), 1, _largest(fs, tables.leaves))
    return Listing(rel, recursive, _Rewalk(walk), expected, _largest(fs, tables.leaves))


@dataclass(frozen=True)
class SubvolumeList:
    """Every subvolume and snapshot, the top level included, and the default subvolume's id."""

    subvolumes: tuple[Subvolume, ...]
    default_id: int


def subvolume_list(fs: Filesystem) -> SubvolumeList:
    return SubvolumeList(tuple(fs.subvolumes), fs.subvolumes.default_id)
