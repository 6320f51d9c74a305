"""The live data source: resident pages and extents of every regular file below some directories.

``collect(roots)`` walks every directory below the roots, entering every
btrfs subvolume below them but no other mount (decided by the mount table
and statx's mount id, not by ``st_dev``, which btrfs changes per subvolume),
and visits each directory once (by ``(st_dev, st_ino)``: nested roots or a
subvolume mounted twice reach one again) and each regular file once
(hardlinks by ``(st_dev, st_ino)``). Per
file it asks ``cachestat`` whether anything is cached (one call for a cold
file), then ``mincore`` over a read-only mapping for the resident runs
(skipped when cachestat says every page is resident) and FIEMAP for the
extents, only for files with resident pages. It never reads file data, so the
page cache is left as it was found.

Files it may not open are counted and warned about. Memory: a few bytes per
cold file (its inode number, for the hardlink-once count) and the columns of
``Residency`` and ``LiveExtents`` per file with pages; no object per file.
"""

from __future__ import annotations

import os
import stat
import uuid
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from ..arrays import I64
from ..errors import LiveError, Warnings
from ..format.constants import FiemapFlag, FsMagic, ObjectId
from . import kernel_api as k
from .devices import LiveFilesystem, describe
from .mounts import mount_of, mounted_children, read_mounts
from .residency import FilesystemIdentity, Residency, ResidencyBuilder, SubvolumeEntry

_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_AT_FDCWD = -100
_EMPTY_SUBVOL_DIR = 2  # BTRFS_EMPTY_SUBVOL_DIR_OBJECTID
PROGRESS_EVERY = 4096


@dataclass(frozen=True)
class LiveProgress:
    """Counts so far, for the presentation's progress display (the total is not known in advance)."""

    files: int
    directories: int
    files_with_pages: int
    pages: int
    unreadable: int


@dataclass
class LiveExtents:
    """FIEMAP extents of the residency's files: row ``i``'s are ``[start[i], start[i+1])``, in file order."""

    start: np.ndarray  # int64, n + 1
    logical: np.ndarray  # uint64: fe_logical
    physical: np.ndarray  # uint64: fe_physical (btrfs: the logical address)
    length: np.ndarray  # uint64: fe_length
    flags: np.ndarray  # uint32: fe_flags


@dataclass
class LiveCapture:
    """What ``collect`` saw: the residency, each listed file's extents, the filesystem's devices and
    profiles, and what it skipped."""

    residency: Residency
    extents: LiveExtents
    filesystem: LiveFilesystem
    warnings: Warnings
    directories: int
    skipped_mounts: int

    @property
    def partial(self) -> bool:
        return bool(self.warnings)


def filesystem_identity(fd: int) -> tuple[FilesystemIdentity, bool]:
    """The identity of the filesystem of ``fd``, and whether it is btrfs."""
    facts = k.fstatfs(fd)
    if facts.f_type == FsMagic.BTRFS:
        info = k.btrfs_fs_info(fd)
        return FilesystemIdentity("btrfs", str(uuid.UUID(bytes=info.fsid)), "BTRFS_IOC_FS_INFO", info.generation,
                                  info.sectorsize), True
    name = FsMagic(facts.f_type).name.lower() if facts.f_type in FsMagic._value2member_map_ else hex(facts.f_type)
    raw = k.fs_uuid(fd)
    if raw is not None and len(raw) == 16 and any(raw):
        source = "XFS_IOC_FSGEOMETRY" if facts.f_type == FsMagic.XFS else "FS_IOC_GETFSUUID"
        return FilesystemIdentity(name, str(uuid.UUID(bytes=raw)), source, None, facts.f_bsize), False
    return FilesystemIdentity(name, facts.f_fsid.hex(), "statfs f_fsid", None, facts.f_bsize), False


@dataclass
class _Dir:
    path: bytes  # absolute host path
    rel: bytes  # path inside its subvolume (btrfs) or below its root (elsewhere); b"" at the top
    dev: int
    subvol: int


