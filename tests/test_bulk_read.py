"""The bulk reader (``btrfsscan/tree/bulk.py``) against the depth-first walk, block for block.

The reference is ``FileScanner._walk_leaves``: ``walk_tree`` reading one block
at a time, with leaves parsed one at a time (``BATCH_LEAVES`` = 1) so that its
item warnings come in walk order too. On every fixture image, whole, degraded
and damaged byte by byte (with ``test_damage``'s ``Victim``), both must give
per subvolume the same leaves in the same order, the same rows for every leaf,
the same reuse count and the same warnings in the same order. ``check_batch``
must pass exactly the blocks ``parse_block`` returns with no item dropped.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest
from corpus_driver import corpus_files, find_corpus
from test_damage import HDR, KEY_SIZE, Victim, item_at, ptr_at, put

from btrfsscan.errors import BtrfsScanError, CorruptionError
from btrfsscan.format import checksum
from btrfsscan.format.constants import ItemType
from btrfsscan.model import fs_tree
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.tree.block import (
    HEADER_SIZE,
    BlockProblem,
    check_batch,
    expect_children,
    expect_root,
    parse_block,
)
from btrfsscan.tree.walk import TreeRoot, Visit, iter_leaves, walk_tree

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_NAMES = sorted(f"{group.name}/{d.name}" for group in (FIXTURES / "files", FIXTURES / "volumes")
                       for d in group.iterdir() if d.is_dir())
CORPUS = find_corpus()
#: The btrfs-progs images damaged on purpose (fsck tests) or by fuzzers.
DAMAGED_CORPUS = [f for f in corpus_files(CORPUS) if f.startswith(("fsck/", "fuzz/"))] if CORPUS else []


def leaf_rows(scanner: fs_tree.FileScanner, handle: int) -> tuple[np.ndarray, np.ndarray]:
    """(inodes, extents) of the leaf ``handle`` (``scanner._leaves[bytenr]``), from the batches parsed so far."""
    for parsed in scanner._parsed:
        if handle < len(parsed.inode_counts):
            i0, e0 = int(parsed.inode_counts[:handle].sum()), int(parsed.extent_counts[:handle].sum())
            return (parsed.inodes[i0:i0 + int(parsed.inode_counts[handle])],
                    parsed.extents[e0:e0 + int(parsed.extent_counts[handle])])
        handle -= len(parsed.inode_counts)
    raise KeyError(handle)


def subvolume_leaves(scanner: fs_tree.FileScanner, subvols: list) -> list[list[int]]:
    """Per subvolume, the bytenrs of its leaves in key order, as ``scan_leaves`` walks them."""
    handles = scanner._subvolume_handles(subvols, None)
    return [[scanner._bytenr_of[h] for h in tree] for tree in handles]


def scan(paths: list[str], *, bulk: bool, reverse: bool = False) -> dict:
    """Leaves per live subvolume (in id order, or the reverse), rows per leaf, reuse count and warnings,
    on a freshly opened filesystem."""
    fs = open_filesystem(paths)
    try:
        subvols = fs.subvolumes.live()[::-1 if reverse else 1]
        scanner = fs_tree.FileScanner(fs.reader, fs.warnings)
        if bulk:
            leaves = dict(zip([sub.id for sub in subvols], subvolume_leaves(scanner, subvols)))
        else:
            leaves = {sub.id: scanner._walk_leaves(sub) for sub in subvols}
        rows = {bytenr: leaf_rows(scanner, scanner._leaves[bytenr]) for tree in leaves.values() for bytenr in tree}
        return {"leaves": leaves, "rows": rows, "reused": scanner.blocks_reused, "warnings": fs.warnings.messages()}
    finally:
        fs.close()


@pytest.fixture
def same_as_walk(monkeypatch):
    """``check(paths)``: the bulk reader gives what the walk gives; returns the bulk result."""
    monkeypatch.setattr(fs_tree, "BATCH_LEAVES", 1)

    def check(paths: list[str], reverse: bool = False) -> dict:
        walked, bulk = scan(paths, bulk=False, reverse=reverse), scan(paths, bulk=True, reverse=reverse)
        assert bulk["warnings"] == walked["warnings"]
        assert list(bulk["leaves"].items()) == list(walked["leaves"].items())
        assert bulk["reused"] == walked["reused"]
        assert bulk["rows"].keys() == walked["rows"].keys()
        for bytenr, (inodes, extents) in walked["rows"].items():
            assert np.array_equal(bulk["rows"][bytenr][0], inodes), bytenr
            assert np.array_equal(bulk["rows"][bytenr][1], extents), bytenr
        return bulk

    return check


def fixture_paths(fixture_images, name: str) -> list[str]:
    found = fixture_images(*name.split("/"))
    assert found, f"fixture {name} not present"
    return [str(found[k]) for k in sorted(found)]


# === whole and degraded images =========================================================


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture(fixture_images, same_as_walk, name):
    result = same_as_walk(fixture_paths(fixture_images, name))
    assert not result["warnings"]
    assert all(result["leaves"].values())


@pytest.mark.parametrize("name, leave_out", [("volumes/raid1", 0), ("volumes/raid1", 1), ("volumes/raid10", 2),
                                             ("volumes/raid5", 0), ("volumes/raid6", 1), ("files/raid1-files", 0)])
def test_degraded(fixture_images, same_as_walk, name, leave_out):
    paths = fixture_paths(fixture_images, name)
    result = same_as_walk(paths[:leave_out] + paths[leave_out + 1:])
    assert any("is missing" in w for w in result["warnings"])


def test_small_batches(fixture_images, same_as_walk, monkeypatch):
    """Batches of two blocks: runs of adjacent blocks cut at batch ends, many batches per level."""
    monkeypatch.setattr("btrfsscan.tree.bulk.BATCH_BYTES", 2 * 16384)
    same_as_walk(fixture_paths(fixture_images, "files/many"))


# === damaged images ====================================================================


def victim_of(fixture_images, name: str, directory: Path) -> Victim:
    return Victim([Path(p) for p in fixture_paths(fixture_images, name)], directory)


@pytest.fixture
def many(fixture_images, tmp_path):
    """A copy of files/many (subvolumes 256 and 257 share most leaves, DUP metadata) to damage."""
    victim = victim_of(fixture_images, "files/many", tmp_path / "many")
    yield victim
    victim.close()


def _parents(victim: Victim, tree_id: int) -> dict[int, tuple[int, int]]:
    """Every block of a subvolume's tree other than its root -> (parent node, slot)."""
    out = {}
    for visit, _, block in walk_tree(victim.fs.reader, victim.fs.subvolumes.get(tree_id).root):
        if visit is Visit.ENTER:
            for slot, (child, _) in enumerate(block.children()):
                out[child] = (block.bytenr, slot)
    return out


