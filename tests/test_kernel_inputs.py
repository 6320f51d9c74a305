"""Inputs as the kernel sees them (issue 14, items 2-4), against real kernel mounts.

* a valid primary superblock older than backup copy 1: btrfsscan reads what
  the kernel mounts read-only (the primary), warns that copy 1 is newer, and
  ``--super-copy 1`` reads copy 1 as ``btrfs inspect-internal dump-super -s 1``
  sees it;
* a mounted loop device (and its backing file), idle and while a writer runs.

Each filesystem is made here by the kernel with a fresh fsid, on a loop
device that is detached at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import subprocess
import uuid
from pathlib import Path

import pytest
from support import run, run_json
from test_kernel_random import REASON, _load  # the same tools: root, loop devices, btrfs, btrfs-progs

HERE = Path(__file__).resolve().parent
M = 1 << 20
PRIMARY = 65536


pytestmark = [pytest.mark.kernel, pytest.mark.skipif(REASON is not None, reason=f"kernel-backed test: {REASON}")]


def _dump_super_generation(device: str, copy: int = 0) -> int:
    text = subprocess.run(["btrfs", "inspect-internal", "dump-super", "-s", str(copy), device], check=True,
                          capture_output=True, text=True).stdout
    return int(re.search(r"^generation\s+(\d+)$", text, re.M).group(1))


def _subvolume_show_generation(mnt: Path) -> int:
    text = subprocess.run(["btrfs", "subvolume", "show", str(mnt)], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"^\s*Generation:\s+(\d+)$", text, re.M).group(1))


@pytest.fixture(scope="module")
def older_primary(tmp_path_factory):
    """An image whose valid primary superblock is from before its last commits (copy 1 newer), with what
    the kernel mounts read-only from it: the generation and the file names."""
    kernel = _load("kernel")
    img = kernel.make_sparse_image(tmp_path_factory.mktemp("older-primary") / "older.img", 200 * M)
    with kernel.loop_devices([img]) as (dev,):
        kernel.make_fs([dev], fsid=str(uuid.uuid4()))
        with kernel.mounted(dev) as mnt:
            kernel.write_seeded_file(mnt / "committed", 1, 64 * 1024)
            subprocess.run(["sync", "-f", str(mnt / "committed")], check=True)
            with open(dev, "rb") as raw:
                raw.seek(PRIMARY)
                old_primary = raw.read(4096)  # the primary as that commit wrote it
            kernel.write_seeded_file(mnt / "later", 2, 64 * 1024)
        newest = _dump_super_generation(dev, 1)
    with open(img, "r+b") as raw:
        raw.seek(PRIMARY)
        raw.write(old_primary)
    with kernel.loop_devices([img]) as (dev,):
        primary = _dump_super_generation(dev, 0)
        assert _dump_super_generation(dev, 1) == newest > primary
        with kernel.mounted(dev, "ro") as mnt:
            mounted = {"generation": _subvolume_show_generation(mnt), "names": sorted(os.listdir(mnt))}
    return img, primary, newest, mounted


def test_valid_older_primary_is_used_as_the_kernel_mounts_it(older_primary):
    img, primary, newest, mounted = older_primary
    assert mounted["names"] == ["committed"]  # the kernel mounted the older primary
    result = run("super", "--json", img)
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["source"]["mirror"] == 0 and out["generation"] == primary
    assert out["warnings"] == [
        f"superblock copy 1 has generation {newest}, newer than the primary's {primary} (a superblock write that "
        f"did not reach every copy): using the primary, as the kernel does; --super-copy 1 reads the newer one "
        f"({img} offset {64 * M})"
    ]
    assert [(m["mirror"], m["generation"], m["status"], m["in_use"]) for m in out["mirrors"][:2]] == [
        (0, primary, "ok", True), (1, newest, f"newer generation {newest}, not used", False)]
    subvolumes = run_json("subvolumes", "--json", img, expect_exit=1)["subvolumes"]
    assert [s["generation"] for s in subvolumes if s["id"] == 5] == [mounted["generation"]]
    entries = run_json("ls", "--json", img, expect_exit=1)["entries"]
    assert sorted(e["path"] for e in entries if e["path"] != ".") == mounted["names"]


def test_super_copy_reads_the_newer_copy(older_primary):
    img, primary, newest, _ = older_primary
    out = run_json("super", "--json", "--super-copy", "1", img)  # asked for: no warning
    assert out["source"]["mirror"] == 1 and out["generation"] == newest
    entries = run_json("ls", "--json", "-s", "1", img)["entries"]
    assert sorted(e["path"] for e in entries if e["path"] != ".") == ["committed", "later"]
    result = run("report", "--json", "--super-copy", "2", img)
    assert result.exit_code == 2
    assert result.stderr == (f"btrfsscan: error: {img}: superblock copy 2 at offset {256 << 30} lies beyond the end "
                             f"of the device ({(256 << 30) + 4096} bytes needed)\n")


REPO = HERE.parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m btrfsscan`` in a subprocess; the timeout fails a hang instead of blocking the suite."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "btrfsscan", *args], capture_output=True, text=True, timeout=180,
                          env=env)


def _check_contract(result: subprocess.CompletedProcess, warning: str) -> None:
    assert result.returncode in (1, 2), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    if result.returncode == 2:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("btrfsscan: error: "), result.stderr
    else:
        assert warning in result.stderr, result.stderr


@pytest.fixture
def mounted_loop(tmp_path):
    kernel = _load("kernel")
    img = kernel.make_sparse_image(tmp_path / "live.img", 256 * M)
    with kernel.loop_devices([img]) as (dev,):
        kernel.make_fs([dev], fsid=str(uuid.uuid4()))
        with kernel.mounted(dev) as mnt:
            for n in range(20):
                kernel.write_seeded_file(mnt / f"f{n}", n, 64 * 1024)
            subprocess.run(["sync"], check=True)
            yield kernel, img, dev, mnt


def test_mounted_loop_device_idle_is_named(mounted_loop):
    _, img, dev, mnt = mounted_loop
    warning = (f"warning: {dev} is a device of a mounted filesystem on {mnt}: the result shows its last committed "
               "transaction (changes not yet committed are invisible) and reads race with the kernel's writes")
    result = _cli("report", "--json", dev)
    _check_contract(result, warning)
    assert result.returncode == 1 and json.loads(result.stdout)["partial"] is True
    names = sorted(e["path"] for e in json.loads(_cli("ls", "--json", dev).stdout)["entries"] if e["path"] != ".")
    assert names == sorted(os.listdir(mnt))  # idle and synced: the last commit is what the mount shows
    result = _cli("ls", str(img))
    _check_contract(result, f"warning: {img} is attached to {dev}, a device of a mounted filesystem on {mnt}")


def test_mounted_loop_device_while_written(mounted_loop):
    """A writer creates, rewrites and deletes files with a commit every few operations while btrfsscan reads."""
    _, img, dev, mnt = mounted_loop
    writer = subprocess.Popen([sys.executable, "-c", f"""
