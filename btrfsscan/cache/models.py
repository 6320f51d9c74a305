"""Page-cache models over the column tables: pure computation, no I/O.

Question: after every regular file of the filesystem has been read once, how
many pages does the page cache hold under Linux's per-inode cache, and how many
would a cache of *shared extents* hold (the 2021 RFC "Shared memory for shared
extents": cache read pages of shared extents once, keyed by their disk
address instead of per inode)?

Vocabulary (P = page size, S = sector size)
-------------------------------------------
* Only regular files count (``mode & S_IFMT == S_IFREG``); ``subvol`` + ``ino``
  identify an inode, so hardlinks are one inode.
* A regular inode of size ``i_size`` has ``npages = ceil(i_size / P)`` file
  pages. Page ``k`` holds the file bytes ``[k*P, min((k+1)*P, E))`` -- its
  *content* -- where ``E = min(roundup(i_size, S), npages * P)``: the part of
  the page inside EOF rounded up to the sector size.
* Extent items are clipped to ``[0, E)``. Items beyond ``E`` (prealloc past
  EOF) add nothing. Where items of one inode overlap (only in a corrupt tree)
  the earlier one in (file_offset, table order) wins. File ranges no item maps
  are implicit holes (NO_HOLES).
* Item categories: INLINE; a REG/PREALLOC item with ``disk_bytenr == 0`` is an
  explicit hole; PREALLOC (unwritten); REG compressed; REG uncompressed
  ("data"). Items of an unknown type are ignored (they read as holes).
* A *run* is a maximal sequence of data items of one inode that are contiguous
  both in the file and in logical space (``disk_bytenr + offset`` continues
  where the previous item ended): a bookend split, or two extents that happen
  to be adjacent on disk, is one run.
* A file page is *eligible* (shareable by a shared-extent cache) when its whole
  content lies inside one run and the logical address of its first byte,
  ``disk_bytenr + offset + (k*P - file_offset)``, is a multiple of P. Its *key*
  is that logical address divided by P (a logical page number). A tail page
  whose content ends at ``E`` before ``(k+1)*P`` is keyed the same way: the
  model assumes the cache reads the whole logical page and exposes only the
  part inside EOF. Every file page with the same key shares one cached page.
* For compressed REG items the address is ``(disk_bytenr, decompressed
  offset)``: ``offset + (k*P - file_offset)`` must be a multiple of P, the key
  is ``(disk_bytenr, that offset / P)``, and runs merge items of the same
  extent contiguous in the file and in the decompressed data.

Models (pages; bytes = pages * P)
---------------------------------
* ``per_inode`` -- Linux today: ``sum(npages)`` over regular inodes (holes,
  prealloc and inline data are cached as pages too, compressed data
  decompressed, every reflinked/snapshot copy on its own).
* ``shared_extent`` -- ``per_inode - eligible file pages + distinct keys``.
* ``shared_extent_compressed`` -- as ``shared_extent``, plus eligible pages of
  compressed extents keyed by ``(disk_bytenr, decompressed page index)``.
* ``rfc_as_posted`` -- the RFC exactly: defined only for one device, data
  profile SINGLE and ``P == S``; there it equals ``shared_extent`` (with one
  device and SINGLE, logical -> device offset is one-to-one).

Breakdown of the per_inode pages (``by_kind``): every page of every regular
inode is in exactly one kind. An eligible page is ``regular_shared`` when its
key is mapped by more than one file page anywhere (any inode, any subvolume,
or twice in one file), else ``regular_exclusive``. Any other page takes the
first kind of this precedence that touches its content: ``inline`` >
``compressed`` > ``unaligned`` (uncompressed written data that cannot be keyed
by one aligned logical page: the run is not page-aligned in logical space, two
discontiguous runs share the page, or the data shares the page with a hole or
prealloc range) > ``prealloc`` > ``hole`` (explicit hole items, implicit
gaps, and the sector tail of an inline file).

Everything is computed with intervals (runs of file pages mapping runs of
keys), sorting and cumulative sums; nothing is expanded to one row per page.
The input is inode *versions* (``btrfsscan.model.versions``): an inode that
several subvolumes hold unchanged (a snapshot's untouched files) is one row,
weighted by the number of its holders, so the cost follows the distinct
metadata, not the number of snapshots. Per-subvolume key figures come from
the distinct sets of subvolumes that map a key. Python loops are bounded by
``top``, by the number of distinct sizes of those sets, or by the subvolumes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..arrays import (
    distinct,
    distinct_groups,
    group_ids,
    group_sum,
    prefix,
    ranges,
    run_bounds,
    segmented_cummax,
    take_groups,
)
from ..format.constants import Compression, FileExtentType
from ..model.tables import FileTables, LeafTables
from ..model.versions import InodeVersions, versions_of

PAGE_SIZES = (4096, 16384, 65536)
MODELS = ("per_inode", "shared_extent", "shared_extent_compressed", "rfc_as_posted")
KINDS = ("regular_shared", "regular_exclusive", "compressed", "inline", "prealloc", "hole", "unaligned")

#: Addresses and file positions are handled as int64; values past these limits
#: only occur in corrupt trees and make an item unshareable (or clamp a size).
ADDR_LIMIT = 1 << 60
SIZE_LIMIT = 1 << 53
DECOMPRESSED_LIMIT = 1 << 40

# item categories of a clipped segment
SEG_INLINE, SEG_COMPRESSED, SEG_DATA, SEG_PREALLOC, SEG_HOLE = range(5)

_I64 = np.int64


def _i64(values) -> np.ndarray:
    return np.asarray(values).astype(_I64)


def _clamp(values: np.ndarray, limit: int) -> np.ndarray:
    """uint64 column -> int64, values above ``limit`` set to ``limit``."""
    return np.minimum(values, np.uint64(limit)).astype(_I64)


# --- layout: regular inodes and clipped extent segments -----------------------------


@dataclass
class Layout:
    """Inode versions and their extent items clipped to the page contents, at one page size.

    Inode arrays are indexed by version (``versions.inodes`` order), each
    standing for ``weight`` (subvolume, inode) pairs; ``subvol`` is the
    smallest subvolume holding it. Row arrays hold the versions' items (sorted
    by version, file_offset), segment arrays their clipped non-empty parts in
    the same order; ``seg_addr`` is the logical address (data) or
    decompressed offset (compressed) of ``seg_start``, ``seg_group`` the dense
    id of a compressed extent, ``seg_valid`` False where an address overflowed,
    ``seg_row`` the segment's item in ``versions.extents``.
    """

    page_size: int
    sectorsize: int
    versions: InodeVersions
    subvol: np.ndarray
    ino: np.ndarray
    size: np.ndarray
    nlink: np.ndarray
    weight: np.ndarray
    npages: np.ndarray
    content_end: np.ndarray
    base: np.ndarray
    row_inode: np.ndarray
    row_db: np.ndarray
    row_dnb: np.ndarray
    row_kind: np.ndarray
    seg_inode: np.ndarray
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_kind: np.ndarray
    seg_addr: np.ndarray
    seg_group: np.ndarray
    seg_valid: np.ndarray
    seg_row: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def n_inodes(self) -> int:
        return len(self.subvol)

    def total(self, per_version: np.ndarray) -> int:
        """Sum of a per-version quantity over every (subvolume, inode) pair."""
        return int((per_version.astype(_I64) * self.weight).sum())


def _in_order(major: np.ndarray, minor: np.ndarray) -> bool:
    """Whether (major, minor) pairs are sorted (then a stable sort would change nothing)."""
    if len(major) < 2:
        return True
    up = major[1:] > major[:-1]
    return bool((up | ((major[1:] == major[:-1]) & (minor[1:] >= minor[:-1]))).all())


def build_layout(versions: InodeVersions, page_size: int, sectorsize: int) -> Layout:
    """Page counts of each inode version and its extent items clipped to ``[0, E)``."""
    P, S = int(page_size), int(sectorsize)
    if P <= 0 or S <= 0:
        raise ValueError(f"page size and sector size must be positive ({P}, {S})")
    notes = list(versions.notes)
    inodes = versions.inodes
    weight = versions.weight.astype(_I64)
    raw_size = inodes["size"]
    if (raw_size > SIZE_LIMIT).any():
        notes.append(f"{int(weight[raw_size > SIZE_LIMIT].sum())} inode sizes above {SIZE_LIMIT} bytes clamped")
    size = _clamp(raw_size, SIZE_LIMIT)
    npages = (size + P - 1) // P
    content_end = np.minimum((size + S - 1) // S * S, npages * P)
    base = prefix(npages)[:-1]

    ext = versions.extents
    typ = ext["type"]
    known_type = typ <= FileExtentType.PREALLOC
    if (~known_type).any():
        unknown = int(weight[versions.extent_version[~known_type]].sum())
        notes.append(f"{unknown} file extent items of unknown type read as holes")
    keep = np.flatnonzero(known_type)
    row_inode = versions.extent_version[keep]
    fo = _clamp(ext["file_offset"][keep], ADDR_LIMIT)
    if not _in_order(row_inode, fo):  # items come in key order from trees; hand-made tables may not
        order = np.lexsort((fo, row_inode))
        keep, row_inode, fo = keep[order], row_inode[order], fo[order]
    n_rows = len(keep)

    nb = _clamp(ext["num_bytes"][keep], ADDR_LIMIT)
    db_raw, off_raw = ext["disk_bytenr"][keep], ext["offset"][keep]
    typ, comp = ext["type"][keep], ext["compression"][keep]
    kind = np.full(n_rows, SEG_DATA, np.uint8)
    kind[comp != Compression.NONE] = SEG_COMPRESSED
    kind[typ == FileExtentType.PREALLOC] = SEG_PREALLOC
    kind[db_raw == 0] = SEG_HOLE
    kind[typ == FileExtentType.INLINE] = SEG_INLINE

    # clip: start after the items before it in the inode, end at the content end
    end_raw = fo + nb
    prev_end = np.zeros(n_rows, _I64)
    if n_rows > 1:
        same = row_inode[1:] == row_inode[:-1]
        # items overlap only in corrupt trees; then an item ends where the longest before it does
        overlap = (same & (fo[1:] < end_raw[:-1])).any()
        reach = segmented_cummax(end_raw, row_inode) if overlap else end_raw
        prev_end[1:] = np.where(same, reach[:-1], 0)
    start = np.maximum(fo, prev_end)
    end = np.minimum(end_raw, content_end[row_inode])
    nonempty = start < end

    db = _clamp(db_raw, ADDR_LIMIT)
    off = _clamp(off_raw, ADDR_LIMIT)
    skip = start - fo
    is_data = kind == SEG_DATA
    is_comp = kind == SEG_COMPRESSED
    addr = np.where(is_data, db + off + skip, np.where(is_comp, off + skip, 0))
    length = end - start
    valid = np.where(
        is_data,
        (db_raw <= ADDR_LIMIT) & (off_raw <= ADDR_LIMIT) & (addr + length <= ADDR_LIMIT),
        is_comp & (off_raw <= ADDR_LIMIT) & (addr + length <= DECOMPRESSED_LIMIT),
    )
    group = np.zeros(n_rows, _I64)
    if is_comp.any():
        _, inv = np.unique(db_raw[is_comp], return_inverse=True)
        group[is_comp] = inv.reshape(-1)

    m = slice(None) if nonempty.all() else nonempty  # most items lie within their file
    return Layout(
        page_size=P,
        sectorsize=S,
        versions=versions,
        subvol=inodes["subvol"],
        ino=inodes["ino"],
        size=size,
        nlink=_i64(inodes["nlink"]),
        weight=weight,
        npages=npages,
        content_end=content_end,
        base=base,
        row_inode=row_inode,
        row_db=db_raw,
        row_dnb=ext["disk_num_bytes"][keep],
        row_kind=kind,
        seg_inode=row_inode[m],
        seg_start=start[m],
        seg_end=end[m],
        seg_kind=kind[m],
        seg_addr=addr[m],
        seg_group=group[m],
        seg_valid=valid[m],
        seg_row=keep[m],
        notes=notes,
    )


# --- runs of eligible file pages -------------------------------------------------------


@dataclass
class KeyRuns:
    """Eligible file pages as runs: pages ``[page0, page0+count)`` of ``inode`` map keys ``[key0, key0+count)``."""

    inode: np.ndarray
    page0: np.ndarray
    key0: np.ndarray
    count: np.ndarray

    @property
    def key1(self) -> np.ndarray:
        return self.key0 + self.count

    def __len__(self) -> int:
        return len(self.inode)


def eligible_runs(layout: Layout, kind: int = SEG_DATA) -> KeyRuns:
    """The eligible pages of data (``SEG_DATA``) or compressed (``SEG_COMPRESSED``) items.

    Compressed keys ``(extent, decompressed page)`` are packed into one integer
    space: each compressed extent gets a block as long as its largest page
    index used.
    """
    P = layout.page_size
    sel = (layout.seg_kind == kind) & layout.seg_valid
    inode = layout.seg_inode[sel]
    s, e = layout.seg_start[sel], layout.seg_end[sel]
    a, g = layout.seg_addr[sel], layout.seg_group[sel]
    n = len(inode)
    first = np.ones(n, bool)
    if n > 1:
        first[1:] = ~(
            (inode[1:] == inode[:-1]) & (s[1:] == e[:-1]) & (a[1:] == a[:-1] + (e[:-1] - s[:-1])) & (g[1:] == g[:-1])
        )
    firsts, lasts = run_bounds(first)
    r_inode, rs, re, ra, rg = inode[firsts], s[firsts], e[lasts], a[firsts], g[firsts]
    k0 = (rs + P - 1) // P
    k1 = np.where(re == layout.content_end[r_inode], layout.npages[r_inode], re // P)
    count = k1 - k0
    ok = (count > 0) & (np.mod(ra - rs, P) == 0)
    key0 = (ra + k0 * P - rs) // P
    r_inode, k0, key0, count, rg = r_inode[ok], k0[ok], key0[ok], count[ok], rg[ok]
    if kind == SEG_COMPRESSED and len(rg):
        span = np.zeros(int(rg.max()) + 1, _I64)
        np.maximum.at(span, rg, key0 + count)
        block = np.zeros(len(span), _I64)
        np.cumsum(span[:-1], out=block[1:])
        key0 = block[rg] + key0
    return KeyRuns(r_inode, k0, key0, count)


# --- key-space coverage ------------------------------------------------------------------


@dataclass
class KeyCoverage:
    """Key space cut at every run boundary into elementary segments.

    Segment ``j`` is keys ``[bounds[j], bounds[j+1])``; ``cov[j]`` file pages
    map each of its keys. ``lo``/``hi`` are each run's segment index range.
    """

    bounds: np.ndarray
    cov: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.bounds)

    @property
    def n_segments(self) -> int:
        return max(len(self.bounds) - 1, 0)

    def distinct_keys(self) -> int:
        return int(self.lengths[self.cov > 0].sum())

    def file_pages(self) -> int:
        return int((self.lengths * self.cov).sum())

    def shared_file_pages(self) -> int:
        return int((self.lengths * self.cov)[self.cov >= 2].sum())


def key_coverage(runs: KeyRuns, weight: np.ndarray, extra_bounds: np.ndarray | None = None) -> KeyCoverage:
    """Coverage of the keys by ``runs``, each counted ``weight`` times (a sweep with bincount differences)."""
    parts = [runs.key0, runs.key1]
    if extra_bounds is not None:
        parts.append(_i64(extra_bounds))
    bounds = distinct(np.concatenate(parts)) if len(runs) or extra_bounds is not None else np.zeros(0, _I64)
    m = len(bounds)
    lo = np.searchsorted(bounds, runs.key0).astype(_I64)
    hi = np.searchsorted(bounds, runs.key1).astype(_I64)
    w = weight.astype(np.float64)
    diff = np.bincount(lo, w, minlength=m) - np.bincount(hi, w, minlength=m)
    cov = np.rint(np.cumsum(diff)[:-1]).astype(_I64) if m else np.zeros(0, _I64)
    return KeyCoverage(bounds, cov, lo, hi)


@dataclass
class Sharing:
    """A shared-extent model's figures, overall and per inode version (for one of its copies)."""

    runs: KeyRuns
    coverage: KeyCoverage
    eligible_pages: int
    distinct_keys: int
    shared_file_pages: int
    inode_eligible: np.ndarray
    inode_shared: np.ndarray
    inode_saved: np.ndarray  # float64, fair share

    @property
    def saved_pages(self) -> int:
        return self.eligible_pages - self.distinct_keys


