"""PostgresStore specifics the suite cannot see from outside: representation, clocks, plans, pools.

Runs against a server from the provisioning layer (skipped with its message when none can
be provisioned; failed instead under SESSIONSPEC_REQUIRE_BACKENDS=1). Every test opens
stores on fresh namespaces and deletes their rows afterwards, so a shared server is fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionspec.conformance.contract import (
    DELETE,
    BackendUnavailable,
    InvalidState,
    SessionNotFound,
    VersionConflict,
)
from sessionspec.conformance.provision import Server
from sessionspec.conformance.target_postgres import drop_namespace
from sessionspec.reference import postgres_sql as sql
from sessionspec.reference.postgres import PostgresStore
from sessionspec.reference.postgres_sql import decode_json, encode_json
from tests.fixtures.servers import database_with, provisioned

pytestmark = pytest.mark.postgres
TRICKY_STRINGS = ["\x00", "a\x00b", "\x00\x00", "\ue000", "\ue000\ue001", "\ue000\ue002", "\ue000\x00",
                  "x\ue000", "\ue001", "", "\\u0000", "\x00\ue000\x00\ue002", "𝄞\x00세션"]
NUMBERS = [0, -1, 1.0, -0.0, 0.1, 1e-320, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308, 1e16,
           1.5e300, 2.5e-7, 123456789.125, -(2**63), 2**63 - 1, 2**53 + 1, True, False, None]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with provisioned("postgres") as srv:
        yield srv


@pytest.fixture
def url(server: Server) -> str:
    return server.url


@contextlib.asynccontextmanager
async def opened(url: str, namespace: str | None = None, **options: Any) -> AsyncIterator[PostgresStore]:
    """A store on a fresh namespace whose rows are deleted afterwards."""
    store = await PostgresStore.connect(url, namespace=namespace or f"t{uuid.uuid4().hex[:12]}", **options)
    try:
        yield store
    finally:
        with contextlib.suppress(Exception):
            await drop_namespace(store, store.namespace)
        await store.aclose()


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, within: float = 10.0) -> None:
    """Poll an observable condition (never a bare sleep): fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


async def db_passed(conn: asyncpg.Connection, moment: Any) -> bool:
    return bool(await conn.fetchval("SELECT clock_timestamp() > $1", moment))


@contextlib.asynccontextmanager
async def row_locked(url: str, store: PostgresStore, id: str) -> AsyncIterator[asyncpg.Connection]:
    """Another connection, in a transaction holding the session row's lock (FOR UPDATE) until it
    executes ROLLBACK or the block ends."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1 FROM sessionspec.sessions WHERE namespace = $1 AND id = $2 FOR UPDATE",
                           store.namespace, id)
        yield conn
    finally:
        await conn.close()


async def blocked_by(conn: asyncpg.Connection, n: int = 1) -> bool:
    """At least n other sessions wait, directly or in line, for a lock this connection holds."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees one frozen snapshot
    return int(await conn.fetchval(BLOCKED_BY, conn.get_server_pid())) >= n


BLOCKED_BY = """
WITH waiting AS (SELECT pid, pg_blocking_pids(pid) AS blockers FROM pg_stat_activity),
     direct AS (SELECT pid FROM waiting WHERE $1 = ANY(blockers))
SELECT count(*) FROM waiting w
 WHERE w.pid IN (SELECT pid FROM direct) OR w.blockers && ARRAY(SELECT pid FROM direct)"""


# ---------------------------------------------------------------- ST-1: the representation
@settings(max_examples=300, deadline=None, database=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
                    allow_infinity=False) | st.text(st.sampled_from("a\x00\ue000\ue001\ue002é")),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.text(st.sampled_from("k\x00\ue000\ue001\ue002"), max_size=4), inner, max_size=4),
                    max_leaves=12))
