"""The page-cache models over a working set: only the resident pages count.

Input: a ``Residency`` (resident page runs per file) and its ``Backing``
(extent segments per file). Definitions follow ``cache.layout`` exactly, so a
working set gives the same figures whether its backing came from FIEMAP on the
mounted filesystem or from the extent items of an image:

* ``per_inode``: resident pages (what fincore counts, summed over inodes).
* A page ``k`` is *eligible* when its content ``[k*P, min((k+1)*P, E))``
  lies inside one *run* (DATA segments of the file contiguous both in the
  file and in logical space) and the logical address of its first byte is a
  multiple of P; its *key* is that address / P.
* ``shared_extent``: resident eligible pages counted once per distinct key,
  plus every other resident page on its own.
* Kinds of resident pages: eligible pages are ``regular_shared`` when another
  resident file page maps their key, else ``regular_exclusive``; any other
  page takes the first category touching its content, ``inline`` >
  ``compressed`` > ``unknown`` (delalloc and FIEMAP without an address; live
  only) > ``unaligned`` (data) > ``prealloc`` > ``hole``.

Everything is interval arithmetic over runs in a global page numbering
(``base[file] + page``); nothing is expanded to one row per page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..arrays import I64, distinct, group_sum, prefix, ranges, run_bounds
from ..cache.coverage import Sharing, run_sharing
from ..cache.runs import KeyRuns
from .backing import Backing, Category, content_end

if TYPE_CHECKING:
    from ..live.residency import Residency

KINDS = ("regular_shared", "regular_exclusive", "compressed", "inline", "unknown", "prealloc", "hole", "unaligned")


def overlaps(alo, ahi, blo, bhi) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Non-empty intersections of two sorted lists of disjoint intervals: (i, j, lo, hi)."""
    first = np.searchsorted(ahi, blo, side="right")
    last = np.searchsorted(alo, bhi, side="left")
    i = ranges(first, last)
    j = np.repeat(np.arange(len(blo), dtype=I64), np.maximum(last - first, 0))
    lo = np.maximum(alo[i], blo[j])
    hi = np.minimum(ahi[i], bhi[j])
    keep = lo < hi
    return i[keep], j[keep], lo[keep], hi[keep]


