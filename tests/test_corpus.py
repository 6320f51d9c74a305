"""Every file of the btrfs-progs test-image corpus through every command: no traceback, ever.

One case per corpus file (146).  Each runs ``tests/corpus_driver.py IMAGE`` in
a subprocess (60 s timeout, 3 GiB address-space limit set by the driver), which
runs ``super``, ``chunks``, ``subvolumes --json``, ``ls -R --json`` and
``report --json`` through click's CliRunner plus the in-process model
pipeline, and checks for each command (``corpus_driver.problems``):

* no Python traceback, no ``internal error`` line, no exception escaping;
* exit code 0, 1 or 2;
* exit 2: exactly one stderr line, starting ``btrfsscan: error:``;
* exit 1: at least one ``warning:`` line (and a non-empty JSON ``warnings``);
* exit 0: no warning;
* ``--json`` output parses whenever the exit code is 0 or 1;
* the model pipeline lets only ``BtrfsScanError`` escape.

Commands the CLI does not have yet are recorded as missing, not failed.  The
drivers run concurrently (one per core, ``BTRFSSCAN_CORPUS_JOBS`` to change)
from a module fixture, started in collection order, so every image stays its
own test case.  The corpus is found through ``BTRFSSCAN_CORPUS`` or as
``shared/corpus/btrfs-progs-images`` beside the checkout; without it the cases
skip, saying so.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from corpus_driver import TIMEOUT, corpus_files, find_corpus, problems, run_driver

CORPUS = find_corpus()
FILES = corpus_files(CORPUS) if CORPUS is not None else []
SKIP_REASON = ("btrfs-progs corpus not found: set BTRFSSCAN_CORPUS or put shared/corpus/btrfs-progs-images "
               "beside the checkout")

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def driver_runs(request):
    """image -> Future of its driver run, for the images selected in this session."""
    wanted = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.module is not None and item.module.__name__ == __name__ and "image" in params:
            wanted.append(params["image"])
    jobs = int(os.environ.get("BTRFSSCAN_CORPUS_JOBS", os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max(jobs, 1))
    futures = {image: pool.submit(run_driver, image, cwd=str(CORPUS), timeout=TIMEOUT) for image in wanted}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _explain(run: dict) -> str:
    lines = []
    for record in run["records"]:
        if record["status"] != "run":
            continue
        detail = {k: record.get(k) for k in ("exit", "exception", "json", "duration", "steps") if record.get(k) is not None}
        lines.append(f"  {record['command']}: {json.dumps(detail)}")
        lines += [f"    {line}" for line in record["stderr"][-12:]]
    if run["stderr"].strip():
        lines.append("  driver stderr: " + " | ".join(run["stderr"].strip().splitlines()[-5:]))
    return "\n".join(lines)


@pytest.mark.skipif(CORPUS is None, reason=SKIP_REASON)
@pytest.mark.parametrize("image", FILES or ["<corpus missing>"])
def test_corpus_image(image, driver_runs):
    run = driver_runs[image].result()
    bad = problems(run)
    assert not bad, f"{image} ({run['duration']} s):\n  " + "\n  ".join(bad) + "\n" + _explain(run)


# --- the checker itself (runs without the corpus) ------------------------------------


def _record(command: str, code: int | None = 0, stderr: list[str] | None = None, **extra) -> dict:
    record = {"command": command, "args": [command], "status": "run", "exit": code, "stderr": stderr or [],
              "traceback": False, "exception": None, "json": None, "json_warnings": None, "stdout_bytes": 0,
              "duration": 0.0}
    record.update(extra)
    return record


def _run_of(*changed: dict, timed_out: bool = False) -> dict:
    from corpus_driver import COMMANDS

    by_name = {r["command"]: r for r in changed}
    records = [by_name.get(name, _record(name)) for name, _ in COMMANDS] + [by_name.get("model", _record("model"))]
    if timed_out:
        records = records[:2]
    return {"image": "x", "records": records, "timed_out": timed_out, "returncode": -9 if timed_out else 0,
            "stderr": "", "duration": 0.0}


@pytest.mark.parametrize(
    "record, complaint",
    [
        (_record("chunks", 2, ["btrfsscan: internal error: KeyError: 3 (please report)"]), "internal error"),
        (_record("ls", 1, ["warning: x"], traceback=True, exception="IndexError: boom"), "IndexError: boom"),
        (_record("model", 0, [], traceback=True, exception="ValueError: bad"), "model: traceback"),
        (_record("super", 3, []), "exit code 3"),
        (_record("super", 2, ["warning: a", "btrfsscan: error: b"]), "exactly one"),
        (_record("super", 2, ["Usage: main super", "Error: no such option"]), "exactly one"),
        (_record("chunks", 1, []), "exit 1 without any warning"),
        (_record("chunks", 0, ["warning: a"]), "exit 0 but warnings"),
        (_record("report", 0, [], json=False), "does not parse"),
        (_record("report", 1, ["warning: a"], json=True, json_warnings=0), "JSON warnings list is empty"),
    ],
)
def test_problems_names_every_broken_promise(record, complaint):
    found = problems(_run_of(record))
    assert len(found) == 1 and complaint in found[0], found


def test_problems_accepts_the_three_outcomes_and_missing_commands():
    assert problems(_run_of(_record("super", 2, ["btrfsscan: error: not a btrfs device"]),
                            _record("chunks", 1, ["warning: device devid 2 is missing"]),
                            _record("report", 0, [], json=True),
                            _record("ls", None, [], status="missing"))) == []


def test_problems_names_the_command_that_hung():
    from corpus_driver import COMMANDS

    assert problems(_run_of(timed_out=True)) == [f"timed out (hang?) in command {COMMANDS[2][0]}"]
