"""SessionManager: what an agent or chat application calls, on top of any conforming SessionStore.

It adds what the storage contract leaves to the application: get_or_create by composite
key (exactly once, across instances), idle plus absolute timeouts, expiry callbacks and
per-session resources, safe read-modify-write, parallel branches, per-owner limits, chats
and scoped state. It only speaks the SessionStore protocol, so it runs on any store; each
feature names the capability it needs and raises CapabilityMissing without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal

from sessionspec.conformance.contract import (
    KEEP,
    Session,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    SessionStore,
    TtlArg,
    VersionConflict,
)
from sessionspec.conformance.validation import validate_key, validate_owner, validate_ttl
from sessionspec.reference.memory import clone_json

from .errors import CapabilityMissing, ManagerClosed, ManagerError
from .events import Events, Listener
from .keys import KeyPart, key_id
from .lifecycle import RECHECK, ExpirySchedule, Sweeper, Tracked
from .merge import Strategy
from .meta import (
    META_KEY,
    MIN_TTL,
    Activity,
    check_user_state,
    deadline_of,
    meta_of,
    past_deadline,
    remaining_ttl,
    user_view,
)
from .update import DEFAULT_BACKOFF, Backoff, KeyedLocks, Mutator, call_mutator, cas_update

__all__ = ["DEFAULT_SWEEP_INTERVAL", "ExpiryCallback", "LimitPolicy", "SessionManager", "SweepReport"]

log = logging.getLogger("sessionspec.manager")

DEFAULT_SWEEP_INTERVAL: Final = 300.0
ExpiryCallback = Callable[[str, str], Awaitable[None] | None]
"""on_expire(id, reason): reason is "expired" (timed out, or removed by someone else) or "deleted"."""
LimitPolicy = Literal["reject", "evict_idle"]
RETIRE_ATTEMPTS: Final = 200


@dataclass(frozen=True, slots=True)
class SweepReport:
    purged: int
    """What the store's purge_expired removed (0 when the store does not claim `listing`)."""
    expired: list[str]
    """Sessions this manager saw end since the last sweep (their callbacks have run)."""


