"""``shared_extent_compressed``: as ``shared_extent``, compressed extents cached once as well."""

from __future__ import annotations

import numpy as np

from ..layout import SEG_COMPRESSED
from ..registry import CacheModel, ModelInputs, ResidentInputs
from ..runs import eligible_runs


def _pages(inputs: ModelInputs) -> int:
    """``shared_extent`` less what keying eligible compressed pages by ``(disk_bytenr, decompressed
    page index)`` saves."""
    return inputs.result("shared_extent").pages - inputs.compressed_sharing.saved_pages


def _resident(inputs: ResidentInputs) -> int:
    """Over the resident pages: the same keys, from the image's extent items (FIEMAP gives a compressed
    extent's start, not where in its decompressed data a file's pages lie)."""
    layout = inputs.image.layout
    return inputs.result("shared_extent").pages - inputs.image.saved_by(eligible_runs(layout, SEG_COMPRESSED))


def _per_version(inputs: ModelInputs) -> np.ndarray:
    return inputs.version_pages("shared_extent") - inputs.compressed_sharing.inode_saved


MODEL = CacheModel(
    name="shared_extent_compressed",
    title="shared-extent, compressed too",
    subject="caching compressed extents once as well",
    design="as shared_extent, and decompressed pages of compressed extents are cached once per extent",
    pages=_pages,
    resident=_resident,
    resident_requires={"extent_items": "where in its compressed extent each file's data lies (FIEMAP gives only "
                                       "the extent's start)"},
    order=20,
    per_version=_per_version,
)
