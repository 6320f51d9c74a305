"""The cache-unit designs over a working set: figures from the resident pages their units key.

A design states its keys for every file read once (``cache.runs.KeyRuns``
over the image's layout, as :mod:`btrfsscan.cache.units` defines its units);
only the resident ones count (``ImageWorkingSet.resident_keys``; content ids are looked up for the
resident pages alone, ``ImageWorkingSet.content_keys``). Then, as
for shared_extent over a working set (:mod:`.pages`): a resident page keyed
by a unit is cached once per key, every other resident page on its own. Per
subvolume: its resident pages, fair-share saving, *exclusive* pages (keys
only its resident pages map, plus its pages cached on their own) and
*shared* pages (keys it maps with another subvolume). Top files are
residency rows, each on its own: snapshots' copies of one file are resident
independently, so their savings differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..arrays import I64, group_sum
from ..cache.coverage import run_sharing
from ..cache.runs import KeyRuns
from ..cache.units import DesignSubvolumes, DesignTopFile, UnitFigures
from .pages import subvolume_keys, top_rows

if TYPE_CHECKING:
    from ..cache.registry import ResidentInputs


def resident_unit_figures(name: str, inputs: ResidentInputs, keys: KeyRuns, *, by_content: bool) -> UnitFigures:
    """Design ``name``'s figures over the working set of ``inputs``, its units keying the resident pages
    ``keys`` (``KeyRuns`` of residency rows); ``by_content``: its units are content ids
    (``inputs.content``), whose unknown pages are counted."""
    ws = inputs.working_set  # the same residency rows as ``inputs.image``'s
    res, file_pages = ws.residency, ws.file_pages
    sharing = run_sharing(keys, np.ones(len(res), I64))
    per_inode = int(file_pages.sum())
    ids, row = res.subvolume_index
    nsv = len(ids)
    exclusive, shared = subvolume_keys(sharing, row, nsv)
    saved = sharing.inode_saved
    subvolumes = DesignSubvolumes(
        ids=ids, per_inode_pages=group_sum(row, file_pages, nsv), saved_pages=group_sum(row, saved, nsv, np.float64),
        exclusive_pages=exclusive + group_sum(row, file_pages - sharing.inode_eligible, nsv), shared_pages=shared,
    )
    top = [DesignTopFile(int(res.subvol[i]), int(res.ino[i]), int(res.size[i]), int(file_pages[i]), float(saved[i]), 0)
           for i in top_rows(res, saved, inputs.top)]
    return UnitFigures.of(name, res.page_size, per_inode, per_inode - sharing.saved_pages, subvolumes, top,
                          inputs.content if by_content else None, lambda: inputs.unknown_pages)
