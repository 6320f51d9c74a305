"""Input containers: a raw image, its .xz, and a tar archive holding it read the same."""

from __future__ import annotations

import lzma
import shutil
import subprocess
import sys
import tarfile

import pytest
from support import run, run_json


def test_xz_and_tar_read_like_the_raw_image(fixture_images, tmp_path):
    raw = fixture_images("volumes", "single")[1]
    packed = tmp_path / "single.img.xz"
    with open(raw, "rb") as src, lzma.open(packed, "wb", preset=0) as dst:
        shutil.copyfileobj(src, dst)
    archive = tmp_path / "single.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(raw, arcname="test.img")
    expected = run_json("chunks", "--json", raw)
    assert run_json("chunks", "--json", packed) == expected
    assert run_json("chunks", "--json", archive) == expected


def test_tar_with_several_files_is_refused(fixture_images, tmp_path):
    archive = tmp_path / "two.tar"
    with tarfile.open(archive, "w") as tar:
        for number, image in fixture_images("volumes", "raid1").items():
            tar.add(image, arcname=f"dev{number}.img")
    result = run("super", archive)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"btrfsscan: error: {archive}: a tar archive holding 2 files; give the image file itself"


def test_directory_is_refused(tmp_path):
    result = run("super", tmp_path)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


SHRINK_SCRIPT = """
import os, sys
from btrfsscan.errors import BtrfsScanError
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner

path, keep = sys.argv[1], int(sys.argv[2])
fs = open_filesystem([path])
subvols = fs.subvolumes.live()
image = next(iter(fs.volume.devices.values())).image
assert image.mapped() is not None, "a regular file is read mapped"
os.truncate(path, keep)  # shrinks under the mapping: a mapped read past the new end would be SIGBUS
try:
    tables = FileScanner(fs.reader, fs.warnings).scan_leaves(subvols)
    outcome = "partial: " + " | ".join(fs.warnings.messages())
except BtrfsScanError as exc:
    outcome = f"error {exc}"
assert image.mapped() is None, "read with pread once the file changed size"
print(outcome)
"""


@pytest.mark.parametrize("keep", [0, 1 << 20, 8 << 20])
def test_image_shrinking_while_read_is_an_error_not_a_crash(fixture_images, tmp_path, keep):
    """The image is mapped; once it shrinks it is read with pread, which reports the short device."""
    copy = tmp_path / "dev1.img"
    shutil.copyfile(next(iter(fixture_images("files", "many").values())), copy)
    result = subprocess.run([sys.executable, "-c", SHRINK_SCRIPT, str(copy), str(keep)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr  # a SIGBUS would be returncode -7
    outcome = result.stdout.strip()  # "error ..." or "partial: <warnings>"
    assert outcome.startswith(("error ", "partial: ")), outcome
    assert "dev1.img: short read at offset" in outcome, outcome  # the device and offset named
