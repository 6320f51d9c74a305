"""The page-cache report for people: a plain-language summary, then rich tables.

``describe_*`` functions are pure: they turn a ``Report`` into display values
(summary lines, or ``describe.Section``s of records). Each table section is
driven by ONE field table below (``*_COLUMNS``: key, label, getter, format),
which gives both the column labels and the cell texts. Sizes are IEC and
human-readable (``1.9 GiB``); ``raw=True`` shows exact numbers (bytes, pages,
percentages with all digits) instead. ``render_report`` prints it all on a
rich console; ``report_text`` returns it as plain text.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from ..cache.report import ModelFigures, Report, SubvolumeFigures
from .describe import Field, Section, section
from .output import render_section

_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")

MODEL_TITLES = {
    "per_inode": "per-inode (Linux today)",
    "shared_extent": "shared-extent cache",
    "shared_extent_compressed": "shared-extent, compressed too",
    "rfc_as_posted": "RFC as posted",
}

KIND_TITLES = {
    "regular_shared": ("shared data", "data pages whose disk page other file pages map too"),
    "regular_exclusive": ("exclusive data", "data pages only one file page maps"),
    "compressed": ("compressed", "pages of compressed extents (cached decompressed)"),
    "inline": ("inline", "inline files (data in the metadata)"),
    "prealloc": ("prealloc", "preallocated, unwritten ranges"),
    "hole": ("holes", "explicit and implicit holes (zero pages)"),
    "unaligned": ("unaligned data", "data not mappable to one aligned disk page"),
}


# --- formatting -----------------------------------------------------------------


def human_bytes(value: int | float | None, raw: bool = False) -> str:
    """``1.9 GiB`` (one decimal, IEC), ``512 B``; ``raw``: the exact number of bytes."""
    if value is None:
        return "-"
    if raw:
        return str(int(value))
    size = float(value)
    unit = 0
    while abs(size) >= 1024 and unit < len(_IEC) - 1:
        size /= 1024
        unit += 1
    return f"{int(size)} B" if unit == 0 else f"{size:.1f} {_IEC[unit]}"


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
    if value is None:
        return "-"
    return repr(float(value)) if raw else f"{value:.1f}%"


def printable(text: str | None) -> str:
    """``text`` with control characters escaped (a name cannot garble the terminal); None is ``-``."""
    if text is None:
        return "-"
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


_FORMATS: dict[str, Callable[[Any, bool], str]] = {
    "bytes": human_bytes,
    "count": human_count,
    "pct": human_pct,
    "text": lambda v, raw: printable(v) if isinstance(v, str) or v is None else printable(str(v)),
    "plain": lambda v, raw: "-" if v is None else str(v),
    "bool": lambda v, raw: "-" if v is None else ("yes" if v else "no"),
}

#: (key, label, getter, format): one field table per section.
Column = tuple[str, str, Callable[[Any], Any], str]


def _fields(columns: Sequence[Column], raw: bool) -> tuple[Field, ...]:
    return tuple(Field(key, label, get, show=(lambda v, f=_FORMATS[fmt]: f(v, raw))) for key, label, get, fmt in columns)


def subvolume_name(subvol_id: int, path: str | None) -> str:
    """How a subvolume is named in sentences: its path, else ``subvolume N``."""
    if subvol_id == 5 and not path:
        return "the top-level subvolume"
    return printable(path) if path else f"subvolume {subvol_id}"


# --- field tables -----------------------------------------------------------------

MODEL_COLUMNS: tuple[Column, ...] = (
    ("model", "model", lambda m: m.name, "text"),
    ("title", "design", lambda m: MODEL_TITLES.get(m.name, m.name), "text"),
    ("pages", "pages", lambda m: m.pages, "count"),
    ("bytes", "cache", lambda m: m.bytes, "bytes"),
    ("saved_bytes", "saved", lambda m: m.saved_bytes, "bytes"),
    ("saved_pct", "saved %", lambda m: m.saved_pct, "pct"),
    ("reason", "applies", lambda m: "yes" if m.applicable else f"no: {m.reason}", "text"),
)

KIND_COLUMNS: tuple[Column, ...] = (
    ("kind", "kind", lambda k: KIND_TITLES.get(k.kind, (k.kind, ""))[0], "text"),
    ("pages", "pages", lambda k: k.pages, "count"),
    ("bytes", "cache today", lambda k: k.bytes, "bytes"),
    ("meaning", "what", lambda k: KIND_TITLES.get(k.kind, ("", ""))[1], "text"),
)


def _subvolume_columns(page_size: int) -> tuple[Column, ...]:
    return (
        ("id", "id", lambda s: s.id, "plain"),
        ("path", "path", lambda s: s.path, "text"),
        ("files", "files", lambda s: s.files, "count"),
        ("per_inode", "cache today", lambda s: s.per_inode_pages * page_size, "bytes"),
        ("unshareable", "per-inode part", lambda s: s.unshareable_pages * page_size, "bytes"),
        ("exclusive", "exclusive", lambda s: s.exclusive_pages * page_size, "bytes"),
        ("shared", "shared", lambda s: s.shared_pages * page_size, "bytes"),
        ("saved", "saved (share)", lambda s: round(s.saved_pages * page_size), "bytes"),
        ("shares_with", "shares most with", lambda s: ", ".join(
            f"{subvolume_name(x.id, x.path)} ({human_bytes(x.shared_pages * page_size)})" for x in s.shares_with) or None, "text"),
    )


def _extent_columns(page_size: int) -> tuple[Column, ...]:
    return (
        ("logical", "logical", lambda e: e.logical, "plain"),
        ("size", "size", lambda e: e.disk_num_bytes, "bytes"),
        ("references", "refs", lambda e: e.references, "count"),
        ("subvolumes", "subvols", lambda e: e.subvolume_count, "count"),
        ("cached", "cached once", lambda e: e.cached_pages * page_size, "bytes"),
        ("saved", "saved", lambda e: e.saved_bytes, "bytes"),
        ("paths", "for example", lambda e: "; ".join(e.paths) or None, "text"),
    )


FILE_COLUMNS: tuple[Column, ...] = (
    ("path", "path", lambda f: f.path if f.path is not None else f"<subvol {f.subvol} ino {f.ino}>", "text"),
    ("subvol", "subvol", lambda f: f.subvol, "plain"),
    ("size", "size", lambda f: f.size, "bytes"),
    ("nlink", "links", lambda f: f.nlink, "count"),
    ("pages", "pages", lambda f: f.pages, "count"),
    ("shared_pages", "shared pages", lambda f: f.shared_pages, "count"),
    ("saved", "saved (share)", lambda f: f.saved_bytes, "bytes"),
)

FILESYSTEM_COLUMNS: tuple[Column, ...] = (
    ("label", "label", lambda r: r.filesystem.label or None, "text"),
    ("fsid", "fsid", lambda r: r.filesystem.fsid, "text"),
    ("devices", "devices", lambda r: r.filesystem.device_count, "count"),
    ("data", "data profile", lambda r: ", ".join(r.filesystem.data_profiles) or None, "text"),
    ("metadata", "metadata profile", lambda r: ", ".join(r.filesystem.metadata_profiles) or None, "text"),
    ("sectorsize", "sector size", lambda r: r.sectorsize, "bytes"),
    ("page_size", "page size", lambda r: r.page_size, "bytes"),
    ("nodesize", "node size", lambda r: r.filesystem.nodesize, "bytes"),
    ("generation", "generation", lambda r: r.filesystem.generation, "count"),
    ("features", "features", lambda r: ", ".join(r.filesystem.incompat_features + r.filesystem.compat_ro_features) or None, "text"),
    ("files", "regular files", lambda r: r.totals.files, "count"),
    ("inodes", "regular inodes", lambda r: r.totals.inodes, "count"),
)


# --- describe --------------------------------------------------------------------


def _families(subvolumes: Sequence[SubvolumeFigures]) -> dict[int, list[SubvolumeFigures]]:
    """Subvolumes grouped under the root of their parent_uuid chain (a snapshot source and its snapshots)."""
    by_uuid = {s.uuid: s for s in subvolumes if s.uuid}
    out: dict[int, list[SubvolumeFigures]] = {}
    for s in subvolumes:
        root, seen = s, {s.id}
        while root.parent_uuid in by_uuid and by_uuid[root.parent_uuid].id not in seen:
            root = by_uuid[root.parent_uuid]
            seen.add(root.id)
        out.setdefault(root.id, []).append(s)
    return out


def describe_focus(report: Report) -> str | None:
    """Where most of the shared-extent saving is: ``most of it in 12 snapshots of @rootfs``."""
    total = sum(s.saved_pages for s in report.subvolumes)
    if total <= 0:
        return None
    by_id = {s.id: s for s in report.subvolumes}
    families = _families(report.subvolumes)
    root_id, members = max(families.items(), key=lambda kv: (sum(s.saved_pages for s in kv[1]), -kv[0]))
    share = sum(s.saved_pages for s in members) / total
    root = by_id[root_id]
    name = subvolume_name(root.id, root.path)
    lead = "most of it" if share >= 0.5 else f"the largest part ({share:.0%})"
    snapshots = len(members) - 1
    if snapshots == 0:
        return f"{lead} within {name}"
    return f"{lead} in {name} and its {snapshots} snapshot{'s' if snapshots != 1 else ''}"


def describe_summary(report: Report, raw: bool = False) -> list[str]:
    """Plain-language sentences: what the cache holds today, what each design would need."""
    per = report.totals.per_inode_bytes
    se = report.model("shared_extent")
    lines = []
    if report.totals.inodes == 0:
        lines.append("No regular files: nothing would be cached.")
    else:
        line = (f"Reading every file once caches {human_bytes(per, raw)} today; a shared-extent cache would need "
                f"{human_bytes(se.bytes, raw)} — {human_bytes(se.saved_bytes, raw)} ({human_pct(se.saved_pct, raw)}) saved")
        focus = describe_focus(report)
        lines.append(line + (f", {focus}." if focus else "."))
        sec = report.model("shared_extent_compressed")
        if sec.pages is not None and sec.pages != se.pages:
            lines.append(f"Caching compressed extents once as well would need {human_bytes(sec.bytes, raw)} "
                         f"({human_pct(sec.saved_pct, raw)} saved).")
        unaligned = next((k for k in report.by_kind if k.kind == "unaligned"), None)
        if unaligned and unaligned.pages:
            lines.append(f"{human_bytes(unaligned.bytes, raw)} of data cannot be shared at this page size "
                         f"({human_bytes(report.page_size, raw)} pages): it is not aligned to one disk page.")
    rfc = report.model("rfc_as_posted")
    if rfc.applicable:
        lines.append("The RFC as posted applies here (one device, SINGLE data, page size = sector size) and saves the same.")
    else:
        lines.append(f"The RFC as posted does not apply: {rfc.reason}.")
    lines.append(f"{human_count(report.totals.files, raw)} files ({human_count(report.totals.inodes, raw)} inodes) "
                 f"in {len(report.subvolumes)} subvolume{'s' if len(report.subvolumes) != 1 else ''}, "
                 f"{human_bytes(report.page_size, raw)} pages.")
    for note in report.notes:
        lines.append(f"Note: {printable(note)}.")
    if report.partial:
        lines.append(f"Partial result: {len(report.warnings)} warning{'s' if len(report.warnings) != 1 else ''} "
                     "(something was skipped; the figures cover only what could be read).")
    return lines


def describe_models(report: Report, raw: bool = False) -> Section:
    models: list[ModelFigures] = list(report.totals.models.values())
    return section("models", "Page cache after reading every file once", _fields(MODEL_COLUMNS, raw), models)


def describe_kinds(report: Report, raw: bool = False) -> Section:
    return section("by_kind", "Today's page cache by kind of page", _fields(KIND_COLUMNS, raw), report.by_kind)


def describe_subvolumes(report: Report, raw: bool = False) -> Section:
    return section("subvolumes", "Subvolumes (under the shared-extent cache)",
                   _fields(_subvolume_columns(report.page_size), raw), report.subvolumes)


def describe_top_extents(report: Report, raw: bool = False) -> Section:
    return section("top_extents", "Most shared extents", _fields(_extent_columns(report.page_size), raw), report.top_extents)


def describe_top_files(report: Report, raw: bool = False) -> Section:
    return section("top_files", "Files saving the most (fair share)", _fields(FILE_COLUMNS, raw), report.top_files)


def describe_filesystem(report: Report, raw: bool = False) -> Section:
    return section("filesystem", "Filesystem", _fields(FILESYSTEM_COLUMNS, raw), [report], many=False, layout="fields")


def describe_warnings(report: Report) -> list[str]:
    return [printable(w) for w in report.warnings]


def describe_report(report: Report, raw: bool = False) -> tuple[list[str], list[Section]]:
    """The summary lines and the table sections, in display order."""
    sections = [
        describe_models(report, raw),
        describe_kinds(report, raw),
        describe_subvolumes(report, raw),
        describe_top_extents(report, raw),
        describe_top_files(report, raw),
        describe_filesystem(report, raw),
    ]
    return describe_summary(report, raw), sections


# --- render ----------------------------------------------------------------------


def render_report(report: Report, console=None, raw: bool = False) -> None:
    """The summary, then every table, on ``console`` (default: stdout)."""
    from rich.text import Text

    if console is None:
        from .output import make_console

        console = make_console()
    summary, sections = describe_report(report, raw)
    for line in summary:
        console.print(Text(line))
    for sec in sections:
        console.print()
        console.print(render_section(sec))
    warnings = describe_warnings(report)
    if warnings:
        console.print()
        console.print(Text("Warnings", style="bold"))
        for w in warnings:
            console.print(Text(f"  {w}"))


def report_text(report: Report, raw: bool = False, width: int = 160) -> str:
    """What ``render_report`` prints, as plain text (no colour)."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False, emoji=False, soft_wrap=False)
    render_report(report, console, raw)
    return buffer.getvalue()
