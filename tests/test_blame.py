"""Blame in CI, bounded: the model checks still catch these one-bug stores, and blame only the bug's clause.

The full figure (every broken store, full suite each: clauses failed per one-bug store) is measured by
``python -m tests.blame``; this keeps its heart in CI at a few seconds per store: the model-based tests
only, on stores they catch, each failure counted against the one clause its failing step breaks.
"""

from __future__ import annotations

import pytest

from sessionspec.conformance.runner import run_suite
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
    assert blamed == {clause_id}, f"{name}: the model blamed {blamed}, the bug breaks {clause_id}"
    assert [c.clause.id for c in result.failures] == [clause_id]
    for t in failed_tests:
        assert t.message.startswith(f"{clause_id}: "), f"the first line names the clause: {t.message[:120]}"
        assert "@reproduce_failure" not in t.message and "--replay " in t.message, t.message[-300:]