def sharing(layout: Layout, runs: KeyRuns, extra_bounds: np.ndarray | None = None) -> Sharing:
    """Distinct keys, shared pages and per-inode figures of ``runs``.

    Per inode: ``inode_eligible`` its eligible pages; ``inode_shared`` those
    whose key some other file page maps too; ``inode_saved`` its fair share of
    the saving, sum over its eligible pages of ``1 - 1/c`` where ``c`` is the
    number of file pages mapping the page's key (summed over all inodes this
    is exactly ``eligible - distinct keys``).
    """
    cov = key_coverage(runs, layout.weight[runs.inode], extra_bounds)
    lengths = cov.lengths
    c = cov.cov
    shared = prefix(np.where(c >= 2, lengths, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        fair = prefix(np.where(c > 0, lengths * (1.0 - 1.0 / np.maximum(c, 1)), 0.0))
    n = layout.n_inodes
    return Sharing(
        runs=runs,
        coverage=cov,
        eligible_pages=int((runs.count * layout.weight[runs.inode]).sum()),
        distinct_keys=cov.distinct_keys(),
        shared_file_pages=cov.shared_file_pages(),
        inode_eligible=group_sum(runs.inode, runs.count, n),
        inode_shared=group_sum(runs.inode, shared[cov.hi] - shared[cov.lo], n),
        inode_saved=group_sum(runs.inode, fair[cov.hi] - fair[cov.lo], n, np.float64),
    )


# --- kinds of pages ------------------------------------------------------------------


def pages_by_kind(layout: Layout, shared: Sharing) -> dict[str, int]:
    """Pages of every (subvolume, inode) per kind, ``KINDS`` order: each page is of exactly one kind.

    A page is inline if its content touches an inline segment, else
    compressed if it touches a compressed one, and so on: the pages touching
    segments of the first 1, 2, 3, 4 categories, differenced, give each kind.
    """
    P = layout.page_size
    first_page = layout.base[layout.seg_inode]  # segments' page ranges in global page numbers
    lo = first_page + layout.seg_start // P
    hi = first_page + (layout.seg_end + P - 1) // P
    weight = layout.weight[layout.seg_inode]

    def touched(mask: np.ndarray) -> int:
        """Pages touching a segment of ``mask``: segments are sorted and disjoint within an inode, so
        their page ranges have non-decreasing ends and the union is one pass against the previous end."""
        m_lo, m_hi = lo[mask], hi[mask]
        prev = np.empty_like(m_hi)
        if len(m_hi):
            prev[0] = m_lo[0]
            prev[1:] = m_hi[:-1]
        return int((np.maximum(m_hi - np.maximum(m_lo, prev), 0) * weight[mask]).sum())

    k = layout.seg_kind
    inline, upto_compressed, upto_data, upto_prealloc = (
        touched(k <= last) for last in (SEG_INLINE, SEG_COMPRESSED, SEG_DATA, SEG_PREALLOC))
    shared_pages = layout.total(shared.inode_shared)
    eligible = layout.total(shared.inode_eligible)
    pages = (shared_pages, eligible - shared_pages, upto_compressed - inline, inline, upto_prealloc - upto_data,
             layout.total(layout.npages) - upto_prealloc, upto_data - upto_compressed - eligible)
    return dict(zip(KINDS, pages))


# --- rfc_as_posted --------------------------------------------------------------------


def _profile_name(profile) -> str:
    name = getattr(profile, "name", None) or str(profile)
    return name.upper()


def rfc_applicability(page_size: int, sectorsize: int, num_devices: int, data_profiles: Iterable) -> tuple[bool, str | None]:
    """Whether the RFC as posted applies: one device, SINGLE data, page size == sector size."""
    reasons = []
    if num_devices != 1:
        reasons.append(f"the RFC keys pages by the offset on one device; this filesystem has {num_devices} devices")
    profiles = sorted({_profile_name(p) for p in data_profiles})
    if "DUP" in profiles:
        reasons.append("data profile DUP stores every block at two device offsets; the RFC keys a page by one device offset")
    others = [p for p in profiles if p not in ("SINGLE", "DUP")]
    if others:
        reasons.append(f"data profile {', '.join(others)}: the RFC supports SINGLE data only")
    if page_size != sectorsize:
        reasons.append(f"the RFC needs page size == sector size (page size {page_size}, sector size {sectorsize})")
    return (not reasons, "; ".join(reasons) or None)


# --- per subvolume --------------------------------------------------------------------


@dataclass
class SubvolumeStats:
    """Per subvolume (``ids`` = ``versions.subvol_ids`` order), under shared_extent.

    ``exclusive_keys``: distinct keys (logical pages) mapped by file pages of
    this subvolume and of no other one (a key mapped twice inside the
    subvolume counts once). ``shared_keys``: distinct keys this subvolume maps
    that at least one other subvolume maps too. Both count keys, i.e. cached
    pages, not file pages. ``unshareable_pages``: file pages of its inodes
    that stay per inode. ``shares_with[i]``: up to 3 (subvol id, keys both
    map) sorted by keys descending, then id; every pair of subvolumes is
    compared.
    """

    ids: np.ndarray
    inodes: np.ndarray
    files: np.ndarray
    per_inode_pages: np.ndarray
    eligible_pages: np.ndarray
    exclusive_keys: np.ndarray
    shared_keys: np.ndarray
    saved_pages: np.ndarray
    shares_with: list[list[tuple[int, int]]]

    @property
    def unshareable_pages(self) -> np.ndarray:
        return self.per_inode_pages - self.eligible_pages


@dataclass
class Holders:
    """Sets of distinct subvolumes (indices into ``subvol_ids``): set u is ``members[start[u]:start[u+1]]``."""

    start: np.ndarray
    members: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.start)

    def __len__(self) -> int:
        return len(self.start) - 1

    def extended(self, more: "Holders") -> "Holders":
        return Holders(np.concatenate((self.start, self.start[-1] + more.start[1:])),
                       np.concatenate((self.members, more.members)))


def _unions(holders: Holders, set_ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Holders:
    """Per group ``set_ids[starts[g]:ends[g]]`` of holder sets, the union of their members."""
    picks = ranges(starts, ends)
    group = np.repeat(np.arange(len(starts)), ends - starts)
    member_start, members = take_groups(holders.start, holders.members, set_ids[picks])
    width = int(holders.members.max()) + 1 if len(holders.members) else 1
    pair = distinct(np.repeat(group, np.diff(member_start)) * width + members)
    return Holders(prefix(np.bincount(pair // width, minlength=len(starts))), pair % width)


def _distinct_holders(versions: InodeVersions) -> tuple[np.ndarray, Holders]:
    """For each holder multiset of ``versions``, the id of its set of distinct subvolumes; and those sets."""
    starts, members = versions.set_start, versions.set_members
    n = len(starts) - 1
    set_of = np.repeat(np.arange(n), np.diff(starts))
    first = np.ones(len(members), bool)
    first[1:] = (members[1:] != members[:-1]) | (set_of[1:] != set_of[:-1])
    ids, start, distinct_members = distinct_groups(prefix(np.bincount(set_of[first], minlength=n)), members[first])
    return ids, Holders(start, distinct_members)


def key_holders(layout: Layout, shared: Sharing) -> tuple[Holders, np.ndarray]:
    """The distinct sets of subvolumes mapping a key, and how many keys each set maps (exactly those subvolumes).

    A key segment under one run belongs to that run's version's holders; under
    several runs to the union of their holders, computed once per distinct
    combination of holder sets.
    """
    set_of, holders = _distinct_holders(layout.versions)
    runs, cov = shared.runs, shared.coverage
    nseg = cov.n_segments
    if not nseg:
        return holders, np.zeros(len(holders), _I64)
    run_set = set_of[layout.versions.version_set[runs.inode]]
    m = nseg + 1
    over = np.cumsum(np.bincount(cov.lo, minlength=m) - np.bincount(cov.hi, minlength=m))[:nseg]
    index = np.arange(len(runs), dtype=np.float64)
    run_at = np.rint(np.cumsum(np.bincount(cov.lo, index, m) - np.bincount(cov.hi, index, m))[:nseg]).astype(_I64)
    seg_set = np.full(nseg, -1, _I64)
    one = over == 1
    seg_set[one] = run_set[run_at[one]]
    multi = over >= 2
    if multi.any():
        c2 = prefix(multi)
        touching = np.flatnonzero(c2[cov.hi] - c2[cov.lo] > 0)
        segs = ranges(cov.lo[touching], cov.hi[touching])
        sets = np.repeat(run_set[touching], cov.hi[touching] - cov.lo[touching])
        sel = multi[segs]
        pair = distinct(segs[sel] * len(holders) + sets[sel])
        p_seg, p_set = pair // len(holders), pair % len(holders)
        segs_u, counts = np.unique(p_seg, return_counts=True)
        combo, combo_first = group_ids(prefix(counts), p_set)
        c_start = prefix(counts)
        union_id = p_set[c_start[combo_first]]  # a combination of one set is that set
        several = counts[combo_first] >= 2
        if several.any():
            groups = combo_first[several]
            union_id[several] = len(holders) + np.arange(len(groups))
            holders = holders.extended(_unions(holders, p_set, c_start[groups], c_start[groups + 1]))
        seg_set[segs_u] = union_id[combo]
    mapped = seg_set >= 0
    return holders, group_sum(seg_set[mapped], cov.lengths[mapped], len(holders))


def _pair_keys(holders: Holders, keys: np.ndarray, nsv: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, keys) for every pair a < b of subvolumes that both map some key.

    Every holder set of two or more subvolumes adds its keys to each pair of
    its members; sets of one size are expanded together, a bounded number at
    a time, and the pair sums merged as they come.
    """
    width = max(nsv, 1)
    acc_key, acc_sum = np.zeros(0, _I64), np.zeros(0, _I64)
    sel = np.flatnonzero((holders.sizes >= 2) & (keys > 0))
    sizes = holders.sizes[sel]
    for k in distinct(sizes).tolist():
        i, j = np.triu_indices(k, 1)
        of_size = sel[sizes == k]
        step = max(1, (1 << 20) // len(i))
        for lo in range(0, len(of_size), step):
            us = of_size[lo:lo + step]
            mem = holders.members[holders.start[us][:, None] + np.arange(k)]
            acc_key, inv = np.unique(np.concatenate((acc_key, (mem[:, i] * width + mem[:, j]).ravel())),
                                     return_inverse=True)
            acc_sum = group_sum(inv.reshape(-1), np.concatenate((acc_sum, np.repeat(keys[us], len(i)))), len(acc_key))
    return acc_key // width, acc_key % width, acc_sum


def _top_partners(a: np.ndarray, b: np.ndarray, keys: np.ndarray, ids: np.ndarray, n: int) -> list[list[tuple[int, int]]]:
    """Up to 3 (partner id, keys) per subvolume, by keys descending then id."""
    x = np.concatenate((a, b))
    y = np.concatenate((b, a))
    w = np.concatenate((keys, keys))
    order = np.lexsort((ids[y], -w, x))
    x, y, w = x[order], y[order], w[order]
    rank = np.arange(len(x)) - np.searchsorted(x, x)
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for i, partner, k in zip(*(v[rank < 3].tolist() for v in (x, y, w))):
        out[i].append((int(ids[partner]), k))
    return out


def subvolume_stats(layout: Layout, shared: Sharing) -> SubvolumeStats:
    """Per-subvolume figures under shared_extent (sums over the versions each subvolume holds)."""
    versions = layout.versions
    ids = versions.subvol_ids
    nsv = len(ids)
    holders, keys = key_holders(layout, shared)
    member_of = np.repeat(np.arange(len(holders)), holders.sizes)
    alone = holders.sizes[member_of] == 1
    exclusive_keys = group_sum(holders.members[alone], keys[member_of[alone]], nsv)
    shared_keys = group_sum(holders.members[~alone], keys[member_of[~alone]], nsv)
    a, b, both = _pair_keys(holders, keys, nsv)
    per = versions.per_subvolume
    return SubvolumeStats(
        ids=ids,
        inodes=per(np.ones(layout.n_inodes, _I64)),
        files=per(layout.nlink),
        per_inode_pages=per(layout.npages),
        eligible_pages=per(shared.inode_eligible),
        exclusive_keys=exclusive_keys,
        shared_keys=shared_keys,
        saved_pages=per(shared.inode_saved, np.float64),
        shares_with=_top_partners(a, b, both, ids, nsv),
    )


# --- top extents and files --------------------------------------------------------------


@dataclass
class TopExtent:
    """A data extent (uncompressed, by disk_bytenr) and what shared_extent saves on it.

    Keys belong to the extent holding their first byte (the largest
    disk_bytenr <= key * P). ``file_pages``: eligible file pages whose key is
    in the extent; ``cached_pages``: distinct keys in it; ``saved_pages`` the
    difference. ``references``: extent items of regular inodes pointing at it
    (each (subvol, ino, file_offset) once). ``inodes``: up to 10 (subvol, ino)
    referencing it, in (subvol, ino) order, for example paths.
    """

    logical: int
    disk_num_bytes: int
    references: int
    subvolumes: list[int]
    file_pages: int
    cached_pages: int
    saved_pages: int
    inodes: list[tuple[int, int]]


@dataclass
class TopFile:
    """A regular inode and what shared_extent saves on it (``saved_pages`` is its fair share)."""

    subvol: int
    ino: int
    size: int
    nlink: int
    pages: int
    eligible_pages: int
    shared_pages: int
    saved_pages: float


def _extent_starts(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Distinct uncompressed data extents (sorted disk_bytenr) and their largest disk_num_bytes."""
    sel = (layout.row_kind == SEG_DATA) & (layout.row_db <= np.uint64(ADDR_LIMIT))
    db = layout.row_db[sel]
    uniq, inv = np.unique(db, return_inverse=True)
    dnb = np.zeros(len(uniq), np.uint64)
    if len(db):
        np.maximum.at(dnb, inv.reshape(-1), layout.row_dnb[sel])
    return uniq, dnb


def top_extents(layout: Layout, shared: Sharing, extents: tuple[np.ndarray, np.ndarray], top: int) -> list[TopExtent]:
    """The ``top`` extents by pages shared_extent saves (only extents saving something).

    ``shared`` must have been computed with the extents' first keys
    (``ceil(disk_bytenr / P)``) among its bounds, so no segment straddles two
    extents.
    """
    P = layout.page_size
    ext_db, ext_dnb = extents
    cov = shared.coverage
    if top <= 0 or not len(ext_db) or not cov.n_segments:
        return []
    first_key = (_i64(ext_db) + P - 1) // P
    owner = np.searchsorted(first_key, cov.bounds[:-1], side="right") - 1
    mapped = (owner >= 0) & (cov.cov > 0)
    lengths = cov.lengths
    file_pages = group_sum(owner[mapped], (lengths * cov.cov)[mapped], len(ext_db))
    keys = group_sum(owner[mapped], lengths[mapped], len(ext_db))
    saved = file_pages - keys
    candidates = np.flatnonzero(saved > 0)
    if not len(candidates):
        return []
    order = np.lexsort((ext_db[candidates], -saved[candidates]))
    chosen = candidates[order[:top]]

    chosen_db = ext_db[chosen]
    rows = np.flatnonzero(np.isin(layout.row_db, chosen_db))
    row_db = layout.row_db[rows]
    row_inode = layout.row_inode[rows]
    out = []
    for x, db in zip(chosen, chosen_db):
        versions = row_inode[row_db == db]
        pairs = _instances(layout, distinct(versions))
        out.append(
            TopExtent(
                logical=int(db),
                disk_num_bytes=int(ext_dnb[x]),
                references=int(layout.weight[versions].sum()),
                subvolumes=sorted({sv for sv, _ in pairs}),
                file_pages=int(file_pages[x]),
                cached_pages=int(keys[x]),
                saved_pages=int(saved[x]),
                inodes=pairs[:10],
            )
        )
    return out


def _instances(layout: Layout, versions: np.ndarray) -> list[tuple[int, int]]:
    """The distinct (subvol, ino) pairs the given versions stand for, sorted."""
    v = layout.versions
    out = set()
    for version in versions.tolist():
        ino = int(layout.ino[version])
        out.update((int(v.subvol_ids[m]), ino) for m in v.members(int(v.version_set[version])).tolist())
    return sorted(out)


def top_files(layout: Layout, shared: Sharing, top: int) -> list[TopFile]:
    """The ``top`` regular inodes by fair-share saved pages (only those saving something).

    A version stands for several (subvol, inode) pairs with equal figures:
    versions are taken in order of saving until they stand for ``top`` pairs
    (with every version tied with the last one), then ranked pair by pair.
    """
    saved = shared.inode_saved
    candidates = np.flatnonzero(saved > 1e-9)
    if top <= 0 or not len(candidates):
        return []
    candidates = candidates[np.argsort(-saved[candidates], kind="stable")]
    reach = np.cumsum(layout.weight[candidates])
    last = candidates[min(int(np.searchsorted(reach, top)), len(candidates) - 1)]
    chosen = candidates[saved[candidates] >= saved[last]]
    ranked = sorted((-float(saved[i]), sv, ino, int(i)) for i in chosen.tolist()
                    for sv, ino in _instances(layout, np.array([i])))
    return [
        TopFile(
            subvol=sv,
            ino=ino,
            size=int(layout.size[i]),
            nlink=int(layout.nlink[i]),
            pages=int(layout.npages[i]),
            eligible_pages=int(shared.inode_eligible[i]),
            shared_pages=int(shared.inode_shared[i]),
            saved_pages=-neg_saved,
        )
        for neg_saved, sv, ino, i in ranked[:top]
    ]


# --- everything together --------------------------------------------------------------


@dataclass
class ModelResult:
    """One model's total; ``pages`` is None where the model does not apply."""

    name: str
    pages: int | None
    applicable: bool = True
    reason: str | None = None


@dataclass
class CacheAnalysis:
    """Every figure of the report, as computed by ``analyze``."""

    layout: Layout
    inodes: int
    files: int
    per_inode_pages: int
    models: dict[str, ModelResult]
    shared: Sharing
    shared_compressed: Sharing
    by_kind: dict[str, int]
    subvolumes: SubvolumeStats
    top_extents: list[TopExtent]
    top_files: list[TopFile]

    @property
    def notes(self) -> list[str]:
        return self.layout.notes


def analyze(
    tables: FileTables | LeafTables | InodeVersions,
    page_size: int,
    sectorsize: int,
    *,
    num_devices: int = 1,
    data_profiles: Iterable = ("SINGLE",),
    top: int = 10,
) -> CacheAnalysis:
    """All models, the by-kind breakdown, per-subvolume figures and the top lists.

    ``tables``: explicit rows per subvolume (``FileTables``), distinct leaves
    (``LeafTables``) or inode versions; the figures are the same.
    """
    layout = build_layout(versions_of(tables), page_size, sectorsize)
    extents = _extent_starts(layout)
    P = layout.page_size
    first_keys = (_i64(extents[0]) + P - 1) // P
    shared = sharing(layout, eligible_runs(layout, SEG_DATA), first_keys)
    compressed = sharing(layout, eligible_runs(layout, SEG_COMPRESSED))
    per_inode = layout.total(layout.npages)
    se_pages = per_inode - shared.saved_pages
    sec_pages = se_pages - compressed.saved_pages
    ok, reason = rfc_applicability(P, layout.sectorsize, num_devices, data_profiles)
    models = {
        "per_inode": ModelResult("per_inode", per_inode),
        "shared_extent": ModelResult("shared_extent", se_pages),
        "shared_extent_compressed": ModelResult("shared_extent_compressed", sec_pages),
        "rfc_as_posted": ModelResult("rfc_as_posted", se_pages if ok else None, ok, reason),
    }
    by_kind = pages_by_kind(layout, shared)
    return CacheAnalysis(
        layout=layout,
        inodes=layout.total(np.ones(layout.n_inodes, _I64)),
        files=layout.total(layout.nlink),
        per_inode_pages=per_inode,
        models=models,
        shared=shared,
        shared_compressed=compressed,
        by_kind=by_kind,
        subvolumes=subvolume_stats(layout, shared),
        top_extents=top_extents(layout, shared, extents, top),
        top_files=top_files(layout, shared, top),
    )
