"""Bugs only a race shows: each store is correct for one caller at a time (CC-2, CC-4, CC-6, CC-8).

Every one of them holds its operation between a read and the write that depends on it,
with an :mod:`asyncio` Event (see ``_race``), until the racing operation has run: the bad
interleaving happens every time two such calls meet, and never when calls come one by
one, so sequential clauses pass and only the concurrency clauses can catch them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sessionspec.conformance.contract import (
    KEEP,
    BackendUnavailable,
    Session,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    TtlArg,
    VersionConflict,
)
from sessionspec.conformance.validation import (
    validate_changes,
    validate_expected_version,
    validate_id,
    validate_items,
    validate_key,
    validate_owner,
    validate_state,
    validate_ttl,
)
from sessionspec.reference.memory import MemoryStore

from ._case import broken
from ._race import gap, rendezvous


@broken("CC-6", "CC-4")
class CheckThenWriteCas(MemoryStore):
    """expected_version is compared in Python, and the write follows one await later: two writers holding
    one version both pass the check (GET, compare, then SET; no WATCH, no script, no WHERE version = $n)."""

    async def _check(self, id: str, expected_version: int | None) -> None:
        expected = validate_expected_version(expected_version)
        if expected is None:
            return
        current = await self.get(id)
        if current is None:
            raise SessionNotFound(id)
        if current.version != expected:
            raise VersionConflict(id, expected, current.version)
        await rendezvous(self, id).meet()  # the round trip between the check and the write

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        validate_id(id), validate_state(state), validate_ttl(ttl)
        await self._check(id, expected_version)
        return await super().save(id, state, ttl=ttl)

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        validate_id(id), validate_changes(changes)
        await self._check(id, expected_version)
        return await super().apply(id, changes)

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        validate_id(id), validate_items(validate_key(key), items)
        await self._check(id, expected_version)
        return await super().append(id, key, items)


@broken("CC-2")
class CreateExistsThenSet(MemoryStore):
    """create(id=...) asks EXISTS, then SETs without NX one await later: concurrent creates of one id all win,
    each overwriting the last."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        if id is None:
            return await super().create(state, id=id, owner=owner, ttl=ttl)
        sid = validate_id(id)
        validate_owner(owner), validate_ttl(ttl), validate_state({} if state is None else state)
        if await self.get(sid) is not None:
            raise SessionExists(sid)
        await rendezvous(self, sid).meet()  # the round trip between EXISTS and SET
        if sid in self._records:  # SET, not SET NX: whatever landed meanwhile is overwritten
            self._forget(sid)
        return await super().create(state, id=sid, owner=owner, ttl=ttl)


@broken("CC-8")
class SaveReadThenUpsert(MemoryStore):
    """save() reads the session, awaits, then writes it back unconditionally (an upsert, like cache.get then
    cache.set): a delete or an expiry landing in between is undone, and the session comes back."""

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        sid = validate_id(id)
        validate_state(state), validate_expected_version(expected_version), validate_ttl(ttl)
        current = await self.get(sid)
        if current is None:
            raise SessionNotFound(sid)  # alone, a save of a missing session is refused, as LC-3 wants
        await gap(self, sid).hold()  # the round trip between the read and the write
        try:
            return await super().save(sid, state, expected_version=expected_version, ttl=ttl)
        except SessionNotFound:  # gone meanwhile: the upsert writes it anyway, with a fresh expiry
            period = current.ttl if ttl is KEEP else ttl
            return await super().create(state, id=sid, owner=current.owner, ttl=period)

    async def delete(self, id: str) -> bool:
        deleted = await super().delete(id)
        gap(self, validate_id(id)).landed()  # harness, not bug: lets a held save go on now
        return deleted


@broken("CC-6", "CC-4")
class UnavailableUnderContention(MemoryStore):
    """A call on a session that another call is still using raises BackendUnavailable (a lock taken with no
    wait, "busy" reported as unreachable): under contention most calls fail, and nothing is learned from them."""

    async def _enter(self, id: object) -> str:
        sid = validate_id(id)
        busy: set[str] = vars(self).setdefault("_busy", set())
        if sid in busy:
            raise BackendUnavailable(f"session {sid!r} is locked by another call")
        busy.add(sid)
        await rendezvous(self).meet()  # the round trip while the lock is held
        return sid

    def _leave(self, sid: str) -> None:
        vars(self)["_busy"].discard(sid)

    async def get(self, id: str) -> Session | None:
        sid = await self._enter(id)
        try:
            return await super().get(sid)
        finally:
            self._leave(sid)

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        sid = await self._enter(id)
        try:
            return await super().save(sid, state, expected_version=expected_version, ttl=ttl)
        finally:
            self._leave(sid)

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        sid = await self._enter(id)
        try:
            return await super().apply(sid, changes, expected_version=expected_version)
        finally:
            self._leave(sid)

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        sid = await self._enter(id)
        try:
            return await super().append(sid, key, items, expected_version=expected_version)
        finally:
            self._leave(sid)
