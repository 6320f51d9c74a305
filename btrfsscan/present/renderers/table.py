"""Rich tables: a document's summary sentences, then every table section (rich is imported here only).

``layout == "fields"``: one row per field, one value column per record (a
single record gives a label/value table); ``"rows"``: one column per field,
one row per record, numbers right-aligned; ``"lines"``: a bold title and
one indented line per record, left out when there are none; ``"tree"``: as
``"rows"``, the first column's names behind tree guides, each record under
the one its ``parent`` cell indexes.
"""

from __future__ import annotations

import os
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..document import CommandOutput, Section


def make_console(stream: IO[str], width: int | None = None) -> Console:
    """A rich console on ``stream``; plain (no colour) and wide when it is not a terminal."""
    if width is None and not stream.isatty():
        width = int(os.environ.get("COLUMNS", "0") or 0) or 160
    return Console(file=stream, highlight=False, soft_wrap=False, width=width, emoji=False,
                   color_system=None if not stream.isatty() else "auto")


def _is_number(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


def _tree_names(section: Section, name: str, at: dict[str, int]) -> list[str]:
    """Each record's name behind tree guides (``├── ``, ``│   ``) showing it under its ``parent`` record."""
    children: dict[int | None, list[int]] = {}
    for n, record in enumerate(section.records):
        children.setdefault(record.cells[at["parent"]].raw, []).append(n)
    names = [""] * len(section.records)
    stack = [(n, "", False) for n in reversed(children.get(None, []))]
    while stack:  # depth first, in record order
        n, lead, nested = stack.pop()
        kids = children.get(n, [])
        names[n] = lead + section.records[n].cells[at[name]].text
        for k, child in reversed(list(enumerate(kids))):
            last = k == len(kids) - 1
            inner = lead.replace("├── ", "│   ").replace("└── ", "    ")
            stack.append((child, inner + ("└── " if last else "├── "), True))
    return names


def render_section(section: Section):
    """One section as a rich renderable."""
    fields = section.table_fields()
    # every record has a cell per field of the section's spec, in spec order
    at = {cell.key: n for n, cell in enumerate(section.records[0].cells)} if section.records else {}
    title = Text(section.title, style="bold")
    if section.layout == "lines":
        text = Text(section.title + "\n", style="bold")
        text.append("\n".join(f"  {record.cells[0].text}" for record in section.records), style="none")
        return text
    if section.layout == "fields":
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_header=len(section.headers) > 0)
        table.add_column(Text("field"), style="bold", no_wrap=True)
        for header in section.headers or ("value",) * max(len(section.records), 1):
            table.add_column(Text(header), overflow="fold")
        if section.records:
            for field in fields:
                table.add_row(Text(field.label), *(Text(record.cells[at[field.key]].text) for record in section.records))
        return table
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for field in fields:
        numeric = bool(section.records) and all(
            _is_number(record.cells[at[field.key]].raw) or record.cells[at[field.key]].raw is None for record in section.records)
        table.add_column(Text(field.label), justify="right" if numeric else "left", overflow="fold")
    names = _tree_names(section, fields[0].key, at) if section.layout == "tree" else None
    for n, record in enumerate(section.records):
        cells = [Text(record.cells[at[field.key]].text) for field in fields]
        if names is not None:
            cells[0] = Text(names[n], no_wrap=True)
        table.add_row(*cells)
    if not section.records:
        table.caption = Text("(none)")
    return table


def render(output: CommandOutput, stream: IO[str], width: int | None = None) -> None:
    console = make_console(stream, width)
    for document in output.documents:
        blocks: list[Any] = []
        if document.summary:
            blocks.append(Text("\n".join(document.summary)))
        for section in document.sections:
            if section.table and not (section.layout == "lines" and not section.records):
                blocks.append(render_section(section))
        for n, block in enumerate(blocks):
            if n:
                console.print()
            console.print(block)
