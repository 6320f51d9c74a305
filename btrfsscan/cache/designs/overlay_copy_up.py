"""``overlay_copy_up``: what overlayfs gives containers built from image layers.

The subvolumes holding one inode number with the same data (same ``i_size``;
every page backed by the same logical addresses, the same inline data, or a
hole or prealloc range at the same place) read one lower file: one cache unit
per (ino, i_size, mapping). A version changed in any data byte has another
mapping: it was copied up and is cached on its own, in full. Different inodes
never share, reflinked or not; metadata (mode, owner, times, xattrs) does not
count (``metacopy``). Needs no content source.
"""

from __future__ import annotations

import numpy as np

from ...arrays import I64, group_ids, prefix
from ...workingset.units import resident_unit_figures
from ..layout import SEG_COMPRESSED, SEG_DATA, SEG_HOLE, SEG_INLINE, SEG_PREALLOC, PageLayout
from ..mappings import DistinctMappings
from ..registry import CacheModel, ModelInputs, ResidentInputs
from ..units import CacheUnits, UnitFigures, file_unit_runs, file_units, unit_figures


def _runs(layout: PageLayout, inline_data: bool) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The runs of segments ``overlay_copy_up`` compares (hole segments left out, adjacent pieces of one
    extent merged, adjacent prealloc segments merged): the version of each, and per run its file range
    (start, end), kind and backing (data: logical address; compressed: extent and decompressed offset;
    inline: its compression and hash, or without ``inline_data`` the version itself; prealloc: none, it
    reads as zeros, so like a hole it is compared by its place in the file). Runs in version order, each
    version's in file order."""
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
    # inline data compressed in one version and not in another was rewritten (FIEMAP: ENCODED or not), even
    # where the scan hashed both decompressed (--read-data): the algorithm is part of the inline backing
    kind = np.where(inline, kind + (ext["compression"][rows].astype(I64) << 8), kind)
    by_address = (kind == SEG_DATA) | (kind == SEG_COMPRESSED)
    joins = np.zeros(len(inode), bool)
    if len(inode) > 1:
        step = (addr[1:] - addr[:-1]) == (e[:-1] - s[:-1])
        continues = (by_address[1:] & step & ((kind[1:] != SEG_COMPRESSED) | (db[1:] == db[:-1]))) | \
            (kind[1:] == SEG_PREALLOC)
        joins[1:] = (inode[1:] == inode[:-1]) & (s[1:] == e[:-1]) & (kind[1:] == kind[:-1]) & continues
    first = np.flatnonzero(~joins)
    last = np.append(first[1:], len(inode))[:len(first)] - 1
    return inode[first], (s[first], e[last], kind[first], backing0[first], backing1[first])


def overlay_mapping(layout: PageLayout, inline_data: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per version the mapping (CSR starts, values) that ``overlay_copy_up`` compares: i_size, then per
    run of segments (``_runs``) its file range, kind and backing."""
    run_inode, fields = _runs(layout, inline_data)
    n_runs = np.bincount(run_inode, minlength=layout.n_inodes)
    starts = prefix(1 + len(fields) * n_runs)
    values = np.empty(int(starts[-1]), I64)
    values[starts[:-1]] = layout.size
    at = starts[run_inode] + 1 + len(fields) * (np.arange(len(run_inode)) - prefix(n_runs)[run_inode])
    for i, column in enumerate(fields):
        values[at + i] = column
    return starts, values


def overlay_units(layout: PageLayout, mappings: DistinctMappings, inline_data: bool = True) -> CacheUnits:
    """One unit per (ino, i_size, mapping). The mappings are compared once per distinct mapping
    (``mappings``, versions with identical segments), then paired with each version's inode number.
    ``inline_data=False`` where inline bytes are not in the input (a btrfs-image dump): a version with an
    inline extent then shares only with itself (its snapshots' copies)."""
    distinct = mappings.layout
    mapping, _ = group_ids(*overlay_mapping(distinct, inline_data))
    n = layout.n_inodes
    mapping = mapping[mappings.of_version]
    if not inline_data:  # an inline version: a mapping of its own
        inline = np.bincount(distinct.seg_inode[distinct.seg_kind == SEG_INLINE], minlength=distinct.n_inodes) > 0
        mapping = np.where(inline[mappings.of_version], int(mapping.max(initial=0)) + 1 + np.arange(n), mapping)
    shift = int(mapping.max(initial=0)).bit_length()
    if int(layout.ino.max(initial=0)).bit_length() + shift <= 63:  # (ino, mapping) packs into one key
        ids = (layout.ino.astype(I64) << shift) | mapping
    else:
        ids, _ = group_ids(np.arange(n + 1, dtype=I64) * 2, np.stack((layout.ino.astype(I64), mapping), 1).reshape(-1))
    return file_units(layout, ids, np.ones(n, bool))


def figures(layout: PageLayout, mappings: DistinctMappings, top: int = 10, inline_data: bool = True) -> UnitFigures:
    """overlayfs copy-up: the figures of ``overlay_units``; needs no content source."""
    return unit_figures("overlay_copy_up", layout, overlay_units(layout, mappings, inline_data), top, None)


def _figures(inputs: ModelInputs) -> UnitFigures:
    return figures(inputs.layout, inputs.mappings, inputs.top, inputs.facts.inline_data)


def _resident(inputs: ResidentInputs) -> UnitFigures:
    units = overlay_units(inputs.image.layout, inputs.mappings, inputs.facts.inline_data)
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
