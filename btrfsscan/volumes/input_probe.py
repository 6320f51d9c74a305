"""What an input is, decided before its bytes are read in earnest.

A FIFO or a socket would block ``open`` (or every read) forever, and a
character device such as ``/dev/zero`` never ends: all are refused from
``stat`` alone, before anything is opened. A compressed stream is checked as
soon as its first bytes are out: a stream of GiBs of zeros is refused after
69,632 bytes, not unpacked whole first.
"""

from __future__ import annotations

import io
import os
import stat

from ..errors import DeviceError, NotBtrfsError
from ..format.constants import BTRFS_MAGIC, BTRFS_SUPER_INFO_OFFSET, BTRFS_SUPER_INFO_SIZE
from .metadump import is_metadump

XZ_MAGIC = b"\xfd7zXZ\x00"
TAR_MAGIC, TAR_MAGIC_OFFSET = b"ustar", 257
#: Bytes of an unpacked stream that hold the primary superblock.
HEAD_BYTES = BTRFS_SUPER_INFO_OFFSET + BTRFS_SUPER_INFO_SIZE
_MAGIC_AT = BTRFS_SUPER_INFO_OFFSET + 64  # btrfs_super_block.magic

_REFUSED_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISDIR, "a directory"),
)


def refuse_unreadable_kind(path: str, name: str) -> None:
    """DeviceError unless ``path`` (symlinks followed) is a regular file or a block device; never opens it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DeviceError(f"cannot open {name}: {exc.strerror or exc}") from None
    for test, kind in _REFUSED_KINDS:
        if test(mode):
            raise DeviceError(f"{name} is {kind}, not an image file or a block device: refused without reading it")
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise DeviceError(f"{name} is neither a regular file nor a block device")


def head_problem(head: bytes) -> str | None:
    """Why the first ``HEAD_BYTES`` of an unpacked stream cannot start a btrfs image, or None.

    They may hold a superblock, a btrfs-image dump or a tar archive (whose
    member is checked in its own turn).
    """
    if head[_MAGIC_AT:_MAGIC_AT + len(BTRFS_MAGIC)] == BTRFS_MAGIC:
        return None
    if head[TAR_MAGIC_OFFSET:TAR_MAGIC_OFFSET + len(TAR_MAGIC)] == TAR_MAGIC or is_metadump(io.BytesIO(head)):
        return None
    return (f"no btrfs superblock magic {BTRFS_MAGIC.decode()} at offset {_MAGIC_AT} nor a btrfs-image dump "
            "header at offset 0")


def refuse_head(head: bytes, name: str, what: str) -> None:
    """NotBtrfsError when the head of ``what`` (an unpacked stream) is no btrfs image."""
    problem = head_problem(head)
    if problem:
        raise NotBtrfsError(f"{name}: not a btrfs device: the {what} holds {problem} "
                            f"(stopped unpacking after {len(head)} bytes)")


def not_xz_problem(path: str, name: str, fd: int) -> str | None:
    """For an input named ``*.xz`` without the xz magic: why it is refused, unless it is a raw image."""
    if not path.endswith(".xz"):
        return None
    head = os.pread(fd, HEAD_BYTES, 0)
    if len(head) == HEAD_BYTES and head_problem(head) is None:
        return None  # a raw image that happens to be named .xz
    return (f"{name}: not a valid xz file: it does not start with the xz magic {XZ_MAGIC.hex(' ')} "
            "(and holds no btrfs superblock either)")
