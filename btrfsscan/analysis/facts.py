"""The filesystem facts the page-cache models decide from, and the names of profiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..cache.facts import DeviceInfo, FilesystemFacts, SubvolumeInfo
from ..format.constants import BlockGroupFlag, CompatRoFlag, IncompatFlag, Profile, flag_names
from ..model.subvolumes import ZERO_UUID
from ..volumes.chunks import Chunk
from ..volumes.superblock import format_uuid

if TYPE_CHECKING:
    from ..model.filesystem import Filesystem
    from ..model.subvolumes import Subvolume
    from ..volumes.volume import Volume


def profile_of_type(flags: int) -> str:
    """The profile of block group type ``flags``: ``SINGLE``, ``DUP``, ``RAID1``...; ``unknown(0x...)``
    when several profile bits are set."""
    try:
        return Profile.from_type(flags).name
    except ValueError:
        return f"unknown(0x{flags:x})"


def profile_name(chunk: Chunk) -> str:
    """The profile of a chunk (``profile_of_type`` of its type)."""
    return profile_of_type(chunk.type)


def profiles_by_type(types: list[int], type_bit: BlockGroupFlag) -> tuple[str, ...]:
    """The profiles of the block group types ``types`` that have ``type_bit`` (DATA, METADATA, SYSTEM)."""
    return tuple(sorted({profile_of_type(t) for t in types if t & type_bit}))


def uuid_or_none(raw: bytes) -> str | None:
    """A uuid as text; None for the all-zero uuid (no such uuid)."""
    return None if bytes(raw) == ZERO_UUID else format_uuid(raw)


def device_infos(volume: Volume) -> tuple[DeviceInfo, ...]:
    """The devices of the filesystem by devid, as the chunk tree (or the superblocks) list them."""
    return tuple(
        DeviceInfo(d.devid, format_uuid(d.uuid), d.image.name if d.image else None, d.total_bytes, d.bytes_used)
        for _, d in sorted(volume.devices.items())
    )


def _profiles(volume: Volume, type_bit: BlockGroupFlag) -> tuple[str, ...]:
    return profiles_by_type([c.type for c in volume.chunk_map], type_bit)


def filesystem_facts(fs: Filesystem) -> FilesystemFacts:
    """What the report says about the filesystem, from its superblock and chunk map; the generation is the
    one shown, the root tree's (older than the superblock's when a backup root stands in)."""
    sb = fs.superblock
    return FilesystemFacts(
        fsid=sb.fsid_str, label=sb.label_str, devices=device_infos(fs.volume), num_devices=sb.num_devices,
        data_profiles=_profiles(fs.volume, BlockGroupFlag.DATA),
        metadata_profiles=_profiles(fs.volume, BlockGroupFlag.METADATA),
        system_profiles=_profiles(fs.volume, BlockGroupFlag.SYSTEM), nodesize=sb.nodesize, sectorsize=sb.sectorsize,
        generation=fs.root_tree.generation, incompat_features=tuple(flag_names(IncompatFlag, sb.incompat_flags)),
        compat_ro_features=tuple(flag_names(CompatRoFlag, sb.compat_ro_flags)), inline_data=not fs.is_metadump,
    )


def subvolume_info(sub: Subvolume) -> SubvolumeInfo:
    """A live subvolume as the report lists it (the top level's path is ``""``)."""
    return SubvolumeInfo(sub.id, sub.path or ("" if sub.id == 5 else None), uuid_or_none(sub.uuid),
                         uuid_or_none(sub.parent_uuid), sub.readonly, sub.root_item.generation)
