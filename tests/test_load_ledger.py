"""The consistency check's own logic: what counts as lost, duplicated, stray or reordered."""

from __future__ import annotations

from sessionspec.loadtests.workload import Ledger


def ledger() -> Ledger:
    return Ledger(deltas={"turn": 2, "note_2": "x"}, acked=["u:1", "u:2", "u:3"],
                  attempted={"u:1", "u:2", "u:3", "u:4"})


def test_every_acknowledged_write_present_once_and_in_order_is_consistent() -> None:
    state = {"turn": 2, "note_2": "x", "messages": ["u:1", "other:9", "u:2", "u:4", "u:3"]}
    assert ledger().verify(state, mine=lambda m: m.startswith("u:")) == []


def test_a_failed_append_may_have_landed_but_only_once() -> None:
    state = {"turn": 2, "note_2": "x", "messages": ["u:1", "u:2", "u:3"]}
    assert ledger().verify(state) == []
    twice = {"turn": 2, "note_2": "x", "messages": ["u:1", "u:2", "u:3", "u:4", "u:4"]}
    assert ledger().verify(twice) == ["1 append(s) present more than once"]


def test_lost_duplicated_stray_and_reordered_writes_are_each_named() -> None:
    assert ledger().verify({"turn": 2, "note_2": "x", "messages": ["u:1", "u:3"]}) == ["1 acknowledged append(s) lost"]
    assert ledger().verify({"turn": 1, "note_2": "x", "messages": ["u:1", "u:2", "u:3"]}) == [
        "1 acknowledged delta key(s) missing or overwritten"]
    assert ledger().verify({"turn": 2, "note_2": "x", "messages": ["u:1", "u:2", "u:3", "u:9"]}) == [
        "1 message(s) nobody appended"]
    assert ledger().verify({"turn": 2, "note_2": "x", "messages": ["u:2", "u:1", "u:3"]}) == [
        "acknowledged appends out of order"]
    assert ledger().verify(None) == ["session vanished with 3 acknowledged append(s)"]


def test_a_failed_delta_that_landed_anyway_is_not_a_lost_update() -> None:
    book = ledger()
    book.unsure["turn"] = [3]
    assert book.verify({"turn": 3, "note_2": "x", "messages": ["u:1", "u:2", "u:3"]}) == []
    assert book.verify({"turn": 7, "note_2": "x", "messages": ["u:1", "u:2", "u:3"]}) == [
        "1 acknowledged delta key(s) missing or overwritten"]
