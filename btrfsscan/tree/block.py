"""One tree block (node or leaf), checked like the kernel's tree-checker.

A block is checked once when read: checksum, header (bytenr, fsid, level,
generation), item table bounds, key order and the first key its parent's
pointer names. Its item or pointer table is a numpy structured view over the
block, so a leaf's keys, offsets and sizes are columns, not an object per item.

``check_batch`` makes the same checks over many blocks at once (numpy over
the whole batch, one checksum call per block) and only says pass or fail: a
block that fails goes through ``parse_block`` for the message. ``LeafBatch``
holds the items of many leaves as one table over one buffer, for vectorized
item parsing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..format import checksum, fastparse
from ..format.constants import BTRFS_MAX_LEVEL, CsumType
from ..format.items import Key
from .owner import owner_problem, owners_allowed

HEADER_SIZE = fastparse.HEADER.size
_H = {name: i for i, name in enumerate(fastparse.HEADER.names)}
_ITEM_DTYPE = fastparse.ITEM.dtype
_PTR_DTYPE = fastparse.KEY_PTR.dtype
_KEY_FIELDS = ("key.objectid", "key.type", "key.offset")
#: What a parent pointer (or a root item) says of the block it names, one row per reference.
EXPECT_DTYPE = np.dtype([("bytenr", "<u8"), ("generation", "<u8"), ("has_generation", "?"),
                         ("key.objectid", "<u8"), ("key.type", "u1"), ("key.offset", "<u8"), ("has_key", "?")])


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


def _ascending(table: np.ndarray) -> np.ndarray:
    """For each key but the first: whether it is greater than the key before it."""
    oid, typ, off = table["key.objectid"], table["key.type"], table["key.offset"]
    return (oid[1:] > oid[:-1]) | (
        (oid[1:] == oid[:-1]) & ((typ[1:] > typ[:-1]) | ((typ[1:] == typ[:-1]) & (off[1:] > off[:-1])))
    )


def _keys_ascending(table: np.ndarray) -> int:
    """Index of the first key not greater than its predecessor, or -1."""
    if len(table) < 2:
        return -1
    bad = np.flatnonzero(~_ascending(table))
    return int(bad[0]) + 1 if len(bad) else -1


def level_problem(found: int, expected: int | None) -> str | None:
    """The kernel's level half of ``btrfs_verify_level_key``: a child sits one level below its parent."""
    if expected is not None and found != expected:
        return f"level {found}, expected {expected}"
    return None


def first_key_problem(block: TreeBlock, expected: Key | None) -> str | None:
    """The key half of ``btrfs_verify_level_key``: a child's first key is the key its parent's pointer holds.

    Checked against the block's own slot 0, before damaged items are dropped.
    """
    if expected is None:
        return None
    if block.nritems == 0:
        return f"no items, expected first key {expected} from the parent node"
    found = fastparse.DISK_KEY.unpack_from(block.data, HEADER_SIZE)
    if found != expected:
        return f"first key {found}, expected {expected} from the parent node"
    return None


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
    first_key: Key | None = None,
) -> TreeBlock:
    """Check ``data`` as the tree block at ``bytenr``; BlockProblem says what failed.

    ``check_batch`` makes the same checks over many blocks: keep them in step.
    """
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
    problem = level_problem(block.level, level)
    if problem:
        raise BlockProblem(problem)
    if block.generation > super_generation:
        raise BlockProblem(f"generation {block.generation} is newer than the superblock's {super_generation}")
    if generation is not None and block.generation != generation:
        raise BlockProblem(f"parent transid verify failed: wanted generation {generation}, found {block.generation}")
    problem = owner_problem(owner, block.owner) if owner is not None else None
    if problem:
        raise BlockProblem(problem)
    room = len(data) - HEADER_SIZE
    if block.level == 0:
        _check_leaf(block, room)
    else:
        _check_node(block, room, sectorsize)
    problem = first_key_problem(block, first_key)
    if problem:
        raise BlockProblem(problem)
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


def expect_root(bytenr: int, generation: int | None) -> np.ndarray:
    """The one-row expectation of a tree's root block: its address and, if known, its generation."""
    row = np.zeros(1, EXPECT_DTYPE)
    row["bytenr"] = bytenr
    if generation is not None:
        row["generation"], row["has_generation"] = generation, True
    return row


def expect_children(ptrs: np.ndarray) -> np.ndarray:
    """What a node's pointers say of its children: address, generation and first key."""
    out = np.zeros(len(ptrs), EXPECT_DTYPE)
    out["bytenr"], out["generation"] = ptrs["blockptr"], ptrs["generation"]
    for name in _KEY_FIELDS:
        out[name] = ptrs[name]
    out["has_generation"] = out["has_key"] = True
    return out


