"""Directory entries in bulk: the DIR_INDEX items of fs-tree leaves as column tables.

``Namespace.list_dir`` finds a directory's entries with a tree search and a
parsed item each, far too slowly for ``ls -R`` over millions of entries.
Here every DIR_INDEX item of the fs trees comes out of one bulk read
(``tree.bulk.BulkReader``: level by level, each distinct block read, checked
and parsed once), its rows kept once per distinct leaf as ``fs_tree`` keeps
inode and extent rows, and a subvolume is its list of leaves. A subvolume's
entries are then sorted by (directory, name bytes) with numpy
(``EntryLeaves.rank``), so memory follows the distinct metadata and
one subvolume at a time, never the entries of a whole listing.

These are the committed items: a directory a log replay changed is read
through ``Namespace.list_dir``, which replays (``Subvolume.replayed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..arrays import prefix, ranges
from ..errors import CorruptionError, Warnings
from ..format import fastparse
from ..format.constants import ItemType
from ..format.plausibility import dir_item_problem
from ..tree.block import HEADER_SIZE, LeafBatch
from ..tree.bulk import BulkReader
from ..tree.reader import TreeReader
from .subvolumes import Subvolume

_DIR_ITEM = fastparse.DIR_ITEM
_DIR_INDEX = int(ItemType.DIR_INDEX)

#: One row per DIR_INDEX item: the directory (key objectid), its index (key offset), the location key's
#: objectid and type (INODE_ITEM: an inode of the same tree; ROOT_ITEM: a subvolume), the entry's file type
#: and where its name lies in the table's ``names``.
ENTRY_DTYPE = np.dtype([("dir", "<u8"), ("index", "<u8"), ("location", "<u8"), ("location_type", "u1"),
                        ("type", "u1"), ("name_len", "<u2"), ("name_at", "<i8")])


@dataclass
class EntryLeaves:
    """Entry rows of every distinct leaf, and which subvolume holds which leaf (as ``tables.LeafTables``)."""

    rows: np.ndarray  # ENTRY_DTYPE, leaf after leaf; ``name_at`` into ``names``
    start: np.ndarray  # int64, one more than there are leaves
    names: bytes
    subvol_leaves: dict[int, np.ndarray]  # subvolume id -> its leaf handles in key order

    @cached_property
    def rank(self) -> np.ndarray:
        """Each row's place by (directory, name bytes), over every distinct row: sorting a subvolume's rows by
        it sorts each of its directories by name (what ``ls`` shows), without comparing names again."""
        rows = self.rows
        lengths = rows["name_len"].astype(np.int64)
        padded = np.zeros((len(rows), max(int(lengths.max()) if len(rows) else 1, 1)), np.uint8)
        at = ranges(rows["name_at"], rows["name_at"] + lengths)
        # names never hold a NUL byte, so the zero padding sorts a name before every longer one it begins
        padded[np.repeat(np.arange(len(rows)), lengths), at - np.repeat(rows["name_at"], lengths)] = \
            np.frombuffer(self.names, np.uint8)[at]
        order = np.lexsort((padded.view(f"S{padded.shape[1]}").ravel(), rows["dir"]))
        rank = np.empty(len(rows), np.int64)
        rank[order] = np.arange(len(rows))
        return rank

    def subvolume(self, sub_id: int) -> np.ndarray:
        """The row numbers of one subvolume's entries, by directory and name (none for one not scanned)."""
        leaves = self.subvol_leaves.get(sub_id, np.zeros(0, np.int64))
        mine = ranges(self.start[leaves], self.start[leaves + 1])
        return mine[np.argsort(self.rank[mine])]

    def count(self, sub_id: int) -> int:
        """How many entries the subvolume's directories hold."""
        leaves = self.subvol_leaves.get(sub_id, np.zeros(0, np.int64))
        return int((self.start[leaves + 1] - self.start[leaves]).sum())


