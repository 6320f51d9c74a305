"""The format-neutral description of what a command shows, btrfs-progs' way: one row spec per record.

A ``Field`` names a value once: its JSON key, its table label, how to get
the raw value from a result object (``get``), how to show it (``show`` from
the raw value, or ``text`` from the object when the display needs more), how
to write it in JSON (``encode``; nested ``fields`` for an object, a list of
them, or a dict of them by ``key_of``). A field without a label is JSON
only; one with ``json=False`` is for tables only. ``Section``s of records
made under one spec make a ``Document``; a ``CommandOutput`` is what every
command hands to the renderers (``btrfsscan.present.renderers``): the JSON
document and the tables come from the same cells, so they cannot drift
apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .units import plain

#: How nested fields apply to a field's raw value.
ONE, LIST, KEYED = "one", "list", "keyed"


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

    def cell(self, obj: Any) -> Cell:
        raw = self.get(obj)
        return Cell(self, raw, self.text(obj) if self.text else self.show(raw))

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
    return {f.key: f.to_json(f.get(obj)) for f in fields if f.json}


@dataclass(frozen=True)
class Cell:
    field: Field
    raw: Any
    text: str

    @property
    def key(self) -> str:
        return self.field.key


@dataclass(frozen=True)
class Record:
    """One described object: a cell per field of its spec, in spec order."""

    cells: tuple[Cell, ...]

    def json(self) -> dict[str, Any]:
        return {c.key: c.field.to_json(c.raw) for c in self.cells if c.field.json}


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

    def json_value(self) -> Any:
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

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for sec in self.sections:
            if not sec.json:
                continue
            if sec.key is None:
                if sec.records:
                    out.update(sec.records[0].json())
            else:
                out[sec.key] = sec.json_value()
        return out


@dataclass(frozen=True)
class CommandOutput:
    """What a command hands to the output pipeline: its documents, the warnings and the notes of the run.

    ``notes``: remarks on what is shown that do not make it partial (a log
    tree replayed, or left out); ``note: ...`` lines on stderr.

    ``stream``: the command reports several things (one filesystem each);
    JSON is then one compact document per line.
    """

    kind: str
    documents: tuple[Document, ...]
    warnings: tuple[str, ...] = ()
    stream: bool = False
    notes: tuple[str, ...] = ()
