"""Log replay of the extent tree, the checksum tree and subvolume paths, against the kernel.

The fixture ``files/log-refs`` (``tests/fixtures/build_logs.py``) is a copy
taken while mounted after fsyncs of extents only the log references: a new
file, a reflink of a committed extent and of a new one, a partial reflink
into a committed file, an overwrite splitting a committed extent, an unlink
freeing an extent, and the rename of a directory holding a subvolume. Its
``replayed.img.xz`` is that copy after a read-write kernel mount (the kernel
replayed the log) and unmount, ``expected/replayed-dump-tree.txt`` its
dump-tree; ``expected/dump-tree.txt`` is the copy's. ``map``'s refs and
``ls``'s shared bytes must follow the kernel's extent items, the content
models the kernel's checksum tree, ``subvolumes`` the kernel's paths.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from support import run, run_json

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "files" / "log-refs"
EXPECTED = FIXTURE / "expected"
sys.path.insert(0, str(HERE / "fixtures"))
import kernel  # noqa: E402  tests/fixtures/kernel.py

pytestmark = pytest.mark.skipif(not (FIXTURE / "replayed.img.xz").exists(), reason="log-refs fixture not built")
BLOCK = 4096
#: Which dump-tree holds the extent tree each view must equal.
DUMP = {"replayed": "replayed-dump-tree.txt", "committed": "dump-tree.txt"}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """The copy with its log (``copy``) and the kernel-replayed copy (``kernel``)."""
    tmp = tmp_path_factory.mktemp("log-refs")
    return {"copy": kernel.decompress_image(FIXTURE / "dev0.img.xz", tmp / "dev0.img"),
            "kernel": kernel.decompress_image(FIXTURE / "replayed.img.xz", tmp / "replayed.img")}


def _flags(view: str) -> list[str]:
    return [] if view == "replayed" else ["--no-log-replay"]


def _section(text: str, tree: str) -> str:
    """One tree's part of a dump-tree output."""
    return re.split(r"^\S.* tree key ", text.split(f"{tree} tree key", 1)[1], flags=re.M)[0]


def _extent_refs(view: str) -> dict[int, tuple[int, int]]:
    """bytenr -> (length, refs) of every data EXTENT_ITEM in btrfs-progs' dump-tree."""
    text = _section((EXPECTED / DUMP[view]).read_text(), "extent")
    return {int(b): (int(n), int(r)) for b, n, r in re.findall(
        r"key \((\d+) EXTENT_ITEM (\d+)\) itemoff \d+ itemsize \d+\n\s+refs (\d+) gen \d+ flags DATA", text)}


def _csum_ranges(view: str) -> list[tuple[int, int]]:
    """[start, end) of every EXTENT_CSUM item of the checksum tree in btrfs-progs' dump-tree."""
    text = _section((EXPECTED / DUMP[view]).read_text(), "checksum")
    return [(int(s), int(e)) for s, e in re.findall(r"range start (\d+) end (\d+) length \d+", text)]


def _load(view: str, name: str):
    return json.loads((EXPECTED / view / f"{name}.json").read_text())


def _containing(refs: dict[int, tuple[int, int]], logical: int) -> int:
    """The refs of the extent item holding ``logical``."""
    for start, (length, count) in refs.items():
        if start <= logical < start + length:
            return count
    raise AssertionError(f"no extent item holds {logical}")


def test_the_log_changes_the_extent_tree():
    """The fixture is what this module needs: extents whose refs the replay changes, one it adds, one it frees."""
    before, after = _extent_refs("committed"), _extent_refs("replayed")
    assert {b for b in before if b not in after}  # freed by the unlink
    assert {b for b in after if b not in before}  # only the log referenced them
    assert [b for b in before if b in after and before[b][1] != after[b][1]]  # a reference more


