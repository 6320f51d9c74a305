"""The ``report`` command's computation: scan every live subvolume, run the cache models (over every file, or
those under ``--path``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..cache.analyze import CacheAnalysis, analyze
from ..cache.by_dir import by_directory
from ..cache.content import ContentSource, CsumTreeContent, DataContent, PageRequests
from ..cache.report import EXAMPLE_PATHS, PageCacheReport, ScanTiming, build_report
from ..errors import BtrfsScanError, CorruptionError
from ..format.constants import ObjectId
from ..model.csums import CsumTable, csum_table, read_csum_tree, with_replaced
from ..model.dir_index import scan_entries
from ..model.directories import directory_tree
from ..model.file_data import check_has_data, hash_pages, inline_pieces
from ..model.fs_tree import FileScanner
from ..model.versions import inode_versions
from .facts import filesystem_facts, subvolume_info
from .files import ListingTables
from .selection import looked_up, select_paths

if TYPE_CHECKING:
    from ..model.filesystem import Filesystem


#: Why ``paths`` and ``by_dir`` do not go together (the directory figures need the whole filesystem's links).
PATHS_AND_BY_DIR = "the report by directory covers the whole filesystem: give --by-dir or --path, not both"


class ScanProgress(Protocol):
    """Where a scan reports how far it is (the CLI's progress bar); every call is optional to honour."""

    def start(self, description: str, total: int, unit: str) -> None: ...

    def advance(self) -> None: ...

    def phase(self, description: str) -> None: ...

    def update(self, completed: int) -> None: ...

    def done(self) -> None: ...


def example_paths(analysis: CacheAnalysis, path_of: Callable[[int, int], str | None]) -> dict[tuple[int, int], str | None]:
    """The names the report shows for its top extents and files, looked up as few times as it needs:
    an extent's inodes in order until ``EXAMPLE_PATHS`` distinct names, every top file."""
    names: dict[tuple[int, int], str | None] = {}

    def name(ref: tuple[int, int]) -> str | None:
        if ref not in names:
            names[ref] = path_of(*ref)
        return names[ref]

    for extent in analysis.top_extents:
        found: set[str] = set()
        for ref in extent.inodes:
            path = name(ref)
            if path is not None:
                found.add(path)
                if len(found) >= EXAMPLE_PATHS:
                    break
    for file in analysis.top_files:
        name((file.subvol, file.ino))
    for result in analysis.models.values():
        for file in result.figures.top_files if result.figures else ():
            name((file.subvol, file.ino))
    return names


def checksum_table(fs: Filesystem) -> CsumTable:
    """Every data checksum of ``fs``, with those the log replay writes; an empty table, with a warning, when it
    has no checksum tree."""
    csum_type, sectorsize = fs.superblock.csum, fs.superblock.sectorsize
    try:
        root = fs.tree_root(ObjectId.CSUM_TREE)
    except CorruptionError as exc:
        fs.warnings.add(f"{exc}: no data checksums, every data page's content is unknown", "root tree",
                        tree=int(ObjectId.ROOT_TREE))
        table = csum_table([], csum_type, sectorsize)
    else:
        table = read_csum_tree(fs.reader, root, csum_type, sectorsize, fs.warnings)
    fs.subvolumes  # the replay runs with them
    return with_replaced(table, fs.log.csums())


def content_source(fs: Filesystem, *, page_size: int, read_data: bool,
                   progress: ScanProgress | None = None) -> ContentSource:
    """Where the content models' page identities come from: the checksum tree, or (``read_data``) the
    data itself, each distinct extent read once (``NoFileDataError`` on a metadata dump)."""
    if not read_data:
        return CsumTreeContent(checksum_table(fs), inline_data=not fs.is_metadump)
    check_has_data(fs.volume)

    def hash_requests(requests: PageRequests) -> tuple[np.ndarray, np.ndarray]:
        if progress:
            progress.start(f"reading the data of {fs.volume.fsid}", int(requests.pieces["length"].sum()), "bytes")
        inline = inline_pieces(fs.namespace, requests.inline, fs.superblock.sectorsize, fs.warnings)
        hashes = hash_pages(fs.volume, requests.extents, requests.pieces, requests.n_outputs, page_size,
                            fs.warnings, progress.update if progress else None, inline)
        if progress:
            progress.phase(f"modelling the page cache of {fs.volume.fsid}")
        return hashes

    return DataContent(hash_requests)


def scan_report(fs: Filesystem, *, page_size: int, top: int, progress: ScanProgress | None = None,
                memoize: bool = True, by_dir: int | None = None, read_data: bool = False,
                paths: Sequence[str] = ()) -> PageCacheReport:
    """Scan every live subvolume of ``fs`` and build its page-cache report.

    The content models key pages by the checksum tree, or with ``read_data``
    by hashing the file data (exact; not on a metadata dump: one error).
    ``memoize=False`` parses every tree block of every subvolume again (the
    check that sharing work between snapshots changes no figure). ``by_dir``:
    the report by directory down to that many levels below each subvolume
    (``top`` children per directory). ``paths``: only the files under them
    (``selection``; not with ``by_dir``), looked up before the scan.
    """
    started_at, clock = time.time(), time.monotonic()
    if read_data:
        check_has_data(fs.volume)
    if paths and by_dir is not None:
        raise BtrfsScanError(PATHS_AND_BY_DIR)
    names = looked_up(fs, paths) if paths else ()
    subvols = fs.subvolumes.live()
    if progress:
        progress.start(f"scanning {fs.volume.fsid}", len(subvols), "subvolumes")
    scanner = FileScanner(fs.reader, fs.warnings, memoize=memoize, links=by_dir is not None,
                          decompress_inline=read_data)
    advance = (lambda sub: progress.advance()) if progress else None
    leaves = scanner.scan_leaves(subvols, progress=advance)
    selection = None
    if names:
        selection = select_paths(fs, names, ListingTables(leaves, scan_entries(fs.reader, fs.warnings, subvols)))
        leaves = selection.restrict(leaves)
        subvols = [s for s in subvols if s.id in selection.inodes]
    versions = inode_versions(leaves, fs.warnings)
    directories = directory_tree(leaves, versions, by_dir) if by_dir is not None else None
    del leaves
    if progress:
        progress.phase(f"modelling the page cache of {fs.volume.fsid}")
    sources = {"content": content_source(fs, page_size=page_size, read_data=read_data, progress=progress)}
    analysis = analyze(versions, page_size, filesystem_facts(fs), top=top, sources=sources)
    paths = example_paths(analysis, fs.namespace.path_of)
    infos = [subvolume_info(s) for s in subvols]
    figures = by_directory(directories, analysis, top, {s.id: s.path for s in infos}) if directories is not None else None
    report = build_report(analysis, subvolumes=infos, paths=paths, partial=fs.partial,
                          warnings=fs.warnings.messages(), metadata_dump=fs.is_metadump, by_dir=figures,
                          source_notes=fs.notes)
    if progress:
        progress.done()
    return replace(report, scan=ScanTiming(started_at, time.monotonic() - clock),
                   paths=selection.paths if selection is not None else None)
