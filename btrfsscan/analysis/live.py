"""Working sets: ``live`` (what a mounted filesystem caches now) and ``report --resident``/``--workload``.

Both end in the report's figures over resident pages only
(:func:`btrfsscan.workingset.report.working_set_report`): ``live`` takes the
backing of each file from FIEMAP, ``report --resident`` from the image's
extent items (``workingset.image.from_layout``), so for the same working set
the two give the same figures. The models keyed by more than a logical
address (compressed extents, whole files, content) need the image's extent
items and checksum tree: ``live --device`` reads them from the mounted
filesystem's own devices, exactly as ``report --resident`` reads an image.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from ..arrays import distinct
from ..cache.facts import DeviceInfo, FilesystemFacts, SubvolumeInfo
from ..cache.kinds import KINDS as IMAGE_KINDS
from ..cache.layout import PageLayout, build_layout
from ..cache.report import PageCacheReport
from ..errors import BtrfsScanError, LiveError
from ..format.constants import BlockGroupFlag, CompatRoFlag, IncompatFlag, flag_names
from ..live.collect import LiveCapture, LiveProgress, collect, identify
from ..live.residency import Residency, load_residency, parse_workload, workload_residency
from ..model.fs_tree import FileScanner
from ..model.versions import inode_versions
from ..volumes.superblock import format_uuid
from ..workingset import backing, image, pages
from ..workingset.pages import KINDS as LIVE_KINDS
from ..workingset.report import working_set_report
from .facts import filesystem_facts, profiles_by_type, subvolume_info
from .report import ScanProgress, content_source

if TYPE_CHECKING:
    from ..model.filesystem import Filesystem

TOP_LEVEL = 5
#: Why a model needing an input only an image has (extent items, the checksum tree) is not computed on a live
#: filesystem.
LIVE_LACKING = "which only an image of the filesystem gives (report IMAGE --resident, or live --device DEV)"
#: ``BTRFS_SPACE_INFO_GLOBAL_RSV``: the global reserve's entry of BTRFS_IOC_SPACE_INFO, not a block group type.
_GLOBAL_RSV = 1 << 49
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


def image_layout(fs: Filesystem, page_size: int, progress: ScanProgress | None = None,
                 inodes: dict[int, np.ndarray] | None = None) -> PageLayout:
    """The page layout of every live subvolume of an open image at ``page_size`` (``progress``: one step
    per subvolume scanned, then the modelling phase); with ``inodes`` (subvolume id -> sorted inode
    numbers) of those inodes alone."""
    subvols = fs.subvolumes.live()
    if progress:
        progress.start(f"scanning {fs.volume.fsid}", len(subvols), "subvolumes")
    scanner = FileScanner(fs.reader, fs.warnings)
    advance = (lambda sub: progress.advance()) if progress else None
    leaves = scanner.scan_leaves(subvols, progress=advance)
    if inodes is not None:
        leaves = leaves.of_inodes(inodes)
    versions = inode_versions(leaves, fs.warnings)
    if progress:
        progress.phase(f"modelling the working set on {fs.volume.fsid}")
    return build_layout(versions, page_size, fs.superblock.sectorsize)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def _live_facts(capture: LiveCapture) -> FilesystemFacts:
    """The facts of the mounted filesystem as its kernel gives them (``live.devices``)."""
    identity, described = capture.residency.filesystem, capture.filesystem
    types = [flags for flags, _, _ in described.spaces if not flags & _GLOBAL_RSV]
    return FilesystemFacts(
        fsid=identity.fsid, label=_text(described.label) or "", num_devices=described.num_devices,
        devices=tuple(DeviceInfo(d.devid, format_uuid(d.uuid) if d.uuid else None, _text(d.path), d.total_bytes,
                                 d.bytes_used) for d in described.devices),
        data_profiles=profiles_by_type(types, BlockGroupFlag.DATA),
        metadata_profiles=profiles_by_type(types, BlockGroupFlag.METADATA),
        system_profiles=profiles_by_type(types, BlockGroupFlag.SYSTEM),
        nodesize=described.nodesize, sectorsize=identity.sectorsize, generation=identity.generation or 0,
        incompat_features=tuple(flag_names(IncompatFlag, described.incompat)),
        compat_ro_features=tuple(flag_names(CompatRoFlag, described.compat_ro)),
    )


def check_device(roots: Sequence[str], fs: Filesystem) -> None:
    """``LiveError`` unless ``fs`` (opened from ``live --device``) is the filesystem mounted below ``roots``;
    asked before anything is measured."""
    _, identity, btrfs = identify(roots)
    device = ", ".join(d.image.name for _, d in sorted(fs.volume.devices.items()) if d.image)
    if not btrfs:
        raise LiveError(f"--device {device}: {roots[0]} is on {identity.type}, not btrfs: --device reads btrfs "
                        "devices only")
    if str(fs.volume.fsid).lower() != identity.fsid.lower():
        raise LiveError(f"--device {device} holds filesystem {fs.volume.fsid}, not {identity.fsid} mounted at "
                        f"{roots[0]}: give a device of that filesystem")


def _generation_warning(res: Residency, fs: Filesystem) -> str | None:
    """Why the device's metadata may not be what was captured: its committed generation differs from the
    mounted filesystem's at capture (None: they agree, or the kernel gave no generation)."""
    captured, on_disk = res.filesystem.generation, fs.superblock.generation
    if captured is None or captured == on_disk:
        return None
    if on_disk > captured:
        return (f"the device's metadata is at generation {on_disk}, newer than the capture's {captured}: files "
                "changed since are modelled as the device holds them (left out where their i_size changed)")
    return (f"the device's metadata is at generation {on_disk}, older than the mounted filesystem's {captured} at "
            "capture: changes not yet committed are not on the device (files whose i_size changed are left out)")


