"""JSON: each document as JSON (``CommandOutput.stream``: one compact document per line).

A document whose spec does not place ``warnings`` itself ends with the run's
``warnings`` and ``partial``, and its ``notes`` when the run has any (a log
tree replayed or left out).
"""

from __future__ import annotations

import json
from typing import IO

from ..document import CommandOutput


def render(output: CommandOutput, stream: IO[str]) -> None:
    for document in output.documents:
        payload = document.json()
        if "warnings" not in payload:
            payload["warnings"] = list(output.warnings)
            payload["partial"] = bool(output.warnings)
            if output.notes:
                payload["notes"] = list(output.notes)
        if output.stream:
            stream.write(json.dumps(payload, ensure_ascii=False) + "\n")
        else:
            stream.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    stream.flush()
