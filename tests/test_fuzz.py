"""Mutated kernel-made images: only ``BtrfsScanError`` may come out, and nothing hangs.

Hypothesis drives a mutation engine over committed fixtures (``Base``): bit
flips in tree blocks, header fields, node pointers, leaf item headers and item
payloads (the tree-block checksum recomputed most of the time, so the damage
gets past it), zeroed, random and swapped tree blocks, truncated images, and
superblock fields and sys_chunk_array bytes with a recomputed superblock
checksum.  Up to three mutations are stacked per example.  Each mutated image
goes through the in-process pipeline (``corpus_driver.model_pipeline``:
open_filesystem, subvolumes, FileScanner scan, recursive listing, file maps,
extent tree, page-cache models) plus the ``super``/``chunks`` commands through
CliRunner, under a per-example alarm of ``EXAMPLE_SECONDS``.  Any exception
other than a ``BtrfsScanError`` subclass (or an ``internal error`` line from
the CLI, or the alarm) fails the example; hypothesis then shrinks it and the
failure note shows the exact byte patches, ready to become a regression case in
``REGRESSIONS`` below.

The images are unpacked once (sparse); each example writes its patches into a
working copy and restores the original bytes afterwards (a truncated device is
copied afresh).  ``max_examples`` is 60 per test in CI (deterministic:
``derandomize``); ``BTRFSSCAN_FUZZ_EXAMPLES=N`` runs N per test with a random
seed and more fixtures, for long runs.  ``fuzz/atheris_target.py`` drives the
same engine coverage-guided (or with a plain random loop).
"""

from __future__ import annotations

import os
import signal
import struct
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from corpus_driver import model_pipeline, sparse_copy, unpacked_fixture
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from btrfsscan.errors import BtrfsScanError
from btrfsscan.format import checksum, fastparse
from btrfsscan.format.constants import ItemType, ObjectId
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.tree.block import HEADER_SIZE
from btrfsscan.tree.roots import chunk_root
from btrfsscan.tree.walk import TreeRoot

LONG_RUN = "BTRFSSCAN_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("BTRFSSCAN_FUZZ_EXAMPLES", "60"))
EXAMPLE_SECONDS = 20
#: Fixtures mutated in CI, then the extra ones of long runs.
BASES = ["volumes/single", "files/subvols", "files/compress", "volumes/mixed", "volumes/raid1", "volumes/raid5"]
LONG_BASES = ["volumes/nodesize-64k", "volumes/csum-xxhash", "files/reflinks", "files/sparse-holes",
              "volumes/raid10", "volumes/raid6", "files/many"]
PIPELINE_LIMITS = {"entries": 5000, "file_maps": 40, "extent_items": 50000}
SUPER_OFFSETS = (65536, 64 << 20, 256 << 30)


def _offsets(layout) -> dict[str, tuple[int, int]]:
    """field -> (offset, size) in a fastparse layout."""
    out, pos = {}, 0
    for name, code in layout.fields:
        size = struct.calcsize("<" + code)
        out[name] = (pos, size)
        pos += size
    return out


HDR = _offsets(fastparse.HEADER)
SB = _offsets(fastparse.SUPER_BLOCK)
ITEM_SIZE = fastparse.ITEM.size
PTR_SIZE = fastparse.KEY_PTR.size
KEY_SIZE = fastparse.DISK_KEY.size
SB_FIELDS = ["bytenr", "generation", "root", "chunk_root", "total_bytes", "bytes_used", "root_dir_objectid",
             "num_devices", "sectorsize", "nodesize", "leafsize", "stripesize", "sys_chunk_array_size",
             "chunk_root_generation", "incompat_flags", "compat_ro_flags", "csum_type", "root_level",
             "chunk_root_level", "dev_item.devid", "dev_item.total_bytes", "dev_item.uuid", "fsid", "metadata_uuid"]
HEADER_FIELDS = ["bytenr", "generation", "owner", "nritems", "level", "flags", "fsid"]


# --- choosers: one engine, three drivers -------------------------------------------


class Chooser:
    """Where the engine's choices come from (hypothesis, random.Random, atheris)."""

    def int(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def bytes(self, n: int) -> bytes:
        return bytes(self.int(0, 255) for _ in range(n))

    def choice(self, seq: Sequence):
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, percent: int) -> bool:
        return self.int(0, 99) < percent


class HypothesisChooser(Chooser):
    def __init__(self, draw) -> None:
        self.draw = draw

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def bytes(self, n: int) -> bytes:
        return self.draw(st.binary(min_size=n, max_size=n))

    def choice(self, seq: Sequence):
        return self.draw(st.sampled_from(seq))


