"""The framework adapters: each one works as a store, and each failure the matrix publishes is real.

Two kinds of test. Smoke tests drive every embedded adapter through the contract's basic
life cycle, so an adapter mistake cannot pose as a framework failure. Reproductions call
the *framework's own API* in one line and assert the divergence the matrix reports
(written to pass while the framework still diverges: when one starts failing, the
framework fixed it — regenerate docs/compatibility.md and delete the test). Every test
skips cleanly when its framework extra is not installed (``pip install sessionspec[adapters]``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sessionspec.conformance import DELETE, SessionExists, SessionNotFound, SessionStore


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


needs_adk = pytest.mark.skipif(not _has("google.adk"), reason="google-adk not installed (extra: adk)")
needs_agents = pytest.mark.skipif(not _has("agents"), reason="openai-agents not installed (extra: openai-agents)")
needs_langgraph = pytest.mark.skipif(not _has("langgraph.store"), reason="langgraph not installed (extra: langgraph)")


# ---------------------------------------------------------------- smoke: adapters are not the bug
async def _open(factory: Callable[[str], Any], namespace: str) -> AsyncIterator[SessionStore]:
    made = factory(namespace)
    if hasattr(made, "__aenter__") and not hasattr(made, "create"):
        async with made as store:
            yield store
    else:
        async with made as store:
            yield store


def _embedded() -> list[Any]:
    params = []
    for module, mark in (("adk_memory", needs_adk), ("adk_sqlite", needs_adk), ("agents_sqlite", needs_agents),
                         ("langgraph_memory", needs_langgraph)):
        params.append(pytest.param(module, marks=mark, id=module))
    return params


@pytest.mark.parametrize("module", _embedded())
def test_embedded_adapter_life_cycle(module: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """create, get, save, apply (DELETE), append, touch, delete, no upsert: the contract's plain path."""
    monkeypatch.setenv("SESSIONSPEC_ADAPTERS_DIR", str(tmp_path))
    factory = importlib.import_module(f"sessionspec.adapters.{module}").factory
    asyncio.run(_life_cycle(factory))


async def _life_cycle(factory: Callable[[str], Any]) -> None:
    async for store in _open(factory, f"t{uuid.uuid4().hex[:12]}"):
        s = await store.create({"a": 1, "b": [1]}, owner="u1", ttl=60)
        assert (await store.get(s.id)) == s
        with pytest.raises(SessionExists):
            await store.create({}, id=s.id)
        saved = await store.save(s.id, {"a": 2, "gone": True})
        assert saved.version > s.version and saved.state == {"a": 2, "gone": True}
        applied = await store.apply(s.id, {"gone": DELETE, "c": {"d": None}})
        assert applied.state == {"a": 2, "c": {"d": None}}
        info = await store.append(s.id, "log", [1, "x"])
        touched = await store.touch(s.id, ttl=None)
        assert touched.version == info.version and touched.ttl is None
        assert (await store.get(s.id)).state == {"a": 2, "c": {"d": None}, "log": [1, "x"]}  # type: ignore[union-attr]
        assert await store.delete(s.id) is True
        assert await store.get(s.id) is None
        with pytest.raises(SessionNotFound):
            await store.save(s.id, {"back": True})
        assert await store.delete(s.id) is False



# ---------------------------------------------------------------- reproductions: the framework diverges
def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@needs_adk
def test_adk_memory_id2_strips_session_ids() -> None:
    """ID-2, adk_memory: InMemorySessionService strips ids (in_memory_session_service.py, session_id.strip())."""
    from google.adk.sessions import InMemorySessionService

    async def repro() -> Any:
        svc = InMemorySessionService()
        await svc.create_session(app_name="a", user_id="u", session_id="x ")
        return await svc.get_session(app_name="a", user_id="u", session_id=" x")

    assert _run(repro()) is not None  # "x " and " x" are one session


@needs_adk
def test_adk_id1_generated_ids_are_uuid4() -> None:
    """ID-1, adk_*: generated ids are uuid4 (platform/uuid.py new_uuid): 122 random bits, not 128."""
    from google.adk.sessions import InMemorySessionService

    s = _run(InMemorySessionService().create_session(app_name="a", user_id="u"))
    assert uuid.UUID(s.id).version == 4


@pytest.fixture(scope="module")
def postgres_url() -> str:
    from sessionspec.adapters import _servers
    from sessionspec.conformance.provision import ProvisionError

    try:
        return str(_servers.server_url("postgres"))
    except ProvisionError as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture(scope="module")
