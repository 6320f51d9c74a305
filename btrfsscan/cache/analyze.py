"""Every cache model and the figures around them, computed over inode versions: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..concurrency import side_by_side
from ..model.tables import FileTables, LeafTables
from ..model.versions import InodeVersions, versions_of
from .coverage import Sharing
from .facts import FilesystemFacts
from .kinds import pages_by_kind
from .layout import I64, PageLayout, build_layout
from .per_subvolume import SubvolumeStats, subvolume_stats
from .registry import MODELS, ModelInputs, ModelResult
from .top import TopExtent, TopFile, top_extents, top_files


@dataclass
class CacheAnalysis:
    """Every figure of the report, as computed by ``analyze`` (the breakdowns under shared_extent)."""

    inputs: ModelInputs
    inodes: int
    files: int
    per_inode_pages: int
    models: dict[str, ModelResult]
    by_kind: dict[str, int]
    subvolumes: SubvolumeStats
    top_extents: list[TopExtent]
    top_files: list[TopFile]

    @property
    def layout(self) -> PageLayout:
        return self.inputs.layout

    @property
    def shared(self) -> Sharing:
        return self.inputs.data_sharing

    @property
    def notes(self) -> list[str]:
        return self.layout.notes


def analyze(
    tables: FileTables | LeafTables | InodeVersions,
    page_size: int,
    facts: FilesystemFacts,
    *,
    top: int = 10,
    sources: Mapping[str, Any] | None = None,
) -> CacheAnalysis:
    """Every registered model, the by-kind breakdown, per-subvolume figures and the top lists, side by side
    (``concurrency.side_by_side``: threads, one per core at a time; the figures are the same on one core).

    ``tables``: explicit rows per subvolume (``FileTables``), distinct leaves
    (``LeafTables``) or inode versions; the figures are the same. ``sources``:
    the extra inputs of this run, by name (see ``CacheModel.requires``).
    """
    content = (sources or {}).get("content")
    # the content source's own preparation needs no layout: it runs while the layout is built
    _, layout = side_by_side([content.prepare if content is not None else lambda: None,
                              lambda: build_layout(versions_of(tables), page_size, facts.sectorsize)])
    inputs = ModelInputs(layout, facts, dict(sources or {}), top)
    # the models that read a content source start first: theirs is the longest chain of shared inputs
    # (mappings, content ids), which the other computations then overlap
    order = sorted(MODELS, key=lambda m: not m.requires)
    *results, by_kind, subvolumes, extents, files = side_by_side([
        *(partial(inputs.result, m.name) for m in order),
        lambda: pages_by_kind(layout, inputs.data_sharing),
        lambda: subvolume_stats(layout, inputs.data_sharing),
        lambda: top_extents(layout, inputs.data_sharing, inputs.extents, top),
        lambda: top_files(layout, inputs.data_sharing, top),
    ])
    computed = {m.name: result for m, result in zip(order, results)}
    return CacheAnalysis(
        inputs=inputs,
        inodes=layout.total(np.ones(layout.n_inodes, I64)),
        files=layout.total(layout.nlink),
        per_inode_pages=inputs.per_inode_pages,
        models={m.name: computed[m.name] for m in MODELS},
        by_kind=by_kind,
        subvolumes=subvolumes,
        top_extents=extents,
        top_files=files,
    )
