"""A correct but slow store passes the manager's expiry clauses: slowness is not a failure.

Found on the Agents SDK SQLite adapter (calls of ~0.1 s on a loaded machine): MG-10 slept
to half of a 0.3 s absolute lifetime and then needed five calls to finish before it ended,
and MG-11 needed six creates, six reads and a delete inside a 0.3 s idle timeout; a slow
store saw its session end on time and was failed for it. Both now measure: a call that may
have run after the period ended makes the trial inconclusive and it is retried with a longer
period (``_timing.retrying``), as the TTL clauses already did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from sessionspec.conformance.runner import run_suite
from sessionspec.reference import MemoryStore

LATENCY = 0.07
"""Per call: with the suite's 0.3 s periods, five calls no longer fit in half of one."""


class SlowStore(MemoryStore):
    """MemoryStore whose every call takes LATENCY longer: a framework store on a busy machine."""


def _delay_each(cls: type[MemoryStore], names: tuple[str, ...], delay: Callable[[Any, tuple[Any, ...]], float]) -> None:
    """Make each named call of ``cls`` wait ``delay(self, args)`` seconds before MemoryStore's own answers it."""
    for name in names:
        def wrap(name: str, fast: Any) -> Any:
            async def call(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(delay(self, args))  # latency, not synchronisation: the result does not depend on it
                return await fast(self, *args, **kwargs)

            call.__name__ = name
            return call

        setattr(cls, name, wrap(name, getattr(MemoryStore, name)))


_delay_each(SlowStore, ("create", "get", "save", "apply", "append", "touch", "delete"), lambda self, args: LATENCY)


def factory(namespace: str) -> SlowStore:
    """MemoryStore with 70 ms per call."""
    return SlowStore()


def test_a_slow_store_passes_the_absolute_lifetime_and_expiry_callback_clauses() -> None:
    result = run_suite("tests.test_adapter_slow_store:factory", clauses=["MG-10", "MG-11"])
    verdicts = {c.clause.id: (c.verdict, c.reason) for c in result.clauses if c.clause.id in ("MG-10", "MG-11")}
    assert verdicts == {"MG-10": ("pass", ""), "MG-11": ("pass", "")}, verdicts


def test_an_expiry_check_that_never_decides_is_not_checked_never_failed() -> None:
    """Spec §6: a sample that decides nothing is never counted. Three inconclusive trials (each
    period 4x the last) end in a skip, which the report shows as "not checked", not a failure."""
    from sessionspec.conformance.suite._timing import RETRY_FACTOR, TRIALS, Inconclusive, retrying

    periods: list[float] = []

    async def trial(ttl: float) -> None:
        periods.append(ttl)
        raise Inconclusive(f"TTL-1: a read took longer than {ttl:g} s")

    with pytest.raises(pytest.skip.Exception, match="not checked: TTL-1: the timing was inconclusive 3 times"):
        asyncio.run(retrying("TTL-1", trial, 0.4))
    assert periods == [0.4 * RETRY_FACTOR**i for i in range(TRIALS)]

    async def decides_late(ttl: float) -> None:  # conclusive on the third trial: that verdict stands
        periods.append(ttl)
        if len(periods) < TRIALS:
            raise Inconclusive("slow")

    periods.clear()
    asyncio.run(retrying("TTL-1", decides_late, 0.4))
    assert len(periods) == TRIALS


class QueuedStore(MemoryStore):
    """MemoryStore behind one lock with 2 ms per call: 1000 concurrent tasks take ~15 s, answering all along."""

    def __init__(self) -> None:
        super().__init__()
        self._one_at_a_time = asyncio.Lock()


class HungStore(MemoryStore):
    """Every create answers; after that, no call ever does."""


for _name in ("get", "save", "apply", "append", "touch", "delete"):
    def _queued(name: str) -> Any:
        fast = getattr(MemoryStore, name)

        async def call(self: QueuedStore, *args: Any, **kwargs: Any) -> Any:
            async with self._one_at_a_time:
                await asyncio.sleep(0.002)  # service time, not synchronisation
                return await fast(self, *args, **kwargs)

        call.__name__ = name
        return call

    def _hangs(name: str) -> Any:
        async def call(self: HungStore, *args: Any, **kwargs: Any) -> Any:
            await asyncio.Event().wait()  # never set: the hang under test

        call.__name__ = name
        return call

    setattr(QueuedStore, _name, _queued(_name))
    setattr(HungStore, _name, _hangs(_name))


def queued(namespace: str) -> QueuedStore:
    """MemoryStore serving one call at a time, 2 ms each."""
    return QueuedStore()


def hung(namespace: str) -> HungStore:
    """MemoryStore that stops answering after its creates."""
    return HungStore()


def assert_slow_is_not_checked_and_silent_hung(keyword: str, clause_id: str) -> None:
    """Out of time at 3 s: on the queued store (still answering) the clause is not checked; on the hung one it fails."""
    slow = run_suite("tests.test_adapter_slow_store:queued", keyword=keyword, timeout=3.0)
    (verdict,) = [c for c in slow.clauses if c.clause.id == clause_id]
    assert verdict.verdict == "skip" and "still answering" in verdict.reason, (verdict.verdict, verdict.reason)
    silent = run_suite("tests.test_adapter_slow_store:hung", keyword=keyword, timeout=3.0)
    (verdict,) = [c for c in silent.clauses if c.clause.id == clause_id]
    assert verdict.verdict == "fail" and "the store hung" in verdict.reason, (verdict.verdict, verdict.reason)


def test_a_store_still_answering_at_the_time_limit_is_not_checked_and_a_silent_one_hung() -> None:
    """The per-test limit decides nothing about a clause when the store was still answering
    (an ORM-backed store under 1000 tasks); a store that stopped answering fails it as hung."""
    assert_slow_is_not_checked_and_silent_hung("mixed_concurrent_traffic and one", "CC-5")


def test_the_same_holds_for_a_test_run_in_the_background() -> None:
    """CC-8's one-instance variant runs in the background (suite/_overlap.py): out of time there, a store still
    answering is not checked and a silent one hung, exactly as in the foreground."""
    assert_slow_is_not_checked_and_silent_hung("never_bring_a_session_back and one", "CC-8")


class ShortLived(MemoryStore):
    """MemoryStore that remembers the sessions created with a period under ``SHORT`` seconds (to slow them down)."""

    SHORT = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._short: set[str] = set()

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        session = await super().create(*args, **kwargs)
        if session.ttl is not None and session.ttl < self.SHORT:
            self._short.add(session.id)
        return session


class SlowShortLivedWrites(ShortLived):
    """MemoryStore whose writes to a session created with a period under 1 s take 0.6 s before they apply: a
    correct store that is slow at the moment, so such a session can expire between two writes of one test."""


_delay_each(SlowShortLivedWrites, ("save", "apply", "append"),  # longer than the period, on purpose
            lambda self, args: 0.6 if args and args[0] in self._short else 0.0)


def slow_short_lived_writes(namespace: str) -> SlowShortLivedWrites:
    """MemoryStore whose writes to sessions with periods under 1 s take 0.6 s."""
    return SlowShortLivedWrites()


def test_a_session_that_expires_between_slow_writes_is_retried_with_a_longer_period_not_failed() -> None:
    """Found by the matrix on adk_sqlite under load: VER-2's expiry variant wrote a 0.5 s session six times, a
    write came more than 0.5 s after the one before, the store rightly expired the session, and VER-2 failed
    with SessionNotFound. That trial is inconclusive; the next, with a 2 s period, decides."""
    result = run_suite("tests.test_adapter_slow_store:slow_short_lived_writes", clauses=["VER-2"])
    (ver2,) = [c for c in result.clauses if c.clause.id == "VER-2"]
    assert (ver2.verdict, ver2.reason) == ("pass", ""), [(t.name, t.status, t.message) for t in result.tests]


def test_a_manager_test_counts_the_calls_its_manager_makes_on_the_store() -> None:
    """MG-7's 1000 concurrent updates go through a SessionManager, not the suite's task runner. Out of time,
    the calls the manager made count as the store's answers (answers.count_answers on every store the suite
    opens), so a slow store still answering is not checked, not "hung"; a silent one still hangs. Seen on
    adk_postgres, whose MG-8 took 90 of its 120 s on a slow VM: a slower machine would have failed it."""
    assert_slow_is_not_checked_and_silent_hung("concurrent_updates_reach_the_exact_total and one-manager", "MG-7")


class SlowShortLivedAppends(ShortLived):
    """MemoryStore whose appends to a session created with a period under 2 s take 1.2 s: LC-2's expired variant
    (create with a 1 s period, append at once) then finds its session expired, on time."""

    SHORT = 2.0


_delay_each(SlowShortLivedAppends, ("append",),  # longer than the period, on purpose
            lambda self, args: 1.2 if args and args[0] in self._short else 0.0)


def slow_short_lived_appends(namespace: str) -> SlowShortLivedAppends:
    """MemoryStore whose appends to sessions with periods under 2 s take 1.2 s."""
    return SlowShortLivedAppends()


def test_a_dead_id_whose_first_life_expired_before_its_append_is_retried_not_blamed_on_ttl_1() -> None:
    """Found by the matrix on adk_postgres on a slow VM: LC-2 created an id with a 1 s period and appended to it at
    once; the append came after the period and the store rightly refused it, and the suite blamed TTL-1. That trial
    is inconclusive; the next, with a 4 s period, decides."""
    result = run_suite("tests.test_adapter_slow_store:slow_short_lived_appends", clauses=["LC-2"])
    (lc2,) = [c for c in result.clauses if c.clause.id == "LC-2"]
    assert (lc2.verdict, lc2.reason) == ("pass", ""), [(t.name, t.status, t.message) for t in result.tests]


def test_an_inconclusive_count_trial_takes_its_sessions_away_before_the_next_one_counts() -> None:
    """Found by the matrix on adk_sqlite on a slow VM: LS-2's retried trial read count() while a session of the
    inconclusive trial before it was still about to expire, so its expected total was one too high."""
    from sessionspec.conformance.suite._timing import Inconclusive
    from sessionspec.conformance.suite.test_listing import _count_trial

    async def body() -> int:
        store = MemoryStore()
        with pytest.raises(Inconclusive):  # a 1 us period: the expiring ones are gone by the first count
            await _count_trial(store, 1e-6)
        return await store.count()

    assert asyncio.run(body()) == 0
