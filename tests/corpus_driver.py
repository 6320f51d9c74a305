#!/usr/bin/env python3
"""Run every btrfsscan command on one image, in one process, and report how each ended.

    python tests/corpus_driver.py IMAGE          # one JSON line per command on stdout
    python tests/corpus_driver.py --table        # markdown outcome table of the whole corpus
    python tests/corpus_driver.py --table --write docs/corpus.md

Single-image mode runs, through click's ``CliRunner`` (stdout and stderr
captured separately, exceptions caught and recorded rather than raised), the
commands of ``COMMANDS`` under an address-space limit of ``MEMORY_LIMIT``
(3 GiB, ``RLIMIT_AS``; override with ``BTRFSSCAN_CORPUS_MEMORY`` in bytes).
Each command gives one JSON line, printed (and flushed) as soon as it ends, so
a caller that kills the driver after a timeout still sees which command hung:
the first one without a line.  Fields: ``command``, ``args``, ``status``
(``run``, or ``missing`` when the CLI has no such command yet), ``exit``,
``stderr`` (lines), ``traceback`` (a Python traceback, an ``internal error``
line or an exception escaping click), ``exception`` (its type and message),
``json`` (``true``/``false`` whether stdout parsed as JSON, ``null`` when the
command was not asked for JSON), ``json_warnings`` (length of the JSON
``warnings`` list), ``stdout_bytes`` and ``duration`` (seconds).

An ``.xz`` image is given as is to the first command (``super``, which thus
covers btrfsscan's own decompression) and is decompressed once, sparse, into a
temporary directory for the others, so a 2 GiB image is not unpacked five
times; the temporary path is replaced by the original one in everything
recorded.

Table mode runs single-image mode in a subprocess per corpus file (all cores,
60 s timeout each) and prints the markdown table of ``docs/corpus.md``.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import decompress_sparse

#: (name, arguments before IMAGE); the first must be ``super`` (see the module docstring).
COMMANDS: list[tuple[str, list[str]]] = [
    ("super", ["super"]),
    ("chunks", ["chunks"]),
    ("subvolumes", ["subvolumes", "--json"]),
    ("ls", ["ls", "-R", "--json"]),
    ("report", ["report", "--json", "--by-dir", "3"]),
]
MEMORY_LIMIT = 3 << 30
TIMEOUT = 60.0
CORPUS_NAME = ("shared", "corpus", "btrfs-progs-images")
ERROR_PREFIX = "btrfsscan: error:"
XZ_MAGIC = b"\xfd7zXZ\x00"


def find_corpus() -> Path | None:
    """The corpus directory: $BTRFSSCAN_CORPUS, else ``shared/`` beside or inside the checkout."""
    env = os.environ.get("BTRFSSCAN_CORPUS")
    if env:
        return Path(env) if Path(env).is_dir() else None
    here = Path(__file__).resolve()
    for base in (here.parents[2], here.parents[1].parent, here.parents[1], Path.cwd(), Path.cwd().parent):
        candidate = base.joinpath(*CORPUS_NAME)
        if (candidate / "MANIFEST.tsv").is_file():
            return candidate
    return None


def corpus_files(corpus: Path) -> list[str]:
    """Paths (relative to the corpus) of every image, from MANIFEST.tsv, in manifest order."""
    lines = (corpus / "MANIFEST.tsv").read_text().splitlines()
    return [line.split("\t", 1)[0] for line in lines[1:] if line.strip()]


# --- the in-process model pipeline -------------------------------------------------

#: Bounds of the pipeline's own walks (entries listed, file maps built, extent items parsed).
PIPELINE_LIMITS = {"entries": 20000, "file_maps": 200, "extent_items": 200000}


def model_pipeline(paths: list[str], limits: dict | None = None) -> dict:
    """Everything the commands do below the CLI, in-process; only ``BtrfsScanError`` may escape
    btrfsscan, so any other exception propagates from here (the caller's finding).

    Opens the filesystem (chunk tree), reads the subvolumes, scans every live fs
    tree into FileTables (``FileScanner``), lists the namespace recursively from
    the top level (``analysis.files.listing``, what ``ls -R`` runs), builds the
    file maps of the first regular inodes (``map``), parses the extent tree and
    builds the page-cache report (``analysis.report.scan_report``: the cache models
    and ``cache.report``).  A step that raises ``BtrfsScanError`` ends the steps
    that need its result (as the command would end with exit 2); the others go
    on.  Returns ``{'steps': {step: 'ok' | 'partial' | 'error: ...'},
    'warnings': [...]}``.
    """
    from btrfsscan.errors import BtrfsScanError
    from btrfsscan.format.constants import ItemType, ObjectId
    from btrfsscan.format.items import parse_item
    from btrfsscan.model.filemap import build_file_map
    from btrfsscan.model.filesystem import open_filesystem
    from btrfsscan.model.fs_tree import FileScanner
    from btrfsscan.analysis.files import listing as list_entries
    from btrfsscan.tree.walk import iter_items

    limits = {**PIPELINE_LIMITS, **(limits or {})}
    steps: dict[str, str] = {}
    try:
        fs = open_filesystem(paths)
    except BtrfsScanError as exc:
        return {"steps": {"open": f"error: {exc}"}, "warnings": []}
    steps["open"] = "ok"

    def step(name, fn):
        before = len(fs.warnings.items) + fs.warnings.dropped
        try:
            value = fn()
        except BtrfsScanError as exc:
            steps[name] = f"error: {exc}"
            return None
        steps[name] = "partial" if len(fs.warnings.items) + fs.warnings.dropped > before else "ok"
        return value

    def listing():
        for _listed, _ in zip(list_entries(fs, ".", recursive=True).entries, range(limits["entries"])):
            pass

    def file_maps(tables):
        for row in tables.regular_inodes()[: limits["file_maps"]]:
            build_file_map(fs, int(row["subvol"]), int(row["ino"]), f"inode {int(row['ino'])}", tables)

    def extent_tree():
        root = fs.tree_root(ObjectId.EXTENT_TREE)
        for _, (key, data) in zip(range(limits["extent_items"]), iter_items(fs.reader, root)):
            if key[1] in (ItemType.EXTENT_ITEM, ItemType.METADATA_ITEM):
                parse_item(key, data, f"extent tree item {key}")

    def report():
        from btrfsscan.analysis.report import scan_report

        return scan_report(fs, page_size=4096, top=10, by_dir=3)

    try:
        subvols = step("subvolumes", lambda: fs.subvolumes)
        if subvols is not None:
            tables = step("scan", lambda: FileScanner(fs.reader, fs.warnings).scan(subvols.live()))
            if tables is not None:
                step("ls", listing)
                step("filemap", lambda: file_maps(tables))
        step("extents", extent_tree)
        if subvols is not None:
            step("report", report)
    finally:
        fs.close()
    return {"steps": steps, "warnings": fs.warnings.messages()}


# --- fixtures unpacked once per process -----------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_UNPACKED: dict[str, list[Path]] = {}
_UNPACK_DIR: list[str] = []


def unpacked_fixture(name: str) -> list[Path]:
    """The device images of fixture ``name`` ('volumes/single'), unpacked sparse once per process.

    Shared by the damage and fuzz tests; the directory is removed at exit.
    """
    if name not in _UNPACKED:
        sources = sorted((FIXTURES / name).glob("dev*.img.xz"))
        if not sources:
            raise FileNotFoundError(f"fixture {name} has no dev*.img.xz")
        if not _UNPACK_DIR:
            import atexit

            _UNPACK_DIR.append(tempfile.mkdtemp(prefix="btrfsscan-fixtures-"))
            atexit.register(shutil.rmtree, _UNPACK_DIR[0], True)
        directory = Path(_UNPACK_DIR[0]) / name.replace("/", "-")
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        for src in sources:
            dst = directory / src.name.removesuffix(".xz")
            decompress_sparse(str(src), str(dst))
            out.append(dst)
        _UNPACKED[name] = out
    return _UNPACKED[name]


def sparse_copy(src, dst, limit: int | None = None) -> None:
    """Copy ``src`` to ``dst`` data segment by data segment (SEEK_DATA/SEEK_HOLE): the copy stays
    sparse.  ``limit``: copy only the first ``limit`` bytes (a truncated image)."""
    size = os.path.getsize(src) if limit is None else min(limit, os.path.getsize(src))
    with open(src, "rb") as reader, open(dst, "wb") as writer:
        fd = reader.fileno()
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            reader.seek(start)
            writer.seek(start)
            remaining = end - start
            while remaining:
                chunk = reader.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                writer.write(chunk)
                remaining -= len(chunk)
            pos = end
        writer.truncate(size)


# --- single-image mode --------------------------------------------------------------


def _limit_memory() -> int:
    limit = int(os.environ.get("BTRFSSCAN_CORPUS_MEMORY", MEMORY_LIMIT))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


def _is_xz(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(XZ_MAGIC)) == XZ_MAGIC
    except OSError:
        return False


def _has_traceback(lines: list[str]) -> bool:
    return any(line.startswith("Traceback") or "internal error" in line for line in lines)


def run_command(main, runner, name: str, args: list[str], image: str, shown: str) -> dict:
    """Run one command on ``image``; ``shown`` replaces ``image`` in what is recorded."""
    record: dict = {"command": name, "args": args}
    if name not in main.commands:
        record.update(status="missing", exit=None, stderr=[], traceback=False, exception=None, json=None,
                      json_warnings=None, stdout_bytes=0, duration=0.0)
        return record
    start = time.perf_counter()
    result = runner.invoke(main, [*args, image], catch_exceptions=True)
    duration = time.perf_counter() - start

    def clean(text: str) -> str:
        return text.replace(image, shown) if image != shown else text

    stdout = clean(result.stdout)
    stderr = [clean(line) for line in result.stderr.splitlines()]
    exception = None
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    if escaped:
        exc = result.exception
        exception = clean(f"{type(exc).__name__}: {exc}")
        if result.exc_info is not None:
            stderr.extend(clean("".join(traceback.format_exception(*result.exc_info))).splitlines())
    parsed = None
    json_warnings = None
    if "--json" in args:
        try:  # one JSON document, or JSON Lines (``report`` writes one object per filesystem)
            try:
                documents = [json.loads(stdout)]
            except ValueError:
                documents = [json.loads(line) for line in stdout.splitlines() if line.strip()]
            parsed = bool(documents)
            lists = [d["warnings"] for d in documents if isinstance(d, dict) and isinstance(d.get("warnings"), list)]
            if lists:
                json_warnings = sum(map(len, lists))
        except ValueError:
            parsed = False
    record.update(status="run", exit=result.exit_code, stderr=stderr, traceback=escaped or _has_traceback(stderr),
                  exception=exception, json=parsed, json_warnings=json_warnings, stdout_bytes=len(result.stdout_bytes),
                  duration=round(duration, 3))
    return record


def run_pipeline(image: str, shown: str) -> dict:
    """``model_pipeline`` on ``image`` as a record like a command's (command ``model``)."""
    record: dict = {"command": "model", "args": [], "status": "run", "json": None, "json_warnings": None,
                    "stdout_bytes": 0}
    start = time.perf_counter()
    try:
        result = model_pipeline([image])
        record.update(exit=0, traceback=False, exception=None,
                      steps={k: v.replace(image, shown) for k, v in result["steps"].items()},
                      stderr=[f"warning: {w}".replace(image, shown) for w in result["warnings"][:20]])
    except Exception as exc:  # noqa: BLE001 - recording exactly what escaped is the point
        record.update(exit=None, traceback=True, exception=f"{type(exc).__name__}: {exc}".replace(image, shown),
                      stderr=traceback.format_exc().replace(image, shown).splitlines())
    record["duration"] = round(time.perf_counter() - start, 3)
    return record


def drive(image: str, out=sys.stdout) -> int:
    """Run COMMANDS on ``image``, one JSON line each on ``out``."""
    limit = _limit_memory()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's btrfsscan
    os.environ.pop("BTRFSSCAN_DEBUG", None)  # the traceback would be the CLI's, on purpose
    os.environ.setdefault("COLUMNS", "160")
    from click.testing import CliRunner

    from btrfsscan.present.cli import main

    runner = CliRunner()
    tmpdir = None
    unpacked = image
    try:
        for index, (name, args) in enumerate(COMMANDS):
            target = image
            if index > 0 and _is_xz(image):
                if tmpdir is None:
                    tmpdir = tempfile.mkdtemp(prefix="btrfsscan-corpus-")
                    unpacked = os.path.join(tmpdir, os.path.basename(image).removesuffix(".xz"))
                    try:
                        decompress_sparse(image, unpacked)
                    except (OSError, lzma.LZMAError, EOFError):
                        unpacked = image  # let btrfsscan itself report the damaged stream
                target = unpacked
            record = run_command(main, runner, name, args, target, image)
            record["memory_limit"] = limit
            out.write(json.dumps(record) + "\n")
            out.flush()
        out.write(json.dumps(run_pipeline(unpacked, image)) + "\n")
        out.flush()
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return 0


# --- checking one image's records ---------------------------------------------------


def run_driver(image: str, *, cwd: str | None = None, timeout: float = TIMEOUT) -> dict:
    """Run single-image mode in a subprocess: {'records', 'timed_out', 'returncode', 'stderr', 'duration'}."""
    cmd = [sys.executable, str(Path(__file__).resolve()), image]
    env = dict(os.environ)
    env.pop("BTRFSSCAN_DEBUG", None)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 9)  # the driver's own process group (start_new_session)
        stdout, stderr = proc.communicate()
    records = []
    for line in stdout.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return {"image": image, "records": records, "timed_out": timed_out, "returncode": proc.returncode,
            "stderr": stderr, "duration": round(time.perf_counter() - start, 2)}


