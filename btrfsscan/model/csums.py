"""The checksum tree as column arrays: logical sector -> checksum of its on-disk bytes.

An EXTENT_CSUM item, key (EXTENT_CSUM_OBJECTID, EXTENT_CSUM, logical start),
holds one checksum per sector of written data from that address on, back to
back, ``csum_type.size`` bytes each (crc32c 4, xxhash64 8, sha256 and blake2b
32). Data without checksums (nodatasum/NOCOW, prealloc never written) has no
item. The tree is read like the fs trees (``BulkReader``: breadth-first, in
batches, every block checked) and each leaf's items become three columns, so
memory follows the size of the checksum tree, which is metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..arrays import I64, prefix, ranges
from ..errors import CorruptionError, Warnings
from ..format import checksum
from ..format.constants import CsumType, ItemType, ObjectId
from ..format.items import ITEM_TYPES
from ..tree.block import HEADER_SIZE, LeafBatch
from ..tree.bulk import BulkReader
from ..tree.reader import TreeReader
from ..tree.walk import TreeRoot

_CSUM_OBJECTID = np.uint64(ObjectId.EXTENT_CSUM)
_EXTENT_CSUM = int(ItemType.EXTENT_CSUM)
_CSUM_ITEM = ITEM_TYPES[ItemType.EXTENT_CSUM]


@dataclass(frozen=True)
class CsumItems:
    """The EXTENT_CSUM items of one leaf: where each starts, how many sectors, and their checksums."""

    start: np.ndarray  # uint64 logical byte address
    sectors: np.ndarray  # int64
    csums: np.ndarray  # uint8, ``csum size`` bytes per sector, item after item


def parse_csum_leaves(batch: LeafBatch, csum_size: int, sectorsize: int) -> tuple[list[CsumItems], list[tuple[int, str]]]:
    """Per leaf its EXTENT_CSUM items (other items ignored), and (leaf, what) for each item skipped.

    The bulk form of ``format.items.CsumItem``: the checks of its ``problem``
    over whole leaves at once, its words for each item skipped.
    """
    items = batch.items
    rows = np.flatnonzero((items["key.type"] == _EXTENT_CSUM) & (items["key.objectid"] == _CSUM_OBJECTID))
    size = items["size"][rows].astype(I64)
    start = items["key.offset"][rows]
    bad = (size % csum_size != 0) | (size == 0) | (start % np.uint64(sectorsize) != 0)
    skipped = [(int(batch.leaf[row]), _CSUM_ITEM.problem(int(items["key.offset"][row]), int(items["size"][row]),
                                                         csum_size, sectorsize) + ", skipped")
               for row in rows[bad].tolist()]
    rows, size, start = rows[~bad], size[~bad], start[~bad]
    leaf = batch.leaf[rows]
    payload = batch.start[leaf] + HEADER_SIZE + items["offset"][rows].astype(I64)
    raw = batch.raw[ranges(payload, payload + size)]
    counts = np.bincount(leaf, minlength=len(batch))
    row_at, byte_at = prefix(counts), prefix(np.bincount(leaf, size, minlength=len(batch)).astype(I64))
    out = [CsumItems(start[row_at[i]:row_at[i + 1]], size[row_at[i]:row_at[i + 1]] // csum_size,
                     raw[byte_at[i]:byte_at[i + 1]]) for i in range(len(batch))]
    return out, skipped


@dataclass
class CsumTable:
    """Every data checksum of a filesystem, items sorted by logical address.

    Item ``i`` covers sectors ``[start[i], start[i] + sectors[i] * S)``; its
    checksums are ``csums[first[i]:first[i] + sectors[i]]`` (one row of
    ``csum_type.size`` bytes per sector).
    """

    csum_type: CsumType
    sectorsize: int
    start: np.ndarray  # int64 logical byte address
    sectors: np.ndarray  # int64
    first: np.ndarray  # int64
    csums: np.ndarray  # uint8 (n, csum size)

    @property
    def n_sectors(self) -> int:
        return len(self.csums)

    def locate(self, logical: np.ndarray) -> np.ndarray:
        """Row in ``csums`` of the sector starting at each logical address, -1 where none is stored."""
        logical = np.asarray(logical, I64)
        if not len(self.start):  # no checksum items (nodatasum everywhere, or a damaged csum tree)
            return np.full(len(logical), -1, I64)
        item = np.searchsorted(self.start, logical, side="right") - 1
        safe = np.maximum(item, 0)
        sector = (logical - self.start[safe]) // self.sectorsize
        found = (item >= 0) & (sector < self.sectors[safe]) & (logical % self.sectorsize == 0)
        return np.where(found, self.first[safe] + sector, -1)

    @cached_property
    def zero_csum(self) -> bytes:
        """The checksum of a sector of zeros: a written sector with it is read as the zero page."""
        return checksum.data_checksum(self.csum_type, bytes(self.sectorsize))

    @cached_property
    def value_ids(self) -> np.ndarray:
        """Per checksum row, a dense id of its value (1, 2, ...), 0 for the zero sector's checksum."""
        n, width = self.csums.shape
        if not n:
            return np.zeros(0, I64)
        words = np.ascontiguousarray(np.pad(self.csums, ((0, 0), (0, -width % 8)))).view("<u8")
        order = np.argsort(words[:, 0]) if words.shape[1] == 1 else np.lexsort(words.T[::-1])
        ordered = words[order]
        new = np.ones(n, bool)
        new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
        ids = np.empty(n, I64)
        ids[order] = np.cumsum(new)
        zero = np.frombuffer(self.zero_csum.ljust(words.shape[1] * 8, b"\0"), "<u8")
        is_zero = (words == zero).all(axis=1)
        if is_zero.any():  # renumber: the zero checksum is 0, the others stay dense from 1
            zero_id = ids[np.flatnonzero(is_zero)[0]]
            ids = np.where(is_zero, 0, np.where(ids > zero_id, ids - 1, ids))
        return ids


