"""The documents of the volume-level commands: ``super``, ``chunks`` and ``map-logical``.

One spec (a tuple of ``Field``s) per kind of record, in btrfs-progs' order
and with its names; the builders turn the results of
:mod:`btrfsscan.analysis.volume` into documents.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...analysis.facts import profile_name
from ...analysis.volume import ChunkUsage, LogicalMapping, SuperblockInfo
from ...format.constants import (
    BTRFS_MAGIC,
    CompatRoFlag,
    CsumType,
    IncompatFlag,
    SuperFlag,
    flag_names,
)
from ...volumes import superblock as sbmod
from ...volumes.chunks import Chunk
from ..document import MIDDLE, WRAP, Document, Field, section
from ..units import human_bytes, printable

# --- display forms ----------------------------------------------------------------


def _size(raw: int | None) -> str:
    return "-" if raw is None else f"{raw} ({human_bytes(raw)})"


def _flags_text(flag_type, value: int) -> str:
    names = flag_names(flag_type, value)
    return f"0x{value:x}" + (f" ({' | '.join(names)})" if names else "")


def _csum_label(value: int) -> str:
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
    Field("csum_type", "csum_type", lambda sb: _csum_label(sb.fields.csum_type),
          text=lambda sb: f"{_csum_label(sb.fields.csum_type)} ({sb.fields.csum_type})"),
    Field("csum_size", "csum_size", lambda sb: _csum_size(sb.fields.csum_type), detail=True),
    Field("csum", "csum", lambda sb: "0x" + bytes(sb.fields.csum[: _csum_size(sb.fields.csum_type)]).hex(), detail=True),
    Field("bytenr", "bytenr", _sb("bytenr"), detail=True),
    Field("flags", "flags", lambda sb: flag_names(SuperFlag, sb.fields.flags),
          text=lambda sb: _flags_text(SuperFlag, sb.fields.flags), fit=WRAP),
    Field("magic", "magic", lambda sb: bytes(sb.fields.magic).decode("latin-1"),
          text=lambda sb: printable(bytes(sb.fields.magic).decode("latin-1"))
          + (" [match]" if sb.fields.magic == BTRFS_MAGIC else " [DON'T MATCH]"), detail=True),
    Field("fsid", "fsid", lambda sb: sb.fsid_str),
    Field("metadata_uuid", "metadata_uuid", lambda sb: _uuid(sb.metadata_fsid)),
    Field("label", "label", lambda sb: sb.label_str, show=printable, fit=MIDDLE),
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
          text=lambda sb: _flags_text(CompatRoFlag, sb.fields.compat_ro_flags), fit=WRAP),
    Field("incompat_flags", "incompat_flags", lambda sb: flag_names(IncompatFlag, sb.fields.incompat_flags),
          text=lambda sb: _flags_text(IncompatFlag, sb.fields.incompat_flags), fit=WRAP),
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


DEVICE_FIELDS: tuple[Field, ...] = (
    Field("devid", "devid", lambda d: d.devid),
    Field("uuid", "uuid", lambda d: d.uuid),
    Field("path", "path", lambda d: d.path, show=lambda p: "<missing>" if p is None else printable(p), fit=MIDDLE),
    Field("total_bytes", "total_bytes", lambda d: d.total_bytes, show=_size, drop=2),
    Field("bytes_used", "bytes_used", lambda d: d.bytes_used, show=_size, drop=1),
)


def _ok(raw: bool | None) -> str:
    return "-" if raw is None else ("ok" if raw else "bad")


MIRROR_FIELDS: tuple[Field, ...] = (
    Field("devid", "devid", lambda m: m.devid),
    Field("path", "path", lambda m: m.path, show=printable, fit=MIDDLE),
    Field("mirror", "copy", lambda m: m.copy.mirror),
    Field("bytenr", "bytenr", lambda m: m.copy.bytenr),
    Field("generation", "generation", lambda m: m.copy.generation if m.copy.magic_ok else None, drop=2),
    Field("magic_ok", "magic", lambda m: m.copy.magic_ok if m.copy.present and m.copy.read_error is None else None,
          show=_ok, drop=4),
    Field("csum_ok", "csum", lambda m: m.copy.csum_ok if m.copy.magic_ok else None, show=_ok, drop=3),
    Field("status", "status", lambda m: m.copy.status(m.newest_generation), fit=WRAP),
    Field("in_use", "in use", lambda m: m.in_use, show=lambda used: "*" if used else "", drop=1),
)


SOURCE_FIELDS: tuple[Field, ...] = (
    Field("devid", "devid", lambda s: s.devid),
    Field("path", "path", lambda s: s.path, show=printable, fit=MIDDLE),
    Field("mirror", "copy", lambda s: s.mirror),
    Field("bytenr", "bytenr", lambda s: s.bytenr),
)


# --- chunks -----------------------------------------------------------------------


def _stripes_raw(chunk: Chunk) -> list[dict[str, Any]]:
    return [{"devid": s.devid, "physical": s.offset, "dev_uuid": _uuid(s.dev_uuid)} for s in chunk.stripes]


def _stripes_text(stripes: list[dict[str, Any]]) -> str:
    return "\n".join(f"devid {s['devid']} physical {s['physical']}" for s in stripes)


CHUNK_FIELDS: tuple[Field, ...] = (
    Field("logical", "logical", lambda c: c.logical),
    Field("length", "length", lambda c: c.length, show=human_bytes),
    Field("type", "type", lambda c: c.type_names, show=lambda names: "|".join(names) or "-"),
    Field("profile", "profile", profile_name),
    Field("stripe_len", "stripe_len", lambda c: c.stripe_len, drop=4),
    Field("num_stripes", "stripes", lambda c: c.num_stripes, drop=3),
    Field("sub_stripes", "sub", lambda c: c.sub_stripes, drop=5),
    Field("stripes", "stripe locations", _stripes_raw, show=_stripes_text, drop=1),
)


def _of_chunk(field: Field) -> Field:
    """``field`` read from a ChunkUsage's chunk."""
    return replace(field, get=lambda view, get=field.get: get(view.chunk))


