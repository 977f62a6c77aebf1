"""Blame in CI, bounded: the model checks still catch these one-bug stores, and blame only the bug's clause.

The full figure (every broken store, full suite each: clauses failed per one-bug store) is measured by
``python -m tests.blame``; this keeps its heart in CI at a few seconds per store: the model-based tests
only, on stores they catch, each failure counted against the one clause its failing step breaks.
"""

from __future__ import annotations

from typing import Any

import pytest

from sessionspec.conformance.results import ClauseResult
from sessionspec.conformance.runner import run_suite
from sessionspec.reference import MemoryStore
from tests.broken import BROKEN

MODEL = "agree_with_the_model"
CAUGHT_BY_THE_MODEL = {
    "touch_bumps_version": "VER-1",
    "create_drops_owner": "LC-1",
    "create_overwrites_live": "LC-2",
    "delete_always_true": "LC-4",
    "upsert_on_save": "LC-3",
    "validates_after_existence": "ST-2",
    "append_replaces_non_list": "MG-5",
    "apply_ignores_expected_version": "MG-2",
}
"""Store -> the clause its bug breaks; the model checks caught each of these before blame was added."""


@pytest.mark.parametrize(("name", "clause_id"), CAUGHT_BY_THE_MODEL.items(), ids=CAUGHT_BY_THE_MODEL.keys())
def test_the_model_check_catches_the_bug_and_blames_its_clause_only(name: str, clause_id: str) -> None:
    result = run_suite(BROKEN[name].target(), keyword=MODEL)
    failed_tests = [t for t in result.tests if t.status == "failed"]
    assert failed_tests, f"the model-based tests no longer catch {name} ({BROKEN[name].description})"
    blamed = {t.blame[0] if t.blame else "(none)" for t in failed_tests}
    for _ in range(3):
        if blamed == {clause_id} or clause_id not in blamed:
            break
        # With 0.05-0.15 s periods the step at which the store first disagrees moves with timing (long GC pauses
        # in a full run), and that step may show the bug through a neighbouring rule. The cases seen are blamed
        # right now (a session lost after a refused invalid create: LC-2; validation after existence through
        # any argument: ST-2); this rerun stays as a guard for one not seen yet, and a blame that differs on
        # every run still fails.
        result = run_suite(BROKEN[name].target(), keyword=MODEL)
        failed_tests = [t for t in result.tests if t.status == "failed"]
        blamed = {t.blame[0] if t.blame else "(none)" for t in failed_tests}
    assert blamed == {clause_id}, f"{name}: the model blamed {blamed}, the bug breaks {clause_id}"
    assert [c.clause.id for c in result.failures] == [clause_id]
    for t in failed_tests:
        assert t.message.startswith(f"{clause_id}: "), f"the first line names the clause: {t.message[:120]}"
        replayable = "could not replay the example" not in t.message  # its failing step depended on timing
        assert "@reproduce_failure" not in t.message and ("--replay " in t.message) == replayable, t.message[-300:]


# -- one bug, one clause: the cascades of the full run, pinned (issue 12, "done when" item 2) -------------------
def _verdicts(name: str, keyword: str | None = None) -> dict[str, ClauseResult]:
    return {c.clause.id: c for c in run_suite(BROKEN[name].target(), keyword=keyword).clauses}


def test_a_get_that_slides_the_expiry_fails_ttl_2_alone_and_the_checks_it_spoils_say_not_checked() -> None:
    """17 clauses failed for this one bug: every "nothing changed" re-read and get() == create() compared whole
    sessions, whose updated_at/expires_at the read itself moved. Those checks now name TTL-2, never pass."""
    verdicts = _verdicts("get_slides_expiry")
    failed = [cid for cid, c in verdicts.items() if c.failing]
    assert failed == ["TTL-2"], failed
    for cid in ("LC-1", "MG-2", "MG-5", "FL-4", "VER-2"):
        assert verdicts[cid].verdict == "skip" and "see TTL-2" in verdicts[cid].reason, (cid, verdicts[cid].reason)


