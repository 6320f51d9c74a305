"""What the file-level commands compute: a file's extent map, listings, the subvolume list.

Paths are written from the top-level subvolume (id 5), ``"."`` for its root
directory, as ``find`` prints them on a filesystem mounted with
``subvolid=5``.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BtrfsScanError
from ..model.filemap import FileMap, build_file_map
from ..model.fs_tree import FileScanner
from ..model.listing import InodeSummary, Listed, Lister, normalize_path, type_name
from ..model.namespace import EMPTY_SUBVOL_DIR_INO, Entry, PathNotFound
from ..model.subvolumes import Subvolume
from ..model.tables import FileTables
from .refs import resolve_subvolume, subvolume_by_id, top_level

if TYPE_CHECKING:
    from ..model.filesystem import Filesystem


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


@dataclass(frozen=True)
class Listing:
    """What ``ls [-R] PATH`` shows: the entries, paths from the top level, names sorted by their bytes."""

    path: str
    recursive: bool
    entries: tuple[Listed, ...]


def listing(fs: Filesystem, path: str | None = None, *, recursive: bool = False,
            tables: FileTables | None = None) -> Listing:
    """The entries of ``path`` (a directory's children, or the file itself; ``recursive``: everything below)."""
    tables = tables if tables is not None else scan_files(fs)
    top = top_level(fs)
    rel = normalize_path(path or ".")
    entry = lookup(fs, rel, top) if rel != "." else None
    probe = Lister(fs)
    start = entry or probe.root_entry()
    only = None
    if not recursive:
        only = {(start.subvol, start.ino)} | {(c.subvol, c.ino) for c in probe.children(start)}
    lister = Lister(fs, InodeSummary(tables, only=only))
    first = lister.describe(start, rel)
    if first.type != "dir":
        return Listing(rel, recursive, (first,))
    return Listing(rel, recursive,
                   tuple(lister.iter_listing(start, rel, recursive=recursive, include_start=recursive, sort=True)))


@dataclass(frozen=True)
class SubvolumeList:
    """Every subvolume and snapshot, the top level included, and the default subvolume's id."""

    subvolumes: tuple[Subvolume, ...]
    default_id: int


def subvolume_list(fs: Filesystem) -> SubvolumeList:
    return SubvolumeList(tuple(fs.subvolumes), fs.subvolumes.default_id)
