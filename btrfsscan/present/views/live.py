"""The ``live`` document: the report's document over the resident pages, plus ``workload``.

``live`` reports the same figures as ``report`` (one field spec each, in
:mod:`.report`), so its JSON has the report's layout; it adds ``workload``
(what was measured) and the kind ``unknown`` (pages FIEMAP gives no address
for). Its schema (``contract.schema("live")``) is the report's with the
additions of the shipped ``live.schema.json``.
"""

from __future__ import annotations

import copy
from typing import Any

from ...analysis.live import WorkingSetResult
from ..contract import schema
from ..document import Document, Field, section
from ..units import human_count, printable
from . import report as report_view

RESIDENT_NOW = "The page cache holds {size} of these files now"


def workload_fields(raw: bool) -> tuple[Field, ...]:
    def count(value: Any) -> str:
        return human_count(value, raw)

    return (
        Field("kind", "working set", lambda w: w.kind, show=printable),
        Field("captured_at", "captured at", lambda w: w.captured_at, show=printable),
        Field("files", "regular files", lambda w: w.files, show=count),
        Field("files_with_pages", "with resident pages", lambda w: w.files_with_pages, show=count),
        Field("unreadable", "unreadable", lambda w: w.unreadable, show=count),
    )


def live_document(result: WorkingSetResult, *, raw: bool = False) -> Document:
    fields = workload_fields(raw)
    workload = Field("workload", None, lambda r: result.workload, fields=fields)
    return report_view.report_document(
        result.report, raw=raw, kind="live", extra=(workload,),
        extra_sections=(section("workload", "Working set", fields, [result.workload], many=False, layout="fields",
                                json=False),),
        models_title="Page cache of the resident pages", lead=RESIDENT_NOW)


def complete_schema(extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of ``live --json``: the report's, with the additions of the shipped ``live.schema.json``."""
    doc = copy.deepcopy(schema("report"))
    for key in ("$id", "title", "description"):
        doc[key] = extra[key]
    doc["properties"].update(extra["properties"])
    del doc["properties"]["paths"]  # report --path only
    doc["required"].remove("paths")
    doc["required"].insert(doc["required"].index("partial"), "workload")
    by_kind = doc["properties"]["by_kind"]
    for kind, extra_kind in extra["by_kind"].items():
        any_kind = by_kind["properties"][by_kind["required"][0]]
        by_kind["properties"][kind] = {**copy.deepcopy(any_kind), **extra_kind}
        by_kind["required"].append(kind)
    return doc
