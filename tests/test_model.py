"""The sequential model says what the contract says: checked on hand-made outputs and against MemoryStore."""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

import pytest

from sessionspec.conformance.contract import DELETE, KEEP, SessionNotFound, SessionStoreError, VersionConflict
from sessionspec.conformance.linearizability import UNKNOWN
from sessionspec.conformance.model import GRACE, Call, ModelMismatch, Namespace, Tracker, observe, step
from sessionspec.conformance.worker import perform
from sessionspec.reference import MemoryStore

NOW = (100.0, 100.001)


def session(id: str, version: int, state: dict[str, Any], *, ttl: float | None = None,
            owner: str | None = None) -> dict[str, Any]:
    return {"id": id, "owner": owner, "version": version, "ttl": ttl, "state": state}


def info(id: str, version: int, *, ttl: float | None = None, owner: str | None = None) -> dict[str, Any]:
    return {"id": id, "owner": owner, "version": version, "ttl": ttl}


def tracker_with(state: dict[str, Any], *, ttl: float | None = None, version: int = 5, at: tuple[float, float] = NOW,
                 owner: str | None = None) -> Tracker:
    t = Tracker()
    t.observe(Call("create", "s", state, ttl=ttl, owner=owner), at, session("s", version, state, ttl=ttl, owner=owner))
    return t


def allowed(t: Tracker, call: Call, output: Any, at: tuple[float, float] = NOW) -> bool:
    return any(step(ns, call, at, output) for ns in t.states)


# -- sequential semantics --------------------------------------------------------------------
def test_create_then_get_returns_what_was_created_and_pins_the_version() -> None:
    t = tracker_with({"a": 1})
    assert allowed(t, Call("get", "s"), session("s", 5, {"a": 1}))
    assert not allowed(t, Call("get", "s"), session("s", 6, {"a": 1})), "get must show the created version"
    assert not allowed(t, Call("get", "s"), session("s", 5, {"a": 2}))
    assert allowed(t, Call("get", "nope"), None)


@pytest.mark.parametrize(("call", "output"), [
    (Call("save", "s", {"b": 2}), session("s", 6, {"b": 2})),
    (Call("apply", "s", {"a": DELETE, "c": [1]}), session("s", 9, {"c": [1]})),
    (Call("apply", "s", {}), session("s", 6, {"a": 1})),
    (Call("append", "s", [1, 2], key="log"), info("s", 6)),
    (Call("touch", "s"), info("s", 5)),
    (Call("touch", "s", ttl=30), info("s", 5, ttl=30.0)),
    (Call("save", "s", {}, ttl=None, expected_version=5), session("s", 6, {})),
    (Call("delete", "s"), True),
    (Call("save", "nope", {}), {"error": "SessionNotFound"}),
    (Call("create", "s", {}), {"error": "SessionExists"}),
    (Call("apply", "s", {"x": math.nan}), {"error": "InvalidState"}),
    (Call("append", "s", [1], key="a"), {"error": "InvalidState"}),
    (Call("save", "s", {}, expected_version=4), {"error": "VersionConflict", "expected": 4, "actual": 5}),
    (Call("save", "nope", {}, expected_version=4), {"error": "SessionNotFound"}),
    (Call("get", ""), {"error": "InvalidSessionId"}),
    (Call("touch", "s", ttl=-1), {"error": "InvalidTtl"}),
    (Call("save", "s", {}, expected_version=True), {"error": "TypeError"}),
])
def test_each_operation_allows_what_the_contract_says(call: Call, output: Any) -> None:
    assert allowed(tracker_with({"a": 1}), call, output)