def redis_url() -> str:
    from sessionspec.adapters import _servers
    from sessionspec.conformance.provision import ProvisionError

    try:
        return str(_servers.server_url("redis"))
    except ProvisionError as exc:
        pytest.skip(f"no Redis server: {exc}")


@needs_adk
@pytest.mark.postgres
def test_adk_postgres_st1_jsonb_turns_floats_into_ints(postgres_url: str) -> None:
    """ST-1, adk_postgres: state is a JSONB column (schemas/v1.py); 1e16 comes back as the int 10000000000000000."""
    from google.adk.sessions import DatabaseSessionService

    async def repro() -> Any:
        svc = DatabaseSessionService(db_url="postgresql+asyncpg://" + postgres_url.split("://", 1)[1])
        try:
            s = await svc.create_session(app_name=f"t{uuid.uuid4().hex[:8]}", user_id="u", state={"f": 1e16})
            return (await svc.get_session(app_name=s.app_name, user_id="u", session_id=s.id)).state["f"]  # type: ignore[union-attr]
        finally:
            await svc.close()

    assert type(_run(repro())) is int


@needs_langgraph
@pytest.mark.postgres
def test_langgraph_postgres_st1_jsonb_turns_floats_into_ints(postgres_url: str) -> None:
    """ST-1, langgraph_postgres: values are JSONB (store/postgres/base.py); 1e16 comes back as an int."""
    from langgraph.store.postgres.aio import AsyncPostgresStore

    async def repro() -> Any:
        async with AsyncPostgresStore.from_conn_string(postgres_url) as store:
            await store.setup()
            ns = ("t", uuid.uuid4().hex[:8])
            await store.aput(ns, "k", {"f": 1e16}, index=False)
            return (await store.aget(ns, "k")).value["f"]  # type: ignore[union-attr]

    assert type(_run(repro())) is int


@needs_agents
@pytest.mark.redis
def test_agents_redis_ttl1_periods_are_whole_seconds(redis_url: str) -> None:
    """TTL-1 (ledger), agents_redis: RedisSession's ttl is documented as `int | None` seconds, so its shortest
    period is 1 s: a 0.05 s contract period lives a whole second."""
    import inspect

    import redis.asyncio
    from agents.extensions.memory import RedisSession

    assert str(inspect.signature(RedisSession.__init__).parameters["ttl"].annotation) == "int | None"

    async def repro() -> int:
        client = redis.asyncio.from_url(redis_url)
        prefix = f"t{uuid.uuid4().hex[:8]}"
        await RedisSession("s", redis_client=client, key_prefix=prefix, ttl=1).add_items([{"n": 1}])  # type: ignore[list-item]
        left = int(await client.pttl(f"{prefix}:s:messages"))
        await client.aclose()
        return left

    assert 500 < _run(repro()) <= 1000  # the shortest period it can store: 20x a 0.05 s session's


@needs_agents
@pytest.mark.redis
def test_agents_redis_ttl3_a_write_with_ttl_none_keeps_the_old_expiry(redis_url: str) -> None:
    """TTL-3, agents_redis: ttl=None skips PEXPIREAT but never PERSISTs (redis_session.py _mutate_items_attempt)."""
    import redis.asyncio
    from agents.extensions.memory import RedisSession

    async def repro() -> int:
        client = redis.asyncio.from_url(redis_url)
        prefix = f"t{uuid.uuid4().hex[:8]}"
        await RedisSession("s", redis_client=client, key_prefix=prefix, ttl=60).add_items([{"n": 1}])  # type: ignore[list-item]
        await RedisSession("s", redis_client=client, key_prefix=prefix, ttl=None).add_items([{"n": 2}])  # type: ignore[list-item]
        left = int(await client.pttl(f"{prefix}:s:messages"))
        await client.aclose()
        return left

    assert _run(repro()) > 0  # still expiring, though the SDK documents ttl=None as "persists indefinitely"


@needs_agents
def test_agents_cc2_sessions_have_no_create_if_absent(tmp_path: Any) -> None:
    """CC-2, agents_*: the Session protocol (agents/memory/session.py) has no create; a second creator appends."""
    from agents import SQLiteSession

    async def repro() -> list[Any]:
        first, second = SQLiteSession("s", tmp_path / "db"), SQLiteSession("s", tmp_path / "db")
        await asyncio.gather(first.add_items([{"by": 1}]), second.add_items([{"by": 2}]))  # type: ignore[list-item]
        items = await first.get_items()
        first.close()
        second.close()
        return items

    assert sorted(i["by"] for i in _run(repro())) == [1, 2]  # neither writer could learn the id was taken


