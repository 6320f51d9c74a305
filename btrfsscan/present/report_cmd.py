"""The ``report`` command.

``report`` groups the images it is given by fsid and reports each filesystem
found: :func:`btrfsscan.analysis.report.scan_report` walks every live
subvolume into column tables (with a progress bar on stderr when that is a
terminal) and runs every registered cache model; the reports leave through
``command.finish`` as tables, JSON (one object per filesystem, one per line)
or the Prometheus text format, or one self-contained HTML page (``--format html``,
``--html FILE``).
"""

from __future__ import annotations

from contextlib import ExitStack

import click

from ..analysis.report import PATHS_AND_BY_DIR, scan_report
from ..cache.layout import PAGE_SIZES
from ..cache.registry import MODELS
from ..model.filesystem import open_filesystems
from .command import (finish, images_argument, inputs, log_replay_option, options, output_alias, output_options,
                      progress_bar, sample_option)
from .document import CommandOutput
from .views.report import report_document


REPORT_HELP = """Page cache per inode vs. a shared-extent cache, for each filesystem in IMAGE...

Models what the page cache holds after every regular file is read once,
under each of these designs:

\b
""" + "\n".join(f"{m.name}: {m.design}" + (f" (only with {m.needs})" if m.needs else "") for m in MODELS) + """

With --json, one JSON object per filesystem, one per line. --by-dir DEPTH
adds the figures per directory; --html FILE (--format html -o FILE) writes
one self-contained page of charts (no network request when opened).
"""

#: ``--format html`` without ``--by-dir``: the treemap's depth.
DEFAULT_HTML_DEPTH = 3


@click.command("report", help=REPORT_HELP)
@images_argument
@sample_option
@click.option("--page-size", type=click.Choice([str(p) for p in PAGE_SIZES]), default="4096", show_default=True,
              help="Page size of the modelled page cache.")
@click.option("--top", type=click.IntRange(0, 10000), default=10, show_default=True,
              help="How many shared extents and files to list.")
@click.option("--raw", is_flag=True, help="Exact numbers instead of human-readable sizes.")
@click.option("--by-dir", "by_dir", type=click.IntRange(0, 64), default=None, metavar="DEPTH",
              help="Also report the cache by directory, DEPTH levels below each subvolume (--top children each).")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML page with charts to FILE: --format html -o FILE "
                   f"(needs btrfsscan[html]; implies --by-dir {DEFAULT_HTML_DEPTH} unless given).")
@click.option("--read-data", is_flag=True,
              help="Key the content models by hashing the file data (exact; reads every distinct extent once) "
                   "instead of by the checksum tree. Not on btrfs-image metadata dumps.")
@click.option("--path", "paths", multiple=True, metavar="PATH",
              help="Model only the files under PATH (from the top-level subvolume, e.g. @base/usr; repeatable), "
                   "as `btrfs filesystem du` or compsize count them.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--resident", type=click.Path(dir_okay=False), default=None,
              help="Model only the working set of this residency file (`live --save`) on the image.")
@click.option("--workload", type=click.Path(dir_okay=False), default=None,
              help="Model only the pages these reads bring in: lines PATH or PATH OFFSET LENGTH "
                   "(paths from the top-level subvolume; readahead ignored).")
@log_replay_option
@output_options("report")
def report_cmd(images, sample, page_size, top, read_data, raw, by_dir, html_file, paths, quiet, resident, workload,
               log_replay, super_copy):
    if resident and workload:
        raise click.UsageError("give either --resident or --workload, not both")
    if paths and (resident or workload):
        raise click.UsageError("--path models files read once; a working set (--resident, --workload) has its own")
    if paths and by_dir is not None:
        raise click.UsageError(PATHS_AND_BY_DIR)
    if html_file is not None:
        output_alias("--html", "html", html_file)
    if options().fmt == "html" and by_dir is None and not paths:
        by_dir = DEFAULT_HTML_DEPTH
    with ExitStack() as stack:
        filesystems = open_filesystems(inputs(stack, images, sample), super_copy, log_replay=log_replay)
        for fs in filesystems:
            stack.callback(fs.close)
        progress = progress_bar(quiet)
        if resident or workload:  # the working-set modules only for these (start-up)
            from ..analysis.live import resident_report
            from .views.live import working_set_document

            with progress or ExitStack():
                results = [resident_report(fs, page_size=int(page_size), top=top, resident=resident,
                                           workload=workload, progress=progress) for fs in filesystems]
            reports = [r.report for r in results]
            documents = tuple(working_set_document(r, raw=raw) for r in results)
        else:
            with progress or ExitStack():
                reports = [scan_report(fs, page_size=int(page_size), top=top, progress=progress, by_dir=by_dir,
                                       read_data=read_data, paths=paths)
                           for fs in filesystems]
            documents = tuple(report_document(r, raw=raw) for r in reports)
    finish(CommandOutput("report", documents, tuple(w for r in reports for w in r.warnings), stream=True))