def parse_entries(batch: LeafBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """The DIR_INDEX rows of each leaf of ``batch`` (``name_at`` into the names returned), the rows per leaf,
    the names one after another, and (leaf index, what) for each item skipped."""
    items = batch.items
    size = items["size"].astype(np.int64)
    rows = np.flatnonzero(items["key.type"] == _DIR_INDEX)
    head = batch.gather(rows, _DIR_ITEM.dtype)
    name_len, data_len = head["name_len"].astype(np.int64), head["data_len"].astype(np.int64)
    room = size[rows] - _DIR_ITEM.size
    past = (room < 0) | (name_len + data_len > room)
    # ``plausibility.dir_item_problem`` once per distinct (name length, data length, type): few of them
    combos, inverse = np.unique(np.stack((name_len, data_len, head["type"].astype(np.int64)), axis=1), axis=0,
                                return_inverse=True)
    said = [dir_item_problem(*combo) for combo in combos.tolist()]
    suspect = ~past & np.array([s is not None for s in said], bool)[inverse.reshape(-1)] if len(rows) \
        else np.zeros(0, bool)
    problems = []
    for n in np.flatnonzero(past | suspect).tolist():
        row = int(rows[n])
        where = f"directory {int(items['key.objectid'][row])} index {int(items['key.offset'][row])}"
        what = (f"DIR_ITEM name ({int(name_len[n])} bytes) and data ({int(data_len[n])} bytes) run past its "
                f"{int(size[row])}-byte item" if past[n]
                else f"DIR_ITEM implausible: {said[int(inverse.reshape(-1)[n])]}")
        problems.append((int(batch.leaf[row]), f"{what} ({where}), skipped"))
    bad = past | suspect
    rows, head, name_len = rows[~bad], head[~bad], name_len[~bad]
    leaf = batch.leaf[rows]
    first = batch.start[leaf] + HEADER_SIZE + items["offset"][rows].astype(np.int64) + _DIR_ITEM.size
    out = np.zeros(len(rows), ENTRY_DTYPE)
    out["dir"] = items["key.objectid"][rows]
    out["index"] = items["key.offset"][rows]
    out["location"] = head["location.objectid"]
    out["location_type"] = head["location.type"]
    out["type"] = head["type"]
    out["name_len"] = name_len
    out["name_at"] = prefix(name_len)[:-1]
    return out, np.bincount(leaf, minlength=len(batch)), batch.raw[ranges(first, first + name_len)], problems


def scan_entries(reader: TreeReader, warnings: Warnings, subvols: Sequence[Subvolume]) -> EntryLeaves:
    """The committed DIR_INDEX rows of every subvolume's tree, each distinct leaf parsed once."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    handles = 0

    def parse(batch: LeafBatch) -> tuple[list[int], list[tuple[int, str]]]:
        nonlocal handles
        rows, counts, names, problems = parse_entries(batch)
        parts.append((rows, counts, names))
        first, handles = handles, handles + len(batch)
        return list(range(first, handles)), problems

    def unreadable(index: int, exc: CorruptionError) -> None:
        sub = subvols[index]
        warnings.add(f"subvolume {sub.id} ({sub.path or 'top level'}) skipped: {exc}", f"tree {sub.id}",
                     tree=sub.id)

    leaves: dict[int, int] = {}
    walks = BulkReader(reader, parse, leaves, {}, warnings).walk([sub.root for sub in subvols], unreadable)
    counts = np.concatenate([np.zeros(0, np.int64)] + [c for _, c, _ in parts])
    rows = np.concatenate([np.zeros(0, ENTRY_DTYPE)] + [r for r, _, _ in parts])
    name_bases = np.cumsum([0] + [len(n) for _, _, n in parts])
    row_bases = np.cumsum([0] + [len(r) for r, _, _ in parts])
    for n in range(len(parts)):  # each batch's name offsets continue from the batches before it
        rows["name_at"][row_bases[n]:row_bases[n + 1]] += name_bases[n]
    names = b"".join(n.tobytes() for _, _, n in parts)
    return EntryLeaves(rows, prefix(counts), names,
                       {sub.id: np.array([leaves[b] for b in walk], np.int64) for sub, walk in zip(subvols, walks)})
