"""`btrfsscan live` and `report --resident`/`--workload` through the CLI.

Kernel-backed: a fixture copy with a fresh fsid (btrfstune -u) mounted
read-only, caches dropped, a seeded mix of reads; `live --json --save` runs
inside a window whose mincore snapshots before and after agree (retried
otherwise, DAMON reclaims cold pages). Expected values come from the test's
own mincore/fincore and FIEMAP (helpers of test_live). Then, unmounted,
`report IMAGE --resident` on the saved residency gives the same figures.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jsonschema
import pytest
from support import facts, kernel_unavailable, run, run_json
from test_live import (
    ATTEMPTS,
    PAGE,
    brute_force_shared_extent,
    capture,
    fincore_pages,
    fresh_fsid_copy,
    kernel,
    regular_files,
    seeded_workload,
    snapshot,
)

from btrfsscan.present.contract import schema

needs_kernel = pytest.mark.skipif(kernel_unavailable() is not None, reason=kernel_unavailable() or "")
RESIDENCY_SCHEMA = json.loads((Path(__file__).resolve().parents[1]
                               / "btrfsscan/present/schemas/residency.schema.json").read_text())
#: The figures `live` and `report --resident` must agree on (paths come from the residency in both).
SAME = ("totals", "top_extents", "top_files")


def stable_live(mnt: Path, files: dict, save: Path) -> tuple[dict, dict, int]:
    """`live --json --save` inside a window where the page cache stayed still."""
    for _ in range(ATTEMPTS):
        before, fincore_before = snapshot(files), fincore_pages(files)
        doc = run_json("live", mnt, "--json", "--save", save)
        fincore_after, after = fincore_pages(files), snapshot(files)
        if before == after and fincore_before == fincore_after:
            return doc, before, fincore_before
    pytest.fail(f"the page cache never stayed still for {ATTEMPTS} attempts")


def _subvolume_figures(doc: dict) -> list:
    keys = ("id", "files", "per_inode_pages", "unshareable_pages", "exclusive_pages", "shared_pages", "saved_pages")
    return sorted(tuple(s[k] for k in keys) for s in doc["subvolumes"] if s["files"])


@pytest.mark.kernel
@needs_kernel
@pytest.mark.parametrize("name", ["reflinks", "subvols"])
def test_live_cli_equals_fincore_and_report_resident(name, fixture_images, tmp_path):
    if shutil.which("btrfstune") is None:
        pytest.skip("btrfstune (btrfs-progs) is needed to give the fixture copy its own fsid")
    save = tmp_path / "residency.json"
    with fresh_fsid_copy(fixture_images, name, tmp_path) as img:
        with kernel.loop_devices([img]) as devices, kernel.mounted(devices[0], "ro,subvolid=5") as mnt:
            files = regular_files(mnt)
            capture.drop_caches()
            seeded_workload(files, f"live-cli/{name}")
            live, snap, fincore_total = stable_live(mnt, files, save)
            expected_shared = brute_force_shared_extent(files, snap)
        jsonschema.Draft202012Validator(schema("live")).validate(live)
        jsonschema.Draft202012Validator(RESIDENCY_SCHEMA).validate(json.loads(save.read_text()))
        assert live["totals"]["per_inode"]["pages"] == fincore_total == sum(sum(v) for v in snap.values()) > 0
        assert live["totals"]["models"]["per_inode"]["pages"] == fincore_total
        assert live["totals"]["models"]["shared_extent"]["pages"] == expected_shared
        # one device, SINGLE data, page size = sector size (BTRFS_IOC_FS_INFO, SPACE_INFO): the RFC's keys
        assert live["totals"]["models"]["rfc_as_posted"]["pages"] == expected_shared
        assert live["filesystem"]["profiles"]["data"] == ["SINGLE"] and live["filesystem"]["num_devices"] == 1
        assert live["workload"]["kind"] == "resident" and live["workload"]["files"] == len(files)
        assert live["workload"]["files_with_pages"] == sum(1 for v in snap.values() if any(v))
        assert live["workload"]["unreadable"] == 0 and not live["partial"]
        assert sum(k["pages"] for k in live["by_kind"].values()) == fincore_total

        report = run_json("report", img, "--resident", save, "--json", "--page-size", PAGE)
    jsonschema.Draft202012Validator(schema("report")).validate(report)
    assert report["workload"] == live["workload"]  # the same working set, said so in both
    # without --device, live computes the models FIEMAP suffices for; report --resident computes them all
    not_live = {n for n, m in live["totals"]["models"].items() if not m["applicable"]}
    assert not_live == {"shared_extent_compressed", "overlay_copy_up", "file_fingerprint", "content_dedupe"}
    assert all(report["totals"]["models"][n]["applicable"] for n in not_live)
    for n in not_live:
        report["totals"]["models"][n] = live["totals"]["models"][n]
    for key in SAME:
        assert report[key] == live[key], key
    live_kinds = dict(live["by_kind"])
    assert live_kinds.pop("unknown")["pages"] == 0
    assert report["by_kind"] == live_kinds
    assert _subvolume_figures(report) == _subvolume_figures(live)


def _residency(tmp_path: Path, fsid: str, ino: int = 257, size: int = 4096, page_size: int = PAGE,
               version: int = 1) -> Path:
    """A residency of 2 files: (5, ``ino``) of ``size`` bytes with its first page resident, and one the image lacks."""
    doc = {"schema_version": version, "kind": "resident", "captured_at": "2026-01-01T00:00:00Z",
           "page_size": page_size, "filesystem": {"type": "btrfs", "fsid": fsid, "fsid_source": "BTRFS_IOC_FS_INFO",
                                                  "generation": 7, "sectorsize": 4096},
           "roots": [{"path": "/mnt"}], "subvolumes": [],
           "counts": {"files": 2, "files_with_pages": 2, "unreadable": 0, "pages": 2},
           "files": {"subvol": [5, 5], "ino": [ino, 99999], "path": ["a", "gone"], "path_bytes": [],
                     "size": [size, 4096], "runs": [1, 1], "run_page": [0, 0], "run_count": [1, 1]}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    return path


def _fsid(image) -> str:
    return run_json("super", image, "--json")["fsid"]


def test_report_resident_bad_input_is_one_line(fixture_images, tmp_path):
    image = fixture_images("files", "reflinks")[0]
    fsid = _fsid(image)
    good = _residency(tmp_path, fsid)
    text = good.read_text()
    cases = {
        "truncated": text[: len(text) // 2],
        "other fsid": text.replace(fsid, "11111111-2222-3333-4444-555555555555"),
        "newer": text.replace('"schema_version": 1', '"schema_version": 2'),
    }
    for what, body in cases.items():
        bad = tmp_path / f"{what}.json"
        bad.write_text(body)
        result = run("report", image, "--resident", bad, "--json")
        assert result.exit_code == 2, what
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, (what, result.stderr)
        assert str(bad) in result.stderr, what
    result = run("report", image, "--resident", good, "--json", "--page-size", "16384")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "page size 4096, not 16384" in result.stderr


def test_report_resident_warns_about_files_the_image_lacks(fixture_images, tmp_path):
    image = fixture_images("files", "reflinks")[0]
    entry = next(e for e in run_json("ls", image, "--json")["entries"] if e["type"] == "file" and e["size"] > PAGE)
    good = _residency(tmp_path, _fsid(image), ino=entry["inode"], size=entry["size"])
    doc = run_json("report", image, "--resident", good, "--json", expect_exit=1)
    assert doc["partial"] is True
    assert [w for w in doc["warnings"] if "not in the image" in w and "inode 99999" in w]
    assert doc["totals"]["per_inode"]["pages"] == 1 and doc["totals"]["files"] == 1
    other_size = _residency(tmp_path, _fsid(image), ino=entry["inode"], size=entry["size"] + 1)
    doc = run_json("report", image, "--resident", other_size, "--json", expect_exit=1)
    assert [w for w in doc["warnings"] if "of another i_size" in w and f"inode {entry['inode']}" in w]
    assert doc["totals"]["per_inode"]["pages"] == 0
    none = _residency(tmp_path, _fsid(image), ino=99998)  # no file of it in the image: nothing modelled
    doc = run_json("report", image, "--resident", none, "--json", expect_exit=1)
    assert len([w for w in doc["warnings"] if "not in the image" in w]) == 2
    assert doc["totals"]["per_inode"]["pages"] == 0 and doc["totals"]["models"]["content_dedupe"]["pages"] == 0


def test_report_workload_matches_a_brute_force_page_count(fixture_images, tmp_path):
    image = fixture_images("files", "reflinks")[0]
    listing = run_json("ls", image, "-R", "--json")
    regular = [e for e in listing["entries"] if e["type"] == "file"]
    assert regular, "the fixture has regular files"
    first, second = regular[0], regular[-1]
    workload = tmp_path / "workload"
    workload.write_text(f"{first['path']}\n{second['path']} 1 {PAGE}\n/no/such/file\n")
    expected = -(-first["size"] // PAGE) + min(2, -(-second["size"] // PAGE))
    if first["path"] == second["path"]:
        expected = -(-first["size"] // PAGE)
    doc = run_json("report", image, "--workload", workload, "--json", expect_exit=1)
    assert doc["totals"]["per_inode"]["pages"] == expected
    assert any("/no/such/file" in w for w in doc["warnings"])
    distinct = len({first["path"], second["path"]})
    assert doc["workload"]["kind"] == "workload"
    assert doc["workload"]["files"] == doc["workload"]["files_with_pages"] == distinct
    assert "workload" not in run_json("report", image, "--json")  # every file read once: no working set
    pytest.importorskip("plotly", reason="plotly (btrfsscan[html]) is not installed")
    page = tmp_path / "workload.html"
    assert run("report", image, "--workload", workload, "--format", "html", "-o", page).exit_code == 1
    html = page.read_text()
    assert "The given reads bring " in html and "readahead ignored" in html and "every file read once" not in html


@pytest.mark.parametrize("name", ["designs-sha256", "designs-crc32c", "compress", "subvols"])
def test_every_file_read_once_gives_the_reports_design_figures(name, fixture_images, tmp_path):
    """A workload reading every regular file is the report's own assumption: each cache-unit design's
    figures per subvolume over it are the report's, and its files' savings the report's top files, each
    listed once per snapshot copy (the report names a file once for its unchanged copies)."""
    image = fixture_images("files", name)[0]
    regular = [e["path"] for e in run_json("ls", image, "-R", "--json")["entries"] if e["type"] == "file"]
    assert all(" " not in path for path in regular)  # one PATH per workload line
    workload = tmp_path / "workload"
    workload.write_text("".join(f"{path}\n" for path in regular))
    every = run_json("report", image, "--workload", workload, "--json", "--top", "10000")
    report = run_json("report", image, "--json", "--top", "10000")
    assert every["totals"]["per_inode"] == report["totals"]["per_inode"]
    for m in ("overlay_copy_up", "file_fingerprint", "content_dedupe"):
        got, want = every["totals"]["models"][m], report["totals"]["models"][m]
        assert (got["pages"], got["unknown_pages"]) == (want["pages"], want["unknown_pages"]), m
        assert got["subvolumes"] == want["subvolumes"], m
        copies = sorted(f["saved_pages"] for f in want["top_files"] for _ in range(f["snapshot_copies"] + 1))
        assert sorted(f["saved_pages"] for f in got["top_files"]) == copies, m
        assert all(f["path"] and f["snapshot_copies"] == 0 for f in got["top_files"]), m


def test_live_on_a_non_directory_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for target in (f, tmp_path / "missing"):
        result = run("live", target, "--json")
        assert result.exit_code == 2 and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and str(target) in result.stderr


def test_live_unreadable_file_is_warned_and_partial(tmp_path, monkeypatch):
    """A file `live` may not open (root opens everything, so the refusal is simulated) is counted and warned."""
    (tmp_path / "readable").write_bytes(b"x" * 5000)
    (tmp_path / "secret").write_bytes(b"y" * 100)
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):
        if os.fsencode(path) == b"secret":
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    result = run("live", tmp_path, "--json", "--save", tmp_path / "out" / "missing-dir.json")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1  # --save checked first
    result = run("live", tmp_path, "--json")
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["workload"]["unreadable"] == 1 and doc["workload"]["files"] == 2 and doc["partial"] is True
    assert any("secret" in w for w in doc["warnings"]) and "secret" in result.stderr


def test_schema_commands():
    live = json.loads(run("schema", "live").stdout)
    assert "workload" in live["required"] and "unknown" in live["properties"]["by_kind"]["required"]
    assert live["properties"]["totals"] == schema("report")["properties"]["totals"]
    assert json.loads(run("schema", "residency").stdout) == RESIDENCY_SCHEMA


def test_models_over_resident_pages_come_from_the_registry(tmp_path):
    """Every registered model is listed; one needing an input a live run lacks says it needs the image."""
    from types import SimpleNamespace

    from btrfsscan.cache.registry import MODELS, CacheModel, ResidentInputs, evaluate_resident

    ws = SimpleNamespace(page_size=4096)
    content = CacheModel("content_x", "content", "a content cache", "keyed by content", pages=lambda i: 0, order=99,
                         requires={"csums": "the checksum tree"}, resident=lambda w: 1,
                         resident_requires={"extent_items": "the extent items"})
    result = evaluate_resident(content, ResidentInputs(ws, facts(), {}, "which only an image gives"))
    assert (result.pages, result.applicable) == (None, False)
    assert result.reason == "needs the checksum tree and the extent items, which only an image gives"
    assert evaluate_resident(content, ResidentInputs(ws, facts(), {"csums": 1})).reason == \
        "needs the extent items, which this run has not"
    assert evaluate_resident(content, ResidentInputs(ws, facts(), {"csums": 1, "extent_items": 2})).pages == 1
    unported = CacheModel("x", "x", "x", "x", pages=lambda i: 0, order=99)
    assert evaluate_resident(unported, ResidentInputs(ws, facts())).reason == "not computed over resident pages"
    (tmp_path / "f").write_bytes(b"z" * 9000)
    doc = run_json("live", tmp_path, "--json")
    assert list(doc["totals"]["models"]) == [m.name for m in MODELS]
    for m in MODELS:
        figures = doc["totals"]["models"][m.name]
        needs_image = bool(m.requires or m.resident_requires)
        assert figures["applicable"] == (not needs_image), m.name
        if needs_image:
            assert figures["reason"].endswith("(report IMAGE --resident, or live --device DEV)"), m.name
