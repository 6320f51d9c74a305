"""Reading every inode and file extent of fs trees into column tables.

This is the hot path of a report. The trees of all subvolumes are read
together (``tree.bulk.BulkReader``: level by level, in batches by disk
address) and leaves are parsed with numpy a batch of a few hundred at a time
(gather the payloads of all INODE_ITEM or EXTENT_DATA items of the batch at
once, view them through dtypes derived from the construct definitions). Rows
are kept once per leaf, by address, and a node is remembered as the list of
leaves under it: snapshots share most blocks with their source, so a block is
read, checked and parsed once however many subvolumes contain it, a shared
subtree is one lookup, and the memory kept follows the unique metadata, not
the number of snapshots.
"""

from __future__ import annotations

from functools import partial

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import xxhash

from ..arrays import prefix
from ..errors import CorruptionError, Warnings
from ..format.compression import DecompressionError
from ..format.constants import Compression, FileExtentType, ItemType
from ..format.items import ITEM_TYPES, FileExtentItem
from ..tree.block import HEADER_SIZE, LeafBatch, TreeBlock
from ..tree.bulk import BulkReader
from ..tree.reader import TreeReader
from ..tree.walk import Visit, walk_tree, warn_item
from ..format.plausibility import EXTENT_DATA_RULES, INODE_RULES, Limits, column_violations, finding
from .content_hash import inline_hash
from .links import LinkTable, parse_links
from .log_overlay import LeafOverlay
from .subvolumes import Subvolume
from .tables import EXTENT_DTYPE, INODE_DTYPE, FileTables, LeafTables

_INODE = ITEM_TYPES[ItemType.INODE_ITEM].LAYOUT
_FE = ITEM_TYPES[ItemType.EXTENT_DATA].LAYOUT
_FE_HEAD_SIZE = FileExtentItem.HEAD.size
_INODE_FIELDS = ("size", "nbytes", "nlink", "mode", "uid", "gid", "flags", "rdev")
_REG_FIELDS = {"disk_bytenr": "reg.disk_bytenr", "disk_num_bytes": "reg.disk_num_bytes",
               "offset": "reg.offset", "num_bytes": "reg.num_bytes"}


@dataclass(frozen=True)
class ParsedLeaves:
    """The rows of a batch of leaves: one table each, leaf after leaf, and how many rows each leaf has."""

    inodes: np.ndarray  # INODE_DTYPE
    extents: np.ndarray  # EXTENT_DTYPE
    inode_counts: np.ndarray
    extent_counts: np.ndarray
    links: LinkTable | None = None


def _span(dtype: np.dtype, names: tuple[str, ...]) -> tuple[np.dtype, int]:
    """A dtype over just the bytes from the first to the last field ``names`` of ``dtype``, and where
    they start: gathering that span copies a third of an inode item."""
    offsets = [dtype.fields[name][1] for name in names]
    start = min(offsets)
    end = max(offset + dtype.fields[name][0].itemsize for name, offset in zip(names, offsets))
    return np.dtype({"names": list(names), "formats": [dtype.fields[name][0] for name in names],
                     "offsets": [offset - start for offset in offsets], "itemsize": end - start}), start


_INODE_KEPT, _INODE_KEPT_AT = _span(_INODE.dtype, _INODE_FIELDS)
_INODE_ITEM = int(ItemType.INODE_ITEM)
_EXTENT_DATA = int(ItemType.EXTENT_DATA)
_INLINE, _REG, _PREALLOC = int(FileExtentType.INLINE), int(FileExtentType.REG), int(FileExtentType.PREALLOC)
_NO_COMPRESSION = int(Compression.NONE)
#: Leaves parsed together in one vectorized batch by the depth-first walk (``memoize=False``).
BATCH_LEAVES = 256


