"""The JSON contract: every command's ``--json`` document, its ``schema_version`` and its shipped JSON Schema.

One registry, ``CONTRACTS``: a command that writes JSON adds one
``JsonContract`` line and its schema file ``schemas/<kind>.schema.json``
(JSON Schema draft 2020-12, ``schema_version`` a ``const``). Every JSON
document starts with its kind's ``schema_version`` (``Document.json``), and
``btrfsscan schema KIND`` prints the file, completed by the contract's
``complete`` hook when part of it follows another registry (the report's
model list follows the cache model registry).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module, resources
from typing import Any


@dataclass(frozen=True)
class JsonContract:
    """A command's JSON document: its kind (the command name), version, a line on what it is, an optional hook.

    ``command`` False marks a document that is a file format rather than a
    command's output (``residency``: what ``live --save`` writes).
    ``per_filesystem``: the command reports every filesystem its images
    hold, one compact document a line. ``complete`` is ``"module:function"``
    under ``btrfsscan.present``, a function taking the shipped schema and
    returning the full one; it is imported only when the schema is asked for.
    """

    kind: str
    version: int
    description: str
    per_filesystem: bool = False
    complete: str | None = None
    command: bool = True  # False: a file format (the residency file), not a command's --json

    def json_help(self) -> str:
        """What ``--json`` writes, for the command's help."""
        if self.per_filesystem:
            shape = ("one JSON document per filesystem, each on one line (several filesystems: several lines)")
        else:
            shape = "one JSON document"
        return (f"Write {shape}, nothing else, to stdout (or the --output file); "
                f"`btrfsscan schema {self.kind}` prints its JSON Schema.")

    @property
    def resource(self) -> str:
        return f"{self.kind}.schema.json"

    def schema(self) -> dict[str, Any]:
        text = resources.files(__package__).joinpath("schemas", self.resource).read_text(encoding="utf-8")
        doc = json.loads(text)
        if self.complete:
            module, function = self.complete.split(":")
            doc = getattr(import_module(f".{module}", __package__), function)(doc)
        return doc


#: Every command's JSON contract, by command name.
CONTRACTS: dict[str, JsonContract] = {c.kind: c for c in (
    JsonContract("report", 1, "the page-cache report, one document per filesystem", per_filesystem=True,
                 complete="views.report:complete_schema"),
    JsonContract("ls", 1, "a directory listing (-R: everything below PATH)"),
    JsonContract("map", 1, "the extent map of one regular file"),
    JsonContract("super", 1, "the superblock, the devices and every superblock copy"),
    JsonContract("chunks", 1, "the chunk map with each block group's used bytes"),
    JsonContract("subvolumes", 1, "every subvolume and snapshot"),
    JsonContract("map-logical", 1, "where a logical range lives on the devices"),
    JsonContract("live", 1, "what a mounted filesystem caches now, in the report's layout plus `workload`",
                 complete="views.live:complete_schema"),
    JsonContract("residency", 1, "the residency file `live --save` writes and `report --resident` reads",
                 command=False),
)}


def schema_version(kind: str) -> int:
    """The ``schema_version`` of ``kind``'s JSON document."""
    return CONTRACTS[kind].version


def schema(kind: str) -> dict[str, Any]:
    """The full JSON Schema of ``kind``'s ``--json`` document."""
    return CONTRACTS[kind].schema()
