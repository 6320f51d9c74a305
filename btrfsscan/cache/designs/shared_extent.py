"""``shared_extent``: pages of written, uncompressed data cached once per logical page."""

from __future__ import annotations

from ...workingset.pages import shared_extent_pages
from ..registry import CacheModel, ModelInputs


def _pages(inputs: ModelInputs) -> int:
    """``per_inode - eligible file pages + distinct keys`` (see :mod:`..layout` for eligible and keys)."""
    return inputs.per_inode_pages - inputs.data_sharing.saved_pages


MODEL = CacheModel(
    name="shared_extent",
    title="shared-extent cache",
    subject="a shared-extent cache",
    design="pages of written, uncompressed extents are keyed by logical address and cached once",
    pages=_pages,
    resident=shared_extent_pages,
    order=10,
)
