"""The documents of the file-level commands: ``map``, ``ls`` and ``subvolumes``."""

from __future__ import annotations

import functools
import stat
from operator import attrgetter

from ...analysis.facts import uuid_or_none
from ...analysis.files import Listing, SubvolumeList
from ...format.constants import ObjectId
from ...model.filemap import FileExtent, FileMap
from ...model.subvolumes import Subvolume
from ..document import MIDDLE, WRAP, Document, Field, name_fields, section, streamed_section
from ..units import human_bytes, plain, printable

# --- map --------------------------------------------------------------------------


def _file_range(e: FileExtent) -> str:
    return f"{e.file_offset}..{e.file_offset + e.length}"


def _logical_text(e: FileExtent) -> str:
    if e.type == "inline":
        return f"inline, {e.disk_num_bytes} bytes in the leaf"
    if e.type == "hole":
        return "-"
    if e.compression == "none":
        start = e.disk_bytenr + e.offset
        return f"{start}..{start + e.num_bytes}"
    return f"{e.disk_bytenr}..{e.disk_bytenr + e.disk_num_bytes} (+{e.offset} of {e.ram_bytes} decompressed)"


def _device_ranges_raw(e: FileExtent) -> list[dict[str, int]]:
    return [{"file_offset": r.file_offset, "length": r.length, "mirror": r.mirror, "devid": r.devid,
             "physical": r.physical, "missing": r.missing} for r in e.device_ranges]


def _device_ranges_text(e: FileExtent) -> str:
    if not e.device_ranges:
        return "-"
    split = len({r.file_offset for r in e.device_ranges}) > 1
    lines = []
    for r in e.device_ranges:
        where = f"{r.file_offset}+{r.length} " if split else ""
        lines.append(f"{where}#{r.mirror} devid {r.devid} @ {r.physical}" + (" <missing>" if r.missing else ""))
    return "\n".join(lines)


def _data(e: FileExtent) -> bool:
    return e.type in ("regular", "prealloc")


def _if_data(name: str, drop: int) -> Field:
    """A data extent's count: in JSON for every extent, in the table only for data extents."""
    return Field(name, name, lambda e: getattr(e, name), text=lambda e: plain(getattr(e, name) if _data(e) else None),
                 drop=drop)


MAP_HEADER_FIELDS: tuple[Field, ...] = (
    *name_fields("path", "path", lambda m: m.path, fit=MIDDLE),
    Field("subvolume", "subvolume", lambda m: m.subvolume),
    Field("inode", "inode", lambda m: m.inode),
    Field("size", "size", lambda m: m.size, show=lambda v: f"{v} ({human_bytes(v)})"),
    Field("xattrs", "xattrs", lambda m: m.xattrs, show=lambda names: ", ".join(names) or "-"),
)

#: One extent of ``map``: the JSON contract and the table's columns.
MAP_EXTENT_FIELDS: tuple[Field, ...] = (
    Field("file_offset", None, lambda e: e.file_offset),
    Field("file_range", "file range", _file_range, json=False),
    Field("length", "length", lambda e: e.length),
    Field("type", "type", lambda e: e.type),
    Field("compression", "compr", lambda e: e.compression, show=lambda c: "-" if c == "none" else c, drop=3),
    Field("disk_bytenr", None, lambda e: e.disk_bytenr),
    Field("disk_num_bytes", None, lambda e: e.disk_num_bytes),
    Field("offset", None, lambda e: e.offset),
    Field("num_bytes", None, lambda e: e.num_bytes),
    Field("ram_bytes", None, lambda e: e.ram_bytes),
    Field("logical", "logical range", _logical_text, json=False, fit=WRAP),
    _if_data("refs", drop=5),
    _if_data("mappings", drop=6),
    _if_data("shared", drop=2),
    Field("shared_bytes", "shared bytes", lambda e: e.shared_bytes,
          text=lambda e: plain(e.shared_bytes if _data(e) else None), drop=4),
    Field("device_ranges", "device copies (#mirror devid @ physical)", _device_ranges_raw, text=_device_ranges_text,
          drop=1),
)
MAP_TABLE_COLUMNS = ("file_range", "length", "type", "compression", "logical", "device_ranges", "refs", "mappings",
                     "shared", "shared_bytes")


def map_document(file_map: FileMap) -> Document:
    """The ``map`` command's document of one file map."""
    title = printable(file_map.path) if file_map.path is not None else f"subvolume {file_map.subvolume} inode {file_map.inode}"
    return Document("map", (
        section(None, title, MAP_HEADER_FIELDS, [file_map], many=False, layout="fields"),
        section("extents", f"extents ({len(file_map.extents)})", MAP_EXTENT_FIELDS, file_map.extents,
                columns=MAP_TABLE_COLUMNS),
    ), subject=file_map)


