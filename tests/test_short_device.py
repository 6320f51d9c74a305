"""A device shorter than its superblock claims (``head -c``): a warning with both sizes, a partial result, and
no device range past the end listed as readable (issue 14, item 3).

Expected sizes come from the committed ``dump-super`` output, expected device offsets from
``btrfs-map-logical`` on the whole image.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import FIXTURES
from support import run

CUT = 100 << 20  # inside the second data chunk (physical 105906176..) of files/subvols; metadata lies below


def _dump_super(name: str) -> dict[str, int]:
    text = (FIXTURES / "files" / name / "expected" / "dump-super.txt").read_text()
    return {key: int(value) for key, value in re.findall(r"^(total_bytes|dev_item\.total_bytes)\s+(\d+)$", text, re.M)}


def _map_logical(image, logical: int, length: int) -> list[int]:
    out = subprocess.run(["btrfs-map-logical", "-l", str(logical), "-b", str(length), str(image)], check=True,
                         capture_output=True, text=True).stdout
    return [int(p) for p in re.findall(r"physical (\d+)", out)]


@pytest.fixture
def cut_image(fixture_images, tmp_path):
    full = fixture_images("files", "subvols")[0]
    cut = tmp_path / "cut.img"
    with open(full, "rb") as src, open(cut, "wb") as dst:  # head -c 100M
        dst.write(src.read(CUT))
    return full, cut


def test_cut_image_warns_with_both_sizes_and_is_partial(cut_image):
    _, cut = cut_image
    sizes = _dump_super("subvols")
    warning = (f"device {cut} is {CUT} bytes, shorter than the {sizes['dev_item.total_bytes']} bytes its "
               f"superblock's dev_item claims (filesystem total_bytes {sizes['total_bytes']}): a cut copy? "
               f"Everything stored past byte {CUT} is unreadable; the result is partial (devid 1)")
    for command in (["report", "--json"], ["chunks", "--json"], ["super", "--json"], ["ls", "--json", "-R"]):
        result = run(*command, cut)
        assert result.exit_code == 1, (command, result.stderr)
        out = json.loads(result.stdout)
        assert out["partial"] is True and warning in out["warnings"], (command, out["warnings"])


@pytest.mark.skipif(shutil.which("btrfs-map-logical") is None, reason="needs btrfs-map-logical (btrfs-progs)")
def test_map_flags_ranges_past_the_end(cut_image):
    full, cut = cut_image
    fiemap = json.loads((FIXTURES / "files" / "subvols" / "expected" / "fiemap.json").read_text())
    checked = {"past": 0, "inside": 0}
    for path in ("a/dir/f4", "a/f1", "a/f2"):
        (extent,) = fiemap[path]
        (physical,) = _map_logical(full, extent["fe_physical"], 4096)
        result = run("map", "--json", cut, path)
        assert result.exit_code == 1
        out = json.loads(result.stdout)
        (mapped,) = [e for e in out["extents"] if e["type"] == "regular"]
        if physical + extent["fe_length"] > CUT:
            checked["past"] += 1
            assert mapped["device_ranges"] == []
            assert any(f"copy #1 on devid 1 at physical {physical}+{extent['fe_length']} lies past the end of {cut} "
                       f"({CUT} bytes): unreadable, not listed" in w for w in out["warnings"]), out["warnings"]
        else:
            checked["inside"] += 1
            assert [r["physical"] for r in mapped["device_ranges"]] == [physical]
    assert checked == {"past": 1, "inside": 2}
    result = run("map-logical", "--json", cut, fiemap["a/dir/f4"][0]["fe_physical"])
    assert result.exit_code == 1 and any("lies past the end" in w for w in json.loads(result.stdout)["warnings"])
