"""The page-cache report's document: a plain-language summary, the tables, the JSON.

One spec per kind of record (models, kinds of page, subvolumes, extents,
files, the filesystem) drives both the tables and the JSON document, which
``schemas/report.schema.json`` describes exactly (JSON Schema draft
2020-12; ``complete_schema`` adds the model list from the registry; the
version is the ``report`` entry of ``present.contract.CONTRACTS``). Sizes in JSON
are exact integers (pages and bytes); percentages and fair-share page counts
are rounded to 4 and 3 decimals. In tables sizes are IEC and human-readable
(``1.9 GiB``); ``raw=True`` shows exact numbers instead. Model names,
titles and the sentences about them come from the cache model registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...cache.by_dir import SAVING_MODEL, DirEntry
from ...cache.registry import BASELINE, HEADLINE, MODELS, model
from ...cache.report import FileFigures, ModelFile, PageCacheReport, SubvolumeFigures, pages_to_bytes
from ...format.constants import ObjectId
from ...names import name_base64, name_text
from ..document import KEYED, LIST, MIDDLE, WRAP, Document, Field, Section, name_fields, section
from ..units import human_bytes, human_count, human_pct, printable, with_copies
from .volume import DEVICE_FIELDS


KIND_TITLES = {
    "regular_shared": ("shared data", "data pages whose disk page other file pages map too"),
    "regular_exclusive": ("exclusive data", "data pages only one file page maps"),
    "compressed": ("compressed", "pages of compressed extents (cached decompressed)"),
    "inline": ("inline", "inline files (data in the metadata)"),
    "prealloc": ("prealloc", "preallocated, unwritten ranges"),
    "hole": ("holes", "explicit and implicit holes (zero pages)"),
    "unaligned": ("unaligned data", "data not mappable to one aligned disk page"),
    "unknown": ("unknown", "delalloc or encrypted data, or no address from FIEMAP (live only)"),
}


def complete_schema(doc: dict[str, Any]) -> dict[str, Any]:
    """The shipped report schema with its model list from the cache model registry."""
    doc["properties"]["totals"]["properties"]["models"] = {
        "description": doc["properties"]["totals"]["properties"]["models"]["description"],
        "type": "object",
        "additionalProperties": False,
        "required": [m.name for m in MODELS],
        "properties": {m.name: {"description": f"{m.title}: {m.design}", "$ref": "#/$defs/model"} for m in MODELS},
    }
    pages = doc["$defs"]["dir_entry"]["properties"]["pages"]
    pages.pop("additionalProperties", None)
    pages.update({
        "additionalProperties": False,
        "required": [m.name for m in MODELS],
        "properties": {m.name: {"description": m.title, "type": ["number", "null"], "minimum": 0} for m in MODELS},
    })
    return doc


def _texts(paths: Sequence[str]) -> list[str]:
    return [name_text(p) for p in paths]


def _base64s(paths: Sequence[str]) -> list[str | None] | None:
    """The raw bytes (base64) of each path whose text is not exactly them; None when no path needs it."""
    encoded = [name_base64(p) for p in paths]
    return encoded if any(e is not None for e in encoded) else None


def _example(paths: Sequence[str]) -> str:
    """The first example path, and how many more the JSON lists."""
    if not paths:
        return "-"
    return printable(paths[0]) + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else "")


def _round(digits: int):
    return lambda value: None if value is None else round(float(value), digits)


def _dir_label(entry: DirEntry) -> str:
    """How the tree names an entry: the subvolume, the directory's name, ``(N more)``, ``(unreachable)``."""
    if entry.kind == "subvolume":
        return subvolume_name(entry.subvol, entry.path)
    if entry.kind == "rest":
        return f"({entry.folded} more)"
    if entry.kind == "unreachable":
        return "(unreachable)"
    return (entry.relpath or "").rsplit("/", 1)[-1] + "/"


