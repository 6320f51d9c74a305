"""Three more page-cache designs: overlayfs copy-up, EROFS-style file fingerprints, page-content dedupe.

Pure computation over a ``Layout`` (inode versions and their clipped extent
segments at one page size) and, for the content designs, a ``PageContent``
(a content id per page). Each design says which *cache units* the file pages
fall in: file pages mapping one unit are cached once; ``alone`` pages are
cached per inode (each (subvolume, inode) pair its own copy).

* ``overlay_copy_up`` -- overlayfs with image layers: the subvolumes holding
  one inode number with the same data (same ``i_size``; every page backed
  by the same logical addresses, the same inline data, or a hole at the same
  place) read one lower file: one unit per (ino, i_size, mapping). A version
  changed in any data byte has another mapping: copied up, its own unit.
  Different inodes never share, reflinked or not; metadata (mode, owner,
  times, xattrs) does not count (``metacopy``).
* ``file_fingerprint`` -- EROFS page-cache sharing: regular files with
  identical content (``i_size`` and every page's content id) are one unit,
  whatever their inodes; a file with an unknown page is cached per inode.
* ``content_dedupe`` -- every page keyed by its content, identical pages
  cached once (KSM for the page cache); holes and prealloc are the zero
  page, cached once; unknown pages per inode. No design can beat it.

Figures: ``pages`` cached after every file is read once; per version its
fair share of the saving (over its pages, ``1 - 1/c`` with ``c`` the file
pages of all (subvolume, inode) pairs in the page's unit; summed over
everything exactly ``per_inode - pages``); per subvolume its per-inode pages,
fair-share saving, *exclusive* pages (units only it maps, and its pages
cached per inode) and *shared* pages (units it maps with another
subvolume); the top files by saving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import I64, group_ids, group_sum, prefix
from .content import UNKNOWN, PageContent
from .models import SEG_COMPRESSED, SEG_DATA, SEG_HOLE, SEG_INLINE, SEG_PREALLOC, Layout

DESIGNS = ("overlay_copy_up", "file_fingerprint", "content_dedupe")


@dataclass(frozen=True)
class Design:
    """How a design is presented: its title, what it does, what it needs."""

    name: str
    title: str
    statement: str
    needs: str
    uses_content: bool


DESIGN_INFO = {
    "overlay_copy_up": Design(
        "overlay_copy_up", "overlayfs copy-up",
        "one lower file per inode number and data, shared by every container reading it unmodified; a file "
        "changed in any data byte is copied up and cached on its own; different inodes never share",
        "image layers (a lower tree per image, an upper dir per container), copy-up on write", False),
    "file_fingerprint": Design(
        "file_fingerprint", "EROFS file fingerprints",
        "files with identical content (same size, same bytes) share their page cache, whatever their inodes",
        "read-only EROFS images with fingerprint xattrs, Linux 7.0+", True),
    "content_dedupe": Design(
        "content_dedupe", "page-content dedupe",
        "every page keyed by its content, identical pages cached once; holes and prealloc are the zero page",
        "hashing every page (an ideal bound, not a design)", True),
}


def applies(name: str, facts: object = None, page_size: int = 4096) -> tuple[bool, str | None]:
    """Whether design ``name`` can be modelled for a filesystem: all three can, at any page size (a content
    source that cannot key a page counts it as unknown instead)."""
    if name not in DESIGN_INFO:
        raise KeyError(name)
    return True, None


@dataclass
class DesignTopFile:
    """A regular inode and its fair share of what a design saves."""

    subvol: int
    ino: int
    size: int
    pages: int
    saved_pages: float


@dataclass
class DesignSubvolumes:
    """Per subvolume (``ids`` = ``versions.subvol_ids`` order)."""

    ids: np.ndarray
    per_inode_pages: np.ndarray
    saved_pages: np.ndarray  # float64, fair share
    exclusive_pages: np.ndarray
    shared_pages: np.ndarray


@dataclass
class DesignResult:
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
class _Units:
    """File pages in cache units: version ``version[i]`` maps ``count[i]`` pages of unit ``unit[i]``
    (units ``0..len(size)-1`` of ``size`` pages); ``alone[v]`` pages of version v are cached per inode."""

    version: np.ndarray
    unit: np.ndarray
    count: np.ndarray
    size: np.ndarray
    alone: np.ndarray


def _evaluate(name: str, layout: Layout, units: _Units, top: int, content: PageContent | None) -> DesignResult:
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
    return DesignResult(
        name=name, page_size=layout.page_size, per_inode_pages=layout.total(layout.npages), pages=pages,
        unknown_pages=_unknown_pages(layout, content) if content is not None else 0,
        content_source=content.source if content is not None else None,
        expected_false_merges=content.expected_false_merges if content is not None else None,
        version_saved=version_saved, subvolumes=subvolumes, top_files=_top(layout, version_saved, top),
        notes=list(content.notes) if content is not None else [],
    )


def _unknown_pages(layout: Layout, content: PageContent) -> int:
    """Pages (every (subvolume, inode) pair) whose content is unknown."""
    page_version = np.repeat(np.arange(layout.n_inodes), layout.npages)
    return layout.total(group_sum(page_version, ~content.known, layout.n_inodes))


def _holders(layout: Layout, units: _Units) -> tuple[np.ndarray, np.ndarray]:
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


def _top(layout: Layout, saved: np.ndarray, top: int) -> list[DesignTopFile]:
    """The ``top`` (subvolume, inode) pairs by fair-share saving, then (subvol, ino); only those saving something."""
    if top <= 0:
        return []
    versions = layout.versions
    order = np.lexsort((layout.ino, -saved))
    order = order[saved[order] > 1e-9]
    reach = np.cumsum(layout.weight[order])
    cut = int(np.searchsorted(reach, top)) + 1
    if cut < len(order):  # keep every version tied with the last one taken
        cut = int(np.searchsorted(-saved[order], -saved[order[cut - 1]], side="right"))
    rows = []
    for v in order[:cut].tolist():
        for member in versions.members(int(versions.version_set[v])).tolist():
            rows.append((-float(saved[v]), int(versions.subvol_ids[member]), int(layout.ino[v]), v))
    rows = sorted(set(rows))[:top]
    return [DesignTopFile(sv, ino, int(layout.size[v]), int(layout.npages[v]), -neg) for neg, sv, ino, v in rows]


# --- the designs -----------------------------------------------------------------------------


def _file_units(layout: Layout, key_starts: np.ndarray, key_values: np.ndarray, shareable: np.ndarray) -> _Units:
    """Units of whole files: versions of ``shareable`` with equal key sequences share one unit of their pages."""
    ids, _ = group_ids(key_starts, key_values)
    versions = np.flatnonzero(shareable & (layout.npages > 0))
    unit = ids[versions]
    units, unit = np.unique(unit, return_inverse=True)
    size = np.zeros(len(units), I64)
    size[unit.reshape(-1)] = layout.npages[versions]
    alone = np.where(shareable, 0, layout.npages)
    return _Units(versions, unit.reshape(-1), layout.npages[versions], size, alone)


def overlay_mapping(layout: Layout, inline_data: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per version the sequence (CSR starts, values) that ``overlay_copy_up`` compares: ino, i_size, then
    per run of segments (hole segments left out, adjacent pieces of one extent merged) its file range,
    kind and backing (logical address; compressed: extent and decompressed offset; inline: its hash, or
    without ``inline_data`` the version itself: only unchanged inodes compare equal)."""
    keep = layout.seg_kind != SEG_HOLE
    inode = layout.seg_inode[keep]
    s, e, kind = layout.seg_start[keep], layout.seg_end[keep], layout.seg_kind[keep].astype(I64)
    rows = layout.seg_row[keep]
    ext = layout.versions.extents
    addr = layout.seg_addr[keep]
    db = ext["disk_bytenr"][rows].astype(I64)
    words = np.ascontiguousarray(ext["inline_hash"][rows]).view("<u8").reshape(-1, 2).astype(I64)
    inline = kind == SEG_INLINE
    if not inline_data:
        words[:, 0], words[:, 1] = -1 - inode, 0
    backing0 = np.where(inline, words[:, 0], np.where(kind == SEG_COMPRESSED, db, addr))
    backing1 = np.where(inline, words[:, 1], np.where(kind == SEG_COMPRESSED, addr, 0))
    by_address = (kind == SEG_DATA) | (kind == SEG_PREALLOC) | (kind == SEG_COMPRESSED)
    joins = np.zeros(len(inode), bool)
    if len(inode) > 1:
        step = (addr[1:] - addr[:-1]) == (e[:-1] - s[:-1])
        joins[1:] = ((inode[1:] == inode[:-1]) & (s[1:] == e[:-1]) & (kind[1:] == kind[:-1]) & by_address[1:]
                     & step & ((kind[1:] != SEG_COMPRESSED) | (db[1:] == db[:-1])))
    first = np.flatnonzero(~joins)
    last = np.append(first[1:], len(inode)) - 1
    run_inode = inode[first]
    fields = np.stack((s[first], e[last], kind[first], backing0[first], backing1[first]), axis=1)
    n_runs = np.bincount(run_inode, minlength=layout.n_inodes)
    starts = prefix(2 + 5 * n_runs)
    values = np.empty(int(starts[-1]), I64)
    values[starts[:-1]] = layout.ino.astype(I64)
    values[starts[:-1] + 1] = layout.size
    at = starts[run_inode] + 2 + 5 * (np.arange(len(run_inode)) - prefix(n_runs)[run_inode])
    values[at[:, None] + np.arange(5)] = fields
    return starts, values