def csum_table(parts: list[CsumItems], csum_type: CsumType, sectorsize: int, warnings: Warnings | None = None) -> CsumTable:
    """One table of the items of the leaves ``parts`` (in key order); overlapping items are warned about."""
    size = csum_type.size
    start = np.concatenate([np.zeros(0, I64)] + [p.start.astype(I64) for p in parts])
    sectors = np.concatenate([np.zeros(0, I64)] + [p.sectors for p in parts])
    csums = np.concatenate([np.zeros(0, np.uint8)] + [p.csums for p in parts]).reshape(-1, size)
    first = prefix(sectors)[:-1]
    order = np.argsort(start, kind="stable")
    if not (order == np.arange(len(order))).all():
        start, sectors, first = start[order], sectors[order], first[order]
    if len(start) > 1:
        overlap = np.flatnonzero(start[1:] < start[:-1] + sectors[:-1] * sectorsize)
        if len(overlap) and warnings is not None:
            at = int(start[overlap[0] + 1])
            warnings.add(f"{len(overlap)} EXTENT_CSUM items overlap the item before them; the later one is used "
                         "where they overlap", f"checksum tree, logical {at}", tree=int(ObjectId.CSUM_TREE))
    return CsumTable(csum_type, sectorsize, start, sectors, first, csums)


def read_csum_tree(reader: TreeReader, root: TreeRoot, csum_type: CsumType, sectorsize: int,
                   warnings: Warnings) -> CsumTable:
    """Every EXTENT_CSUM item of the checksum tree at ``root``; damaged parts are skipped with a warning."""
    leaves: dict[int, CsumItems] = {}
    bulk = BulkReader(reader, lambda batch: parse_csum_leaves(batch, csum_type.size, sectorsize), leaves, {}, warnings)

    def unreadable(_: int, exc: CorruptionError) -> None:
        warnings.add(f"checksum tree unreadable, no data checksums: {exc}", "checksum tree", tree=root.tree_id)

    (order,) = bulk.walk([root], unreadable)
    return csum_table([leaves[bytenr] for bytenr in order], csum_type, sectorsize, warnings)
