"""Cache units: the shared computation of the designs that cache a page once per unit of identical data.

A design (``overlay_copy_up``, ``file_fingerprint``, ``content_dedupe`` in
:mod:`.designs`) says which *cache units* the file pages of a
``PageLayout`` fall in: file pages mapping one unit are cached once;
``alone`` pages are cached per inode (each (subvolume, inode) pair its own
copy). ``unit_figures`` turns that into the design's figures:

``pages`` cached after every file is read once; per version its fair share
of the saving (over its pages, ``1 - 1/c`` with ``c`` the file pages of all
(subvolume, inode) pairs in the page's unit; summed over everything exactly
``per_inode - pages``); per subvolume its per-inode pages, fair-share
saving, *exclusive* pages (units only it maps, and its pages cached per
inode) and *shared* pages (units it maps with another subvolume); the top
files by saving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import I64, group_ids, group_sum, prefix
from .content import PageContent
from .layout import PageLayout
from .runs import KeyRuns
from .top import distinct_copies


@dataclass
class DesignTopFile:
    """A regular inode and its fair share of what a design saves."""

    subvol: int
    ino: int
    size: int
    pages: int
    saved_pages: float
    snapshot_copies: int  # more subvolumes holding the same inode with the same data


@dataclass
class DesignSubvolumes:
    """Per subvolume (``ids`` = ``versions.subvol_ids`` order)."""

    ids: np.ndarray
    per_inode_pages: np.ndarray
    saved_pages: np.ndarray  # float64, fair share
    exclusive_pages: np.ndarray
    shared_pages: np.ndarray


@dataclass
class UnitFigures:
    """One design's figures (see the module docstring)."""

    name: str
    page_size: int
    per_inode_pages: int
    pages: int
    unknown_pages: int
    content_source: str | None
    expected_false_merges: float | None
    version_saved: np.ndarray
    subvolumes: DesignSubvolumes
    top_files: list[DesignTopFile]
    notes: list[str] = field(default_factory=list)

    @property
    def saved_pages(self) -> int:
        return self.per_inode_pages - self.pages


@dataclass
class CacheUnits:
    """File pages in cache units: version ``version[i]`` maps ``count[i]`` pages of unit ``unit[i]``
    (units ``0..len(size)-1`` of ``size`` pages); ``alone[v]`` pages of version v are cached per inode."""

    version: np.ndarray
    unit: np.ndarray
    count: np.ndarray
    size: np.ndarray
    alone: np.ndarray


def unit_figures(name: str, layout: PageLayout, units: CacheUnits, top: int, content: PageContent | None) -> UnitFigures:
    weight = layout.weight
    versions = layout.versions
    mapped = np.bincount(units.unit, weight[units.version] * units.count, len(units.size))
    used = mapped > 0
    pages = int(units.size[used].sum()) + layout.total(units.alone)
    copies = mapped / np.maximum(units.size, 1)  # file pages per cached page of each unit
    with np.errstate(divide="ignore", invalid="ignore"):
        fair = np.where(copies > 0, 1.0 - 1.0 / copies, 0.0)
    version_saved = np.bincount(units.version, units.count * fair[units.unit], layout.n_inodes)
    exclusive, shared = _holders(layout, units)
    subvolumes = DesignSubvolumes(
        ids=versions.subvol_ids,
        per_inode_pages=versions.per_subvolume(layout.npages),
        saved_pages=versions.per_subvolume(version_saved, np.float64),
        exclusive_pages=exclusive + versions.per_subvolume(units.alone),
        shared_pages=shared,
    )
    return UnitFigures(
        name=name, page_size=layout.page_size, per_inode_pages=layout.total(layout.npages), pages=pages,
        unknown_pages=_unknown_pages(layout, content) if content is not None else 0,
        content_source=content.source if content is not None else None,
        expected_false_merges=content.expected_false_merges if content is not None else None,
        version_saved=version_saved, subvolumes=subvolumes, top_files=_top(layout, version_saved, top),
        notes=list(content.notes) if content is not None else [],
    )


def _unknown_pages(layout: PageLayout, content: PageContent) -> int:
    """Pages (every (subvolume, inode) pair) whose content is unknown."""
    page_version = np.repeat(np.arange(layout.n_inodes), layout.npages)
    return layout.total(group_sum(page_version, ~content.known, layout.n_inodes))


def _holders(layout: PageLayout, units: CacheUnits) -> tuple[np.ndarray, np.ndarray]:
    """Per subvolume: pages of units only it maps, and of units it maps with another subvolume.

    One pass per subvolume marks the units its versions map (no sorting);
    a second attributes each unit's pages by its number of holders.
    """
    versions = layout.versions
    nsv = len(versions.subvol_ids)
    n_units = len(units.size)
    live = units.count > 0
    unit, version_set = units.unit[live], versions.version_set[units.version[live]]
    set_of_member = np.repeat(np.arange(len(versions.set_start) - 1), versions.set_sizes)

    def held_by(sv: int) -> np.ndarray:
        in_set = np.zeros(len(versions.set_start) - 1, bool)
        in_set[set_of_member[versions.set_members == sv]] = True
        held = np.zeros(n_units, bool)
        held[unit[in_set[version_set]]] = True
        return held

    holders = np.zeros(n_units, I64)
    for sv in range(nsv):
        holders += held_by(sv)
    exclusive, shared = np.zeros(nsv, I64), np.zeros(nsv, I64)
    for sv in range(nsv):
        held = held_by(sv)
        exclusive[sv] = int(units.size[held & (holders == 1)].sum())
        shared[sv] = int(units.size[held & (holders >= 2)].sum())
    return exclusive, shared


def _top(layout: PageLayout, saved: np.ndarray, top: int) -> list[DesignTopFile]:
    """The ``top`` distinct inode versions by fair-share saving (``top.distinct_copies``)."""
    return [DesignTopFile(pairs[0][0], pairs[0][1], int(layout.size[v]), int(layout.npages[v]), value, len(pairs) - 1)
            for value, v, pairs in distinct_copies(layout, saved, top)]



def file_units(layout: PageLayout, key_starts: np.ndarray, key_values: np.ndarray, shareable: np.ndarray) -> CacheUnits:
    """Units of whole files: versions of ``shareable`` with equal key sequences share one unit of their pages."""
    ids, _ = group_ids(key_starts, key_values)
    versions = np.flatnonzero(shareable & (layout.npages > 0))
    unit = ids[versions]
    units, unit = np.unique(unit, return_inverse=True)
    size = np.zeros(len(units), I64)
    size[unit.reshape(-1)] = layout.npages[versions]
    alone = np.where(shareable, 0, layout.npages)
    return CacheUnits(versions, unit.reshape(-1), layout.npages[versions], size, alone)


def file_unit_runs(units: CacheUnits) -> KeyRuns:
    """The pages of ``file_units``: page ``k`` of a version keyed by page ``k`` of its unit (for a working
    set, where only some pages of a unit are resident)."""
    first = prefix(units.size)[:-1]
    return KeyRuns(units.version, np.zeros(len(units.version), I64), first[units.unit], units.count)
