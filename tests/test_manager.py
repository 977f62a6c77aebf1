"""The SessionManager, feature by feature, on MemoryStore and on real Redis and Postgres.

Backend tests carry the ``redis`` / ``postgres`` markers (see tests/manager_backends.py).
Expiry waits for measured deadlines; nothing sleeps to let a race settle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import pytest

from sessionspec.conformance.contract import (
    DELETE,
    BackendUnavailable,
    InvalidSessionId,
    InvalidState,
    Session,
    SessionNotFound,
    VersionConflict,
)
from sessionspec.reference.manager import (
    EVENTS,
    META_KEY,
    AsyncConversationStore,
    Backoff,
    CapabilityMissing,
    ChatNotFound,
    ConversationStore,
    LeaseLost,
    LimitExceeded,
    LockTimeout,
    ManagerClosed,
    MergeConflict,
    SessionManager,
    UpdateFailed,
    encode_key,
    key_id,
    merge,
    session_lifespan,
)
from sessionspec.reference.manager.lifecycle import ExpirySchedule
from sessionspec.reference.memory import MemoryStore
from tests.manager_backends import Opener, manager_postgres_server, manager_redis_server, stores

__all__ = ["manager_postgres_server", "manager_redis_server", "stores"]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 120))


def plus_one(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "n": state.get("n", 0) + 1}


# -- keys ----------------------------------------------------------------------------------------------------
def test_composite_keys_never_collide_and_ids_are_valid() -> None:
    keys = [("a:b", "c"), ("a", "b:c"), ("a", "b", "c"), ("1",), (1,), ("a\x00b",), ("",), ("a", "")]
    assert len({encode_key(k) for k in keys}) == len(keys)
    ids = {key_id(k) for k in keys}
    assert len(ids) == len(keys) and all(len(i) <= 64 and i.replace("_", "").replace("-", "").isalnum() for i in ids)
    assert key_id(("u", "c", "p")) == key_id(["u", "c", "p"])


@pytest.mark.parametrize("bad", ["abc", (), [1.5], [None], [True], [b"x"]])
def test_a_bad_key_raises_a_typed_error_naming_it(bad: Any) -> None:
    with pytest.raises(InvalidSessionId):
        encode_key(bad)


# -- merge on its own ----------------------------------------------------------------------------------------
def test_merge_takes_changes_not_snapshots() -> None:
    fork = {"plan": "A", "notes": [], "gone": 1}
    result = merge(fork, [fork | {"plan": "B"}, {"plan": "A", "notes": ["n1"]}])
    assert result.state == {"plan": "B", "notes": ["n1"]} and result.conflicts == {}
    assert result.changes == {"plan": "B", "notes": ["n1"], "gone": DELETE}


@pytest.mark.parametrize("strategy, want", [("last_writer_wins", 3), ("first_writer_wins", 1)])
def test_merge_strategies_pick_by_branch_order(strategy: Any, want: int) -> None:
    result = merge({"k": 0}, [{"k": 1}, {"k": 0}, {"k": 3}], strategy)
    assert result.state == {"k": want} and result.conflicts == {"k": [0, 2]}


def test_merge_raise_names_the_keys_and_identical_changes_do_not_conflict() -> None:
    with pytest.raises(MergeConflict) as caught:
        merge({}, [{"a": 1, "b": 1}, {"a": 2, "b": 1}], "raise")
    assert caught.value.keys == ("a",)
    assert merge({}, [{"b": 1}, {"b": 1}], "raise").state == {"b": 1}
    with pytest.raises(ValueError, match="unknown merge strategy"):
        merge({}, [], "coin_flip")  # type: ignore[arg-type]


def test_merge_onto_a_newer_state_keeps_its_other_keys() -> None:
    assert merge({"a": 1}, [{"a": 2}], onto={"a": 1, "other": "x"}).state == {"a": 2, "other": "x"}


# -- lifecycle, sweeper, callbacks ---------------------------------------------------------------------------
def test_the_sweeper_runs_in_the_background_and_closing_twice_is_harmless() -> None:
    async def scenario() -> None:
        ended = asyncio.Event()
        store = MemoryStore()
        mgr = SessionManager(store, idle_timeout=0.2, sweep_interval=0.02)
        mgr.on_expire(lambda id, why: ended.set())
        async with mgr:
            session, begun = await mgr.create({}), time.monotonic()
            await asyncio.wait_for(ended.wait(), 10)
            assert time.monotonic() - begun >= 0.2 - 0.01 and await store.get(session.id) is None
            assert mgr.counters["sweep_run"] >= 1 and mgr.counters["expired"] == 1
        await mgr.aclose()
        with pytest.raises(ManagerClosed):
            await mgr.create({})

    run(scenario())


class FlakyPurge(MemoryStore):
    """purge_expired fails twice, then works."""

    failures = 2

    async def purge_expired(self) -> int:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("redis is down")
        return await super().purge_expired()


def test_a_failing_sweep_is_logged_and_retried_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> SessionManager:
        mgr = SessionManager(FlakyPurge(), sweep_interval=0.01)
        ran = asyncio.Event()
        mgr.on("sweep_run", lambda event, data: ran.set())
        async with mgr:
            await asyncio.wait_for(ran.wait(), 20)
        return mgr

    with caplog.at_level(logging.WARNING, logger="sessionspec.manager"):
        mgr = run(scenario())
    assert mgr.counters["sweep_error"] == 2 and mgr.counters["sweep_run"] == 1
    assert sum("sweep failed" in r.message for r in caplog.records) == 2


def test_resources_are_released_on_delete_and_at_shutdown_once() -> None:
    closed: Counter[str] = Counter()

    class Client:
        def __init__(self, name: str) -> None:
            self.name = name

        async def aclose(self) -> None:
            closed[self.name] += 1

    async def scenario() -> None:
        async with SessionManager(MemoryStore(), sweep_interval=None) as mgr:
            a, b = await mgr.create({}), await mgr.create({})
            mgr.attach(a.id, Client("a"))
            mgr.attach(b.id, Client("b"))
            mgr.attach(b.id, "no closer")
            await mgr.delete(a.id)
            assert closed == {"a": 1}

    run(scenario())
    assert closed == {"a": 1, "b": 1}


def test_the_sweep_looks_only_at_sessions_due() -> None:
    schedule = ExpirySchedule()
    now = time.time()

    async def scenario() -> None:
        store = MemoryStore()
        sessions = [await store.create({}, ttl=1000 if i else 0.001) for i in range(1000)]
        for s in sessions:
            schedule.note(s)

    run(scenario())
    due = schedule.due(now + 1)
    assert len(due) == 1 and len(schedule) == 1000


def test_the_schedule_stays_bounded_when_expiry_slides_forever() -> None:
    """Each note of a slid expiry leaves a stale heap entry; compaction keeps them within 2x tracked + floor."""
    from datetime import UTC, datetime, timedelta

    from sessionspec.conformance.contract import SessionInfo
    from sessionspec.reference.manager.lifecycle import COMPACT_FLOOR

    schedule = ExpirySchedule()
    born = datetime.now(UTC)
    for i in range(COMPACT_FLOOR * 10):
        at = born + timedelta(seconds=i / 1000)
        schedule.note(SessionInfo(f"s{i % 10}", None, i, born, at, at + timedelta(seconds=60), 60.0))
        assert len(schedule._heap) <= 2 * len(schedule) + COMPACT_FLOOR + 1
    assert schedule.due(born.timestamp() + 30) == []
    assert sorted(t.id for t in schedule.due(born.timestamp() + 1000)) == [f"s{i}" for i in range(10)]


# -- get_or_create -------------------------------------------------------------------------------------------
def test_get_or_create_is_exactly_once_within_and_across_instances(stores: Opener) -> None:
    async def scenario() -> None:
        async with stores() as store:
            ns = getattr(store, "namespace", None)
            async with stores(ns) if ns else _same(store) as other:
                a, b = SessionManager(store, sweep_interval=None), SessionManager(other, sweep_interval=None)
                got = await asyncio.gather(*((a if i % 2 else b).get_or_create(("u", i % 3, "x"), {"i": i})
                                             for i in range(300)))
                assert len({s.id for s in got}) == 3
                assert a.counters["created"] + b.counters["created"] == 3
                again = await a.get_or_create(("u", 0, "x"))
                assert again.id == key_id(("u", 0, "x"))

    run(scenario())


class _same:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def __aenter__(self) -> Any:
        return self.store

    async def __aexit__(self, *exc: object) -> None:
        return None


# -- timeouts ------------------------------------------------------------------------------------------------
def test_the_absolute_lifetime_caps_the_store_ttl(stores: Opener) -> None:
    async def scenario() -> None:
        async with stores() as store:
            mgr = SessionManager(store, idle_timeout=3600, absolute_lifetime=60, sweep_interval=None)
            session = await mgr.create({"a": 1})
            assert session.ttl is not None and session.ttl <= 60
            await mgr.touch(session.id)
            await mgr.apply(session.id, {"b": 2})
            got = await store.get(session.id)
            assert got is not None and got.ttl is not None and got.ttl <= 60
            activity = await mgr.activity(session.id)
            assert activity is not None and activity.absolute_deadline is not None
            assert activity.expires_at is not None and activity.expires_at <= activity.absolute_deadline
            assert (await mgr.get(session.id)).state == {"a": 1, "b": 2}  # type: ignore[union-attr]

    run(scenario())


def test_get_with_touch_slides_the_idle_timeout() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        mgr = SessionManager(store, idle_timeout=100, sweep_interval=None)
        session = await mgr.create({})
        before = await store.get(session.id)
        touched = await mgr.get(session.id, touch=True)
        assert before is not None and touched is not None and touched.version == before.version
        assert touched.expires_at is not None and before.expires_at is not None
        assert touched.expires_at >= before.expires_at

    run(scenario())


# -- update --------------------------------------------------------------------------------------------------
def test_concurrent_updates_are_exact_within_and_across_instances(stores: Opener) -> None:
    async def scenario() -> None:
        async with stores() as store:
            ns = getattr(store, "namespace", None)
            async with stores(ns) if ns else _same(store) as other:
                a, b = SessionManager(store, sweep_interval=None), SessionManager(other, sweep_interval=None)
                session = await a.create({"n": 0})
                await asyncio.gather(*((a if i % 2 else b).update(session.id, plus_one) for i in range(300)))
                got = await a.get(session.id)
                assert got is not None and got.state["n"] == 300

    run(scenario())


def test_update_takes_sync_async_and_in_place_functions_and_guards_its_key() -> None:
    async def scenario() -> None:
        mgr = SessionManager(MemoryStore(), sweep_interval=None)
        session = await mgr.create({"log": []})

        async def later(state: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {**state, "async": True}

        def in_place(state: dict[str, Any]) -> None:
            state["log"].append(1)

        await mgr.update(session.id, later)
        written = await mgr.update(session.id, in_place)
        assert written.state == {"log": [1], "async": True} and META_KEY not in written.state
        with pytest.raises(InvalidState, match=META_KEY):
            await mgr.update(session.id, lambda s: {**s, META_KEY: {}})
        with pytest.raises(InvalidState):
            await mgr.create({META_KEY: 1})
        with pytest.raises(SessionNotFound):
            await mgr.update("missing", plus_one)

    run(scenario())


class AlwaysConflicts(MemoryStore):
    async def apply(self, id: str, changes: Mapping[str, Any], *, expected_version: int | None = None) -> Session:
        raise VersionConflict(id, expected_version or 0, (expected_version or 0) + 1)


def test_an_update_that_always_conflicts_gives_up_naming_the_session_and_attempts() -> None:
    async def scenario() -> None:
        mgr = SessionManager(AlwaysConflicts(), sweep_interval=None, backoff=Backoff(base=0.0001, max_attempts=5))
        session = await mgr.create({})
        with pytest.raises(UpdateFailed) as caught:
            await mgr.update(session.id, plus_one)
        assert caught.value.id == session.id and caught.value.attempts == 5 and session.id in str(caught.value)
        assert mgr.counters["conflict_retried"] == 5

    run(scenario())


def test_a_store_without_atomic_gets_a_typed_refusal() -> None:
    class CoreOnly(MemoryStore):
        capabilities = frozenset({"core"})

    async def scenario() -> None:
        mgr = SessionManager(CoreOnly(), sweep_interval=None)
        session = await mgr.create({})
        with pytest.raises(CapabilityMissing, match="atomic"):
            await mgr.update(session.id, plus_one)

    run(scenario())


# -- branches ------------------------------------------------------------------------------------------------
def test_branches_merge_and_re_merge_over_a_racing_writer(stores: Opener) -> None:
    async def scenario() -> None:
        async with stores() as store:
            mgr = SessionManager(store, sweep_interval=None)
            session = await mgr.create({"plan": "A", "notes": [], "x": 1})
            group = mgr.branches(session.id, 2)
            async with group as branches:
                branches[0].state["plan"] = "B"
                branches[1].state["notes"] = ["n"]
                await store.apply(session.id, {"x": 2, "tool": "t"})
            got = await mgr.get(session.id)
            assert got is not None and got.state == {"plan": "B", "notes": ["n"], "x": 2, "tool": "t"}
            assert group.attempts == 2 and mgr.counters["conflict_retried"] == 1
            with pytest.raises(MergeConflict):
                async with mgr.branches(session.id, 2, strategy="raise") as branches:
                    branches[0].state["plan"] = "C"
                    branches[1].state["plan"] = "D"
            assert mgr.counters["merge_conflict"] == 1
            async with mgr.branches(session.id, 1) as branches:
                branches[0].state["never"] = "kept"
                raise_inside = False
            assert raise_inside is False

    run(scenario())


def test_branches_that_raise_commit_nothing() -> None:
    async def scenario() -> None:
        mgr = SessionManager(MemoryStore(), sweep_interval=None)
        session = await mgr.create({"a": 1})
        with pytest.raises(RuntimeError):
            async with mgr.branches(session.id, 2) as branches:
                branches[0].state["a"] = 2
                raise RuntimeError("tool failed")
        assert (await mgr.get(session.id)).state == {"a": 1}  # type: ignore[union-attr]

    run(scenario())


# -- limits --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["reject", "evict_idle"])
def test_owner_limits_hold_exactly_and_a_delete_frees_a_slot(stores: Opener, policy: Any) -> None:
    async def scenario() -> None:
        async with stores() as store:
            mgr = SessionManager(store, max_active_sessions=3, limit_policy=policy, sweep_interval=None)
            results = await asyncio.gather(*(mgr.create({}, owner="o") for _ in range(100)), return_exceptions=True)
            made = [r for r in results if isinstance(r, Session)]
            assert all(isinstance(r, Session | LimitExceeded) for r in results)
            live = [s for s in await asyncio.gather(*(store.get(m.id) for m in made)) if s is not None]
            assert len(live) == 3 and await store.count(owner="o") == 3
            if policy == "reject":
                assert len(made) == 3
                await mgr.delete(made[0].id)
                await mgr.create({}, owner="o")
                with pytest.raises(LimitExceeded, match="'o'"):
                    await mgr.create({}, owner="o")
            else:
                assert mgr.counters["evicted"] == 97
            assert await mgr.create({}, owner="other") is not None

    run(scenario())


def test_creates_queued_behind_a_check_that_found_the_owner_full_take_its_answer() -> None:
    """MG-8 with reject: 1000 creates for one owner cost the store ~7 calls per loser without this (4 of 5
    verdict-bearing store calls in the suite's MG-8 runs). A create waiting all through a check that found the
    owner full is refused on that check; one that arrives later checks again."""
    class CountingStore(MemoryStore):
        calls = 0

        async def get(self, id: str) -> Session | None:
            CountingStore.calls += 1
            return await super().get(id)

    async def scenario() -> None:
        store = CountingStore()
        mgr = SessionManager(store, max_active_sessions=3, limit_policy="reject", sweep_interval=None)
        results = await asyncio.gather(*(mgr.create({}, owner="o") for _ in range(100)), return_exceptions=True)
        made = [r for r in results if isinstance(r, Session)]
        assert len(made) == 3 and sum(isinstance(r, LimitExceeded) for r in results) == 97
        assert CountingStore.calls < 40, f"{CountingStore.calls} gets: each queued loser checked again"
        await mgr.delete(made[0].id)
        assert isinstance(await mgr.create({}, owner="o"), Session)  # arrived after that check: checks, finds room
        with pytest.raises(LimitExceeded):
            await mgr.create({}, owner="o")
        assert not mgr._limit_full, "the observation is kept only while creates queue behind it"

    run(scenario())


def test_evict_idle_evicts_the_least_recently_active() -> None:
    async def scenario() -> None:
        mgr = SessionManager(MemoryStore(), max_active_sessions=2, limit_policy="evict_idle", sweep_interval=None)
        old, new = await mgr.create({}, owner="o"), await mgr.create({}, owner="o")
        await mgr.record_request(old.id)  # old is now the most recently active
        await mgr.create({}, owner="o")
        assert await mgr.get(new.id) is None and await mgr.get(old.id) is not None

    run(scenario())


# -- chats ---------------------------------------------------------------------------------------------------
def test_chats_create_list_switch_delete_and_histories(stores: Opener) -> None:
    async def scenario() -> None:
        async with stores() as store:
            mgr = SessionManager(store, sweep_interval=None)
            session = await mgr.create({})
            chats = mgr.chats(session.id)
            first = await chats.create("first")
            second = await chats.create("second", activate=False)
            assert await chats.active() == first
            await chats.append(None, [{"role": "user", "content": "hi"}])
            await asyncio.gather(*(chats.append(second, [i]) for i in range(50)),
                                 *(chats.switch(second if i % 2 else first) for i in range(50)))
            listed = await chats.list()
            assert [c.id for c in listed] == [first, second] and sum(c.active for c in listed) == 1
            assert sorted(await chats.history(second)) == list(range(50))
            with pytest.raises(ChatNotFound):
                await chats.switch("nope")
            await chats.switch(first)
            await chats.delete(first)
            assert await chats.active() == second and [c.id for c in await chats.list()] == [second]
            with pytest.raises(ChatNotFound):
                await chats.history(first)

    run(scenario())


# -- activity ------------------------------------------------------------------------------------------------
def test_request_count_is_exact_under_concurrency(stores: Opener) -> None:
    async def scenario() -> None:
        async with stores() as store:
            mgr = SessionManager(store, sweep_interval=None)
            session = await mgr.create({"keep": 1})
            start = time.time()
            await asyncio.gather(*(mgr.record_request(session.id) for _ in range(100)))
            activity = await mgr.activity(session.id)
            assert activity is not None and activity.request_count == 100
            assert activity.last_activity.timestamp() >= start - 1
            assert (await mgr.get(session.id)).state == {"keep": 1}  # type: ignore[union-attr]

    run(scenario())


# -- scoped state --------------------------------------------------------------------------------------------
def test_scoped_state_routes_app_user_and_temp_keys(stores: Opener) -> None:
    async def scenario() -> None:
        async with stores() as store:
            mgr = SessionManager(store, sweep_interval=None, app="demo")
            one, two = await mgr.create({}, owner="ann"), await mgr.create({}, owner="ann")
            other = await mgr.create({}, owner="bob")
            scoped = mgr.scoped(one.id)
            await scoped.write({"mine": 1, "app:theme": "dark", "user:lang": "fr", "temp:scratch": [1]})
            assert await scoped.read() == {"mine": 1, "app:theme": "dark", "user:lang": "fr", "temp:scratch": [1]}
            assert await mgr.scoped(two.id).read() == {"app:theme": "dark", "user:lang": "fr"}
            assert await mgr.scoped(other.id).read() == {"app:theme": "dark"}
            assert (await mgr.get(one.id)).state == {"mine": 1}  # type: ignore[union-attr]
            writers = [mgr.scoped(one.id if i % 2 else two.id) for i in range(60)]
            await asyncio.gather(*(w.write({f"user:k{i}": i}) for i, w in enumerate(writers)),
                                 *(w.update("user", plus_one) for w in writers))
            user = await mgr.scoped(two.id).read()
            assert all(user[f"user:k{i}"] == i for i in range(60)) and user["user:n"] == 60

    run(scenario())


# -- locks and leases ----------------------------------------------------------------------------------------
def test_the_in_process_lock_serialises_callers() -> None:
    async def scenario() -> None:
        mgr = SessionManager(MemoryStore(), sweep_interval=None)
        inside, most = 0, 0

        async def worker() -> None:
            nonlocal inside, most
            async with mgr.lock("sid"):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0)
                inside -= 1

        await asyncio.gather(*(worker() for _ in range(20)))
        assert most == 1

    run(scenario())


def test_a_lease_excludes_other_instances_and_fences_a_stale_holder(stores: Opener) -> None:
    async def scenario() -> None:
        async with stores() as store:
            a, b = SessionManager(store, sweep_interval=None), SessionManager(store, sweep_interval=None)
            session = await a.create({"n": 0})
            lease = 0.3
            stale = a.lock(session.id, lease=lease)
            await stale.__aenter__()
            taken_at = time.monotonic()
            assert stale.token == 1
            await stale.update(plus_one)
            with pytest.raises(LockTimeout):
                async with b.lock(session.id, lease=lease, timeout=0.05):
                    pass
            await asyncio.sleep(max(0.0, taken_at + lease + 0.3 - time.monotonic()))  # wait out the lease
            async with b.lock(session.id, lease=5) as fresh:
                assert fresh.token == 2
                await fresh.update(plus_one)
                with pytest.raises(LeaseLost) as caught:
                    await stale.update(plus_one)
                assert (caught.value.token, caught.value.current) == (1, 2)
            await stale.release()  # not ours any more: must not disturb anything
            got = await a.get(session.id)
            assert got is not None and got.state == {"n": 2}
            async with a.lock(session.id, lease=5, timeout=2) as again:  # released: free at once
                assert again.token == 3

    run(scenario())


# -- events --------------------------------------------------------------------------------------------------
def test_events_reach_listeners_and_counters_name_every_event() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        mgr = SessionManager(MemoryStore(), sweep_interval=None)
        mgr.on("*", lambda event, data: seen.append(event))

        async def failing(event: str, data: dict[str, Any]) -> None:
            raise RuntimeError("listener bug")

        mgr.on("created", failing)
        session = await mgr.create({})
        await mgr.delete(session.id)
        await mgr.sweep()
        assert set(mgr.counters) == set(EVENTS) and mgr.counters["callback_error"] == 1
        with pytest.raises(ValueError, match="unknown event"):
            mgr.on("nope", lambda e, d: None)
        return seen

    assert run(scenario()) == ["created", "deleted", "sweep_run"]


# -- the ConversationStore facade ----------------------------------------------------------------------------
def test_the_async_facade_does_the_conversation_store_job(stores: Opener) -> None:
    async def scenario() -> None:
        async with stores() as store:
            conversations = AsyncConversationStore(store, ttl=3600)
            sid = await conversations.create_new_session_id()
            await conversations.save_state(sid, {"messages": ["a"]})
            await conversations.save_state("named", {"messages": ["b"]})
            assert await conversations.get_state(sid) == {"messages": ["a"]}
            assert await conversations.extend_ttl(sid) and not await conversations.extend_ttl("missing")
            assert sorted(await conversations.get_all_session_ids()) == sorted([sid, "named"])
            assert await conversations.delete_state(sid) and await conversations.get_state(sid) is None

    run(scenario())


class DownStore(MemoryStore):
    async def get(self, id: str) -> Session | None:
        raise BackendUnavailable("the backend is down")


def test_the_sync_facade_works_from_plain_code_and_raises_when_the_backend_is_down() -> None:
    with ConversationStore(MemoryStore, ttl=60) as conversations:
        sid = conversations.create_new_session_id()
        conversations.save_state(sid, {"k": 1})
        assert conversations.get_state(sid) == {"k": 1} and conversations.get_all_session_ids() == [sid]
        assert conversations.extend_ttl(sid) and conversations.delete_state(sid)
    with ConversationStore(DownStore) as down, pytest.raises(BackendUnavailable):
        down.get_state("any")


# -- the lifespan helper -------------------------------------------------------------------------------------
def test_the_starlette_lifespan_opens_and_closes_the_manager() -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    managers: list[SessionManager] = []

    async def hello(request: Request) -> JSONResponse:
        mgr: SessionManager = request.state.session_manager
        managers.append(mgr)
        session = await mgr.get_or_create(("user", request.path_params["user"]))
        return JSONResponse({"id": session.id})

    app = Starlette(routes=[Route("/{user}", hello)], lifespan=session_lifespan(MemoryStore, sweep_interval=60))
    with TestClient(app) as client:
        first, again = client.get("/ann").json(), client.get("/ann").json()
        assert first == again
    assert managers and managers[0].closed
