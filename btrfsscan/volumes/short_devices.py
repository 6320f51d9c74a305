"""Devices shorter than their filesystem says: a cut copy (``head -c``), a partial ``dd``.

The superblock's ``dev_item.total_bytes`` is the size the kernel formatted
the device with; an image shorter than that still opens (its superblock
copies at 64 KiB and 64 MiB may well be there) but every range past its end
is gone. This is named once, with both sizes, when the device is opened, and
every device range a command would print past the end is flagged instead.
"""

from __future__ import annotations

from .chunks import PhysicalRange


def short_device_problem(name: str, size: int, dev_total_bytes: int, fs_total_bytes: int) -> str | None:
    """Why a device of ``size`` bytes cannot hold what its superblock claims, or None."""
    if size >= dev_total_bytes:
        return None
    return (f"device {name} is {size} bytes, shorter than the {dev_total_bytes} bytes its superblock's dev_item "
            f"claims (filesystem total_bytes {fs_total_bytes}): a cut copy? Everything stored past byte {size} "
            "is unreadable; the result is partial")


def past_end_problem(piece: PhysicalRange, size: int, name: str) -> str | None:
    """Why ``piece`` cannot be read from a device of ``size`` bytes, or None."""
    if piece.physical + piece.length <= size:
        return None
    return (f"copy #{piece.mirror} on devid {piece.devid} at physical {piece.physical}+{piece.length} lies past the "
            f"end of {name} ({size} bytes): unreadable")
