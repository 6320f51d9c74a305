"""Damage made on purpose, byte by byte, to kernel-made fixtures: each kind gives its own message.

Every case unpacks a fixture (``tests/fixtures/volumes/*`` or ``files/*``)
into a sparse copy, finds the bytes to damage with btrfsscan's own reader on
the pristine copy, edits them exactly (recomputing the tree-block or
superblock checksum where the point is to get past it), then checks what
btrfsscan says: the model layer's warnings or error (``BtrfsScanError``
naming the block, copy, device or field), and, through click's CliRunner,
that every command that exists keeps its contract (exit 0/1/2, one error line
or warnings, never a traceback).  Device cases leave device images out of a
multi-device fixture.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from corpus_driver import model_pipeline, sparse_copy

from btrfsscan.errors import BtrfsScanError, CorruptionError
from btrfsscan.format import checksum, fastparse
from btrfsscan.format.constants import BTRFS_NUM_BACKUP_ROOTS, BlockGroupFlag, ItemType, ObjectId
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner
from btrfsscan.format.items import parse_item
from btrfsscan.format.structs import btrfs_root_backup
from btrfsscan.tree.block import HEADER_SIZE
from btrfsscan.tree.roots import chunk_root
from btrfsscan.tree.walk import TreeRoot, iter_leaves

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SUPER_OFFSETS = (65536, 64 << 20)  # the copies a 128 MiB..256 MiB fixture holds


def _offsets(layout) -> dict[str, int]:
    out, pos = {}, 0
    for name, code in layout.fields:
        out[name] = pos
        pos += struct.calcsize("<" + code)
    return out


HDR = _offsets(fastparse.HEADER)
SB = _offsets(fastparse.SUPER_BLOCK)
ITEM_SIZE = fastparse.ITEM.size  # 25: key (17), offset u32, size u32
PTR_SIZE = fastparse.KEY_PTR.size  # 33: key (17), blockptr u64, generation u64
KEY_SIZE = fastparse.DISK_KEY.size
CHUNK = _offsets(fastparse.CHUNK)
STRIPE = _offsets(fastparse.STRIPE)
DIR = _offsets(fastparse.DIR_ITEM)
FE = _offsets(fastparse.FILE_EXTENT_HEAD)


# --- fixtures on disk ---------------------------------------------------------------


@pytest.fixture(scope="session")
def pristine(fixture_images):
    """name ('volumes/single') -> the fixture's device images, unpacked once per session (conftest)."""

    def get(name: str) -> list[Path]:
        found = fixture_images(*name.split("/"))
        if not found:
            pytest.skip(f"fixture {name} not present")
        return [found[k] for k in sorted(found)]

    return get