def _shared_leaf(victim: Victim, index: int = 7):
    """A leaf both subvolumes reach through different parent nodes, not at slot 0 of either (where a
    pointer's key is also its node's first key)."""
    first, second = _parents(victim, 256), _parents(victim, 257)
    leaves = [leaf for leaf in iter_leaves(victim.fs.reader, victim.fs.subvolumes.get(256).root)
              if leaf.bytenr in second and first[leaf.bytenr][0] != second[leaf.bytenr][0]
              and first[leaf.bytenr][1] and second[leaf.bytenr][1]]
    return leaves[index % len(leaves)]


def _flip(offset: int):
    return lambda b: b.__setitem__(offset, b[offset] ^ 0xFF)


def test_bad_first_copy_of_a_shared_leaf(many, same_as_walk):
    leaf = _shared_leaf(many)
    many.edit_block(leaf.bytenr, _flip(300), mirrors=[1], recsum=False)
    assert any("used copy 2 instead" in w for w in same_as_walk(many.paths)["warnings"])


def test_both_copies_of_a_shared_leaf_bad(many, same_as_walk):
    leaf = _shared_leaf(many)
    many.edit_block(leaf.bytenr, _flip(300), recsum=False)
    warnings = same_as_walk(many.paths)["warnings"]
    assert sum("subtree skipped" in w for w in warnings) == 2  # once per tree


