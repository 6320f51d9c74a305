"""Names that are not UTF-8, hold a newline or end in a space, in every locale (issue 13 item 4).

A kernel-made image holds ``bad\\xffname`` (not UTF-8), ``nl\\nname``,
``trail `` and ``café`` (valid UTF-8); the first two are reflinked copies of
one seeded file so that they top the report's files. Each command runs as a
subprocess under ``LANG``/``LC_ALL`` set to each locale: stdout must decode as
strict UTF-8, the JSON parse and validate, ``path_bytes`` give back the exact
raw name, and the tables exit 0 with the escaped forms.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from support import kernel_unavailable, validate_documents

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

BAD, NEWLINE, TRAIL, CAFE = b"bad\xffname", b"nl\nname", b"trail ", "café".encode()
NAMES = (BAD, NEWLINE, TRAIL, CAFE)
SIZE = 64 * 1024
#: The locales of the issue: C.UTF-8 and en_US.UTF-8 run whether or not the machine installs them (an
#: uninstalled one is what made ``en_US.UTF-8`` fail with UnicodeEncodeError).
LOCALES = ("C", "C.UTF-8", "en_US.UTF-8")

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(kernel_unavailable(("losetup", "mkfs.btrfs", "cp")) is not None,
                                 reason=kernel_unavailable(("losetup", "mkfs.btrfs", "cp")) or "")]


@pytest.fixture(scope="module")
def names_image(tmp_path_factory) -> Path:
    import kernel

    img = kernel.make_sparse_image(tmp_path_factory.mktemp("names") / "names.img", 128 * 1024 * 1024)
    with kernel.loop_devices([img]) as devices:
        kernel.make_fs(devices, fsid=str(uuid.uuid4()))
        with kernel.mounted(devices[0]) as mnt:
            root = os.fsencode(mnt)
            kernel.write_seeded_file(os.path.join(root, BAD), "names/bad", SIZE)
            for name in (NEWLINE, TRAIL):
                subprocess.run([b"cp", b"--reflink=always", os.path.join(root, BAD), os.path.join(root, name)],
                               check=True)
            kernel.write_seeded_file(os.path.join(root, CAFE), "names/cafe", SIZE)
            assert sorted(os.listdir(root)) == sorted(NAMES)
    return img


def _btrfsscan(locale: str, *args: str | bytes) -> subprocess.CompletedProcess:
    env = {**os.environ, "LANG": locale, "LC_ALL": locale, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("PYTHONUTF8", None)
    return subprocess.run([sys.executable, "-m", "btrfsscan", *args], capture_output=True, env=env, timeout=300)


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    assert b"Traceback" not in result.stderr
    return result.stdout.decode("utf-8", "strict")


def _raw(record: dict, key: str = "path") -> bytes:
    """The raw bytes a record names: ``path_bytes`` when present, else the text (then it must be exact)."""
    text = record[key]
    assert "\udcff" not in text
    if f"{key}_bytes" in record:
        raw = base64.b64decode(record[f"{key}_bytes"], validate=True)
        assert raw.decode("utf-8", "replace") == text and raw != text.encode()
        return raw
    return text.encode("utf-8")


@pytest.mark.parametrize("locale", LOCALES)
def test_ls_json_names(names_image, locale):
    for args in (("ls", "--json", names_image), ("ls", "-R", "--json", names_image, "/")):
        docs = validate_documents("ls", _ok(_btrfsscan(locale, *args)))
        entries = {_raw(e): e for e in docs[0]["entries"]}
        names = {raw.rsplit(b"/", 1)[-1] for raw in entries}
        assert set(NAMES) <= names, args
        bad = next(e for raw, e in entries.items() if raw.endswith(BAD))
        assert bad["path"].endswith("bad\ufffdname") and "path_bytes" in bad
        cafe = next(e for raw, e in entries.items() if raw.endswith(CAFE))
        assert cafe["path"].endswith("café") and "path_bytes" not in cafe


@pytest.mark.parametrize("locale", LOCALES)
def test_ls_table_escapes_names(names_image, locale):
    lines = _ok(_btrfsscan(locale, "ls", names_image)).splitlines()
    names = [line.split()[-1] for line in lines if line.strip()]
    assert "bad\\xffname" in names and "nl\\nname" in names and "café" in names
    assert any(line.rstrip().endswith("'trail '") for line in lines)
    assert not any(line.startswith("name") for line in lines)  # the newline split no row


@pytest.mark.parametrize("locale", LOCALES)
def test_map_of_a_name_that_is_not_utf8(names_image, locale):
    arg = os.fsdecode(b"/" + BAD)  # as the command line hands it over in this locale
    doc = validate_documents("map", _ok(_btrfsscan(locale, "map", "--json", names_image, os.fsencode(arg))))[0]
    assert _raw(doc) == b"/" + BAD or _raw(doc) == BAD
    assert doc["size"] == SIZE and sum(e["length"] for e in doc["extents"]) == SIZE
    table = _ok(_btrfsscan(locale, "map", names_image, b"/" + NEWLINE))
    assert "nl\\nname" in table and "nl\nname" not in table


@pytest.mark.parametrize("locale", LOCALES)
def test_report_top_files_carry_raw_names(names_image, locale):
    doc = validate_documents("report", _ok(_btrfsscan(locale, "report", "--json", names_image)))[0]
    top = {_raw(f).lstrip(b"/") for f in doc["top_files"]}
    assert {BAD, NEWLINE, TRAIL} <= top  # the three reflinked copies share their extent
    examples = [p for e in doc["top_extents"] for p in e["paths"]]
    assert any(p.endswith("bad\ufffdname") for p in examples)
    for extent in doc["top_extents"]:
        if "paths_bytes" in extent:
            for text, encoded in zip(extent["paths"], extent["paths_bytes"]):
                if encoded is not None:
                    assert base64.b64decode(encoded).decode("utf-8", "replace") == text
    json.dumps(doc, ensure_ascii=False).encode("utf-8", "strict")
    table = _ok(_btrfsscan(locale, "report", names_image))
    assert "bad\\xffname" in table