def _subvolume_path(subvol_id: int, path: str | None) -> str:
    """A subvolume's path in tables, the top level as ``.`` (as ``subvolumes`` shows it)."""
    return "." if subvol_id == ObjectId.FS_TREE and not path else printable(path)


def subvolume_name(subvol_id: int, path: str | None) -> str:
    """How a subvolume is named in sentences: its path, else ``subvolume N``."""
    if subvol_id == 5 and not path:
        return "the top-level subvolume"
    return printable(path) if path else f"subvolume {subvol_id}"


class _Specs:
    """The report's field specs at one page size and display mode (``raw``: exact numbers)."""

    def __init__(self, page_size: int, raw: bool, extra: Sequence[Field] = ()) -> None:
        P = page_size

        def size(value: Any) -> str:
            return human_bytes(value, raw)

        def pages_size(pages: Any) -> str:
            return human_bytes(None if pages is None else pages_to_bytes(pages, P), raw)

        def fair_size(pages: float | None) -> str:
            """A fair-share page count (a fraction of pages) as a size."""
            return human_bytes(None if pages is None else pages * P, raw)

        def count(value: Any) -> str:
            return human_count(value, raw)

        def pct(value: Any) -> str:
            return human_pct(value, raw)

        def plain(value: Any) -> str:
            return "-" if value is None else str(value)

        self.models = (
            Field("model", "model", lambda m: m.name, show=printable, json=False),
            Field("title", "design", lambda m: model(m.name).title, show=printable, fit=WRAP, drop=5),
            Field("design", None, lambda m: model(m.name).design),
            Field("pages", "pages", lambda m: m.pages, show=count, drop=3),
            Field("bytes", "cache", lambda m: m.bytes, show=size, drop=2),
            Field("saved_pages", None, lambda m: m.saved_pages),
            Field("saved_bytes", "saved", lambda m: m.saved_bytes, show=size),
            Field("saved_pct", "saved %", lambda m: m.saved_pct, show=pct, encode=_round(4)),
            Field("applicable", None, lambda m: m.applicable),
            Field("reason", None, lambda m: m.reason),
            Field("applies", "applies", lambda m: "yes" if m.applicable else f"no: {m.reason}", show=printable,
                  json=False, fit=WRAP, drop=4),
            Field("needs", "needs", lambda m: model(m.name).needs, show=lambda v: printable(v or "-"), json=False,
                  fit=WRAP, drop=6),
            Field("content_source", None, lambda m: m.content_source),
            Field("unknown_pages", None, lambda m: m.unknown_pages),
            Field("expected_false_merges", None, lambda m: m.expected_false_merges, encode=_round(6)),
            Field("subvolumes", None, lambda m: m.subvolumes, each=LIST, fields=(
                Field("id", None, lambda x: x.id),
                Field("per_inode_pages", None, lambda x: x.per_inode_pages),
                Field("saved_pages", None, lambda x: x.saved_pages, encode=_round(3)),
                Field("exclusive_pages", None, lambda x: x.exclusive_pages),
                Field("shared_pages", None, lambda x: x.shared_pages),
            )),
            Field("top_files", None, lambda m: m.top_files, each=LIST, fields=(
                Field("subvol", None, lambda f: f.subvol),
                Field("ino", None, lambda f: f.ino),
                *name_fields("path", None, lambda f: f.path),
                Field("size", None, lambda f: f.size),
                Field("pages", None, lambda f: f.pages),
                Field("saved_pages", None, lambda f: f.saved_pages, encode=_round(3)),
                Field("saved_bytes", None, lambda f: f.saved_bytes),
                Field("snapshot_copies", None, lambda f: f.snapshot_copies),
            )),
        )
        self.model_subvolumes = (
            Field("model", "design", lambda r: model(r[0]).title, show=printable, fit=WRAP),
            Field("id", "subvol", lambda r: r[1].id, show=plain),
            Field("path", "path", lambda r: r[2], show=printable, fit=MIDDLE, drop=4),
            Field("per_inode_pages", "cache today", lambda r: r[1].per_inode_pages, show=pages_size, drop=3),
            Field("exclusive_pages", "exclusive", lambda r: r[1].exclusive_pages, show=pages_size, drop=2),
            Field("shared_pages", "shared", lambda r: r[1].shared_pages, show=pages_size, drop=1),
            Field("saved_pages", "saved (share)", lambda r: r[1].saved_pages, show=pages_size),
        )
        self.model_files = (
            Field("model", "design", lambda r: model(r[0]).title, show=printable, fit=WRAP),
            Field("path", "path", lambda r: r[1].path, text=lambda r: _file_label(r[1]), fit=MIDDLE),
            Field("subvol", "subvol", lambda r: r[1].subvol, show=plain, drop=2),
            Field("size", "size", lambda r: r[1].size, show=size, drop=1),
            Field("saved_bytes", "saved (share)", lambda r: r[1].saved_bytes, show=size),
        )
        self.kinds = (
            Field("kind", "kind", lambda k: KIND_TITLES[k.kind][0], show=printable, json=False),
            Field("pages", "pages", lambda k: k.pages, show=count, drop=2),
            Field("bytes", "cache today", lambda k: k.bytes, show=size),
            Field("meaning", "what", lambda k: KIND_TITLES[k.kind][1], show=printable, json=False, fit=WRAP, drop=1),
        )
        share = (
            Field("id", None, lambda x: x.id),
            Field("path", None, lambda x: x.path),
            Field("shared_pages", None, lambda x: x.shared_pages),
        )
        self.subvolumes = (
            Field("id", "id", lambda s: s.id, show=plain),
            Field("path", "path", lambda s: s.path, text=lambda s: _subvolume_path(s.id, s.path), fit=MIDDLE),
            Field("uuid", None, lambda s: s.uuid),
            Field("parent_uuid", None, lambda s: s.parent_uuid),
            Field("readonly", None, lambda s: s.readonly),
            Field("files", "files", lambda s: s.files, show=count, drop=3),
            Field("inodes", None, lambda s: s.inodes),
            Field("per_inode_pages", "cache today", lambda s: s.per_inode_pages, show=pages_size),
            Field("unshareable_pages", "per-inode part", lambda s: s.unshareable_pages, show=pages_size, drop=5),
            Field("exclusive_pages", "exclusive", lambda s: s.exclusive_pages, show=pages_size, drop=4),
            Field("shared_pages", "shared", lambda s: s.shared_pages, show=pages_size, drop=2),
            Field("saved_pages", "saved (share)", lambda s: s.saved_pages, show=pages_size, encode=_round(3)),
            Field("shares_with", "shares most with", lambda s: s.shares_with, fields=share, each=LIST,
                  text=lambda s: "\n".join(
                      f"{subvolume_name(x.id, x.path)} ({human_bytes(pages_to_bytes(x.shared_pages, P))})"
                      for x in s.shares_with) or "-", fit=MIDDLE, drop=6),
        )
        self.extents = (
            Field("logical", "logical", lambda e: e.logical, show=plain),
            Field("disk_num_bytes", "size", lambda e: e.disk_num_bytes, show=size),
            Field("references", "refs", lambda e: e.references, show=count, drop=3),
            Field("subvolume_count", "subvols", lambda e: e.subvolume_count, show=count, drop=4),
            Field("subvolumes", None, lambda e: e.subvolumes, encode=list),
            Field("file_pages", None, lambda e: e.file_pages),
            Field("cached_pages", "cached once", lambda e: e.cached_pages, show=pages_size, drop=5),
            Field("saved_pages", None, lambda e: e.saved_pages),
            Field("saved_bytes", "saved", lambda e: e.saved_bytes, show=size),
            Field("paths", "for example", lambda e: e.paths, show=_example, encode=_texts, fit=MIDDLE, drop=1),
            Field("paths_bytes", None, lambda e: e.paths, encode=_base64s, optional=True),
        )
        self.files = (
            Field("subvol", "subvol", lambda f: f.subvol, show=plain, drop=2),
            Field("ino", None, lambda f: f.ino),
            *name_fields("path", "path", lambda f: f.path, text=_file_label, fit=MIDDLE),
            Field("size", "size", lambda f: f.size, show=size, drop=3),
            Field("nlink", "links", lambda f: f.nlink, show=count, drop=5),
            Field("pages", "pages", lambda f: f.pages, show=count, drop=4),
            Field("eligible_pages", None, lambda f: f.eligible_pages),
            Field("shared_pages", "shared pages", lambda f: f.shared_pages, show=count, drop=1),
            Field("saved_pages", None, lambda f: f.saved_pages, encode=_round(3)),
            Field("saved_bytes", "saved (share)", lambda f: f.saved_bytes, show=size),
            Field("snapshot_copies", None, lambda f: f.snapshot_copies),
        )
        self.file_columns = ("path", "subvol", "size", "nlink", "pages", "shared_pages", "saved_bytes")
        joined = lambda names: printable(", ".join(names) or None)  # noqa: E731
        self.filesystem = (
            Field("label", "label", lambda r: r.filesystem.label, show=lambda v: printable(v or None)),
            Field("fsid", "fsid", lambda r: r.filesystem.fsid, show=printable),
            Field("num_devices", "devices", lambda r: r.filesystem.device_count, show=count),
            Field("devices", None, lambda r: r.filesystem.devices, fields=DEVICE_FIELDS, each=LIST),
            Field("profiles", None, lambda r: r.filesystem, fields=(
                Field("data", None, lambda f: f.data_profiles, encode=list),
                Field("metadata", None, lambda f: f.metadata_profiles, encode=list),
                Field("system", None, lambda f: f.system_profiles, encode=list),
            )),
            Field("data", "data profile", lambda r: r.filesystem.data_profiles, show=joined, json=False),
            Field("metadata", "metadata profile", lambda r: r.filesystem.metadata_profiles, show=joined, json=False),
            Field("nodesize", "node size", lambda r: r.filesystem.nodesize, show=size),
            Field("sectorsize", "sector size", lambda r: r.sectorsize, show=size),
            Field("page_size", "page size", lambda r: r.page_size, show=size, json=False),
            Field("generation", "generation", lambda r: r.filesystem.generation, show=count),
            Field("features", "features", lambda r: r.filesystem, fields=(
                Field("incompat", None, lambda f: f.incompat_features, encode=list),
                Field("compat_ro", None, lambda f: f.compat_ro_features, encode=list),
            ), text=lambda r: joined(r.filesystem.incompat_features + r.filesystem.compat_ro_features), fit=WRAP),
            Field("metadata_dump", None, lambda r: r.metadata_dump),
            Field("notes", None, lambda r: r.notes, encode=list),
            Field("files", "regular files", lambda r: r.totals.files, show=count, json=False),
            Field("inodes", "regular inodes", lambda r: r.totals.inodes, show=count, json=False),
        )
        self.filesystem_columns = ("label", "fsid", "num_devices", "data", "metadata", "sectorsize", "page_size",
                                   "nodesize", "generation", "features", "files", "inodes")
        self.totals = (
            Field("files", None, lambda t: t.files),
            Field("inodes", None, lambda t: t.inodes),
            Field("per_inode", None, lambda t: t, fields=(
                Field("pages", None, lambda t: t.per_inode_pages),
                Field("bytes", None, lambda t: t.per_inode_bytes),
            )),
            Field("models", None, lambda t: t.models.values(), fields=self.models, each=KEYED, key_of=lambda m: m.name),
        )
        self.sharing_matrix = (
            Field("model", None, lambda m: HEADLINE),
            Field("subvolumes", None, lambda m: m.ids, encode=list),
            Field("shared_pages", None, lambda m: m.shared_pages, encode=lambda rows: [list(r) for r in rows]),
        )
        fair = _round(3)
        self.dir_entries = (
            Field("name", "directory", lambda e: e, json=False, text=lambda e: printable(_dir_label(e))),
            Field("kind", None, lambda e: e.kind),
            Field("subvol", None, lambda e: e.subvol),
            *name_fields("path", None, lambda e: e.path),
            Field("relpath", None, lambda e: e.relpath),
            Field("depth", None, lambda e: e.depth),
            Field("parent", None, lambda e: None if e.parent < 0 else e.parent),
            Field("folded", None, lambda e: e.folded),
            Field("files", "files", lambda e: e.files, show=count, drop=3),
            Field("inodes", None, lambda e: e.inodes),
            Field("pages", None, lambda e: e.pages, encode=lambda p: {k: fair(v) for k, v in p.items()}),
            Field("today", "cache today", lambda e: e.pages[BASELINE], show=lambda v: fair_size(v),
                  json=False, drop=1),
            Field("headline", model(SAVING_MODEL).title, lambda e: e.pages[SAVING_MODEL],
                  show=lambda v: fair_size(v), json=False, drop=2),
            Field("saved_pages", "saved", lambda e: e.saved_pages, show=lambda v: fair_size(v), encode=fair),
            Field("saved_pct", "saved %", lambda e: e.saved_pct, show=pct, encode=_round(4)),
        )
        self.by_dir = (
            Field("depth", None, lambda b: b.depth),
            Field("top", None, lambda b: b.top),
            Field("saving_model", None, lambda b: SAVING_MODEL),
            Field("entries", None, lambda b: b.entries, fields=self.dir_entries, each=LIST),
        )
        self.document = (
            Field("page_size", None, lambda r: r.page_size),
            Field("filesystem", None, lambda r: r, fields=self.filesystem),
            Field("totals", None, lambda r: r.totals, fields=self.totals),
            Field("by_kind", None, lambda r: r.by_kind, fields=self.kinds, each=KEYED, key_of=lambda k: k.kind),
            Field("subvolumes", None, lambda r: r.subvolumes, fields=self.subvolumes, each=LIST),
            Field("top_extents", None, lambda r: r.top_extents, fields=self.extents, each=LIST),
            Field("top_files", None, lambda r: r.top_files, fields=self.files, each=LIST),
            *extra,
            Field("partial", None, lambda r: r.partial),
            Field("warnings", None, lambda r: r.warnings, encode=list),
            Field("sharing_matrix", None, lambda r: r.sharing_matrix, fields=self.sharing_matrix),
            Field("by_dir", None, lambda r: r.by_dir, fields=self.by_dir),
        )


