"""Working sets: ``live`` (what a mounted filesystem caches now) and ``report --resident``/``--workload``.

Both end in the report's figures over resident pages only
(:func:`btrfsscan.workingset.report.working_set_report`): ``live`` takes the
backing of each file from FIEMAP, ``report --resident`` from the image's
extent items (``workingset.image.from_layout``), so for the same working set
the two give the same figures.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..cache.facts import FilesystemFacts, SubvolumeInfo
from ..cache.kinds import KINDS as IMAGE_KINDS
from ..cache.layout import PageLayout, build_layout
from ..cache.report import PageCacheReport
from ..errors import BtrfsScanError
from ..live.collect import LiveCapture, LiveProgress, collect
from ..live.residency import Residency, load_residency, parse_workload, workload_residency
from ..model.fs_tree import FileScanner
from ..model.versions import inode_versions
from ..workingset import backing, image, pages
from ..workingset.report import working_set_report
from .facts import filesystem_facts, subvolume_info

if TYPE_CHECKING:
    from ..model.filesystem import Filesystem

TOP_LEVEL = 5
#: Why a model needing an input only an image has (the checksum tree) is not computed on a live filesystem.
LIVE_LACKING = "which only an image of the filesystem gives (report IMAGE --resident)"
READAHEAD_NOTE = "workload: the pages its reads touch, the kernel's readahead ignored"


@dataclass(frozen=True)
class WorkloadFigures:
    """Where a working set came from: ``kind`` resident (captured) or workload (modelled reads)."""

    kind: str
    captured_at: str
    files: int
    files_with_pages: int
    unreadable: int


@dataclass(frozen=True)
class WorkingSetResult:
    """A working set's report, what it was, and the residency itself (for ``--save``)."""

    report: PageCacheReport
    workload: WorkloadFigures
    residency: Residency


def workload_figures(res: Residency) -> WorkloadFigures:
    return WorkloadFigures(res.kind, res.captured_at, res.files, res.files_with_pages, res.unreadable)


def image_layout(fs: Filesystem, page_size: int) -> PageLayout:
    """The page layout of every live subvolume of an open image at ``page_size``."""
    scanner = FileScanner(fs.reader, fs.warnings)
    versions = inode_versions(scanner.scan_leaves(fs.subvolumes.live()), fs.warnings)
    return build_layout(versions, page_size, fs.superblock.sectorsize)


def _live_facts(capture: LiveCapture) -> FilesystemFacts:
    identity = capture.residency.filesystem
    return FilesystemFacts(fsid=identity.fsid, sectorsize=identity.sectorsize, generation=identity.generation or 0)


def live_report(roots: Sequence[str], *, top: int,
                progress: Callable[[LiveProgress], None] | None = None) -> WorkingSetResult:
    """The resident pages of every regular file below ``roots`` on the mounted filesystem, modelled."""
    capture = collect(roots, progress=progress)
    res = capture.residency
    ws = pages.analyze(res, backing.from_fiemap(res, capture.extents, res.filesystem.sectorsize))
    subvolumes = [SubvolumeInfo(s.id, s.path.decode("utf-8", "surrogateescape")) for s in res.subvolumes]
    report = working_set_report(ws, _live_facts(capture), top=top, subvolumes=subvolumes,
                                warnings=capture.warnings.messages(), notes=res.notes, lacking=LIVE_LACKING)
    return WorkingSetResult(report, workload_figures(res), res)


def _workload(fs: Filesystem, path: str, page_size: int) -> Residency:
    """The residency a workload file brings in on the image; paths are from the top-level subvolume."""
    top_level = fs.subvolumes.get(TOP_LEVEL)

    def resolve(raw: bytes) -> tuple[int, int, int] | None:
        try:
            entry = fs.namespace.lookup(raw.decode("utf-8", "surrogateescape"), top_level)
        except BtrfsScanError:
            return None
        item = fs.namespace.inode(fs.subvolumes.get(entry.subvol), entry.ino)
        if item is None or not stat.S_ISREG(item.mode):
            return None
        return entry.subvol, entry.ino, item.size

    captured_at = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    res, missing = workload_residency(parse_workload(path), resolve, page_size=page_size, captured_at=captured_at)
    for line in missing[:20]:
        fs.warnings.add(f"workload line {line.line}: no regular file {line.path.decode(errors='replace')} "
                        "in the image: not modelled")
    if len(missing) > 20:
        fs.warnings.add(f"{len(missing) - 20} more workload lines name no regular file of the image")
    return res


def resident_report(fs: Filesystem, *, page_size: int, top: int, resident: str | None = None,
                    workload: str | None = None) -> WorkingSetResult:
    """The working set of a residency file (captured by ``live --save``) or a workload file, on the image.

    A residency of another filesystem or page size is an error; its files the
    image lacks or holds with another i_size are warned about and left out.
    """
    if resident is not None:
        res = load_residency(resident, fsid=str(fs.volume.fsid), page_size=page_size)
        notes: list[str] = list(res.notes)
    else:
        res = _workload(fs, workload, page_size)
        notes = [READAHEAD_NOTE]
    kept, back = image.from_layout(res, image_layout(fs, page_size), fs.warnings)
    subvolumes = [subvolume_info(s) for s in fs.subvolumes.live()]
    report = working_set_report(pages.analyze(kept, back), filesystem_facts(fs), top=top, subvolumes=subvolumes,
                                kinds=IMAGE_KINDS, warnings=fs.warnings.messages(), notes=notes,
                                metadata_dump=fs.is_metadump)
    return WorkingSetResult(report, workload_figures(res), res)
