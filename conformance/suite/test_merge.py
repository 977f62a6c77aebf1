"""MG-1, MG-2, MG-5: apply merges top-level keys, stale versions conflict, append extends a list; all or nothing.

What these tests assert about ``append(id, key, [])`` (spec MG-5, as MemoryStore does it):
appending no items is still a write. It creates ``[]`` when the key is absent, leaves an
existing list as it is, and increases the version like any other append.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Awaitable
from typing import Any

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import DELETE, InvalidState, Session, SessionNotFound, VersionConflict
from sessionspec.conformance.model import Call
from sessionspec.conformance.results import ClauseViolation
from sessionspec.conformance.worker import perform

from ._timing import check_stamps, timed
from ._values import moved_by_reads, require_aware, slid_by_reads, unless_reads_slide

TTL = 3600.0
KINDS = ("save", "apply", "append")


def state_write(kind: str, id: str, expected_version: int | None) -> Call:
    value: Any = {"save": {"n": 1}, "apply": {"n": 1}, "append": [1]}[kind]
    return Call(kind, id, value, key="log" if kind == "append" else None, expected_version=expected_version)


async def session_now(ctx: SuiteContext, id: str, clause_id: str) -> Session:
    got = await ctx.store.get(id)
    assert got is not None, f"{clause_id}: session {id!r} vanished (get is None) although nothing deleted it."
    return got


async def refused(ctx: SuiteContext, before: Session, call: Awaitable[Any], error: type[Exception],
                  clause_id: str, what: str) -> Exception:
    """``call`` must raise ``error`` and leave the session exactly as ``before`` (state, version, expiry)."""
    try:
        await call
    except error as exc:
        caught = exc
    else:
        pytest.fail(f"{clause_id}: {what} succeeded; it must raise {error.__name__}.", pytrace=False)
    after = await session_now(ctx, before.id, clause_id)
    await unless_reads_slide(ctx.store, clause_id, f"{what} (refused)", before, after)
    assert after == before, (
        f"{clause_id}: {what} raised {error.__name__} but changed the session: before {before!r}, after {after!r}. "
        "A refused write must change nothing: not the state, the version or the expiry."
    )
    return caught


# -- MG-1 ---------------------------------------------------------------------------------------
@clause("MG-1")
async def test_apply_sets_and_deletes_top_level_keys_and_leaves_the_rest(ctx: SuiteContext) -> None:
    session = await ctx.store.create({"a": 1, "b": {"x": 1, "y": 2}, "c": [1, 2], "keep": "k"}, ttl=TTL)
    changes = {"a": 2, "b": {"z": 3}, "c": DELETE, "absent": DELETE, "new": None}
    expected = {"a": 2, "b": {"z": 3}, "keep": "k", "new": None}
    applied = await ctx.store.apply(session.id, changes)
    got = await session_now(ctx, session.id, "MG-1")
    for name, state in (("apply returned", applied.state), ("get shows", got.state)):
        assert state == expected, (
            f"MG-1: {name} {state!r} after apply({changes!r}) on {session.state!r}; expected {expected!r}. apply "
            "sets each given top-level key (nested values replace the old value whole, no deep merge), removes "
            "keys mapped to DELETE (an absent one is fine), stores None as null, and leaves other keys alone."
        )
    assert got.version == applied.version > session.version, (
        f"MG-1: apply went from version {session.version} to {applied.version} (get shows {got.version}); "
        "it is one write: a greater version, the same one get then shows."
    )


@clause("MG-1")
@pytest.mark.parametrize("changes", [{}, {"absent": DELETE}], ids=["empty", "delete-absent-key"])
async def test_an_apply_that_changes_no_key_is_still_a_write(ctx: SuiteContext, changes: dict[str, Any]) -> None:
    session = await ctx.store.create({"a": 1}, ttl=TTL)
    applied = await ctx.store.apply(session.id, changes)
    assert applied.state == {"a": 1} and applied.version > session.version, (
        f"MG-1: apply({changes!r}) on {{'a': 1}} returned state {applied.state!r}, version {applied.version} "
        f"(before {session.version}). Removing an absent key is not an error, and an apply is a write even when "
        "no key changes: same state, greater version."
    )


INVALID_CHANGES = {
    "nan": {"bad": math.nan},
    "infinity": {"bad": -math.inf},
    "nested-delete": {"bad": {"x": DELETE}},
    "tuple": {"bad": [1, (2, 3)]},
    "bytes": {"bad": b"raw"},
}


@clause("MG-1")
@pytest.mark.parametrize("bad", INVALID_CHANGES.values(), ids=INVALID_CHANGES.keys())
async def test_an_apply_with_one_invalid_value_changes_nothing(ctx: SuiteContext, bad: dict[str, Any]) -> None:
    """The invalid value sits between valid changes, so a store that applies key by key is caught midway."""
    session = await ctx.store.create({"a": 1, "gone": True}, ttl=TTL)
    changes = {"a": 2, "gone": DELETE, **bad, "z": 3}
    await refused(ctx, session, ctx.store.apply(session.id, changes), InvalidState, "MG-1",
                  f"apply({changes!r}) with an invalid value among valid ones")


# -- MG-2 ---------------------------------------------------------------------------------------
@clause("MG-2")
@pytest.mark.parametrize("kind", KINDS)
async def test_a_stale_expected_version_conflicts_and_changes_nothing(ctx: SuiteContext, kind: str) -> None:
    session = await ctx.store.create({"log": []}, ttl=TTL)
    await ctx.store.apply(session.id, {"other": "writer"})  # somebody else wrote since we read
    before = await session_now(ctx, session.id, "MG-2")
    for wrong in (session.version, before.version + 1_000_000):
        what = f"{kind} with expected_version={wrong} while the session is at {before.version}"
        exc = await refused(ctx, before, perform(ctx.store, state_write(kind, session.id, wrong)), VersionConflict,
                            "MG-2", what)
        assert isinstance(exc, VersionConflict) and (exc.expected, exc.actual) == (wrong, before.version), (
            f"MG-2: {what} raised VersionConflict with expected={getattr(exc, 'expected', None)!r}, "
            f"actual={getattr(exc, 'actual', None)!r}; it must carry expected={wrong} and actual={before.version} "
            "(the current version), so the caller can tell what happened."
        )
    done = await perform(ctx.store, state_write(kind, session.id, before.version))
    assert done.version > before.version, (
        f"MG-2: {kind} with the current expected_version {before.version} returned version {done.version}; "
        "the matching version must let the write through as a normal write."
    )


@clause("MG-2")
@pytest.mark.parametrize("kind", KINDS)
async def test_expected_version_on_a_deleted_session_raises_not_found(ctx: SuiteContext, kind: str) -> None:
    """Spec 4.6: existence is checked before the version, so a dead id is SessionNotFound, never a conflict."""
    session = await ctx.store.create({}, ttl=TTL)
    await ctx.store.delete(session.id)
    try:
        await perform(ctx.store, state_write(kind, session.id, session.version))
    except SessionNotFound:
        return
    except VersionConflict:
        pytest.fail(f"MG-2: {kind} with expected_version on a deleted session raised VersionConflict; existence "
                    "comes first (spec 4.6): it must raise SessionNotFound.", pytrace=False)
    pytest.fail(f"MG-2 (and LC-3): {kind} with expected_version={session.version} on a deleted session succeeded; "
                "it must raise SessionNotFound and not bring the session back.", pytrace=False)


# -- MG-5 ---------------------------------------------------------------------------------------
@clause("MG-5")
async def test_append_creates_the_list_and_extends_it_in_order(ctx: SuiteContext) -> None:
    session = await ctx.store.create({"other": 1}, ttl=TTL)
    first = await ctx.store.append(session.id, "log", ["a", {"b": 1}])
    second, span = await timed(ctx.store.append(session.id, "log", [["c"], None, 3]))
    got = await session_now(ctx, session.id, "MG-5")
    expected = {"other": 1, "log": ["a", {"b": 1}, ["c"], None, 3]}
    assert got.state == expected, (
        f"MG-5: after two appends to an absent key the state is {got.state!r}; expected {expected!r}. append "
        "creates the list when the key is absent and extends it by the items, in order, leaving other keys alone."
    )
    assert session.version < first.version < second.version == got.version, (
        f"MG-5: versions went {session.version} -> {first.version} -> {second.version} (get shows {got.version}); "
        "each append is a write: a greater version, which the following get shows."
    )
    check_stamps(second, span, clause="MG-5", what="the SessionInfo append returned")
    require_aware("MG-5", "the session get() returned", got)
    if got.updated_at < second.updated_at:  # the stored expiry never moved: the write did not slide it
        raise ClauseViolation("TTL-2", f"TTL-2: append returned updated_at {second.updated_at}, but get shows "
                              f"{got.updated_at}: the append did not restart the stored period (every write slides "
                              "the expiry; RPUSH/HSET without PEXPIRE does this)", ("MG-5",))
    if await moved_by_reads(ctx.store, second, got):
        raise slid_by_reads("MG-5", "get() after append shows later updated_at/expires_at than append returned")
    assert (second.updated_at, second.expires_at) == (got.updated_at, got.expires_at), (
        f"MG-5: append returned updated_at {second.updated_at}, expires_at {second.expires_at}, but get shows "
        f"{got.updated_at}, {got.expires_at}. append is a write: it restarts the period, and returns the session's "
        "metadata as it is right after the write."
    )
    assert second.updated_at >= session.updated_at and second.ttl == TTL, (
        f"MG-5: append moved updated_at from {session.updated_at} to {second.updated_at} and ttl from {TTL} to "
        f"{second.ttl}; it must restart the period (sliding expiry) and keep ttl."
    )


@clause("MG-5")
@pytest.mark.parametrize("start", [{}, {"log": [1]}], ids=["absent-key", "existing-list"])
async def test_appending_no_items_is_a_write_that_leaves_a_list(ctx: SuiteContext, start: dict[str, Any]) -> None:
    session = await ctx.store.create(start, ttl=TTL)
    info = await ctx.store.append(session.id, "log", [])
    got = await session_now(ctx, session.id, "MG-5")
    expected = start.get("log", [])
    assert got.state.get("log") == expected and info.version > session.version, (
        f"MG-5: append(log, []) on {start!r} left log={got.state.get('log', '<absent>')!r} at version {info.version} "
        f"(before {session.version}); expected log={expected!r} and a greater version: an empty append creates [] "
        "when the key is absent and is still a write."
    )


NON_LISTS = {"null": None, "object": {"a": [1]}, "empty-object": {}, "string": "text", "int": 5, "float": 1.5,
             "bool": True}


@clause("MG-5")
@pytest.mark.parametrize("value", NON_LISTS.values(), ids=NON_LISTS.keys())
async def test_append_onto_a_non_list_raises_invalid_state_and_changes_nothing(ctx: SuiteContext, value: Any) -> None:
    # a copy: a store that keeps the caller's objects must not change this module's table for the next run
    session = await ctx.store.create({"k": copy.deepcopy(value), "other": 1}, ttl=TTL)
    await refused(ctx, session, ctx.store.append(session.id, "k", [1]), InvalidState, "MG-5",
                  f"append onto the value {value!r} (not a list; null included)")


INVALID_ITEMS = {"nan": [1, math.nan], "non-str-key": [{1: "x"}], "set": [{1, 2}], "delete": [DELETE],
                 "str-not-list": "abc", "mapping-not-list": {"a": 1}}


@clause("MG-5")
@pytest.mark.parametrize("items", INVALID_ITEMS.values(), ids=INVALID_ITEMS.keys())
async def test_append_of_invalid_items_raises_invalid_state_and_changes_nothing(ctx: SuiteContext, items: Any) -> None:
    session = await ctx.store.create({"log": [0]}, ttl=TTL)
    await refused(ctx, session, ctx.store.append(session.id, "log", items), InvalidState, "MG-5",
                  f"append of invalid items {items!r}")