# --- sentences --------------------------------------------------------------------


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


def focus(report: PageCacheReport) -> str | None:
    """Where most of the shared-extent saving is: ``most of it in @rootfs and its 12 snapshots``."""
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
    return f"{lead} in {name} and its {_counted(snapshots, 'snapshot', True)}"


def _counted(n: int, noun: str, raw: bool) -> str:
    """``n noun``, the noun in the plural unless n is 1."""
    return f"{human_count(n, raw)} {noun}{'' if n == 1 else 's'}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _best(report: PageCacheReport, raw: bool) -> list[str]:
    """The model that saves most, and (when that is an ideal bound or does not apply) the best design that applies."""
    computed = [(report.model(m.name), m) for m in MODELS if report.model(m.name).pages is not None]
    if len(computed) < 2:
        return []
    most, definition = min(computed, key=lambda x: (x[0].pages, x[1].order))
    if not most.saved_pages or most.saved_pages <= 0:
        return ["No model saves anything here: no page is shared by extent, by file or by content."]
    pct = human_pct(most.saved_pct, raw)
    lines = [f"{_capital(definition.subject)} saves the most ({pct}"
             + (", an ideal bound, not a design)." if definition.bound else ").")]
    designs = [x for x in computed if not x[1].bound and x[0].applicable and x[1].name != BASELINE]
    if designs and (definition.bound or not most.applicable):
        best, best_def = min(designs, key=lambda x: (x[0].pages, x[1].order))
        lines.append(f"Of the designs that apply, {best_def.subject} saves the most "
                     f"({human_pct(best.saved_pct, raw)}).")
    return lines


