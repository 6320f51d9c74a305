"""The ``btrfsscan`` command line.

Every command opens the images read-only, asks the application layer
(:mod:`btrfsscan.analysis`) for a result and writes it through the one output
pipeline of :mod:`.command`: rich tables, or with ``--json`` / ``--format``
one JSON document (or another format of :mod:`.renderers`) on stdout or the
``-o`` file (nothing else is ever written to stdout then).

Exit codes: 0 the result is complete; 1 the result was written but is partial
(each warning is a ``warning: ...`` line on stderr and an entry of the JSON
``warnings`` list, with ``"partial": true``); 2 error: one line
``btrfsscan: error: <message>`` on stderr and no result. ``--strict`` (given
before the command, ``btrfsscan --strict chunks ...``, or after it,
``btrfsscan chunks --strict ...``) turns warnings into an error: the warnings
are printed, then the error line, exit 2. Any unexpected exception is one line
``btrfsscan: internal error: ...`` and exit 2; set ``BTRFSSCAN_DEBUG=1`` to get
the traceback instead.

Start-up stays small: a command's module (and with it numpy, construct, rich
and the model) is imported only when that command runs; ``btrfsscan --help``
lists the commands from ``COMMANDS`` alone.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from importlib import import_module

import click

from .. import __version__
from ..errors import BtrfsScanError
from .command import EXIT_ERROR, EXIT_OK, Settings, error, silence_stdout

# No command does linear algebra: without this, importing numpy starts one
# OpenBLAS thread per core (~40 ms of a run); an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

#: glibc's mallopt parameters (malloc.h) and the largest mmap threshold it takes on 64-bit systems.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX, _MMAP_THRESHOLD_MAX = -1, -3, -8, 32 << 20


def _reuse_freed_memory() -> None:
    """Let glibc keep the memory numpy frees for the next allocation instead of giving it back.

    A report allocates and frees thousands of temporaries of a few MB. Above
    glibc's mmap threshold (128 KiB until a mapping is freed) each is a fresh
    mapping whose pages the kernel zeroes on first touch: about a tenth of a
    report's time on the large bench image. With the threshold at its maximum
    and no trimming, freed chunks are reused; with one arena, the threads the
    models run in (``btrfsscan.concurrency``) reuse each other's too, instead of
    each growing an arena of its own (+60 % peak memory). numpy's allocations
    are few and large: one arena's lock costs nothing. An explicit glibc
    setting wins; elsewhere (musl, macOS) nothing changes.
    """
    if any(name.startswith("MALLOC_") for name in os.environ) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)
    mallopt(_M_ARENA_MAX, 1)


_reuse_freed_memory()


def _debug() -> bool:
    return os.environ.get("BTRFSSCAN_DEBUG", "") not in ("", "0")


# --- commands, imported when they run ----------------------------------------------


@dataclass(frozen=True)
class LazyCommand:
    """Where a command is defined, and its one-line help for ``btrfsscan --help``."""

    module: str  # a module of btrfsscan.present (it may import cli's helpers from .command, never cli)
    attribute: str
    short_help: str

    def load(self) -> click.Command:
        """Import the command; it keeps the short help ``--help`` shows (for shell completion too)."""
        command = getattr(import_module(f".{self.module}", __package__), self.attribute)
        command.short_help = self.short_help
        return command


#: Every command of ``btrfsscan``, by name.
COMMANDS: dict[str, LazyCommand] = {
    "chunks": LazyCommand("volume_cmds", "chunks_cmd", "Show the chunk map: chunks, profiles, stripes, used bytes."),
    "live": LazyCommand("live_cmd", "live_cmd", "What the page cache holds now of a mounted filesystem, and what sharing saves."),
    "ls": LazyCommand("files_cmds", "ls_cmd", "List files like `ls -li`, with extent counts and shared bytes."),
    "map": LazyCommand("files_cmds", "map_cmd", "Show the extent map of a regular file: where every byte lives."),
    "map-logical": LazyCommand("volume_cmds", "map_logical_cmd",
                               "Show where a logical range lives on the devices, every mirror."),
    "report": LazyCommand("report_cmd", "report_cmd", "Page cache per inode vs. a shared-extent cache."),
    "schema": LazyCommand("schema_cmd", "schema_cmd", "Print the JSON Schema of a command's --json output."),
    "subvolumes": LazyCommand("files_cmds", "subvolumes_cmd", "List subvolumes and snapshots, with uuids and parents."),
    "super": LazyCommand("volume_cmds", "super_cmd", "Show the superblock and the state of every superblock copy."),
}


class _Commands(MutableMapping[str, click.Command]):
    """A group's commands: every name is known, a module is imported at its command's first lookup."""

    def __init__(self, lazy: Mapping[str, LazyCommand]) -> None:
        self._entries: dict[str, LazyCommand | click.Command] = dict(lazy)

    def __getitem__(self, name: str) -> click.Command:
        entry = self._entries[name]
        if isinstance(entry, LazyCommand):
            entry = self._entries[name] = entry.load()
        return entry

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._entries[name] = command

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def short_help(self, name: str) -> str:
        """The command's one-line help, without importing it."""
        entry = self._entries[name]
        return entry.short_help if isinstance(entry, LazyCommand) else entry.get_short_help_str()


class _Group(click.Group):
    """A click group that turns every exception into one line and an exit code."""

    commands: _Commands

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, from the short helps alone: ``--help`` imports no command."""
        rows = [(name, self.commands.short_help(name)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BtrfsScanError as exc:
            if _debug():
                raise
            error(f"btrfsscan: error: {exc}")
            ctx.exit(EXIT_ERROR)
        except BrokenPipeError:
            # The reader went away (``| head``): it had what it wanted; say nothing more, anywhere, exit 0.
            silence_stdout()
            ctx.exit(EXIT_OK)
        except KeyboardInterrupt:
            error("btrfsscan: interrupted")
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the promise is: never a traceback
            if _debug():
                raise
            error(f"btrfsscan: internal error: {type(exc).__name__}: {exc} (please report)")
            ctx.exit(EXIT_ERROR)


@click.group(cls=_Group, commands=_Commands(COMMANDS), context_settings={"help_option_names": ["-h", "--help"]})
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
    from ..format.checksum import crc32c_backend, crc32c_is_slow

    ctx.obj = Settings(strict=strict)
    if crc32c_is_slow():
        click.echo(f"btrfsscan: note: crc32c is computed by {crc32c_backend}; install google-crc32c "
                   "(or a compiler for crcmod's C extension) for fast checksums", err=True)
