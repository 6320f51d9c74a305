"""The file-level commands: ``map``, ``ls`` and ``subvolumes``.

Each command parses its arguments, asks :mod:`btrfsscan.analysis.files` for
its result and leaves through ``command.finish``. ``cli`` imports this module
only when one of these commands runs.
"""

from __future__ import annotations

from contextlib import ExitStack

import click

from ..analysis.files import file_map_of, listing, subvolume_list
from ..analysis.refs import parse_inode_ref
from ..model.listing import normalize_path
from ..model.namespace import PathNotFound
from ..names import argument_name
from .command import (NO_PATH, PATH_OPTIONAL, PATH_REQUIRED, PATH_RULE, ImagesThenPath, finish, images_and_path, images_argument, inputs, log_replay_option,
                      opened, output_options, path_hint, progress_bar, sample_option)
from .document import CommandOutput
from .views.files import ls_document, map_document, subvolumes_document

MAP_HELP = """Show the extent map of a regular file: where every byte lives.

PATH is from the top-level subvolume (or from --subvol); --inode
SUBVOL:INO names the file by inode instead (then every argument is an
image). One row per EXTENT_DATA item in file order, holes included
(implicit NO_HOLES holes up to i_size too): file offset range, type
(regular, inline, prealloc, hole), compression, the logical range it reads
(for a compressed extent: the whole on-disk extent), and every device copy
(#mirror, devid and physical offset), split at stripe boundaries.

""" + PATH_RULE + """

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


@click.command("map", cls=ImagesThenPath, help=MAP_HELP)
@click.argument("args", nargs=-1, metavar="IMAGE... PATH")
@click.option("--subvol", "subvol", metavar="ID|PATH", default=None,
              help="Resolve PATH from this subvolume (its id, or its path from the top level).")
@click.option("--inode", "inode", metavar="SUBVOL:INO", default=None,
              help="The file by subvolume id and inode number instead of PATH.")
@sample_option
@log_replay_option
@output_options("map")
def map_cmd(args, subvol, inode, sample, log_replay, super_copy):
    inode_ref = None
    if inode is not None:
        try:
            inode_ref = parse_inode_ref(inode)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--inode") from None
        if subvol is not None:
            raise click.UsageError("give either --inode or --subvol, not both")
        images, path = images_and_path(tuple(args), sample, NO_PATH)
    else:
        images, path = images_and_path(tuple(args), sample, PATH_REQUIRED)
        path = argument_name(path)
        if path.endswith("/") and path.strip("/"):
            raise click.BadParameter(f"{path!r} ends with /, which names a directory; map shows the extents of "
                                     "a regular file", param_hint="PATH")
    with ExitStack() as stack:
        fs = stack.enter_context(opened(inputs(stack, images, sample), super_copy, log_replay=log_replay))
        document = map_document(file_map_of(fs, None, path, subvol=subvol, inode=inode_ref))
        finish(CommandOutput("map", (document,), tuple(fs.warnings.messages()), notes=tuple(fs.notes)))


LS_HELP = """List files like `ls -li`, with extent counts and shared bytes.

PATH is from the top-level subvolume (default: its root directory). -R
lists everything below PATH, parents before children, crossing into
subvolumes and snapshots (a nested subvolume a snapshot did not take shows
as an empty directory, inode 2). Entries are written as they are listed
(with --json still one document), with a progress bar on stderr when that
is a terminal and the entries go elsewhere.

""" + PATH_RULE + """

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


@click.command("ls", cls=ImagesThenPath, help=LS_HELP)
@click.argument("args", nargs=-1, metavar="IMAGE... [PATH]")
@click.option("-R", "--recursive", is_flag=True, help="List everything below PATH, across subvolumes and snapshots.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@sample_option
@log_replay_option
@output_options("ls")
def ls_cmd(args, recursive, quiet, sample, log_replay, super_copy):
    images, path = images_and_path(tuple(args), sample, PATH_OPTIONAL)
    with ExitStack() as stack:
        fs = stack.enter_context(opened(inputs(stack, images, sample), super_copy, log_replay=log_replay))
        progress = progress_bar(quiet, streamed=True)
        if progress is not None:
            stack.enter_context(progress)
        try:
            result = listing(fs, normalize_path(argument_name(path or ".")), recursive=recursive, progress=progress)
        except PathNotFound as exc:
            raise (path_hint(exc) if images and path is not None else exc) from None
        finish(CommandOutput("ls", (ls_document(result),), notes=tuple(fs.notes), late_warnings=fs.warnings.messages))


@click.command("subvolumes")
@images_argument
@sample_option
@output_options("subvolumes")
def subvolumes_cmd(images, sample, super_copy):
    """List subvolumes and snapshots, the top level (id 5, path ".") included.

    Path from the top level, parent subvolume, uuids (parent_uuid names the
    snapshot source), read-only flag, generation, ctransid and otransid
    (creation), the default subvolume, and deleted subvolumes the cleaner has
    not removed yet (path null).
    """
    with ExitStack() as stack:
        fs = stack.enter_context(opened(inputs(stack, tuple(images), sample), super_copy))
        document = subvolumes_document(subvolume_list(fs))
        finish(CommandOutput("subvolumes", (document,), tuple(fs.warnings.messages())))
