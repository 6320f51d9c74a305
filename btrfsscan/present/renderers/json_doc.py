"""JSON: each document as JSON (``CommandOutput.stream``: one compact document per line).

A document whose spec does not place ``warnings`` itself ends with the run's
``warnings`` and ``partial``, and its ``notes`` when the run has any (a log
tree replayed or left out).

A streamed section (``document.streamed_section``) is written as its records
are made, one compact object a line inside the indented document, a batch
at a time: still one JSON document, never held whole. Its warnings are
asked for once it is written, so they come after it.

The output is always valid UTF-8: names are given as text by their fields
(``document.name_fields``); any other string still holding a byte that is not
UTF-8 (surrogate-escaped, as the model carries names) shows it as U+FFFD.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring
from typing import IO, Any

from ..document import CommandOutput, Field, Section, json_record

_INDENT = "    "

#: A string as JSON text, non-ASCII kept (what ``json.dumps(ensure_ascii=False)`` does to a string; C).
_quote = encode_basestring


def valid_utf8(text: str) -> str:
    """``text`` with every surrogate-escaped byte as U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _column(field: Field, batch: list[Any]) -> tuple[list[Any], str]:
    """One field of every record of ``batch``, and its conversion in the record's template: ints as they are
    (``%d``), anything else as JSON text (``%s``: strings by the C escaper, the rest by ``json.dumps``); an
    optional field left out is the empty string, one that is there brings its key."""
    values = list(map(field.get, batch))
    if field.fields:
        values = list(map(field.to_json, values))
    elif field.encode_all:
        values = field.encode_all(values)
    elif field.encode:
        values = list(map(field.encode, values))
    kinds = set(map(type, values))
    if kinds <= {int} and not field.optional:
        return values, "%d"
    if field.optional:
        head = f", {_quote(field.key)}: "
        return ["" if v is None else head + _dumps(v) for v in values], "%s"
    return list(map(_quote if kinds <= {str} else _dumps, values)), "%s"


def _batch_encoder(fields: Sequence[Field]) -> Callable[[list[Any]], list[str]]:
    """The records of a batch as compact JSON objects, made column by column from ``fields``."""
    chosen = [f for f in fields if f.json]
    if not chosen or chosen[0].optional:  # an object's first key must be there: record by record
        return lambda batch: [_dumps(json_record(fields, obj)) for obj in batch]
    keys = [("" if f.optional else f'{", " if n else ""}{_quote(f.key)}: '.replace("%", "%%"))
            for n, f in enumerate(chosen)]

    def encode(batch: list[Any]) -> list[str]:
        columns, template = [], ["{"]
        for key, f in zip(keys, chosen):
            values, conversion = _column(f, batch)
            columns.append(values)
            template.append(key + conversion)
        return list(map("".join(template + ["}"]).__mod__, zip(*columns)))

    return encode


def _write_list(section: Section, stream: IO[str]) -> None:
    """A streamed section's records as a JSON list, one object a line, written a batch at a time."""
    encode = _batch_encoder(section.fields)
    stream.write("[")
    lead = "\n" + _INDENT
    for batch in section.stream:
        if batch:
            stream.write(valid_utf8(lead + (",\n" + _INDENT).join(encode(batch))))
            lead = ",\n" + _INDENT
    stream.write("\n  ]" if lead != "\n" + _INDENT else "]")


def _write_streamed(parts: list[tuple[str, Any]], output: CommandOutput, stream: IO[str]) -> None:
    """One indented document whose streamed sections are written as they are made."""
    stream.write("{")
    for n, (key, value) in enumerate(parts):
        stream.write(("," if n else "") + "\n  " + _quote(key) + ": ")
        if isinstance(value, Section):
            _write_list(value, stream)
        else:
            stream.write(valid_utf8(json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n  ")))
    if "warnings" not in dict(parts):
        for key, value in _closing(output).items():
            stream.write(",\n  " + _quote(key) + ": " + valid_utf8(_dumps(value)))
    stream.write("\n}\n")


def _closing(output: CommandOutput) -> dict[str, Any]:
    """What ends a document that does not place ``warnings`` itself (asked once its records are made)."""
    warnings = output.all_warnings()
    out: dict[str, Any] = {"warnings": list(warnings), "partial": bool(warnings)}
    if output.notes:
        out["notes"] = list(output.notes)
    return out


def render(output: CommandOutput, stream: IO[str]) -> None:
    for document in output.documents:
        parts = document.json_parts()
        if not output.stream and any(isinstance(value, Section) for _, value in parts):
            _write_streamed(parts, output, stream)
            continue
        payload = document.json()
        if "warnings" not in payload:
            payload.update(_closing(output))
        text = json.dumps(payload, ensure_ascii=False, indent=None if output.stream else 2)
        stream.write(valid_utf8(text) + "\n")
    stream.flush()
