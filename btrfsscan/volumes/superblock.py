"""Reading, checking and choosing superblock copies.

Each device holds up to three copies (64 KiB, 64 MiB, 256 GiB). A copy is
usable when its magic, checksum, ``bytenr`` and basic geometry are sane. The
choice is the kernel's: the primary whenever it is usable, even when a backup
copy is newer (a superblock write that reached the backups only; the kernel
mounts the primary and so does btrfsscan, with a warning). Only when the
primary is unusable does the newest usable backup stand in, as ``btrfs
rescue super-recover`` would pick it (the kernel would refuse to mount).
``--super-copy N`` reads copy N, as btrfs-progs' ``-s N``. Every copy not
used is reported with what was found. ``super_root`` and ``backup_roots``
give the roots of the root tree and the chunk tree the superblock names, its
own and those of its backup slots; which one is read is the tree layer's
choice (``tree.roots``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from construct import Container

from ..errors import CorruptionError, NotBtrfsError, ReadError, UnsupportedError
from ..format import checksum
from ..format.constants import (
    BTRFS_MAGIC,
    BTRFS_SUPER_INFO_SIZE,
    BTRFS_SUPER_MIRROR_MAX,
    BTRFS_SYSTEM_CHUNK_ARRAY_SIZE,
    UNSUPPORTED_INCOMPAT,
    CsumType,
    IncompatFlag,
    ObjectId,
    flag_names,
    super_mirror_offset,
)
from ..format.structs import btrfs_super_block


def format_uuid(raw: bytes) -> str:
    return str(uuid.UUID(bytes=bytes(raw)))


@dataclass(frozen=True)
class Superblock:
    """A parsed ``btrfs_super_block``; ``fields`` keeps every raw field."""

    fields: Container
    data: bytes = field(repr=False)

    @classmethod
    def parse(cls, data: bytes) -> "Superblock":
        return cls(btrfs_super_block.parse(data), data)

    def __getattr__(self, name: str):
        # Raw fields by their kernel names (sb.generation, sb.nodesize, ...).
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def fsid_str(self) -> str:
        return format_uuid(self.fields.fsid)

    @property
    def has_metadata_uuid(self) -> bool:
        return bool(self.fields.incompat_flags & IncompatFlag.METADATA_UUID)

    @property
    def metadata_fsid(self) -> bytes:
        """The fsid written into tree block headers."""
        return self.fields.metadata_uuid if self.has_metadata_uuid else self.fields.fsid

    @property
    def label_str(self) -> str:
        return self.fields.label.split(b"\0", 1)[0].decode("utf-8", "replace")

    @property
    def csum(self) -> CsumType:
        return checksum.csum_type_of(self.fields.csum_type)

    @property
    def sys_chunk_array_bytes(self) -> bytes:
        return self.fields.sys_chunk_array[: self.fields.sys_chunk_array_size]

    @property
    def dev_uuid(self) -> bytes:
        return self.fields.dev_item.uuid

    @property
    def devid(self) -> int:
        return self.fields.dev_item.devid


@dataclass(frozen=True)
class SuperRoot:
    """A tree root the superblock names: its own (``slot`` None) or one of its four ``btrfs_root_backup``
    slots (``super_roots``), which every commit writes in turn, so they name the roots of recent commits."""

    bytenr: int
    generation: int
    level: int
    slot: int | None = None


#: Per tree the superblock names: its field in ``btrfs_root_backup`` and the superblock's own root fields
#: (bytenr, generation, level).
_ROOT_FIELDS = {
    ObjectId.ROOT_TREE: ("tree_root", ("root", "generation", "root_level")),
    ObjectId.CHUNK_TREE: ("chunk_root", ("chunk_root", "chunk_root_generation", "chunk_root_level")),
}


def super_root(sb: Superblock, tree_id: ObjectId) -> SuperRoot:
    """The superblock's own root of ``tree_id`` (the root tree or the chunk tree)."""
    bytenr, generation, level = (sb.fields[name] for name in _ROOT_FIELDS[tree_id][1])
    return SuperRoot(bytenr, generation, level)


def backup_roots(sb: Superblock, tree_id: ObjectId) -> list[SuperRoot]:
    """The backup slots that may stand in for the superblock's root of ``tree_id``, newest first: those
    naming a root of a generation older than the superblock's own (the slot of the last commit names that
    very block; a zero slot was never written), as the kernel's ``usebackuproot`` tries them. A root several
    slots name (the chunk tree's mostly: it changes with the chunks only) comes once, with its first slot."""
    name = _ROOT_FIELDS[tree_id][0]
    own = super_root(sb, tree_id).generation
    slots = [SuperRoot(backup[name], backup[f"{name}_gen"], backup[f"{name}_level"], slot)
             for slot, backup in enumerate(sb.fields.super_roots)]
    older = [s for s in slots if s.bytenr and 0 < s.generation < own]
    distinct: dict[tuple[int, int, int], SuperRoot] = {}
    for root in sorted(older, key=lambda s: (-s.generation, s.slot)):
        distinct.setdefault((root.bytenr, root.generation, root.level), root)
    return list(distinct.values())


