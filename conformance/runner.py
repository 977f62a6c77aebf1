"""Run the conformance suite programmatically and get a :class:`RunResult` back.

The CLI and the project's own tests both come through here: resolve the target once,
read its capabilities, run pytest in-process over the shipped suite, and roll the
outcomes up by clause.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from . import plugin
from .clauses import SPEC_VERSIONS
from .results import RunResult, TestOutcome
from .targets import Target, TargetOptions, resolve_target

__all__ = ["run_suite"]

_PLUGINS: tuple[str, ...] = ("-p", plugin.__name__, *(
    ("-p", "_hypothesis_pytestplugin") if importlib.util.find_spec("_hypothesis_pytestplugin") else ()))
"""The suite's run loads these plugins only. Whatever else is installed registers a pytest plugin too (the
agent frameworks' tracing, API testers, Locust) and would be imported and assertion-rewritten on every run:
1.4 s of each `sessionspec check` on a machine with the framework extras, for nothing the suite uses."""


@contextlib.contextmanager
def _no_plugin_autoload() -> Iterator[None]:
    """PYTEST_DISABLE_PLUGIN_AUTOLOAD for this pytest.main only (it is read as the run configures itself)."""
    before = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = before


def run_suite(
    target: str | Target,
    *,
    options: TargetOptions | None = None,
    clauses: Iterable[str] = (),
    keyword: str | None = None,
    spec_version: str = SPEC_VERSIONS[-1],
    divergences: Mapping[str, str] | None = None,
    timeout: float = plugin.DEFAULT_TIMEOUT,
    listener: Callable[[str, Any], None] | None = None,
    replay: Sequence[str] = (),
    pytest_args: Sequence[str] = (),
    quiet: bool = True,
) -> RunResult:
    """Run the suite against ``target``; raises TargetError for a target that cannot be used."""
    owns = isinstance(target, str)
    resolved = resolve_target(target, options) if isinstance(target, str) else target
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    begin = time.monotonic()
    try:
        state = plugin.prepare_run(
            resolved, owns_target=False, spec_version=spec_version, clauses=clauses, timeout=timeout,
            replay=replay,
        )
        if listener is not None:
            state.listeners.append(listener)
        if resolved.claims is not None:  # [tool.sessionspec] capabilities: check these claims instead
            state.capabilities = resolved.claims
        args = [str(plugin.SUITE_DIR), "-p", "no:cacheprovider", *_PLUGINS,
                "-o", "python_files=test_*.py", *pytest_args]
        if keyword:
            args += ["-k", keyword]
        plugin._PENDING.append(state)
        # Hypothesis ships a pytest plugin, so pytest marks all ~80 modules of its distribution
        # for assertion rewriting: imported during the run (the stateful tests do), each would be
        # parsed and rewritten on every run, never cached where PYTHONDONTWRITEBYTECODE is set (CI).
        # Imported first, they are left alone (0.4 s of every check here); the suite is still rewritten.
        import hypothesis.stateful  # noqa: F401
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext(), _no_plugin_autoload():
                code = pytest.main([*args, "-q", "--no-header", "-rN"] if quiet else args)
        finally:
            plugin._PENDING.clear()
        errors = list(state.errors)
        if state.errors:
            pass  # the run was stopped on purpose; pytest's INTERRUPTED says nothing more
        elif code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
            errors.append(f"pytest ended with {pytest.ExitCode(code).name}:\n{sink.getvalue()[-4000:]}")
        elif code == pytest.ExitCode.OK and not state.outcomes:
            errors.append("no test ran")
        return RunResult(
            target=resolved.spec,
            description=resolved.description,
            capabilities=state.capabilities,
            spec_version=spec_version,
            tests=list(state.outcomes),
            duration=time.monotonic() - begin,
            started_at=started_at,
            divergences=dict(divergences or {}),
            selected=state.clauses,
            partial=bool(state.clauses or keyword or state.replay),
            errors=errors,
        )
    finally:
        if owns:
            resolved.close()


def outcomes_by_clause(result: RunResult) -> dict[str, list[TestOutcome]]:
    """Convenience for tests: clause ID -> its test outcomes."""
    table: dict[str, list[TestOutcome]] = {}
    for test in result.tests:
        for cid in test.clauses:
            table.setdefault(cid, []).append(test)
    return table
