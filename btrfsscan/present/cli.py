"""The ``btrfsscan`` command line.

Every command opens the images read-only, asks ``describe`` for a report and
writes it as rich tables or, with ``--json``, as one JSON document on stdout
(nothing else is ever written to stdout then).

Exit codes: 0 the result is complete; 1 the result was written but is partial
(each warning is a ``warning: ...`` line on stderr and an entry of the JSON
``warnings`` list, with ``"partial": true``); 2 error: one line
``btrfsscan: error: <message>`` on stderr and no result. ``--strict`` (given
before the command, ``btrfsscan --strict chunks ...``, or after it,
``btrfsscan chunks --strict ...``) turns warnings into an error: the warnings
are printed, then the error line, exit 2. Any unexpected exception is one line
``btrfsscan: internal error: ...`` and exit 2; set ``BTRFSSCAN_DEBUG=1`` to get
the traceback instead.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import resources

import click

from .. import __version__
from ..errors import BtrfsScanError, Warnings
from ..format.checksum import crc32c_backend, crc32c_is_slow
from ..model.block_groups import read_block_groups
from . import describe, output
from .output import NUMBER, images_argument

SAMPLE_IMAGE = "sample.img.xz"
EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


class StrictError(BtrfsScanError):
    """Warnings were raised while ``--strict`` was given."""


def _debug() -> bool:
    return os.environ.get("BTRFSSCAN_DEBUG", "") not in ("", "0")


class _Group(click.Group):
    """A click group that turns every exception into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BtrfsScanError as exc:
            if _debug():
                raise
            output.error(f"btrfsscan: error: {exc}")
            ctx.exit(EXIT_ERROR)
        except BrokenPipeError:
            # The reader went away (``| head``): say nothing more, anywhere.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            output.error("btrfsscan: interrupted")
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the promise is: never a traceback
            if _debug():
                raise
            output.error(f"btrfsscan: internal error: {type(exc).__name__}: {exc} (please report)")
            ctx.exit(EXIT_ERROR)


@dataclass
class Settings:
    strict: bool = False


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--strict", is_flag=True, help="Treat every warning as an error (exit 2 instead of a partial result).")
@click.version_option(__version__, "--version", prog_name="btrfsscan")
@click.pass_context
def main(ctx: click.Context, strict: bool) -> None:
    """Analyze btrfs images offline: never mounting, never writing.

    IMAGE arguments are image files, block devices, .xz-compressed images or
    btrfs-image metadata dumps; give every device of a multi-device
    filesystem. Numbers may be decimal or 0x hex.

    Exit codes: 0 complete, 1 partial result (warnings on stderr and in the
    JSON "warnings" list), 2 error.
    """
    ctx.obj = Settings(strict=strict)
    if crc32c_is_slow():
        click.echo(f"btrfsscan: note: crc32c is computed by {crc32c_backend}; install google-crc32c "
                   "(or a compiler for crcmod's C extension) for fast checksums", err=True)


def output_options(fn):
    """``--json`` and ``--strict``, shared by every command."""
    fn = click.option("--strict", is_flag=True, help="Treat every warning as an error (exit 2).")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Write one JSON document to stdout, nothing else.")(fn)
    return fn




# --- helpers ----------------------------------------------------------------------


def _sample_path(stack: ExitStack) -> str:
    ref = resources.files("btrfsscan").joinpath("data", SAMPLE_IMAGE)
    if not ref.is_file():
        raise BtrfsScanError(
            f"the bundled sample image btrfsscan/data/{SAMPLE_IMAGE} is not installed with this copy of btrfsscan"
        )
    return str(stack.enter_context(resources.as_file(ref)))


def _image_paths(stack: ExitStack, images: tuple[str, ...], sample: bool = False) -> list[str]:
    if sample:
        if images:
            raise click.UsageError("give either IMAGE arguments or --sample, not both")
        return [_sample_path(stack)]
    if not images:
        raise click.UsageError("give at least one IMAGE" + (" (or --sample)" if sample is not None else ""))
    return list(images)


@contextmanager
def _filesystem(paths: list[str]):
    from ..model.filesystem import open_filesystem

    fs = open_filesystem(paths)
    try:
        yield fs
    finally:
        fs.close()