class Victim:
    """Sparse copies of a fixture's device images, located with btrfsscan, then damaged."""

    def __init__(self, sources: list[Path], directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = []
        for src in sources:
            dst = directory / src.name
            sparse_copy(src, dst)
            self.paths.append(str(dst))
        self.fs = open_filesystem(self.paths)  # the pristine layout, for finding things
        self.nodesize = self.fs.superblock.nodesize
        self.csum = self.fs.superblock.csum
        self.by_devid = {d.devid: d.image.path for d in self.fs.volume.devices.values() if d.image}

    def close(self) -> None:
        self.fs.close()

    # raw bytes
    def pread(self, path: str, offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def pwrite(self, path: str, offset: int, data: bytes) -> None:
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(data)

    # tree blocks
    def copies(self, logical: int) -> list:
        return [p for p in self.fs.volume.map(logical, self.nodesize)]

    def edit_block(self, logical: int, edit, *, mirrors=None, recsum: bool = True) -> None:
        """Apply ``edit(bytearray)`` to copies ``mirrors`` (default all) of the block at ``logical``."""
        for piece in self.copies(logical):
            if mirrors is not None and piece.mirror not in mirrors:
                continue
            path = self.by_devid[piece.devid]
            buf = bytearray(self.pread(path, piece.physical, self.nodesize))
            edit(buf)
            if recsum:
                buf[:32] = checksum.compute(self.csum, bytes(buf))
            self.pwrite(path, piece.physical, bytes(buf))

    # superblocks
    def edit_super(self, edit, *, copies=(0, 1), devices=None, recsum: bool = True) -> None:
        for path in devices or self.paths:
            for index in copies:
                offset = SUPER_OFFSETS[index]
                if offset + 4096 > os.path.getsize(path):
                    continue
                buf = bytearray(self.pread(path, offset, 4096))
                edit(buf)
                if recsum:
                    buf[:32] = checksum.compute(self.csum, bytes(buf))
                self.pwrite(path, offset, bytes(buf))

    def forget_backup_roots(self) -> None:
        """Zero the superblock's four backup root slots: nothing can stand in for a damaged root tree root."""
        start, size = SB["super_roots[0].tree_root"], BTRFS_NUM_BACKUP_ROOTS * btrfs_root_backup.sizeof()
        self.edit_super(lambda b: b.__setitem__(slice(start, start + size), bytes(size)))

    # finding things
    def root(self, tree_id: int) -> TreeRoot:
        if tree_id == ObjectId.CHUNK_TREE:
            return chunk_root(self.fs.reader)
        return self.fs.root_tree if tree_id == ObjectId.ROOT_TREE else self.fs.tree_root(tree_id)

    def leaves(self, tree_id: int) -> list:
        return list(iter_leaves(self.fs.reader, self.root(tree_id)))

    def find_item(self, tree_id: int, match) -> tuple:
        """(leaf, slot) of the first item whose key satisfies ``match(key, data)``."""
        for leaf in self.leaves(tree_id):
            for slot, key in enumerate(leaf.keys()):
                if match(key, leaf.item_data(slot)):
                    return leaf, slot
        raise AssertionError(f"no such item in tree {tree_id}")


@pytest.fixture
def victim(pristine, tmp_path):
    made = []

    def make(name: str = "volumes/single") -> Victim:
        v = Victim(pristine(name), tmp_path / f"v{len(made)}")
        made.append(v)
        return v

    yield make
    for v in made:
        v.close()


# --- byte edits ---------------------------------------------------------------------


def put(buf: bytearray, offset: int, fmt: str, value) -> None:
    struct.pack_into("<" + fmt, buf, offset, value)


def item_at(slot: int) -> int:
    """Offset in the block of leaf item ``slot``'s btrfs_item."""
    return HEADER_SIZE + slot * ITEM_SIZE


def ptr_at(slot: int) -> int:
    return HEADER_SIZE + slot * PTR_SIZE


def payload_at(leaf, slot: int) -> int:
    """Offset in the block of leaf item ``slot``'s payload."""
    return HEADER_SIZE + int(leaf.items["offset"][slot])


# --- running btrfsscan --------------------------------------------------------------


def model(paths: list[str]) -> dict:
    """The in-process pipeline (open, subvolumes, scan, ls, file maps, extents, models): steps + warnings."""
    start = time.perf_counter()
    result = model_pipeline(paths)
    assert time.perf_counter() - start < 30, "the pipeline took more than 30 s (a loop?)"
    result["text"] = "\n".join([*result["steps"].values(), *result["warnings"]])
    return result


def open_error(paths: list[str]) -> str:
    with pytest.raises(BtrfsScanError) as info:
        fs = open_filesystem(paths)
        try:
            fs.subvolumes  # noqa: B018 - the root tree is read lazily
        finally:
            fs.close()
    return str(info.value)


CLI_COMMANDS = (["super"], ["chunks"], ["subvolumes", "--json"], ["ls", "-R", "--json"], ["report", "--json"])


def cli(paths: list[str], expect: str | None = None, *, commands=CLI_COMMANDS, exits=(0, 1, 2)) -> dict:
    """Run every existing command of ``commands``; check the CLI contract; ``expect`` in each one's stderr."""
    from btrfsscan.present.cli import main

    runner = CliRunner()
    results = {}
    for args in commands:
        if args[0] not in main.commands:
            continue
        ends = ["--"] if args[0] == "ls" else []  # several images and no PATH: `--` ends them
        result = runner.invoke(main, [*args, *paths, *ends], catch_exceptions=True)
        stderr = result.stderr.splitlines()
        name = " ".join(args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{name}: {type(result.exception).__name__}: {result.exception}")
        assert not any("Traceback" in line or "internal error" in line for line in stderr), f"{name}: {stderr}"
        assert result.exit_code in exits, f"{name}: exit {result.exit_code}, stderr {stderr}"
        if result.exit_code == 2:
            assert len(stderr) == 1 and stderr[0].startswith("btrfsscan: error:"), f"{name}: {stderr}"
        elif result.exit_code == 1:
            assert any(line.startswith("warning:") for line in stderr), f"{name}: exit 1, no warning"
        if expect is not None:
            assert expect in result.stderr, f"{name}: {expect!r} not in stderr {stderr}"
        results[name] = (result.exit_code, stderr)
    return results


# === tree blocks ======================================================================


def test_checksum_mismatch_on_one_dup_copy_uses_the_other(victim):
    v = victim()
    leaf = v.leaves(ObjectId.FS_TREE)[3]
    v.edit_block(leaf.bytenr, lambda b: b.__setitem__(200, b[200] ^ 0xFF), mirrors=[1], recsum=False)
    result = model(v.paths)
    assert all(not s.startswith("error") for s in result["steps"].values()), result["steps"]
    wanted = f"bad copy of tree block, used copy 2 instead: copy 1: checksum mismatch (tree block {leaf.bytenr})"
    assert wanted in result["warnings"]
    cli(v.paths, f"tree block {leaf.bytenr}", commands=[["ls", "-R", "--json"], ["report", "--json"]], exits=(1,))


def test_checksum_mismatch_on_every_copy_of_a_leaf_is_partial(victim):
    v = victim()
    leaf = v.leaves(ObjectId.FS_TREE)[3]
    v.edit_block(leaf.bytenr, lambda b: b.__setitem__(200, b[200] ^ 0xFF), recsum=False)
    result = model(v.paths)
    assert result["steps"]["scan"] == "partial"
    assert any(f"tree block {leaf.bytenr}: copy 1: checksum mismatch; copy 2: checksum mismatch" in w
               and "subtree skipped" in w for w in result["warnings"]), result["warnings"]
    cli(v.paths, f"tree block {leaf.bytenr}", commands=[["ls", "-R", "--json"], ["report", "--json"]], exits=(1,))


def test_streamed_ls_with_warnings_ends_partial_and_strict_writes_nothing(victim, tmp_path):
    """``ls -R`` writes its entries while it finds the damage: the JSON still ends with the warnings (partial);
    with --strict nothing reaches stdout or the -o file."""
    from support import run, validate_documents

    v = victim()
    leaf = v.leaves(ObjectId.FS_TREE)[3]
    v.edit_block(leaf.bytenr, lambda b: b.__setitem__(200, b[200] ^ 0xFF), recsum=False)
    result = run("ls", "-R", "--json", *v.paths, "--")
    assert result.exit_code == 1
    (doc,) = validate_documents("ls", result.stdout)
    assert doc["partial"] is True and any(f"tree block {leaf.bytenr}" in w for w in doc["warnings"])
    assert doc["entries"] and doc["entries"][0]["path"] == "."
    strict = run("ls", "-R", "--json", "--strict", *v.paths, "--")
    assert strict.exit_code == 2 and strict.stdout == "" and "--strict" in strict.stderr.splitlines()[-1]
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "listing.txt"
    strict = run("ls", "-R", "--strict", "-o", target, *v.paths, "--")
    assert strict.exit_code == 2 and list(target.parent.iterdir()) == []  # no temporary file left either


def test_checksum_mismatch_on_every_copy_of_the_root_tree_reads_the_newest_backup_root(victim):
    v = victim()
    sb = v.fs.superblock
    backup = max((b for b in sb.super_roots if b.tree_root_gen < sb.generation), key=lambda b: b.tree_root_gen)
    v.edit_block(sb.root, lambda b: b.__setitem__(300, b[300] ^ 1), recsum=False)
    result = model(v.paths)
    assert [w for w in result["warnings"] if "backup root" in w] == [
        f"tree ROOT_TREE: the superblock's root is unusable (tree block {sb.root}: copy 1: checksum mismatch; copy "
        f"2: checksum mismatch); using backup root slot {list(sb.super_roots).index(backup)} instead: tree block "
        f"{backup.tree_root} of generation {backup.tree_root_gen}, older than the superblock's {sb.generation}, so "
        "what later transactions wrote is not shown (superblock backup roots)"]
    cli(v.paths, "using backup root slot", commands=CLI_COMMANDS[1:], exits=(1,))


def test_checksum_mismatch_on_every_copy_of_the_root_tree_without_backup_roots_is_an_error(victim):
    v = victim()
    root, generation = v.fs.superblock.root, v.fs.superblock.generation
    v.edit_block(root, lambda b: b.__setitem__(300, b[300] ^ 1), recsum=False)
    v.forget_backup_roots()
    message = open_error(v.paths)
    assert message == (f"tree block {root}: copy 1: checksum mismatch; copy 2: checksum mismatch; no backup root of "
                       f"a generation older than {generation} to try")
    cli(v.paths, f"tree block {root}: copy 1: checksum mismatch",
        commands=[["subvolumes", "--json"], ["ls", "-R", "--json"], ["report", "--json"]], exits=(2,))


def test_checksum_mismatch_on_the_chunk_root_is_an_error(victim):
    """The fixture's backup slots all name the chunk root of its superblock (mkfs wrote the chunk tree once)."""
    v = victim()
    chunk_root, generation = v.fs.superblock.chunk_root, v.fs.superblock.chunk_root_generation
    v.edit_block(chunk_root, lambda b: b.__setitem__(300, b[300] ^ 1), recsum=False)
    message = open_error(v.paths)
    assert message == (f"tree block {chunk_root}: copy 1: checksum mismatch; copy 2: checksum mismatch; no backup "
                       f"root of a generation older than {generation} to try")
    cli(v.paths, f"tree block {chunk_root}", commands=[["chunks"]], exits=(2,))


@pytest.mark.parametrize(
    "field, fmt, value, message",
    [
        ("bytenr", "Q", 12345 * 4096, "header bytenr 50565120 differs from its address"),
        ("fsid", "16s", b"\x42" * 16, "header fsid belongs to another filesystem"),
        ("level", "B", 3, "level 3, expected 0"),
        ("level", "B", 9, "level 9 is 8 or more"),
        ("generation", "Q", 7, "parent transid verify failed: wanted generation"),
        ("generation", "Q", 1 << 40, "generation 1099511627776 is newer than the superblock's"),
    ],
)
def test_header_mismatch_of_a_leaf(victim, field, fmt, value, message):
    v = victim()
    leaf = v.leaves(ObjectId.FS_TREE)[5]
    v.edit_block(leaf.bytenr, lambda b: put(b, HDR[field], fmt, value))
    result = model(v.paths)
    assert result["steps"]["scan"] == "partial", result["steps"]
    expected = f"tree block {leaf.bytenr}: copy 1: {message}"
    assert any(expected in w and "copy 2: " in w for w in result["warnings"]), result["warnings"]


def test_header_mismatch_of_the_root_tree_is_an_error(victim):
    v = victim()
    root = v.fs.superblock.root
    v.edit_block(root, lambda b: put(b, HDR["bytenr"], "Q", root + 4096))
    v.forget_backup_roots()
    assert open_error(v.paths).startswith(f"tree block {root}: copy 1: header bytenr {root + 4096} differs from its address")


def test_keys_out_of_order(victim):
    v = victim()
    leaf = v.leaves(ObjectId.FS_TREE)[2]
    # Give item 10 the key of item 20: item 11 is then smaller than its predecessor.
    def edit(b):
        b[item_at(10):item_at(10) + KEY_SIZE] = b[item_at(20):item_at(20) + KEY_SIZE]
    v.edit_block(leaf.bytenr, edit)
    result = model(v.paths)
    assert any(f"tree block {leaf.bytenr}: copy 1: keys out of order at slot 11" in w for w in result["warnings"])


def test_keys_out_of_order_in_a_node(victim):
    v = victim()
    root = v.root(ObjectId.FS_TREE)
    assert root.level == 1

    def edit(b):
        b[ptr_at(1):ptr_at(1) + KEY_SIZE] = b[ptr_at(5):ptr_at(5) + KEY_SIZE]
    v.edit_block(root.bytenr, edit)
    result = model(v.paths)
    assert any(f"subvolume 5 (top level) skipped: tree block {root.bytenr}: copy 1: keys out of order at slot 2" in w
               for w in result["warnings"]), result["warnings"]


@pytest.mark.parametrize(
    "what, offset_delta, size, message",
    [
        ("offset past the end", 20000, None, "lies outside the leaf data area"),
        ("size past the end", 0, 0xFFFF0, "lies outside the leaf data area"),
        ("offset inside the item table", None, None, "lies outside the leaf data area"),
    ],
)
def test_item_outside_the_block_is_skipped(victim, what, offset_delta, size, message):
    v = victim()
    leaf = v.leaves(ObjectId.FS_TREE)[4]
    slot = 7

    def edit(b):
        off, sz = struct.unpack_from("<II", b, item_at(slot) + KEY_SIZE)
        if offset_delta is None:
            off = 0  # data would overlap the header and item table
        else:
            off += offset_delta
        struct.pack_into("<II", b, item_at(slot) + KEY_SIZE, off, size if size is not None else sz)
    v.edit_block(leaf.bytenr, edit)
    result = model(v.paths)
    wanted = f"damaged item skipped: slot {slot}: item data"
    assert any(wanted in w and message in w and f"tree block {leaf.bytenr}" in w for w in result["warnings"]), \
        result["warnings"]
    assert result["steps"]["scan"] == "partial"
    cli(v.paths, f"tree block {leaf.bytenr}", commands=[["ls", "-R", "--json"], ["report", "--json"]], exits=(1,))


@pytest.mark.parametrize("kind", ["leaf", "node", "empty node"])
def test_nritems_impossible_for_the_node_size(victim, kind):
    v = victim()
    if kind == "leaf":
        bytenr = v.leaves(ObjectId.FS_TREE)[1].bytenr
        nritems, message = 1000, "nritems 1000 cannot fit in a leaf of 16384 bytes"
    else:
        bytenr = v.root(ObjectId.FS_TREE).bytenr
        nritems = 1000 if kind == "node" else 0
        message = f"nritems {nritems} impossible for a node of 16384 bytes"
    v.edit_block(bytenr, lambda b: put(b, HDR["nritems"], "I", nritems))
    result = model(v.paths)
    assert any(f"tree block {bytenr}: copy 1: {message}" in w for w in result["warnings"]), result["warnings"]


def test_child_level_not_parent_level_minus_one(victim):
    v = victim()
    leaf = v.leaves(ObjectId.EXTENT_TREE)[2]
    v.edit_block(leaf.bytenr, lambda b: put(b, HDR["level"], "B", 1))
    result = model(v.paths)
    assert any(f"tree EXTENT_TREE: subtree skipped: tree block {leaf.bytenr}: copy 1: level 1, expected 0" in w
               for w in result["warnings"]), result["warnings"]


def test_root_item_level_disagreeing_with_the_root_block(victim):
    v = victim()
    leaf, slot = v.find_item(ObjectId.ROOT_TREE, lambda k, d: k[:2] == (ObjectId.FS_TREE, ItemType.ROOT_ITEM))
    level_at = payload_at(leaf, slot) + _offsets(fastparse.ROOT_ITEM_V1)["level"]
    v.edit_block(leaf.bytenr, lambda b: put(b, level_at, "B", 2))
    fs_root = v.root(ObjectId.FS_TREE).bytenr
    result = model(v.paths)
    assert any(f"subvolume 5 (top level) skipped: tree block {fs_root}: copy 1: level 1, expected 2" in w
               for w in result["warnings"]), result["warnings"]


@pytest.mark.parametrize("target", ["itself", "a sibling", "the grandparent"])
def test_cycle_in_a_tree_does_not_hang(victim, target):
    v = victim("files/many")
    sub = v.fs.subvolumes.get(256)
    assert sub.root.level == 2
    top = v.fs.reader.read(sub.root.bytenr)
    node_ptr = top.children()[0][0]
    node = v.fs.reader.read(node_ptr)
    assert node.level == 1
    pointee = {"itself": node_ptr, "a sibling": node.children()[0][0], "the grandparent": sub.root.bytenr}[target]
    slot = 2
    v.edit_block(node_ptr, lambda b: put(b, ptr_at(slot) + KEY_SIZE, "Q", pointee))
    start = time.perf_counter()
    result = model(v.paths)
    assert time.perf_counter() - start < 20
    assert any(f"block {pointee} is referenced twice (cycle or shared pointer), skipped" in w
               and f"node {node_ptr} slot {slot}" in w for w in result["warnings"]), result["warnings"]
    cli(v.paths, f"block {pointee} is referenced twice", commands=[["ls", "-R", "--json"], ["report", "--json"]],
        exits=(1,))


def test_tree_root_outside_every_chunk(victim):
    v = victim()
    v.edit_super(lambda b: put(b, SB["root"], "Q", 1 << 40))
    v.forget_backup_roots()
    message = open_error(v.paths)
    assert message.startswith("tree block 1099511627776: logical address 0x10000000000 (1099511627776) is not "
                              "mapped by any chunk; ")
    cli(v.paths, "is not mapped by any chunk", commands=[["subvolumes", "--json"], ["report", "--json"]], exits=(2,))


def test_subvolume_root_item_outside_every_chunk(victim):
    v = victim()
    leaf, slot = v.find_item(ObjectId.ROOT_TREE, lambda k, d: k[:2] == (ObjectId.FS_TREE, ItemType.ROOT_ITEM))
    bytenr_at = payload_at(leaf, slot) + _offsets(fastparse.ROOT_ITEM_V1)["bytenr"]
    v.edit_block(leaf.bytenr, lambda b: put(b, bytenr_at, "Q", 1 << 40))
    result = model(v.paths)
    assert any("subvolume 5 (top level) skipped: tree block 1099511627776: logical address 0x10000000000" in w
               for w in result["warnings"]), result["warnings"]


# === chunks in the superblock's sys_chunk_array =====================================


def _sys_chunk_edit(edit_chunk):
    """An edit of the first chunk of the sys_chunk_array (its btrfs_chunk starts after the key)."""
    base = SB["sys_chunk_array"] + KEY_SIZE

    def edit(b):
        edit_chunk(b, base)
    return edit


@pytest.mark.parametrize(
    "what, edit, message",
    [
        ("zero stripes", lambda b, c: put(b, c + CHUNK["num_stripes"], "H", 0), "num_stripes 0"),
        ("stripe_len 0", lambda b, c: put(b, c + CHUNK["stripe_len"], "Q", 0), "stripe_len is 0"),
        ("bogus type bits", lambda b, c: put(b, c + CHUNK["type"], "Q", 1 << 40 | int(BlockGroupFlag.SYSTEM)),
         "type 0x10000000002 has unknown bits 0x10000000000"),
        ("several profiles", lambda b, c: put(b, c + CHUNK["type"], "Q", int(
            BlockGroupFlag.SYSTEM | BlockGroupFlag.RAID1 | BlockGroupFlag.RAID0)), "has several profile bits"),
        ("RAID10 sub_stripes 0", lambda b, c: (put(b, c + CHUNK["type"], "Q", int(
            BlockGroupFlag.SYSTEM | BlockGroupFlag.RAID10)), put(b, c + CHUNK["sub_stripes"], "H", 0)),
         "RAID10 sub_stripes 0 with num_stripes 2"),
        ("RAID6 without data stripes", lambda b, c: put(b, c + CHUNK["type"], "Q", int(
            BlockGroupFlag.SYSTEM | BlockGroupFlag.RAID6)), "RAID6 num_stripes 2 leaves no data stripe"),
        ("num_stripes past the array", lambda b, c: put(b, c + CHUNK["num_stripes"], "H", 500),
         "num_stripes 500 needs 16048 bytes"),
    ],
)
def test_sys_chunk_array_damage_is_an_error(victim, what, edit, message):
    v = victim()
    v.edit_super(_sys_chunk_edit(edit))
    error = open_error(v.paths)
    assert message in error and ("sys_chunk_array" in error or "chunk at logical 0x" in error), error
    cli(v.paths, message, commands=[["chunks"], ["subvolumes", "--json"], ["report", "--json"]], exits=(2,))


def test_sys_chunk_array_overlapping_chunks(victim):
    v = victim()
    size = v.fs.superblock.sys_chunk_array_size

    def edit(b):
        array = SB["sys_chunk_array"]
        entry = bytes(b[array:array + size])
        shifted = bytearray(entry)
        key_offset = struct.unpack_from("<Q", shifted, 9)[0]
        struct.pack_into("<Q", shifted, 9, key_offset + 4096)
        b[array + size:array + 2 * size] = shifted
        put(b, SB["sys_chunk_array_size"], "I", 2 * size)
    v.edit_super(edit)
    error = open_error(v.paths)
    assert "overlaps chunk" in error, error
    cli(v.paths, "overlaps chunk", commands=[["chunks"]], exits=(2,))


def test_sys_chunk_stripes_beyond_the_device(victim):
    v = victim()
    base = SB["sys_chunk_array"] + KEY_SIZE + fastparse.CHUNK.size
    size = os.path.getsize(v.paths[0])
    # Both DUP stripes past the end: the chunk tree cannot be read at all.
    v.edit_super(lambda b: [put(b, base + k * fastparse.STRIPE.size + STRIPE["offset"], "Q", size + (k << 30))
                            for k in range(2)])
    error = open_error(v.paths)
    assert "goes past the end of the device" in error and "copy 1:" in error and "copy 2:" in error, error
    cli(v.paths, "goes past the end of the device", commands=[["chunks"]], exits=(2,))


def test_sys_chunk_one_stripe_beyond_the_device_uses_the_other(victim):
    v = victim()
    base = SB["sys_chunk_array"] + KEY_SIZE + fastparse.CHUNK.size
    size = os.path.getsize(v.paths[0])
    v.edit_super(lambda b: put(b, base + STRIPE["offset"], "Q", size + (1 << 20)))
    result = model(v.paths)
    assert result["steps"]["open"] == "ok"
    text = "\n".join(result["warnings"])
    assert "used copy 2 instead: copy 1:" in text and "goes past the end of the device" in text, text
    # The chunk tree's copy of the system chunk disagrees with the superblock's.
    assert "differs from the superblock's sys_chunk_array copy of it" in text, text


@pytest.mark.parametrize(
    "what, edit, message",
    [
        ("zero stripes", lambda b, c: put(b, c + CHUNK["num_stripes"], "H", 0), "num_stripes 0"),
        ("stripe_len 0", lambda b, c: put(b, c + CHUNK["stripe_len"], "Q", 0), "stripe_len is 0"),
        ("bogus type bits", lambda b, c: put(b, c + CHUNK["type"], "Q", 1 << 40 | int(BlockGroupFlag.DATA)),
         "has unknown bits 0x10000000000"),
        ("RAID10 sub_stripes 0", lambda b, c: (put(b, c + CHUNK["type"], "Q", int(
            BlockGroupFlag.DATA | BlockGroupFlag.RAID10)), put(b, c + CHUNK["sub_stripes"], "H", 0)),
         "RAID10 sub_stripes 0"),
        ("stripe beyond the device", lambda b, c: put(b, c + fastparse.CHUNK.size + STRIPE["offset"], "Q", 1 << 40),
         "ends beyond the device size"),
        # The first DATA chunk [13 MiB, 21 MiB) grown to 16 MiB runs into the SYSTEM chunk at 21 MiB.
        ("overlapping chunks", lambda b, c: put(b, c + CHUNK["length"], "Q", 16 << 20),
         "chunk [0xd00000, 0x1d00000) overlaps chunk [0x1500000, 0x1d00000)"),
        ("item shorter than a chunk", None, "is 40 bytes, shorter than one chunk with one stripe"),
    ],
)
def test_chunk_tree_chunk_damage_is_a_warning(victim, what, edit, message):
    """A bad DATA chunk in the chunk tree: skipped (or, if still mappable, reported), never fatal."""
    v = victim()
    leaf, slot = v.find_item(ObjectId.CHUNK_TREE, lambda k, d: k[1] == ItemType.CHUNK_ITEM and k[2] == 13631488)
    if edit is None:
        v.edit_block(leaf.bytenr, lambda b: put(b, item_at(slot) + KEY_SIZE + 4, "I", 40))
    else:
        v.edit_block(leaf.bytenr, lambda b: edit(b, payload_at(leaf, slot)))
    result = model(v.paths)
    assert result["steps"]["open"] == "ok", result["steps"]
    assert any(message in w and "chunk tree" in w for w in result["warnings"]), result["warnings"]
    cli(v.paths, message, commands=[["chunks"]], exits=(1,))


def test_tiny_stripe_len_of_a_striped_chunk_is_refused_not_mapped_byte_by_byte(victim):
    """RAID0 with stripe_len 1 would give one device piece per byte: refused, and quickly."""
    v = victim("volumes/raid0")
    for leaf in v.leaves(ObjectId.CHUNK_TREE):
        for slot, key in enumerate(leaf.keys()):
            data = leaf.item_data(slot)
            if key[1] == ItemType.CHUNK_ITEM and struct.unpack_from("<Q", data, CHUNK["type"])[0] & BlockGroupFlag.DATA:
                at = payload_at(leaf, slot) + CHUNK["stripe_len"]
                v.edit_block(leaf.bytenr, lambda b, at=at: put(b, at, "Q", 1))
                logical = key[2]
    start = time.perf_counter()
    result = model(v.paths)
    assert time.perf_counter() - start < 10
    assert any(f"chunk skipped: chunk at logical 0x{logical:x} ({logical}): stripe_len 1 of a striped profile is "
               f"below 4096, too small to map" in w for w in result["warnings"]), result["warnings"]
    cli(v.paths, "stripe_len 1 of a striped profile", commands=[["chunks"], ["report", "--json"]], exits=(1,))


def _regular_extent(v: Victim, ino: int):
    return v.find_item(ObjectId.FS_TREE, lambda k, d: k[0] == ino and k[1] == ItemType.EXTENT_DATA and d[20] == 1)


def test_file_extent_larger_than_any_data_extent_is_not_mapped(victim):
    v = victim()
    fs = v.fs
    ino = fs.namespace.lookup("big/a.bin", fs.subvolumes.get(5)).ino
    leaf, slot = _regular_extent(v, ino)
    num_bytes_at = payload_at(leaf, slot) + fastparse.FILE_EXTENT.size - 8
    disk_num_bytes = struct.unpack_from("<Q", leaf.data, num_bytes_at - 16)[0]
    v.edit_block(leaf.bytenr, lambda b: put(b, num_bytes_at, "Q", 1 << 40))
    result = model(v.paths)
    # Caught by the plausibility rules before any mapping: more bytes referenced than the extent holds.
    assert any(w.startswith(f"EXTENT_DATA implausible: offset 0 + num_bytes 1099511627776 runs past the "
                            f"{disk_num_bytes} bytes of the extent it references") and f"slot {slot})" in w
               and f"leaf {leaf.bytenr}" in w for w in result["warnings"]), result["warnings"]
    results = cli(v.paths + ["big/a.bin"], commands=[["map"]], exits=(1,))
    if results:
        assert any("EXTENT_DATA implausible: offset 0 + num_bytes 1099511627776" in line
                   for line in results["map"][1]), results


def test_file_extent_outside_every_chunk_is_a_warning_naming_the_file(victim):
    v = victim()
    fs = v.fs
    ino = fs.namespace.lookup("big/b.bin", fs.subvolumes.get(5)).ino
    leaf, slot = _regular_extent(v, ino)
    disk_bytenr_at = payload_at(leaf, slot) + fastparse.FILE_EXTENT_HEAD.size
    v.edit_block(leaf.bytenr, lambda b: put(b, disk_bytenr_at, "Q", 1 << 44))
    results = cli(v.paths + ["big/b.bin"], commands=[["map", "--json"]], exits=(1,))
    if results:
        (code, stderr), = results.values()
        assert any("big/b.bin: extent at file offset 0, logical 17592186044416: device ranges not mapped: "
                   "logical address 0x100000000000" in line for line in stderr), stderr


def test_missing_extent_tree_leaves_listing_and_maps_partial(victim):
    """No ROOT_ITEM for the extent tree: reference counts are unknown, files still map (partial); ls needs
    only the fs trees (its shared bytes come from the file extent items) and is complete."""
    v = victim()
    leaf, slot = v.find_item(ObjectId.ROOT_TREE, lambda k, d: k[:2] == (ObjectId.EXTENT_TREE, ItemType.ROOT_ITEM))
    assert leaf.keys()[slot + 1][0] > 3  # objectid 3 (chunk tree) has no ROOT_ITEM: key order kept
    v.edit_block(leaf.bytenr, lambda b: put(b, item_at(slot), "Q", 3))
    wanted = "no ROOT_ITEM for tree EXTENT_TREE in the root tree"
    result = model(v.paths)
    assert result["steps"]["filemap"] == "partial" and result["steps"]["ls"] == "ok", result["steps"]
    assert any(f"reference counts not read: {wanted}" in w for w in result["warnings"]), result["warnings"]
    (code, stderr), = cli(v.paths, commands=[["ls", "-R", "--json"]], exits=(0,)).values()
    assert not stderr, stderr
    cli(v.paths + ["big/a.bin"], wanted, commands=[["map", "--json"]], exits=(1,))


# === superblock fields ================================================================


@pytest.mark.parametrize(
    "field, fmt, value, message",
    [
        ("nodesize", "I", 0, "nodesize 0 is not a power of two in 4096..65536 and >= sectorsize"),
        ("nodesize", "I", 4352, "nodesize 4352 is not a power of two"),
        ("nodesize", "I", 1 << 17, "nodesize 131072 is not a power of two in 4096..65536"),
        ("sectorsize", "I", 8392704, "sectorsize 8392704 is not a power of two in 4096..65536"),
        ("sectorsize", "I", 0, "sectorsize 0 is not a power of two"),
        ("sys_chunk_array_size", "I", 0, "sys_chunk_array_size 0 outside 97..2048"),
        ("sys_chunk_array_size", "I", 5000, "sys_chunk_array_size 5000 outside 97..2048"),
        ("num_devices", "Q", 0, "num_devices is 0"),
        ("root_level", "B", 12, "root level 12 / chunk root level 0 is 8 or more"),
        ("csum_type", "H", 77, "unknown csum_type 77"),
    ],
)
def test_superblock_field_out_of_range(victim, field, fmt, value, message):
    v = victim()
    # Only the primary copy: the backup at 64 MiB is used, with a warning naming the field.
    v.edit_super(lambda b: put(b, SB[field], fmt, value), copies=(0,))
    result = model(v.paths)
    assert result["steps"]["open"] == "ok"
    assert any(w.startswith("primary superblock (copy 0) is not usable: ") and message in w for w in result["warnings"]), \
        result["warnings"]
    assert any("; using copy 1 (generation " in w for w in result["warnings"])
    cli(v.paths, "; using copy 1 (generation ", commands=[["super"], ["chunks"]], exits=(1,))
    # Every copy: no usable superblock, an error naming each copy's problem.
    v.edit_super(lambda b: put(b, SB[field], fmt, value), copies=(1,))
    error = open_error(v.paths)
    assert error.startswith(f"{v.paths[0]}: no valid superblock (copy 0 at 65536: ") and message in error, error
    cli(v.paths, message, commands=[["super"], ["chunks"]], exits=(2,))


def test_superblock_checksum_mismatch_on_every_copy(victim):
    v = victim()
    v.edit_super(lambda b: put(b, SB["generation"], "Q", 12345), recsum=False)
    error = open_error(v.paths)
    assert error == (f"{v.paths[0]}: no valid superblock (copy 0 at 65536: checksum mismatch; "
                     f"copy 1 at 67108864: checksum mismatch)")


def test_truncated_image(victim):
    v = victim()
    os.truncate(v.paths[0], 65536 + 3000)
    error = open_error(v.paths)
    assert "too small to hold a superblock" in error, error
    cli(v.paths, "too small to hold a superblock", exits=(2,))


def test_image_cut_inside_the_metadata(victim):
    v = victim()
    # Keep the superblocks' area but lose the metadata chunk's second half.
    os.truncate(v.paths[0], 40 << 20)
    result = model(v.paths)
    assert "goes past the end of the device" in result["text"], result["text"]


# === item payloads ====================================================================


def _shrink(v: Victim, tree_id: int, match, new_size: int):
    leaf, slot = v.find_item(tree_id, match)
    v.edit_block(leaf.bytenr, lambda b: put(b, item_at(slot) + KEY_SIZE + 4, "I", new_size))
    return leaf, slot


def test_inode_item_shorter_than_its_structure(victim):
    v = victim()
    leaf, slot = _shrink(v, ObjectId.FS_TREE, lambda k, d: k[1] == ItemType.INODE_ITEM and k[0] == 260, 40)
    result = model(v.paths)
    assert any(w.startswith("INODE_ITEM of inode 260 shorter than btrfs_inode_item, skipped") and
               f"leaf {leaf.bytenr}" in w for w in result["warnings"]), result["warnings"]


def test_regular_extent_item_shorter_than_its_structure(victim):
    v = victim()
    leaf, slot = _shrink(v, ObjectId.FS_TREE, lambda k, d: k[1] == ItemType.EXTENT_DATA and d[20] == 1, 30)
    ino, _, off = leaf.keys()[slot]
    result = model(v.paths)
    assert f"EXTENT_DATA item of 30 bytes is shorter than btrfs_file_extent_item, skipped (inode {ino} offset {off})" \
        in result["text"], result["warnings"]


def test_root_item_shorter_than_its_structure(victim):
    v = victim("files/subvols")
    _shrink(v, ObjectId.ROOT_TREE, lambda k, d: k[:2] == (256, ItemType.ROOT_ITEM), 100)
    result = model(v.paths)
    assert any("root tree item skipped: ROOT_ITEM is 100 bytes, shorter than its 239-byte structure" in w
               for w in result["warnings"]), result["warnings"]


def test_root_ref_name_past_the_item(victim):
    v = victim("files/subvols")
    leaf, slot = v.find_item(ObjectId.ROOT_TREE, lambda k, d: k[:2] == (256, ItemType.ROOT_BACKREF))
    v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + 16, "H", 3000))
    result = model(v.paths)
    assert any("ROOT_REF name of 3000 bytes runs past its" in w for w in result["warnings"]), result["warnings"]


def test_dev_item_shorter_than_its_structure(victim):
    v = victim()
    _shrink(v, ObjectId.CHUNK_TREE, lambda k, d: k[1] == ItemType.DEV_ITEM, 20)
    result = model(v.paths)
    assert any("DEV_ITEM 1 is 20 bytes, shorter than btrfs_dev_item" in w for w in result["warnings"])


def test_extent_item_shorter_than_its_structure(victim):
    v = victim()
    leaf, slot = _shrink(v, ObjectId.EXTENT_TREE, lambda k, d: k[1] == ItemType.EXTENT_ITEM, 10)
    key = leaf.keys()[slot]
    result = model(v.paths)
    assert result["steps"]["extents"].startswith(
        f"error: extent item of 10 bytes is shorter than btrfs_extent_item (extent tree item {key})"), result["steps"]


def test_dir_item_name_running_past_the_item(victim):
    v = victim()
    leaf, slot = v.find_item(ObjectId.FS_TREE, lambda k, d: k[1] == ItemType.DIR_INDEX and k[0] == 256)
    size = int(leaf.items["size"][slot])
    v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + DIR["name_len"], "H", 4000))
    fs = open_filesystem(v.paths)
    try:
        sub = fs.subvolumes.get(5)
        with pytest.raises(CorruptionError) as info:
            fs.namespace.list_dir(sub, 256)
        assert str(info.value) == (f"DIR_ITEM name (4000 bytes) and data (0 bytes) run past its {size}-byte item "
                                   f"(subvolume 5 directory 256)")
    finally:
        fs.close()
    result = model(v.paths)
    assert "run past its" in result["text"], result["text"]
    cli(v.paths, "run past its", commands=[["ls", "-R", "--json"]], exits=(1, 2))


