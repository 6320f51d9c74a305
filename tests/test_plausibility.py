"""Implausible item values with their checksums recomputed (issue 14, items 6 and 7): each is a damage
finding naming where it lies, the item is skipped, and no figure shows the value.

Each test damages one field of a kernel-made fixture (the item located with btrfsscan's reader, the
expected location and the original values read back from the raw bytes) and runs the in-process
pipeline and the CLI commands that read that item.
"""

from __future__ import annotations

import json
import struct

import pytest
from support import run
from test_damage import SB, _offsets, item_at, model, payload_at, pristine, put, victim  # noqa: F401 - fixtures

from btrfsscan.format import fastparse
from btrfsscan.format.constants import ItemType, ObjectId

FE = _offsets(fastparse.FILE_EXTENT)
INODE = _offsets(fastparse.INODE_ITEM)
BG = _offsets(fastparse.BLOCK_GROUP_ITEM)
DIR = _offsets(fastparse.DIR_ITEM)
ROOT = _offsets(fastparse.ROOT_ITEM_V1)


def _file(v, path: str):
    fs = v.fs
    ino = fs.namespace.lookup(path, fs.subvolumes.get(5)).ino
    leaf, slot = v.find_item(ObjectId.FS_TREE, lambda k, d: k[0] == ino and k[1] == ItemType.EXTENT_DATA and d[20] == 1)
    return ino, leaf, slot


@pytest.mark.parametrize("field, fmt, value, said", [
    ("reg.num_bytes", "Q", 0, "num_bytes 0"),
    ("head.compression", "B", 9, "compression 9 out of range 0..3"),
    ("head.encryption", "B", 1, "encryption 1, expected 0"),
    ("reg.offset", "Q", 1, "not all aligned to sectorsize"),
    ("reg.num_bytes", "Q", 2**64 - 4096, "runs past the"),
    ("reg.disk_num_bytes", "Q", 1 << 46, "disk_num_bytes 70368744177664 is larger than a data chunk can be"),
    ("head.compression", "B", 1, "compressed extent of"),
])
def test_implausible_file_extent_is_skipped(victim, field, fmt, value, said):
    v = victim()
    ino, leaf, slot = _file(v, "big/a.bin")
    v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + FE[field], fmt, value))
    result = model(v.paths)
    hits = [w for w in result["warnings"] if w.startswith("EXTENT_DATA implausible: ") and said in w]
    assert hits and f"(inode {ino} offset 0, slot {slot})" in hits[0] and f"tree 5 leaf {leaf.bytenr}" in hits[0], \
        result["warnings"]
    assert [w for w in result["warnings"] if f"(inode {ino} offset 0" in w] == hits[:1]  # said once
    out = run("map", "--json", *v.paths, "big/a.bin")
    assert out.exit_code == 1
    extents = json.loads(out.stdout)["extents"]
    assert all(e["type"] == "hole" for e in extents if e["file_offset"] == 0)  # the item is gone, not a figure


def test_inode_size_2_63_is_skipped_not_counted(victim):
    v = victim()
    fs = v.fs
    ino = fs.namespace.lookup("big/a.bin", fs.subvolumes.get(5)).ino
    before = json.loads(run("report", "--json", *v.paths).stdout)
    leaf, slot = v.find_item(ObjectId.FS_TREE, lambda k, d: k == (ino, ItemType.INODE_ITEM, 0))
    size = struct.unpack_from("<Q", leaf.data, payload_at(leaf, slot) + INODE["size"])[0]
    v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + INODE["size"], "Q", 2**63))
    result = run("report", "--json", *v.paths)
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["partial"] is True
    assert any(w.startswith(f"INODE_ITEM of inode {ino} implausible: i_size {2**63} exceeds the largest file Linux "
                            f"allows ({2**63 - 1}), skipped (slot {slot})") for w in out["warnings"]), out["warnings"]
    assert out["totals"]["inodes"] == before["totals"]["inodes"] - 1
    # the inode's pages leave the figure; nothing near 2**63 bytes enters it
    assert out["totals"]["per_inode"]["pages"] == before["totals"]["per_inode"]["pages"] - (size + 4095) // 4096


