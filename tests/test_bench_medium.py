"""The bench's medium image: the report is identical with and without memoized snapshot work.

Builds the kernel-made medium image of bench/run.py (~20k files, a base
subvolume and 3 snapshots with changes, reflinks) once, then compares the
whole JSON report computed with every optimization on and with per-block
memoization off.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.analysis.report import scan_report
from btrfsscan.present.views.report import report_document

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _unavailable() -> str | None:
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        return "needs root and loop devices to build the kernel-made bench image"
    if shutil.which("mkfs.btrfs") is None:
        return "needs btrfs-progs"
    return None


@pytest.mark.kernel
@pytest.mark.skipif(_unavailable() is not None, reason=_unavailable() or "")
def test_medium_report_identical_without_memoization(tmp_path_factory):
    sys.path.insert(0, str(BENCH))
    import run as bench

    cache = Path(os.environ.get("BTRFSSCAN_BENCH_CACHE", tmp_path_factory.mktemp("bench-cache")))
    work, facts = bench.ensure_built(bench.RECIPES["medium"], cache, rebuild=False)
    fs = open_filesystem([work / facts["image"]])
    try:
        fast = report_document(scan_report(fs, page_size=4096, top=20)).json()
        slow = report_document(scan_report(fs, page_size=4096, top=20, memoize=False)).json()
    finally:
        fs.close()
    assert fast["totals"]["files"] == facts["files_total"]
    assert len(fast["subvolumes"]) == facts["subvolumes"] + 1  # and the top level, id 5
    assert fast == slow
