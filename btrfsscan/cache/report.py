"""The report of the page-cache models: dataclasses and ``build_report``.

``build_report`` runs the models (``btrfsscan.cache.models.analyze``) over the
column tables and assembles everything a presenter needs: filesystem facts,
totals per model, the by-kind breakdown of the per-inode baseline, per
subvolume figures and the top extents and files with example paths. It does
no I/O except through the ``path_of`` callable it is given.

Definitions (see ``models`` for the page-level ones):

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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ..errors import ScanWarning, Warnings
from ..model.directories import DirectoryTree
from ..model.tables import FileTables, LeafTables
from ..model.versions import InodeVersions
from . import models
from .by_dir import ByDir, by_directory
from .models import KINDS, MODELS, PAGE_SIZES
from .sharing_matrix import SharingMatrix, sharing_matrix

SCHEMA_VERSION = 1
EXAMPLE_PATHS = 3
SUBVOLUME_IDS_SHOWN = 16
METADATA_DUMP_NOTE = "metadata dump: no file data"


def _from_mapping(cls, data: Any):
    """An instance of dataclass ``cls`` from an instance, or a mapping whose unknown keys are ignored."""
    if isinstance(data, cls):
        return data
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in dict(data).items() if k in names})


@dataclass(frozen=True)
class DeviceInfo:
    devid: int
    uuid: str | None = None
    path: str | None = None
    total_bytes: int = 0
    bytes_used: int = 0


@dataclass(frozen=True)
class FilesystemFacts:
    """What the report says about the filesystem; profiles are names (``SINGLE``, ``DUP``, ``RAID1``...).

    ``num_devices`` is the superblock's device count (None: the number of
    ``devices`` given); it decides whether the RFC as posted applies.
    """

    fsid: str
    label: str = ""
    devices: tuple[DeviceInfo, ...] = ()
    num_devices: int | None = None
    data_profiles: tuple[str, ...] = ()
    metadata_profiles: tuple[str, ...] = ()
    system_profiles: tuple[str, ...] = ()
    nodesize: int = 16384
    sectorsize: int = 4096
    generation: int = 0
    incompat_features: tuple[str, ...] = ()
    compat_ro_features: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: Any) -> "FilesystemFacts":
        if isinstance(data, cls):
            return data
        d = dict(data)
        features = d.pop("features", None)
        if isinstance(features, Mapping):  # {"incompat": [...], "compat_ro": [...]}
            d.setdefault("incompat_features", features.get("incompat", ()))
            d.setdefault("compat_ro_features", features.get("compat_ro", ()))
        d["devices"] = tuple(_from_mapping(DeviceInfo, x) for x in d.get("devices", ()))
        for key in ("data_profiles", "metadata_profiles", "system_profiles"):
            d[key] = tuple(models._profile_name(p) for p in d.get(key, ()))
        for key in ("incompat_features", "compat_ro_features"):
            d[key] = tuple(str(p) for p in d.get(key, ()))
        return _from_mapping(cls, d)

    @property
    def device_count(self) -> int:
        return self.num_devices if self.num_devices is not None else len(self.devices)


@dataclass(frozen=True)
class SubvolumeInfo:
    """A subvolume as the root tree describes it (``path`` None when unreachable)."""

    id: int
    path: str | None = None
    uuid: str | None = None
    parent_uuid: str | None = None
    readonly: bool = False
    generation: int | None = None

    @classmethod
    def from_mapping(cls, data: Any) -> "SubvolumeInfo":
        if isinstance(data, cls):
            return data
        d = dict(data)
        if "gen" in d and "generation" not in d:
            d["generation"] = d["gen"]
        d["readonly"] = bool(d.get("readonly") or False)
        return _from_mapping(cls, d)


@dataclass(frozen=True)
class ModelFigures:
    """One model's total; None figures where the model does not apply (``reason`` says why)."""

    name: str
    pages: int | None
    bytes: int | None
    saved_pages: int | None
    saved_bytes: int | None
    saved_pct: float | None
    applicable: bool
    reason: str | None


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
    paths: tuple[str, ...]


@dataclass(frozen=True)
class FileFigures:
    subvol: int
    ino: int
    path: str | None
    size: int
    nlink: int
    pages: int
    eligible_pages: int
    shared_pages: int
    saved_pages: float
    saved_bytes: int


@dataclass(frozen=True)
class Report:
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
    schema_version: int = SCHEMA_VERSION
    sharing_matrix: SharingMatrix | None = None
    by_dir: ByDir | None = None

    def model(self, name: str) -> ModelFigures:
        return self.totals.models[name]


