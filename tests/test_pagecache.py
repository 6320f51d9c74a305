"""The page-cache models against the kernel: fincore and FIEMAP.

* per_inode must equal, page for page, what fincore shows after reading every
  regular file once, summed over distinct inodes (hardlinks are one inode):
  against the counts captured when the fixtures were built, and — where root,
  loop devices and btrfs are available — live, on a fresh mount of each
  committed image.
* shared_extent must equal an independent count from FIEMAP: distinct logical
  pages of extents without DATA_INLINE, ENCODED, UNWRITTEN or NOT_ALIGNED,
  plus per-inode pages for everything else inside i_size (4 KiB pages, where
  FIEMAP's sector-granular extents describe whole pages).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support import kernel_unavailable

from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.analysis.report import scan_report

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FILE_FIXTURES = sorted(p.name for p in (FIXTURES / "files").iterdir() if (p / "expected" / "fiemap.json").exists())
PAGE = 4096
UNSHAREABLE = {"DATA_INLINE", "ENCODED", "UNWRITTEN", "NOT_ALIGNED", "DELALLOC", "UNKNOWN"}


def _expected(name: str, what: str):
    path = FIXTURES / "files" / name / "expected" / what
    text = path.read_text()
    return json.loads(text)


def _image_paths(fixture_images, name: str) -> list[Path]:
    return list(fixture_images("files", name).values())


@pytest.fixture(scope="module")
def reports(fixture_images):
    cache = {}

    def get(name: str):
        if name not in cache:
            fs = open_filesystem(_image_paths(fixture_images, name))
            try:
                cache[name] = scan_report(fs, page_size=PAGE, top=5)
            finally:
                fs.close()
        return cache[name]

    return get


def _regular_inodes(name: str) -> dict[tuple[int, int], dict]:
    """(subvol, st_ino) -> one listing record per regular-file inode."""
    inodes = {}
    for record in _expected(name, "listing.json"):
        if record["type"] == "file":
            inodes.setdefault((record["subvol"], record["st_ino"]), record)
    return inodes


def fincore_pages(records: list[dict]) -> int:
    """Resident pages summed over distinct inodes."""
    per_inode = {(r["subvol"], r["st_ino"]): r["pages"] for r in records}
    return sum(per_inode.values())


def fiemap_shared_extent_pages(name: str) -> int:
    """The shared_extent total of a fixture computed from its captured FIEMAP alone."""
    fiemap = _expected(name, "fiemap.json")
    return shared_extent_pages((record["size"], fiemap[record["path"]]) for record in _regular_inodes(name).values())


def shared_extent_pages(inodes) -> int:
    """The shared_extent total (4 KiB pages) of regular inodes given as (i_size, FIEMAP records), each once."""
    keys: set[int] = set()
    per_inode_pages = 0
    eligible = 0
    for size, records in inodes:
        npages = -(-size // PAGE)
        per_inode_pages += npages
        for ext in records:
            if UNSHAREABLE & set(ext["flags"]):
                continue
            start, end = ext["fe_logical"], ext["fe_logical"] + ext["fe_length"]
            first = -(-start // PAGE)
            last = min(end // PAGE, npages)
            for page in range(first, last):
                key = ext["fe_physical"] + page * PAGE - start
                assert key % PAGE == 0
                keys.add(key)
                eligible += 1
    return per_inode_pages - eligible + len(keys)


@pytest.mark.parametrize("name", FILE_FIXTURES)
def test_per_inode_equals_captured_fincore(name, reports):
    report = reports(name)
    assert report.totals.per_inode_pages == fincore_pages(_expected(name, "fincore.json"))
    assert report.totals.inodes == len(_regular_inodes(name))


@pytest.mark.parametrize("name", FILE_FIXTURES)
def test_shared_extent_equals_fiemap_count(name, reports):
    report = reports(name)
    assert report.model("shared_extent").pages == fiemap_shared_extent_pages(name)


@pytest.mark.kernel
@pytest.mark.skipif(kernel_unavailable() is not None, reason=kernel_unavailable() or "")
@pytest.mark.parametrize("name", FILE_FIXTURES)
def test_per_inode_equals_live_fincore(name, reports, fixture_images):
    """Mount the committed image read-only, read every file, count resident pages."""
    sys.path.insert(0, str(FIXTURES))
    import capture
    import kernel

    images = _image_paths(fixture_images, name)
    with kernel.loop_devices(images) as devices:
        with kernel.mounted(devices[0], "ro,subvolid=5") as mnt:
            records = capture.fincore_after_read(mnt)
    assert reports(name).totals.per_inode_pages == fincore_pages(records)
