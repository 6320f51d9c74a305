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
Python loops are bounded by ``top`` or by the number of subvolumes (pairs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..format.constants import Compression, FileExtentType
from ..model.tables import S_IFMT, S_IFREG, FileTables

PAGE_SIZES = (4096, 16384, 65536)
MODELS = ("per_inode", "shared_extent", "shared_extent_compressed", "rfc_as_posted")
KINDS = ("regular_shared", "regular_exclusive", "compressed", "inline", "prealloc", "hole", "unaligned")

#: Addresses and file positions are handled as int64; values past these limits
#: only occur in corrupt trees and make an item unshareable (or clamp a size).
ADDR_LIMIT = 1 << 60
SIZE_LIMIT = 1 << 53
DECOMPRESSED_LIMIT = 1 << 40

#: With at most this many subvolumes that share keys, ``shares_with`` compares
#: every pair; above it only related and the largest subvolumes (see
#: ``subvolume_stats``).
PAIR_LIMIT = 64
PAIR_LARGEST = 8
PAIR_SIBLINGS = 2

# item categories of a clipped segment
SEG_INLINE, SEG_COMPRESSED, SEG_DATA, SEG_PREALLOC, SEG_HOLE = range(5)

_I64 = np.int64


# --- small numpy helpers ------------------------------------------------------------


def _i64(values) -> np.ndarray:
    return np.asarray(values).astype(_I64)


def _clamp(values: np.ndarray, limit: int) -> np.ndarray:
    """uint64 column -> int64, values above ``limit`` set to ``limit``."""
    return np.minimum(values, np.uint64(limit)).astype(_I64)


def _group_sum(groups: np.ndarray, values: np.ndarray, n: int, dtype=_I64) -> np.ndarray:
    out = np.zeros(n, dtype)
    if len(groups):
        np.add.at(out, groups, values.astype(dtype, copy=False))
    return out


def _segmented_cummax(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Running maximum of ``values``, restarting where ``groups`` (non-decreasing) changes.

    Ranks of (group, value) pairs: at position i the largest rank seen so far
    belongs to i's own group (every earlier group ranks lower), so the running
    maximum of ranks names the largest value of the group so far.
    """
    n = len(values)
    if n == 0:
        return values.copy()
    order = np.lexsort((values, groups))
    rank = np.empty(n, _I64)
    rank[order] = np.arange(n, dtype=_I64)
    return values[order[np.maximum.accumulate(rank)]]


def _run_bounds(first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first and last element of each run, given a 'starts a run' mask."""
    firsts = np.flatnonzero(first)
    lasts = np.empty_like(firsts)
    if len(firsts):
        lasts[:-1] = firsts[1:] - 1
        lasts[-1] = len(first) - 1
    return firsts, lasts


def _pair_keys(a_hi, a_lo, b_hi, b_lo) -> tuple[np.ndarray, np.ndarray]:
    """Order-preserving int64 keys for (hi, lo) uint64 pairs of two tables."""
    hi = np.unique(np.concatenate((a_hi, b_hi)))
    lo = np.unique(np.concatenate((a_lo, b_lo)))
    width = max(len(lo), 1)
    ka = np.searchsorted(hi, a_hi).astype(_I64) * width + np.searchsorted(lo, a_lo)
    kb = np.searchsorted(hi, b_hi).astype(_I64) * width + np.searchsorted(lo, b_lo)
    return ka, kb


def _prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, values.dtype if values.dtype != bool else _I64)
    np.cumsum(values, out=out[1:])
    return out


# --- layout: regular inodes and clipped extent segments -----------------------------


@dataclass
class Layout:
    """Regular inodes and their extent items clipped to the page contents, at one page size.

    Inode arrays are indexed by the regular inode's position (sorted by
    subvol, ino). Row arrays hold the items of regular inodes (sorted by inode,
    file_offset), segment arrays their clipped non-empty parts in the same
    order; ``seg_addr`` is the logical address (data) or decompressed offset
    (compressed) of ``seg_start``, ``seg_group`` the dense id of a compressed
    extent, ``seg_valid`` False where an address overflowed.
    """

    page_size: int
    sectorsize: int
    subvol: np.ndarray
    ino: np.ndarray
    size: np.ndarray
    nlink: np.ndarray
    npages: np.ndarray
    content_end: np.ndarray
    base: np.ndarray
    subvol_ids: np.ndarray
    inode_sv: np.ndarray
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
    notes: list[str] = field(default_factory=list)

    @property
    def n_inodes(self) -> int:
        return len(self.subvol)


def build_layout(tables: FileTables, page_size: int, sectorsize: int) -> Layout:
    """Regular inodes, their page counts, and their extent items clipped to ``[0, E)``."""
    P, S = int(page_size), int(sectorsize)
    if P <= 0 or S <= 0:
        raise ValueError(f"page size and sector size must be positive ({P}, {S})")
    notes: list[str] = []

    # columns are gathered one by one: fancy indexing whole structured rows is slow
    inodes = tables.inodes
    pick = np.lexsort((inodes["ino"], inodes["subvol"]))
    i_sv, i_ino = inodes["subvol"][pick], inodes["ino"][pick]
    if len(pick) > 1:
        dup = (i_sv[1:] == i_sv[:-1]) & (i_ino[1:] == i_ino[:-1])
        if dup.any():
            notes.append(f"{int(dup.sum())} duplicate inode rows ignored")
            first = np.concatenate(([True], ~dup))
            pick, i_sv, i_ino = pick[first], i_sv[first], i_ino[first]
    is_reg = (inodes["mode"][pick] & S_IFMT) == S_IFREG
    reg_index = np.cumsum(is_reg, dtype=_I64) - 1
    reg_index[~is_reg] = -1
    reg_pick = pick[is_reg]
    reg_sv, reg_ino = i_sv[is_reg], i_ino[is_reg]

    raw_size = inodes["size"][reg_pick]
    if (raw_size > SIZE_LIMIT).any():
        notes.append(f"{int((raw_size > SIZE_LIMIT).sum())} inode sizes above {SIZE_LIMIT} bytes clamped")
    size = _clamp(raw_size, SIZE_LIMIT)
    npages = (size + P - 1) // P
    content_end = np.minimum((size + S - 1) // S * S, npages * P)
    base = np.zeros(len(reg_pick), _I64)
    if len(reg_pick):
        np.cumsum(npages[:-1], out=base[1:])
    subvol_ids, inode_sv = np.unique(reg_sv, return_inverse=True)
    inode_sv = inode_sv.reshape(-1).astype(_I64)

    # extent items -> regular inode index
    ext = tables.extents
    if len(ext) and len(pick):
        k_inode, k_ext = _pair_keys(i_sv, i_ino, ext["subvol"], ext["ino"])
        pos = np.minimum(np.searchsorted(k_inode, k_ext), len(pick) - 1)
        found = k_inode[pos] == k_ext
        row_inode = np.where(found, reg_index[pos], -1)
    else:
        found = np.zeros(len(ext), bool)
        row_inode = np.full(len(ext), -1, _I64)
    if (~found).any():
        notes.append(f"{int((~found).sum())} file extent items without an inode item ignored")
    typ = ext["type"]
    known_type = typ <= FileExtentType.PREALLOC
    if (~known_type & (row_inode >= 0)).any():
        notes.append(f"{int((~known_type & (row_inode >= 0)).sum())} file extent items of unknown type read as holes")
    keep = np.flatnonzero((row_inode >= 0) & known_type)
    row_inode = row_inode[keep]
    fo = _clamp(ext["file_offset"][keep], ADDR_LIMIT)
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
    run_max = _segmented_cummax(end_raw, row_inode)
    prev_end = np.zeros(n_rows, _I64)
    if n_rows > 1:
        prev_end[1:] = np.where(row_inode[1:] == row_inode[:-1], run_max[:-1], 0)
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

    m = nonempty
    return Layout(
        page_size=P,
        sectorsize=S,
        subvol=reg_sv,
        ino=reg_ino,
        size=size,
        nlink=_i64(inodes["nlink"][reg_pick]),
        npages=npages,
        content_end=content_end,
        base=base,
        subvol_ids=subvol_ids,
        inode_sv=inode_sv,
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
        notes=notes,
    )


def touched_pages(layout: Layout, mask: np.ndarray) -> np.ndarray:
    """Per inode: number of its pages whose content touches a segment selected by ``mask``.

    Segments are sorted and disjoint within an inode, so their page ranges
    (in global page numbers ``base + page``) are sorted with non-decreasing
    ends: the union is one pass comparing each range with the previous end.
    """
    P = layout.page_size
    inode = layout.seg_inode[mask]
    lo = layout.base[inode] + layout.seg_start[mask] // P
    hi = layout.base[inode] + (layout.seg_end[mask] + P - 1) // P
    prev = np.empty_like(hi)
    if len(hi):
        prev[0] = lo[0]
        prev[1:] = hi[:-1]
    counted = np.maximum(hi - np.maximum(lo, prev), 0)
    return _group_sum(inode, counted, layout.n_inodes)


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
    firsts, lasts = _run_bounds(first)
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


def key_coverage(runs: KeyRuns, extra_bounds: np.ndarray | None = None) -> KeyCoverage:
    """Coverage of the keys by ``runs`` (a sweep with bincount differences, no per-page rows)."""
    parts = [runs.key0, runs.key1]
    if extra_bounds is not None:
        parts.append(_i64(extra_bounds))
    bounds = np.unique(np.concatenate(parts)) if len(runs) or extra_bounds is not None else np.zeros(0, _I64)
    m = len(bounds)
    lo = np.searchsorted(bounds, runs.key0).astype(_I64)
    hi = np.searchsorted(bounds, runs.key1).astype(_I64)
    diff = np.bincount(lo, minlength=m).astype(_I64) - np.bincount(hi, minlength=m)
    cov = np.cumsum(diff)[:-1] if m else np.zeros(0, _I64)
    return KeyCoverage(bounds, cov, lo, hi)


@dataclass
class Sharing:
    """A shared-extent model's figures, overall and per regular inode."""

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
    cov = key_coverage(runs, extra_bounds)
    lengths = cov.lengths
    c = cov.cov
    shared = _prefix(np.where(c >= 2, lengths, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        fair = _prefix(np.where(c > 0, lengths * (1.0 - 1.0 / np.maximum(c, 1)), 0.0))
    n = layout.n_inodes
    return Sharing(
        runs=runs,
        coverage=cov,
        eligible_pages=int(runs.count.sum()),
        distinct_keys=cov.distinct_keys(),
        shared_file_pages=cov.shared_file_pages(),
        inode_eligible=_group_sum(runs.inode, runs.count, n),
        inode_shared=_group_sum(runs.inode, shared[cov.hi] - shared[cov.lo], n),
        inode_saved=_group_sum(runs.inode, fair[cov.hi] - fair[cov.lo], n, np.float64),
    )


# --- per-inode kinds ------------------------------------------------------------------


def inode_kinds(layout: Layout, shared: Sharing) -> np.ndarray:
    """Per inode, its pages per kind: an (n_inodes, len(KINDS)) int64 array in ``KINDS`` order."""
    k = layout.seg_kind
    u1 = touched_pages(layout, k == SEG_INLINE)
    u2 = touched_pages(layout, k <= SEG_COMPRESSED)
    u3 = touched_pages(layout, k <= SEG_DATA)
    u4 = touched_pages(layout, k <= SEG_PREALLOC)
    out = np.zeros((layout.n_inodes, len(KINDS)), _I64)
    out[:, 0] = shared.inode_shared
    out[:, 1] = shared.inode_eligible - shared.inode_shared
    out[:, 2] = u2 - u1
    out[:, 3] = u1
    out[:, 4] = u4 - u3
    out[:, 5] = layout.npages - u4
    out[:, 6] = u3 - u2 - shared.inode_eligible
    return out


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
    """Per subvolume (``ids`` = ``layout.subvol_ids`` order), under shared_extent.

    ``exclusive_keys``: distinct keys (logical pages) mapped by file pages of
    this subvolume and of no other one (a key mapped twice inside the
    subvolume counts once). ``shared_keys``: distinct keys this subvolume maps
    that at least one other subvolume maps too. Both count keys, i.e. cached
    pages, not file pages. ``unshareable_pages``: file pages of its inodes
    that stay per inode. ``shares_with[i]``: up to 3 (subvol id, keys both map)
    sorted by keys descending, then id.
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
    pairs_compared: int
    pairs_possible: int

    @property
    def unshareable_pages(self) -> np.ndarray:
        return self.per_inode_pages - self.eligible_pages


def _pair_candidates(sharing_ids: np.ndarray, ids: np.ndarray, shared_keys: np.ndarray,
                     parent_of: Mapping[int, int | None]) -> set[tuple[int, int]]:
    """Pairs (i < j, indices into ``ids``) of subvolumes to compare for ``shares_with``."""
    idx = [int(i) for i in sharing_ids]
    if len(idx) <= PAIR_LIMIT:
        return {(a, b) for n, a in enumerate(idx) for b in idx[n + 1:]}
    pos = {int(ids[i]): i for i in idx}
    pairs: set[tuple[int, int]] = set()

    def add(a: int, b: int) -> None:
        if a != b:
            pairs.add((min(a, b), max(a, b)))

    children: dict[int | None, list[int]] = {}
    for i in idx:
        parent = parent_of.get(int(ids[i]))
        children.setdefault(parent if parent in pos else None, []).append(i)
        if parent in pos:
            add(i, pos[parent])
    for parent, kids in children.items():
        if parent is None:
            continue
        kids.sort(key=lambda i: int(ids[i]))
        for n, i in enumerate(kids):
            for j in kids[n + 1: n + 1 + PAIR_SIBLINGS]:
                add(i, j)
    largest = sorted(idx, key=lambda i: (-int(shared_keys[i]), int(ids[i])))[:PAIR_LARGEST]
    for i in idx:
        for j in largest:
            add(i, j)
    return pairs


def _pairs_by_mask(sharing_ids, ulo, uhi, usv, count, lengths, nsv) -> dict[tuple[int, int], int]:
    """Keys mapped by both subvolumes, for every pair of at most 64 sharing subvolumes.

    Each sharing subvolume gets one bit; its union intervals are disjoint, so
    adding the bit at their starts and subtracting it at their ends, then a
    cumulative sum (uint64, wrapping), gives per key segment the exact mask
    of subvolumes mapping it. Segments are grouped by mask (snapshot
    histories have few distinct masks) and ``B.T @ diag(W) @ B`` over the
    distinct masks gives every pair.
    """
    n = len(sharing_ids)
    nseg = len(lengths)
    if n < 2 or not nseg:
        return {}
    bit = np.full(nsv, -1, _I64)
    bit[sharing_ids] = np.arange(n)
    sel = bit[usv] >= 0
    weight = np.left_shift(np.uint64(1), bit[usv[sel]].astype(np.uint64))
    diff = np.zeros(nseg + 1, np.uint64)
    np.add.at(diff, ulo[sel], weight)
    np.subtract.at(diff, uhi[sel], weight)
    mask = np.cumsum(diff, dtype=np.uint64)[:nseg]
    multi = count >= 2
    masks, inv = np.unique(mask[multi], return_inverse=True)
    weights = _group_sum(inv.reshape(-1), lengths[multi], len(masks)).astype(np.float64)
    shifts = np.arange(n, dtype=np.uint64)
    total = np.zeros((n, n), np.float64)
    block = max(1, (1 << 22) // n)
    for lo in range(0, len(masks), block):
        bits = ((masks[lo:lo + block, None] >> shifts) & np.uint64(1)).astype(np.float64)
        total += bits.T @ (bits * weights[lo:lo + block, None])
    out = {}
    for i in range(n):
        for j in range(i + 1, n):
            out[(int(sharing_ids[i]), int(sharing_ids[j]))] = int(round(total[i, j]))
    return out


def _pairs_by_search(pairs, plo, phi, psv, lengths, nsv) -> dict[tuple[int, int], int]:
    """Keys mapped by both subvolumes, for the given pairs, by searching one union in the other."""
    measure = _prefix(lengths)
    starts = np.searchsorted(psv, np.arange(nsv + 1))
    by_b: dict[int, list[int]] = {}
    for a, b in pairs:
        by_b.setdefault(b, []).append(a)
    out = {}
    for b, partners in by_b.items():
        b_lo, b_hi = plo[starts[b]:starts[b + 1]], phi[starts[b]:starts[b + 1]]
        b_cum = _prefix(measure[b_hi] - measure[b_lo])

        def covered(x: np.ndarray) -> np.ndarray:
            """Measure of K_b below segment index x."""
            k = np.searchsorted(b_lo, x, side="right") - 1
            kc = np.maximum(k, 0)
            inside = measure[np.minimum(x, b_hi[kc])] - measure[b_lo[kc]]
            return np.where(k >= 0, b_cum[kc] + inside, 0)

        partners.sort()
        sizes = np.array([starts[a + 1] - starts[a] for a in partners])
        if not len(b_lo) or not sizes.sum():
            continue
        a_lo = np.concatenate([plo[starts[a]:starts[a + 1]] for a in partners])
        a_hi = np.concatenate([phi[starts[a]:starts[a + 1]] for a in partners])
        per = covered(a_hi) - covered(a_lo)
        sums = np.add.reduceat(per, np.concatenate(([0], np.cumsum(sizes)[:-1])))
        for a, keys in zip(partners, sums):
            out[(a, b)] = int(keys)
    return out


def subvolume_stats(layout: Layout, shared: Sharing, parent_of: Mapping[int, int | None] | None = None) -> SubvolumeStats:
    """Per-subvolume figures under shared_extent.

    Each subvolume's runs are first merged into a union of key intervals (in
    segment-index space, offset by subvolume so unions never cross
    subvolumes); a sweep over those unions gives, per elementary key segment,
    the number of distinct subvolumes mapping it.

    ``shares_with`` is exact for the pairs compared: every pair when at most
    ``PAIR_LIMIT`` subvolumes share keys; otherwise each subvolume is compared
    with its parent (the subvolume its parent_uuid names, via ``parent_of``),
    its snapshots, the ``PAIR_SIBLINGS`` nearest snapshots of the same parent
    on each side (by id), and the ``PAIR_LARGEST`` subvolumes sharing the most
    keys. The number of pairs compared is in ``pairs_compared``.
    """
    parent_of = parent_of or {}
    nsv = len(layout.subvol_ids)
    cov = shared.coverage
    m = max(cov.n_segments + 1, 1)
    lengths = cov.lengths
    run_sv = layout.inode_sv[shared.runs.inode]
    glo = run_sv * m + cov.lo
    ghi = run_sv * m + cov.hi
    order = np.argsort(glo, kind="stable")
    glo, ghi = glo[order], ghi[order]
    if len(glo):
        reach = np.maximum.accumulate(ghi)
        first = np.ones(len(glo), bool)
        first[1:] = glo[1:] > reach[:-1]
        firsts, lasts = _run_bounds(first)
        ulo, uhi = glo[firsts], reach[lasts]
    else:
        ulo = uhi = np.zeros(0, _I64)
    usv = ulo // m
    ulo, uhi = ulo - usv * m, uhi - usv * m
    nseg = cov.n_segments
    if nseg:
        count = np.cumsum(np.bincount(ulo, minlength=m).astype(_I64) - np.bincount(uhi, minlength=m))[:nseg]
    else:
        count = np.zeros(0, _I64)
    excl = _prefix(np.where(count == 1, lengths, 0))
    shrd = _prefix(np.where(count >= 2, lengths, 0))
    u_shared = shrd[uhi] - shrd[ulo]
    exclusive_keys = _group_sum(usv, excl[uhi] - excl[ulo], nsv)
    shared_keys = _group_sum(usv, u_shared, nsv)

    sharing_ids = np.flatnonzero(shared_keys > 0)
    if len(sharing_ids) <= PAIR_LIMIT:
        both = _pairs_by_mask(sharing_ids, ulo, uhi, usv, count, lengths, nsv)
        n_pairs = len(sharing_ids) * (len(sharing_ids) - 1) // 2
    else:
        pairs = _pair_candidates(sharing_ids, layout.subvol_ids, shared_keys, parent_of)
        keep = u_shared > 0
        both = _pairs_by_search(pairs, ulo[keep], uhi[keep], usv[keep], lengths, nsv)
        n_pairs = len(pairs)
    found: list[list[tuple[int, int]]] = [[] for _ in range(nsv)]
    for (a, b), keys in both.items():
        if keys > 0:
            found[a].append((int(layout.subvol_ids[b]), int(keys)))
            found[b].append((int(layout.subvol_ids[a]), int(keys)))
    shares_with = [sorted(f, key=lambda t: (-t[1], t[0]))[:3] for f in found]

    n_sharing = len(sharing_ids)
    return SubvolumeStats(
        ids=layout.subvol_ids,
        inodes=np.bincount(layout.inode_sv, minlength=nsv).astype(_I64),
        files=_group_sum(layout.inode_sv, layout.nlink, nsv),
        per_inode_pages=_group_sum(layout.inode_sv, layout.npages, nsv),
        eligible_pages=_group_sum(layout.inode_sv, shared.inode_eligible, nsv),
        exclusive_keys=exclusive_keys,
        shared_keys=shared_keys,
        saved_pages=_group_sum(layout.inode_sv, shared.inode_saved, nsv, np.float64),
        shares_with=shares_with,
        pairs_compared=n_pairs,
        pairs_possible=n_sharing * (n_sharing - 1) // 2,
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
    file_pages = _group_sum(owner[mapped], (lengths * cov.cov)[mapped], len(ext_db))
    keys = _group_sum(owner[mapped], lengths[mapped], len(ext_db))
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
        inodes = np.unique(row_inode[row_db == db])
        refs = int((row_db == db).sum())
        svs = np.unique(layout.subvol[inodes])
        out.append(
            TopExtent(
                logical=int(db),
                disk_num_bytes=int(ext_dnb[x]),
                references=refs,
                subvolumes=[int(s) for s in svs],
                file_pages=int(file_pages[x]),
                cached_pages=int(keys[x]),
                saved_pages=int(saved[x]),
                inodes=[(int(layout.subvol[i]), int(layout.ino[i])) for i in inodes[:10]],
            )
        )
    return out


def top_files(layout: Layout, shared: Sharing, top: int) -> list[TopFile]:
    """The ``top`` regular inodes by fair-share saved pages (only those saving something)."""
    saved = shared.inode_saved
    candidates = np.flatnonzero(saved > 1e-9)
    if top <= 0 or not len(candidates):
        return []
    order = np.lexsort((layout.ino[candidates], layout.subvol[candidates], -saved[candidates]))
    out = []
    for i in candidates[order[:top]]:
        out.append(
            TopFile(
                subvol=int(layout.subvol[i]),
                ino=int(layout.ino[i]),
                size=int(layout.size[i]),
                nlink=int(layout.nlink[i]),
                pages=int(layout.npages[i]),
                eligible_pages=int(shared.inode_eligible[i]),
                shared_pages=int(shared.inode_shared[i]),
                saved_pages=float(saved[i]),
            )
        )
    return out


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
    per_inode_pages: int
    models: dict[str, ModelResult]
    shared: Sharing
    shared_compressed: Sharing
    kinds: np.ndarray  # per inode, KINDS order
    by_kind: dict[str, int]
    subvolumes: SubvolumeStats
    top_extents: list[TopExtent]
    top_files: list[TopFile]

    @property
    def notes(self) -> list[str]:
        return self.layout.notes


def analyze(
    tables: FileTables,
    page_size: int,
    sectorsize: int,
    *,
    num_devices: int = 1,
    data_profiles: Iterable = ("SINGLE",),
    top: int = 10,
    parent_of: Mapping[int, int | None] | None = None,
) -> CacheAnalysis:
    """All models, the by-kind breakdown, per-subvolume figures and the top lists."""
    layout = build_layout(tables, page_size, sectorsize)
    extents = _extent_starts(layout)
    P = layout.page_size
    first_keys = (_i64(extents[0]) + P - 1) // P
    shared = sharing(layout, eligible_runs(layout, SEG_DATA), first_keys)
    compressed = sharing(layout, eligible_runs(layout, SEG_COMPRESSED))
    per_inode = int(layout.npages.sum())
    se_pages = per_inode - shared.saved_pages
    sec_pages = se_pages - compressed.saved_pages
    ok, reason = rfc_applicability(P, layout.sectorsize, num_devices, data_profiles)
    models = {
        "per_inode": ModelResult("per_inode", per_inode),
        "shared_extent": ModelResult("shared_extent", se_pages),
        "shared_extent_compressed": ModelResult("shared_extent_compressed", sec_pages),
        "rfc_as_posted": ModelResult("rfc_as_posted", se_pages if ok else None, ok, reason),
    }
    kinds = inode_kinds(layout, shared)
    by_kind = {name: int(v) for name, v in zip(KINDS, kinds.sum(axis=0))}
    return CacheAnalysis(
        layout=layout,
        per_inode_pages=per_inode,
        models=models,
        shared=shared,
        shared_compressed=compressed,
        kinds=kinds,
        by_kind=by_kind,
        subvolumes=subvolume_stats(layout, shared, parent_of),
        top_extents=top_extents(layout, shared, extents, top),
        top_files=top_files(layout, shared, top),
    )