def test_dir_item_data_running_past_the_item(victim):
    v = victim()
    leaf, slot = v.find_item(ObjectId.FS_TREE, lambda k, d: k[1] == ItemType.DIR_ITEM and k[0] == 256)
    v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + DIR["data_len"], "H", 0xFFFF))
    fs = open_filesystem(v.paths)
    try:
        data = fs.reader.read(leaf.bytenr).item_data(slot)
        with pytest.raises(CorruptionError, match=r"data \(65535 bytes\) run past its .*\(here\)"):
            list(parse_item((256, ItemType.DIR_ITEM, 0), data, "here"))
    finally:
        fs.close()
    result = model(v.paths)  # the root directory's DIR_ITEMs are not what a listing reads: no error
    assert all(not s.startswith("error") for s in result["steps"].values()), result["steps"]


def test_inline_extent_larger_than_its_item(victim):
    v = victim()
    leaf, slot = v.find_item(ObjectId.FS_TREE, lambda k, d: k[1] == ItemType.EXTENT_DATA and d[20] == 0)
    ino, _, off = leaf.keys()[slot]
    size = int(leaf.items["size"][slot])
    v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + FE["ram_bytes"], "Q", 1 << 20))
    result = model(v.paths)
    wanted = (f"inline extent of 1048576 bytes does not match its {size}-byte item, skipped "
              f"(inode {ino} offset {off})")
    assert wanted in result["text"], result["warnings"]
    cli(v.paths, "inline extent of 1048576 bytes", commands=[["ls", "-R", "--json"], ["report", "--json"]], exits=(1,))