def union(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals sorted by start, as sorted disjoint intervals."""
    if not len(lo):
        return lo, hi
    reach = np.maximum.accumulate(hi)
    first = np.ones(len(lo), bool)
    first[1:] = lo[1:] > reach[:-1]
    firsts, lasts = run_bounds(first)
    return lo[firsts], reach[lasts]


def _covered(ulo: np.ndarray, uhi: np.ndarray, qlo: np.ndarray, qhi: np.ndarray) -> np.ndarray:
    """Per query interval, how much of it the disjoint sorted intervals ``[ulo, uhi)`` cover."""
    below = prefix(uhi - ulo)

    def upto(x):  # covered length below x
        i = np.searchsorted(ulo, x, side="right")
        inside = np.where(i > 0, np.minimum(x, uhi[np.maximum(i - 1, 0)]) - ulo[np.maximum(i - 1, 0)], 0)
        return below[np.maximum(i - 1, 0)] * (i > 0) + np.maximum(inside, 0)

    if not len(ulo):
        return np.zeros(len(qlo), I64)
    return upto(qhi) - upto(qlo)


@dataclass
class WorkingSetPages:
    """Per-file resident page facts: totals per kind, and the resident eligible pages keyed by logical page
    (``sharing.runs``: ``KeyRuns`` whose ``inode`` is the residency row)."""

    residency: Residency
    page_size: int
    file_pages: np.ndarray  # resident pages per file
    file_kinds: dict[str, np.ndarray]  # per kind (KINDS), resident pages per file
    sharing: Sharing


def eligible_runs(backing: Backing, npages: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """Eligible page ranges of the files, as (file, first page, key of first page, count), in file order.

    ``npages`` and ``end`` (the content end E) are per file.
    """
    P = backing.page_size
    sel = (backing.category == Category.DATA) & (backing.addr >= 0)
    f, s, e, a = backing.file[sel], backing.start[sel], backing.end[sel], backing.addr[sel]
    first = np.ones(len(f), bool)
    if len(f) > 1:
        first[1:] = ~((f[1:] == f[:-1]) & (s[1:] == e[:-1]) & (a[1:] == a[:-1] + (e[:-1] - s[:-1])))
    firsts, lasts = run_bounds(first)
    rf, rs, re, ra = f[firsts], s[firsts], e[lasts], a[firsts]
    k0 = (rs + P - 1) // P
    # a run reaching the content end E covers the last page too (its content ends at E)
    k1 = np.where(re == end[rf], npages[rf], re // P)
    count = k1 - k0
    ok = (count > 0) & (np.mod(ra - rs, P) == 0)
    key0 = (ra + k0 * P - rs) // P
    return rf[ok], k0[ok], key0[ok], count[ok]


def analyze(res: Residency, backing: Backing) -> WorkingSetPages:
    """Resident page facts of ``res`` given what backs its files."""
    P = res.page_size
    n = len(res)
    npages = (res.size + P - 1) // P
    base = prefix(npages)[:-1]
    run_file = res.run_file
    rlo = base[run_file] + res.run_page
    rhi = rlo + res.run_count
    file_pages = group_sum(run_file, res.run_count, n)

    # eligible pieces: resident runs intersected with eligible ranges
    ef, ek0, ekey, ecount = eligible_runs(backing, npages, content_end(res.size, P, backing.sectorsize))
    elo = base[ef] + ek0
    _, j, lo, hi = overlaps(rlo, rhi, elo, elo + ecount)
    keys = KeyRuns(ef[j], lo - base[ef[j]], ekey[j] + (lo - elo[j]), hi - lo)

    # pages touching segments of the first c categories
    seg_lo = base[backing.file] + backing.start // P
    seg_hi = base[backing.file] + (backing.end + P - 1) // P

    def touched(last: Category) -> np.ndarray:
        m = backing.category <= last
        ulo, uhi = union(seg_lo[m], seg_hi[m])
        return group_sum(run_file, _covered(ulo, uhi, rlo, rhi), n)

    t_inline, t_comp, t_unknown, t_data, t_prealloc = (touched(c) for c in Category)

    sharing = run_sharing(keys, np.ones(n, I64))
    eligible, shared = sharing.inode_eligible, sharing.inode_shared
    kinds = {
        "regular_shared": shared,
        "regular_exclusive": eligible - shared,
        "compressed": t_comp - t_inline,
        "inline": t_inline,
        "unknown": t_unknown - t_comp,
        "prealloc": t_prealloc - t_data,
        "hole": file_pages - t_prealloc,
        "unaligned": t_data - t_unknown - eligible,
    }
    return WorkingSetPages(res, P, file_pages, kinds, sharing)

# --- the figures the models report ------------------------------------------------------


def per_inode_pages(ws: WorkingSetPages) -> int:
    """Linux today: every resident page (equals fincore summed over the files)."""
    return int(ws.file_pages.sum())


def shared_extent_pages(ws: WorkingSetPages) -> int:
    """A shared-extent cache: resident eligible pages once per key, every other resident page on its own."""
    return per_inode_pages(ws) - ws.sharing.saved_pages


def pages_by_kind(ws: WorkingSetPages) -> dict[str, int]:
    """Resident pages per kind (``KINDS``); they add up to ``per_inode_pages``."""
    return {kind: int(ws.file_kinds[kind].sum()) for kind in KINDS}


def subvolume_keys(sharing: Sharing, row_subvolume: np.ndarray, nsv: int) -> tuple[np.ndarray, np.ndarray]:
    """Per subvolume (``row_subvolume`` of each residency row): the keys only its resident pages map
    (exclusive), and the keys it maps that another subvolume maps too (shared)."""
    cov, runs = sharing.coverage, sharing.runs
    k = max(nsv, 1)
    seg = ranges(cov.lo, cov.hi)
    sv = np.repeat(row_subvolume[runs.inode], cov.hi - cov.lo)
    # the lowest and highest subvolume holding each key segment: equal, it is that one's alone; only the
    # segments several subvolumes hold need their distinct (segment, subvolume) pairs
    low = np.full(cov.n_segments, k, I64)
    high = np.full(cov.n_segments, -1, I64)
    np.minimum.at(low, seg, sv)
    np.maximum.at(high, seg, sv)
    alone = (high >= 0) & (low == high)
    mixed = ~alone[seg]
    pair = distinct(seg[mixed] * k + sv[mixed])
    lengths = cov.lengths
    return (np.bincount(low[alone], lengths[alone], nsv).astype(I64),
            np.bincount(pair % k, lengths[pair // k] if len(pair) else np.zeros(0, I64), nsv).astype(I64))


def top_rows(res: Residency, saved: np.ndarray, top: int) -> list[int]:
    """The ``top`` residency rows by ``saved`` (only those saving something), ties by (subvol, ino)."""
    if top <= 0:
        return []
    cand = np.flatnonzero(saved > 1e-9)
    if len(cand) > top:  # the rows saving at least the top-th largest saving (ties kept), then ranked
        cand = cand[saved[cand] >= np.partition(saved[cand], len(cand) - top)[len(cand) - top]]
    return cand[np.lexsort((res.ino[cand], res.subvol[cand], -saved[cand]))][:top].tolist()


@dataclass(frozen=True)
class SubvolumeWorkingSet:
    """One subvolume (or top-level directory): its resident pages and keys under shared_extent.

    ``exclusive_pages``: keys mapped by resident pages of this subvolume only;
    ``shared_pages``: keys it maps that another subvolume maps too.
    """

    id: int
    files_with_pages: int
    per_inode_pages: int
    unshareable_pages: int
    exclusive_pages: int
    shared_pages: int
    saved_pages: float


def per_subvolume(ws: WorkingSetPages) -> list[SubvolumeWorkingSet]:
    ids, row = ws.residency.subvolume_index
    nsv = len(ids)
    sh = ws.sharing
    exclusive, shared = subvolume_keys(sh, row, nsv)
    files = np.bincount(row, minlength=nsv)
    pages = group_sum(row, ws.file_pages, nsv)
    unshareable = group_sum(row, ws.file_pages - sh.inode_eligible, nsv)
    saved = group_sum(row, sh.inode_saved, nsv, np.float64)
    return [SubvolumeWorkingSet(int(ids[x]), int(files[x]), int(pages[x]), int(unshareable[x]), int(exclusive[x]),
                                int(shared[x]), float(saved[x])) for x in range(nsv)]


@dataclass(frozen=True)
class FileWorkingSet:
    """A file of the working set and what shared_extent saves on it (its fair share)."""

    subvol: int
    ino: int
    path: bytes
    size: int
    pages: int
    eligible_pages: int
    shared_pages: int
    saved_pages: float


def top_files(ws: WorkingSetPages, top: int) -> list[FileWorkingSet]:
    """The ``top`` files by fair-share saved pages (only those saving something), ties by (subvol, ino)."""
    res, sh = ws.residency, ws.sharing
    return [FileWorkingSet(int(res.subvol[i]), int(res.ino[i]), res.path(i), int(res.size[i]),
                           int(ws.file_pages[i]), int(sh.inode_eligible[i]), int(ws.file_kinds["regular_shared"][i]),
                           float(sh.inode_saved[i])) for i in top_rows(res, sh.inode_saved, top)]


@dataclass(frozen=True)
class RangeWorkingSet:
    """A maximal range of consecutive logical pages that resident eligible pages map.

    Ranges are cut from the keys alone (not from extent items, which FIEMAP
    merges and an image does not), so a live capture and an image give the
    same ranges. ``file_pages``: resident file pages mapping into it;
    ``cached_pages``: its length; ``files``: files mapping into it.
    """

    logical: int
    cached_pages: int
    file_pages: int
    saved_pages: int
    files: int
    subvolumes: tuple[int, ...]
    examples: tuple[tuple[int, int], ...]  # up to 10 (subvol, ino)


def top_ranges(ws: WorkingSetPages, top: int) -> list[RangeWorkingSet]:
    """The ``top`` logical ranges by pages shared_extent saves on them (only ranges saving something)."""
    cov = ws.sharing.coverage
    if not len(cov.cov):
        return []
    mapped = cov.cov > 0
    first = mapped & np.concatenate(([True], ~mapped[:-1]))
    rid = np.cumsum(first) - 1  # range of each mapped segment
    lengths = cov.lengths
    file_pages = group_sum(rid[mapped], (lengths * cov.cov)[mapped], int(first.sum()))
    cached = group_sum(rid[mapped], lengths[mapped], int(first.sum()))
    start = cov.bounds[:-1][first]
    saved = file_pages - cached
    cand = np.flatnonzero(saved > 0)
    chosen = cand[np.lexsort((start[cand], -saved[cand]))][:max(top, 0)]
    res = ws.residency
    # the files of each chosen range, found in one pass over the pieces (a piece lies inside one range:
    # its keys are consecutive and mapped), as distinct (chosen range, residency row) pairs
    slot = np.full(len(cached), -1, I64)
    slot[chosen] = np.arange(len(chosen), dtype=I64)
    piece_slot = slot[rid[cov.lo]]
    sel = piece_slot >= 0
    n = max(len(res), 1)
    pair = distinct(piece_slot[sel] * n + ws.sharing.runs.inode[sel])
    cuts = np.searchsorted(pair // n, np.arange(len(chosen) + 1))
    out = []
    for k, r in enumerate(chosen.tolist()):
        files = pair[cuts[k]:cuts[k + 1]] % n
        subvols = distinct(res.subvol[files])
        out.append(RangeWorkingSet(int(start[r]) * ws.page_size, int(cached[r]), int(file_pages[r]), int(saved[r]),
                                   len(files), tuple(subvols.tolist()), _first_files(res, files, subvols, 10)))
    return out


def _first_files(res: Residency, rows: np.ndarray, subvols: np.ndarray, count: int) -> tuple[tuple[int, int], ...]:
    """The ``count`` smallest (subvol, ino) of the residency rows ``rows`` (each a distinct file), whose
    subvolumes are ``subvols`` (sorted)."""
    out: list[tuple[int, int]] = []
    for sv in subvols.tolist():
        inos = res.ino[rows[res.subvol[rows] == sv]]
        take = min(count - len(out), len(inos))
        smallest = np.sort(np.partition(inos, take - 1)[:take]) if take < len(inos) else np.sort(inos)
        out += [(sv, ino) for ino in smallest.tolist()]
        if len(out) == count:
            break
    return tuple(out)
