"""Rich tables that fit the output's width: a document's summary sentences, then every table section.

``layout == "fields"``: one row per field, one value column per record (a
single record gives a label/value table; records that do not fit side by
side go to further tables); ``"rows"``: one column per field, one row per
record, numbers right-aligned; ``"lines"``: a bold title and one indented
line per record, left out when there are none; ``"tree"``: as ``"rows"``,
the first column's names behind tree guides, each record under the one its
``parent`` cell indexes.

Fitting is driven by the field specs (``Field.fit``, ``Field.drop``): a
``KEEP`` cell (a number, a size, a uuid, a model name) is never split or
shortened; when a table is too wide its columns with the highest ``drop``
go first, then ``MIDDLE`` cells (paths) are shortened in the middle with an
ellipsis and ``WRAP`` cells wrap at spaces. The width is the terminal's
(stdout's, else stderr's, else ``$COLUMNS``), unlimited when there is no
terminal or with ``--wide``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import IO, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..document import MIDDLE, WRAP, CommandOutput, Field, Section

ELLIPSIS = "…"
#: The narrowest a shortened (MIDDLE) or wrapped (WRAP) column becomes before lesser columns are dropped.
MIN_SHORTENED, MIN_WRAPPED = 20, 20
#: An unlimited width, for rich (tables never expand; lines are stripped of trailing blanks).
UNLIMITED = 1 << 16
#: ``render``'s width: the output's (``output_width``).
AUTO = "auto"


class _PipeConsole(Console):
    """A console that lets a closed pipe reach the CLI (rich would exit 1 itself: the code of a partial result)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def output_width(stream: IO[str], wide: bool = False) -> int | None:
    """The width tables must fit: the terminal's (``stream``'s, else stderr's), else ``$COLUMNS``; None: unlimited."""
    if wide:
        return None
    for candidate in (stream, sys.stderr):
        try:
            if candidate.isatty():
                return os.get_terminal_size(candidate.fileno()).columns
        except (AttributeError, OSError, ValueError):
            continue
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def make_console(stream: IO[str], width: int | None) -> Console:
    """A rich console on ``stream`` (``width`` None: unlimited); plain, no colour, when it is not a terminal."""
    tty = stream.isatty()
    return _PipeConsole(file=stream, highlight=False, soft_wrap=False, width=width or UNLIMITED, emoji=False,
                        color_system="auto" if tty else None)


# --- fitting --------------------------------------------------------------------------


def shorten_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells: its start and end around an ellipsis (each line of it)."""
    if "\n" in text:
        return "\n".join(shorten_middle(line, width) for line in text.split("\n"))
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    budget = width - 1
    head, tail = [], []
    used = 0
    front, back = 0, len(text) - 1
    while front <= back:  # take characters alternately from both ends, the front first
        ch = text[front] if len(head) <= len(tail) else text[back]
        if used + cell_len(ch) > budget:
            break
        used += cell_len(ch)
        if len(head) <= len(tail):
            head.append(ch)
            front += 1
        else:
            tail.append(ch)
            back -= 1
    return "".join(head) + ELLIPSIS + "".join(reversed(tail))


def _lines_width(text: str) -> int:
    return max((cell_len(line) for line in text.split("\n")), default=0)


@dataclass(frozen=True)
class _Column:
    field: Field
    natural: int  # the widest cell or the header

    @property
    def minimum(self) -> int:
        header = self.field.label or ""
        if self.field.fit == MIDDLE:
            return min(self.natural, max(cell_len(header), MIN_SHORTENED))
        if self.field.fit == WRAP:
            longest_word = max((cell_len(w) for w in header.split()), default=0)
            return min(self.natural, max(longest_word, MIN_WRAPPED))
        return self.natural

    @property
    def floor(self) -> int:
        """The narrowest this column ever becomes: its header (its longest word when it wraps), or 8."""
        header = self.field.label or ""
        if self.field.fit == MIDDLE:
            return min(self.natural, max(cell_len(header), 8))
        if self.field.fit == WRAP:
            return min(self.natural, max(max((cell_len(w) for w in header.split()), default=0), 8))
        return self.natural


def _overhead(columns: int) -> int:
    """What box.SIMPLE_HEAD with padding 1 adds to the cells' widths: 3 per column and 1."""
    return 3 * columns + 1


