"""A filesystem's devices and its logical address space.

``find_device_sets`` identifies every input by its superblock and groups the
inputs by fsid; ``system_volume`` maps a group's SYSTEM chunks from the
sys_chunk_array, enough to read the chunk tree. The complete volume, every
chunk and every device, is assembled from there by ``tree.assemble`` (reading
the chunk tree needs the tree layer). ``Volume.read`` turns a logical range
and a mirror number into device reads. A btrfs-image dump is a volume whose
logical reads come straight from the dump.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import BtrfsScanError, CorruptionError, DeviceError, MissingDeviceError, ReadError, Warnings
from ..format.constants import CsumType, super_mirror_offset
from ..format.items import iter_sys_chunk_array
from . import superblock as sbmod
from .chunks import ChunkMap, PhysicalRange
from .image import RawImage
from .metadump import MetadumpImage, is_metadump
from .mounted import InUse, in_use
from .short_devices import past_end_problem, short_device_problem

_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Device:
    """One device of the filesystem, present (``image``) or missing; sizes from its DEV_ITEM."""

    devid: int
    uuid: bytes
    image: RawImage | None = None
    copies: tuple[sbmod.SuperblockCopy, ...] = ()
    chosen: sbmod.SuperblockCopy | None = None
    total_bytes: int = 0
    bytes_used: int = 0

    @property
    def name(self) -> str:
        return self.image.name if self.image else f"<missing devid {self.devid}>"


class Volume:
    """The devices of one filesystem and the map from logical to physical, complete when built."""

    def __init__(self, superblock: sbmod.Superblock, devices: dict[int, Device], warnings: Warnings,
                 chunk_map: ChunkMap, metadump: MetadumpImage | None = None, in_use: tuple[InUse, ...] = ()) -> None:
        self.superblock = superblock
        self.devices = devices
        self.warnings = warnings
        self.chunk_map = chunk_map
        self.metadump = metadump
        #: Inputs the running kernel has open as devices of this (mounted) filesystem.
        self.in_use = in_use

    @property
    def fsid(self) -> str:
        return self.superblock.fsid_str

    @property
    def tree_csum_type(self) -> CsumType:
        """btrfs-image recomputes every tree block checksum as crc32c."""
        return CsumType.CRC32C if self.metadump else self.superblock.csum

    @property
    def nodesize(self) -> int:
        return self.superblock.nodesize

    def num_copies(self, logical: int) -> int:
        return 1 if self.metadump else self.chunk_map.num_copies(logical)

    def map(self, logical: int, length: int, *, parity: bool = False) -> list[PhysicalRange]:
        return self.chunk_map.map(logical, length, parity=parity)

    def read(self, logical: int, length: int, mirror: int = 1) -> bytes:
        """The bytes of a logical range as copy ``mirror`` holds them.

        For RAID5/6, mirror 2 is the kernel's first rebuild attempt: the data
        recomputed from the other data stripes of each row and the P stripe.
        (Rebuilding from Q, RAID6's mirror 3, is not implemented.)
        """
        if self.metadump is not None:
            return self.metadump.read_logical(logical, length)
        pieces = [r for r in self.chunk_map.map(logical, length) if r.mirror == mirror]
        if not pieces and mirror == 2 and self.chunk_map.lookup(logical).nparity:
            return b"".join(self._rebuild_from_p(r) for r in self.chunk_map.map(logical, length))
        if not pieces and mirror == 3 and self.chunk_map.lookup(logical).nparity == 2:
            raise ReadError(f"logical {logical}: mirror 3 (the RAID6 rebuild from Q) is not implemented")
        if sum(r.length for r in pieces) != length:
            raise ReadError(f"logical {logical}: mirror {mirror} does not exist")
        return b"".join(self.read_physical(r) for r in pieces)

    def view(self, logical: int, length: int) -> tuple[memoryview, Callable[[], None]] | None:
        """Copy 1 of a logical range as a view of its mapped device, without a copy, and what lets it go
        (after which the view must not be used); None where copy 1 is not one range of one mapped device
        whose every page the kernel could map (``RawImage.populate``): ``read`` it then."""
        if self.metadump is not None:
            return None
        pieces = [r for r in self.chunk_map.map(logical, length) if r.mirror == 1]
        if len(pieces) != 1 or pieces[0].length != length:
            return None
        piece = pieces[0]
        device = self.devices.get(piece.devid)
        image = device.image if device is not None else None
        data = image.mapped() if image is not None else None
        start, end = piece.physical, piece.physical + length
        if data is None or start < 0 or end > image.size or not image.populate(start, end):
            return None
        view = memoryview(data)[start:end]

        def done() -> None:
            try:
                view.release()
            except BufferError:  # a caller still holds an array over it: freed with that
                pass
            image.release(start, end)

        return view, done

    def locate_first_copies(self, logicals: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(devid, physical) of each range ``[logical, logical + length)`` in its first copy on a present
        device, all at once: the copy ``read`` gives first.

        Only where copies are whole ranges on one device each (SINGLE, DUP and
        RAID1* chunks): elsewhere (striped profiles, a metadata dump, every
        copy missing, no chunk, a range past its chunk) devid is -1 and
        ``read`` is the way to read it.
        """
        spans = []
        for start, end, copies in ([] if self.metadump else self.chunk_map.mirrored_spans()):
            present = [(devid, physical) for devid, physical in copies if self.has_device(devid)]
            if present and max(start, present[0][1]) <= _INT64_MAX:  # a damaged chunk may reach past 2**63
                spans.append((start, min(end, _INT64_MAX), *present[0]))
        if not spans:
            return np.full(len(logicals), -1, np.int64), np.zeros(len(logicals), np.int64)
        start, end, devid, physical = (np.array(column, np.int64) for column in zip(*spans))
        logical = logicals.astype(np.int64)  # past 2**63 wraps negative: no chunk maps it
        index = np.maximum(np.searchsorted(start, logical, side="right") - 1, 0)
        found = (logical >= start[index]) & (logical <= end[index] - length)
        return np.where(found, devid[index], -1), np.where(found, physical[index] + logical - start[index], 0)

    def read_device_into(self, devid: int, physical: int, buffer: memoryview) -> None:
        """Fill ``buffer`` from device ``devid`` at ``physical``, as ``locate_first_copies`` placed it."""
        self.devices[devid].image.readinto(physical, buffer)

    def device_image(self, devid: int) -> RawImage:
        """The image of a present device ``locate_first_copies`` placed blocks on (to read it mapped)."""
        return self.devices[devid].image

    def has_device(self, devid: int) -> bool:
        """Whether device ``devid`` is among the inputs (a degraded volume lacks some)."""
        device = self.devices.get(devid)
        return device is not None and device.image is not None

    def _rebuild_from_p(self, piece: PhysicalRange) -> bytes:
        """One RAID5/6 data piece recomputed as P xor the row's other data stripes."""
        chunk = self.chunk_map.lookup(piece.logical)
        stripe_len, data_stripes = chunk.stripe_len, chunk.data_stripes
        stripe_nr, in_stripe = divmod(piece.logical - chunk.logical, stripe_len)
        row, column = divmod(stripe_nr, data_stripes)
        parity = [r for r in self.chunk_map.map(piece.logical, piece.length, parity=True) if r.role == "P"]
        value = int.from_bytes(self.read_physical(parity[0]), "little")
        for other in range(data_stripes):
            if other != column:
                sibling = chunk.logical + (row * data_stripes + other) * stripe_len + in_stripe
                (data,) = self.chunk_map.map(sibling, piece.length)
                value ^= int.from_bytes(self.read_physical(data), "little")
        return value.to_bytes(piece.length, "little")

    def unreadable(self, piece: PhysicalRange) -> str | None:
        """Why ``piece`` lies past the end of its (present) device, or None."""
        device = self.devices.get(piece.devid)
        if self.metadump is not None or device is None or device.image is None:
            return None
        return past_end_problem(piece, device.image.size, device.image.name)

    def read_physical(self, piece: PhysicalRange) -> bytes:
        device = self.devices.get(piece.devid)
        if device is None or device.image is None:
            raise MissingDeviceError(
                f"device devid {piece.devid} is missing (needed for logical {piece.logical}, mirror {piece.mirror})"
            )
        return device.image.pread(piece.physical, piece.length)

    @property
    def missing_devices(self) -> list[Device]:
        return [d for d in self.devices.values() if d.image is None]

    def close(self) -> None:
        close_devices(self.devices)


def close_devices(devices: dict[int, Device]) -> None:
    """Close the image of every present device."""
    for device in devices.values():
        if device.image:
            device.image.close()


def _open_input(path: str) -> tuple[RawImage, MetadumpImage | None]:
    image = RawImage(path)
    try:
        with image.fileobj() as probe:
            dump = is_metadump(probe)
        return image, (MetadumpImage(image.fileobj(), image.name) if dump else None)
    except BaseException:
        image.close()
        raise


@dataclass
class DeviceSet:
    """The inputs holding one filesystem, known by their superblocks: what a volume is assembled from.

    ``superblock`` is the newest valid one among the devices; ``devices``
    has the devices given, by devid, sized from their superblocks' dev_item.
    """

    superblock: sbmod.Superblock
    devices: dict[int, Device]
    warnings: Warnings
    metadump: MetadumpImage | None = None
    #: Inputs the running kernel has open as devices of this (mounted) filesystem.
    in_use: tuple[InUse, ...] = ()
    #: The devices of the other filesystems given, by device uuid: a sprout's chunk tree names the devices
    #: of its seed (``btrfstune -S 1``), whose superblocks carry the seed's fsid, among its own.
    seeds: dict[bytes, Device] = field(default_factory=dict)

    def seed(self, devid: int, uuid: bytes, fsid: bytes | None = None) -> Device | None:
        """The device given for another filesystem that is device ``devid`` (``uuid``) of this one, or None;
        ``fsid``: the one its DEV_ITEM says it belongs to, which its superblock must carry."""
        device = self.seeds.get(uuid)
        if device is None or device.devid != devid or device.chosen is None:
            return None
        if fsid is not None and device.chosen.superblock.fields.fsid != fsid:
            return None
        return device

    @property
    def source(self) -> str:
        """The name of the first device, where superblock problems are reported."""
        return next(iter(self.devices.values())).name

    def close(self) -> None:
        close_devices(self.devices)


def find_device_sets(paths: Iterable[str | os.PathLike], super_copy: int | None = None, *,
                     mounted_ok: bool = False) -> list[DeviceSet]:
    """Open every input, read and check its superblocks, group the inputs by fsid.

    ``super_copy``: read superblock copy N of every device (btrfs-progs' ``-s N``) instead of the primary.
    ``mounted_ok``: a device of a mounted filesystem is expected (``live --device``, which compares
    generations itself): recorded in ``in_use``, not warned about.
    """
    groups: dict[bytes, list[tuple[RawImage, sbmod.SuperblockCopy, list[sbmod.SuperblockCopy], MetadumpImage | None]]] = {}
    opened: list[RawImage] = []
    try:
        for path in paths:
            image, dump = _open_input(str(path))
            opened.append(image)
            if dump is not None:
                data = dump.superblock_bytes()
                copies = [sbmod.check_copy(image.name, 0, super_mirror_offset(0), data)]
            else:
                copies = sbmod.read_copies(image)
            chosen = sbmod.choose(copies, image.name, super_copy)
            sbmod.refuse_unsupported(chosen.superblock, image.name)
            groups.setdefault(chosen.superblock.fields.fsid, []).append((image, chosen, copies, dump))
        sets = [_device_set(members, super_copy is not None, mounted_ok) for members in groups.values()]
        for this in sets:  # a sprout may name the devices of its seed, given as another filesystem
            this.seeds = {d.uuid: d for other in sets if other is not this for d in other.devices.values()}
        return sets
    except BaseException:
        for image in opened:  # an error leaves no image open (RawImage holds a raw fd)
            image.close()
        raise


def _device_set(members, requested: bool, mounted_ok: bool) -> DeviceSet:
    warnings = Warnings()
    newest = max(members, key=lambda m: m[1].generation)[1].superblock
    devices: dict[int, Device] = {}
    dump = None
    used: list[InUse] = []
    for image, chosen, copies, member_dump in members:
        sb = chosen.superblock
        if sb.devid in devices:
            raise DeviceError(f"{image.name} and {devices[sb.devid].name} are both devid {sb.devid} of filesystem {newest.fsid_str}")
        devices[sb.devid] = Device(sb.devid, sb.dev_uuid, image, tuple(copies), chosen, sb.dev_item.total_bytes,
                                   sb.dev_item.bytes_used)
        dump = dump or member_dump
        for problem in member_dump.warnings if member_dump else ():
            warnings.add(problem, image.name)
        for what, offset in sbmod.copy_warnings(copies, chosen, newest.generation, requested):
            warnings.add(what, f"{image.name} offset {offset}")
        short = None if member_dump else short_device_problem(image.name, image.size, sb.dev_item.total_bytes,
                                                              sb.total_bytes)
        if short:
            warnings.add(short, f"devid {sb.devid}")
        use = None if member_dump else in_use(image.path, newest.fsid_str)
        if use:
            if not mounted_ok:
                warnings.add(use.describe(image.name), f"devid {sb.devid}")
            used.append(use)
    return DeviceSet(newest, devices, warnings, dump, tuple(used))


def system_volume(devices: DeviceSet) -> Volume:
    """The volume of the SYSTEM chunks the sys_chunk_array maps: enough to read the chunk tree.

    An unusable sys_chunk_array is a warning and a ``CorruptionError``: no
    tree can be read then.
    """
    chunk_map = ChunkMap()
    source = devices.source
    present = dict(devices.devices)
    try:
        for chunk in iter_sys_chunk_array(devices.superblock.sys_chunk_array_bytes, source):
            chunk_map.add(chunk)
            for stripe in chunk.stripes:  # a SYSTEM chunk of the seed, on a seed device given
                seed = devices.seed(stripe.devid, stripe.dev_uuid) if stripe.devid not in present else None
                if seed is not None:
                    present[stripe.devid] = seed
    except BtrfsScanError as exc:
        devices.warnings.add(f"sys_chunk_array unusable: {exc}", f"{source} superblock")
        raise CorruptionError(f"{source}: sys_chunk_array unusable: {exc}") from None
    return Volume(devices.superblock, present, devices.warnings, chunk_map, devices.metadump, devices.in_use)
