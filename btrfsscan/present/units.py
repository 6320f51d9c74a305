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


_NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def _escaped(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    if "\udc80" <= ch <= "\udcff":  # a byte that is not UTF-8 (surrogate-escaped): as ``ls -b`` shows it
        return f"\\x{ord(ch) - 0xDC00:02x}"
    if ch.isprintable():
        return ch
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def printable(text: Any) -> str:
    """``text`` safe for a terminal, the one display of names in every table (``ls -b``'s escapes): control
    characters, backslashes and bytes that are not UTF-8 escaped (``\\n``, ``\\\\``, ``\\xff``), quoted
    (``'trail '``, a quote in it as ``\\'``) when it starts or ends with white space; None is ``-``."""
    if text is None:
        return "-"
    text = str(text)
    # the one printable character escaped is the backslash: text without it that is all printable is as is
    shown = text if text.isprintable() and "\\" not in text else "".join(_escaped(ch) for ch in text)
    if text != text.strip():
        return "'" + shown.replace("'", "\\'") + "'"
    return shown


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


def with_copies(name: str, copies: int) -> str:
    """A top file's name and how many more subvolumes hold it unchanged (``+ 2 snapshot copies``)."""
    return name if not copies else f"{name} + {copies} snapshot cop{'y' if copies == 1 else 'ies'}"