@pytest.mark.parametrize(("call", "output", "why"), [
    (Call("save", "s", {"b": 2}), session("s", 5, {"b": 2}), "VER-1: save must increase the version"),
    (Call("save", "s", {"b": 2}), session("s", 4, {"b": 2}), "VER-1: versions never go down"),
    (Call("apply", "s", {"b": 2}), session("s", 6, {"b": 2}), "MG-1: apply keeps the other keys"),
    (Call("apply", "s", {"a": DELETE}), session("s", 6, {"a": None}), "MG-1: DELETE removes the key"),
    (Call("touch", "s"), info("s", 6), "VER-1: touch keeps the version"),
    (Call("append", "s", [1], key="a"), info("s", 6), "MG-5: append onto a non-list fails"),
    (Call("save", "nope", {}), session("nope", 1, {}), "LC-3: no upsert"),
    (Call("create", "s", {}), session("s", 9, {}), "LC-2: create over a live id fails"),
    (Call("save", "s", {}, expected_version=4), session("s", 6, {}), "MG-2: a stale version conflicts"),
    (Call("save", "s", {}, expected_version=4), {"error": "VersionConflict", "expected": 4, "actual": 7},
     "MG-2: actual is the current version"),
    (Call("delete", "s"), False, "LC-4: deleting a live session says True"),
    (Call("apply", "s", {"x": math.nan, "y": 1}), session("s", 6, {"a": 1, "y": 1}), "MG-1: all or nothing"),
])
def test_the_model_refuses_what_the_contract_forbids(call: Call, output: Any, why: str) -> None:
    assert not allowed(tracker_with({"a": 1}), call, output), why


def test_several_invalid_arguments_allow_any_of_their_errors() -> None:
    t = tracker_with({})
    call = Call("save", "", {"x": math.inf}, ttl=0)
    for error in ("InvalidSessionId", "InvalidState", "InvalidTtl"):
        assert allowed(t, call, {"error": error})
    assert not allowed(t, call, {"error": "SessionNotFound"})


def test_create_with_keep_uses_the_stores_default_ttl() -> None:
    t = Tracker(default_ttl=60.0)
    assert allowed(t, Call("create", "s", {}), session("s", 1, {}, ttl=60.0))
    assert not allowed(t, Call("create", "s", {}), session("s", 1, {}, ttl=None))


def test_a_generated_id_is_any_id_not_live_and_is_adopted() -> None:
    t = tracker_with({})
    assert not allowed(t, Call("create", None, {"b": 1}), session("s", 7, {"b": 1})), "ID-1: a live id reused"
    t.observe(Call("create", None, {"b": 1}), NOW, session("gen", 7, {"b": 1}))
    assert t.ids() == {"s", "gen"}
    assert allowed(t, Call("get", "gen"), session("gen", 7, {"b": 1}))


def test_versions_of_a_dead_incarnation_never_return() -> None:
    t = tracker_with({})
    t.observe(Call("save", "s", {"x": 1}), NOW, session("s", 8, {"x": 1}))
    t.observe(Call("delete", "s"), NOW, True)
    assert not allowed(t, Call("create", "s", {}), session("s", 5, {})), "VER-2: v0 of the old incarnation"
    t.observe(Call("create", "s", {}), NOW, session("s", 2, {}))  # lower is fine: only repeats are forbidden
    assert not allowed(t, Call("save", "s", {}), session("s", 8, {})), "VER-2: a later version of the old one"
    assert allowed(t, Call("save", "s", {}, expected_version=8),
                   {"error": "VersionConflict", "expected": 8, "actual": 2})
    assert t.history_versions("s") == {5, 8, 2}


# -- expiry -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("after", "alive", "dead"), [
    (0.5, True, False),            # certainly inside the period
    (1.1, True, True),             # past ttl, inside the grace: either
    (1.0 + GRACE + 0.01, False, True),  # certainly past ttl + grace
])
def test_expiry_is_certain_only_away_from_the_deadline(after: float, alive: bool, dead: bool) -> None:
    t = tracker_with({}, ttl=1.0, at=(0.0, 0.001))
    at = (after, after + 0.001)
    assert allowed(t, Call("get", "s"), session("s", 5, {}, ttl=1.0), at) is alive
    assert allowed(t, Call("get", "s"), None, at) is dead


