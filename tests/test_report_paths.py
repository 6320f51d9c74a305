"""``report --path``: only the files under some paths, against a brute force on a kernel-made image.

On the image of ``sharing_image.py`` (``@base`` and its snapshots). The
expected figures come from what the kernel said on the mounted filesystem,
as in ``test_by_dir``: the files are the distinct (subvolume, st_ino) of the
``lstat`` listing under the paths; per_inode caches ceil(size / 4096) pages
of each; a page is shareable when a FIEMAP extent without DATA_INLINE,
ENCODED, UNWRITTEN or NOT_ALIGNED covers it, keyed by its logical address;
shared_extent caches each such key once among the chosen files (a page whose
key ``c`` of their pages map costs ``1/c``). Needs root, loop devices, the
btrfs module, btrfs-progs and xfs_io.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sharing_image import P, SharingImage, build_sharing_image
from support import kernel_unavailable, run, run_json

WHY_NOT = kernel_unavailable(("losetup", "mkfs.btrfs", "btrfs", "xfs_io"))
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


@pytest.fixture(scope="module")
def sharing(tmp_path_factory) -> SharingImage:
    return build_sharing_image(tmp_path_factory.mktemp("report-paths"))


def brute_force(sharing: SharingImage, paths: list[str]) -> tuple[int, int, float]:
    """(regular inodes, per_inode pages, shared_extent pages) of the files under ``paths``."""
    chosen = {}
    for r in sharing.listing:
        if r["type"] == "file" and any(r["path"] == p or r["path"].startswith(p + "/") for p in paths):
            chosen.setdefault((r["subvol"], r["st_ino"]), r)
    keys_of = {key: (-(-r["size"] // P), sharing.page_keys(r)) for key, r in chosen.items()}
    c = Counter(k for _, keys in keys_of.values() for k in keys)
    per_inode = sum(n for n, _ in keys_of.values())
    shared = sum(n - sum(1 - 1 / c[k] for k in keys) for n, keys in keys_of.values())
    return len(chosen), per_inode, shared


@pytest.mark.parametrize("paths", [["@base/usr"], ["@base/usr", "@snap1/usr/lib"], ["@snap2"], ["cross/b"],
                                   ["@base/usr/bin/", "@base/usr/bin/tool"]])
def test_report_path_matches_brute_force(sharing, paths):
    args = [a for p in paths for a in ("--path", p)]
    doc = run_json("report", "--json", *args, sharing.image)
    inodes, per_inode, shared = brute_force(sharing, [p.rstrip("/") for p in paths])
    assert inodes > 0
    assert doc["paths"] == list(dict.fromkeys(p.rstrip("/") for p in paths))
    assert doc["totals"]["inodes"] == inodes
    models = doc["totals"]["models"]
    assert models["per_inode"]["pages"] == per_inode
    assert models["shared_extent"]["pages"] == round(shared)
    whole = run_json("report", "--json", sharing.image)
    assert whole["paths"] is None and whole["totals"]["inodes"] > inodes
    text = run("report", "--wide", *args, sharing.image).stdout
    said = f"Only the files under {', '.join(doc['paths'])} "
    assert said in text and "— only the files under" in text
    metrics = run("report", "--format", "prometheus", *args, sharing.image).stdout
    fsid = doc["filesystem"]["fsid"]
    assert [line for line in metrics.splitlines() if line.startswith("btrfsscan_report_path_info")] == \
        [f'btrfsscan_report_path_info{{fsid="{fsid}",path="{p}"}} 1' for p in doc["paths"]]
    assert "btrfsscan_report_path_info{" not in run("report", "--format", "prometheus", sharing.image).stdout
    assert f'btrfsscan_regular_inodes{{fsid="{fsid}"}} {inodes}' in metrics


def test_report_path_errors(sharing):
    result = run("report", "--path", "@base/nope", sharing.image)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "@base/nope" in lines[0], result.stderr
    result = run("report", "--path", "@base", "--by-dir", "1", sharing.image)  # a usage error, before any read
    assert result.exit_code == 2 and "give --by-dir or --path, not both" in result.stderr


def test_report_path_json_is_valid(sharing):
    result = run("report", "--json", "--path", "@base/etc", sharing.image)  # validated by support.run
    assert result.exit_code == 0
    assert json.loads(result.stdout)["totals"]["inodes"] == 1


def test_report_of_a_file_sharing_nothing_says_so(sharing):
    """``@base/etc/conf``: one inode, two pages of seeded (distinct) content: no model saves a page, and the
    summary says so instead of naming a best design."""
    inodes, per_inode, shared = brute_force(sharing, ["@base/etc"])
    assert (inodes, per_inode, shared) == (1, 2, 2)
    doc = run_json("report", "--json", "--path", "@base/etc", sharing.image)
    assert {m: v["saved_pages"] for m, v in doc["totals"]["models"].items() if v["pages"] is not None} == \
        {m: 0 for m, v in doc["totals"]["models"].items() if v["pages"] is not None}
    text = run("report", "--path", "@base/etc", sharing.image).stdout
    assert "No model saves anything here" in text and "saves the most" not in text and "saves the same" not in text
    assert "1 file (1 inode) in " in text
