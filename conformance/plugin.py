"""The pytest plugin (entry point ``sessionspec``): options, the ``ctx`` fixture, async tests, results.

Inert unless ``--sessionspec-store TARGET`` is given (or the CLI hands it a prepared
run). Then it resolves the target once, reads the store's declared capabilities, runs
the suite in ``sessionspec/conformance/suite`` (when no test paths were given), skips
clauses the store does not claim with the reason shown, runs each async test on its own
event loop with a time limit, and records every outcome by clause.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import pytest

from .clauses import SPEC_VERSIONS, get_clause
from .context import SuiteContext, new_namespace
from .results import ClauseViolation, TestOutcome
from .suite._overlap import MARKER as OVERLAP_MARKER
from .suite._overlap import (
    Job,
    Overlap,
    background_kwargs,
    needs_the_backend_alone,
    overlap_enabled,
    waits_on_the_clock,
)
from .targets import Target, TargetError, TargetOptions, open_store, resolve_target
from .worker import POOL, answered

__all__ = ["SUITE_DIR", "RunState", "SuiteModule"]

SUITE_DIR = Path(__file__).resolve().parent / "suite"
SUITE_PACKAGE = "sessionspec.conformance.suite"
MARKER = "sessionspec_clause"
DEFAULT_TIMEOUT = 120.0


@dataclass(slots=True)
class RunState:
    """One conformance run, shared by the plugin hooks, the CLI and the report writers."""

    target: Target
    capabilities: frozenset[str]
    spec_version: str = SPEC_VERSIONS[-1]
    clauses: frozenset[str] | None = None
    timeout: float = DEFAULT_TIMEOUT
    outcomes: list[TestOutcome] = field(default_factory=list)
    owns_target: bool = True
    errors: list[str] = field(default_factory=list)
    """Problems outside any test that void the run (a backend that could not be restarted)."""
    replay: dict[str, str] = field(default_factory=dict)
    """Model-check variant -> the recorded sequence to replay (``--replay core:BLOB``)."""
    listeners: list[Callable[[str, Any], None]] = field(default_factory=list)
    """Progress callbacks: ("collected", n) once, then ("outcome", TestOutcome) per test."""
    overlap: Overlap | None = None
    """The tests running in the background (suite/_overlap.py), from the first test that shares the backend."""
    alone: frozenset[str] = frozenset()
    """Node ids of the tests that run before the background starts (they need the backend, or the GIL, alone)."""

    def emit(self, event: str, payload: Any) -> None:
        for listener in self.listeners:
            listener(event, payload)


STATE = pytest.StashKey[RunState]()
_PENDING: list[RunState] = []
"""A RunState the CLI prepared (target resolved and probed) for the next pytest.main call."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sessionspec", "sessionspec conformance suite")
    group.addoption("--sessionspec-store", metavar="TARGET", default=None,
                    help="run the session-store conformance suite against TARGET (memory, redis://..., "
                         "postgresql://..., redis, postgres, redis-cluster, package.module:factory)")
    group.addoption("--sessionspec-clause", metavar="ID", action="append", default=[],
                    help="only run tests of this clause (repeatable), e.g. CC-3")
    group.addoption("--sessionspec-spec-version", metavar="V", default=SPEC_VERSIONS[-1],
                    help=f"the spec version whose clauses to check (default {SPEC_VERSIONS[-1]})")
    group.addoption("--sessionspec-timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT,
                    help="time limit per suite test; a hung store fails the test instead of the run")
    group.addoption("--sessionspec-replay", metavar="VARIANT:BLOB", action="append", default=[],
                    help="replay a model-check failure exactly (the line its failure prints)")
    group.addoption("--require-backends", action="store_true", default=False,
                    help="fail, instead of skip, when a Redis/Postgres server cannot be provisioned")
    group.addoption("--redis-url", default=None, help="use this Redis server instead of provisioning one")
    group.addoption("--postgres-url", default=None, help="use this Postgres server instead of provisioning one")
    group.addoption("--redis-cluster-url", default=None, help="use this Redis Cluster instead of provisioning one")