def test_an_uncertain_session_is_tracked_both_ways_until_a_read_decides() -> None:
    t = tracker_with({}, ttl=1.0, at=(0.0, 0.001))
    t.observe(Call("purge_expired"), (1.1, 1.101), 0)
    assert len(t.states) == 2, "s may be alive, or expired and not yet counted by a purge"
    t.observe(Call("get", "s"), (1.2, 1.201), None)
    assert t.ids() == set(), "the store showed s expired: every remaining state agrees"
    assert allowed(t, Call("purge_expired"), 1, (1.3, 1.301)) and allowed(t, Call("purge_expired"), 0, (1.3, 1.301))
    assert not allowed(t, Call("purge_expired"), 2, (1.3, 1.301)), "TTL-5: only expired sessions count"


def test_writes_slide_the_deadline() -> None:
    t = tracker_with({}, ttl=1.0, at=(0.0, 0.001))
    t.observe(Call("touch", "s"), (0.9, 0.901), info("s", 5, ttl=1.0))
    assert not allowed(t, Call("get", "s"), None, (1.5, 1.501)), "TTL-2: touch restarted the period"


def test_a_slow_call_widens_the_window_of_doubt() -> None:
    t = tracker_with({}, ttl=1.0, at=(0.0, 2.0))  # create took 2 s: it may have landed at 2.0
    assert allowed(t, Call("get", "s"), session("s", 5, {}, ttl=1.0), (2.5, 2.6))


# -- listing, unknown outcomes, messages -------------------------------------------------------------
def test_list_and_count_filter_by_owner_exactly_and_list_is_sorted() -> None:
    t = tracker_with({}, owner="al")
    t.observe(Call("create", "b", {}, owner="alice"), NOW, session("b", 6, {}, owner="alice"))
    assert allowed(t, Call("count", owner="al"), 1)
    assert allowed(t, Call("list"), [info("b", 6, owner="alice"), info("s", 5, owner="al")])
    assert not allowed(t, Call("list"), [info("s", 5, owner="al"), info("b", 6, owner="alice")])


def test_an_unknown_outcome_allows_both_fates_and_leaves_the_version_open() -> None:
    t = tracker_with({"a": 1})
    t.observe(Call("save", "s", {"b": 1}), NOW, UNKNOWN)
    assert allowed(t, Call("get", "s"), session("s", 9, {"b": 1}))
    assert not allowed(t, Call("get", "s"), session("s", 5, {"b": 1})), "the save landed: the version moved"
    assert allowed(t, Call("save", "s", {}, expected_version=9), session("s", 10, {}))


def test_a_mismatch_says_what_was_returned_and_what_was_allowed() -> None:
    t = tracker_with({"a": 1})
    with pytest.raises(ModelMismatch) as caught:
        t.observe(Call("touch", "s"), NOW, info("s", 6))
    text = str(caught.value)
    assert "touch('s')" in text and "'version': 6" in text and "'version': 5" in text


def test_call_json_round_trips_sentinels() -> None:
    call = Call("apply", "s", {"a": DELETE, "b": [1, {"c": None}]}, expected_version=3)
    assert Call.from_json(call.to_json()) == call
    assert Call.from_json(Call("touch", "s", ttl=KEEP).to_json()).ttl is KEEP
    assert hash(Namespace()) == hash(Namespace())


# -- the model agrees with the reference store --------------------------------------------------------
def random_call(rng: random.Random, ids: list[str], versions: list[int]) -> Call:
    id = rng.choice(ids)
    ev = rng.choice([None, None, *versions[-3:]])
    return rng.choice([
        Call("create", rng.choice([id, None]), {"n": rng.randint(0, 9)}, ttl=rng.choice([KEEP, None, 60])),
        Call("get", id), Call("delete", id), Call("touch", id, ttl=rng.choice([KEEP, 30, None])),
        Call("save", id, {"n": rng.randint(0, 9)}, expected_version=ev),
        Call("apply", id, {"n": rng.choice([DELETE, 1, math.nan]), "m": [1]}, expected_version=ev),
        Call("append", id, [rng.randint(0, 9)], key=rng.choice(["log", "n"]), expected_version=ev),
        Call("list"), Call("count"), Call("purge_expired"),
    ])