@pytest.mark.parametrize(("name", "clause_id"), [("delete_always_true", "LC-4"),
                                                 ("apply_ignores_expected_version", "MG-2")])
def test_cc_6_is_not_checked_when_its_calls_made_one_at_a_time_already_break_a_clause(name: str,
                                                                                     clause_id: str) -> None:
    """CC-6's premise runs its own scripts one call at a time: a bug one caller sees is that clause's."""
    verdicts = _verdicts(name, "linearizable or delete_returns or stale_expected or concurrent_optimistic")
    assert verdicts[clause_id].failing
    assert verdicts["CC-6"].verdict == "skip" and f"see {clause_id}" in verdicts["CC-6"].reason, verdicts["CC-6"]


@pytest.mark.parametrize("name", ["check_then_write_cas", "read_cache_never_invalidated"])
def test_cc_6_still_fails_a_store_whose_bug_is_its_own(name: str) -> None:
    assert _verdicts(name, "linearizable")["CC-6"].failing


@pytest.mark.parametrize(("name", "clauses", "bug_clause"), [
    ("append_does_not_slide", ["TTL-2", "LS-1", "LS-2"], "TTL-2"),  # the slid listing's premise: get finds them
    ("create_drops_owner", ["LC-1", "LS-1", "LS-2", "CC-5", "ID-3"], "LC-1"),  # owners kept, a lost owner no leak
    ("naive_datetimes", ["LC-1", "TTL-2", "TTL-3", "MG-5", "LS-1"], "LC-1"),  # aware stamps are LC-1's rule
    ("save_keep_resets_ttl", ["TTL-2", "TTL-3", "VER-2"], "TTL-3"),  # a write that changed its period
    ("index_scored_on_create", ["TTL-5", "LS-1", "LS-2"], "LS-1"),  # a count after a purge is LS-2's
], ids=lambda v: v if isinstance(v, str) and "_" in v else "")
def test_one_bug_fails_its_own_clauses_only(name: str, clauses: list[str], bug_clause: str) -> None:
    result = run_suite(BROKEN[name].target(), clauses=clauses)
    failed = [c.clause.id for c in result.failures]
    intended = BROKEN[name].clauses
    assert failed and failed[0] in intended and set(failed) <= set(intended), (
        f"{name} ({BROKEN[name].description}) fails {failed}; its one bug breaks {intended}")
    assert bug_clause in failed


class LosesOneRead(MemoryStore):
    """Correct, except that one read, the first of a long-lived session after the 40th get of the process,
    answers None: a bug whose step depends on the run (as a timing-dependent one does), so Hypothesis cannot
    replay the failing example."""

    gets = 0
    lost = False

    async def get(self, id: str) -> Any:
        LosesOneRead.gets += 1
        found = await super().get(id)
        if found is not None and LosesOneRead.gets >= 40 and not LosesOneRead.lost and \
                (found.ttl is None or found.ttl >= 3600):
            LosesOneRead.lost = True
            return None
        return found


def loses_one_read(namespace: str) -> LosesOneRead:
    return LosesOneRead()


def test_a_mismatch_hypothesis_cannot_replay_is_still_reported_in_its_clause() -> None:
    """Hypothesis calls such a run Flaky (its replay passed, or stopped at another step); the store still
    disagreed with the model, so the test fails in the clause of the first disagreement, saying why there is
    no replay line, rather than with Hypothesis' error and no clause."""
    LosesOneRead.gets, LosesOneRead.lost = 0, False
    result = run_suite("tests.test_blame:loses_one_read", keyword="random_operation_sequences")
    (failed,) = [t for t in result.tests if t.status == "failed"]
    assert failed.blame and failed.blame[0] in ("TTL-1", "TTL-2", "TTL-3"), (failed.blame, failed.message[:500])
    assert failed.message.startswith(f"{failed.blame[0]}: ") and "could not replay the example" in failed.message
    assert "Flaky" not in failed.message and "--replay " not in failed.message
