"""The ``report`` and ``schema`` commands.

``report`` groups the images it is given by fsid and reports each filesystem
found: it walks every live subvolume into column tables (with a progress bar
on stderr when that is a terminal), runs the page-cache models and writes the
report as tables, JSON (one object per filesystem, one per line) or the
Prometheus text format.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack, nullcontext
from typing import IO, TYPE_CHECKING

import click

from ..cache.models import PAGE_SIZES
from ..cache.report import (
    DeviceInfo,
    FilesystemFacts,
    Report,
    SubvolumeInfo,
    build_report,
)
from ..format.constants import CompatRoFlag, IncompatFlag, flag_names
from ..model.filesystem import Filesystem, open_filesystems
from ..model.fs_tree import FileScanner
from ..model.subvolumes import ZERO_UUID
from ..model.versions import inode_versions
from ..volumes.superblock import format_uuid
from .cli import EXIT_OK, EXIT_PARTIAL, StrictError, _image_paths, super_copy
from .destination import check_output, open_output
from .output import images_argument, json_safe, output_options, sample_option
from .prometheus import prometheus_text
from .report_json import report_json, schema

if TYPE_CHECKING:
    from rich.progress import Progress


def _profiles(fs: Filesystem, type_name: str) -> tuple[str, ...]:
    names = set()
    for chunk in fs.volume.chunk_map:
        if type_name in chunk.type_names:
            try:
                names.add(chunk.profile.name)
            except ValueError:
                names.add("INVALID")
    return tuple(sorted(names))


def filesystem_facts(fs: Filesystem) -> FilesystemFacts:
    """What the report says about the filesystem, from its superblock and chunk map."""
    sb = fs.superblock
    devices = tuple(
        DeviceInfo(d.devid, format_uuid(d.uuid), d.image.name if d.image else None, d.total_bytes, d.bytes_used)
        for d in sorted(fs.volume.devices.values(), key=lambda d: d.devid)
    )
    return FilesystemFacts(
        fsid=sb.fsid_str, label=sb.label_str, devices=devices, num_devices=sb.num_devices,
        data_profiles=_profiles(fs, "DATA"), metadata_profiles=_profiles(fs, "METADATA"),
        system_profiles=_profiles(fs, "SYSTEM"), nodesize=sb.nodesize, sectorsize=sb.sectorsize,
        generation=sb.generation, incompat_features=tuple(flag_names(IncompatFlag, sb.incompat_flags)),
        compat_ro_features=tuple(flag_names(CompatRoFlag, sb.compat_ro_flags)),
    )


def _uuid(raw: bytes) -> str | None:
    return None if raw == ZERO_UUID else format_uuid(raw)


def scan_report(fs: Filesystem, *, page_size: int, top: int, progress: Progress | None = None,
                memoize: bool = True) -> Report:
    """Scan every live subvolume of ``fs`` and build its page-cache report.

    ``memoize=False`` parses every tree block of every subvolume again (the
    check that sharing work between snapshots changes no figure).
    """
    subvols = fs.subvolumes.live()
    task = progress.add_task(f"scanning {fs.volume.fsid}", total=len(subvols), unit="subvolumes") if progress else None
    scanner = FileScanner(fs.reader, fs.warnings, memoize=memoize)
    advance = (lambda sub: progress.advance(task)) if progress else None
    versions = inode_versions(scanner.scan_leaves(subvols, progress=advance), fs.warnings)
    infos = [
        SubvolumeInfo(s.id, s.path or ("" if s.id == 5 else None), _uuid(s.uuid), _uuid(s.parent_uuid), s.readonly,
                      s.root_item.generation)
        for s in subvols
    ]
    if progress:
        progress.update(task, description=f"modelling the page cache of {fs.volume.fsid}", total=None, unit="")
    report = build_report(
        versions, page_size=page_size, filesystem=filesystem_facts(fs), subvolumes=infos,
        sectorsize=fs.superblock.sectorsize, top=top, path_of=fs.namespace.path_of,
        partial=fs.partial, warnings=fs.warnings.messages(), metadata_dump=fs.is_metadump,
    )
    if progress:
        progress.remove_task(task)
    return report


def _progress(quiet: bool) -> Progress | None:
    """The progress bar on stderr, only when that is a terminal (rich is imported only then)."""
    if quiet or not sys.stderr.isatty():
        return None
    from .progress import progress_bar

    return progress_bar()


def _write_table(report: Report, out: IO[str], raw: bool) -> None:
    """``report`` as rich tables on ``out`` (rich is imported only for tables)."""
    from rich.console import Console

    from .report_view import render_report

    render_report(report, console=None if out is sys.stdout else Console(file=out), raw=raw)


@click.command("report")
@images_argument
@sample_option
@click.option("--page-size", type=click.Choice([str(p) for p in PAGE_SIZES]), default="4096", show_default=True,
              help="Page size of the modelled page cache.")
@click.option("--top", type=click.IntRange(0, 10000), default=10, show_default=True,
              help="How many shared extents and files to list.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "prometheus"]), default=None,
              help="Output format (default: table; --json is --format json).")
@click.option("--output", "-o", "output_file", type=click.Path(dir_okay=False), default=None,
              help="Write the result to FILE instead of stdout.")
@click.option("--raw", is_flag=True, help="Exact numbers instead of human-readable sizes.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@output_options
@click.pass_context
def report_cmd(ctx, images, sample, page_size, top, fmt, output_file, raw, quiet, as_json, strict):
    """Page cache per inode vs. a shared-extent cache, for each filesystem in IMAGE...

    Models what the page cache holds after every regular file is read once:
    per_inode (Linux today), shared_extent (pages of written, uncompressed
    extents keyed by logical address, cached once), shared_extent_compressed
    (compressed extents too) and rfc_as_posted (the 2021 RFC: one device,
    SINGLE data, page size = sector size). With --json, one JSON object per
    filesystem, one per line.
    """
    fmt = "json" if as_json else (fmt or "table")
    strict = strict or (ctx.obj is not None and ctx.obj.strict)
    with ExitStack() as stack:
        paths = _image_paths(stack, images, sample)
        if output_file:
            check_output(output_file, paths)
        filesystems = open_filesystems(paths, super_copy())
        for fs in filesystems:
            stack.callback(fs.close)
        reports = []
        progress = _progress(quiet)
        with progress or ExitStack():
            for fs in filesystems:
                reports.append(scan_report(fs, page_size=int(page_size), top=top, progress=progress))
    warnings = [w for r in reports for w in r.warnings]
    if strict and warnings:
        for message in warnings:
            click.echo(f"warning: {message}", err=True)
        raise StrictError(f"{len(warnings)} warning(s) and --strict was given; no result written")
    with open_output(output_file) if output_file else nullcontext(sys.stdout) as out:
        for report in reports:
            if fmt == "json":
                out.write(json_safe(json.dumps(report_json(report), ensure_ascii=False)) + "\n")
            elif fmt == "prometheus":
                out.write(prometheus_text(report))
            else:
                _write_table(report, out, raw)
    for message in warnings:
        click.echo(f"warning: {message}", err=True)
    ctx.exit(EXIT_PARTIAL if warnings else EXIT_OK)


@click.group("schema")
def schema_group():
    """Print the JSON Schema of a command's --json output."""


@schema_group.command("report")
def schema_report():
    """The JSON Schema of `report --json` (one object per filesystem)."""
    click.echo(json.dumps(schema(), indent=2))