class SessionManager:
    """``async with SessionManager(store, idle_timeout=1800) as mgr:`` — see docs/manager.md."""

    branches_class: type[Any] | None = None
    """What :meth:`branches` builds (None: :class:`.branches.Branches`); a seam for subclasses."""
    chats_class: type[Any] | None = None
    """What :meth:`chats` builds (None: :class:`.chats.Chats`)."""
    conversations_class: type[Any] | None = None
    """What :meth:`conversations` builds (None: :class:`.facade.AsyncConversationStore`)."""
    scoped_class: type[Any] | None = None
    """What :meth:`scoped` builds (None: :class:`.scopes.ScopedState`)."""
    lock_class: type[Any] | None = None
    """What :meth:`lock` builds (None: :class:`.lease.Lock`)."""

    def __init__(
        self,
        store: SessionStore,
        *,
        idle_timeout: TtlArg = KEEP,
        absolute_lifetime: float | None = None,
        sweep_interval: float | None = DEFAULT_SWEEP_INTERVAL,
        max_active_sessions: int | None = None,
        limit_policy: LimitPolicy = "reject",
        merge_strategy: Strategy = "last_writer_wins",
        backoff: Backoff = DEFAULT_BACKOFF,
        app: str = "default",
        owns_store: bool = False,
    ) -> None:
        self.store = store
        self.idle_timeout = validate_ttl(idle_timeout)
        if absolute_lifetime is not None and not (isinstance(absolute_lifetime, int | float) and absolute_lifetime > 0):
            raise ValueError(f"absolute_lifetime must be a number of seconds > 0 or None, not {absolute_lifetime!r}")
        if max_active_sessions is not None and (not isinstance(max_active_sessions, int) or max_active_sessions < 1):
            raise ValueError(f"max_active_sessions must be an int >= 1 or None, not {max_active_sessions!r}")
        if limit_policy not in ("reject", "evict_idle"):
            raise ValueError(f"limit_policy must be 'reject' or 'evict_idle', not {limit_policy!r}")
        self.absolute_lifetime = absolute_lifetime
        self.max_active_sessions = max_active_sessions
        self.limit_policy: LimitPolicy = limit_policy
        self.merge_strategy: Strategy = merge_strategy
        self.backoff = backoff
        self.app = app
        self.owns_store = owns_store
        self.events = Events()
        self._schedule = ExpirySchedule()
        self._deadlines: dict[str, float] = {}
        self._resources: dict[str, list[tuple[Any, Callable[[], Any] | None]]] = {}
        self._expire_callbacks: list[ExpiryCallback] = []
        self._flight = KeyedLocks()
        self._limit_full: dict[str, float] = {}
        """Owner registry id -> when the last check that found that owner full began (limits.py)."""
        self._sweeper = (Sweeper(self.sweep, sweep_interval, on_error=self._sweep_failed)
                         if sweep_interval is not None else None)
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> SessionManager:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start the background sweeper (``async with`` does this)."""
        self._check_open()
        if self._sweeper is not None:
            self._sweeper.start()

    async def aclose(self) -> None:
        """Stop the sweeper and release every per-session resource; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            await self._sweeper.stop()
        for id in list(self._resources):
            await self._release(id)
        if self.owns_store:
            await self.store.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def counters(self) -> dict[str, int]:
        """created, expired, deleted, conflict_retried, merge_conflict, sweep_run, ... (a snapshot)."""
        return self.events.snapshot()

    def on(self, event: str, listener: Listener) -> None:
        """Call ``listener(event, data)`` on every ``event`` ("*" for all)."""
        self.events.on(event, listener)

    def on_expire(self, callback: ExpiryCallback) -> ExpiryCallback:
        """Call ``callback(id, reason)`` once per session incarnation that ends (usable as a decorator)."""
        self._expire_callbacks.append(callback)
        return callback

    def attach(self, id: str, resource: Any, close: Callable[[], Any] | None = None) -> Any:
        """Hold ``resource`` for session ``id``; it is closed when the session ends or the manager closes.

        ``close`` defaults to the resource's own ``aclose()`` or ``close()``.
        """
        self._check_open()
        self._resources.setdefault(id, []).append((resource, close))
        return resource

    def resources(self, id: str) -> list[Any]:
        return [resource for resource, _ in self._resources.get(id, [])]

    def require(self, capability: str, feature: str) -> None:
        if capability not in self.store.capabilities:
            raise CapabilityMissing(feature, capability)

    # -- reads --------------------------------------------------------------------------------
    async def get(self, id: str, *, touch: bool = False) -> Session | None:
        """The live session (state without the manager's key), or None; ``touch=True`` counts as activity."""
        self._check_open()
        raw = await self._get_live(id)
        if raw is None:
            return None
        if touch:
            info = await self.store.touch(id, ttl=self._ttl(meta_of(raw.state)))
            raw = Session(raw.id, raw.owner, raw.version, raw.created_at, info.updated_at, info.expires_at,
                          info.ttl, raw.state)
            self._note(raw)
        return user_view(raw)

    async def activity(self, id: str) -> Activity | None:
        """SQL-style metadata: expires_at, last_activity, request_count (None when not live)."""
        raw = await self._get_live(id)
        return None if raw is None else Activity.of(raw)

    # -- creation -----------------------------------------------------------------------------
    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None) -> Session:
        """Create a session with this manager's timeouts (and, with an owner, its per-owner limit)."""
        self._check_open()
        data = dict(state or {})
        check_user_state(data)
        if self.max_active_sessions is not None and owner is not None:
            from .limits import create_within_limit

            return await create_within_limit(self, data, owner=validate_owner(owner) or owner, id=id)
        return await self._create(data, id=id, owner=owner)

    async def get_or_create(self, key: Sequence[KeyPart], state: Mapping[str, Any] | None = None, *,
                            owner: str | None = None) -> Session:
        """The live session for a composite key, created with ``state`` if there is none: exactly once.

        The id is derived from the key, so every instance over one store agrees on it and
        the store's create-if-absent (CC-2) picks the one creator; callers here take turns.
        """
        self._check_open()
        id = key_id(key)
        data = dict(state or {})
        check_user_state(data)
        async with self._flight.hold(id):
            for _ in range(RETIRE_ATTEMPTS):
                raw = await self._get_live(id)
                if raw is not None:
                    return user_view(raw)
                try:
                    return await self.create(data, id=id, owner=owner)
                except SessionExists:
                    continue  # another instance won; read its session
            raise ManagerError(f"session {id!r} for key {list(key)!r}: neither a live session nor a successful "
                               f"create after {RETIRE_ATTEMPTS} attempts")

    async def _create(self, data: dict[str, Any], *, id: str | None, owner: str | None) -> Session:
        now = time.time()
        meta: dict[str, Any] = {"last_activity": now, "requests": 0}
        if self.absolute_lifetime is not None:
            meta["deadline"] = now + self.absolute_lifetime
        created = await self.store.create({**data, META_KEY: meta}, id=id, owner=owner, ttl=self._ttl(meta))
        self._note(created)
        await self.events.emit("created", id=created.id, owner=owner)
        return user_view(created)

    # -- writes -------------------------------------------------------------------------------
    async def touch(self, id: str) -> SessionInfo:
        """Slide the idle timeout (never past the absolute lifetime)."""
        self._check_open()
        deadline = self._deadlines.get(id)
        if deadline is None and self.absolute_lifetime is not None:
            raw = await self._get_live(id)
            if raw is None:
                raise SessionNotFound(id)
            deadline = deadline_of(meta_of(raw.state))
        info = await self.store.touch(id, ttl=self._ttl({} if deadline is None else {"deadline": deadline}))
        return info

    async def update(self, id: str, fn: Mutator) -> Session:
        """Apply ``fn`` to a deep copy of the state and commit it safely; returns the session written.

        ``fn(state)`` returns the new state (or None after changing it in place), and may be
        async. Callers of one session in this process take turns; across processes a
        VersionConflict is retried with full-jitter backoff, up to ``backoff``'s budget
        (then UpdateFailed names the session and the attempts).
        """

        async def on_user_state(state: dict[str, Any]) -> dict[str, Any]:
            meta = state.pop(META_KEY, None)
            new = await call_mutator(fn, state)
            check_user_state(new, "the state update() returned")
            return new if meta is None else {**new, META_KEY: meta}

        return user_view(await self.update_raw(id, on_user_state))

    async def update_raw(self, id: str, fn: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> Session:
        """update() with the manager's key visible to ``fn`` (for the manager's own features)."""
        self._check_open()
        self.require("atomic", "update()")

        async def compute(current: Session) -> dict[str, Any]:
            if past_deadline(meta_of(current.state)):
                await self._retire(current)
                raise SessionNotFound(id)
            return await fn(clone_json(current.state))

        async def conflicted(attempt: int) -> None:
            await self.events.emit("conflict_retried", id=id, attempt=attempt)

        async with self._flight.hold(id):
            _, written = await self._commit(id, compute, conflicted)
        return await self._after_write(written)

    async def _commit(self, id: str, compute: Callable[[Session], Awaitable[dict[str, Any]]],
                      conflicted: Callable[[int], Awaitable[None]]) -> tuple[Session, Session]:
        """The CAS loop (a seam: broken managers in the project's tests override it)."""
        return await cas_update(self.store, id, compute, backoff=self.backoff, on_conflict=conflicted)

    async def record_request(self, id: str) -> Activity:
        """Count one request: request_count + 1 and last_activity = now, exact under concurrency."""

        async def bump(state: dict[str, Any]) -> dict[str, Any]:
            meta = meta_of(state)
            meta["requests"] = int(meta.get("requests", 0)) + 1
            meta["last_activity"] = time.time()
            return {**state, META_KEY: meta}

        return Activity.of(await self.update_raw(id, bump))

    async def apply(self, id: str, changes: Mapping[str, Any], *, expected_version: int | None = None) -> Session:
        """The store's apply (atomic per key), keeping the absolute lifetime."""
        self._check_open()
        check_user_state(changes, "apply()")
        written = await self.store.apply(id, changes, expected_version=expected_version)
        return user_view(await self._after_write(written))

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        """The store's append (atomic), keeping the absolute lifetime."""
        self._check_open()
        if validate_key(key) == META_KEY:
            check_user_state({key: None}, "append()")
        info = await self.store.append(id, key, items, expected_version=expected_version)
        await self._cap_ttl(info)
        return info

    async def delete(self, id: str) -> bool:
        """Delete; the expiry callbacks run with reason "deleted" (once) if it was live."""
        return await self._delete(id, free_slot=True)

    async def _delete(self, id: str, *, free_slot: bool) -> bool:
        self._check_open()
        owner = None
        if free_slot and self.max_active_sessions is not None:
            current = await self.store.get(id)
            owner = current.owner if current is not None else None
        deleted = await self.store.delete(id)
        if deleted and owner is not None:
            from .limits import release_slot

            await release_slot(self, owner, id)
        tracked = self._schedule.get(id)
        if tracked is not None:
            await self._end(tracked, "deleted" if deleted else "expired")
        elif deleted:
            await self.events.emit("deleted", id=id)
        return deleted

    # -- features in their own modules ---------------------------------------------------------
    def branches(self, id: str, n: int, *, strategy: Strategy | None = None) -> Any:
        """``async with mgr.branches(id, n) as branches:`` — see :mod:`.branches`."""
        from .branches import Branches

        return (self.branches_class or Branches)(self, id, n, strategy or self.merge_strategy)

    def chats(self, id: str) -> Any:
        """Chats within session ``id`` — see :mod:`.chats`."""
        from .chats import Chats

        return (self.chats_class or Chats)(self, id)

    def conversations(self) -> Any:
        """The ``ConversationStore`` facade over this manager — see :mod:`.facade`."""
        from .facade import AsyncConversationStore

        return (self.conversations_class or AsyncConversationStore)(self)

    def scoped(self, id: str, *, owner: str | None = None) -> Any:
        """app:/user:/temp: scoped state for one invocation on session ``id`` — see :mod:`.scopes`."""
        from .scopes import ScopedState

        return (self.scoped_class or ScopedState)(self, id, owner=owner)

    def lock(self, id: str, *, lease: float | None = None, timeout: float = 10.0) -> Any:
        """In-process lock (``lease=None``) or a store-backed lease with a fencing token — see :mod:`.lease`."""
        from .lease import Lock

        return (self.lock_class or Lock)(self, id, lease=lease, timeout=timeout)

    # -- expiry ---------------------------------------------------------------------------------
    async def sweep(self) -> SweepReport:
        """One pass: purge_expired (stores claiming `listing`), then look at every tracked session now due."""
        self._check_open()
        purged = await self.store.purge_expired() if "listing" in self.store.capabilities else 0
        ended: list[str] = []
        due = self._schedule.due()
        limit = asyncio.Semaphore(32)

        async def look(tracked: Tracked) -> None:
            async with limit:
                raw = await self.store.get(tracked.id)
            if raw is None or raw.created_at.isoformat() != tracked.incarnation or past_deadline(meta_of(raw.state)):
                if await self._end(tracked, "expired"):
                    ended.append(tracked.id)
                if raw is not None and raw.created_at.isoformat() != tracked.incarnation:
                    self._note(raw)
            else:
                self._note(raw)
                self._schedule.recheck(tracked, max(time.time() + RECHECK, _expiry(raw) or 0.0))

        await asyncio.gather(*(look(t) for t in due))
        await self.events.emit("sweep_run", purged=purged, expired=len(ended))
        return SweepReport(purged, ended)

    async def _sweep_failed(self, exc: BaseException) -> None:
        await self.events.emit("sweep_error", error=f"{type(exc).__name__}: {exc}")

    # -- internals ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ManagerClosed("this SessionManager is closed")

    def _ttl(self, meta: Mapping[str, Any]) -> TtlArg:
        return remaining_ttl(meta, self.idle_timeout)

    def _note(self, raw: Session) -> None:
        meta = meta_of(raw.state)
        deadline = deadline_of(meta)
        if deadline is not None:
            self._deadlines[raw.id] = deadline
        replaced = self._schedule.note(raw, deadline)
        if replaced is not None:  # a new incarnation: the old one ended unseen
            self._fire_later(replaced)

    def _fire_later(self, tracked: Tracked) -> None:
        task = asyncio.ensure_future(self._fire(tracked.id, "expired"))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _get_live(self, id: str) -> Session | None:
        raw = await self.store.get(id)
        tracked = self._schedule.get(id)
        if raw is None:
            if tracked is not None:
                await self._end(tracked, "expired")
            return None
        if past_deadline(meta_of(raw.state)):
            await self._retire(raw)
            if tracked is not None:
                await self._end(tracked, "expired")
            return None
        self._note(raw)
        return raw

    async def _retire(self, raw: Session) -> None:
        """Make the store drop a session past its absolute deadline (CAS, so a new incarnation is safe)."""
        with contextlib.suppress(VersionConflict, SessionNotFound):
            if "atomic" in self.store.capabilities:
                await self.store.save(raw.id, raw.state, expected_version=raw.version, ttl=MIN_TTL)
            else:
                await self.store.touch(raw.id, ttl=MIN_TTL)
        await asyncio.sleep(MIN_TTL)  # waiting for a deadline we set, not for a race

    async def _after_write(self, written: Session) -> Session:
        self._note(written)
        await self._cap_ttl(written)
        return written

    async def _cap_ttl(self, info: SessionInfo) -> None:
        """After a write that slid the period: never let it run past the absolute deadline."""
        deadline = self._deadlines.get(info.id)
        if deadline is None:
            return
        left = deadline - time.time()
        if info.ttl is None or info.ttl > left:
            with contextlib.suppress(SessionNotFound):
                await self.store.touch(info.id, ttl=max(MIN_TTL, left))

    async def _end(self, tracked: Tracked, reason: str) -> bool:
        """Report one incarnation's end exactly once (False if someone already did)."""
        if self._schedule.forget(tracked.id, tracked.incarnation) is None:
            return False
        self._deadlines.pop(tracked.id, None)
        await self._fire(tracked.id, reason)
        return True

    async def _fire(self, id: str, reason: str) -> None:
        await self.events.emit("deleted" if reason == "deleted" else "expired", id=id)
        for callback in self._expire_callbacks:
            try:
                result = callback(id, reason)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.events.counters["callback_error"] += 1
                log.exception("session manager: expiry callback for %r failed", id)
        await self._release(id)

    async def _release(self, id: str) -> None:
        for resource, close in reversed(self._resources.pop(id, [])):
            closer = close or getattr(resource, "aclose", None) or getattr(resource, "close", None)
            if closer is None:
                continue
            try:
                result = closer()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.events.counters["callback_error"] += 1
                log.exception("session manager: closing a resource of session %r failed", id)


def _expiry(raw: Session) -> float | None:
    return raw.expires_at.timestamp() if raw.expires_at is not None else None

