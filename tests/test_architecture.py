"""The package's structure, checked from its source: layers, the command modules, class names."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "btrfsscan"

#: Each package's layer; a module may import only from its own layer or lower ones.
#: ``live`` (a mounted filesystem) is a data source beside ``model``; ``workingset`` models beside ``cache``.
LAYERS = {"format": 1, "volumes": 2, "tree": 3, "model": 4, "live": 4, "cache": 5, "workingset": 5,
          "analysis": 6, "present": 7}
#: Modules every layer may use (``errors``, ``arrays``, the version).
BASE = 0


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


#: The entry point stands above every layer.
ENTRY = "btrfsscan.__main__"


def _layer(module: str) -> int:
    if module == ENTRY:
        return max(LAYERS.values()) + 1
    parts = module.split(".")
    return LAYERS.get(parts[1], BASE) if len(parts) > 1 else BASE


def _imports(module: str, path: Path) -> list[str]:
    """The btrfsscan modules ``module`` imports (relative imports resolved), wherever the import stands."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append(target)
            out.extend(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
    return [t for t in out if t == "btrfsscan" or t.startswith("btrfsscan.")]


def test_layers_import_only_downwards():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        for target in _imports(module, path):
            if target in modules or f"{target}.__init__" in modules:
                if _layer(target) > _layer(module):
                    wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_only_the_entry_points_import_cli():
    """Command modules take the helpers they share from ``present.command``: no cycle with ``cli``."""
    users = sorted(m for m, p in _modules().items() if "btrfsscan.present.cli" in _imports(m, p))
    assert users == [ENTRY], users


def test_cache_and_analysis_never_print_or_render():
    for module, path in _modules().items():
        if _layer(module) in (LAYERS["cache"], LAYERS["analysis"]):
            tree = ast.parse(path.read_text())
            calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            assert "print" not in calls, module
            assert not any(t.startswith(("click", "rich")) for t in _imports(module, path)), module


def test_no_two_classes_share_a_name():
    where = defaultdict(list)
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(module)
    shared = {name: mods for name, mods in where.items() if len(mods) > 1}
    assert not shared, shared