def _content_source(report: PageCacheReport, raw: bool) -> list[str]:
    """Where the content figures came from, what they could not see, and what a 32-bit key may have merged."""
    keyed = [m for m in report.totals.models.values() if m.content_source]
    if not keyed:
        return []
    m = keyed[0]
    if m.content_source == "data":
        line = "Content figures hash the file data (exact)"
    else:
        line = ("Content figures key pages by the checksum tree; compressed data counts as shared only where it "
                "was compressed identically (a lower bound)")
    if m.unknown_pages:
        one = m.unknown_pages == 1
        line += (f"; {_counted(m.unknown_pages, 'page', raw)} "
                 f"({_pages_size(m.unknown_pages, report.page_size, raw)}) {'has' if one else 'have'} no known content "
                 f"(nodatasum data, unreadable extents) and {'is' if one else 'are'} cached per inode")
    if m.expected_false_merges is not None and m.expected_false_merges >= 0.001:
        line += f"; about {m.expected_false_merges:.3g} pages may be merged by a 32-bit checksum collision"
    return [line + "."]


def _pages_size(pages: int, page_size: int, raw: bool) -> str:
    return human_bytes(pages_to_bytes(pages, page_size), raw)


#: The models table's title and the first sentence's subject: what the per-inode baseline is.
MODELS_TITLE = "Page cache after reading every file once"
EVERY_FILE_ONCE = "Reading every file once caches {size} today"


