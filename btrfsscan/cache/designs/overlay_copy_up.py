"""``overlay_copy_up``: what overlayfs gives containers built from image layers.

The subvolumes holding one inode number with the same data (same ``i_size``;
every page backed by the same logical addresses, the same inline data, or a
hole at the same place) read one lower file: one cache unit per (ino, i_size,
mapping). A version changed in any data byte has another mapping: it was
copied up and is cached on its own, in full. Different inodes never share,
reflinked or not; metadata (mode, owner, times, xattrs) does not count
(``metacopy``). Needs no content source.
"""

from __future__ import annotations

import numpy as np

from ...arrays import I64, group_ids, prefix
from ...workingset.units import resident_unit_figures
from ..layout import SEG_COMPRESSED, SEG_DATA, SEG_HOLE, SEG_INLINE, SEG_PREALLOC, PageLayout
from ..registry import CacheModel, ModelInputs, ResidentInputs
from ..units import CacheUnits, UnitFigures, file_unit_runs, file_units, unit_figures


def overlay_mapping(layout: PageLayout, inline_data: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per version the sequence (CSR starts, values) that ``overlay_copy_up`` compares: ino, i_size, then
    per run of segments (hole segments left out, adjacent pieces of one extent merged) its file range,
    kind and backing (logical address; compressed: extent and decompressed offset; inline: its hash, or
    without ``inline_data`` the version itself: only unchanged inodes compare equal)."""
    keep = layout.seg_kind != SEG_HOLE
    inode = layout.seg_inode[keep]
    s, e, kind = layout.seg_start[keep], layout.seg_end[keep], layout.seg_kind[keep].astype(I64)
    rows = layout.seg_row[keep]
    ext = layout.versions.extents
    addr = layout.seg_addr[keep]
    db = ext["disk_bytenr"][rows].astype(I64)
    words = np.ascontiguousarray(ext["inline_hash"][rows]).view("<u8").reshape(-1, 2).astype(I64)
    inline = kind == SEG_INLINE
    if not inline_data:
        words[:, 0], words[:, 1] = -1 - inode, 0
    backing0 = np.where(inline, words[:, 0], np.where(kind == SEG_COMPRESSED, db, addr))
    backing1 = np.where(inline, words[:, 1], np.where(kind == SEG_COMPRESSED, addr, 0))
    by_address = (kind == SEG_DATA) | (kind == SEG_PREALLOC) | (kind == SEG_COMPRESSED)
    joins = np.zeros(len(inode), bool)
    if len(inode) > 1:
        step = (addr[1:] - addr[:-1]) == (e[:-1] - s[:-1])
        joins[1:] = ((inode[1:] == inode[:-1]) & (s[1:] == e[:-1]) & (kind[1:] == kind[:-1]) & by_address[1:]
                     & step & ((kind[1:] != SEG_COMPRESSED) | (db[1:] == db[:-1])))
    first = np.flatnonzero(~joins)
    last = np.append(first[1:], len(inode))[:len(first)] - 1
    run_inode = inode[first]
    fields = np.stack((s[first], e[last], kind[first], backing0[first], backing1[first]), axis=1)
    n_runs = np.bincount(run_inode, minlength=layout.n_inodes)
    starts = prefix(2 + 5 * n_runs)
    values = np.empty(int(starts[-1]), I64)
    values[starts[:-1]] = layout.ino.astype(I64)
    values[starts[:-1] + 1] = layout.size
    at = starts[run_inode] + 2 + 5 * (np.arange(len(run_inode)) - prefix(n_runs)[run_inode])
    values[at[:, None] + np.arange(5)] = fields
    return starts, values


def overlay_units(layout: PageLayout, inline_data: bool = True) -> CacheUnits:
    """One unit per (ino, i_size, mapping). ``inline_data=False`` where inline bytes are not in the input
    (a btrfs-image dump)."""
    ids, _ = group_ids(*overlay_mapping(layout, inline_data))
    return file_units(layout, ids, np.ones(layout.n_inodes, bool))


def figures(layout: PageLayout, top: int = 10, inline_data: bool = True) -> UnitFigures:
    """overlayfs copy-up: the figures of ``overlay_units``; needs no content source."""
    return unit_figures("overlay_copy_up", layout, overlay_units(layout, inline_data), top, None)


def _figures(inputs: ModelInputs) -> UnitFigures:
    return figures(inputs.layout, inputs.top, inputs.facts.inline_data)


def _resident(inputs: ResidentInputs) -> UnitFigures:
    units = overlay_units(inputs.image.layout, inputs.facts.inline_data)
    keys = inputs.image.resident_keys(file_unit_runs(units))
    return resident_unit_figures("overlay_copy_up", inputs, keys, by_content=False)


MODEL = CacheModel(
    name="overlay_copy_up",
    title="overlayfs copy-up",
    subject="overlayfs copy-up",
    design="one lower file per inode number and data, shared by every container reading it unmodified; a file "
           "changed in any data byte is copied up and cached on its own; different inodes never share",
    needs="image layers, copy-up on write",
    pages=_figures,
    resident=_resident,
    resident_requires={"extent_items": "the files' extent items (FIEMAP gives no inline data, and only the start "
                                       "of a compressed extent)"},
    order=40,
)