# --- ls ---------------------------------------------------------------------------


#: ``stat.filemode`` (pure Python) once per distinct mode: a listing shows few.
_filemode = functools.lru_cache(maxsize=None)(stat.filemode)


def ls_fields(full_paths: bool) -> tuple[Field, ...]:
    """One entry of ``ls``; the table names an entry by its path (``full_paths``) or its name."""
    name = (Field("name", "path", attrgetter("path"), show=printable, json=False, fit=MIDDLE) if full_paths
            else Field("name", "name", lambda r: r.name + ("/" if r.type == "dir" else ""), show=printable, json=False,
                       fit=MIDDLE))
    return (
        *name_fields("path", None, attrgetter("path")),
        Field("subvolume", "subvol", attrgetter("subvolume"), show=str, drop=3),
        Field("inode", "inode", attrgetter("inode"), show=str),
        Field("type", None, attrgetter("type")),
        Field("mode", "mode", attrgetter("mode"), show=_filemode, drop=1),
        Field("nlink", "links", attrgetter("nlink"), show=str, drop=5),
        Field("size", "size", attrgetter("size"), show=str),
        Field("extents", "extents", attrgetter("extents"), show=str, drop=4),
        Field("shared_bytes", "shared", attrgetter("shared_bytes"), show=str, drop=2),
        name,
    )


LS_TABLE_COLUMNS = ("inode", "mode", "nlink", "size", "extents", "shared_bytes", "subvolume", "name")


def ls_document(result: Listing) -> Document:
    """The ``ls`` command's document: its entries streamed as the listing makes them, columns as wide as the
    largest numbers of any entry (``Listing.largest``)."""
    fields = ls_fields(result.recursive)
    widths = {f.key: len(f.show(result.largest[f.key])) for f in fields if f.key in result.largest}
    widths["mode"] = len(_filemode(stat.S_IFDIR))
    return Document("ls", (
        streamed_section("entries", printable(result.path), fields, result.batches, widths=widths,
                         tally=lambda n: f"({n} {'entry' if n == 1 else 'entries'})", columns=LS_TABLE_COLUMNS),
    ), subject=result)


# --- subvolumes -------------------------------------------------------------------


def _subvol_path(s: Subvolume) -> str | None:
    if s.deleted:
        return None
    return "." if s.id == ObjectId.FS_TREE else s.path


def _yes(raw: bool) -> str:
    return "yes" if raw else "-"


def subvolume_fields(default_id: int) -> tuple[Field, ...]:
    """One subvolume of ``subvolumes``."""
    return (
        Field("id", "id", lambda s: s.id),
        Field("path", "path", _subvol_path, show=lambda p: "<deleted>" if p is None else printable(p), fit=MIDDLE),
        Field("parent_id", "parent", lambda s: s.parent_id, drop=4),
        Field("uuid", "uuid", lambda s: uuid_or_none(s.uuid), drop=2),
        Field("parent_uuid", "parent uuid", lambda s: uuid_or_none(s.parent_uuid), drop=5),
        Field("received_uuid", "received uuid", lambda s: uuid_or_none(s.root_item.received_uuid), drop=10),
        Field("readonly", "ro", lambda s: s.readonly, show=_yes, drop=3),
        Field("generation", "gen", lambda s: s.root_item.generation, drop=7),
        Field("ctransid", "ctransid", lambda s: s.root_item.ctransid, drop=11),
        Field("otransid", "otransid", lambda s: s.root_item.otransid, drop=8),
        Field("deleted", "deleted", lambda s: s.deleted, show=_yes, drop=9),
        Field("default", "default", lambda s: s.id == default_id, show=_yes, drop=6),
    )


SUBVOLUME_TABLE_COLUMNS = ("id", "parent_id", "path", "readonly", "default", "deleted", "generation", "otransid",
                           "uuid", "parent_uuid")


def subvolumes_document(result: SubvolumeList) -> Document:
    """The ``subvolumes`` command: every subvolume and snapshot, the top level included."""
    title = f"subvolumes ({len(result.subvolumes)}; default {result.default_id})"
    return Document("subvolumes", (
        section("subvolumes", title, subvolume_fields(result.default_id), result.subvolumes,
                columns=SUBVOLUME_TABLE_COLUMNS),
    ), subject=result)