def test_encoding_is_invertible_and_never_sends_a_nul(value: Any) -> None:
    text = encode_json(value)
    assert "\\u0000" not in text.replace("\\\\", ""), f"ST-1: encode_json left a NUL escape jsonb rejects: {text!r}"
    assert decode_json(text) == value, f"ST-1: encode/decode is not a bijection for {value!r} (sent {text!r})"


@pytest.mark.parametrize("tricky", TRICKY_STRINGS, ids=repr)
def test_nul_and_marker_strings_round_trip_as_values_and_keys_through_apply_and_append(url: str, tricky: str) -> None:
    async def scenario() -> None:
        async with opened(url) as store:
            state = {tricky: tricky, "nested": {tricky: [tricky, {tricky: tricky}]}, "plain": 1}
            created = await store.create(state)
            got = await store.get(created.id)
            assert got is not None and got.state == state, f"ST-1: {tricky!r} did not round-trip: {got}"
            applied = await store.apply(created.id, {tricky: DELETE, f"new{tricky}": tricky})
            want = {"nested": state["nested"], "plain": 1, f"new{tricky}": tricky}
            assert applied.state == want, f"MG-1: apply/DELETE of key {tricky!r} went wrong: {applied.state}"
            await store.append(created.id, tricky, [tricky])
            await store.append(created.id, tricky, [1, tricky])
            want[tricky] = [tricky, 1, tricky]
            got = await store.get(created.id)
            assert got is not None and got.state == want, f"MG-5: append under key {tricky!r} went wrong: {got}"

    asyncio.run(scenario())


def test_numbers_round_trip_with_value_and_type(url: str) -> None:
    async def scenario() -> None:
        async with opened(url) as store:
            state = {f"n{i}": n for i, n in enumerate(NUMBERS)} | {"list": NUMBERS}
            created = await store.create(state)
            await store.append(created.id, "log", NUMBERS)
            got = await store.get(created.id)
            assert got is not None
            for key, want in state.items():
                value = got.state[key]
                assert value == want and type(value) is type(want), f"ST-1: {want!r} came back as {value!r}"
            assert [type(v) for v in got.state["log"]] == [type(v) for v in NUMBERS], (
                f"ST-1: appended numbers changed type: {got.state['log']!r}")

    asyncio.run(scenario())


# ---------------------------------------------------------------- clocks and time zones
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "America/Adak"])
def test_session_time_zone_never_leaks_into_timestamps_or_expiry(url: str, zone: str) -> None:
    async def scenario() -> None:
        async with opened(url, server_settings={"timezone": zone}) as store:
            assert await store.pool.fetchval("SHOW timezone") == zone
            before = time.time()
            created = await store.create({"a": 1}, ttl=0.5)
            after = time.time()
            assert created.created_at.tzinfo is not None and created.created_at.utcoffset() == timedelta(0), (
                f"timestamps must be aware UTC, got {created.created_at!r} with session time zone {zone}")
            assert before - 2 <= created.created_at.timestamp() <= after + 2, (
                f"created_at {created.created_at} is not now: the {zone} offset leaked into it")
            assert created.expires_at == created.updated_at + timedelta(seconds=0.5)
            got = await store.get(created.id)
            assert got is not None and got.created_at == created.created_at and got.created_at.tzinfo == UTC
            async with store.pool.acquire() as conn:
                await wait_for(lambda: db_passed(conn, created.expires_at), "the database clock passes expires_at")
            assert await store.get(created.id) is None, f"TTL-1: expired session still visible (zone {zone})"

    asyncio.run(scenario())


