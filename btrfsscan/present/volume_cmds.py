"""The volume-level commands: ``super``, ``chunks`` and ``map-logical``.

Each command opens the images read-only, asks ``describe`` for a report and
leaves through ``cli._finish`` (tables or ``--json``, warnings, exit codes
0/1/2). ``cli`` imports this module only when one of these commands runs.
"""

from __future__ import annotations

from contextlib import ExitStack

import click

from ..errors import BtrfsScanError
from ..model.block_groups import read_block_groups
from ..model.filesystem import Filesystem
from ..volumes.volume import open_volume
from . import describe
from .cli import _filesystem, _finish, _image_paths, super_copy
from .output import NUMBER, images_argument, output_options, sample_option


@click.command("super")
@images_argument
@click.option("--all", "show_all", is_flag=True,
              help="Every field: also dev_item, the four backup roots and the decoded sys_chunk_array.")
@click.option("--devid", type=NUMBER, default=None,
              help="Show the superblock chosen on this device instead of the one btrfsscan uses.")
@sample_option
@output_options
@click.pass_context
def super_cmd(ctx, images, show_all, devid, sample, as_json, strict):
    """Show the superblock and the state of every superblock copy.

    Like `btrfs inspect-internal dump-super -f`: the superblock btrfsscan
    uses (the primary when valid, as the kernel mounts it, or the copy
    --super-copy names; with several devices, the newest of them), the devices the
    chunk tree lists, then every copy (64 KiB, 64 MiB, 256 GiB) of every
    device with its generation, magic, checksum and status. If the chunk tree
    cannot be read, the superblock is still shown (with a warning).
    """
    with ExitStack() as stack:
        paths = _image_paths(stack, images, sample)
        volume = open_volume(paths, super_copy())
        stack.callback(volume.close)
        try:
            Filesystem(volume)  # loads the chunk tree: every device, by devid
        except BtrfsScanError as exc:
            volume.warnings.add(f"chunk tree not loaded, devices listed from the superblocks only: {exc}")
        report = describe.superblock_report(volume, detail=show_all, devid=devid)
        _finish(ctx, report, volume.warnings, as_json, strict)


@click.command("chunks")
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


@click.command("map-logical")
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
        for problem in filter(None, map(fs.volume.unreadable, fs.volume.map(logical, length, parity=parity))):
            fs.warnings.add(problem, f"logical {logical}")
        _finish(ctx, report, fs.warnings, as_json, strict)
