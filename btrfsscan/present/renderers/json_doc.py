"""JSON: each document as JSON (``CommandOutput.stream``: one compact document per line).

A document whose spec does not place ``warnings`` itself ends with the run's
``warnings`` and ``partial``, and its ``notes`` when the run has any (a log
tree replayed or left out).

The output is always valid UTF-8: names are given as text by their fields
(``document.name_fields``); any other string still holding a byte that is not
UTF-8 (surrogate-escaped, as the model carries names) shows it as U+FFFD.
"""

from __future__ import annotations

import json
from typing import IO

from ..document import CommandOutput


def valid_utf8(text: str) -> str:
    """``text`` with every surrogate-escaped byte as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def render(output: CommandOutput, stream: IO[str]) -> None:
    for document in output.documents:
        payload = document.json()
        if "warnings" not in payload:
            payload["warnings"] = list(output.warnings)
            payload["partial"] = bool(output.warnings)
            if output.notes:
                payload["notes"] = list(output.notes)
        text = json.dumps(payload, ensure_ascii=False, indent=None if output.stream else 2)
        stream.write(valid_utf8(text) + "\n")
    stream.flush()