def overlay_copy_up(layout: Layout, top: int = 10, inline_data: bool = True) -> DesignResult:
    """overlayfs copy-up: one unit per (ino, i_size, mapping); needs no content source. ``inline_data=False``
    where inline bytes are not in the input (a btrfs-image dump)."""
    starts, values = overlay_mapping(layout, inline_data)
    units = _file_units(layout, starts, values, np.ones(layout.n_inodes, bool))
    return _evaluate("overlay_copy_up", layout, units, top, None)


def file_fingerprint(layout: Layout, content: PageContent, top: int = 10) -> DesignResult:
    """EROFS fingerprints: one unit per (i_size, content of every page); files with an unknown page alone."""
    ids = content.page_id
    n = layout.n_inodes
    page_version = np.repeat(np.arange(n), layout.npages)
    known = group_sum(page_version, ids == UNKNOWN, n) == 0
    starts = prefix(layout.npages + 1)
    values = np.empty(int(starts[-1]), I64)
    values[starts[:-1]] = layout.size
    body = np.ones(len(values), bool)
    body[starts[:-1]] = False
    values[body] = ids
    units = _file_units(layout, starts, values, known)
    return _evaluate("file_fingerprint", layout, units, top, content)


def content_dedupe(layout: Layout, content: PageContent, top: int = 10) -> DesignResult:
    """Page-content dedupe: one unit per content id (the zero page included); unknown pages alone."""
    ids = content.page_id
    n = layout.n_inodes
    page_version = np.repeat(np.arange(n), layout.npages)
    known = ids != UNKNOWN
    # ids are dense: a version maps unit ``id`` once per page, duplicates summed by the bincounts downstream
    alone = group_sum(page_version[~known], np.ones(int((~known).sum()), I64), n)
    version = page_version[known]
    unit = ids[known]
    return _evaluate("content_dedupe", layout, _Units(version, unit, np.ones(len(unit), I64),
                                                      np.ones(int(ids.max(initial=0)) + 1, I64), alone), top, content)
