"""Compact column tables for bulk per-inode and per-extent data.

A filesystem with millions of extent references cannot afford a Python object
each (~300 bytes); a numpy structured row costs its field sizes (~60 bytes).
These dtypes are the contract between the filesystem model, which fills the
tables from the fs trees, and the page-cache models, which read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: One row per inode of every subvolume walked. ``subvol`` + ``ino`` identify
#: an inode (hardlinks are one row); ``mode`` holds the file type bits.
INODE_DTYPE = np.dtype(
    [
        ("subvol", "<u8"),
        ("ino", "<u8"),
        ("size", "<u8"),
        ("nbytes", "<u8"),
        ("nlink", "<u4"),
        ("mode", "<u4"),
        ("uid", "<u4"),
        ("gid", "<u4"),
        ("flags", "<u8"),
        ("rdev", "<u8"),
    ]
)

#: One row per EXTENT_DATA item (``btrfs_file_extent_item``) of every subvolume
#: walked. ``file_offset`` is the item's key offset. For REG/PREALLOC,
#: ``disk_bytenr`` == 0 is an explicit hole. For INLINE, ``num_bytes`` is the
#: decompressed length (``ram_bytes``) and ``disk_num_bytes`` the size of the
#: inline payload in the leaf; ``disk_bytenr`` and ``offset`` are 0.
EXTENT_DTYPE = np.dtype(
    [
        ("subvol", "<u8"),
        ("ino", "<u8"),
        ("file_offset", "<u8"),
        ("num_bytes", "<u8"),
        ("disk_bytenr", "<u8"),
        ("disk_num_bytes", "<u8"),
        ("offset", "<u8"),
        ("ram_bytes", "<u8"),
        ("type", "u1"),
        ("compression", "u1"),
    ]
)

S_IFMT = 0o170000
S_IFREG = 0o100000
S_IFDIR = 0o040000
S_IFLNK = 0o120000


@dataclass
class FileTables:
    """Every inode and file extent of the subvolumes scanned, sorted by (subvol, ino[, file_offset])."""

    inodes: np.ndarray  # INODE_DTYPE
    extents: np.ndarray  # EXTENT_DTYPE

    def regular_inodes(self) -> np.ndarray:
        return self.inodes[(self.inodes["mode"] & S_IFMT) == S_IFREG]