# === devices ==========================================================================


def _device_uuid(name: str, devid: int) -> str:
    meta = json.loads((FIXTURES / name / "expected" / "meta.json").read_text())
    return next(d["dev_uuid"] for d in meta["devices"] if d["devid"] == devid)


@pytest.mark.parametrize("name, leave_out", [("volumes/raid1", 2), ("volumes/raid1", 1), ("volumes/raid10", 3),
                                             ("volumes/raid1c3", 1)])
def test_mirrored_profile_with_a_device_missing_is_degraded(pristine, name, leave_out):
    paths = [str(p) for p in pristine(name) if p.name != f"dev{leave_out}.img"]
    result = model(paths)
    uuid = _device_uuid(name, leave_out)
    missing = f"device devid {leave_out} uuid {uuid} is missing: degraded, reading the other copies"
    # one warning for the device, none per tree block read from the surviving copy
    assert len(result["warnings"]) == 1 and result["warnings"][0].startswith(missing), result["warnings"]
    assert all(not s.startswith("error") for s in result["steps"].values()), result["steps"]
    fs = open_filesystem(paths)
    try:
        tables = FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())
        assert len(tables.regular_inodes()) >= 5  # every file still found
    finally:
        fs.close()
    cli(paths, f"device devid {leave_out} uuid {uuid} is missing", exits=(1,))


