"""What the cache models know about a filesystem besides its files: devices, profiles, sizes.

Filled by the application layer (``btrfsscan.analysis.facts``) from the
superblock and the chunk map; a model's ``applies`` decides from these alone.
Profiles are names (``SINGLE``, ``DUP``, ``RAID1``...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceInfo:
    devid: int
    uuid: str | None = None
    path: str | None = None
    total_bytes: int = 0
    bytes_used: int = 0


@dataclass(frozen=True)
class FilesystemFacts:
    """The filesystem as the report describes it.

    ``num_devices`` is the superblock's device count (None: the number of
    ``devices`` given); it decides, for example, whether the RFC as posted
    applies. ``inline_data`` is False where inline extents' bytes are not in
    the input (a btrfs-image metadata dump zeroes them).
    """

    fsid: str
    label: str = ""
    devices: tuple[DeviceInfo, ...] = ()
    num_devices: int | None = None
    data_profiles: tuple[str, ...] = ()
    metadata_profiles: tuple[str, ...] = ()
    system_profiles: tuple[str, ...] = ()
    nodesize: int = 16384
    sectorsize: int = 4096
    generation: int = 0
    incompat_features: tuple[str, ...] = ()
    compat_ro_features: tuple[str, ...] = ()
    inline_data: bool = True

    @property
    def device_count(self) -> int:
        return self.num_devices if self.num_devices is not None else len(self.devices)


@dataclass(frozen=True)
class SubvolumeInfo:
    """A subvolume as the root tree describes it (``path`` None when unreachable)."""

    id: int
    path: str | None = None
    uuid: str | None = None
    parent_uuid: str | None = None
    readonly: bool = False
    generation: int | None = None
