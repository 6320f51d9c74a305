"""References the user gives: numbers, subvolumes (by id or path), inodes (``SUBVOL:INO``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import BtrfsScanError
from ..format.constants import ObjectId
from ..model.listing import normalize_path

if TYPE_CHECKING:
    from ..model.filesystem import Filesystem
    from ..model.subvolumes import Subvolume


def parse_number(text: str) -> int:
    """A non-negative integer written in decimal or as ``0x`` hex; ValueError otherwise."""
    cleaned = text.strip().replace("_", "")
    if not cleaned or cleaned.startswith(("-", "+")):
        raise ValueError(f"{text!r} is not a non-negative number")
    try:
        if cleaned[:2].lower() == "0x":
            return int(cleaned[2:], 16)
        return int(cleaned, 10)
    except ValueError:
        raise ValueError(f"{text!r} is not a number (decimal or 0x hex)") from None


def parse_inode_ref(text: str) -> tuple[int, int]:
    """``SUBVOL:INO`` -> (subvolume id, inode number); ValueError otherwise."""
    sub, sep, ino = text.partition(":")
    if not sep:
        raise ValueError(f"{text!r} is not SUBVOL:INO")
    return parse_number(sub), parse_number(ino)


def _walkable(sub: Subvolume) -> Subvolume:
    if sub.deleted:
        raise BtrfsScanError(f"subvolume {sub.id} is deleted (not cleaned up yet); its files are not walked")
    return sub


def resolve_subvolume(fs: Filesystem, value: str) -> Subvolume:
    """A live subvolume by id (decimal or 0x hex) or by path from the top level."""
    try:
        sub = fs.subvolumes.get(parse_number(value))
    except ValueError:
        sub = fs.subvolumes.by_path(value) if normalize_path(value) != "." else fs.subvolumes.get(ObjectId.FS_TREE)
    if sub is None:
        raise BtrfsScanError(f"no subvolume {value!r} (give its id or its path from the top level)")
    return _walkable(sub)


def subvolume_by_id(fs: Filesystem, subvol_id: int) -> Subvolume:
    """A live subvolume by id; an error line when there is none or it is deleted."""
    sub = fs.subvolumes.get(subvol_id)
    if sub is None:
        raise BtrfsScanError(f"no subvolume {subvol_id}")
    return _walkable(sub)


def top_level(fs: Filesystem) -> Subvolume:
    """The top-level subvolume (tree 5), where paths start."""
    top = fs.subvolumes.get(ObjectId.FS_TREE)
    if top is None:
        raise BtrfsScanError("the top-level subvolume (tree 5) has no ROOT_ITEM: paths cannot be resolved")
    return top