def test_raid0_with_a_device_missing_is_partial_or_error(pristine):
    paths = [str(pristine("volumes/raid0")[0])]
    result = model(paths)
    uuid = _device_uuid("volumes/raid0", 2)
    text = result["text"]
    assert "device devid 2 is missing" in text or f"devid 2 uuid {uuid} is missing" in text, text
    results = cli(paths)
    for name, (code, stderr) in results.items():
        assert code in (1, 2)
        assert any("devid 2" in line for line in stderr), (name, stderr)


def test_raid5_with_a_device_missing_rebuilds_metadata_from_parity(pristine):
    for leave_out in (1, 2, 3):
        paths = [str(p) for p in pristine("volumes/raid5") if p.name != f"dev{leave_out}.img"]
        result = model(paths)
        uuid = _device_uuid("volumes/raid5", leave_out)
        missing = f"device devid {leave_out} uuid {uuid} is missing: degraded"
        assert len(result["warnings"]) == 1 and result["warnings"][0].startswith(missing), result["warnings"]
        assert all(not s.startswith("error") for s in result["steps"].values()), (leave_out, result["steps"])
        assert not any("subtree skipped" in w for w in result["warnings"]), result["warnings"]
        fs = open_filesystem(paths)
        try:
            tables = FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())
            assert len(tables.regular_inodes()) >= 5
        finally:
            fs.close()
        cli(paths, "is missing", exits=(1,))