def test_block_group_used_beyond_length_is_not_shown(victim):
    v = victim()
    chunks = json.loads(run("chunks", "--json", *v.paths).stdout)["chunks"]
    data = next(c for c in chunks if c["type"] == ["DATA"])
    key = (data["logical"], ItemType.BLOCK_GROUP_ITEM, data["length"])
    tree = ObjectId.EXTENT_TREE
    leaf, slot = v.find_item(tree, lambda k, d: k == key)
    v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + BG["used"], "Q", 10979547469688594398))
    result = run("chunks", "--json", *v.paths)
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert "10979547469688594398" not in json.dumps(out["chunks"])
    assert [c.get("used") for c in out["chunks"] if c["logical"] == data["logical"]] != [10979547469688594398]
    assert (f"BLOCK_GROUP_ITEM of chunk {data['logical']} implausible: used 10979547469688594398 exceeds the block "
            f"group's length {data['length']}, skipped (tree EXTENT_TREE block {leaf.bytenr} slot {slot})"
            ) in out["warnings"], out["warnings"]


def test_dir_item_type_out_of_range_is_skipped(victim):
    v = victim()
    leaf, slot = v.find_item(ObjectId.FS_TREE, lambda k, d: k[1] == ItemType.DIR_INDEX)
    v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + DIR["type"], "B", 42))
    result = model(v.paths)
    assert any("DIR_ITEM implausible: file type 42 out of range 0..8" in w for w in result["warnings"]), \
        result["warnings"]


def test_root_item_level_out_of_range_is_skipped(pristine, tmp_path):
    from test_damage import Victim

    v = Victim(pristine("files/subvols"), tmp_path / "v")
    try:
        leaf, slot = v.find_item(ObjectId.ROOT_TREE, lambda k, d: k[0] == 256 and k[1] == ItemType.ROOT_ITEM)
        v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + ROOT["level"], "B", 9))
        result = run("subvolumes", "--json", *v.paths)
        assert result.exit_code == 1
        out = json.loads(result.stdout)
        assert 256 not in [s["id"] for s in out["subvolumes"]]
        assert any(f"ROOT_ITEM implausible: root level 9, must be below 8 (root tree block {leaf.bytenr} slot {slot}"
                   in w for w in out["warnings"]), out["warnings"]
    finally:
        v.close()


def test_superblock_generation_u64_max_falls_back_to_the_backup(victim):
    v = victim()
    v.edit_super(lambda b: put(b, SB["generation"], "Q", 2**64 - 1), copies=(0,))
    result = run("super", "--json", *v.paths)
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["source"]["mirror"] == 1 and out["generation"] < 2**64 - 1
    assert any(w.startswith("primary superblock (copy 0) is not usable: generation 18446744073709551615 is "
                            "implausible") for w in out["warnings"]), out["warnings"]


def test_node_pointer_to_another_trees_root_is_not_silent(pristine, tmp_path):
    """The last pointer of subvolume 256's root aimed at the extent tree's root (level, first key and generation
    all matched): the kernel's owner rule for subvolume trees refuses it, and the warning says so."""
    from test_damage import Victim

    v = Victim(pristine("files/many"), tmp_path / "v")
    try:
        sub = v.fs.subvolumes.get(256)
        node = v.fs.reader.read(sub.root.bytenr)
        target = v.fs.tree_root(ObjectId.EXTENT_TREE)
        first = v.fs.reader.read(target.bytenr).keys()[0]
        assert node.level - 1 == target.level and first > node.keys()[-1]
        slot = node.nritems - 1
        at = 101 + slot * fastparse.KEY_PTR.size

        def aim(b):
            struct.pack_into("<QBQQQ", b, at, *first, target.bytenr, target.generation)
        v.edit_block(node.bytenr, aim)
        result = run("ls", "--json", "-R", *v.paths)
        assert result.exit_code == 1
        out = json.loads(result.stdout)
        assert any("block owner EXTENT_TREE is not a subvolume tree, in subvolume tree 256" in w
                   and f"node {node.bytenr} slot {slot}" in w for w in out["warnings"]), out["warnings"]
    finally:
        v.close()


