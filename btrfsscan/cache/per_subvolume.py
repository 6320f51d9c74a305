"""Per-subvolume figures under the shared-extent cache.

Per-subvolume key figures come from the distinct sets of subvolumes that map
a key; Python loops are bounded by the number of distinct sizes of those
sets, or by the subvolumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import distinct, distinct_groups, group_ids, group_sum, prefix, ranges, take_groups
from ..model.versions import InodeVersions
from .coverage import Sharing
from .layout import PageLayout, I64


@dataclass
class SubvolumeStats:
    """Per subvolume (``ids`` = ``versions.subvol_ids`` order), under shared_extent.

    ``exclusive_keys``: distinct keys (logical pages) mapped by file pages of
    this subvolume and of no other one (a key mapped twice inside the
    subvolume counts once). ``shared_keys``: distinct keys this subvolume maps
    that at least one other subvolume maps too. Both count keys, i.e. cached
    pages, not file pages. ``unshareable_pages``: file pages of its inodes
    that stay per inode. ``shares_with[i]``: up to 3 (subvol id, keys both
    map) sorted by keys descending, then id; every pair of subvolumes is
    compared, and ``pairs`` holds (a, b, keys both map) for every pair of
    indices a < b that share a key.
    """

    ids: np.ndarray
    inodes: np.ndarray
    files: np.ndarray
    per_inode_pages: np.ndarray
    eligible_pages: np.ndarray
    exclusive_keys: np.ndarray
    shared_keys: np.ndarray
    saved_pages: np.ndarray
    shares_with: list[list[tuple[int, int]]]
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def unshareable_pages(self) -> np.ndarray:
        return self.per_inode_pages - self.eligible_pages


@dataclass
class Holders:
    """Sets of distinct subvolumes (indices into ``subvol_ids``): set u is ``members[start[u]:start[u+1]]``."""

    start: np.ndarray
    members: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.start)

    def __len__(self) -> int:
        return len(self.start) - 1

    def extended(self, more: "Holders") -> "Holders":
        return Holders(np.concatenate((self.start, self.start[-1] + more.start[1:])),
                       np.concatenate((self.members, more.members)))


def _unions(holders: Holders, set_ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Holders:
    """Per group ``set_ids[starts[g]:ends[g]]`` of holder sets, the union of their members."""
    picks = ranges(starts, ends)
    group = np.repeat(np.arange(len(starts)), ends - starts)
    member_start, members = take_groups(holders.start, holders.members, set_ids[picks])
    width = int(holders.members.max()) + 1 if len(holders.members) else 1
    pair = distinct(np.repeat(group, np.diff(member_start)) * width + members)
    return Holders(prefix(np.bincount(pair // width, minlength=len(starts))), pair % width)


def _distinct_holders(versions: InodeVersions) -> tuple[np.ndarray, Holders]:
    """For each holder multiset of ``versions``, the id of its set of distinct subvolumes; and those sets."""
    starts, members = versions.set_start, versions.set_members
    n = len(starts) - 1
    set_of = np.repeat(np.arange(n), np.diff(starts))
    first = np.ones(len(members), bool)
    first[1:] = (members[1:] != members[:-1]) | (set_of[1:] != set_of[:-1])
    ids, start, distinct_members = distinct_groups(prefix(np.bincount(set_of[first], minlength=n)), members[first])
    return ids, Holders(start, distinct_members)


def key_holders(layout: PageLayout, shared: Sharing) -> tuple[Holders, np.ndarray]:
    """The distinct sets of subvolumes mapping a key, and how many keys each set maps (exactly those subvolumes).

    A key segment under one run belongs to that run's version's holders; under
    several runs to the union of their holders, computed once per distinct
    combination of holder sets.
    """
    set_of, holders = _distinct_holders(layout.versions)
    runs, cov = shared.runs, shared.coverage
    nseg = cov.n_segments
    if not nseg:
        return holders, np.zeros(len(holders), I64)
    run_set = set_of[layout.versions.version_set[runs.inode]]
    m = nseg + 1
    over = np.cumsum(np.bincount(cov.lo, minlength=m) - np.bincount(cov.hi, minlength=m))[:nseg]
    index = np.arange(len(runs), dtype=np.float64)
    run_at = np.rint(np.cumsum(np.bincount(cov.lo, index, m) - np.bincount(cov.hi, index, m))[:nseg]).astype(I64)
    seg_set = np.full(nseg, -1, I64)
    one = over == 1
    seg_set[one] = run_set[run_at[one]]
    multi = over >= 2
    if multi.any():
        c2 = prefix(multi)
        touching = np.flatnonzero(c2[cov.hi] - c2[cov.lo] > 0)
        segs = ranges(cov.lo[touching], cov.hi[touching])
        sets = np.repeat(run_set[touching], cov.hi[touching] - cov.lo[touching])
        sel = multi[segs]
        pair = distinct(segs[sel] * len(holders) + sets[sel])
        p_seg, p_set = pair // len(holders), pair % len(holders)
        segs_u, counts = np.unique(p_seg, return_counts=True)
        combo, combo_first = group_ids(prefix(counts), p_set)
        c_start = prefix(counts)
        union_id = p_set[c_start[combo_first]]  # a combination of one set is that set
        several = counts[combo_first] >= 2
        if several.any():
            groups = combo_first[several]
            union_id[several] = len(holders) + np.arange(len(groups))
            holders = holders.extended(_unions(holders, p_set, c_start[groups], c_start[groups + 1]))
        seg_set[segs_u] = union_id[combo]
    mapped = seg_set >= 0
    return holders, group_sum(seg_set[mapped], cov.lengths[mapped], len(holders))


#: Subvolumes up to which the pairs of large holder sets are summed in one dense matrix (32 MiB of float64).
DENSE_SUBVOLUMES = 2048
#: A holder set of at least this share of the subvolumes is large: a matrix product costs it less than its pairs.
DENSE_SHARE = 1 / 32


def _dense_pairs(holders: Holders, keys: np.ndarray, sets: np.ndarray, nsv: int) -> np.ndarray:
    """Per pair index ``a * nsv + b`` (a < b), the keys the holder sets ``sets`` add to it: the upper
    triangle of ``X^T diag(keys) X`` for their 0/1 membership matrix ``X``, a block of sets at a time
    (exact: integer sums below 2^53)."""
    total = np.zeros((nsv, nsv))
    step = max(1, (1 << 22) // nsv)
    for lo in range(0, len(sets), step):
        block = sets[lo:lo + step]
        member_start, members = take_groups(holders.start, holders.members, block)
        x = np.zeros((len(block), nsv))
        x[np.repeat(np.arange(len(block)), np.diff(member_start)), members] = 1.0
        total += (x * keys[block, None].astype(np.float64)).T @ x
    return np.rint(np.triu(total, 1)).astype(I64).reshape(-1)


def _pair_keys(holders: Holders, keys: np.ndarray, nsv: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, keys) for every pair a < b of subvolumes that both map some key.

    Every holder set of two or more subvolumes adds its keys to each pair of
    its members. Large sets (a good share of at most ``DENSE_SUBVOLUMES``
    subvolumes: snapshots of one subvolume) are summed by a matrix product
    (``_dense_pairs``), which costs sets times subvolumes squared instead of
    their pairs; the others are expanded together by size, a bounded number at
    a time, and the pair sums merged as they come.
    """
    width = max(nsv, 1)
    acc_key, acc_sum = np.zeros(0, I64), np.zeros(0, I64)
    sel = np.flatnonzero((holders.sizes >= 2) & (keys > 0))
    if nsv <= DENSE_SUBVOLUMES:
        large = holders.sizes[sel] >= max(2, DENSE_SHARE * nsv)
        if large.any():
            dense = _dense_pairs(holders, keys, sel[large], nsv)
            acc_key = np.flatnonzero(dense).astype(I64)
            acc_sum = dense[acc_key]
            sel = sel[~large]
    sizes = holders.sizes[sel]
    for k in distinct(sizes).tolist():
        i, j = np.triu_indices(k, 1)
        of_size = sel[sizes == k]
        step = max(1, (1 << 20) // len(i))
        for lo in range(0, len(of_size), step):
            us = of_size[lo:lo + step]
            mem = holders.members[holders.start[us][:, None] + np.arange(k)]
            acc_key, inv = np.unique(np.concatenate((acc_key, (mem[:, i] * width + mem[:, j]).ravel())),
                                     return_inverse=True)
            acc_sum = group_sum(inv.reshape(-1), np.concatenate((acc_sum, np.repeat(keys[us], len(i)))), len(acc_key))
    return acc_key // width, acc_key % width, acc_sum


def _top_partners(a: np.ndarray, b: np.ndarray, keys: np.ndarray, ids: np.ndarray, n: int) -> list[list[tuple[int, int]]]:
    """Up to 3 (partner id, keys) per subvolume, by keys descending then id."""
    x = np.concatenate((a, b))
    y = np.concatenate((b, a))
    w = np.concatenate((keys, keys))
    order = np.lexsort((ids[y], -w, x))
    x, y, w = x[order], y[order], w[order]
    rank = np.arange(len(x)) - np.searchsorted(x, x)
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for i, partner, k in zip(*(v[rank < 3].tolist() for v in (x, y, w))):
        out[i].append((int(ids[partner]), k))
    return out


def subvolume_stats(layout: PageLayout, shared: Sharing) -> SubvolumeStats:
    """Per-subvolume figures under shared_extent (sums over the versions each subvolume holds)."""
    versions = layout.versions
    ids = versions.subvol_ids
    nsv = len(ids)
    holders, keys = key_holders(layout, shared)
    member_of = np.repeat(np.arange(len(holders)), holders.sizes)
    alone = holders.sizes[member_of] == 1
    exclusive_keys = group_sum(holders.members[alone], keys[member_of[alone]], nsv)
    shared_keys = group_sum(holders.members[~alone], keys[member_of[~alone]], nsv)
    a, b, both = _pair_keys(holders, keys, nsv)
    per = versions.per_subvolume
    return SubvolumeStats(
        ids=ids,
        inodes=per(np.ones(layout.n_inodes, I64)),
        files=per(layout.nlink),
        per_inode_pages=per(layout.npages),
        eligible_pages=per(shared.inode_eligible),
        exclusive_keys=exclusive_keys,
        shared_keys=shared_keys,
        saved_pages=per(shared.inode_saved, np.float64),
        shares_with=_top_partners(a, b, both, ids, nsv),
        pairs=(a, b, both),
    )

