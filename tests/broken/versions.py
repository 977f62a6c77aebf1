"""Broken versions: touch bumps, per-incarnation restart (ABA), compare-and-set ignored (VER-*, MG-2, CC-4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sessionspec.conformance.contract import KEEP, Session, SessionInfo, TtlArg
from sessionspec.reference.memory import MemoryStore

from ._case import broken
from ._race import rendezvous


@broken("VER-1")
class TouchBumpsVersion(MemoryStore):
    """touch() is implemented as an empty write, so it bumps the version."""

    async def touch(self, id: str, *, ttl: TtlArg = KEEP) -> SessionInfo:
        await super().touch(id, ttl=ttl)
        return (await self.apply(id, {})).info()


@broken("VER-2")
class VersionRestartsOnCreate(MemoryStore):
    """Every incarnation starts at version 1 (HSET version 1), so a stale expected_version can match (ABA)."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        session = await super().create(state, id=id, owner=owner, ttl=ttl)
        self._records[session.id].version = 1
        return dataclasses.replace(session, version=1)


@broken("MG-2", "CC-4")
class SaveIgnoresExpectedVersion(MemoryStore):
    """save() never checks expected_version (and, like any networked store, yields before writing)."""

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        await rendezvous(self).meet()
        return await super().save(id, state, ttl=ttl)


@broken("MG-2", "CC-4")
class ApplyIgnoresExpectedVersion(MemoryStore):
    """apply() never checks expected_version (and, like any networked store, yields before writing)."""

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        await rendezvous(self).meet()
        return await super().apply(id, changes)
