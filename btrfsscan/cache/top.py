"""The extents and files a shared-extent cache saves most on (loops bounded by ``top``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import distinct, group_sum
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
    """A regular inode and what shared_extent saves on it (``saved_pages`` is its fair share)."""

    subvol: int
    ino: int
    size: int
    nlink: int
    pages: int
    eligible_pages: int
    shared_pages: int
    saved_pages: float


def extent_starts(layout: PageLayout) -> tuple[np.ndarray, np.ndarray]:
    """Distinct uncompressed data extents (sorted disk_bytenr) and their largest disk_num_bytes."""
    sel = (layout.row_kind == SEG_DATA) & (layout.row_db <= np.uint64(ADDR_LIMIT))
    db = layout.row_db[sel]
    uniq, inv = np.unique(db, return_inverse=True)
    dnb = np.zeros(len(uniq), np.uint64)
    if len(db):
        np.maximum.at(dnb, inv.reshape(-1), layout.row_dnb[sel])
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


def top_files(layout: PageLayout, shared: Sharing, top: int) -> list[TopFile]:
    """The ``top`` regular inodes by fair-share saved pages (only those saving something).

    A version stands for several (subvol, inode) pairs with equal figures:
    versions are taken in order of saving until they stand for ``top`` pairs
    (with every version tied with the last one), then ranked pair by pair.
    """
    saved = shared.inode_saved
    candidates = np.flatnonzero(saved > 1e-9)
    if top <= 0 or not len(candidates):
        return []
    candidates = candidates[np.argsort(-saved[candidates], kind="stable")]
    reach = np.cumsum(layout.weight[candidates])
    last = candidates[min(int(np.searchsorted(reach, top)), len(candidates) - 1)]
    chosen = candidates[saved[candidates] >= saved[last]]
    ranked = sorted((-float(saved[i]), sv, ino, int(i)) for i in chosen.tolist()
                    for sv, ino in _instances(layout, np.array([i])))
    return [
        TopFile(
            subvol=sv,
            ino=ino,
            size=int(layout.size[i]),
            nlink=int(layout.nlink[i]),
            pages=int(layout.npages[i]),
            eligible_pages=int(shared.inode_eligible[i]),
            shared_pages=int(shared.inode_shared[i]),
            saved_pages=-neg_saved,
        )
        for neg_saved, sv, ino, i in ranked[:top]
    ]