def _inline_hashes(batch: LeafBatch, rows: np.ndarray, fields: np.ndarray, sizes: np.ndarray, sectorsize: int,
                   decompressed: bool, skipped: list[tuple[int, str]]) -> np.ndarray:
    """``inline_hash`` of each inline item of ``rows`` (valid ones), UNKNOWN_HASH where it does not decompress.

    Uncompressed items, nearly all of them, are hashed in one tight loop
    (``page_hash`` inlined: a call per item costs more than the hash).
    """
    out = np.zeros(len(rows), "V16")
    raw = memoryview(batch.raw)
    start = batch.start[batch.leaf[rows]] + (HEADER_SIZE + _FE_HEAD_SIZE) + batch.items["offset"][rows].astype(np.int64)
    length = sizes - _FE_HEAD_SIZE
    end = start + length
    plain = fields["head.compression"] == _NO_COMPRESSION
    digest = xxhash.xxh3_128_digest
    # page_hash: data ending in a nonzero byte as it is, the rest without its trailing zeros
    full = plain & (length > 0) & (batch.raw[np.maximum(end - 1, 0)] != 0)
    out[full] = np.frombuffer(b"".join([digest(raw[a:b]) for a, b in zip(start[full].tolist(), end[full].tolist())]),
                              "V16")
    strip = plain & ~full
    out[strip] = np.frombuffer(b"".join([digest(bytes(raw[a:b]).rstrip(b"\0"))
                                         for a, b in zip(start[strip].tolist(), end[strip].tolist())]), "V16")
    packed = np.flatnonzero(~plain)
    compression, ram = fields["head.compression"][packed].tolist(), fields["head.ram_bytes"][packed].tolist()
    for i, a, n, comp, ram_bytes in zip(packed.tolist(), start[packed].tolist(), length[packed].tolist(),
                                        compression, ram):
        try:
            out[i] = inline_hash(raw[a:a + n], comp, ram_bytes, sectorsize, decompressed)
        except DecompressionError as exc:
            row = int(rows[i])
            skipped.append((row, f"inline extent of inode {int(batch.items['key.objectid'][row])}: {exc}; "
                            "its content is unknown"))
    return out


def _key(items: np.ndarray, row: int) -> tuple[int, int, int]:
    return int(items["key.objectid"][row]), int(items["key.type"][row]), int(items["key.offset"][row])


