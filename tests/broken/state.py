"""Broken state handling: aliasing, lossy numbers, coerced non-JSON (ST-*)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from sessionspec.conformance.contract import KEEP, Session, SessionInfo, SessionNotFound, TtlArg
from sessionspec.reference.memory import MemoryStore

from ._case import broken


def _like_lua_cjson(value: Any) -> Any:
    """What a Lua-cjson round trip does to numbers: 14 significant digits, 1.0 becomes 1."""
    if isinstance(value, float):
        return json.loads(f"{value:.14g}")
    if isinstance(value, dict):
        return {k: _like_lua_cjson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_like_lua_cjson(v) for v in value]
    return value


@broken("ST-3")
class GetReturnsStoredDict(MemoryStore):
    """get() hands out the stored dict itself: the caller's edits change the stored session."""

    async def get(self, id: str) -> Session | None:
        session = await super().get(id)
        if session is None:
            return None
        return dataclasses.replace(session, state=self._records[session.id].state)


@broken("ST-3")
class CreateKeepsCallersDict(MemoryStore):
    """create() keeps the caller's dict instead of a copy: editing it afterwards edits the session."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        session = await super().create(state, id=id, owner=owner, ttl=ttl)
        if isinstance(state, dict):
            self._records[session.id].state = state
        return session


@broken("ST-1")
class FloatsThroughLuaCjson(MemoryStore):
    """get() decodes numbers like Lua cjson: 1.0 comes back as int 1, 0.1 + 0.2 as 0.3."""

    async def get(self, id: str) -> Session | None:
        session = await super().get(id)
        return None if session is None else dataclasses.replace(session, state=_like_lua_cjson(session.state))


@broken("ST-2")
class NonJsonCoerced(MemoryStore):
    """create() "fixes" non-JSON state with json.dumps(default=str): datetimes, sets, bytes become strings."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        if isinstance(state, Mapping):
            state = json.loads(json.dumps(dict(state), default=str))
        return await super().create(state, id=id, owner=owner, ttl=ttl)


def _tuples_to_lists(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_tuples_to_lists(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _tuples_to_lists(v) for k, v in value.items()}
    return value


@broken("ST-1a")
class TuplesBecomeLists(MemoryStore):
    """create() quietly turns tuples inside the state into lists instead of raising InvalidState."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        if isinstance(state, Mapping):
            state = _tuples_to_lists(state)
        return await super().create(state, id=id, owner=owner, ttl=ttl)


@broken("CC-5")
class EmptyStateShared(MemoryStore):
    """Sessions created without state share one default dict: a write to one shows up in all of them."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        session = await super().create(state, id=id, owner=owner, ttl=ttl)
        if not state:
            self._records[session.id].state = vars(self).setdefault("_default_state", {})
        return session


@broken("ST-2")
class ValidatesAfterExistence(MemoryStore):
    """save/apply/append look the session up before validating the state (spec §4.6 puts validation first)."""

    async def _exists(self, id: str) -> None:
        if isinstance(id, str) and await self.get(id) is None:
            raise SessionNotFound(id)

    async def save(self, id: str, state: Mapping[str, Any], *, ttl: TtlArg = KEEP,
                   expected_version: int | None = None) -> Session:
        await self._exists(id)
        return await super().save(id, state, ttl=ttl, expected_version=expected_version)

    async def apply(self, id: str, changes: Mapping[str, Any], *, expected_version: int | None = None) -> Session:
        await self._exists(id)
        return await super().apply(id, changes, expected_version=expected_version)

    async def append(self, id: str, key: str, items: Any, *, expected_version: int | None = None) -> SessionInfo:
        await self._exists(id)
        return await super().append(id, key, items, expected_version=expected_version)
