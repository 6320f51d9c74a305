"""``rfc_as_posted``: the 2021 RFC "Shared memory for shared extents" exactly as posted.

It keys a page by its offset on one device, so it is defined only for one
device, data profile SINGLE and page size == sector size; there logical ->
device offset is one-to-one and it equals ``shared_extent``.
"""

from __future__ import annotations

import numpy as np

from ..facts import FilesystemFacts
from ..registry import Applicability, CacheModel, ModelInputs, ResidentInputs


def applies(facts: FilesystemFacts, page_size: int) -> Applicability:
    """One device, SINGLE data, page size == sector size; else every reason it does not apply."""
    reasons = []
    num_devices = facts.device_count
    if num_devices != 1:
        reasons.append(f"the RFC keys pages by the offset on one device; this filesystem has {num_devices} devices")
    profiles = sorted(set(facts.data_profiles or ("SINGLE",)))
    if "DUP" in profiles:
        reasons.append("data profile DUP stores every block at two device offsets; the RFC keys a page by one device offset")
    others = [p for p in profiles if p not in ("SINGLE", "DUP")]
    if others:
        reasons.append(f"data profile {', '.join(others)}: the RFC supports SINGLE data only")
    if page_size != facts.sectorsize:
        reasons.append(f"the RFC needs page size == sector size (page size {page_size}, sector size {facts.sectorsize})")
    return (not reasons, "; ".join(reasons) or None)


def _pages(inputs: ModelInputs) -> int:
    return inputs.result("shared_extent").pages


def _resident(inputs: ResidentInputs) -> int:
    return inputs.result("shared_extent").pages


def _per_version(inputs: ModelInputs) -> np.ndarray | None:
    return inputs.version_pages("shared_extent")


MODEL = CacheModel(
    name="rfc_as_posted",
    title="RFC as posted",
    subject="the RFC as posted",
    design="the 2021 RFC: shared extents cached once, keyed by their offset on the one device",
    needs="one device, SINGLE data, page size = sector size",
    applies=applies,
    pages=_pages,
    resident=_resident,
    order=30,
    per_version=_per_version,
)
