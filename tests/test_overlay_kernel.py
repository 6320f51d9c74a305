"""overlay_copy_up against a real overlayfs, and the same tree as btrfs snapshots.

Setup (root, loop devices, the btrfs and overlay modules; see tests/fixtures/README.md):

1. overlayfs: a scratch btrfs holds ``lower/`` (seeded files, a hardlink,
   small inline-sized files) and per container ``upper-N/`` and ``work-N/``.
   Each container's overlay (``metacopy=on``: chmod copies up metadata only)
   is mounted and the container's changes are made through it: copy-ups
   happen for real. Then everything is unmounted and the scratch filesystem
   mounted again (its page cache starts empty), the overlays mounted again,
   every file read through every overlay, and ``fincore`` counts the pages
   of the real lower and upper files (each real inode once).
2. btrfs: a fresh filesystem gets the same tree as subvolume ``base``, one
   snapshot per container with the same changes made in it, and is scanned
   offline: ``overlay_copy_up`` over the container snapshots must equal what
   the kernel held in 1.

The machine reclaims cold pages in the background (DAMON), so residency is
counted twice around a full re-read and the count is taken only when both
agree and every file is wholly resident; otherwise the reads are retried.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from btrfsscan.cache.designs import overlay_copy_up
from btrfsscan.cache.layout import build_layout
from btrfsscan.cache.mappings import distinct_mappings
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner
from btrfsscan.model.versions import inode_versions

from support import kernel_unavailable

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
K = 1024

#: The lower tree: path -> (seed, size).
LOWER = {
    "bin/tool": ("tool", 300 * K + 17),
    "bin/other": ("other", 128 * K),
    "etc/conf": ("conf", 1500),          # inline on btrfs
    "etc/small": ("small", 6000),
    "lib/libbig.so": ("libbig", 1024 * K + 5),
    "lib/libmid.so": ("libmid", 200 * K),
    "share/doc": ("doc", 40 * K),
    "share/gone": ("gone", 24 * K),
}
HARDLINK = ("lib/libmid.so", "lib/libmid.so.1")


def _changes(container: int) -> list[tuple]:
    """What each container does: ("write", path, seed, offset, size), ("chmod", path, mode),
    ("append", path, seed, size), ("rewrite", path) (the same bytes again), ("rm", path)."""
    return {
        1: [("write", "bin/tool", "c1-tool", 64 * K, 4 * K), ("chmod", "lib/libbig.so", 0o600),
            ("append", "etc/small", "c1-small", 3000), ("write", "new/c1", "c1-new", 0, 20 * K)],
        2: [("rewrite", "lib/libmid.so"), ("rm", "share/gone"), ("chmod", "bin/other", 0o700),
            ("write", "etc/conf", "c2-conf", 0, 1500)],
        3: [],
    }[container]


def _kernel_unavailable() -> str | None:
    return kernel_unavailable(("losetup", "fincore", "mkfs.btrfs"), ("btrfs", "overlay"))


def _pwrite(path: Path, data: bytes, offset: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_lower(root: Path, kernel) -> None:
    for rel, (seed, size) in LOWER.items():
        _pwrite(root / rel, kernel.seeded_content(seed, size), 0)
    os.link(root / HARDLINK[0], root / HARDLINK[1])


def _apply(root: Path, container: int, kernel) -> None:
    for change in _changes(container):
        op, rel = change[0], change[1]
        path = root / rel
        if op == "write":
            _pwrite(path, kernel.seeded_content(change[2], change[4]), change[3])
        elif op == "append":
            _pwrite(path, kernel.seeded_content(change[2], change[3]), path.stat().st_size)
        elif op == "rewrite":
            _pwrite(path, path.read_bytes(), 0)
        elif op == "chmod":
            os.chmod(path, change[2])
        elif op == "rm":
            path.unlink()


def _mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work},metacopy=on,redirect_dir=on", str(target)],
                   check=True, capture_output=True)


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=False, capture_output=True)


def _regular_files(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, files in os.walk(root) for f in files if (Path(d) / f).is_file()
            and not (Path(d) / f).is_symlink()]


def _resident(capture, files: list[Path]) -> int:
    """Resident pages of the distinct real inodes among ``files``."""
    seen, paths = set(), []
    for p in files:
        st = os.stat(p)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            paths.append(p)
    return sum(r["pages"] for r in capture.fincore(paths))


def _overlay_pages(tmp: Path, kernel, capture) -> int:
    img = kernel.make_sparse_image(tmp / "overlay.img", 256 << 20)
    containers = (1, 2, 3)
    with kernel.loop_devices([img]) as (dev,):
        kernel.make_fs([dev], fsid=str(uuid.uuid4()))
        with kernel.mounted(dev) as mnt:
            _make_lower(mnt / "lower", kernel)
            for c in containers:
                (mnt / f"upper-{c}").mkdir()
                (mnt / f"work-{c}").mkdir()
            merged = {c: tmp / f"merged-{c}" for c in containers}
            try:
                for c in containers:
                    _mount_overlay(mnt / "lower", mnt / f"upper-{c}", mnt / f"work-{c}", merged[c])
                    _apply(merged[c], c, kernel)
            finally:
                for c in containers:
                    _umount(merged[c])
        with kernel.mounted(dev) as mnt:  # a fresh mount: none of the scratch filesystem's pages cached
            try:
                for c in containers:
                    _mount_overlay(mnt / "lower", mnt / f"upper-{c}", mnt / f"work-{c}", merged[c])
                real = _regular_files(mnt / "lower") + [p for c in containers for p in _regular_files(mnt / f"upper-{c}")]
                for _ in range(5):
                    for c in containers:
                        for path in _regular_files(merged[c]):
                            capture.read_all(path)
                    before = _resident(capture, real)
                    for c in containers:
                        for path in _regular_files(merged[c]):
                            capture.read_all(path)
                    after = _resident(capture, real)
                    if before == after:
                        return after
            finally:
                for c in containers:
                    _umount(merged[c])
    raise AssertionError("page-cache residency kept changing between two reads (background reclaim)")


def _btrfs_model(tmp: Path, kernel) -> tuple[int, int]:
    img = kernel.make_sparse_image(tmp / "snapshots.img", 256 << 20)
    with kernel.loop_devices([img]) as (dev,):
        kernel.make_fs([dev], fsid=str(uuid.uuid4()))
        with kernel.mounted(dev) as mnt:
            subprocess.run(["btrfs", "subvolume", "create", str(mnt / "base")], check=True, capture_output=True)
            _make_lower(mnt / "base", kernel)
            for c in (1, 2, 3):
                subprocess.run(["btrfs", "subvolume", "snapshot", str(mnt / "base"), str(mnt / f"c{c}")],
                               check=True, capture_output=True)
                _apply(mnt / f"c{c}", c, kernel)
            subprocess.run(["sync"], check=True)
    fs = open_filesystem([img])
    try:
        containers = [s for s in fs.subvolumes.live() if s.path in ("c1", "c2", "c3")]
        assert len(containers) == 3
        versions = inode_versions(FileScanner(fs.reader, fs.warnings).scan_leaves(containers), fs.warnings)
        layout = build_layout(versions, 4096, fs.superblock.sectorsize)
        assert not fs.warnings
        return overlay_copy_up.figures(layout, distinct_mappings(layout)).pages, layout.total(np.ones(layout.n_inodes, np.int64))
    finally:
        fs.close()


@pytest.mark.kernel
@pytest.mark.skipif(_kernel_unavailable() is not None, reason=_kernel_unavailable() or "")
def test_overlay_copy_up_equals_a_real_overlayfs(tmp_path):
    import capture
    import kernel

    if os.sysconf("SC_PAGE_SIZE") != 4096:
        pytest.skip("the kernel's page size is not 4 KiB")
    held = _overlay_pages(tmp_path, kernel, capture)
    modelled, inodes = _btrfs_model(tmp_path, kernel)
    assert inodes == 3 * len(LOWER) + 1 - 1  # every container's files (hardlink once), plus c1's new one, minus c2's rm
    assert modelled == held
