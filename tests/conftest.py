"""Shared test fixtures: kernel-made fixture images, decompressed once per session."""

from __future__ import annotations

import lzma
import os
import re
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _number(path: Path) -> int:
    return int(re.search(r"dev(\d+)\.img", path.name).group(1))


def decompress_sparse(src: Path, dest: Path) -> None:
    """Unpack an .xz image into a sparse file (zero megabytes become holes)."""
    part = dest.with_name(dest.name + ".part")
    with lzma.open(src) as inp, open(part, "wb") as out:
        pos = 0
        while block := inp.read(1 << 20):
            if block.count(0) != len(block):
                out.seek(pos)
                out.write(block)
            pos += len(block)
        out.truncate(pos)
    os.replace(part, dest)


@pytest.fixture(scope="session")
def fixture_images(tmp_path_factory):
    """``get(group, name)`` -> {file number: decompressed image} for tests/fixtures/<group>/<name>/dev*.img.xz."""
    cache: dict[tuple[str, str], dict[int, Path]] = {}

    def get(group: str, name: str) -> dict[int, Path]:
        if (group, name) not in cache:
            root = tmp_path_factory.getbasetemp() / "fixtures-raw" / group / name
            root.mkdir(parents=True, exist_ok=True)
            found = {}
            for xz in sorted((FIXTURES / group / name).glob("dev*.img.xz"), key=_number):
                dest = root / xz.name[: -len(".xz")]
                if not dest.exists():
                    decompress_sparse(xz, dest)
                found[_number(xz)] = dest
            cache[group, name] = found
        return cache[group, name]

    return get
