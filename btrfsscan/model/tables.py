"""Compact column tables for bulk per-inode and per-extent data.

A filesystem with millions of extent references cannot afford a Python object
each (~300 bytes); a numpy structured row costs its field sizes (~60 bytes).
These dtypes are the contract between the filesystem model, which fills the
tables from the fs trees, and the page-cache models, which read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..arrays import distinct, prefix, ranges

if TYPE_CHECKING:
    from .links import LinkTable

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
#: inline payload in the leaf; ``disk_bytenr`` and ``offset`` are 0, and
#: ``inline_hash`` identifies the inline data (``fs_tree.inline_hash``; all
#: zero bytes: unknown, and for every other type).
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
        ("inline_hash", "V16"),
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

    def as_leaves(self) -> "LeafTables":
        """The same rows as LeafTables with one leaf per subvolume: nothing is shared."""
        inodes = self.inodes[np.lexsort((self.inodes["ino"], self.inodes["subvol"]))]
        extents = self.extents[np.lexsort((self.extents["ino"], self.extents["subvol"]))]
        ids = distinct(np.concatenate((inodes["subvol"], extents["subvol"])))
        n = len(ids)

        def starts(table: np.ndarray) -> np.ndarray:
            return np.append(np.searchsorted(table["subvol"], ids), len(table)).astype(np.int64)

        return LeafTables(inodes, extents, starts(inodes), starts(extents), np.zeros(n, np.uint64), ids,
                          np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int64))



@dataclass
class LeafTables:
    """Inode and file extent rows of every distinct fs-tree leaf, and which subvolume holds which leaf.

    Snapshots share most leaves with their source; a leaf's rows are stored
    once (``subvol`` 0) however many subvolumes hold it. Leaf ``l``'s rows are
    ``inodes[inode_start[l]:inode_start[l+1]]`` and likewise for extents, in
    key order. Subvolume ``i`` (id ``subvol_ids[i]``) consists of the leaves
    ``subvol_leaves[subvol_start[i]:subvol_start[i+1]]``, in key order.
    ``links``: the leaves' link rows, when the scan kept them.
    """

    inodes: np.ndarray  # INODE_DTYPE
    extents: np.ndarray  # EXTENT_DTYPE
    inode_start: np.ndarray  # int64, one more than there are leaves
    extent_start: np.ndarray
    leaf_bytenr: np.ndarray  # uint64, where each leaf was read (for messages)
    subvol_ids: np.ndarray  # uint64
    subvol_start: np.ndarray  # int64, one more than there are subvolumes
    subvol_leaves: np.ndarray  # int64 leaf indices
    links: LinkTable | None = None

    @property
    def n_leaves(self) -> int:
        return len(self.inode_start) - 1

    def of_inodes(self, inodes: dict[int, np.ndarray]) -> LeafTables:
        """The rows of the inodes ``inodes`` names (subvolume id -> sorted inode numbers), each subvolume's
        own copy, one leaf per subvolume (by id): what ``expand`` gives for them, found by searching each
        subvolume's leaves rather than expanding them (the cost grows with the leaves and the inodes asked
        for, not with the snapshots' copies of every row)."""
        order = [i for i in np.argsort(self.subvol_ids, kind="stable").tolist()
                 if len(inodes.get(int(self.subvol_ids[i]), ()))]
        tables, counts = [], []
        for table, start in ((self.inodes, self.inode_start), (self.extents, self.extent_start)):
            index = _RowIndex(np.ascontiguousarray(table["ino"]), start)
            chosen = [index.rows(self.subvol_leaves[self.subvol_start[i]:self.subvol_start[i + 1]],
                                 inodes[int(self.subvol_ids[i])]) for i in order]
            tables.append(table[np.concatenate(chosen)] if chosen else table[:0])
            counts.append(np.fromiter(map(len, chosen), np.int64, len(chosen)))
        keep = (counts[0] + counts[1]) > 0
        ids = self.subvol_ids[order][keep]
        n = len(ids)
        for table, count in zip(tables, counts):
            table["subvol"] = np.repeat(self.subvol_ids[order], count)
        starts = [prefix(count[keep]) for count in counts]
        return LeafTables(tables[0], tables[1], starts[0], starts[1], np.zeros(n, np.uint64), ids,
                          np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int64))

    def expand(self) -> FileTables:
        """One row per (subvolume, inode) and (subvolume, extent item): every subvolume's own copy."""
        sv_of = np.repeat(self.subvol_ids, np.diff(self.subvol_start))
        parts = []
        for table, start in ((self.inodes, self.inode_start), (self.extents, self.extent_start)):
            leaves = self.subvol_leaves
            counts = start[leaves + 1] - start[leaves]
            rows = table[ranges(start[leaves], start[leaves + 1])]
            rows["subvol"] = np.repeat(sv_of, counts)
            parts.append(rows)
        return FileTables(*parts)


class _RowIndex:
    """Finds the rows of given inodes in given leaves of one table, whose leaf ``l`` holds rows
    ``start[l]:start[l+1]`` sorted by inode number.

    Inode numbers are replaced by their rank among the table's, so that (leaf, rank) packs into one
    int64 that increases along the table: one ``searchsorted`` then finds a leaf's rows of an inode."""

    def __init__(self, ino: np.ndarray, start: np.ndarray) -> None:
        self.values = distinct(ino)
        self.width = len(self.values) + 1
        leaf = np.repeat(np.arange(len(start) - 1, dtype=np.int64), np.diff(start))
        self.key = leaf * self.width + np.searchsorted(self.values, ino).astype(np.int64)
        self.nonempty = start[1:] > start[:-1]
        self.first = np.zeros(len(start) - 1, np.uint64)
        self.last = np.zeros(len(start) - 1, np.uint64)
        self.first[self.nonempty] = ino[start[:-1][self.nonempty]]
        self.last[self.nonempty] = ino[start[1:][self.nonempty] - 1]

    def rows(self, leaves: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """The rows of inodes ``wanted`` (sorted) in ``leaves`` (in key order), in key order."""
        if not len(self.values):
            return np.zeros(0, np.int64)
        wanted = np.asarray(wanted, np.uint64)
        rank = np.minimum(np.searchsorted(self.values, wanted), len(self.values) - 1)
        present = self.values[rank] == wanted
        wanted, rank = wanted[present], rank[present].astype(np.int64)
        leaves = leaves[self.nonempty[leaves]]
        lo = np.searchsorted(self.last[leaves], wanted, "left")  # the leaves whose inodes span it
        hi = np.searchsorted(self.first[leaves], wanted, "right")
        hi = np.maximum(hi, lo)
        query = leaves[ranges(lo, hi)] * self.width + np.repeat(rank, hi - lo)
        return ranges(np.searchsorted(self.key, query, "left"), np.searchsorted(self.key, query, "right"))
