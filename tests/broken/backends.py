"""Broken stores that need a real server: each a RedisStore or PostgresStore subclass with ONE bug.

They catch what only a backend can get wrong: a silent answer during an outage (FL-1),
KEYS behind count (HY-1), the app's naive clock against a database in another zone (HY-2),
data and expiry written in two steps (HY-3), an index that still counts expired ids (LS-2),
SCAN on some counts only (HY-1), and a CAS checked in Python with only the real round trip
between check and write, no forced interleaving (CC-6).
Importing this module needs the redis and asyncpg drivers; the tests skip without a server.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sessionspec.conformance.clauses import get_clause
from sessionspec.conformance.contract import (
    KEEP,
    BackendUnavailable,
    Keep,
    Session,
    SessionNotFound,
    TtlArg,
    VersionConflict,
)
from sessionspec.conformance.target_postgres import SESSION_SETTINGS
from sessionspec.conformance.targets import Target, netloc_with_port
from sessionspec.conformance.validation import validate_id, validate_owner, validate_ttl
from sessionspec.reference import postgres, postgres_sql
from sessionspec.reference.memory import MemoryStore
from sessionspec.reference.postgres import PostgresStore
from sessionspec.reference.redis import RedisStore

__all__ = ["BACKEND_BROKEN", "BackendCase"]

POOL_MAX_SIZE = 20


@dataclasses.dataclass(frozen=True, slots=True)
class BackendCase:
    """A broken server-backed store, the backend kind it needs, and the clauses that must catch it."""

    name: str
    kind: str
    store: type[RedisStore] | type[PostgresStore]
    clauses: tuple[str, ...]
    description: str

    def target(self, base: Target) -> Target:
        """The real target of ``kind`` (its server and backdoors) opening this broken store instead."""
        url = base.process_spec
        assert url is not None, f"the {self.kind} target names no URL"
        store = self.store

        def factory_for(at: str) -> Callable[[str], Any]:
            async def factory(namespace: str) -> RedisStore | PostgresStore:
                if issubclass(store, RedisStore):
                    opened = store.from_url(at, namespace=namespace)
                    try:
                        return await opened.probe()
                    except BaseException:
                        await opened.aclose()
                        raise
                return await store.connect(at, namespace=namespace, max_size=POOL_MAX_SIZE,
                                           server_settings=SESSION_SETTINGS)

            return factory

        via_port = None if base.via_port is None else (lambda port: factory_for(netloc_with_port(url, port)))
        return dataclasses.replace(base, spec=f"tests.broken.backends:{self.name}",
                                   description=f"broken store {self.name}: {self.description}",
                                   factory=factory_for(url), via_port=via_port, process_spec=None, closers=[])


BACKEND_BROKEN: dict[str, BackendCase] = {}
S = TypeVar("S", bound=type[Any])


def broken_on(kind: str, *clauses: str) -> Callable[[S], S]:
    """Register a broken server-backed store; its docstring's first line names the bug."""
    for cid in clauses:
        get_clause(cid)

    def register(cls: S) -> S:
        name = "".join(f"_{c.lower()}" if c.isupper() else c for c in cls.__name__).lstrip("_")
        doc = (inspect.getdoc(cls) or "").split("\n", 1)[0]
        BACKEND_BROKEN[name] = BackendCase(name, kind, cls, tuple(clauses), doc)
        return cls

    return register


class _OutageAsMissing:
    """get() answers None when the backend is down: callers start a fresh session and lose the old one."""

    async def get(self, id: str) -> Session | None:
        try:
            return await super().get(id)  # type: ignore[misc, no-any-return]
        except BackendUnavailable:
            return None


@broken_on("redis", "FL-1")
class RedisGetHidesOutage(_OutageAsMissing, RedisStore):
    """get() reports "no such session" while Redis is down, instead of raising BackendUnavailable."""


@broken_on("postgres", "FL-1")
class PostgresGetHidesOutage(_OutageAsMissing, PostgresStore):
    """get() reports "no such session" while PostgreSQL is down, instead of raising BackendUnavailable."""


@broken_on("redis", "FL-1")
class RedisWithoutDeadline(RedisStore):
    """No socket timeout and no deadline (timeout=1 h): fails fast on a refused connection, hangs on a stalled one."""

    @classmethod
    def from_url(cls, url: str, *, namespace: str, **options: Any) -> RedisStore:
        return super().from_url(url, namespace=namespace, timeout=3600.0)


_FALLBACK_OPERATIONS = ("create", "get", "save", "apply", "append", "touch", "delete", "list", "count",
                        "purge_expired")


