"""The page-cache report: its dataclasses and ``build_report``.

``build_report`` turns a ``CacheAnalysis`` (every registered model over the
column tables) into everything a presenter needs: filesystem facts, totals
per model, the by-kind breakdown of the per-inode baseline, per subvolume
figures and the top extents and files. It does no I/O: example paths are
names the application layer looked up beforehand (``paths``).

Definitions (see :mod:`.layout` for the page-level ones):

* ``files``: directory entries of regular files, i.e. the sum of ``nlink``
  over regular inodes (a hardlinked file counts once per link, an orphan with
  nlink 0 not at all); ``inodes``: regular-file inodes (subvol, ino).
* Per subvolume: ``per_inode_pages`` its inodes' pages today;
  ``unshareable_pages`` those that stay per inode under shared_extent;
  ``exclusive_pages`` distinct logical pages (keys) only it maps;
  ``shared_pages`` distinct keys it maps that another subvolume maps too
  (both count cached pages, not file pages); ``saved_pages`` the fair share
  of the shared_extent saving of its files (see ``TopFile``); ``shares_with``
  the (up to 3) subvolumes with which it has the most keys in common.
  What a subvolume would cost alone under shared_extent is
  ``unshareable + exclusive + shared``; summed over subvolumes,
  ``unshareable + exclusive`` plus the keys of two or more subvolumes is the
  shared_extent total.
* Top extents and files are under shared_extent; a file's ``saved_pages`` is
  its fair share: over its eligible pages, ``1 - 1/c`` where ``c`` file pages
  map the page's key (summed over all files: exactly the saving).
* Models that compute them (the cache-unit designs, :mod:`.units`) carry
  their own per-subvolume figures and top files in ``ModelFigures``, with
  where their content ids came from (``content_source``), how many pages
  were unknown and, for 32-bit checksums, the expected false merges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .analyze import CacheAnalysis
from .by_dir import ByDir
from .facts import FilesystemFacts, SubvolumeInfo
from .kinds import KINDS
from .layout import PAGE_SIZES
from .registry import BASELINE, MODELS, ModelResult
from .sharing_matrix import SharingMatrix, sharing_matrix
from .top import TopFile

#: How many example paths a top extent names.
EXAMPLE_PATHS = 3
SUBVOLUME_IDS_SHOWN = 16
METADATA_DUMP_NOTE = "metadata dump: no file data"


def pages_to_bytes(pages: int | float, page_size: int) -> int:
    """Pages (a fair share may be fractional) as a whole number of bytes."""
    return int(round(pages * page_size))


@dataclass(frozen=True)
class ModelSubvolume:
    """One subvolume under a model: its pages today, its fair share of the saving, and the cached pages only
    it maps (``exclusive``, per-inode pages included) or maps with another subvolume (``shared``)."""

    id: int
    per_inode_pages: int
    saved_pages: float
    exclusive_pages: int
    shared_pages: int


@dataclass(frozen=True)
class ModelFile:
    """A file and its fair share of what a model saves; ``snapshot_copies`` more subvolumes hold it unchanged."""

    subvol: int
    ino: int
    path: str | None
    size: int
    pages: int
    saved_pages: float
    saved_bytes: int
    snapshot_copies: int


@dataclass(frozen=True)
class ModelFigures:
    """One model's total; None figures where the model does not apply (``reason`` says why).

    ``content_source`` (``csum_tree``, ``data``), ``unknown_pages`` and
    ``expected_false_merges`` are set for models keyed by content ids;
    ``subvolumes`` and ``top_files`` for models that compute them.
    """

    name: str
    pages: int | None
    bytes: int | None
    saved_pages: int | None
    saved_bytes: int | None
    saved_pct: float | None
    applicable: bool
    reason: str | None
    content_source: str | None = None
    unknown_pages: int | None = None
    expected_false_merges: float | None = None
    subvolumes: tuple[ModelSubvolume, ...] | None = None
    top_files: tuple[ModelFile, ...] | None = None


@dataclass(frozen=True)
class Totals:
    files: int
    inodes: int
    per_inode_pages: int
    per_inode_bytes: int
    models: dict[str, ModelFigures]


@dataclass(frozen=True)
class KindFigures:
    kind: str
    pages: int
    bytes: int


@dataclass(frozen=True)
class ShareLink:
    id: int
    path: str | None
    shared_pages: int


@dataclass(frozen=True)
class SubvolumeFigures:
    id: int
    path: str | None
    uuid: str | None
    parent_uuid: str | None
    readonly: bool
    files: int
    inodes: int
    per_inode_pages: int
    unshareable_pages: int
    exclusive_pages: int
    shared_pages: int
    saved_pages: float
    shares_with: tuple[ShareLink, ...]


@dataclass(frozen=True)
class ExtentFigures:
    """A data extent and what shared_extent saves on it (see ``models.TopExtent``)."""

    logical: int
    disk_num_bytes: int
    references: int
    subvolume_count: int
    subvolumes: tuple[int, ...]  # the first SUBVOLUME_IDS_SHOWN ids
    file_pages: int
    cached_pages: int
    saved_pages: int
    saved_bytes: int
    inodes: tuple[tuple[int, int], ...]  # up to 10 (subvol, ino) referencing it, for example paths
    paths: tuple[str, ...]


@dataclass(frozen=True)
class FileFigures(TopFile):
    """A top file with its name (None: unreachable) and its fair share in bytes."""

    path: str | None
    saved_bytes: int


@dataclass(frozen=True)
class ScanTiming:
    """When a scan started (Unix time, seconds) and how long it took (monotonic clock, seconds)."""

    started_at: float
    seconds: float


@dataclass(frozen=True)
class PageCacheReport:
    """Everything the report shows; ``notes`` are remarks that do not make it partial."""

    page_size: int
    sectorsize: int
    filesystem: FilesystemFacts
    metadata_dump: bool
    notes: tuple[str, ...]
    totals: Totals
    by_kind: tuple[KindFigures, ...]
    subvolumes: tuple[SubvolumeFigures, ...]
    top_extents: tuple[ExtentFigures, ...]
    top_files: tuple[FileFigures, ...]
    partial: bool
    warnings: tuple[str, ...]
    sharing_matrix: SharingMatrix | None = None  # None for a working set (live, --resident): not computed
    by_dir: ByDir | None = None
    scan: ScanTiming | None = None  # when the scan ran and how long it took (set by the analysis layer)
    paths: tuple[str, ...] | None = None  # only the files under these (``report --path``); None: every file

    def model(self, name: str) -> ModelFigures:
        return self.totals.models[name]


def model_figures(result: ModelResult, baseline: int, page_size: int,
                  paths: Mapping[tuple[int, int], str | None] | None = None) -> ModelFigures:
    """A model's total with what it saves against ``baseline`` pages, and its figures per subvolume and top
    files where the model gives them (``paths`` names those files)."""
    paths = paths or {}
    if result.pages is None:
        return ModelFigures(result.name, None, None, None, None, None, result.applicable, result.reason)
    saved = baseline - result.pages
    pct = 100.0 * saved / baseline if baseline else 0.0
    extra = {}
    if (f := result.figures) is not None:
        sv = f.subvolumes
        extra = dict(
            content_source=f.content_source,
            unknown_pages=f.unknown_pages if f.content_source else None,
            expected_false_merges=f.expected_false_merges,
            subvolumes=tuple(ModelSubvolume(int(sid), int(sv.per_inode_pages[n]), float(sv.saved_pages[n]),
                                            int(sv.exclusive_pages[n]), int(sv.shared_pages[n]))
                             for n, sid in enumerate(sv.ids.tolist())),
            top_files=tuple(ModelFile(t.subvol, t.ino, paths.get((t.subvol, t.ino)), t.size, t.pages, t.saved_pages,
                                      pages_to_bytes(t.saved_pages, page_size), t.snapshot_copies)
                            for t in f.top_files),
        )
    return ModelFigures(result.name, result.pages, pages_to_bytes(result.pages, page_size), saved,
                        pages_to_bytes(saved, page_size), pct, result.applicable, result.reason, **extra)


def named(inodes: Iterable[tuple[int, int]], paths: Mapping[tuple[int, int], str | None],
          limit: int = EXAMPLE_PATHS) -> tuple[str, ...]:
    """The first ``limit`` distinct paths ``paths`` gives the inodes, in their order."""
    out: list[str] = []
    for ref in inodes:
        path = paths.get(ref)
        if path is not None and path not in out:
            out.append(path)
            if len(out) >= limit:
                break
    return tuple(out)


def build_report(
    analysis: CacheAnalysis,
    *,
    subvolumes: Sequence[SubvolumeInfo] = (),
    paths: Mapping[tuple[int, int], str | None] | None = None,
    partial: bool = False,
    warnings: Sequence[str] = (),
    source_notes: Sequence[str] = (),
    metadata_dump: bool = False,
    by_dir: ByDir | None = None,
) -> PageCacheReport:
    """The report of ``analysis``.

    ``paths`` names inodes of the top lists as they are to be shown (best
    from the top-level subvolume, ``@rootfs/etc/x``, so snapshots' copies
    differ; an inode missing or None has no name). Any warning makes the
    report partial. ``source_notes`` (remarks from reading the filesystem:
    the log replay) join the notes. The page size must be one of
    ``PAGE_SIZES``. ``by_dir``: the report by directory
    (``by_dir.by_directory``), when it was asked for.
    """
    facts = analysis.inputs.facts
    page_size = analysis.inputs.page_size
    if page_size not in PAGE_SIZES:
        raise ValueError(f"page size {page_size} is not one of {', '.join(map(str, PAGE_SIZES))}")
    paths = paths or {}
    info = {s.id: s for s in subvolumes}
    baseline = analysis.models[BASELINE].pages
    totals = Totals(
        files=analysis.files,
        inodes=analysis.inodes,
        per_inode_pages=baseline,
        per_inode_bytes=pages_to_bytes(baseline, page_size),
        models={m.name: model_figures(analysis.models[m.name], baseline, page_size, paths) for m in MODELS},
    )
    by_kind = tuple(KindFigures(k, analysis.by_kind[k], pages_to_bytes(analysis.by_kind[k], page_size)) for k in KINDS)

    def path_of_subvol(sid: int) -> str | None:
        s = info.get(sid)
        return s.path if s else None

    st = analysis.subvolumes
    rows = []
    seen = set()
    for n, sid in enumerate(int(x) for x in st.ids):
        seen.add(sid)
        s = info.get(sid, SubvolumeInfo(sid))
        rows.append(
            SubvolumeFigures(
                id=sid,
                path=s.path,
                uuid=s.uuid,
                parent_uuid=s.parent_uuid,
                readonly=s.readonly,
                files=int(st.files[n]),
                inodes=int(st.inodes[n]),
                per_inode_pages=int(st.per_inode_pages[n]),
                unshareable_pages=int(st.unshareable_pages[n]),
                exclusive_pages=int(st.exclusive_keys[n]),
                shared_pages=int(st.shared_keys[n]),
                saved_pages=float(st.saved_pages[n]),
                shares_with=tuple(ShareLink(other, path_of_subvol(other), keys) for other, keys in st.shares_with[n]),
            )
        )
    for s in subvolumes:  # subvolumes without regular files
        if s.id not in seen:
            rows.append(SubvolumeFigures(s.id, s.path, s.uuid, s.parent_uuid, s.readonly, 0, 0, 0, 0, 0, 0, 0.0, ()))
    rows.sort(key=lambda r: r.id)

    extents = tuple(
        ExtentFigures(
            logical=e.logical,
            disk_num_bytes=e.disk_num_bytes,
            references=e.references,
            subvolume_count=len(e.subvolumes),
            subvolumes=tuple(e.subvolumes[:SUBVOLUME_IDS_SHOWN]),
            file_pages=e.file_pages,
            cached_pages=e.cached_pages,
            saved_pages=e.saved_pages,
            saved_bytes=pages_to_bytes(e.saved_pages, page_size),
            inodes=tuple(e.inodes),
            paths=named(e.inodes, paths),
        )
        for e in analysis.top_extents
    )
    files = tuple(
        FileFigures(**vars(f), path=paths.get((f.subvol, f.ino)), saved_bytes=pages_to_bytes(f.saved_pages, page_size))
        for f in analysis.top_files
    )
    notes = [METADATA_DUMP_NOTE] if metadata_dump else []
    notes.extend(analysis.notes)
    notes.extend(source_notes)
    warning_texts = tuple(warnings)
    return PageCacheReport(
        page_size=page_size,
        sectorsize=facts.sectorsize,
        filesystem=facts,
        metadata_dump=metadata_dump,
        notes=tuple(notes),
        totals=totals,
        by_kind=by_kind,
        subvolumes=tuple(rows),
        top_extents=extents,
        top_files=files,
        partial=bool(partial or warning_texts),
        warnings=warning_texts,
        sharing_matrix=sharing_matrix(analysis.subvolumes),
        by_dir=by_dir,
    )
