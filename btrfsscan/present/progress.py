"""The progress bar ``report``, ``ls`` and ``live`` show on stderr when that is a terminal.

A module of its own so that rich is imported only when the bar is shown. It
is the CLI's ``analysis.report.ScanProgress``.
"""

from __future__ import annotations

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text


class _CountColumn(ProgressColumn):
    """``3/10 subvolumes`` (``1.2/4.0 GB`` of bytes) while counting; nothing while a phase has no count."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        if not unit:
            return Text("")
        if task.total is None:  # counting with no end known (a listing below a path)
            return Text(f"{int(task.completed)} {unit}", style="progress.download")
        if unit == "bytes":
            return Text(f"{decimal(int(task.completed))}/{decimal(int(task.total))} read", style="progress.download")
        return Text(f"{int(task.completed)}/{int(task.total)} {unit}", style="progress.download")


class ProgressBar:
    """A transient bar on stderr: description, bar, ``done/total unit``, elapsed time; one task at a time."""

    def __init__(self) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), _CountColumn(), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=True)
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def start(self, description: str, total: int | None, unit: str) -> None:
        """A new task, in place of the one shown (``live --device``: the walk, then the device's scan)."""
        self.done()
        self._task = self._progress.add_task(description, total=total, unit=unit)

    def advance(self) -> None:
        if self._task is not None:
            self._progress.advance(self._task)

    def update(self, completed: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=completed)

    def phase(self, description: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=description, total=None, unit="")

    def done(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
