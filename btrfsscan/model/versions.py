"""Inode versions: every distinct regular inode once, with the subvolumes that hold it.

A snapshot holds the same inodes as its source until they change, and the
two trees share the leaves holding them. An inode's rows (its INODE_ITEM and
EXTENT_DATA items) lie in one leaf or in consecutive leaves, so:

* an inode lying wholly inside a leaf (every inode of the leaf except,
  perhaps, its first and last) is the same inode in every subvolume holding
  that leaf: one version, held by those subvolumes;
* the first or last inode of a leaf continues into the previous or next leaf
  of some subvolumes; there it is the sequence of leaves it spans that
  identifies its version.

The models then work once per version, weighted by how many subvolumes hold
it, so their cost follows the distinct metadata and not the number of
snapshots. Which subvolumes hold a version is a multiset (a subvolume holds a
version twice only in a corrupt tree) stored once per distinct multiset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import I64, distinct_groups, group_ids, group_sum, prefix, ranges, segmented_cummax, take_fields
from ..errors import Warnings
from .tables import S_IFMT, S_IFREG, FileTables, LeafTables


#: The inode and file extent item fields the page-cache models read, all a version keeps.
INODE_FIELDS = ("subvol", "ino", "size", "nlink")
EXTENT_FIELDS = ("file_offset", "num_bytes", "disk_bytenr", "disk_num_bytes", "offset", "ram_bytes", "type",
                 "compression", "inline_hash")


@dataclass
class InodeVersions:
    """Distinct regular inodes and their file extent items, each with the multiset of subvolumes holding it.

    ``inodes[v]`` is version v's inode row (``subvol``: the smallest id
    holding it); its extent items are the ``extents`` rows whose
    ``extent_version`` is v, in item order. ``version_set[v]`` names a
    multiset: ``set_members[set_start[s]:set_start[s+1]]``, sorted indices
    into ``subvol_ids``. ``inode_rows[v]``: the row of the LeafTables' inodes
    it was taken from (None when not made from leaves).
    """

    inodes: np.ndarray  # INODE_FIELDS of INODE_DTYPE
    extents: np.ndarray  # EXTENT_FIELDS of EXTENT_DTYPE
    extent_version: np.ndarray  # int64
    subvol_ids: np.ndarray  # uint64
    version_set: np.ndarray  # int64
    set_start: np.ndarray  # int64
    set_members: np.ndarray  # int64
    notes: list[str] = field(default_factory=list)
    inode_rows: np.ndarray | None = None

    @property
    def n_versions(self) -> int:
        return len(self.inodes)

    @property
    def set_sizes(self) -> np.ndarray:
        return np.diff(self.set_start)

    @property
    def weight(self) -> np.ndarray:
        """How many (subvolume, inode) pairs each version stands for."""
        return self.set_sizes[self.version_set]

    def per_subvolume(self, values: np.ndarray, dtype=I64) -> np.ndarray:
        """Sum of a per-version quantity over the inodes of each subvolume (``subvol_ids`` order)."""
        per_set = group_sum(self.version_set, values, len(self.set_start) - 1, dtype)
        return group_sum(self.set_members, np.repeat(per_set, self.set_sizes), len(self.subvol_ids), dtype)

    def members(self, set_id: int) -> np.ndarray:
        return self.set_members[self.set_start[set_id]:self.set_start[set_id + 1]]


#: Below this many bits, (leaf, ino) packs into one sort key.
_INO_BITS = 40


@dataclass
class _Pieces:
    """The rows of one inode in one leaf: pieces sorted by (leaf, ino)."""

    leaf: np.ndarray
    ino: np.ndarray
    inode0: np.ndarray  # first inode row
    n_inodes: np.ndarray
    extent0: np.ndarray
    extent1: np.ndarray


def _pieces(leaves: LeafTables) -> _Pieces:
    """Group the inode rows and extent rows by (leaf, ino): both tables are in that order already."""
    n_leaves = leaves.n_leaves
    n_inode_rows = len(leaves.inodes)
    leaf = np.concatenate((np.repeat(np.arange(n_leaves), np.diff(leaves.inode_start)),
                           np.repeat(np.arange(n_leaves), np.diff(leaves.extent_start))))
    ino = np.concatenate((leaves.inodes["ino"], leaves.extents["ino"]))
    if len(ino) and int(ino.max()) < (1 << _INO_BITS) and n_leaves < (1 << (64 - _INO_BITS)):
        # one key per row; a stable sort of two sorted runs is a linear merge
        order = np.argsort((leaf.astype(np.uint64) << np.uint64(_INO_BITS)) | ino, kind="stable")
    else:  # objectids beyond 2**40 (special inodes): the general two-key sort
        order = np.lexsort((ino, leaf))
    leaf, ino = leaf[order], ino[order]
    new = np.ones(len(leaf), bool)
    new[1:] = (leaf[1:] != leaf[:-1]) | (ino[1:] != ino[:-1])
    piece_of = np.empty(len(leaf), I64)
    piece_of[order] = np.cumsum(new) - 1
    n_pieces = int(new.sum())
    n_inodes = np.bincount(piece_of[:n_inode_rows], minlength=n_pieces)
    n_extents = np.bincount(piece_of[n_inode_rows:], minlength=n_pieces)
    extent0 = prefix(n_extents)[:-1]
    return _Pieces(leaf[new], ino[new], prefix(n_inodes)[:-1], n_inodes, extent0, extent0 + n_extents)


def _ordered_occurrences(leaves: LeafTables, first_ino: np.ndarray, last_ino: np.ndarray, has_rows: np.ndarray,
                         warnings: Warnings | None) -> tuple[np.ndarray, np.ndarray]:
    """(subvolume index, leaf) of every leaf with rows, per subvolume in key order.

    A leaf whose first inode lies below the last inode of an earlier leaf of
    the same tree (keys out of order across leaves: a corrupt tree) is
    skipped with a warning, so every inode's rows stay consecutive.
    """
    occ_sv = np.repeat(np.arange(len(leaves.subvol_ids)), np.diff(leaves.subvol_start))
    occ_leaf = leaves.subvol_leaves
    keep = has_rows[occ_leaf]
    occ_sv, occ_leaf = occ_sv[keep], occ_leaf[keep]
    if len(occ_leaf) < 2:
        return occ_sv, occ_leaf
    reach = segmented_cummax(last_ino[occ_leaf], occ_sv)
    bad = np.zeros(len(occ_leaf), bool)
    bad[1:] = (occ_sv[1:] == occ_sv[:-1]) & (first_ino[occ_leaf[1:]] < reach[:-1])
    for k in np.flatnonzero(bad).tolist():
        sv, bytenr = int(leaves.subvol_ids[occ_sv[k]]), int(leaves.leaf_bytenr[occ_leaf[k]])
        if warnings is not None:
            warnings.add(f"leaf holds inode {int(first_ino[occ_leaf[k]])}, below the keys of an earlier leaf "
                         "of its tree: skipped", f"tree {sv} leaf {bytenr}", tree=sv, bytenr=bytenr)
    return occ_sv[~bad], occ_leaf[~bad]


def inode_versions(leaves: LeafTables, warnings: Warnings | None = None) -> InodeVersions:
    """The distinct regular inodes of ``leaves`` and the subvolumes holding each."""
    p = _pieces(leaves)
    vp_start, vp_piece, version_set, set_start, set_members = _versions(leaves, p, warnings)
    kept, inode_rows, extent_rows, extent_version, notes = _version_rows(
        leaves, p, vp_start, vp_piece, np.diff(set_start)[version_set])
    del p, vp_start, vp_piece  # only the rows' indices are needed from here on
    inodes = take_fields(leaves.inodes, inode_rows, INODE_FIELDS)
    version_set = version_set[kept]
    holder_ids = leaves.subvol_ids[set_members]
    smallest = np.minimum.reduceat(holder_ids, set_start[:-1]) if len(holder_ids) else holder_ids
    inodes["subvol"] = smallest[version_set]
    return InodeVersions(
        inodes=inodes,
        extents=take_fields(leaves.extents, extent_rows, EXTENT_FIELDS),
        extent_version=extent_version,
        subvol_ids=leaves.subvol_ids,
        version_set=version_set,
        set_start=set_start,
        set_members=set_members,
        notes=notes,
        inode_rows=inode_rows,
    )


def _versions(leaves: LeafTables, p: _Pieces, warnings: Warnings | None):
    """Versions as lists of pieces (CSR ``vp_start``, ``vp_piece``), their holder multisets and those multisets."""
    leaf_ids = np.arange(leaves.n_leaves)
    per_leaf = prefix(np.bincount(p.leaf, minlength=leaves.n_leaves))
    fp, lp = per_leaf[:-1], per_leaf[1:] - 1  # first and last piece of each leaf
    has_rows = lp >= fp
    first_ino = p.ino[np.minimum(fp, max(len(p.ino) - 1, 0))] if len(p.ino) else np.zeros(len(fp), np.uint64)
    last_ino = p.ino[np.maximum(lp, 0)] if len(p.ino) else np.zeros(len(fp), np.uint64)
    occ_sv, occ_leaf = _ordered_occurrences(leaves, first_ino, last_ino, has_rows, warnings)
    n_occ = len(occ_leaf)

    # st[k]: the last inode of occurrence k continues into occurrence k+1
    st = np.zeros(n_occ, bool)
    if n_occ > 1:
        st[:-1] = (occ_sv[1:] == occ_sv[:-1]) & (last_ino[occ_leaf[:-1]] == first_ino[occ_leaf[1:]])
    sp = np.concatenate(([False], st[:-1])) if n_occ else st
    single = fp[occ_leaf] == lp[occ_leaf]
    first_whole = ~sp & (~st | ~single)
    last_whole = ~st & (~sp | ~single)

    # multisets of subvolumes: per leaf (all occurrences, first piece whole, last piece whole), then per chain
    by_leaf = np.lexsort((occ_sv, occ_leaf))
    group_leaf, group_values, group_sizes = [], [], []
    for mask in (np.ones(n_occ, bool), first_whole, last_whole):
        idx = by_leaf[mask[by_leaf]]
        lv, counts = np.unique(occ_leaf[idx], return_counts=True)
        group_leaf.append(lv)
        group_values.append(occ_sv[idx])
        group_sizes.append(counts)
    leaf_group = np.full((3, leaves.n_leaves), -1, I64)
    base = 0
    for which, lv in enumerate(group_leaf):
        leaf_group[which, lv] = base + np.arange(len(lv))
        base += len(lv)

    piece_group = leaf_group[0, p.leaf]
    piece_group[fp[has_rows]] = leaf_group[1, leaf_ids[has_rows]]
    last_only = has_rows & (lp != fp)
    piece_group[lp[last_only]] = leaf_group[2, leaf_ids[last_only]]

    chain_pieces, chain_start, chain_sizes, chain_values = _chains(
        st, occ_sv, occ_leaf, last_ino, fp, lp)

    single_pieces = np.flatnonzero(piece_group >= 0)
    version_group = np.concatenate((piece_group[single_pieces], base + np.arange(len(chain_sizes))))
    all_sizes = np.concatenate(group_sizes + [chain_sizes])
    sets, set_start, set_members = distinct_groups(prefix(all_sizes), np.concatenate(group_values + [chain_values]))
    version_set = sets[version_group]

    vp_start = np.concatenate((np.arange(len(single_pieces)), len(single_pieces) + chain_start[:-1]))
    vp_piece = np.concatenate((single_pieces, chain_pieces))
    return vp_start, vp_piece, version_set, set_start, set_members


def _chains(st, occ_sv, occ_leaf, last_ino, fp, lp):
    """Inodes spanning several leaves: their versions (distinct leaf sequences) and holders.

    Returns the pieces of each chain version (CSR: ``pieces``, ``start``
    with one more entry than versions), and per version the multiset of
    subvolumes holding it (``sizes``, ``values``).
    """
    bounds = np.flatnonzero(st)
    x = last_ino[occ_leaf[bounds]]
    cont = np.zeros(len(bounds), bool)
    if len(bounds) > 1:
        cont[1:] = (bounds[1:] == bounds[:-1] + 1) & (x[1:] == x[:-1])
    heads = np.flatnonzero(~cont)
    first_occ = bounds[heads]
    if not len(first_occ):
        empty = np.zeros(0, I64)
        return empty, np.zeros(1, I64), empty, empty
    last_occ = np.append(bounds[heads[1:] - 1], bounds[-1]) + 1
    seq, seq_first = group_ids(prefix(last_occ + 1 - first_occ), occ_leaf[ranges(first_occ, last_occ + 1)])
    # the pieces of each distinct sequence: last piece of its first leaf, then the first piece of the others
    rep = ranges(first_occ[seq_first], last_occ[seq_first] + 1)
    lengths = last_occ[seq_first] + 1 - first_occ[seq_first]
    at_head = np.zeros(len(rep), bool)
    at_head[prefix(lengths)[:-1]] = True
    pieces = np.where(at_head, lp[occ_leaf[rep]], fp[occ_leaf[rep]])
    # holders of each sequence: the subvolumes of its instances, sorted
    holder_order = np.lexsort((occ_sv[first_occ], seq))
    sizes = np.bincount(seq, minlength=len(seq_first)).astype(I64)
    return pieces, prefix(lengths), sizes, occ_sv[first_occ][holder_order]


def _version_rows(leaves: LeafTables, p: _Pieces, vp_start: np.ndarray, vp_piece: np.ndarray, weight: np.ndarray):
    """The rows making each version, keeping regular files with an inode item.

    Returns the kept versions, their inode rows, their extent rows, each
    extent row's index among the kept versions, and notes on what was dropped
    (counted once per (subvolume, inode)).
    """
    notes: list[str] = []
    n = len(vp_start)
    version_of = np.repeat(np.arange(n), np.diff(np.append(vp_start, len(vp_piece))))
    n_inodes = p.n_inodes[vp_piece]
    big = np.iinfo(I64).max
    pos = np.where(n_inodes > 0, np.arange(len(vp_piece)), big)
    first_pos = np.minimum.reduceat(pos, vp_start) if n else np.zeros(0, I64)
    has_inode = first_pos < big
    inode_row = np.where(has_inode, p.inode0[vp_piece[np.minimum(first_pos, len(vp_piece) - 1)]], -1) if n else first_pos
    extra = np.add.reduceat(n_inodes, vp_start) - 1 if n else np.zeros(0, I64)
    if (extra > 0).any():
        notes.append(f"{int((np.maximum(extra, 0) * weight).sum())} duplicate inode rows ignored")

    ext_rows = ranges(p.extent0[vp_piece], p.extent1[vp_piece])
    ext_version = np.repeat(version_of, p.extent1[vp_piece] - p.extent0[vp_piece])
    orphan = ~has_inode[ext_version]
    if orphan.any():
        notes.append(f"{int(weight[ext_version[orphan]].sum())} file extent items without an inode item ignored")

    mode = np.zeros(n, np.uint32)
    mode[has_inode] = leaves.inodes["mode"][inode_row[has_inode]]
    keep = has_inode & ((mode & S_IFMT) == S_IFREG)
    ext_keep = keep[ext_version]
    new_index = np.cumsum(keep) - 1
    return np.flatnonzero(keep), inode_row[keep], ext_rows[ext_keep], new_index[ext_version[ext_keep]], notes


def versions_of(tables: FileTables | LeafTables | InodeVersions, warnings: Warnings | None = None) -> InodeVersions:
    """Inode versions of any of the table forms (explicit per-subvolume rows share nothing)."""
    if isinstance(tables, InodeVersions):
        return tables
    if isinstance(tables, FileTables):
        tables = tables.as_leaves()
    return inode_versions(tables, warnings)