import os, itertools
base = {str(mnt)!r}
for n in itertools.count():
    path = os.path.join(base, f"w{{n % 50}}")
    with open(path, "wb") as f:
        f.write(bytes([n % 251]) * (4096 * (1 + n % 16)))
    if n % 7 == 0:
        os.remove(os.path.join(base, f"w{{(n + 25) % 50}}")) if os.path.exists(os.path.join(base, f"w{{(n + 25) % 50}}")) else None
    if n % 5 == 0:
        os.sync()
"""])
    try:
        for command in (["report", "--json"], ["ls", "--json", "-R"], ["chunks", "--json"], ["report"]):
            for target in (dev, str(img)):
                result = _cli(*command, target)
                _check_contract(result, "a device of a mounted filesystem")
    finally:
        writer.terminate()
        writer.wait(timeout=30)


@contextlib.contextmanager
def _unreadable_on_the_host(inner: Path, offsets: list[int], tmp_path: Path):
    """``inner`` copied onto a host btrfs (a loop device made here) whose pages holding ``offsets`` of the
    copy cannot be read: one byte of each changed on the host device under the host's data checksum, so
    the host returns EIO there. Yields the copy's path on the host mounted read-only."""
    kernel = _load("kernel")
    capture = _load("capture")
    outer = kernel.make_sparse_image(tmp_path / "outer.img", 600 * M)
    with kernel.loop_devices([outer]) as (dev,):
        kernel.make_fs([dev], fsid=str(uuid.uuid4()))
        with kernel.mounted(dev) as mnt:
            shutil.copyfile(inner, mnt / "inner.img")
            os.sync()
            extents = capture.fiemap(mnt / "inner.img")
            logical = [next(e["fe_physical"] + off - e["fe_logical"] for e in extents
                            if e["fe_logical"] <= off < e["fe_logical"] + e["fe_length"]) for off in offsets]
        for at in logical:
            host = subprocess.run(["btrfs-map-logical", "-l", str(at), dev], check=True, capture_output=True,
                                  text=True).stdout
            physical = int(re.search(r"physical (\d+)", host).group(1))
            with open(dev, "r+b") as raw:
                raw.seek(physical + 100)
                byte = raw.read(1)
                raw.seek(physical + 100)
                raw.write(bytes([byte[0] ^ 0xFF]))
        with kernel.mounted(dev, "ro") as mnt:
            with open(mnt / "inner.img", "rb") as f:
                for off in offsets:  # the host refuses those pages: the premise
                    with pytest.raises(OSError):
                        os.pread(f.fileno(), 4096, off)
            yield mnt / "inner.img"


