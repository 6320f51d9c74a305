"""Holes and prealloc compacted, for the computations that give every page a content id.

The content designs (``cache.content``) key every page of every distinct
mapping. The pages of a hole or of a prealloc extent all read as the zero
page, and neither costs metadata by its length: a 1 TiB ``truncate`` is
2^28 pages but no item at all, a 100 GiB ``fallocate`` 800 items. So they
are never expanded: every *gap* -- a run of pages that no segment but holes
and prealloc touch -- becomes one page standing for the whole run (its
``weight``); the segments after it move up by the pages removed, and sizes
shrink by them, in whole pages, so every page's bytes inside EOF and every
offset inside a page stay as they were. A compacted page's content id is
that of every page it stands for; counts weigh pages by ``weight``. Cost and
memory follow the written data, not ``i_size``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..arrays import I64, prefix
from .layout import SEG_HOLE, SEG_PREALLOC, PageLayout


@dataclass
class CompactPages:
    """``layout`` with its gaps compacted (hole and prealloc segments left out).

    Gap ``i`` (at least two pages) starts at global page ``gap_page[i]`` of
    the original layout and is ``gap_pages[i]`` long; ``removed[i]`` pages
    are removed before it (``removed[-1]``: all)."""

    layout: PageLayout
    gap_page: np.ndarray
    gap_pages: np.ndarray
    removed: np.ndarray

    def weight(self) -> np.ndarray:
        """Per compacted page, the pages of the original layout it stands for (made on each call, not kept:
        8 bytes a page)."""
        out = np.ones(int(self.layout.npages.sum()), I64)
        out[self.gap_page - self.removed[:-1]] = self.gap_pages
        return out

    def original(self, pages: np.ndarray) -> np.ndarray:
        """The first global page of the original layout that each compacted page ``pages`` stands for."""
        at = self.gap_page - self.removed[:-1]  # where each gap is once compacted
        return pages + self.removed[np.searchsorted(at, pages, side="left")]


def compact_pages(layout: PageLayout) -> CompactPages:
    """``layout`` with every gap of two pages or more compacted to one page (see the module docstring)."""
    P = layout.page_size
    keep = np.flatnonzero((layout.seg_kind != SEG_HOLE) & (layout.seg_kind != SEG_PREALLOC))
    inode = layout.seg_inode[keep]
    p0 = layout.seg_start[keep] // P
    p1 = -(-layout.seg_end[keep] // P)
    # a version's segments are disjoint and in file order: each one's last page is the reach so far
    first = np.ones(len(keep), bool)
    first[1:] = inode[1:] != inode[:-1]
    before = np.where(first, 0, np.roll(p1, 1))  # pages covered before each segment, in its file
    last = np.append(np.flatnonzero(first)[1:], len(keep)) - 1 if len(keep) else np.zeros(0, I64)
    covered = np.zeros(layout.n_inodes, I64)
    covered[inode[last]] = p1[last]
    starts = np.concatenate((layout.base[inode] + before, layout.base + covered))
    lengths = np.concatenate((p0 - before, layout.npages - covered))
    gap = lengths >= 2
    if not gap.any():  # nothing to compact: the layout as it is
        none = np.zeros(0, I64)
        return CompactPages(layout, none, none, np.zeros(1, I64))
    order = np.argsort(starts[gap], kind="stable")
    gap_page, gap_pages = starts[gap][order], lengths[gap][order]
    removed = prefix(gap_pages - 1)

    def removed_at(pages: np.ndarray, side: str) -> np.ndarray:
        return removed[np.searchsorted(gap_page, pages, side=side)]

    own = removed_at(layout.base, "left")  # removed in the files before each one
    in_file = removed_at(layout.base + layout.npages, "left") - own
    shift = (removed_at(layout.base[inode] + p0, "right") - own[inode]) * P
    npages = layout.npages - in_file
    compact = replace(
        layout, size=layout.size - in_file * P, npages=npages, content_end=layout.content_end - in_file * P,
        base=prefix(npages)[:-1], seg_inode=inode, seg_start=layout.seg_start[keep] - shift,
        seg_end=layout.seg_end[keep] - shift, seg_kind=layout.seg_kind[keep], seg_addr=layout.seg_addr[keep],
        seg_group=layout.seg_group[keep], seg_valid=layout.seg_valid[keep], seg_row=layout.seg_row[keep],
    )
    return CompactPages(compact, gap_page, gap_pages, removed)