@pytest.mark.parametrize("view", ["replayed", "committed"])
def test_map_refs_and_blocks_match_the_kernel(images, view):
    """Every regular extent's ``refs`` is its EXTENT_ITEM's in the kernel's extent tree; the blocks are FIEMAP's."""
    refs = _extent_refs(view)
    fiemap = _load(view, "fiemap")
    checked = 0
    for path, extents in fiemap.items():
        doc = run_json("map", "--json", *_flags(view), images["copy"], path)
        for e in doc["extents"]:
            if e["type"] == "regular":
                assert e["refs"] == refs[e["disk_bytenr"]][1], (path, e["disk_bytenr"])
                checked += 1
        ours = {e["file_offset"] + k: e["disk_bytenr"] + e["offset"] + k
                for e in doc["extents"] if e["type"] == "regular" for k in range(0, e["length"], BLOCK)}
        theirs = {f["fe_logical"] + k: f["fe_physical"] + k for f in extents for k in range(0, f["fe_length"], BLOCK)}
        assert ours == theirs, path
    assert checked >= (10 if view == "replayed" else 6)


@pytest.mark.parametrize("view", ["replayed", "committed"])
def test_map_shared_flags_match_the_kernel(images, view):
    """``map``'s extents merged as FIEMAP merges them equal FIEMAP, SHARED flags included: after the replay
    those follow the backrefs it leaves (reflinks to a committed extent and to a new one, a partial reflink
    into a committed file: an extent's other references come from the log)."""
    from test_files import check_against_fiemap

    fiemap = _load(view, "fiemap")
    for path, records in fiemap.items():
        check_against_fiemap(run_json("map", "--json", *_flags(view), images["copy"], path), records, BLOCK)
    flagged = sum("SHARED" in r["flags"] for records in fiemap.values() for r in records)
    assert flagged == (6 if view == "replayed" else 0)  # the committed files share nothing


@pytest.mark.parametrize("view", ["replayed", "committed"])
def test_ls_shared_bytes_follow_the_kernel_mappings(images, view):
    """``ls``'s shared bytes: the bytes of a file whose device blocks another inode, or another position of
    the same file, also maps in the kernel's FIEMAP (each inode counted once, by its first path)."""
    fiemap = _load(view, "fiemap")
    inode_of = {r["path"]: (r["subvol"], r["st_ino"]) for r in _load(view, "listing")}
    by_inode: dict[tuple[int, int], list] = {}
    for path, extents in fiemap.items():
        by_inode.setdefault(inode_of[path], extents)
    mapped = Counter(f["fe_physical"] + k for extents in by_inode.values()
                     for f in extents for k in range(0, f["fe_length"], BLOCK))
    want = {path: sum(BLOCK for f in extents for k in range(0, f["fe_length"], BLOCK)
                      if mapped[f["fe_physical"] + k] > 1)
            for path, extents in fiemap.items()}
    entries = run_json("ls", "-R", "--json", *_flags(view), images["copy"])["entries"]
    got = {e["path"]: e["shared_bytes"] for e in entries if e["type"] == "file"}
    assert got == want
    assert any(want.values()) == (view == "replayed")  # committed: no two mappings of one block


def _kernel_subvolume_path(view: str) -> str:
    return next(r["path"] for r in _load(view, "listing") if r["subvol"] == 256 and r["st_ino"] == 256)


def test_subvolume_path_follows_a_replayed_directory_rename(images):
    """``subvolumes`` and ``report``: the path the kernel shows for the subvolume after replay (the directory
    holding it renamed in the log); the committed path without replay."""
    from btrfsscan.model.filesystem import open_filesystem

    want = _kernel_subvolume_path("replayed")
    assert want != _kernel_subvolume_path("committed")
    doc = run_json("subvolumes", "--json", images["copy"])
    assert {s["id"]: s["path"] for s in doc["subvolumes"]}[256] == want
    report = json.loads(run("report", "--json", images["copy"]).stdout.splitlines()[0])
    assert {s["id"]: s["path"] for s in report["subvolumes"]}[256] == want
    fs = open_filesystem([images["copy"]], log_replay=False)
    try:
        assert fs.subvolumes.get(256).path == _kernel_subvolume_path("committed")
    finally:
        fs.close()


def _figures(doc: dict) -> dict:
    return {key: doc[key] for key in ("totals", "by_kind", "subvolumes", "top_extents", "top_files")}


