"""`live` through the CLI on XFS, its Prometheus and HTML formats, and the progress bar of `live` and
`report --resident` on a terminal.

The XFS filesystem is made here (``mkfs.xfs -m reflink=1``, files written
from seeded content, reflinks by ``cp --reflink`` and FICLONERANGE). Every
run is taken inside a window whose mincore snapshots agree before and after;
expected values come from fincore, the test's own mincore + FIEMAP, statvfs
and blkid, never from btrfsscan. The HTML page is rendered by headless
Chromium as in test_html; the progress bar is looked for on a pseudo-terminal
(the pty module) and must be absent when stderr is a pipe.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_live import (
    PAGE,
    _xfs_unavailable,
    brute_force_shared_extent,
    capture,
    kernel,
    regular_files,
    seeded_workload,
    stable_run,
    xfs_mounted,
)
from test_live_cli import _fsid, _residency

from btrfsscan.present.units import human_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[1]


def _make_xfs(tmp_path: Path) -> Path:
    image = kernel.make_sparse_image(tmp_path / "xfs.img", 320 << 20)
    subprocess.run(["mkfs.xfs", "-q", "-L", "livexfs", "-m", "reflink=1", str(image)], check=True,
                   capture_output=True)
    return image


def _populate(mnt: Path) -> None:
    for d in ("top", "other", "third"):
        (mnt / d).mkdir()
    kernel.write_seeded_file(mnt / "top" / "src", "xfs-cli/src", (1 << 20) + 1000)
    kernel.write_seeded_file(mnt / "other" / "own", "xfs-cli/own", 300_000)
    kernel.write_seeded_file(mnt / "third" / "partial", "xfs-cli/partial", 512 << 10)
    kernel.write_seeded_file(mnt / "rootfile", "xfs-cli/root", 20_000)
    os.sync()
    subprocess.run(["cp", "--reflink=always", str(mnt / "top" / "src"), str(mnt / "other" / "clone")], check=True)
    subprocess.run(["xfs_io", "-c", f"reflink {mnt / 'top' / 'src'} 65536 131072 196608",
                    str(mnt / "third" / "partial")], check=True, capture_output=True)
    os.sync()


@pytest.mark.kernel
@pytest.mark.skipif(_xfs_unavailable() is not None, reason=_xfs_unavailable() or "")
def test_live_cli_on_xfs_with_reflinks(tmp_path):
    image = _make_xfs(tmp_path)
    with xfs_mounted(image) as mnt:
        _populate(mnt)
        files = regular_files(mnt)
        capture.drop_caches()
        seeded_workload(files, "xfs-cli")
        capture.read_all(mnt / "top" / "src")
        capture.read_all(mnt / "other" / "clone")
        result, snap, fincore_total = stable_run(files, "live", mnt, "--json")
        doc = json.loads(result.stdout)
        expected_shared = brute_force_shared_extent(files, snap)
        prom, prom_snap, prom_fincore = stable_run(files, "live", mnt, "--format", "prometheus")
        prom_shared = brute_force_shared_extent(files, prom_snap)
        source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mnt)], capture_output=True, text=True,
                                check=True).stdout.strip()
        vfs = os.statvfs(mnt)
        uuid = subprocess.run(["blkid", "-c", "/dev/null", "-s", "UUID", "-o", "value", source],
                              capture_output=True, text=True, check=True).stdout.strip()
    models = doc["totals"]["models"]
    assert doc["totals"]["per_inode"]["pages"] == models["per_inode"]["pages"] == fincore_total > 0
    assert models["shared_extent"]["pages"] == expected_shared < fincore_total
    assert models["rfc_as_posted"]["pages"] == expected_shared  # one device, its offsets: what the RFC keys by
    # per top-level directory: the root's own files, top/, other/, third/
    per_dir = defaultdict(int)
    for key, path in files.items():
        rel = path.relative_to(mnt).parts
        per_dir[str(mnt / rel[0]) if len(rel) > 1 else str(mnt)] += sum(snap[key])
    got = {s["path"]: s["per_inode_pages"] for s in doc["subvolumes"]}
    assert got == dict(per_dir) and len(got) == 4
    fs = doc["filesystem"]
    assert fs["fsid"] == uuid and fs["label"] == "livexfs" and fs["num_devices"] == 1
    assert fs["devices"] == [{"devid": 0, "uuid": None, "path": source, "total_bytes": 320 << 20,
                              "bytes_used": (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize}]
    assert fs["profiles"] == {"data": [], "metadata": [], "system": []}

    families = {f.name: f for f in text_string_to_metric_families(prom.stdout)}
    pages = {s.labels["model"]: s.value for s in families["btrfsscan_page_cache_pages"].samples}
    assert pages == {"per_inode": prom_fincore, "shared_extent": prom_shared, "rfc_as_posted": prom_shared}
    applicable = {s.labels["model"]: s.value for s in families["btrfsscan_model_applicable"].samples}
    assert applicable == {name: float(m["applicable"]) for name, m in models.items()}
    by_subvolume = {s.labels["path"]: s.value for s in families["btrfsscan_subvolume_page_cache_pages"].samples}
    assert set(by_subvolume) == set(got) and sum(by_subvolume.values()) == prom_fincore


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_live_html_renders_offline_with_the_resident_figures(tmp_path):
    pytest.importorskip("plotly", reason="plotly (btrfsscan[html]) is not installed")
    from test_html import chromium

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        kernel.write_seeded_file(data / f"f{i}", f"live-html/{i}", 40_000 + i * 10_000)
    (data / "f1").read_bytes()
    files = regular_files(data)
    page = tmp_path / "live.html"
    _, snap, fincore_total = stable_run(files, "live", data, "--format", "html", "-o", page)
    expected_shared = brute_force_shared_extent(files, snap)
    dom, console, requested = chromium(page, tmp_path, "--dump-dom")
    assert console == [] and requested == []
    headline = dom.split('id="headline">', 1)[1].split("</p>", 1)[0]
    assert headline.startswith(f"The page cache held {human_bytes(fincore_total * PAGE)} of these files at ")
    assert f"a shared-extent cache would need {human_bytes(expected_shared * PAGE)}" in headline
    assert "<h2>Workload</h2>" in dom and dom.count('<svg class="main-svg"') >= 2  # designs and kinds drawn


# --- the progress bar ----------------------------------------------------------------------------


def _on_a_terminal(args: list) -> tuple[int, str, bytes]:
    """(exit code, stdout, what reached the terminal) of ``btrfsscan *args`` with stderr on a pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen([sys.executable, "-m", "btrfsscan", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    seen = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out = proc.stdout.read().decode()
    code = proc.wait(60)
    os.close(master)
    return code, out, bytes(seen)


def _piped(args: list) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "btrfsscan", *map(str, args)], capture_output=True, env=env,
                          timeout=120)