def fit_columns(columns: list[_Column], width: int | None) -> dict[int, int]:
    """Which columns to show (by position) and at which width, so that the table fits ``width``."""
    kept = list(range(len(columns)))
    if width is None:
        return {n: columns[n].natural for n in kept}
    while sum(columns[n].minimum for n in kept) + _overhead(len(kept)) > width:
        droppable = [n for n in kept if columns[n].field.drop > 0]
        if not droppable:
            break
        kept.remove(max(reversed(droppable), key=lambda n: columns[n].field.drop))
    widths = {n: columns[n].natural for n in kept}
    excess = sum(widths.values()) + _overhead(len(kept)) - width
    # shrink the columns that may give way, the most elastic first; past their minimum only when nothing
    # else is left to drop
    for floor in (lambda c: c.minimum, lambda c: c.floor):
        for n in sorted(kept, key=lambda n: columns[n].natural - columns[n].minimum, reverse=True):
            if excess <= 0:
                break
            give = max(min(excess, widths[n] - floor(columns[n])), 0)
            widths[n] -= give
            excess -= give
    return widths


def _cell_text(field: Field, text: str, width: int) -> Text:
    if field.fit == MIDDLE:
        return Text(shorten_middle(text, width), no_wrap=True)
    return Text(text, no_wrap=field.fit != WRAP)


def _is_number(raw: Any) -> bool:
    return isinstance(raw, (int, float)) and not isinstance(raw, bool)


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


def _title(text: str, width: int | None) -> Text:
    """A section's title on one line, shortened in the middle when it is wider than the output (a path)."""
    return Text(text if width is None else shorten_middle(text, width), style="bold")


