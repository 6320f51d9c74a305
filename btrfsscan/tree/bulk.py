"""Many trees read breadth-first in batches, then walked depth-first from memory.

``walk_tree`` reads and checks one block at a time, which costs tens of
microseconds a block. ``BulkReader`` reads the trees of all the roots it is
given at once, level by level: each level's child addresses not known yet
are deduplicated, mapped to their device, sorted by physical address, asked
for all at once (read-ahead), and checked by ``check_batch`` a few MiB at a
time where the mapped device holds them, without a copy (where it cannot be
mapped, read into one reused buffer first, adjacent blocks in one read). A block that fails any check goes
through ``TreeReader.read_copies`` (the other copies, the exact problems).
The trees are of one kind, ``owner``: subvolume trees (``ObjectId.FS_TREE``,
the default), whose every block must be owned by one, or one other tree
(the checksum tree), which owns all its blocks; each root block is owned by
its own tree (``owner``: the kernel's owner checks).
Leaves are parsed a batch at a time; a node is kept as its pointers.

Then each tree is walked depth-first over what was read, in key order, with
``walk_tree``'s guards (cycles, levels, the pointer's generation and first
key): a child read exactly as its pointer expects is taken from memory; any
other child goes through ``TreeReader.read`` as in ``walk_tree``. So every
warning has the same text, and comes in the same order, as a depth-first
walk would give it: the reader's for a block when the walk reaches it, then
its items' problems. Levels strictly decrease both ways, so nothing loops,
and only one batch of raw blocks is in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from ..errors import BtrfsScanError, CorruptionError, ScanWarning, Warnings
from ..format.constants import ObjectId
from .block import Key, LeafBatch, TreeBlock, check_batch, expect_children, expect_root, expected
from .reader import TreeReader
from .owner import owner_problem
from .walk import TreeRoot, warn_item, warn_skipped, warn_twice

Rows = TypeVar("Rows")
#: Parses a batch of leaves: per leaf its rows, and (leaf index, what) for every item skipped.
LeafParser = Callable[[LeafBatch], tuple[list[Rows], list[tuple[int, str]]]]
#: Raw blocks read and checked together.
BATCH_BYTES = 4 << 20


@dataclass(slots=True)
class _Node:
    """A node read ahead: what its pointers expect, and which children were read just so."""

    bytenr: int
    level: int
    expect: np.ndarray  # EXPECT_DTYPE, one row per pointer
    kids: list[int]
    ok: list[bool]

    @classmethod
    def of(cls, bytenr: int, level: int, ptrs: np.ndarray) -> _Node:
        expect = expect_children(ptrs)
        kids = expect["bytenr"].tolist()
        return cls(bytenr, level, expect, kids, [False] * len(kids))


def _runs(physical: np.ndarray, size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of adjacent blocks of ``size`` bytes at sorted offsets ``physical``."""
    if not len(physical):
        return []
    breaks = np.flatnonzero(physical[1:] != physical[:-1] + size) + 1
    starts, ends = physical[np.concatenate(([0], breaks))], physical[np.concatenate((breaks - 1, [len(physical) - 1]))]
    return list(zip(starts.tolist(), (ends + size).tolist()))


