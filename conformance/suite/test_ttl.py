"""TTL-1..TTL-5 and HY-2: sliding expiry, on time, everywhere, against the real clock.

Every verdict comes from measured call intervals (see ``_timing``): a session must be
visible when it was certainly inside its period and invisible once it was certainly past
``ttl + 0.25 s``; anything in between is repeated with a longer period, never guessed.
The scenarios of each test run concurrently, so each test waits about one period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import KEEP, Session, SessionInfo, SessionNotFound, SessionStore
from sessionspec.conformance.results import NOT_APPLICABLE, ClauseViolation

from ._overlap import overlapped
from ._timing import (
    GRACE,
    SHORT_TTL,
    Span,
    check_stamps,
    dead_from,
    gather_all,
    judge,
    look,
    retrying,
    sleep_until,
    timed,
    within,
    write_while_live,
)
from ._values import bullets, describe_change, moved_by_reads, owners_kept, short, slid_by_reads

TTL1_PERIOD = 0.4
TTL2_PERIOD = 0.6
TTL3_PERIOD = 0.4
PURGE_UNIT = 0.1
HY2_PERIOD = 0.4
LONG = 3600.0

Write = Callable[[SessionStore, str], Awaitable[object]]


# ---------------------------------------------------------------- TTL-1
async def _set_by_create(store: SessionStore, ttl: float) -> tuple[str, Span]:
    session, span = await timed(store.create({"n": 0}, ttl=ttl))
    return session.id, span


async def _set_by_save(store: SessionStore, ttl: float) -> tuple[str, Span]:
    session = await store.create({"n": 0}, ttl=None)
    _, span = await timed(store.save(session.id, {"n": 1}, ttl=ttl))
    return session.id, span


async def _set_by_touch(store: SessionStore, ttl: float) -> tuple[str, Span]:
    session = await store.create({"n": 0}, ttl=None)
    _, span = await timed(store.touch(session.id, ttl=ttl))
    return session.id, span


PERIOD_SETTERS: dict[str, Callable[[SessionStore, float], Awaitable[tuple[str, Span]]]] = {
    "create(ttl=t)": _set_by_create,
    "save(ttl=t) of a permanent session": _set_by_save,
    "touch(ttl=t) of a permanent session": _set_by_touch,
}


async def _expires_on_time(store: SessionStore, how: str, ttl: float, clause_id: str) -> None:
    """Visible at once and at 3/4 of the period; invisible from ttl + 0.25 s after the write."""
    sid, write = await PERIOD_SETTERS[how](store, ttl)
    await look(store, sid, write, ttl, at=write.end, want=True, clause=clause_id, what=f"{how}, read at once")
    await look(store, sid, write, ttl, at=write.start + 0.75 * ttl, want=True, clause=clause_id,
               what=f"{how}, read at 3/4 of the period")
    await look(store, sid, write, ttl, at=dead_from(write, ttl), want=False, clause=clause_id,
               what=f"{how}, read after ttl + {GRACE:g} s")


@overlapped
@clause("TTL-1")
async def test_a_session_is_visible_for_its_period_and_gone_after_it(ctx: SuiteContext) -> None:
    """Sub-second periods set by create, save and touch are honoured as given, to within 0.25 s."""
    async def trial(ttl: float) -> None:
        await gather_all(*(_expires_on_time(ctx.store, how, ttl, "TTL-1") for how in PERIOD_SETTERS))

    await retrying("TTL-1", trial, TTL1_PERIOD)


# ---------------------------------------------------------------- TTL-2
SLIDING_WRITES: dict[str, Write] = {
    "save": lambda s, sid: s.save(sid, {"n": 1}),
    "apply": lambda s, sid: s.apply(sid, {"n": 1}),
    "append": lambda s, sid: s.append(sid, "log", [1]),
    "touch": lambda s, sid: s.touch(sid),
}


async def _write_slides(store: SessionStore, name: str, ttl: float) -> None:
    """Write late in the period; the session must outlive the create's deadline, then expire ttl after the write."""
    created, c = await timed(store.create({"n": 0}, ttl=ttl))
    await sleep_until(c.end + (GRACE + ttl) / 2)  # late enough that the old deadline is passed before the new one
    info, w = await write_while_live("TTL-2", f"{name} late in the period", SLIDING_WRITES[name](store, created.id),
                                     c, ttl)
    if isinstance(info, SessionInfo):
        check_stamps(info, w, clause="TTL-2", what=f"the SessionInfo {name} returned")
        if info.ttl != ttl:  # the write changed the period it should keep: TTL-3's rule, not the slide's
            raise ClauseViolation("TTL-3", f"could not check TTL-2: {name} (ttl=KEEP) reported ttl {info.ttl!r}, not "
                                  f"the session's {ttl:g}: KEEP keeps the period — see TTL-3", ("TTL-2",))
    await look(store, created.id, w, ttl, at=dead_from(c, ttl), want=True, clause="TTL-2",
               what=f"read past the create's deadline, {w.start - c.start:.2f} s after a {name}",
               hint=f"{name} must restart the period from its own instant (sliding expiry); a write that does not "
                    "refresh the expiry (e.g. RPUSH/HSET without PEXPIRE) causes this.")
    await look(store, created.id, w, ttl, at=dead_from(w, ttl), want=False, clause="TTL-2",
               what=f"read ttl + {GRACE:g} s after a {name}",
               hint=f"{name} must restart the same period, not make the session permanent (a plain SET drops the "
                    "key's TTL) or extend it further.")


