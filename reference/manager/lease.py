"""Run something once per session across nodes: an in-process lock, or a store-backed lease with fencing.

``async with mgr.lock(id) as held:`` takes a per-session asyncio.Lock (one process).
``async with mgr.lock(id, lease=30) as held:`` takes a lease every manager over the store
respects: a lease session (deterministic id) created with create-if-absent and a TTL of
``lease`` seconds, so a crashed holder frees it by expiry. Taking it bumps a fencing token
kept in the guarded session; ``held.update(fn)`` writes only while the session still carries
this holder's token, so a holder that stalled past its lease (and was replaced) gets
LeaseLost instead of overwriting the new holder's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sessionspec.conformance.contract import Session, SessionExists, SessionNotFound, VersionConflict

from .errors import LeaseLost, LockTimeout
from .keys import key_id
from .meta import META_KEY, MIN_TTL, meta_of, user_view
from .update import KeyedLocks, call_mutator

if TYPE_CHECKING:
    from .manager import SessionManager
    from .update import Mutator

__all__ = ["Lock", "lease_id"]

_LOCAL = KeyedLocks()


def lease_id(id: str) -> str:
    return key_id(("lease", id), prefix="l")


class Lock:
    """What :meth:`SessionManager.lock` returns; ``token`` is the fencing token (store-backed leases)."""

    def __init__(self, mgr: SessionManager, id: str, *, lease: float | None, timeout: float) -> None:
        if lease is not None and not lease > 0:
            raise ValueError(f"lease must be seconds > 0 or None, not {lease!r}")
        self.mgr, self.id, self.lease, self.timeout = mgr, id, lease, timeout
        self.token: int | None = None
        self._holder = secrets.token_urlsafe(12)
        self._local: contextlib.AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> Lock:
        if self.lease is None:
            self._local = _LOCAL.hold(f"{id(self.mgr)}:{self.id}")
            try:
                await asyncio.wait_for(self._local.__aenter__(), self.timeout)
            except TimeoutError:
                raise LockTimeout(self.id, self.timeout) from None
            return self
        await self._acquire()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._local is not None:
            await self._local.__aexit__(exc_type, exc, tb)
            return
        await self.release()

    async def _acquire(self) -> None:
        assert self.lease is not None
        self.mgr.require("atomic", "lock(lease=...)")
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.mgr.store.create({"holder": self._holder}, id=lease_id(self.id), ttl=self.lease)
                break
            except SessionExists:
                if time.monotonic() >= deadline:
                    raise LockTimeout(self.id, self.timeout) from None
                await asyncio.sleep(min(self.mgr.backoff.delay(attempt), max(0.0, deadline - time.monotonic())))

        async def bump(state: dict[str, Any]) -> dict[str, Any]:
            meta = meta_of(state)
            meta["fence"] = int(meta.get("fence", 0)) + 1
            return {**state, META_KEY: meta}

        try:
            written = await self.mgr.update_raw(self.id, bump)
        except BaseException:
            await self.release()
            raise
        self.token = int(meta_of(written.state)["fence"])

    async def update(self, fn: Mutator) -> Session:
        """update() that refuses (LeaseLost) once another holder has taken the lock since this one."""
        token = self.token

        async def fenced(state: dict[str, Any]) -> dict[str, Any]:
            meta = state.pop(META_KEY, None)
            current = int(meta_of({META_KEY: meta}).get("fence", 0))
            if token is not None and current != token:
                raise LeaseLost(self.id, token, current)
            new = await call_mutator(fn, state)
            return new if meta is None else {**new, META_KEY: meta}

        return user_view(await self.mgr.update_raw(self.id, fenced))

    async def release(self) -> None:
        """Give the lease back if it is still ours (a CAS, so a successor's lease is never touched)."""
        if self.lease is None:
            return
        held = await self.mgr.store.get(lease_id(self.id))
        if held is not None and held.state.get("holder") == self._holder:
            with contextlib.suppress(VersionConflict, SessionNotFound):
                await self.mgr.store.save(held.id, held.state, expected_version=held.version, ttl=MIN_TTL)
