"""What every command shares: its options, its inputs, and the one output pipeline.

A command parses its arguments, opens its inputs with ``inputs`` and
``opened``, asks :mod:`btrfsscan.analysis` for a result, turns it into
documents (:mod:`.views`) and ends with ``finish``. ``output_options`` gives
every command ``--json``, ``--format``, ``--output``/``-o``, ``--strict``,
``--wide`` (tables) and ``--super-copy`` (passed to the command as
``super_copy``, for it to open its inputs with); ``finish`` is the one place that applies them: ``--strict``
turns warnings into an error (the warnings, then the error line, exit 2,
nothing written), else the documents are written in the chosen format to
stdout or, through :mod:`.destination`, to the ``-o`` file (checked against
the inputs before anything is read; replaced only once complete), the
notes and warnings follow on stderr and the exit code is 0 (complete) or 1
(partial).

A command reading a mounted filesystem starts again from the beginning (a
fresh superblock) when tree blocks change under it, up to
``RACE_ATTEMPTS`` times; its last attempt gives a partial result naming the
blocks (``volumes.mounted``).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from ..errors import BtrfsScanError, ConcurrentWriteError
from ..volumes.mounted import RACE_ATTEMPTS, RETRY_ON_RACE
from .contract import CONTRACTS
from .destination import OutputError, check_output, open_output
from .document import CommandOutput
from .renderers import DEFAULT_FORMAT, RENDERERS, formats_for, render
from .units import one_line

if TYPE_CHECKING:
    from ..model.filesystem import Filesystem
    from .progress import ProgressBar

SAMPLE_IMAGE = "sample.img.xz"
EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2
_OPTIONS = "btrfsscan.output"


class StrictError(BtrfsScanError):
    """Warnings were raised while ``--strict`` was given."""


def silence_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that is gone (or a full disk) is dropped
    quietly instead of failing again when Python exits."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def warn(message: str) -> None:
    """One ``warning: ...`` line on stderr."""
    click.echo(f"warning: {one_line(message)}", err=True)


def note(message: str) -> None:
    """One ``note: ...`` line on stderr: a remark on the result that does not make it partial."""
    click.echo(f"note: {one_line(message)}", err=True)


def error(message: str) -> None:
    """One line on stderr, as is (the caller adds the ``btrfsscan: error:`` prefix)."""
    click.echo(one_line(message), err=True)


# --- arguments ----------------------------------------------------------------------


class NumberType(click.ParamType):
    """A click parameter taking decimal or ``0x`` hex numbers."""

    name = "number"

    def convert(self, value: Any, param, ctx) -> int:
        from ..analysis.refs import parse_number

        if isinstance(value, int):
            return value
        try:
            return parse_number(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


NUMBER = NumberType()

#: IMAGE... arguments: plain strings; opening them reports a directory or a
#: missing file as one error line, not a usage message.
images_argument = click.argument("images", nargs=-1, metavar="IMAGE...")

_AFTER_DASHES = "btrfsscan.after_dashes"

#: How ``ls`` and ``map`` read IMAGE... [PATH], for their help: a rule on the command line alone.
PATH_RULE = """The meaning of the arguments never depends on which files exist on this
machine: with two or more arguments the last is the PATH in the image
(with --sample, the only argument is); `--` ends the images explicitly, so
`IMAGE... -- PATH` names the path and `IMAGE... --` gives none (a
filesystem of several devices: `ls DEV1 DEV2 --`, or `/` as PATH)."""


class ImagesThenPath(click.Command):
    """A command taking ``IMAGE... [PATH]``: it remembers how many arguments followed ``--`` (click drops the
    ``--`` itself), for ``images_and_path``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {name for p in self.params if isinstance(p, click.Option) and not p.is_flag and not p.count
                       for name in p.opts + p.secondary_opts}
        marker = next((n for n, a in enumerate(args) if a == "--" and (n == 0 or args[n - 1] not in takes_value)),
                      None)
        if marker is not None:
            ctx.meta[_AFTER_DASHES] = len(args) - marker - 1
        return super().parse_args(ctx, args)


#: Whether a command's IMAGE... arguments end with a PATH (``images_and_path``).
PATH_REQUIRED, PATH_OPTIONAL, NO_PATH = "required", "optional", "none"