@broken_on("redis", "FL-1")
class RedisFallsBackToMemory(RedisStore):
    """While Redis is down every operation silently uses a per-process MemoryStore (a different answer per server)."""

    def __getattribute__(self, name: str) -> Any:
        method = super().__getattribute__(name)
        if name not in _FALLBACK_OPERATIONS:
            return method

        async def with_fallback(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except BackendUnavailable:
                fallback = vars(self).setdefault("_fallback", MemoryStore())
                return await getattr(fallback, name)(*args, **kwargs)

        return with_fallback


@broken_on("redis", "HY-1")
class RedisCountWalksKeys(RedisStore):
    """count() runs KEYS over the namespace (correct numbers, but it blocks Redis while walking every key)."""

    async def count(self, *, owner: str | None = None) -> int:
        own = validate_owner(owner)
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "s:*"
        keys = await self.client.keys(pattern)
        if own is None:
            return len(keys)
        owners = [await self.client.hget(key, "o") for key in keys]
        return sum(1 for o in owners if o is not None and (o.decode() if isinstance(o, bytes) else o) == own)


@broken_on("redis", "LS-2", "TTL-4")
class RedisCountFromIdIndex(RedisStore):
    """count() is ZCARD of the id index, which still holds expired ids until a purge."""

    async def count(self, *, owner: str | None = None) -> int:
        own = validate_owner(owner)
        return int(await self.client.zcard(self.prefix + ("ids" if own is None else "oi:" + own)))


@broken_on("redis", "HY-3")
class RedisExpirySetInSecondStep(RedisStore):
    """create() writes the session without expiry, then sets the ttl in a second call (touch)."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        period = validate_ttl(ttl)
        seconds = self.default_ttl if isinstance(period, Keep) else period
        session = await super().create(state, id=id, owner=owner, ttl=None)
        if seconds is None:
            return session
        info = await self.touch(session.id, ttl=seconds)  # a cancellation between the two leaves it immortal
        return dataclasses.replace(session, updated_at=info.updated_at, expires_at=info.expires_at, ttl=info.ttl)


_GET_ON_APP_CLOCK = postgres_sql.GET.replace("clock_timestamp()", "$3::timestamp")


@broken_on("postgres", "HY-2", "TTL-1")
class PostgresGetOnAppClock(PostgresStore):
    """get() compares expiry with the app's naive UTC clock, which PostgreSQL reads in its own zone (UTC+14)."""

    async def get(self, id: str) -> Session | None:
        sid = validate_id(id)
        now = datetime.now(UTC).replace(tzinfo=None)  # naive: the database takes it as its local time
        row = await self._run("fetchrow", _GET_ON_APP_CLOCK, self.namespace, sid, now)
        return None if row is None or not row["live"] else postgres._session(sid, row)


@broken_on("redis", "HY-1")
class RedisCountSometimesScans(RedisStore):
    """count() also walks the namespace with SCAN on every 10th call (an index "drift check"): right numbers,
    most listings clean, some walking the whole keyspace."""

    async def count(self, *, owner: str | None = None) -> int:
        calls = vars(self)["_counted"] = vars(self).get("_counted", 0) + 1
        if calls % 10 == 0:
            pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "s:*"
            walked = [key async for key in self.client.scan_iter(match=pattern, count=1000)]
            vars(self)["_walked"] = len(walked)
        return await super().count(owner=owner)


@broken_on("redis", "CC-6")
class RedisCasCheckedInPython(RedisStore):
    """save() with expected_version GETs the session, compares the version in Python, then writes without it:
    no forced interleaving here, only the real round trip between the check and the write."""

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        if expected_version is not None:
            current = await self.get(id)
            if current is None:
                raise SessionNotFound(id)
            if current.version != expected_version:
                raise VersionConflict(id, expected_version, current.version)
        return await super().save(id, state, ttl=ttl)


CONFORMING: dict[str, BackendCase] = {}
"""Stores that look odd but keep the contract: the named clauses must PASS on them (no false alarm)."""
CENTURY_MS = 100 * 365 * 24 * 3600 * 1000


class RedisCenturyForPermanent(RedisStore):
    """Permanent (ttl=None) sessions are written with a 100-year EXPIRE, as stores that always set one do."""

    async def _century(self, session: Any) -> Any:
        if session.ttl is None:
            await self.client.pexpire(self.session_key(session.id), CENTURY_MS)
        return session

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        return await self._century(await super().create(state, id=id, owner=owner, ttl=ttl))  # type: ignore[no-any-return]

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        return await self._century(  # type: ignore[no-any-return]
            await super().save(id, state, expected_version=expected_version, ttl=ttl))

    async def touch(self, id: str, *, ttl: TtlArg = KEEP) -> Any:
        return await self._century(await super().touch(id, ttl=ttl))


CONFORMING["redis_century_for_permanent"] = BackendCase(
    "redis_century_for_permanent", "redis", RedisCenturyForPermanent, ("HY-3",),
    "permanent sessions carry a 100-year backend expiry (HY-3 forbids only data that should expire and cannot)")
