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
WORKING_SET = "The working set caches {size} of these files"


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


def working_set_document(result: WorkingSetResult, *, raw: bool = False, kind: str = "report",
                         lead: str = WORKING_SET, models_title: str = "Page cache of the working set") -> Document:
    """The report's document of a working set, with ``workload`` saying which one (``report --resident``)."""
    fields = workload_fields(raw)
    workload = Field("workload", None, lambda r: result.workload, fields=fields)
    return report_view.report_document(
        result.report, raw=raw, kind=kind, extra=(workload,),
        extra_sections=(section("workload", "Working set", fields, [result.workload], many=False, layout="fields",
                                json=False),),
        models_title=models_title, lead=lead)


def live_document(result: WorkingSetResult, *, raw: bool = False) -> Document:
    return working_set_document(result, raw=raw, kind="live", lead=RESIDENT_NOW,
                                models_title="Page cache of the resident pages")


def complete_schema(extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of ``live --json``: the report's with ``workload`` required, and the additions of the
    shipped ``live.schema.json``."""
    doc = copy.deepcopy(schema("report"))
    for key in ("$id", "title", "description"):
        doc[key] = extra[key]
    del doc["properties"]["paths"]  # report --path only
    doc["required"].remove("paths")
    doc["required"].insert(doc["required"].index("partial"), "workload")
    by_kind = doc["properties"]["by_kind"]
    for kind, extra_kind in extra["by_kind"].items():
        any_kind = by_kind["properties"][by_kind["required"][0]]
        by_kind["properties"][kind] = {**copy.deepcopy(any_kind), **extra_kind}
        by_kind["required"].append(kind)
    return doc
