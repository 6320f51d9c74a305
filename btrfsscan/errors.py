"""Errors and warnings, each saying what went wrong and where.

A ``BtrfsScanError`` ends the command with one line on stderr and exit code 2.
A ``ScanWarning`` records something that was skipped while the scan went on;
any warning marks the result as partial (exit code 1).
"""

from __future__ import annotations

from dataclasses import dataclass


class BtrfsScanError(Exception):
    """A fatal problem: the message is one line naming what and where."""


class NotBtrfsError(BtrfsScanError):
    """The input holds no btrfs superblock (nor a btrfs-image dump)."""


class DeviceError(BtrfsScanError):
    """A device is missing, short, unreadable or belongs to another filesystem."""


class MissingDeviceError(DeviceError):
    """A read needs a device that was not given (degraded filesystem)."""


class ReadError(BtrfsScanError):
    """A read outside a device or a logical address no chunk maps."""


class CorruptionError(BtrfsScanError):
    """On-disk data fails a structural or checksum check."""


class ConcurrentWriteError(BtrfsScanError):
    """A tree block of a mounted filesystem failed its checks: probably rewritten while it was read. The
    command starts again from a fresh superblock (``volumes.mounted.RACE_ATTEMPTS``)."""


class UnsupportedError(BtrfsScanError):
    """A feature btrfsscan does not map correctly; refused rather than misread."""


@dataclass(frozen=True)
class ScanWarning:
    """Something skipped during a scan; ``where`` names device/offset/tree block."""

    what: str
    where: str = ""
    tree: int | None = None
    bytenr: int | None = None

    def __str__(self) -> str:
        return f"{self.what} ({self.where})" if self.where else self.what


class Warnings:
    """Collects ``ScanWarning`` records for one scan, without duplicates, bounded."""

    LIMIT = 1000

    def __init__(self) -> None:
        self.items: list[ScanWarning] = []
        self._seen: set[ScanWarning] = set()
        self.dropped = 0

    def add(self, what: str, where: str = "", *, tree: int | None = None, bytenr: int | None = None) -> None:
        warning = ScanWarning(what, where, tree, bytenr)
        if warning in self._seen:
            return
        if len(self.items) >= self.LIMIT:
            self.dropped += 1
            return
        self._seen.add(warning)
        self.items.append(warning)

    def __bool__(self) -> bool:
        return bool(self.items) or self.dropped > 0

    def __iter__(self):
        return iter(self.items)

    def messages(self) -> list[str]:
        out = [str(w) for w in self.items]
        if self.dropped:
            out.append(f"{self.dropped} more warnings not shown")
        return out


class LiveError(BtrfsScanError):
    """A path given to ``live`` is not a directory, or the roots span several filesystems."""


class ResidencyError(BtrfsScanError):
    """A residency or workload file is unreadable, truncated, newer, or of another filesystem or page size."""
