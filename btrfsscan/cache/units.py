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

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..arrays import I64, distinct_inverse, prefix
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
    subvolumes: DesignSubvolumes
    top_files: list[DesignTopFile]
    notes: list[str] = field(default_factory=list)

    @property
    def saved_pages(self) -> int:
        return self.per_inode_pages - self.pages

    @classmethod
    def of(cls, name: str, page_size: int, per_inode_pages: int, pages: int, subvolumes: DesignSubvolumes,
           top_files: list[DesignTopFile], content: PageContent | None,
           unknown_pages: Callable[[], int]) -> UnitFigures:
        """The figures of a design; its content facts (source, false merges, notes and ``unknown_pages()``,
        asked only then) where it keys units by ``content``, none where it reads no content."""
        if content is None:
            return cls(name, page_size, per_inode_pages, pages, 0, None, None, subvolumes, top_files)
        return cls(name, page_size, per_inode_pages, pages, unknown_pages(), content.source,
                   content.expected_false_merges, subvolumes, top_files, list(content.notes))


@dataclass
class CacheUnits:
    """File pages in cache units, by *holder*: a version, or a group of versions with one mapping
    (``holder_of_version[v]``). Holder ``holder[i]`` maps ``count[i]`` pages of unit ``unit[i]`` (units
    ``0..len(size)-1`` of ``size`` pages); ``alone[h]`` pages of each of holder h's versions are cached per
    inode."""

    holder: np.ndarray
    unit: np.ndarray
    count: np.ndarray
    size: np.ndarray
    alone: np.ndarray
    holder_of_version: np.ndarray


def unit_figures(name: str, layout: PageLayout, units: CacheUnits, top: int, content: PageContent | None) -> UnitFigures:
    versions = layout.versions
    pages, version_saved = _cached_pages(layout, units)
    alone = units.alone[units.holder_of_version]
    exclusive, shared = _holders(layout, units)
    subvolumes = DesignSubvolumes(
        ids=versions.subvol_ids,
        per_inode_pages=versions.per_subvolume(layout.npages),
        saved_pages=versions.per_subvolume(version_saved, np.float64),
        exclusive_pages=exclusive + versions.per_subvolume(alone),
        shared_pages=shared,
    )
    return UnitFigures.of(name, layout.page_size, layout.total(layout.npages), pages, subvolumes,
                          _top(layout, version_saved, top), content, lambda: content.unknown_pages)


def _cached_pages(layout: PageLayout, units: CacheUnits) -> tuple[int, np.ndarray]:
    """The pages cached, and per version its fair share of the saving (float64). (A function of its own:
    its arrays per unit are gone before the per-subvolume figures need theirs.)"""
    of = units.holder_of_version
    n_holders = len(units.alone)
    holder_weight = np.bincount(of, layout.weight, n_holders)
    mapped = np.bincount(units.unit, holder_weight[units.holder] * units.count, len(units.size))
    pages = int(units.size[mapped > 0].sum()) + layout.total(units.alone[of])
    copies = mapped / np.maximum(units.size, 1)  # file pages per cached page of each unit
    with np.errstate(divide="ignore", invalid="ignore"):
        fair = np.where(copies > 0, 1.0 - 1.0 / copies, 0.0)
    return pages, np.bincount(units.holder, units.count * fair[units.unit], n_holders)[of]


_BYTE_BITS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.float64)  # [byte value, bit]


