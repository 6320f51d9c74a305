"""Tables fit the width they are given: no line longer, no number, size, uuid or model name split.

The reference is the same command with ``--wide`` (every column, nothing
shortened): a narrow table may leave columns out and shorten paths with an
ellipsis, but every number it shows is one of the wide table's numbers.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from rich.cells import cell_len

from btrfsscan.cache.registry import MODELS
from btrfsscan.present.document import Field, KEEP, MIDDLE
from btrfsscan.present.renderers.table import _Column, fit_columns, shorten_middle
from support import run

WIDTHS = (60, 80, 120, 200)
COMMANDS = [
    ("report", "--sample"),
    ("report", "--sample", "--by-dir", "2"),
    ("ls", "--sample", "-R"),
    ("ls", "--sample", "@base/etc"),
    ("subvolumes", "--sample"),
    ("super", "--sample"),
    ("super", "--sample", "--all"),
    ("chunks", "--sample"),
    ("map-logical", "--sample", "22069248"),
    ("map", "--sample", "@base/usr/bin/python3.11"),
    ("map", "--sample", "@containers/web/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"),
]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UUID_START = re.compile(r"[0-9a-f]{8}-[0-9a-f-]*")
NUMBER = re.compile(r"(?<![\w.,])\d[\d,.]*")
UNIT = re.compile(r"(?<![\w.])(B|KiB|MiB|GiB|TiB|PiB)\b")


def _text(args, width: int | None, monkeypatch) -> str:
    if width is None:
        monkeypatch.delenv("COLUMNS", raising=False)
        result = run(*args, "--wide")
    else:
        monkeypatch.setenv("COLUMNS", str(width))
        result = run(*args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _numbers(text: str) -> set[str]:
    """Every number of ``text`` outside words an ellipsis shortened."""
    kept = " ".join(word for word in text.split() if "…" not in word)
    return {m.group().rstrip(".,") for m in NUMBER.finditer(kept)}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_table_fits_and_splits_nothing(args, width, monkeypatch):
    wide = _text(args, None, monkeypatch)
    text = _text(args, width, monkeypatch)
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    # every uuid shown is whole, and one the wide table shows
    for match in UUID_START.finditer(text):
        assert UUID.fullmatch(match.group()), match.group()
        assert match.group() in wide
    # every number shown is a number of the wide table (a split "46,06" / "8" would not be)
    assert _numbers(text) <= _numbers(wide), _numbers(text) - _numbers(wide)
    # every size keeps its unit on its line, right after the number
    for line in lines:
        for match in UNIT.finditer(line):
            assert re.search(r"\d(\.\d+)? ?$", line[:match.start()]), line


@pytest.mark.parametrize("width", WIDTHS)
def test_report_shows_every_model_name_whole(width, monkeypatch):
    text = _text(("report", "--sample"), width, monkeypatch)
    rows = [line.split()[0] for line in text.splitlines() if line.strip()]
    assert all(m.name in rows for m in MODELS)


def test_report_at_80_columns_takes_at_most_1_3_times_the_lines_at_160(monkeypatch):
    at_80 = len(_text(("report", "--sample"), 80, monkeypatch).splitlines())
    at_160 = len(_text(("report", "--sample"), 160, monkeypatch).splitlines())
    assert at_80 <= 1.3 * at_160, (at_80, at_160)


def test_narrow_tables_drop_lesser_columns_and_shorten_paths_in_the_middle(monkeypatch):
    wide = _text(("ls", "--sample", "-R"), None, monkeypatch)
    narrow = _text(("ls", "--sample", "-R"), 60, monkeypatch)
    assert "links" in wide.splitlines()[2] and "links" not in narrow.splitlines()[2]
    long_path = "@containers/cache/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
    assert long_path in wide and long_path not in narrow
    shortened = [w for w in narrow.split() if "…" in w and long_path.endswith(w.split("…")[1])
                 and long_path.startswith(w.split("…")[0])]
    assert shortened


def test_wide_shows_every_column_whatever_the_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    text = run("ls", "--sample", "-R", "--wide").stdout
    assert "@containers/cache/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0" in text and "links" in text


def test_shorten_middle_keeps_both_ends():
    assert shorten_middle("abcdefghij", 10) == "abcdefghij"
    assert shorten_middle("abcdefghij", 5) == "ab…ij"
    assert shorten_middle("abcdefghij", 6) == "abc…ij"
    assert shorten_middle("日本語日本語", 7) == "日本…語"  # wide characters count two cells
    assert cell_len(shorten_middle("日本語日本語", 7)) <= 7


def test_fit_columns_drops_the_highest_drop_first_and_never_shrinks_keep_columns():
    columns = [_Column(Field("a", "a", len, fit=KEEP), 10), _Column(Field("b", "b", len, drop=1), 10),
               _Column(Field("c", "c", len, drop=2), 10), _Column(Field("p", "path", len, fit=MIDDLE), 40)]
    assert fit_columns(columns, None) == {0: 10, 1: 10, 2: 10, 3: 40}
    assert fit_columns(columns, 200) == {0: 10, 1: 10, 2: 10, 3: 40}
    # 10 + 10 + 20 + 3*3 + 1 = 50: c (drop 2) goes first, then the path shrinks to its minimum 20
    assert fit_columns(columns, 50) == {0: 10, 1: 10, 3: 20}
    assert fit_columns(columns, 45) == {0: 10, 3: 28}


ROOT = Path(__file__).resolve().parent.parent


def _run_with_terminal(args: list[str], columns: int | None, tmp_path: Path) -> str:
    """``btrfsscan ARGS -o FILE`` with stderr on a pseudo-terminal of ``columns`` (None: no terminal)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(ROOT)
    target = tmp_path / "out.txt"
    if columns is None:
        subprocess.run([sys.executable, "-m", "btrfsscan", *args, "-o", str(target)], env=env, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        return target.read_text()
    leader, follower = os.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        subprocess.run([sys.executable, "-m", "btrfsscan", *args, "-o", str(target), "-q"] if args[0] == "report"
                       else [sys.executable, "-m", "btrfsscan", *args, "-o", str(target)],
                       env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
                       timeout=300)
    finally:
        os.close(follower)
        os.close(leader)
    return target.read_text()


def test_o_file_renders_at_the_terminals_width_or_unlimited(tmp_path):
    at_100 = _run_with_terminal(["ls", "--sample", "-R"], 100, tmp_path)
    assert 90 < max(cell_len(line) for line in at_100.splitlines()) <= 100
    unlimited = _run_with_terminal(["ls", "--sample", "-R"], None, tmp_path)
    assert "@containers/cache/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0" in unlimited
    assert "links" in unlimited and max(cell_len(line) for line in unlimited.splitlines()) > 100
