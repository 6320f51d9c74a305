"""Whether an input is in use by the running kernel: a mounted btrfs device, or an image file behind a loop
device of a mounted filesystem.

Read offline, such a device shows its last committed transaction: what was
written since (and not yet committed) is invisible, and every read races
with the kernel's writes. The kernel says which devices it has open for a
mounted filesystem in ``/sys/fs/btrfs/<fsid>/devices/`` (one entry per block
device name); a loop device names its backing file in
``/sys/block/<loop>/loop/backing_file``; ``/proc/self/mountinfo`` gives the
mount point for the message. Nothing here opens the input.

While such a filesystem is written, a tree block can be freed and rewritten
between the superblock read and the block read: it then fails its checks
(a generation newer than the superblock's, a transid or checksum mismatch).
A command then starts again from a fresh superblock, up to
``RACE_ATTEMPTS`` times; the last attempt skips what still fails, with
warnings naming the blocks.
"""

from __future__ import annotations

import os
import stat
from contextvars import ContextVar
from dataclasses import dataclass

SYS_BTRFS = "/sys/fs/btrfs"
SYS_BLOCK = "/sys/block"
MOUNTINFO = "/proc/self/mountinfo"
#: How often a command starts again from a fresh superblock when tree blocks of a mounted filesystem
#: change under it, before it gives a partial result naming the blocks.
RACE_ATTEMPTS = 3
#: True while a command may still start again: a tree block of a mounted device that fails its checks then
#: raises ``ConcurrentWriteError`` instead of being skipped.
RETRY_ON_RACE: ContextVar[bool] = ContextVar("btrfsscan_retry_on_race", default=False)


@dataclass(frozen=True)
class InUse:
    """An input the kernel has open as a device of mounted filesystem ``fsid``."""

    device: str  # the block device name in /sys/block (loop0, sda1, ...)
    via_loop: bool  # the input is the loop device's backing file
    mountpoint: str | None

    def describe(self, name: str) -> str:
        how = f"attached to /dev/{self.device}, " if self.via_loop else ""
        where = f" on {self.mountpoint}" if self.mountpoint else ""
        return (f"{name} is {how}a device of a mounted filesystem{where}: the result shows its last committed "
                "transaction (changes not yet committed are invisible) and reads race with the kernel's writes")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _block_name(path: str) -> str | None:
    """The /sys/block (or partition) name of block device ``path``, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.exists(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"):
        return None
    return os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"))


def _loops_backed_by(path: str) -> list[str]:
    """Loop devices whose backing file is ``path`` (same file: device and inode)."""
    try:
        st = os.stat(path)
        names = os.listdir(SYS_BLOCK)
    except OSError:
        return []
    out = []
    for name in names:
        backing = _read(f"{SYS_BLOCK}/{name}/loop/backing_file")
        if not backing:
            continue
        try:
            other = os.stat(backing.removesuffix(" (deleted)"))
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            out.append(name)
    return out


def _mountpoint(device: str) -> str | None:
    text = _read(MOUNTINFO) or ""
    for line in text.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) >= 5 and len(rest) >= 2 and rest[0] == "btrfs" and os.path.basename(rest[1]) == device:
            return fields[4].encode().decode("unicode_escape")  # mountinfo escapes spaces as \\040
    return None


def in_use(path: str, fsid: str) -> InUse | None:
    """How the running kernel uses input ``path`` of filesystem ``fsid``, or None when it does not."""
    devices_dir = f"{SYS_BTRFS}/{fsid}/devices"
    try:
        open_devices = set(os.listdir(devices_dir))
        is_block_device = stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return None  # the filesystem is not mounted here
    if is_block_device:
        name = _block_name(path)
        return InUse(name, False, _mountpoint(name)) if name in open_devices else None
    for loop in _loops_backed_by(path):
        if loop in open_devices:
            return InUse(loop, True, _mountpoint(loop))
    return None
