"""`live --device`, every model over resident pages, and what `live` says of devices and profiles.

Kernel-backed: a fixture copy with a fresh fsid mounted read-only, caches
dropped, a seeded mix of reads; `live --device LOOP --json --save` inside a
window whose mincore snapshots agree before and after. Expected values come
from this test: fincore, its own mincore + FIEMAP (shared_extent), mincore +
the extent items `btrfs inspect-internal dump-tree` prints (compressed keys),
the bytes read through the kernel after the window (content, file
fingerprints, overlay mappings as ``design_truth`` defines them), and
`btrfs filesystem show`/`df` for devices and profiles. Then, unmounted,
`report IMAGE --resident` on the saved residency gives the same figures for
every model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from support import kernel_unavailable, run, run_json
from test_live import (
    PAGE,
    brute_force_shared_extent,
    capture,
    fresh_fsid_copy,
    kernel,
    regular_files,
    seeded_workload,
    stable_run,
)

import design_truth  # noqa: E402  (tests/fixtures, on the path through test_live)

needs_kernel = pytest.mark.skipif(kernel_unavailable() is not None or shutil.which("btrfstune") is None,
                                  reason=kernel_unavailable() or "needs btrfstune (btrfs-progs)")
MODELS = ("per_inode", "shared_extent", "shared_extent_compressed", "rfc_as_posted", "overlay_copy_up",
          "file_fingerprint", "content_dedupe")


# --- the test's own counts ---------------------------------------------------------------------


def extent_items(device: str) -> dict[tuple[int, int], list[dict]]:
    """(tree, ino) -> its EXTENT_DATA items, as `btrfs inspect-internal dump-tree` prints them."""
    text = subprocess.run(["btrfs", "inspect-internal", "dump-tree", device], capture_output=True, text=True,
                          check=True).stdout
    out: dict[tuple[int, int], list[dict]] = defaultdict(list)
    tree = None
    item = None
    for line in text.splitlines():
        if m := re.match(r"^(?:fs tree key \(FS_TREE|file tree key \((\d+)) ROOT_ITEM", line):
            tree = int(m.group(1) or 5)
        elif re.match(r"^\S.* tree key ", line):
            tree = None
        elif tree is not None and (m := re.search(r"key \((\d+) EXTENT_DATA (\d+)\)", line)):
            item = {"ino": int(m.group(1)), "file_offset": int(m.group(2))}
            out[(tree, item["ino"])].append(item)
        elif item is not None and (m := re.search(r"type (\d+) \(", line)):
            item["type"] = int(m.group(1))
        elif item is not None and (m := re.search(r"extent data disk byte (\d+) nr (\d+)", line)):
            item["disk_bytenr"] = int(m.group(1))
        elif item is not None and (m := re.search(r"extent data offset (\d+) nr (\d+)", line)):
            item["offset"], item["num_bytes"] = int(m.group(1)), int(m.group(2))
        elif item is not None and (m := re.search(r"extent compression (\d+)", line)):
            item["compression"] = int(m.group(1))
    return out


def compressed_saving(files: dict, snap: dict, items: dict) -> int:
    """Resident pages of compressed REG items less their distinct (disk_bytenr, decompressed page) keys
    (P = sector size here: every page lies inside one item)."""
    keys, pages = set(), 0
    for key, path in files.items():
        sv = capture.subvolume_id(path)
        for page in (k for k, bit in enumerate(snap[key]) if bit):
            start = page * PAGE
            for e in items.get((sv, key[1]), ()):
                if (e.get("type") == 1 and e.get("compression") and e["disk_bytenr"]
                        and e["file_offset"] <= start < e["file_offset"] + e["num_bytes"]):
                    d = e["offset"] + start - e["file_offset"]
                    if d % PAGE == 0:
                        pages += 1
                        keys.add((e["disk_bytenr"], d // PAGE))
                    break
    return pages - len(keys)


def design_keys(files: dict, snap: dict) -> dict[str, dict]:
    """content_dedupe, file_fingerprint, overlay_copy_up over the resident pages, from the bytes: per file
    the key of each resident page: its page hash; (size, file hash, page); (st_ino, size, FIEMAP mapping,
    page)."""
    out: dict[str, dict] = {"content_dedupe": {}, "file_fingerprint": {}, "overlay_copy_up": {}}
    for key, path in files.items():
        data = path.read_bytes()
        size = len(data)
        whole = hashlib.sha256(data).hexdigest()
        mapping = design_truth._mapping(path, size, data)
        pages = [k for k, bit in enumerate(snap[key]) if bit]
        out["content_dedupe"][key] = [hashlib.sha256(data[k * PAGE:(k + 1) * PAGE].ljust(PAGE, b"\0")).digest()
                                      for k in pages]
        out["file_fingerprint"][key] = [(size, whole, k) for k in pages]
        out["overlay_copy_up"][key] = [(key[1], size, mapping, k) for k in pages]
    return out


def design_figures(keys_of: dict, subvolume_of: dict) -> tuple[int, dict[int, dict], list[float]]:
    """A design's pages, per subvolume its resident pages, fair-share saving (1 - 1/c over its pages, c the
    resident pages of the key), keys only it maps and keys it maps with another subvolume, and the files'
    savings, best first."""
    count: Counter = Counter(k for keys in keys_of.values() for k in keys)
    holders: dict = defaultdict(set)
    for f, keys in keys_of.items():
        for k in keys:
            holders[k].add(subvolume_of[f])
    saved = {f: sum(1 - 1 / count[k] for k in keys) for f, keys in keys_of.items()}
    rows: dict[int, dict] = {}
    for f, keys in keys_of.items():
        row = rows.setdefault(subvolume_of[f], {"per_inode_pages": 0, "saved_pages": 0.0})
        row["per_inode_pages"] += len(keys)
        row["saved_pages"] += saved[f]
    for sv, row in rows.items():
        row["exclusive_pages"] = sum(1 for h in holders.values() if h == {sv})
        row["shared_pages"] = sum(1 for h in holders.values() if sv in h and len(h) > 1)
    return len(count), rows, sorted((s for s in saved.values() if s > 1e-9), reverse=True)


# --- live --device = the test's counts = report --resident ----------------------------------------

#: fixture -> (directories whose files the workload reads, models whose brute force is exact there).
#: The checksum tree keys compressed data per extent and knows nothing of NOCOW data, so the content
#: models are exact on uncompressed, checksummed files only (designs-sha256 without comp/ and nocow/).
CASES = {
    "compress": (None, ("shared_extent_compressed", "overlay_copy_up")),
    "designs-sha256": (("base", "snap1", "snap2"), ("shared_extent_compressed", "overlay_copy_up",
                                                    "file_fingerprint", "content_dedupe")),
}


@pytest.mark.kernel
@needs_kernel
@pytest.mark.parametrize("name", sorted(CASES))
def test_live_device_equals_brute_force_and_report_resident(name, fixture_images, tmp_path):
    dirs, exact = CASES[name]
    save = tmp_path / "residency.json"
    with fresh_fsid_copy(fixture_images, name, tmp_path) as img:
        with kernel.loop_devices([img]) as devices, kernel.mounted(devices[0], "ro,subvolid=5") as mnt:
            files = regular_files(mnt)
            capture.drop_caches()
            chosen = {k: p for k, p in files.items() if dirs is None or p.relative_to(mnt).parts[0] in dirs}
            seeded_workload(chosen, f"live-device/{name}")
            result, snap, fincore_total = stable_run(files, "live", mnt, "--device", devices[0], "--json",
                                                     "--save", save)
            live = json.loads(result.stdout)
            expected = {"per_inode": fincore_total, "shared_extent": brute_force_shared_extent(files, snap)}
            expected["rfc_as_posted"] = expected["shared_extent"]  # one device, SINGLE data, P = sector size
            expected["shared_extent_compressed"] = (expected["shared_extent"]
                                                    - compressed_saving(files, snap, extent_items(devices[0])))
            keys = design_keys(files, snap)
            subvolume_of = {key: capture.subvolume_id(path) for key, path in files.items()}
            truth = {m: design_figures(keys[m], subvolume_of) for m in keys}
            expected.update({m: pages for m, (pages, _, _) in truth.items()})
        report = run_json("report", img, "--resident", save, "--json", "--page-size", PAGE)
    models = live["totals"]["models"]
    assert not live["partial"] and live["warnings"] == []
    assert {m: models[m]["pages"] for m in ("per_inode", "shared_extent", "rfc_as_posted", *exact)} == \
        {m: expected[m] for m in ("per_inode", "shared_extent", "rfc_as_posted", *exact)}
    assert all(models[m]["applicable"] for m in MODELS), {m: models[m]["reason"] for m in MODELS}
    assert models["shared_extent_compressed"]["pages"] < models["shared_extent"]["pages"] or name != "compress"
    assert models["content_dedupe"]["pages"] < models["per_inode"]["pages"]
    for m in exact:
        if m not in truth:
            continue
        _, rows, savings = truth[m]
        got = {row.pop("id"): row for row in json.loads(json.dumps(models[m]["subvolumes"]))}
        assert {sv: got[sv] for sv in rows} == {sv: {**row, "saved_pages": pytest.approx(row["saved_pages"], abs=2e-3)}
                                                for sv, row in rows.items()}, m
        assert all(not any(row.values()) for sv, row in got.items() if sv not in rows), m
        top = models[m]["top_files"]
        assert [f["saved_pages"] for f in top] == pytest.approx(savings[:len(top)], abs=2e-3), m
        assert len(top) == min(10, len(savings)) and all(f["path"] for f in top), m
    for key in ("totals", "top_extents", "top_files", "subvolumes"):
        assert report[key] == live[key], key
    kinds = dict(live["by_kind"])
    assert kinds.pop("unknown")["pages"] == 0 and report["by_kind"] == kinds
    for doc in (live, report):
        for device in doc["filesystem"].pop("devices"):
            assert device["path"] in (devices[0], str(img))
    assert report["filesystem"] == live["filesystem"]


@pytest.mark.kernel
@needs_kernel
def test_live_device_of_another_filesystem_is_one_error_line(fixture_images, tmp_path):
    other = fixture_images("files", "reflinks")[0]  # the fixture itself: not the copy's fresh fsid
    with fresh_fsid_copy(fixture_images, "reflinks", tmp_path) as img:
        with kernel.loop_devices([img]) as devices, kernel.mounted(devices[0], "ro") as mnt:
            for args, needle in (((mnt, "--device", other), "not"), ((tmp_path, "--device", devices[0]), "not btrfs")):
                result = run("live", *args, "--json")
                assert result.exit_code == 2 and result.stdout == "", result.stderr
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1 and needle in lines[0], result.stderr
            result = run("live", mnt, "--device", other, "--json")
            fsid = run_json("super", other, "--json")["fsid"]
            assert fsid in result.stderr and str(other) in result.stderr


@pytest.mark.kernel
@needs_kernel
def test_live_device_warns_when_the_device_lags_the_mount(fixture_images, tmp_path):
    """Written but not committed: BTRFS_IOC_FS_INFO's generation is the running transaction's, the
    device's superblock the last commit's; after `sync` they agree again."""
    with fresh_fsid_copy(fixture_images, "reflinks", tmp_path) as img:
        with kernel.loop_devices([img]) as devices, \
                kernel.mounted(devices[0], "noatime,commit=300,subvolid=5") as mnt:
            os.sync()
            kernel.write_seeded_file(mnt / "new", "live-device/new", 3 * PAGE)  # no sync: a running transaction
            committed = int(re.search(r"^generation\s+(\d+)", subprocess.run(
                ["btrfs", "inspect-internal", "dump-super", devices[0]], capture_output=True, text=True,
                check=True).stdout, re.M).group(1))
            result = run("live", mnt, "--device", devices[0], "--json")
            assert result.exit_code == 1, result.stderr
            doc = json.loads(result.stdout)
            assert doc["partial"] is True
            assert [w for w in doc["warnings"] if f"generation {committed}, older than" in w], doc["warnings"]
            os.sync()
            doc = run_json("live", mnt, "--device", devices[0], "--json")
            assert doc["partial"] is False and doc["filesystem"]["generation"] > committed


# --- devices and profiles as the kernel gives them --------------------------------------------


def fi_show(mnt: Path) -> dict:
    text = subprocess.run(["btrfs", "filesystem", "show", "--raw", str(mnt)], capture_output=True, text=True,
                          check=True).stdout
    label = re.search(r"Label: (?:'(.*)'|none)", text).group(1) or ""
    devices = [{"devid": int(m[0]), "total_bytes": int(m[1]), "bytes_used": int(m[2]), "path": m[3]}
               for m in re.findall(r"devid\s+(\d+) size (\d+) used (\d+) path (\S+)", text)]
    return {"label": label, "fsid": re.search(r"uuid: (\S+)", text).group(1),
            "num_devices": int(re.search(r"Total devices (\d+)", text).group(1)), "devices": devices}


def fi_df(mnt: Path) -> dict[str, list[str]]:
    text = subprocess.run(["btrfs", "filesystem", "df", "--raw", str(mnt)], capture_output=True, text=True,
                          check=True).stdout
    out = defaultdict(set)
    for kind, profile in re.findall(r"^(Data\+Metadata|Data|Metadata|System), (\w+):", text, re.M):
        for part in kind.split("+"):
            out[part.lower()].add(profile.upper())
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.kernel
@needs_kernel
def test_live_filesystem_section_matches_btrfs_filesystem_show_and_df(tmp_path):
    images = [kernel.make_sparse_image(tmp_path / f"d{i}.img", 300 << 20) for i in range(2)]
    with kernel.loop_devices(images) as devices:
        kernel.make_fs(devices, "-L", "live-two", "-d", "raid1", "-m", "raid1")
        with kernel.mounted(devices[0], "noatime") as mnt:
            kernel.write_seeded_file(mnt / "f", "live-device/raid1", 5 * PAGE + 7)
            os.sync()
            show, df = fi_show(mnt), fi_df(mnt)
            doc = run_json("live", mnt, "--json")
    fs = doc["filesystem"]
    assert {k: fs[k] for k in ("label", "fsid", "num_devices")} == {k: show[k] for k in ("label", "fsid", "num_devices")}
    assert [{k: d[k] for k in ("devid", "total_bytes", "bytes_used", "path")} for d in fs["devices"]] == show["devices"]
    assert show["num_devices"] == 2 and fs["profiles"] == {"data": df["data"], "metadata": df["metadata"],
                                                          "system": df["system"]} == {
        "data": ["RAID1"], "metadata": ["RAID1"], "system": ["RAID1"]}
    assert fs["nodesize"] == 16384 and "NO_HOLES" in fs["features"]["incompat"]
    rfc = doc["totals"]["models"]["rfc_as_posted"]
    assert rfc["applicable"] is False and "2 devices" in rfc["reason"] and "RAID1" in rfc["reason"]