def target_options(config: pytest.Config) -> TargetOptions:
    return TargetOptions(
        redis_url=config.getoption("redis_url"),
        postgres_url=config.getoption("postgres_url"),
        redis_cluster_url=config.getoption("redis_cluster_url"),
        require_backends=bool(config.getoption("require_backends")),
    )


async def probe_capabilities(target: Target) -> frozenset[str]:
    """Open one store to read what it claims (a bad factory fails here, before any test)."""
    async with open_store(target, new_namespace()) as store:
        return frozenset(store.capabilities)


def parse_replay(values: Iterable[str]) -> dict[str, str]:
    """``core:BLOB`` / ``atomic:BLOB`` (as a model-check failure prints them) -> {variant: blob}."""
    replay: dict[str, str] = {}
    for value in values:
        variant, _, blob = value.partition(":")
        if variant not in REPLAY_TESTS or not blob:
            raise TargetError(f"--replay takes VARIANT:BLOB as a failure prints it, VARIANT one of "
                              f"{', '.join(REPLAY_TESTS)}; got {value!r}")
        replay[variant] = blob
    return replay


REPLAY_TESTS = {"core": "test_random_operation_sequences_agree_with_the_model",
                "atomic": "test_random_sequences_with_expected_versions_agree_with_the_model"}
"""The model-check test each --replay variant runs."""


def prepare_run(target: Target, *, owns_target: bool, spec_version: str = SPEC_VERSIONS[-1],
                clauses: Iterable[str] = (), timeout: float = DEFAULT_TIMEOUT,
                replay: Iterable[str] = ()) -> RunState:
    if spec_version not in SPEC_VERSIONS:
        raise TargetError(f"Unknown spec version {spec_version!r}; this sessionspec knows {', '.join(SPEC_VERSIONS)}.")
    selected = frozenset(clauses)
    replays = parse_replay(replay)
    for cid in selected:
        try:
            get_clause(cid)
        except KeyError as exc:
            raise TargetError(str(exc.args[0])) from None
    try:
        capabilities = asyncio.run(asyncio.wait_for(probe_capabilities(target), 60))
    except TimeoutError:
        raise TargetError(
            f"Opening a store for target {target.spec!r} did not finish within 60 s; the factory "
            "or its backend hangs (is the server reachable?)."
        ) from None
    return RunState(target, capabilities, spec_version, selected or None, timeout, owns_target=owns_target,
                    replay=replays)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(*ids): the contract clause(s) this test checks")
    config.addinivalue_line("markers", f"{OVERLAP_MARKER}(only=None): run this wait-heavy test in the background "
                                       "from the start of the run (suite/_overlap.py)")
    state = _PENDING.pop() if _PENDING else None
    spec = config.getoption("sessionspec_store")
    if state is None and spec:
        target = None
        try:
            target = resolve_target(spec, target_options(config))
            state = prepare_run(
                target, owns_target=True,
                spec_version=config.getoption("sessionspec_spec_version"),
                clauses=config.getoption("sessionspec_clause"),
                timeout=config.getoption("sessionspec_timeout"),
                replay=config.getoption("sessionspec_replay"),
            )
        except TargetError as exc:
            if target is not None:
                target.close()
            raise pytest.UsageError(str(exc)) from None
    if state is None:
        return
    config.stash[STATE] = state
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = [str(SUITE_DIR)]


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    POOL.close()  # the shared tests' worker processes, before their server goes away
    if state.owns_target:
        state.target.close()


# -- collection: import suite modules by their real dotted names ---------------------
class SuiteModule(pytest.Module):
    """A suite module imported as ``sessionspec.conformance.suite.X``, never by file path.

    Importing by path would load a second copy of the package under another name, and
    ``except SessionNotFound`` in the suite would no longer match what stores raise.
    """

    def _getobj(self) -> ModuleType:
        return importlib.import_module(f"{SUITE_PACKAGE}.{self.path.stem}")


