"""Turning volume-level model objects into display records.

Every section of every command is described by ONE field table, a tuple of
``Field``s: each field names its JSON key, its table label, how to get the
raw value from the model object (``get``) and how to display it (``show``
from the raw value, or ``text`` from the object when the display needs more
than the raw value). ``describe(fields, obj)`` gives a ``Record`` of
``Cell``s holding both forms; a ``Report`` of ``Section``s then yields the
JSON document (raw values only) and the rich tables (display forms only), so
the two outputs cannot drift apart.

The ``*_report`` builders assemble the sections of the ``super``, ``chunks``
and ``map-logical`` commands. They do not open anything; the CLI opens the
filesystem and passes it in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import BtrfsScanError, DeviceError
from ..format.constants import (
    BTRFS_MAGIC,
    CompatRoFlag,
    CsumType,
    IncompatFlag,
    SuperFlag,
    flag_names,
)
from ..model.block_groups import BlockGroup
from ..volumes import superblock as sbmod
from ..volumes.chunk_items import iter_sys_chunk_array
from ..volumes.chunks import Chunk, PhysicalRange
from .output import format_size, printable

# --- the machinery ----------------------------------------------------------------


def _plain(raw: Any) -> str:
    if raw is None:
        return "-"
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    return str(raw)


@dataclass(frozen=True)
class Field:
    """One displayed field: JSON key, table label, raw getter, display form."""

    key: str
    label: str
    get: Callable[[Any], Any]
    show: Callable[[Any], str] = _plain
    text: Callable[[Any], str] | None = None
    detail: bool = False  # shown only with --all

    def cell(self, obj: Any) -> "Cell":
        raw = self.get(obj)
        return Cell(self.key, self.label, raw, self.text(obj) if self.text else self.show(raw))


@dataclass(frozen=True)
class Cell:
    key: str
    label: str
    raw: Any
    text: str


@dataclass(frozen=True)
class Record:
    """One described object: its cells in field-table order."""

    cells: tuple[Cell, ...]

    def raw(self) -> dict[str, Any]:
        return {cell.key: cell.raw for cell in self.cells}

    def __getitem__(self, key: str) -> Cell:
        for cell in self.cells:
            if cell.key == key:
                return cell
        raise KeyError(key)


def selected(fields: Sequence[Field], detail: bool = False) -> tuple[Field, ...]:
    return tuple(f for f in fields if detail or not f.detail)


def describe(fields: Sequence[Field], obj: Any, *, detail: bool = False) -> Record:
    """The record of ``obj`` under ``fields`` (``detail`` includes the --all fields)."""
    return Record(tuple(f.cell(obj) for f in selected(fields, detail)))


@dataclass(frozen=True)
class Section:
    """A titled group of records sharing one field table.

    ``key`` is the section's JSON key (None: its single record's fields go to
    the top level of the document); ``many`` makes it a JSON list, else one
    object. ``layout`` is ``"rows"`` (a row per record) or ``"fields"`` (a row
    per field, a column per record, headed by ``headers``). ``table=False``
    keeps a section out of the tables (JSON only).
    """

    key: str | None
    title: str
    columns: tuple[str, ...]
    records: tuple[Record, ...]
    many: bool = True
    layout: str = "rows"
    headers: tuple[str, ...] = ()
    table: bool = True

    def json(self) -> Any:
        if self.many:
            return [record.raw() for record in self.records]
        return self.records[0].raw() if self.records else None


def section(key: str | None, title: str, fields: Sequence[Field], objects: Iterable[Any], *, detail: bool = False,
            many: bool = True, layout: str = "rows", headers: Sequence[str] = (), table: bool = True) -> Section:
    chosen = selected(fields, detail)
    records = tuple(Record(tuple(f.cell(obj) for f in chosen)) for obj in objects)
    return Section(key, title, tuple(f.label for f in chosen), records, many, layout, tuple(headers), table)


@dataclass(frozen=True)
class Report:
    """What one command shows: its sections in display order."""

    sections: tuple[Section, ...]

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for sec in self.sections:
            if sec.key is None:
                if sec.records:
                    out.update(sec.records[0].raw())
            else:
                out[sec.key] = sec.json()
        return out

    def section(self, key: str | None) -> Section:
        for sec in self.sections:
            if sec.key == key:
                return sec
        raise KeyError(key)


# --- display forms ----------------------------------------------------------------


def _size(raw: int | None) -> str:
    return "-" if raw is None else f"{raw} ({format_size(raw)})"


_printable = printable


def _flags_text(flag_type, value: int) -> str:
    names = flag_names(flag_type, value)
    return f"0x{value:x}" + (f" ({' | '.join(names)})" if names else "")


def csum_label(value: int) -> str:
    """``crc32c``, ``xxhash64``, ``sha256``, ``blake2b``, or ``unknown(N)``."""
    try:
        return CsumType(value).label
    except ValueError:
        return f"unknown({value})"


def _csum_size(value: int) -> int:
    try:
        return CsumType(value).size
    except ValueError:
        return 32


def _uuid(raw: bytes) -> str:
    return sbmod.format_uuid(raw)


# --- superblock -------------------------------------------------------------------

_sb = lambda name: (lambda sb: sb.fields[name])  # noqa: E731 - a raw superblock field by its kernel name

#: The superblock fields, in btrfs inspect-internal dump-super order.
SUPERBLOCK_FIELDS: tuple[Field, ...] = (
    Field("csum_type", "csum_type", lambda sb: csum_label(sb.fields.csum_type),
          text=lambda sb: f"{csum_label(sb.fields.csum_type)} ({sb.fields.csum_type})"),
    Field("csum_size", "csum_size", lambda sb: _csum_size(sb.fields.csum_type), detail=True),
    Field("csum", "csum", lambda sb: "0x" + bytes(sb.fields.csum[: _csum_size(sb.fields.csum_type)]).hex(), detail=True),
    Field("bytenr", "bytenr", _sb("bytenr"), detail=True),
    Field("flags", "flags", lambda sb: flag_names(SuperFlag, sb.fields.flags),
          text=lambda sb: _flags_text(SuperFlag, sb.fields.flags)),
    Field("magic", "magic", lambda sb: bytes(sb.fields.magic).decode("latin-1"),
          text=lambda sb: _printable(bytes(sb.fields.magic).decode("latin-1"))
          + (" [match]" if sb.fields.magic == BTRFS_MAGIC else " [DON'T MATCH]"), detail=True),
    Field("fsid", "fsid", lambda sb: sb.fsid_str),
    Field("metadata_uuid", "metadata_uuid", lambda sb: _uuid(sb.metadata_fsid)),
    Field("label", "label", lambda sb: sb.label_str, show=_printable),
    Field("generation", "generation", _sb("generation")),
    Field("root", "root", _sb("root")),
    Field("sys_chunk_array_size", "sys_array_size", _sb("sys_chunk_array_size"), detail=True),
    Field("chunk_root_generation", "chunk_root_generation", _sb("chunk_root_generation"), detail=True),
    Field("root_level", "root_level", _sb("root_level"), detail=True),
    Field("chunk_root", "chunk_root", _sb("chunk_root")),
    Field("chunk_root_level", "chunk_root_level", _sb("chunk_root_level"), detail=True),
    Field("log_root", "log_root", _sb("log_root")),
    Field("log_root_transid", "log_root_transid (deprecated)", _sb("log_root_transid"), detail=True),
    Field("log_root_level", "log_root_level", _sb("log_root_level"), detail=True),
    Field("total_bytes", "total_bytes", _sb("total_bytes"), show=_size),
    Field("bytes_used", "bytes_used", _sb("bytes_used"), show=_size),
    Field("sectorsize", "sectorsize", _sb("sectorsize")),
    Field("nodesize", "nodesize", _sb("nodesize")),
    Field("leafsize", "leafsize (deprecated)", _sb("leafsize"), detail=True),
    Field("stripesize", "stripesize", _sb("stripesize")),
    Field("root_dir", "root_dir", _sb("root_dir_objectid"), detail=True),
    Field("num_devices", "num_devices", _sb("num_devices")),
    Field("compat_flags", "compat_flags", _sb("compat_flags"), show=lambda v: f"0x{v:x}", detail=True),
    Field("compat_ro_flags", "compat_ro_flags", lambda sb: flag_names(CompatRoFlag, sb.fields.compat_ro_flags),
          text=lambda sb: _flags_text(CompatRoFlag, sb.fields.compat_ro_flags)),
    Field("incompat_flags", "incompat_flags", lambda sb: flag_names(IncompatFlag, sb.fields.incompat_flags),
          text=lambda sb: _flags_text(IncompatFlag, sb.fields.incompat_flags)),
    Field("cache_generation", "cache_generation", _sb("cache_generation"), detail=True),
    Field("uuid_tree_generation", "uuid_tree_generation", _sb("uuid_tree_generation"), detail=True),
    Field("nr_global_roots", "nr_global_roots", _sb("nr_global_roots"), detail=True),
)

_dev = lambda name: (lambda item: item[name])  # noqa: E731

#: ``btrfs_dev_item`` as embedded in the superblock (the device it was read from).
DEV_ITEM_FIELDS: tuple[Field, ...] = (
    Field("devid", "devid", _dev("devid")),
    Field("uuid", "uuid", lambda item: _uuid(item.uuid)),
    Field("fsid", "fsid", lambda item: _uuid(item.fsid)),
    Field("type", "type", _dev("type")),
    Field("total_bytes", "total_bytes", _dev("total_bytes"), show=_size),
    Field("bytes_used", "bytes_used", _dev("bytes_used"), show=_size),
    Field("io_align", "io_align", _dev("io_align")),
    Field("io_width", "io_width", _dev("io_width")),
    Field("sector_size", "sector_size", _dev("sector_size")),
    Field("generation", "generation", _dev("generation")),
    Field("start_offset", "start_offset", _dev("start_offset")),
    Field("dev_group", "dev_group", _dev("dev_group")),
    Field("seek_speed", "seek_speed", _dev("seek_speed")),
    Field("bandwidth", "bandwidth", _dev("bandwidth")),
)

_BACKUP_TREES = ("tree_root", "chunk_root", "extent_root", "fs_root", "dev_root", "csum_root")


def _backup_fields() -> tuple[Field, ...]:
    fields: list[Field] = []
    for tree in _BACKUP_TREES:
        fields.append(Field(tree, f"backup_{tree}" if tree != "csum_root" else "csum_root", _dev(tree)))
        fields.append(Field(f"{tree}_gen", "  gen", _dev(f"{tree}_gen")))
        fields.append(Field(f"{tree}_level", "  level", _dev(f"{tree}_level")))
    fields.append(Field("total_bytes", "backup_total_bytes", _dev("total_bytes"), show=_size))
    fields.append(Field("bytes_used", "backup_bytes_used", _dev("bytes_used"), show=_size))
    fields.append(Field("num_devices", "backup_num_devices", _dev("num_devices")))
    return tuple(fields)


#: One ``btrfs_root_backup`` of the superblock's four.
BACKUP_ROOT_FIELDS: tuple[Field, ...] = _backup_fields()


@dataclass(frozen=True)
class DeviceView:
    """A device of the filesystem as the chunk tree (or the superblocks) list it."""

    devid: int
    uuid: bytes
    path: str | None
    total_bytes: int
    bytes_used: int


DEVICE_FIELDS: tuple[Field, ...] = (
    Field("devid", "devid", lambda d: d.devid),
    Field("uuid", "uuid", lambda d: _uuid(d.uuid)),
    Field("path", "path", lambda d: d.path, show=lambda p: "<missing>" if p is None else p),
    Field("total_bytes", "total_bytes", lambda d: d.total_bytes, show=_size),
    Field("bytes_used", "bytes_used", lambda d: d.bytes_used, show=_size),
)


def _ok(raw: bool | None) -> str:
    return "-" if raw is None else ("ok" if raw else "bad")


@dataclass(frozen=True)
class MirrorView:
    """One superblock copy of one device; ``in_use``: the copy btrfsscan reads the filesystem with."""

    devid: int
    path: str
    copy: sbmod.SuperblockCopy
    newest_generation: int | None
    in_use: bool


MIRROR_FIELDS: tuple[Field, ...] = (
    Field("devid", "devid", lambda m: m.devid),
    Field("path", "path", lambda m: m.path),
    Field("mirror", "copy", lambda m: m.copy.mirror),
    Field("bytenr", "bytenr", lambda m: m.copy.bytenr),
    Field("generation", "generation", lambda m: m.copy.generation if m.copy.magic_ok else None),
    Field("magic_ok", "magic", lambda m: m.copy.magic_ok if m.copy.present else None, show=_ok),
    Field("csum_ok", "csum", lambda m: m.copy.csum_ok if m.copy.magic_ok else None, show=_ok),
    Field("status", "status", lambda m: m.copy.status(m.newest_generation)),
    Field("in_use", "in use", lambda m: m.in_use, show=lambda used: "*" if used else ""),
)


@dataclass(frozen=True)
class SourceView:
    """Where the superblock shown was read from."""

    devid: int
    path: str
    mirror: int
    bytenr: int


SOURCE_FIELDS: tuple[Field, ...] = (
    Field("devid", "devid", lambda s: s.devid),
    Field("path", "path", lambda s: s.path),
    Field("mirror", "copy", lambda s: s.mirror),
    Field("bytenr", "bytenr", lambda s: s.bytenr),
)


# --- chunks -----------------------------------------------------------------------


def _stripes_raw(chunk: Chunk) -> list[dict[str, Any]]:
    return [{"devid": s.devid, "physical": s.offset, "dev_uuid": _uuid(s.dev_uuid)} for s in chunk.stripes]


def _stripes_text(stripes: list[dict[str, Any]]) -> str:
    return "\n".join(f"devid {s['devid']} physical {s['physical']}" for s in stripes)


def _profile_name(chunk: Chunk) -> str:
    try:
        return chunk.profile.name
    except ValueError:
        return f"unknown(0x{chunk.type:x})"


@dataclass(frozen=True)
class ChunkView:
    """A chunk and its block group (None when the chunk has no BLOCK_GROUP_ITEM)."""

    chunk: Chunk
    block_group: BlockGroup | None = None


CHUNK_FIELDS: tuple[Field, ...] = (
    Field("logical", "logical", lambda c: c.logical),
    Field("length", "length", lambda c: c.length, show=format_size),
    Field("type", "type", lambda c: c.type_names, show=lambda names: "|".join(names) or "-"),
    Field("profile", "profile", _profile_name),
    Field("stripe_len", "stripe_len", lambda c: c.stripe_len),
    Field("num_stripes", "stripes", lambda c: c.num_stripes),
    Field("sub_stripes", "sub", lambda c: c.sub_stripes),
    Field("stripes", "stripe locations", _stripes_raw, show=_stripes_text),
)


def _of_chunk(field: Field) -> Field:
    """``field`` read from a ChunkView's chunk."""
    return replace(field, get=lambda view, get=field.get: get(view.chunk))