def _on_image(fs: Filesystem, res: Residency, *, top: int, notes: Sequence[str], kinds: Sequence[str],
              warnings: Sequence[str] = (), progress: ScanProgress | None = None) -> PageCacheReport:
    """The working set ``res`` modelled on the image (or devices) ``fs``: backing, extent items and content
    ids from its trees, so every model is computed."""
    # the residency's files alone: the models over resident pages compare them among themselves only
    ids, row = res.subvolume_index
    order = np.lexsort((res.ino, row))
    cuts = np.searchsorted(row[order], np.arange(len(ids) + 1))
    inodes = {int(sv): distinct(res.ino[order[cuts[s]:cuts[s + 1]]]) for s, sv in enumerate(ids.tolist())}
    kept, back, placed = image.from_layout(res, image_layout(fs, res.page_size, progress, inodes), fs.warnings)
    sources = {"extent_items": placed, "content": content_source(fs, page_size=res.page_size, read_data=False)}
    subvolumes = [subvolume_info(s) for s in fs.subvolumes.live()]
    report = working_set_report(pages.analyze(kept, back), filesystem_facts(fs), top=top, subvolumes=subvolumes,
                                kinds=kinds, sources=sources, warnings=[*warnings, *fs.warnings.messages()],
                                notes=notes, metadata_dump=fs.is_metadump)
    if progress:
        progress.done()
    return report


def live_report(roots: Sequence[str], *, top: int, progress: Callable[[LiveProgress], None] | None = None,
                device: Filesystem | None = None, scan_progress: ScanProgress | None = None) -> WorkingSetResult:
    """The resident pages of every regular file below ``roots`` on the mounted filesystem, modelled.

    Without ``device`` the backing comes from FIEMAP and the models needing extent items or checksums
    say so; with ``device`` (the mounted filesystem's own devices, ``check_device``) the captured
    residency is modelled on it exactly as ``report --resident`` models it on an image (``scan_progress``:
    its scan).
    """
    capture = collect(roots, progress=progress)
    res = capture.residency
    if device is not None:
        warning = _generation_warning(res, device)
        if warning:
            device.warnings.add(warning, f"generation {device.superblock.generation}")
        report = _on_image(device, res, top=top, notes=res.notes, kinds=LIVE_KINDS,
                           warnings=capture.warnings.messages(), progress=scan_progress)
        return WorkingSetResult(report, workload_figures(res), res)
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
                    workload: str | None = None, progress: ScanProgress | None = None) -> WorkingSetResult:
    """The working set of a residency file (captured by ``live --save``) or a workload file, on the image
    (``progress``: the scan, as ``scan_report``'s).

    A residency of another filesystem or page size is an error; its files the
    image lacks or holds with another i_size are warned about and left out.
    """
    if resident is not None:
        res = load_residency(resident, fsid=str(fs.volume.fsid), page_size=page_size)
        notes: list[str] = list(res.notes)
    else:
        res = _workload(fs, workload, page_size)
        notes = [READAHEAD_NOTE]
    report = _on_image(fs, res, top=top, notes=notes, kinds=IMAGE_KINDS, progress=progress)
    return WorkingSetResult(report, workload_figures(res), res)
