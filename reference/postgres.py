"""PostgresStore: sessions in PostgreSQL through asyncpg (core, atomic, listing, shared, durable).

Design (the schema and write functions live in ``postgres_schema.sql``):

* One shared table, ``sessionspec.sessions``, keyed by ``(namespace, id)``, not a table per
  namespace: the suite opens a namespace per test, and DDL per namespace would be slow,
  bloat the catalog and race. The schema is installed once per process per DSN, under
  ``pg_advisory_xact_lock``, and only when the hash recorded in ``sessionspec.meta`` differs
  from this release's SQL, so many stores starting at once never race on the catalog.
* Indexes: the primary key serves get, writes and list paging by id; a partial index
  ``(namespace, owner, id)`` serves per-owner list (in id order); ``(namespace, owner,
  expiry_slot)`` and ``(namespace, expiry_slot)`` serve count (per owner and overall) and
  purge. ``expiry_slot`` is the minute ``expires_at`` falls in (a stored generated column):
  sliding expiry moves ``expires_at`` on every write, and an indexed column that changes
  rules out a HOT update, so every write would add an entry to every index; the slot moves
  once a minute. Slots after the current one are live and before it dead, index-only; only
  the current minute's rows are checked against ``expires_at`` in the heap. A per-owner query
  reads that owner's rows only, so it does not grow with the table. ``count()`` of a whole
  namespace is O(live sessions) by design (an index-only count: 17 ms at 500,000 live, see
  docs/spec.md LS-2): exact and sub-linear would need a counter row that every write of the
  namespace updates, which would serialise them.
* Every write is one call of a PL/pgSQL function: one round trip, atomic (one implicit
  transaction), and not-found / version conflict / exists / not-a-list are told apart in
  that same call. Exceptions, for speed: ``save``, ``apply`` and ``append`` first send their
  fast path as one plain statement (a function call costs ~15% more server CPU, and its
  composite result more client CPU), which matches only the common case: a live session at
  the expected version with no appended items (save, apply) or whose key already continues
  in ``sessionspec.items`` (append). When no row comes back they call the function, which
  tells the cases apart (2 round trips only then). Expiry is decided on the database's clock
  (``clock_timestamp()``, read once per call, or for the fast paths ``statement_timestamp()``;
  never ``now()``, which a long transaction would freeze; never the app's).
* CC-8: a write decides "live" on its snapshot a moment before it locks the row and commits,
  so a call that merely saw the row expired could answer "gone" while such a write was about
  to commit, and the session would be back. So expiry is made an event: a call that finds a
  session expired (get, touch, or a write's function) deletes the row, if still expired, before
  it answers "gone"; whichever locks the row first wins, the write or the delete (2 round trips
  only for an expired row, which is then gone). Lists and counts only skip expired rows.
* Versions come from one sequence, so they increase per session and never repeat across
  incarnations (VER-1, VER-2).
* ST-1: ``jsonb`` cannot hold ``\\u0000``, so strings (values and keys, at any depth) that
  contain it or start with the private-use mark U+E000 are stored as U+E000 + the string
  with U+E000 -> U+E000 U+E001 and NUL -> U+E000 U+E002. The mapping is a bijection applied
  identically to the keys of ``apply`` and ``append``, so ``state - deleted || changes`` stays
  server-side and atomic. ``jsonb`` keeps numbers as exact decimals and prints them without
  exponents; floats the JSON encoder would write as ``1e+16`` are sent as ``10000000000000000.0``
  so they come back as floats, and every int in int64 comes back an int.
* MG-5: appending to a jsonb array rewrites (and re-TOASTs) the whole document: measured
  0.14 ms on an empty list vs 20 ms at 10,000 messages. So each append is a row in
  ``sessionspec.items`` (the session row keeps the head of the list and, in ``item_keys``, the
  keys that continue there): append costs O(items appended) (measured 0.38 ms at 0 and at
  10,000 messages) and ``get`` reassembles the list. The functions touch items only after
  locking the session row, and each of their statements takes a fresh snapshot, so an apply
  or save never misses or revives an append that committed just before it. ``apply``'s plain
  ``UPDATE`` never reads items: it requires ``item_keys`` to be empty, a condition PostgreSQL
  re-checks on the newest row version after waiting for the lock (EvalPlanQual), so an append
  that committed meanwhile makes it match nothing and the function takes over.
* Isolation: every statement is written for READ COMMITTED (a write that waited for a row lock
  re-checks its WHERE on the newest row version). ``connect`` asks for it on its connections
  whatever the server's ``default_transaction_isolation``; a pool the caller built that runs
  REPEATABLE READ or SERIALIZABLE is refused on first use with a ValueError naming the setting
  (under those, waits became SerializationError: 10 clauses failed on a serializable database).
* Failures: refused or lost connections, timeouts and server shutdowns raise BackendUnavailable
  (chained). Each statement may run ``timeout`` seconds. Calls queue first come, first served
  for the pool's connections and wait as long as calls keep completing (1000 tasks on 20
  connections is load, not an outage), giving up once none completed for ``timeout``. The
  pool drops dead connections and reconnects, so the same store works again when the server
  returns (FL-2). A call is one statement (save, apply, append: at most two, of which only the
  one that matched writes): cancelled, it committed entirely or not at all (FL-4). Connections are not
  reset on release (the store leaves no session state), which saves a round trip per call:
  1 round trip per operation (save, apply, append: 2 when the fast path misses).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

import asyncpg

from sessionspec.conformance.contract import (
    DELETE,
    KEEP,
    BackendUnavailable,
    InvalidState,
    Keep,
    Page,
    Session,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    TtlArg,
    VersionConflict,
)
from sessionspec.conformance.validation import (
    json_path,
    validate_cursor,
    validate_expected_version,
    validate_id,
    validate_key,
    validate_limit,
    validate_owner,
    validate_ttl,
)

from . import postgres_sql as sql
from ._json import validated_items, validated_sets, validated_state
from .memory import new_session_id

__all__ = ["PostgresStore"]

PURGE_BATCH: Final = 1000
QUEUE_LIMIT: Final = 12
"""A call queued behind a busy but working pool waits at most this many timeouts."""
EXPIRY_RACES: Final = 8
"""get/touch read again when a session found expired was extended first; each retry needs another write
to extend it and it to expire again in between, so this bound is never reached in practice."""
_READY: set[str] = set()  # DSNs whose schema this process has checked

RELEASE_LIMIT: Final = 0.5
"""Seconds a release may wait for asyncpg's cancel request after a timeout or cancel before the connection
is dropped: FL-1's bound (5 s, plus 1 s of measurement slack) must hold against a stalled server."""
UNAVAILABLE: Final = (
    OSError,  # refused, reset, unreachable (TimeoutError is one too)
    asyncpg.InterfaceError,  # connection closed, pool closed
    asyncpg.PostgresConnectionError,  # 08xxx, e.g. ConnectionDoesNotExistError
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: shutdown, CannotConnectNowError
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: TooManyConnectionsError
)
CANNOT_HOLD: Final = (asyncpg.DataError, asyncpg.exceptions.ProgramLimitExceededError)
ISOLATION: Final = "read committed"
"""The store's statements are written for READ COMMITTED: a write that waited for a row lock re-checks its
WHERE on the newest row version (EvalPlanQual) instead of failing. Under REPEATABLE READ or SERIALIZABLE
(a server's or database's ``default_transaction_isolation``) the same waits raise SerializationError
(measured: 10 clauses failed on a serializable database), so the store's own pools always ask for it."""


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Pool reset on release: the store leaves no session state (no SET, LISTEN, cursors or
    session locks; asyncpg still rolls back an open transaction), so skip asyncpg's default
    reset query, which would add a round trip to every operation."""


def _info(id: str, row: Mapping[str, Any]) -> SessionInfo:
    return SessionInfo(id, row["owner"], row["version"], row["created_at"], row["updated_at"],
                       row["expires_at"], row["ttl"])


def _session(id: str, row: Mapping[str, Any]) -> Session:
    state: dict[str, Any] = sql.decode_json(row["state"])
    if row["tails"] is not None:
        for key, items in sql.decode_json(row["tails"]):
            state.setdefault(key, []).extend(items)
    return Session(id, row["owner"], row["version"], row["created_at"], row["updated_at"],
                   row["expires_at"], row["ttl"], state)


class _Gate:
    """First-come-first-served admission to the pool's connections. Unlike asyncpg's acquire
    timeout (which cancels a wait and so sends the caller to the back of the queue) a wait here
    lasts while calls keep completing, up to ``limit``; one watchdog timer serves all waiters."""

    def __init__(self, size: int, timeout: float, limit: float, progress: Callable[[], float]) -> None:
        self.free, self.timeout, self.limit, self.progress = size, timeout, limit, progress
        self.waiters: collections.deque[tuple[asyncio.Future[None], float]] = collections.deque()
        self.watchdog: asyncio.TimerHandle | None = None

    async def enter(self) -> None:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((turn, time.monotonic()))
        if self.watchdog is None:
            self._check()
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self.leave()  # our turn came as we were cancelled: pass it on
            raise

    def leave(self) -> None:
        while self.waiters:
            turn, _ = self.waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1

    def _check(self) -> None:
        self.watchdog = None
        while self.waiters:
            turn, started = self.waiters[0]
            # a waiter gives up after `timeout` with no call completed (an outage), or after `limit`
            deadline = min(max(self.progress(), started) + self.timeout, started + self.limit)
            if not turn.done() and deadline > time.monotonic():
                self.watchdog = asyncio.get_running_loop().call_later(deadline - time.monotonic(), self._check)
                return
            self.waiters.popleft()
            if not turn.done():
                turn.set_exception(TimeoutError("no pooled connection came free in time"))


class PostgresStore:
    """Sessions in one PostgreSQL table, shared by every instance and process using the DSN.

    ``PostgresStore(pool, namespace=...)`` uses a pool you own (the schema is ensured on first
    use); ``await PostgresStore.connect(dsn, namespace=...)`` makes a pool that ``aclose`` closes.
    """

    capabilities: frozenset[str] = frozenset({"core", "atomic", "listing", "shared", "durable"})

    def __init__(self, pool: asyncpg.Pool, *, namespace: str, default_ttl: float | None = None,
                 timeout: float = 5.0, dsn: str | None = None) -> None:
        default = validate_ttl(default_ttl, allow_keep=False)
        assert not isinstance(default, Keep)
        self.pool = pool
        self.namespace = validate_id(namespace)
        self.default_ttl: float | None = default
        self.timeout = float(timeout)
        self._schema_key = dsn
        self._ready = dsn is not None and dsn in _READY
        self._owns_pool = False
        self._progress = time.monotonic()  # when a call last completed: the pool is alive
        self._gate = _Gate(pool.get_max_size(), self.timeout, QUEUE_LIMIT * self.timeout, lambda: self._progress)

    @classmethod
    async def connect(cls, dsn: str, *, namespace: str, min_size: int = 1, max_size: int = 20,
                      default_ttl: float | None = None, timeout: float = 5.0,  # noqa: ASYNC109 - a store setting
                      **pool_options: Any) -> PostgresStore:
        """A ready store on a pool of its own (closed by aclose); the schema is ensured once per DSN."""
        settings = {**(pool_options.pop("server_settings", None) or {}), "default_transaction_isolation": ISOLATION}
        options: dict[str, Any] = {"timeout": timeout, "command_timeout": timeout, "reset": _no_reset,
                                   "server_settings": settings, **pool_options}
        try:
            async with asyncio.timeout(timeout):
                pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, **options)
        except UNAVAILABLE as exc:
            raise BackendUnavailable(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
        store = cls(pool, namespace=namespace, default_ttl=default_ttl, timeout=timeout, dsn=dsn)
        store._owns_pool = True
        try:
            await store._ensure_schema()
        except BaseException:
            pool.terminate()
            raise
        return store

    # -- plumbing -----------------------------------------------------------------------
    async def _ensure_schema(self) -> None:
        try:
            async with self.pool.acquire(timeout=self.timeout) as conn, asyncio.timeout(max(self.timeout, 60.0)):
                level = ISOLATION if self._owns_pool else await conn.fetchval("SHOW transaction_isolation")
                if level != ISOLATION:  # a pool the caller built: say so, never fail later on every busy row
                    raise ValueError(
                        f"PostgresStore needs {ISOLATION.upper()} transactions, but this pool's connections run "
                        f"{str(level).upper()} (the server's or database's default_transaction_isolation): build "
                        f"the pool with server_settings={{'default_transaction_isolation': '{ISOLATION}'}}, or use "
                        "PostgresStore.connect, which does")
                await sql.install_schema(conn)
        except UNAVAILABLE as exc:
            raise BackendUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}: {exc}") from exc
        self._ready = True
        if self._schema_key is not None:
            _READY.add(self._schema_key)

    async def _run(self, method: str, query: str, *args: Any) -> Any:
        """One statement on a pooled connection; driver failures become contract errors."""
        if not self._ready:
            await self._ensure_schema()
        try:
            waited_from = time.monotonic()
            await self._gate.enter()
            try:  # the gate admitted us, so a connection is free (or connecting, under its own timeout)
                # A turn handed over by a call that just timed out is no sign of life: the budget runs from
                # the last completed call (or our arrival), so a stalled server fails queued calls in time too.
                budget = min(self.timeout, max(self._progress, waited_from) + self.timeout - time.monotonic())
                if budget <= 0:
                    raise TimeoutError
                # asyncio.timeout, not acquire(timeout=): asyncpg bounds that with wait_for, a new Task per call
                async with asyncio.timeout(budget):
                    conn = await self.pool.acquire()
                try:
                    # the release after a timeout may take RELEASE_LIMIT: keep the whole call within budget
                    result = await getattr(conn, method)(query, *args,
                                                         timeout=max(budget - RELEASE_LIMIT, RELEASE_LIMIT))
                except (TimeoutError, asyncio.CancelledError, *UNAVAILABLE):
                    await self._release_or_drop(conn)
                    raise
                await self.pool.release(conn)
            finally:
                self._gate.leave()
        except TimeoutError as exc:
            raise BackendUnavailable(f"PostgreSQL did not answer within {self.timeout:g} s") from exc
        except UNAVAILABLE as exc:
            raise BackendUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}: {exc}") from exc
        except CANNOT_HOLD as exc:
            raise InvalidState(f"PostgreSQL cannot store this value: {exc}") from exc
        self._progress = time.monotonic()
        return result

    async def _release_or_drop(self, conn: Any) -> None:
        """Release after a timeout or cancel, but never wait long: asyncpg's release waits, without a
        timeout, for the cancel request it sends on a new connection, and a stalled server (a partition,
        a paused VM) never answers it. A live server answers at once (the statement is cancelled, so a
        cancelled write changes nothing); past RELEASE_LIMIT the connection is dropped instead."""
        release = asyncio.ensure_future(self.pool.release(conn))
        done, _ = await asyncio.wait({release}, timeout=RELEASE_LIMIT)
        if not done:
            conn.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(release, RELEASE_LIMIT)

    async def _expire_due(self, sid: str) -> bool:
        """Found expired (or missing): delete it if still expired, so no write that found it live a moment
        ago can commit after we answer "gone" (CC-8). False: a write extended it first; read it again."""
        return bool(await self._run("fetchval", sql.EXPIRE_DUE, self.namespace, sid))

    @staticmethod
    def _kept_racing(sid: str) -> BackendUnavailable:
        return BackendUnavailable(f"session {sid!r} kept expiring and being extended while it was read "
                                  f"({EXPIRY_RACES} tries); try again")

    @staticmethod
    def _outcome(id: str, row: Mapping[str, Any], expected: int | None = None, key: str = "") -> Mapping[str, Any]:
        status = row["status"]
        if status == 0:
            return row
        if status == 1:
            raise SessionNotFound(id)
        if status == 2:
            raise VersionConflict(id, expected if expected is not None else -1, row["version"])
        if status == 3:
            raise SessionExists(id)
        raise InvalidState(f"append needs a list, but the stored value is {row['detail']}", json_path("$", key))

    @staticmethod
    def _ttl_args(ttl: float | Keep | None) -> tuple[bool, float | None]:
        return (True, None) if isinstance(ttl, Keep) else (False, ttl)

    # -- the contract -------------------------------------------------------------------
    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        sid = new_session_id() if id is None else validate_id(id)
        own = validate_owner(owner)
        period = validate_ttl(ttl)
        data, text = validated_state({} if state is None else state)
        seconds = self.default_ttl if isinstance(period, Keep) else period
        row = await self._run("fetchrow", sql.CREATE, self.namespace, sid, own, sql.encode_state(data, text), seconds)
        row = self._outcome(sid, row)
        return Session(sid, own, row["version"], row["created_at"], row["updated_at"], row["expires_at"],
                       row["ttl"], data)

    async def get(self, id: str) -> Session | None:
        sid = validate_id(id)
        for _ in range(EXPIRY_RACES):
            row = await self._run("fetchrow", sql.GET, self.namespace, sid)
            if row is None:
                return None
            if row["live"]:
                return _session(sid, row)
            if await self._expire_due(sid):
                return None
        raise self._kept_racing(sid)

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        sid = validate_id(id)
        data, text = validated_state(state)
        expected = validate_expected_version(expected_version)
        keep, seconds = self._ttl_args(validate_ttl(ttl))
        args = (self.namespace, sid, sql.encode_state(data, text), expected, keep, seconds)
        row = await self._run("fetchrow", sql.SAVE_FAST, *args)
        if row is None:  # not found, expired, a conflict, or appended items to drop: the function tells
            row = self._outcome(sid, await self._run("fetchrow", sql.SAVE, *args), expected)
        return Session(sid, row["owner"], row["version"], row["created_at"], row["updated_at"],
                       row["expires_at"], row["ttl"], data)

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        sid = validate_id(id)
        delta, text = validated_sets(changes)
        expected = validate_expected_version(expected_version)
        if text is not None:  # nothing deleted: the text orjson wrote while validating is the changes'
            sets, deleted, changed = delta, [], sql.encode_state(delta, text)
        else:
            sets = {k: v for k, v in delta.items() if v is not DELETE}  # encode_json escapes the keys
            deleted = [sql.escape(k) for k, v in delta.items() if v is DELETE]
            changed = sql.encode_json(sets)
        if deleted:
            row = await self._run("fetchrow", sql.APPLY_FAST, self.namespace, sid, deleted, changed, expected)
        else:
            row = await self._run("fetchrow", sql.APPLY_FAST_SET, self.namespace, sid, changed, expected)
        if row is not None:
            return _session(sid, row)
        keys = [*map(sql.escape, sets), *deleted]
        row = await self._run("fetchrow", sql.APPLY, self.namespace, sid, changed, deleted, keys, expected)
        return _session(sid, self._outcome(sid, row, expected))

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        sid = validate_id(id)
        name = validate_key(key)
        values, text = validated_items(name, items)
        expected = validate_expected_version(expected_version)
        args = (self.namespace, sid, sql.escape(name), sql.encode_state(values, text), expected)
        row = await self._run("fetchrow", sql.APPEND_FAST, *args)
        if row is None:  # not found, expired, a conflict, not a list, or the key's first append
            row = self._outcome(sid, await self._run("fetchrow", sql.APPEND, *args), expected, name)
        return _info(sid, row)

    async def touch(self, id: str, *, ttl: TtlArg = KEEP) -> SessionInfo:
        sid = validate_id(id)
        keep, seconds = self._ttl_args(validate_ttl(ttl))
        for _ in range(EXPIRY_RACES):
            row = await self._run("fetchrow", sql.TOUCH, self.namespace, sid, keep, seconds)
            if row is not None:
                return _info(sid, row)
            if await self._expire_due(sid):
                raise SessionNotFound(sid)
        raise self._kept_racing(sid)

    async def delete(self, id: str) -> bool:
        sid = validate_id(id)
        return bool(await self._run("fetchval", sql.DELETE, self.namespace, sid))

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        own = validate_owner(owner)
        size = validate_limit(limit)
        after = validate_cursor(cursor)
        if after is not None:
            validate_id(after)  # cursors are ids; anything else cannot have come from a page
        args: list[Any] = [self.namespace, after or "", size + 1]
        if own is not None:
            args.append(own)
        rows = await self._run("fetch", sql.LIST_ALL if own is None else sql.LIST_OWNER, *args)
        items = [_info(row["id"], row) for row in rows[:size]]
        return Page(items, items[-1].id if len(rows) > size else None)

    async def count(self, *, owner: str | None = None) -> int:
        own = validate_owner(owner)
        if own is None:
            return int(await self._run("fetchval", sql.COUNT_ALL, self.namespace))
        return int(await self._run("fetchval", sql.COUNT_OWNER, self.namespace, own))

    async def purge_expired(self) -> int:
        total = 0
        while True:  # bounded batches: no long lock, no giant transaction
            removed = int(await self._run("fetchval", sql.PURGE, self.namespace, PURGE_BATCH))
            total += removed
            if removed < PURGE_BATCH:
                return total

    async def aclose(self) -> None:
        """Close the pool if ``connect`` made it; a pool passed in belongs to the caller."""
        if self._owns_pool and not self.pool.is_closing():
            try:
                await asyncio.wait_for(self.pool.close(), self.timeout)
            except (TimeoutError, *UNAVAILABLE):
                self.pool.terminate()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
