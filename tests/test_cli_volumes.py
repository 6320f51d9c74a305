"""The volume-level CLI commands against what btrfs-progs printed for kernel-made images.

For every fixture in tests/fixtures/volumes:

* ``chunks --json`` must list exactly the CHUNK_ITEMs of
  ``expected/dump-tree-chunk.txt`` (``btrfs inspect-internal dump-tree -t
  chunk``), every field and every stripe;
* ``map-logical --json --parity`` must give, for every sample of
  ``expected/map-logical.json`` where btrfs-map-logical printed mappings,
  exactly those (mirror, logical, devid, physical) lines; for RAID5/6,
  mirror 1 is the data stripe and mirrors 2/3 the P/Q stripes of the row.

Plus the CLI contract: ``--json`` writes only JSON on stdout, errors are one
line on stderr with exit code 2, warnings give exit code 1, ``--strict``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support import run, run_json, runner

from btrfsscan.present.cli import main
from btrfsscan.analysis.refs import parse_number
from btrfsscan.present.units import format_size

FIXTURES = Path(__file__).parent / "fixtures" / "volumes"
PROFILES = {"SINGLE", "DUP", "RAID0", "RAID1", "RAID1C3", "RAID1C4", "RAID10", "RAID5", "RAID6"}
TYPES = ("DATA", "METADATA", "SYSTEM")


def fixture_names() -> list[str]:
    if not FIXTURES.is_dir():
        return []
    return sorted(
        p.name for p in FIXTURES.iterdir() if (p / "expected").is_dir() and any(p.glob("dev*.img.xz"))
    )


NAMES = fixture_names()
needs_fixtures = pytest.mark.skipif(not NAMES, reason="no fixtures in tests/fixtures/volumes")


# --- helpers ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def images(fixture_images):
    """name -> {file number: decompressed image} of a volume fixture."""
    return lambda name: fixture_images("volumes", name)


def devid_by_file(name: str) -> dict[str, int]:
    """dev1.img -> devid, from the fixture's meta.json (falls back to the file number)."""
    meta = FIXTURES / name / "expected" / "meta.json"
    if meta.exists():
        return {d["file"]: d["devid"] for d in json.loads(meta.read_text())["devices"]}
    return {}


# --- parsing dump-tree -t chunk ---------------------------------------------------

_ITEM = re.compile(r"^\s*item \d+ key \(FIRST_CHUNK_TREE CHUNK_ITEM (\d+)\)")
_HEAD = re.compile(r"^\s*length (\d+) owner (\d+) stripe_len (\d+) type (\S+)")
_COUNTS = re.compile(r"^\s*num_stripes (\d+) sub_stripes (\d+)")
_STRIPE = re.compile(r"^\s*stripe (\d+) devid (\d+) offset (\d+)")
_DEV_UUID = re.compile(r"^\s*dev_uuid (\S+)")


def parse_chunk_items(text: str) -> list[dict]:
    """The CHUNK_ITEMs printed by dump-tree (or dump-super's sys_chunk_array)."""
    chunks: list[dict] = []
    current = None
    for line in text.splitlines():
        if m := _ITEM.match(line):
            current = {"logical": int(m.group(1)), "stripes": []}
            chunks.append(current)
        elif current is None:
            continue
        elif m := _HEAD.match(line):
            current.update(length=int(m.group(1)), owner=int(m.group(2)), stripe_len=int(m.group(3)))
            parts = m.group(4).split("|")
            current["type"] = [t for t in parts if t in TYPES]
            profiles = [p.upper() for p in parts if p not in TYPES]
            current["profile"] = profiles[0] if profiles else "SINGLE"
        elif m := _COUNTS.match(line):
            current.update(num_stripes=int(m.group(1)), sub_stripes=int(m.group(2)))
        elif m := _STRIPE.match(line):
            current["stripes"].append({"devid": int(m.group(2)), "physical": int(m.group(3))})
        elif (m := _DEV_UUID.match(line)) and current["stripes"]:
            current["stripes"][-1]["dev_uuid"] = m.group(1)
        elif line.strip().startswith("item "):
            current = None  # another item type (DEV_ITEM, ...)
    return chunks


