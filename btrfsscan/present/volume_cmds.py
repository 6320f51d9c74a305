"""The volume-level commands: ``super``, ``chunks`` and ``map-logical``.

Each command parses its arguments, asks :mod:`btrfsscan.analysis.volume` for
its result and leaves through ``command.finish``. ``cli`` imports this module
only when one of these commands runs.
"""

from __future__ import annotations

from contextlib import ExitStack

import click

from ..analysis.volume import chunk_usage, map_logical, superblock_info
from ..tree.assemble import open_volume
from .command import NUMBER, finish, images_argument, inputs, opened, output_options, sample_option
from .document import CommandOutput
from .views.volume import chunks_document, map_logical_document, superblock_document


@click.command("super")
@images_argument
@click.option("--all", "show_all", is_flag=True,
              help="Every field: also dev_item, the four backup roots and the decoded sys_chunk_array.")
@click.option("--devid", type=NUMBER, default=None,
              help="Show the superblock chosen on this device instead of the one btrfsscan uses.")
@sample_option
@output_options("super")
def super_cmd(images, show_all, devid, sample, super_copy):
    """Show the superblock and the state of every superblock copy.

    Like `btrfs inspect-internal dump-super -f`: the superblock btrfsscan
    uses (the primary when valid, as the kernel mounts it, or the copy
    --super-copy names; with several devices, the newest of them), the devices the
    chunk tree lists, then every copy (64 KiB, 64 MiB, 256 GiB) of every
    device with its generation, magic, checksum and status. If the chunk tree
    cannot be read, the superblock is still shown (with a warning).
    """
    with ExitStack() as stack:
        volume = open_volume(inputs(stack, images, sample), super_copy, partial=True)  # an unreadable chunk tree: a warning
        stack.callback(volume.close)
        document = superblock_document(superblock_info(volume, devid=devid, sys_chunks=show_all), detail=show_all)
        finish(CommandOutput("super", (document,), tuple(volume.warnings.messages())))


@click.command("chunks")
@images_argument
@sample_option
@output_options("chunks")
def chunks_cmd(images, sample, super_copy):
    """Show the chunk map: every chunk, its profile, its stripes and how much of it is used
    (from its BLOCK_GROUP_ITEM in the extent tree or the block group tree)."""
    with ExitStack() as stack:
        fs = stack.enter_context(opened(inputs(stack, images, sample), super_copy))
        document = chunks_document(chunk_usage(fs))
        finish(CommandOutput("chunks", (document,), tuple(fs.warnings.messages())))


@click.command("map-logical")
@click.argument("args", nargs=-1, metavar="IMAGE... LOGICAL")
@click.option("--length", "-b", "length", type=NUMBER, default=None,
              help="Bytes to map (default: the nodesize, as btrfs-map-logical).")
@click.option("--parity", is_flag=True, help="RAID5/6: also show the P (mirror 2) and Q (mirror 3) ranges.")
@sample_option
@output_options("map-logical")
def map_logical_cmd(args, length, parity, sample, super_copy):
    """Show where a logical range lives on the devices, every mirror.

    Like btrfs-map-logical, without reading any data: one line per piece
    (a stripe touched) and mirror. RAID5/6 have one copy of the data; with
    --parity the parity ranges of the same stripe row follow, with role P
    and Q.
    """
    if not args:
        raise click.UsageError("give IMAGE... LOGICAL (or --sample LOGICAL)")
    images = tuple(args[:-1])
    try:
        logical = NUMBER.convert(args[-1], None, click.get_current_context())
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint="LOGICAL") from None
    with ExitStack() as stack:
        fs = stack.enter_context(opened(inputs(stack, images, sample), super_copy))
        if length is None:
            length = fs.superblock.nodesize
        if length == 0:
            raise click.BadParameter("must be at least 1", param_hint="--length")
        document = map_logical_document(map_logical(fs.volume, logical, length, parity=parity))
        finish(CommandOutput("map-logical", (document,), tuple(fs.warnings.messages())))
