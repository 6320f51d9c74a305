"""The ``live`` command: the page cache of a mounted filesystem now, under every cache design.

:func:`btrfsscan.analysis.live.live_report` walks every regular file below
the directories (mincore over a read-only mapping, FIEMAP; never reading
data), with a progress display on stderr when that is a terminal; the
figures leave through ``command.finish`` in the report's layout
(:mod:`.views.live`). ``--save`` writes the residency document, checked like
``-o`` before anything is measured and replaced only once complete.
``--device DEV`` opens the mounted filesystem's devices read-only (checked to
be that filesystem before anything is measured) and models the captured
residency on them, every model included.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack, nullcontext

import click

from ..analysis.live import check_device, live_report
from ..live.residency import write_residency
from ..model.filesystem import open_filesystem
from .command import finish, inputs, options, output_options
from .destination import check_output, open_output
from .document import CommandOutput
from .views.live import live_document


def _progress(quiet: bool):
    """A callback showing the collector's counts on a transient bar (None: stderr is not a terminal)."""
    if quiet or not sys.stderr.isatty():
        return None, nullcontext()
    from .progress import ProgressBar

    bar = ProgressBar()
    bar.start("measuring resident pages", None, "")

    def show(p) -> None:
        bar.phase(f"{p.files} files, {p.directories} directories: {p.files_with_pages} with {p.pages} "
                  f"resident pages" + (f", {p.unreadable} unreadable" if p.unreadable else ""))

    return show, bar


@click.command("live")
@click.argument("mountpoints", nargs=-1, required=True, metavar="MOUNTPOINT...", type=click.Path())
@click.option("--top", type=click.IntRange(0, 10000), default=10, show_default=True,
              help="How many shared ranges and files to list.")
@click.option("--save", type=click.Path(dir_okay=False), default=None,
              help="Also write the residency (per file: resident page runs) to FILE, for `report --resident`.")
@click.option("--device", "devices", multiple=True, metavar="DEV",
              help="A device of the mounted btrfs filesystem (repeat for each): its extent items and checksums, "
                   "read-only, give every model, the content models included.")
@click.option("--raw", is_flag=True, help="Exact numbers instead of human-readable sizes.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@output_options("live", images=False)
def live_cmd(mountpoints, top, save, devices, raw, quiet):
    """What the page cache holds now of every regular file below MOUNTPOINT..., and what each cache design
    (shared-extent cache, ...) would hold of the same data. Reads no file data: the page cache is left as
    it was. The JSON has the layout of `report --json`, plus `workload`."""
    target = options().target
    for path in (target, save):
        if path:
            check_output(path, list(devices))
    if save and target and save == target:
        raise click.UsageError("--save and --output name the same file")
    with ExitStack() as stack:
        device = None
        if devices:
            device = open_filesystem(inputs(stack, devices), mounted_ok=True)
            stack.callback(device.close)
            check_device(list(mountpoints), device)
        show, bar = _progress(quiet)
        with bar:
            result = live_report(list(mountpoints), top=top, progress=show, device=device,
                                 scan_progress=bar if device is not None and show is not None else None)
    if save:
        with open_output(save) as stream:
            write_residency(result.residency, stream)
    finish(CommandOutput("live", (live_document(result, raw=raw),), result.report.warnings))