# --- unit tests of the shared helpers -----------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [("0", 0), ("4096", 4096), ("0x1000", 4096), ("0X1F", 31), ("1_048_576", 1 << 20), (" 12 ", 12)],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "-1", "+3", "0x", "12k", "0xZZ", "1.5", "0b101"])
def test_parse_number_rejects(text):
    with pytest.raises(ValueError):
        parse_number(text)


@pytest.mark.parametrize(
    "value, text",
    [(0, "0.00B"), (1023, "1023.00B"), (1024, "1.00KiB"), (134217728, "128.00MiB"), (6639616, "6.33MiB"),
     (1 << 40, "1.00TiB")],
)
def test_format_size(value, text):
    assert format_size(value) == text


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert "btrfsscan" in result.stdout


def test_no_images_is_a_usage_error():
    result = run("chunks")
    assert result.exit_code == 2
    assert result.stdout == ""


def test_bad_number_is_a_usage_error(tmp_path):
    result = run("map-logical", tmp_path / "x.img", "0xZZ")
    assert result.exit_code == 2
    assert "not a number" in result.stderr


def test_missing_file_is_one_line(tmp_path):
    result = run("chunks", "--json", tmp_path / "nope.img")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("btrfsscan: error: cannot open ")


def test_internal_error_is_one_line(monkeypatch, tmp_path):
    import btrfsscan.model.filesystem as filesystem

    def boom(paths, **options):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(filesystem, "open_filesystem", boom)
    monkeypatch.delenv("BTRFSSCAN_DEBUG", raising=False)
    result = run("chunks", tmp_path / "x.img")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["btrfsscan: internal error: ZeroDivisionError: boom (please report)"]
    monkeypatch.setenv("BTRFSSCAN_DEBUG", "1")
    result = runner().invoke(main, ["chunks", str(tmp_path / "x.img")])
    assert isinstance(result.exception, ZeroDivisionError)


# --- chunks -------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_chunks_match_dump_tree(name, images):
    expected_file = FIXTURES / name / "expected" / "dump-tree-chunk.txt"
    if not expected_file.exists():
        pytest.skip(f"{name}: no dump-tree-chunk.txt")
    expected = parse_chunk_items(expected_file.read_text())
    assert expected, f"{name}: parsed no CHUNK_ITEM from dump-tree-chunk.txt"
    out = run_json("chunks", "--json", *images(name).values())
    assert out["partial"] is False and out["warnings"] == []
    got = out["chunks"]
    assert [c["logical"] for c in got] == [c["logical"] for c in expected]
    for want, have in zip(expected, got):
        where = f"{name} chunk {want['logical']}"
        for key in ("length", "stripe_len", "num_stripes", "sub_stripes", "profile"):
            assert have[key] == want[key], f"{where}: {key}"
        assert have["type"] == want["type"], where
        assert have["profile"] in PROFILES
        assert len(have["stripes"]) == have["num_stripes"]
        assert have["stripes"] == want["stripes"], where


# --- map-logical --------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_map_logical_matches_btrfs_map_logical(name, images):
    expected_file = FIXTURES / name / "expected" / "map-logical.json"
    if not expected_file.exists():
        pytest.skip(f"{name}: no map-logical.json")
    expected = json.loads(expected_file.read_text())
    imgs = images(name)
    paths = {devid: str(path) for devid, path in imgs.items()}
    nbytes = expected.get("bytes", 4096)
    checked = skipped = 0
    for sample in expected["samples"]:
        logical = sample["logical"]
        outputs = [copy["mappings"] for copy in sample["copies"] if copy["mappings"]]
        if not outputs:
            skipped += 1  # btrfs-map-logical printed nothing (no extent there)
            continue
        out = run_json("map-logical", "--json", "--parity", "--length", str(nbytes), *imgs.values(), hex(logical))
        assert out["logical"] == logical and out["length"] == nbytes
        assert out["num_copies"] == sample["num_copies"], f"{name} {logical}"
        raid56 = sample["chunk"]["type"].split("|")[-1] in ("RAID5", "RAID6")
        got = sorted((r["mirror"], r["logical"], r["devid"], r["physical"]) for r in out["ranges"])
        for mappings in outputs:
            want = sorted((m["mirror"], m["logical"], m["devid"], m["physical"]) for m in mappings)
            assert got == want, f"{name} logical {logical}"
        for r in out["ranges"]:
            assert r["length"] == nbytes
            assert r["device"] == paths[r["devid"]]
            expected_role = {1: "data", 2: "P", 3: "Q"}[r["mirror"]] if raid56 else "data"
            assert r["role"] == expected_role, f"{name} logical {logical} mirror {r['mirror']}"
        checked += 1
    with_output = len(expected["samples"]) - skipped
    assert checked == with_output
    assert checked >= 50, f"{name}: only {checked} samples checked ({skipped} without btrfs-map-logical output)"


