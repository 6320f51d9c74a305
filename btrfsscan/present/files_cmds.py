"""The file-level commands: ``map``, ``ls`` and ``subvolumes``.

Each command opens the filesystem read-only, builds a ``describe.Report``
and leaves through ``cli._finish`` (tables or ``--json``, warnings, exit
codes 0/1/2). The ``*_report`` functions take an open filesystem and do the
work, so tests can produce the exact JSON documents without a subprocess.
``cli`` imports this module only when one of these commands runs.

Paths are written from the top-level subvolume (id 5), ``"."`` for its
root directory, as ``find`` prints them on a filesystem mounted with
``subvolid=5``.
"""

from __future__ import annotations

import os
import stat
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import click

from ..errors import BtrfsScanError
from ..format.constants import ObjectId
from ..model.filemap import FileExtent, FileMap, build_file_map
from ..model.fs_tree import FileScanner
from ..model.listing import InodeSummary, Lister, Listed, normalize_path, type_name
from ..model.namespace import EMPTY_SUBVOL_DIR_INO, Entry, PathNotFound
from ..model.subvolumes import ZERO_UUID, Subvolume
from ..model.tables import FileTables
from ..volumes.superblock import format_uuid
from . import describe
from .cli import _filesystem, _finish, _image_paths
from .describe import Field, Report, section
from .output import format_size, images_argument, log_replay_option, output_options, parse_number, sample_option


@dataclass(frozen=True)
class FileReport(Report):
    """A Report with table-only sections: their keys are left out of the JSON document."""

    table_only: tuple[str, ...] = ()

    def json(self) -> dict[str, Any]:
        out = super().json()
        for key in self.table_only:
            out.pop(key, None)
        return out


def _scan(fs) -> FileTables:
    """Every inode and file extent of every live subvolume (for mapping counts)."""
    return FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())


def _top(fs) -> Subvolume:
    top = fs.subvolumes.get(ObjectId.FS_TREE)
    if top is None:
        raise BtrfsScanError("the top-level subvolume (tree 5) has no ROOT_ITEM: paths cannot be resolved")
    return top


def _lookup(fs, path: str, start: Subvolume) -> Entry:
    where = "the top-level subvolume" if start.id == ObjectId.FS_TREE else f"subvolume {start.id} ({start.path})"
    try:
        return fs.namespace.lookup(path, start)
    except PathNotFound as exc:
        raise PathNotFound(f"{exc} (looking up {path!r} from {where})") from None


def _join(*parts: str) -> str:
    return normalize_path("/".join(p for p in parts if p))


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
             "physical": r.physical} for r in e.device_ranges]


def _device_ranges_text(e: FileExtent) -> str:
    if not e.device_ranges:
        return "-"
    split = len({r.file_offset for r in e.device_ranges}) > 1
    lines = []
    for r in e.device_ranges:
        where = f"{r.file_offset}+{r.length} " if split else ""
        lines.append(f"{where}#{r.mirror} devid {r.devid} @ {r.physical}")
    return "\n".join(lines)


_data = lambda e: e.type in ("regular", "prealloc")  # noqa: E731

MAP_HEADER_FIELDS: tuple[Field, ...] = (
    Field("path", "path", lambda m: m.path, show=lambda p: "-" if p is None else p),
    Field("subvolume", "subvolume", lambda m: m.subvolume),
    Field("inode", "inode", lambda m: m.inode),
    Field("size", "size", lambda m: m.size, show=lambda v: f"{v} ({format_size(v)})"),
    Field("xattrs", "xattrs", lambda m: m.xattrs, show=lambda names: ", ".join(names) or "-"),
)