def summary(report: PageCacheReport, raw: bool = False, lead: str = EVERY_FILE_ONCE) -> list[str]:
    """Plain-language sentences: what the cache holds today, what each registered design would need.

    ``lead`` says what the baseline is (``{size}``: its size)."""
    def size(value: Any) -> str:
        return human_bytes(value, raw)

    head = report.model(HEADLINE)
    others = [m for m in MODELS if m.name not in (BASELINE, HEADLINE)]
    lines = _selection(report)
    if report.totals.inodes == 0:
        lines.append("No regular files: nothing would be cached.")
    else:
        line = (lead.format(size=size(report.totals.per_inode_bytes)) + "; "
                f"{model(HEADLINE).subject} would need {size(head.bytes)} — {size(head.saved_bytes)} "
                f"({human_pct(head.saved_pct, raw)}) saved")
        where = focus(report)
        lines.append(line + (f", {where}." if where else "."))
        for definition in others:
            figures = report.model(definition.name)
            if figures.pages is not None and figures.pages != head.pages:
                lines.append(f"{_capital(definition.subject)} would need {size(figures.bytes)} "
                             f"({human_pct(figures.saved_pct, raw)} saved).")
        lines.extend(_best(report, raw))
        lines.extend(_content_source(report, raw))
        unaligned = next((k for k in report.by_kind if k.kind == "unaligned"), None)
        if unaligned and unaligned.pages:
            lines.append(f"{size(unaligned.bytes)} of data cannot be shared at this page size "
                         f"({size(report.page_size)} pages): it is not aligned to one disk page.")
    for definition in others:
        figures = report.model(definition.name)
        if not figures.applicable:
            lines.append(f"{_capital(definition.subject)} does not apply: {figures.reason}.")
        elif definition.needs and figures.pages == head.pages and head.saved_pages:
            lines.append(f"{_capital(definition.subject)} applies here ({definition.needs}) and saves the same.")
    count = len(report.subvolumes)
    lines.append(f"{_counted(report.totals.files, 'file', raw)} ({_counted(report.totals.inodes, 'inode', raw)}) "
                 f"in {_counted(count, 'subvolume', raw)}, {size(report.page_size)} pages.")
    for note in report.notes:
        lines.append(f"Note: {printable(note)}.")
    if report.partial:
        n = len(report.warnings)
        lines.append(f"Partial result: {_counted(n, 'warning', raw)} "
                     "(something was skipped; the figures cover only what could be read).")
    return lines