def _in_suite(path: Path) -> bool:
    return path.resolve().parent == SUITE_DIR


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if path.resolve() == SUITE_DIR:
        return pytest.Dir.from_parent(parent, path=path)  # not a Package: no import of __init__ by path
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if module_path.name.startswith("test_") and _in_suite(module_path):
        return SuiteModule.from_parent(parent, path=module_path)
    return None


def _clauses_of(item: pytest.Item) -> tuple[str, ...]:
    marker = item.get_closest_marker(MARKER)
    return tuple(marker.args) if marker else ()


@pytest.hookimpl(trylast=True)  # after -k/-m deselection, so the progress total is what will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    replayed = {REPLAY_TESTS[v] for v in state.replay}
    for item in items:
        ids = _clauses_of(item)
        if replayed:
            (keep if getattr(item, "originalname", item.name) in replayed else drop).append(item)
            continue
        if not ids:
            keep.append(item)
            continue
        known = {c.id for c in _clauses_in_version(state.spec_version)}
        if not set(ids) & known or (state.clauses is not None and not set(ids) & state.clauses):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if overlap_enabled() and any(item.get_closest_marker(OVERLAP_MARKER) for item in items):
        # tests that stop, proxy or watch the backend go first, before the background ones start (so a
        # backend that cannot be restarted still stops the run before anything else ran against it); then
        # the foreground tests that wait for a deadline themselves, so no background thread delays them
        alone = {item.nodeid for item in items if needs_the_backend_alone(item)}
        clocked = {item.nodeid for item in items if item.nodeid not in alone and background_kwargs(item) is None
                   and waits_on_the_clock(item)}
        items[:] = ([i for i in items if i.nodeid in alone] + [i for i in items if i.nodeid in clocked]
                    + [i for i in items if i.nodeid not in alone | clocked])
        state.alone = frozenset(alone | clocked)
    state.emit("collected", len(items))


def _clauses_in_version(version: str) -> Iterable[Any]:
    from .clauses import clauses_for

    return clauses_for(version)


# -- background tests -------------------------------------------------------------------
def _unclaimed(item: pytest.Item, state: RunState) -> str | None:
    """Why the test is skipped for a capability the store does not claim (None: it runs)."""
    for cid in _clauses_of(item):
        capability = get_clause(cid).capability
        if capability not in state.capabilities:
            return f"the store does not claim {capability!r} (needed by {cid})"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """Prepare the selected background tests (started by the first test that shares the backend); wait for
    them all at the end."""
    state = session.config.stash.get(STATE, None)
    overlap = None
    if state is not None and overlap_enabled() and not session.config.option.collectonly:
        chosen = [(item, kwargs) for item in session.items
                  if (kwargs := background_kwargs(item)) is not None and _unclaimed(item, state) is None]
        if chosen:
            overlap = state.overlap = Overlap(state.target, state.capabilities, timeout=state.timeout,
                                              replay=state.replay)
            overlap.queue(chosen)  # type: ignore[arg-type]  # background_kwargs only accepts pytest.Function
    try:
        return (yield)
    finally:
        if overlap is not None:
            overlap.drain()  # bounded: each background test has a time budget


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = item.config.stash.get(STATE, None)
    if state is not None and state.overlap is not None and item.nodeid not in state.alone:
        state.overlap.start()  # once: the tests that need the backend alone have all run


def _job(item: pytest.Item) -> Job | None:
    state = item.config.stash.get(STATE, None)
    return state.overlap.job(item) if state is not None and state.overlap is not None else None


def _background_ctx(request: pytest.FixtureRequest, state: RunState, job: Job) -> Generator[SuiteContext, None, None]:
    """The ctx of a test that ran in the background: its setup error here, its clean-up error at teardown."""
    assert state.overlap is not None
    state.overlap.wait(job, "opened")
    assert job.context is not None
    request.node.stash[_ARTIFACTS] = job.context.artifacts
    if job.open_error is not None:
        raise job.open_error
    try:
        yield job.context
    finally:
        state.overlap.wait(job, "done")
        request.node.stash[_ARTIFACTS] = job.context.artifacts
        if job.close_error is not None:
            raise job.close_error


