"""Names are bytes on btrfs (and in a live walk): how they become text without losing them.

The model carries a name as ``str`` decoded with ``surrogateescape`` (every
byte string round-trips, a command-line argument compares as is). Text that
leaves the program must be valid UTF-8: undecodable bytes become U+FFFD, and
the exact bytes travel beside as base64 whenever the text is not exactly them.
"""

from __future__ import annotations

import base64
import os


def raw_name(name: str | bytes) -> bytes:
    """The bytes of a name the model carries as surrogate-escaped text."""
    return name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")


def name_text(name: str | bytes | None) -> str | None:
    """``name`` as valid UTF-8 text, bytes that are not UTF-8 as U+FFFD."""
    if isinstance(name, str) and name.isascii():  # the common case, millions of times in a listing
        return name
    return None if name is None else raw_name(name).decode("utf-8", "replace")


def name_base64(name: str | bytes | None) -> str | None:
    """The raw bytes of ``name`` in base64 when :func:`name_text` is not exactly them, else None."""
    if name is None or isinstance(name, str) and name.isascii():
        return None
    raw = raw_name(name)
    return None if name_text(raw).encode("utf-8") == raw else base64.b64encode(raw).decode("ascii")


def name_texts(names: list[str | bytes | None]) -> list[str | None]:
    """:func:`name_text` of each of ``names`` (at once when they are all ASCII text, as most are)."""
    if set(map(type, names)) <= {str} and "".join(names).isascii():
        return names
    return list(map(name_text, names))


def names_base64(names: list[str | bytes | None]) -> list[str | None]:
    """:func:`name_base64` of each of ``names`` (at once when they are all ASCII text, as most are)."""
    if set(map(type, names)) <= {str} and "".join(names).isascii():
        return [None] * len(names)
    return list(map(name_base64, names))


def name_fields(name: str | bytes, key: str = "path") -> dict[str, str]:
    """``{key: text}`` plus ``{key}_bytes`` (base64) when the text is not exactly the raw bytes."""
    out = {key: name_text(name)}
    encoded = name_base64(name)
    if encoded is not None:
        out[f"{key}_bytes"] = encoded
    return out


def argument_name(arg: str) -> str:
    """A path from the command line (decoded by the file-system encoding, undecodable bytes escaped) as the
    model carries names, so that ``bad\\xffname`` typed in any locale finds the entry whose bytes it is."""
    return os.fsencode(arg).decode("utf-8", "surrogateescape")
