"""What the volume-level commands compute: superblocks and their copies, chunks, logical mappings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..cache.facts import DeviceInfo
from ..format.items import iter_sys_chunk_array
from ..errors import BtrfsScanError, DeviceError
from ..model.block_groups import BlockGroup, read_block_groups
from ..model.filesystem import Filesystem
from ..volumes import superblock as sbmod
from ..volumes.chunks import Chunk, PhysicalRange
from ..volumes.volume import Volume
from .facts import device_infos

@dataclass(frozen=True)
class SuperblockSource:
    """Where a superblock was read from."""

    devid: int
    path: str
    mirror: int
    bytenr: int


@dataclass(frozen=True)
class MirrorState:
    """One superblock copy of one device; ``in_use``: the copy btrfsscan reads the filesystem with."""

    devid: int
    path: str
    copy: sbmod.SuperblockCopy
    newest_generation: int | None
    in_use: bool


@dataclass(frozen=True)
class SuperblockInfo:
    """The ``super`` command's result: one superblock, where it was read, the devices, every copy.

    ``sys_chunks`` is the decoded sys_chunk_array (None unless asked for).
    """

    superblock: sbmod.Superblock
    source: SuperblockSource | None
    devices: tuple[DeviceInfo, ...]
    mirrors: tuple[MirrorState, ...]
    sys_chunks: tuple[Chunk, ...] | None


def superblock_info(volume: Volume, *, devid: int | None = None, sys_chunks: bool = False) -> SuperblockInfo:
    """The superblock btrfsscan uses (each device's primary when valid, or the ``--super-copy`` one; the
    newest of the devices given), or with ``devid`` the one chosen on that device; with ``sys_chunks`` its sys_chunk_array decoded (what cannot be
    decoded is a warning)."""
    newest = volume.superblock
    present = [d for _, d in sorted(volume.devices.items()) if d.image is not None]
    source: SuperblockSource | None = None
    if devid is None:
        for device in present:
            for copy in device.copies:
                if copy.superblock is newest:
                    source = SuperblockSource(device.devid, device.name, copy.mirror, copy.bytenr)
        sb = newest
    else:
        device = volume.devices.get(devid)
        if device is None or device.image is None:
            given = ", ".join(str(d.devid) for d in present)
            raise DeviceError(f"devid {devid} is not among the images given (devids {given})")
        chosen = device.chosen
        if chosen is None:
            raise DeviceError(f"devid {devid} ({device.name}) has no valid superblock copy")
        sb = chosen.superblock
        source = SuperblockSource(device.devid, device.name, chosen.mirror, chosen.bytenr)
    chunks: tuple[Chunk, ...] | None = None
    if sys_chunks:
        decoded: list[Chunk] = []
        try:
            decoded.extend(iter_sys_chunk_array(sb.sys_chunk_array_bytes, source.path if source else "superblock"))
        except BtrfsScanError as exc:
            volume.warnings.add(f"sys_chunk_array decoded only in part: {exc}")
        chunks = tuple(decoded)
    mirrors = tuple(
        MirrorState(device.devid, device.name, copy, newest.generation, copy.superblock is newest)
        for device in present
        for copy in device.copies
    )
    return SuperblockInfo(sb, source, device_infos(volume), mirrors, chunks)


@dataclass(frozen=True)
class ChunkUsage:
    """A chunk and its block group (None when the chunk has no BLOCK_GROUP_ITEM)."""

    chunk: Chunk
    block_group: BlockGroup | None = None


def chunk_usage(fs: Filesystem) -> tuple[ChunkUsage, ...]:
    """Every chunk of the chunk map, by logical address, with the used bytes of its block group."""
    groups = read_block_groups(fs.reader)
    return tuple(ChunkUsage(chunk, groups.get(chunk.logical)) for chunk in fs.volume.chunk_map)


def device_path(volume: Volume, devid: int) -> str | None:
    """The image holding device ``devid``; None when missing, or for a btrfs-image dump (no device bytes)."""
    if volume.metadump is not None:
        return None
    device = volume.devices.get(devid)
    return device.image.name if device is not None and device.image is not None else None


@dataclass(frozen=True)
class MappedRange:
    """One physical piece of a mapped logical range and the path of its device."""

    range: PhysicalRange
    device: str | None


@dataclass(frozen=True)
class LogicalMapping:
    """The ``map-logical`` result: where every copy of ``[logical, logical+length)`` lives."""

    logical: int
    length: int
    chunk: Chunk
    ranges: Sequence[MappedRange]


def map_logical(volume: Volume, logical: int, length: int, *, parity: bool = False) -> LogicalMapping:
    ranges = volume.map(logical, length, parity=parity)
    chunk = volume.chunk_map.lookup(logical)
    for problem in filter(None, map(volume.unreadable, ranges)):
        volume.warnings.add(problem, f"logical {logical}")
    return LogicalMapping(logical, length, chunk, tuple(MappedRange(r, device_path(volume, r.devid)) for r in ranges))