class RandomChooser(Chooser):
    def __init__(self, rng) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)


def interesting(c: Chooser, width: int, extra: Sequence[int] = ()) -> int:
    """A value for a ``width``-byte field: a boundary value, one of ``extra``, or random."""
    top = (1 << (8 * width)) - 1
    pick = c.int(0, 9)
    if pick < 6:
        values = [0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, (1 << 31) - 1, 1 << 31, (1 << 32) - 1,
                  1 << 32, (1 << 63) - 1, 1 << 63, top, top - 8, 4096, 16384, 65536, *extra]
        return c.choice(values) & top
    if pick < 8 and extra:
        return (c.choice(list(extra)) + c.int(-2, 2) * 4096) & top
    return c.int(0, top)


# --- the images and the engine -------------------------------------------------------


@dataclass
class Mutation:
    """What was done: a readable step list, the byte patches (device index, offset, bytes) and truncations."""

    base: str
    steps: list[str] = field(default_factory=list)
    patches: list[tuple[int, int, bytes]] = field(default_factory=list)
    truncations: list[tuple[int, int]] = field(default_factory=list)
    #: A semantic step wrote a value the plausibility rules refuse into an item the pipeline reads.
    implausible: bool = False

    def __str__(self) -> str:
        patches = ", ".join(f"({d}, {o}, {b.hex()!r})" if len(b) <= 64 else f"({d}, {o}, <{len(b)} bytes>)"
                            for d, o, b in self.patches)
        return (f"base={self.base!r} steps={self.steps} truncations={self.truncations} "
                f"patches=[{patches}]")


