"""Runs of eligible file pages: the file pages a shared-extent cache can key by one logical page."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import run_bounds
from .layout import SEG_COMPRESSED, SEG_DATA, PageLayout, I64


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


def eligible_runs(layout: PageLayout, kind: int = SEG_DATA) -> KeyRuns:
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
        span = np.zeros(int(rg.max()) + 1, I64)
        np.maximum.at(span, rg, key0 + count)
        block = np.zeros(len(span), I64)
        np.cumsum(span[:-1], out=block[1:])
        key0 = block[rg] + key0
    return KeyRuns(r_inode, k0, key0, count)

