"""Which directories below the walked roots are other mounts (``/proc/self/mountinfo``).

btrfs gives every subvolume its own ``st_dev``, so a change of ``st_dev`` does
not mean another mount; a mount point is decided from the mount table (and,
where statx reports it, ``STATX_MNT_ID``). A bind mount of the same
filesystem keeps ``st_dev`` but is another mount all the same.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(rb"\\([0-7]{3})")


def _unescape(field: bytes) -> bytes:
    """mountinfo writes space, tab, newline and backslash as ``\\ooo``."""
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field)


@dataclass(frozen=True)
class Mount:
    mount_id: int
    mount_point: bytes
    fstype: str
    source: bytes


def read_mounts(path: str = MOUNTINFO) -> list[Mount]:
    """Every mount of this process's namespace, in mountinfo order (later mounts hide earlier ones)."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            fields = line.split()
            if b"-" not in fields[6:]:
                continue
            sep = fields.index(b"-", 6)
            out.append(Mount(int(fields[0]), _unescape(fields[4]), fields[sep + 1].decode("ascii", "replace"),
                             _unescape(fields[sep + 2])))
    return out


def mount_of(path: bytes, mounts: list[Mount]) -> Mount | None:
    """The mount holding the canonical absolute ``path``: the last mounted on its longest mount point prefix."""
    best = None
    for m in mounts:
        mp = m.mount_point
        if path == mp or path.startswith(mp.rstrip(b"/") + b"/"):
            if best is None or len(mp) >= len(best.mount_point):
                best = m
    return best


def mounted_children(roots: list[bytes], mounts: list[Mount]) -> dict[bytes, set[bytes]]:
    """Mount points strictly below ``roots``, as {parent directory: {entry names}}."""
    out: dict[bytes, set[bytes]] = {}
    for m in mounts:
        mp = m.mount_point
        if any(mp.startswith(r.rstrip(b"/") + b"/") for r in roots):
            parent, name = os.path.split(mp.rstrip(b"/"))
            out.setdefault(parent, set()).add(name)
    return out
