"""Scoped state as agent frameworks use it: ``app:`` per app, ``user:`` per owner, ``temp:`` per invocation.

Reads merge the session's own keys with the app's and the owner's (prefixed back), plus
this invocation's temp keys. Writes route each key to its scope: the session, the app
scope session, or the user scope session, each with the store's atomic ``apply`` (so
concurrent writers of different keys lose nothing), and ``temp:`` keys stay in this
object and are never stored. ``update(scope, fn)`` is the CAS read-modify-write for one
scope, for counters and other same-key updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from sessionspec.conformance.contract import InvalidState, SessionExists, SessionNotFound

from .keys import key_id

if TYPE_CHECKING:
    from .manager import SessionManager
    from .update import Mutator

__all__ = ["PREFIXES", "Scope", "ScopedState"]

Scope = Literal["session", "app", "user"]
PREFIXES: Final = ("app:", "user:", "temp:")


class ScopedState:
    """One invocation's view of a session's scoped state (``mgr.scoped(id)``)."""

    def __init__(self, mgr: SessionManager, id: str, *, owner: str | None = None) -> None:
        self.mgr, self.id, self._owner = mgr, id, owner
        self.temp: dict[str, Any] = {}

    async def _owner_of(self) -> str:
        if self._owner is None:
            session = await self.mgr.get(self.id)
            if session is None:
                raise SessionNotFound(self.id)
            if session.owner is None:
                raise InvalidState("user: keys need a session with an owner", "$")
            self._owner = session.owner
        return self._owner

    async def scope_id(self, scope: Scope) -> str:
        """The session holding a scope's keys (created on first use, permanent)."""
        if scope == "session":
            return self.id
        parts = ("app-scope", self.mgr.app) if scope == "app" else ("user-scope", self.mgr.app, await self._owner_of())
        sid = key_id(parts, prefix="s")
        if await self.mgr.store.get(sid) is None:
            try:
                await self.mgr.store.create({}, id=sid, ttl=None)
            except SessionExists:
                pass
        return sid

    async def read(self) -> dict[str, Any]:
        """Session keys, then ``app:*``, ``user:*`` and ``temp:*`` (prefixed) in one dict."""
        session = await self.mgr.get(self.id)
        if session is None:
            raise SessionNotFound(self.id)
        if self._owner is None:
            self._owner = session.owner
        merged = dict(session.state)
        app = await self.mgr.store.get(await self.scope_id("app"))
        merged.update({f"app:{k}": v for k, v in (app.state if app else {}).items()})
        if session.owner is not None:
            user = await self.mgr.store.get(await self.scope_id("user"))
            merged.update({f"user:{k}": v for k, v in (user.state if user else {}).items()})
        merged.update({f"temp:{k}": v for k, v in self.temp.items()})
        return merged

    async def write(self, changes: Mapping[str, Any]) -> None:
        """Route each key to its scope and apply each scope's share atomically."""
        routed: dict[Scope, dict[str, Any]] = {"session": {}, "app": {}, "user": {}}
        for key, value in changes.items():
            if key.startswith("temp:"):
                self.temp[key[5:]] = value
            elif key.startswith("app:"):
                routed["app"][key[4:]] = value
            elif key.startswith("user:"):
                routed["user"][key[5:]] = value
            else:
                routed["session"][key] = value
        for scope, share in routed.items():
            if share:
                if scope == "session":
                    await self.mgr.apply(self.id, share)
                else:
                    await self.mgr.store.apply(await self.scope_id(scope), share)

    async def update(self, scope: Scope, fn: Mutator) -> dict[str, Any]:
        """CAS read-modify-write of one scope's keys (unprefixed); returns that scope's new state."""
        written = await self.mgr.update(await self.scope_id(scope), fn)
        return written.state
