"""The report by directory (``report --by-dir DEPTH``): cache figures summed per directory subtree.

Per entry of the ``model.directories`` tree (a subvolume's root, a directory
down to DEPTH levels below it, or the subvolume's unreachable inodes), over
the regular inodes in its subtree: ``files`` (sum of nlink, as the report
counts files; a hardlinked inode lies wholly in the directory of its first
link), ``inodes``, and pages under every model. A page a model caches once
for several file pages is split fairly among them (each of the ``c`` file
pages mapping it costs ``1/c``, the per-file figures' rule), so the pages of
a subvolume's root are its share of each model's total, and the roots of all
subvolumes sum to the totals. ``saved_pages`` = per_inode - shared_extent
pages.

The per-file pages of each model come from the registry
(``CacheModel.per_version``, through ``ModelInputs.version_pages``): a new
model that defines it appears here unchanged; a model that does not apply,
or gives no per-file figures, has None in every entry.

Each directory lists at most ``top`` children, largest (per_inode pages)
first; the others are folded into one *rest* entry. Directories without
regular files are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..model.directories import DirectoryTree, EntryKind
from .analyze import CacheAnalysis
from .registry import BASELINE, HEADLINE

#: The model whose saving ``saved_pages`` gives.
SAVING_MODEL = HEADLINE


@dataclass(frozen=True)
class DirEntry:
    """One line of the report by directory; ``parent`` indexes the list (-1 for a subvolume's root)."""

    kind: str  # "subvolume", "directory", "rest" (folded siblings) or "unreachable"
    subvol: int
    path: str | None  # from the top level (None for rest, unreachable, or a subvolume without a path)
    relpath: str | None  # below the subvolume's root ('' for it); None for rest and unreachable
    depth: int
    parent: int
    folded: int  # directories folded into a rest entry (0 otherwise)
    files: int
    inodes: int
    pages: dict[str, float | None]
    saved_pages: float
    saved_pct: float  # saved_pages / per_inode pages * 100 (0 when there are none)


@dataclass(frozen=True)
class ByDir:
    """The report by directory: entries down to ``depth`` levels, at most ``top`` children each (None: all)."""

    depth: int
    top: int | None
    entries: tuple[DirEntry, ...]


def version_pages(analysis: CacheAnalysis) -> dict[str, np.ndarray | None]:
    """Pages of one copy of each inode version under every model of ``analysis`` (fair share); None where a
    model does not apply or gives no per-file figures."""
    return {name: analysis.inputs.version_pages(name) for name in analysis.models}


def _sums(groups: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per group < n, the sums of the rows of ``values`` (float64 even when nothing is summed)."""
    out = np.zeros((n, values.shape[1]))
    for k in range(values.shape[1]):
        out[:, k] = np.bincount(groups, values[:, k], n)
    return out


def _subtree_sums(tree: DirectoryTree, columns: np.ndarray) -> np.ndarray:
    """Per entry, the sum of ``columns`` (versions x figures) over its subtree."""
    groups = _sums(tree.version_group, columns, tree.n_groups)
    own = _sums(tree.pair_entry, groups[tree.pair_group], tree.n_entries)
    for level in range(int(tree.level.max()) if tree.n_entries else 0, 0, -1):
        at = np.flatnonzero(tree.level == level)
        own += _sums(tree.parent[at], own[at], tree.n_entries)
    return own


def by_directory(tree: DirectoryTree, analysis: CacheAnalysis, top: int | None,
                 subvol_paths: Mapping[int, str | None]) -> ByDir:
    """The entries of ``tree`` with their figures, depth first, children largest first (at most ``top`` each).

    ``subvol_paths``: each subvolume's path from the top level ('' for the top level itself).
    """
    per_version = version_pages(analysis)
    names = [name for name, pages in per_version.items() if pages is not None]
    layout = analysis.layout
    columns = np.stack([layout.nlink.astype(np.float64), np.ones(layout.n_inodes)] + [per_version[n] for n in names],
                       axis=1) if layout.n_inodes else np.zeros((0, 2 + len(names)))
    sums = _subtree_sums(tree, columns)
    base = 2 + names.index(BASELINE)
    size = sums[:, base]
    # children ranked per directory in numpy; only the kept ones reach Python
    kind = tree.kind
    ranked = np.flatnonzero((sums[:, 1] > 0) & (kind == EntryKind.DIRECTORY))
    ranked = ranked[np.lexsort((ranked, -size[ranked], tree.parent[ranked]))]
    parent_of = tree.parent[ranked]
    rank = np.arange(len(ranked)) - np.searchsorted(parent_of, parent_of)
    over = rank >= top if top is not None else np.zeros(len(ranked), bool)
    rest_sums = _sums(parent_of[over], sums[ranked[over]], tree.n_entries)
    rest_count = np.bincount(parent_of[over], minlength=tree.n_entries).tolist()
    unreachable = np.flatnonzero((sums[:, 1] > 0) & (kind == EntryKind.UNREACHABLE))
    kept = np.concatenate((ranked[~over], unreachable))
    kept = kept[np.lexsort((kept, -size[kept]))]
    children: dict[int, list[int]] = {}
    for e, p in zip(kept.tolist(), tree.parent[kept].tolist()):
        children.setdefault(p, []).append(e)
    is_unreachable = (kind == EntryKind.UNREACHABLE).tolist()
    level = tree.level.tolist()
    sv_of = tree.subvol.tolist()
    subvol_ids = analysis.layout.versions.subvol_ids
    out: list[DirEntry] = []

    def entry(kind: str, sv: int, relpath: str | None, depth: int, parent: int, folded: int,
              figures: np.ndarray) -> int:
        pages: dict[str, float | None] = {name: None for name in per_version}
        pages.update(zip(names, (float(x) for x in figures[2:])))
        today = figures[base]
        saved = float(today - figures[2 + names.index(SAVING_MODEL)]) if SAVING_MODEL in names else 0.0
        sid = int(subvol_ids[sv])
        root = subvol_paths.get(sid)
        path = None if relpath is None or root is None else "/".join(p for p in (root, relpath) if p)
        out.append(DirEntry(kind, sid, path, relpath, depth, parent, folded, int(round(figures[0])),
                            int(round(figures[1])), pages, saved, 100.0 * saved / today if today else 0.0))
        return len(out) - 1

    def visit(e: int, index: int, relpath: str) -> None:
        for k in children.get(e, ()):
            if is_unreachable[k]:
                entry("unreachable", sv_of[k], None, 1, index, 0, sums[k])
                continue
            name = tree.name(k) or ""
            path = f"{relpath}/{name}" if relpath else name
            visit(k, entry("directory", sv_of[k], path, level[k], index, 0, sums[k]), path)
        if rest_count[e]:
            entry("rest", sv_of[e], None, level[e] + 1, index, rest_count[e], rest_sums[e])

    for sv in range(len(subvol_ids)):
        if sums[sv, 1] > 0:
            visit(sv, entry("subvolume", sv, "", 0, -1, 0, sums[sv]), "")
    return ByDir(tree.depth, top, tuple(out))
