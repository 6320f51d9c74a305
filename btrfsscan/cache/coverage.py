"""Key-space coverage: how many file pages map each key, and what sharing them saves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import distinct, group_sum, prefix
from .layout import PageLayout, I64, as_int64
from .runs import KeyRuns


@dataclass
class KeyCoverage:
    """Key space cut at every run boundary into elementary segments.

    Segment ``j`` is keys ``[bounds[j], bounds[j+1])``; ``cov[j]`` file pages
    map each of its keys. ``lo``/``hi`` are each run's segment index range.
    """

    bounds: np.ndarray
    cov: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.bounds)

    @property
    def n_segments(self) -> int:
        return max(len(self.bounds) - 1, 0)

    def distinct_keys(self) -> int:
        return int(self.lengths[self.cov > 0].sum())

    def file_pages(self) -> int:
        return int((self.lengths * self.cov).sum())

    def shared_file_pages(self) -> int:
        return int((self.lengths * self.cov)[self.cov >= 2].sum())


def key_coverage(runs: KeyRuns, weight: np.ndarray, extra_bounds: np.ndarray | None = None) -> KeyCoverage:
    """Coverage of the keys by ``runs``, each counted ``weight`` times (a sweep with bincount differences)."""
    parts = [runs.key0, runs.key1]
    if extra_bounds is not None:
        parts.append(as_int64(extra_bounds))
    bounds = distinct(np.concatenate(parts)) if len(runs) or extra_bounds is not None else np.zeros(0, I64)
    m = len(bounds)
    lo = np.searchsorted(bounds, runs.key0).astype(I64)
    hi = np.searchsorted(bounds, runs.key1).astype(I64)
    w = weight.astype(np.float64)
    diff = np.bincount(lo, w, minlength=m) - np.bincount(hi, w, minlength=m)
    cov = np.rint(np.cumsum(diff)[:-1]).astype(I64) if m else np.zeros(0, I64)
    return KeyCoverage(bounds, cov, lo, hi)


@dataclass
class Sharing:
    """A shared-extent model's figures, overall and per inode version (for one of its copies)."""

    runs: KeyRuns
    coverage: KeyCoverage
    eligible_pages: int
    distinct_keys: int
    shared_file_pages: int
    inode_eligible: np.ndarray
    inode_shared: np.ndarray
    inode_saved: np.ndarray  # float64, fair share

    @property
    def saved_pages(self) -> int:
        return self.eligible_pages - self.distinct_keys


def sharing(layout: PageLayout, runs: KeyRuns, extra_bounds: np.ndarray | None = None) -> Sharing:
    """``run_sharing`` of ``runs`` over the inode versions of ``layout``, each counted for its copies."""
    return run_sharing(runs, layout.weight, extra_bounds)


def run_sharing(runs: KeyRuns, weight: np.ndarray, extra_bounds: np.ndarray | None = None) -> Sharing:
    """Distinct keys, shared pages and per-holder figures of ``runs``, whose ``inode`` indexes ``weight``
    (the file pages each holder's page stands for: an inode version's copies, or 1 for a resident file).

    Per holder: ``inode_eligible`` its eligible pages; ``inode_shared`` those
    whose key some other file page maps too; ``inode_saved`` its fair share of
    the saving, sum over its eligible pages of ``1 - 1/c`` where ``c`` is the
    number of file pages mapping the page's key (summed over all holders,
    weighted, this is exactly ``eligible - distinct keys``).
    """
    cov = key_coverage(runs, weight[runs.inode], extra_bounds)
    lengths = cov.lengths
    c = cov.cov
    shared = prefix(np.where(c >= 2, lengths, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        fair = prefix(np.where(c > 0, lengths * (1.0 - 1.0 / np.maximum(c, 1)), 0.0))
    n = len(weight)
    return Sharing(
        runs=runs,
        coverage=cov,
        eligible_pages=int((runs.count * weight[runs.inode]).sum()),
        distinct_keys=cov.distinct_keys(),
        shared_file_pages=cov.shared_file_pages(),
        inode_eligible=group_sum(runs.inode, runs.count, n),
        inode_shared=group_sum(runs.inode, shared[cov.hi] - shared[cov.lo], n),
        inode_saved=group_sum(runs.inode, fair[cov.hi] - fair[cov.lo], n, np.float64),
    )
