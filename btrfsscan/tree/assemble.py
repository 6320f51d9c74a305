"""Assembling a volume completely: superblocks, sys_chunk_array, chunk tree, device items.

The sys_chunk_array maps only the SYSTEM chunks, enough to read the chunk
tree; its CHUNK_ITEMs complete the map and its DEV_ITEMs name every device,
so a missing one can be named by devid and uuid. ``assemble_volume`` does
all of it and returns a ``Volume`` that is complete when built (nothing adds
chunks or devices to it later); ``open_volume(s)`` opens the inputs first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace

from ..errors import BtrfsScanError, CorruptionError, DeviceError, ReadError
from ..format.constants import BTRFS_DEV_ITEMS_OBJECTID, BTRFS_FIRST_CHUNK_TREE_OBJECTID, ItemType, ObjectId, SuperFlag
from ..format.items import Chunk, DevItem, parse_item
from ..volumes.chunks import ChunkMap, validate_chunk
from ..volumes.superblock import format_uuid
from ..volumes.volume import Device, DeviceSet, Volume, find_device_sets, system_volume
from .reader import TreeReader
from .roots import chunk_root
from .walk import iter_leaves


def assemble_volume(devices: DeviceSet, *, partial: bool = False) -> Volume:
    """Every chunk and every device of the filesystem on ``devices``.

    ``CorruptionError`` when the SYSTEM chunks cannot be mapped or the chunk
    tree's root cannot be read, neither the superblock's nor a backup slot's
    (``roots.chunk_root``); with ``partial`` that is a warning instead and
    the volume has the devices the superblocks name (and the SYSTEM chunks,
    if those could be mapped), for a caller that shows the superblocks anyway.
    """
    system = None
    try:
        system = system_volume(devices)
        return _with_chunk_tree(system, devices)
    except BtrfsScanError as exc:
        if not partial:
            raise
        devices.warnings.add(f"chunk tree not loaded, devices listed from the superblocks only: {exc}")
        return system or Volume(devices.superblock, devices.devices, devices.warnings, ChunkMap(), devices.metadump,
                                devices.in_use)


def _with_chunk_tree(system: Volume, given: DeviceSet) -> Volume:
    """``system`` completed with the chunks and devices of its chunk tree (a device of the seed it
    sprouted from, where the chunk tree names one, from the other inputs ``given.seeds``)."""
    warnings = system.warnings
    devices = dict(system.devices)
    device_sizes: dict[int, int] = {}
    chunks: list[Chunk] = []
    reader = TreeReader(system)
    for leaf in iter_leaves(reader, chunk_root(reader)):
        for slot, key in enumerate(leaf.keys()):
            objectid, item_type, _ = key
            wanted = ((item_type == ItemType.DEV_ITEM and objectid == BTRFS_DEV_ITEMS_OBJECTID)
                      or (item_type == ItemType.CHUNK_ITEM and objectid == BTRFS_FIRST_CHUNK_TREE_OBJECTID))
            if not wanted:
                continue
            where = f"chunk tree block {leaf.bytenr} slot {slot}"
            try:
                record = parse_item(key, leaf.item_data(slot), where)
            except CorruptionError as exc:
                if item_type == ItemType.DEV_ITEM:
                    warnings.add(str(exc), where)
                else:
                    warnings.add(f"chunk skipped: {exc}", where, tree=ObjectId.CHUNK_TREE, bytenr=leaf.bytenr)
                continue
            if isinstance(record, DevItem):
                known = devices.get(record.devid)
                if known is None or known.image is None:
                    known = given.seed(record.devid, record.uuid, record.fsid) or known
                devices[record.devid] = _device(known, record)
                device_sizes[record.devid] = record.total_bytes
            else:
                chunks.append(record)
    chunk_map = ChunkMap(system.chunk_map)
    sectorsize = system.superblock.sectorsize
    for chunk in chunks:
        for problem in validate_chunk(chunk, sectorsize=sectorsize, device_sizes=device_sizes or None):
            warnings.add(problem, "chunk tree", tree=ObjectId.CHUNK_TREE)
        unknown = _unknown_devids(chunk, device_sizes)
        if unknown:
            warnings.add(f"chunk at logical {chunk.logical} has a stripe on devid {unknown[0]}, which no DEV_ITEM of "
                         "the chunk tree names: damaged, chunk skipped (its ranges are unreadable)", "chunk tree",
                         tree=ObjectId.CHUNK_TREE)
            continue
        known = _chunk_at(chunk_map, chunk.logical)
        if known is not None and known != chunk:
            # The kernel keeps the sys_chunk_array's mapping too (read_one_chunk skips mapped starts).
            warnings.add(f"chunk at logical {chunk.logical} differs from the superblock's sys_chunk_array copy "
                         f"of it; the sys_chunk_array's is used", "chunk tree", tree=ObjectId.CHUNK_TREE)
            continue
        try:
            chunk_map.add(chunk)
        except CorruptionError as exc:
            warnings.add(f"chunk skipped: {exc}", "chunk tree", tree=ObjectId.CHUNK_TREE)
    volume = Volume(system.superblock, devices, warnings, chunk_map, system.metadump, system.in_use)
    for device in volume.missing_devices:
        warnings.add(f"device devid {device.devid} uuid {format_uuid(device.uuid)} is missing: degraded, reading "
                     "the other copies where the profile has them", "chunk tree")
    return volume


def _device(known: Device | None, item: DevItem) -> Device:
    """The device ``item`` describes: the one given, sized by its DEV_ITEM, or a missing one."""
    if known is None:
        return Device(item.devid, item.uuid, total_bytes=item.total_bytes, bytes_used=item.bytes_used)
    return replace(known, total_bytes=item.total_bytes, bytes_used=item.bytes_used)


def _unknown_devids(chunk: Chunk, device_sizes: dict[int, int]) -> list[int]:
    """Devids of ``chunk``'s stripes that no DEV_ITEM names (none when the chunk tree listed no device)."""
    if not device_sizes:
        return []
    return sorted({stripe.devid for stripe in chunk.stripes} - device_sizes.keys())


