"""Names of inodes in bulk: the INODE_REF / INODE_EXTREF items of fs-tree leaves as column tables.

A report by directory needs, for every regular inode, the directory holding
it, and for the directories near the top of each subvolume their names and
parents. ``Namespace.path_of`` finds those one tree search at a time, far too
slowly for millions of files; here they come out of the leaves the report's
scan parses anyway (``FileScanner(links=True)``), one row per link item, kept
once per leaf like the inode and extent rows.

A link row is ``(ino, parent)`` with, for directories, the first name of the
item. ``INODE_REF``'s parent is its key offset; ``INODE_EXTREF`` (a hardlink
that did not fit its directory's INODE_REF item) carries it in the payload.
Whether the inode is a directory is known when its INODE_ITEM is the item
right before in the same leaf (``LinkTarget.FILE``/``DIRECTORY``); otherwise
(the leaf starts with the link) it is ``UNKNOWN`` and the name is kept too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..arrays import prefix, ranges
from ..format import fastparse
from ..format.constants import ItemType
from ..tree.block import HEADER_SIZE, LeafBatch
from .tables import S_IFDIR, S_IFMT

_REF = fastparse.INODE_REF
_EXTREF = fastparse.INODE_EXTREF
_NAME_LEN = np.dtype([("name_len", "<u2")])
_REF_NAME_LEN_AT = _REF.dtype.fields["name_len"][1]


class LinkTarget(enum.IntEnum):
    """What a link row names, as far as its leaf tells."""

    FILE = 0
    DIRECTORY = 1
    UNKNOWN = 2


#: One row per INODE_REF / INODE_EXTREF item; the kept names follow one another in ``LinkTable.names``
#: in row order (``name_len`` 0 for FILE rows: their names are not kept).
LINK_DTYPE = np.dtype([("ino", "<u8"), ("parent", "<u8"), ("name_len", "<u2"), ("target", "u1")])


@dataclass
class LinkTable:
    """Link rows leaf after leaf: leaf ``l``'s are ``rows[start[l]:start[l+1]]``, in key order."""

    rows: np.ndarray  # LINK_DTYPE
    start: np.ndarray  # int64, one more than there are leaves
    names: np.ndarray  # uint8, the kept names one after another

    @cached_property
    def name_start(self) -> np.ndarray:
        return prefix(self.rows["name_len"].astype(np.int64))

    def name(self, row: int) -> bytes:
        return self.names[self.name_start[row]:self.name_start[row + 1]].tobytes()

    def leaf(self, rows: np.ndarray) -> "LinkTable":
        """Rows ``rows`` of this table, in that order and with their names, as the table of one leaf."""
        starts = self.name_start
        names = self.names[ranges(starts[rows], starts[rows + 1])]
        return LinkTable(self.rows[rows], np.array([0, len(rows)], np.int64), names)

    @classmethod
    def joined(cls, parts: list["LinkTable"]) -> "LinkTable":
        """The tables of consecutive leaf batches as one (leaf numbers continue across them)."""
        record = np.dtype((np.void, LINK_DTYPE.itemsize))  # concatenated as raw records: a plain copy
        rows = np.concatenate([np.zeros(0, record)] + [p.rows.view(record) for p in parts]).view(LINK_DTYPE)
        counts = np.concatenate([np.zeros(0, np.int64)] + [np.diff(p.start) for p in parts])
        return cls(rows, prefix(counts), np.concatenate([np.zeros(0, np.uint8)] + [p.names for p in parts]))


def parse_links(batch: LeafBatch, inode_rows: np.ndarray, inode_modes: np.ndarray) -> LinkTable:
    """The link rows of every leaf of ``batch``.

    ``inode_rows`` are the batch rows of the INODE_ITEMs parsed, ``inode_modes``
    their modes (they tell directories from files). Items too short for their
    header are left out (the inode then reads as unreachable).
    """
    items = batch.items
    types = items["key.type"]
    oid = items["key.objectid"]
    size = items["size"].astype(np.int64)
    is_ref = types == ItemType.INODE_REF
    is_ext = types == ItemType.INODE_EXTREF
    rows = np.flatnonzero((is_ref & (size >= _REF.size)) | (is_ext & (size >= _EXTREF.size)))
    ext = np.flatnonzero(is_ext[rows])
    parent = items["key.offset"][rows]
    head = np.full(len(rows), _REF.size, np.int64)
    name_len = batch.gather(rows, _NAME_LEN, _REF_NAME_LEN_AT)["name_len"].astype(np.int64)
    if len(ext):  # hardlinks beyond the INODE_REF item: the parent is in the payload
        ext_head = batch.gather(rows[ext], _EXTREF.dtype)
        parent[ext] = ext_head["parent_objectid"]
        head[ext] = _EXTREF.size
        name_len[ext] = ext_head["name_len"]
    name_len = np.minimum(name_len, size[rows] - head)

    # the item before: the inode's INODE_ITEM in the same leaf tells a directory from a file
    prev = np.maximum(rows - 1, 0)
    at = np.minimum(np.searchsorted(inode_rows, prev), max(len(inode_rows) - 1, 0))
    known = (rows > 0) & (oid[prev] == oid[rows]) & (batch.leaf[prev] == batch.leaf[rows])
    if len(inode_rows):
        known &= inode_rows[at] == prev
    else:
        known[:] = False
    target = np.full(len(rows), LinkTarget.UNKNOWN, np.uint8)
    target[known] = np.where((inode_modes[at[known]] & S_IFMT) == S_IFDIR, LinkTarget.DIRECTORY, LinkTarget.FILE)
    name_len = np.where(target != LinkTarget.FILE, name_len, 0)

    leaf = batch.leaf[rows]
    first = batch.start[leaf] + HEADER_SIZE + items["offset"][rows].astype(np.int64) + head
    names = batch.raw[ranges(first, first + name_len)]
    out = np.zeros(len(rows), LINK_DTYPE)
    out["ino"] = oid[rows]
    out["parent"] = parent
    out["name_len"] = name_len
    out["target"] = target
    return LinkTable(out, prefix(np.bincount(leaf, minlength=len(batch))), names)
