"""The report's top files: each distinct inode version once, with how many snapshots hold it unchanged.

On the kernel-made image of ``sharing_image.py`` (snapshots of ``@base``
before and after changes). The expected rows come from a brute force over
what the kernel said on the mounted filesystem: a file is (subvolume,
st_ino); two files are one inode version when their inode numbers, sizes
and FIEMAP extents (flags aside from SHARED) are equal; a file's
shared_extent fair-share saving is the sum over its pages of ``1 - 1/c``,
``c`` the number of file pages mapping the same logical page (as in
``test_by_dir``). Needs root, loop devices, the btrfs module, btrfs-progs
and xfs_io.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest
from sharing_image import SharingImage, build_sharing_image
from support import kernel_unavailable, run, run_json

WHY_NOT = kernel_unavailable(("losetup", "mkfs.btrfs", "btrfs", "xfs_io"))
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


@pytest.fixture(scope="module")
def sharing(tmp_path_factory) -> SharingImage:
    return build_sharing_image(tmp_path_factory.mktemp("top-files"))


def brute_force(sharing: SharingImage) -> tuple[dict, dict]:
    """(version key -> sorted (subvol, ino) holding it, (subvol, ino) -> fair-share saved pages)."""
    files = {}
    for r in sharing.listing:
        if r["type"] == "file":
            files.setdefault((r["subvol"], r["st_ino"]), r)
    keys_of, versions = {}, defaultdict(list)
    for file, r in files.items():
        records = sharing.fiemap[r["path"]]
        extents = tuple((e["fe_logical"], e["fe_physical"], e["fe_length"], frozenset(e["flags"]) - {"SHARED"})
                        for e in records)
        versions[file[1], r["size"], extents].append(file)
        keys_of[file] = sharing.page_keys(r)
    c = Counter(k for keys in keys_of.values() for k in keys)
    saved = {file: sum(1 - 1 / c[k] for k in keys) for file, keys in keys_of.items()}
    return {key: sorted(members) for key, members in versions.items()}, saved


def test_top_files_are_distinct_versions(sharing):
    versions, saved = brute_force(sharing)
    assert max(len(m) for m in versions.values()) == 3  # @base, @snap1, @snap2 hold files unchanged
    expected = []
    for members in versions.values():
        values = {round(saved[f], 6) for f in members}
        assert len(values) == 1, members  # one version, one saving
        if saved[members[0]] > 1e-9:
            expected.append((-round(saved[members[0]], 3), *members[0], len(members) - 1))
    expected.sort()
    doc = run_json("report", "--json", "--top", 1000, sharing.image)
    got = sorted((-round(f["saved_pages"], 3), f["subvol"], f["ino"], f["snapshot_copies"]) for f in doc["top_files"])
    assert got == expected
    assert sum(f["snapshot_copies"] for f in doc["top_files"]) > 0
    ten = run_json("report", "--json", sharing.image)["top_files"]
    assert len(ten) == 10 and [(-round(f["saved_pages"], 3)) for f in ten] == [e[0] for e in expected[:10]]
    assert len({(f["subvol"], f["ino"]) for f in ten}) == 10
    group_of = {f: key for key, members in versions.items() for f in members}
    for name, model in doc["totals"]["models"].items():
        rows = model.get("top_files") or []
        assert len({group_of[r["subvol"], r["ino"]] for r in rows}) == len(rows), name
        for r in rows:
            members = versions[group_of[r["subvol"], r["ino"]]]
            assert (r["subvol"], r["ino"]) == members[0] and r["snapshot_copies"] == len(members) - 1, (name, r)



@pytest.mark.parametrize("top", [1, 2, 3, 5])
def test_short_top_lists_from_a_preselection(sharing, top, monkeypatch):
    """With few rows wanted, only the best ``PRESELECT`` candidate versions a row are ranked (then all of
    them when those give too few distinct rows): one a row here, so both paths run on this small image."""
    from btrfsscan.cache import top as top_module

    monkeypatch.setattr(top_module, "PRESELECT", 1)
    versions, saved = brute_force(sharing)
    expected = sorted((-round(saved[m[0]], 3), *m[0], len(m) - 1) for m in versions.values() if saved[m[0]] > 1e-9)
    assert len(expected) > 2 * top
    rows = run_json("report", "--json", "--top", top, sharing.image)["top_files"]
    assert [(-round(f["saved_pages"], 3), f["subvol"], f["ino"], f["snapshot_copies"]) for f in rows] == \
        expected[:top]


def test_top_files_table_says_snapshot_copies(sharing):
    doc = run_json("report", "--json", sharing.image)
    copied = [f for f in doc["top_files"] if f["snapshot_copies"]]
    assert copied
    text = run("report", "--wide", sharing.image).stdout
    for f in copied:
        n = f["snapshot_copies"]
        label = f"{f['path']} + {n} snapshot cop{'y' if n == 1 else 'ies'}"
        assert re.search(re.escape(label), text), (label, text)
    pytest.importorskip("plotly", reason="plotly (btrfsscan[html]) is not installed")
    page = run("report", "--format", "html", sharing.image).stdout
    files = page[page.index("Files saving the most"):]
    for f in copied:
        n = f["snapshot_copies"]
        assert f"{f['path']} + {n} snapshot cop{'y' if n == 1 else 'ies'}" in files, f
