"""One tree block (node or leaf), checked like the kernel's tree-checker.

A block is checked once when read: checksum, header (bytenr, fsid, level,
generation), item table bounds and key order. Its item or pointer table is a
numpy structured view over the block, so a leaf's keys, offsets and sizes are
columns, not an object per item.
"""

from __future__ import annotations

import numpy as np

from ..format import checksum, fastparse
from ..format.constants import BTRFS_MAX_LEVEL, CsumType

HEADER_SIZE = fastparse.HEADER.size
_H = {name: i for i, name in enumerate(fastparse.HEADER.names)}
_ITEM_DTYPE = fastparse.ITEM.dtype
_PTR_DTYPE = fastparse.KEY_PTR.dtype


class BlockProblem(Exception):
    """A check a tree block failed; the reader adds where and which copy."""


class TreeBlock:
    """A verified tree block: header fields plus item or key-pointer columns."""

    __slots__ = ("bytenr", "data", "level", "nritems", "owner", "generation", "flags", "items", "ptrs", "dropped")

    def __init__(self, bytenr: int, data: bytes, header: tuple) -> None:
        self.bytenr = bytenr
        self.data = data
        self.level: int = header[_H["level"]]
        self.nritems: int = header[_H["nritems"]]
        self.owner: int = header[_H["owner"]]
        self.generation: int = header[_H["generation"]]
        self.flags: int = header[_H["flags"]]
        self.items: np.ndarray | None = None
        self.ptrs: np.ndarray | None = None
        self.dropped: list[str] = []

    @property
    def is_leaf(self) -> bool:
        return self.level == 0

    def item_data(self, slot: int) -> bytes:
        """The payload of leaf item ``slot``."""
        start = HEADER_SIZE + int(self.items["offset"][slot])
        return self.data[start : start + int(self.items["size"][slot])]

    def keys(self) -> list[tuple[int, int, int]]:
        """Keys of the items (leaf) or pointers (node), as tuples."""
        table = self.items if self.level == 0 else self.ptrs
        return list(zip(table["key.objectid"].tolist(), table["key.type"].tolist(), table["key.offset"].tolist()))

    def children(self) -> list[tuple[int, int]]:
        """(blockptr, generation) of each child of a node."""
        return list(zip(self.ptrs["blockptr"].tolist(), self.ptrs["generation"].tolist()))


def _keys_ascending(table: np.ndarray) -> int:
    """Index of the first key not greater than its predecessor, or -1."""
    if len(table) < 2:
        return -1
    oid, typ, off = table["key.objectid"], table["key.type"], table["key.offset"]
    gt = (oid[1:] > oid[:-1]) | (
        (oid[1:] == oid[:-1]) & ((typ[1:] > typ[:-1]) | ((typ[1:] == typ[:-1]) & (off[1:] > off[:-1])))
    )
    bad = np.flatnonzero(~gt)
    return int(bad[0]) + 1 if len(bad) else -1


def parse_block(
    data: bytes,
    bytenr: int,
    *,
    csum_type: CsumType,
    fsid: bytes,
    super_generation: int,
    sectorsize: int,
    level: int | None = None,
    generation: int | None = None,
    owner: int | None = None,
) -> TreeBlock:
    """Check ``data`` as the tree block at ``bytenr``; BlockProblem says what failed."""
    if not checksum.verify(csum_type, data):
        raise BlockProblem("checksum mismatch")
    header = fastparse.HEADER.unpack_from(data)
    block = TreeBlock(bytenr, data, header)
    if header[_H["bytenr"]] != bytenr:
        raise BlockProblem(f"header bytenr {header[_H['bytenr']]} differs from its address")
    if header[_H["fsid"]] != fsid:
        raise BlockProblem("header fsid belongs to another filesystem")
    if block.level >= BTRFS_MAX_LEVEL:
        raise BlockProblem(f"level {block.level} is {BTRFS_MAX_LEVEL} or more")
    if level is not None and block.level != level:
        raise BlockProblem(f"level {block.level}, expected {level}")
    if block.generation > super_generation:
        raise BlockProblem(f"generation {block.generation} is newer than the superblock's {super_generation}")
    if generation is not None and block.generation != generation:
        raise BlockProblem(f"parent transid verify failed: wanted generation {generation}, found {block.generation}")
    if owner is not None and block.owner != owner and block.level == 0 and owner < 256:
        raise BlockProblem(f"owner {block.owner}, expected tree {owner}")
    room = len(data) - HEADER_SIZE
    if block.level == 0:
        _check_leaf(block, room)
    else:
        _check_node(block, room, sectorsize)
    return block


def _check_leaf(block: TreeBlock, room: int) -> None:
    if block.nritems * _ITEM_DTYPE.itemsize > room:
        raise BlockProblem(f"nritems {block.nritems} cannot fit in a leaf of {room + HEADER_SIZE} bytes")
    items = np.frombuffer(block.data, _ITEM_DTYPE, block.nritems, HEADER_SIZE)
    bad = _keys_ascending(items)
    if bad >= 0:
        raise BlockProblem(f"keys out of order at slot {bad}")
    table_end = block.nritems * _ITEM_DTYPE.itemsize
    start = items["offset"].astype(np.int64)
    end = start + items["size"]
    ok = (start >= table_end) & (end <= room)
    if not ok.all():
        for slot in np.flatnonzero(~ok).tolist():
            block.dropped.append(
                f"slot {slot}: item data [{int(start[slot])}, {int(end[slot])}) lies outside the leaf data area [{table_end}, {room})"
            )
        items = items[ok]
    block.items = items


def _check_node(block: TreeBlock, room: int, sectorsize: int) -> None:
    if block.nritems == 0 or block.nritems * _PTR_DTYPE.itemsize > room:
        raise BlockProblem(f"nritems {block.nritems} impossible for a node of {room + HEADER_SIZE} bytes")
    ptrs = np.frombuffer(block.data, _PTR_DTYPE, block.nritems, HEADER_SIZE)
    bad = _keys_ascending(ptrs)
    if bad >= 0:
        raise BlockProblem(f"keys out of order at slot {bad}")
    misaligned = np.flatnonzero((ptrs["blockptr"] % sectorsize != 0) | (ptrs["blockptr"] == 0))
    if len(misaligned):
        slot = int(misaligned[0])
        raise BlockProblem(f"child pointer {int(ptrs['blockptr'][slot])} at slot {slot} is not sector-aligned")
    block.ptrs = ptrs
