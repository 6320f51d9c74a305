"""`report --html`: the page as headless Chromium renders it, offline and without errors.

Chromium loads the page from a file with a fresh profile and a net log; the
page's own requests are the URL requests it initiates (the browser's own
background requests have no initiating origin). A control page with a broken
script and an external image proves the checks see what they look for.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import run, run_json

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
pytest.importorskip("plotly", reason="plotly (btrfsscan[html]) is not installed")


def chromium(page: Path, tmp_path: Path, *mode: str) -> tuple[str, list[str], list[str]]:
    """(stdout, console lines, URLs the page requested) of one headless Chromium run on ``page``."""
    profile = tmp_path / f"profile-{page.stem}-{len(list(tmp_path.iterdir()))}"
    netlog = profile.with_suffix(".netlog.json")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}",
           "--hide-scrollbars", "--window-size=1280,2000", "--virtual-time-budget=5000", *mode, page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requested = [e["params"]["url"] for e in log["events"] if e["type"] == start_job and "url" in e.get("params", {})
                 and e["params"].get("initiator") != "not an origin"]
    return done.stdout, console, requested


@pytest.fixture(scope="module")
def sample_page(tmp_path_factory, fixture_images):
    out = tmp_path_factory.mktemp("html")
    page = out / "sample.html"
    images = fixture_images("files", "sample").values()
    result = run("report", "--html", page, *images)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # --html alone writes just the page
    return page, run_json("report", "--json", "--by-dir", 3, *images)


@needs_chromium
def test_page_renders_offline_without_errors(sample_page, tmp_path):
    page, doc = sample_page
    dom, console, requested = chromium(page, tmp_path, "--dump-dom")
    assert console == []
    assert requested == []
    headline = re.sub(r"<[^>]+>", "", re.search(r'<p class="headline" id="headline">(.*?)</p>', dom).group(1))
    from btrfsscan.present.units import human_bytes, human_pct

    se = doc["totals"]["models"]["shared_extent"]
    for figure in (human_bytes(doc["totals"]["per_inode"]["bytes"]), human_bytes(se["bytes"]),
                   human_bytes(se["saved_bytes"]), human_pct(se["saved_pct"])):
        assert figure in headline
    for n in (f"{doc['totals']['files']:,}", f"{doc['totals']['inodes']:,}"):
        assert n in dom
    parts = re.split(r'id="chart-\d+"', dom)[1:]  # each chart's div up to the next one
    drawn = [n for n, body in enumerate(parts) if '<svg class="main-svg"' in body]
    assert drawn == [0, 1, 2, 3], drawn  # designs, sharing matrix, treemap, kinds: all drawn as SVG
    assert dom.count('class="trace bars"') == 2 and '<g class="hm"' in dom and 'class="trace treemap"' in dom
    # one treemap box per by_dir entry, plus the box of all subvolumes
    assert dom.count('class="slice cursor-pointer"') == len(doc["by_dir"]["entries"]) + 1
    for tag in re.findall(r"<(?:script|link|img|iframe|source|video|audio)\b[^>]*>", dom):
        assert not re.search(r"\b(?:src|href)\s*=\s*[\"']?(?!data:|#)", tag), tag
    for label in ("@base", "@containers/web", "x86_64-linux-gnu"):
        assert label in dom


@needs_chromium
def test_the_checks_see_errors_and_requests(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
                   "<script>undefinedFunction();</script></body></html>")
    _, console, requested = chromium(bad, tmp_path, "--dump-dom")
    assert any("undefinedFunction" in line for line in console)
    assert requested == ["http://127.0.0.1:9/x.png"]


@needs_chromium
def test_screenshot(sample_page, tmp_path):
    page, _ = sample_page
    png = tmp_path / "page.png"
    chromium(page, tmp_path, f"--screenshot={png}")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a page of charts, not a blank one


def test_page_is_self_contained_and_generic(sample_page):
    page, doc = sample_page
    text = page.read_text()
    assert text.count("Plotly.newPlot") == 1 and 4_000_000 < len(text) < 10_000_000
    from btrfsscan.present.renderers.html import render_page

    doc = json.loads(json.dumps(doc))
    doc["totals"]["models"]["content_dedupe"] = dict(doc["totals"]["models"]["shared_extent"], title="content dedupe (test)")
    del doc["sharing_matrix"], doc["by_dir"]
    other = render_page([doc], script="/* plotly */")
    assert "content dedupe (test)" in other
    assert 'id="no-sharing_matrix"' in other and 'id="no-by_dir"' in other


def test_missing_plotly_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    result = run("report", "--sample", "--html", tmp_path / "x.html")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "pip install 'btrfsscan[html]'" in result.stderr
    assert not (tmp_path / "x.html").exists()


def test_html_is_the_html_format_through_the_one_output_path(sample_page, tmp_path, fixture_images):
    """--html FILE is --format html -o FILE: the same page; the -o checks apply; it cannot be combined."""
    page, _ = sample_page
    images = [str(p) for p in fixture_images("files", "sample").values()]
    via_format = tmp_path / "format.html"
    result = run("report", "--format", "html", "-o", via_format, *images)
    assert result.exit_code == 0, result.stderr
    assert via_format.read_text() == page.read_text()  # --by-dir 3 implied both ways
    refused = run("report", "--html", images[0], *images)
    assert refused.exit_code == 2 and "refusing to write the output" in refused.stderr
    for extra in (["--json"], ["-o", tmp_path / "x.json"], ["--format", "table"]):
        clash = run("report", "--html", tmp_path / "y.html", *extra, *images)
        assert clash.exit_code == 2 and "--html FILE is --format html -o FILE" in clash.stderr, extra
    assert not (tmp_path / "y.html").exists()
