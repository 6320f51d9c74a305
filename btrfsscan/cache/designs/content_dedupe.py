"""``content_dedupe``: every page keyed by its content, identical pages cached once (KSM for the page cache).

Holes and prealloc are the zero page, cached once; unknown pages are cached
per inode. No design can beat it: an ideal bound, not a design.
"""

from __future__ import annotations

import numpy as np

from ...arrays import I64
from ...workingset.units import resident_unit_figures
from ..content import UNKNOWN, PageContent
from ..layout import PageLayout
from ..registry import CacheModel, ModelInputs, ResidentInputs
from ..units import CacheUnits, UnitFigures, unit_figures


def figures(layout: PageLayout, content: PageContent, top: int = 10) -> UnitFigures:
    """Page-content dedupe: one unit per content id (the zero page included); unknown pages alone.
    Holders are the distinct mappings the content ids were computed for."""
    ids = content.page_id
    n = content.pages.layout.n_inodes
    page_holder = content.page_mapping
    known = ids != UNKNOWN
    alone = np.bincount(page_holder[~known], minlength=n)  # a compacted gap is never unknown
    # a holder maps unit ``id`` once per page (a compacted gap: once per page it stands for), duplicates
    # summed by the bincounts downstream
    unit = ids[known]
    units = CacheUnits(page_holder[known], unit, content.weight[known], np.ones(int(ids.max(initial=0)) + 1, I64),
                       alone, content.mappings.of_version)
    return unit_figures("content_dedupe", layout, units, top, content)


def _figures(inputs: ModelInputs) -> UnitFigures:
    return figures(inputs.layout, inputs.content, inputs.top)


def _resident(inputs: ResidentInputs) -> UnitFigures:
    """Resident pages of known content once per content id; unknown ones each alone."""
    return resident_unit_figures("content_dedupe", inputs, inputs.content_keys, by_content=True)


MODEL = CacheModel(
    name="content_dedupe",
    title="page-content dedupe",
    subject="page-content dedupe",
    design="every page keyed by its content, identical pages cached once; holes and prealloc are the zero page",
    needs="hashing every page: an ideal, not a design",
    pages=_figures,
    order=60,
    bound=True,
    requires={"content": "content ids per page"},
    resident=_resident,
    resident_requires={"extent_items": "the files' extent items"},
)