def test_memory_store_agrees_with_the_model_on_random_walks() -> None:
    async def walk(seed: int) -> None:
        rng, store, t = random.Random(seed), MemoryStore(), Tracker()
        ids, versions = ["a", "b", "세션"], [1]
        for _ in range(300):
            call = random_call(rng, ids, versions)
            began = time.monotonic()
            try:
                result: Any = await perform(store, call)
            except Exception as exc:
                result = exc
            output = observe(result)
            t.observe(call, (began, time.monotonic()), output)
            if isinstance(output, dict) and "version" in output:
                versions.append(output["version"])
            if isinstance(output, dict) and call.f == "create" and call.id is None and "id" in output:
                ids.append(output["id"])

    for seed in range(5):
        asyncio.run(walk(seed))


def test_a_tracker_also_allows_an_unseen_write_that_never_happened() -> None:
    """One call at a time there is no "later" to place it: UNKNOWN (or BackendUnavailable) may be "never"."""
    t = tracker_with({"a": 1})
    t.observe(Call("save", "s", {"b": 1}), NOW, {"error": "BackendUnavailable"})
    assert allowed(t, Call("get", "s"), session("s", 5, {"a": 1}))
    assert allowed(t, Call("get", "s"), session("s", 6, {"b": 1}))


# -- a mismatch names the one clause it breaks (issue 12, item 13) --------------------------------------
def _blamed(t: Tracker, call: Call, output: Any, at: tuple[float, float] = NOW) -> str:
    with pytest.raises(ModelMismatch) as caught:
        t.observe(call, at, output)
    assert str(caught.value).startswith(caught.value.clause + ": "), "the message must open with the clause"
    return caught.value.clause


def _deleted() -> Tracker:
    t = tracker_with({"a": 1})
    t.observe(Call("delete", "s"), NOW, True)
    return t


@pytest.mark.parametrize(("make", "call", "output", "clause"), [
    (lambda: tracker_with({"a": 1}), Call("touch", "s"), info("s", 6), "VER-1"),
    (_deleted, Call("save", "s", {"b": 1}), session("s", 7, {"b": 1}), "LC-3"),
    (_deleted, Call("get", "s"), session("s", 5, {"a": 1}), "LC-4"),
    (_deleted, Call("save", "s", {"x": math.nan}), {"error": "SessionNotFound"}, "ST-2"),
    (lambda: tracker_with({"a": 1}), Call("create", "s", {}), session("s", 9, {}), "LC-2"),
    (lambda: tracker_with({"a": 1}), Call("save", "s", {}, expected_version=4), session("s", 6, {}), "MG-2"),
    (lambda: tracker_with({"a": 1}), Call("apply", "s", {"b": 1}), session("s", 6, {"b": 1}), "MG-1"),
    (lambda: tracker_with({"log": 1}), Call("append", "s", [1], key="log"), info("s", 6), "MG-5"),
    (lambda: tracker_with({"a": 1}, owner="o"), Call("get", "s"), session("s", 5, {"a": 1}), "LC-1"),
    (lambda: tracker_with({"a": 1}, ttl=60.0), Call("touch", "s", ttl=None), info("s", 5, ttl=60.0), "TTL-3"),
    (lambda: tracker_with({"a": 1}), Call("save", "s", {"t": (1, 2)}), session("s", 6, {"t": [1, 2]}), "ST-1a"),
    (lambda: tracker_with({"a": 1}), Call("touch", "s", ttl=0), info("s", 5, ttl=None), "TTL-0"),
    (_deleted, Call("save", "s", {}, ttl=0), {"error": "SessionNotFound"}, "ST-2"),
], ids=["touch-bumps", "upsert", "delete-ignored", "validation-after-existence", "create-overwrites",
        "stale-version-accepted", "apply-replaces", "append-onto-non-list", "owner-lost", "touch-keeps-ttl",
        "tuple-accepted", "ttl-zero", "ttl-validated-after-existence"])