#: The JSON contract of one extent of ``map --json``.
MAP_EXTENT_FIELDS: tuple[Field, ...] = (
    Field("file_offset", "file offset", lambda e: e.file_offset),
    Field("length", "length", lambda e: e.length),
    Field("type", "type", lambda e: e.type),
    Field("compression", "compression", lambda e: e.compression),
    Field("disk_bytenr", "disk_bytenr", lambda e: e.disk_bytenr),
    Field("disk_num_bytes", "disk_num_bytes", lambda e: e.disk_num_bytes),
    Field("offset", "offset", lambda e: e.offset),
    Field("num_bytes", "num_bytes", lambda e: e.num_bytes),
    Field("ram_bytes", "ram_bytes", lambda e: e.ram_bytes),
    Field("refs", "refs", lambda e: e.refs),
    Field("mappings", "mappings", lambda e: e.mappings),
    Field("shared", "shared", lambda e: e.shared),
    Field("device_ranges", "device ranges", _device_ranges_raw),
)

#: What the extent table shows people.
MAP_TABLE_FIELDS: tuple[Field, ...] = (
    Field("file_range", "file range", _file_range),
    Field("length", "length", lambda e: e.length),
    Field("type", "type", lambda e: e.type),
    Field("compression", "compr", lambda e: e.compression, show=lambda c: "-" if c == "none" else c),
    Field("logical", "logical range", _logical_text),
    Field("device_ranges", "device copies (#mirror devid @ physical)", _device_ranges_text),
    Field("refs", "refs", lambda e: e.refs if _data(e) else None),
    Field("mappings", "mappings", lambda e: e.mappings if _data(e) else None),
    Field("shared", "shared", lambda e: e.shared if _data(e) else None),
)


def map_report(file_map: FileMap) -> FileReport:
    """The ``map`` command's report of one file map."""
    title = file_map.path if file_map.path is not None else f"subvolume {file_map.subvolume} inode {file_map.inode}"
    return FileReport((
        section(None, title, MAP_HEADER_FIELDS, [file_map], many=False, layout="fields"),
        section("extents", "extents", MAP_EXTENT_FIELDS, file_map.extents, table=False),
        section("extent_table", f"extents ({len(file_map.extents)})", MAP_TABLE_FIELDS, file_map.extents),
    ), table_only=("extent_table",))


def resolve_subvolume(fs, value: str) -> Subvolume:
    """A live subvolume by id (decimal or 0x hex) or by path from the top level."""
    try:
        sub = fs.subvolumes.get(parse_number(value))
    except ValueError:
        sub = fs.subvolumes.by_path(value) if normalize_path(value) != "." else fs.subvolumes.get(ObjectId.FS_TREE)
    if sub is None:
        raise BtrfsScanError(f"no subvolume {value!r} (give its id or its path from the top level)")
    if sub.deleted:
        raise BtrfsScanError(f"subvolume {sub.id} is deleted (not cleaned up yet); its files are not walked")
    return sub


def parse_inode_ref(text: str) -> tuple[int, int]:
    """``SUBVOL:INO`` -> (subvolume id, inode number); ValueError otherwise."""
    sub, sep, ino = text.partition(":")
    if not sep:
        raise ValueError(f"{text!r} is not SUBVOL:INO")
    return parse_number(sub), parse_number(ino)


def _not_a_file(path: str, mode: int) -> str | None:
    kind = type_name(mode)
    if kind == "file":
        return None
    if kind == "dir":
        return f"{path} is a directory: map shows the extents of a regular file (use ls)"
    if kind == "symlink":
        return f"{path} is a symbolic link: map does not follow symlinks, give the target's path"
    return f"{path} is a {kind}, not a regular file: it has no extents"