def geometry_problems(sb: Superblock) -> list[str]:
    """Superblock fields outside what any btrfs could have (kernel's btrfs_validate_super)."""
    f = sb.fields
    problems = []

    def pow2_in(value: int, lo: int, hi: int) -> bool:
        return lo <= value <= hi and value & (value - 1) == 0

    if not pow2_in(f.sectorsize, 4096, 65536):
        problems.append(f"sectorsize {f.sectorsize} is not a power of two in 4096..65536")
    if not pow2_in(f.nodesize, 4096, 65536) or f.nodesize < f.sectorsize:
        problems.append(f"nodesize {f.nodesize} is not a power of two in 4096..65536 and >= sectorsize")
    if f.sys_chunk_array_size > BTRFS_SYSTEM_CHUNK_ARRAY_SIZE or f.sys_chunk_array_size < 17 + 48 + 32:
        problems.append(f"sys_chunk_array_size {f.sys_chunk_array_size} outside {17 + 48 + 32}..{BTRFS_SYSTEM_CHUNK_ARRAY_SIZE}")
    if f.generation in (0, 2**64 - 1):
        problems.append(f"generation {f.generation} is implausible (0 or 2^64-1: every tree block would fail "
                        "its transid check)")
    if f.num_devices == 0:
        problems.append("num_devices is 0")
    if f.total_bytes == 0:
        problems.append("total_bytes is 0")
    if f.root_level >= 8 or f.chunk_root_level >= 8:
        problems.append(f"root level {f.root_level} / chunk root level {f.chunk_root_level} is 8 or more")
    if f.csum_type not in CsumType._value2member_map_:
        problems.append(f"unknown csum_type {f.csum_type}")
    for name in ("root", "chunk_root"):
        value = f[name]
        if f.sectorsize and pow2_in(f.sectorsize, 4096, 65536) and value % f.sectorsize:
            problems.append(f"{name} {value} is not aligned to sectorsize {f.sectorsize}")
    return problems


@dataclass(frozen=True)
class SuperblockCopy:
    """One superblock mirror of one device and what was wrong with it."""

    device: str
    mirror: int
    bytenr: int
    present: bool
    magic_ok: bool = False
    csum_ok: bool = False
    problems: tuple[str, ...] = ()
    superblock: Superblock | None = None
    read_error: str | None = None  # the copy's 4 KiB could not be read (EIO): what the read said

    @property
    def usable(self) -> bool:
        return self.superblock is not None and self.magic_ok and self.csum_ok and not self.problems

    @property
    def generation(self) -> int | None:
        return self.superblock.fields.generation if self.superblock is not None else None

    @property
    def devid(self) -> int | None:
        return self.superblock.devid if self.superblock is not None else None

    def status(self, chosen_generation: int | None) -> str:
        if not self.present:
            return "beyond end of device"
        if self.read_error is not None:
            return f"unreadable: {self.read_error}"
        if not self.magic_ok:
            return "bad magic"
        if not self.csum_ok:
            unknown = [p for p in self.problems if p.startswith("unknown csum_type")]
            return f"{unknown[0]}, checksum not verifiable" if unknown else "checksum mismatch"
        if self.problems:
            return "; ".join(self.problems)
        if chosen_generation is not None and self.generation is not None and self.generation < chosen_generation:
            return f"older generation {self.generation}"
        if chosen_generation is not None and self.generation is not None and self.generation > chosen_generation:
            return f"newer generation {self.generation}, not used"
        return "ok"


def read_copies(image) -> list[SuperblockCopy]:
    """Read and check every superblock mirror that fits on ``image``; a copy that cannot be read (an I/O
    error) is an unusable copy like a damaged one, so another may serve."""
    copies = []
    for mirror in range(BTRFS_SUPER_MIRROR_MAX):
        bytenr = super_mirror_offset(mirror)
        if bytenr + BTRFS_SUPER_INFO_SIZE > image.size:
            copies.append(SuperblockCopy(image.name, mirror, bytenr, present=False))
            continue
        try:
            data = image.pread(bytenr, BTRFS_SUPER_INFO_SIZE)
        except ReadError as exc:
            what = str(exc).removeprefix(f"{image.name}: ")
            copies.append(SuperblockCopy(image.name, mirror, bytenr, present=True, read_error=what))
            continue
        copies.append(check_copy(image.name, mirror, bytenr, data))
    return copies