def test_bad_copies_of_a_node(many, same_as_walk):
    node = many.fs.reader.read(many.fs.subvolumes.get(257).root.bytenr).children()[1][0]
    many.edit_block(node, _flip(500), mirrors=[2], recsum=False)
    many.edit_block(node, _flip(600), mirrors=[1], recsum=False)
    assert any(f"tree block {node}: copy 1: checksum mismatch; copy 2: checksum mismatch" in w
               for w in same_as_walk(many.paths)["warnings"])


def test_each_copy_damaged_differently(many, same_as_walk):
    """Copy 1 fails its checksum, copy 2 has an item outside the data area: both warnings, in order."""
    leaf = _shared_leaf(many, 3)
    many.edit_block(leaf.bytenr, _flip(300), mirrors=[1], recsum=False)
    many.edit_block(leaf.bytenr, lambda b: put(b, item_at(4) + KEY_SIZE, "I", 1), mirrors=[2])
    warnings = same_as_walk(many.paths)["warnings"]
    assert any("damaged item skipped: slot 4" in w for w in warnings)


@pytest.mark.parametrize("field, fmt, value", [("generation", "Q", 1), ("level", "B", 1), ("bytenr", "Q", 4096),
                                               ("nritems", "I", 5000)])
def test_header_damage_of_a_shared_leaf(many, same_as_walk, field, fmt, value):
    leaf = _shared_leaf(many, 11)
    many.edit_block(leaf.bytenr, lambda b: put(b, HDR[field], fmt, value))
    assert any(f"tree block {leaf.bytenr}: copy 1: " in w for w in same_as_walk(many.paths)["warnings"])


@pytest.mark.parametrize("wrong", [256, 257])
@pytest.mark.parametrize("reverse", [False, True])
def test_one_parent_names_a_wrong_generation(many, same_as_walk, wrong, reverse):
    """One subvolume's pointer fails the leaf, the other's reads it.

    The tree walked first decides: with its pointer wrong the leaf is skipped
    there and read for the other; with the other's wrong, the other reuses
    the leaf already read. The leaf is read ahead for 256's pointer (its
    nodes lie first), so walking 257 first checks that a leaf read ahead for
    one pointer is not taken for another that expects something else.
    """
    leaf = _shared_leaf(many, 5)
    node, slot = _parents(many, wrong)[leaf.bytenr]
    many.edit_block(node, lambda b: put(b, ptr_at(slot) + KEY_SIZE + 8, "Q", 3))
    result = same_as_walk(many.paths, reverse)
    first, other = (257, 256) if reverse else (256, 257)
    right = first + other - wrong
    assert any("parent transid verify failed" in w for w in result["warnings"]) == (wrong == first)
    assert (leaf.bytenr in result["leaves"][wrong]) == (wrong == other) and leaf.bytenr in result["leaves"][right]


def test_first_key_differs_from_the_parent_pointer(many, same_as_walk):
    leaf = _shared_leaf(many, 9)
    node, slot = _parents(many, 256)[leaf.bytenr]
    objectid, item_type, offset = leaf.keys()[0]
    many.edit_block(node, lambda b: put(b, ptr_at(slot) + 9, "Q", offset + 1))
    expected = f"first key {(objectid, item_type, offset)}, expected {(objectid, item_type, offset + 1)} from the parent node"
    assert any(expected in w and "subtree skipped" in w for w in same_as_walk(many.paths)["warnings"])


