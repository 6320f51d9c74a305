"""`ls` and `map` read IMAGE... [PATH] by a rule on the command line alone (issue 13 item 7).

With two or more arguments the last is the PATH in the image; `--` ends the
images (`IMAGE... --`: no PATH, `IMAGE... -- PATH`). Which files exist on
this machine never changes the meaning: the tests run from `/` and from a
directory holding a local file of the same name as the in-image path.
Expected entries come from the kernel's listing of the fixtures
(``expected/listing.json``: lstat on the mounted filesystem), never from
btrfsscan; the two-device case is the RAID1 fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import decompress_sparse, run

FILES = Path(__file__).resolve().parent / "fixtures" / "files"


def _expected(name: str) -> list[dict]:
    return json.loads((FILES / name / "expected" / "listing.json").read_text(encoding="utf-8"))


def _children(listing: list[dict], parent: str) -> list[str]:
    """The paths of ``parent``'s entries in the kernel's listing, in its order (names by their bytes)."""
    return [r["path"] for r in listing[1:]
            if (r["path"].rsplit("/", 1)[0] if "/" in r["path"] else ".") == parent]


@pytest.fixture(scope="module")
def raid1(tmp_path_factory) -> list[str]:
    """The two devices of the RAID1 fixture, unpacked once."""
    sources = sorted((FILES / "raid1-files").glob("dev*.img.xz"))
    if len(sources) != 2:
        pytest.skip("the raid1-files fixture is missing")
    out = tmp_path_factory.mktemp("raid1")
    devices = []
    for src in sources:
        dest = out / src.name.removesuffix(".xz")
        decompress_sparse(src, dest)
        devices.append(str(dest))
    return devices


@pytest.fixture(scope="module")
def subvols(tmp_path_factory) -> str:
    src = FILES / "subvols" / "dev0.img.xz"
    if not src.exists():
        pytest.skip("the subvols fixture is missing")
    dest = tmp_path_factory.mktemp("subvols") / "dev0.img"
    decompress_sparse(src, dest)
    return str(dest)


def _paths(*args) -> list[str]:
    result = run("ls", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return [e["path"] for e in json.loads(result.stdout)["entries"]]


@pytest.mark.parametrize("tail", [("--",), ("/",), (".",)], ids=["dashes", "slash", "dot"])
def test_ls_of_two_devices_lists_the_root(raid1, tail):
    assert _paths(*raid1, *tail) == _children(_expected("raid1-files"), ".")


def test_ls_R_of_two_devices_lists_everything(raid1):
    result = run("ls", "-R", "--json", *raid1, "--")
    assert result.exit_code == 0, result.stderr
    got = [(e["path"], e["inode"], e["type"], e["nlink"], e["size"]) for e in json.loads(result.stdout)["entries"]]
    assert got == [(r["path"], r["st_ino"], r["type"], r["nlink"], r["size"]) for r in _expected("raid1-files")]


@pytest.mark.parametrize("dashes", [False, True], ids=["last", "after-dashes"])
def test_ls_of_two_devices_with_a_path(raid1, dashes):
    args = (*raid1, "--", "ünïcödé") if dashes else (*raid1, "ünïcödé")
    assert _paths(*args) == _children(_expected("raid1-files"), "ünïcödé") == [
        "ünïcödé/partial-hardlink", "ünïcödé/日本語ファイル.bin"]


def test_map_of_two_devices(raid1):
    want = next(r for r in _expected("raid1-files") if r["path"] == "dir/multi.clone")
    for args in ((*raid1, "dir/multi.clone"), (*raid1, "--", "dir/multi.clone"),
                 ("--inode", f"{want['subvol']}:{want['st_ino']}", *raid1)):
        result = run("map", "--json", *args)
        assert result.exit_code == 0, (args, result.stderr)
        doc = json.loads(result.stdout)
        assert (doc["inode"], doc["size"]) == (want["st_ino"], want["size"]), args
        assert {r["devid"] for e in doc["extents"] for r in e["device_ranges"]} == {1, 2}  # RAID1: both copies


def test_a_local_file_of_the_same_name_does_not_change_the_meaning(subvols, tmp_path, monkeypatch):
    """From a directory holding a local file ``a/f1``, ``ls IMAGE a/f1`` still lists the image's a/f1."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f1").write_bytes(b"a local file, not an image\n")
    want = next(r for r in _expected("subvols") if r["path"] == "a/f1")
    for directory in (tmp_path, Path("/")):
        monkeypatch.chdir(directory)
        result = run("ls", "--json", subvols, "a/f1")
        assert result.exit_code == 0, result.stderr
        (entry,) = json.loads(result.stdout)["entries"]
        assert (entry["path"], entry["inode"], entry["size"]) == ("a/f1", want["st_ino"], want["size"])


def test_from_the_root_a_local_path_is_looked_up_in_the_image(subvols, monkeypatch):
    """`cd / && ls IMAGE etc/passwd`: etc/passwd exists here, but it is the path in the image (which has none)."""
    monkeypatch.chdir("/")
    assert Path("etc/passwd").exists()
    result = run("ls", subvols, "etc/passwd")
    assert result.exit_code == 2
    assert result.stderr.startswith("btrfsscan: error: no such file or directory: etc"), result.stderr
    assert "not a btrfs" not in result.stderr


def test_two_devices_without_dashes_read_the_last_as_the_path_and_say_so(raid1):
    """``ls DEV1 DEV2``: DEV2 is the PATH (the rule has no exception for files that exist); the error recalls
    the rule and ``--``."""
    result = run("ls", *raid1)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "no such file or directory" in result.stderr and "end the images with --" in result.stderr


def test_a_single_argument_is_the_image(subvols):
    assert _paths(subvols) == _children(_expected("subvols"), ".")


def test_dashes_take_at_most_one_path(subvols):
    result = run("ls", subvols, "--", "a", "b")
    assert result.exit_code == 2 and "at most one PATH after --" in result.stderr
    result = run("map", "--inode", "5:257", subvols, "--", "a")
    assert result.exit_code == 2 and "no PATH with --inode" in result.stderr


def test_an_option_value_of_two_dashes_is_not_the_marker(subvols, tmp_path, monkeypatch):
    """``-o --`` writes the file named ``--``; the arguments are read as if no ``--`` were there."""
    monkeypatch.chdir(tmp_path)
    result = run("ls", "--json", "-o", "--", subvols, "a")
    assert result.exit_code == 0, result.stderr
    assert [e["path"] for e in json.loads((tmp_path / "--").read_text())["entries"]] == _children(
        _expected("subvols"), "a")


def test_help_states_the_rule():
    for command in ("ls", "map"):
        text = " ".join(run(command, "--help").stdout.split())
        assert "never depends on which files exist" in text and "`--` ends the images" in text, command
