"""Input containers: a raw image, its .xz, and a tar archive holding it read the same."""

from __future__ import annotations

import lzma
import shutil
import tarfile

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
