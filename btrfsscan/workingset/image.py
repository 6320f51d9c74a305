"""A working set on an image (``report --resident``/``--workload``): its backing from the image's extent items.

The residency's files are found by (subvolume, inode) among the inode
versions of ``cache.layout.PageLayout`` built at the residency's page size; a
file the image lacks, or whose i_size differs, is dropped and warned about
(the result is then partial). The segments are the layout's own (already
clipped to ``[0, E)`` and de-overlapped), so eligibility is decided exactly
as the image-wide models decide it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import I64, first_seen_ranks, ranges
from ..cache.content import UNKNOWN, PageContent
from ..cache.coverage import run_sharing
from ..cache.layout import SEG_COMPRESSED, SEG_DATA, SEG_HOLE, SEG_INLINE, SEG_PREALLOC, PageLayout
from ..cache.runs import KeyRuns
from ..errors import Warnings
from ..live.residency import Residency
from .backing import Backing, Category, clip, segments_of
from .pages import overlaps

_LUT = np.zeros(max(SEG_INLINE, SEG_COMPRESSED, SEG_DATA, SEG_PREALLOC, SEG_HOLE) + 1, np.uint8)
for _seg, _category in ((SEG_INLINE, Category.INLINE), (SEG_COMPRESSED, Category.COMPRESSED),
                        (SEG_DATA, Category.DATA), (SEG_PREALLOC, Category.PREALLOC)):
    _LUT[_seg] = _category


def version_of(res: Residency, layout: PageLayout) -> np.ndarray:
    """The inode version of every residency row (-1: no regular inode (subvol, ino) in the image).

    The (subvolume, inode) pairs of the layout are sorted by the dense subvolume index, then inode
    (lexsort of plain integer columns: a structured sort costs seconds on a large image); each
    subvolume's rows of the residency are then looked up in its block."""
    v = layout.versions
    sizes = v.set_sizes[v.version_set]
    sv = v.set_members[ranges(v.set_start[v.version_set], v.set_start[v.version_set] + sizes)].astype(I64)
    ino = np.repeat(layout.ino, sizes).astype(np.uint64)
    version = np.repeat(np.arange(v.n_versions, dtype=I64), sizes)
    order = np.lexsort((ino, sv))
    sv, ino, version = sv[order], ino[order], version[order]
    ids = np.asarray(v.subvol_ids).astype(np.uint64)
    by_id = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[by_id], res.subvol), max(len(ids) - 1, 0))
    want = np.where((len(ids) > 0) & (ids[by_id][pos] == res.subvol), by_id[pos], -1) if len(ids) else \
        np.full(len(res), -1, I64)
    block = np.searchsorted(sv, np.arange(len(ids) + 1))
    out = np.full(len(res), -1, I64)
    rows = np.argsort(want, kind="stable")
    cuts = np.searchsorted(want[rows], np.arange(len(ids) + 1))
    for s in range(len(ids)):
        mine = rows[cuts[s]:cuts[s + 1]]
        lo, hi = block[s], block[s + 1]
        if not len(mine) or hi == lo:
            continue
        wanted = res.ino[mine].astype(np.uint64)
        at = np.minimum(np.searchsorted(ino[lo:hi], wanted), hi - lo - 1)
        found = ino[lo + at] == wanted
        out[mine[found]] = version[lo + at[found]]
    return out


def restrict(res: Residency, keep: np.ndarray) -> Residency:
    """The residency of the rows where ``keep`` is True (counts keep the files left out)."""
    rows = np.flatnonzero(keep)
    a, b = res.run_start[rows], res.run_start[rows + 1]
    pa, pb = res.path_start[rows], res.path_start[rows + 1]
    runs = ranges(a, b)
    blob = np.frombuffer(res.path_blob, np.uint8)
    paths = blob[ranges(pa, pb)].tobytes() if len(blob) else b""
    return Residency(
        kind=res.kind, captured_at=res.captured_at, page_size=res.page_size, filesystem=res.filesystem,
        roots=res.roots, subvolumes=res.subvolumes, subvol=res.subvol[rows], ino=res.ino[rows], size=res.size[rows],
        path_blob=paths, path_start=np.concatenate(([0], np.cumsum(pb - pa))).astype(I64),
        run_start=np.concatenate(([0], np.cumsum(b - a))).astype(I64), run_page=res.run_page[runs],
        run_count=res.run_count[runs], files=res.files, unreadable=res.unreadable, notes=list(res.notes),
    )


