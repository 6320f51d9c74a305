"""Sharing work between snapshots (memoized blocks, inode versions) must not change any figure."""

from __future__ import annotations

import numpy as np
import pytest

from btrfsscan.model.filesystem import open_filesystem
from support import facts

from btrfsscan.cache.analyze import analyze
from btrfsscan.cache.layout import PAGE_SIZES
from btrfsscan.errors import Warnings
from btrfsscan.model.fs_tree import FileScanner
from btrfsscan.model.tables import EXTENT_DTYPE, INODE_DTYPE, S_IFMT, S_IFREG, LeafTables
from btrfsscan.model.versions import inode_versions


@pytest.mark.parametrize("name", ["sample", "many"])
def test_tables_identical_with_and_without_memo(name, fixture_images):
    fs = open_filesystem(list(fixture_images("files", name).values()))
    try:
        subvols = fs.subvolumes.live()
        memo = FileScanner(fs.reader, fs.warnings)
        fast = memo.scan(subvols)
        slow = FileScanner(fs.reader, fs.warnings, memoize=False).scan(subvols)
    finally:
        fs.close()
    assert len(subvols) > 1
    assert memo.blocks_reused > 0, "snapshots of the fixture share blocks"
    assert np.array_equal(fast.inodes, slow.inodes)
    assert np.array_equal(fast.extents, slow.extents)


@pytest.mark.parametrize("name", ["sample", "many", "subvols", "reflinks"])
def test_versions_give_the_figures_of_per_subvolume_rows(name, fixture_images):
    """The models over inode versions (shared leaves counted once) equal the models over every subvolume's rows."""
    from test_cache_models import assert_same_analysis

    fs = open_filesystem(list(fixture_images("files", name).values()))
    try:
        leaves = FileScanner(fs.reader, fs.warnings).scan_leaves(fs.subvolumes.live())
    finally:
        fs.close()
    versions = inode_versions(leaves)
    rows = leaves.expand()
    assert versions.n_versions <= int(((rows.inodes["mode"] & S_IFMT) == S_IFREG).sum())
    for page_size in PAGE_SIZES:
        assert_same_analysis(analyze(versions, page_size, facts(4096), top=50), analyze(rows, page_size, facts(4096), top=50))


def _leaf_tables(leaf_inos: list[list[int]], subvols: list[list[int]]) -> LeafTables:
    """Leaves holding one regular inode row (4 KiB, one extent) per ino given; subvolumes as lists of leaves."""
    inodes = np.zeros(sum(map(len, leaf_inos)), INODE_DTYPE)
    extents = np.zeros(len(inodes), EXTENT_DTYPE)
    flat = [ino for inos in leaf_inos for ino in inos]
    inodes["ino"], inodes["size"], inodes["nlink"], inodes["mode"] = flat, 4096, 1, 0o100644
    extents["ino"], extents["num_bytes"], extents["type"] = flat, 4096, 1
    extents["disk_bytenr"] = [(1 << 20) + 4096 * (ino % (1 << 20)) for ino in flat]
    extents["disk_num_bytes"] = extents["ram_bytes"] = 4096
    starts = np.cumsum([0] + [len(x) for x in leaf_inos]).astype(np.int64)
    return LeafTables(inodes, extents, starts, starts, np.arange(len(leaf_inos), dtype=np.uint64) * 16384,
                      np.array([256 + n for n in range(len(subvols))], np.uint64),
                      np.cumsum([0] + [len(s) for s in subvols]).astype(np.int64),
                      np.array([leaf for s in subvols for leaf in s], np.int64))


def test_leaf_out_of_key_order_is_skipped_with_a_warning():
    # subvolume 256: leaves 0 (inodes 257, 258) then 1 (259); 257 lists leaf 1 before leaf 0
    warnings = Warnings()
    versions = inode_versions(_leaf_tables([[257, 258], [259]], [[0, 1], [1, 0]]), warnings)
    assert warnings.messages() == [
        "leaf holds inode 257, below the keys of an earlier leaf of its tree: skipped (tree 257 leaf 0)"]
    assert sorted(zip(versions.inodes["subvol"].tolist(), versions.inodes["ino"].tolist())) == [
        (256, 257), (256, 258), (256, 259)]
    assert sorted(versions.weight.tolist()) == [1, 1, 2]
    assert analyze(versions, 4096, facts(4096)).models["per_inode"].pages == 4