def test_raid6_with_two_devices_missing_is_partial_or_a_clear_error(pristine):
    """Data and P both missing: the chunk tree cannot be rebuilt (Q is not used), a one-line error."""
    paths = [str(p) for p in pristine("volumes/raid6") if p.name not in ("dev1.img", "dev2.img")]
    result = model(paths)
    assert "devid 1" in result["text"] and "devid 2" in result["text"], result["text"]
    assert "mirror 3 (the RAID6 rebuild from Q) is not implemented" in result["text"], result["text"]
    for name, (code, stderr) in cli(paths).items():
        assert code in (1, 2) and any("devid" in line for line in stderr), (name, stderr)


def test_images_of_two_filesystems_are_an_error(pristine):
    paths = [str(pristine("volumes/single")[0]), str(pristine("volumes/raid1")[0])]
    with pytest.raises(BtrfsScanError, match="different filesystems|belongs to filesystem"):
        open_filesystem(paths)
    single_fs = [c for c in CLI_COMMANDS if c[0] != "report"]
    results = cli(paths, exits=(2,), commands=single_fs)
    for name, (code, stderr) in results.items():
        assert "filesystem" in stderr[0], (name, stderr)
    # `report` takes several filesystems on purpose: one JSON object per filesystem, per line.
    from btrfsscan.present.cli import main

    if "report" in main.commands:
        result = CliRunner().invoke(main, ["report", "--json", *paths])
        assert result.exit_code == 1  # the raid1 device alone is degraded
        documents = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(documents) == 2


def test_the_same_device_twice_is_an_error(pristine, tmp_path):
    src = pristine("volumes/raid1")[0]
    copy = tmp_path / "copy.img"
    sparse_copy(src, copy)
    paths = [str(src), str(copy)]
    with pytest.raises(BtrfsScanError, match="are both devid 1"):
        open_filesystem(paths)
    cli(paths, "are both devid 1", commands=[["super"], ["chunks"]], exits=(2,))


def test_no_image_left_open_after_an_error(victim, tmp_path):
    """An error while opening (not btrfs, no valid superblock, unreadable chunk tree) closes every image."""
    v = victim()
    foreign = tmp_path / "zero.img"
    foreign.write_bytes(bytes(1 << 20))
    v.edit_block(v.fs.superblock.chunk_root, lambda b: b.__setitem__(300, b[300] ^ 1), recsum=False)
    before = len(os.listdir("/proc/self/fd"))
    for paths in ([str(foreign)], v.paths, [v.paths[0], str(foreign)]):
        for _ in range(3):
            with pytest.raises(BtrfsScanError):
                open_filesystem(paths).close()
    assert len(os.listdir("/proc/self/fd")) == before
