"""Bytes of a file extent reference that another reference also maps.

A reference (one EXTENT_DATA item: a subvolume, an inode, a file offset)
maps the bytes ``[offset, offset + num_bytes)`` of its data extent (of the
decompressed data when the extent is compressed). Its shared bytes are
those another reference to the same extent also maps: another file, the
same inode in a snapshot, or another position of the same file (a reflink
within it). The two ends of an extent whose middle was overwritten map
disjoint bytes and share none, though the kernel holds one backref for both.

All references are counted at once: the byte ranges of the extents
referenced more than once are laid end to end, the coverage of every elementary segment between
reference ends is a running sum, and a reference's shared bytes are the
segments under it that more than one reference covers.
"""

from __future__ import annotations

import numpy as np

from ..format.constants import FileExtentType

#: Largest end of a reference counted: data extents are at most 256 MiB; a damaged item's larger offset
#: or length is cut here, so the laid-out ranges of millions of extents stay within int64.
MAX_REFERENCED_END = 1 << 31


def shared_bytes(extents: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Per row of ``extents`` (``tables.EXTENT_DTYPE``): the bytes it maps that another row also maps
    (0 for holes and inline extents, and for the only reference to an extent). ``weight``: how many
    references each row stands for (a row of a leaf several subvolumes hold; default 1): a row standing for
    two or more shares all its bytes."""
    out = np.zeros(len(extents), np.uint64)
    weight = np.ones(len(extents), np.int64) if weight is None else np.asarray(weight, np.int64)
    rows = np.flatnonzero((extents["type"] != FileExtentType.INLINE) & (extents["disk_bytenr"] != 0))
    order = np.argsort(extents["disk_bytenr"][rows], kind="stable")
    rows = rows[order]
    bytenr = extents["disk_bytenr"][rows]
    first_of = np.flatnonzero(np.concatenate(([True], bytenr[1:] != bytenr[:-1]))) if len(rows) else rows
    refs = np.diff(np.append(first_of, len(rows)))
    several = (np.add.reduceat(weight[rows], first_of) > 1) if len(rows) else refs > 1  # once: shares nothing
    rows = rows[np.repeat(several, refs)]
    if len(rows) == 0:
        return out
    refs = refs[several]
    picked = extents[rows]
    start = np.minimum(picked["offset"], MAX_REFERENCED_END).astype(np.int64)
    end = np.minimum(start + np.minimum(picked["num_bytes"], MAX_REFERENCED_END).astype(np.int64),
                     MAX_REFERENCED_END)
    group_first = np.concatenate(([0], np.cumsum(refs)[:-1]))
    span = np.maximum.reduceat(end, group_first)
    base = np.repeat(np.concatenate(([0], np.cumsum(span)[:-1])), refs)
    start, end = base + start, base + end
    points = np.unique(np.concatenate((start, end)))
    first, last = np.searchsorted(points, start), np.searchsorted(points, end)
    w = weight[rows]
    change = np.bincount(first, w, minlength=len(points)) - np.bincount(last, w, minlength=len(points))
    covered_twice = np.cumsum(change)[:-1] >= 2
    running = np.concatenate(([0], np.cumsum(np.where(covered_twice, np.diff(points), 0))))
    out[rows] = (running[last] - running[first]).astype(np.uint64)
    return out
