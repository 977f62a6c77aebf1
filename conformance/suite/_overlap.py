"""Wait-heavy tests run early, in the background, so their real-time waits elapse together.

Most of the suite's wall time is real time passing: periods running out, ``ttl + 0.25 s``
windows, a model check that lets sessions expire. Those waits are what the verdicts need
and stay as long as they are; what this module changes is that they no longer queue up one
after the other. A test marked :data:`overlapped` is started early (after collection and
deselection, so ``--clause``/``-k`` still run only what they select), in a
worker thread with its own event loop, its own :class:`SuiteContext` (its own store
instances on a namespace of its own) and the same time limit. When pytest reaches the test
it collects what happened there, in the same three phases: a store that could not be opened
is the test's setup error, the test's own exception (assertion, skip, timeout) is its
failure, a failed clean-up its teardown error. Nothing of one test's run is ever reported on
another test.

Tests that need the backend to themselves (stopping it, counting its commands) run first,
before the background starts; and should one run later anyway, its target's hooks first
wait until every background test has finished. Foreground tests that wait for a deadline
themselves also run before the background starts: a background
thread holding the GIL would otherwise make their wake-ups late.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

import pytest

from sessionspec.conformance.context import OPEN_TIMEOUT, SuiteContext
from sessionspec.conformance.targets import Target
from sessionspec.conformance.worker import answered

__all__ = ["MARKER", "WORKERS", "Job", "Overlap", "lane_of", "needs_the_backend_alone", "overlap_enabled",
           "overlapped", "waits_on_the_clock"]

MARKER: Final = "sessionspec_overlap"
overlapped: pytest.MarkDecorator = getattr(pytest.mark, MARKER)
"""``@overlapped`` (or ``@overlapped(only={"topology": "one-instance"})`` for some parameters only):
run this test in the background from the start of the run. For tests that mostly wait on the clock,
use no fixture but ``ctx`` and their parameters, and never stop or share the backend's worker processes.
``@overlapped(parses=True)`` for tests that parse Python source while they run (Hypothesis): see PARSING.
``@overlapped(lane="processes")``: run on that lane's one thread, one test after another (see LANES); with
``siblings="last"`` the test's foreground variants run after every other foreground test."""
PARSING = threading.Lock()
"""Held by a ``parses=True`` background test for its whole run, and by the plugin while pytest formats a
failure (it parses the test's source). CPython before 3.13 converts ASTs with one recursion counter per
interpreter, so two threads parsing at once can fail with "SystemError: AST constructor recursion depth
mismatch" (python/cpython#106905); this lock keeps them apart."""
WORKERS: Final = 8
"""Background tests running at once (each mostly sleeps; more would only crowd the CPU)."""
LANES: Final = ("processes",)
"""Lanes of background tests that run one at a time, each lane on a thread of its own beside the WORKERS.
``processes``: the ``shared`` variants of the CC clauses, whose tasks run in worker processes (which report
the calls answered, so a slow store out of time is told from a hung one); one at a time, they reuse the
same children (worker.POOL) and never crowd the machine with several such bursts at once, while the
foreground runs lighter tests. The manager clauses' cross-instance runs are not on it: their calls go
through a manager the suite does not count, and a slow store's run beside a burst met the time limit."""
CLOSE_TIMEOUT: Final = 60.0
POLL: Final = 0.2
EXCLUSIVE_NAMES: Final = ("stop_backend", "command_counts")
"""What a test uses when it needs the backend to itself (FL-*, HY-1, the "before any backend call" tests). A
fault proxy (``proxied_store``) is not among them: only the one store instance behind it sees its faults."""
CLOCK_NAMES: Final = ("sleep_until(", "asyncio.sleep(")

Phase = Literal["opened", "called", "done"]


def overlap_enabled() -> bool:
    """``SESSIONSPEC_OVERLAP=0`` runs every test in the foreground, in collection order (to debug a store
    one test at a time, or to compare wall times); the verdicts are the same either way."""
    return os.environ.get("SESSIONSPEC_OVERLAP", "1") != "0"


