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

import numpy as np

from ..arrays import prefix, ranges
from ..format import fastparse
from ..format.constants import ItemType
from ..tree.block import HEADER_SIZE, LeafBatch
from .tables import S_IFDIR, S_IFMT

_REF = fastparse.INODE_REF
_EXTREF = fastparse.INODE_EXTREF


class LinkTarget(enum.IntEnum):
    """What a link row names, as far as its leaf tells."""

    FILE = 0
    DIRECTORY = 1
    UNKNOWN = 2


#: One row per INODE_REF / INODE_EXTREF item; ``name_start``/``name_len`` index ``LinkTable.names``
#: (``name_len`` 0 for FILE rows: their names are not kept).
LINK_DTYPE = np.dtype([("ino", "<u8"), ("parent", "<u8"), ("name_start", "<i8"), ("name_len", "<u2"), ("target", "u1")])


@dataclass
class LinkTable:
    """Link rows leaf after leaf: leaf ``l``'s are ``rows[start[l]:start[l+1]]``, in key order."""

    rows: np.ndarray  # LINK_DTYPE
    start: np.ndarray  # int64, one more than there are leaves
    names: np.ndarray  # uint8, the kept names one after another

    def name(self, row: int) -> bytes:
        r = self.rows[row]
        return self.names[int(r["name_start"]):int(r["name_start"]) + int(r["name_len"])].tobytes()

    @classmethod
    def joined(cls, parts: list["LinkTable"]) -> "LinkTable":
        """The tables of consecutive leaf batches as one (leaf numbers continue across them)."""
        if not parts:
            return cls(np.zeros(0, LINK_DTYPE), np.zeros(1, np.int64), np.zeros(0, np.uint8))
        rows = np.concatenate([p.rows for p in parts])
        name_base = prefix(np.array([len(p.names) for p in parts], np.int64))
        rows["name_start"] += np.repeat(name_base[:-1], [len(p.rows) for p in parts])
        counts = np.concatenate([np.diff(p.start) for p in parts])
        return cls(rows, prefix(counts), np.concatenate([p.names for p in parts]))


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
    ext = is_ext[rows]
    ref_head = batch.gather(rows, _REF.dtype)
    ext_head = batch.gather(rows, _EXTREF.dtype)
    parent = np.where(ext, ext_head["parent_objectid"], items["key.offset"][rows])
    head = np.where(ext, _EXTREF.size, _REF.size)
    name_len = np.minimum(np.where(ext, ext_head["name_len"], ref_head["name_len"]).astype(np.int64), size[rows] - head)

    mode = np.full(len(items), -1, np.int64)
    mode[inode_rows] = inode_modes
    prev = np.maximum(rows - 1, 0)
    known = (rows > 0) & (types[prev] == ItemType.INODE_ITEM) & (oid[prev] == oid[rows]) & (
        batch.leaf[prev] == batch.leaf[rows]) & (mode[prev] >= 0)
    target = np.full(len(rows), LinkTarget.UNKNOWN, np.uint8)
    target[known] = np.where((mode[prev[known]] & S_IFMT) == S_IFDIR, LinkTarget.DIRECTORY, LinkTarget.FILE)
    keep_name = target != LinkTarget.FILE
    name_len = np.where(keep_name, name_len, 0)

    leaf = batch.leaf[rows]
    first = batch.start[leaf] + HEADER_SIZE + items["offset"][rows].astype(np.int64) + head
    names = batch.raw[ranges(first, first + name_len)]
    out = np.zeros(len(rows), LINK_DTYPE)
    out["ino"] = oid[rows]
    out["parent"] = parent
    out["name_start"] = prefix(name_len)[:-1]
    out["name_len"] = name_len
    out["target"] = target
    return LinkTable(out, prefix(np.bincount(leaf, minlength=len(batch))), names)
