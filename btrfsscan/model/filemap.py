"""One file's extent map: file offset -> logical address -> device offsets.

The map lists every EXTENT_DATA item of the inode in file order, makes the
implicit holes of NO_HOLES filesystems explicit up to i_size, and maps the
referenced part of each uncompressed extent (the whole on-disk extent for a
compressed one) to every device copy, split at stripe boundaries. Each data
extent says whether FIEMAP flags it SHARED (the kernel's rule,
``fiemap_shared``) and how many of its bytes another reference also maps
(``byte_sharing``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BtrfsScanError, ReadError
from ..format.constants import Compression, FileExtentType
from .byte_sharing import shared_bytes
from .fiemap_shared import SharedCheck
from .tables import FileTables

if TYPE_CHECKING:
    from .filesystem import Filesystem

EXTENT_KIND = {FileExtentType.INLINE: "inline", FileExtentType.REG: "regular", FileExtentType.PREALLOC: "prealloc"}


@dataclass(frozen=True)
class DeviceRange:
    """One device copy of a piece of an extent; ``missing``: its device is not among the inputs."""

    file_offset: int
    length: int
    mirror: int
    devid: int
    physical: int
    missing: bool = False


@dataclass
class FileExtent:
    """One piece of the file map (an EXTENT_DATA item, or an implicit hole)."""

    file_offset: int
    length: int
    type: str
    compression: str
    disk_bytenr: int = 0
    disk_num_bytes: int = 0
    offset: int = 0
    num_bytes: int = 0
    ram_bytes: int = 0
    refs: int = 0
    mappings: int = 0
    shared: bool = False  # FIEMAP's SHARED (``fiemap_shared``)
    shared_bytes: int = 0  # of ``length``, also mapped by another reference (``byte_sharing``)
    device_ranges: list[DeviceRange] = field(default_factory=list)


@dataclass
class FileMap:
    path: str
    subvolume: int
    inode: int
    size: int
    extents: list[FileExtent]
    xattrs: list[str] = field(default_factory=list)


def _related(tables: FileTables, bytenrs: list[int]) -> np.ndarray:
    """Every reference, in any subvolume and inode, to the data extents at ``bytenrs``."""
    column = tables.extents["disk_bytenr"]
    return tables.extents[np.isin(column, np.array(bytenrs, dtype=np.uint64))]


def _mapping_counts(related: np.ndarray) -> dict[int, int]:
    """How many (subvolume, inode, file offset) references each data extent has."""
    values, counts = np.unique(related["disk_bytenr"], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def _own_shared_bytes(related: np.ndarray, subvol: int, ino: int) -> dict[int, int]:
    """File offset -> shared bytes (``byte_sharing``) of the inode's own references among ``related``."""
    own = (related["subvol"] == subvol) & (related["ino"] == ino)
    return dict(zip(related["file_offset"][own].tolist(), shared_bytes(related)[own].tolist()))


def build_file_map(fs: Filesystem, subvol: int, ino: int, path: str, tables: FileTables) -> FileMap:
    """The extent map of inode ``ino`` of subvolume ``subvol``."""
    inodes = tables.inodes
    row = inodes[(inodes["subvol"] == subvol) & (inodes["ino"] == ino)]
    if len(row) == 0:
        raise BtrfsScanError(f"{path}: inode {ino} of subvolume {subvol} has no INODE_ITEM")
    size = int(row["size"][0])
    rows = tables.extents[(tables.extents["subvol"] == subvol) & (tables.extents["ino"] == ino)]
    data_bytenrs = [int(b) for b, t in zip(rows["disk_bytenr"], rows["type"]) if b and t != FileExtentType.INLINE]
    related = _related(tables, data_bytenrs)
    counts = _mapping_counts(related)
    byte_shares = _own_shared_bytes(related, subvol, ino)
    refs = fs.data_extent_refs(data_bytenrs, where=path)  # damage: refs left 0, the device map needs none
    check = SharedCheck(fs, subvol, ino)
    extents: list[FileExtent] = []
    pos = 0
    for r in rows:
        start = int(r["file_offset"])
        if start > pos:
            extents.append(FileExtent(pos, start - pos, "hole", "none"))
        extent = _extent(fs, r, counts, refs, path)
        if extent.type in ("regular", "prealloc"):
            extent.shared = check.shared(extent.file_offset, extent.disk_bytenr)
            extent.shared_bytes = byte_shares.get(extent.file_offset, 0)
        extents.append(extent)
        pos = max(pos, start + int(r["num_bytes"]))
    if pos < size:
        extents.append(FileExtent(pos, size - pos, "hole", "none"))
    sub = fs.subvolumes.get(subvol)
    xattrs = fs.namespace.xattr_names(sub, ino) if sub is not None else []
    return FileMap(path, subvol, ino, size, extents, xattrs)


#: Longest referenced range mapped to devices. btrfs data extents are at most 128 MiB (256 MiB
#: preallocated); a longer one is damage, and on a striped chunk its map would need a piece
#: per stripe: memory no longer bounded by the metadata.
MAX_MAPPED_BYTES = 1 << 30


def _extent(fs: Filesystem, r, counts: dict[int, int], refs: dict[int, int], path: str = "") -> FileExtent:
    ftype = int(r["type"])
    disk_bytenr = int(r["disk_bytenr"])
    kind = EXTENT_KIND[FileExtentType(ftype)]
    if ftype != FileExtentType.INLINE and disk_bytenr == 0:
        kind = "hole"
    ext = FileExtent(
        file_offset=int(r["file_offset"]), length=int(r["num_bytes"]), type=kind,
        compression=Compression(int(r["compression"])).name.lower() if int(r["compression"]) <= 3 else str(int(r["compression"])),
        disk_bytenr=disk_bytenr, disk_num_bytes=int(r["disk_num_bytes"]), offset=int(r["offset"]),
        num_bytes=int(r["num_bytes"]), ram_bytes=int(r["ram_bytes"]),
    )
    if kind not in ("regular", "prealloc"):
        return ext
    ext.mappings = counts.get(disk_bytenr, 0)
    ext.refs = refs.get(disk_bytenr, 0)
    if fs.is_metadump:
        return ext
    if ext.compression == "none":
        logical, length = disk_bytenr + ext.offset, ext.num_bytes
    else:
        logical, length = disk_bytenr, ext.disk_num_bytes
    where = f"{path}: extent at file offset {ext.file_offset}, logical {logical}"
    if length > MAX_MAPPED_BYTES:
        fs.warnings.add(f"{where}: {length} bytes, more than any btrfs data extent; device ranges not mapped")
        return ext
    try:
        pieces = fs.volume.map(logical, length)
    except ReadError as exc:
        fs.warnings.add(f"{where}: device ranges not mapped: {exc}")
        return ext
    for piece in pieces:
        problem = fs.volume.unreadable(piece)
        if problem:
            fs.warnings.add(f"{where}: {problem}, not listed")
            continue
        file_offset = ext.file_offset + (piece.logical - logical) if ext.compression == "none" else ext.file_offset
        ext.device_ranges.append(DeviceRange(file_offset, piece.length, piece.mirror, piece.devid, piece.physical,
                                             not fs.volume.has_device(piece.devid)))
    return ext
