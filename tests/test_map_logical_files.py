"""`map` device ranges against btrfs-map-logical, on the kernel-made file fixtures.

For every regular file, the first sector of each device range `map --json`
reports must be where btrfs-map-logical puts that logical address, for every
mirror. Multi-device fixtures need their images attached as loop devices
(btrfs-map-logical finds the other devices through libblkid), so those run
only where root and loop devices are available.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from btrfsscan.model.filemap import build_file_map
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_LINE = re.compile(r"mirror (\d+) logical (\d+) physical (\d+) device (\S+)")
SINGLE = ["reflinks", "sparse-noholes", "sparse-holes", "compress", "subvols", "sample"]
MULTI = ["raid1-files", "raid10-files"]


def _no_tool() -> str | None:
    return None if shutil.which("btrfs-map-logical") else "needs btrfs-progs' btrfs-map-logical"


def _no_loop() -> str | None:
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        return "multi-device btrfs-map-logical needs the images attached as loop devices (root)"
    return _no_tool()


def map_logical(logical: int, device: str) -> list[tuple[int, int, str]] | None:
    """(mirror, physical, device path) lines btrfs-map-logical prints; None when it prints none."""
    run = subprocess.run(["btrfs-map-logical", "-l", str(logical), "-b", "4096", device],
                         capture_output=True, text=True, env={**os.environ, "BLKID_FILE": "/dev/null"})
    found = [(int(m), int(p), d) for m, lg, p, d in _LINE.findall(run.stdout) if int(lg) == logical]
    return found or None


def compare(name: str, images: list[Path], device_of_devid: dict[int, str], query_device: str) -> int:
    """Check every file's device ranges; returns how many ranges btrfs-map-logical confirmed."""
    fs = open_filesystem(images)
    checked = 0
    try:
        tables = FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())
        regular = tables.regular_inodes()
        for subvol, ino in zip(regular["subvol"].tolist(), regular["ino"].tolist()):
            file_map = build_file_map(fs, subvol, ino, f"{subvol}:{ino}", tables)
            for extent in file_map.extents:
                starts: dict[int, list] = {}
                done: dict[int, int] = {}  # mirror -> bytes of the on-disk extent already covered
                for r in extent.device_ranges:
                    if extent.compression == "none":
                        logical = extent.disk_bytenr + extent.offset + r.file_offset - extent.file_offset
                    else:  # pieces of the whole compressed extent, in logical order per mirror
                        logical = extent.disk_bytenr + done.get(r.mirror, 0)
                        done[r.mirror] = done.get(r.mirror, 0) + r.length
                    starts.setdefault(logical, []).append((r.mirror, r.physical, device_of_devid[r.devid]))
                for logical, ours in starts.items():
                    theirs = map_logical(logical, query_device)
                    if theirs is None:  # btrfs-progs 6.2 quirk: no output for some extents
                        continue
                    assert sorted(ours) == sorted(theirs), (name, file_map.path, logical)
                    checked += 1
    finally:
        fs.close()
    return checked


@pytest.mark.skipif(_no_tool() is not None, reason=_no_tool() or "")
@pytest.mark.parametrize("name", SINGLE)
def test_single_device(name, fixture_images):
    images = fixture_images("files", name)
    (image,) = images.values()
    assert compare(name, [image], {1: str(image)}, str(image)) > 0


@pytest.mark.kernel
@pytest.mark.skipif(_no_loop() is not None, reason=_no_loop() or "")
@pytest.mark.parametrize("name", MULTI)
def test_multi_device(name, fixture_images):
    sys.path.insert(0, str(FIXTURES))
    import kernel

    images = [fixture_images("files", name)[n] for n in sorted(fixture_images("files", name))]
    fs = open_filesystem(images)
    devid_of_image = {d.image.path: d.devid for d in fs.volume.devices.values() if d.image}
    fs.close()
    with kernel.loop_devices(images) as loops:
        device_of_devid = {devid_of_image[str(image)]: loop for image, loop in zip(images, loops)}
        assert compare(name, images, device_of_devid, loops[0]) > 0
