"""The table of item types (``btrfsscan/format/items.py``): every item of the extent and chunk trees of
the volume fixtures, parsed through ``parse_item``, against btrfs-progs' dump-tree of the same image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from btrfsscan.errors import CorruptionError
from btrfsscan.format.constants import ItemType, ObjectId
from btrfsscan.format.items import (
    ITEM_TYPES,
    Backref,
    BlockGroupItem,
    Chunk,
    DevItem,
    ExtentItem,
    UnknownItem,
    parse_item,
)
from btrfsscan.format.plausibility import Limits
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.tree.roots import chunk_root
from btrfsscan.tree.walk import iter_items

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "volumes"
VOLUMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected" / "dump-tree-extent.txt").exists())

# dump-tree (print-tree.c) lines: an item's key, then what it holds.
_KEY = re.compile(r"^\titem \d+ key \((\S+) (\S+) (\d+)\) itemoff \d+ itemsize \d+$")
_EXTENT = re.compile(r"^\t\trefs (\d+) gen (\d+) flags (\S+)$")
_DATA_REF = re.compile(r"^\t\t(?:\(\d+ 0x[0-9a-f]+\) )?extent data backref root (\S+) objectid (\d+) offset (\d+) count (\d+)$")
_TREE_REF = re.compile(r"^\t\t(?:\(\d+ 0x[0-9a-f]+\) )?tree block backref root (\S+)$")
_SHARED = re.compile(r"^\t\t(?:\(\d+ 0x[0-9a-f]+\) )?shared (block|data) backref parent (\d+)(?: count (\d+))?$")
_BLOCK_GROUP = re.compile(r"^\t\tblock group used (\d+) chunk_objectid (\d+) flags \S+$")
_DEV_ITEM = re.compile(r"^\t\tdevid (\d+) total_bytes (\d+) bytes_used (\d+)$")


#: Objectids print-tree names that are not tree ids (btrfs_tree.h).
_NAMED = {"DEV_ITEMS": 1, "FIRST_CHUNK_TREE": 256}


def _objectid(name: str) -> int:
    return int(name) if name.isdigit() else _NAMED.get(name) or int(ObjectId[name])


def _tree_id(name: str) -> int:
    return int(name) if name.isdigit() else ObjectId[name.removesuffix("_TREE") + "_TREE"]


def dumped_items(text: str) -> dict[tuple[int, str, int], list]:
    """key (objectid, type name, offset) -> the facts dump-tree prints under it, in order."""
    items: dict[tuple[int, str, int], list] = {}
    facts: list | None = None
    for line in text.splitlines():
        if m := _KEY.match(line):
            facts = items.setdefault((_objectid(m[1]), m[2], int(m[3])), [])
        elif facts is None:
            continue
        elif m := _EXTENT.match(line):
            facts.append(("extent", int(m[1]), int(m[2]), m[3]))
        elif m := _DATA_REF.match(line):
            facts.append(("data_ref", _tree_id(m[1]), int(m[2]), int(m[3]), int(m[4])))
        elif m := _TREE_REF.match(line):
            facts.append(("tree_ref", _tree_id(m[1])))
        elif m := _SHARED.match(line):
            facts.append((f"shared_{m[1]}", int(m[2]), int(m[3] or 1)))
        elif m := _BLOCK_GROUP.match(line):
            facts.append(("block_group", int(m[1]), int(m[2])))
        elif m := _DEV_ITEM.match(line):
            facts.append(("dev_item", int(m[1]), int(m[2]), int(m[3])))
    return items


def our_facts(record) -> list:
    """The same facts from one record of the table."""
    if isinstance(record, ExtentItem):
        flags = "|".join(name for bit, name in ((1, "DATA"), (2, "TREE_BLOCK"), (256, "FULL_BACKREF"))
                         if record.flags & bit)
        return [("extent", record.refs, record.generation, flags)] + [f for ref in record.inline_refs
                                                                        for f in our_facts(ref)]
    if isinstance(record, Backref):
        if record.type == ItemType.EXTENT_DATA_REF:
            return [("data_ref", record.root, record.objectid, record.offset, record.count)]
        if record.type == ItemType.TREE_BLOCK_REF:
            return [("tree_ref", record.root)]
        kind = "shared_data" if record.type == ItemType.SHARED_DATA_REF else "shared_block"
        return [(kind, record.parent, record.count)]
    if isinstance(record, BlockGroupItem):
        return [("block_group", record.used, record.chunk_objectid)]
    if isinstance(record, DevItem):
        return [("dev_item", record.devid, record.total_bytes, record.bytes_used)]
    return []


def key_name(key: tuple[int, int, int]) -> tuple[int, str, int]:
    return key[0], ItemType(key[1]).name, key[2]


@pytest.mark.parametrize("name", VOLUMES)
def test_extent_and_chunk_tree_items_match_dump_tree(name, fixture_images):
    expected = dumped_items((FIXTURES / name / "expected" / "dump-tree-extent.txt").read_text())
    chunk_expected = dumped_items((FIXTURES / name / "expected" / "dump-tree-chunk.txt").read_text())
    fs = open_filesystem(list(fixture_images("volumes", name).values()))
    try:
        extent_tree = fs.tree_root(ObjectId.EXTENT_TREE)
        seen = 0
        for key, data in iter_items(fs.reader, extent_tree):
            record = parse_item(key, data, f"extent tree item {key}")
            assert not isinstance(record, UnknownItem), key
            facts = our_facts(record)
            if facts:
                assert facts == expected[key_name(key)], key
                seen += 1
        assert seen == sum(1 for facts in expected.values() if facts) and seen > 0
        chunks = devices = 0
        for key, data in iter_items(fs.reader, chunk_root(fs.reader)):
            record = parse_item(key, data, f"chunk tree item {key}")
            if isinstance(record, DevItem):
                devices += 1
                assert our_facts(record) == chunk_expected[(key[0], "DEV_ITEM", key[2])]
            elif isinstance(record, Chunk):
                chunks += 1
                assert record in fs.volume.chunk_map
        assert devices == sum(1 for k in chunk_expected if k[1] == "DEV_ITEM") > 0
        assert chunks == sum(1 for k in chunk_expected if k[1] == "CHUNK_ITEM") > 0
    finally:
        fs.close()


def test_every_record_says_what_its_key_means():
    for item_type, cls in ITEM_TYPES.items():
        assert ItemType(item_type).name in (cls.__doc__ or ""), cls
        assert hasattr(cls, "LAYOUT") and callable(cls.parse), cls


def test_a_type_not_in_the_table_is_an_unknown_item():
    assert parse_item((1, ItemType.DEV_EXTENT, 0), b"\x01\x02", "here") == UnknownItem(ItemType.DEV_EXTENT, b"\x01\x02")


def test_extent_csum_items_come_through_the_table():
    key = (ObjectId.EXTENT_CSUM, ItemType.EXTENT_CSUM, 3 * 4096)
    item = parse_item(key, bytes(range(12)), "here")
    assert item.logical == 3 * 4096
    crc32c, xxhash = Limits(4096, 1 << 30, 10, 4), Limits(4096, 1 << 30, 10, 8)
    assert item.checksums(crc32c, "here") == [bytes(range(0, 4)), bytes(range(4, 8)), bytes(range(8, 12))]
    with pytest.raises(CorruptionError, match="12 bytes, not a whole number of 8-byte checksums"):
        item.checksums(xxhash, "here")
    with pytest.raises(CorruptionError, match="logical start 100 not aligned to sectorsize 4096"):
        parse_item((ObjectId.EXTENT_CSUM, ItemType.EXTENT_CSUM, 100), bytes(4), "here").checksums(crc32c, "here")