def test_keys_out_of_order_in_a_shared_leaf(many, same_as_walk):
    leaf = _shared_leaf(many, 2)
    many.edit_block(leaf.bytenr, lambda b: b.__setitem__(slice(item_at(3), item_at(3) + KEY_SIZE),
                                                         b[item_at(9):item_at(9) + KEY_SIZE]))
    assert any("keys out of order at slot 4" in w for w in same_as_walk(many.paths)["warnings"])


def test_item_problems_name_the_first_tree(many, same_as_walk):
    leaf, slot = next((leaf, slot) for leaf in [_shared_leaf(many, i) for i in range(40)]
                      for slot, key in enumerate(leaf.keys()) if key[1] == ItemType.INODE_ITEM)
    many.edit_block(leaf.bytenr, lambda b: put(b, item_at(slot) + KEY_SIZE + 4, "I", 40))
    assert any(f"tree 256 leaf {leaf.bytenr}" in w and "shorter than btrfs_inode_item" in w
               for w in same_as_walk(many.paths)["warnings"])


@pytest.mark.parametrize("target", ["itself", "a sibling", "the root"])
def test_cycles(many, same_as_walk, target):
    root = many.fs.subvolumes.get(256).root.bytenr
    node = many.fs.reader.read(root).children()[0][0]
    pointee = {"itself": node, "a sibling": many.fs.reader.read(node).children()[0][0], "the root": root}[target]
    many.edit_block(node, lambda b: put(b, ptr_at(2) + KEY_SIZE, "Q", pointee))
    assert any("is referenced twice" in w for w in same_as_walk(many.paths)["warnings"])


@pytest.mark.parametrize("blockptr", [1 << 40, 12345, 0])
def test_child_pointer_nowhere(many, same_as_walk, blockptr):
    node = many.fs.reader.read(many.fs.subvolumes.get(256).root.bytenr).children()[1][0]
    many.edit_block(node, lambda b: put(b, ptr_at(4) + KEY_SIZE, "Q", blockptr))
    assert same_as_walk(many.paths)["warnings"]


def test_unreadable_subvolume_root(many, same_as_walk):
    root = many.fs.subvolumes.get(257).root.bytenr
    many.edit_block(root, _flip(200), recsum=False)
    result = same_as_walk(many.paths)
    assert any(w.startswith("subvolume 257 (") and "skipped" in w for w in result["warnings"])
    assert result["leaves"][257] == []


def test_damage_in_a_single_tree(fixture_images, tmp_path, same_as_walk):
    """volumes/single (one tree, a node above its leaves): a bad leaf, a bad item, a bad second copy."""
    victim = victim_of(fixture_images, "volumes/single", tmp_path / "single")
    try:
        leaves = victim.leaves(5)
        victim.edit_block(leaves[3].bytenr, _flip(250), recsum=False)
        victim.edit_block(leaves[6].bytenr, lambda b: put(b, item_at(2) + KEY_SIZE, "I", 20000))
        victim.edit_block(leaves[8].bytenr, _flip(250), mirrors=[2], recsum=False)
        result = same_as_walk(victim.paths)
    finally:
        victim.close()
    assert len(result["warnings"]) == 2


@pytest.mark.corpus
@pytest.mark.skipif(CORPUS is None, reason="btrfs-progs corpus not found (see tests/test_corpus.py)")
@pytest.mark.parametrize("image", DAMAGED_CORPUS or ["<corpus missing>"])
def test_damaged_corpus_image(same_as_walk, image):
    try:
        same_as_walk([str(CORPUS / image)])
    except BtrfsScanError:
        pass  # no subvolume to scan (the filesystem or its root tree cannot be read): the same either way


# === check_batch against parse_block ======================================================


def _blocks(fs, tree: TreeRoot) -> list[tuple[bytes, int, int, np.ndarray]]:
    """(data, bytenr, level, expectation) of every block of ``tree`` as its parent names it."""
    out = [(fs.volume.read(tree.bytenr, fs.superblock.nodesize), tree.bytenr, tree.level,
            expect_root(tree.bytenr, tree.generation)[0])]
    for visit, _, block in walk_tree(fs.reader, tree):
        if visit is Visit.ENTER:
            for (child, _), expect in zip(block.children(), expect_children(block.ptrs)):
                out.append((fs.volume.read(child, fs.superblock.nodesize), child, block.level - 1, expect))
    return out


