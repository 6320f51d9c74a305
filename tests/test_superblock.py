"""Superblock parsing and choosing, through ``btrfsscan super --json``.

For every kernel-made fixture in tests/fixtures/volumes and every device,
``super --all --json --devid N`` must agree field by field with
``expected/dump-super-devN.txt`` (``btrfs inspect-internal dump-super -f -a``),
every superblock copy included. Then damaged inputs: not btrfs, truncated,
a corrupted primary with a good backup, every copy corrupted, and a copy with
a field out of range but a valid (recomputed) checksum.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from support import run

from btrfsscan.format import checksum
from btrfsscan.format.constants import CsumType, super_mirror_offset
from btrfsscan.format.structs import btrfs_super_block

FIXTURES = Path(__file__).parent / "fixtures" / "volumes"
SB_SIZE = 4096
CSUM_NAMES = {"crc32c": "crc32c", "xxhash64": "xxhash64", "sha256": "sha256", "blake2": "blake2b", "blake2b": "blake2b"}


def fixture_names() -> list[str]:
    if not FIXTURES.is_dir():
        return []
    return sorted(p.name for p in FIXTURES.iterdir() if any((p / "expected").glob("dump-super-dev*.txt")))


NAMES = fixture_names()
needs_fixtures = pytest.mark.skipif(not NAMES, reason="no fixtures in tests/fixtures/volumes")


# --- helpers ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def images(fixture_images):
    """name -> {file number: decompressed image} of a volume fixture."""
    return lambda name: fixture_images("volumes", name)


# --- parsing dump-super -f -a -----------------------------------------------------

_BLOCK = re.compile(r"^superblock: bytenr=(\d+), device=(\S+)")
_KV = re.compile(r"^([a-z_.]+(?: \(deprecated\))?)\t+(.*)$")
_BACKUP = re.compile(r"^\s*backup (\d+):")
_BACKUP_ROOT = re.compile(r"^\s*(backup_\w+|csum_root):\s*(\d+)\s+gen: (\d+)\s+level: (\d+)")
_BACKUP_VALUE = re.compile(r"^\s*backup_(total_bytes|bytes_used|num_devices):\s*(\d+)")


def parse_dump_super(text: str) -> list[dict]:
    """One dict per superblock copy printed: ``fields`` (name -> text), ``flags`` (name -> [names]), backups."""
    copies: list[dict] = []
    current = None
    flag_field = None
    backup = None
    for line in text.splitlines():
        if m := _BLOCK.match(line):
            current = {"bytenr": int(m.group(1)), "device": m.group(2), "fields": {}, "flags": {}, "backups": []}
            copies.append(current)
            flag_field = backup = None
            continue
        if current is None:
            continue
        stripped = line.strip()
        if flag_field is not None and stripped and line.startswith("\t\t\t"):
            names = stripped.strip("()").replace("|", " ").split()
            current["flags"][flag_field].extend(names)
            if stripped.endswith(")"):
                flag_field = None
            continue
        flag_field = None
        if m := _BACKUP.match(line):
            backup = {}
            current["backups"].append(backup)
            continue
        if backup is not None:
            if m := _BACKUP_ROOT.match(line):
                tree = m.group(1).removeprefix("backup_")
                backup[tree] = int(m.group(2))
                backup[f"{tree}_gen"] = int(m.group(3))
                backup[f"{tree}_level"] = int(m.group(4))
                continue
            if m := _BACKUP_VALUE.match(line):
                backup[m.group(1)] = int(m.group(2))
                continue
        if m := _KV.match(line):
            key, value = m.group(1), m.group(2)
            current["fields"][key] = value
            if key in ("flags", "compat_ro_flags", "incompat_flags", "compat_flags"):
                current["flags"][key] = []
                flag_field = key
    return copies


def _int(text: str) -> int:
    return int(text.split()[0], 0)


def _uuid(text: str) -> str:
    return text.split()[0]


def compare_main_fields(fields: dict, flags: dict, out: dict, where: str) -> None:
    for key in ("generation", "root", "chunk_root", "log_root", "total_bytes", "bytes_used", "num_devices",
                "nodesize", "sectorsize", "stripesize"):
        assert out[key] == _int(fields[key]), f"{where}: {key}"
    for key in ("root_level", "chunk_root_level", "chunk_root_generation", "log_root_level", "cache_generation",
                "uuid_tree_generation"):
        assert out[key] == _int(fields[key]), f"{where}: {key}"
    assert out["bytenr"] == _int(fields["bytenr"])
    assert out["sys_chunk_array_size"] == _int(fields["sys_array_size"])
    assert out["leafsize"] == _int(fields["leafsize (deprecated)"])
    assert out["root_dir"] == _int(fields["root_dir"])
    assert out["fsid"] == _uuid(fields["fsid"])
    assert out["metadata_uuid"] == _uuid(fields["metadata_uuid"])
    assert out["label"] == fields["label"]
    number, name = re.match(r"(\d+) \((\w+)\)", fields["csum_type"]).groups()
    assert out["csum_type"] == CSUM_NAMES[name], where
    assert out["csum_size"] == _int(fields["csum_size"])
    assert out["csum"] == fields["csum"].split()[0]
    assert fields["csum"].endswith("[match]") and fields["magic"].endswith("[match]")
    assert out["magic"] == fields["magic"].split()[0]
    for key in ("flags", "compat_ro_flags", "incompat_flags"):
        assert out[key] == flags.get(key, []), f"{where}: {key}"
    assert out["compat_flags"] == _int(fields["compat_flags"])


# --- every fixture, every device ---------------------------------------------------


def _device_cases() -> list[tuple[str, int]]:
    cases = []
    for name in NAMES:
        for path in sorted((FIXTURES / name / "expected").glob("dump-super-dev*.txt")):
            cases.append((name, int(re.search(r"dev(\d+)", path.name).group(1))))
    return cases


@needs_fixtures
@pytest.mark.parametrize("name, devnum", _device_cases())
def test_super_matches_dump_super(name, devnum, images):
    expected = parse_dump_super((FIXTURES / name / "expected" / f"dump-super-dev{devnum}.txt").read_text())
    assert expected, "parsed no superblock from dump-super"
    imgs = images(name)
    devid = _int(expected[0]["fields"]["dev_item.devid"])
    result = run("super", "--all", "--json", "--devid", devid, *imgs.values())
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    primary = expected[0]
    assert primary["bytenr"] == super_mirror_offset(0)
    where = f"{name} dev{devnum}"
    compare_main_fields(primary["fields"], primary["flags"], out, where)
    assert out["source"] == {"devid": devid, "path": str(imgs[devnum]), "mirror": 0, "bytenr": super_mirror_offset(0)}

    # dev_item: the device the superblock was read from.
    fields = primary["fields"]
    dev_item = out["dev_item"]
    assert dev_item["devid"] == devid
    assert dev_item["uuid"] == _uuid(fields["dev_item.uuid"])
    assert dev_item["fsid"] == _uuid(fields["dev_item.fsid"])
    for key in ("total_bytes", "bytes_used", "io_align", "io_width", "sector_size", "type", "generation",
                "dev_group", "seek_speed", "bandwidth"):
        assert dev_item[key] == _int(fields[f"dev_item.{key}"]), f"{where}: dev_item.{key}"

    # backup roots
    assert len(out["backup_roots"]) == len(primary["backups"]) == 4
    for index, (want, have) in enumerate(zip(primary["backups"], out["backup_roots"])):
        for key, value in want.items():
            assert have[key] == value, f"{where}: backup {index} {key}"

    # sys_chunk_array, as dump-super decodes it
    sys_text = "\n".join(
        line for line in (FIXTURES / name / "expected" / f"dump-super-dev{devnum}.txt").read_text().split(
            "superblock: bytenr=")[1].splitlines() if "CHUNK_ITEM" in line or "stripe" in line
    )
    want_chunks = [int(x) for x in re.findall(r"CHUNK_ITEM (\d+)\)", sys_text)]
    assert [c["logical"] for c in out["sys_chunk_array"]] == want_chunks
    want_stripes = [(int(d), int(o)) for d, o in re.findall(r"stripe \d+ devid (\d+) offset (\d+)", sys_text)]
    assert [(s["devid"], s["physical"]) for c in out["sys_chunk_array"] for s in c["stripes"]] == want_stripes

    # every copy of this device that dump-super printed, and no other copy in the device's bounds
    mirrors = {m["bytenr"]: m for m in out["mirrors"] if m["devid"] == devid}
    for copy in expected:
        mirror = mirrors[copy["bytenr"]]
        assert mirror["generation"] == _int(copy["fields"]["generation"]), f"{where} copy at {copy['bytenr']}"
        assert mirror["magic_ok"] is True and mirror["csum_ok"] is True
        assert mirror["status"] == "ok"
        assert mirror["path"] == str(imgs[devnum])
    printed = {copy["bytenr"] for copy in expected}
    for bytenr, mirror in mirrors.items():
        if bytenr not in printed:
            assert mirror["status"] == "beyond end of device"
    (in_use,) = [m for m in out["mirrors"] if m["in_use"]]
    assert in_use["mirror"] == 0 and in_use["generation"] == out["generation"]

    # the filesystem view: every device of the chunk tree, present
    assert len(out["devices"]) == out["num_devices"] == len(imgs)
    assert all(d["path"] is not None for d in out["devices"])
    assert out["warnings"] == [] and out["partial"] is False


@needs_fixtures
def test_super_default_fields(images):
    """Without --all: the main fields, devices and mirrors, none of the --all sections."""
    name = NAMES[0]
    out = json.loads(run("super", "--json", *images(name).values()).stdout)
    for key in ("fsid", "metadata_uuid", "label", "generation", "root", "chunk_root", "log_root", "total_bytes",
                "bytes_used", "num_devices", "nodesize", "sectorsize", "stripesize", "csum_type", "incompat_flags",
                "compat_ro_flags", "flags", "devices", "mirrors", "warnings", "partial"):
        assert key in out, key
    for key in ("backup_roots", "dev_item", "sys_chunk_array"):
        assert key not in out
    for mirror in out["mirrors"]:
        assert set(mirror) >= {"devid", "path", "mirror", "bytenr", "generation", "magic_ok", "csum_ok", "status"}
    for device in out["devices"]:
        assert set(device) >= {"devid", "uuid", "path", "total_bytes", "bytes_used"}


def test_super_unknown_devid(images):
    if not NAMES:
        pytest.skip("no fixtures")
    result = run("super", "--devid", "77", *images(NAMES[0]).values())
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert "devid 77" in result.stderr


# --- damaged inputs ------------------------------------------------------------------


def assert_one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("btrfsscan: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_zeros_are_not_btrfs(tmp_path):
    path = tmp_path / "zeros.img"
    path.write_bytes(bytes(1 << 20))
    assert_one_line_error(run("super", "--json", path), "not a btrfs device", str(path))


def test_text_file_is_not_btrfs(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a filesystem\n" * 100)
    assert_one_line_error(run("super", path), "not a btrfs device")


@pytest.fixture
def single_image(images, tmp_path) -> Path:
    """A writable copy of a one-device fixture that has both the 64 KiB and the 64 MiB copy."""
    for name in ("single", "dup-data", *NAMES):
        imgs = images(name)
        if len(imgs) == 1 and next(iter(imgs.values())).stat().st_size >= super_mirror_offset(1) + SB_SIZE:
            dest = tmp_path / "dev1.img"
            shutil.copyfile(next(iter(imgs.values())), dest)
            return dest
    pytest.skip("no one-device fixture with two superblock copies")


def test_truncated_image(single_image, tmp_path):
    cut = tmp_path / "cut.img"
    with open(single_image, "rb") as src:
        cut.write_bytes(src.read(65536 + 2000))
    line = assert_one_line_error(run("super", "--json", cut), str(cut))
    assert "superblock" in line and "65536" in line


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _read(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def test_corrupted_primary_uses_backup(single_image):
    primary = super_mirror_offset(0)
    generation_offset = primary + 0x48 + 8  # somewhere inside the superblock, after the magic
    original = _read(single_image, generation_offset, 4)
    _patch(single_image, generation_offset, bytes(b ^ 0xFF for b in original))
    result = run("super", "--json", single_image)
    assert result.exit_code == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["partial"] is True
    assert out["source"]["mirror"] == 1 and out["source"]["bytenr"] == super_mirror_offset(1)
    assert any("copy 1" in w for w in out["warnings"])
    assert any("copy 0" in w and "checksum" in w for w in out["warnings"])
    copy0 = next(m for m in out["mirrors"] if m["mirror"] == 0)
    assert copy0["magic_ok"] is True and copy0["csum_ok"] is False and copy0["status"] == "checksum mismatch"
    assert copy0["in_use"] is False
    assert all(line.startswith("warning: ") for line in result.stderr.splitlines())
    # the same without --json: tables on stdout, warnings on stderr
    result = run("super", single_image)
    assert result.exit_code == 1
    assert "warning: primary superblock (copy 0) is not usable: checksum mismatch; using copy 1 (generation " \
        in result.stderr
    # and --strict refuses it
    result = run("--strict", "super", "--json", single_image)
    assert result.exit_code == 2 and result.stdout == ""


def test_all_copies_corrupted(single_image):
    for mirror in range(3):
        bytenr = super_mirror_offset(mirror)
        if bytenr + SB_SIZE <= single_image.stat().st_size:
            _patch(single_image, bytenr + 0x100, b"\xa5" * 16)
    assert_one_line_error(run("super", "--json", single_image), "no valid superblock", "checksum mismatch")


def _with_field(data: bytes, **changes) -> bytes:
    """``data`` (one superblock copy) with fields changed and the checksum recomputed."""
    fields = btrfs_super_block.parse(data)
    for key, value in changes.items():
        fields[key] = value
    raw = btrfs_super_block.build(fields)
    assert len(raw) == SB_SIZE
    csum_type = CsumType(fields.csum_type)
    return checksum.compute(csum_type, raw) + raw[32:]


@pytest.mark.parametrize("field, value", [("sectorsize", 12345), ("nodesize", 3 * 4096), ("num_devices", 0),
                                          ("root_level", 9)])
def test_field_out_of_range_with_valid_checksum(single_image, field, value):
    primary = super_mirror_offset(0)
    _patch(single_image, primary, _with_field(_read(single_image, primary, SB_SIZE), **{field: value}))
    result = run("super", "--json", single_image)
    assert result.exit_code == 1, result.stderr
    out = json.loads(result.stdout)
    copy0 = next(m for m in out["mirrors"] if m["mirror"] == 0)
    assert copy0["csum_ok"] is True and copy0["in_use"] is False
    assert field.split("_")[0] in copy0["status"], copy0["status"]
    assert any(field.split("_")[0] in w and "copy 0" in w for w in out["warnings"]), out["warnings"]
    assert out["source"]["mirror"] == 1


def test_field_out_of_range_in_every_copy(single_image):
    for mirror in range(3):
        bytenr = super_mirror_offset(mirror)
        if bytenr + SB_SIZE <= single_image.stat().st_size:
            _patch(single_image, bytenr, _with_field(_read(single_image, bytenr, SB_SIZE), sectorsize=12345))
    assert_one_line_error(run("super", single_image), "no valid superblock", "sectorsize 12345")


def test_parse_dump_super_flags():
    text = (
        "superblock: bytenr=65536, device=dev1.img\n"
        "---------------------------------------------------------\n"
        "csum_type\t\t0 (crc32c)\n"
        "flags\t\t\t0x1\n"
        "\t\t\t( WRITTEN )\n"
        "incompat_flags\t\t0x341\n"
        "\t\t\t( MIXED_BACKREF |\n"
        "\t\t\t  EXTENDED_IREF |\n"
        "\t\t\t  NO_HOLES )\n"
        "compat_flags\t\t0x0\n"
        "label\t\t\t\n"
    )
    (copy,) = parse_dump_super(text)
    assert copy["flags"]["flags"] == ["WRITTEN"]
    assert copy["flags"]["incompat_flags"] == ["MIXED_BACKREF", "EXTENDED_IREF", "NO_HOLES"]
    assert copy["flags"]["compat_flags"] == []
    assert copy["fields"]["label"] == ""


def test_super_survives_an_unreadable_chunk_tree(single_image):
    """dump-super needs no chunk tree: ``super`` still shows the superblock, with a warning."""
    out = json.loads(run("super", "--json", single_image).stdout)
    mapped = json.loads(run("map-logical", "--json", single_image, out["chunk_root"]).stdout)
    assert mapped["ranges"]
    for piece in mapped["ranges"]:
        _patch(single_image, piece["physical"] + 0x100, b"\x5a" * 64)
    result = run("super", "--json", single_image)
    assert result.exit_code == 1, result.stderr
    damaged = json.loads(result.stdout)
    assert damaged["fsid"] == out["fsid"] and damaged["generation"] == out["generation"]
    assert any("chunk tree not loaded" in w for w in damaged["warnings"])
    assert [d["devid"] for d in damaged["devices"]] == [d["devid"] for d in out["devices"]]
    assert_one_line_error(run("chunks", "--json", single_image), f"tree block {out['chunk_root']}")


@pytest.mark.parametrize("feature", ["RAID_STRIPE_TREE", "EXTENT_TREE_V2", "REMAP_TREE", "ZONED"])
def test_unsupported_features_are_refused(feature, images, tmp_path):
    """A feature whose mapping btrfsscan does not implement is refused, not misread."""
    from btrfsscan.format.checksum import compute
    from btrfsscan.format.constants import CsumType, IncompatFlag

    image = tmp_path / "dev1.img"
    shutil.copyfile(images("single")[1], image)
    with open(image, "r+b") as f:
        for offset in (65536, 64 << 20):
            f.seek(offset)
            sb = bytearray(f.read(4096))
            flags = int.from_bytes(sb[188:196], "little") | IncompatFlag[feature]
            sb[188:196] = flags.to_bytes(8, "little")
            sb[:32] = compute(CsumType.CRC32C, bytes(sb))
            f.seek(offset)
            f.write(sb)
    result = run("super", image)
    assert result.exit_code == 2
    assert feature in result.stderr and "refusing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