def test_content_models_equal_those_on_the_kernel_replayed_copy(images):
    """The content designs read the checksum tree: after replay in memory, as on the copy the kernel replayed."""
    ours = json.loads(run("report", "--json", images["copy"]).stdout.splitlines()[0])
    theirs = json.loads(run("report", "--json", images["kernel"]).stdout.splitlines()[0])
    assert _figures(ours) == _figures(theirs)
    committed = json.loads(run("report", "--json", "--no-log-replay", images["copy"]).stdout.splitlines()[0])
    content = [name for name, m in theirs["totals"]["models"].items() if m["content_source"] == "csum_tree"]
    assert content and all(theirs["totals"]["models"][n]["unknown_pages"] == 0 for n in content)
    assert committed["totals"] != theirs["totals"]


def test_checksums_after_replay_cover_what_the_kernel_tree_covers(images):
    """Every data sector a file of the replayed view references has a checksum in the merged table exactly when
    the kernel's checksum tree has one, and it is the one the kernel wrote."""
    from btrfsscan.analysis.report import checksum_table
    from btrfsscan.model.filesystem import open_filesystem

    sectors = np.array(sorted({f["fe_physical"] + k for extents in _load("replayed", "fiemap").values()
                               for f in extents for k in range(0, f["fe_length"], BLOCK)}), np.int64)
    covered = np.array([any(s <= a < e for s, e in _csum_ranges("replayed")) for a in sectors.tolist()])
    tables = {}
    for name, replay in (("copy", True), ("kernel", True), ("committed", False)):
        fs = open_filesystem([images["kernel" if name == "kernel" else "copy"]], log_replay=replay)
        try:
            table = checksum_table(fs)
            rows = table.locate(sectors)
            tables[name] = np.where(rows[:, None] >= 0, table.csums[np.maximum(rows, 0)], 0), rows >= 0
        finally:
            fs.close()
    assert covered.all() and tables["copy"][1].all()
    assert (tables["copy"][0] == tables["kernel"][0]).all()
    assert not tables["committed"][1].all()  # without the log's checksums the new extents have none


# --- a log over leaves a snapshot shares ------------------------------------------------------------

SNAPSHOT = HERE / "fixtures" / "files" / "log-snapshot"


@pytest.fixture(scope="module")
def snapshot_copy(tmp_path_factory) -> Path:
    if not (SNAPSHOT / "dev0.img.xz").exists():
        pytest.skip("log-snapshot fixture not built")
    return kernel.decompress_image(SNAPSHOT / "dev0.img.xz", tmp_path_factory.mktemp("log-snapshot") / "dev0.img")


def test_refs_in_leaves_a_snapshot_shares_are_exact_or_warned(snapshot_copy):
    """The kernel copies each shared leaf the replay changes, adding a reference to every extent it points at
    (dump-tree of the kernel-replayed copy): not modelled, so a map naming such an extent warns and is partial;
    every other count is the kernel's."""
    text = (SNAPSHOT / "expected" / "replayed-dump-tree.txt").read_text()
    refs = {int(b): int(r) for b, r in re.findall(
        r"key \((\d+) EXTENT_ITEM \d+\) itemoff \d+ itemsize \d+\n\s+refs (\d+) gen \d+ flags DATA",
        _section(text, "extent"))}
    listing = json.loads((SNAPSHOT / "expected" / "replayed" / "listing.json").read_text())
    exact = warned = 0
    for path in [r["path"] for r in listing if r["type"] == "file" and r["path"].startswith("sv/")]:
        result = run("map", "--json", snapshot_copy, path)
        doc = json.loads(result.stdout)
        said = [w for w in doc["warnings"] if "may differ from the kernel's after log replay" in w]
        for e in doc["extents"]:
            if e["type"] != "regular":
                continue
            if said:
                assert result.exit_code == 1 and doc["partial"] is True
                warned += e["refs"] != refs[e["disk_bytenr"]]
            else:
                assert result.exit_code == 0 and e["refs"] == refs[e["disk_bytenr"]], path
                exact += 1
    assert warned >= 50 and exact >= 50  # the fixture has both kinds