def images_and_path(args: tuple[str, ...], sample: bool, path: str) -> tuple[tuple[str, ...], str | None]:
    """Split ``IMAGE... [PATH]`` by ``PATH_RULE`` (``path``: ``PATH_REQUIRED``, ``PATH_OPTIONAL`` or
    ``NO_PATH``, when every argument is an image): the images and the PATH in the image (None: none)."""
    after = click.get_current_context().meta.get(_AFTER_DASHES)
    if after is not None:
        images, rest = args[:len(args) - after], args[len(args) - after:]
        if len(rest) > (0 if path == NO_PATH else 1):
            raise click.UsageError(f"give at most one PATH after --, not {len(rest)}" if path != NO_PATH
                                   else "give no PATH with --inode")
        found = rest[0] if rest else None
    elif path == NO_PATH:
        images, found = args, None
    elif sample:
        if len(args) > 1:
            raise click.UsageError("with --sample give at most one argument, the PATH")
        images, found = (), (args[0] if args else None)
    elif len(args) >= 2:
        images, found = args[:-1], args[-1]
    else:
        images, found = args, None
    if found is None and path == PATH_REQUIRED:
        raise click.UsageError("give IMAGE... PATH: the last argument is the file's path in the image "
                               "(or --inode SUBVOL:INO instead of PATH)")
    return images, found


def path_hint(error: BtrfsScanError) -> BtrfsScanError:
    """``error`` (a PATH not found in the image) with the rule recalled when the PATH was the last of several
    arguments, not given after ``--``: the user may have meant it as one more image."""
    if click.get_current_context().meta.get(_AFTER_DASHES) is not None:
        return error
    return type(error)(f"{error}; with several arguments the last is the PATH in the image: end the images "
                       "with -- to give none")


#: ``--sample``: the bundled sample image instead of IMAGE arguments.
sample_option = click.option("--sample", is_flag=True, help="Use the bundled sample image instead of IMAGE arguments.")

#: ``--no-log-replay``, for the commands that read file trees: the last committed transaction, without the
#: fsync'd changes of the log tree (passed on as ``log_replay``).
log_replay_option = click.option(
    "--no-log-replay", "log_replay", flag_value=False, default=True,
    help="Do not replay the log tree (changes fsync'd after the last commit): show the last committed transaction.")


@dataclass(frozen=True)
class OutputOptions:
    """How a command's result is written: format, target file (None: stdout), strictness;
    ``chosen``: the format was given (``--json`` or ``--format``)."""

    fmt: str
    target: str | None
    strict: bool
    chosen: bool = False
    wide: bool = False


def _restarting(run: Callable[[], Any]) -> Any:
    """``run()``, started again when a mounted filesystem's tree blocks change under it (up to
    ``RACE_ATTEMPTS`` times in all; on the last attempt such blocks are skipped with warnings instead)."""
    for _ in range(RACE_ATTEMPTS - 1):
        token = RETRY_ON_RACE.set(True)
        try:
            return run()
        except ConcurrentWriteError:
            continue
        finally:
            RETRY_ON_RACE.reset(token)
    return run()


