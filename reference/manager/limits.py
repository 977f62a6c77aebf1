"""Per-owner limits: at most ``max_active_sessions`` live sessions per owner, exactly, across instances.

Each owner has a registry session (a deterministic id) listing its sessions. A create
first reserves a slot in it with a CAS update: entries whose session is gone are dropped,
then the new id goes in if there is room (``reject`` raises LimitExceeded otherwise;
``evict_idle`` takes the slot of the least recently active session and deletes it). The
CAS serialises every instance's reservations, so 1000 concurrent creates leave exactly the
limit. A reservation whose create never happened (a crashed caller) expires after
RESERVATION_GRACE seconds.

Creates for one owner in one process take turns, and under a burst most of them queue while
one is checking. With ``reject``, a check that finds the owner full answers every create that
was already waiting when it began: each of them overlapped that check, so "full" is a true
answer for it too (it takes effect where the check's does), and the 995 losers of 1000
concurrent creates cost no store call each instead of seven. A create that arrives after the
check began checks again.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

from sessionspec.conformance.contract import Session, SessionExists, SessionNotFound
from sessionspec.reference.memory import new_session_id

from .errors import LimitExceeded
from .keys import key_id
from .meta import meta_of

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["RESERVATION_GRACE", "create_within_limit", "registry_id", "release_slot"]

RESERVATION_GRACE: Final = 30.0
ENTRIES: Final = "sessions"
RESERVE_ATTEMPTS: Final = 20


def registry_id(app: str, owner: str) -> str:
    return key_id(("owner-registry", app, owner), prefix="r")


async def _ensure_registry(mgr: SessionManager, rid: str) -> None:
    if await mgr.store.get(rid) is None:
        try:
            await mgr.store.create({ENTRIES: {}}, id=rid, ttl=None)
        except SessionExists:
            pass


async def create_within_limit(mgr: SessionManager, data: dict[str, Any], *, owner: str, id: str | None) -> Session:
    """Reserve a slot for a new session of ``owner``, evicting or refusing per policy, then create it.

    Within one process, creates for one owner take turns from reservation to create, so no
    reservation is ever pending when another is made here. Across processes a pending
    reservation can still be evicted; the creator notices (its id is no longer listed right
    after its create), deletes what it created and reserves again.
    """
    limit = mgr.max_active_sessions
    assert limit is not None
    mgr.require("atomic", "max_active_sessions")
    rid = registry_id(mgr.app, owner)
    turn = f"limit:{rid}"
    arrived = time.monotonic()
    async with mgr._flight.hold(turn):
        full_since = mgr._limit_full.get(rid)
        if mgr._flight.users(turn) <= 1:
            mgr._limit_full.pop(rid, None)  # the last of a queue: nobody after it can use the observation
        if id is None and full_since is not None and arrived <= full_since:
            raise LimitExceeded(owner, limit)  # waiting all through a check that found the owner full
        for _ in range(RESERVE_ATTEMPTS):
            sid = id or new_session_id()
            checked = time.monotonic()
            try:
                evicted = await _reserve_in_registry(mgr, rid, sid, owner, limit)
            except LimitExceeded:
                if mgr._flight.users(turn) > 1:  # others queued behind this check: they may take its answer
                    mgr._limit_full[rid] = checked
                raise
            mgr._limit_full.pop(rid, None)
            for victim in evicted:
                if await mgr._delete(victim, free_slot=False):  # its slot is gone already
                    await mgr.events.emit("evicted", id=victim, owner=owner)
            try:
                created = await mgr._create(data, id=sid, owner=owner)
            except BaseException:
                await _unreserve(mgr, rid, sid)
                raise
            registry = await mgr.store.get(rid)
            if registry is not None and sid in (registry.state.get(ENTRIES) or {}):
                return created
            await mgr.store.delete(sid)  # evicted while pending by another instance: try again
    raise LimitExceeded(owner, limit)


async def _reserve_in_registry(mgr: SessionManager, rid: str, sid: str, owner: str, limit: int) -> list[str]:
    """_reserve, making the owner's registry first if it does not exist yet (once per owner, not per create)."""
    try:
        return await _reserve(mgr, rid, sid, owner, limit)
    except SessionNotFound:
        await _ensure_registry(mgr, rid)
        return await _reserve(mgr, rid, sid, owner, limit)


async def _reserve(mgr: SessionManager, rid: str, sid: str, owner: str, limit: int) -> list[str]:
    """The CAS step: drop dead entries, then add ``sid`` if there is room; returns the sessions to evict."""
    evicted: list[str] = []

    async def reserve(state: dict[str, Any]) -> dict[str, Any]:
        evicted.clear()
        entries: dict[str, float] = dict(state.get(ENTRIES) or {})
        now = time.time()
        sessions = await asyncio.gather(*(mgr.store.get(s) for s in entries))
        live: dict[str, tuple[float, bool, float]] = {}  # id -> (reserved at, pending, last activity)
        for (s, reserved), session in zip(entries.items(), sessions, strict=True):
            if session is not None:
                last = meta_of(session.state).get("last_activity", session.updated_at.timestamp())
                live[s] = (reserved, False, float(last))
            elif now - reserved < RESERVATION_GRACE:
                live[s] = (reserved, True, reserved)  # reserved, its create still on the way
        if sid in live:
            return state
        if len(live) >= limit:
            if mgr.limit_policy == "reject":
                raise LimitExceeded(owner, limit)
            idle_first = sorted(live, key=lambda s: live[s][1:])  # created ones first, least active first
            evicted.extend(idle_first[: len(live) - limit + 1])
            for s in evicted:
                live.pop(s)
        return {**state, ENTRIES: {**{s: live[s][0] for s in live}, sid: now}}

    await mgr.update_raw(rid, reserve)
    return list(evicted)


async def release_slot(mgr: SessionManager, owner: str, sid: str) -> None:
    """Free ``sid``'s slot at once (after a delete), instead of when the registry next notices."""
    await _unreserve(mgr, registry_id(mgr.app, owner), sid)


async def _unreserve(mgr: SessionManager, rid: str, sid: str) -> None:
    async def drop(state: dict[str, Any]) -> dict[str, Any]:
        entries = dict(state.get(ENTRIES) or {})
        entries.pop(sid, None)
        return {**state, ENTRIES: entries}

    try:
        await mgr.update_raw(rid, drop)
    except Exception:  # the grace period reclaims it
        pass

