"""``content_dedupe``: every page keyed by its content, identical pages cached once (KSM for the page cache).

Holes and prealloc are the zero page, cached once; unknown pages are cached
per inode. No design can beat it: an ideal bound, not a design.
"""

from __future__ import annotations

import numpy as np

from ...arrays import I64, group_sum
from ..content import UNKNOWN, PageContent
from ..layout import PageLayout
from ..registry import CacheModel, ModelInputs, ResidentInputs
from ..runs import KeyRuns
from ..units import CacheUnits, UnitFigures, unit_figures


def figures(layout: PageLayout, content: PageContent, top: int = 10) -> UnitFigures:
    """Page-content dedupe: one unit per content id (the zero page included); unknown pages alone."""
    ids = content.page_id
    n = layout.n_inodes
    page_version = np.repeat(np.arange(n), layout.npages)
    known = ids != UNKNOWN
    # ids are dense: a version maps unit ``id`` once per page, duplicates summed by the bincounts downstream
    alone = group_sum(page_version[~known], np.ones(int((~known).sum()), I64), n)
    version = page_version[known]
    unit = ids[known]
    return unit_figures("content_dedupe", layout, CacheUnits(version, unit, np.ones(len(unit), I64),
                                                      np.ones(int(ids.max(initial=0)) + 1, I64), alone), top, content)


def _figures(inputs: ModelInputs) -> UnitFigures:
    return figures(inputs.layout, inputs.content, inputs.top)


def _resident(inputs: ResidentInputs) -> int:
    """Resident pages of known content once per content id; unknown ones each alone."""
    layout = inputs.image.layout
    ids = inputs.content.page_id
    known = np.flatnonzero(ids != UNKNOWN)
    version = np.repeat(np.arange(layout.n_inodes), layout.npages)[known]
    runs = KeyRuns(version, known - layout.base[version], ids[known], np.ones(len(known), I64))
    return inputs.result("per_inode").pages - inputs.image.saved_by(runs)


MODEL = CacheModel(
    name="content_dedupe",
    title="page-content dedupe",
    subject="page-content dedupe",
    design="every page keyed by its content, identical pages cached once; holes and prealloc are the zero page",
    needs="hashing every page (an ideal, not a design)",
    pages=_figures,
    order=60,
    bound=True,
    requires={"content": "content ids per page"},
    resident=_resident,
    resident_requires={"extent_items": "the files' extent items"},
)
