"""``-o FILE`` never writes over an input, and never leaves a half-written file.

Each way an output path can alias an input gets its own test: the same path,
a symlink, a hardlink, the same loop device, a loop device backed by the
input image, and the block device holding the filesystem the input lives on.
Every refusal is exit 2, one line, and the input is byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import run

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import kernel  # noqa: E402


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def image(tmp_path, fixture_images) -> Path:
    copy = tmp_path / "v.img"
    shutil.copyfile(fixture_images("files", "sample")[0], copy)
    return copy


def _refused(result, target: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to write the output" in lines[0] and target in lines[0], result.stderr


def test_same_path_refused(image):
    before = _digest(image)
    _refused(run("report", "--json", "-o", image, image), str(image))
    assert _digest(image) == before


def test_symlink_to_input_refused(image, tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(image)
    before = _digest(image)
    _refused(run("report", "--json", "-o", link, image), str(link))
    assert _digest(image) == before and link.is_symlink()


def test_input_through_symlink_refused(image, tmp_path):
    link = tmp_path / "link.img"
    link.symlink_to(image)
    before = _digest(image)
    _refused(run("report", "--json", "-o", image, link), str(image))
    assert _digest(image) == before


def test_hardlink_refused(image, tmp_path):
    hard = tmp_path / "hard.json"
    os.link(image, hard)
    before = _digest(image)
    _refused(run("report", "--json", "-o", hard, image), str(hard))
    assert _digest(image) == before


def test_relative_and_dotted_path_refused(image, monkeypatch):
    monkeypatch.chdir(image.parent)
    before = _digest(image)
    _refused(run("report", "--json", "-o", f"./../{image.parent.name}/v.img", "v.img"), "v.img")
    assert _digest(image) == before


def test_unrelated_output_written_whole(image, tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    result = run("report", "--json", "-o", target, image)
    assert result.exit_code == 0, result.stderr
    assert target.read_text().startswith("{") and '"schema_version"' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "v.img"]  # no temporary left


def test_failed_run_leaves_old_output(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    bad = tmp_path / "bad.img"
    bad.write_bytes(b"\0" * (1 << 20))
    result = run("report", "--json", "-o", target, bad)
    assert result.exit_code == 2
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.img", "out.json"]


def test_missing_directory_refused_before_scan(image, tmp_path):
    result = run("report", "--json", "-o", tmp_path / "nonexistent" / "x.json", image)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "does not exist" in result.stderr
    assert "internal error" not in result.stderr


def test_directory_refused(image, tmp_path):
    result = run("report", "--json", "-o", tmp_path, image)
    assert result.exit_code == 2 and "directory" in result.stderr and "internal error" not in result.stderr


def test_dev_full_is_one_line(image):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this machine")
    result = run("report", "--json", "-o", "/dev/full", image)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "No space left" in result.stderr, result.stderr


def _no_loop() -> str | None:
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists() or shutil.which("losetup") is None:
        return "needs root, /dev/loop-control and losetup to attach images as loop devices"
    return None


@pytest.mark.kernel
@pytest.mark.skipif(_no_loop() is not None, reason=_no_loop() or "")
@pytest.mark.parametrize("read_through_device", [True, False], ids=["same-device", "device-backed-by-input"])
def test_loop_device_of_the_input_refused(image, read_through_device):
    """``-o /dev/loopN`` with the input given as that device, or as the image file behind it."""
    with kernel.loop_devices([image]) as (dev,):
        before = _digest(image)
        _refused(run("report", "--json", "-o", dev, dev if read_through_device else image), dev)
        assert _digest(image) == before


@pytest.mark.kernel
@pytest.mark.skipif(_no_loop() is not None or shutil.which("mkfs.btrfs") is None,
                    reason=_no_loop() or "needs mkfs.btrfs")
def test_device_holding_input_refused(image, tmp_path):
    """An input file stored on a filesystem whose block device is the output."""
    holder = kernel.make_sparse_image(tmp_path / "holder.img", 2 << 30)
    with kernel.loop_devices([holder]) as (dev,):
        subprocess.run(["mkfs.btrfs", "-q", "-f", dev], check=True, capture_output=True)
        with kernel.mounted(dev) as mnt:
            inner = mnt / "v.img"
            shutil.copyfile(image, inner)
            before = _digest(inner)
            _refused(run("report", "--json", "-o", dev, inner), dev)
            assert _digest(inner) == before


def _every_command(image: Path) -> list[tuple[str, ...]]:
    """One invocation of every command on ``image`` (a logical address and a file path taken from it)."""
    root = json.loads(run("super", "--json", image).stdout)["root"]
    entries = json.loads(run("ls", "-R", "--json", image).stdout)["entries"]
    path = next(e["path"] for e in entries if e["type"] == "file")
    return [("super", str(image)), ("chunks", str(image)), ("map-logical", str(image), str(root)),
            ("subvolumes", str(image)), ("ls", str(image)), ("map", str(image), path), ("report", str(image))]


@pytest.mark.parametrize("fmt", [(), ("--json",)])
def test_every_command_writes_o_file_as_stdout(image, tmp_path, fmt):
    for args in _every_command(image):
        shown = run(args[0], *fmt, *args[1:])
        assert shown.exit_code == 0, (args, shown.stderr)
        target = tmp_path / f"{args[0]}.out"
        written = run(args[0], *fmt, "-o", target, *args[1:])
        assert written.exit_code == 0 and written.stdout == "", (args, written.stderr)
        assert target.read_text() == shown.stdout, args


def test_every_command_refuses_its_input_as_o(image):
    before = _digest(image)
    for args in _every_command(image):
        _refused(run(args[0], "--json", "-o", image, *args[1:]), str(image))
    assert _digest(image) == before


def test_prometheus_only_for_report(image):
    result = run("super", "--format", "prometheus", image)
    assert result.exit_code == 2 and "prometheus" in result.stderr