#: The ``chunks`` command: every chunk field plus the used bytes of its block group.
CHUNK_USAGE_FIELDS: tuple[Field, ...] = (
    *map(_of_chunk, CHUNK_FIELDS[:2]),
    Field("used", "used", lambda v: v.block_group.used if v.block_group else None,
          show=lambda used: "-" if used is None else human_bytes(used), drop=2),
    *map(_of_chunk, CHUNK_FIELDS[2:]),
)


# --- map-logical ------------------------------------------------------------------


RANGE_FIELDS: tuple[Field, ...] = (
    Field("logical", "logical", lambda v: v.range.logical),
    Field("length", "length", lambda v: v.range.length, drop=2),
    Field("mirror", "mirror", lambda v: v.range.mirror),
    Field("role", "role", lambda v: v.range.role, drop=1),
    Field("devid", "devid", lambda v: v.range.devid),
    Field("physical", "physical", lambda v: v.range.physical),
    Field("device", "device", lambda v: v.device, show=lambda p: "<missing>" if p is None else printable(p),
          fit=MIDDLE),
)

QUERY_FIELDS: tuple[Field, ...] = (
    Field("logical", "logical", lambda q: q["logical"]),
    Field("length", "length", lambda q: q["length"]),
    Field("num_copies", "copies", lambda q: q["num_copies"]),
    Field("chunk", "chunk", lambda q: q["chunk"], show=lambda c: f"{c['logical']} +{c['length']} {'|'.join(c['type'])} {c['profile']}"),
)


# --- documents --------------------------------------------------------------------


def superblock_document(info: SuperblockInfo, *, detail: bool = False) -> Document:
    """The ``super`` command: a superblock, the devices and every superblock copy (``detail``: every field,
    dev_item, the backup roots and the sys_chunk_array)."""
    sb, source = info.superblock, info.source
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
        sections.append(section("sys_chunk_array", "sys_chunk_array", CHUNK_FIELDS, info.sys_chunks or ()))
    sections.append(section("devices", "devices", DEVICE_FIELDS, info.devices))
    sections.append(section("mirrors", "superblock copies", MIRROR_FIELDS, info.mirrors))
    return Document("super", tuple(sections), subject=info)


def chunks_document(chunks: tuple[ChunkUsage, ...]) -> Document:
    """The ``chunks`` command: every chunk of the chunk map, by logical address, with its used bytes."""
    return Document("chunks", (section("chunks", f"chunks ({len(chunks)})", CHUNK_USAGE_FIELDS, chunks),),
                    subject=chunks)


def map_logical_document(mapping: LogicalMapping) -> Document:
    """The ``map-logical`` command: where every copy of a logical range lives."""
    chunk = mapping.chunk
    query = {
        "logical": mapping.logical,
        "length": mapping.length,
        "num_copies": chunk.num_copies,
        "chunk": {"logical": chunk.logical, "length": chunk.length, "type": chunk.type_names,
                  "profile": profile_name(chunk)},
    }
    return Document("map-logical", (
        section(None, f"logical {mapping.logical} length {mapping.length}", QUERY_FIELDS, [query], many=False,
                layout="fields"),
        section("ranges", "ranges", RANGE_FIELDS, mapping.ranges),
    ), subject=mapping)
