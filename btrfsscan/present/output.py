"""Shared output helpers of the CLI: JSON, rich tables, warnings, numbers.

Streams are kept apart: results go to stdout (JSON, or rich tables), every
warning and error to stderr, so ``--json`` output can always be piped into a
JSON parser.  Rendering is driven by the ``Report``/``Section``/``Record``
values of :mod:`btrfsscan.present.describe`; this module knows nothing about
btrfs.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import click

_SURROGATES = re.compile("[\udc80-\udcff]")
_IEC_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


# --- numbers --------------------------------------------------------------------


def format_size(value: int) -> str:
    """``value`` bytes in IEC units with two decimals, as btrfs-progs prints them (``128.00MiB``)."""
    size = float(value)
    unit = 0
    while abs(size) >= 1024 and unit < len(_IEC_UNITS) - 1:
        size /= 1024
        unit += 1
    return f"{size:.2f}{_IEC_UNITS[unit]}"


def parse_number(text: str) -> int:
    """A non-negative integer written in decimal or as ``0x`` hex; ValueError otherwise."""
    cleaned = text.strip().replace("_", "")
    if not cleaned or cleaned.startswith(("-", "+")):
        raise ValueError(f"{text!r} is not a non-negative number")
    try:
        if cleaned[:2].lower() == "0x":
            return int(cleaned[2:], 16)
        return int(cleaned, 10)
    except ValueError:
        raise ValueError(f"{text!r} is not a number (decimal or 0x hex)") from None


class NumberType(click.ParamType):
    """A click parameter taking decimal or ``0x`` hex numbers."""

    name = "number"

    def convert(self, value: Any, param, ctx) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_number(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


NUMBER = NumberType()


# --- streams --------------------------------------------------------------------


def one_line(text: object) -> str:
    """``text`` squeezed onto one line (messages must never span lines), every other control character
    shown escaped (``\\x1b``): a name from the input or the command line cannot garble the terminal, nor
    be silently stripped."""
    return printable(" ".join(str(text).split()))


def printable(text: str) -> str:
    """Control characters escaped, so a label cannot garble the terminal; a name's bytes that are not UTF-8
    (decoded with ``surrogateescape``) shown as ``\\xNN``."""
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # one byte that is not UTF-8, from surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return ch.encode("unicode_escape").decode("ascii")


def json_safe(text: str) -> str:
    """JSON text with every byte that is not UTF-8 (a lone surrogate) written as the six characters ``\\xNN``
    (an escaped backslash and ``xNN``): the document stays valid UTF-8 and the byte stays visible."""
    return _SURROGATES.sub(lambda m: "\\\\" + _escape(m.group())[1:], text)


def warn(message: str) -> None:
    """One ``warning: ...`` line on stderr."""
    click.echo(f"warning: {one_line(message)}", err=True)


def error(message: str) -> None:
    """One line on stderr, as is (the caller adds the ``btrfsscan: error:`` prefix)."""
    click.echo(one_line(message), err=True)


def write_json(payload: Any) -> None:
    """``payload`` as indented JSON on stdout, nothing else."""
    sys.stdout.write(json_safe(json.dumps(payload, indent=2, ensure_ascii=False)) + "\n")
    sys.stdout.flush()


def make_console():
    """A rich console on stdout; plain (no colour) and wide when stdout is not a terminal."""
    from rich.console import Console

    width = None
    if not sys.stdout.isatty():
        width = int(os.environ.get("COLUMNS", "0") or 0) or 160
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width, emoji=False)


# --- tables ---------------------------------------------------------------------


def _is_number(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


def render_report(report, console=None) -> None:
    """Every section of ``report`` (a describe.Report) as rich tables on stdout."""
    console = console or make_console()
    first = True
    for section in report.sections:
        if not section.table:
            continue
        if not first:
            console.print()
        first = False
        console.print(render_section(section))


def render_section(section):
    """One describe.Section as a rich renderable.

    ``layout == "fields"``: one row per field, one value column per record
    (a single record gives a label/value table); ``layout == "rows"``: one
    column per field, one row per record.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    title = Text(section.title, style="bold")
    if section.layout == "fields":
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_header=len(section.headers) > 0)
        table.add_column(Text("field"), style="bold", no_wrap=True)
        headers = section.headers or ("value",) * max(len(section.records), 1)
        for header in headers:
            table.add_column(Text(header), overflow="fold")
        if section.records:
            for index, cell in enumerate(section.records[0].cells):
                table.add_row(Text(cell.label), *(Text(record.cells[index].text) for record in section.records))
        return table
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    numeric = [
        bool(section.records) and all(_is_number(record.cells[i].raw) or record.cells[i].raw is None for record in section.records)
        for i in range(len(section.columns))
    ]
    for label, is_num in zip(section.columns, numeric):
        table.add_column(Text(label), justify="right" if is_num else "left", overflow="fold")
    for record in section.records:
        table.add_row(*(Text(cell.text) for cell in record.cells))
    if not section.records:
        table.caption = Text("(none)")
    return table


# --- options every command shares ------------------------------------------------

#: IMAGE... arguments: plain strings; opening them reports a directory or a
#: missing file as one error line, not a usage message.
images_argument = click.argument("images", nargs=-1, metavar="IMAGE...")

#: ``--sample``: the bundled sample image instead of IMAGE arguments.
sample_option = click.option("--sample", is_flag=True, help="Use the bundled sample image instead of IMAGE arguments.")


#: Where ``--super-copy`` keeps its value: ``ctx.meta`` is shared by every context of one invocation.
SUPER_COPY_META = "btrfsscan.super_copy"


def _keep_super_copy(ctx: click.Context, _param, value: int | None) -> int | None:
    ctx.meta[SUPER_COPY_META] = value
    return value


def _restart_on_race(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command again from the start (a fresh superblock) when a mounted filesystem's blocks change
    under it, up to ``RACE_ATTEMPTS`` times; the last run gives a partial result instead."""
    from ..errors import ConcurrentWriteError
    from ..volumes.mounted import RACE_ATTEMPTS, RETRY_ON_RACE

    @functools.wraps(fn)
    def run(*args, **kwargs):
        for attempt in range(1, RACE_ATTEMPTS + 1):
            token = RETRY_ON_RACE.set(attempt < RACE_ATTEMPTS)
            try:
                return fn(*args, **kwargs)
            except ConcurrentWriteError:
                if attempt == RACE_ATTEMPTS:
                    raise
            finally:
                RETRY_ON_RACE.reset(token)

    return run


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``, ``--strict`` and ``--super-copy``, shared by every command that opens images.

    ``--super-copy`` reaches the opening of the images through ``ctx.meta``
    (``cli.super_copy``), not as a parameter of every command.
    """
    fn = _restart_on_race(fn)
    fn = click.option("--super-copy", "-s", type=click.IntRange(0, 2), default=None, expose_value=False,
                      callback=_keep_super_copy, metavar="N",
                      help="Read superblock copy N (0 primary, 1 at 64 MiB, 2 at 256 GiB) of every device, "
                           "as btrfs-progs' -s N; default: the primary, as the kernel mounts it.")(fn)
    fn = click.option("--strict", is_flag=True, help="Treat every warning as an error (exit 2).")(fn)
    return click.option("--json", "as_json", is_flag=True, help="Write one JSON document to stdout, nothing else.")(fn)