def parse_leaves(batch: LeafBatch, limits: Limits, decompress_inline: bool = False,
                 links: bool = False) -> tuple[ParsedLeaves, list[tuple[int, str]]]:
    """INODE_ITEM and EXTENT_DATA rows of each fs-tree leaf (``subvol`` left 0), and the items skipped.

    ``links``: the INODE_REF/INODE_EXTREF rows too (``links.parse_links``).

    The skipped items come as (leaf index, what), in item order; the caller
    warns, naming the tree that reached the leaf first. Inline extents get
    their ``inline_hash``, compressed ones of their decompressed bytes only
    with ``decompress_inline`` (a decompression per item). Items that break a
    plausibility rule (``plausibility``, against ``limits``) are skipped too,
    naming their slot.
    """
    sectorsize = limits.sectorsize
    items = batch.items
    types = items["key.type"]
    sizes_all = items["size"].astype(np.int64)
    skipped: list[tuple[int, str]] = []  # (row, what)

    rows = np.flatnonzero(types == _INODE_ITEM)
    short = sizes_all[rows] < _INODE.size
    for row in rows[short].tolist():
        skipped.append((row, f"INODE_ITEM of inode {int(items['key.objectid'][row])} "
                        "shorter than btrfs_inode_item, skipped"))
    rows = rows[~short]
    fields = batch.gather(rows, _INODE_KEPT, _INODE_KEPT_AT)
    implausible, said = column_violations(INODE_RULES, fields, items["key.offset"][rows], limits)
    for i, what in said.items():
        row = int(rows[i])
        skipped.append((row, finding(_key(items, row), what, batch.slot(row))))
    rows, fields = rows[~implausible], fields[~implausible]
    inodes = np.zeros(len(rows), INODE_DTYPE)
    inodes["ino"] = items["key.objectid"][rows]
    for name in _INODE_FIELDS:
        inodes[name] = fields[name]
    inode_counts = np.bincount(batch.leaf[rows], minlength=len(batch))
    link_table = parse_links(batch, rows, inodes["mode"]) if links else None

    rows = np.flatnonzero(types == _EXTENT_DATA)
    fields = batch.gather(rows, _FE.dtype)
    sizes = sizes_all[rows]
    ftype = fields["head.type"]
    inline = ftype == _INLINE
    regular = (ftype == _REG) | (ftype == _PREALLOC)
    bad_inline = inline & ((sizes < _FE_HEAD_SIZE) | (
        (fields["head.compression"] == _NO_COMPRESSION) & (fields["head.ram_bytes"] != sizes - _FE_HEAD_SIZE)))
    valid = (inline & ~bad_inline) | (regular & (sizes >= _FE.size))
    implausible, said = column_violations(EXTENT_DATA_RULES, fields, items["key.offset"][rows], limits)
    for i, what in said.items():
        if valid[i]:
            row = int(rows[i])
            skipped.append((row, finding(_key(items, row), what, batch.slot(row))))
    for i in np.flatnonzero(~valid).tolist():  # malformed (the implausible ones were said above)
        row = int(rows[i])
        ino, off = int(items["key.objectid"][row]), int(items["key.offset"][row])
        what = FileExtentItem.problem(int(ftype[i]), int(fields["head.compression"][i]),
                                      int(fields["head.ram_bytes"][i]), int(sizes[i]))
        skipped.append((row, f"{what}, skipped (inode {ino} offset {off})"))
    valid &= ~implausible
    rows, fields, sizes, inline = rows[valid], fields[valid], sizes[valid], inline[valid]
    extents = np.zeros(len(rows), EXTENT_DTYPE)
    extents["ino"] = items["key.objectid"][rows]
    extents["file_offset"] = items["key.offset"][rows]
    extents["type"] = fields["head.type"]
    extents["compression"] = fields["head.compression"]
    extents["ram_bytes"] = fields["head.ram_bytes"]
    for column, field in _REG_FIELDS.items():
        extents[column] = np.where(inline, 0, fields[field])
    extents["num_bytes"] = np.where(inline, fields["head.ram_bytes"], fields["reg.num_bytes"])
    extents["disk_num_bytes"] = np.where(inline, sizes - _FE_HEAD_SIZE, fields["reg.disk_num_bytes"])
    at = np.flatnonzero(inline)
    extents["inline_hash"][at] = _inline_hashes(batch, rows[at], fields[at], sizes[at], sectorsize,
                                                decompress_inline, skipped)
    problems = [(int(batch.leaf[row]), what) for row, what in sorted(skipped)]
    return ParsedLeaves(inodes, extents, inode_counts, np.bincount(batch.leaf[rows], minlength=len(batch)),
                        link_table), problems


