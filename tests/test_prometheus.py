"""The Prometheus exposition, parsed by ``prometheus_client``'s own text parser (issue 13 item 11).

Per-subvolume figures are checked against the kernel's view captured by the
fixture build (``listing.json``: lstat with INO_LOOKUP subvolume ids;
``subvolumes.json``: ``btrfs subvolume list``), never against btrfsscan.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from support import run
from test_report_output import make_report

from btrfsscan.cache.report import ScanTiming
from btrfsscan.present.renderers.prometheus import METRICS, prometheus_text

FILES = Path(__file__).resolve().parent / "fixtures" / "files"
P = 4096


def _families(text: str) -> dict:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == {name for name, _ in METRICS}  # every metric has its HELP and TYPE
    assert all(f.type == "gauge" and f.documentation for f in families.values())
    return families


def test_labels_are_escaped_and_parse_back():
    report = make_report()
    odd = 'we"ird\\sub\nvol \udcffname'
    subvolumes = tuple(replace(sv, path=odd) for sv in report.subvolumes if sv.id != 5)
    report = replace(report, subvolumes=subvolumes, scan=ScanTiming(1700000000.5, 2.25))
    text = prometheus_text(report)
    text.encode("utf-8", "strict")
    families = _families(text)
    paths = {s.labels["subvolume"]: s.labels["path"] for s in families["btrfsscan_subvolume_files"].samples}
    assert len(paths) == len(subvolumes) > 1
    assert set(paths.values()) == {'we"ird\\sub\nvol \ufffdname'}
    assert families["btrfsscan_scan_timestamp_seconds"].samples[0].value == 1700000000.5
    assert families["btrfsscan_scan_duration_seconds"].samples[0].value == 2.25
    help_lines = [line for line in text.splitlines() if line.startswith("# HELP ")]
    assert len(help_lines) == len(METRICS)


def test_per_subvolume_metrics_match_the_kernel_view(fixture_images):
    images = list(fixture_images("files", "subvols").values())
    before = time.time()
    result = run("report", "--format", "prometheus", *images)
    after = time.time()
    assert result.exit_code == 0, result.stderr
    families = _families(result.stdout)

    expected = FILES / "subvols" / "expected"
    listing = json.loads((expected / "listing.json").read_text())
    names = {s["id"]: s["path"] for s in json.loads((expected / "subvolumes.json").read_text()) if not s["deleted"]}
    files, inodes = defaultdict(int), defaultdict(dict)
    for r in listing:
        if r["type"] == "file":
            files[r["subvol"]] += 1
            inodes[r["subvol"]][r["st_ino"]] = -(-r["size"] // P)

    def by_subvolume(metric: str) -> dict[int, float]:
        samples = families[metric].samples
        for s in samples:
            sid = int(s.labels["subvolume"])
            assert s.labels["path"] == names.get(sid, ".")
        return {int(s.labels["subvolume"]): s.value for s in samples if s.value}

    assert by_subvolume("btrfsscan_subvolume_files") == dict(files)
    assert by_subvolume("btrfsscan_subvolume_inodes") == {k: len(v) for k, v in inodes.items()}
    assert by_subvolume("btrfsscan_subvolume_page_cache_pages") == {k: sum(v.values()) for k, v in inodes.items()}
    saved = families["btrfsscan_subvolume_saved_pages"].samples
    assert saved and all({"model", "subvolume", "path"} <= set(s.labels) for s in saved)

    started = families["btrfsscan_scan_timestamp_seconds"].samples[0].value
    duration = families["btrfsscan_scan_duration_seconds"].samples[0].value
    assert before <= started <= after and 0 < duration <= after - before
