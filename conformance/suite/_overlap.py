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

__all__ = ["MARKER", "WORKERS", "Job", "Overlap", "needs_the_backend_alone", "overlap_enabled", "overlapped",
           "waits_on_the_clock"]

MARKER: Final = "sessionspec_overlap"
overlapped: pytest.MarkDecorator = getattr(pytest.mark, MARKER)
"""``@overlapped`` (or ``@overlapped(only={"topology": "one-instance"})`` for some parameters only):
run this test in the background from the start of the run. For tests that mostly wait on the clock,
use no fixture but ``ctx`` and their parameters, and never stop or share the backend's worker processes.
``@overlapped(parses=True)`` for tests that parse Python source while they run (Hypothesis): see PARSING."""
PARSING = threading.Lock()
"""Held by a ``parses=True`` background test for its whole run, and by the plugin while pytest formats a
failure (it parses the test's source). CPython before 3.13 converts ASTs with one recursion counter per
interpreter, so two threads parsing at once can fail with "SystemError: AST constructor recursion depth
mismatch" (python/cpython#106905); this lock keeps them apart."""
WORKERS: Final = 8
"""Background tests running at once (each mostly sleeps; more would only crowd the CPU)."""
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


def background_kwargs(item: pytest.Item) -> dict[str, Any] | None:
    """The test's arguments besides ``ctx`` when it may run in the background, else None."""
    if not isinstance(item, pytest.Function):
        return None
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    params: dict[str, Any] = dict(getattr(getattr(item, "callspec", None), "params", {}))
    only: dict[str, Any] = dict(marker.kwargs.get("only", {}))
    if any(params.get(name) != value for name, value in only.items()):
        return None
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
        self._queue: list[Job] = []
        self._lock = threading.Lock()
        self.started = False

    @property
    def budget(self) -> float:
        """How long one background test may take, open and clean-up included, before it counts as hung."""
        return OPEN_TIMEOUT + self.timeout + CLOSE_TIMEOUT

    def queue(self, items: Iterable[tuple[pytest.Function, dict[str, Any]]]) -> None:
        for item, kwargs in items:
            marker = item.get_closest_marker(MARKER)
            job = Job(item, kwargs, parses=bool(marker and marker.kwargs.get("parses")))
            self.jobs[item.nodeid] = job
            self._queue.append(job)

    def start(self) -> None:
        """Start the workers (the first call only)."""
        if self.started:
            return
        self.started = True
        for _ in range(min(WORKERS, len(self._queue))):
            self._spawn()

    def job(self, item: pytest.Item) -> Job | None:
        return self.jobs.get(item.nodeid)

    # -- the worker threads --------------------------------------------------------------
    def _spawn(self) -> None:
        threading.Thread(target=self._work, name="sessionspec-overlap", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                job = self._queue.pop(0)
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
        for _ in hung:
            self._spawn()

    def pending(self) -> bool:
        return self.started and any(not j.events["done"].is_set() and not j.abandoned for j in self.jobs.values())

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