class _Walk:
    """One ``collect`` run: the state the per-file loop updates."""

    def __init__(self, progress: Callable[[LiveProgress], None] | None, warnings: Warnings) -> None:
        self.progress = progress
        self.warnings = warnings
        self.builder = ResidencyBuilder()
        self.ext_ends = array("q")
        self.ext = array("Q")  # logical, physical, length, flags per extent
        self.seen_ino = array("Q")  # every visited file: inode number and device index (hardlinks once)
        self.seen_dev = array("H")
        self.dev_index: dict[int, int] = {}
        self.linked: set[tuple[int, int]] = set()  # (st_dev, st_ino) of measured files with nlink > 1
        #: (st_dev, st_ino) of every directory walked: a directory cannot be hardlinked, so one reached again
        #: (roots nested in each other, a subvolume mounted twice) is a tree already counted
        self.walked: set[tuple[int, int]] = set()
        self.walked_again: list[bytes] = []
        self.subvolumes: dict[int, bytes] = {}
        self.files = self.directories = self.unreadable = self.skipped_mounts = self.pages = 0
        self.next_group = 0

    # -- roots ----------------------------------------------------------------

    def root(self, raw: bytes, btrfs: bool) -> _Dir:
        st = os.stat(raw)
        if btrfs:
            subvol, rel = self._btrfs_root(raw, st.st_ino)
        else:
            subvol, rel = self._group(raw), b""
        return _Dir(raw, rel, st.st_dev, subvol)

    def _btrfs_root(self, raw: bytes, ino: int) -> tuple[int, bytes]:
        fd = os.open(raw, _DIR_FLAGS)
        try:
            facts = k.statx_ids(_AT_FDCWD, raw)
            try:
                treeid, rel = k.btrfs_ino_lookup(fd, ino)
            except OSError as exc:
                if facts is None or facts.subvol is None:
                    raise LiveError(f"{raw.decode(errors='replace')}: cannot tell its btrfs subvolume "
                                    f"(statx has no STATX_SUBVOL and BTRFS_IOC_INO_LOOKUP failed: {exc.strerror})"
                                    ) from None
                treeid, rel = facts.subvol, b""
                if ino != ObjectId.FIRST_FREE:
                    self.warnings.add("paths are relative to the walked directory, not to its subvolume root "
                                      f"(BTRFS_IOC_INO_LOOKUP: {exc.strerror})", raw.decode(errors="replace"))
            self.subvolumes.setdefault(treeid, raw)
            return treeid, rel
        finally:
            os.close(fd)

    def _group(self, path: bytes) -> int:
        """A new id for a top-level directory (or a root's own files) where there are no subvolumes."""
        self.next_group += 1
        self.subvolumes[self.next_group] = path
        return self.next_group

    def _subvolume_of(self, dfd: int, path: bytes) -> int:
        """The subvolume id of the directory open as ``dfd`` (a subvolume root reached by the walk)."""
        facts = k.statx_ids(dfd, b"")
        if facts is not None and facts.subvol is not None:
            subvol = facts.subvol
        else:
            subvol = k.btrfs_ino_lookup(dfd, ObjectId.FIRST_FREE)[0]
        self.subvolumes.setdefault(subvol, path)
        return subvol

    # -- the walk ---------------------------------------------------------------

    def walk(self, top: _Dir, btrfs: bool, root_mnt: int | None, mounted: dict[bytes, set[bytes]]) -> None:
        stack = [(top, False)]
        P = k.PAGE_SIZE
        while stack:
            d, new_subvol = stack.pop()
            try:
                dfd = os.open(d.path, _DIR_FLAGS)
            except OSError as exc:
                self.warnings.add(f"directory skipped: {exc.strerror}", d.path.decode(errors="replace"))
                self.unreadable += 1
                continue
            try:
                st = os.fstat(dfd)
                if new_subvol:
                    try:
                        d.subvol = self._subvolume_of(dfd, d.path)
                    except OSError as exc:
                        # a snapshot shows a nested subvolume as an empty placeholder directory (inode 2)
                        if st.st_ino != _EMPTY_SUBVOL_DIR:
                            self.warnings.add(f"directory skipped: its subvolume is unknown ({exc.strerror})",
                                              d.path.decode(errors="replace"))
                        continue
                if (st.st_dev, st.st_ino) in self.walked:
                    self.walked_again.append(d.path)
                    continue
                self.walked.add((st.st_dev, st.st_ino))
                self.directories += 1
                skip = mounted.get(d.path, ())
                subdirs = self._directory(dfd, d, skip, P)
            finally:
                os.close(dfd)
            for name, dev in subdirs:
                child = self._child(d, name, dev, btrfs=btrfs, root_mnt=root_mnt, top=d is top)
                if child is not None:
                    stack.append(child)

    def _child(self, d: _Dir, name: bytes, dev: int, *, btrfs: bool, root_mnt: int | None,
               top: bool) -> tuple[_Dir, bool] | None:
        """The walk's record of subdirectory ``name`` of ``d``; None for another mount."""
        path = os.path.join(d.path, name)
        rel = d.rel + b"/" + name if d.rel else name
        if dev == d.dev:
            subvol = self._group(path) if top and not btrfs else d.subvol
            return _Dir(path, rel, dev, subvol), False
        facts = k.statx_ids(_AT_FDCWD, path)
        if not btrfs or (facts is not None and facts.mnt_id is not None and facts.mnt_id != root_mnt):
            self.skipped_mounts += 1
            return None
        return _Dir(path, b"", dev, 0), True  # a btrfs subvolume: its id once it is open

    def _directory(self, dfd: int, d: _Dir, skip, P: int) -> list[tuple[bytes, int]]:
        """Visit the files of one directory; return the names and ``st_dev`` of its subdirectories."""
        subdirs = []
        dev = self.dev_index.setdefault(d.dev, len(self.dev_index))
        prefix = d.rel + b"/" if d.rel else b""
        try:
            entries = list(os.scandir(dfd))
        except OSError as exc:
            self.warnings.add(f"directory not listed: {exc.strerror}", d.path.decode(errors="replace"))
            self.unreadable += 1
            return subdirs
        for entry in entries:
            name = os.fsencode(entry.name)
            if name in skip:
                self.skipped_mounts += 1
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append((name, entry.stat(follow_symlinks=False).st_dev))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
            except OSError as exc:
                self.warnings.add(f"entry skipped: {exc.strerror}", os.path.join(d.path, name).decode(errors="replace"))
                self.unreadable += 1
                continue
            self.files += 1
            self.seen_ino.append(entry.inode())
            self.seen_dev.append(dev)
            if self.progress is not None and self.files % PROGRESS_EVERY == 0:
                self.report()
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
            except OSError as exc:
                self.unreadable += 1
                self.warnings.add(f"file not opened: {exc.strerror}", os.path.join(d.path, name).decode(errors="replace"))
                continue
            try:
                self._file(fd, d, prefix + name, P)
            except OSError as exc:
                self.unreadable += 1
                self.warnings.add(f"file not measured: {exc.strerror}", os.path.join(d.path, name).decode(errors="replace"))
            finally:
                os.close(fd)
        return subdirs

    def _file(self, fd: int, d: _Dir, rel: bytes, P: int) -> None:
        cached = k.cachestat(fd, 0)
        if cached == 0:
            return
        st = os.fstat(fd)
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in self.linked:
                return
            self.linked.add(key)
        npages = -(-st.st_size // P)
        if npages == 0:
            return
        runs = k.resident_runs(fd, st.st_size)  # a window cachestat finds wholly cached needs no mincore
        if not runs:
            return
        try:
            extents = k.fiemap(fd)
        except OSError as exc:
            self.warnings.add(f"FIEMAP failed ({exc.strerror}): its pages counted as of unknown backing",
                              d.path.decode(errors="replace"))
            extents = [(0, 0, npages * P, int(FiemapFlag.UNKNOWN | FiemapFlag.LAST))]
        self.builder.add(d.subvol, st.st_ino, st.st_size, rel, runs)
        for e in extents:
            self.ext.extend(e)
        self.ext_ends.append(len(self.ext) // 4)
        self.pages += sum(c for _, c in runs)

    def report(self) -> None:
        self.progress(LiveProgress(self.files, self.directories, len(self.builder.subvol), self.pages,
                                   self.unreadable))

    def notes(self) -> list[str]:
        """What the capture says of itself: the directories reached more than once (walked once)."""
        again = self.walked_again
        if not again:
            return []
        shown = ", ".join(p.decode(errors="replace") for p in again[:3]) + (", ..." if len(again) > 3 else "")
        what = "directory" if len(again) == 1 else "directories"
        return [f"{len(again)} {what} reached again (nested roots, or one subvolume mounted twice), walked once "
                f"and their files counted once: {shown}"]

    def distinct_files(self) -> int:
        if not len(self.seen_ino):
            return 0
        ino = np.frombuffer(self.seen_ino, np.uint64)
        dev = np.frombuffer(self.seen_dev, np.uint16)
        order = np.lexsort((ino, dev))
        ino, dev = ino[order], dev[order]
        return int(1 + ((ino[1:] != ino[:-1]) | (dev[1:] != dev[:-1])).sum())


def _canonical(root: str | bytes | os.PathLike) -> bytes:
    raw = os.fsencode(root)
    shown = raw.decode(errors="replace")
    try:
        st = os.stat(raw)
    except OSError as exc:
        raise LiveError(f"{shown}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise LiveError(f"{shown}: not a directory")
    return os.path.realpath(raw)


def identify(roots: Sequence[str | bytes | os.PathLike]) -> tuple[list[bytes], FilesystemIdentity, bool]:
    """The canonical roots, the identity of their one filesystem, and whether it is btrfs.

    Raises ``LiveError`` when a root is not a directory or the roots lie on different filesystems.
    """
    if not roots:
        raise LiveError("no directory given")
    canonical = [_canonical(r) for r in roots]
    identities = []
    for raw in canonical:
        fd = os.open(raw, _DIR_FLAGS)
        try:
            identities.append(filesystem_identity(fd))
        finally:
            os.close(fd)
    (identity, btrfs), others = identities[0], {i.fsid for i, _ in identities}
    if len(others) > 1:
        raise LiveError(f"the directories lie on {len(others)} filesystems ({', '.join(sorted(others))}); "
                        "give directories of one filesystem")
    return canonical, identity, btrfs


def collect(roots: Sequence[str | bytes | os.PathLike], *,
            progress: Callable[[LiveProgress], None] | None = None) -> LiveCapture:
    """Resident pages and extents of every regular file below ``roots`` (directories of one filesystem).

    Raises ``LiveError`` as ``identify``; everything skipped on the way is in ``warnings``.
    """
    canonical, identity, btrfs = identify(roots)
    warnings = Warnings()
    fd = os.open(canonical[0], _DIR_FLAGS)
    try:
        described = describe(fd, canonical[0], btrfs, warnings)
    finally:
        os.close(fd)
    captured_at = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    mounts = read_mounts()
    mounted = mounted_children(canonical, mounts)
    run = _Walk(progress, warnings)
    for raw in canonical:
        facts = k.statx_ids(_AT_FDCWD, raw)
        root_mnt = facts.mnt_id if facts is not None and facts.mnt_id is not None else None
        if root_mnt is None:
            holder = mount_of(raw, mounts)
            root_mnt = holder.mount_id if holder else None
        run.walk(run.root(raw, btrfs), btrfs, root_mnt, mounted)
    if progress is not None:
        run.report()
    if run.unreadable:
        run.warnings.add(f"{run.unreadable} files or directories could not be opened; their pages are not counted")
    residency = run.builder.build(
        kind="resident", captured_at=captured_at, page_size=k.PAGE_SIZE, filesystem=identity,
        roots=tuple(canonical), subvolumes=tuple(SubvolumeEntry(i, p) for i, p in sorted(run.subvolumes.items())),
        files=run.distinct_files(), unreadable=run.unreadable, notes=run.notes(),
    )
    ext = np.frombuffer(run.ext, np.uint64).reshape(-1, 4)
    extents = LiveExtents(
        start=np.concatenate(([0], np.frombuffer(run.ext_ends, I64))).astype(I64),
        logical=ext[:, 0].copy(), physical=ext[:, 1].copy(), length=ext[:, 2].copy(),
        flags=ext[:, 3].astype(np.uint32),
    )
    return LiveCapture(residency, extents, described, run.warnings, run.directories, run.skipped_mounts)
