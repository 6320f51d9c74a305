"""stdout as the shell gives it: a pipe the reader closes (`| head -1`), a full disk, a missing -o directory.

Real processes and real pipes: the behaviour under test is the interpreter's
and rich's handling of EPIPE/ENOSPC, which CliRunner's in-memory streams do
not have.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

#: One invocation of every command on the bundled sample (text and JSON).
COMMANDS = [
    ("report", "--sample"),
    ("report", "--sample", "--json"),
    ("map", "--sample", "@base/etc/hosts"),
    ("ls", "--sample", "-R"),
    ("ls", "--sample", "-R", "--json"),
    ("subvolumes", "--sample"),
    ("super", "--sample", "--all"),
]


def _btrfsscan(*args: str) -> list[str]:
    return [sys.executable, "-m", "btrfsscan", *args]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_reader_gone_before_the_first_write_exits_0_quietly(args):
    """The read end is closed before the command writes anything: every write is EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(_btrfsscan(*args), stdout=write_end, stderr=subprocess.PIPE, env=ENV, timeout=300)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, b"")


@pytest.mark.parametrize("args", [("ls", "--sample", "-R"), ("ls", "--sample", "-R", "--json"),
                                  ("report", "--sample"), ("map", "--sample", "@base/etc/hosts")], ids=" ".join)
def test_head_1_in_a_shell_pipeline(args):
    """`btrfsscan ... | head -1`: the first line arrives, the command's own status is 0 and stderr is empty."""
    command = " ".join(_btrfsscan(*args)) + " 2>err | head -1; echo ${PIPESTATUS[0]} >status"
    cwd = Path(os.environ.get("TMPDIR", "/tmp"))
    work = cwd / f"btrfsscan-head-{os.getpid()}-{abs(hash(args))}"
    work.mkdir()
    try:
        done = subprocess.run(["bash", "-c", command], cwd=work, env=ENV, capture_output=True, timeout=300)
        assert done.stdout.count(b"\n") == 1 and done.stdout.strip()
        assert (work / "status").read_text().strip() == "0"
        assert (work / "err").read_bytes() == b""
    finally:
        for name in ("err", "status"):
            (work / name).unlink(missing_ok=True)
        work.rmdir()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this machine")
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_stdout_on_a_full_disk_is_one_error_line(args):
    with open("/dev/full", "w") as full:
        done = subprocess.run(_btrfsscan(*args), stdout=full, stderr=subprocess.PIPE, env=ENV, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 2
    assert err == "btrfsscan: error: cannot write the result to stdout: No space left on device\n"


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_o_in_a_missing_directory_is_refused_before_the_scan(args, tmp_path):
    target = tmp_path / "nonexistent" / "x.txt"
    done = subprocess.run(_btrfsscan(*args, "-o", str(target)), capture_output=True, env=ENV, timeout=300)
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode() == (f"btrfsscan: error: cannot write the output {target}: "
                                    f"directory {target.parent} does not exist\n")
