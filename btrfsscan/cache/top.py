"""The extents and files a shared-extent cache saves most on (loops bounded by ``top``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import distinct, distinct_inverse, group_sum
from .coverage import Sharing
from .layout import ADDR_LIMIT, SEG_DATA, PageLayout, as_int64


@dataclass
class TopExtent:
    """A data extent (uncompressed, by disk_bytenr) and what shared_extent saves on it.

    Keys belong to the extent holding their first byte (the largest
    disk_bytenr <= key * P). ``file_pages``: eligible file pages whose key is
    in the extent; ``cached_pages``: distinct keys in it; ``saved_pages`` the
    difference. ``references``: extent items of regular inodes pointing at it
    (each (subvol, ino, file_offset) once). ``inodes``: up to 10 (subvol, ino)
    referencing it, in (subvol, ino) order, for example paths.
    """

    logical: int
    disk_num_bytes: int
    references: int
    subvolumes: list[int]
    file_pages: int
    cached_pages: int
    saved_pages: int
    inodes: list[tuple[int, int]]


@dataclass(frozen=True)
class TopFile:
    """A regular inode and what shared_extent saves on it (``saved_pages`` is its fair share).

    One row stands for one distinct inode version: ``snapshot_copies`` more
    subvolumes hold the same inode with the same data (``distinct_copies``).
    """

    subvol: int
    ino: int
    size: int
    nlink: int
    pages: int
    eligible_pages: int
    shared_pages: int
    saved_pages: float
    snapshot_copies: int


def extent_starts(layout: PageLayout) -> tuple[np.ndarray, np.ndarray]:
    """Distinct uncompressed data extents (sorted disk_bytenr) and their largest disk_num_bytes."""
    sel = (layout.row_kind == SEG_DATA) & (layout.row_db <= np.uint64(ADDR_LIMIT))
    db = layout.row_db[sel]
    uniq, inv = distinct_inverse(db)
    dnb = np.zeros(len(uniq), np.uint64)
    if len(db):
        np.maximum.at(dnb, inv, layout.row_dnb[sel])
    return uniq, dnb


def top_extents(layout: PageLayout, shared: Sharing, extents: tuple[np.ndarray, np.ndarray], top: int) -> list[TopExtent]:
    """The ``top`` extents by pages shared_extent saves (only extents saving something).

    ``shared`` must have been computed with the extents' first keys
    (``ceil(disk_bytenr / P)``) among its bounds, so no segment straddles two
    extents.
    """
    P = layout.page_size
    ext_db, ext_dnb = extents
    cov = shared.coverage
    if top <= 0 or not len(ext_db) or not cov.n_segments:
        return []
    first_key = (as_int64(ext_db) + P - 1) // P
    owner = np.searchsorted(first_key, cov.bounds[:-1], side="right") - 1
    mapped = (owner >= 0) & (cov.cov > 0)
    lengths = cov.lengths
    file_pages = group_sum(owner[mapped], (lengths * cov.cov)[mapped], len(ext_db))
    keys = group_sum(owner[mapped], lengths[mapped], len(ext_db))
    saved = file_pages - keys
    candidates = np.flatnonzero(saved > 0)
    if not len(candidates):
        return []
    order = np.lexsort((ext_db[candidates], -saved[candidates]))
    chosen = candidates[order[:top]]

    chosen_db = ext_db[chosen]
    rows = np.flatnonzero(np.isin(layout.row_db, chosen_db))
    row_db = layout.row_db[rows]
    row_inode = layout.row_inode[rows]
    out = []
    for x, db in zip(chosen, chosen_db):
        versions = row_inode[row_db == db]
        pairs = _instances(layout, distinct(versions))
        out.append(
            TopExtent(
                logical=int(db),
                disk_num_bytes=int(ext_dnb[x]),
                references=int(layout.weight[versions].sum()),
                subvolumes=sorted({sv for sv, _ in pairs}),
                file_pages=int(file_pages[x]),
                cached_pages=int(keys[x]),
                saved_pages=int(saved[x]),
                inodes=pairs[:10],
            )
        )
    return out


def _instances(layout: PageLayout, versions: np.ndarray) -> list[tuple[int, int]]:
    """The distinct (subvol, ino) pairs the given versions stand for, sorted."""
    v = layout.versions
    out = set()
    for version in versions.tolist():
        ino = int(layout.ino[version])
        out.update((int(v.subvol_ids[m]), ino) for m in v.members(int(v.version_set[version])).tolist())
    return sorted(out)


def distinct_copies(layout: PageLayout, saved: np.ndarray, top: int) -> list[tuple[float, int, list[tuple[int, int]]]]:
    """The ``top`` distinct inode versions by fair-share ``saved`` (only those saving something), then by
    (subvol, ino): (saved, a version, the (subvol, ino) pairs holding that inode with that data, sorted).

    Versions are the inode as leaves hold it; a snapshot whose leaf changed
    elsewhere holds an equal inode in a version of its own. Versions of one
    inode number with the same size and extent items are one row here.
    Candidates are taken in order of saving, every version tied with the
    last one included, until they make ``top`` rows.
    """
    candidates = np.flatnonzero(saved > 1e-9)
    if top <= 0 or not len(candidates):
        return []
    k = PRESELECT * top
    pool = candidates
    if len(candidates) > 2 * k:  # the best k and all tied with the k-th: a prefix of the ranking
        values = saved[candidates]
        pool = candidates[values >= np.partition(values, len(values) - k)[len(values) - k]]
    groups = _ranked(layout, saved, pool, top, last=pool is candidates)
    if groups is None:  # the pool ran out before ``top`` distinct rows: rank them all
        groups = _ranked(layout, saved, candidates, top, last=True)
    rows = sorted((-float(saved[first]), pairs[0], first, pairs) for first, pairs in groups)
    return [(-neg, first, pairs) for neg, _, first, pairs in rows[:top]]


#: ``distinct_copies`` ranks this many candidates per row wanted first (each row may stand for several
#: versions of one inode), and all of them only when those do not give enough distinct rows.
PRESELECT = 8


def _ranked(layout: PageLayout, saved: np.ndarray, candidates: np.ndarray, top: int,
            last: bool = False) -> list[tuple[int, list[tuple[int, int]]]] | None:
    """The groups of the best ``candidates`` (by saving, then inode; ties with the last one taken in) until
    they make ``top`` rows; None when they run out first, unless ``last`` (then all of them)."""
    candidates = candidates[np.lexsort((layout.ino[candidates], -saved[candidates]))]
    taken = min(top, len(candidates))
    while True:
        end = int(np.searchsorted(-saved[candidates], -saved[candidates[taken - 1]], side="right"))
        groups = _same_data(layout, candidates[:end])
        if len(groups) >= top:
            return groups
        if end >= len(candidates):
            return groups if last else None
        taken = min(end + top, len(candidates))


def _same_data(layout: PageLayout, versions: np.ndarray) -> list[tuple[int, list[tuple[int, int]]]]:
    """``versions`` grouped by inode number, size and extent items: (first version, sorted (subvol, ino))."""
    v = layout.versions
    wanted = np.zeros(v.n_versions, bool)
    wanted[versions] = True
    rows = np.flatnonzero(wanted[v.extent_version])
    items: dict[int, list[bytes]] = {}
    for version, row in zip(v.extent_version[rows].tolist(), v.extents[rows]):
        items.setdefault(version, []).append(row.tobytes())
    groups: dict[tuple, list[int]] = {}
    for version in versions.tolist():
        key = (int(layout.ino[version]), int(layout.size[version]), tuple(items.get(version, ())))
        groups.setdefault(key, []).append(version)
    return [(members[0], _instances(layout, np.array(members))) for members in groups.values()]


def top_files(layout: PageLayout, shared: Sharing, top: int) -> list[TopFile]:
    """The ``top`` distinct inode versions by fair-share saved pages (only those saving something)."""
    return [
        TopFile(
            subvol=pairs[0][0],
            ino=pairs[0][1],
            size=int(layout.size[i]),
            nlink=int(layout.nlink[i]),
            pages=int(layout.npages[i]),
            eligible_pages=int(shared.inode_eligible[i]),
            shared_pages=int(shared.inode_shared[i]),
            saved_pages=saved,
            snapshot_copies=len(pairs) - 1,
        )
        for saved, i, pairs in distinct_copies(layout, shared.inode_saved, top)
    ]