def problems(run: dict) -> list[str]:
    """Every broken promise in one driver run (empty: the image passed)."""
    out = []
    done = {r["command"] for r in run["records"]}
    expected = [name for name, _ in COMMANDS] + ["model"]
    if run["timed_out"]:
        pending = [name for name in expected if name not in done]
        out.append(f"timed out (hang?) in command {pending[0] if pending else '?'}")
    elif run["returncode"] != 0 or len(run["records"]) != len(expected):
        tail = " | ".join(run["stderr"].strip().splitlines()[-3:])
        out.append(f"driver exited {run['returncode']} after {len(run['records'])} commands: {tail}")
    for r in run["records"]:
        if r["status"] == "missing":
            continue
        name, code, stderr = r["command"], r["exit"], r["stderr"]
        if r["traceback"]:
            first = r["exception"] or next((line for line in stderr if "internal error" in line or "Error" in line), "")
            out.append(f"{name}: traceback / internal error: {first}")
            continue
        if name == "model":  # the in-process pipeline: only the exception type matters
            continue
        if code not in (0, 1, 2):
            out.append(f"{name}: exit code {code}")
            continue
        warnings = [line for line in stderr if line.startswith("warning:")]
        if code == 2:
            if len(stderr) != 1 or not stderr[0].startswith(ERROR_PREFIX):
                out.append(f"{name}: exit 2 must give exactly one '{ERROR_PREFIX}' line on stderr, got {stderr[:3]}")
        elif code == 1 and not warnings:
            out.append(f"{name}: exit 1 without any warning on stderr")
        elif code == 0 and warnings:
            out.append(f"{name}: exit 0 but warnings on stderr: {warnings[0]}")
        if code in (0, 1) and r["json"] is False:
            out.append(f"{name}: --json output does not parse")
        if code == 1 and r["json"] and r["json_warnings"] == 0:
            out.append(f"{name}: exit 1 but the JSON warnings list is empty")
    return out