def expected(row: np.void) -> tuple[int | None, Key | None]:
    """(generation, first key) as ``parse_block`` takes them from one expectation row, None where it names none."""
    generation = int(row["generation"]) if row["has_generation"] else None
    key = tuple(int(row[name]) for name in _KEY_FIELDS) if row["has_key"] else None
    return generation, key


@dataclass(frozen=True)
class CheckedBatch:
    """What ``check_batch`` found: which blocks pass, and the item or pointer table of those that do."""

    passed: np.ndarray  # per block
    counts: np.ndarray  # table entries per block, 0 for a block that failed
    table: np.ndarray  # the entries of the passing blocks, block after block
    starts: np.ndarray  # where each block starts in the buffer checked
    owners: np.ndarray  # per block, its header's owner
    size: int  # bytes per block


def check_batch(data, expect: np.ndarray, level: int, readable: np.ndarray, *, csum_type: CsumType,
                fsid: bytes, super_generation: int, sectorsize: int, starts: np.ndarray | None = None,
                size: int | None = None, owner: int | None = None) -> CheckedBatch:
    """``parse_block``'s checks over blocks of one ``level``: block ``i`` is ``data[starts[i]:starts[i] + size]``
    (by default the blocks lie back to back in ``data``).

    ``data`` is any buffer: the batch read into memory, or a whole device
    mapped (``starts`` are then its physical offsets; a block not
    ``readable`` is never touched). ``expect`` (EXPECT_DTYPE) gives each
    block's address and what its parent says of it. A block passes only
    where ``parse_block`` would return it with no item dropped, so a failing
    block's message and the copies to try are left to ``parse_block`` alone.
    Numpy runs over the whole batch; the key order is compared across all
    blocks at once, masked at their boundaries. ``owner``: the tree the
    blocks belong to (``ObjectId.FS_TREE``: any subvolume tree), whose owner
    check each must pass, as ``parse_block`` with that ``owner``.
    """
    n = len(expect)
    if starts is None:
        size = len(data) // n
        starts = np.arange(n, dtype=np.int64) * size
    starts = np.where(readable, starts, 0).astype(np.int64)  # an unreadable block is not read
    raw = np.frombuffer(data, np.uint8)
    room = size - HEADER_SIZE
    header = _records(raw, starts, fastparse.HEADER.dtype)
    generation = header["generation"]
    ok = _checksums_match(data, raw, starts, size, csum_type, readable)
    ok &= (header["bytenr"] == expect["bytenr"]) & (header["fsid"] == fsid)
    ok &= (header["level"] == level) & (level < BTRFS_MAX_LEVEL)
    ok &= (generation <= super_generation) & (~expect["has_generation"] | (generation == expect["generation"]))
    if owner is not None:
        ok &= owners_allowed(owner, header["owner"])
    dtype = _ITEM_DTYPE if level == 0 else _PTR_DTYPE
    nritems = header["nritems"].astype(np.int64)
    ok &= (nritems * dtype.itemsize <= room) & ((nritems > 0) | (level == 0))
    counts = np.where(ok, nritems, 0)
    table = _tables(raw, starts, counts, dtype)
    owner = np.repeat(np.arange(n), counts)
    first = np.cumsum(counts) - counts
    ok[owner[_bad_entries(table, owner, first[counts > 0], counts, room, sectorsize, level)]] = False
    ok &= _first_keys_match(table, first, counts, expect)
    if not ok.all():
        table, counts = table[ok[owner]], np.where(ok, counts, 0)
    return CheckedBatch(ok, counts, table, starts, header["owner"], size)


