"""The reference stores pass the whole suite, and the suite has a test for every clause they claim.

One full run per backend. "memory" always runs; the server-backed ones run when a
server can be provisioned and are skipped with the reason otherwise (failed instead under
SESSIONSPEC_REQUIRE_BACKENDS=1, as CI does). Adding a backend is one entry in BACKENDS.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sessionspec.conformance.results import ClauseResult, RunResult
from sessionspec.conformance.runner import run_suite
from sessionspec.conformance.targets import TargetError, TargetOptions, resolve_target
from tests.broken import backend_marks

REQUIRE_BACKENDS = os.environ.get("SESSIONSPEC_REQUIRE_BACKENDS") == "1"

BACKENDS = [pytest.param(spec, marks=backend_marks(spec), id=spec)
            for spec in ("memory", "redis", "postgres", "redis-cluster")]
"""TARGET strings; each must pass the full suite with nothing it claims skipped (one entry per backend)."""

REMOTE_ONLY = frozenset({"FL-1", "FL-2", "FL-3", "HY-1", "HY-2", "HY-3"})
"""Clauses whose tests need a server the suite can stop or inspect: "n/a" on an embedded store."""

EMBEDDED = frozenset({"memory"})

MAY_BE_NOT_CHECKED: dict[str, frozenset[str]] = {
    "memory": frozenset({"FL-1", "FL-2", "HY-1", "HY-2", "HY-3"}),  # no server at all
    "redis": frozenset({"HY-2"}),  # Redis has no time zone setting; TTLs are server-side
    "postgres": frozenset({"HY-1"}),  # HY-1 watches Redis command counts
    "redis-cluster": frozenset({"HY-2"}),
}
"""Per reference backend, exactly the clauses that may be n/a (not checked): every other claimed clause ran.
"Not checked" never counts as "holds", so this list is the whole of what a level leaves out."""


def expected_level(capabilities: frozenset[str], not_checked: frozenset[str] = frozenset()) -> str:
    """The level a store earns when everything it claims passes (docs/spec.md, "Verdicts"), naming the
    clauses of that level that were not checked."""
    from sessionspec.conformance.clauses import CLAUSES
    from sessionspec.conformance.results import LEVEL_CAPABILITIES

    if "core" not in capabilities:
        return "none"
    name = "core" if "atomic" not in capabilities else \
        "full" if {"listing", "shared", "durable"} <= capabilities else "core+atomic"
    named = [c.id for c in CLAUSES if c.id in not_checked and c.capability in LEVEL_CAPABILITIES[name]]
    return f"{name} ({', '.join(named)} not checked)" if named else name


@pytest.fixture(scope="module", params=BACKENDS)
def full_run(request: pytest.FixtureRequest) -> Iterator[RunResult]:
    spec: str = request.param
    try:
        target = resolve_target(spec, TargetOptions(require_backends=REQUIRE_BACKENDS))
    except TargetError as exc:
        if REQUIRE_BACKENDS or spec in EMBEDDED:
            pytest.fail(f"{spec}: the target cannot be used: {exc}")
        pytest.skip(f"{spec}: no server could be provisioned ({exc}); set SESSIONSPEC_REQUIRE_BACKENDS=1 to fail")
    try:
        yield run_suite(target)
    finally:
        target.close()


def _describe(results: list[ClauseResult]) -> str:
    return "\n  ".join(f"{c.clause.id} {c.verdict}: {c.reason or c.clause.title}" for c in results)


def test_the_run_itself_works(full_run: RunResult) -> None:
    assert not full_run.errors, f"{full_run.target}: the suite run broke outside any test: {full_run.errors}"
    print(f"\n{full_run.target}: {len(full_run.tests)} tests in {full_run.duration:.1f} s, "
          f"level {full_run.level}, {full_run.counts()}")


def test_no_clause_fails(full_run: RunResult) -> None:
    if full_run.failures:
        pytest.fail(f"{full_run.description} fails:\n  {_describe(full_run.failures)}", pytrace=False)


def test_nothing_claimed_is_skipped(full_run: RunResult) -> None:
    if full_run.claimed_skips != []:
        pytest.fail(f"{full_run.description} claims these but they were skipped:\n  "
                    f"{_describe(full_run.claimed_skips)}", pytrace=False)


def test_level_is_what_the_claims_earn(full_run: RunResult) -> None:
    if full_run.target == "memory":
        assert full_run.capabilities == {"core", "atomic", "listing"}, full_run.capabilities
        assert full_run.level == "core+atomic (FL-1, FL-2, HY-2, HY-3 not checked)", (
            f"MemoryStore earns core+atomic and names what it could not check, got {full_run.level}")
    not_checked = frozenset(c.clause.id for c in full_run.clauses if c.verdict == "n/a")
    if full_run.level != expected_level(full_run.capabilities, not_checked):
        pytest.fail(f"{full_run.target} claims {sorted(full_run.capabilities)} but earns level {full_run.level} "
                    f"(a failing clause pulls it down: see test_no_clause_fails)", pytrace=False)


def test_every_claimed_clause_has_a_test(full_run: RunResult) -> None:
    holes = [c for c in full_run.clauses if c.claimed and c.clause.status == "active" and not c.tests]
    if holes:
        pytest.fail("no suite test names these active clauses of a claimed capability (holes in the suite):\n  "
                    + _describe(holes), pytrace=False)


def test_remote_only_clauses_are_not_applicable_on_an_embedded_store(full_run: RunResult) -> None:
    if full_run.target not in EMBEDDED:
        pytest.skip(f"{full_run.target} has a server: these clauses must pass there (test_no_clause_fails)")
    wrong = [c for c in full_run.clauses
             if c.clause.id in REMOTE_ONLY and c.claimed and (c.verdict != "n/a" or not c.reason)]
    if wrong:
        pytest.fail("on an embedded store these must be 'n/a' with a reason:\n  " + _describe(wrong), pytrace=False)


def test_exactly_the_pinned_clauses_are_not_checked(full_run: RunResult) -> None:
    """FL and HY really ran where the suite can reach the server: only the pinned clauses may be n/a."""
    pinned = MAY_BE_NOT_CHECKED[full_run.target]
    not_checked = {c.clause.id for c in full_run.clauses if c.verdict == "n/a"}
    assert not_checked == pinned, (
        f"{full_run.target}: n/a (not checked) {sorted(not_checked)}, pinned {sorted(pinned)}; "
        f"unexpected: {sorted(not_checked - pinned)}, now checked: {sorted(pinned - not_checked)}"
    )
    if "shared" in full_run.capabilities:
        assert full_run.shared_runs_passed, f"{full_run.target} claims shared but no shared run passed"