async def _reads_do_not_slide(store: SessionStore, ttl: float, listing: bool) -> None:
    """Poll with get (and list/count) all through the period: the session still expires on time."""
    await owners_kept(store, "TTL-2", listing=listing)
    created, c = await timed(store.create({"n": 0}, owner="polled", ttl=ttl))
    step = ttl / 6
    at = c.end
    while at < dead_from(c, ttl):
        await look(store, created.id, c, ttl, at=at, want=None, clause="TTL-2", what="polled with get()")
        if listing:
            counted, read = await timed(store.count(owner="polled"))
            judge("TTL-2", "polled with count()", c, ttl, read, counted == 1, want=None)
            page, read = await timed(store.list(owner="polled"))
            judge("TTL-2", "polled with list()", c, ttl, read, any(i.id == created.id for i in page.items), want=None)
        at += step
    await look(store, created.id, c, ttl, at=dead_from(c, ttl), want=False, clause="TTL-2",
               what=f"read ttl + {GRACE:g} s after the create, having been polled every {step:.2f} s",
               hint="get, list and count must not extend the period: a read that refreshes the expiry keeps every "
                    "polled session alive forever.")


@overlapped
@clause("TTL-2")
async def test_every_write_restarts_the_period_and_reads_do_not(ctx: SuiteContext) -> None:
    """save, apply, append and touch slide the expiry; get, list and count leave it alone."""
    async def trial(ttl: float) -> None:
        await gather_all(*(_write_slides(ctx.store, name, ttl) for name in SLIDING_WRITES),
                         _reads_do_not_slide(ctx.store, ttl, ctx.claims("listing")))

    await retrying("TTL-2", trial, TTL2_PERIOD)


# ---------------------------------------------------------------- TTL-3
TtlStep = tuple[str, Callable[[SessionStore, str], Awaitable[SessionInfo]], float | None]
TTL_STEPS: tuple[TtlStep, ...] = (
    ("save(ttl=KEEP)", lambda s, sid: s.save(sid, {"n": 1}), 600.5),
    ("apply", lambda s, sid: s.apply(sid, {"n": 2}), 600.5),
    ("append", lambda s, sid: s.append(sid, "log", [1]), 600.5),
    ("touch(ttl=KEEP)", lambda s, sid: s.touch(sid), 600.5),
    ("touch(ttl=77.25)", lambda s, sid: s.touch(sid, ttl=77.25), 77.25),
    ("save(ttl=KEEP) after touch(ttl=77.25)", lambda s, sid: s.save(sid, {"n": 3}, ttl=KEEP), 77.25),
    ("save(ttl=1234)", lambda s, sid: s.save(sid, {"n": 4}, ttl=1234), 1234.0),
    ("save(ttl=None)", lambda s, sid: s.save(sid, {"n": 5}, ttl=None), None),
    ("save(ttl=KEEP) of a permanent session", lambda s, sid: s.save(sid, {"n": 6}), None),
    ("apply to a permanent session", lambda s, sid: s.apply(sid, {"n": 7}), None),
    ("touch(ttl=KEEP) of a permanent session", lambda s, sid: s.touch(sid), None),
    ("touch(ttl=2.5)", lambda s, sid: s.touch(sid, ttl=2.5), 2.5),
    ("append after touch(ttl=2.5)", lambda s, sid: s.append(sid, "log", [2]), 2.5),
    ("touch(ttl=None)", lambda s, sid: s.touch(sid, ttl=None), None),
    ("save(ttl=60)", lambda s, sid: s.save(sid, {"n": 8}, ttl=60), 60.0),
)