@dataclass(eq=False)
class Job:
    """One background test: its parameters, its context, and what each phase ended with."""

    item: pytest.Function
    kwargs: dict[str, Any]
    context: SuiteContext | None = None
    started: float | None = None
    call_seconds: float | None = None
    open_error: BaseException | None = None
    call_error: BaseException | None = None
    close_error: BaseException | None = None
    abandoned: bool = False
    parses: bool = False
    lane: str | None = None
    progress: tuple[int, float] = (0, 0.0)
    """Out of time: (calls answered during the test, seconds since the last answer), as the plugin judges
    a foreground test out of time (slow and still answering, or hung)."""
    events: dict[str, threading.Event] = field(
        default_factory=lambda: {phase: threading.Event() for phase in ("opened", "called", "done")})


def needs_the_backend_alone(item: pytest.Item) -> bool:
    """Whether a test visibly stops, proxies or watches the backend (it then runs after the background ones)."""
    return any(name in _source(item) for name in EXCLUSIVE_NAMES)


def waits_on_the_clock(item: pytest.Item) -> bool:
    """Whether a test visibly waits for a deadline itself: run in the foreground, it goes before the background
    starts, so no background thread holds the GIL when it wakes (its windows are as wide as they were)."""
    return any(name in _source(item) for name in CLOCK_NAMES)


def _source(item: pytest.Item) -> str:
    function = getattr(item, "function", None)
    try:
        return inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return ""


def _marker(item: pytest.Item) -> pytest.Mark | None:
    """The test's first ``overlapped`` marker whose ``only`` its parameters match (a value or a tuple of them)."""
    params: dict[str, Any] = dict(getattr(getattr(item, "callspec", None), "params", {}))
    for marker in item.iter_markers(MARKER):
        only: dict[str, Any] = dict(marker.kwargs.get("only", {}))
        if all(params.get(name) in (value if isinstance(value, tuple) else (value,)) for name, value in only.items()):
            return marker
    return None


def lane_of(item: pytest.Item, **marked: Any) -> str | None:
    """The lane a background test runs on (None: the general queue, or not a background test); with
    keyword arguments, only when its marker has them too (``siblings="last"``)."""
    marker = _marker(item) if background_kwargs(item) is not None else None
    if marker is None or any(marker.kwargs.get(name) != value for name, value in marked.items()):
        return None
    lane: str | None = marker.kwargs.get("lane")
    return lane


def background_kwargs(item: pytest.Item) -> dict[str, Any] | None:
    """The test's arguments besides ``ctx`` when it may run in the background, else None."""
    if not isinstance(item, pytest.Function):
        return None
    if _marker(item) is None:
        return None
    params: dict[str, Any] = dict(getattr(getattr(item, "callspec", None), "params", {}))
    names = [n for n in item._fixtureinfo.argnames if n != "ctx"]
    if "ctx" not in item._fixtureinfo.argnames or any(n not in params for n in names):
        return None
    return {name: params[name] for name in names}