def _model_figures(result: models.ModelResult, per_inode: int, page_size: int) -> ModelFigures:
    if result.pages is None:
        return ModelFigures(result.name, None, None, None, None, None, result.applicable, result.reason)
    saved = per_inode - result.pages
    pct = 100.0 * saved / per_inode if per_inode else 0.0
    return ModelFigures(result.name, result.pages, result.pages * page_size, saved, saved * page_size, pct,
                        result.applicable, result.reason)


def _paths(path_of: Callable[[int, int], str | None] | None, inodes: Iterable[tuple[int, int]], limit: int) -> tuple[str, ...]:
    out: list[str] = []
    if path_of is None:
        return ()
    for subvol, ino in inodes:
        path = path_of(subvol, ino)
        if path is not None and path not in out:
            out.append(path)
            if len(out) >= limit:
                break
    return tuple(out)


def build_report(
    tables: FileTables | LeafTables | InodeVersions,
    *,
    page_size: int,
    filesystem: FilesystemFacts | Mapping[str, Any],
    subvolumes: Sequence[SubvolumeInfo | Mapping[str, Any]] = (),
    sectorsize: int | None = None,
    top: int = 10,
    path_of: Callable[[int, int], str | None] | None = None,
    partial: bool = False,
    warnings: Sequence[str | ScanWarning] | Warnings = (),
    metadata_dump: bool = False,
    directories: DirectoryTree | None = None,
) -> Report:
    """Run every model over ``tables`` and assemble the report.

    ``page_size`` must be one of ``PAGE_SIZES``; ``sectorsize`` defaults to
    the filesystem's. ``path_of(subvol, ino)`` names example paths as they
    are to be shown (best from the top-level subvolume, ``@rootfs/etc/x``, so
    snapshots' copies differ; None when an inode has no reachable name); it
    is called at most ten times per top entry. Any warning makes the report
    partial. ``directories`` (a tree over the same inode versions as
    ``tables``) adds the report by directory, at most ``top`` children each.
    """
    if page_size not in PAGE_SIZES:
        raise ValueError(f"page size {page_size} is not one of {', '.join(map(str, PAGE_SIZES))}")
    facts = FilesystemFacts.from_mapping(filesystem)
    subvols = [SubvolumeInfo.from_mapping(s) for s in subvolumes]
    sectorsize = int(sectorsize or facts.sectorsize)
    info = {s.id: s for s in subvols}

    analysis = models.analyze(
        tables,
        page_size,
        sectorsize,
        num_devices=facts.device_count,
        data_profiles=facts.data_profiles or ("SINGLE",),
        top=top,
    )
    per_inode = analysis.per_inode_pages
    totals = Totals(
        files=analysis.files,
        inodes=analysis.inodes,
        per_inode_pages=per_inode,
        per_inode_bytes=per_inode * page_size,
        models={name: _model_figures(analysis.models[name], per_inode, page_size) for name in MODELS},
    )
    by_kind = tuple(KindFigures(k, analysis.by_kind[k], analysis.by_kind[k] * page_size) for k in KINDS)

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
    for s in subvols:  # subvolumes without regular files
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
            saved_bytes=e.saved_pages * page_size,
            paths=_paths(path_of, e.inodes, EXAMPLE_PATHS),
        )
        for e in analysis.top_extents
    )
    files = tuple(
        FileFigures(
            subvol=f.subvol,
            ino=f.ino,
            path=next(iter(_paths(path_of, [(f.subvol, f.ino)], 1)), None),
            size=f.size,
            nlink=f.nlink,
            pages=f.pages,
            eligible_pages=f.eligible_pages,
            shared_pages=f.shared_pages,
            saved_pages=f.saved_pages,
            saved_bytes=int(round(f.saved_pages * page_size)),
        )
        for f in analysis.top_files
    )

    notes = []
    if metadata_dump:
        notes.append(METADATA_DUMP_NOTE)
    notes.extend(analysis.notes)
    # a btrfsscan.errors.Warnings collection also says how many it dropped
    warning_texts = tuple(warnings.messages() if hasattr(warnings, "messages") else (str(w) for w in warnings))
    return Report(
        page_size=page_size,
        sectorsize=sectorsize,
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
        by_dir=by_directory(directories, analysis, top, {s.id: s.path for s in rows}) if directories is not None else None,
    )
