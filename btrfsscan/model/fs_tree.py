"""Reading every inode and file extent of fs trees into column tables.

This is the hot path of a report. Each leaf is parsed with numpy in a few
vectorized steps (gather the payloads of all INODE_ITEM or EXTENT_DATA items
at once, view them through dtypes derived from the construct definitions),
and the rows of each leaf are memoized by its address: snapshots share most
leaves with their source, so a leaf is read, checked and parsed once however
many subvolumes contain it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..errors import CorruptionError, Warnings
from ..format import fastparse
from ..format.constants import Compression, FileExtentType, ItemType
from ..tree.block import HEADER_SIZE, TreeBlock
from ..tree.reader import TreeReader
from ..tree.walk import Visit, walk_tree
from .subvolumes import Subvolume
from .tables import EXTENT_DTYPE, INODE_DTYPE, FileTables

_INODE = fastparse.INODE_ITEM
_FE = fastparse.FILE_EXTENT
_FE_HEAD_SIZE = fastparse.FILE_EXTENT_HEAD.size
_INODE_FIELDS = ("size", "nbytes", "nlink", "mode", "uid", "gid", "flags", "rdev")
_REG_FIELDS = {"disk_bytenr": "reg.disk_bytenr", "disk_num_bytes": "reg.disk_num_bytes",
               "offset": "reg.offset", "num_bytes": "reg.num_bytes"}

LeafRows = tuple[np.ndarray, np.ndarray]


def _gather(block: TreeBlock, slots: np.ndarray, layout: fastparse.Layout) -> np.ndarray:
    """Payloads of ``slots`` viewed through ``layout`` (short items read zero-padded)."""
    raw = np.frombuffer(block.data, np.uint8)
    starts = HEADER_SIZE + block.items["offset"][slots].astype(np.int64)
    idx = starts[:, None] + np.arange(layout.size)
    sizes = block.items["size"][slots].astype(np.int64)
    inside = np.arange(layout.size)[None, :] < sizes[:, None]
    np.minimum(idx, len(raw) - 1, out=idx)
    payload = np.where(inside, raw[idx], 0).astype(np.uint8)
    return payload.view(layout.dtype).reshape(-1)


def parse_leaf(block: TreeBlock, warnings: Warnings, tree_id: int) -> LeafRows:
    """INODE_ITEM and EXTENT_DATA rows of one fs-tree leaf (``subvol`` left 0)."""
    items = block.items
    types = items["key.type"]
    where = f"tree {tree_id} leaf {block.bytenr}"

    slots = np.flatnonzero(types == ItemType.INODE_ITEM)
    short = block.items["size"][slots] < _INODE.size
    for slot in slots[short].tolist():
        warnings.add(f"INODE_ITEM of inode {int(items['key.objectid'][slot])} shorter than btrfs_inode_item, skipped",
                     where, tree=tree_id, bytenr=block.bytenr)
    slots = slots[~short]
    fields = _gather(block, slots, _INODE)
    inodes = np.zeros(len(slots), INODE_DTYPE)
    inodes["ino"] = items["key.objectid"][slots]
    for name in _INODE_FIELDS:
        inodes[name] = fields[name]

    slots = np.flatnonzero(types == ItemType.EXTENT_DATA)
    fields = _gather(block, slots, _FE)
    sizes = block.items["size"][slots].astype(np.int64)
    ftype = fields["head.type"]
    inline = ftype == FileExtentType.INLINE
    regular = (ftype == FileExtentType.REG) | (ftype == FileExtentType.PREALLOC)
    bad_inline = inline & ((sizes < _FE_HEAD_SIZE) | (
        (fields["head.compression"] == Compression.NONE) & (fields["head.ram_bytes"] != sizes - _FE_HEAD_SIZE)))
    valid = (inline & ~bad_inline) | (regular & (sizes >= _FE.size))
    for i in np.flatnonzero(~valid).tolist():
        ino, off = int(items["key.objectid"][slots[i]]), int(items["key.offset"][slots[i]])
        if bad_inline[i]:
            what = f"inline extent of {int(fields['head.ram_bytes'][i])} bytes does not match its {int(sizes[i])}-byte item"
        elif regular[i]:
            what = f"EXTENT_DATA item of {int(sizes[i])} bytes is shorter than btrfs_file_extent_item"
        else:
            what = f"EXTENT_DATA has unknown type {int(ftype[i])}"
        warnings.add(f"{what}, skipped (inode {ino} offset {off})", where, tree=tree_id, bytenr=block.bytenr)
    slots, fields, sizes, inline = slots[valid], fields[valid], sizes[valid], inline[valid]
    extents = np.zeros(len(slots), EXTENT_DTYPE)
    extents["ino"] = items["key.objectid"][slots]
    extents["file_offset"] = items["key.offset"][slots]
    extents["type"] = fields["head.type"]
    extents["compression"] = fields["head.compression"]
    extents["ram_bytes"] = fields["head.ram_bytes"]
    for column, field in _REG_FIELDS.items():
        extents[column] = np.where(inline, 0, fields[field])
    extents["num_bytes"] = np.where(inline, fields["head.ram_bytes"], fields["reg.num_bytes"])
    extents["disk_num_bytes"] = np.where(inline, sizes - _FE_HEAD_SIZE, fields["reg.disk_num_bytes"])
    return inodes, extents


def _concat(parts: list[LeafRows]) -> LeafRows:
    if len(parts) == 1:
        return parts[0]
    return (np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, INODE_DTYPE),
            np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, EXTENT_DTYPE))


class FileScanner:
    """Scans fs trees into FileTables, parsing each shared leaf once.

    ``memoize=False`` re-parses every block of every tree: slower, and only
    there to check that memoization does not change any figure.
    """

    def __init__(self, reader: TreeReader, warnings: Warnings, *, memoize: bool = True) -> None:
        self.reader = reader
        self.warnings = warnings
        self.memoize = memoize
        self._blocks: dict[int, LeafRows] = {}
        self.leaves_parsed = 0
        self.blocks_reused = 0

    def scan_subvolume(self, sub: Subvolume) -> LeafRows:
        """All inode and extent rows of one subvolume, ``subvol`` set.

        Rows are memoized per block, nodes included: a subtree a snapshot
        shares with its source is one lookup, not a walk.
        """
        parts: list[list[LeafRows]] = [[]]
        try:
            for visit, bytenr, block in walk_tree(self.reader, sub.root, known=self._blocks):
                if visit is Visit.ENTER:
                    parts.append([])
                    continue
                if visit is Visit.KNOWN:
                    rows = self._blocks[bytenr]
                    self.blocks_reused += 1
                elif visit is Visit.LEAF:
                    rows = parse_leaf(block, self.warnings, sub.id)
                    self.leaves_parsed += 1
                else:
                    rows = _concat(parts.pop())
                if self.memoize:
                    self._blocks[bytenr] = rows
                parts[-1].append(rows)
        except CorruptionError as exc:
            self.warnings.add(f"subvolume {sub.id} ({sub.path or 'top level'}) skipped: {exc}", f"tree {sub.id}", tree=sub.id)
        while len(parts) > 1:  # a walk cut short leaves nodes open
            rows = _concat(parts.pop())
            parts[-1].append(rows)
        inodes, extents = _concat(parts[0])
        inodes = inodes.copy()
        extents = extents.copy()
        inodes["subvol"] = sub.id
        extents["subvol"] = sub.id
        return inodes, extents

    def scan(self, subvols: Iterable[Subvolume], progress: Callable[[Subvolume], None] | None = None) -> FileTables:
        """Tables over every subvolume given, in the order given."""
        inode_parts, extent_parts = [], []
        for sub in subvols:
            inodes, extents = self.scan_subvolume(sub)
            inode_parts.append(inodes)
            extent_parts.append(extents)
            if progress:
                progress(sub)
        return FileTables(
            np.concatenate(inode_parts) if inode_parts else np.zeros(0, INODE_DTYPE),
            np.concatenate(extent_parts) if extent_parts else np.zeros(0, EXTENT_DTYPE),
        )
