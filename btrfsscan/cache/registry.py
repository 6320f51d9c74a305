"""The registry of cache models: every design the report compares, each one definition.

A model is a module of :mod:`btrfsscan.cache.designs` that defines
``MODEL = CacheModel(...)``: its name, its title, a one-line design
statement, the conditions it needs in words, ``applies(facts, page_size)``
and its computation ``pages(inputs) -> int``. The registry finds the modules
itself (there is no list to edit) and orders them by ``order``; the report's
model list, titles, summary, JSON, JSON Schema, Prometheus metrics and the
``report`` help text are all derived from ``MODELS``.

A computation receives one :class:`ModelInputs`: the page layout of every
regular inode, the filesystem facts, the shared intermediate results (each
computed once, on first use, whichever model asks) and ``sources``, the
extra inputs a run was given (``content``: a ``cache.content.ContentSource``
giving a content id per page). A model that reads such an input names it in
``requires``; when a run lacks it the model does not apply, with a reason
saying what is missing, and is never computed.

``pages`` returns the model's total, or a ``cache.units.UnitFigures`` with
per-subvolume figures and top files beside the total; ``ModelResult.figures``
carries them to the report.

A model may also give ``resident(inputs: ResidentInputs)``, an int or a
``UnitFigures`` as ``pages`` returns: the same design over a working set
(only the pages resident now, from ``live`` or ``report --resident``);
``evaluate_resident`` runs it. Its inputs are the
working set's pages (``workingset.pages.WorkingSetPages``, from FIEMAP or an
image) and, in ``sources``, what only an image (or ``live --device``) gives:
``extent_items`` (``workingset.image.ImageWorkingSet``, the files placed on
the image's layout) and ``content``. ``resident_requires`` names the inputs
the working-set computation reads beyond ``requires``. A model without one
is listed as not computed over resident pages.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

import numpy as np

from ..concurrency import Once, shared
from .coverage import Sharing, sharing
from .facts import FilesystemFacts
from .layout import SEG_COMPRESSED, SEG_DATA, PageLayout, as_int64
from .mappings import DistinctMappings, distinct_mappings
from .runs import KeyRuns, eligible_runs
from .top import extent_starts
from .units import UnitFigures

if TYPE_CHECKING:
    from ..workingset.image import ImageWorkingSet
    from ..workingset.pages import WorkingSetPages
    from .content import PageContent

#: The model every saving is measured against (Linux today).
BASELINE = "per_inode"
#: The model the report's first sentence and per-subvolume figures are about.
HEADLINE = "shared_extent"

Applicability = tuple[bool, str | None]


def always(facts: FilesystemFacts, page_size: int) -> Applicability:
    """A design that applies to every filesystem at every page size."""
    return True, None


@dataclass(frozen=True)
class CacheModel:
    """One page-cache design.

    ``name`` is the JSON key and Prometheus label; ``title`` the table's
    name; ``subject`` how a sentence names it (``the RFC as posted``);
    ``design`` one line saying what it caches; ``needs`` the conditions of
    ``applies`` in words (None: none); ``requires`` the extra inputs its
    computation reads, by name, with what each one is. ``per_version``
    (optional) gives the model's pages of one copy of each inode version
    (``layout`` order, float64), a page cached once for ``c`` file pages
    costing each ``1/c``, so they sum (weighted) to ``pages``; the figures by
    directory come from it, and a model without it has none there (null).
    ``resident`` is its computation over a working set's resident pages
    (None: it has none), ``resident_requires`` what that reads beyond
    ``requires`` (the working set's pages themselves are always there).
    ``bound`` marks an ideal no design reaches (never named the best design
    that applies).
    """

    name: str
    title: str
    subject: str
    design: str
    pages: Callable[[ModelInputs], int | UnitFigures]
    order: int
    needs: str | None = None
    applies: Callable[[FilesystemFacts, int], Applicability] = always
    requires: Mapping[str, str] = field(default_factory=dict)
    per_version: Callable[[ModelInputs], np.ndarray] | None = None
    resident: Callable[[ResidentInputs], int | UnitFigures] | None = None
    resident_requires: Mapping[str, str] = field(default_factory=dict)
    bound: bool = False


@dataclass(frozen=True)
class ModelResult:
    """One model's total; ``pages`` is None where the model does not apply (``reason`` says why).
    ``figures``: its per-subvolume figures and top files, for models that compute them (arrays per
    inode version: not part of equality, which compares the totals)."""

    name: str
    pages: int | None
    applicable: bool = True
    reason: str | None = None
    figures: UnitFigures | None = field(default=None, compare=False)


@dataclass
class ModelInputs:
    """What a model's computation receives; the shared parts are computed once, on first use."""

    layout: PageLayout
    facts: FilesystemFacts
    sources: Mapping[str, Any] = field(default_factory=dict)
    top: int = 10
    _once: Once = field(default_factory=Once, repr=False, compare=False)

    @property
    def page_size(self) -> int:
        return self.layout.page_size

    @shared
    def per_inode_pages(self) -> int:
        """Every page of every regular inode, each (subvolume, inode) on its own."""
        return self.layout.total(self.layout.npages)

    @shared
    def extents(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct uncompressed data extents (disk_bytenr sorted) and their sizes."""
        return extent_starts(self.layout)

    @shared
    def data_sharing(self) -> Sharing:
        """Eligible pages of uncompressed data keyed by logical page; cut at every extent start."""
        first_keys = (as_int64(self.extents[0]) + self.page_size - 1) // self.page_size
        return sharing(self.layout, eligible_runs(self.layout, SEG_DATA), first_keys)

    @shared
    def compressed_sharing(self) -> Sharing:
        """Eligible pages of compressed extents keyed by (extent, decompressed page)."""
        return sharing(self.layout, eligible_runs(self.layout, SEG_COMPRESSED))

    @shared
    def mappings(self) -> DistinctMappings:
        """The layout's versions grouped by identical mapping (what the content and unit designs compare)."""
        return distinct_mappings(self.layout)

    @shared
    def content(self) -> PageContent:
        """A content id per page of the layout, from ``sources["content"]`` (computed once)."""
        return self.sources["content"].page_content(self.mappings)

    def result(self, name: str) -> ModelResult:
        """Model ``name`` evaluated on these inputs (once)."""
        return self._once.get(("result", name), lambda: evaluate(model(name), self))

    def version_pages(self, name: str) -> np.ndarray | None:
        """Model ``name``'s fair-share pages per inode version (see ``CacheModel.per_version``), computed once;
        None where it does not apply or gives no per-file figures."""
        definition = model(name)

        def compute() -> np.ndarray | None:
            ok = definition.per_version is not None and self.result(name).applicable
            return definition.per_version(self) if ok else None

        return self._once.get(("version_pages", name), compute)


@dataclass
class ResidentInputs:
    """What a model's working-set computation receives: the resident pages (``working_set``), the facts,
    and the sources of the run (``extent_items``, ``content``); shared parts computed once."""

    working_set: WorkingSetPages
    facts: FilesystemFacts
    sources: Mapping[str, Any] = field(default_factory=dict)
    lacking: str = "which this run has not"
    top: int = 10
    _once: Once = field(default_factory=Once, repr=False, compare=False)

    @property
    def page_size(self) -> int:
        return self.working_set.page_size

    @property
    def image(self) -> ImageWorkingSet:
        """The working set on the image's layout (``sources["extent_items"]``)."""
        return self.sources["extent_items"]

    @shared
    def mappings(self) -> DistinctMappings:
        """The image layout's versions grouped by identical mapping."""
        return distinct_mappings(self.image.layout)

    @shared
    def content(self) -> PageContent:
        """A content id per page of the image's layout (computed once, for every page of every file)."""
        return self.sources["content"].page_content(self.mappings)

    @shared
    def content_keys(self) -> KeyRuns:
        """The resident pages of known content keyed by their content ids (``KeyRuns`` of residency rows)."""
        return self.image.content_keys(self.content)

    @shared
    def unknown_pages(self) -> int:
        """Resident pages whose content is unknown (cached per inode by every content design)."""
        return int(self.image.residency.run_count.sum() - self.content_keys.count.sum())

    def result(self, name: str) -> ModelResult:
        """Model ``name`` over the same working set (once)."""
        return self._once.get(("result", name), lambda: evaluate_resident(model(name), self))


def _lacking(definition: CacheModel, sources: Mapping[str, Any], why: str,
             extra: Mapping[str, str] | None = None) -> ModelResult | None:
    """The "does not apply" result of a model whose required inputs are not all in ``sources`` (None: all are)."""
    wanted = {**definition.requires, **(extra or {})}
    missing = [what for name, what in wanted.items() if name not in sources]
    if not missing:
        return None
    return ModelResult(definition.name, None, False, "needs " + " and ".join(missing) + ", " + why)


def evaluate(definition: CacheModel, inputs: ModelInputs) -> ModelResult:
    """``definition`` on ``inputs``: not applicable (without computing) when an input is missing or
    the filesystem does not fit the design."""
    if (lacking := _lacking(definition, inputs.sources, "which this run has not")) is not None:
        return lacking
    ok, reason = definition.applies(inputs.facts, inputs.page_size)
    if not ok:
        return ModelResult(definition.name, None, False, reason)
    return _computed(definition, definition.pages(inputs))


def _computed(definition: CacheModel, value: int | UnitFigures) -> ModelResult:
    if isinstance(value, UnitFigures):
        return ModelResult(definition.name, value.pages, True, None, value)
    return ModelResult(definition.name, int(value), True, None)


def evaluate_resident(definition: CacheModel, inputs: ResidentInputs) -> ModelResult:
    """``definition`` over a working set's resident pages; ``inputs.lacking`` says why a required input is
    missing (a live filesystem without ``--device``: only an image has it)."""
    if definition.resident is None:  # first: an image would not change that
        return ModelResult(definition.name, None, False, "not computed over resident pages")
    missing = _lacking(definition, inputs.sources, inputs.lacking, definition.resident_requires)
    if missing is not None:
        return missing
    ok, reason = definition.applies(inputs.facts, inputs.page_size)
    if not ok:
        return ModelResult(definition.name, None, False, reason)
    return _computed(definition, definition.resident(inputs))


def _discover() -> tuple[CacheModel, ...]:
    from . import designs

    found = [import_module(f"{designs.__name__}.{info.name}").MODEL for info in pkgutil.iter_modules(designs.__path__)]
    names = [m.name for m in found]
    if len(set(names)) != len(names) or BASELINE not in names or HEADLINE not in names:
        raise RuntimeError(f"cache model registry inconsistent: {sorted(names)}")
    return tuple(sorted(found, key=lambda m: (m.order, m.name)))


#: Every cache model, in report order.
MODELS: tuple[CacheModel, ...] = _discover()
_BY_NAME = {m.name: m for m in MODELS}


def model(name: str) -> CacheModel:
    """The model registered as ``name``; KeyError when there is none."""
    return _BY_NAME[name]