def _records(raw: np.ndarray, starts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The ``dtype`` record at each byte offset ``starts`` of ``raw``, copied out as bytes (no per-field work)."""
    record = np.dtype((np.void, dtype.itemsize))
    return np.ndarray((len(raw) - dtype.itemsize + 1,), record, raw, strides=(1,))[starts].view(dtype)


def _checksums_match(data, raw: np.ndarray, starts: np.ndarray, size: int, csum_type: CsumType,
                     readable: np.ndarray) -> np.ndarray:
    """Per block: read, and its stored checksum matches (all compared at once)."""
    stored = _records(raw, starts, np.dtype(f"S{csum_type.size}"))
    digests = checksum.block_digests(csum_type, data, starts[readable].tolist(), size)
    ok = np.zeros(len(starts), bool)
    ok[readable] = np.frombuffer(digests, stored.dtype) == stored[readable]
    return ok


def _tables(raw: np.ndarray, starts: np.ndarray, counts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The first ``counts[i]`` table entries of each block ``i``, block after block, in one gather."""
    entry = np.repeat(starts + HEADER_SIZE, counts)
    index = np.arange(len(entry)) - np.repeat(np.cumsum(counts) - counts, counts)
    return _records(raw, entry + index * dtype.itemsize, dtype)


def _bad_entries(table: np.ndarray, owner: np.ndarray, first: np.ndarray, counts: np.ndarray, room: int,
                 sectorsize: int, level: int) -> np.ndarray:
    """Per table entry: out of key order within its block, item data outside the leaf's data area, or a
    child pointer not sector-aligned."""
    bad = np.zeros(len(table), bool)
    if len(table) > 1:
        bad[1:] = ~_ascending(table)
        bad[first] = False  # each block's first key has no predecessor in that block
    if level == 0:
        start = table["offset"].astype(np.int64)
        bad |= (start < counts[owner] * _ITEM_DTYPE.itemsize) | (start + table["size"] > room)
    else:
        ptr = table["blockptr"]
        bad |= (ptr % sectorsize != 0) | (ptr == 0)
    return bad


def _first_keys_match(table: np.ndarray, first: np.ndarray, counts: np.ndarray, expect: np.ndarray) -> np.ndarray:
    """Per block: no key expected, or its slot 0 holds the key its parent's pointer names."""
    match = ~expect["has_key"]
    if len(table):
        head = table[np.minimum(first, len(table) - 1)]
        same = counts > 0
        for name in _KEY_FIELDS:
            same &= head[name] == expect[name]
        match |= same
    return match


class LeafBatch:
    """The items of several leaves as one table over one byte buffer.

    ``items`` holds the items of every leaf, leaf after leaf, and ``leaf`` the
    leaf of each; leaf ``i`` is ``raw[start[i]:end[i]]``. Item parsers then
    gather the payloads of a whole batch at once.
    """

    def __init__(self, raw: np.ndarray, start: np.ndarray, end: np.ndarray, items: np.ndarray,
                 counts: np.ndarray | list[int]) -> None:
        self.raw = raw
        self.start = start
        self.end = end
        self.items = items
        self.leaf = np.repeat(np.arange(len(start)), counts)

    def __len__(self) -> int:
        return len(self.start)

    def slot(self, row: int) -> int:
        """The slot of item ``row`` in its leaf (among the items the leaf's checks kept), for warnings."""
        return row - int(np.searchsorted(self.leaf, self.leaf[row]))

    @classmethod
    def of_blocks(cls, blocks: list[TreeBlock]) -> LeafBatch:
        """The checked leaves ``blocks`` (their dropped items left out)."""
        sizes = np.array([len(b.data) for b in blocks], np.int64)
        end = np.cumsum(sizes)
        record = np.dtype((np.void, _ITEM_DTYPE.itemsize))  # concatenated as raw records: no per-field promotion
        items = np.concatenate([b.items.view(record) for b in blocks]).view(_ITEM_DTYPE)
        raw = np.frombuffer(b"".join(b.data for b in blocks), np.uint8)
        return cls(raw, end - sizes, end, items, [len(b.items) for b in blocks])

    @classmethod
    def of_checked(cls, data, checked: CheckedBatch) -> LeafBatch:
        """The leaves of the buffer ``data`` that passed ``check_batch``."""
        passed = np.flatnonzero(checked.passed)
        start = checked.starts[passed]
        return cls(np.frombuffer(data, np.uint8), start, start + checked.size, checked.table, checked.counts[passed])

    def gather(self, rows: np.ndarray, dtype: np.dtype, skip: int = 0) -> np.ndarray:
        """The payload bytes ``[skip, skip + dtype.itemsize)`` of each item of ``rows``, viewed through
        ``dtype``: copied out as whole records, so a caller gathers only the span it reads.

        Fields past the end of a short item hold whatever follows it in the
        leaf, or the leaf's last byte past its end; callers check sizes
        before trusting them.
        """
        size = dtype.itemsize
        leaf = self.leaf[rows]
        start = self.start[leaf] + (HEADER_SIZE + skip) + self.items["offset"][rows].astype(np.int64)
        record = np.dtype((np.void, size))  # records copied as bytes: no per-field work
        records = np.ndarray((len(self.raw) - size + 1,), record, self.raw, strides=(1,))
        out = records[np.minimum(start, len(records) - 1)].view(dtype)
        end = self.end[leaf]
        over = np.flatnonzero(start + size > end)
        if len(over):  # the rare record running past its leaf: byte by byte, held at the leaf's last byte
            idx = np.minimum(start[over, None] + np.arange(size), (end[over] - 1)[:, None])
            out[over] = self.raw[idx].view(dtype).reshape(-1)
        return out