@dataclass
class _RowsTable:
    """A rows table laid out for ``width``: its cells fitted to the chosen columns. ``rich()`` is the
    table rich draws; ``plain()`` the same lines as a file or pipe gets them (trailing blanks stripped),
    written directly when every cell is one line within its column (None otherwise: rich wraps)."""

    title: Text
    labels: list[str]
    widths: list[int]
    right: list[bool]
    wrap: list[bool]
    rows: list[list[Text]]
    width: int | None  # the output's (None: unlimited)

    def rich(self) -> Group:
        table = Table(box=box.SIMPLE_HEAD)
        for label, w, right, wrap in zip(self.labels, self.widths, self.right, self.wrap):
            table.add_column(Text(label), justify="right" if right else "left", width=w, no_wrap=not wrap,
                             overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        if not self.rows:
            table.caption = Text("(none)")
        return Group(self.title, table)

    def plain(self) -> str | None:
        texts = [[cell.plain for cell in row] for row in self.rows]
        if self.width is not None and sum(self.widths) + _overhead(len(self.widths)) > self.width:
            return None  # the columns could not be fitted: rich squeezes them
        if not texts or any("\n" in t or len(t) > w or cell_len(t) != len(t)
                            for row in [self.labels, *texts] for t, w in zip(row, self.widths)):
            return None  # rich wraps, folds or measures wide characters
        # box.SIMPLE_HEAD: an edge and one blank of padding each side, three blanks between columns, a blank
        # top and bottom edge line, a rule under the header
        pieces = [f"%{w}s" if right else f"%-{w}s" for w, right in zip(self.widths, self.right)]
        line = "  " + "   ".join(pieces)
        out = [self.title.plain, "", line % tuple(self.labels),
               " " + "─" * (sum(self.widths) + 3 * len(self.widths) - 1), *(line % tuple(row) for row in texts), ""]
        return "".join(text.rstrip() + "\n" for text in out)


def _rows_table(section: Section, width: int | None) -> _RowsTable:
    fields = section.table_fields()
    # every record has a cell per field of the section's spec, in spec order
    at = {cell.key: n for n, cell in enumerate(section.records[0].cells)} if section.records else {}
    texts = [[record.cells[at[f.key]].text for f in fields] for record in section.records]
    if section.layout == "tree" and fields:
        for row, name in zip(texts, _tree_names(section, fields[0].key, at)):
            row[0] = name
    columns = [_Column(f, max([cell_len(f.label or "")] + [_lines_width(row[n]) for row in texts]))
               for n, f in enumerate(fields)]
    chosen = fit_columns(columns, width)
    right = [bool(section.records) and all(
        _is_number(record.cells[at[fields[n].key]].raw) or record.cells[at[fields[n].key]].raw is None
        for record in section.records) for n in chosen]
    return _RowsTable(_title(section.title, width), [fields[n].label or "" for n in chosen], list(chosen.values()),
                      right, [fields[n].fit == WRAP for n in chosen],
                      [[_cell_text(fields[n], row[n], w) for n, w in chosen.items()] for row in texts], width)


def _fields_tables(section: Section, width: int | None) -> list[Group]:
    """A row per field, a column per record; as many tables as it takes to fit the records side by side.

    A ``KEEP`` value is never split: the labels wrap (or fold) first.
    """
    fields = section.table_fields()
    at = {cell.key: n for n, cell in enumerate(section.records[0].cells)} if section.records else {}
    headers = list(section.headers or ("value",) * max(len(section.records), 1))
    label_natural = max((cell_len(f.label or "") for f in fields), default=0)
    label_floor = min(label_natural, 12)
    values = [[record.cells[at[f.key]].text for f in fields] for record in section.records] or [[]]
    natural = [max([cell_len(h)] + [_lines_width(t) for t in texts]) for h, texts in zip(headers, values)]
    need = [max([min(natural[n], MIN_WRAPPED)] + [_lines_width(t) for f, t in zip(fields, values[n]) if f.fit != WRAP
                                                  and f.fit != MIDDLE]) for n in range(len(values))]
    groups: list[list[int]] = [[]]
    for n in range(len(values)):
        trial = groups[-1] + [n]
        if groups[-1] and width is not None and label_floor + sum(need[i] for i in trial) + _overhead(
                len(trial) + 1) > width:
            groups.append([n])
        else:
            groups[-1] = trial
    blocks = []
    for g, group in enumerate(groups):
        widths = {n: natural[n] for n in group}
        label = label_natural
        if width is not None:
            excess = label + sum(widths.values()) + _overhead(len(group) + 1) - width
            for n in group:
                give = max(min(excess, widths[n] - need[n]), 0)
                widths[n] -= give
                excess -= give
            label = max(label - max(excess, 0), label_floor)
        title = section.title + (f" ({g + 1}/{len(groups)})" if len(groups) > 1 else "")
        table = Table(box=box.SIMPLE_HEAD, show_header=len(section.headers) > 0)
        table.add_column(Text("field"), style="bold", width=label, overflow="fold")
        for n in group:
            table.add_column(Text(headers[n]), overflow="fold", width=widths[n])
        if section.records:
            for i, field in enumerate(fields):
                cells = [_cell_text(field, values[n][i], widths[n]) for n in group]
                table.add_row(Text(field.label), *cells)
        blocks.append(Group(_title(title, width), table))
    return blocks


def render_section(section: Section, width: int | None = None) -> list[Any]:
    """One section as rich renderables fitting ``width`` (None: unlimited)."""
    if section.layout == "lines":
        text = _title(section.title + "\n", width)
        text.append("\n".join(f"  {record.cells[0].text}" for record in section.records), style="none")
        return [text]
    if section.layout == "fields":
        return _fields_tables(section, width)
    return [_rows_table(section, width)]


def _column_texts(field: Field, batch: list[Any]) -> list[Any]:
    """A column of a streamed table: each record's text, or its raw value where the text is ``str`` of it
    (the row's ``%s`` makes it)."""
    if field.text is not None:
        return list(map(field.text, batch))
    if field.show is str:
        return list(map(field.get, batch))
    return list(map(field.show, map(field.get, batch)))


def _stream_table(section: Section, stream: IO[str], width: int | None) -> None:
    """A streamed section as plain text rows, a batch at a time, laid out before the first row.

    Every column but the last is as wide as ``section.widths`` says its
    text can be (or its header); the last takes what is left of ``width``,
    shortened in the middle when it is a ``MIDDLE`` column (unlimited: as
    is). Columns give way as in ``fit_columns``; numbers are right-aligned.
    """
    fields = section.table_fields()
    batches = iter(section.stream)
    batch = next(batches, [])
    widths = section.widths or {}
    columns = [_Column(f, max(cell_len(f.label or ""), widths.get(f.key, 0) if n < len(fields) - 1 else UNLIMITED))
               for n, f in enumerate(fields)]
    chosen = fit_columns(columns, width)
    kept = [fields[n] for n in chosen]
    sizes = list(chosen.values())
    right = [bool(batch) and _is_number(f.get(batch[0])) for f in kept]
    last = kept[-1] if kept else None
    limit = sizes[-1] if width is not None and kept else None
    pieces = [f"%{'' if r else '-'}{w}s" for r, w in zip(right[:-1], sizes[:-1])] + (["%s"] if kept else [])
    line = "  " + "   ".join(pieces)
    header = [Text(f.label).plain for f in kept]
    heads = [h.rjust(w) if r else h.ljust(w) for h, r, w in zip(header[:-1], right, sizes)] + header[-1:]
    stream.write(_title(section.title, width).plain + "\n\n")
    stream.write(("  " + "   ".join(heads)).rstrip() + "\n")
    rule = sum(sizes[:-1]) + 3 * len(sizes[:-1]) + (limit if limit is not None else cell_len(header[-1]) if kept else 0)
    stream.write(" " + "─" * (rule + 2) + "\n")
    count = 0
    while True:
        if batch:
            cells = [_column_texts(f, batch) for f in kept]
            if last is not None and limit is not None and last.fit == MIDDLE:
                cells[-1] = [t if len(t) <= limit and t.isascii() else shorten_middle(t, limit) for t in cells[-1]]
            stream.write("\n".join(map(line.__mod__, zip(*cells))) + "\n")
            count += len(batch)
        batch = next(batches, None)
        if batch is None:
            break
    stream.write("\n" + (section.tally(count) + "\n" if section.tally else ""))


def render(output: CommandOutput, stream: IO[str], width: int | None | str = AUTO) -> None:
    """Every document of ``output`` as tables fitting ``width`` (``AUTO``: the output's, see ``output_width``)."""
    if width == AUTO:
        width = output_width(stream, output.wide)
    console = make_console(stream, width)
    plain = not stream.isatty()
    for document in output.documents:
        blocks: list[Any] = []
        if document.summary:
            blocks.append(Text("\n".join(document.summary)))
        for section in document.sections:
            if not section.table or (section.layout == "lines" and not section.records and section.stream is None):
                continue
            blocks.append(section if section.stream is not None else None)
            if section.stream is None:
                blocks[-1:] = render_section(section, width)
        for n, block in enumerate(blocks):
            if n:
                stream.write("\n")
            if isinstance(block, Section):
                _stream_table(block, stream, width)
            elif plain and isinstance(block, _RowsTable) and (text := block.plain()) is not None:
                stream.write(text)
            elif plain:  # rich pads lines to the table's width: strip the blanks a file or pipe would keep
                with console.capture() as captured:
                    console.print(block.rich() if isinstance(block, _RowsTable) else block)
                stream.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
            else:
                console.print(block.rich() if isinstance(block, _RowsTable) else block)
