"""Shared test fixtures: kernel-made fixture images, decompressed once per session."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support import decompress_sparse

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLE = Path(__file__).resolve().parents[1] / "btrfsscan" / "data" / "sample.img.xz"


def _number(path: Path) -> int:
    return int(re.search(r"dev(\d+)\.img", path.name).group(1))


@pytest.fixture(scope="session")
def fixture_images(tmp_path_factory):
    """``get(group, name)`` -> {file number: decompressed image} for tests/fixtures/<group>/<name>/dev*.img.xz."""
    cache: dict[tuple[str, str], dict[int, Path]] = {}

    def get(group: str, name: str) -> dict[int, Path]:
        if (group, name) not in cache:
            root = tmp_path_factory.getbasetemp() / "fixtures-raw" / group / name
            root.mkdir(parents=True, exist_ok=True)
            found = {}
            sources = sorted((FIXTURES / group / name).glob("dev*.img.xz"), key=_number)
            if (group, name) == ("files", "sample"):  # its image ships inside the package
                sources = [SAMPLE]
            for xz in sources:
                dest = root / ("dev0.img" if xz == SAMPLE else xz.name[: -len(".xz")])
                if not dest.exists():
                    decompress_sparse(xz, dest)
                found[_number(dest)] = dest
            cache[group, name] = found
        return cache[group, name]

    return get


@pytest.fixture(scope="session")
def dump_tree(fixture_images):
    """``get(group, name)`` -> `btrfs inspect-internal dump-tree` text of a fixture.

    The committed expected/dump-tree.txt where the build kept it; otherwise
    btrfs-progs runs now on the committed image (still an independent tool).
    """
    cache: dict[tuple[str, str], str] = {}

    def get(group: str, name: str) -> str:
        if (group, name) not in cache:
            kept = FIXTURES / group / name / "expected" / "dump-tree.txt"
            if kept.exists():
                cache[group, name] = kept.read_text(errors="replace")
            else:
                if shutil.which("btrfs") is None:
                    pytest.skip(f"{group}/{name} keeps no dump-tree.txt and btrfs-progs is not installed")
                images = fixture_images(group, name)
                run = subprocess.run(["btrfs", "inspect-internal", "dump-tree", str(images[min(images)])],
                                     capture_output=True, text=True, errors="replace", check=True)
                cache[group, name] = run.stdout
        return cache[group, name]

    return get