def _chunk_at(chunk_map: ChunkMap, logical: int) -> Chunk | None:
    """The chunk already mapped that starts exactly at ``logical``, or None."""
    try:
        chunk = chunk_map.lookup(logical)
    except ReadError:
        return None
    return chunk if chunk.logical == logical else None


def open_volumes(paths: Iterable[str | os.PathLike], super_copy: int | None = None) -> list[Volume]:
    """Every filesystem found among ``paths`` (grouped by fsid), each volume assembled; ``super_copy``:
    read that superblock copy of every device (``find_device_sets``)."""
    device_sets = find_device_sets(paths, super_copy)
    try:
        return [assemble_volume(devices) for devices in device_sets]
    except BaseException:
        for devices in device_sets:  # an unreadable chunk tree leaves no image open
            devices.close()
        raise


def open_volume(paths: Iterable[str | os.PathLike], super_copy: int | None = None, *,
                partial: bool = False, mounted_ok: bool = False) -> Volume:
    """The volume of inputs that must all belong to one filesystem (``partial``: see ``assemble_volume``;
    ``mounted_ok``: see ``find_device_sets``)."""
    device_sets = find_device_sets(paths, super_copy, mounted_ok=mounted_ok)
    try:
        sprouts = [d for d in device_sets if not d.superblock.fields.flags & SuperFlag.SEEDING]
        if len(device_sets) == 1 or len(sprouts) != 1:
            _one_filesystem(device_sets)
            return assemble_volume(device_sets[0], partial=partial)
        volume = assemble_volume(sprouts[0], partial=partial)  # the others are seeds: it must use them all
        used = {d.uuid for d in volume.devices.values() if d.image is not None}
        _one_filesystem([sprouts[0], *[d for d in device_sets if not {x.uuid for x in d.devices.values()} <= used]])
        return volume
    except BaseException:
        for devices in device_sets:
            devices.close()
        raise


def _one_filesystem(device_sets: list[DeviceSet]) -> None:
    """DeviceError unless ``device_sets`` is one filesystem (a seed used by its sprout counts as its own)."""
    if len(device_sets) > 1:
        first, other = device_sets[0], device_sets[1]
        raise DeviceError(f"{other.source} belongs to filesystem {other.superblock.fsid_str}, not "
                          f"{first.superblock.fsid_str}: give the devices of one filesystem")