def _pristine(inner: Path) -> dict:
    result = _cli("report", "--json", str(inner))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_page_the_host_cannot_read_is_a_bad_copy(fixture_images, tmp_path):
    """An image file on a host that cannot read the page under copy 1 of a tree block (EIO): that copy is
    a bad copy, named with the read error, copy 2 is used, and the figures are the image's. (A mapped
    read of such a page kills the process with SIGBUS, so this runs in a subprocess.)"""
    (inner,) = fixture_images("files", "many").values()
    tree = subprocess.run(["btrfs", "inspect-internal", "dump-tree", "-t", "5", str(inner)], check=True,
                          capture_output=True, text=True).stdout
    root = int(re.search(r"^(?:leaf|node) (\d+) ", tree, re.M).group(1))
    mapped = subprocess.run(["btrfs-map-logical", "-l", str(root), str(inner)], check=True, capture_output=True,
                            text=True).stdout
    copy1 = int(re.search(r"mirror 1 logical \d+ physical (\d+)", mapped).group(1))
    with _unreadable_on_the_host(inner, [copy1], tmp_path) as image:
        result = _cli("report", "--json", str(image))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert doc["totals"] == _pristine(inner)["totals"]
    (warning,) = doc["warnings"]
    assert warning.startswith("bad copy of tree block, used copy 2 instead: copy 1: ")
    assert f"read error at offset {copy1}: Input/output error (tree block {root})" in warning


def test_an_unreadable_primary_superblock_is_a_damaged_copy(fixture_images, tmp_path):
    """The primary superblock's page unreadable on the host (EIO): the primary is an unusable copy, copy 1
    serves (as for a damaged primary), `super` lists the primary as unreadable; with every copy
    unreadable, one error naming each."""
    (inner,) = fixture_images("files", "many").values()
    with _unreadable_on_the_host(inner, [PRIMARY], tmp_path) as image:
        report = _cli("report", "--json", str(image))
        shown = _cli("super", "--json", str(image))
    assert report.returncode == 1 and shown.returncode == 1, report.stderr + shown.stderr
    doc = json.loads(report.stdout)
    assert doc["totals"] == _pristine(inner)["totals"]
    (warning,) = doc["warnings"]
    assert warning.startswith("primary superblock (copy 0) is not usable: unreadable: read error at offset "
                              f"{PRIMARY}: Input/output error; using copy 1")
    mirrors = {m["mirror"]: m for m in json.loads(shown.stdout)["mirrors"]}
    assert mirrors[0]["status"] == f"unreadable: read error at offset {PRIMARY}: Input/output error"
    assert mirrors[0]["magic_ok"] is None and mirrors[1]["in_use"] is True
    with _unreadable_on_the_host(inner, [PRIMARY, 64 * M], tmp_path / "both") as image:
        result = _cli("report", "--json", str(image))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"btrfsscan: error: {image}: no valid superblock (copy 0 at {PRIMARY}: "
                                    f"unreadable: read error at offset {PRIMARY}: Input/output error; copy 1 at "
                                    f"{64 * M}: unreadable: read error at offset {64 * M}: Input/output error)")


