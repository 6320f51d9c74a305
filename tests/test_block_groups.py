"""Block group usage (`chunks --json` "used") against btrfs-progs' dump-tree."""

from __future__ import annotations

import json
import lzma
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from btrfsscan.present.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VOLUMES = sorted(p.name for p in (FIXTURES / "volumes").iterdir() if (p / "expected" / "dump-tree-extent.txt").exists())
CORPUS_BGT = (Path(__file__).resolve().parents[2] / "shared" / "corpus" / "btrfs-progs-images"
              / "misc" / "069-btrfstune-resume-bgt" / "half-converted-bgt.raw.xz")
_ITEM = re.compile(r"key \((\d+) BLOCK_GROUP_ITEM (\d+)\).*\n\s+block group used (\d+)")


def dumped_block_groups(text: str) -> dict[int, int]:
    """chunk logical -> used, from dump-tree output."""
    return {int(m.group(1)): int(m.group(3)) for m in _ITEM.finditer(text)}


def chunks_used(*images) -> tuple[dict[int, int | None], dict]:
    result = CliRunner().invoke(main, ["chunks", "--json", *map(str, images)])
    assert result.exit_code in (0, 1), result.output
    out = json.loads(result.stdout)
    return {c["logical"]: c["used"] for c in out["chunks"]}, out


@pytest.mark.parametrize("name", VOLUMES)
def test_used_matches_extent_tree_dump(name, fixture_images):
    expected = dumped_block_groups((FIXTURES / "volumes" / name / "expected" / "dump-tree-extent.txt").read_text())
    used, out = chunks_used(*fixture_images("volumes", name).values())
    assert expected and used == expected
    assert out["partial"] is False


@pytest.mark.skipif(not CORPUS_BGT.exists(), reason="../shared/corpus (btrfs-progs test images) is not present")
@pytest.mark.skipif(shutil.which("btrfs") is None, reason="needs btrfs-progs' dump-tree")
def test_half_converted_block_group_tree(tmp_path):
    """Items split between the block group tree (11) and the extent tree (2) are all found."""
    image = tmp_path / "bgt.img"
    with lzma.open(CORPUS_BGT) as src, open(image, "wb") as dst:
        shutil.copyfileobj(src, dst)
    expected = {}
    for tree in ("11", "2"):
        dump = subprocess.run(["btrfs", "inspect-internal", "dump-tree", "-t", tree, str(image)],
                              capture_output=True, text=True).stdout
        expected.update(dumped_block_groups(dump))
    used, _ = chunks_used(image)
    assert len(expected) >= 2 and used == expected
