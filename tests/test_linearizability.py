"""The linearizability checker on histories whose verdict is known, with a register and with the session model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import pytest

from sessionspec.conformance.contract import KEEP
from sessionspec.conformance.linearizability import UNKNOWN, Operation, check, from_jepsen, to_jepsen
from sessionspec.conformance.model import Call, Namespace, describe_operation, is_failure, step_operation

# -- a register: ("w", v) -> None, ("r",) -> v, ("cas", old, new) -> bool ---------------------------


def register(state: int, op: Operation) -> Iterable[int]:
    kind, *args = op.input
    if kind == "w":
        return [args[0]] if op.output in (None, UNKNOWN) else []
    if kind == "r":
        return [state] if op.output in (state, UNKNOWN) else []
    swapped = state == args[0]
    if op.output is UNKNOWN:
        return {args[1] if swapped else state}
    return [args[1] if swapped else state] if op.output is swapped else []


def op(process: int, input: Any, output: Any, invoke: float, response: float) -> Operation:
    return Operation(process, input, output, invoke, response)


LINEARIZABLE = {
    "sequential": [op(0, ("w", 1), None, 0, 1), op(0, ("r",), 1, 2, 3)],
    "read overlapping a write sees the old value": [op(0, ("w", 1), None, 0, 10), op(1, ("r",), 0, 1, 2)],
    "read overlapping a write sees the new value": [op(0, ("w", 1), None, 0, 10), op(1, ("r",), 1, 1, 2)],
    "reads order the overlapping writes": [
        op(0, ("w", 1), None, 0, 10), op(1, ("w", 2), None, 0, 10),
        op(2, ("r",), 2, 1, 2), op(2, ("r",), 1, 3, 4), op(3, ("r",), 1, 11, 12)],
    "one of two racing CAS wins": [
        op(0, ("cas", 0, 1), True, 0, 5), op(1, ("cas", 0, 2), False, 0, 5), op(2, ("r",), 1, 6, 7)],
    "unknown write that happened": [op(0, ("w", 1), UNKNOWN, 0, 1), op(1, ("r",), 1, 5, 6)],
    "unknown write that never happened": [op(0, ("w", 1), UNKNOWN, 0, 1), op(1, ("r",), 0, 5, 6)],
    "unknown write landing late, long after its caller gave up": [
        op(0, ("w", 1), UNKNOWN, 0, 1), op(1, ("r",), 0, 5, 6), op(1, ("r",), 1, 7, 8)],
    "calls touching at one instant may go either way": [op(0, ("w", 1), None, 0, 1), op(1, ("r",), 0, 1, 2)],
}

NOT_LINEARIZABLE = {
    "stale read after a completed write": ([op(0, ("w", 1), None, 0, 1), op(1, ("r",), 0, 2, 3)], 1),
    "read of a value never written": ([op(0, ("w", 1), None, 0, 1), op(1, ("r",), 42, 0, 3)], 1),
    "two racing CAS both win (lost update)": (
        [op(0, ("cas", 0, 1), True, 0, 5), op(1, ("cas", 0, 2), True, 0, 5)], None),
    "value goes back in time": (
        [op(0, ("w", 1), None, 0, 10), op(1, ("r",), 1, 1, 2), op(1, ("r",), 0, 3, 4)], 2),
    "unknown write cannot explain a flip-flop": (
        [op(0, ("w", 1), UNKNOWN, 0, 1), op(1, ("r",), 1, 5, 6), op(1, ("r",), 0, 7, 8)], 2),
}


@pytest.mark.parametrize("history", LINEARIZABLE.values(), ids=LINEARIZABLE.keys())
def test_linearizable_histories_pass(history: list[Operation]) -> None:
    result = check(history, 0, register)
    assert result.ok is True, result.explain(history)
    assert sorted(result.order) == list(range(len(history))), "a linearization orders every operation once"


@pytest.mark.parametrize(("history", "stuck"), NOT_LINEARIZABLE.values(), ids=NOT_LINEARIZABLE.keys())
def test_non_linearizable_histories_fail_with_an_explanation(history: list[Operation], stuck: int | None) -> None:
    result = check(history, 0, register)
    assert result.ok is False
    if stuck is not None:
        assert result.stuck == stuck, result.explain(history)
    text = result.explain(history)
    assert "not linearizable" in text and "longest linearizable prefix" in text


def test_the_explanation_names_the_prefix_and_the_operation_that_cannot_be_placed() -> None:
    history = [op(0, ("w", 1), None, 0, 1), op(0, ("w", 2), None, 2, 3), op(1, ("r",), 1, 4, 5)]
    result = check(history, 0, register)
    assert (result.ok, result.order, result.stuck) == (False, [0, 1], 2)
    assert "#2" in result.explain(history)


def test_the_search_bound_gives_undecided_quickly_instead_of_hanging() -> None:
    """20 fully concurrent writes and a read of a value nobody wrote: ~20 * 2**20 configurations."""
    history = [op(i, ("w", i), None, 0, 10) for i in range(1, 21)] + [op(99, ("r",), -1, 0, 10)]
    began = time.monotonic()
    result = check(history, 0, register, max_steps=20_000)
    assert result.ok is None and "bound" in result.reason
    assert time.monotonic() - began < 5
    assert "undecided" in result.explain(history)


def test_a_long_concurrent_linearizable_history_is_checked_fast() -> None:
    """2000 operations, 8 processes overlapping, each read seeing the latest write: near-linear time."""
    history, value = [], 0
    for i in range(2000):
        t = float(i)
        if i % 3 == 0:
            value = i
            history.append(op(i % 8, ("w", i), None, t, t + 4))
        else:
            history.append(op(i % 8, ("r",), value, t + 0.5, t + 4))
    began = time.monotonic()
    result = check(history, 0, register)
    assert result.ok is True, result.explain(history)
    assert time.monotonic() - began < 5


def test_operations_must_not_return_before_they_are_invoked() -> None:
    with pytest.raises(ValueError):
        check([op(0, ("w", 1), None, 5, 1)], 0, register)


# -- the session model -------------------------------------------------------------------------
def session_history(*ops: tuple[int, Call, Any, float, float]) -> list[Operation]:
    created = {"id": "s", "owner": None, "version": 10, "ttl": None, "state": {"n": 0}}
    return [Operation(9, Call("create", "s", {"n": 0}, ttl=None), created, 0, 1)] + [Operation(*o) for o in ops]


def session(version: int, state: dict[str, Any]) -> dict[str, Any]:
    return {"id": "s", "owner": None, "version": version, "ttl": None, "state": state}


SESSION_CASES = {
    "concurrent saves ordered by their versions": (True, session_history(
        (0, Call("save", "s", {"n": 1}), session(12, {"n": 1}), 2, 6),
        (1, Call("save", "s", {"n": 2}), session(11, {"n": 2}), 2, 6),
        (2, Call("get", "s"), session(12, {"n": 1}), 7, 8))),
    "a get before the write it overlaps": (True, session_history(
        (0, Call("apply", "s", {"a": 1}), session(11, {"n": 0, "a": 1}), 2, 6),
        (1, Call("get", "s"), session(10, {"n": 0}), 3, 4))),
    "stale get after a completed save": (False, session_history(
        (0, Call("save", "s", {"n": 1}), session(11, {"n": 1}), 2, 3),
        (1, Call("get", "s"), session(10, {"n": 0}), 4, 5))),
    "lost update: the second apply drops the first's key": (False, session_history(
        (0, Call("apply", "s", {"a": 1}), session(11, {"n": 0, "a": 1}), 2, 6),
        (1, Call("apply", "s", {"b": 1}), session(12, {"n": 0, "b": 1}), 2, 6))),
    "two writers holding one version both commit": (False, session_history(
        (0, Call("save", "s", {"n": 1}, expected_version=10), session(11, {"n": 1}), 2, 6),
        (1, Call("save", "s", {"n": 2}, expected_version=10), session(12, {"n": 2}), 2, 6))),
    "two racing deletes both say True": (False, session_history(
        (0, Call("delete", "s"), True, 2, 6), (1, Call("delete", "s"), True, 2, 6))),
    "one racing delete wins": (True, session_history(
        (0, Call("delete", "s"), True, 2, 6), (1, Call("delete", "s"), False, 2, 6))),
    "a save that timed out and landed": (True, session_history(
        (0, Call("save", "s", {"n": 1}), UNKNOWN, 2, 3),
        (1, Call("get", "s"), session(17, {"n": 1}), 4, 5),
        (1, Call("save", "s", {"n": 2}, expected_version=17), session(18, {"n": 2}), 6, 7))),
    "touch must not change the version": (False, session_history(
        (0, Call("touch", "s"), {"id": "s", "owner": None, "version": 11, "ttl": None}, 2, 3))),
    "a save that began after a delete returned brings the session back (CC-8)": (False, session_history(
        (0, Call("delete", "s"), True, 2, 3),
        (1, Call("save", "s", {"n": 1}), session(11, {"n": 1}), 4, 5))),
    "a save overlapping the delete may land before it": (True, session_history(
        (0, Call("delete", "s"), True, 2, 4),
        (1, Call("save", "s", {"n": 1}), session(11, {"n": 1}), 1, 5),
        (1, Call("get", "s"), None, 6, 7))),
    "calls that all raised BackendUnavailable fit anything (so CC-6 requires answers)": (True, session_history(
        (0, Call("save", "s", {"n": 1}, expected_version=10), {"error": "BackendUnavailable"}, 2, 3),
        (1, Call("save", "s", {"n": 2}, expected_version=10), {"error": "BackendUnavailable"}, 2, 3),
        (2, Call("get", "s"), {"error": "BackendUnavailable"}, 4, 5))),
    "an old incarnation's version reappears (ABA)": (False, session_history(
        (0, Call("delete", "s"), True, 2, 3),
        (0, Call("create", "s", {}, ttl=None), session(10, {}), 4, 5))),
}


@pytest.mark.parametrize(("expected", "history"), SESSION_CASES.values(), ids=SESSION_CASES.keys())
def test_session_histories_against_the_contract_model(expected: bool, history: list[Operation]) -> None:
    result = check(history, Namespace(), step_operation)
    assert result.ok is expected, result.explain(history, describe_operation)


# -- Jepsen files ------------------------------------------------------------------------------
def test_jepsen_round_trip_keeps_every_operation_and_marks_failures_and_unknowns() -> None:
    history = session_history(
        (0, Call("save", "s", {"n": 1}, ttl=KEEP), UNKNOWN, 2, 3),
        (0, Call("get", "s"), session(11, {"n": 1}), 4, 5),
        (1, Call("touch", "missing"), {"error": "SessionNotFound"}, 2, 3))
    events = to_jepsen(history, f=lambda c: c.f, encode=Call.to_json, failed=is_failure)
    events = json.loads(json.dumps(events))  # it is plain JSON
    assert [e["type"] for e in events if e["type"] != "invoke"].count("info") == 1
    assert any(e["type"] == "fail" and e["f"] == "touch" for e in events)
    assert all(set(e) == {"process", "type", "f", "value", "time", "index"} for e in events)
    after_info = [e for e in events if e["f"] == "get"]
    assert all(e["process"] != 0 for e in after_info), "a process that saw info is retired (Jepsen rule)"
    back = from_jepsen(events, decode=Call.from_json)
    key = lambda o: (o.invoke, str(o.input))  # noqa: E731
    assert [(str(o.input), o.output) for o in sorted(back, key=key)] == \
        [(str(o.input), o.output) for o in sorted(history, key=key)]
    assert check(back, Namespace(), step_operation).ok is True


def test_from_jepsen_treats_a_missing_completion_as_unknown() -> None:
    events = [{"process": 0, "type": "invoke", "f": "w", "value": ["w", 1], "time": 0}]
    (only,) = from_jepsen(events)
    assert only.output is UNKNOWN
