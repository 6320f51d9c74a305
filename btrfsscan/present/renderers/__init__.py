"""The renderer registry: every output format, each one module of this package.

A renderer module defines ``render(output: CommandOutput, stream: IO[str]) -> None``
and writes every document of ``output`` to ``stream``. It is registered by one
line in ``RENDERERS``; its module is imported only when the format is used
(so ``--json`` never imports rich). ``kinds`` limits a format to the
commands whose documents it can render (None: every command); each
command's ``--format`` choices follow from it. A module may also define
``check()``, raising a ``BtrfsScanError`` when the format cannot be written
here (an optional dependency missing); commands call it before reading
anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from ..document import CommandOutput

RenderFunction = Callable[["CommandOutput", IO[str]], None]


@dataclass(frozen=True)
class Renderer:
    """An output format: its name (``--format NAME``), its module here, what it is, which commands it serves."""

    name: str
    module: str
    description: str
    kinds: frozenset[str] | None = None

    def serves(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    def load(self) -> RenderFunction:
        return import_module(f".{self.module}", __package__).render

    def check(self) -> None:
        """The module's ``check()`` (what it needs is there), when it has one."""
        check = getattr(import_module(f".{self.module}", __package__), "check", None)
        if check is not None:
            check()


#: Every output format, by name; the first is the default.
RENDERERS: dict[str, Renderer] = {r.name: r for r in (
    Renderer("table", "table", "rich tables, for people"),
    Renderer("json", "json_doc", "one JSON document (several filesystems: one per line)"),
    Renderer("prometheus", "prometheus", "the Prometheus text exposition format", frozenset({"report", "live"})),
    Renderer("html", "html", "one self-contained HTML page with charts (needs btrfsscan[html])", frozenset({"report", "live"})),
)}
DEFAULT_FORMAT = "table"


def formats_for(kind: str) -> list[str]:
    """The formats a command's documents can be written in."""
    return [name for name, r in RENDERERS.items() if r.serves(kind)]


def render(fmt: str, output: CommandOutput, stream: IO[str]) -> None:
    """Write ``output`` to ``stream`` in format ``fmt``."""
    RENDERERS[fmt].load()(output, stream)