def output_options(kind: str, *, images: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--json``, ``--format`` (the formats that serve ``kind``), ``--output``/``-o``, ``--strict`` and, for a
    command reading images (``images``), ``--super-copy`` (given to it as its ``super_copy`` argument)."""
    formats = formats_for(kind)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def command(*args: Any, as_json: bool, fmt: str | None, output_file: str | None, strict: bool, wide: bool,
                    **kwargs: Any):
            ctx = click.get_current_context()
            if as_json and fmt not in (None, "json"):
                raise click.UsageError(f"--json and --format {fmt} conflict: give one of them")
            group_strict = isinstance(ctx.find_root().obj, Settings) and ctx.find_root().obj.strict
            ctx.meta[_OPTIONS] = OutputOptions("json" if as_json else (fmt or DEFAULT_FORMAT), output_file,
                                               strict or group_strict, bool(as_json or fmt), wide)
            return _restarting(lambda: fn(*args, **kwargs))

        described = "; ".join(f"{name}: {RENDERERS[name].description}" for name in formats)
        if images:
            command = click.option("--super-copy", "-s", "super_copy", type=click.IntRange(0, 2), default=None,
                                   metavar="N",
                                   help="Read superblock copy N (0 primary, 1 at 64 MiB, 2 at 256 GiB) of every "
                                        "device, as btrfs-progs' -s N; default: the primary, as the kernel mounts "
                                        "it.")(command)
        command = click.option("--strict", is_flag=True, help="Treat every warning as an error (exit 2).")(command)
        command = click.option("--wide", is_flag=True,
                               help="Tables at their full width: no column left out, no path shortened "
                                    "(default: fit the terminal; unlimited when there is none).")(command)
        command = click.option("--output", "-o", "output_file", type=click.Path(dir_okay=False), default=None,
                               help="Write the result to FILE instead of stdout (never over an input; "
                                    "replaced only once complete).")(command)
        command = click.option("--format", "fmt", type=click.Choice(formats), default=None,
                               help=f"Output format (default: {DEFAULT_FORMAT}; --json is --format json). "
                                    f"{described}.")(command)
        return click.option("--json", "as_json", is_flag=True, help=CONTRACTS[kind].json_help())(command)

    return decorate


@dataclass
class Settings:
    """Options of the ``btrfsscan`` group that apply to every command."""

    strict: bool = False


def options() -> OutputOptions:
    """The output options of the running command."""
    return click.get_current_context().meta.get(_OPTIONS, OutputOptions(DEFAULT_FORMAT, None, False))


def output_alias(option: str, fmt: str, target: str) -> None:
    """A command's shorthand ``OPTION FILE`` for ``--format FMT -o FILE`` (``report --html FILE``); a usage
    error together with either of them."""
    ctx = click.get_current_context()
    opts = options()
    if opts.chosen or opts.target:
        raise click.UsageError(f"{option} FILE is --format {fmt} -o FILE: give it without --json, --format or -o")
    ctx.meta[_OPTIONS] = OutputOptions(fmt, target, opts.strict, True)


def progress_bar(quiet: bool, *, streamed: bool = False) -> ProgressBar | None:
    """The progress bar on stderr, only when that is a terminal (rich is imported only then); ``streamed``: the
    result is written while the bar would run, so not when it goes to a terminal too."""
    if quiet or not sys.stderr.isatty() or (streamed and not options().target and sys.stdout.isatty()):
        return None
    from .progress import ProgressBar

    return ProgressBar()


# --- inputs -------------------------------------------------------------------------


def _sample_path(stack: ExitStack) -> str:
    from importlib import resources

    ref = resources.files("btrfsscan").joinpath("data", SAMPLE_IMAGE)
    if not ref.is_file():
        raise BtrfsScanError(
            f"the bundled sample image btrfsscan/data/{SAMPLE_IMAGE} is not installed with this copy of btrfsscan"
        )
    return str(stack.enter_context(resources.as_file(ref)))


def inputs(stack: ExitStack, images: tuple[str, ...], sample: bool | None = None) -> list[str]:
    """The paths of the images to read (``sample``: the bundled one; None: the command has no --sample);
    the output format's requirements and a ``-o`` target (against the images) are checked here, before
    anything is read."""
    if sample:
        if images:
            raise click.UsageError("give either IMAGE arguments or --sample, not both")
        paths = [_sample_path(stack)]
    elif not images:
        raise click.UsageError("give at least one IMAGE" + (" (or --sample)" if sample is not None else ""))
    else:
        paths = list(images)
    RENDERERS[options().fmt].check()
    target = options().target
    if target:
        check_output(target, paths)
    return paths


@contextmanager
def opened(paths: list[str], super_copy: int | None = None, *, log_replay: bool = True) -> Iterator[Filesystem]:
    """The filesystem of ``paths`` (read from superblock copy ``super_copy``), closed at the end of the block
    (``log_replay``: see ``Filesystem``)."""
    from ..model.filesystem import open_filesystem

    fs = open_filesystem(paths, super_copy=super_copy, log_replay=log_replay)
    try:
        yield fs
    finally:
        fs.close()


# --- the output pipeline --------------------------------------------------------------


def _strict_error(messages: list[str]) -> StrictError:
    """The warnings on stderr, and the error ``--strict`` ends with."""
    for message in messages:
        warn(message)
    return StrictError(f"{len(messages)} warning(s) and --strict was given; no result written")


def _write(target: str | None, write: Callable[[IO[str]], None]) -> None:
    """``write(stream)`` to the ``-o`` target (replaced only once complete) or to stdout."""
    if target:
        with open_output(target) as stream:
            write(stream)
        return
    try:
        write(sys.stdout)
        sys.stdout.flush()  # a closed pipe or a full disk shows here, inside the CLI's handlers
    except BrokenPipeError:
        raise
    except OSError as exc:
        silence_stdout()
        raise OutputError(f"cannot write the result to stdout: {exc.strerror or exc}") from None


def finish(output: CommandOutput) -> NoReturn:
    """Write ``output`` as the options say (or raise the strict error) and leave with the exit code.

    A streamed output (``CommandOutput.streamed``) is written as it is made;
    with ``--strict`` it is made into a temporary file first and copied to
    its target only when no warning came, so nothing is written then either.
    """
    opts = options()
    output = replace(output, wide=opts.wide)
    if opts.strict and output.streamed:
        with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
            render(opts.fmt, output, spool)
            messages = list(output.all_warnings())
            if messages:
                raise _strict_error(messages)
            spool.seek(0)
            _write(opts.target, lambda stream: shutil.copyfileobj(spool, stream))
    else:
        if opts.strict and output.warnings:
            raise _strict_error(list(output.warnings))
        _write(opts.target, lambda stream: render(opts.fmt, output, stream))
        messages = list(output.all_warnings())
    for message in output.notes:
        note(message)
    for message in messages:
        warn(message)
    click.get_current_context().exit(EXIT_PARTIAL if messages else EXIT_OK)
