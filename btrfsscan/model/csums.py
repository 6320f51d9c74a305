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

from dataclasses import dataclass, field

import numpy as np

from ..arrays import I64, dense_rows, prefix, ranges
from ..concurrency import Once, shared
from ..errors import CorruptionError, Warnings
from ..format import checksum
from ..format.constants import CsumType, ItemType, ObjectId
from ..format.plausibility import CSUM_COLUMNS, CSUM_RULES, Limits, column_violations, csum_end, finding
from ..tree.block import HEADER_SIZE, LeafBatch
from ..tree.bulk import BulkReader
from ..tree.reader import TreeReader
from ..tree.walk import TreeRoot

_EXTENT_CSUM = int(ItemType.EXTENT_CSUM)


@dataclass(frozen=True)
class CsumItems:
    """The EXTENT_CSUM items of one leaf: where each starts, how many sectors, and their checksums."""

    start: np.ndarray  # uint64 logical byte address
    sectors: np.ndarray  # int64
    csums: np.ndarray  # uint8, ``csum size`` bytes per sector, item after item


def parse_csum_leaves(batch: LeafBatch, limits: Limits) -> tuple[list[CsumItems], list[tuple[int, str]]]:
    """Per leaf its EXTENT_CSUM items, and (leaf, what) for each item skipped: those breaking a rule of the
    kernel's check_csum_item (``plausibility.CSUM_RULES``, each item against the one before it in its leaf)."""
    items = batch.items
    rows = np.flatnonzero(items["key.type"] == _EXTENT_CSUM)
    start, size = items["key.offset"][rows], items["size"][rows].astype(np.uint64)
    fields = np.zeros(len(rows), CSUM_COLUMNS)
    fields["objectid"], fields["size"] = items["key.objectid"][rows], size
    prev = rows - 1
    has_prev = (rows > 0) & (batch.leaf[np.maximum(prev, 0)] == batch.leaf[rows])
    has_prev &= items["key.type"][np.maximum(prev, 0)] == _EXTENT_CSUM
    prev, at = prev[has_prev], np.flatnonzero(has_prev)
    fields["prev_end"][at] = csum_end(items["key.offset"][prev], items["size"][prev].astype(np.uint64), limits)
    bad, said = column_violations(CSUM_RULES, fields, start, limits)
    skipped = [(int(batch.leaf[rows[i]]), finding((int(fields["objectid"][i]), _EXTENT_CSUM, int(start[i])), what,
                                                  batch.slot(int(rows[i])))) for i, what in said.items()]
    rows, size, start = rows[~bad], size[~bad].astype(I64), start[~bad]
    leaf = batch.leaf[rows]
    payload = batch.start[leaf] + HEADER_SIZE + items["offset"][rows].astype(I64)
    # an item's checksums lie together: copied a slice each (an index per byte would be 8 bytes a byte)
    raw = np.concatenate([batch.raw[a:b] for a, b in zip(payload.tolist(), (payload + size).tolist())]
                         or [np.zeros(0, np.uint8)])
    counts = np.bincount(leaf, minlength=len(batch))
    row_at, byte_at = prefix(counts), prefix(np.bincount(leaf, size, minlength=len(batch)).astype(I64))
    csum_size = limits.csum_size
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
    _once: Once = field(default_factory=Once, repr=False, compare=False)

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

    @shared
    def zero_csum(self) -> bytes:
        """The checksum of a sector of zeros: a written sector with it is read as the zero page."""
        return checksum.data_checksum(self.csum_type, bytes(self.sectorsize))

    @shared
    def value_ids(self) -> np.ndarray:
        """Per checksum row, a dense id of its value (1, 2, ...), 0 for the zero sector's checksum."""
        n, width = self.csums.shape
        if not n:
            return np.zeros(0, I64)
        if width == 4:  # crc32c: each checksum one word as it is
            words = self.csums.view("<u4").astype(np.uint64)
        else:
            words = np.ascontiguousarray(np.pad(self.csums, ((0, 0), (0, -width % 8)))).view("<u8")
        ids = dense_rows(words) + 1
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
    limits = Limits.of(reader.volume.superblock)
    bulk = BulkReader(reader, lambda batch: parse_csum_leaves(batch, limits), leaves, {}, warnings,
                      owner=ObjectId.CSUM_TREE)

    def unreadable(_: int, exc: CorruptionError) -> None:
        warnings.add(f"checksum tree unreadable, no data checksums: {exc}", "checksum tree", tree=root.tree_id)

    (order,) = bulk.walk([root], unreadable)
    return csum_table([leaves[bytenr] for bytenr in order], csum_type, sectorsize, warnings)


def with_replaced(table: CsumTable, pieces: list[tuple[int, bytes]]) -> CsumTable:
    """``table`` with the checksums of ``pieces`` ((logical start, checksums back to back), a later piece over
    an earlier one) in place of its own over the sectors they cover: the checksum tree after log replay
    (``btrfs_del_csums`` of each range, then ``btrfs_csum_file_blocks``)."""
    if not pieces:
        return table
    sector, size = table.sectorsize, table.csum_type.size
    new: dict[int, bytes] = {}
    for start, data in pieces:
        for i in range(len(data) // size):
            new[start + i * sector] = data[i * size:(i + 1) * size]
    addr = np.array(sorted(new), I64)
    rows = np.frombuffer(b"".join(new[a] for a in addr.tolist()), np.uint8).reshape(-1, size)
    located = table.locate(addr)
    item = np.searchsorted(table.start, addr[located >= 0], side="right") - 1
    hit = np.zeros(len(table.start), bool)
    hit[item] = True
    keep = np.flatnonzero(~hit)
    cut = np.flatnonzero(hit)  # items partly replaced: their other sectors stay, one item each
    sector_at = ranges(np.zeros(len(cut), I64), table.sectors[cut])
    cut_start = np.repeat(table.start[cut], table.sectors[cut]) + sector_at * sector
    cut_row = np.repeat(table.first[cut], table.sectors[cut]) + sector_at
    stays = ~np.isin(cut_start, addr)
    start = np.concatenate((table.start[keep], cut_start[stays], addr))
    sectors = np.concatenate((table.sectors[keep], np.ones(int(stays.sum()) + len(addr), I64)))
    source = np.concatenate((table.first[keep], cut_row[stays], len(table.csums) + np.arange(len(addr), dtype=I64)))
    order = np.argsort(start, kind="stable")
    start, sectors, source = start[order], sectors[order], source[order]
    csums = np.concatenate((table.csums.reshape(-1, size), rows))[ranges(source, source + sectors)]
    return CsumTable(table.csum_type, sector, start, sectors, prefix(sectors)[:-1], csums)
