"""Inputs that are not images: refused from ``stat`` before they are opened, streams checked early,
and names from the command line shown escaped in every message (issue 14, items 5 and 7)."""

from __future__ import annotations

import lzma
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import run

from btrfsscan.volumes import image as image_mod

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """``python -m btrfsscan ARGS`` in a subprocess (a hang fails the test instead of blocking it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "btrfsscan", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def opened(monkeypatch):
    """Every path ``os.open`` is called with while the test runs."""
    paths: list[str] = []
    real = os.open

    def spy(path, *args, **kwargs):
        paths.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    return paths


def test_fifo_is_refused_without_being_opened(tmp_path, opened):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    result = run("report", fifo)
    assert result.exit_code == 2
    assert result.stderr == f"btrfsscan: error: {fifo} is a FIFO (named pipe), not an image file or a block device: " \
                            "refused without reading it\n"
    assert str(fifo) not in opened


def test_fifo_refused_by_every_command_in_a_subprocess(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    for args in (["report"], ["super"], ["chunks"], ["ls"], ["subvolumes"], ["map-logical"]):
        extra = ["0"] if args == ["map-logical"] else []
        result = _cli(*args, str(fifo), *extra)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "is a FIFO" in result.stderr


def test_character_device_and_socket_are_refused_without_being_opened(tmp_path, opened):
    result = run("super", "/dev/zero")
    assert result.exit_code == 2
    assert result.stderr == "btrfsscan: error: /dev/zero is a character device, not an image file or a block device: " \
                            "refused without reading it\n"
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        result = run("chunks", sock_path)
    assert result.exit_code == 2 and "is a socket" in result.stderr
    assert "/dev/zero" not in opened and str(sock_path) not in opened


def test_symlink_to_a_fifo_is_refused(tmp_path, opened):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    link = tmp_path / "image.img"
    link.symlink_to(fifo)
    result = run("ls", link)
    assert result.exit_code == 2 and f"{link} is a FIFO" in result.stderr
    assert str(link) not in opened


def test_file_named_xz_that_is_not_xz(tmp_path):
    fake = tmp_path / "disk.img.xz"
    fake.write_bytes(b"not compressed at all\n" * 100)
    result = run("report", fake)
    assert result.exit_code == 2
    assert result.stderr == (f"btrfsscan: error: {fake}: not a valid xz file: it does not start with the xz magic "
                             "fd 37 7a 58 5a 00 (and holds no btrfs superblock either)\n")


def test_raw_image_named_xz_is_read_as_raw(fixture_images, tmp_path):
    raw = fixture_images("volumes", "single")[1]
    named = tmp_path / "raw.img.xz"
    named.symlink_to(raw)
    assert run("super", "--json", named).exit_code == 0


def test_damaged_xz_stream_says_so(tmp_path):
    bad = tmp_path / "bad.img.xz"
    bad.write_bytes(lzma.compress(b"\0" * 4096)[:12] + b"\xff" * 64)
    result = run("super", bad)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"btrfsscan: error: {bad}: damaged xz stream after 0 bytes")


def test_xz_of_zeros_is_refused_after_its_first_superblock_bytes(tmp_path, monkeypatch):
    """A stream of 256 MiB of zeros: no more than the first 69,632 bytes (and lzma's read-ahead) are unpacked."""
    zeros = tmp_path / "zeros.img.xz"
    compressor = lzma.LZMACompressor(preset=0)
    with open(zeros, "wb") as out:
        block = bytes(1 << 20)
        for _ in range(256):
            out.write(compressor.compress(block))
        out.write(compressor.flush())
    delivered = []
    real_open = lzma.open

    class Counting:
        def __init__(self, path):
            self.inner = real_open(path)

        def read(self, n=-1):
            data = self.inner.read(n)
            delivered.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

    monkeypatch.setattr(image_mod.lzma, "open", Counting)
    result = run("report", zeros)
    assert result.exit_code == 2
    assert sum(delivered) == 65536 + 4096
    assert result.stderr == (f"btrfsscan: error: {zeros}: not a btrfs device: the xz stream holds no btrfs "
                             "superblock magic _BHRfS_M at offset 65600 nor a btrfs-image dump header at offset 0 "
                             "(stopped unpacking after 69632 bytes)\n")


def test_control_characters_of_a_path_argument_are_shown_escaped():
    result = _cli("map", "--sample", "a\x1b[31mred\x07")
    assert result.returncode == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert result.stderr.startswith("btrfsscan: error: no such file or directory: a\\x1b[31mred\\x07 ")
    result = _cli("super", "/nonexistent/\x1b]0;title\x07x.img")
    assert result.returncode == 2
    assert result.stderr == ("btrfsscan: error: cannot open /nonexistent/\\x1b]0;title\\x07x.img: "
                             "No such file or directory\n")
