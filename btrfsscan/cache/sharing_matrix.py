"""Which subvolumes share cache with which: the subvolume x subvolume matrix under shared_extent.

Cell ``[i][j]`` (i != j) is the number of distinct logical pages (keys, so
pages a shared-extent cache holds once) that file pages of both subvolume
``i`` and subvolume ``j`` map; the diagonal ``[i][i]`` is the number of
distinct keys subvolume ``i`` maps at all (its ``exclusive_pages`` +
``shared_pages``). Every pair is counted exactly (``per_subvolume.subvolume_stats``
already compares them all for ``shares_with``); the matrix is symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .per_subvolume import SubvolumeStats


@dataclass(frozen=True)
class SharingMatrix:
    """``shared_pages[i][j]`` for the subvolumes ``ids`` (ascending), as above."""

    ids: tuple[int, ...]
    shared_pages: tuple[tuple[int, ...], ...]


def sharing_matrix(stats: SubvolumeStats) -> SharingMatrix:
    """The matrix of ``stats`` (all subvolumes holding regular files), rows and columns by ascending id."""
    ids = np.asarray(stats.ids, np.uint64)
    n = len(ids)
    order = np.argsort(ids, kind="stable")
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    m = np.zeros((n, n), np.int64)
    a, b, keys = stats.pairs
    m[rank[a], rank[b]] = keys
    m[rank[b], rank[a]] = keys
    m[rank, rank] = stats.exclusive_keys + stats.shared_keys
    return SharingMatrix(tuple(int(x) for x in ids[order]), tuple(tuple(row) for row in m.tolist()))