#: The ``chunks`` command: every chunk field plus the used bytes of its block group.
CHUNK_USAGE_FIELDS: tuple[Field, ...] = (
    *map(_of_chunk, CHUNK_FIELDS[:2]),
    Field("used", "used", lambda v: v.block_group.used if v.block_group else None,
          show=lambda used: "-" if used is None else format_size(used)),
    *map(_of_chunk, CHUNK_FIELDS[2:]),
)


# --- map-logical ------------------------------------------------------------------


@dataclass(frozen=True)
class RangeView:
    """One physical piece of a mapped logical range and the path of its device."""

    range: PhysicalRange
    device: str | None


RANGE_FIELDS: tuple[Field, ...] = (
    Field("logical", "logical", lambda v: v.range.logical),
    Field("length", "length", lambda v: v.range.length),
    Field("mirror", "mirror", lambda v: v.range.mirror),
    Field("role", "role", lambda v: v.range.role),
    Field("devid", "devid", lambda v: v.range.devid),
    Field("physical", "physical", lambda v: v.range.physical),
    Field("device", "device", lambda v: v.device, show=lambda p: "<missing>" if p is None else p),
)

QUERY_FIELDS: tuple[Field, ...] = (
    Field("logical", "logical", lambda q: q["logical"]),
    Field("length", "length", lambda q: q["length"]),
    Field("num_copies", "copies", lambda q: q["num_copies"]),
    Field("chunk", "chunk", lambda q: q["chunk"], show=lambda c: f"{c['logical']} +{c['length']} {'|'.join(c['type'])} {c['profile']}"),
)