@clause("TTL-3")
async def test_keep_keeps_the_period_none_makes_permanent_and_a_number_sets_one(ctx: SuiteContext) -> None:
    """After each write, ``ttl`` is the period it should be and ``expires_at`` is updated_at + ttl."""
    store = ctx.store
    default, span = await timed(store.create({"n": 0}))
    check_stamps(default, span, clause="TTL-3", what="create(ttl=KEEP)")
    assert default.ttl is None or (isinstance(default.ttl, float) and default.ttl > 0), (
        f"TTL-3: create(ttl=KEEP) reported ttl {default.ttl!r}; KEEP on create is the store's default period, None "
        "or a positive float."
    )
    whole = await store.create({"n": 0}, ttl=5)
    assert whole.ttl == 5.0 and isinstance(whole.ttl, float), (
        f"TTL-3: create(ttl=5) reported ttl {whole.ttl!r}; SessionInfo.ttl is the period as given, as a float."
    )
    previous: SessionInfo = await store.create({"n": 0}, ttl=600.5)
    for what, step, want in TTL_STEPS:
        info, span = await timed(step(store, previous.id))
        assert info.ttl == want and (want is None or isinstance(info.ttl, float)), (
            f"TTL-3: after {what} the session reports ttl {info.ttl!r}, expected {want!r}: ttl=KEEP (and apply/"
            "append) keep the current period, None makes the session permanent, a number sets a new period. "
            "Reading KEEP as the default or as None changes which kind of session this is."
        )
        check_stamps(info, span, clause="TTL-3", what=f"after {what}")
        assert info.updated_at >= previous.updated_at, (
            f"TTL-3: {what} moved updated_at backwards ({previous.updated_at} -> {info.updated_at})."
        )
        got = await store.get(previous.id)
        seen = None if got is None else (got.ttl, got.expires_at, got.updated_at)
        if got is not None and got.ttl == info.ttl and got.updated_at < info.updated_at:
            raise ClauseViolation("TTL-2", f"TTL-2: {what} returned updated_at {info.updated_at}, but get() shows "
                                  f"{got.updated_at}: the write did not restart the stored period (every write "
                                  "slides the expiry)", ("TTL-3",))
        if await moved_by_reads(store, info, got):
            raise slid_by_reads("TTL-3", f"get() after {what}")
        assert seen == (info.ttl, info.expires_at, info.updated_at), (
            f"TTL-3: get() after {what} reports (ttl, expires_at, updated_at) = {seen}, but the write returned "
            f"{(info.ttl, info.expires_at, info.updated_at)}; the period is stored state, not a side effect."
        )
        previous = info


async def _changed_period(store: SessionStore, what: str, start: float | None, write: Write,
                          then: float | None, ttl: float) -> None:
    """Create with period ``start``, write (which should leave period ``then``), and watch it expire or not."""
    created, c = await timed(store.create({"n": 0}, ttl=start))
    _, w = await write_while_live("TTL-3", what, write(store, created.id), c, start or LONG)
    if then is not None:
        await look(store, created.id, w, then, at=w.start + 0.75 * then, want=True, clause="TTL-3",
                   what=f"{what}, read at 3/4 of the new period")
        await look(store, created.id, w, then, at=dead_from(w, then), want=False, clause="TTL-3",
                   what=f"{what}, read after the new period + {GRACE:g} s",
                   hint="The write must set (or keep) exactly this period: not the old one, not the store's "
                        "default, not None.")
        return
    await sleep_until(dead_from(w, ttl))
    got = await store.get(created.id)
    assert got is not None, (
        f"TTL-3: after {what} the session expired anyway, {time.monotonic() - c.start:.2f} s after the create; "
        "ttl=None must make it permanent (clear the backend's expiry too, e.g. PERSIST)."
    )


