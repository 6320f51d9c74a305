"""Loading the chunk tree: every chunk and every device the filesystem has.

The sys_chunk_array only maps the SYSTEM chunks, enough to read the chunk
tree; its CHUNK_ITEMs complete the map and its DEV_ITEMs name every device,
so a missing one can be named by devid and uuid.
"""

from __future__ import annotations

from ..errors import CorruptionError, ReadError
from ..format import fastparse
from ..format.constants import BTRFS_DEV_ITEMS_OBJECTID, BTRFS_FIRST_CHUNK_TREE_OBJECTID, ItemType, ObjectId
from ..volumes.chunk_items import parse_chunk
from ..volumes.chunks import validate_chunk
from ..volumes.superblock import format_uuid
from ..volumes.volume import Device, Volume
from .reader import TreeReader
from .walk import TreeRoot, iter_leaves

_DEV_ITEM = fastparse.DEV_ITEM
_DEV = {name: i for i, name in enumerate(_DEV_ITEM.names)}


def chunk_root(volume: Volume) -> TreeRoot:
    sb = volume.superblock
    return TreeRoot(ObjectId.CHUNK_TREE, sb.chunk_root, sb.chunk_root_level, sb.chunk_root_generation)


def load_chunk_tree(reader: TreeReader) -> None:
    """Add the chunk tree's chunks and devices to ``reader.volume``."""
    volume = reader.volume
    warnings = reader.warnings
    device_sizes: dict[int, int] = {}
    chunks = []
    for leaf in iter_leaves(reader, chunk_root(volume)):
        for slot, (objectid, item_type, offset) in enumerate(leaf.keys()):
            data = leaf.item_data(slot)
            where = f"chunk tree block {leaf.bytenr} slot {slot}"
            if item_type == ItemType.DEV_ITEM and objectid == BTRFS_DEV_ITEMS_OBJECTID:
                if len(data) < _DEV_ITEM.size:
                    warnings.add(f"DEV_ITEM {offset} is {len(data)} bytes, shorter than btrfs_dev_item", where)
                    continue
                fields = _DEV_ITEM.unpack_from(data)
                _note_device(volume, fields)
                device_sizes[fields[_DEV["devid"]]] = fields[_DEV["total_bytes"]]
            elif item_type == ItemType.CHUNK_ITEM and objectid == BTRFS_FIRST_CHUNK_TREE_OBJECTID:
                try:
                    chunks.append(parse_chunk(offset, data, 0, len(data), where))
                except CorruptionError as exc:
                    warnings.add(f"chunk skipped: {exc}", where, tree=ObjectId.CHUNK_TREE, bytenr=leaf.bytenr)
    sectorsize = volume.superblock.sectorsize
    for chunk in chunks:
        for problem in validate_chunk(chunk, sectorsize=sectorsize, device_sizes=device_sizes or None):
            warnings.add(problem, "chunk tree", tree=ObjectId.CHUNK_TREE)
        unknown = _unknown_devids(chunk, device_sizes)
        if unknown:
            warnings.add(f"chunk at logical {chunk.logical} has a stripe on devid {unknown[0]}, which no DEV_ITEM of "
                         "the chunk tree names: damaged, chunk skipped (its ranges are unreadable)", "chunk tree",
                         tree=ObjectId.CHUNK_TREE)
            continue
        known = _chunk_at(volume, chunk.logical)
        if known is not None and known != chunk:
            # The kernel keeps the sys_chunk_array's mapping too (read_one_chunk skips mapped starts).
            warnings.add(f"chunk at logical {chunk.logical} differs from the superblock's sys_chunk_array copy "
                         f"of it; the sys_chunk_array's is used", "chunk tree", tree=ObjectId.CHUNK_TREE)
            continue
        try:
            volume.chunk_map.add(chunk)
        except CorruptionError as exc:
            warnings.add(f"chunk skipped: {exc}", "chunk tree", tree=ObjectId.CHUNK_TREE)
    for device in volume.missing_devices:
        warnings.add(f"device devid {device.devid} uuid {format_uuid(device.uuid)} is missing: degraded, reading "
                     "the other copies where the profile has them", "chunk tree")


def _unknown_devids(chunk, device_sizes: dict[int, int]) -> list[int]:
    """Devids of ``chunk``'s stripes that no DEV_ITEM names (none when the chunk tree listed no device)."""
    if not device_sizes:
        return []
    return sorted({stripe.devid for stripe in chunk.stripes} - device_sizes.keys())


def _chunk_at(volume: Volume, logical: int):
    """The chunk already mapped that starts exactly at ``logical``, or None."""
    try:
        chunk = volume.chunk_map.lookup(logical)
    except ReadError:
        return None
    return chunk if chunk.logical == logical else None


def _note_device(volume: Volume, fields: tuple) -> None:
    devid = fields[_DEV["devid"]]
    device = volume.devices.get(devid)
    if device is None:
        device = volume.devices[devid] = Device(devid, fields[_DEV["uuid"]])
    device.total_bytes = fields[_DEV["total_bytes"]]
    device.bytes_used = fields[_DEV["bytes_used"]]