class Base:
    """A fixture's device images, their tree blocks, and a working copy that mutations write to."""

    def __init__(self, name: str, workdir: Path, pristine: list[Path] | None = None) -> None:
        self.name = name
        self.pristine = [str(p) for p in (pristine or unpacked_fixture(name))]
        workdir.mkdir(parents=True, exist_ok=True)
        self.paths = []
        for src in self.pristine:
            dst = workdir / Path(src).name
            sparse_copy(src, dst)
            self.paths.append(str(dst))
        self.sizes = [os.path.getsize(p) for p in self.paths]
        fs = open_filesystem(self.pristine)
        try:
            sb = fs.superblock
            self.nodesize = sb.nodesize
            self.sectorsize = sb.sectorsize
            self.csum = sb.csum
            self.sys_array_size = sb.sys_chunk_array_size
            index = {str(Path(p)): i for i, p in enumerate(self.pristine)}
            self.dev_index = {d.devid: index[d.image.path] for d in fs.volume.devices.values() if d.image}
            self.levels: dict[int, int] = {}
            self.pieces: dict[int, dict[int, list[tuple[int, int, int]]]] = {}
            self._collect(fs)
        finally:
            fs.close()
        self.targets = self._semantic_targets()
        self.blocks = sorted(self.levels)
        self.leaves = [b for b in self.blocks if self.levels[b] == 0]
        self.nodes = [b for b in self.blocks if self.levels[b] > 0]
        self.supers = [(d, off) for d, size in enumerate(self.sizes) for off in SUPER_OFFSETS if off + 4096 <= size]
        self._dirty: list[tuple[int, int, int]] = []
        self._truncated: set[int] = set()

    def _collect(self, fs) -> None:
        """Every tree block of every tree the root tree lists (plus root and chunk trees)."""
        roots = [chunk_root(fs.reader), fs.root_tree]
        from btrfsscan.format.items import parse_item
        from btrfsscan.tree.walk import iter_items

        for (oid, typ, off), data in iter_items(fs.reader, fs.root_tree):
            if typ == ItemType.ROOT_ITEM:
                item = parse_item((oid, typ, off), data, "")
                roots.append(TreeRoot(oid, item.bytenr, item.level))
        stack = [(r.bytenr, r.level) for r in roots]
        while stack:
            bytenr, level = stack.pop()
            if bytenr in self.levels:
                continue
            block = fs.reader.read(bytenr, level=level)
            self.levels[bytenr] = block.level
            mirrors: dict[int, list[tuple[int, int, int]]] = {}
            for piece in fs.volume.map(bytenr, self.nodesize):
                mirrors.setdefault(piece.mirror, []).append((self.dev_index[piece.devid], piece.physical, piece.length))
            self.pieces[bytenr] = mirrors
            if block.level > 0:
                stack += [(ptr, block.level - 1) for ptr, _ in block.children()]

    def _semantic_targets(self) -> dict[str, list[tuple[int, int, int, int]]]:
        """(leaf, slot, payload offset in the block, payload size) of the items semantic mutations edit, by kind:
        fs-tree items of live subvolumes (which the scan reads), ROOT_ITEMs of subvolumes, BLOCK_GROUP_ITEMs,
        CHUNK_ITEMs, and EXTENT_CSUM items (their btrfs_item, not their payload)."""
        from btrfsscan.format.constants import is_fs_tree
        from btrfsscan.tree.walk import iter_leaves

        fs = open_filesystem(self.pristine)
        out: dict[str, list[tuple[int, int, int, int]]] = {kind: [] for kind in SEMANTIC_KINDS}
        try:
            trees = [sub.root for sub in fs.subvolumes.live()] + [fs.root_tree, chunk_root(fs.reader)]
            for tree_id in (ObjectId.EXTENT_TREE, ObjectId.CSUM_TREE):
                try:
                    trees.append(fs.tree_root(tree_id))
                except BtrfsScanError:
                    pass
            seen: set[int] = set()
            for root in trees:
                for leaf in iter_leaves(fs.reader, root):
                    if leaf.bytenr in seen:
                        continue
                    seen.add(leaf.bytenr)
                    for slot, (oid, typ, _off) in enumerate(leaf.keys()):
                        at, size = HEADER_SIZE + int(leaf.items["offset"][slot]), int(leaf.items["size"][slot])
                        data = leaf.data[at:at + size]
                        kind = None
                        fs_tree = is_fs_tree(root.tree_id)
                        if fs_tree and typ == ItemType.EXTENT_DATA and size == FE_SIZE and data[20] in (1, 2):
                            kind = "EXTENT_DATA"
                        elif fs_tree and typ == ItemType.INODE_ITEM:
                            kind = "INODE_ITEM"
                        elif fs_tree and typ in (ItemType.DIR_ITEM, ItemType.DIR_INDEX):
                            kind = "DIR_ITEM"
                        elif root.tree_id == ObjectId.ROOT_TREE and typ == ItemType.ROOT_ITEM and is_fs_tree(oid):
                            kind = "ROOT_ITEM"
                        elif root.tree_id == ObjectId.EXTENT_TREE and typ == ItemType.BLOCK_GROUP_ITEM:
                            kind = "BLOCK_GROUP_ITEM"
                        elif root.tree_id == ObjectId.CHUNK_TREE and typ == ItemType.CHUNK_ITEM:
                            kind = "CHUNK_ITEM"
                        elif root.tree_id == ObjectId.CSUM_TREE and typ == ItemType.EXTENT_CSUM:
                            kind, at = "EXTENT_CSUM", HEADER_SIZE + slot * ITEM_SIZE  # its key and size are edited
                        if kind:
                            out[kind].append((leaf.bytenr, slot, at, size))
        finally:
            fs.close()
        return out

    # byte access on the working copy
    def pread(self, dev: int, offset: int, length: int) -> bytes:
        with open(self.paths[dev], "rb") as f:
            f.seek(offset)
            return f.read(length)

    def pwrite(self, mutation: Mutation, dev: int, offset: int, data: bytes) -> None:
        """Write ``data``; the mutation records only the byte runs that changed (small patches)."""
        if dev in self._truncated or not data:
            return
        length = min(len(data), self.sizes[dev] - offset)
        if length <= 0:
            return
        data = data[:length]
        old = self.pread(dev, offset, length).ljust(length, b"\0")
        with open(self.paths[dev], "r+b") as f:
            f.seek(offset)
            f.write(data)
        self._dirty.append((dev, offset, length))
        for start, stop in _changed_runs(old, data):
            mutation.patches.append((dev, offset + start, data[start:stop]))

    def read_block(self, bytenr: int, mirror: int) -> bytes:
        """The block's bytes in the working copy (zero-filled where a device was truncated)."""
        return b"".join(self.pread(d, off, n).ljust(n, b"\0") for d, off, n in self.pieces[bytenr][mirror])

    def write_block(self, mutation: Mutation, bytenr: int, mirror: int, data: bytes, recsum: bool) -> None:
        buf = bytearray(data)
        if recsum:
            buf[:32] = checksum.compute(self.csum, bytes(buf))
        pos = 0
        for dev, off, n in self.pieces[bytenr][mirror]:
            self.pwrite(mutation, dev, off, bytes(buf[pos:pos + n]))
            pos += n

    def edit_block(self, mutation: Mutation, c: Chooser, bytenr: int, edit, *, recsum: bool | None = None) -> None:
        """``edit(bytearray)`` on every copy, or on one (a bad mirror) a fifth of the time."""
        if recsum is None:
            recsum = c.chance(85)
        mirrors = sorted(self.pieces[bytenr])
        if len(mirrors) > 1 and c.chance(20):
            mirrors = [c.choice(mirrors)]
        for mirror in mirrors:
            buf = bytearray(self.read_block(bytenr, mirror))
            edit(buf)
            self.write_block(mutation, bytenr, mirror, bytes(buf), recsum)

    def restore(self) -> None:
        """Put back every byte the last mutation changed."""
        for dev in self._truncated:
            sparse_copy(self.pristine[dev], self.paths[dev])
        for dev, offset, length in reversed(self._dirty):
            if dev in self._truncated:
                continue
            with open(self.pristine[dev], "rb") as src:
                src.seek(offset)
                original = src.read(length)
            with open(self.paths[dev], "r+b") as f:
                f.seek(offset)
                f.write(original)
        self._dirty.clear()
        self._truncated.clear()

    def truncate(self, mutation: Mutation, dev: int, size: int) -> None:
        os.truncate(self.paths[dev], size)
        self._truncated.add(dev)
        mutation.truncations.append((dev, size))

    # the mutations
    def mutate(self, c: Chooser, count: int | None = None) -> Mutation:
        mutation = Mutation(self.name)
        for _ in range(count if count is not None else c.int(1, 3)):
            kind = c.choice(MUTATIONS)
            kind(self, c, mutation)
        return mutation

    def apply(self, mutation: Mutation) -> None:
        """Replay a recorded mutation (a regression case) on the working copy."""
        for dev, offset, data in mutation.patches:
            self.pwrite(Mutation(self.name), dev, offset, data)
        for dev, size in mutation.truncations:
            self.truncate(Mutation(self.name), dev, size)


