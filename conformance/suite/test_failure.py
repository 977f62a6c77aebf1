"""FL-1..FL-4 and HY-3: outages fail fast and loudly, recovery needs no restart, cancellation never half-writes.

FL-1..FL-3 stop and start the real backend (the target's ``stop_backend``/``start_backend``
hooks) and are *not applicable* to an embedded store. FL-4 cancels writes at many points,
by ``Task.cancel()`` after a varying number of event-loop steps and by tiny ``wait_for``
timeouts, on every target. HY-3 reads the backend's own expiry through the ``raw_ttl``
backdoor after such cancellations: a key written without its expiry lives forever.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sessionspec.conformance import faultproxy
from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import (
    DELETE,
    BackendUnavailable,
    Session,
    SessionInfo,
    SessionStore,
)
from sessionspec.conformance.results import NOT_APPLICABLE, ClauseViolation

from ._overlap import overlapped
from ._timing import Span, Stopwatch
from ._values import bullets, describe_change, disturbed, reads_slide, short, slid_by_reads, unless_reads_slide

FL_BOUND = 5.0
"""FL-1: the default bound within which every operation must give up with BackendUnavailable."""
FL_SLACK = 1.0
"""Measurement allowance on top of FL_BOUND (ten concurrent calls, a busy machine)."""
HANG_LIMIT = 30.0
"""Past this an operation is reported as hung (and abandoned) rather than slow."""
RECOVERY_LIMIT = 15.0
"""FL-2: after the backend is back, the same store instance must serve every operation within this."""
CANCEL_POINTS = 20
TINY_TIMEOUTS = (0.0, 1e-5, 1e-4, 5e-4, 1e-3, 3e-3, 1e-2)

Call = Callable[[], Awaitable[object]]


# ---------------------------------------------------------------- outages (FL-1..FL-3)
def _operations(store: SessionStore, sid: str, listing: bool) -> dict[str, Call]:
    """One call of every operation, aimed at the live session ``sid``."""
    ops: dict[str, Call] = {
        "create()": lambda: store.create({"n": 1}),
        "create(id=...)": lambda: store.create({"n": 1}, id="fl-new"),
        "get()": lambda: store.get(sid),
        "get() of a missing id": lambda: store.get("fl-missing"),
        "save()": lambda: store.save(sid, {"n": 2}),
        "apply()": lambda: store.apply(sid, {"n": 3}),
        "append()": lambda: store.append(sid, "log", [1]),
        "touch()": lambda: store.touch(sid),
        "delete()": lambda: store.delete(sid),
    }
    if listing:
        ops |= {
            "list()": lambda: store.list(),
            "count()": lambda: store.count(),
            "purge_expired()": lambda: store.purge_expired(),
        }
    return ops


@dataclass(slots=True)
class Outcome:
    result: object
    error: BaseException | None
    span: Span
    hung: bool


async def _outcome(call: Call) -> Outcome:
    """Run one call to its end (or HANG_LIMIT), measuring it; never raises."""
    sw = Stopwatch()
    limit = asyncio.timeout(HANG_LIMIT)
    result: object = None
    error: BaseException | None = None
    try:
        with sw:
            async with limit:
                result = await call()
    except Exception as exc:
        error = exc
    return Outcome(result, error, sw.span, limit.expired())


def _outage_failure(name: str, outcome: Outcome) -> str | None:
    if outcome.hung:
        return f"{name}: no answer within {HANG_LIMIT:g} s (it hangs instead of timing out)"
    if outcome.error is None:
        return f"{name}: returned {short(outcome.result, 60)} with the backend down (a silent fallback?)"
    if not isinstance(outcome.error, BackendUnavailable):
        return f"{name}: raised {type(outcome.error).__name__}: {short(str(outcome.error), 70)}"
    if outcome.span.seconds > FL_BOUND + FL_SLACK:
        return f"{name}: BackendUnavailable only after {outcome.span.seconds:.1f} s"
    return None


@clause("FL-1")
async def test_every_operation_raises_backend_unavailable_quickly_when_the_backend_is_down(ctx: SuiteContext) -> None:
    """No silent fallback, no None from get, no driver exception, no hang: BackendUnavailable within 5 s."""
    ctx.require_backend_control()
    store = ctx.store
    session = await store.create({"n": 0}, ttl=600)
    await ctx.stop_backend()
    ops = _operations(store, session.id, ctx.claims("listing"))
    outcomes = await asyncio.gather(*(_outcome(call) for call in ops.values()))
    ctx.attach("FL-1 seconds per operation", {name: round(o.span.seconds, 3) for name, o in zip(ops, outcomes,
                                                                                                strict=True)})
    failures = [f for name, o in zip(ops, outcomes, strict=True) if (f := _outage_failure(name, o))]
    assert not failures, (
        f"FL-1: with the backend unreachable every operation must raise BackendUnavailable within {FL_BOUND:g} s; "
        "never answer from a fallback (a per-process dict differs on every server), never report a session as "
        "absent, never leak a driver exception:" + bullets(failures)
    )


@overlapped  # five seconds of waiting on its own proxy, which no other test's store goes through
@clause("FL-1")
async def test_every_operation_raises_backend_unavailable_quickly_when_the_backend_stalls(ctx: SuiteContext) -> None:
    """Black-holed (connections held, no byte answered: a partition, a paused VM): BackendUnavailable within 5 s,
    not a hang. A client with no socket timeout and no deadline passes the refused-connection test above and
    hangs here."""
    store, proxy = await ctx.proxied_store()
    session = await store.create({"n": 0}, ttl=600)
    await asyncio.to_thread(proxy.set_mode, "stall")
    try:
        ops = _operations(store, session.id, ctx.claims("listing"))
        outcomes = await asyncio.gather(*(_outcome(call) for call in ops.values()))
    finally:
        await asyncio.to_thread(proxy.set_mode, "pass")
    ctx.attach("FL-1 (stalled) seconds per operation",
               {name: round(o.span.seconds, 3) for name, o in zip(ops, outcomes, strict=True)})
    failures = [f for name, o in zip(ops, outcomes, strict=True) if (f := _outage_failure(name, o))]
    assert not failures, (
        f"FL-1: with the backend stalled (connections accepted, nothing answered) every operation must raise "
        f"BackendUnavailable within {FL_BOUND:g} s: bound every call with a deadline (a socket timeout or "
        "asyncio.timeout around the whole call, the pool's acquire and release included):" + bullets(failures)
    )


async def _eventually(what: str, call: Call, deadline: float) -> Any:
    """Retry ``call`` while it raises BackendUnavailable (reconnection), with short backoff, until ``deadline``."""
    pause = 0.02
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + 1.0):
                return await call()
        except BackendUnavailable:
            if time.monotonic() >= deadline:
                pytest.fail(f"FL-2: {what} still raised BackendUnavailable {RECOVERY_LIMIT:g} s after the backend "
                            "came back; the same store instance must reconnect by itself (a connection pool that "
                            "drops dead connections, not one connection for the store's lifetime).", pytrace=False)
        except TimeoutError:
            pytest.fail(f"FL-2: {what} hung after the backend came back.", pytrace=False)
        await asyncio.sleep(pause)  # polling a recovering backend, not synchronising with anything
        pause = min(pause * 2, 0.5)


@clause("FL-2")
async def test_the_same_store_instance_works_again_after_the_backend_returns(ctx: SuiteContext) -> None:
    """After an outage the store reconnects by itself and serves every operation correctly."""
    ctx.require_backend_control()
    store = ctx.store
    session = await store.create({"n": 0}, owner="fl2", ttl=600)
    await ctx.stop_backend()
    await asyncio.gather(*(_outcome(call) for call in _operations(store, session.id, False).values()))
    await ctx.start_backend()
    started = time.monotonic()
    deadline = started + RECOVERY_LIMIT
    got = await _eventually("get()", lambda: store.get(session.id), deadline)
    ctx.attach("FL-2 seconds to first success", round(time.monotonic() - started, 3))
    if ctx.claims("durable"):
        await unless_reads_slide(store, "FL-2", "the session written before the outage", session, got)
        assert got == session, (
            f"FL-2: the session written before the outage changed (the store claims durable): "
            f"{describe_change(session, got)}"
        )
    fresh: Session = await _eventually("create()", lambda: store.create({"n": 0}, owner="fl2", ttl=600), deadline)
    steps: list[tuple[str, Call]] = [
        ("save()", lambda: store.save(fresh.id, {"n": 1})),
        ("apply()", lambda: store.apply(fresh.id, {"m": 2})),
        ("append()", lambda: store.append(fresh.id, "log", [3])),
        ("touch()", lambda: store.touch(fresh.id)),
    ]
    if ctx.claims("listing"):
        steps += [("list()", lambda: store.list(owner="fl2")), ("count()", lambda: store.count(owner="fl2")),
                  ("purge_expired()", lambda: store.purge_expired())]
    for what, call in steps:
        await _eventually(what, call, deadline)
    reads = await asyncio.gather(*(_eventually("get() (one of 20 concurrent)", lambda: store.get(fresh.id), deadline)
                                   for _ in range(20)))
    wrong = [short(r) for r in reads if r is None or r.state != {"n": 1, "m": 2, "log": [3]}]
    assert not wrong, (
        "FL-2: after the backend came back, concurrent get() calls on the same instance returned wrong results "
        f"(a reply delivered to the wrong caller, or stale data): {wrong[:3]}"
    )
    assert await _eventually("delete()", lambda: store.delete(fresh.id), deadline) is True, (
        "FL-2: delete() of a live session returned False after the backend came back."
    )


@clause("FL-3")
async def test_live_sessions_survive_a_backend_restart(ctx: SuiteContext) -> None:
    """State, owner, ttl, version and timestamps intact; a deleted session stays deleted."""
    ctx.require_backend_control()
    store = ctx.store
    permanent = await store.create({"a": 1, "nested": {"l": [1, 2.5, None]}}, owner="alice", ttl=None)
    written = await store.create({"b": 1}, ttl=3600)
    await store.save(written.id, {"b": 2})
    await store.append(written.id, "log", [1, 2])
    await store.apply(written.id, {"c": True})
    touched = await store.create({}, id="fl3-touched", ttl=1800)
    await store.touch(touched.id, ttl=900)
    gone = await store.create({"gone": 1})
    await store.delete(gone.id)
    before: dict[str, Session | None] = {sid: await store.get(sid) for sid in (permanent.id, written.id, touched.id)}
    before[gone.id] = None
    flips = faultproxy.switches()
    await ctx.stop_backend()
    await ctx.start_backend()
    if faultproxy.switches() != flips:
        pytest.skip(f"{NOT_APPLICABLE}: stop_backend/start_backend only flipped a fault proxy, so the data never "
                    "left the running server; FL-3 (durability) needs hooks that stop and restart the real server")
    await _eventually("get()", lambda: store.get(permanent.id), time.monotonic() + RECOVERY_LIMIT)
    changed = await disturbed(store, before, "FL-3")
    assert not changed, (
        "FL-3: a store that claims `durable` must bring back every live session exactly (state, owner, ttl, "
        "version, timestamps; expiry continuing from the last write) and keep deleted ones deleted after a "
        "backend restart (a cache-configured Redis or an UNLOGGED table loses them):" + bullets(changed)
    )


# ---------------------------------------------------------------- cancellation (FL-4, HY-3)
@dataclass(slots=True)
class Interrupted:
    """How a call ended after we tried to cancel it."""

    result: object = None
    completed: bool = False
    """It returned normally (it finished before the cancellation reached it)."""
    error: BaseException | None = None
    """It raised something other than CancelledError/TimeoutError."""
    swallowed: bool = False
    """Cancellation was requested while it ran, yet it returned normally."""


async def _cancel_after_steps(steps: int, call: Call) -> Interrupted:
    task = asyncio.ensure_future(call())
    for _ in range(steps):
        await asyncio.sleep(0)  # one event-loop step: the cancellation point, deterministically
    requested = task.cancel()
    try:
        result = await task
    except asyncio.CancelledError:
        if task.cancelled():
            return Interrupted()
        raise
    except Exception as exc:
        return Interrupted(error=exc)
    return Interrupted(result=result, completed=True, swallowed=requested)


async def _cancel_by_timeout(seconds: float, call: Call) -> Interrupted:
    try:
        result = await asyncio.wait_for(call(), seconds)
    except TimeoutError:
        return Interrupted()
    except Exception as exc:
        return Interrupted(error=exc)
    return Interrupted(result=result, completed=True)


CANCELLATIONS: dict[str, Callable[[Call], Awaitable[Interrupted]]] = {
    **{f"cancelled after {k} loop steps": functools.partial(_cancel_after_steps, k) for k in range(CANCEL_POINTS)},
    **{f"wait_for(timeout={t:g})": functools.partial(_cancel_by_timeout, t) for t in TINY_TIMEOUTS},
}


@dataclass(frozen=True, slots=True)
class Cancellable:
    """A write to cancel: the state before and after it, and what else it changes."""

    call: Callable[[SessionStore, str], Awaitable[object]]
    old: dict[str, Any] | None
    """None: the write is a create of a new id."""
    new: dict[str, Any]
    new_ttl: float | None = 600.0
    bumps: bool = True
    writes: bool = True
    """False for a read: finishing it changes nothing."""


CANCELLABLE: dict[str, Cancellable] = {
    "save": Cancellable(lambda s, sid: s.save(sid, {"a": 1, "b": 1}), {"a": 0, "b": 0}, {"a": 1, "b": 1}),
    "save(ttl=30)": Cancellable(lambda s, sid: s.save(sid, {"a": 1, "b": 1}, ttl=30), {"a": 0, "b": 0},
                                {"a": 1, "b": 1}, new_ttl=30.0),
    "apply": Cancellable(lambda s, sid: s.apply(sid, {"a": 1, "b": 1}), {"a": 0, "b": 0, "c": 0},
                         {"a": 1, "b": 1, "c": 0}),
    "apply with DELETE": Cancellable(lambda s, sid: s.apply(sid, {"a": 1, "b": DELETE}), {"a": 0, "b": 0}, {"a": 1}),
    "append": Cancellable(lambda s, sid: s.append(sid, "log", [1, 2, 3]), {"log": [0]}, {"log": [0, 1, 2, 3]}),
    "touch(ttl=30)": Cancellable(lambda s, sid: s.touch(sid, ttl=30), {"a": 0}, {"a": 0}, new_ttl=30.0, bumps=False),
    "create": Cancellable(lambda s, sid: s.create({"a": 1, "b": 1}, id=sid, owner="o", ttl=600), None,
                          {"a": 1, "b": 1}),
    "get": Cancellable(lambda s, sid: s.get(sid), {"a": 0}, {"a": 0}, bumps=False, writes=False),
}


def _whole(spec: Cancellable, before: Session | None, after: Session | None, ended: Interrupted) -> str | None:
    """None if ``after`` is exactly the session before the write or exactly the session after it."""
    if ended.error is not None:
        return f"raised {type(ended.error).__name__}: {short(str(ended.error), 60)} (CancelledError must propagate)"
    if ended.swallowed:
        return "returned normally although it was cancelled mid-flight (CancelledError must propagate)"
    unchanged = after == before
    written = after is not None and after.state == spec.new and after.ttl == spec.new_ttl and (
        before is None or (after.version > before.version if spec.bumps else after.version == before.version))
    if before is None and written:
        written = after is not None and after.owner == "o"
    if ended.completed and spec.writes and not written:
        if after is None:
            return f"returned normally, yet the session is gone (wanted state {spec.new})"
        return (f"returned normally, yet the stored session has state {short(after.state)}, owner {after.owner!r}, "
                f"ttl {after.ttl}, version {after.version} (wanted state {spec.new}"
                + (", owner 'o'" if before is None else "") + f", ttl {spec.new_ttl}, "
                + ("a higher version)" if spec.bumps else "the same version)"))
    if ended.completed and isinstance(ended.result, SessionInfo) and after is not None \
            and ended.result.version != after.version:
        return f"returned version {ended.result.version}, but the stored session has version {after.version}"
    if unchanged or written:
        return None
    return (f"left a half-applied session: {describe_change(before, after)} (expected either exactly the old "
            f"session or state {spec.new} with ttl {spec.new_ttl} and a {'higher' if spec.bumps else 'same'} version)")


PLAIN_CLAUSES: dict[str, tuple[str, ...]] = {
    "save": ("LC-1", "ST-1", "TTL-3", "VER-1"), "save(ttl=30)": ("TTL-3", "LC-1", "VER-1"),
    "apply": ("MG-1", "VER-1"), "apply with DELETE": ("MG-1", "VER-1"), "append": ("MG-5", "VER-1"),
    "touch(ttl=30)": ("VER-1", "TTL-3"), "create": ("LC-1", "TTL-3"), "get": ("LC-1", "ST-3"),
}
"""The clauses an operation breaks when it is already wrong without any cancellation (FL-4 then checks nothing)."""


async def _uncancelled(store: SessionStore, name: str, spec: Cancellable) -> None:
    """FL-4's premise: uninterrupted, the call gives exactly the new session. If not, blame the plain clause."""
    sid = f"fl4-plain-{name.split('(')[0].replace(' ', '-')}"
    before = None if spec.old is None else await store.create(copy.deepcopy(spec.old), id=sid, ttl=600)
    result: object = None
    error: Exception | None = None
    try:
        result = await spec.call(store, sid)
    except Exception as exc:
        error = exc
    after = await store.get(sid)
    problem = _whole(spec, before, after, Interrupted(result=result, completed=error is None, error=error))
    if problem:
        blamed = PLAIN_CLAUSES[name]
        raise ClauseViolation(blamed[0], f"could not check FL-4 on {name}: without any cancellation it already "
                              f"{problem} — see {' / '.join(blamed)}", blamed[1:])


