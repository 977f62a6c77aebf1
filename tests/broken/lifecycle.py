"""Broken lifecycles: upserts, resurrection, overwriting creates, lying deletes, stale reads (LC-*)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sessionspec.conformance.contract import KEEP, Session, SessionNotFound, TtlArg
from sessionspec.conformance.validation import (
    validate_expected_version,
    validate_id,
    validate_owner,
    validate_state,
    validate_ttl,
)
from sessionspec.reference.memory import MemoryStore, clone_json

from ._case import broken


@broken("LC-3")
class UpsertOnSave(MemoryStore):
    """save() on a missing or deleted id creates it (an upsert) instead of raising SessionNotFound."""

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        try:
            return await super().save(id, state, expected_version=expected_version, ttl=ttl)
        except SessionNotFound:
            return await self.create(state, id=id, ttl=ttl)


@broken("LC-3", "TTL-4")
class SaveRevivesExpired(MemoryStore):
    """save() refreshes the expiry before checking liveness, so an expired session comes back."""

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        # arguments and the version are checked first: the one bug is liveness, not also writing on a refusal
        sid, expected = validate_id(id), validate_expected_version(expected_version)
        validate_state(state)
        validate_ttl(ttl)
        record = self._records.get(sid)
        if record is not None and expected in (None, record.version):
            record.updated_at = self._clock()  # the bug: slide first, check liveness after
        return await super().save(id, state, expected_version=expected_version, ttl=ttl)


@broken("LC-2", "CC-2")
class CreateOverwritesLive(MemoryStore):
    """create(id=...) replaces a live session with that id (SET, not SET NX)."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        if id is not None:
            await self.delete(id)
        return await super().create(state, id=id, owner=owner, ttl=ttl)


@broken("LC-4")
class DeleteAlwaysTrue(MemoryStore):
    """delete() reports True whether or not a live session was there (the DEL count is ignored)."""

    async def delete(self, id: str) -> bool:
        await super().delete(id)
        return True


@broken("LC-1")
class CreateDropsOwner(MemoryStore):
    """create() forgets the owner: get() and list() report owner None."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        validate_owner(owner)  # the one bug is forgetting a valid owner, not also accepting an invalid one (ID-3)
        return await super().create(state, id=id, owner=None, ttl=ttl)


@broken("LC-1")
class NaiveDatetimes(MemoryStore):
    """Sessions carry naive datetimes (utcfromtimestamp style) instead of timezone-aware UTC."""

    @staticmethod
    def _session(id: str, r: Any) -> Session:
        session = MemoryStore._session(id, r)

        def naive(moment: datetime | None) -> datetime | None:
            return None if moment is None else moment.replace(tzinfo=None)

        return dataclasses.replace(session, created_at=naive(session.created_at),  # type: ignore[arg-type]
                                   updated_at=naive(session.updated_at),  # type: ignore[arg-type]
                                   expires_at=naive(session.expires_at))


@broken("CC-6")
class ReadCacheNeverInvalidated(MemoryStore):
    """get() serves a read-through cache that no write invalidates: reads go stale after any write."""

    async def get(self, id: str) -> Session | None:
        cache: dict[str, Session] = vars(self).setdefault("_read_cache", {})
        sid = validate_id(id)
        if sid not in cache:
            session = await super().get(sid)
            if session is None:
                return None
            cache[sid] = session
        cached = cache[sid]
        return dataclasses.replace(cached, state=clone_json(cached.state))
