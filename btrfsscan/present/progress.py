"""The progress bar ``report`` shows on stderr when that is a terminal.

A module of its own so that rich is imported only when the bar is shown.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text


class _CountColumn(ProgressColumn):
    """``3/10 subvolumes`` while counting; nothing while a phase has no count."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        if task.total is None or not unit:
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total)} {unit}", style="progress.download")


def progress_bar() -> Progress:
    """A transient bar on stderr: description, bar, ``done/total unit``, elapsed time."""
    return Progress(TextColumn("{task.description}"), BarColumn(), _CountColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)