@overlapped
@clause("TTL-3")
async def test_a_changed_period_takes_effect(ctx: SuiteContext) -> None:
    """A new number shortens a long period, None outlives the old one, KEEP keeps the short one."""
    store = ctx.store

    async def trial(t: float) -> None:
        scenarios: list[tuple[str, float | None, Write, float | None]] = [
            ("touch(ttl=t) of a long session", LONG, lambda s, sid: s.touch(sid, ttl=t), t),
            ("save(ttl=t) of a long session", LONG, lambda s, sid: s.save(sid, {"n": 1}, ttl=t), t),
            ("save(ttl=KEEP) of a t session", t, lambda s, sid: s.save(sid, {"n": 1}), t),
            ("save(ttl=None) of a t session", t, lambda s, sid: s.save(sid, {"n": 1}, ttl=None), None),
            ("touch(ttl=None) of a t session", t, lambda s, sid: s.touch(sid, ttl=None), None),
        ]
        await gather_all(*(_changed_period(store, what, start, write, then, t)
                           for what, start, write, then in scenarios))

    await retrying("TTL-3", trial, TTL3_PERIOD)


# ---------------------------------------------------------------- TTL-4
EXPIRED_WRITES: dict[str, Write] = SLIDING_WRITES | {
    "save(ttl=None)": lambda s, sid: s.save(sid, {"n": 1}, ttl=None),
    "touch(ttl=60)": lambda s, sid: s.touch(sid, ttl=60),
}


