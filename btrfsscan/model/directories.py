"""Which directory near the top of its subvolume holds each regular inode: the tree behind ``report --by-dir``.

Every subvolume's directories down to ``depth`` levels below its root are
*entries*; a regular inode belongs to the entry of the directory holding it
(its first link, in key order, as ``Namespace.path_of`` takes it), or, when
that directory lies deeper, to its ancestor ``depth`` levels down. Inodes
whose directory cannot be reached from the root (orphans, a broken chain)
belong to their subvolume's *unreachable* entry.

It works on inode versions (``model.versions``): the link item of an inode
sits right after its INODE_ITEM, in the same leaf — then every subvolume
holding the version sees the same parent directory and versions with the
same holders and parent form one *group* —, or first in the next leaf of each
holder's tree, looked up holder by holder. Directories are per subvolume (a
snapshot may have renamed one), so a group is attributed to one entry per
holder. The cost follows the versions and the directories, not the number of
(subvolume, inode) pairs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..arrays import I64, distinct_inverse, prefix, ranges
from .links import LinkTable, LinkTarget
from .namespace import MAX_PATH_DEPTH, ROOT_DIR_INO
from .tables import LeafTables
from .versions import InodeVersions

#: Objectids pack with a leaf or subvolume index into one int64 sort key below this many bits;
#: a link to or from a larger objectid (only in a corrupt tree) reads as unreachable.
_INO_BITS = 40
_INO_LIMIT = np.uint64(1 << _INO_BITS)
_POINTER_JUMPS = int(np.ceil(np.log2(MAX_PATH_DEPTH))) + 1


class EntryKind(enum.IntEnum):
    ROOT = 0
    DIRECTORY = 1
    UNREACHABLE = 2


@dataclass
class DirectoryTree:
    """Entries (root, unreachable, then directories) and the attribution of inode versions to them.

    Entry ``e``: subvolume index ``subvol[e]`` (into ``versions.subvol_ids``),
    ``level[e]`` (0 for roots, 1 for unreachable), ``parent[e]`` (-1 for
    roots), its name row in ``links`` (``name_row[e]``, -1 without one).
    Version ``v`` is in group ``version_group[v]``; each holder's copy of
    group ``pair_group[k]`` belongs to entry ``pair_entry[k]``.
    """

    depth: int
    kind: np.ndarray
    subvol: np.ndarray
    level: np.ndarray
    parent: np.ndarray
    name_row: np.ndarray
    links: LinkTable
    version_group: np.ndarray
    pair_group: np.ndarray
    pair_entry: np.ndarray

    @property
    def n_entries(self) -> int:
        return len(self.kind)

    @property
    def n_groups(self) -> int:
        return int(self.version_group.max()) + 1 if len(self.version_group) else 0

    def name(self, entry: int) -> str | None:
        row = int(self.name_row[entry])
        return None if row < 0 else self.links.name(row).decode("utf-8", "surrogateescape")

    def relpath(self, entry: int) -> str | None:
        """The entry's path below its subvolume's root ('' for the root, None for unreachable)."""
        parts: list[str] = []
        while self.kind[entry] == EntryKind.DIRECTORY:
            parts.append(self.name(entry) or "")
            entry = int(self.parent[entry])
        return None if self.kind[entry] == EntryKind.UNREACHABLE else "/".join(reversed(parts))


def _lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index of the first of ``keys`` (sorted) equal to each of ``wanted``, or -1."""
    at = np.searchsorted(keys, wanted)
    ok = at < len(keys)
    ok[ok] = keys[at[ok]] == wanted[ok]
    return np.where(ok, at, -1)


def _at(values: np.ndarray, index: np.ndarray, missing) -> np.ndarray:
    """``values[index]``, ``missing`` where ``index`` is -1 (``values`` may be empty)."""
    out = np.full(len(index), missing, values.dtype)
    found = index >= 0
    out[found] = values[index[found]]
    return out


