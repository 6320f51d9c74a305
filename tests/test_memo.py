"""Memoizing per-block rows across snapshots must not change any figure."""

from __future__ import annotations

import numpy as np
import pytest

from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner


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