@pytest.mark.redis
@pytest.mark.skipif(not _has("redis"), reason="redis not installed")
def test_redis_py_swallows_early_cancellation(redis_url: str) -> None:
    """FL-4, agents_redis: redis-py's asyncio client returns normally from a command cancelled in its first steps."""
    import redis.asyncio

    async def repro() -> list[bool]:
        client = redis.asyncio.from_url(redis_url)
        await client.ping()
        swallowed = []
        for steps in (1, 2, 3):
            task = asyncio.ensure_future(client.lrange("nothing", 0, -1))
            for _ in range(steps):
                await asyncio.sleep(0)
            requested = task.cancel()
            try:
                await task
                swallowed.append(requested)
            except asyncio.CancelledError:
                swallowed.append(False)
        await client.aclose()
        return swallowed

    assert any(_run(repro()))  # a cancellation was requested, yet the command returned normally


@needs_adk
def test_adk_sqlite_fl4_a_cancelled_read_leaves_the_database_locked(tmp_path: Any) -> None:
    """FL-4, adk_sqlite: cancel get_session mid-flight and the next write fails 'database is locked'."""
    from google.adk.sessions import DatabaseSessionService
    from sqlalchemy.exc import OperationalError

    async def repro() -> list[str]:
        svc = DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{tmp_path / 'adk.db'}")
        s = await svc.create_session(app_name="a", user_id="u")
        failures = []
        for steps in range(1, 60):  # where the cancel must land depends on aiosqlite's thread: search widely
            task = asyncio.ensure_future(svc.get_session(app_name="a", user_id="u", session_id=s.id))
            for _ in range(steps % 12 + 1):
                await asyncio.sleep(0)
            if steps >= 12:  # then let the thread run a little further each time
                await asyncio.sleep(0.0002 * (steps - 11))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            try:
                await svc.create_session(app_name="a", user_id="u")
            except OperationalError as exc:
                failures.append(str(exc.orig))
                break
        await svc.close()
        return failures

    assert _run(repro()) == ["database is locked"]


@needs_adk
@pytest.mark.postgres
def test_adk_postgres_id2_ids_over_128_characters_are_a_database_error(postgres_url: str) -> None:
    """ID-2, adk_postgres: sessions.id is VARCHAR(128) (schemas/v1.py); a valid 129-character id is a DBAPIError."""
    from google.adk.sessions import DatabaseSessionService
    from sqlalchemy.exc import DBAPIError

    async def repro() -> None:
        svc = DatabaseSessionService(db_url="postgresql+asyncpg://" + postgres_url.split("://", 1)[1])
        try:
            await svc.create_session(app_name=f"t{uuid.uuid4().hex[:8]}", user_id="u", session_id="x" * 129)
        finally:
            await svc.close()

    with pytest.raises(DBAPIError, match="value too long"):
        _run(repro())


@needs_adk
def test_adk_sqlite_cc1_a_writer_waits_at_most_five_seconds_then_fails_database_is_locked(tmp_path: Any) -> None:
    """CC-1/CC-5, adk_sqlite: DatabaseSessionService keeps SQLite's 5 s busy timeout; a longer queue is an error."""
    import sqlite3
    import time

    from google.adk.sessions import DatabaseSessionService
    from sqlalchemy.exc import OperationalError

    path = tmp_path / "adk.db"

    async def repro() -> float:
        svc = DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{path}")
        await svc.create_session(app_name="a", user_id="u")  # the tables exist
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock, as under 1000 concurrent creates
        began = time.monotonic()
        try:
            with pytest.raises(OperationalError, match="database is locked"):
                await svc.create_session(app_name="a", user_id="u")
            return time.monotonic() - began
        finally:
            other.execute("ROLLBACK")
            other.close()
            await svc.close()

    assert 4.0 < _run(repro()) < 30.0  # gave up after the busy timeout instead of queueing


