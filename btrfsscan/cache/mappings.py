"""Inode versions with identical mappings, so the content designs compute each page's content once.

Two versions of a ``PageLayout`` with the same ``i_size`` and the same
segments (file range, kind, address, and the extent item fields the content
sources read) hold the same bytes page for page, whatever their inode number
or subvolumes. On a snapshot-heavy filesystem most versions repeat another's
mapping (an unchanged file whose leaf changed elsewhere, a copy in another
package directory): the large bench image has 3.3 million version pages but
0.6 million distinct mapping pages. ``distinct_mappings`` groups them;
content ids and the content designs' units are computed over the groups'
representatives (``DistinctMappings.layout``) and expanded back by
``of_version``.

Equality is exact: segments are hashed to group them, then every segment is
compared field by field with its representative's; a collision (never
seen) falls back to one group per version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import I64, first_seen_ranks, group_ids, prefix
from .layout import PageLayout

_ODD = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class DistinctMappings:
    """``layout``: one representative version per group of ``of_version`` (version -> group), weighted by
    the (subvolume, inode) pairs of the whole group; its ``subvol``/``ino`` are the representative's."""

    of_version: np.ndarray
    layout: PageLayout


def _segment_columns(layout: PageLayout) -> list[np.ndarray]:
    """Every field of a segment that a content source reads (``cache.content``)."""
    ext = layout.versions.extents
    rows = layout.seg_row
    words = np.ascontiguousarray(ext["inline_hash"][rows]).view("<u8").reshape(-1, 2)
    return [layout.seg_start, layout.seg_end, layout.seg_kind, layout.seg_addr, layout.seg_valid,
            ext["disk_bytenr"][rows], ext["disk_num_bytes"][rows], ext["num_bytes"][rows],
            ext["compression"][rows], ext["ram_bytes"][rows], words[:, 0], words[:, 1]]


def _hash(columns: list[np.ndarray]) -> np.ndarray:
    """A 64-bit hash per row of the columns (multiply-xor chain; equality is checked afterwards)."""
    h = np.zeros(len(columns[0]), np.uint64)
    for column in columns:
        h = (h ^ column.astype(np.uint64)) * _ODD
        h ^= h >> np.uint64(29)
    return h


def distinct_mappings(layout: PageLayout) -> DistinctMappings:
    """Group the versions of ``layout`` by (``i_size``, segments); see the module docstring."""
    ids, first = _groups(layout)
    # groups numbered in the order of their first version, so the representatives keep the layout's
    # order (its segments stay grouped by version, in version order)
    ids = first_seen_ranks(ids)
    firsts = np.empty(len(first), I64)
    firsts[ids[first]] = first
    return DistinctMappings(ids, _subset(layout, firsts, ids))


def _groups(layout: PageLayout) -> tuple[np.ndarray, np.ndarray]:
    """``group_ids`` of the versions by (``i_size``, segments), checked field by field. (A function of its
    own: its columns, a dozen arrays per segment, are gone before the representatives are copied.)"""
    n = layout.n_inodes
    n_segs = np.bincount(layout.seg_inode, minlength=n)
    seg_at = prefix(n_segs)
    starts = prefix(n_segs + 1)
    values = np.empty(int(starts[-1]), I64)
    heads = starts[:-1]
    values[heads] = layout.size
    body = np.ones(len(values), bool)
    body[heads] = False
    columns = _segment_columns(layout)
    values[body] = _hash(columns).view(I64)
    ids, first = group_ids(starts, values) if n else (np.zeros(0, I64), np.zeros(0, I64))
    # exact: each segment against the same segment of its version's representative
    seg_index = np.arange(len(layout.seg_inode), dtype=I64)
    rep_seg = seg_at[first[ids[layout.seg_inode]]] + seg_index - seg_at[layout.seg_inode]
    if not all((column == column[rep_seg]).all() for column in columns):
        return np.arange(n, dtype=I64), np.arange(n, dtype=I64)
    return ids, first


def _subset(layout: PageLayout, keep: np.ndarray, ids: np.ndarray) -> PageLayout:
    """The versions ``keep`` of ``layout`` (in that order, renumbered 0..), each weighted by its group."""
    new = np.full(layout.n_inodes, -1, I64)
    new[keep] = np.arange(len(keep), dtype=I64)
    rows = np.flatnonzero(new[layout.row_inode] >= 0)
    segs = np.flatnonzero(new[layout.seg_inode] >= 0)
    npages = layout.npages[keep]
    return PageLayout(
        page_size=layout.page_size, sectorsize=layout.sectorsize, versions=layout.versions,
        subvol=layout.subvol[keep], ino=layout.ino[keep], size=layout.size[keep], nlink=layout.nlink[keep],
        weight=np.bincount(ids, layout.weight, len(keep)).astype(I64), npages=npages,
        content_end=layout.content_end[keep], base=prefix(npages)[:-1],
        row_inode=new[layout.row_inode[rows]], row_db=layout.row_db[rows], row_dnb=layout.row_dnb[rows],
        row_kind=layout.row_kind[rows],
        seg_inode=new[layout.seg_inode[segs]], seg_start=layout.seg_start[segs], seg_end=layout.seg_end[segs],
        seg_kind=layout.seg_kind[segs], seg_addr=layout.seg_addr[segs], seg_group=layout.seg_group[segs],
        seg_valid=layout.seg_valid[segs], seg_row=layout.seg_row[segs], notes=layout.notes,
    )