# --- the document -----------------------------------------------------------------


#: ``report``'s own top-level JSON field: the paths ``--path`` limited the report to (null: every file).
PATHS_FIELD = Field("paths", None, lambda r: r.paths, encode=lambda p: None if p is None else [name_text(x) for x in p])


def _selection(report: PageCacheReport) -> list[str]:
    """The sentence saying which files the figures cover, when ``--path`` chose them."""
    if report.paths is None:
        return []
    return ["Only the files under " + ", ".join(printable(p) for p in report.paths)
            + " (every model below counts just them and what they share among themselves)."]


def _file_label(f: FileFigures | ModelFile) -> str:
    """A top file's path (or where it is when unnamed) and how many more subvolumes hold it unchanged."""
    return with_copies(printable(f.path if f.path is not None else f"<subvol {f.subvol} ino {f.ino}>"),
                       f.snapshot_copies)


def _model_rows(report: PageCacheReport, what: str) -> list[tuple]:
    """(model, item, subvolume path) rows of every model's ``subvolumes`` or ``top_files``, in registry order."""
    paths = {s.id: s.path for s in report.subvolumes}
    rows = []
    for m in report.totals.models.values():
        for item in getattr(m, what) or ():
            rows.append((m.name, item, paths.get(getattr(item, "id", None))))
    return rows