class BulkReader(Generic[Rows]):
    """The leaves of many trees in key order, every block read, checked and parsed once.

    ``leaves`` (rows of parsed leaves) and ``nodes`` (the leaves under a node,
    in key order) are the caller's memo: blocks in them are neither read nor
    checked again, and the walk adds what it finds. Items' problems go to
    ``warnings``, the reader's and the walk's to the reader's warnings, as in
    ``walk_tree``. ``owner``: the kind of the trees (module docstring).
    """

    def __init__(self, reader: TreeReader, parse: LeafParser, leaves: dict[int, Rows],
                 nodes: dict[int, tuple[int, ...]], warnings: Warnings, owner: int = ObjectId.FS_TREE) -> None:
        self.reader = reader
        self.owner = int(owner)
        self.parse = parse
        self.leaves = leaves
        self.nodes = nodes
        self.warnings = warnings
        self._ahead: dict[int, Rows | _Node] = {}  # read ahead, not reached by the walk yet
        #: Warnings due when the walk reaches a block read ahead: the reader's (bad copies, damaged
        #: items), then the parser's (items skipped). Few blocks have any.
        self._due: dict[int, tuple[Sequence[ScanWarning], list[str]]] = {}
        self._buffer = bytearray(max(BATCH_BYTES, reader.nodesize))
        self._root_owner: dict[int, int] = {}  # header owner of each block read ahead as a tree's root
        self.blocks_reused = 0

    def walk(self, roots: Sequence[TreeRoot], unreadable: Callable[[int, CorruptionError], None]) -> list[list[int]]:
        """Per root, its leaves in key order (rows in ``leaves``).

        A root no copy of which can be read has no leaves: ``unreadable(index,
        error)`` is called in its turn, between the warnings of the trees
        before and after it.
        """
        roots_ok = self._read_ahead(roots)
        out: list[list[int]] = []
        for index, (root, ok) in enumerate(zip(roots, roots_ok)):
            try:
                out.append(self._tree(root, ok))
            except CorruptionError as exc:
                unreadable(index, exc)
                out.append([])
        self._ahead.clear()
        self._due.clear()
        return out

    # --- reading ahead, breadth-first --------------------------------------------------

    def _read_ahead(self, roots: Sequence[TreeRoot]) -> list[bool]:
        """Read every block under ``roots`` not known yet, highest level first; per root: read as it expects."""
        roots_ok = [False] * len(roots)
        pending: dict[int, list[tuple[int | _Node, np.ndarray]]] = {}
        for index, root in enumerate(roots):
            pending.setdefault(root.level, []).append((index, expect_root(root.bytenr, root.generation)))
        while pending:
            level = max(pending)
            sources = pending.pop(level)
            ok, nodes = self._read_level(level, np.concatenate([expect for _, expect in sources]))
            bounds = np.cumsum([len(expect) for _, expect in sources]).tolist()
            for (source, _), start, end in zip(sources, [0, *bounds], bounds):
                if isinstance(source, _Node):
                    source.ok = ok[start:end].tolist()
                else:
                    roots_ok[source] = bool(ok[start])
            for node in nodes:
                pending.setdefault(level - 1, []).append((node, node.expect))
        return roots_ok

    def _read_level(self, level: int, expect: np.ndarray) -> tuple[np.ndarray, list[_Node]]:
        """Read the blocks ``expect`` names that are not known yet, each under its first reference's
        expectation; per reference: its block was read exactly as it expects. Also the nodes read."""
        unique, first, inverse = np.unique(expect["bytenr"], return_index=True, return_inverse=True)
        new = np.array([self._unknown(bytenr) for bytenr in unique.tolist()], bool)
        nodes: list[_Node] = []
        for batch in self._batches(expect[first[new]]):
            nodes += self._read_batch(level, *batch)
        read = new & np.array([bytenr in self._ahead for bytenr in unique.tolist()], bool)
        return read[inverse] & (expect == expect[first[inverse]]), nodes

    def _unknown(self, bytenr: int) -> bool:
        return bytenr not in self._ahead and bytenr not in self.leaves and bytenr not in self.nodes

    def _batches(self, expect: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``expect`` sorted by where copy 1 lies and cut into batches of one device each: (expect, devid,
        physical) each."""
        volume, size = self.reader.volume, self.reader.nodesize
        devid, physical = volume.locate_first_copies(expect["bytenr"], size)
        order = np.lexsort((physical, devid))
        step = len(self._buffer) // size
        cuts = np.flatnonzero(devid[order][1:] != devid[order][:-1]) + 1
        bounds = list(zip([0, *cuts.tolist()], [*cuts.tolist(), len(order)]))
        for first, last in bounds:  # the whole level asked for at once: the batches then find it read
            if devid[order[first]] >= 0:
                volume.device_image(int(devid[order[first]])).will_need(_runs(physical[order[first:last]], size))
        for first, last in bounds:
            for start in range(first, last, step):
                part = order[start:min(start + step, last)]
                yield expect[part], devid[part], physical[part]

    def _read_batch(self, level: int, expect: np.ndarray, devid: np.ndarray, physical: np.ndarray) -> list[_Node]:
        """Read, check and keep one batch of blocks of ``level`` (all on one device); returns its nodes.

        Where the device is mapped the blocks are checked and parsed where
        they lie, without a copy, and unmapped after; otherwise they are read
        into the batch buffer first.
        """
        size = self.reader.nodesize
        image = self.reader.volume.device_image(int(devid[0])) if devid[0] >= 0 else None
        data = image.mapped() if image is not None else None
        starts = None
        if data is not None:
            readable = (physical >= 0) & (physical <= image.size - size)
            if all([image.populate(start, end) for start, end in _runs(physical[readable], size)]):
                starts = physical
            else:  # a page the kernel cannot read: read the batch instead, which says which block failed
                image.release(int(physical.min()), int(physical.max()) + size)
                data = None
        if data is None:
            data = memoryview(self._buffer)[:len(expect) * size]
            readable = self._fill(data, expect["bytenr"], devid, physical)
        try:
            return self._check_batch(level, data, starts, expect, readable)
        finally:
            if starts is not None:
                image.release(int(physical.min()), int(physical.max()) + size)

    def _check_batch(self, level: int, data, starts: np.ndarray | None, expect: np.ndarray,
                     readable: np.ndarray) -> list[_Node]:
        size = self.reader.nodesize
        checked = check_batch(data, expect, level, readable, starts=starts, size=size, **self.reader.checks,
                              owner=self.owner)
        roots = np.flatnonzero(~expect["has_key"] & checked.passed)  # its owner is checked when its tree is walked
        self._root_owner.update(zip(expect["bytenr"][roots].tolist(), checked.owners[roots].tolist()))
        self.reader.blocks_read += int(checked.passed.sum())
        passed = expect["bytenr"][checked.passed].tolist()
        slow = [found for row in expect[~checked.passed] if (found := self._read_copies(row, level))]
        self._due.update((block.bytenr, (notes, [])) for block, notes in slow if notes)
        if level == 0:
            if passed:
                self._keep_leaves(LeafBatch.of_checked(data, checked), passed)
            if slow:
                self._keep_leaves(LeafBatch.of_blocks([block for block, _ in slow]), [block.bytenr for block, _ in slow])
            return []
        ends = np.cumsum(checked.counts[checked.passed]).tolist()
        nodes = [_Node.of(bytenr, level, checked.table[start:end]) for bytenr, start, end in zip(passed, [0, *ends], ends)]
        nodes += [_Node.of(block.bytenr, level, block.ptrs) for block, _ in slow]
        self._ahead.update((node.bytenr, node) for node in nodes)
        return nodes

    def _fill(self, data: memoryview, bytenrs: np.ndarray, devid: np.ndarray, physical: np.ndarray) -> np.ndarray:
        """Read copy 1 of each block into ``data``, adjacent blocks in one read; per block: read."""
        size = self.reader.nodesize
        volume = self.reader.volume
        readable = np.ones(len(bytenrs), bool)
        breaks = np.flatnonzero((devid[1:] != devid[:-1]) | (physical[1:] != physical[:-1] + size) | (devid[1:] < 0))
        bounds = (breaks + 1).tolist()
        for start, end in zip([0, *bounds], [*bounds, len(bytenrs)]):
            try:
                if devid[start] < 0:  # not mapped at once (one block per run): the volume's own read
                    data[start * size:end * size] = volume.read(int(bytenrs[start]), size)
                else:
                    volume.read_device_into(int(devid[start]), int(physical[start]), data[start * size:end * size])
            except BtrfsScanError:
                readable[start:end] = False  # read again copy by copy, which says why
        return readable

    def _read_copies(self, expect: np.void, level: int) -> tuple[TreeBlock, Sequence[ScanWarning]] | None:
        """A block that failed a batch check, read copy by copy; None when no copy is good (the walk
        reads it again where it meets it, and warns there)."""
        generation, first_key = expected(expect)
        try:
            return self.reader.read_copies(int(expect["bytenr"]), level=level, generation=generation,
                                           owner=self.owner, first_key=first_key)
        except CorruptionError:
            return None

    def _keep_leaves(self, batch: LeafBatch, bytenrs: list[int]) -> None:
        """Parse a batch of leaves read ahead and keep them until the walk reaches them."""
        rows, skipped = self.parse(batch)
        self._ahead.update(zip(bytenrs, rows))
        for index, what in skipped:
            self._due.setdefault(bytenrs[index], ((), []))[1].append(what)

    # --- walking, depth-first ------------------------------------------------------------

    def _tree(self, root: TreeRoot, ok: bool) -> list[int]:
        """The leaves of one tree in key order; CorruptionError when its root cannot be read."""
        self._check_root_owner(root)
        known = self._known(root.bytenr)
        if known is not None:
            return list(known)
        block = self._take(root, root.bytenr) if ok else self._read(root, root.bytenr, root.level, root.generation)
        if isinstance(block, _Node):
            return self._descend(root, block, {root.bytenr})
        return [root.bytenr]

    def _check_root_owner(self, root: TreeRoot) -> None:
        """CorruptionError unless the root block is owned by its own tree (as ``walk_tree`` checks it)."""
        owner = self._root_owner.get(root.bytenr)
        if owner is None:  # read as another tree's child first: from the reader's cache, or once more
            owner = self.reader.read(root.bytenr, level=root.level, generation=root.generation).owner
        problem = owner_problem(root.tree_id, owner, is_root=True)
        if problem:
            raise CorruptionError(f"tree {root.name} root block {root.bytenr}: {problem}")

    def _known(self, bytenr: int) -> tuple[int, ...] | None:
        """The leaves under a block already walked (a leaf: itself), or None."""
        if bytenr in self.leaves:
            self.blocks_reused += 1
            return (bytenr,)
        found = self.nodes.get(bytenr)
        if found is not None:
            self.blocks_reused += 1
        return found

    def _descend(self, root: TreeRoot, node: _Node, seen: set[int]) -> list[int]:
        """The leaves under ``node`` in key order, remembered in ``nodes``; ``seen``: blocks met in this tree."""
        if node.level == 1 and self._plain(node, seen):
            return self._plain_leaves(root, node, seen)
        out: list[int] = []
        for slot, kid in enumerate(node.kids):
            if kid in seen:
                warn_twice(self.reader.warnings, root, node.bytenr, slot, kid)
                continue
            seen.add(kid)
            known = self._known(kid)
            if known is not None:
                out.extend(known)
                continue
            try:
                if node.ok[slot]:
                    child = self._take(root, kid)
                else:
                    child = self._read(root, kid, node.level - 1, *expected(node.expect[slot]))
            except CorruptionError as exc:
                warn_skipped(self.reader.warnings, root, node.bytenr, slot, kid, exc)
                continue
            if isinstance(child, _Node):
                out.extend(self._descend(root, child, seen))
            else:
                out.append(kid)
        self.nodes[node.bytenr] = tuple(out)
        return out

    def _plain(self, node: _Node, seen: set[int]) -> bool:
        """Whether every child of ``node`` was read ahead as it expects, and none is met twice or a known node:
        the common case, where the leaves are its children as they stand.

        Children read as they expect are distinct: two pointers to one block
        hold different keys, and only one key can be the block's first.
        """
        return all(node.ok) and seen.isdisjoint(node.kids) and self.nodes.keys().isdisjoint(node.kids)

    def _plain_leaves(self, root: TreeRoot, node: _Node, seen: set[int]) -> list[int]:
        """``_descend`` for a ``_plain`` node of leaves, in whole-set steps instead of one per child.

        Each child is a leaf read ahead: taken already (known) or still ahead
        (new). New ones are taken in slot order where warnings are due, as the
        general loop would; with none due, order does not matter.
        """
        kids = node.kids
        seen.update(kids)
        new = self._ahead.keys() & kids
        self.blocks_reused += len(kids) - len(new)
        if self._due.keys().isdisjoint(new):
            self.leaves.update(zip(new, map(self._ahead.pop, new)))
        else:
            for kid in kids:
                if kid in new:
                    self._take(root, kid)
        self.nodes[node.bytenr] = tuple(kids)
        return list(kids)

    def _take(self, root: TreeRoot, bytenr: int) -> Rows | _Node:
        """A block read ahead exactly as the walk's pointer expects it: a leaf's rows are known from now
        on, and its warnings are due now."""
        block = self._ahead.pop(bytenr)
        if not isinstance(block, _Node):
            self.leaves[bytenr] = block
        if bytenr in self._due:
            notes, problems = self._due.pop(bytenr)
            for note in notes:
                self.reader.warnings.add(note.what, note.where, tree=note.tree, bytenr=note.bytenr)
            self._warn_items(root, bytenr, problems)
        return block

    def _read(self, root: TreeRoot, bytenr: int, level: int, generation: int | None,
              first_key: Key | None = None) -> Rows | _Node:
        """A block not read ahead as this pointer expects it: read here, exactly as ``walk_tree`` would."""
        block = self.reader.read(bytenr, level=level, generation=generation, owner=root.tree_id,
                                 first_key=first_key)
        self._ahead.pop(bytenr, None)  # read ahead as another pointer expects it: this read decides
        self._due.pop(bytenr, None)
        if block.level:
            return _Node.of(bytenr, block.level, block.ptrs)
        (rows,), skipped = self.parse(LeafBatch.of_blocks([block]))
        self.leaves[bytenr] = rows
        self._warn_items(root, bytenr, [what for _, what in skipped])
        return rows

    def _warn_items(self, root: TreeRoot, bytenr: int, problems: Sequence[str]) -> None:
        for what in problems:
            warn_item(self.warnings, root.tree_id, bytenr, what)