# -- the fixture and async execution --------------------------------------------------
@pytest.fixture
def ctx(request: pytest.FixtureRequest) -> Generator[SuiteContext, None, None]:
    """The store under test on a fresh namespace (see SuiteContext)."""
    state = request.config.stash.get(STATE, None)
    if state is None:
        pytest.skip("no --sessionspec-store TARGET given: the conformance suite needs a store to test")
    unclaimed = _unclaimed(request.node, state)
    if unclaimed is not None:
        pytest.skip(unclaimed)
    job = _job(request.node)
    if job is not None:
        yield from _background_ctx(request, state, job)
        return
    target = state.overlap.guard(state.target) if state.overlap is not None else state.target
    context = SuiteContext(target, state.capabilities, timeout=state.timeout, replay=state.replay)
    try:
        context.runner.run(context.open())
    except BaseException:
        context.runner.close()
        raise
    request.node.stash[_ARTIFACTS] = context.artifacts  # the same dict: what the test attaches reaches its report
    try:
        yield context
    finally:
        try:
            context.runner.run(asyncio.wait_for(context.close(), 60))
        finally:
            stuck = _close_loop(context.runner)
            request.node.stash[_ARTIFACTS] = context.artifacts
            if stuck:  # noted, not judged: FL-4's own tests judge cancellation, not a teardown's timing
                for outcome in state.outcomes:
                    if outcome.nodeid == request.node.nodeid:
                        outcome.artifacts["leftover tasks"] = (
                            f"{len(stuck)} task(s) left behind ignored cancellation for {LEFTOVER_GRACE:g} s; the "
                            f"loop was abandoned: {'; '.join(stuck[:3])}")
            if context.backend_dead:
                why = (f"{request.node.name}: {context.backend_dead}. The run stopped here and is void: every later "
                       "test would have met a dead backend and blamed the store for it. Fix the start_backend "
                       "hook (or the server) and run again.")
                state.errors.append(why)
                request.session.shouldstop = why


_ARTIFACTS = pytest.StashKey[dict[str, Any]]()
LEFTOVER_GRACE = 10.0
"""Seconds the tasks a test left running get to end once cancelled, before the loop is abandoned."""


def _close_loop(runner: asyncio.Runner) -> list[str]:
    """Close a test's loop in bounded time; the tasks that would not end on cancellation, described.

    ``asyncio.Runner.close`` waits without limit for every leftover task to end once cancelled;
    a store task that swallows the cancellation and awaits a future nobody completes would hang
    the whole run in teardown. Such tasks are reported and their loop is closed without them.
    """
    async def cancel_leftovers() -> list[str]:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for task in tasks:
            task.cancel()
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=LEFTOVER_GRACE)
        return [f"{t.get_coro()!r} at {' <- '.join(f'{f.f_code.co_name}:{f.f_lineno}' for f in t.get_stack()[:4])}"
                for t in pending]

    try:
        stuck = runner.run(cancel_leftovers())
    except BaseException:
        runner.close()
        raise
    if stuck:
        runner.get_loop().close()  # Runner.close() would wait for them forever
        asyncio.set_event_loop(None)
        return stuck
    runner.close()
    return []


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    job = _job(pyfuncitem)
    if job is not None:  # it ran in the background: its outcome, re-raised here
        state = pyfuncitem.config.stash[STATE]
        assert state.overlap is not None
        state.overlap.wait(job, "called")
        if isinstance(job.call_error, TimeoutError):
            _out_of_time(state.timeout, *job.progress)
        if job.call_error is not None:
            raise job.call_error
        return True
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    context = pyfuncitem.funcargs.get("ctx")
    if not isinstance(context, SuiteContext):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    before, _ = answered()
    try:
        context.run(pyfuncitem.obj(**kwargs))
    except TimeoutError:
        count, last = answered()
        _out_of_time(context.timeout, count - before, time.monotonic() - last)
    return True


STILL_ANSWERING: Final = 5.0
"""A test out of time whose store answered a call within this many seconds (FL-1's bound; at most a quarter
of the time limit) was slow, not hung."""