def test_progress_bar_only_on_a_terminal(tmp_path, fixture_images):
    data = tmp_path / "data"
    data.mkdir()
    kernel.write_seeded_file(data / "f", "progress/f", 50_000)
    code, out, terminal = _on_a_terminal(["live", data, "--json"])
    assert code == 0 and json.loads(out)["workload"]["files"] == 1
    assert b"measuring resident pages" in terminal and b"\x1b[" in terminal
    piped = _piped(["live", data, "--json"])
    assert piped.returncode == 0 and piped.stderr == b""
    quiet = _on_a_terminal(["live", data, "--json", "-q"])[2]
    assert b"measuring" not in quiet

    image = fixture_images("files", "reflinks")[0]
    residency = _residency(tmp_path, _fsid(image))  # one file the image lacks: a warning, exit 1
    code, out, terminal = _on_a_terminal(["report", image, "--resident", residency, "--json"])
    assert code == 1 and json.loads(out)["partial"] is True
    assert b"scanning " in terminal and b"\x1b[" in terminal
    piped = _piped(["report", image, "--resident", residency, "--json"])
    assert piped.returncode == 1 and b"scanning" not in piped.stderr and b"\x1b[" not in piped.stderr
    assert piped.stderr.decode().strip().startswith("warning: residency file not in the image")
