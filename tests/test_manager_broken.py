"""The manager clauses' teeth: every deliberately broken SessionManager fails the clause(s) named for its bug.

Same rule as tests/test_broken_stores.py: run only the clauses that should catch each bug, on a
correct MemoryStore with the broken manager (tests/broken/manager.py), and the same clauses
with the reference manager, which must pass. Run with ``-s`` to see each failure's message.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from sessionspec.conformance.clauses import CLAUSES
from sessionspec.conformance.results import ClauseResult, RunResult
from sessionspec.conformance.runner import run_suite
from sessionspec.conformance.targets import Target
from sessionspec.reference.manager import SessionManager
from sessionspec.reference.memory import MemoryStore
from tests.broken.manager import MANAGER_BROKEN, ManagerCase, UpdateWithoutCas

CASES = list(MANAGER_BROKEN.values())
PROBED = sorted({cid for case in CASES for cid in case.clauses})
CONTROL = Target(spec="memory", description="MemoryStore with the reference SessionManager (control)",
                 factory=lambda namespace: MemoryStore())


def _by_clause(result: RunResult) -> dict[str, ClauseResult]:
    return {c.clause.id: c for c in result.clauses}


@functools.cache
def _run(name: str) -> RunResult:
    case = MANAGER_BROKEN[name]
    return run_suite(case.target(), clauses=case.clauses)


@pytest.fixture(scope="module")
def control() -> dict[str, ClauseResult]:
    result = run_suite(CONTROL, clauses=PROBED)
    assert not result.errors, f"the suite could not run on the reference manager: {result.errors}"
    return _by_clause(result)


def test_every_required_bug_has_a_broken_manager() -> None:
    assert {"overlay_merge", "get_then_create", "update_without_cas"} <= set(MANAGER_BROKEN)
    covered = {cid for case in CASES for cid in case.clauses}
    store_level = {"MG-1", "MG-2", "MG-5"}
    active = {c.id for c in CLAUSES if c.status == "active" and c.family in ("MG", "SC") and c.id not in store_level}
    assert active <= covered, f"clauses without a broken manager: {sorted(active - covered)}"


def test_the_rendezvous_makes_update_without_cas_lose_exactly_under_a_race() -> None:
    async def scenario() -> tuple[int, int]:
        mgr = UpdateWithoutCas(MemoryStore(), sweep_interval=None)
        racing = await mgr.create({"n": 0})
        await asyncio.gather(*(mgr.update(racing.id, lambda s: {**s, "n": s["n"] + 1}) for _ in range(2)))
        calm = await mgr.create({"n": 0})
        for _ in range(2):
            await mgr.update(calm.id, lambda s: {**s, "n": s["n"] + 1})
        got_racing, got_calm = await mgr.get(racing.id), await mgr.get(calm.id)
        assert got_racing is not None and got_calm is not None
        return got_racing.state["n"], got_calm.state["n"]

    assert asyncio.run(scenario()) == (1, 2)


@pytest.mark.parametrize("clause_id", PROBED)
def test_the_reference_manager_passes_every_probing_clause(clause_id: str, control: dict[str, ClauseResult]) -> None:
    verdict = control[clause_id]
    assert verdict.verdict == "pass", (
        f"{clause_id} gives {verdict.verdict!r} with the reference SessionManager: {verdict.reason}. A clause that "
        "fails the reference cannot tell a broken manager apart."
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_broken_manager_is_caught(case: ManagerCase, control: dict[str, ClauseResult]) -> None:
    result = _run(case.name)
    assert not result.errors, f"{case.name}: the suite run itself broke: {result.errors}"
    verdicts = _by_clause(result)
    uncaught = {cid: verdicts[cid] for cid in case.clauses if verdicts[cid].verdict != "fail"}
    assert not uncaught, "HOLE IN THE SUITE: " + "; ".join(
        f"{cid} gives {v.verdict!r} ({len(v.tests)} tests) on {case.name}, whose bug is: {case.description}"
        for cid, v in uncaught.items())
    assert all(control[cid].verdict == "pass" for cid in case.clauses)
    print(f"\n{case.name}: {case.description}")
    for cid in case.clauses:
        print(f"  caught by {cid}: {verdicts[cid].reason}")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_failure_message_names_the_clause_and_the_rule(case: ManagerCase) -> None:
    verdicts = _by_clause(_run(case.name))
    for cid in case.clauses:
        for test in verdicts[cid].tests:
            if test.status in ("failed", "error"):
                first = test.message.removeprefix("AssertionError: ").strip().splitlines()[0]
                assert first.startswith(f"{cid}") or cid in first, (
                    f"{case.name}: {test.name} fails without naming {cid}: {first!r}")
                assert len(first.split()) >= 6, f"{case.name}: {test.name}'s message explains nothing: {first!r}"


def test_targets_without_the_hook_get_the_reference_manager() -> None:
    from sessionspec.conformance.manager_support import HOOK

    assert getattr(CONTROL.factory, HOOK, None) is None and SessionManager is not None


class CoreOnlyStore(MemoryStore):
    """A correct store that claims only `core`."""

    capabilities = frozenset({"core"})


def test_a_store_claiming_only_core_passes_the_core_manager_clauses_and_skips_the_rest() -> None:
    target = Target(spec="core-only", description="MemoryStore claiming only core",
                    factory=lambda namespace: CoreOnlyStore())
    manager_clauses = [c.id for c in CLAUSES if c.status == "active" and (c.family == "SC" or (
        c.family == "MG" and c.id not in ("MG-1", "MG-2", "MG-5")))]
    verdicts = _by_clause(run_suite(target, clauses=manager_clauses))
    wrong = {cid: (verdicts[cid].verdict, verdicts[cid].reason) for cid in manager_clauses
             if verdicts[cid].verdict != ("pass" if verdicts[cid].clause.capability == "core" else "skip")}
    assert not wrong, f"on a core-only store, core clauses must pass and the others skip: {wrong}"