def _move_rows(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """One table of ``parts``, emptying ``parts`` as it is copied (every row is never held twice)."""
    out = np.empty(sum(len(p) for p in parts) * dtype.itemsize, np.uint8)  # copied as bytes: plain memcpy
    at = 0
    for n, part in enumerate(parts):
        raw = np.ascontiguousarray(part).view(np.uint8)
        out[at:at + len(raw)] = raw
        at += len(raw)
        parts[n] = None
    return out.view(dtype)


class _Known:
    """Blocks a walk need not read: parsed leaves and nodes whose leaves are listed."""

    def __init__(self, leaves: dict[int, int], nodes: dict[int, tuple[int, ...]]) -> None:
        self.leaves = leaves
        self.nodes = nodes

    def __contains__(self, bytenr: object) -> bool:
        return bytenr in self.leaves or bytenr in self.nodes


class FileScanner:
    """Scans fs trees into LeafTables (or FileTables), parsing each shared leaf once.

    Rows are kept once per leaf, in the tables of the batch that parsed it;
    a leaf is known by its *handle*, its number in parse order. A node is
    remembered as the list of leaves under it, so a subtree a snapshot shares
    with its source is one lookup and costs no memory beyond that list.
    ``memoize=False`` re-parses every block of every tree: slower, and only
    there to check that memoization does not change any figure. ``links=True``
    keeps the inodes' link rows too (``LeafTables.links``, for figures by
    directory).
    ``decompress_inline=True`` hashes compressed inline data decompressed
    (exact content, as ``--read-data`` needs) instead of as stored.
    """

    def __init__(self, reader: TreeReader, warnings: Warnings, *, memoize: bool = True, links: bool = False,
                 decompress_inline: bool = False) -> None:
        self.reader = reader
        self.decompress_inline = decompress_inline
        self.warnings = warnings
        self.memoize = memoize
        self.limits = Limits.of(reader.volume.superblock)
        self.links = links
        self._leaves: dict[int, int] = {}  # bytenr -> handle
        self._nodes: dict[int, tuple[int, ...]] = {}
        self._parsed: list[ParsedLeaves] = []  # in parse order: handles count leaves across them
        self._handles = 0
        self._bytenr_of: dict[int, int] = {}  # handle -> bytenr, once a walk has reached the leaf
        self.blocks_reused = 0

    def _walk_leaves(self, sub: Subvolume) -> list[int]:
        """The leaves of one subvolume's tree in key order (their rows are in ``_leaves``), one block at a time.

        The ``memoize=False`` way, and the depth-first reference the bulk
        reader is tested against. The walk records its visits and hands new
        leaves to ``parse_leaves`` in batches; the visits are then replayed
        to list each node's leaves.
        """
        visits: list[tuple[Visit, int]] = []
        pending: list[TreeBlock] = []

        def flush() -> None:
            handles, problems = self._parse(LeafBatch.of_blocks(pending))
            for block, handle in zip(pending, handles):
                self._leaves[block.bytenr] = handle
            for index, what in problems:
                warn_item(self.warnings, sub.id, pending[index].bytenr, what)
            pending.clear()

        try:
            for visit, bytenr, block in walk_tree(self.reader, sub.root, known=_Known(self._leaves, self._nodes)):
                visits.append((visit, bytenr))
                if visit is Visit.LEAF:
                    pending.append(block)
                    if len(pending) >= BATCH_LEAVES:
                        flush()
                elif visit is Visit.KNOWN:
                    self.blocks_reused += 1
        except CorruptionError as exc:
            self._skipped(sub, exc)
        if pending:
            flush()
        stack: list[list[int]] = [[]]
        for visit, bytenr in visits:
            if visit is Visit.ENTER:
                stack.append([])
            elif visit is Visit.EXIT:
                leaves = stack.pop()
                self._nodes[bytenr] = tuple(leaves)
                stack[-1].extend(leaves)
            elif bytenr in self._nodes:
                stack[-1].extend(self._nodes[bytenr])
            else:
                stack[-1].append(bytenr)
        while len(stack) > 1:  # a walk cut short leaves nodes open
            leaves = stack.pop()
            stack[-1].extend(leaves)
        return stack[0]

    def _bulk_leaves(self, subvols: list[Subvolume]) -> list[list[int]]:
        """The leaves of every subvolume's tree, all read ahead together (``BulkReader``)."""
        bulk = BulkReader(self.reader, self._parse, self._leaves, self._nodes, self.warnings)
        out = bulk.walk([sub.root for sub in subvols], lambda index, exc: self._skipped(subvols[index], exc))
        self.blocks_reused += bulk.blocks_reused
        return out

    def _fresh_walks(self, subvols: list[Subvolume]) -> Iterator[list[int]]:
        """``memoize=False``: every subvolume walked as if it shared no block."""
        for sub in subvols:
            self._leaves.clear()
            self._nodes.clear()
            yield self._walk_leaves(sub)

    def _skipped(self, sub: Subvolume, exc: CorruptionError) -> None:
        self.warnings.add(f"subvolume {sub.id} ({sub.path or 'top level'}) skipped: {exc}", f"tree {sub.id}", tree=sub.id)

    def _parse(self, batch: LeafBatch) -> tuple[list[int], list[tuple[int, str]]]:
        """Parse a batch of leaves, keep its rows, and hand out the leaves' handles."""
        parsed, problems = parse_leaves(batch, self.limits, self.decompress_inline, self.links)
        self._parsed.append(parsed)
        first = self._handles
        self._handles += len(batch)
        return list(range(first, self._handles)), problems

    def _subvolume_handles(self, subvols: list[Subvolume],
                           progress: Callable[[Subvolume], None] | None) -> list[np.ndarray]:
        """Per subvolume, the handles of its leaves in key order."""
        out = []
        if self.memoize:
            walks = self._bulk_leaves(subvols)
            self._bytenr_of.update((h, b) for b, h in self._leaves.items())
            keys = np.fromiter(self._leaves.keys(), np.uint64, len(self._leaves))
            handles = np.fromiter(self._leaves.values(), np.int64, len(self._leaves))
            order = np.argsort(keys)
            keys, handles = keys[order], handles[order]
            for sub, leaves in zip(subvols, walks):
                out.append(handles[np.searchsorted(keys, np.array(leaves, np.uint64))])
                if progress:
                    progress(sub)
            return out
        for sub, leaves in zip(subvols, self._fresh_walks(subvols)):  # each tree its own parse of every leaf
            self._bytenr_of.update((h, b) for b, h in self._leaves.items())
            out.append(np.array([self._leaves[b] for b in leaves], np.int64))
            if progress:
                progress(sub)
        return out

    def scan_leaves(self, subvols: Iterable[Subvolume],
                    progress: Callable[[Subvolume], None] | None = None) -> LeafTables:
        """The rows of every leaf parsed, and each subvolume's leaves.

        The scanner's rows move into the tables (they are not kept twice), so
        a scanner scans once.
        """
        subvols = list(subvols)
        handles = self._subvolume_handles(subvols, progress)
        parsed, self._parsed = self._parsed, []
        self._leaves.clear()
        self._nodes.clear()
        inode_start = prefix(np.concatenate([np.zeros(0, np.int64)] + [p.inode_counts for p in parsed]))
        extent_start = prefix(np.concatenate([np.zeros(0, np.int64)] + [p.extent_counts for p in parsed]))
        inode_parts, extent_parts = [p.inodes for p in parsed], [p.extents for p in parsed]
        links = LinkTable.joined([p.links for p in parsed]) if self.links else None
        del parsed
        n_leaves = self._handles
        if any(sub.replayed is not None for sub in subvols):  # log replay: synthetic leaves for what it changed
            parse = partial(parse_leaves, limits=self.limits,
                            decompress_inline=self.decompress_inline)
            overlay = LeafOverlay(parse, inode_parts, extent_parts, inode_start, extent_start, links, self.warnings)
            handles = [overlay.subvolume(sub, h, n_leaves) if sub.replayed is not None else h
                       for sub, h in zip(subvols, handles)]
            if links is not None:  # the synthetic leaves' link rows, after the scanned leaves' as their handles are
                links = LinkTable.joined([links, *overlay.new_links])
            inode_parts += overlay.new_inodes
            extent_parts += overlay.new_extents
            inode_start = np.append(inode_start, inode_start[-1] + np.cumsum(np.array([len(t) for t in overlay.new_inodes], np.int64)))
            extent_start = np.append(extent_start, extent_start[-1] + np.cumsum(np.array([len(t) for t in overlay.new_extents], np.int64)))
            n_leaves += overlay.n_leaves
        leaf_bytenr = np.zeros(n_leaves, np.uint64)
        if self._bytenr_of:
            leaf_bytenr[np.fromiter(self._bytenr_of.keys(), np.int64)] = np.fromiter(self._bytenr_of.values(), np.uint64)
        return LeafTables(
            inodes=_move_rows(inode_parts, INODE_DTYPE),
            extents=_move_rows(extent_parts, EXTENT_DTYPE),
            inode_start=inode_start,
            extent_start=extent_start,
            leaf_bytenr=leaf_bytenr,
            subvol_ids=np.array([s.id for s in subvols], np.uint64),
            subvol_start=prefix(np.array([len(h) for h in handles], np.int64)),
            subvol_leaves=np.concatenate([np.zeros(0, np.int64)] + handles),
            links=links,
        )

    def scan(self, subvols: Iterable[Subvolume], progress: Callable[[Subvolume], None] | None = None) -> FileTables:
        """One row per inode and extent item of every subvolume given, in the order given."""
        return self.scan_leaves(subvols, progress).expand()