# --- table mode ---------------------------------------------------------------------


def outcome(run: dict) -> tuple[str, str]:
    """(ok | partial | error | hang | FAIL, message) of the most complete command that ran.

    FAIL: some command (or the model pipeline) broke a promise: traceback, bad
    exit code, stderr not matching the exit code (``problems``).
    """
    if run["timed_out"]:
        return "hang", problems(run)[0]
    ran = [r for r in run["records"] if r["status"] == "run" and r["command"] != "model"]
    if not ran:
        return "FAIL", "driver produced no result"
    bad = problems(run)
    if bad:
        return "FAIL", "; ".join(bad)
    r = ran[-1]
    if r["exit"] == 0:
        return "ok", ""
    if r["exit"] == 1:
        first = next((line for line in r["stderr"] if line.startswith("warning:")), "")
        return "partial", first.removeprefix("warning:").strip()
    return "error", r["stderr"][0].removeprefix(ERROR_PREFIX).strip() if r["stderr"] else ""


def pipeline_outcome(run: dict) -> str:
    """The model pipeline's result: ok, partial, or error at its first failed step."""
    record = next((r for r in run["records"] if r["command"] == "model"), None)
    if record is None or record["traceback"]:
        return "FAIL"
    steps = record.get("steps", {})
    failed = [name for name, value in steps.items() if value.startswith("error")]
    if failed:
        return f"error ({failed[0]})"
    return "partial" if any(v == "partial" for v in steps.values()) or record["stderr"] else "ok"


