"""``report --path``: only the files under some paths, as ``btrfs filesystem du DIR`` and compsize count them.

A path is looked up from the top-level subvolume before anything is
scanned (a missing one is the run's one error). Everything below it counts,
nested subvolumes included, each inode once however many of its links lie
there. The report's scan still reads every subvolume; the inodes are found
by listing its tables (plus the directory entries), and its rows are then
cut down to them, so the models see only those files (and what they share
among themselves).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..model.listing import normalize_path
from ..model.tables import LeafTables
from .files import ListingTables, listing, lookup
from .refs import top_level

if TYPE_CHECKING:
    from ..model.filesystem import Filesystem


@dataclass(frozen=True)
class PathSelection:
    """The paths asked for (from the top level) and the inodes under them, by subvolume."""

    paths: tuple[str, ...]
    inodes: dict[int, np.ndarray]  # subvolume id -> sorted inode numbers

    def restrict(self, leaves: LeafTables) -> LeafTables:
        """The rows of ``leaves`` of the selected inodes, one leaf per subvolume (links are not kept)."""
        return leaves.of_inodes(self.inodes)


def looked_up(fs: Filesystem, paths: Sequence[str]) -> tuple[str, ...]:
    """``paths`` from the top level, each once (``PathNotFound`` for one that does not exist): checked before
    anything is scanned."""
    top = top_level(fs)
    names = tuple(dict.fromkeys(normalize_path(p) for p in paths))
    for path in names:
        if path != ".":
            lookup(fs, path, top)
    return names


def select_paths(fs: Filesystem, names: Sequence[str], tables: ListingTables) -> PathSelection:
    """Every inode under ``names`` (``looked_up``): those ``ls -R PATH`` lists from ``tables``."""
    found: dict[int, set[int]] = {}
    for path in names:
        for batch in listing(fs, path, recursive=True, tables=tables).batches:
            for entry in batch:
                found.setdefault(entry.subvolume, set()).add(entry.inode)
    return PathSelection(tuple(names), {s: np.array(sorted(inos), np.uint64) for s, inos in found.items()})
