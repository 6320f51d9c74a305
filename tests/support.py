"""Helpers shared by the test modules (importable: tests/ is on sys.path under pytest)."""

from __future__ import annotations

import json
import lzma
import os
import shutil
import sys
from pathlib import Path

from click.testing import CliRunner

from btrfsscan.cache.facts import FilesystemFacts
from btrfsscan.present.cli import main


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


def run(*args):
    """`btrfsscan ARGS...` in process; any exception other than the exit is a test failure."""
    result = runner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"btrfsscan {' '.join(map(str, args))} raised {result.exception!r}")
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