def _changed_runs(old: bytes, new: bytes, gap: int = 8) -> list[tuple[int, int]]:
    """[start, stop) runs where ``new`` differs from ``old``, runs closer than ``gap`` merged."""
    runs: list[list[int]] = []
    differ = np.flatnonzero(np.frombuffer(old, np.uint8) != np.frombuffer(new, np.uint8)).tolist()
    for i in differ:
        if runs and i - runs[-1][1] < gap:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return [(a, b) for a, b in runs]


def _put(buf: bytearray, offset: int, width: int, value: int) -> None:
    if 0 <= offset and offset + width <= len(buf):
        buf[offset:offset + width] = value.to_bytes(width, "little")


def m_bitflip(base: Base, c: Chooser, m: Mutation) -> None:
    bytenr = c.choice(base.blocks)
    bits = [c.int(0, base.nodesize * 8 - 1) for _ in range(c.int(1, 8))]
    if c.chance(60):  # aim at the header and item/pointer table, where structure lives
        bits = [b % (8 * (HEADER_SIZE + 40 * ITEM_SIZE)) for b in bits]

    def edit(buf):
        for bit in bits:
            buf[bit // 8] ^= 1 << (bit % 8)
    base.edit_block(m, c, bytenr, edit)
    m.steps.append(f"bitflip block {bytenr} bits {bits}")


def m_header(base: Base, c: Chooser, m: Mutation) -> None:
    bytenr = c.choice(base.blocks)
    name = c.choice(HEADER_FIELDS)
    offset, width = HDR[name]
    if name == "fsid":
        value = int.from_bytes(c.bytes(16), "little")
    else:
        value = interesting(c, width, [bytenr, base.nodesize, *c.choice([base.blocks[:4], base.blocks[-4:]])])
    base.edit_block(m, c, bytenr, lambda buf: _put(buf, offset, width, value))
    m.steps.append(f"header {name}={value} of block {bytenr}")


def m_pointer(base: Base, c: Chooser, m: Mutation) -> None:
    if not base.nodes:
        return m_header(base, c, m)
    bytenr = c.choice(base.nodes)
    nritems = int.from_bytes(base.read_block(bytenr, 1)[96:100], "little")
    slot = c.int(0, max(min(nritems, 400) - 1, 0))
    what = c.choice(["blockptr", "blockptr", "generation", "key"])
    at = HEADER_SIZE + slot * PTR_SIZE
    if what == "blockptr":
        offset, width = at + KEY_SIZE, 8
        value = c.choice(base.blocks) if c.chance(70) else interesting(c, 8, base.blocks[:3])
    elif what == "generation":
        offset, width, value = at + KEY_SIZE + 8, 8, interesting(c, 8)
    else:
        offset, width = at + c.choice([0, 8, 9]), c.choice([1, 8])
        value = interesting(c, width)
    base.edit_block(m, c, bytenr, lambda buf: _put(buf, offset, width, value))
    m.steps.append(f"node {bytenr} slot {slot} {what}={value}")


def m_item(base: Base, c: Chooser, m: Mutation) -> None:
    bytenr = c.choice(base.leaves)
    nritems = int.from_bytes(base.read_block(bytenr, 1)[96:100], "little")
    slot = c.int(0, max(min(nritems, 600) - 1, 0))
    at = HEADER_SIZE + slot * ITEM_SIZE
    what = c.choice(["objectid", "type", "key offset", "data offset", "data size"])
    offset, width = {"objectid": (0, 8), "type": (8, 1), "key offset": (9, 8), "data offset": (17, 4),
                     "data size": (21, 4)}[what]
    if what == "type":
        value = c.choice([int(t) for t in ItemType]) if c.chance(70) else c.int(0, 255)
    else:
        value = interesting(c, width, [base.nodesize - HEADER_SIZE, 256, 257, 5])
    base.edit_block(m, c, bytenr, lambda buf: _put(buf, at + offset, width, value))
    m.steps.append(f"leaf {bytenr} slot {slot} {what}={value}")


def m_payload(base: Base, c: Chooser, m: Mutation) -> None:
    bytenr = c.choice(base.leaves)
    block = base.read_block(bytenr, 1)
    nritems = min(int.from_bytes(block[96:100], "little"), (len(block) - HEADER_SIZE) // ITEM_SIZE)
    if nritems <= 0:  # an earlier mutation may have changed nritems
        return m_bitflip(base, c, m)
    slot = c.int(0, min(nritems, 600) - 1)
    item_off, item_size = struct.unpack_from("<II", block, HEADER_SIZE + slot * ITEM_SIZE + KEY_SIZE)
    width = c.choice([1, 2, 4, 8])
    pos = HEADER_SIZE + item_off + c.int(0, max(item_size - 1, 0))
    value = interesting(c, width, [base.nodesize, base.sectorsize, *base.blocks[:2]])
    base.edit_block(m, c, bytenr, lambda buf: _put(buf, pos, width, value))
    m.steps.append(f"leaf {bytenr} slot {slot} payload +{pos - HEADER_SIZE - item_off} u{8 * width}={value}")


def m_zero(base: Base, c: Chooser, m: Mutation) -> None:
    bytenr = c.choice(base.blocks)
    base.edit_block(m, c, bytenr, lambda buf: buf.__setitem__(slice(None), bytes(len(buf))), recsum=False)
    m.steps.append(f"zero block {bytenr}")


def m_random(base: Base, c: Chooser, m: Mutation) -> None:
    bytenr = c.choice(base.blocks)
    noise = c.bytes(c.int(1, 512))
    keep_header = c.chance(70)

    def edit(buf):
        start = HEADER_SIZE if keep_header else 0
        for i in range(start, len(buf)):
            buf[i] = noise[i % len(noise)]
        if keep_header:
            _put(buf, HDR["nritems"][0], 4, int.from_bytes(noise[:2], "little"))
    base.edit_block(m, c, bytenr, edit, recsum=keep_header)
    m.steps.append(f"random block {bytenr} ({len(noise)}-byte pattern, header kept: {keep_header})")


def m_swap(base: Base, c: Chooser, m: Mutation) -> None:
    a, b = c.choice(base.blocks), c.choice(base.blocks)
    fix = c.chance(70)  # rewrite bytenr + checksum so the swapped block passes the header check
    data = {x: {mirror: base.read_block(x, mirror) for mirror in base.pieces[x]} for x in (a, b)}
    for dst, src in ((a, b), (b, a)):
        for mirror in base.pieces[dst]:
            buf = bytearray(data[src].get(mirror) or data[src][1])
            if fix:
                _put(buf, HDR["bytenr"][0], 8, dst)
            base.write_block(m, dst, mirror, bytes(buf), fix)
    m.steps.append(f"swap blocks {a} and {b} (header fixed: {fix})")


def m_truncate(base: Base, c: Chooser, m: Mutation) -> None:
    dev = c.int(0, len(base.paths) - 1)
    size = base.sizes[dev]
    if c.chance(50):
        target = c.choice(base.blocks)
        pieces = base.pieces[target][1]
        size = pieces[0][1] + c.int(0, base.nodesize)
    else:
        size = c.int(0, size)
    base.truncate(m, dev, size)
    m.steps.append(f"truncate device {dev} to {size}")


def m_super(base: Base, c: Chooser, m: Mutation) -> None:
    name = c.choice(SB_FIELDS)
    offset, width = SB[name]
    width = min(width, 8)
    value = interesting(c, width, [base.nodesize, base.sectorsize, *base.blocks[:3], base.sizes[0]])
    _edit_supers(base, c, m, lambda buf: _put(buf, offset, width, value))
    m.steps.append(f"superblock {name}={value}")


def m_sys_chunk(base: Base, c: Chooser, m: Mutation) -> None:
    start, _ = SB["sys_chunk_array"]
    pos = start + c.int(0, max(base.sys_array_size - 1, 0))
    width = c.choice([1, 2, 8])
    value = interesting(c, width, [base.sizes[0], base.nodesize, 65536])
    _edit_supers(base, c, m, lambda buf: _put(buf, pos, width, value))
    m.steps.append(f"sys_chunk_array +{pos - start} u{8 * width}={value}")


def _edit_supers(base: Base, c: Chooser, m: Mutation, edit) -> None:
    recsum = c.chance(90)
    targets = base.supers if c.chance(75) else [c.choice(base.supers)]
    for dev, offset in targets:
        buf = bytearray(base.pread(dev, offset, 4096))
        edit(buf)
        if recsum:
            buf[:32] = checksum.compute(base.csum, bytes(buf))
        base.pwrite(m, dev, offset, bytes(buf))


def _layout_offsets(layout) -> dict[str, int]:
    return {name: offset for name, (offset, _) in _offsets(layout).items()}


FE_SIZE = fastparse.FILE_EXTENT.size
_FE, _INODE = _layout_offsets(fastparse.FILE_EXTENT), _layout_offsets(fastparse.INODE_ITEM)
_BG, _DIR = _layout_offsets(fastparse.BLOCK_GROUP_ITEM), _layout_offsets(fastparse.DIR_ITEM)
_ROOT, _CHUNK_SIZE = _layout_offsets(fastparse.ROOT_ITEM_V1), fastparse.CHUNK.size
_KEY_OFFSET, _ITEM_SIZE_AT = 9, 17 + 4  # btrfs_disk_key.offset and btrfs_item.size in a btrfs_item
#: Stand-ins for values computed from the item edited (negative: no field holds them as they are).
CSUM_PLUS_ONE, CSUM_MINUS_ONE, CSUM_OVERLAP = -1, -2, -3


def _csum_value(base: Base, buf: bytes, slot: int, at: int, offset: int, width: int, value: int) -> int | None:
    """The value a relative EXTENT_CSUM edit writes; None when it does not apply to this item."""
    current = int.from_bytes(buf[at + offset:at + offset + width], "little")
    if value == CSUM_PLUS_ONE:
        return current + 1 if current + 1 < 2**64 else None
    if value == CSUM_MINUS_ONE:
        return current - 1 if current > 0 else None
    if value == CSUM_OVERLAP:  # one sector into the previous item's range, which must cover two sectors or more
        prev = at - ITEM_SIZE
        if slot == 0 or buf[prev + 8] != ItemType.EXTENT_CSUM:
            return None
        start = int.from_bytes(buf[prev + _KEY_OFFSET:prev + _KEY_OFFSET + 8], "little")
        sectors = int.from_bytes(buf[prev + _ITEM_SIZE_AT:prev + _ITEM_SIZE_AT + 4], "little") // base.csum.size
        return start + base.sectorsize if sectors >= 2 else None
    return value


#: kind -> (payload offset, width, values the plausibility rules refuse, whether the pipeline surely reads the
#: item: then exit 0 with no warning is a failure). DIR_ITEMs are read only where the listing goes.
SEMANTIC: dict[str, list[tuple[int, int, tuple[int, ...], bool]]] = {
    "EXTENT_DATA": [(_FE["reg.num_bytes"], 8, (0, 2**64 - 4096, 1), True),
                    (_FE["head.compression"], 1, (4, 7, 255), True),
                    (_FE["head.encryption"], 1, (1, 255), True),
                    (_FE["reg.offset"], 8, (1, 4095, 2**63), True),
                    (_FE["reg.disk_num_bytes"], 8, (1, 2**64 - 1), True),
                    (_FE["head.ram_bytes"], 8, (3,), True)],
    "INODE_ITEM": [(_INODE["size"], 8, (2**63, 2**64 - 1), True), (_INODE["mode"], 4, (0, 0o170000), True)],
    "DIR_ITEM": [(_DIR["type"], 1, (9, 200), False), (_DIR["name_len"], 2, (256, 65535), False)],
    "ROOT_ITEM": [(_ROOT["level"], 1, (8, 255), True), (_ROOT["generation"], 8, (2**64 - 1,), True)],
    "BLOCK_GROUP_ITEM": [(_BG["used"], 8, (2**64 - 1, 10979547469688594398), True),
                         (_BG["chunk_objectid"], 8, (0, 257), True)],
    "CHUNK_ITEM": [(_CHUNK_SIZE, 8, (99, 2**64 - 1), True)],  # the first stripe's devid
    # offsets into the btrfs_item (the report's content designs read every checksum item); values relative to
    # what is there (``_csum_value``): start +1, size -1 or 0, start inside the previous item's range, objectid
    "EXTENT_CSUM": [(_KEY_OFFSET, 8, (CSUM_PLUS_ONE, CSUM_OVERLAP), True), (_ITEM_SIZE_AT, 4, (CSUM_MINUS_ONE, 0), True),
                    (0, 8, (2**64 - 9,), True)],
}
SEMANTIC_KINDS = tuple(SEMANTIC)


def m_semantic(base: Base, c: Chooser, m: Mutation) -> None:
    """An item field set to a value the kernel's tree-checker (or btrfsscan's rules) refuse, on every copy,
    the checksum recomputed: so it reaches the parsers."""
    kinds = [k for k in SEMANTIC_KINDS if base.targets.get(k)]
    if not kinds:
        return m_payload(base, c, m)
    kind = c.choice(kinds)
    bytenr, slot, at, size = c.choice(base.targets[kind])
    offset, width, values, read = c.choice(SEMANTIC[kind])
    value = c.choice(values)
    if offset + width > size:
        return m_payload(base, c, m)
    if kind == "BLOCK_GROUP_ITEM" and offset == _BG["used"] and value < 2**63:
        value = 10979547469688594398
    if kind == "EXTENT_CSUM":
        value = _csum_value(base, base.read_block(bytenr, min(base.pieces[bytenr])), slot, at, offset, width, value)
        if value is None:
            return m_payload(base, c, m)
    for mirror in sorted(base.pieces[bytenr]):
        buf = bytearray(base.read_block(bytenr, mirror))
        _put(buf, at + offset, width, value)
        base.write_block(m, bytenr, mirror, bytes(buf), True)
    m.implausible = m.implausible or read
    m.steps.append(f"semantic {kind} leaf {bytenr} slot {slot} +{offset} u{8 * width}={value}")


MUTATIONS = [m_bitflip, m_bitflip, m_header, m_pointer, m_item, m_item, m_payload, m_payload, m_payload, m_zero,
             m_random, m_swap, m_truncate, m_super, m_super, m_sys_chunk, m_semantic, m_semantic]
TREE_MUTATIONS = [m_bitflip, m_header, m_pointer, m_item, m_payload, m_payload, m_zero, m_random, m_swap]
SUPER_MUTATIONS = [m_super, m_sys_chunk, m_truncate]
SEMANTIC_MUTATIONS = [m_semantic]


# --- running a mutated image ---------------------------------------------------------


class Hang(Exception):
    """The per-example time bound ran out (a loop?)."""


@contextmanager
def time_bound(seconds: float):
    def alarm(signum, frame):
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_everything(paths: list[str]) -> dict:
    """The pipeline and the cheap commands; raises whatever escapes that is not a BtrfsScanError."""
    result = model_pipeline(paths, PIPELINE_LIMITS)
    from click.testing import CliRunner

    from btrfsscan.present.cli import main

    runner = CliRunner()
    for args in (["super", "--json"], ["chunks", "--json"]):
        out = runner.invoke(main, [*args, *paths], catch_exceptions=True)
        if out.exception is not None and not isinstance(out.exception, SystemExit):
            raise out.exception
        bad = [line for line in out.stderr.splitlines() if "internal error" in line or "Traceback" in line]
        if bad:
            raise AssertionError(f"{' '.join(args)}: {bad[0]}")
        if out.exit_code not in (0, 1, 2):
            raise AssertionError(f"{' '.join(args)}: exit {out.exit_code}")
        result.setdefault("exits", {})[args[0]] = out.exit_code
    return result


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


class Leak(Exception):
    """A run left file descriptors open."""


def check(base: Base, mutation: Mutation) -> dict:
    """Run everything on the mutated working copy; only BtrfsScanError may have been raised inside,
    and every image opened was closed again."""
    before = _open_fds()
    with time_bound(EXAMPLE_SECONDS):
        try:
            result = run_everything(base.paths)
        except BtrfsScanError as exc:  # model_pipeline catches these per step; belt and braces
            result = {"steps": {"escaped": f"error: {exc}"}, "warnings": []}
    after = _open_fds()
    if before is not None and after is not None and after > before:
        raise Leak(f"{after - before} file descriptor(s) left open")
    if mutation.implausible and all(step.startswith("semantic") for step in mutation.steps) and _clean(result):
        raise Implausible("an implausible item value gave a complete result: no warning, no error")
    return result


class Implausible(Exception):
    """A value the plausibility rules refuse went through as a figure (exit 0, nothing said)."""


def _clean(result: dict) -> bool:
    """Whether a run said nothing: every step ok, no warning, every command exit 0."""
    return (not result.get("warnings") and all(v == "ok" for v in result["steps"].values())
            and all(code == 0 for code in result.get("exits", {}).values()))


# --- the tests -----------------------------------------------------------------------


_BASES: dict[str, Base] = {}


@pytest.fixture(scope="module")
def bases(tmp_path_factory, fixture_images):
    names = BASES + (LONG_BASES if LONG_RUN else [])
    names += [m.base for _, m in REGRESSIONS if m.base not in names]
    out = {}
    for name in names:
        if name not in _BASES:
            found = fixture_images(*name.split("/"))
            if not found:
                continue
            _BASES[name] = Base(name, tmp_path_factory.mktemp(name.replace("/", "-")),
                                [found[k] for k in sorted(found)])
        out[name] = _BASES[name]
    if not out:
        pytest.skip("no fixture images")
    yield out


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG_RUN,
    database=None if not LONG_RUN else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def _fuzz(bases, data, kinds) -> None:
    name = data.draw(st.sampled_from(sorted(bases)))
    base = bases[name]
    try:
        c = HypothesisChooser(data.draw)
        mutation = Mutation(name)
        for _ in range(c.int(1, 3)):
            c.choice(kinds)(base, c, mutation)
        note(str(mutation))
        check(base, mutation)
    finally:
        base.restore()


@FUZZ
@given(data=st.data())
def test_mutated_tree_blocks(bases, data):
    _fuzz(bases, data, TREE_MUTATIONS)


@FUZZ
@given(data=st.data())
def test_mutated_superblocks_and_truncation(bases, data):
    _fuzz(bases, data, SUPER_MUTATIONS)


@FUZZ
@given(data=st.data())
def test_mutated_anything(bases, data):
    _fuzz(bases, data, MUTATIONS)


@FUZZ
@given(data=st.data())
def test_semantic_mutations(bases, data):
    """Checksum-correct implausible item values: never a clean result where the item is read."""
    _fuzz(bases, data, SEMANTIC_MUTATIONS)


# --- regressions: mutations that once crashed or hung, replayed byte for byte -----------

#: (id, Mutation): inputs that once crashed, hung or blew up memory, as exact byte patches
#: against the committed fixture (checksums included); see fuzz/README.md.  If a fixture is
#: ever rebuilt, its patches no longer hit the same bytes: regenerate them (the engine prints
#: the patches of every failing example).
REGRESSIONS: list[tuple[str, Mutation]] = [
    # stripe_len 1 in both RAID0 DATA chunk items: every file extent was mapped one device piece
    # per byte (48 s and growing with file size); now the chunks are refused (chunks._plan).
    ("raid0-data-stripe-len-1", Mutation(
        "volumes/raid0", ["chunk tree: stripe_len=1 in both DATA chunk items, checksum recomputed"],
        [(0, 22052864, bytes.fromhex("4e925f18")), (0, 22068732, bytes.fromhex("010000")),
         (0, 22052864, bytes.fromhex("10785d45")), (0, 22068620, bytes.fromhex("010000"))])),
]


@pytest.mark.parametrize("case", REGRESSIONS, ids=[r[0] for r in REGRESSIONS] or None)
def test_regression(bases, case):
    _, mutation = case
    base = bases.get(mutation.base)
    if base is None:
        pytest.skip(f"fixture {mutation.base} not present")
    try:
        base.apply(mutation)
        start = time.perf_counter()
        check(base, mutation)
        assert time.perf_counter() - start < 10
    finally:
        base.restore()
