"""The log replay's items over the fs-tree scanner's leaves.

The scanner keeps each committed leaf's inode and extent rows once, shared
by every subvolume holding the leaf. For a subvolume whose log was replayed,
only the leaves holding rows of a replayed objectid, or where a new inode's
rows belong in key order, are replaced, in that subvolume's leaf list
alone, by synthetic leaves: the leaf's committed rows minus the replayed
objectids, plus the replayed rows placed there. Other subvolumes (snapshots
sharing those leaves) keep the committed rows, leaves stay in key order, and
nothing is done when no subvolume has a log. When the scan keeps link rows
(``model.links``), a synthetic leaf has them too, built the same way from
the replayed INODE_REF / INODE_EXTREF items: every leaf handle has its link
rows, and a replayed inode's links lie in its INODE_ITEM's leaf.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..arrays import ranges
from ..errors import Warnings
from ..format import fastparse
from ..format.constants import ItemType
from ..tree.block import HEADER_SIZE, LeafBatch
from .links import LINK_DTYPE, LinkTable
from .subvolumes import Subvolume
from .tables import EXTENT_DTYPE, INODE_DTYPE

_ROW_TYPES = (int(ItemType.INODE_ITEM), int(ItemType.EXTENT_DATA))
_LINK_TYPES = (int(ItemType.INODE_REF), int(ItemType.INODE_EXTREF))
_NO_LINKS = LinkTable(np.zeros(0, LINK_DTYPE), np.zeros(2, np.int64), np.zeros(0, np.uint8))


def _items_batch(items: list[tuple[tuple[int, int, int], bytes]]) -> LeafBatch:
    """One in-memory leaf (no size limit) holding ``items``, for the scanner's item parsers."""
    table = np.zeros(len(items), fastparse.ITEM.dtype)
    payload = b"".join(data for _, data in items)
    at = 0
    for row, (key, data) in enumerate(items):
        table[row] = (*key, at, len(data))
        at += len(data)
    raw = np.frombuffer(bytes(HEADER_SIZE) + payload + b"\0", np.uint8)
    return LeafBatch(raw, np.zeros(1, np.int64), np.array([len(raw)], np.int64), table, [len(items)])


