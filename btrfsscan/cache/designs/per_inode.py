"""``per_inode``: Linux today, every inode caching its own pages."""

from __future__ import annotations

import numpy as np

from ...workingset.pages import per_inode_pages
from ..registry import CacheModel, ModelInputs, ResidentInputs


def _pages(inputs: ModelInputs) -> int:
    """``sum(npages)`` over regular inodes: holes, prealloc and inline data are cached as pages too,
    compressed data decompressed, every reflinked or snapshot copy on its own."""
    return inputs.per_inode_pages


def _resident(inputs: ResidentInputs) -> int:
    return per_inode_pages(inputs.working_set)


def _per_version(inputs: ModelInputs) -> np.ndarray:
    return inputs.layout.npages.astype(np.float64)


MODEL = CacheModel(
    name="per_inode",
    title="per-inode (Linux today)",
    subject="the per-inode page cache",
    design="every inode caches its own pages, whatever extents they read",
    pages=_pages,
    resident=_resident,
    order=0,
    per_version=_per_version,
)