def file_map_of(fs, tables: FileTables | None, path: str | None = None, *, subvol: str | None = None,
                inode: tuple[int, int] | None = None) -> FileMap:
    """The file map of a regular file named by ``path`` (from ``subvol``) or by ``inode``.

    The name is resolved and checked first; ``tables`` (every live subvolume,
    for the mapping counts) is scanned only then when not given.
    """
    if inode is not None:
        sub_id, ino = inode
        sub = fs.subvolumes.get(sub_id)
        if sub is None:
            raise BtrfsScanError(f"no subvolume {sub_id}")
        if sub.deleted:
            raise BtrfsScanError(f"subvolume {sub_id} is deleted (not cleaned up yet); its files are not walked")
        shown = fs.namespace.path_of(sub_id, ino)
        label = shown if shown is not None else f"subvolume {sub_id} inode {ino}"
        entry = Entry(sub_id, ino, label, 0)
    else:
        start = resolve_subvolume(fs, subvol) if subvol is not None else _top(fs)
        entry = _lookup(fs, path, start)
        rel = normalize_path(path)
        shown = label = _join(start.path, "" if rel == "." else rel)
    if entry.ino == EMPTY_SUBVOL_DIR_INO and entry.subvol_link is None:
        raise BtrfsScanError(_not_a_file(label, stat.S_IFDIR | 0o755))
    item = fs.namespace.inode(fs.subvolumes.get(entry.subvol), entry.ino)
    if item is None:
        raise BtrfsScanError(f"{label}: inode {entry.ino} of subvolume {entry.subvol} has no INODE_ITEM")
    problem = _not_a_file(label, item.mode)
    if problem:
        raise BtrfsScanError(problem)
    return build_file_map(fs, entry.subvol, entry.ino, shown, tables if tables is not None else _scan(fs))


MAP_HELP = """Show the extent map of a regular file: where every byte lives.

PATH is from the top-level subvolume (or from --subvol); --inode SUBVOL:INO
names the file by inode instead (then give no PATH). One row per EXTENT_DATA
item in file order, holes included (implicit NO_HOLES holes up to i_size
too): file offset range, type (regular, inline, prealloc, hole),
compression, the logical range it reads (for a compressed extent: the whole
on-disk extent), and every device copy (#mirror, devid and physical
offset), split at stripe boundaries.

\b
refs      the data extent's reference count in the extent tree
mappings  how many (subvolume, inode, file offset) references to the data
          extent the live fs trees hold (snapshots, reflinks, bookends)
shared    refs > 1 or mappings > 1

The kernel's FIEMAP SHARED flag is narrower: it is set when the data
extent has more than one distinct backref (subvolume, inode, file offset -
extent offset), a snapshot's shared tree blocks counting once per
subvolume. A file that references one extent twice at the same backref key
(the two ends of an extent whose middle was overwritten, a "bookend") is
shared here but not in FIEMAP. FIEMAP also reports a compressed extent at
its on-disk start (without the offset into it) and inline extents at 0.
"""


@click.command("map", help=MAP_HELP)
@click.argument("args", nargs=-1, metavar="IMAGE... PATH")
@click.option("--subvol", "subvol", metavar="ID|PATH", default=None,
              help="Resolve PATH from this subvolume (its id, or its path from the top level).")
@click.option("--inode", "inode", metavar="SUBVOL:INO", default=None,
              help="The file by subvolume id and inode number instead of PATH.")
@sample_option
@log_replay_option
@output_options
@click.pass_context
def map_cmd(ctx, args, subvol, inode, sample, no_log_replay, as_json, strict):
    inode_ref = None
    if inode is not None:
        try:
            inode_ref = parse_inode_ref(inode)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--inode") from None
        if subvol is not None:
            raise click.UsageError("give either --inode or --subvol, not both")
        images, path = tuple(args), None
    else:
        if not args:
            raise click.UsageError("give IMAGE... PATH (or --inode SUBVOL:INO instead of PATH)")
        images, path = tuple(args[:-1]), args[-1]
    with ExitStack() as stack:
        paths = _image_paths(stack, images, sample)
        fs = stack.enter_context(_filesystem(paths, log_replay=not no_log_replay))
        file_map = file_map_of(fs, None, path, subvol=subvol, inode=inode_ref)
        _finish(ctx, map_report(file_map), fs.warnings, as_json, strict, fs.notes)


# --- ls ---------------------------------------------------------------------------

