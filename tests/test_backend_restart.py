"""A start_backend that fails voids the run instead of letting later tests blame the store (issue 12, item 8)."""

from __future__ import annotations

from sessionspec.conformance.runner import run_suite
from sessionspec.conformance.targets import Target
from sessionspec.reference.memory import MemoryStore


def _target(fails: int) -> tuple[Target, list[str]]:
    calls: list[str] = []

    def start() -> None:
        calls.append("start")
        if len(calls) <= fails:
            raise OSError("the server did not come back")

    target = Target(spec="memory-with-hooks", description="MemoryStore with backend hooks",
                    factory=lambda namespace: MemoryStore(), stop_backend=lambda: None, start_backend=start)
    return target, calls


def test_a_backend_that_cannot_be_restarted_stops_and_voids_the_run() -> None:
    target, calls = _target(fails=1000)
    result = run_suite(target, clauses=["FL-2", "LC-1"])
    assert result.errors and "start_backend failed twice" in result.errors[0], result.errors
    assert result.exit_code == 1
    ran = {cid for t in result.tests for cid in t.clauses}
    assert "LC-1" not in ran, "tests after the failed restart must not run against a dead backend"
    assert calls == ["start", "start"], f"one retry, then stop: {calls}"


def test_a_restart_that_works_on_the_second_try_goes_on_and_says_so() -> None:
    target, _ = _target(fails=1)
    result = run_suite(target, clauses=["FL-2", "LC-1"])
    assert not result.errors, result.errors
    assert any(t.artifacts.get("backend", "").startswith("start_backend failed once") for t in result.tests)
    assert {cid for t in result.tests for cid in t.clauses} >= {"FL-2", "LC-1"}
