"""LC-1..LC-4: create, get, delete, and no resurrection.

Deletion is how logout and revocation work and expiry is how idle sessions end, so the
attacks here are writes that bring a dead session back (upserts), creates that overwrite a
live one or inherit a dead one's leftovers, and deletes that lie about what they did.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import DELETE, KEEP, Session, SessionExists, SessionNotFound, SessionStore
from sessionspec.conformance.results import ClauseViolation
from sessionspec.conformance.validation import GENERATED_ID_PATTERN

from ._overlap import overlapped
from ._timing import (
    SHORT_TTL,
    Inconclusive,
    Span,
    check_stamps,
    dead_from,
    retrying,
    sleep_until,
    timed,
    write_while_live,
)
from ._values import (
    bullets,
    count_unchanged,
    describe_change,
    json_diff,
    raises,
    refusal,
    setting_up,
    short,
    unless_reads_slide,
)

STATE: dict[str, Any] = {"a": 1, "nested": {"list": [1, 2.5, None, True], "text": "héllo"}}
TTL_ARGS: dict[str, Any] = {"KEEP": KEEP, "None": None, "60": 60, "1234.5": 1234.5}
DISTINCT_TIMESTAMPS = 0.01
LC2_TTL = 1.0
"""Whole seconds: LC-2 is about reusing a dead id, so its setup must hold on a store with whole-second TTLs
(that store fails TTL-1 on its own test; LC-2 must not be blamed for it)."""
"""A pause long enough that two writes get different timestamps on a store with 1 ms resolution."""


# ---------------------------------------------------------------- LC-1
@clause("LC-1")
async def test_create_returns_v0_and_get_returns_the_same_session(ctx: SuiteContext) -> None:
    """The simplest round: state, owner, ttl and version read back as created."""
    created = await ctx.store.create({"a": 1}, owner="alice", ttl=60)
    got = await ctx.store.get(created.id)
    assert got is not None, "LC-1: get() of a session just created returned None."
    seen = (got.state, got.owner, got.ttl, got.version)
    assert seen == ({"a": 1}, "alice", 60.0, created.version), (
        f"LC-1: create({{'a': 1}}, owner='alice', ttl=60) then get() must give back that state, owner and ttl "
        f"and the version create returned ({created.version}); got (state, owner, ttl, version) = {seen}"
    )


@clause("LC-1")
@pytest.mark.parametrize("ttl_label", list(TTL_ARGS))
async def test_create_returns_what_it_was_given_and_get_returns_it_field_by_field(
        ctx: SuiteContext, ttl_label: str) -> None:
    """Every combination of state, owner and id (given or generated), for one kind of ttl argument."""
    ttl = TTL_ARGS[ttl_label]
    store = ctx.store
    defaults: set[float | None] = set()
    for n, (state, owner, given) in enumerate(itertools.product((None, STATE), (None, "alice"), (False, True))):
        sid = f"lc1-{n}" if given else None
        what = f"create(state={'None' if state is None else '{...}'}, id={sid!r}, owner={owner!r}, ttl={ttl_label})"
        created, span = await timed(store.create(copy.deepcopy(state), id=sid, owner=owner, ttl=ttl))
        if sid is not None:
            assert created.id == sid, f"LC-1: {what} returned id {created.id!r}; a given id must be kept exactly."
        else:
            assert isinstance(created.id, str) and GENERATED_ID_PATTERN.fullmatch(created.id), (
                f"LC-1: {what} generated the id {created.id!r}, which is not 1..64 characters of [A-Za-z0-9_-]."
            )
        diff = json_diff({} if state is None else STATE, created.state)
        assert diff is None, f"LC-1: {what} returned a different state ({diff}); create(state=None) stores {{}}."
        assert created.owner == owner, f"LC-1: {what} returned owner {created.owner!r}; the owner must be stored."
        if ttl is KEEP:
            assert created.ttl is None or (isinstance(created.ttl, float) and created.ttl > 0), (
                f"LC-1: {what} returned ttl {created.ttl!r}; KEEP on create means the store's default period, "
                "which is None or a positive float."
            )
            defaults.add(created.ttl)
        else:
            assert created.ttl == ttl and (ttl is None or isinstance(created.ttl, float)), (
                f"LC-1: {what} returned ttl {created.ttl!r}; it must report the period as given, as a float."
            )
        assert isinstance(created.version, int) and not isinstance(created.version, bool), (
            f"LC-1: {what} returned version {created.version!r}; versions are ints."
        )
        assert created.created_at == created.updated_at, (
            f"LC-1: {what} returned created_at {created.created_at} != updated_at {created.updated_at}; a create "
            "is the first write, so both are the moment it took effect."
        )
        check_stamps(created, span, clause="LC-1", what=what)
        got = await store.get(created.id)
        await unless_reads_slide(store, "LC-1", f"get() right after {what}", created, got)
        assert got == created, (
            f"LC-1: get() right after {what} must return the same session field by field (state, owner, ttl, "
            f"version, timestamps): {describe_change(created, got)}"
        )
    assert len(defaults) <= 1, (
        f"LC-1: create(ttl=KEEP) reported different default periods {sorted(map(str, defaults))}; KEEP means the "
        "store's one configured default."
    )


# ---------------------------------------------------------------- LC-2
@clause("LC-2")
async def test_create_on_a_live_id_raises_session_exists_and_changes_nothing(ctx: SuiteContext) -> None:
    """Create is create-if-absent: overwriting a live session hands it to someone else."""
    store = ctx.store
    await store.create({"a": 1}, id="taken", owner="alice", ttl=600)
    await store.append("taken", "log", [1])
    before = await store.get("taken")
    attempts: list[dict[str, Any]] = [{}, {"owner": "mallory"}, {"ttl": None}, {"ttl": 5}]
    for kwargs in attempts:
        await raises(SessionExists, store.create({"b": 2}, id="taken", **kwargs),
                     f"LC-2: create(id='taken', {kwargs}) over a live session must raise SessionExists (SET NX, "
                     "INSERT without ON CONFLICT DO UPDATE).")
        after = await store.get("taken")
        await unless_reads_slide(store, "LC-2", f"a refused create(id='taken', {kwargs})", before, after)
        assert after == before, (
            f"LC-2: a refused create(id='taken', {kwargs}) still changed the live session: "
            f"{describe_change(before, after)}"
        )


async def _first_life(store: SessionStore, id: str, ttl: float) -> tuple[Session, Span]:
    """Create ``id`` and append to it at once: the old incarnation (and its list) a new one must not inherit."""
    old, created = await setting_up("LC-2", f"create(id={id!r}, ttl={ttl:g})",
                                    timed(store.create({"old": 1, "shared": "old"}, id=id, owner="alice", ttl=ttl)),
                                    ("LC-1", "TTL-0"))
    what = f"append() right after create(ttl={ttl:g})"
    try:
        _, last_write = await write_while_live("TTL-1", what, store.append(id, "log", [1, 2]), created, ttl)
    except Inconclusive:
        raise
    except (Exception, pytest.fail.Exception) as exc:  # a live session refused the write: not LC-2's to judge
        said = exc.msg if isinstance(exc, pytest.fail.Exception) else f"{what} raised {type(exc).__name__}: {exc}"
        raise ClauseViolation("TTL-1", f"could not set up LC-2: {short(said, 300)} — see TTL-1 / MG-5",
                              ("MG-5",)) from None
    return old, last_write


async def _ended(store: SessionStore, end: str) -> tuple[str, Session]:
    """A dead id and its old incarnation. The expired one lives LC2_TTL: an append that may have come after it
    expired (a slow store) makes the trial inconclusive, and it runs again under a new id with a longer period."""
    if end == "deleted":
        old, _ = await _first_life(store, "reborn", 600)
        assert await store.delete("reborn") is True, "LC-4: delete() of a live session returned False."
        await asyncio.sleep(DISTINCT_TIMESTAMPS)  # not a synchronisation: only so created_at can differ
        return "reborn", old
    lives: list[tuple[str, Session]] = []

    async def trial(ttl: float) -> None:
        id = f"reborn-{round(ttl * 1000)}ms"
        old, last_write = await _first_life(store, id, ttl)
        await sleep_until(dead_from(last_write, ttl))
        lives.append((id, old))

    await retrying("LC-2", trial, LC2_TTL)
    return lives[-1]


@overlapped(only={"end": "expired"})
@clause("LC-2")
@pytest.mark.parametrize("end", ["deleted", "expired"])
async def test_create_on_a_dead_id_starts_a_new_incarnation(ctx: SuiteContext, end: str) -> None:
    """A deleted or expired id can be created again, and the new session inherits nothing."""
    store = ctx.store
    id, old = await _ended(store, end)
    try:
        new, span = await timed(store.create({"shared": "new"}, id=id, ttl=None))
    except SessionExists:
        pytest.fail(f"LC-2: create(id={id!r}) after the session was {end} raised SessionExists; a dead id must be "
                    "reusable at once (an expired row or key still physically present does not count).",
                    pytrace=False)
    what = f"create() over {'an expired' if end == 'expired' else 'a deleted'} session"
    problems = [p for p in (
        json_diff({"shared": "new"}, new.state, "state"),
        None if new.owner is None else f"owner {new.owner!r} (the old incarnation's?)",
        None if new.ttl is None and new.expires_at is None else f"ttl {new.ttl!r} / expires_at {new.expires_at}",
        None if new.created_at > old.created_at else f"created_at {new.created_at} is not after the old "
                                                     f"incarnation's {old.created_at}",
    ) if p]
    assert not problems, f"LC-2: {what} must start from nothing, but:" + bullets(problems)
    check_stamps(new, span, clause="LC-2", what=what)
    got = await store.get(id)
    await unless_reads_slide(store, "LC-2", f"get() after {what}", new, got)
    assert got == new, f"LC-2: get() after {what} differs from what create returned: {describe_change(new, got)}"
    await store.append(id, "log", [3])
    got = await store.get(id)
    assert got is not None and got.state.get("log") == [3], (
        f"LC-2: appending to 'log' after {what} gave {short(got and got.state.get('log'))}, not [3]: the new "
        "incarnation inherited the old one's list."
    )


# ---------------------------------------------------------------- LC-3
DeadWrite = Callable[[SessionStore, str, int], Awaitable[object]]
DEAD_WRITES: dict[str, DeadWrite] = {
    "save": lambda s, sid, v: s.save(sid, {"x": 1}),
    "save(ttl=None)": lambda s, sid, v: s.save(sid, {"x": 1}, ttl=None),
    "save(ttl=60)": lambda s, sid, v: s.save(sid, {"x": 1}, ttl=60),
    "apply": lambda s, sid, v: s.apply(sid, {"x": 1}),
    "apply(DELETE)": lambda s, sid, v: s.apply(sid, {"old": DELETE}),
    "append": lambda s, sid, v: s.append(sid, "log", [1]),
    "touch": lambda s, sid, v: s.touch(sid),
    "touch(ttl=None)": lambda s, sid, v: s.touch(sid, ttl=None),
    "touch(ttl=60)": lambda s, sid, v: s.touch(sid, ttl=60),
}
VERSIONED_DEAD_WRITES: dict[str, DeadWrite] = {
    "save(expected_version=last)": lambda s, sid, v: s.save(sid, {"x": 1}, expected_version=v),
    "apply(expected_version=last)": lambda s, sid, v: s.apply(sid, {"x": 1}, expected_version=v),
    "append(expected_version=last)": lambda s, sid, v: s.append(sid, "log", [1], expected_version=v),
}


async def _dead_ids(store: SessionStore, end: str, names: list[str]) -> dict[str, tuple[str, int]]:
    """One dead id per write (so one resurrection cannot hide the next), with its last version."""
    if end == "never created":
        return {name: (f"never-{i}", 1) for i, name in enumerate(names)}
    dead: dict[str, tuple[str, int]] = {}
    spans: list[Span] = []
    for i, name in enumerate(names):
        session, span = await timed(store.create({"old": i}, id=f"{end[:4]}-{i}", owner="alice",
                                                 ttl=SHORT_TTL if end == "expired" else 600))
        dead[name] = (session.id, session.version)
        spans.append(span)
        if end == "deleted":
            assert await store.delete(session.id) is True, "LC-4: delete() of a live session returned False."
    if end == "expired":
        await sleep_until(dead_from(Span.cover(spans), SHORT_TTL))
    return dead


@overlapped(only={"end": "expired"})
@clause("LC-3")
@pytest.mark.parametrize("end", ["never created", "deleted", "expired"])
async def test_writes_to_a_dead_id_raise_not_found_and_never_bring_it_back(ctx: SuiteContext, end: str) -> None:
    """save/apply/append/touch on a missing, deleted or expired id: SessionNotFound, and it stays dead."""
    store = ctx.store
    writes = DEAD_WRITES | (VERSIONED_DEAD_WRITES if ctx.claims("atomic") else {})
    dead = await _dead_ids(store, end, list(writes))
    count_before = await store.count() if ctx.claims("listing") else None
    failures: list[str] = []
    for name, write in writes.items():
        sid, version = dead[name]
        failure = await refusal(name, write(store, sid, version), SessionNotFound)
        failures += [failure] if failure else []
        got = await store.get(sid)
        if got is not None:
            failures.append(f"{name}: afterwards get() returns the session again ({short(got.state, 50)})")
    assert not failures, (
        f"LC-3: writes to an id that was {end} must raise SessionNotFound (before any VersionConflict) and must not "
        "create, restore or modify anything: an upserting write lets a request still in flight at logout log "
        "the user back in:" + bullets(failures)
    )
    await count_unchanged(store, count_before, f"LC-3: refused writes to {end} ids must leave nothing behind",
                          no_more=True)


# ---------------------------------------------------------------- LC-4
@overlapped
@clause("LC-4")
async def test_delete_returns_true_only_for_a_live_session(ctx: SuiteContext) -> None:
    """True once for a live session; False for a deleted, never-created or expired one; then get is None."""
    store = ctx.store
    expiring, write = await timed(store.create({"e": 1}, id="expiring", ttl=SHORT_TTL))
    live = await store.create({"l": 1}, id="live")
    neighbour = await store.create({"n": 1}, id="live2")
    outcomes: list[tuple[str, bool, bool]] = [("delete of a live session", await store.delete(live.id), True)]
    outcomes.append(("the same delete again", await store.delete(live.id), False))
    outcomes.append(("delete of a never-created id", await store.delete("never-created"), False))
    await store.create({"again": 1}, id="live")
    outcomes.append(("delete of the id's next incarnation", await store.delete("live"), True))
    await sleep_until(dead_from(write, SHORT_TTL))
    outcomes.append(("delete of an expired session", await store.delete(expiring.id), False))
    wrong = [f"{what} returned {got!r}, expected {want!r}" for what, got, want in outcomes if got is not want]
    assert not wrong, (
        "LC-4: delete() must return True exactly when it deleted a live session and False otherwise (already "
        "deleted, never created, expired):" + bullets(wrong)
    )
    for sid in (live.id, expiring.id, "never-created"):
        got = await store.get(sid)
        assert got is None, f"LC-4: after delete({sid!r}) get() still returns {short(got)}."
    got = await store.get(neighbour.id)
    await unless_reads_slide(store, "LC-4", "deleting 'live' left 'live2'", neighbour, got)
    assert got == neighbour, f"LC-4: deleting 'live' changed 'live2': {describe_change(neighbour, got)}"
