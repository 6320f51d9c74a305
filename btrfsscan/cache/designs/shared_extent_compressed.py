"""``shared_extent_compressed``: as ``shared_extent``, compressed extents cached once as well."""

from __future__ import annotations

import numpy as np

from ..registry import CacheModel, ModelInputs


def _pages(inputs: ModelInputs) -> int:
    """``shared_extent`` less what keying eligible compressed pages by ``(disk_bytenr, decompressed
    page index)`` saves."""
    return inputs.result("shared_extent").pages - inputs.compressed_sharing.saved_pages


def _per_version(inputs: ModelInputs) -> np.ndarray:
    return inputs.version_pages("shared_extent") - inputs.compressed_sharing.inode_saved


MODEL = CacheModel(
    name="shared_extent_compressed",
    title="shared-extent, compressed too",
    subject="caching compressed extents once as well",
    design="as shared_extent, and decompressed pages of compressed extents are cached once per extent",
    pages=_pages,
    order=20,
    per_version=_per_version,
)