def _pack(major: np.ndarray, ino: np.ndarray) -> np.ndarray:
    """``major << 40 | ino``; objectids past the limit become 0 (no inode has it)."""
    ino = np.where(ino < _INO_LIMIT, ino, 0).astype(I64)
    return (np.asarray(major, I64) << _INO_BITS) | ino


def _link_leaf(links: LinkTable) -> np.ndarray:
    return np.repeat(np.arange(len(links.start) - 1, dtype=I64), np.diff(links.start))


def _directories(leaves: LeafTables, links: LinkTable, link_leaf: np.ndarray, depth: int):
    """Every subvolume's possible directories: (keys, rows, level, label) per (subvolume, directory).

    ``label`` is the row of the directory itself when its level is at most
    ``depth``, else of its ancestor at ``depth`` levels; -1 when it does not
    reach the root.
    """
    cand = np.flatnonzero(links.rows["target"] != LinkTarget.FILE)
    start = prefix(np.bincount(link_leaf[cand], minlength=leaves.n_leaves))
    occ = leaves.subvol_leaves
    occ_sv = np.repeat(np.arange(len(leaves.subvol_ids), dtype=I64), np.diff(leaves.subvol_start))
    rows = cand[ranges(start[occ], start[occ + 1])]
    sv = np.repeat(occ_sv, start[occ + 1] - start[occ])
    ino, parent = links.rows["ino"][rows], links.rows["parent"][rows]
    keys = _pack(sv, ino)
    if len(keys) > 1 and (keys[1:] < keys[:-1]).any():  # leaves out of key order (a corrupt tree)
        order = np.argsort(keys, kind="stable")
        keys, rows, sv, ino, parent = keys[order], rows[order], sv[order], ino[order], parent[order]
    up = _lookup(keys, _pack(sv, parent))
    n = len(keys)
    level = np.full(n, -1, I64)
    level[ino == ROOT_DIR_INO] = 0
    up[ino == ROOT_DIR_INO] = -1
    for d in range(1, depth + 1):
        has_up = up >= 0
        grow = has_up & (level < 0)
        grow[grow] = level[up[grow]] == d - 1
        level[grow] = d
    parent_row = up.copy()
    label = np.where(level >= 0, np.arange(n), up)
    for _ in range(_POINTER_JUMPS):  # follow parents by doubling until a directory at a kept level
        moving = label >= 0
        moving[moving] = level[label[moving]] < 0
        if not moving.any():
            break
        label[moving] = label[label[moving]]
    bad = label >= 0
    bad[bad] = level[label[bad]] < 0
    label[bad] = -1  # a cycle (a corrupt tree)
    return keys, rows, sv, level, parent_row, label


