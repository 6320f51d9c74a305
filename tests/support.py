"""Helpers shared by the test modules (importable: tests/ is on sys.path under pytest)."""

from __future__ import annotations

import functools
import json
import lzma
import os
import shutil
import sys
from pathlib import Path

import jsonschema
from click.testing import CliRunner

from btrfsscan.cache.facts import FilesystemFacts
from btrfsscan.present.cli import main
from btrfsscan.present.contract import CONTRACTS, schema


def decompress_sparse(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Unpack an .xz image into a sparse file (all-zero megabytes become holes)."""
    dest = Path(dest)
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


def runner() -> CliRunner:
    """A runner keeping stdout and stderr apart (click < 8.2 needs mix_stderr=False)."""
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


@functools.cache
def validator(kind: str) -> jsonschema.Draft202012Validator:
    """The validator of ``kind``'s shipped JSON Schema (checked to be a valid schema itself)."""
    shipped = schema(kind)
    jsonschema.Draft202012Validator.check_schema(shipped)
    return jsonschema.Draft202012Validator(shipped)


def json_documents(stdout: str) -> list[dict]:
    """The JSON documents of a ``--json`` output: one (indented) document, or one compact document a line."""
    try:
        return [json.loads(stdout)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def validate_documents(kind: str, stdout: str) -> list[dict]:
    """Every document of ``stdout`` validated against ``kind``'s schema, with its schema_version."""
    documents = json_documents(stdout)
    for document in documents:
        validator(kind).validate(document)
        assert document["schema_version"] == CONTRACTS[kind].version
    return documents


def _json_kind(args: list[str]) -> str | None:
    """The command of ``args`` when it writes JSON to stdout (``--json`` or ``--format json``, no ``-o``)."""
    words = [a for a in args if not a.startswith("-")]
    kind = next((a for a in args if not a.startswith("-")), None)
    to_stdout = not ({"-o", "--output"} & set(args)) and not any(a.startswith("--output=") for a in args)
    as_json = "--json" in args or any(a == "json" and b == "--format" for b, a in zip(args, args[1:]))
    return kind if words and kind in CONTRACTS and as_json and to_stdout else None


def run(*args):
    """`btrfsscan ARGS...` in process; any exception other than the exit is a test failure.

    Every JSON document a run writes to stdout (exit 0 or 1) is validated
    against its command's shipped schema.
    """
    argv = [str(a) for a in args]
    result = runner().invoke(main, argv, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"btrfsscan {' '.join(argv)} raised {result.exception!r}")
    kind = _json_kind(argv)
    if kind and result.exit_code in (0, 1) and result.stdout.strip():
        validate_documents(kind, result.stdout)
    return result


def run_json(*args, expect_exit: int = 0) -> dict:
    result = run(*args)
    assert result.exit_code == expect_exit, f"exit {result.exit_code}, stderr: {result.stderr}"
    return json.loads(result.stdout)


def facts(sectorsize: int = 4096, **fields) -> FilesystemFacts:
    """Filesystem facts for a cache model test: one device and SINGLE data unless ``fields`` say otherwise."""
    fields.setdefault("num_devices", 1)
    fields.setdefault("data_profiles", ("SINGLE",))
    return FilesystemFacts(fsid=fields.pop("fsid", "test"), sectorsize=sectorsize, **fields)


def kernel_unavailable(tools: tuple[str, ...] = ("losetup", "fincore"),
                       modules: tuple[str, ...] = ("btrfs",)) -> str | None:
    """Why kernel-backed tests cannot run here (root, loop devices, ``tools``, ``modules``), or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux to attach loop devices and mount"
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control missing)"
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)}"
    loaded = Path("/proc/filesystems").read_text()
    if any(m not in loaded for m in modules) and shutil.which("modprobe") is None:
        return f"the {' and '.join(modules)} kernel module(s) are not available"
    return None
