"""``file_fingerprint``: EROFS page-cache sharing (Linux 7.0) by a fingerprint of each file's content.

Regular files with identical content (``i_size`` and every page's content
id) are one cache unit, whatever their inodes or extents; a file with an
unknown page is cached per inode.
"""

from __future__ import annotations

import numpy as np

from ...arrays import I64, group_ids, prefix
from ...workingset.units import resident_unit_figures
from ..content import UNKNOWN, ZERO, PageContent
from ..layout import PageLayout
from ..registry import CacheModel, ModelInputs, ResidentInputs
from ..units import CacheUnits, UnitFigures, file_unit_runs, file_units, unit_figures


def fingerprint_units(layout: PageLayout, content: PageContent) -> CacheUnits:
    """One unit per (i_size, content of every page); files with an unknown page alone. Fingerprints are
    compared once per distinct mapping, as i_size and every page's content id; where holes were
    compacted (``cache.sparse``), a run of zero pages is one token, its length (so a compacted hole and
    written zeros compare equal)."""
    ids = content.page_id
    compact = content.pages.layout
    n = compact.n_inodes
    holder = content.page_mapping
    known = np.bincount(holder, ids == UNKNOWN, n) == 0
    tokens, n_tokens = ids, compact.npages
    if len(content.pages.gap_page):  # holes compacted: every page's id would not compare them
        zero = ids == ZERO
        joins = np.zeros(len(ids), bool)
        joins[1:] = zero[1:] & zero[:-1] & (holder[1:] == holder[:-1])
        first = np.flatnonzero(~joins)
        lengths = np.add.reduceat(content.weight, first)
        tokens = np.where(zero[first], -1 - lengths, ids[first])  # a zero run: <= -2, apart from UNKNOWN
        n_tokens = np.bincount(holder[first], minlength=n)
    starts = prefix(n_tokens + 1)
    values = np.empty(int(starts[-1]), I64)
    values[starts[:-1]] = content.mappings.layout.size
    body = np.ones(len(values), bool)
    body[starts[:-1]] = False
    values[body] = tokens
    fingerprint, _ = group_ids(starts, values)
    of = content.mappings.of_version
    return file_units(layout, fingerprint[of], known[of])


def figures(layout: PageLayout, content: PageContent, top: int = 10) -> UnitFigures:
    """EROFS fingerprints: the figures of ``fingerprint_units``."""
    return unit_figures("file_fingerprint", layout, fingerprint_units(layout, content), top, content)


def _figures(inputs: ModelInputs) -> UnitFigures:
    return figures(inputs.layout, inputs.content, inputs.top)


def _resident(inputs: ResidentInputs) -> UnitFigures:
    units = fingerprint_units(inputs.image.layout, inputs.content)
    keys = inputs.image.resident_keys(file_unit_runs(units))
    return resident_unit_figures("file_fingerprint", inputs, keys, by_content=True)


MODEL = CacheModel(
    name="file_fingerprint",
    title="EROFS file fingerprints",
    subject="EROFS file fingerprints",
    design="files with identical content (same size, same bytes) share their page cache, whatever their inodes",
    needs="read-only EROFS images, fingerprint xattrs, Linux 7.0+",
    pages=_figures,
    resident=_resident,
    order=50,
    requires={"content": "content ids per page"},
    resident_requires={"extent_items": "the files' extent items"},
)
