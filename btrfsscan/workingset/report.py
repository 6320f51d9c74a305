"""A working set's figures as a ``PageCacheReport``: the same document as ``report``, over resident pages.

The models come from the registry (``ResidentInputs.result``: each model's
``resident`` computation, or why it has none or lacks an input; the cache-unit designs with their
own per-subvolume figures and top files, :mod:`.units`); per subvolume, top files and by kind of
shared_extent from :mod:`.pages`. Top extents are the logical ranges resident
eligible pages map (``pages.top_ranges``): FIEMAP merges adjacent extents and
an image does not, so ranges cut from the keys alone are what a live capture
and an image agree on. ``shares_with`` is not computed over a working set
(empty). ``files`` and ``inodes`` count the files with resident pages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..cache.facts import FilesystemFacts, SubvolumeInfo
from ..cache.layout import PAGE_SIZES
from ..cache.registry import BASELINE, MODELS, ResidentInputs
from ..cache.report import (
    ExtentFigures,
    FileFigures,
    KindFigures,
    ModelFigures,
    ModelSubvolume,
    PageCacheReport,
    SubvolumeFigures,
    Totals,
    model_figures,
    named,
    pages_to_bytes,
)
from .pages import KINDS, WorkingSetPages, pages_by_kind, per_subvolume, top_files, top_ranges


def working_set_report(
    ws: WorkingSetPages,
    facts: FilesystemFacts,
    *,
    top: int,
    subvolumes: Sequence[SubvolumeInfo] = (),
    kinds: Sequence[str] = KINDS,
    sources: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    notes: Sequence[str] = (),
    metadata_dump: bool = False,
    lacking: str = "which this run has not",
) -> PageCacheReport:
    """The report of the resident pages of ``ws``; ``kinds`` lists the by-kind rows shown (an image has no
    ``unknown`` pages: ``report --resident`` shows the report's kinds); ``sources`` are the models' inputs
    beyond the resident pages (``extent_items``, ``content``: see ``cache.registry``); ``lacking`` says why
    a model's required input is missing."""
    P = ws.page_size
    if P not in PAGE_SIZES:
        raise ValueError(f"page size {P} is not one of {', '.join(map(str, PAGE_SIZES))}")
    res = ws.residency
    inputs = ResidentInputs(ws, facts, sources or {}, lacking, top)
    results = {m.name: inputs.result(m.name) for m in MODELS}
    files = top_files(ws, top)
    ranges = top_ranges(ws, top)
    design_files = {(t.subvol, t.ino) for r in results.values() if r.figures for t in r.figures.top_files}
    paths = _paths(res, {ref for r in ranges for ref in r.examples} | design_files)
    baseline = results[BASELINE].pages
    totals = Totals(files=res.files_with_pages, inodes=res.files_with_pages, per_inode_pages=baseline,
                    per_inode_bytes=pages_to_bytes(baseline, P),
                    models={m.name: _every_subvolume(model_figures(results[m.name], baseline, P, paths), subvolumes)
                            for m in MODELS})
    by_kind_pages = pages_by_kind(ws)
    by_kind = tuple(KindFigures(k, by_kind_pages[k], pages_to_bytes(by_kind_pages[k], P)) for k in kinds)
    info = {s.id: s for s in subvolumes}
    rows = {}
    for s in per_subvolume(ws):
        i = info.get(s.id, SubvolumeInfo(s.id))
        rows[s.id] = SubvolumeFigures(s.id, i.path, i.uuid, i.parent_uuid, i.readonly, s.files_with_pages,
                                      s.files_with_pages, s.per_inode_pages, s.unshareable_pages, s.exclusive_pages,
                                      s.shared_pages, s.saved_pages, ())
    for i in subvolumes:
        rows.setdefault(i.id, SubvolumeFigures(i.id, i.path, i.uuid, i.parent_uuid, i.readonly,
                                               0, 0, 0, 0, 0, 0, 0.0, ()))
    extents = tuple(
        ExtentFigures(logical=r.logical, disk_num_bytes=r.cached_pages * P, references=r.files,
                      subvolume_count=len(r.subvolumes), subvolumes=r.subvolumes, file_pages=r.file_pages,
                      cached_pages=r.cached_pages, saved_pages=r.saved_pages,
                      saved_bytes=pages_to_bytes(r.saved_pages, P), inodes=r.examples,
                      paths=named(r.examples, paths))
        for r in ranges
    )
    top_rows = tuple(
        FileFigures(subvol=f.subvol, ino=f.ino, size=f.size, nlink=1, pages=f.pages, eligible_pages=f.eligible_pages,
                    shared_pages=f.shared_pages, saved_pages=f.saved_pages, snapshot_copies=0,
                    path=_text(f.path), saved_bytes=pages_to_bytes(f.saved_pages, P))
        for f in files
    )
    return PageCacheReport(
        page_size=P, sectorsize=facts.sectorsize, filesystem=facts, metadata_dump=metadata_dump,
        notes=tuple(notes), totals=totals, by_kind=by_kind, subvolumes=tuple(rows[k] for k in sorted(rows)),
        top_extents=extents, top_files=top_rows, partial=bool(warnings), warnings=tuple(warnings),
    )


def _every_subvolume(figures: ModelFigures, subvolumes: Sequence[SubvolumeInfo]) -> ModelFigures:
    """A design's figures per subvolume with a zero row for each subvolume without resident files (as the
    shared_extent rows have)."""
    if figures.subvolumes is None:
        return figures
    have = {row.id for row in figures.subvolumes}
    rows = [*figures.subvolumes, *(ModelSubvolume(i.id, 0, 0.0, 0, 0) for i in subvolumes if i.id not in have)]
    return replace(figures, subvolumes=tuple(sorted(rows, key=lambda row: row.id)))


def _text(raw: bytes) -> str | None:
    """A residency path as the report shows paths (None: the record has none, as a workload's may)."""
    return raw.decode("utf-8", "surrogateescape") if raw else None


def _paths(res, refs: set[tuple[int, int]]) -> dict[tuple[int, int], str | None]:
    """The residency's paths of the (subvol, ino) ``refs``, for the top ranges' examples and the designs' top files."""
    if not refs:
        return {}
    rows = np.flatnonzero(np.isin(res.ino, np.array(sorted({ino for _, ino in refs}), np.uint64)))
    out = {}
    for i in rows.tolist():
        ref = (int(res.subvol[i]), int(res.ino[i]))
        if ref in refs:
            out[ref] = _text(res.path(i))
    return out
