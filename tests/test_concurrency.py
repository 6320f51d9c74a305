"""Tests of btrfsscan.concurrency: values computed once across threads, computations side by side."""

from __future__ import annotations

import copy
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import pytest

from btrfsscan import concurrency
from btrfsscan.concurrency import Once, shared, side_by_side

#: Long enough never to be reached where the code is right; a wait that reaches it fails the test.
PATIENCE = 30


def test_once_computes_each_key_once_whichever_thread_asks():
    once, calls, go = Once(), [], threading.Event()

    def compute():
        calls.append(threading.current_thread().name)
        go.wait(PATIENCE)  # every other thread asks while this one computes
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(once.get("k", compute))) for _ in range(8)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(PATIENCE)
    assert len(calls) == 1 and len(results) == 8 and all(r is results[0] for r in results)


def test_once_keeps_no_exception():
    once, attempts = Once(), []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first try")
        return 42

    with pytest.raises(ValueError, match="first try"):
        once.get("k", flaky)
    assert once.get("k", flaky) == 42 and once.get("k", flaky) == 42 and len(attempts) == 2


def test_once_copies_compute_again():
    once = Once()
    once.get("k", lambda: 1)
    for twin in (pickle.loads(pickle.dumps(once)), copy.deepcopy(once)):
        assert twin.get("k", lambda: 2) == 2


@dataclass
class _Inputs:
    base: int
    computed: list = field(default_factory=list)
    _once: Once = field(default_factory=Once, repr=False, compare=False)

    @shared
    def doubled(self) -> int:
        """Twice the base."""
        self.computed.append("doubled")
        return 2 * self.base


def test_shared_is_a_property_computed_once_per_instance():
    a, b = _Inputs(1), _Inputs(5)
    assert (a.doubled, a.doubled, b.doubled) == (2, 2, 10)
    assert a.computed == ["doubled"] and b.computed == ["doubled"]
    assert isinstance(_Inputs.doubled, shared) and _Inputs.doubled.__doc__ == "Twice the base."
    assert a == _Inputs(1, ["doubled"])  # the dataclass ignores the cache


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(concurrency, "cores", lambda: 2)


def test_side_by_side_returns_results_in_order(two_cores):
    assert side_by_side([lambda i=i: i * i for i in range(7)]) == [i * i for i in range(7)]
    assert side_by_side([]) == [] and side_by_side([lambda: "one"]) == ["one"]


def test_side_by_side_runs_one_computation_per_core(two_cores):
    lock, running, peak, ready = threading.Lock(), [0], [0], threading.Barrier(2, timeout=PATIENCE)

    def call():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        ready.wait()  # two at a time meet here; a third would wait for the barrier's next round
        with lock:
            running[0] -= 1

    side_by_side([call] * 6)
    assert peak[0] == 2


def test_a_thread_waiting_for_a_shared_value_gives_its_core_up(two_cores):
    """Two computations wait for a value a third one's result unblocks: with two cores that finishes only
    if the waiting thread lets the third one run."""
    once, unblocked = Once(), threading.Event()

    def compute_value():
        assert unblocked.wait(PATIENCE), "the third computation never ran"
        return "value"

    first = lambda: once.get("v", compute_value)  # noqa: E731
    second = lambda: once.get("v", compute_value)  # noqa: E731
    assert side_by_side([first, second, unblocked.set]) == ["value", "value", None]


def test_side_by_side_raises_a_failure_after_every_call_ended(two_cores):
    finished = []

    def fails():
        raise RuntimeError("model failed")

    def slow():
        threading.Event().wait(0.05)
        finished.append("slow")

    with pytest.raises(RuntimeError, match="model failed"):
        side_by_side([fails, slow, slow])
    assert finished == ["slow", "slow"]


def test_one_core_runs_the_calls_in_order_in_this_thread(monkeypatch):
    monkeypatch.setattr(concurrency, "cores", lambda: 1)
    seen = []
    side_by_side([lambda i=i: seen.append((i, threading.current_thread())) for i in range(3)])
    assert seen == [(i, threading.current_thread()) for i in range(3)]


def test_an_interrupted_caller_does_not_wait_for_the_threads():
    """Ctrl-C during a long computation (``--read-data`` of a large filesystem): the process ends at once,
    the threads (daemons, computing only) with it."""
    code = (
        "import threading, time\n"
        "from btrfsscan import concurrency\n"
        "concurrency.cores = lambda: 2\n"
        "started = threading.Event()\n"
        "def long():\n"
        "    started.set(); time.sleep(600)\n"
        "def ready():\n"
        "    started.wait(); print('ready', flush=True); time.sleep(600)\n"
        "try:\n"
        "    concurrency.side_by_side([long, ready])\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=PATIENCE)  # TimeoutExpired: it waited for its threads
    finally:
        proc.kill()
        proc.communicate()
    assert out.strip() == "interrupted" and proc.returncode == 0