def test_a_mismatch_names_the_clause_its_step_breaks(make: Any, call: Call, output: Any, clause: str) -> None:
    assert _blamed(make(), call, output) == clause


def test_an_expired_session_read_back_is_ttl_1_and_a_lost_slid_one_ttl_2() -> None:
    t = tracker_with({"a": 1}, ttl=1.0, at=(0.0, 0.001))
    assert _blamed(t, Call("get", "s"), session("s", 5, {"a": 1}, ttl=1.0), at=(5.0, 5.001)) == "TTL-1"
    t = tracker_with({"a": 1}, ttl=1.0, at=(0.0, 0.001))
    t.observe(Call("touch", "s"), (0.8, 0.801), info("s", 5, ttl=1.0))
    assert _blamed(t, Call("get", "s"), None, at=(1.2, 1.201)) == "TTL-2"


def test_a_session_lost_right_after_a_refused_invalid_create_of_its_id_is_lc_2_not_ttl_1() -> None:
    """Found by test_blame under a loaded CI run: a store that deletes before it creates (SET, not SET NX) lost a
    live session to a create with ttl=0, which it then refused; the read after it was blamed on TTL-1."""
    t = tracker_with({"a": 1}, ttl=1.0, at=(0.0, 0.001))
    t.observe(Call("create", "s", {}, ttl=0), (0.01, 0.011), {"error": "InvalidTtl"})
    assert _blamed(t, Call("get", "s"), None, at=(0.02, 0.021)) == "LC-2"
    t = tracker_with({"a": 1}, ttl=1.0, at=(0.0, 0.001))  # the create that made it is no refused create
    assert _blamed(t, Call("get", "s"), None, at=(0.02, 0.021)) == "TTL-1"


def test_a_rounded_float_is_st_1_whatever_the_write() -> None:
    t = tracker_with({"x": 0.1})
    assert _blamed(t, Call("apply", "s", {"y": 1.2345678901234567}),
                   session("s", 6, {"x": 0.1, "y": 1.23456789012346})) == "ST-1"


def test_a_number_changed_beside_a_bool_is_still_st_1() -> None:
    """Found by the matrix on langgraph_postgres (JSONB turns 1e207 into an int): a state holding True beside the
    changed number was blamed on the write (MG-5 after an append), as a bool never counted as unchanged."""
    t = tracker_with({"flag": True, "log": [[True], 1.0e207]})
    t.observe(Call("append", "s", [False], key="log"), NOW, info("s", 6))
    assert _blamed(t, Call("get", "s"), session("s", 6, {"flag": True, "log": [[True], 10**207, False]})) == "ST-1"


def test_an_error_no_model_predicts_keeps_its_message_and_contract_errors_stay_exactly_comparable() -> None:
    """A bare SessionStoreError (or a foreign exception) in a concurrent history is only fixable with what it
    said ("database is locked", ...); the errors the contract names stay bare so the model can match them."""
    assert observe(SessionNotFound("x")) == {"error": "SessionNotFound"}
    assert observe(VersionConflict("x", 1, 2)) == {"error": "VersionConflict", "expected": 1, "actual": 2}
    locked = observe(SessionStoreError("SQLite refused the write under contention: database is locked"))
    assert locked == {"error": "SessionStoreError",
                      "message": "SessionStoreError: SQLite refused the write under contention: database is locked"}
    long = observe(RuntimeError("x" * 1000))
    assert long["error"] == "RuntimeError" and len(long["message"]) == 300 and long["message"].endswith("…")
