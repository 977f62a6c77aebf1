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


# -- blame: a failure that names its clause counts there only (issue 12, items 7 and 13) -----------
def _b(name: str, clauses: tuple[str, ...], blame: tuple[str, ...]) -> TestOutcome:
    return TestOutcome(name, name, clauses, "failed", 0.0, message=f"{blame[0]}: broken", blame=blame)


def test_a_model_failure_that_names_its_clause_fails_only_that_clause() -> None:
    verdicts = _run(_t("lc1", ("LC-1",), "passed"), _t("ttl3", ("TTL-3",), "passed"),
                    _b("model", ("LC-1", "TTL-1", "TTL-3"), ("VER-1",)), _t("ver1", ("VER-1",), "passed"))
    assert verdicts == {"LC-1": "pass", "TTL-3": "pass", "VER-1": "fail", "TTL-1": "skip"}


def test_an_alternative_with_its_own_failure_takes_the_blame() -> None:
    verdicts = _run(_t("ttl2", ("TTL-2",), "failed"), _t("ttl1", ("TTL-1",), "passed"),
                    _b("model", ("TTL-1", "TTL-2"), ("TTL-1", "TTL-2")))
    assert verdicts == {"TTL-1": "pass", "TTL-2": "fail"}


def test_a_clause_run_does_not_pass_the_other_clauses_of_a_model_test() -> None:
    """--clause LC-1 runs the model check (it carries LC-1); its pass must not mark TTL-3 passed."""
    result = RunResult("t", "t", frozenset({"core"}), "1.0", [_t("model", ("LC-1", "TTL-3"), "passed")], 0.0,
                       "now", selected=frozenset({"LC-1"}), partial=True)
    verdicts = {c.clause.id: c.verdict for c in result.clauses}
    assert verdicts["LC-1"] == "pass" and verdicts["TTL-3"] == "not-run"
    assert result.level == "not determined (partial run)"


def test_a_setup_failure_blamed_elsewhere_leaves_its_clause_not_checked() -> None:
    result = RunResult("t", "t", frozenset({"core"}), "1.0", [
        _b("lc2", ("LC-2",), ("TTL-1",)), _t("ttl1", ("TTL-1",), "failed")], 0.0, "now")
    verdicts = {c.clause.id: c for c in result.clauses}
    assert verdicts["TTL-1"].verdict == "fail" and verdicts["LC-2"].verdict == "skip"
    assert verdicts["LC-2"].reason.startswith("not checked: TTL-1")


# -- levels name only what was checked (item 6) ------------------------------------------------------------
def _full(capabilities: set[str], *extra: TestOutcome) -> RunResult:
    from sessionspec.conformance.clauses import CLAUSES

    na = {"FL-1", "FL-2", "HY-1", "HY-2", "HY-3"}
    tests = [TestOutcome(c.id, c.id, (c.id,), "skipped" if c.id in na else "passed", 0.0,
                         message="not applicable: no hooks" if c.id in na else "")
             for c in CLAUSES if c.status == "active" and c.capability in capabilities]
    return RunResult("t", "t", frozenset(capabilities), "1.0", tests + list(extra), 0.0, "now")


def test_the_level_names_the_clauses_it_could_not_check() -> None:
    result = _full({"core", "atomic", "listing"})
    assert result.level == "core+atomic (FL-1, FL-2, HY-2, HY-3 not checked)"
    assert _full({"core"}).level == "core (FL-1, FL-2, HY-2, HY-3 not checked)"


def test_shared_does_not_hold_when_every_shared_run_was_skipped() -> None:
    caps = {"core", "atomic", "listing", "shared", "durable"}
    skipped = TestOutcome("cc1s", "test_cc1[shared]", ("CC-1",), "skipped", 0.0, message="not applicable: no spec")
    result = _full(caps, skipped)
    assert "shared" not in result.earned_capabilities
    assert not result.level.startswith("full"), result.level
    ran = TestOutcome("cc1s", "test_cc1[shared]", ("CC-1",), "passed", 0.0)
    assert "shared" in _full(caps, ran).earned_capabilities


# -- one bug, one clause (issue 12, "done when" item 2) ----------------------------------------------------
def test_a_manager_failure_on_a_store_that_fails_its_own_clause_is_not_checked_naming_it() -> None:
    """The manager clauses test the reference SessionManager on the store: a store bug is not the manager's."""
    result = RunResult("t", "t", frozenset({"core", "atomic"}), "1.0", [
        _t("cc7", ("CC-7",), "failed"), _t("mg9", ("MG-9",), "failed"), _t("sc5", ("SC-5",), "failed")], 0.0, "now")
    verdicts = {c.clause.id: c for c in result.clauses}
    assert [c.clause.id for c in result.failures] == ["CC-7"]
    assert verdicts["MG-9"].verdict == "skip" and "see CC-7" in verdicts["MG-9"].reason


def test_a_manager_failure_on_a_sound_store_fails_its_clause() -> None:
    verdicts = _run(_t("lc1", ("LC-1",), "passed"), _t("mg9", ("MG-9",), "failed"))
    assert verdicts == {"LC-1": "pass", "MG-9": "fail"}


def test_a_dedicated_test_spoiled_by_another_clause_leaves_its_clause_not_checked_not_passed() -> None:
    """A clause passes only on its own tests run in full: one passing test beside a spoiled one is no pass."""
    result = RunResult("t", "t", frozenset({"core"}), "1.0", [
        _t("lc1-a", ("LC-1",), "passed"), _b("lc1-b", ("LC-1",), ("TTL-2", "LC-1")),
        _t("ttl2", ("TTL-2",), "failed")], 0.0, "now")
    verdicts = {c.clause.id: c for c in result.clauses}
    assert verdicts["LC-1"].verdict == "skip" and verdicts["LC-1"].reason.startswith("not checked: TTL-2")
    assert [c.clause.id for c in result.failures] == ["TTL-2"]


def test_a_dedicated_failure_blamed_elsewhere_does_not_draw_a_model_failure_onto_its_clause() -> None:
    """LC-2's test failed only because of TTL-2's bug; an unexplained model failure tagged LC-2 and TTL-2
    counts against TTL-2 alone."""
    verdicts = _run(_b("lc2", ("LC-2",), ("TTL-2", "LC-2")), _t("ttl2", ("TTL-2",), "failed"),
                    _t("model", ("LC-2", "TTL-2"), "failed"))
    assert verdicts["TTL-2"] == "fail" and verdicts["LC-2"] == "skip"