@needs_agents
@pytest.mark.postgres
def test_agents_sqlalchemy_cc2_two_first_writers_of_one_id_both_succeed(postgres_url: str) -> None:
    """CC-2, agents_sqlalchemy: SQLAlchemySession creates the session on first add_items and never says it existed."""
    from agents.extensions.memory import SQLAlchemySession
    from sqlalchemy.ext.asyncio import create_async_engine

    async def repro() -> list[Any]:
        engine = create_async_engine("postgresql+asyncpg://" + postgres_url.split("://", 1)[1])
        key = f"t{uuid.uuid4().hex[:8]}"
        first = SQLAlchemySession(key, engine=engine, create_tables=True)
        await first.get_items()
        second = SQLAlchemySession(key, engine=engine)
        await asyncio.gather(first.add_items([{"by": 1}]), second.add_items([{"by": 2}]))  # type: ignore[list-item]
        items = await first.get_items()
        await engine.dispose()
        return items

    assert sorted(i["by"] for i in _run(repro())) == [1, 2]  # both "created" the conversation


@needs_agents
@pytest.mark.postgres
def test_agents_sqlalchemy_cc1_a_write_slower_than_the_statement_bound_reads_as_unavailable(postgres_url: str) -> None:
    """CC-1 (intermittent), agents_sqlalchemy: the adapter bounds every statement (asyncpg command_timeout, 5 s
    there, 1 s here) so that FL-1's stalled server answers BackendUnavailable in time; a write that merely waits
    longer, the server up and answering, ends the same way. Here the wait is a lock held by another connection;
    in CI's run it was load (two stores checked at once on 2 vCPUs)."""
    import asyncpg
    from agents.extensions.memory import SQLAlchemySession
    from sqlalchemy.ext.asyncio import create_async_engine

    from sessionspec.adapters._adk import sqlalchemy_error
    from sessionspec.adapters._base import AdapterStore

    async def repro() -> tuple[BaseException | None, int]:
        dsn = "postgresql+asyncpg://" + postgres_url.split("://", 1)[1]
        engine = create_async_engine(dsn, connect_args={"timeout": 3, "command_timeout": 1})
        await SQLAlchemySession("warm", engine=engine, create_tables=True).get_items()
        holder = await asyncpg.connect(postgres_url)
        try:
            async with holder.transaction():
                await holder.execute("LOCK TABLE agent_sessions IN ACCESS EXCLUSIVE MODE")
                try:
                    await SQLAlchemySession(f"t{uuid.uuid4().hex[:8]}", engine=engine).add_items([{"n": 1}])  # type: ignore[list-item]
                    error: BaseException | None = None
                except Exception as exc:  # classified as the adapter does (_base.AdapterStore._call)
                    error = sqlalchemy_error(exc) or exc
            alive = await holder.fetchval("SELECT 1")  # the server answered all along
        finally:
            await holder.close()
            await engine.dispose()
        return error, alive

    error, alive = _run(repro())
    assert alive == 1
    # a bare TimeoutError, which AdapterStore maps to "BackendUnavailable: TimeoutError" (CI's message)
    assert isinstance(error, TimeoutError) and isinstance(error, AdapterStore.connectivity_errors), repr(error)


@needs_agents
@pytest.mark.redis
def test_agents_redis_cc8_a_write_after_clear_session_recreates_it(redis_url: str) -> None:
    """CC-8, agents_redis: add_items has no existence condition; a writer that loaded before a delete resurrects."""
    import redis.asyncio
    from agents.extensions.memory import RedisSession

    async def repro() -> list[Any]:
        client = redis.asyncio.from_url(redis_url)
        prefix = f"t{uuid.uuid4().hex[:8]}"
        writer, deleter = (RedisSession("s", redis_client=client, key_prefix=prefix) for _ in range(2))
        await writer.add_items([{"n": 1}])  # type: ignore[list-item]
        await writer.get_items()  # the writer has read the session
        await deleter.clear_session()  # someone deletes it
        await writer.add_items([{"n": 2}])  # type: ignore[list-item]
        items = await deleter.get_items()
        await client.aclose()
        return items

    assert _run(repro()) == [{"n": 2}]  # the deleted session is back


@needs_langgraph
@pytest.mark.postgres
def test_langgraph_postgres_cc8_aput_after_adelete_stores_the_item_again(postgres_url: str) -> None:
    """CC-8/MG-6, langgraph_postgres: aput is an upsert; a writer that read before a delete brings the item back."""
    from langgraph.store.postgres.aio import AsyncPostgresStore

    async def repro() -> Any:
        async with AsyncPostgresStore.from_conn_string(postgres_url) as store:
            await store.setup()
            ns = ("t", uuid.uuid4().hex[:8])
            await store.aput(ns, "k", {"n": 1}, index=False)
            seen = await store.aget(ns, "k")  # a writer reads the session
            await store.adelete(ns, "k")  # someone deletes it
            await store.aput(ns, "k", {"n": seen.value["n"] + 1}, index=False)  # type: ignore[union-attr]
            return (await store.aget(ns, "k")).value  # type: ignore[union-attr]

    assert _run(repro()) == {"n": 2}  # the deleted item is back