def check_copy(device: str, mirror: int, bytenr: int, data: bytes) -> SuperblockCopy:
    """Check one 4096-byte superblock copy read at ``bytenr``."""
    sb = Superblock.parse(data)
    if sb.fields.magic != BTRFS_MAGIC:
        return SuperblockCopy(device, mirror, bytenr, True, superblock=sb)
    try:
        csum_ok = checksum.verify(sb.csum, data)
    except UnsupportedError:
        csum_ok = False
    problems = list(geometry_problems(sb))
    if sb.fields.bytenr != bytenr:
        problems.append(f"bytenr field {sb.fields.bytenr} differs from its location {bytenr}")
    return SuperblockCopy(device, mirror, bytenr, True, True, csum_ok, tuple(problems), sb)


def choose(copies: list[SuperblockCopy], device: str, mirror: int | None = None) -> SuperblockCopy:
    """The primary when usable (as the kernel mounts it), else the newest usable copy; with ``mirror``
    exactly that copy. A one-line error when there is none."""
    if mirror is not None:
        return _requested(copies, device, mirror)
    if copies and copies[0].usable:
        return copies[0]
    usable = [c for c in copies if c.usable]
    if usable:
        return max(usable, key=lambda c: (c.generation, -c.mirror))
    primary = copies[0] if copies else None
    if primary is None or not primary.present:
        raise NotBtrfsError(f"{device}: not a btrfs device (too small to hold a superblock at {super_mirror_offset(0)})")
    if not any(c.magic_ok or c.read_error is not None for c in copies):
        raise NotBtrfsError(f"{device}: not a btrfs device (no superblock magic {BTRFS_MAGIC.decode()} at offset {super_mirror_offset(0) + 64})")
    reasons = "; ".join(f"copy {c.mirror} at {c.bytenr}: {c.status(None)}" for c in copies if c.present)
    raise CorruptionError(f"{device}: no valid superblock ({reasons})")


def _requested(copies: list[SuperblockCopy], device: str, mirror: int) -> SuperblockCopy:
    """Copy ``mirror``, asked for by ``--super-copy``: used only when usable."""
    found = [c for c in copies if c.mirror == mirror]
    if not found:
        raise NotBtrfsError(f"{device}: has no superblock copy {mirror} (a btrfs-image dump keeps the primary only)")
    copy = found[0]
    if not copy.usable:
        where = f"{device}: superblock copy {mirror} at offset {copy.bytenr}"
        if not copy.present:
            needed = copy.bytenr + BTRFS_SUPER_INFO_SIZE
            raise NotBtrfsError(f"{where} lies beyond the end of the device ({needed} bytes needed)")
        raise CorruptionError(f"{where} is not usable: {copy.status(None)}")
    return copy


def copy_warnings(copies: list[SuperblockCopy], chosen: SuperblockCopy, newest_generation: int,
                  requested: bool) -> list[tuple[str, int]]:
    """(what, offset) of every copy of one device worth a warning, saying what was found.

    Damaged copies always; copies whose generation differs from the one
    used only when the choice was btrfsscan's (not ``--super-copy``).
    """
    out = []
    if chosen.mirror != 0 and not requested:
        primary = copies[0]
        out.append((f"primary superblock (copy 0) is not usable: {primary.status(None)}; using copy {chosen.mirror} "
                    f"(generation {chosen.generation}), though the kernel would refuse to mount this device",
                    primary.bytenr))
    for copy in copies:
        if copy is chosen or not copy.present or (chosen.mirror != 0 and copy.mirror == 0 and not requested):
            continue
        if not copy.usable:
            out.append((f"superblock copy {copy.mirror} is damaged, not used: {copy.status(None)}", copy.bytenr))
        elif requested:
            continue
        elif copy.generation > chosen.generation:
            out.append((f"superblock copy {copy.mirror} has generation {copy.generation}, newer than the "
                        f"{_label(chosen)}'s {chosen.generation} (a superblock write that did not reach every "
                        f"copy): using the {_label(chosen)}, as the kernel does; --super-copy {copy.mirror} "
                        "reads the newer one", copy.bytenr))
        elif copy.generation < newest_generation:
            out.append((f"superblock copy {copy.mirror} is not used: older generation {copy.generation}",
                        copy.bytenr))
    return out


def _label(copy: SuperblockCopy) -> str:
    return "primary" if copy.mirror == 0 else f"copy {copy.mirror}"


def refuse_unsupported(sb: Superblock, device: str) -> None:
    """Refuse features whose mapping btrfsscan would get wrong."""
    bad = sb.fields.incompat_flags & UNSUPPORTED_INCOMPAT
    if bad:
        names = ", ".join(flag_names(IncompatFlag, bad))
        raise UnsupportedError(f"{device}: filesystem uses {names}, which btrfsscan cannot map; refusing rather than misreading it")