# --- report builders --------------------------------------------------------------


def device_path(volume, devid: int) -> str | None:
    """The image holding device ``devid``; None when missing, or for a btrfs-image dump (no device bytes)."""
    if volume.metadump is not None:
        return None
    device = volume.devices.get(devid)
    return device.image.name if device is not None and device.image is not None else None


def _device_view(d) -> DeviceView:
    return DeviceView(d.devid, d.uuid, d.image.name if d.image else None, d.total_bytes, d.bytes_used)


def _device_views(volume) -> list[DeviceView]:
    return [_device_view(d) for _, d in sorted(volume.devices.items())]


def _chosen_copy(device) -> sbmod.SuperblockCopy | None:
    if device.chosen is not None:
        return device.chosen
    try:
        return sbmod.choose(device.copies, device.name)
    except BtrfsScanError:
        return None


def superblock_report(volume, *, detail: bool = False, devid: int | None = None) -> Report:
    """The ``super`` command: a superblock, the devices and every superblock copy.

    The superblock shown is the one btrfsscan uses (each device's primary when
    valid, the newest of the devices given), or with ``devid`` the one chosen on
    that device.
    """
    newest = volume.superblock
    present = [d for _, d in sorted(volume.devices.items()) if d.image is not None]
    source: SourceView | None = None
    if devid is None:
        for device in present:
            for copy in device.copies:
                if copy.superblock is newest:
                    source = SourceView(device.devid, device.name, copy.mirror, copy.bytenr)
        sb = newest
    else:
        device = volume.devices.get(devid)
        if device is None or device.image is None:
            given = ", ".join(str(d.devid) for d in present)
            raise DeviceError(f"devid {devid} is not among the images given (devids {given})")
        chosen = _chosen_copy(device)
        if chosen is None:
            raise DeviceError(f"devid {devid} ({device.name}) has no valid superblock copy")
        sb = chosen.superblock
        source = SourceView(device.devid, device.name, chosen.mirror, chosen.bytenr)

    title = "superblock"
    if source is not None:
        title += f" of devid {source.devid} ({source.path}), copy {source.mirror} at bytenr {source.bytenr}"
    sections = [
        section(None, title, SUPERBLOCK_FIELDS, [sb], detail=detail, many=False, layout="fields"),
        section("source", "source", SOURCE_FIELDS, [source] if source else [], many=False, layout="fields",
                table=False),
    ]
    if detail:
        sections.append(section("dev_item", "dev_item", DEV_ITEM_FIELDS, [sb.fields.dev_item], many=False,
                                layout="fields"))
        sections.append(section("backup_roots", "backup_roots", BACKUP_ROOT_FIELDS, list(sb.fields.super_roots),
                                layout="fields", headers=[f"backup {i}" for i in range(len(sb.fields.super_roots))]))
        chunks: list[Chunk] = []
        try:
            chunks.extend(iter_sys_chunk_array(sb.sys_chunk_array_bytes, source.path if source else "superblock"))
        except BtrfsScanError as exc:
            volume.warnings.add(f"sys_chunk_array decoded only in part: {exc}")
        sections.append(section("sys_chunk_array", "sys_chunk_array", CHUNK_FIELDS, chunks))
    sections.append(section("devices", "devices", DEVICE_FIELDS, _device_views(volume)))
    mirrors = [
        MirrorView(device.devid, device.name, copy, newest.generation, copy.superblock is newest)
        for device in present
        for copy in device.copies
    ]
    sections.append(section("mirrors", "superblock copies", MIRROR_FIELDS, mirrors))
    return Report(tuple(sections))


def chunks_report(volume, block_groups: dict[int, BlockGroup]) -> Report:
    """The ``chunks`` command: every chunk of the chunk map, by logical address, with its used bytes."""
    views = [ChunkView(chunk, block_groups.get(chunk.logical)) for chunk in volume.chunk_map]
    return Report((section("chunks", f"chunks ({len(views)})", CHUNK_USAGE_FIELDS, views),))


def map_logical_report(volume, logical: int, length: int, *, parity: bool = False) -> Report:
    """The ``map-logical`` command: where every copy of ``[logical, logical+length)`` lives."""
    ranges = volume.map(logical, length, parity=parity)
    chunk = volume.chunk_map.lookup(logical)
    query = {
        "logical": logical,
        "length": length,
        "num_copies": chunk.num_copies,
        "chunk": {"logical": chunk.logical, "length": chunk.length, "type": chunk.type_names,
                  "profile": _profile_name(chunk)},
    }
    views = [RangeView(r, device_path(volume, r.devid)) for r in ranges]
    return Report((
        section(None, f"logical {logical} length {length}", QUERY_FIELDS, [query], many=False, layout="fields"),
        section("ranges", "ranges", RANGE_FIELDS, views),
    ))