@needs_fixtures
def test_map_logical_without_parity_gives_only_data(images):
    name = "raid6" if "raid6" in NAMES else NAMES[0]
    imgs = images(name)
    chunks = run_json("chunks", "--json", *imgs.values())["chunks"]
    data = next(c for c in chunks if "DATA" in c["type"])
    out = run_json("map-logical", "--json", "-b", "0x30000", *imgs.values(), str(data["logical"]))
    with_parity = run_json("map-logical", "--json", "--parity", "-b", "0x30000", *imgs.values(), str(data["logical"]))
    assert sum(r["length"] for r in out["ranges"] if r["mirror"] == 1) == 0x30000
    assert [r for r in with_parity["ranges"] if r["role"] == "data"] == out["ranges"]
    if data["profile"] in ("RAID5", "RAID6"):
        assert {r["role"] for r in out["ranges"]} == {"data"}
        assert {r["role"] for r in with_parity["ranges"]} == ({"data", "P", "Q"} if data["profile"] == "RAID6"
                                                               else {"data", "P"})


@needs_fixtures
def test_map_logical_default_length_is_nodesize(images):
    name = NAMES[0]
    imgs = images(name)
    sb = run_json("super", "--json", *imgs.values())
    chunks = run_json("chunks", "--json", *imgs.values())["chunks"]
    out = run_json("map-logical", "--json", *imgs.values(), str(chunks[0]["logical"]))
    assert out["length"] == sb["nodesize"]


@needs_fixtures
def test_map_logical_unmapped_address_is_one_line(images):
    result = run("map-logical", "--json", *images(NAMES[0]).values(), "0x10")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["btrfsscan: error: logical address 0x10 (16) is not mapped by any chunk"]


# --- tables and warnings ------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("command", [["super"], ["super", "--all"], ["chunks"]])
def test_tables_render(command, images):
    name = "raid5" if "raid5" in NAMES else NAMES[0]
    result = run(*command, *images(name).values())
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert not result.stdout.lstrip().startswith("{")
    assert "stripe" in result.stdout or "superblock" in result.stdout


@needs_fixtures
def test_map_logical_table(images):
    name = "raid1" if "raid1" in NAMES else NAMES[0]
    imgs = images(name)
    chunks = run_json("chunks", "--json", *imgs.values())["chunks"]
    result = run("map-logical", *imgs.values(), str(chunks[-1]["logical"]))
    assert result.exit_code == 0
    assert "mirror" in result.stdout and "physical" in result.stdout


@needs_fixtures
def test_missing_device_is_partial_and_strict_fails(images):
    multi = [n for n in NAMES if len(images(n)) > 1 and n.startswith("raid1")]
    if not multi:
        pytest.skip("no RAID1 fixture")
    imgs = images(multi[0])
    first = imgs[min(imgs)]
    result = run("chunks", "--json", first)
    assert result.exit_code == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["partial"] is True and out["warnings"]
    assert any("missing" in w for w in out["warnings"])
    assert all(line.startswith("warning: ") for line in result.stderr.splitlines())
    sb = run_json("super", "--json", first, expect_exit=1)
    assert any(d["path"] is None for d in sb["devices"])
    assert len(sb["devices"]) == len(imgs)
    for strict_args in (["--strict", "chunks", "--json"], ["chunks", "--json", "--strict"]):
        result = run(*strict_args, first)
        assert result.exit_code == 2
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert lines[-1].startswith("btrfsscan: error: ") and "--strict" in lines[-1]
        assert all(line.startswith("warning: ") for line in lines[:-1])


def test_sample_flag(tmp_path):
    result = run("super", "--json", "--sample")
    if result.exit_code == 2:
        assert result.stderr.startswith("btrfsscan: error: the bundled sample image")
        assert len(result.stderr.splitlines()) == 1
    else:
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["fsid"]
    result = run("super", "--sample", tmp_path / "x.img")
    assert result.exit_code == 2
