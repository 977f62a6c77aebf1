"""The contract on top of a framework store that keeps one JSON record per session.

Every adapter here maps a framework's session store onto five primitives — load, insert,
store, remove, scan — and this class turns them into the SessionStore contract. The
session's contract data (state, owner, ttl, version, timestamps) travels as one JSON
record inside whatever the framework stores (an ADK state key, the last item of an
Agents SDK history, a LangGraph store value), so every byte the suite checks went
through the framework's own serialisation and storage.

What the frameworks lack, this class emulates, and says so in ``EMULATED``:

- input validation (ID-3, ST-2, TTL-0) is ``sessionspec.conformance.validation``: no
  framework types its bad-input errors, so those clauses measure this layer, not theirs;
- versions: none of the frameworks has one; each incarnation starts at a random 62-bit
  base and counts up by one, so versions never repeat across incarnations (VER-2)
  except with negligible probability;
- expiry, for frameworks without native expiry: the record carries its period and its
  last write on this process's clock and is filtered on read (``native_ttl = False``); a
  call that finds a record expired removes it, under the id's lock, before it answers
  "gone", so no write that loaded it live can bring it back afterwards;
- ``apply``/``append``/``save`` are read-modify-writes serialised per session id inside
  one store instance (as ADK serialises its own appends per session); across instances
  only the framework's own conflict detection (``Stale``) protects them, and only
  adapters whose framework has one claim ``atomic``.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

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
    SessionStoreError,
    TtlArg,
    VersionConflict,
)
from sessionspec.conformance.validation import (
    json_path,
    validate_changes,
    validate_cursor,
    validate_expected_version,
    validate_id,
    validate_items,
    validate_key,
    validate_limit,
    validate_owner,
    validate_state,
    validate_ttl,
)

__all__ = ["AdapterStore", "Record", "Stale", "new_id"]

T = TypeVar("T")
VERSION_SPAN = 2**62
"""Random incarnation bases are drawn below this; +1 per write keeps them inside int64."""


class Stale(Exception):
    """The framework refused a write because the session changed since it was loaded."""


def new_id() -> str:
    """ID-1 for frameworks that generate no ids of their own: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class Record:
    """The contract's view of one session, as stored inside the framework (JSON)."""

    state: dict[str, Any]
    owner: str | None
    ttl: float | None
    version: int
    created: float
    updated: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def expires(self) -> float | None:
        return None if self.ttl is None else self.updated + self.ttl

    def live(self, now: float) -> bool:
        return self.ttl is None or now < self.updated + self.ttl

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "owner": self.owner, "ttl": self.ttl, "version": self.version,
                "created": self.created, "updated": self.updated}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        try:
            ttl = data["ttl"]
            return cls(dict(data["state"]), data["owner"], None if ttl is None else float(ttl), int(data["version"]),
                       float(data["created"]), float(data["updated"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionStoreError(f"the framework returned a record this adapter did not write: {exc!r}") from exc


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _info(id: str, r: Record) -> SessionInfo:
    expires = r.expires
    return SessionInfo(id, r.owner, r.version, _utc(r.created), _utc(r.updated),
                       None if expires is None else _utc(expires), r.ttl)


def _session(id: str, r: Record) -> Session:
    expires = r.expires
    return Session(id, r.owner, r.version, _utc(r.created), _utc(r.updated),
                   None if expires is None else _utc(expires), r.ttl, state=_copy(r.state))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class AdapterStore:
    """SessionStore over a framework's primitives; subclasses implement the ``_`` methods."""

    capabilities: frozenset[str] = frozenset({"core"})
    native_ttl: bool = False
    """True when the framework itself expires sessions; False: this class filters on read."""
    framework_ids: bool = False
    """True when create(id=None) lets the framework generate the id (passes None to _insert)."""
    connectivity_errors: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError)

    def __init__(self, namespace: str, *, default_ttl: float | None = None) -> None:
        self.namespace = namespace
        self.default_ttl = default_ttl
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._closed = False

    # ------------------------------------------------------------ framework primitives
    async def _load(self, id: str) -> tuple[Record, Any] | None:
        """The stored record (expired or not, when expiry is emulated) and a write token."""
        raise NotImplementedError

    async def _insert(self, id: str | None, record: Record) -> str:
        """Create the session; SessionExists when the framework says the id is taken."""
        raise NotImplementedError

    async def _store(self, id: str, record: Record, token: Any) -> None:
        """Write a new record for a loaded session; Stale/SessionNotFound when the framework refuses."""
        raise NotImplementedError

    async def _remove(self, id: str) -> None:
        raise NotImplementedError

    async def _scan(self) -> list[tuple[str, Record]]:
        """Every stored record of the namespace (listing)."""
        raise NotImplementedError

    async def _purge(self) -> int:
        """purge_expired for native expiry (emulated expiry is purged here from _scan)."""
        return 0

    async def _close(self) -> None:
        """Release the framework's resources."""

    def _classify(self, exc: Exception) -> SessionStoreError | None:
        """Map a framework/driver error to a contract error; None: not recognised."""
        return None

    # ------------------------------------------------------------ plumbing
    def _now(self) -> float:
        return time.time()

    async def _call(self, awaitable: Awaitable[T]) -> T:
        """Run one framework call; driver errors become contract errors (spec §4.4)."""
        try:
            return await awaitable
        except (SessionStoreError, Stale, NotImplementedError, asyncio.CancelledError):
            raise
        except Exception as exc:
            mapped = self._classify(exc)
            if mapped is None:
                if isinstance(exc, self.connectivity_errors):
                    mapped = BackendUnavailable(f"{type(exc).__name__}: {exc}")
                else:
                    mapped = SessionStoreError(f"the framework raised {type(exc).__name__}: {exc}")
            raise mapped from exc

    @asynccontextmanager
    async def _serial(self, id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(id) or (asyncio.Lock(), 0)
        self._locks[id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[id]
            if users <= 1:
                del self._locks[id]
            else:
                self._locks[id] = (lock, users - 1)

    async def _live(self, id: str) -> tuple[Record, Any] | None:
        """The live record, under the id's lock (held by the caller). One found expired is removed before the
        caller answers "gone": expiry is made an event, so a write of another instance that loaded it live
        and stores it later meets a missing session instead of bringing it back (CC-8)."""
        loaded = await self._call(self._load(id))
        if loaded is None or self.native_ttl or loaded[0].live(self._now()):
            return loaded
        await self._call(self._remove(id))
        return None

    def _check_version(self, expected: int | None) -> int | None:
        expected = validate_expected_version(expected)
        if expected is not None and "atomic" not in self.capabilities:
            raise NotImplementedError(
                f"{type(self).__name__} does not claim 'atomic': the framework has no conflict detection"
            )
        return expected

    async def _modify(self, id: str, change: Callable[[Record], Record], expected: int | None,
                      *, bump: bool = True) -> Record:
        async with self._serial(id):
            while True:
                loaded = await self._live(id)
                if loaded is None:
                    raise SessionNotFound(id)
                old, token = loaded
                if expected is not None and old.version != expected:
                    raise VersionConflict(id, expected, old.version)
                new = change(old)
                new = replace(new, version=old.version + (1 if bump else 0), updated=self._now())
                try:
                    await self._call(self._store(id, new, token))
                except Stale:
                    # Someone wrote in between. Not necessarily a new version: a touch rewrites the
                    # record with the same one, so reload and let the checks above decide (CC-6 saw
                    # VersionConflict(expected=v, actual=v) when this raised straight away).
                    continue
                return new

    # ------------------------------------------------------------ the contract
    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        plain = {} if state is None else validate_state(state)
        sid = None if id is None else validate_id(id)
        who = validate_owner(owner)
        period = validate_ttl(ttl)
        if isinstance(period, Keep):
            period = self.default_ttl
        now = self._now()
        record = Record(plain, who, period, secrets.randbelow(VERSION_SPAN), now, now)
        if sid is None and not self.framework_ids:
            sid = new_id()
        try:
            made = await self._call(self._insert(sid, record))
        except SessionExists:
            if sid is None or self.native_ttl:
                raise
            loaded = await self._call(self._load(sid))  # an expired leftover of emulated expiry?
            if loaded is None or loaded[0].live(self._now()):
                raise
            await self._call(self._remove(sid))
            now = self._now()  # the new incarnation starts now, not when this call began
            record = replace(record, created=now, updated=now)
            made = await self._call(self._insert(sid, record))
        return _session(made, record)

    async def get(self, id: str) -> Session | None:
        sid = validate_id(id)
        loaded = await self._call(self._load(sid))
        if loaded is not None and not (self.native_ttl or loaded[0].live(self._now())):
            # Found expired. A write of this instance may have loaded it live and be storing it now: wait
            # for it (the id's lock), then decide on a fresh read, so "gone" is never followed by "live".
            async with self._serial(sid):
                loaded = await self._live(sid)
        return None if loaded is None else _session(sid, loaded[0])

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        sid = validate_id(id)
        plain = validate_state(state)
        expected = self._check_version(expected_version)
        period = validate_ttl(ttl)

        def change(r: Record) -> Record:
            return replace(r, state=plain, ttl=r.ttl if isinstance(period, Keep) else period)

        return _session(sid, await self._modify(sid, change, expected))

    async def apply(self, id: str, changes: Mapping[str, Any], *, expected_version: int | None = None) -> Session:
        sid = validate_id(id)
        delta = validate_changes(changes)
        expected = self._check_version(expected_version)

        def change(r: Record) -> Record:
            state = dict(r.state)
            for key, value in delta.items():
                if value is DELETE:
                    state.pop(key, None)
                else:
                    state[key] = value
            return replace(r, state=state)

        return _session(sid, await self._modify(sid, change, expected))

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        sid = validate_id(id)
        name = validate_key(key)
        extra = validate_items(name, items)
        expected = self._check_version(expected_version)

        def change(r: Record) -> Record:
            current = r.state.get(name, [])
            if not isinstance(current, list):
                raise InvalidState(f"cannot append to a {type(current).__name__}", json_path("$", name))
            return replace(r, state={**r.state, name: [*current, *extra]})

        return _info(sid, await self._modify(sid, change, expected))

    async def touch(self, id: str, *, ttl: TtlArg = KEEP) -> SessionInfo:
        sid = validate_id(id)
        period = validate_ttl(ttl)

        def change(r: Record) -> Record:
            return replace(r, ttl=r.ttl if isinstance(period, Keep) else period)

        return _info(sid, await self._modify(sid, change, None, bump=False))

    async def delete(self, id: str) -> bool:
        sid = validate_id(id)
        async with self._serial(sid):
            loaded = await self._call(self._load(sid))
            if loaded is None:
                return False
            live = self.native_ttl or loaded[0].live(self._now())
            await self._call(self._remove(sid))
            return live

    async def _listed(self, owner: str | None) -> list[tuple[str, Record]]:
        now = self._now()
        rows = await self._call(self._scan())
        return sorted((id, r) for id, r in rows
                      if (self.native_ttl or r.live(now)) and (owner is None or r.owner == owner))

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        who = validate_owner(owner)
        size = validate_limit(limit)
        after = validate_cursor(cursor)
        rows = [(id, r) for id, r in await self._listed(who) if after is None or id > after]
        page = rows[:size]
        more = len(rows) > size
        return Page([_info(id, r) for id, r in page], page[-1][0] if more else None)

    async def count(self, *, owner: str | None = None) -> int:
        return len(await self._listed(validate_owner(owner)))

    async def purge_expired(self) -> int:
        if self.native_ttl:
            return await self._call(self._purge())
        gone = 0
        for id, r in await self._call(self._scan()):
            if r.live(self._now()):
                continue
            async with self._serial(id):  # re-read under the id's lock: concurrent purges count it once
                loaded = await self._call(self._load(id))
                if loaded is None or loaded[0].live(self._now()):
                    continue
                await self._call(self._remove(id))
                gone += 1
        return gone

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._close()

    async def __aenter__(self) -> AdapterStore:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


def minutes(ttl: float | None) -> float | None:
    """Seconds (the contract) to minutes (LangGraph's TTL unit), exactly as a float."""
    return None if ttl is None else ttl / 60.0


def whole_seconds(ttl: float | None) -> int | None:
    """Seconds to the whole seconds an int-typed TTL parameter takes, rounded up (never shorter)."""
    return None if ttl is None else max(1, math.ceil(ttl))