async def _cancelled_writes(store: SessionStore, name: str, spec: Cancellable) -> list[str]:
    await _uncancelled(store, name, spec)
    failures: list[str] = []
    for n, (how, cancel) in enumerate(CANCELLATIONS.items()):
        sid = f"fl4-{name.split('(')[0].replace(' ', '-')}-{n}"
        before = None if spec.old is None else await store.create(copy.deepcopy(spec.old), id=sid, ttl=600)
        ended = await cancel(lambda: spec.call(store, sid))  # noqa: B023 - awaited right here
        after = await store.get(sid)
        problem = _whole(spec, before, after, ended)
        if problem and await reads_slide(store, before, after):
            raise slid_by_reads("FL-4", f"{name} {how}: the session re-read after the cancellation")
        if problem:
            failures.append(f"{name} {how}: {problem}")
    return failures


async def _still_serves(store: SessionStore) -> list[str]:
    """Many concurrent calls on the same instance, each checked for its own answer (no crossed replies)."""
    ids = [f"fl4-after-{i}" for i in range(20)]
    for i, sid in enumerate(ids):
        await store.create({"me": i}, id=sid, ttl=600)
    applied = await asyncio.gather(*(store.apply(sid, {"n": i}) for i, sid in enumerate(ids)))
    reads = await asyncio.gather(*(store.get(sid) for sid in ids for _ in range(3)))
    wrong = [f"apply({s.id!r}) returned {short(s.state)}" for i, s in enumerate(applied)
             if s.state != {"me": i, "n": i} or s.id != ids[i]]
    wrong += [f"get({ids[j // 3]!r}) returned {short(r)}" for j, r in enumerate(reads)
              if r is None or r.id != ids[j // 3] or r.state != {"me": j // 3, "n": j // 3}]
    return wrong


@clause("FL-4")
@pytest.mark.parametrize("name", list(CANCELLABLE))
async def test_a_cancelled_operation_leaves_all_or_nothing_and_the_store_working(ctx: SuiteContext,
                                                                                name: str) -> None:
    """Cancelled after 0..19 loop steps and by tiny wait_for timeouts: the old session or the new, never a mix."""
    failures = await _cancelled_writes(ctx.store, name, CANCELLABLE[name])
    assert not failures, (
        "FL-4: an operation cancelled mid-flight (Task.cancel(), a client timeout) must leave the session either "
        "fully written or unchanged, with the version to match, and let CancelledError through:" + bullets(failures)
    )
    wrong = await _still_serves(ctx.store)
    assert not wrong, (
        f"FL-4: after cancelled {name} calls the same store instance gives wrong answers (a poisoned connection "
        "delivering a stale reply to the next caller, redis/redis-py#2624):" + bullets(wrong)
    )


# ---------------------------------------------------------------- HY-3
RawTtl = Callable[[SessionStore, str], Awaitable[float | None]]


async def _raw(raw_ttl: RawTtl, store: SessionStore, sid: str) -> float | str | None:
    try:
        return await raw_ttl(store, sid)
    except KeyError:
        return "absent"


def _in_period(value: float | str | None, period: float) -> bool:
    return isinstance(value, float | int) and 0 < value <= period + 0.001


FOREVER_ENOUGH = 10 * 365 * 24 * 3600.0
"""HY-3 forbids data that should expire but has no expiry. A permanent (ttl=None) session may still carry a
backend expiry, if it is this far away: some stores can only write with one (a 100-year EXPIRE)."""


def _permanent_enough(value: float | str | None) -> bool:
    return value is None or (isinstance(value, float | int) and value >= FOREVER_ENOUGH)


EXPIRING_WRITES: tuple[tuple[str, Callable[[SessionStore, str], Awaitable[object]], float | None], ...] = (
    ("create(ttl=60)", lambda s, sid: s.create({"n": 0}, id=sid, ttl=60), 60.0),
    ("save(ttl=KEEP)", lambda s, sid: s.save(sid, {"n": 1}), 60.0),
    ("apply", lambda s, sid: s.apply(sid, {"m": 1}), 60.0),
    ("append", lambda s, sid: s.append(sid, "log", [1]), 60.0),
    ("touch(ttl=KEEP)", lambda s, sid: s.touch(sid), 60.0),
    ("touch(ttl=30)", lambda s, sid: s.touch(sid, ttl=30), 30.0),
    ("save(ttl=None)", lambda s, sid: s.save(sid, {"n": 2}, ttl=None), None),
    ("save(ttl=KEEP) of a permanent session", lambda s, sid: s.save(sid, {"n": 3}), None),
    ("touch(ttl=45)", lambda s, sid: s.touch(sid, ttl=45), 45.0),
    ("apply after touch(ttl=45)", lambda s, sid: s.apply(sid, {"m": 2}), 45.0),
)

@dataclass(frozen=True, slots=True)
class ExpiringWrite:
    """A write that leaves an expiring session when it lands; ``landed`` tells from the session whether it did."""

    call: Callable[[SessionStore, str], Awaitable[object]]
    old: dict[str, Any] | None
    old_ttl: float | None
    landed: Callable[[Session], bool]


CANCELLED_EXPIRING: dict[str, ExpiringWrite] = {
    "create(ttl=60)": ExpiringWrite(lambda s, sid: s.create({"n": 1}, id=sid, ttl=60), None, None, lambda g: True),
    "save(ttl=KEEP) of a 60 s session": ExpiringWrite(lambda s, sid: s.save(sid, {"n": 1}), {"n": 0}, 60,
                                                      lambda g: True),
    "save(ttl=45) of a permanent session": ExpiringWrite(lambda s, sid: s.save(sid, {"n": 1}, ttl=45), {"n": 0},
                                                         None, lambda g: g.state == {"n": 1}),
    "touch(ttl=30) of a permanent session": ExpiringWrite(lambda s, sid: s.touch(sid, ttl=30), {"n": 0}, None,
                                                          lambda g: g.ttl is not None),
    "apply to a 60 s session": ExpiringWrite(lambda s, sid: s.apply(sid, {"n": 1}), {"n": 0}, 60, lambda g: True),
    "append to a 60 s session": ExpiringWrite(lambda s, sid: s.append(sid, "log", [1]), {"n": 0}, 60,
                                              lambda g: True),
}


def _missing_expiry(spec: ExpiringWrite, got: Session | None, seen: float | str | None) -> bool:
    """A stored record that should expire (it was expiring before, or the write landed) but has no expiry."""
    if seen is not None and not (isinstance(seen, float | int) and seen >= FOREVER_ENOUGH):
        return False  # absent, or it has a real expiry
    return spec.old_ttl is not None or got is None or spec.landed(got)


@clause("HY-3")
async def test_data_and_its_expiry_are_written_in_one_step(ctx: SuiteContext) -> None:
    """The backend's own TTL matches every write, and no cancelled write leaves an expiring session without one."""
    raw_ttl = ctx.target.raw_ttl
    if raw_ttl is None:
        pytest.skip(f"{NOT_APPLICABLE}: the target offers no raw_ttl backdoor to read the backend's own expiry")
    store = ctx.store
    failures: list[str] = []
    for what, write, period in EXPIRING_WRITES:
        await write(store, "hy3")
        seen = await _raw(raw_ttl, store, "hy3")
        if (period is None and not _permanent_enough(seen)) or (period is not None and not _in_period(seen, period)):
            failures.append(f"after {what} the backend's TTL is {seen!r}, expected "
                            f"{'none (or at least 10 years)' if period is None else f'0 < ttl <= {period:g}'}")
    for i, (name, spec) in enumerate(CANCELLED_EXPIRING.items()):
        for n, (how, cancel) in enumerate(CANCELLATIONS.items()):
            sid = f"hy3-{i}-{n}"
            if spec.old is not None:
                await store.create(copy.deepcopy(spec.old), id=sid, ttl=spec.old_ttl)
            await cancel(lambda: spec.call(store, sid))  # noqa: B023 - awaited right here
            got = await store.get(sid)
            seen = await _raw(raw_ttl, store, sid)
            if _missing_expiry(spec, got, seen):
                failures.append(f"{name} {how}: the stored session ({short(got, 70)}) has no expiry in the backend")
    assert not failures, (
        "HY-3: a session's data and its expiry must be written in one atomic step (one SET with PX, one "
        "script/transaction, one UPDATE): never data first and the expiry in a second command, which a "
        "cancellation or crash between the two leaves living forever:" + bullets(failures)
    )
