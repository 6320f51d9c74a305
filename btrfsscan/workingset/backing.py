"""What backs each file of a working set: extent segments, from FIEMAP or from the image's extent items.

Both sources end in the same ``Backing`` table, so the figures of
``workingset.pages`` are identical for a live capture and for the same
residency modelled on an image of the filesystem. Segments are byte ranges of
a file, sorted, disjoint, clipped to the page contents ``[0, E)`` with
``E = min(roundup(i_size, sector size), npages * page size)`` (the definition
of ``cache.layout``), and each has one category:

* ``INLINE``: FIEMAP ``DATA_INLINE``; an inline extent item.
* ``COMPRESSED``: FIEMAP ``ENCODED`` (not inline); a compressed REG item.
* ``UNKNOWN``: FIEMAP ``DELALLOC``, ``UNKNOWN`` or ``DATA_ENCRYPTED``: data
  whose disk address the kernel does not (yet) give; never on an image.
* ``DATA``: written, uncompressed data. ``addr`` is the logical address of
  the segment's first byte (btrfs ``fe_physical``, ``disk_bytenr + offset``),
  -1 where there is none to key by: FIEMAP ``NOT_ALIGNED``/``DATA_TAIL``, an
  address past the model's limit.
* ``PREALLOC``: FIEMAP ``UNWRITTEN``; a PREALLOC item.

Holes (explicit hole items, or ranges no extent maps) are simply absent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..arrays import I64, ranges
from ..format.constants import FiemapFlag

if TYPE_CHECKING:
    from ..live.collect import LiveExtents
    from ..live.residency import Residency


class Category(enum.IntEnum):
    """Segment categories in the order of precedence a page's kind is decided by (lowest first)."""

    INLINE = 0
    COMPRESSED = 1
    UNKNOWN = 2
    DATA = 3
    PREALLOC = 4


@dataclass
class Backing:
    """Segments of the residency's files: ``file`` (row of the residency), byte ``start``/``end``, ``category``, ``addr``."""

    page_size: int
    sectorsize: int
    file: np.ndarray  # int64, sorted
    start: np.ndarray  # int64
    end: np.ndarray  # int64
    category: np.ndarray  # uint8
    addr: np.ndarray  # int64, -1: no key


def content_end(size: np.ndarray, page_size: int, sectorsize: int) -> np.ndarray:
    """``E`` of every file: i_size rounded up to the sector size, at most the end of its last page."""
    size = size.astype(I64)
    npages = (size + page_size - 1) // page_size
    return np.minimum((size + sectorsize - 1) // sectorsize * sectorsize, npages * page_size)


def clip(page_size: int, sectorsize: int, res: Residency, file, start, end, category, addr) -> Backing:
    """Segments clipped to ``[0, E)`` of their file (an address moves with a clipped start); empty ones dropped."""
    file, start, end = np.asarray(file, I64), np.asarray(start, I64), np.asarray(end, I64)
    addr = np.asarray(addr, I64)
    lo = np.maximum(start, 0)
    hi = np.minimum(end, content_end(res.size, page_size, sectorsize)[file])
    keep = lo < hi
    addr = np.where(addr >= 0, addr + (lo - start), -1)
    return Backing(page_size, sectorsize, file[keep], lo[keep], hi[keep],
                   np.asarray(category, np.uint8)[keep], addr[keep])


_ADDR_LIMIT = 1 << 60


def from_fiemap(res: Residency, extents: LiveExtents, sectorsize: int) -> Backing:
    """The backing of a live capture's files from their FIEMAP extents (already in file order)."""
    flags = extents.flags.astype(np.int64)
    n = len(flags)
    file = np.repeat(np.arange(len(res), dtype=I64), np.diff(extents.start))
    category = np.full(n, Category.DATA, np.uint8)
    category[flags & FiemapFlag.UNWRITTEN != 0] = Category.PREALLOC
    category[flags & (FiemapFlag.DELALLOC | FiemapFlag.UNKNOWN | FiemapFlag.DATA_ENCRYPTED) != 0] = Category.UNKNOWN
    category[flags & FiemapFlag.ENCODED != 0] = Category.COMPRESSED
    category[flags & FiemapFlag.DATA_INLINE != 0] = Category.INLINE
    physical = extents.physical
    keyable = ((category == Category.DATA) & (flags & (FiemapFlag.NOT_ALIGNED | FiemapFlag.DATA_TAIL) == 0)
               & (physical < np.uint64(_ADDR_LIMIT)))
    addr = np.where(keyable, np.minimum(physical, np.uint64(_ADDR_LIMIT)).astype(I64), -1)
    start = np.minimum(extents.logical, np.uint64(_ADDR_LIMIT)).astype(I64)
    end = start + np.minimum(extents.length, np.uint64(_ADDR_LIMIT)).astype(I64)
    return clip(res.page_size, sectorsize, res, file, start, end, category, addr)


def segments_of(rows: np.ndarray, versions: np.ndarray, seg_version: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For residency rows mapped to ``versions``, (row, segment index) of every segment of that version.

    ``seg_version`` is sorted (segments are kept in version order).
    """
    lo = np.searchsorted(seg_version, versions, side="left")
    hi = np.searchsorted(seg_version, versions, side="right")
    return np.repeat(rows, hi - lo), ranges(lo, hi)