def test_inode_spanning_leaves_is_one_version_per_leaf_sequence():
    # inode 258's rows span leaves 0 and 1 in subvolume 256 and 257; 258 has its own second leaf (2)
    t = _leaf_tables([[257, 258], [258, 259], [258, 259]], [[0, 1], [0, 1], [0, 2]])
    versions = inode_versions(t)
    got = sorted(zip(versions.inodes["ino"].tolist(), versions.weight.tolist()))
    # 257 once for all three; 258 as (0, 1) in two subvolumes and (0, 2) in one; 259 in leaf 1 (x2), leaf 2
    assert got == [(257, 3), (258, 1), (258, 2), (259, 1), (259, 2)]
    assert analyze(versions, 4096, facts(4096)).models["per_inode"].pages == 9


def test_objectids_beyond_40_bits_group_alike():
    # (leaf, ino) no longer packs into one sort key: the two-key sort gives the same versions
    big = (1 << 62) + 7
    t = _leaf_tables([[257, big], [big]], [[0, 1], [0]])
    versions = inode_versions(t)
    got = sorted(zip(versions.inodes["ino"].tolist(), versions.weight.tolist(), versions.inodes["subvol"].tolist()))
    assert got == [(257, 2, 256), (big, 1, 256), (big, 1, 257)]
    assert analyze(versions, 4096, facts(4096)).models == analyze(t.expand(), 4096, facts(4096)).models


def _expanded_rows(t: LeafTables, inodes: dict[int, np.ndarray]) -> tuple[list, list]:
    """The test's own answer for ``of_inodes``: every subvolume's rows expanded, filtered by a set."""
    rows = t.expand()
    want = {(sv, int(ino)) for sv, inos in inodes.items() for ino in inos}

    def kept(table: np.ndarray) -> list:
        pick = [i for i, key in enumerate(zip(table["subvol"].tolist(), table["ino"].tolist())) if key in want]
        return sorted(table[pick].tolist())

    return kept(rows.inodes), kept(rows.extents)


def _of_inodes_rows(t: LeafTables, inodes: dict[int, np.ndarray]) -> tuple[list, list]:
    got = t.of_inodes(inodes)
    for table, start in ((got.inodes, got.inode_start), (got.extents, got.extent_start)):
        keys = list(zip(table["subvol"].tolist(), table["ino"].tolist()))
        assert keys == sorted(keys)  # one leaf per subvolume, in key order
        assert np.array_equal(np.searchsorted(table["subvol"], got.subvol_ids), start[:-1])
    return sorted(got.inodes.tolist()), sorted(got.extents.tolist())


@pytest.mark.parametrize("name", ["sample", "many", "subvols", "reflinks"])
@pytest.mark.parametrize("share", [0.0, 0.1, 0.5, 1.0])
def test_of_inodes_is_the_expanded_rows_of_those_inodes(name, share, fixture_images):
    """``of_inodes`` (leaves searched) gives exactly the rows of the expansion for a seeded choice of inodes
    per subvolume, plus inode numbers no subvolume has."""
    fs = open_filesystem(list(fixture_images("files", name).values()))
    try:
        leaves = FileScanner(fs.reader, fs.warnings).scan_leaves(fs.subvolumes.live())
    finally:
        fs.close()
    rows = leaves.expand()
    rng = np.random.default_rng(len(name))
    inodes = {}
    for sv in leaves.subvol_ids.tolist():
        inos = np.unique(rows.inodes["ino"][rows.inodes["subvol"] == sv])
        chosen = inos[rng.random(len(inos)) < share]
        inodes[int(sv)] = np.unique(np.concatenate((chosen, np.array([1, 2 ** 40, 2 ** 64 - 12], np.uint64))))
    want = _expanded_rows(leaves, inodes)
    assert share == 0 or want[0]
    assert _of_inodes_rows(leaves, inodes) == want


def test_of_inodes_across_leaves_and_beyond_40_bits():
    big = (1 << 62) + 7
    t = _leaf_tables([[257, 258], [258, 259], [258, 259, big]], [[0, 1], [0, 1], [0, 2]])
    for chosen in ([258], [257, 259], [big], [258, big], [260]):
        inodes = {256: np.array(chosen, np.uint64), 258: np.array(chosen, np.uint64)}
        assert _of_inodes_rows(t, inodes) == _expanded_rows(t, inodes)