def test_a_data_page_the_host_cannot_read_is_unknown_content(fixture_images, tmp_path):
    """``--read-data`` hashes data where the mapped image holds it; a data page the host cannot read (EIO)
    is not touched through the mapping (that would be SIGBUS) but read, and its extent's pages are unknown
    content, with one warning naming the extent and the read error; everything else is as on the image."""
    (inner,) = fixture_images("files", "many").values()
    tree = subprocess.run(["btrfs", "inspect-internal", "dump-tree", str(inner)], check=True, capture_output=True,
                          text=True).stdout
    extent = int(re.search(r"extent data disk byte (\d+) nr (\d+)", tree).group(1))
    mapped = subprocess.run(["btrfs-map-logical", "-l", str(extent), str(inner)], check=True, capture_output=True,
                            text=True).stdout
    physical = int(re.search(r"mirror 1 logical \d+ physical (\d+)", mapped).group(1))
    pristine = _cli("report", "--json", "--read-data", str(inner))
    assert pristine.returncode == 0, pristine.stderr
    with _unreadable_on_the_host(inner, [physical], tmp_path) as image:
        result = _cli("report", "--json", "--read-data", str(image))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    doc, before = json.loads(result.stdout), json.loads(pristine.stdout)
    (warning,) = doc["warnings"]
    assert warning.startswith("data extent unreadable, its pages are counted as unknown: ")
    assert f"read error at offset {physical}: Input/output error (data extent at logical {extent})" in warning
    dedupe, was = doc["totals"]["models"]["content_dedupe"], before["totals"]["models"]["content_dedupe"]
    assert dedupe["unknown_pages"] > was["unknown_pages"]
    assert doc["totals"]["models"]["per_inode"] == before["totals"]["models"]["per_inode"]


def test_a_sprout_uses_its_seed_device_when_given(tmp_path):
    """A seed filesystem (``btrfstune -S 1``) and its sprout (a device added to the mounted seed, files
    written): given both images, the sprout's chunk tree names the seed's device, which is used (not
    reported missing), and its figures are what the kernel shows through the sprout's mount; commands of
    one filesystem take the pair as the sprout. The seed alone is a filesystem of its own; the sprout
    alone is partial, its seed device missing."""
    kernel = _load("kernel")
    seed, sprout = (kernel.make_sparse_image(tmp_path / f"{n}.img", 300 * M) for n in ("seed", "sprout"))
    with kernel.loop_devices([seed]) as (dev,):
        kernel.make_fs([dev], fsid=str(uuid.uuid4()))
        with kernel.mounted(dev) as mnt:
            for n in range(4):
                kernel.write_seeded_file(mnt / f"seed{n}", f"seed{n}", 40000 + n * 5000)
        subprocess.run(["btrfstune", "-S", "1", dev], check=True, capture_output=True)
        with kernel.loop_devices([sprout]) as (dev2,), kernel.mounted(dev, "ro") as mnt:
            subprocess.run(["btrfs", "device", "add", "-f", dev2, str(mnt)], check=True, capture_output=True)
            subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
            subprocess.run(["cp", "--reflink=always", str(mnt / "seed0"), str(mnt / "copy")], check=True)
            kernel.write_seeded_file(mnt / "new", "new", 70000)
            os.sync()
            sizes = {p.name: p.stat().st_size for p in mnt.iterdir() if p.is_file()}
    result = _cli("report", "--json", str(seed), str(sprout))
    assert result.returncode == 0, result.stderr
    docs = {d["filesystem"]["num_devices"]: d for d in map(json.loads, result.stdout.splitlines())}
    alone, both = docs[1], docs[2]
    assert alone["totals"]["files"] == 4 and not alone["partial"]
    assert not both["partial"] and both["warnings"] == []
    assert {d["devid"]: d["path"] for d in both["filesystem"]["devices"]} == {1: str(seed), 2: str(sprout)}
    assert both["totals"]["files"] == len(sizes) == 6
    assert both["totals"]["per_inode"]["pages"] == sum(-(-size // 4096) for size in sizes.values())
    listed = _cli("ls", "--json", str(seed), str(sprout), "--")
    assert listed.returncode == 0, listed.stderr
    assert sorted(e["path"] for e in json.loads(listed.stdout)["entries"] if e["path"] != ".") == sorted(sizes)
    single = _cli("report", "--json", str(sprout))
    assert single.returncode == 1 and json.loads(single.stdout)["partial"]
    assert "device devid 1 uuid" in single.stderr and "is missing" in single.stderr