def _out_of_time(timeout: float, calls: int, quiet: float) -> None:
    """A slow store that was still answering is "not checked" (the limit decided nothing about the
    clause); a store that had stopped answering, or whose calls the test does not count, hung."""
    if calls > 0 and quiet < min(STILL_ANSWERING, timeout / 4):
        pytest.skip(
            f"not checked: the test did not finish within {timeout:g} s, but the store was still answering "
            f"({calls} calls answered, the last {quiet:.1f} s before the limit): too slow for this time limit, "
            "not hung. Give a slow store a longer --timeout."
        )
    _hung(timeout)


def _hung(timeout: float) -> None:
    pytest.fail(
        f"the test did not finish within {timeout:g} s: the store hung "
        "(every operation must answer or raise BackendUnavailable in bounded time)",
        pytrace=False,
    )


# -- recording outcomes ---------------------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    state = item.config.stash.get(STATE, None)
    failure = call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception)
    if state is not None and state.overlap is not None and failure:
        with state.overlap.parsing():  # pytest parses the test's source to show a failure (not a skip): PARSING
            report = yield
    else:
        report = yield
    ids = _clauses_of(item)
    if state is None or not ids:
        return report
    failed_setup = report.when == "setup" and not report.passed
    if report.when == "call" or failed_setup or (report.when == "teardown" and report.failed):
        status = "skipped" if report.skipped else ("passed" if report.passed else
                                                   ("error" if report.when != "call" else "failed"))
        message, details = _explain(report)
        missing = _not_implemented(call.excinfo) if report.when == "call" and report.failed else None
        if missing is not None:
            # ONE verdict for a missing operation: the run error below; its tests checked nothing
            status, message = "skipped", f"not checked: the store does not implement {missing}"
            why = (f"the store raises NotImplementedError from {missing}: create, get, save, apply, append, touch "
                   "and delete are core operations every store implements (docs/spec.md §5); the tests that "
                   "need it are reported not checked")
            if why not in state.errors:
                state.errors.append(why)
        artifacts: dict[str, Any] = item.stash.get(_ARTIFACTS, {})
        job = _job(item)
        duration = job.call_seconds if job is not None and job.call_seconds is not None else report.duration
        outcome = TestOutcome(
            nodeid=item.nodeid, name=item.name, clauses=ids, status=status,  # type: ignore[arg-type]
            duration=duration, message=message, details=details,
            artifacts=dict(artifacts), blame=_blame(call.excinfo.value if call.excinfo else None),
        )
        if report.when == "teardown":  # a teardown error replaces the call's verdict
            state.outcomes[:] = [o for o in state.outcomes if o.nodeid != item.nodeid]
        state.outcomes.append(outcome)
        state.emit("outcome", outcome)
    return report


def _not_implemented(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str | None:
    """``apply()`` when a test failed because the store raised NotImplementedError from apply."""
    if excinfo is None or not isinstance(excinfo.value, NotImplementedError):
        return None
    store_methods = {"create", "get", "save", "apply", "append", "touch", "delete", "list", "count", "purge_expired"}
    names = [entry.name for entry in excinfo.traceback if entry.name in store_methods]
    return f"{names[-1]}()" if names else "an operation"


def _blame(error: BaseException | None) -> tuple[str, ...]:
    """The clause(s) a failure names itself (a ClauseViolation, possibly inside an exception group)."""
    if isinstance(error, ClauseViolation):
        return error.blame
    if isinstance(error, BaseExceptionGroup):
        return next((b for e in error.exceptions if (b := _blame(e))), ())
    return ()


def _explain(report: pytest.TestReport) -> tuple[str, str]:
    if report.passed:
        return "", ""
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple):
        reason = str(longrepr[2])
        return reason.removeprefix("Skipped: "), ""
    crash = getattr(longrepr, "reprcrash", None)
    message = crash.message if crash is not None else str(longrepr).strip().splitlines()[-1]
    for prefix in ("Failed: ", "sessionspec.conformance.results.ClauseViolation: ", "ClauseViolation: "):
        message = message.removeprefix(prefix)
    return message, report.longreprtext