def report_document(report: PageCacheReport, *, raw: bool = False, kind: str = "report",
                    extra: Sequence[Field] = (), extra_sections: Sequence[Section] = (),
                    models_title: str = MODELS_TITLE,
                    lead: str = EVERY_FILE_ONCE) -> Document:
    """The report of one filesystem: the summary, the tables, and the JSON document.

    A command reporting the same figures of another source (``live``) names
    its ``kind``, adds its top-level JSON fields (``extra``, before
    ``partial``, where ``report`` has its ``paths``) and tables (``extra_sections``, first), and says what its
    baseline is (``models_title``, ``lead``)."""
    specs = _Specs(report.page_size, raw, (PATHS_FIELD, *extra) if kind == "report" else extra)
    if report.paths:
        models_title += " — only the files under " + ", ".join(printable(p) for p in report.paths)
    warning = (Field("warning", "warning", lambda w: w, show=printable),)
    return Document(kind, (
        section(None, kind, specs.document, [report], many=False, table=False),
        *extra_sections,
        section("models", models_title, specs.models, report.totals.models.values(), json=False),
        section("by_kind", "Today's page cache by kind of page", specs.kinds, report.by_kind, json=False),
        section("subvolumes", "Subvolumes (under the shared-extent cache)", specs.subvolumes, report.subvolumes,
                json=False),
        section("model_subvolumes", "Subvolumes under the other designs", specs.model_subvolumes,
                _model_rows(report, "subvolumes"), json=False),
        section("top_extents", "Most shared extents", specs.extents, report.top_extents, json=False),
        section("top_files", "Files saving the most (fair share)", specs.files, report.top_files,
                columns=specs.file_columns, json=False),
        section("model_files", "Files saving the most under the other designs (fair share)", specs.model_files,
                _model_rows(report, "top_files"), json=False),
        *((section("by_dir", f"Page cache by directory (down to {report.by_dir.depth} levels, largest first)",
                    specs.dir_entries, report.by_dir.entries, layout="tree", json=False),) if report.by_dir else ()),
        section("filesystem", "Filesystem", specs.filesystem, [report], many=False, layout="fields",
                columns=specs.filesystem_columns, json=False),
        section("warnings", "Warnings", warning, report.warnings, layout="lines", json=False),
    ), summary=tuple(summary(report, raw, lead)), subject=report)
