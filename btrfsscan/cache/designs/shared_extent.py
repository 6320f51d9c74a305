"""``shared_extent``: pages of written, uncompressed data cached once per logical page."""

from __future__ import annotations

import numpy as np

from ...workingset.pages import shared_extent_pages
from ..registry import CacheModel, ModelInputs, ResidentInputs


def _pages(inputs: ModelInputs) -> int:
    """``per_inode - eligible file pages + distinct keys`` (see :mod:`..layout` for eligible and keys)."""
    return inputs.per_inode_pages - inputs.data_sharing.saved_pages


def _resident(inputs: ResidentInputs) -> int:
    return shared_extent_pages(inputs.working_set)


def _per_version(inputs: ModelInputs) -> np.ndarray:
    """Each version's pages less its fair share of the saving (``Sharing.inode_saved``)."""
    return inputs.version_pages("per_inode") - inputs.data_sharing.inode_saved


MODEL = CacheModel(
    name="shared_extent",
    title="shared-extent cache",
    subject="a shared-extent cache",
    design="pages of written, uncompressed extents are keyed by logical address and cached once",
    pages=_pages,
    resident=_resident,
    order=10,
    per_version=_per_version,
)
