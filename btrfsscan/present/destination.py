"""Where a result is written with ``-o FILE``: never over an input, never half-written.

An output is refused (one error line, exit 2, before the scan starts) when it
resolves to an input in any way: the same path, a symlink or hardlink to it
(same ``st_dev``/``st_ino``), the same block device, the block device an
input file lives on, a loop device backed by an input, or a disk and one of
its partitions (either way round).  A regular-file output is written to a
temporary file beside the target and renamed over it only once the whole
result is there, so an interrupted run leaves the old file untouched.
Character devices and FIFOs (``/dev/null``, ``/dev/stdout``) are written in
place: there is nothing to truncate.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ..errors import BtrfsScanError

_SYS_BLOCK = Path("/sys/dev/block")


class OutputError(BtrfsScanError):
    """The ``-o`` target cannot be written, or would overwrite an input."""


def _block_dir(rdev: int) -> Path | None:
    """``/sys/dev/block/MAJ:MIN`` resolved to the device's sysfs directory, when there is one."""
    link = _SYS_BLOCK / f"{os.major(rdev)}:{os.minor(rdev)}"
    try:
        return link.resolve(strict=True)
    except OSError:
        return None


def _related_devices(rdev: int) -> set[int]:
    """The block device ``rdev``, its whole disk and partitions, and the devices it is built on (slaves)."""
    related = {rdev}
    node = _block_dir(rdev)
    if node is None:
        return related
    candidates = [node.parent] if (node / "partition").exists() else []
    candidates += [child for child in node.iterdir() if (child / "partition").exists()] if node.is_dir() else []
    slaves = node / "slaves"
    if slaves.is_dir():
        candidates += [slave.resolve() for slave in slaves.iterdir()]
    for candidate in candidates:
        try:
            major, minor = (candidate / "dev").read_text().strip().split(":")
        except (OSError, ValueError):
            continue
        related.add(os.makedev(int(major), int(minor)))
    return related


def _loop_backing(rdev: int) -> str | None:
    """The file behind loop device ``rdev``, as the kernel names it."""
    node = _block_dir(rdev)
    if node is None:
        return None
    try:
        return (node / "loop" / "backing_file").read_text().strip() or None
    except OSError:
        return None


def _unescape(field: str) -> str:
    """A mountinfo field with its octal escapes (``\\040`` for a space) undone."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_sources(path: str) -> set[int]:
    """The block devices of the filesystem ``path`` lives on (btrfs gives files an anonymous st_dev)."""
    real = os.path.realpath(path)
    best, source = "", None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
            for line in table:
                left, _, right = line.partition(" - ")
                fields, tail = left.split(), right.split()
                if len(fields) < 5 or len(tail) < 2:
                    continue
                point = _unescape(fields[4])
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, source = point, _unescape(tail[1])
    except OSError:
        return set()
    devices: set[int] = set()
    try:
        if source and stat.S_ISBLK((info := os.stat(source)).st_mode):
            devices.add(info.st_rdev)
    except OSError:
        pass
    for fs_devices in Path("/sys/fs/btrfs").glob("*/devices"):  # every device of a multi-device btrfs
        members = set()
        for member in fs_devices.iterdir():
            try:
                major, minor = (member / "dev").read_text().strip().split(":")
            except (OSError, ValueError):
                continue
            members.add(os.makedev(int(major), int(minor)))
        if members & devices:
            devices |= members
    return devices


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _aliases(out: os.stat_result, inp: os.stat_result, name: str) -> bool:
    """Whether writing ``out`` could change the bytes of input ``inp``."""
    if _same_file(out, inp):
        return True
    if stat.S_ISBLK(out.st_mode):
        out_devices = _related_devices(out.st_rdev)
        if stat.S_ISBLK(inp.st_mode) and inp.st_rdev in out_devices:
            return True
        if stat.S_ISREG(inp.st_mode):
            if inp.st_dev in out_devices or out_devices & _mount_sources(name):  # the input lives on it
                return True
            for device in out_devices:
                backing = _loop_backing(device)
                if backing:
                    try:
                        if _same_file(os.stat(backing), inp):
                            return True
                    except OSError:
                        continue
    return False


def check_output(target: str, inputs: Iterable[str]) -> None:
    """Refuse ``target`` when it aliases one of ``inputs`` or cannot be written; before any scan."""
    try:
        out = os.stat(target)
    except FileNotFoundError:
        out = None
    except OSError as exc:
        raise OutputError(f"cannot write the output {target}: {exc.strerror}") from None
    if out is not None:
        for name in inputs:
            try:
                inp = os.stat(name)
            except OSError:
                continue  # opening the input reports that
            if _aliases(out, inp, name):
                raise OutputError(f"refusing to write the output {target}: it is the input {name} "
                                  "(or the device holding it)")
        if stat.S_ISDIR(out.st_mode):
            raise OutputError(f"cannot write the output {target}: it is a directory")
        if not stat.S_ISREG(out.st_mode):
            if not os.access(target, os.W_OK):
                raise OutputError(f"cannot write the output {target}: permission denied")
            return
    directory = os.path.dirname(os.path.realpath(target)) or "."
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write the output {target}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the output {target}: directory {directory} is not writable")


@contextmanager
def open_output(target: str) -> Iterator[IO[str]]:
    """A text stream for ``target``; a regular file is replaced only when the block ends without error."""
    real = os.path.realpath(target)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputError(f"cannot write the output {target}: {exc.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        with open(real, "w", encoding="utf-8") as stream:
            yield stream
        return
    directory, name = os.path.split(real)
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
    except OSError as exc:
        raise OutputError(f"cannot write the output {target}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            yield stream
        os.chmod(tmp, stat.S_IMODE(mode) if mode is not None else 0o666 & ~_umask())
        os.replace(tmp, real)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            raise OutputError(f"cannot write the output {target}: {exc.strerror or exc}") from None
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
