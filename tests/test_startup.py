"""Start-up cost, checked by structure: which heavy packages a command line imports.

Timings are too noisy to test; what is imported is not. ``btrfsscan --help``
imports no command module (so neither numpy, construct nor rich), and
``report`` with machine-readable output and stderr not a terminal never
imports rich.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import run

from btrfsscan.present.cli import COMMANDS, main

#: Runs ``btrfsscan ARGS...`` (or only imports the CLI, without ARGS), its
#: stdout discarded, then prints the top-level packages and btrfsscan subpackages it imported as JSON.
_PROBE = """
import contextlib, io, json, sys
from btrfsscan.present.cli import main
if sys.argv[1:]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(sys.argv[1:], prog_name="btrfsscan")
        except SystemExit as exc:
            assert exc.code in (0, None), f"exit {exc.code}"
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules}
                        | {".".join(name.split(".")[:2]) for name in sys.modules if name.startswith("btrfsscan.")})))
"""


def _imported(*args: str) -> set[str]:
    """The top-level packages and btrfsscan's subpackages a fresh interpreter imports for ``btrfsscan ARGS...``
    (stderr is a pipe)."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(("args", "needed", "absent"), [
    ((), {"click"}, {"numpy", "construct", "rich"}),
    (("--help",), {"click"}, {"numpy", "construct", "rich"}),
    # the live data source (ioctls, mount tables) only where a command reads a mounted filesystem
    (("report", "--sample", "--json"), {"numpy", "btrfsscan.cache"}, {"rich", "btrfsscan.live"}),
    (("report", "--sample", "--format", "prometheus"), {"numpy"}, {"rich", "btrfsscan.live"}),
])
def test_imports(args, needed, absent):
    imported = _imported(*args)
    assert needed <= imported  # the probe really ran the command
    assert not imported & absent


def test_help_lists_every_command_with_its_short_help():
    result = run("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for name, lazy in COMMANDS.items():
        assert f"{name} {lazy.short_help}" in text


def test_every_command_loads_under_its_name():
    assert sorted(main.commands) == sorted(COMMANDS)
    for name, lazy in COMMANDS.items():
        command = main.commands[name]
        assert command.name == name
        assert command.get_short_help_str() == lazy.short_help


#: glibc's malloc.h: M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX.
_GLIBC = {"trim_threshold": -1, "mmap_threshold": -3, "arena_max": -8}


def test_allocator_reuses_freed_memory_unless_told_otherwise(monkeypatch):
    """glibc keeps what numpy frees (the mmap threshold at its 64-bit maximum, no trimming, one arena), unless
    the environment already sets glibc's allocator."""
    from btrfsscan.present import cli

    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(cli.ctypes, "CDLL", lambda name: Libc())
    for name in [n for n in os.environ if n.startswith("MALLOC_")] + ["GLIBC_TUNABLES"]:
        monkeypatch.delenv(name, raising=False)
    cli._reuse_freed_memory()
    assert dict(calls) == {_GLIBC["mmap_threshold"]: 32 << 20, _GLIBC["trim_threshold"]: 2**31 - 1,
                           _GLIBC["arena_max"]: 1}
    for name, value in (("MALLOC_ARENA_MAX", "4"), ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")):
        calls.clear()
        with monkeypatch.context() as m:
            m.setenv(name, value)
            cli._reuse_freed_memory()
        assert calls == []