def _take(parts: list[np.ndarray], bounds: np.ndarray, rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Rows ``rows`` (indices into the parts joined) of a table kept as ``parts``."""
    out = np.empty(len(rows), dtype)
    part = np.searchsorted(bounds, rows, side="right") - 1
    for p in np.unique(part).tolist():
        sel = part == p
        out[sel] = parts[p][rows[sel] - bounds[p]]
    return out


class LeafOverlay:
    """Synthetic leaves for replayed subvolumes, appended after the scanner's leaves."""

    def __init__(self, parse: Callable[..., tuple], inode_parts: list[np.ndarray],
                 extent_parts: list[np.ndarray], inode_start: np.ndarray, extent_start: np.ndarray,
                 links: LinkTable | None, warnings: Warnings) -> None:
        """``parse``: the scanner's leaf parser (``fs_tree.parse_leaves``); the rest, its rows and leaf starts,
        and its link rows when it keeps them (then ``new_links`` holds each synthetic leaf's)."""
        self.parse = parse
        self.links = links
        self.inode_parts, self.extent_parts = inode_parts, extent_parts
        self.inode_start, self.extent_start = inode_start, extent_start
        self.inode_bounds = np.cumsum([0] + [len(p) for p in inode_parts])
        self.extent_bounds = np.cumsum([0] + [len(p) for p in extent_parts])
        self.warnings = warnings
        self.new_inodes: list[np.ndarray] = []
        self.new_extents: list[np.ndarray] = []
        self.new_links: list[LinkTable] = []

    @property
    def n_leaves(self) -> int:
        return len(self.new_inodes)

    def _leaf_rows(self, handle: int) -> tuple[np.ndarray, np.ndarray]:
        i = np.arange(self.inode_start[handle], self.inode_start[handle + 1])
        e = np.arange(self.extent_start[handle], self.extent_start[handle + 1])
        return (_take(self.inode_parts, self.inode_bounds, i, INODE_DTYPE),
                _take(self.extent_parts, self.extent_bounds, e, EXTENT_DTYPE))

    def _leaf_links(self, handle: int, touched: np.ndarray) -> LinkTable:
        """The link rows of leaf ``handle`` whose inode the replay leaves alone."""
        rows = np.arange(self.links.start[handle], self.links.start[handle + 1])
        return self.links.leaf(rows[~np.isin(self.links.rows["ino"][rows], touched)])

    def _add(self, inodes: np.ndarray, extents: np.ndarray, links: list[LinkTable], base: int) -> int:
        inodes = inodes[np.argsort(inodes["ino"], kind="stable")]
        extents = extents[np.lexsort((extents["file_offset"], extents["ino"]))]
        self.new_inodes.append(inodes)
        self.new_extents.append(extents)
        if self.links is not None:  # in key order: by inode, each inode's items as they came
            joined = LinkTable.joined(links)
            self.new_links.append(joined.leaf(np.argsort(joined.rows["ino"], kind="stable")))
        return base + len(self.new_inodes) - 1

    def subvolume(self, sub: Subvolume, handles: np.ndarray, base: int) -> np.ndarray:
        """``sub``'s leaf handles with the replayed rows in; new leaves get handles from ``base`` on."""
        replayed = sub.replayed
        touched = np.array(sorted(replayed.objects), np.uint64)
        types = _ROW_TYPES + (_LINK_TYPES if self.links is not None else ())
        items = [(k, d) for oid in replayed.objects for k, d in replayed.objects[oid] if k[1] in types]
        parsed, problems = self.parse(_items_batch(items), links=self.links is not None)
        for _, what in problems:
            self.warnings.add(what, f"subvolume {sub.id} (replayed from the log)", tree=sub.id)
        new_inodes, new_extents = parsed.inodes, parsed.extents
        new_links = parsed.links if parsed.links is not None else _NO_LINKS
        handles = handles.copy()
        n_ino = self.inode_start[handles + 1] - self.inode_start[handles]
        n_ext = self.extent_start[handles + 1] - self.extent_start[handles]
        rows_i = ranges(self.inode_start[handles], self.inode_start[handles + 1])
        rows_e = ranges(self.extent_start[handles], self.extent_start[handles + 1])
        ino_i = _take(self.inode_parts, self.inode_bounds, rows_i, INODE_DTYPE)["ino"]
        ino_e = _take(self.extent_parts, self.extent_bounds, rows_e, EXTENT_DTYPE)["ino"]
        if self.links is not None:
            n_lnk = self.links.start[handles + 1] - self.links.start[handles]
            ino_l = self.links.rows["ino"][ranges(self.links.start[handles], self.links.start[handles + 1])]
        else:
            n_lnk, ino_l = np.zeros(len(handles), np.int64), np.zeros(0, np.uint64)
        position = np.arange(len(handles))
        pos_i, pos_e, pos_l = np.repeat(position, n_ino), np.repeat(position, n_ext), np.repeat(position, n_lnk)
        last = np.zeros(len(handles), np.uint64)
        for pos, ino in ((pos_i, ino_i), (pos_e, ino_e), (pos_l, ino_l)):
            np.maximum.at(last, pos, ino)
        with_rows = np.flatnonzero((n_ino + n_ext + n_lnk) > 0)
        dirty = set(np.unique(np.concatenate((pos_i[np.isin(ino_i, touched)], pos_e[np.isin(ino_e, touched)],
                                              pos_l[np.isin(ino_l, touched)]))).tolist())
        new_oids = np.unique(np.concatenate((new_inodes["ino"], new_extents["ino"], new_links.rows["ino"])))
        home: dict[int, list[int]] = {}
        if len(with_rows):
            at = np.minimum(np.searchsorted(last[with_rows], new_oids, side="left"), len(with_rows) - 1)
            for oid, pos in zip(new_oids.tolist(), with_rows[at].tolist()):
                home.setdefault(pos, []).append(oid)
        elif len(new_oids):
            home[-1] = new_oids.tolist()
        extra = []
        for pos in sorted(dirty | set(home)):
            mine = np.array(home.get(pos, []), np.uint64)
            ov_i, ov_e = new_inodes[np.isin(new_inodes["ino"], mine)], new_extents[np.isin(new_extents["ino"], mine)]
            ov_l = new_links.leaf(np.flatnonzero(np.isin(new_links.rows["ino"], mine)))
            if pos < 0:
                extra.append(self._add(ov_i, ov_e, [ov_l], base))
                continue
            handle = int(handles[pos])
            old_i, old_e = self._leaf_rows(handle)
            keep_i, keep_e = old_i[~np.isin(old_i["ino"], touched)], old_e[~np.isin(old_e["ino"], touched)]
            keep_l = self._leaf_links(handle, touched) if self.links is not None else _NO_LINKS
            handles[pos] = self._add(np.concatenate((keep_i, ov_i)), np.concatenate((keep_e, ov_e)),
                                     [keep_l, ov_l], base)
        return np.concatenate((handles, np.array(extra, np.int64))) if extra else handles
