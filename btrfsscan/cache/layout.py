"""The page layout of every regular inode: the ground the cache models stand on.

Question the models answer: after every regular file of the filesystem has
been read once, how many pages does the page cache hold under Linux's
per-inode cache, and how many would another design (a cache of *shared
extents*, the 2021 RFC "Shared memory for shared extents", ...) hold?

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

The input is inode *versions* (``btrfsscan.model.versions``): an inode that
several subvolumes hold unchanged (a snapshot's untouched files) is one row,
weighted by the number of its holders, so the cost follows the distinct
metadata, not the number of snapshots. Everything is computed with intervals
(runs of file pages mapping runs of keys), sorting and cumulative sums;
nothing is expanded to one row per page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import distinct_inverse, prefix, segmented_cummax
from ..format.constants import Compression, FileExtentType
from ..model.versions import InodeVersions

#: Page sizes a model can be computed at.
PAGE_SIZES = (4096, 16384, 65536)

#: Addresses and file positions are handled as int64; values past these limits
#: only occur in corrupt trees and make an item unshareable (or clamp a size).
ADDR_LIMIT = 1 << 60
SIZE_LIMIT = 1 << 53
DECOMPRESSED_LIMIT = 1 << 40

# item categories of a clipped segment
SEG_INLINE, SEG_COMPRESSED, SEG_DATA, SEG_PREALLOC, SEG_HOLE = range(5)

I64 = np.int64




def as_int64(values) -> np.ndarray:
    return np.asarray(values).astype(I64)


def clamp(values: np.ndarray, limit: int) -> np.ndarray:
    """uint64 column -> int64, values above ``limit`` set to ``limit``."""
    return np.minimum(values, np.uint64(limit)).astype(I64)


@dataclass
class PageLayout:
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
        return int((per_version.astype(I64) * self.weight).sum())


def _in_order(major: np.ndarray, minor: np.ndarray) -> bool:
    """Whether (major, minor) pairs are sorted (then a stable sort would change nothing)."""
    if len(major) < 2:
        return True
    up = major[1:] > major[:-1]
    return bool((up | ((major[1:] == major[:-1]) & (minor[1:] >= minor[:-1]))).all())


def build_layout(versions: InodeVersions, page_size: int, sectorsize: int) -> PageLayout:
    """Page counts of each inode version and its extent items clipped to ``[0, E)``."""
    P, S = int(page_size), int(sectorsize)
    if P <= 0 or S <= 0:
        raise ValueError(f"page size and sector size must be positive ({P}, {S})")
    notes = list(versions.notes)
    inodes = versions.inodes
    weight = versions.weight.astype(I64)
    raw_size = inodes["size"]
    if (raw_size > SIZE_LIMIT).any():
        notes.append(f"{int(weight[raw_size > SIZE_LIMIT].sum())} inode sizes above {SIZE_LIMIT} bytes clamped")
    size = clamp(raw_size, SIZE_LIMIT)
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
    fo = clamp(ext["file_offset"][keep], ADDR_LIMIT)
    if not _in_order(row_inode, fo):  # items come in key order from trees; hand-made tables may not
        order = np.lexsort((fo, row_inode))
        keep, row_inode, fo = keep[order], row_inode[order], fo[order]
    n_rows = len(keep)

    nb = clamp(ext["num_bytes"][keep], ADDR_LIMIT)
    db_raw, off_raw = ext["disk_bytenr"][keep], ext["offset"][keep]
    typ, comp = ext["type"][keep], ext["compression"][keep]
    kind = np.full(n_rows, SEG_DATA, np.uint8)
    kind[comp != Compression.NONE] = SEG_COMPRESSED
    kind[typ == FileExtentType.PREALLOC] = SEG_PREALLOC
    kind[db_raw == 0] = SEG_HOLE
    kind[typ == FileExtentType.INLINE] = SEG_INLINE

    # clip: start after the items before it in the inode, end at the content end
    end_raw = fo + nb
    prev_end = np.zeros(n_rows, I64)
    if n_rows > 1:
        same = row_inode[1:] == row_inode[:-1]
        # items overlap only in corrupt trees; then an item ends where the longest before it does
        overlap = (same & (fo[1:] < end_raw[:-1])).any()
        reach = segmented_cummax(end_raw, row_inode) if overlap else end_raw
        prev_end[1:] = np.where(same, reach[:-1], 0)
    start = np.maximum(fo, prev_end)
    end = np.minimum(end_raw, content_end[row_inode])
    nonempty = start < end

    db = clamp(db_raw, ADDR_LIMIT)
    off = clamp(off_raw, ADDR_LIMIT)
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
    group = np.zeros(n_rows, I64)
    if is_comp.any():
        group[is_comp] = distinct_inverse(db_raw[is_comp])[1]

    m = slice(None) if nonempty.all() else nonempty  # most items lie within their file
    return PageLayout(
        page_size=P,
        sectorsize=S,
        versions=versions,
        subvol=inodes["subvol"],
        ino=inodes["ino"],
        size=size,
        nlink=as_int64(inodes["nlink"]),
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