async def _listed(store: SessionStore, owner: str | None) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await store.list(owner=owner, limit=7, cursor=cursor)
        ids += [info.id for info in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    return ids


@overlapped
@clause("TTL-4")
async def test_expired_sessions_are_invisible_to_every_operation(ctx: SuiteContext) -> None:
    """After expiry: get None, absent from list and count, writes raise SessionNotFound, delete is False."""
    store = ctx.store
    await owners_kept(store, "TTL-4")
    live = {s.id for s in [await store.create({"live": i}, owner="o", ttl=600) for i in range(2)]}
    made = [await timed(store.create({"dead": i}, owner="o", ttl=SHORT_TTL)) for i in range(len(EXPIRED_WRITES) + 2)]
    expired = [s.id for s, _ in made]
    await sleep_until(dead_from(Span.cover(span for _, span in made), SHORT_TTL))
    failures: list[str] = []
    if ctx.claims("listing"):
        for owner in (None, "o"):
            listed = await _listed(store, owner)
            shown = sorted(set(listed) & set(expired))
            if shown:
                failures.append(f"list(owner={owner!r}) still returns {len(shown)} expired sessions")
            counted = await store.count(owner=owner)
            if counted != len(live):
                failures.append(f"count(owner={owner!r}) = {counted}, but only {len(live)} sessions are live")
    # Each check has a control on an id that never existed: a store that gets that wrong too (an upsert, a
    # delete that always says True) breaks LC-3/LC-4, which say so; TTL-4 blames only what expiry changes.
    upserted: set[str] = set()
    for n, (sid, (name, write)) in enumerate(zip(expired, EXPIRED_WRITES.items(), strict=False)):
        try:
            result = await write(store, sid)
        except SessionNotFound:
            continue
        try:
            await write(store, f"ttl4-never-{n}")
            upserted.add(sid)  # brought back by an upsert, as a never-created id would be: LC-3's bug
        except SessionNotFound:
            failures.append(f"{name} of an expired session succeeded (returned {short(result, 50)})")
        except Exception:
            failures.append(f"{name} of an expired session succeeded (returned {short(result, 50)})")
    deleted = await store.delete(expired[-2])
    if deleted is not False and await store.delete("ttl4-never-deleted") is False:
        failures.append(f"delete of an expired session returned {deleted!r}, not False")
    for sid in sorted(set(expired) - upserted):
        got = await store.get(sid)
        if got is not None:
            failures.append(f"get({sid!r}) returns the expired session ({short(got.state)})")
    assert not failures, (
        "TTL-4: an expired session must be invisible to every operation, filtered on read even while the backend "
        "still holds its data (an index that still lists it, a lazy sweep):" + bullets(failures)
    )


# ---------------------------------------------------------------- TTL-5
def _kept(session: Session | None) -> tuple[object, ...] | None:
    """What purge must leave alone (timestamps are TTL-2's business: a sliding get would move them)."""
    if session is None:
        return None
    return (session.state, session.owner, session.version, session.ttl, session.created_at)


async def _purge_trial(ctx: SuiteContext, u: float, left: list[str]) -> None:
    """E sessions expire; S sessions were created as long ago as their period but slid by a touch; L never expire.

    purge_expired must remove only the E ones (0 <= removed <= E: some may already have been
    discarded by the backend's native expiry), keep S and L exactly, and count nothing twice.
    """
    store = ctx.store
    await _clear(store, left)
    e_ttl, s_ttl = 3 * u, 5 * u
    made_e = await asyncio.gather(*(timed(store.create({"e": i}, owner="p", ttl=e_ttl)) for i in range(5)))
    made_s = await asyncio.gather(*(timed(store.create({"s": i}, owner="p", ttl=s_ttl)) for i in range(2)))
    kept = [await store.create({"l": i}, owner="p", ttl=None if i % 2 else 600) for i in range(4)]
    left += [s.id for s, _ in [*made_e, *made_s]] + [s.id for s in kept]
    e_span, s_span = Span.cover(s for _, s in made_e), Span.cover(s for _, s in made_s)
    await sleep_until(s_span.end + 4 * u)
    touches = await asyncio.gather(*(write_while_live("TTL-5", "touch of a sliding session", store.touch(s.id),
                                                      span, s_ttl) for s, span in made_s))
    t_span = Span.cover(span for _, span in touches)
    survivors = {s.id: await store.get(s.id) for s in [*(s for s, _ in made_s), *kept]}
    await sleep_until(max(dead_from(e_span, e_ttl), s_span.end + s_ttl))  # past created_at + ttl of the slid ones
    purged, p_span = await timed(asyncio.gather(*(store.purge_expired() for _ in range(3))))
    after = {sid: await store.get(sid) for sid in survivors}
    counted = await store.count()
    again, r_span = await timed(store.purge_expired())
    within("TTL-5", "the purge and the checks after it", Span.cover([p_span, r_span]), t_span.start + s_ttl)
    expired_ids = [s.id for s, _ in made_e]
    assert all(isinstance(n, int) and n >= 0 for n in purged) and sum(purged) <= len(expired_ids), (
        f"TTL-5: three concurrent purge_expired() calls returned {purged}, but only {len(expired_ids)} sessions had "
        "expired: it must return how many expired sessions it removed (each counted once, also across concurrent "
        "calls), not how many it examined (if sessions kept alive by a touch were removed, see TTL-2)."
    )
    changed = [f"{sid!r}: {describe_change(want, after[sid])}" for sid, want in survivors.items()
               if _kept(want) != _kept(after[sid])]
    assert not changed, (
        "TTL-5: purge_expired() removed or changed live sessions; it must compute expiry as the last write "
        "(updated_at, touch included) plus each session's own period:" + bullets(changed)
    )
    if counted != len(survivors):  # the survivors read back intact: a wrong count is count()'s failure first
        raise ClauseViolation("LS-2", f"TTL-5 (or LS-2, if its own tests fail too): count() after the purge is "
                              f"{counted}, but {len(survivors)} sessions are live and read back intact.", ("TTL-5",))
    assert again == 0, f"TTL-5: a second purge_expired() right after the first returned {again}, expected 0."
    raw_ttl = ctx.target.raw_ttl
    if raw_ttl is not None:
        left = []
        for sid in expired_ids:
            try:
                left.append(f"{sid!r}: raw ttl {await raw_ttl(store, sid)!r}")
            except KeyError:
                pass
        assert not left, (
            "TTL-5: after purge_expired() the backend still holds records of expired sessions (read through the "
            "raw_ttl backdoor); purge must remove their data and index entries:" + bullets(left)
        )


async def _clear(store: SessionStore, ids: list[str]) -> None:
    """Before a retry: remove what an inconclusive trial left (its expired sessions would be purged and
    counted by the next trial, its live ones counted)."""
    if ids:
        await asyncio.gather(*(store.delete(sid) for sid in ids))
        await store.purge_expired()
        ids.clear()


@overlapped
@clause("TTL-5")
async def test_purge_expired_removes_only_expired_sessions_and_counts_them(ctx: SuiteContext) -> None:
    """Including sessions kept alive by a write after their creation period had run out."""
    left: list[str] = []
    await retrying("TTL-5", lambda u: _purge_trial(ctx, u, left), PURGE_UNIT)


# ---------------------------------------------------------------- HY-2
_UTC_NAMES = frozenset({
    "UTC", "ETC/UTC", "UCT", "ETC/UCT", "GMT", "ETC/GMT", "GMT0", "ETC/GMT0", "GMT+0", "GMT-0", "ETC/GMT+0",
    "ETC/GMT-0", "UNIVERSAL", "ETC/UNIVERSAL", "ZULU", "ETC/ZULU", "Z", "+00", "+00:00", "00:00", "UTC0",
})


def _offset_hours(zone: str) -> float | None:
    try:
        offset = datetime.now(ZoneInfo(zone)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return None if offset is None else offset.total_seconds() / 3600


@overlapped
@clause("HY-2")
async def test_expiry_and_timestamps_hold_when_the_database_zone_differs(ctx: SuiteContext) -> None:
    """With the server's time zone far from UTC and from the client's, expiry and timestamps stay right."""
    hook = ctx.target.db_timezone
    if hook is None:
        pytest.skip(f"{NOT_APPLICABLE}: the target does not report its database server's time zone (no "
                    "db_timezone hook), so the suite cannot check a server running in another zone")
    zone = (await hook(ctx.store)).strip()
    # A zone that cannot tell a mixed-up store from a right one leaves the clause not checked, never failed:
    # the store is not at fault, the setup is (and "not checked" still keeps it out of a level).
    if zone.upper() in _UTC_NAMES:
        pytest.skip(f"{NOT_APPLICABLE}: the database server's time zone is {zone!r}, i.e. UTC, where a store that "
                    "mixes up zones still looks right; run the server (or the store's connections: SET TimeZone) in "
                    "a zone far from UTC, as the built-in postgres target does (Pacific/Kiritimati)")
    local = datetime.now().astimezone().utcoffset()
    server = _offset_hours(zone)
    if server is not None and local is not None and server == local.total_seconds() / 3600:
        pytest.skip(f"{NOT_APPLICABLE}: the database zone {zone!r} has the same offset as this process's local "
                    "zone, where a store that mixes the two still looks right; run the server (or this process) in "
                    "a different zone")
    store = ctx.store

    async def trial(ttl: float) -> None:
        long, span = await timed(store.create({"long": True}, ttl=LONG))
        check_stamps(long, span, clause="HY-2", what=f"create(ttl={LONG:g}) with the database in {zone}")
        await gather_all(*(_expires_on_time(store, how, ttl, "HY-2") for how in PERIOD_SETTERS))
        got = await store.get(long.id)
        assert got == long, (
            f"HY-2: a session with a {LONG:g} s period, with the database in {zone}, did not survive unchanged "
            f"for a few seconds: {describe_change(long, got)}. Expiry must use one UTC clock."
        )
        if ctx.claims("listing"):
            listed = await _listed(store, None)
            assert long.id in listed and await store.count() == len(listed), (
                f"HY-2: with the database in {zone}, list()/count() disagree about which sessions are live "
                f"(listed {len(listed)})."
            )
        await store.delete(long.id)

    await retrying("HY-2", trial, HY2_PERIOD)