def test_chunk_stripe_on_an_unknown_devid_is_damage_not_a_device_range(victim):
    v = victim()
    chunks = json.loads(run("chunks", "--json", *v.paths).stdout)["chunks"]
    data = next(c for c in chunks if c["type"] == ["DATA"])
    leaf, slot = v.find_item(ObjectId.CHUNK_TREE, lambda k, d: k[1] == ItemType.CHUNK_ITEM and k[2] == data["logical"])
    stripe_devid = payload_at(leaf, slot) + fastparse.CHUNK.size  # the first btrfs_stripe's devid
    assert struct.unpack_from("<Q", leaf.data, stripe_devid)[0] == 1
    v.edit_block(leaf.bytenr, lambda b: put(b, stripe_devid, "Q", 99))
    result = run("chunks", "--json", *v.paths)
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert data["logical"] not in [c["logical"] for c in out["chunks"]]
    assert f"chunk at logical {data['logical']} has a stripe on devid 99, which no DEV_ITEM of the chunk tree names: " \
           "damaged, chunk skipped (its ranges are unreadable) (chunk tree)" in out["warnings"]
    mapped = run("map", "--json", *v.paths, "big/a.bin")
    assert mapped.exit_code == 1
    assert all(r["devid"] != 99 for e in json.loads(mapped.stdout)["extents"] for r in e["device_ranges"])


def test_mounted_filesystem_restarts_from_a_fresh_superblock_then_gives_a_partial_result(victim, monkeypatch):
    """A block failing its checks on a mounted device (simulated: ``in_use`` says so; the block's checksum is
    broken on every copy) makes the command start again from a fresh superblock, RACE_ATTEMPTS times in all."""
    import btrfsscan.model.filesystem as filesystem
    import btrfsscan.volumes.volume as volume_mod
    from btrfsscan.volumes.mounted import RACE_ATTEMPTS, InUse

    v = victim()
    leaf, _ = _file(v, "big/a.bin")[1:]
    v.edit_block(leaf.bytenr, lambda b: b.__setitem__(40, b[40] ^ 0xFF), recsum=False)
    monkeypatch.setattr(volume_mod, "in_use", lambda path, fsid: InUse("loop9", True, "/mnt/test"))
    opened = []
    real = filesystem.open_filesystem
    monkeypatch.setattr(filesystem, "open_filesystem", lambda *a, **k: opened.append(1) or real(*a, **k))
    result = run("ls", "--json", "-R", *v.paths)
    assert result.exit_code == 1
    assert len(opened) == RACE_ATTEMPTS
    warnings = json.loads(result.stdout)["warnings"]
    assert any(f"tree block {leaf.bytenr}: copy 1: checksum mismatch" in w and
               f"the mounted filesystem was written while it was read, {RACE_ATTEMPTS} fresh starts did not get past "
               "this block" in w for w in warnings), warnings
    assert any("is attached to /dev/loop9, a device of a mounted filesystem on /mnt/test" in w for w in warnings)


# --- EXTENT_CSUM (check_csum_item) and single-item reads --------------------------------------------


def _csum_leaf(v):
    root = v.root(ObjectId.CSUM_TREE)
    (leaf,) = v.leaves(ObjectId.CSUM_TREE)  # the fixture's checksum tree is one leaf of several items
    assert leaf.bytenr == root.bytenr and leaf.nritems >= 4
    return leaf


def _content_unknown(doc: dict) -> dict[str, int]:
    return {name: m["unknown_pages"] for name, m in doc["totals"]["models"].items()
            if m["content_source"] == "csum_tree"}