def _finish(ctx: click.Context, report: describe.Report, warnings: Warnings, as_json: bool, strict: bool) -> None:
    """Write ``report`` (or the strict error) and leave with the exit code."""
    messages = warnings.messages()
    strict = strict or (ctx.obj is not None and ctx.obj.strict)
    if strict and messages:
        for message in messages:
            output.warn(message)
        raise StrictError(f"{len(messages)} warning(s) and --strict was given; no result written")
    if as_json:
        payload = report.json()
        payload["warnings"] = messages
        payload["partial"] = bool(messages)
        output.write_json(payload)
    else:
        output.render_report(report)
    for message in messages:
        output.warn(message)
    ctx.exit(EXIT_PARTIAL if messages else EXIT_OK)


# --- commands ---------------------------------------------------------------------


@main.command("super")
@images_argument
@click.option("--all", "show_all", is_flag=True,
              help="Every field: also dev_item, the four backup roots and the decoded sys_chunk_array.")
@click.option("--devid", type=NUMBER, default=None,
              help="Show the superblock chosen on this device instead of the one btrfsscan uses.")
@click.option("--sample", is_flag=True, help="Use the bundled sample image instead of IMAGE arguments.")
@output_options
@click.pass_context
def super_cmd(ctx, images, show_all, devid, sample, as_json, strict):
    """Show the superblock and the state of every superblock copy.

    Like `btrfs inspect-internal dump-super -f`: the superblock btrfsscan
    uses (the newest valid copy among all devices given), the devices the
    chunk tree lists, then every copy (64 KiB, 64 MiB, 256 GiB) of every
    device with its generation, magic, checksum and status. If the chunk tree
    cannot be read, the superblock is still shown (with a warning).
    """
    from ..model.filesystem import Filesystem
    from ..volumes.volume import open_volume

    with ExitStack() as stack:
        paths = _image_paths(stack, images, sample)
        volume = open_volume(paths)
        stack.callback(volume.close)
        try:
            Filesystem(volume)  # loads the chunk tree: every device, by devid
        except BtrfsScanError as exc:
            volume.warnings.add(f"chunk tree not loaded, devices listed from the superblocks only: {exc}")
        report = describe.superblock_report(volume, detail=show_all, devid=devid)
        _finish(ctx, report, volume.warnings, as_json, strict)


@main.command("chunks")
@images_argument
@output_options
@click.pass_context
def chunks_cmd(ctx, images, as_json, strict):
    """Show the chunk map: every chunk, its profile, its stripes and how much of it is used
    (from its BLOCK_GROUP_ITEM in the extent tree or the block group tree)."""
    with ExitStack() as stack:
        paths = _image_paths(stack, images, None)
        fs = stack.enter_context(_filesystem(paths))
        report = describe.chunks_report(fs.volume, read_block_groups(fs))
        _finish(ctx, report, fs.warnings, as_json, strict)


@main.command("map-logical")
@images_argument
@click.argument("logical", type=NUMBER)
@click.option("--length", "-b", "length", type=NUMBER, default=None,
              help="Bytes to map (default: the nodesize, as btrfs-map-logical).")
@click.option("--parity", is_flag=True, help="RAID5/6: also show the P (mirror 2) and Q (mirror 3) ranges.")
@output_options
@click.pass_context
def map_logical_cmd(ctx, images, logical, length, parity, as_json, strict):
    """Show where a logical range lives on the devices, every mirror.

    Like btrfs-map-logical, without reading any data: one line per piece
    (a stripe touched) and mirror. RAID5/6 have one copy of the data; with
    --parity the parity ranges of the same stripe row follow, with role P
    and Q.
    """
    with ExitStack() as stack:
        paths = _image_paths(stack, images, None)
        fs = stack.enter_context(_filesystem(paths))
        if length is None:
            length = fs.superblock.nodesize
        if length == 0:
            raise click.BadParameter("must be at least 1", param_hint="--length")
        report = describe.map_logical_report(fs.volume, logical, length, parity=parity)
        _finish(ctx, report, fs.warnings, as_json, strict)


# --- file-level commands (present/files_cmds.py; they get --json/--strict here) ----

from .files_cmds import ls_cmd, map_cmd, subvolumes_cmd  # noqa: E402

main.add_command(output_options(map_cmd))
main.add_command(output_options(ls_cmd))
main.add_command(output_options(subvolumes_cmd))

from .report_cmd import report_cmd, schema_group  # noqa: E402

main.add_command(output_options(report_cmd))
main.add_command(schema_group)