# ---------------------------------------------------------------- adapter mistakes found by the matrix, fixed
@needs_adk
def test_adapter_write_gone_stale_behind_a_touch_retries_instead_of_a_conflict_with_its_own_version(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """CC-6 on adk_postgres: a touch rewrites the record without a new version, so a write that went stale
    behind it is still at the expected version. The adapter raised VersionConflict(expected=v, actual=v);
    it now reloads and writes (the touch is forced in between, on a second instance of the same database)."""
    monkeypatch.setenv("SESSIONSPEC_ADAPTERS_DIR", str(tmp_path))
    from sessionspec.adapters import adk_sqlite

    async def repro() -> Any:
        async with adk_sqlite.factory("t") as writer, adk_sqlite.factory("t") as toucher:
            s = await writer.create({"n": 0})
            store_once = writer._store

            async def touched_first(id: str, record: Any, token: Any) -> None:
                writer._store = store_once  # type: ignore[method-assign]
                await toucher.touch(id)  # lands between the writer's read and its write
                await store_once(id, record, token)

            writer._store = touched_first  # type: ignore[method-assign]
            return s.version, await writer.append(s.id, "log", [1], expected_version=s.version)

    version, appended = _run(repro())
    assert appended.version == version + 1


class _DictStore:
    """The five primitives over a dict, on a clock the test sets: emulated expiry with nothing else in the way."""

    def __init__(self) -> None:
        from sessionspec.adapters._base import AdapterStore

        class Store(AdapterStore):
            now = 0.0

            def __init__(self, namespace: str) -> None:
                super().__init__(namespace)
                self.rows: dict[str, Any] = {}

            def _now(self) -> float:
                return self.now

            async def _load(self, id: str) -> Any:
                return None if id not in self.rows else (self.rows[id], None)

            async def _insert(self, id: str | None, record: Any) -> str:
                assert id is not None
                if id in self.rows:
                    raise SessionExists(id)
                self.rows[id] = record
                return id

            async def _store(self, id: str, record: Any, token: Any) -> None:
                self.rows[id] = record  # no existence check: like add_items and aput, a write that lands recreates

            async def _remove(self, id: str) -> None:
                self.rows.pop(id, None)

        self.store = Store("t")


def test_adapter_get_of_an_expired_session_waits_for_a_write_that_loaded_it_live() -> None:
    """CC-8 through the adapters' emulated expiry (one instance): get read the record expired without the id's
    lock and answered None while a write that had loaded it live was storing it; the write then landed with
    its new expiry, and the next get found the session back. Forced here: the write waits on an Event."""
    from sessionspec.adapters._base import Record

    async def repro() -> tuple[Any, Any, Any]:
        store = _DictStore().store
        s = await store.create({"n": 0}, id="s", ttl=10)  # expires at 10
        storing, land = asyncio.Event(), asyncio.Event()
        store_now = store._store

        async def slow_store(id: str, record: Record, token: Any) -> None:
            storing.set()
            await land.wait()
            await store_now(id, record, token)

        store._store = slow_store  # type: ignore[method-assign]
        store.now = 5.0  # the write loads it live and will slide it to 15
        writing = asyncio.create_task(store.apply(s.id, {"n": 1}))
        await storing.wait()
        store.now = 12.0  # past the old expiry, before the new one
        reading = asyncio.create_task(store.get(s.id))
        await asyncio.sleep(0)  # let get run as far as it can without the write
        early = reading.done()
        land.set()
        await writing
        return early, await reading, await store.get(s.id)

    early, first, second = _run(repro())
    assert not early, "get answered before the write that had loaded the session live was stored"
    assert first is not None and second is not None and first.state == second.state == {"n": 1}


def test_adapter_a_call_that_finds_a_session_expired_removes_it_so_a_late_write_cannot_bring_it_back() -> None:
    """The same across instances, where no lock is shared: the call that answers "gone" removes the record
    first, so a write that loaded it live elsewhere meets a missing session (here, with a framework whose
    write recreates, the record must at least be gone when the answer is given)."""

    async def repro() -> tuple[bool, Any]:
        store = _DictStore().store
        await store.create({}, id="s", ttl=10)
        store.now = 11.0
        gone = await store.get("s") is None
        return gone, store.rows.get("s")

    gone, left = _run(repro())
    assert gone and left is None, "get answered gone but left the expired record for a late write to revive"


@needs_agents
def test_agents_sqlite_cc8_a_write_after_clear_session_recreates_it(tmp_path: Any) -> None:
    """CC-8, agents_sqlite: add_items has no existence condition (INSERT OR IGNORE into agent_sessions), so a
    writer that read the session before a clear_session (or before its emulated expiry) brings it back."""
    from agents import SQLiteSession

    async def repro() -> list[Any]:
        session = SQLiteSession("s", tmp_path / "db")
        await session.add_items([{"n": 1}])  # type: ignore[list-item]
        seen = (await session.get_items(limit=1))[-1]  # a writer reads the session
        await session.clear_session()  # someone deletes it (or it expires)
        await session.add_items([{"n": seen["n"] + 1}])  # type: ignore[list-item,index]
        items = await session.get_items()
        session.close()
        return items

    assert _run(repro()) == [{"n": 2}]  # the deleted session is back


@needs_langgraph
@pytest.mark.postgres
def test_langgraph_postgres_ttl5_sweep_ttl_counts_every_namespace(postgres_url: str) -> None:
    """TTL-5, langgraph_postgres: sweep_ttl() deletes and counts expired items of the whole store, every
    namespace; there is no per-namespace sweep, so purge_expired() counts other namespaces' sessions too."""
    from langgraph.store.postgres.aio import AsyncPostgresStore

    async def repro() -> tuple[int, int]:
        async with AsyncPostgresStore.from_conn_string(
                postgres_url, ttl={"refresh_on_read": False, "omit_expired": True}) as store:
            await store.setup()
            await store.sweep_ttl()  # start from nothing expired
            mine, theirs = ("t", uuid.uuid4().hex[:8]), ("t", uuid.uuid4().hex[:8])
            await store.aput(mine, "k", {"n": 1}, index=False, ttl=0.5 / 60)
            await store.aput(theirs, "k", {"n": 1}, index=False, ttl=0.5 / 60)
            await asyncio.sleep(1.0)  # waiting out the 0.5 s period: a deadline, not a race
            assert [await store.aget(ns, "k", refresh_ttl=False) for ns in (mine, theirs)] == [None, None]
            swept = await store.sweep_ttl()
            return swept, len(await store.asearch(theirs))

    swept, left_in_theirs = _run(repro())
    assert (swept, left_in_theirs) == (2, 0)  # one sweep for "mine" removed and counted the other namespace's too


@needs_agents
@pytest.mark.postgres
def test_agents_sqlalchemy_cc8_a_write_after_clear_session_recreates_it(postgres_url: str) -> None:
    """CC-8, agents_sqlalchemy: add_items locks the session row with create=True (_lock_session inserts it when
    missing), so a writer that read the session before a clear_session brings it back."""
    from agents.extensions.memory import SQLAlchemySession
    from sqlalchemy.ext.asyncio import create_async_engine

    async def repro() -> list[Any]:
        engine = create_async_engine("postgresql+asyncpg://" + postgres_url.split("://", 1)[1])
        session = SQLAlchemySession(f"t{uuid.uuid4().hex[:8]}", engine=engine, create_tables=True)
        await session.add_items([{"n": 1}])  # type: ignore[list-item]
        seen = (await session.get_items(limit=1))[-1]  # a writer reads the session
        await session.clear_session()  # someone deletes it
        await session.add_items([{"n": seen["n"] + 1}])  # type: ignore[list-item,index]
        items = await session.get_items()
        await engine.dispose()
        return items

    assert _run(repro()) == [{"n": 2}]  # the deleted session is back


@needs_adk
def test_adk_cc6_delete_session_does_not_say_whether_it_deleted(tmp_path: Any) -> None:
    """CC-6, adk_postgres: delete_session returns None whether it deleted a session or found none, so of two
    concurrent deletes neither can tell it lost: both report a deletion (the contract's delete returns True
    exactly once)."""
    from google.adk.sessions import DatabaseSessionService

    async def repro() -> tuple[Any, Any, Any]:
        svc = DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{tmp_path / 'adk.db'}")
        await svc.create_session(app_name="a", user_id="u", session_id="s")
        first = await svc.delete_session(app_name="a", user_id="u", session_id="s")  # deletes it
        second = await svc.delete_session(app_name="a", user_id="u", session_id="s")  # deletes nothing
        gone = await svc.get_session(app_name="a", user_id="u", session_id="s")
        await svc.close()
        return first, second, gone

    assert _run(repro()) == (None, None, None)  # the two answers cannot be told apart