#: The JSON contract of one entry of ``ls --json``.
LS_FIELDS: tuple[Field, ...] = (
    Field("path", "path", lambda r: r.path),
    Field("subvolume", "subvol", lambda r: r.subvolume),
    Field("inode", "inode", lambda r: r.inode),
    Field("type", "type", lambda r: r.type),
    Field("mode", "mode", lambda r: r.mode),
    Field("nlink", "links", lambda r: r.nlink),
    Field("size", "size", lambda r: r.size),
    Field("extents", "extents", lambda r: r.extents),
    Field("shared_bytes", "shared bytes", lambda r: r.shared_bytes),
)


def _ls_table_fields(full_paths: bool) -> tuple[Field, ...]:
    name = (Field("path", "path", lambda r: r.path) if full_paths
            else Field("name", "name", lambda r: r.name + ("/" if r.type == "dir" else "")))
    return (
        Field("inode", "inode", lambda r: r.inode),
        Field("mode", "mode", lambda r: r.mode, show=stat.filemode),
        Field("nlink", "links", lambda r: r.nlink),
        Field("size", "size", lambda r: r.size),
        Field("extents", "extents", lambda r: r.extents),
        Field("shared_bytes", "shared", lambda r: r.shared_bytes),
        Field("subvolume", "subvol", lambda r: r.subvolume),
        Field(name.key, name.label, name.get, show=describe._printable),
    )


def listing(fs, path: str | None = None, *, recursive: bool = False, tables: FileTables | None = None) -> list[Listed]:
    """The entries ``ls [-R] PATH`` shows, paths from the top level, names sorted by their bytes."""
    tables = tables if tables is not None else _scan(fs)
    top = _top(fs)
    rel = normalize_path(path or ".")
    entry = _lookup(fs, rel, top) if rel != "." else None
    probe = Lister(fs)
    start = entry or probe.root_entry()
    only = None
    if not recursive:
        only = {(start.subvol, start.ino)} | {(c.subvol, c.ino) for c in probe.children(start)}
    lister = Lister(fs, InodeSummary(fs, tables, only=only))
    first = lister.describe(start, rel)
    if first.type != "dir":
        return [first]
    return list(lister.iter_listing(start, rel, recursive=recursive, include_start=recursive, sort=True))


def ls_report(entries: list[Listed], *, full_paths: bool, title: str) -> FileReport:
    return FileReport((
        section("entries", title, LS_FIELDS, entries, table=False),
        section("listing", title, _ls_table_fields(full_paths), entries),
    ), table_only=("listing",))


def _is_host_file(arg: str) -> bool:
    return os.path.exists(arg) and not os.path.isdir(arg)


LS_HELP = """List files like `ls -li`, with extent counts and shared bytes.

PATH is from the top-level subvolume (default: its root directory); it is
the last argument when that argument does not name a file on this machine
(with --sample, the only argument). -R lists everything below PATH, parents
before children, crossing into subvolumes and snapshots (a nested
subvolume a snapshot did not take shows as an empty directory, inode 2).

\b
inode, mode, links, size  from the INODE_ITEM (as stat shows them; a
          subvolume's root directory is inode 256)
extents   EXTENT_DATA items holding data: regular and prealloc extents
          with a disk address, and inline extents (holes not counted)
shared    shared bytes: the sum of num_bytes over the file's regular and
          prealloc extent references whose data extent has more than one
          reference: mappings > 1 (more than one (subvolume, inode, file
          offset) reference in the live fs trees: snapshots, reflinks, the
          same extent twice in the file) or refs > 1 in the extent tree.
          It is the total length of the extents `map` marks shared.
"""