def _parse_passes(data: bytes, bytenr: int, level: int, expect, checks: dict) -> bool:
    generation = int(expect["generation"]) if expect["has_generation"] else None
    first_key = tuple(int(expect[f"key.{f}"]) for f in ("objectid", "type", "offset")) if expect["has_key"] else None
    try:
        block = parse_block(data, bytenr, level=level, generation=generation, first_key=first_key, **checks)
    except BlockProblem:
        return False
    return not block.dropped


def _damage(rng: random.Random, data: bytes, csum) -> bytes:
    """A few random bytes changed in the header, the item or pointer table or the payload; usually
    with the checksum made right again so the later checks are reached."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        where = rng.choice((rng.randrange(32, HEADER_SIZE), rng.randrange(HEADER_SIZE, HEADER_SIZE + 400),
                            rng.randrange(len(buf))))
        buf[where] = rng.choice((0, 0xFF, buf[where] ^ (1 << rng.randrange(8)), buf[where] + 1 & 0xFF))
    if rng.random() < 0.9:
        buf[:32] = checksum.compute(csum, bytes(buf))
    return bytes(buf)


@pytest.mark.parametrize("name", ["files/many", "volumes/csum-xxhash", "volumes/csum-sha256", "volumes/csum-blake2"])
def test_check_batch_agrees_with_parse_block(fixture_images, name):
    rng = random.Random(name)
    fs = open_filesystem(fixture_paths(fixture_images, name))
    try:
        blocks = [b for sub in fs.subvolumes.live() for b in _blocks(fs, sub.root)]
        blocks += [b for b in _blocks(fs, fs.root_tree)]
        checks = fs.reader.checks
        cases = blocks + [(_damage(rng, data, fs.superblock.csum), bytenr, level, expect)
                          for _ in range(6) for data, bytenr, level, expect in blocks]
    finally:
        fs.close()
    for level in {level for _, _, level, _ in cases}:
        group = [case for case in cases if case[2] == level]
        for start in range(0, len(group), 64):
            batch = group[start:start + 64]
            data = bytearray(b"".join(case[0] for case in batch))
            expect = np.array([case[3] for case in batch])
            got = check_batch(data, expect, level, np.ones(len(batch), bool), **checks).passed.tolist()
            want = [_parse_passes(*case[:2], level, case[3], checks) for case in batch]
            assert got == want, [case[1] for case, g, w in zip(batch, got, want) if g != w]
    assert sum(_parse_passes(d, b, lv, e, checks) for d, b, lv, e in cases) < len(cases)


def test_check_batch_keeps_the_tables_of_passing_blocks(fixture_images):
    fs = open_filesystem(fixture_paths(fixture_images, "files/many"))
    try:
        leaves = [(data, bytenr, expect) for data, bytenr, level, expect in _blocks(fs, fs.subvolumes.get(256).root)
                  if level == 0][:20]
        data = bytearray(b"".join(d for d, _, _ in leaves))
        struct.pack_into("<B", data, 5 * len(leaves[0][0]) + 300, data[5 * len(leaves[0][0]) + 300] ^ 1)  # leaf 5 fails
        checked = check_batch(data, np.array([e for _, _, e in leaves]), 0, np.ones(len(leaves), bool),
                              **fs.reader.checks)
        blocks = [fs.reader.read(bytenr) for _, bytenr, _ in leaves]
    finally:
        fs.close()
    assert checked.passed.tolist() == [i != 5 for i in range(len(leaves))]
    kept = [block for i, block in enumerate(blocks) if i != 5]
    assert checked.counts.tolist() == [len(b.items) if i != 5 else 0 for i, b in enumerate(blocks)]
    assert np.array_equal(checked.table, np.concatenate([b.items for b in kept]))


def test_reader_checks_the_first_key_of_a_cached_block(fixture_images):
    fs = open_filesystem(fixture_paths(fixture_images, "files/many"))
    try:
        leaf = next(iter_leaves(fs.reader, fs.subvolumes.get(256).root))
        objectid, item_type, offset = leaf.keys()[0]
        with pytest.raises(CorruptionError, match="first key .* expected .* from the parent node"):
            fs.reader.read(leaf.bytenr, level=0, first_key=(objectid, item_type, offset + 1))
    finally:
        fs.close()


def test_checksum_tree_blocks_pass_the_batch_checks(fixture_images, monkeypatch):
    """The checksum tree owns its blocks (``owner=CSUM_TREE``): every block of it passes the batch checks
    and none is read again copy by copy; the blocks read are those ``dump-tree -t csum`` prints."""
    import re
    import subprocess

    from btrfsscan.analysis.report import checksum_table
    from btrfsscan.format.constants import ObjectId
    from btrfsscan.tree.reader import TreeReader

    (image,) = fixture_images("files", "many").values()
    dumped = subprocess.run(["btrfs", "inspect-internal", "dump-tree", "-t", "csum", str(image)],
                            capture_output=True, text=True, check=True).stdout
    blocks = {int(b) for b in re.findall(r"^(?:leaf|node) (\d+) (?:items|level)", dumped, re.M)}
    assert len(blocks) > 2  # a tree of more than one level
    slow = []
    original = TreeReader.read_copies
    monkeypatch.setattr(TreeReader, "read_copies", lambda self, bytenr, **kw: slow.append(bytenr) or
                        original(self, bytenr, **kw))
    fs = open_filesystem([image])
    try:
        fs.tree_root(ObjectId.CSUM_TREE), fs.subvolumes  # the root tree and the chunk tree read first
        before = fs.reader.blocks_read
        table = checksum_table(fs)
        read = fs.reader.blocks_read - before
    finally:
        fs.close()
    assert not blocks & set(slow) and read == len(blocks)
    items = re.findall(r"^\s+item \d+ key \(EXTENT_CSUM EXTENT_CSUM (\d+)\) itemoff \d+ itemsize (\d+)", dumped, re.M)
    assert table.start.tolist() == [int(start) for start, _ in items]
    assert table.sectors.tolist() == [int(size) // 4 for _, size in items]  # crc32c: 4 bytes a sector


def test_checksum_tree_block_of_another_owner_is_skipped(fixture_images, tmp_path):
    """A checksum tree leaf whose header names another owner (checksum recomputed, every copy) fails the
    owner check: one warning naming it and the owner, its items missing, every other leaf's kept."""
    from btrfsscan.analysis.report import checksum_table
    from btrfsscan.format.constants import ObjectId

    sources = list(fixture_images("files", "many").values())
    pristine = open_filesystem(sources)
    try:
        whole = checksum_table(pristine)
        root = pristine.tree_root(ObjectId.CSUM_TREE)
        leaves = [block for _, _, block in walk_tree(pristine.reader, root) if block is not None and not block.level]
    finally:
        pristine.close()
    assert len(leaves) > 1
    victim = Victim(sources, tmp_path / "victim")
    leaf = leaves[1]
    try:
        victim.edit_block(leaf.bytenr, lambda buf: put(buf, HDR["owner"], "Q", int(ObjectId.FS_TREE)))
    finally:
        victim.close()
    fs = open_filesystem(victim.paths)
    try:
        table = checksum_table(fs)
        messages = fs.warnings.messages()
    finally:
        fs.close()
    lost = set(leaf.items["key.offset"].tolist())
    assert set(table.start.tolist()) == set(whole.start.tolist()) - lost
    assert len(messages) == 1 and f"{leaf.bytenr}" in messages[0]
    assert "owner FS_TREE" in messages[0] and "CSUM_TREE" in messages[0]
