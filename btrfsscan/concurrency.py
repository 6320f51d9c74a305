"""Independent computations side by side, on the cores numpy's loops leave free.

numpy releases the GIL inside most of its array loops (sorts, ufuncs), and
most of a model's time is spent there. The models and the breakdowns share
nothing but read-only inputs and intermediate results that are each computed
once (``Once``), so they run in threads: on two cores the content designs (a
chain of grouping passes over every distinct page) overlap the extent
models and the breakdowns. At most one computation per core makes progress
at a time (a thread waiting for an intermediate result another thread is
computing gives its core up meanwhile), so memory holds the working sets of
as many computations as there are cores, not of every model at once. Every
computation is a pure function of its inputs: the figures do not depend on
the order the threads run in.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: The core a thread of ``side_by_side`` holds while it computes (``core``: the semaphore it came from).
_lane = threading.local()


@contextmanager
def _core_given_up() -> Iterator[None]:
    """While waiting for another thread: let a computation that can go on have this thread's core."""
    core = getattr(_lane, "core", None)
    if core is None:
        yield
        return
    core.release()
    try:
        yield
    finally:
        core.acquire()


class Once:
    """Values computed once per key, whichever thread asks first; the others wait for that result.

    A computation may ask for other keys (the inputs form a DAG, so no two
    threads wait for each other). An exception is not kept: the next call
    computes again and raises it in its own thread.
    """

    def __init__(self) -> None:
        self._values: dict[Any, Any] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._guard = threading.Lock()

    def __reduce__(self) -> tuple[type, tuple]:
        return Once, ()  # a copy (pickled, deep-copied) computes its values again

    def get(self, key: Any, compute: Callable[[], T]) -> T:
        try:
            return self._values[key]
        except KeyError:
            pass
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        if not lock.acquire(blocking=False):  # another thread is computing it
            with _core_given_up():
                lock.acquire()
        try:
            if key not in self._values:
                self._values[key] = compute()
        finally:
            lock.release()
        return self._values[key]


class shared(Generic[T]):
    """A read-only property computed once per instance through the instance's ``_once`` (a ``Once``): a
    thread-safe ``functools.cached_property`` (whose lock Python 3.12 dropped)."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> T:
        if instance is None:
            return self  # type: ignore[return-value]
        return instance._once.get(self.name, lambda: self.compute(instance))


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def side_by_side(calls: Sequence[Callable[[], T]]) -> list[T]:
    """The results of ``calls``, each in a thread of its own, at most one per core running at a time, started
    in that order (one core: one after the other, in this thread). An exception raised by a call is raised
    here, once every call has ended. The threads are daemons: a command interrupted while they run (Ctrl-C
    during ``--read-data``) exits without waiting for them; they only compute."""
    n = cores()
    if n == 1 or len(calls) < 2:
        return [call() for call in calls]
    core = threading.BoundedSemaphore(n)
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    def run(index: int, call: Callable[[], T]) -> None:
        with core:
            _lane.core = core
            try:
                results[index] = call()
            except BaseException as exc:  # noqa: BLE001  raised again in the caller's thread
                errors[index] = exc
            finally:
                _lane.core = None

    threads = [threading.Thread(target=run, args=(i, call), name=f"btrfsscan-model-{i}", daemon=True)
               for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results