def _cell(text: str, limit: int = 220) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(corpus: Path, jobs: int) -> str:
    files = corpus_files(corpus)
    with ThreadPoolExecutor(jobs) as pool:
        runs = list(pool.map(lambda f: run_driver(f, cwd=str(corpus)), files))
    commands = [name for name, _ in COMMANDS]
    present = [n for n in commands if any(r["command"] == n and r["status"] == "run" for run in runs for r in run["records"])]
    counts: dict[str, int] = {}
    rows = []
    for run in runs:
        kind, message = outcome(run)
        counts[kind] = counts.get(kind, 0) + 1
        codes = {r["command"]: r["exit"] for r in run["records"] if r["status"] == "run"}
        exits = " ".join(str(codes.get(n, "–")) for n in present)
        rows.append(f"| `{run['image']}` | {kind} | {exits} | {pipeline_outcome(run)} | {_cell(message)} |")
    missing = [n for n in commands if n not in present]
    summary = ", ".join(f"{counts[k]} {k}" for k in ("ok", "partial", "error", "FAIL", "hang") if k in counts)
    head = [
        "# Corpus outcomes",
        "",
        "Generated by `python tests/corpus_driver.py --table --write docs/corpus.md` over the",
        f"{len(files)} files of the btrfs-progs test-image corpus (`shared/corpus/btrfs-progs-images`,",
        "see its README.md and MANIFEST.tsv); `tests/test_corpus.py` checks the same runs.",
        "Regenerate it whenever a command is added or a message changes.",
        "",
        f"Commands run on each image: {', '.join('`' + ' '.join(a) + '`' for n, a in COMMANDS if n in present)}"
        + (f" (not yet in the CLI, so not run: {', '.join(missing)})" if missing else "") + ".",
        "The outcome and message are those of the last command in that list that exists: ok (exit 0),",
        "partial (exit 1; the first warning), error (exit 2; the error line without its `btrfsscan: error:`",
        "prefix); FAIL or hang: a broken promise (traceback, wrong exit code or stderr; `tests/test_corpus.py`",
        "fails). `exits` lists the exit code of every command, in order. `model` is the in-process pipeline",
        "below the CLI (`corpus_driver.model_pipeline`: open, subvolumes, FileScanner, recursive listing,",
        "file maps, extent tree, report): ok, partial, or error at its first failing step (it goes on",
        "further than the commands, e.g. it parses every extent item, which no command does yet).",
        "",
        "The two `fsck/006-bad-root-items/*.tar.xz` files are xz-compressed tar archives holding one",
        "raw image; btrfsscan unpacks the image from the archive (sparse) and reads it.",
        "",
        f"Summary: {summary}.",
        "",
        "| image | outcome | exits | model | message |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"


def main_cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", nargs="?", help="image to run every command on")
    parser.add_argument("--table", action="store_true", help="markdown outcome table of the whole corpus")
    parser.add_argument("--write", metavar="FILE", help="with --table: write the table to FILE")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="with --table: parallel images")
    ns = parser.parse_args(argv)
    if ns.table:
        corpus = find_corpus()
        if corpus is None:
            parser.error("corpus not found (set BTRFSSCAN_CORPUS)")
        text = table(corpus, ns.jobs)
        if ns.write:
            Path(ns.write).write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    if not ns.image:
        parser.error("give IMAGE or --table")
    return drive(ns.image)


if __name__ == "__main__":
    sys.exit(main_cli())