@pytest.mark.parametrize("slot, field, fmt, value, said", [
    (3, "objectid", "Q", 2**64 - 9, f"objectid {2**64 - 9}, expected EXTENT_CSUM ({2**64 - 10})"),
    (1, "offset", "Q", "+1", "logical start {offset} not aligned to sectorsize 4096"),
    (3, "size", "I", "-1", "{size} bytes, not a whole number of 4-byte checksums"),
    (3, "size", "I", 0, "no checksums (btrfsscan's rule)"),
    (1, "offset", "Q", "overlap", "the previous item's checksums run to logical {prev_end}, past this item's start "
                                  "{offset}"),
])
def test_implausible_csum_item_is_skipped(victim, slot, field, fmt, value, said):
    """A checksum-tree item breaking a rule of the kernel's check_csum_item: a finding naming tree, leaf and slot,
    the item skipped (its sectors' content unknown to the content designs), a partial result."""
    v = victim()
    leaf = _csum_leaf(v)
    before = json.loads(run("report", "--json", *v.paths).stdout)
    assert before["partial"] is False and not any(_content_unknown(before).values())
    keys, sizes = leaf.keys(), [int(s) for s in leaf.items["size"]]
    at = {"objectid": item_at(slot), "offset": item_at(slot) + 9, "size": item_at(slot) + 21}[field]
    if value == "+1":
        value = keys[slot][2] + 1
    elif value == "-1":
        value = sizes[slot] - 1
    elif value == "overlap":  # one sector into the range of the item before
        value = keys[slot - 1][2] + 4096
    put_value = value
    v.edit_block(leaf.bytenr, lambda b: put(b, at, fmt, put_value))
    offset = value if field == "offset" else keys[slot][2]
    size = value if field == "size" else sizes[slot]
    prev_end = keys[slot - 1][2] + sizes[slot - 1] // 4 * 4096
    result = run("report", "--json", *v.paths)
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    want = (f"EXTENT_CSUM item at logical {offset} implausible: "
            f"{said.format(offset=offset, size=size, prev_end=prev_end)}, skipped (slot {slot}) "
            f"(tree {int(ObjectId.CSUM_TREE)} leaf {leaf.bytenr})")
    assert want in out["warnings"], out["warnings"]
    assert out["partial"] is True
    assert all(n > 0 for n in _content_unknown(out).values())  # the item's sectors: no checksum, not a figure


def test_single_inode_read_applies_the_bulk_rules(victim):
    """``Namespace.inode`` (map, ls of one file, workloads) skips an INODE_ITEM the bulk scan skips, with the same
    finding, instead of handing its i_size on."""
    from btrfsscan.model.filesystem import open_filesystem

    v = victim()
    ino = v.fs.namespace.lookup("big/a.bin", v.fs.subvolumes.get(5)).ino
    leaf, slot = v.find_item(ObjectId.FS_TREE, lambda k, d: k == (ino, ItemType.INODE_ITEM, 0))
    v.edit_block(leaf.bytenr, lambda b: put(b, payload_at(leaf, slot) + INODE["size"], "Q", 2**63))
    want = (f"INODE_ITEM of inode {ino} implausible: i_size {2**63} exceeds the largest file Linux allows "
            f"({2**63 - 1}), skipped (slot {slot}) (tree 5 leaf {leaf.bytenr})")
    fs = open_filesystem(v.paths)
    try:
        assert fs.namespace.inode(fs.subvolumes.get(5), ino) is None
        assert [str(w) for w in fs.warnings] == [want]
    finally:
        fs.close()
    result = run("map", "--json", *v.paths, "big/a.bin")
    assert result.exit_code == 2 and str(2**63) not in result.stdout


@pytest.mark.parametrize("compression, ram_bytes, disk_num_bytes, inline, said", [
    (1, 128 << 10, 4096, False, None),
    (3, (128 << 10) + 4096, 4096, False, "compressed extent of 4096 bytes decompressing to 135168"),
    (2, 64 << 10, (128 << 10) + 4096, False, "compressed extent of 135168 bytes decompressing to 65536"),
    (1, 1 << 40, 0, True, "compressed inline data of 1099511627776 bytes decompressed"),
    (0, 0, 10 << 30, False, None),
    (0, 0, (10 << 30) + 4096, False, "disk_num_bytes 10737422336 is larger than a data chunk can be"),
])
def test_extent_sizes_no_kernel_writes_are_damage(compression, ram_bytes, disk_num_bytes, inline, said):
    """A compressed extent over 128 KiB (on disk or decompressed) or an uncompressed one larger than a
    data chunk is implausible; at the limits it is not."""
    from btrfsscan.format.plausibility import Limits, item_problem

    limits = Limits(4096, 1 << 50, 100, 4)
    head = struct.pack("<QQBBHB", 7, ram_bytes or disk_num_bytes, compression, 0, 0, 0 if inline else 1)
    data = head + (b"x" * 100 if inline else struct.pack("<QQQQ", 1 << 30, disk_num_bytes, 0, 4096))
    problem = item_problem((257, int(ItemType.EXTENT_DATA), 0), data, limits)
    assert problem is None if said is None else said in problem, problem