def _holders(layout: PageLayout, units: CacheUnits) -> tuple[np.ndarray, np.ndarray]:
    """Per subvolume: pages of units only it maps, and of units it maps with another subvolume.

    Each holder's subvolumes as a bit mask (64 subvolumes a word), OR-ed
    into the mask of every unit it maps; a unit's holders are its mask's
    bits. A subvolume's shared pages are summed a mask byte at a time: one
    histogram of byte values, weighted by unit size, per byte of the mask.
    """
    versions = layout.versions
    nsv = len(versions.subvol_ids)
    n_words = max(1, -(-nsv // 64))
    live = units.count > 0
    unit, holder = (units.unit, units.holder) if live.all() else (units.unit[live], units.holder[live])
    member_set = np.repeat(np.arange(len(versions.set_start) - 1), versions.set_sizes)
    members = versions.set_members
    of = units.holder_of_version
    by_version = len(of) == len(units.alone) and bool((of == np.arange(len(of))).all())  # holders are versions
    masks = []
    for w in range(n_words):
        set_mask = np.zeros(len(versions.set_start) - 1, np.uint64)
        mine = members // 64 == w
        np.bitwise_or.at(set_mask, member_set[mine], np.uint64(1) << (members[mine] % 64).astype(np.uint64))
        if by_version:
            holder_mask = set_mask[versions.version_set]
        else:
            holder_mask = np.zeros(len(units.alone), np.uint64)
            np.bitwise_or.at(holder_mask, of, set_mask[versions.version_set])
        unit_mask = np.zeros(len(units.size), np.uint64)
        np.bitwise_or.at(unit_mask, unit, holder_mask[holder])
        masks.append(unit_mask)
    words_used = sum((m != 0).astype(np.min_scalar_type(n_words)) for m in masks)
    one_bit = np.logical_and.reduce([(m & (m - np.uint64(1))) == 0 for m in masks])  # zero or a power of two
    is_alone = (words_used == 1) & one_bit
    alone = np.flatnonzero(is_alone)
    multi = np.flatnonzero((words_used > 0) & ~is_alone)  # units of two subvolumes or more
    multi_size = units.size[multi]
    exclusive, shared = np.zeros(nsv, I64), np.zeros(nsv, I64)
    for w, mask in enumerate(masks):
        bits = mask[alone]
        mine = bits != 0
        # a power of two converts to float64 exactly
        sv = w * 64 + np.log2(bits[mine].astype(np.float64)).astype(I64)
        exclusive += np.bincount(sv, units.size[alone[mine]], nsv).astype(I64)
        mask_bytes = mask[multi].astype("<u8", copy=False).view(np.uint8).reshape(-1, 8)
        for first in range(w * 64, min(nsv, w * 64 + 64), 8):  # a mask byte: subvolumes first..first+7
            byte = mask_bytes[:, (first - w * 64) // 8]
            per_bit = np.rint(np.bincount(byte, multi_size, 256) @ _BYTE_BITS)
            n = min(8, nsv - first)
            shared[first:first + n] = per_bit[:n].astype(I64)
    return exclusive, shared


def _top(layout: PageLayout, saved: np.ndarray, top: int) -> list[DesignTopFile]:
    """The ``top`` distinct inode versions by fair-share saving (``top.distinct_copies``)."""
    return [DesignTopFile(pairs[0][0], pairs[0][1], int(layout.size[v]), int(layout.npages[v]), value, len(pairs) - 1)
            for value, v, pairs in distinct_copies(layout, saved, top)]


def file_units(layout: PageLayout, ids: np.ndarray, shareable: np.ndarray) -> CacheUnits:
    """Units of whole files: versions of ``shareable`` with equal ``ids`` share one unit of their pages."""
    versions = np.flatnonzero(shareable & (layout.npages > 0))
    units, unit = distinct_inverse(ids[versions])
    size = np.zeros(len(units), I64)
    size[unit] = layout.npages[versions]
    alone = np.where(shareable, 0, layout.npages)
    return CacheUnits(versions, unit, layout.npages[versions], size, alone, np.arange(layout.n_inodes))


def file_unit_runs(units: CacheUnits) -> KeyRuns:
    """The pages of ``file_units`` (holders are versions): page ``k`` of a version keyed by page ``k`` of its
    unit (for a working set, where only some pages of a unit are resident)."""
    first = prefix(units.size)[:-1]
    return KeyRuns(units.holder, np.zeros(len(units.holder), I64), first[units.unit], units.count)
