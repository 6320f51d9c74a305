"""How values are shown in tables: sizes, counts, percentages, names that might hold control characters."""

from __future__ import annotations

from typing import Any

_IEC_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def _iec(value: int | float) -> tuple[float, int]:
    size = float(value)
    unit = 0
    while abs(size) >= 1024 and unit < len(_IEC_UNITS) - 1:
        size /= 1024
        unit += 1
    return size, unit


def human_bytes(value: int | float | None, raw: bool = False) -> str:
    """``1.9 GiB`` (one decimal, IEC), ``512 B``: the one size format of every table; ``raw``: the exact
    number of bytes (``2040109465 B``)."""
    if value is None:
        return "-"
    if raw:
        return f"{int(value)} B"
    size, unit = _iec(value)
    return f"{int(size)} B" if unit == 0 else f"{size:.1f} {_IEC_UNITS[unit]}"


def human_count(value: int | float | None, raw: bool = False) -> str:
    """``12,345`` (fractions to one decimal); ``raw``: as is."""
    if value is None:
        return "-"
    if raw:
        return str(value)
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def human_pct(value: float | None, raw: bool = False) -> str:
    """``70.3%``; ``raw``: every digit (``70.29893924783028%``)."""
    if value is None:
        return "-"
    return f"{float(value)!r}%" if raw else f"{value:.1f}%"


def printable(text: Any) -> str:
    """``text`` with control characters escaped (a name cannot garble the terminal); None is ``-``."""
    if text is None:
        return "-"
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))


def plain(raw: Any) -> str:
    """The default display: ``-`` for None, ``yes``/``no`` for booleans, else ``str``."""
    if raw is None:
        return "-"
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    return str(raw)


def one_line(text: object) -> str:
    """``text`` squeezed onto one line (messages must never span lines), every other control character
    shown escaped (``\\x1b``): a name from the input or the command line can neither garble the terminal
    nor be silently stripped."""
    return printable(" ".join(str(text).split()))