@click.command("ls", help=LS_HELP)
@click.argument("args", nargs=-1, metavar="IMAGE... [PATH]")
@click.option("-R", "--recursive", is_flag=True, help="List everything below PATH, across subvolumes and snapshots.")
@sample_option
@log_replay_option
@output_options
@click.pass_context
def ls_cmd(ctx, args, recursive, sample, no_log_replay, as_json, strict):
    args = tuple(args)
    path = None
    if sample:
        if len(args) > 1:
            raise click.UsageError("with --sample give at most one argument, the PATH")
        images, path = (), (args[0] if args else None)
    elif len(args) >= 2 and not _is_host_file(args[-1]):
        images, path = args[:-1], args[-1]
    else:
        images = args
    with ExitStack() as stack:
        paths = _image_paths(stack, images, sample)
        fs = stack.enter_context(_filesystem(paths, log_replay=not no_log_replay))
        rel = normalize_path(path or ".")
        entries = listing(fs, rel, recursive=recursive)
        title = f"{rel} ({len(entries)} entries)" if recursive else f"{rel}"
        _finish(ctx, ls_report(entries, full_paths=recursive, title=title), fs.warnings, as_json, strict, fs.notes)


# --- subvolumes -------------------------------------------------------------------


def _uuid_or_none(raw: bytes) -> str | None:
    return None if bytes(raw) == ZERO_UUID else format_uuid(raw)


def _subvol_path(s: Subvolume) -> str | None:
    if s.deleted:
        return None
    return "." if s.id == ObjectId.FS_TREE else s.path


def _yes(raw: bool) -> str:
    return "yes" if raw else "-"


def subvolume_fields(default_id: int) -> tuple[Field, ...]:
    """The JSON contract of one subvolume of ``subvolumes --json``."""
    return (
        Field("id", "id", lambda s: s.id),
        Field("path", "path", _subvol_path, show=lambda p: "<deleted>" if p is None else describe._printable(p)),
        Field("parent_id", "parent", lambda s: s.parent_id),
        Field("uuid", "uuid", lambda s: _uuid_or_none(s.uuid)),
        Field("parent_uuid", "parent uuid", lambda s: _uuid_or_none(s.parent_uuid)),
        Field("received_uuid", "received uuid", lambda s: _uuid_or_none(s.root_item.received_uuid)),
        Field("readonly", "ro", lambda s: s.readonly),
        Field("generation", "gen", lambda s: s.root_item.generation),
        Field("ctransid", "ctransid", lambda s: s.root_item.ctransid),
        Field("otransid", "otransid", lambda s: s.root_item.otransid),
        Field("deleted", "deleted", lambda s: s.deleted),
        Field("default", "default", lambda s: s.id == default_id),
    )


def subvolumes_report(fs) -> FileReport:
    """The ``subvolumes`` command: every subvolume and snapshot, the top level included."""
    subs = list(fs.subvolumes)
    default_id = fs.subvolumes.default_id
    fields = subvolume_fields(default_id)
    table_keys = ("id", "parent_id", "path", "readonly", "default", "deleted", "generation", "otransid", "uuid",
                  "parent_uuid")
    table_fields = tuple(
        Field(f.key, f.label, f.get, show=_yes) if f.key in ("readonly", "default", "deleted") else f
        for key in table_keys for f in fields if f.key == key
    )
    title = f"subvolumes ({len(subs)}; default {default_id})"
    return FileReport((
        section("subvolumes", title, fields, subs, table=False),
        section("subvolume_table", title, table_fields, subs),
    ), table_only=("subvolume_table",))


@click.command("subvolumes")
@images_argument
@sample_option
@output_options
@click.pass_context
def subvolumes_cmd(ctx, images, sample, as_json, strict):
    """List subvolumes and snapshots, the top level (id 5, path ".") included.

    Path from the top level, parent subvolume, uuids (parent_uuid names the
    snapshot source), read-only flag, generation, ctransid and otransid
    (creation), the default subvolume, and deleted subvolumes the cleaner has
    not removed yet (path null).
    """
    with ExitStack() as stack:
        paths = _image_paths(stack, tuple(images), sample)
        fs = stack.enter_context(_filesystem(paths))
        _finish(ctx, subvolumes_report(fs), fs.warnings, as_json, strict)