def test_expiry_follows_clock_timestamp_even_inside_a_long_transaction(url: str) -> None:
    """A statement run inside an old transaction must not see an expired session as live (now() would)."""

    async def scenario() -> None:
        async with opened(url) as store, store.pool.acquire() as conn:
            text = sql.SCHEMA_SQL + sql.GET + sql.TOUCH + sql.LIST + sql.COUNT_ALL + sql.COUNT_OWNER + sql.APPLY_FAST
            for frozen in ("now()", "current_timestamp", "transaction_timestamp", "localtimestamp"):
                assert frozen not in text.lower(), f"the store's SQL uses {frozen}, which freezes in a transaction"
            async with conn.transaction():
                await conn.execute("SELECT 1")  # the transaction's now() is fixed from here on
                created = await store.create({"a": 1}, ttl=0.3)
                await wait_for(lambda: db_passed(conn, created.expires_at), "the database clock passes expires_at")
                assert await conn.fetchval("SELECT now() < $1", created.expires_at), "now() should be frozen"
                row = await conn.fetchrow(sql.GET, store.namespace, created.id)
                assert row is None or not row["live"], (
                    "TTL-4: get inside an old transaction still sees the expired session: expiry uses now()")
                row = await conn.fetchrow(sql.APPLY, store.namespace, created.id, "{}", [], [], None)
                assert row["status"] == 1, "LC-3: apply inside an old transaction wrote to an expired session"
                assert await conn.fetchval(sql.COUNT_ALL, store.namespace) == 0, (
                    "LS-2: count inside an old transaction still counts the expired session")

    asyncio.run(scenario())