class Overlap:
    """The background tests of one run: started together, collected one by one, drained before exclusive tests."""

    def __init__(self, target: Target, capabilities: frozenset[str], *, timeout: float,
                 replay: dict[str, str]) -> None:
        self.target, self.capabilities, self.timeout, self.replay = target, capabilities, timeout, replay
        self.jobs: dict[str, Job] = {}
        self._queues: dict[str | None, list[Job]] = {None: []}
        self._begun: set[str | None] = set()
        self._lock = threading.Lock()

    @property
    def budget(self) -> float:
        """How long one background test may take, open and clean-up included, before it counts as hung."""
        return OPEN_TIMEOUT + self.timeout + CLOSE_TIMEOUT

    def queue(self, items: Iterable[tuple[pytest.Function, dict[str, Any]]]) -> None:
        for item, kwargs in items:
            marker = _marker(item)
            lane = marker.kwargs.get("lane") if marker else None
            if lane is not None and lane not in LANES:
                raise ValueError(f"{item.nodeid}: unknown lane {lane!r} (lanes: {', '.join(LANES)})")
            job = Job(item, kwargs, parses=bool(marker and marker.kwargs.get("parses")), lane=lane)
            self.jobs[item.nodeid] = job
            self._queues.setdefault(lane, []).append(job)

    def start(self) -> None:
        """Start the workers (the first call only): WORKERS for the general queue, one thread per lane."""
        for lane, queue in self._queues.items():
            if lane in self._begun:
                continue
            self._begun.add(lane)
            for _ in range(min(WORKERS if lane is None else 1, len(queue))):
                self._spawn(lane)

    def job(self, item: pytest.Item) -> Job | None:
        return self.jobs.get(item.nodeid)

    # -- the worker threads --------------------------------------------------------------
    def _spawn(self, lane: str | None) -> None:
        threading.Thread(target=self._work, args=(lane,), name="sessionspec-overlap" + (f"-{lane}" if lane else ""),
                         daemon=True).start()

    def _work(self, lane: str | None) -> None:
        queue = self._queues[lane]
        while True:
            with self._lock:
                if not queue:
                    return
                job = queue.pop(0)
            if job.parses:  # bounded: a holder past its budget is hung in a store call, not parsing
                with self.parsing():
                    self._run(job)
            else:
                self._run(job)
            if job.abandoned:
                return  # a replacement worker took over the queue when this one was given up on

    @contextlib.contextmanager
    def parsing(self) -> Iterator[None]:
        """Hold PARSING (or go on without it once a holder has overrun its budget)."""
        held = PARSING.acquire(timeout=self.budget)
        try:
            yield
        finally:
            if held:
                PARSING.release()

    def _run(self, job: Job) -> None:
        job.started = time.monotonic()
        context = SuiteContext(self.target, self.capabilities, timeout=self.timeout, replay=self.replay)
        job.context = context
        try:
            try:
                context.runner.run(context.open())
            except BaseException as exc:
                job.open_error = exc
                return
            finally:
                job.events["opened"].set()
            begin = time.monotonic()
            calls_before, _ = answered()
            try:
                function = job.item.obj
                if inspect.iscoroutinefunction(function):
                    context.run(function(ctx=context, **job.kwargs))
                else:
                    function(ctx=context, **job.kwargs)
            except BaseException as exc:
                job.call_error = exc
                if isinstance(exc, TimeoutError):
                    calls, last = answered()
                    job.progress = (calls - calls_before, time.monotonic() - last)
            finally:
                job.call_seconds = time.monotonic() - begin
                job.events["called"].set()
            try:
                context.runner.run(asyncio.wait_for(context.close(), CLOSE_TIMEOUT))
            except BaseException as exc:
                job.close_error = exc
        finally:
            context.runner.close()
            for event in job.events.values():
                event.set()

    # -- the foreground side -------------------------------------------------------------
    def wait(self, job: Job, phase: Phase) -> None:
        """Block until ``job`` reached ``phase``; fail the test (only this one) if it hung past its budget."""
        self.start()  # in case no test sharing the backend ran before this one
        while not job.events[phase].wait(POLL):
            self._reap()
            if job.abandoned:
                pytest.fail(
                    f"the test did not finish within {self.budget:g} s (run in the background): the store hung "
                    "(every operation must answer or raise BackendUnavailable in bounded time)",
                    pytrace=False,
                )

    def _reap(self) -> None:
        """Give up on jobs past their budget, and let a fresh worker carry on with the queue."""
        now = time.monotonic()
        with self._lock:
            hung = [j for j in self.jobs.values() if j.started is not None and not j.abandoned
                    and not j.events["done"].is_set() and now - j.started > self.budget]
            for job in hung:
                job.abandoned = True
        for job in hung:
            self._spawn(job.lane)

    def pending(self) -> bool:
        return any(j.lane in self._begun and not j.events["done"].is_set() and not j.abandoned
                   for j in self.jobs.values())

    def drain(self) -> None:
        """Wait until no background test runs or waits to run (each is bounded by its budget)."""
        while self.pending():
            for job in list(self.jobs.values()):
                if not job.abandoned:
                    job.events["done"].wait(POLL)
            self._reap()

    def guard(self, target: Target) -> Target:
        """``target`` with the hooks of exclusive tests made to drain the background first."""
        def drained(hook: Callable[..., Any] | None) -> Callable[..., Any] | None:
            if hook is None:
                return None

            @functools.wraps(hook)
            def call(*args: Any, **kwargs: Any) -> Any:
                self.drain()
                return hook(*args, **kwargs)
            return call

        return replace(target, stop_backend=drained(target.stop_backend),
                       command_counts=drained(target.command_counts))
