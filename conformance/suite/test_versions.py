"""VER-*: every state write raises the version, touch and get keep it, and no incarnation reuses one."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import KEEP, Session, SessionStore, VersionConflict
from sessionspec.conformance.model import Call
from sessionspec.conformance.results import ClauseViolation
from sessionspec.conformance.worker import perform

from ._overlap import overlapped
from ._timing import GRACE, retrying, sleep_until, timed, write_while_live
from ._values import unless_reads_slide

KINDS = ("save", "apply", "append")
TTL = 3600.0


def state_write(kind: str, id: str, n: int, expected_version: int | None = None) -> Call:
    """One write of each state-changing kind (save replaces, apply merges, append extends ``log``)."""
    value: Any = {"save": {"n": n}, "apply": {"n": n}, "append": [n]}[kind]
    return Call(kind, id, value, key="log" if kind == "append" else None, expected_version=expected_version)


async def write(store: SessionStore, kind: str, id: str, n: int, expected_version: int | None = None) -> int:
    """Make the write and return the version it reports."""
    result = await perform(store, state_write(kind, id, n, expected_version))
    return int(result.version)


async def must_get(store: SessionStore, id: str, clause_id: str) -> Session:
    got = await store.get(id)
    assert got is not None, f"{clause_id}: session {id!r} vanished (get is None) although nothing deleted it."
    return got


@clause("VER-1")
@pytest.mark.parametrize("kind", KINDS)
async def test_each_state_write_returns_a_greater_version_that_get_then_shows(ctx: SuiteContext, kind: str) -> None:
    session = await ctx.store.create({}, ttl=TTL)
    before = session.version
    for n in range(3):
        version = await write(ctx.store, kind, session.id, n)
        assert version > before, (
            f"VER-1: {kind} #{n + 1} returned version {version}, not above the previous {before}. Every save, "
            "apply and append must return a strictly greater version, or optimistic concurrency cannot tell "
            "a stale writer from a current one."
        )
        got = await must_get(ctx.store, session.id, "VER-1")
        assert got.version == version, (
            f"VER-1: {kind} returned version {version} but the get right after shows {got.version}; what a write "
            "returns must describe the session immediately after it (spec 4.5)."
        )
        before = version


@clause("VER-1")
async def test_a_burst_of_writes_within_milliseconds_gets_strictly_increasing_versions(ctx: SuiteContext) -> None:
    """Back-to-back writes land several per millisecond: a clock-derived version repeats here."""
    session = await ctx.store.create({}, ttl=TTL)
    versions = [session.version]
    began = time.monotonic()
    for n in range(60):
        versions.append(await write(ctx.store, KINDS[n % 3], session.id, n))
    per_ms = 60 / max(1e-3, (time.monotonic() - began) * 1000)
    bad = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(versions)) if b <= a]
    assert not bad, (
        f"VER-1: in a burst of 60 writes ({per_ms:.1f} per ms) write #{bad[0][0] + 1} went from version "
        f"{bad[0][1]} to {bad[0][2]} ({len(bad)} such steps). Versions must come from a counter, never a clock: "
        "two writes in one millisecond must still get distinct, increasing versions."
    )
    got = await must_get(ctx.store, session.id, "VER-1")
    assert got.version == versions[-1], (
        f"VER-1: the last write returned version {versions[-1]} but get shows {got.version}."
    )


@clause("VER-1")
@pytest.mark.parametrize("ttl", [KEEP, None, 120.0], ids=["ttl-keep", "ttl-none", "ttl-number"])
async def test_touch_and_get_keep_the_version(ctx: SuiteContext, ttl: float | None) -> None:
    session = await ctx.store.create({}, ttl=TTL)
    version = await write(ctx.store, "apply", session.id, 1)
    touched = await ctx.store.touch(session.id, ttl=ttl)
    assert touched.version == version, (
        f"VER-1: touch(ttl={ttl!r}) changed the version from {version} to {touched.version}. touch is a heartbeat: "
        "it restarts the period but must keep the version, or every concurrent editor's next write conflicts."
    )
    reads = [(await must_get(ctx.store, session.id, "VER-1")).version for _ in range(2)]
    assert reads == [version, version], (
        f"VER-1: after touch, two gets showed versions {reads}, expected {version} both times (reads and "
        "touch never change the version)."
    )


async def _end_incarnation(ctx: SuiteContext, id: str, end: str, last_write: float, ttl: float) -> None:
    """Delete the session, or wait until it must have expired and check that it has."""
    if end == "delete":
        assert await ctx.store.delete(id), f"VER-2: delete({id!r}) of a live session returned False (see LC-4)."
        return
    await sleep_until(last_write + ttl + GRACE)
    got, read = await timed(ctx.store.get(id))
    if got is not None:  # VER-2's setup: the period is the owner's business (TTL-3 if the writes changed it)
        see = ("TTL-3", "TTL-1") if got.ttl != ttl else ("TTL-1", "TTL-3")
        raise ClauseViolation(see[0], f"could not check VER-2: the session (ttl {ttl:g} s, now reporting ttl "
                              f"{got.ttl!r}) was still visible {read.start - last_write:.3f} s after its last write "
                              "returned, so it could not be recreated as a new incarnation. It must be invisible from "
                              f"ttl + 0.25 s on — see {' / '.join(see)}", see[1:])


async def _stale_versions_conflict_at_all(store: SessionStore, kind: str) -> None:
    """VER-2's premise: within one incarnation a stale expected_version conflicts. If not, that is MG-2's bug."""
    session = await store.create({"log": []}, ttl=TTL)
    await write(store, kind, session.id, 1)
    try:
        await write(store, kind, session.id, 2, expected_version=session.version)
    except VersionConflict:
        return
    raise ClauseViolation("MG-2", f"could not check VER-2: {kind}(expected_version=<a stale version>) succeeds even "
                          "within one incarnation — see MG-2", ("VER-2",))


async def _first_incarnation(ctx: SuiteContext, end: str) -> tuple[str, list[int]]:
    """Create an id, write it through every kind twice, end it; return the id and the versions it had.

    The expiry variant's period is short (0.5 s) and each write slides it: a write that may have
    started after the session expired is a slow call, not a fault, so that trial is inconclusive and
    runs again, under a new id, with a longer period (a write that certainly found the session live
    and raised SessionNotFound still fails)."""
    done: list[tuple[str, list[int]]] = []

    async def trial(ttl: float) -> None:
        id = f"ver2-{end}" if end == "delete" else f"ver2-{end}-{round(ttl * 1000)}ms"
        created, span = await timed(ctx.store.create({"incarnation": 1}, id=id, ttl=ttl))
        versions = [created.version]
        for n, kind in enumerate(KINDS * 2):
            version, span = await write_while_live("VER-2", f"{kind} #{n + 1} of the first incarnation of {id!r}",
                                                   write(ctx.store, kind, id, n), span, ttl)
            versions.append(version)
        await _end_incarnation(ctx, id, end, span.end, ttl)
        done.append((id, versions))

    await retrying("VER-2", trial, 0.5 if end == "expiry" else TTL)
    return done[-1]


@overlapped(only={"end": "expiry"})
@clause("VER-2")
@pytest.mark.parametrize("end", ["delete", "expiry"])
async def test_a_recreated_id_never_reuses_a_version_and_old_versions_conflict(ctx: SuiteContext, end: str) -> None:
    """Incarnation 2 runs through as many writes as incarnation 1; no version may repeat, and every
    expected_version from incarnation 1 must raise VersionConflict against incarnation 2 (no ABA)."""
    id, old = await _first_incarnation(ctx, end)
    new = [(await ctx.store.create({"incarnation": 2}, id=id, ttl=TTL)).version]
    for n, kind in enumerate(KINDS * 2):
        new.append(await write(ctx.store, kind, id, 100 + n))
    repeated = sorted(set(old) & set(new))
    assert not repeated, (
        f"VER-2: after the {end} of {id!r}, the new incarnation took versions {repeated} that the old one already "
        f"had (old {old}, new {new}). Versions must never repeat for an id, or a client holding an old version "
        "overwrites a different session (ABA). Keep one counter per namespace, not per incarnation."
    )
    before = await must_get(ctx.store, id, "VER-2")
    for stale in old:
        for kind in KINDS:
            try:
                await write(ctx.store, kind, id, -1, expected_version=stale)
            except VersionConflict:
                continue
            await _stale_versions_conflict_at_all(ctx.store, kind)
            pytest.fail(f"VER-2: {kind}(expected_version={stale}) succeeded on the new incarnation of {id!r}, but "
                        f"{stale} is a version of the deleted one (now at {before.version}). It must raise "
                        "VersionConflict: the caller read a session that no longer exists.", pytrace=False)
    after = await must_get(ctx.store, id, "VER-2")
    await unless_reads_slide(ctx.store, "VER-2", "stale-version writes on the new incarnation", before, after)
    assert after == before, (
        f"VER-2: writes with expected versions of the deleted incarnation changed the new one: before {before!r}, "
        f"after {after!r}. They must raise VersionConflict and change nothing."
    )
