"""The devices, space profiles, label and features of a mounted filesystem, as the kernel gives them.

On btrfs: ``BTRFS_IOC_FS_INFO`` (device count, node size), ``BTRFS_IOC_DEV_INFO``
per devid (what ``btrfs filesystem show`` lists), ``BTRFS_IOC_SPACE_INFO`` (the
block group types and profiles ``btrfs filesystem df`` lists),
``BTRFS_IOC_GET_FEATURES`` and the label. Elsewhere the one data device the
mount table names (devid 0: such a filesystem numbers no devices), its size
from sysfs and the blocks statfs counts as used, and the label where the
filesystem gives one (``FS_IOC_GETFSLABEL``: XFS, ext4). A call that fails
leaves its part empty, with a warning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import Warnings
from . import kernel_api as k
from .mounts import mount_of, read_mounts

_SECTOR = 512  # /sys/dev/block/*/size counts 512-byte sectors


@dataclass(frozen=True)
class LiveDevice:
    devid: int
    uuid: bytes | None
    path: bytes | None
    total_bytes: int
    bytes_used: int


@dataclass(frozen=True)
class LiveFilesystem:
    """What the kernel says about the mounted filesystem besides its identity; ``spaces`` are
    ``(flags, total_bytes, used_bytes)`` (block group type and profile bits; btrfs only)."""

    label: bytes
    num_devices: int
    devices: tuple[LiveDevice, ...]
    spaces: tuple[tuple[int, int, int], ...]
    nodesize: int
    compat_ro: int
    incompat: int


def _btrfs(fd: int, warnings: Warnings, where: str) -> LiveFilesystem:
    info = k.btrfs_fs_info(fd)
    devices = []
    try:
        for devid in range(1, info.max_id + 1):
            dev = k.btrfs_dev_info(fd, devid)
            if dev is not None:
                devices.append(LiveDevice(dev.devid, dev.uuid, dev.path or None, dev.total_bytes, dev.bytes_used))
    except OSError as exc:
        warnings.add(f"devices not listed (BTRFS_IOC_DEV_INFO: {exc.strerror})", where)
    try:
        spaces = tuple(k.btrfs_space_info(fd))
    except OSError as exc:
        warnings.add(f"profiles not known (BTRFS_IOC_SPACE_INFO: {exc.strerror})", where)
        spaces = ()
    try:
        _, compat_ro, incompat = k.btrfs_features(fd)
    except OSError as exc:
        warnings.add(f"features not known (BTRFS_IOC_GET_FEATURES: {exc.strerror})", where)
        compat_ro = incompat = 0
    return LiveFilesystem(k.fs_label(fd) or b"", info.num_devices, tuple(devices), spaces, info.nodesize,
                          compat_ro, incompat)


def _other(fd: int, root: bytes) -> LiveFilesystem:
    facts = k.fstatfs(fd)
    st = os.fstat(fd)
    holder = mount_of(root, read_mounts())
    source = holder.source if holder is not None and holder.source.startswith(b"/") else None
    try:
        with open(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/size") as f:
            total = int(f.read()) * _SECTOR
    except (OSError, ValueError):
        total = facts.f_blocks * facts.f_bsize
    used = (facts.f_blocks - facts.f_bfree) * facts.f_bsize
    return LiveFilesystem(k.fs_label(fd) or b"", 1, (LiveDevice(0, None, source, total, used),), (), 0, 0, 0)


def describe(fd: int, root: bytes, btrfs: bool, warnings: Warnings) -> LiveFilesystem:
    """The devices, profiles, label and features of the filesystem holding ``fd`` (the directory ``root``)."""
    return _btrfs(fd, warnings, root.decode(errors="replace")) if btrfs else _other(fd, root)