def directory_tree(leaves: LeafTables, versions: InodeVersions, depth: int) -> DirectoryTree:
    """Entries down to ``depth`` levels and each version's attribution; ``versions`` made from ``leaves``."""
    if leaves.links is None or versions.inode_rows is None:
        raise ValueError("directory_tree needs leaves scanned with links=True and their inode versions")
    if depth < 0:
        raise ValueError(f"depth must be >= 0 ({depth})")
    links = leaves.links
    nsv = len(versions.subvol_ids)
    link_leaf = _link_leaf(links)
    link_keys = _pack(link_leaf, links.rows["ino"])
    keys, rows, dir_sv, level, parent_row, label = _directories(leaves, links, link_leaf, depth)

    # entries: roots, unreachable, then the kept directories (level >= 1)
    kept = np.flatnonzero(level >= 1)
    entry_of_row = np.full(len(keys) + 1, -1, I64)  # index -1 (no directory) maps to -1
    roots = np.flatnonzero(level == 0)
    entry_of_row[roots] = dir_sv[roots]
    entry_of_row[kept] = 2 * nsv + np.arange(len(kept))
    sv_index = np.arange(nsv, dtype=I64)
    kind = np.concatenate((np.full(nsv, EntryKind.ROOT), np.full(nsv, EntryKind.UNREACHABLE),
                           np.full(len(kept), EntryKind.DIRECTORY))).astype(np.uint8)
    entry_sv = np.concatenate((sv_index, sv_index, dir_sv[kept]))
    entry_level = np.concatenate((np.zeros(nsv, I64), np.ones(nsv, I64), level[kept]))
    entry_parent = np.concatenate((np.full(nsv, -1, I64), sv_index, entry_of_row[parent_row[kept]]))
    entry_name = np.concatenate((np.full(2 * nsv, -1, I64), rows[kept]))

    def entry_of(sv: np.ndarray, parent: np.ndarray) -> np.ndarray:
        """The entry holding an inode of subvolume ``sv`` whose directory is ``parent``."""
        row = _lookup(keys, _pack(sv, parent))
        e = entry_of_row[_at(label, row, -1)]
        return np.where(e >= 0, e, nsv + sv)

    # the common case: the link lies in the leaf of the version's INODE_ITEM
    inode_leaf = np.searchsorted(leaves.inode_start, versions.inode_rows, side="right") - 1
    ino = versions.inodes["ino"]
    at = _lookup(link_keys, _pack(inode_leaf, ino))
    found = at >= 0
    parent = _at(links.rows["parent"], at, 0)
    sets = versions.version_set
    group_key = np.where(found, (sets.astype(I64) << _INO_BITS) | _pack(0, parent), -1 - np.arange(len(ino)))
    version_group = distinct_inverse(group_key)[1]
    n_groups = int(version_group.max()) + 1 if len(version_group) else 0
    group_version = np.zeros(n_groups, I64)
    group_version[version_group] = np.arange(len(ino))

    # every group's holders: (group, subvolume index, parent)
    g_set = sets[group_version]
    sizes = versions.set_sizes[g_set]
    pair_group = np.repeat(np.arange(n_groups, dtype=I64), sizes)
    pair_sv = versions.set_members[ranges(versions.set_start[g_set], versions.set_start[g_set] + sizes)]
    pair_version = group_version[pair_group]
    pair_parent = parent[pair_version]
    # elsewhere: the first item of the next leaf of each holder's tree
    alone = ~found[pair_version]
    if alone.any():
        pair_parent[alone] = _next_leaf_parents(leaves, link_keys, links, inode_leaf[pair_version[alone]],
                                                pair_sv[alone], ino[pair_version[alone]])
    pair_entry = entry_of(pair_sv, pair_parent)
    return DirectoryTree(
        depth=depth, kind=kind, subvol=entry_sv, level=entry_level, parent=entry_parent, name_row=entry_name,
        links=links, version_group=version_group, pair_group=pair_group, pair_entry=pair_entry,
    )


def _next_leaf_parents(leaves: LeafTables, link_keys: np.ndarray, links: LinkTable, leaf: np.ndarray,
                       sv: np.ndarray, ino: np.ndarray) -> np.ndarray:
    """The parent named by ``ino``'s link in the leaf after ``leaf`` in subvolume ``sv``'s tree (0: none)."""
    occ_sv = np.repeat(np.arange(len(leaves.subvol_ids), dtype=I64), np.diff(leaves.subvol_start))
    occ_key = occ_sv * max(leaves.n_leaves, 1) + leaves.subvol_leaves
    order = np.argsort(occ_key, kind="stable")
    pos = order[np.minimum(np.searchsorted(occ_key[order], sv * max(leaves.n_leaves, 1) + leaf),
                           max(len(order) - 1, 0))] if len(order) else np.zeros(len(leaf), I64)
    nxt = pos + 1
    ok = nxt < leaves.subvol_start[sv + 1]
    next_leaf = leaves.subvol_leaves[np.minimum(nxt, max(len(leaves.subvol_leaves) - 1, 0))]
    at = _lookup(link_keys, _pack(next_leaf, ino))
    return _at(links.rows["parent"], np.where(ok, at, -1), 0)