@dataclass
class ImageWorkingSet:
    """A working set placed on an image's layout: ``version[i]`` is the inode version of residency row ``i``.

    The models keyed by more than a logical address (compressed extents,
    cache units of whole files, content ids) state their keys as
    ``cache.runs.KeyRuns`` over the layout's pages, for every file read
    once; ``saved_by`` restricts such keys to the resident pages.
    """

    layout: PageLayout
    residency: Residency
    version: np.ndarray

    def resident_keys(self, runs: KeyRuns) -> KeyRuns:
        """The resident pages among those ``runs`` key, as ``KeyRuns`` of residency rows (a layout page
        resident in several files, snapshots' copies of one inode version, is in each)."""
        layout, res = self.layout, self.residency
        start = layout.base[runs.inode] + runs.page0
        order = np.argsort(start, kind="stable")
        alo = start[order]
        blo = layout.base[self.version[res.run_file]] + res.run_page
        i, j, lo, hi = overlaps(alo, alo + runs.count[order], blo, blo + res.run_count)
        row = res.run_file[j]
        return KeyRuns(row, lo - layout.base[self.version[row]], runs.key0[order][i] + (lo - alo[i]), hi - lo)

    def content_keys(self, content: PageContent) -> KeyRuns:
        """The resident pages of known content keyed by content (the id of the page of the row's version's
        distinct mapping, renumbered), as ``KeyRuns`` of residency rows.

        The ids of the distinct mappings' pages are renumbered in order of first appearance, so a stretch
        of pages whose content was not seen before has consecutive keys (as do later pages repeating it
        in the same order): those stretches are the key runs, and each resident run is cut by them
        (the cost follows the runs, not the resident pages). A compacted hole (``cache.sparse``) is a
        stretch of its own, of the zero page throughout: its resident pages are keyed one by one."""
        res, mappings, weight = self.residency, content.mappings, content.weight
        ids = content.page_id
        key = ids.copy()
        positive = ids > 0
        key[positive] = first_seen_ranks(ids[positive]) + 1
        cut = np.ones(len(key), bool)
        cut[1:] = (key[1:] != key[:-1] + 1) | (key[:-1] == UNKNOWN) | (weight[:-1] > 1)
        starts = np.flatnonzero(cut)
        ends = np.append(starts[1:], len(key))
        known = key[starts] != UNKNOWN  # an unknown page is a stretch of its own
        starts, ends = starts[known], ends[known]
        hole = weight[starts] > 1
        first = content.pages.original(starts)  # in the pages of ``mappings.layout``
        last = first + np.where(hole, weight[starts], ends - starts)
        base = mappings.layout.base[mappings.of_version[self.version[res.run_file]]]
        i, j, lo, hi = overlaps(first, last, base + res.run_page, base + res.run_page + res.run_count)
        run = ~hole[i]
        each = np.repeat(np.flatnonzero(~run), (hi - lo)[~run])  # a hole's resident pages, one by one
        page = ranges(lo[~run], hi[~run])
        rows = np.concatenate((j[run], j[each]))
        return KeyRuns(res.run_file[rows], np.concatenate((lo[run], page)) - base[rows],
                       np.concatenate((key[starts[i[run]]] + (lo[run] - first[i[run]]), np.zeros(len(page), I64))),
                       np.concatenate((hi[run] - lo[run], np.ones(len(page), I64))))

    def saved_by(self, runs: KeyRuns) -> int:
        """Resident pages that ``runs`` key, less the distinct keys they map: what caching each key once
        saves over the working set."""
        return run_sharing(self.resident_keys(runs), np.ones(len(self.residency), I64)).saved_pages


def from_layout(res: Residency, layout: PageLayout, warnings: Warnings) -> tuple[Residency, Backing, ImageWorkingSet]:
    """The residency's files the image holds unchanged, their backing from the layout's segments, and the
    kept files placed on the layout."""
    if layout.page_size != res.page_size:
        raise ValueError(f"layout page size {layout.page_size} != residency page size {res.page_size}")
    version = version_of(res, layout)
    missing = version < 0
    differs = np.zeros(len(res), bool)
    differs[~missing] = layout.size[version[~missing]] != res.size[~missing]
    for label, mask in (("not in the image", missing), ("of another i_size in the image", differs)):
        for i in np.flatnonzero(mask)[:20].tolist():
            warnings.add(f"residency file {label}: not modelled",
                         f"subvolume {int(res.subvol[i])} inode {int(res.ino[i])} "
                         f"{res.path(i).decode(errors='replace')}")
        if mask.sum() > 20:
            warnings.add(f"{int(mask.sum()) - 20} more residency files {label}")
    keep = ~(missing | differs)
    kept = res if keep.all() else restrict(res, keep)
    rows, segs = segments_of(np.arange(len(kept), dtype=I64), version[keep], layout.seg_inode)
    kind = layout.seg_kind[segs]
    real = kind != SEG_HOLE
    rows, segs, kind = rows[real], segs[real], kind[real]
    category = _LUT[kind]
    addr = np.where((kind == SEG_DATA) & layout.seg_valid[segs], layout.seg_addr[segs], -1)
    backing = clip(layout.page_size, layout.sectorsize, kept, rows, layout.seg_start[segs], layout.seg_end[segs],
                   category, addr)
    return kept, backing, ImageWorkingSet(layout, kept, version[keep])
