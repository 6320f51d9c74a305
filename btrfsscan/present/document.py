"""The format-neutral description of what a command shows, btrfs-progs' way: one row spec per record.

A ``Field`` names a value once: its JSON key, its table label, how to get
the raw value from a result object (``get``), how to show it (``show`` from
the raw value, or ``text`` from the object when the display needs more), how
to write it in JSON (``encode``; nested ``fields`` for an object, a list of
them, or a dict of them by ``key_of``). A field without a label is JSON
only; one with ``json=False`` is for tables only. ``fit`` and ``drop`` say
how its table column gives way on a narrow output (see ``KEEP``). ``Section``s of records
made under one spec make a ``Document``; a ``CommandOutput`` is what every
command hands to the renderers (``btrfsscan.present.renderers``): the JSON
document and the tables come from the same cells, so they cannot drift
apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..names import name_base64, name_text, name_texts, names_base64
from .contract import schema_version
from .units import plain, printable

#: How nested fields apply to a field's raw value.
ONE, LIST, KEYED = "one", "list", "keyed"

#: How a table cell gives way when its table is wider than the output (``Field.fit``): ``KEEP`` never
#: (numbers, sizes, uuids, model names: split, they could be misread), ``MIDDLE`` shortened in the middle
#: with an ellipsis (paths: both ends say most), ``WRAP`` wrapped at spaces (sentences, lists).
KEEP, MIDDLE, WRAP = "keep", "middle", "wrap"


@dataclass(frozen=True)
class Field:
    """One value of a record: JSON key, table label (None: JSON only), raw getter, display, JSON form."""

    key: str
    label: str | None
    get: Callable[[Any], Any]
    show: Callable[[Any], str] = plain
    text: Callable[[Any], str] | None = None
    json: bool = True
    detail: bool = False  # shown only when the command is asked for every field
    encode: Callable[[Any], Any] | None = None
    fields: tuple[Field, ...] = ()
    each: str = ONE
    key_of: Callable[[Any], str] | None = None
    fit: str = KEEP
    drop: int = 0  # tables: 0 always shown; else left out when the table is too wide, the highest first
    optional: bool = False  # JSON: the key is left out when its value is None
    encode_all: Callable[[list[Any]], list[Any]] | None = None  # ``encode`` of many values at once (streams)

    def cell(self, obj: Any) -> Cell:
        return Cell(self, self.get(obj), obj)

    def to_json(self, raw: Any) -> Any:
        if self.fields:
            if raw is None:
                return None
            if self.each == LIST:
                return [json_record(self.fields, item) for item in raw]
            if self.each == KEYED:
                return {self.key_of(item): json_record(self.fields, item) for item in raw}
            return json_record(self.fields, raw)
        return self.encode(raw) if self.encode else raw


def json_record(fields: Sequence[Field], obj: Any) -> dict[str, Any]:
    """``obj`` as a JSON object under ``fields`` (their JSON fields, in spec order)."""
    return _json_object((f, f.get(obj)) for f in fields)


def _json_object(values: Iterable[tuple[Field, Any]]) -> dict[str, Any]:
    out = {}
    for f, raw in values:
        if f.json:
            value = f.to_json(raw)
            if value is not None or not f.optional:
                out[f.key] = value
    return out


def name_fields(key: str, label: str | None, get: Callable[[Any], Any], **table: Any) -> tuple[Field, Field]:
    """A name or path (bytes on disk): valid UTF-8 text in JSON (U+FFFD for bytes that are not UTF-8) with the
    exact bytes in ``{key}_bytes`` (base64) whenever the text is not exactly them; escaped in tables."""
    return (Field(key, label, get, show=printable, encode=name_text, encode_all=name_texts, **table),
            Field(f"{key}_bytes", None, get, encode=name_base64, encode_all=names_base64, optional=True))


@dataclass(frozen=True)
class Cell:
    """A field's raw value in one record; its table text is made when a table asks for it (JSON never
    does: a large nested value is never turned into text)."""

    field: Field
    raw: Any
    obj: Any  # the record's object, for ``Field.text``

    @cached_property
    def text(self) -> str:
        return self.field.text(self.obj) if self.field.text else self.field.show(self.raw)

    @property
    def key(self) -> str:
        return self.field.key


@dataclass(frozen=True)
class Record:
    """One described object: a cell per field of its spec, in spec order."""

    cells: tuple[Cell, ...]

    def json(self) -> dict[str, Any]:
        return _json_object((c.field, c.raw) for c in self.cells)


def selected(fields: Sequence[Field], detail: bool = False) -> tuple[Field, ...]:
    return tuple(f for f in fields if detail or not f.detail)


@dataclass(frozen=True)
class Section:
    """A titled group of records sharing one spec.

    ``key`` is the section's JSON key (None: its single record's fields go to
    the top level of the document); ``many`` makes it a JSON list, else one
    object. ``layout`` is ``"rows"`` (a row per record, a column per labelled
    field, in ``columns`` order when given), ``"fields"`` (a row per field, a
    column per record, headed by ``headers``), ``"lines"`` (each record's
    first cell as a line under the title, the section left out when empty) or
    ``"tree"`` (as ``"rows"``, each record shown under the record its
    ``parent`` field indexes, None: a top node; records depth first).
    ``json=False`` keeps it out of the JSON document, ``table=False`` out of
    the tables.

    A *streamed* section (``streamed_section``) has no ``records`` but a
    ``stream`` of lists of objects described by ``fields``, made while they
    are written (a listing of millions of entries is never held): a JSON list
    written one object a line, a table whose column widths (``widths``, by
    field key: the widest text each column can have; the last column needs
    none) are known before its first row, ended by the line ``tally`` makes of
    the number of records.
    """

    key: str | None
    title: str
    fields: tuple[Field, ...]
    records: tuple[Record, ...]
    many: bool = True
    layout: str = "rows"
    headers: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    json: bool = True
    table: bool = True
    stream: Iterable[Any] | None = None
    widths: Mapping[str, int] | None = None
    tally: Callable[[int], str] | None = None

    def json_value(self) -> Any:
        if self.stream is not None:
            return [json_record(self.fields, obj) for batch in self.stream for obj in batch]
        if self.many:
            return [record.json() for record in self.records]
        return self.records[0].json() if self.records else None

    def table_fields(self) -> tuple[Field, ...]:
        labelled = [f for f in self.fields if f.label is not None]
        if self.columns is None:
            return tuple(labelled)
        by_key = {f.key: f for f in labelled}
        return tuple(by_key[key] for key in self.columns if key in by_key)


def section(key: str | None, title: str, fields: Sequence[Field], objects: Iterable[Any], *, detail: bool = False,
            many: bool = True, layout: str = "rows", headers: Sequence[str] = (), columns: Sequence[str] | None = None,
            json: bool = True, table: bool = True) -> Section:
    """The section of ``objects`` under ``fields`` (``detail``: the detail fields too)."""
    chosen = selected(fields, detail)
    records = tuple(Record(tuple(f.cell(obj) for f in chosen)) for obj in objects)
    return Section(key, title, chosen, records, many, layout, tuple(headers),
                   tuple(columns) if columns is not None else None, json, table)


def streamed_section(key: str, title: str, fields: Sequence[Field], batches: Iterable[list[Any]], *,
                     widths: Mapping[str, int], tally: Callable[[int], str],
                     columns: Sequence[str] | None = None) -> Section:
    """A section of the objects of ``batches`` under ``fields``, written as they are made (``Section``:
    streamed)."""
    return Section(key, title, selected(fields), (), columns=tuple(columns) if columns is not None else None,
                   stream=batches, widths=dict(widths), tally=tally)


@dataclass(frozen=True)
class Document:
    """What one command shows about one thing: sentences, then sections in display order.

    ``kind`` names the command (a renderer may render only some kinds);
    ``subject`` is the result object the sections describe.
    """

    kind: str
    sections: tuple[Section, ...]
    summary: tuple[str, ...] = ()
    subject: Any = None

    def json_parts(self) -> list[tuple[str, Any]]:
        """The JSON document's keys and values in order: ``schema_version`` first (from
        ``contract.CONTRACTS``), then the sections; a streamed section stands as itself (written as made)."""
        out: list[tuple[str, Any]] = [("schema_version", schema_version(self.kind))]
        for sec in self.sections:
            if not sec.json:
                continue
            if sec.key is None:
                if sec.records:
                    out.extend(sec.records[0].json().items())
            else:
                out.append((sec.key, sec if sec.stream is not None else sec.json_value()))
        return out

    def json(self) -> dict[str, Any]:
        """The JSON document (a streamed section's records all made and held: for small outputs and tests)."""
        return {key: value.json_value() if isinstance(value, Section) else value for key, value in self.json_parts()}


@dataclass(frozen=True)
class CommandOutput:
    """What a command hands to the output pipeline: its documents, the warnings and the notes of the run.

    ``notes``: remarks on what is shown that do not make it partial (a log
    tree replayed, or left out); ``note: ...`` lines on stderr.

    ``stream``: the command reports several things (one filesystem each);
    JSON is then one compact document per line. ``wide``: tables at their
    full width, whatever the output's (``--wide``; ``finish`` sets it).
    ``late_warnings``: for documents with a streamed section, the run's
    warnings, complete only once its records have been made
    (``all_warnings``).
    """

    kind: str
    documents: tuple[Document, ...]
    warnings: tuple[str, ...] = ()
    stream: bool = False
    notes: tuple[str, ...] = ()
    wide: bool = False
    late_warnings: Callable[[], Sequence[str]] | None = None

    @property
    def streamed(self) -> bool:
        """Some section is made while it is written (its warnings are known only after)."""
        return any(sec.stream is not None for doc in self.documents for sec in doc.sections)

    def all_warnings(self) -> tuple[str, ...]:
        """The run's warnings: for a streamed output, ask once it has been written."""
        return tuple(self.warnings) + (tuple(self.late_warnings()) if self.late_warnings else ())
