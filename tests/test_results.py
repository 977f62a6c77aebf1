"""Clause verdicts from test outcomes: how a cross-cutting failure is attributed."""

from __future__ import annotations

from sessionspec.conformance.results import RunResult, TestOutcome


def _run(*tests: TestOutcome) -> dict[str, str]:
    result = RunResult("t", "t", frozenset({"core", "atomic"}), "1.0", list(tests), 0.0, "now")
    return {c.clause.id: c.verdict for c in result.clauses if c.verdict not in ("not-run", "planned")}


def _t(name: str, clauses: tuple[str, ...], status: str) -> TestOutcome:
    return TestOutcome(name, name, clauses, status, 0.0)  # type: ignore[arg-type]


def test_a_model_failure_explained_by_a_dedicated_failure_counts_only_there() -> None:
    verdicts = _run(
        _t("lc3", ("LC-3",), "failed"),
        _t("lc1", ("LC-1",), "passed"),
        _t("model", ("LC-1", "LC-3", "TTL-1"), "failed"),
    )
    assert verdicts == {"LC-1": "pass", "LC-3": "fail"}


def test_an_unexplained_model_failure_fails_every_clause_it_names() -> None:
    verdicts = _run(_t("lc1", ("LC-1",), "passed"), _t("model", ("LC-1", "TTL-1"), "failed"))
    assert verdicts == {"LC-1": "fail", "TTL-1": "fail"}