def test_writes_to_a_live_session_are_hot_updates(url: str) -> None:
    """Sliding expiry moves expires_at on every write; the indexes hold its minute (expiry_slot),
    so all but the write that crosses into a new minute touch no index (a HOT update)."""

    async def scenario() -> None:
        async with opened(url) as store, store.pool.acquire() as conn:
            session = await store.create({"n": 0}, owner="o", ttl=3600)
            async with conn.transaction():  # pg_stat_xact_* counts this transaction's own updates
                for i in range(50):
                    await conn.fetchrow(sql.APPLY_FAST_SET, store.namespace, session.id, f'{{"n": {i}}}', None)
                    await conn.fetchrow(sql.SAVE, store.namespace, session.id, f'{{"n": {i}}}', None, True, None)
                    await conn.fetchrow(sql.SAVE_FAST, store.namespace, session.id, f'{{"n": {i}}}', None, True, None)
                    await conn.fetchrow(sql.TOUCH, store.namespace, session.id, True, None)
                stats = await conn.fetchrow("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                                            "WHERE schemaname = 'sessionspec' AND relname = 'sessions'")
            assert stats["n_tup_upd"] == 200
            assert stats["n_tup_hot_upd"] >= 190, (
                f"only {stats['n_tup_hot_upd']} of 200 writes to one live session were HOT updates: an index "
                "holds a column every write changes (expires_at, updated_at, version)")

    asyncio.run(scenario())


def test_the_expiry_slot_column_and_function_agree(url: str) -> None:
    """The column spells out the function's expression (for speed); counts compare one with the other."""

    async def scenario() -> None:
        async with opened(url) as store, store.pool.acquire() as conn:
            for ttl in (None, 0.001, 0.3, 59.999, 60, 3600, 86400 * 365.25, 1e10):  # 1e10: the longest ttl (TTL-0)
                await store.create({}, ttl=ttl)
            rows = await conn.fetch("SELECT expires_at, expiry_slot, sessionspec.expiry_slot(expires_at) AS f, "
                                    "floor(extract(epoch FROM expires_at) / 60)::bigint AS epoch "
                                    "FROM sessionspec.sessions WHERE namespace = $1", store.namespace)
            assert len(rows) == 8
            for row in rows:
                assert row["expiry_slot"] == row["f"] == row["epoch"], dict(row)

    asyncio.run(scenario())


def test_state_is_compressed_with_lz4_where_the_server_has_it(url: str) -> None:
    async def scenario() -> None:
        async with opened(url) as store, store.pool.acquire() as conn:
            try:
                await conn.execute("CREATE TEMP TABLE lz4_probe (x text COMPRESSION lz4)")
            except (asyncpg.FeatureNotSupportedError, asyncpg.PostgresSyntaxError):
                pytest.skip("this server has no lz4: the store keeps the default compression")
            session = await store.create({"big": "x" * 10_000})
            method = await conn.fetchval("SELECT pg_column_compression(state) FROM sessionspec.sessions "
                                         "WHERE namespace = $1 AND id = $2", store.namespace, session.id)
            assert method == "lz4"

    asyncio.run(scenario())


def test_the_fast_paths_match_only_the_common_case_and_the_functions_take_the_rest(url: str) -> None:
    """save and append send one plain statement first; whatever it does not match (appended items to drop,
    a key's first append, a conflict, a dead session) the PL/pgSQL function decides, with the same result."""

    async def scenario() -> None:
        async with opened(url) as store, store.pool.acquire() as conn:
            ns = store.namespace
            s = await store.create({"log": [0], "n": 1}, ttl=60)
            assert await conn.fetchrow(sql.APPEND_FAST, ns, s.id, "log", "[1]", None) is None, "first append: no"
            first = await store.append(s.id, "log", [1])  # the function: log now continues in items
            assert await conn.fetchval("SELECT item_keys FROM sessionspec.sessions WHERE namespace = $1 AND id = $2",
                                       ns, s.id) == ["log"]
            fast = await conn.fetchrow(sql.APPEND_FAST, ns, s.id, "log", "[2]", first.version)
            assert fast is not None and fast["version"] > first.version, "a later append is one plain statement"
            assert await conn.fetchrow(sql.APPEND_FAST, ns, s.id, "log", "[3]", first.version) is None, "stale"
            with pytest.raises(VersionConflict):
                await store.append(s.id, "log", [3], expected_version=first.version)
            assert await conn.fetchrow(sql.SAVE_FAST, ns, s.id, '{"n": 2}', None, True, None) is None, (
                "save's fast path must leave a session with appended items to the function (it drops them)")
            saved = await store.save(s.id, {"n": 2, "log": ["new"]})
            got = await store.get(s.id)
            assert got is not None and got.state == {"n": 2, "log": ["new"]} and got.version == saved.version
            assert await conn.fetchval("SELECT count(*) FROM sessionspec.items WHERE namespace = $1", ns) == 0
            again = await store.save(s.id, {"n": 3}, expected_version=saved.version)  # the fast path, checked
            assert again.version > saved.version and (await store.get(s.id)).state == {"n": 3}  # type: ignore[union-attr]
            with pytest.raises(VersionConflict):
                await store.save(s.id, {"n": 4}, expected_version=saved.version)
            with pytest.raises(SessionNotFound):
                await store.save("missing", {"n": 4})
            with pytest.raises(SessionNotFound):
                await store.append("missing", "log", [1])

    asyncio.run(scenario())


# ---------------------------------------------------------------- plans
# Not here: count() of a whole namespace. When the namespace is most of the table (as in this
# test), reading the heap is as cheap as the (namespace, expiry_slot) index and the planner may
# rightly choose it; in a shared table, or once autovacuum has set the visibility map, the
# statement's range conditions make it an index-only scan over live rows (and the current minute's).
EXPLAINED = {
    "get": (sql.GET, ("x1",)),
    "touch": (sql.TOUCH, ("x1", True, None)),
    "list": (sql.LIST_ALL, ("x5", 100)),
    "list by owner": (sql.LIST_OWNER, ("", 100, "o7")),
    "count by owner": (sql.COUNT_OWNER, ("o7",)),
    "create": (sql.CREATE, ("x2", "o1", "{}", 60.0)),
    "save": (sql.SAVE, ("x3", '{"a": 1}', None, True, None)),
    "save, fast path": (sql.SAVE_FAST, ("x3", '{"a": 1}', None, True, None)),
    "apply": (sql.APPLY, ("x4", '{"b": 1}', ["c"], ["b", "c"], None)),
    "append": (sql.APPEND, ("x6", "log", "[1]", None)),
    "append, fast path": (sql.APPEND_FAST, ("x6", "log", "[1]", None)),
    "delete": (sql.DELETE, ("x7",)),
    "purge": (sql.PURGE, (1000,)),
}


def test_every_statement_uses_indexes_at_20000_rows_half_expired(url: str) -> None:
    async def scenario() -> None:
        async with opened(url) as store, store.pool.acquire() as conn:
            ns = store.namespace
            await conn.execute("""
                INSERT INTO sessionspec.sessions (namespace, id, owner, version, state, created_at, updated_at,
                                                  ttl, expires_at)
                SELECT $1, 'x' || g, 'o' || (g % 200), nextval('sessionspec.versions'),
                       jsonb_build_object('history', repeat('a chat message ', 30)), clock_timestamp(),
                       clock_timestamp(), 60, clock_timestamp() + CASE WHEN g % 2 = 0 THEN -60 ELSE 60 END
                                                                  * interval '1 second'
                  FROM generate_series(1, 20000) g""", ns)
            await conn.execute("ANALYZE sessionspec.sessions")
            plans: list[str] = []
            try:
                await conn.execute("LOAD 'auto_explain'")
            except asyncpg.InsufficientPrivilegeError:
                pytest.skip("auto_explain needs a superuser here; cannot see the plans inside the functions")
            await conn.execute("SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;"
                               "SET client_min_messages = log")
            def listen(_conn: object, message: Any) -> None:
                plans.append(message.message)

            conn.add_log_listener(listen)
            for name, (query, args) in EXPLAINED.items():
                plans.clear()
                for _ in range(7):  # past PL/pgSQL's switch to generic plans, which must use indexes too
                    tx = conn.transaction()
                    await tx.start()
                    await conn.fetch(query, ns, *args)
                    await tx.rollback()
                await conn.execute("SELECT 1")  # flush notices
                seq = [p for p in plans if "Seq Scan on sessions" in p or "Seq Scan on items" in p]
                assert plans, f"auto_explain reported no plan for {name}"
                assert not seq, f"{name} scans a whole table instead of using an index:\n{seq[0]}"
            conn.remove_log_listener(listen)
            await conn.execute("RESET ALL")  # the pool does not reset connections on release

    asyncio.run(scenario())


# ---------------------------------------------------------------- schema, pools, cancellation
def test_ten_stores_installing_the_schema_at_once_all_succeed_and_upgrades_replace_it(url: str) -> None:
    """Concurrent installs into a fresh database must not race on the catalog; a schema left by
    another release (another hash, a stale function overload) is replaced, not half-merged."""

    async def scenario() -> None:
        admin = await asyncpg.connect(url)
        db = f"sstest_{uuid.uuid4().hex[:10]}"
        try:
            await admin.execute(f'CREATE DATABASE "{db}"')
        except asyncpg.InsufficientPrivilegeError:
            await admin.close()
            pytest.skip("the server user may not CREATE DATABASE: cannot test a fresh install")
        fresh = url.rsplit("/", 1)[0] + f"/{db}"
        try:
            stores = await asyncio.gather(*(PostgresStore.connect(fresh, namespace=f"n{i}") for i in range(10)))
            created = await asyncio.gather(*(s.create({"i": i}) for i, s in enumerate(stores)))
            assert len({c.version for c in created}) == 10
            await asyncio.gather(*(s.aclose() for s in stores))
            older = await asyncpg.connect(fresh)  # pretend an older release installed the schema
            await older.execute("UPDATE sessionspec.meta SET value = 'older' WHERE name = 'schema'; "
                                "CREATE FUNCTION sessionspec.lock_live(text, text, bigint) "
                                "RETURNS sessionspec.outcome LANGUAGE sql AS 'SELECT NULL::sessionspec.outcome'")
            await older.close()
            upgraded = await PostgresStore.connect(fresh + "?application_name=upgrade", namespace="n0")
            try:  # a new DSN string: this process has not checked it yet, so it installs
                with pytest.raises(InvalidState):  # the append calls lock_live(3 args): not ambiguous
                    await upgraded.append(created[0].id, "i", [1])
            finally:
                await upgraded.aclose()
        finally:
            await admin.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
            await admin.close()

    asyncio.run(scenario())


def test_a_small_pool_queues_1000_concurrent_tasks(url: str) -> None:
    async def scenario() -> None:
        async with opened(url, max_size=4) as store:
            created = await store.create({})
            results = await asyncio.gather(*(store.apply(created.id, {f"k{i}": i}) for i in range(1000)))
            assert len({r.version for r in results}) == 1000
            got = await store.get(created.id)
            assert got is not None and got.state == {f"k{i}": i for i in range(1000)}
            assert store.pool.get_size() <= 4

    asyncio.run(scenario())


def test_waiting_behind_a_slow_but_working_pool_is_not_backend_unavailable(url: str) -> None:
    """Queueing longer than `timeout` is fine while calls keep completing (FL-1 is about outages).

    One connection, taken in turn (first come, first served) by writes to rows another
    connection holds locked for 0.6 s each, and by quick writes: the last quick write waits
    ~1.8 s, past the 1.2 s timeout, while some call completes every ~0.6 s."""

    async def scenario() -> None:
        hold, slow_n = 0.6, 3
        async with opened(url, max_size=1, timeout=2 * hold) as store:
            quick = await store.create({})
            slow = [await store.create({}) for _ in range(slow_n)]
            async with contextlib.AsyncExitStack() as stack:
                blockers = [await stack.enter_async_context(row_locked(url, store, s.id)) for s in slow]
                turns = [asyncio.create_task(store.apply(sid, {"k": k})) for k in range(slow_n)
                         for sid in (slow[k].id, quick.id)]
                for k, blocker in enumerate(blockers):
                    async def blocking(blocker: asyncpg.Connection = blocker, turn: Any = turns[2 * k]) -> bool:
                        return turn.done() or await blocked_by(blocker)

                    await wait_for(blocking, "a slow write waits for its lock (or has failed)")
                    await asyncio.sleep(hold)  # the workload: a slow statement, not synchronisation
                    await blocker.execute("ROLLBACK")
                results = await asyncio.gather(*turns, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            assert not failed, f"calls queued behind a working pool raised {failed[:2]}: FL-1 is about outages"

    asyncio.run(scenario())


WRITES: dict[str, Callable[[PostgresStore, str], Coroutine[Any, Any, Any]]] = {
    "apply": lambda s, sid: s.apply(sid, {"b": 2}),
    "save": lambda s, sid: s.save(sid, {"b": 2}),
    "append": lambda s, sid: s.append(sid, "log", [2]),
    "touch": lambda s, sid: s.touch(sid, ttl=None),
    "delete": lambda s, sid: s.delete(sid),
}


@pytest.mark.parametrize("op", list(WRITES))
def test_a_write_cancelled_while_blocked_changes_nothing_and_the_pool_stays_usable(url: str, op: str) -> None:
    async def scenario() -> None:
        async with opened(url, max_size=1) as store:
            created = await store.create({"a": 1}, ttl=60)
            await store.append(created.id, "log", [1])
            before = await store.get(created.id)
            async with row_locked(url, store, created.id) as blocker:
                task = asyncio.create_task(WRITES[op](store, created.id))
                await wait_for(lambda: blocked_by(blocker), f"{op} waits for the row lock")
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            after = await store.get(created.id)
            assert after == before, f"FL-4: a cancelled {op} changed the session: {before} -> {after}"
            applied = await store.apply(created.id, {"c": 3})  # the pool's only connection still works
            assert applied.state == {"a": 1, "log": [1], "c": 3}

    asyncio.run(scenario())


def test_apply_racing_an_append_returns_and_keeps_exactly_what_came_before_it(url: str) -> None:
    """The write functions read appended items after taking the row lock, so nothing is lost or revived."""

    async def scenario() -> None:
        async with opened(url) as store:
            created = await store.create({})
            await store.append(created.id, "log", [1])
            async with row_locked(url, store, created.id) as blocker:
                appending = asyncio.create_task(store.append(created.id, "log", [2]))
                await wait_for(lambda: blocked_by(blocker, 1), "append waits for the row lock")
                applying = asyncio.create_task(store.apply(created.id, {"x": 1}))
                await wait_for(lambda: blocked_by(blocker, 2), "apply waits in line for the row lock")
                await blocker.execute("ROLLBACK")
                appended, applied = await asyncio.gather(appending, applying)
            want = [1, 2] if applied.version > appended.version else [1]
            assert applied.state["log"] == want, f"CC-6: apply returned log {applied.state['log']}, expected {want}"
            got = await store.get(created.id)
            assert got is not None and got.state == {"log": [1, 2], "x": 1}

    asyncio.run(scenario())


# ---------------------------------------------------------------- CC-8: expiry is an event
READS_AND_WRITES: dict[str, Callable[[PostgresStore, str], Coroutine[Any, Any, Any]]] = {
    "get": lambda s, sid: s.get(sid),
    "touch": lambda s, sid: s.touch(sid),
    "save": lambda s, sid: s.save(sid, {"b": 2}),
    "apply": lambda s, sid: s.apply(sid, {"b": 2}),
    "append": lambda s, sid: s.append(sid, "log", [2]),
}


@contextlib.asynccontextmanager
async def expired_with_a_write_committing(url: str, store: PostgresStore) -> AsyncIterator[
        tuple[str, asyncpg.Connection]]:
    """A session whose committed row has expired, and another connection in the middle of a write
    that found it live a moment before (it holds the row lock, its new expiry not yet committed):
    the instant CC-8 failed in, held open until the block COMMITs or ROLLBACKs."""
    created = await store.create({"a": 1}, ttl=3600)
    await store.append(created.id, "log", [1])
    writer = await asyncpg.connect(url)
    try:
        await writer.execute("UPDATE sessionspec.sessions SET expires_at = clock_timestamp() - interval '1 s' "
                             "WHERE namespace = $1 AND id = $2", store.namespace, created.id)
        await writer.execute("BEGIN")
        await writer.execute("UPDATE sessionspec.sessions SET expires_at = clock_timestamp() + interval '1 h', "
                             "version = nextval('sessionspec.versions') WHERE namespace = $1 AND id = $2",
                             store.namespace, created.id)
        yield created.id, writer
    finally:
        await writer.close()


@pytest.mark.parametrize("op", list(READS_AND_WRITES))
def test_a_call_finding_a_session_expired_waits_for_a_write_that_found_it_live(url: str, op: str) -> None:
    """The write commits: the call must see it live (had it answered "gone" first, a call after it would
    find the session back: CC-8 failed this way under load, touch -> SessionNotFound, then get -> live)."""

    async def scenario() -> None:
        async with opened(url) as store, expired_with_a_write_committing(url, store) as (sid, writer):
            task = asyncio.create_task(READS_AND_WRITES[op](store, sid))
            await wait_for(lambda: _done_or_blocked(task, writer), f"{op} waits for the committing write")
            assert not task.done(), (
                f"{op} answered {task.result() if not task.exception() else task.exception()!r} while a write that "
                "found the session live was still committing: once it commits, the session is back")
            await writer.execute("COMMIT")
            result = await task
            assert result is not None, f"{op} answered gone, but the write that extended the session committed first"
            assert await store.get(sid) is not None

    asyncio.run(scenario())


@pytest.mark.parametrize("op", list(READS_AND_WRITES))
def test_a_call_that_answers_gone_for_an_expired_session_has_deleted_it_first(url: str, op: str) -> None:
    """The write rolls back: the call answers gone, and by then the row and its items are deleted, so
    no write that found the session live before the expiry can commit after it."""

    async def scenario() -> None:
        async with opened(url) as store, expired_with_a_write_committing(url, store) as (sid, writer):
            task = asyncio.create_task(READS_AND_WRITES[op](store, sid))
            await wait_for(lambda: _done_or_blocked(task, writer), f"{op} waits for the committing write")
            await writer.execute("ROLLBACK")
            if op == "get":
                assert await task is None
            else:
                with pytest.raises(SessionNotFound):
                    await task
            rows = await writer.fetchval(
                "SELECT (SELECT count(*) FROM sessionspec.sessions WHERE namespace = $1 AND id = $2)"
                "     + (SELECT count(*) FROM sessionspec.items WHERE namespace = $1 AND id = $2)",
                store.namespace, sid)
            assert rows == 0, f"{op} answered gone but left the expired session's rows ({rows}) for a write to revive"

    asyncio.run(scenario())


async def _done_or_blocked(task: asyncio.Task[Any], writer: asyncpg.Connection) -> bool:
    return task.done() or await blocked_by(writer)


def test_backend_unavailable_while_stopped_then_the_same_store_recovers(server: Server) -> None:
    if not server.controllable:
        pytest.skip(f"the server ({server.method}) cannot be stopped by this test")

    async def scenario() -> None:
        async with opened(server.url, timeout=2.0) as store:
            created = await store.create({"a": 1})
            await asyncio.to_thread(server.stop)
            try:
                for attempt in (store.get(created.id), store.apply(created.id, {"b": 1}), store.count()):
                    started = time.monotonic()
                    with pytest.raises(BackendUnavailable):
                        await attempt
                    assert time.monotonic() - started < 4.5, "FL-1: BackendUnavailable took longer than the timeout"
            finally:
                await asyncio.to_thread(server.start)
            got = await store.get(created.id)
            assert got is not None and got.state == {"a": 1}, "FL-2/FL-3: after a restart the store lost the session"
            with pytest.raises(SessionNotFound):
                await store.touch("never-created")

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def serializable_url(server: Server) -> str:
    """A database of the server whose default_transaction_isolation is SERIALIZABLE (some shops set it)."""
    return database_with(server.url, default_transaction_isolation="serializable")


def test_a_write_that_waited_for_a_row_lock_succeeds_on_a_serializable_database(serializable_url: str) -> None:
    """The store's statements rely on READ COMMITTED (a write that waited re-checks the newest row): on a
    SERIALIZABLE database they raised SerializationError (10 clauses failed), so connect() asks for it."""

    async def scenario() -> None:
        async with opened(serializable_url) as store:
            assert await store.pool.fetchval("SHOW transaction_isolation") == "read committed"
            session = await store.create({"a": 1})
            async with row_locked(serializable_url, store, session.id) as holder:
                await holder.execute("UPDATE sessionspec.sessions SET updated_at = updated_at "
                                     "WHERE namespace = $1 AND id = $2", store.namespace, session.id)
                write = asyncio.create_task(store.apply(session.id, {"b": 2}))
                await wait_for(lambda: blocked_by(holder), "the apply waits for the row lock")
                await holder.execute("COMMIT")
                applied = await write
            assert applied.state == {"a": 1, "b": 2} and applied.version > session.version

    asyncio.run(scenario())


def test_a_pool_built_by_the_caller_that_runs_serializable_is_refused_naming_the_setting(
        serializable_url: str) -> None:
    async def scenario() -> None:
        pool = await asyncpg.create_pool(serializable_url, min_size=1, max_size=2)
        try:
            store = PostgresStore(pool, namespace=f"t{uuid.uuid4().hex[:12]}")
            for call in (lambda: store.create({"a": 1}), lambda: store.get("x")):
                with pytest.raises(ValueError, match=r"READ COMMITTED.*SERIALIZABLE.*default_transaction_isolation"):
                    await call()
            fixed = await asyncpg.create_pool(serializable_url, min_size=1, max_size=2,
                                              server_settings={"default_transaction_isolation": "read committed"})
            try:
                works = PostgresStore(fixed, namespace=store.namespace)
                created = await works.create({"a": 1})
                assert (await works.get(created.id)) == created
                await drop_namespace(works, works.namespace)
            finally:
                await fixed.close()
        finally:
            await pool.close()

    asyncio.run(scenario())
