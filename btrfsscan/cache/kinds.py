"""The per-inode pages by kind of page.

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
"""

from __future__ import annotations

import numpy as np

from .coverage import Sharing
from .layout import SEG_COMPRESSED, SEG_DATA, SEG_INLINE, SEG_PREALLOC, PageLayout

KINDS = ("regular_shared", "regular_exclusive", "compressed", "inline", "prealloc", "hole", "unaligned")


def pages_by_kind(layout: PageLayout, shared: Sharing) -> dict[str, int]:
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

