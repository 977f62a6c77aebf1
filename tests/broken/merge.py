"""Broken merges: apply key by key, append that overwrites non-lists, cancellable half-writes (MG-*, FL-4)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from sessionspec.conformance.contract import Session, SessionInfo
from sessionspec.conformance.validation import validate_changes, validate_key
from sessionspec.reference.memory import MemoryStore

from ._case import broken


@broken("MG-1")
class ApplyKeyByKey(MemoryStore):
    """apply() writes one key at a time and validates each as it goes: a bad value midway leaves a partial write."""

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        if not isinstance(changes, Mapping) or not changes:
            return await super().apply(id, changes, expected_version=expected_version)
        session: Session | None = None
        for key, value in changes.items():
            check = expected_version if session is None else None
            session = await super().apply(id, {key: value}, expected_version=check)
        assert session is not None
        return session


@broken("FL-4")
class ApplyHalfWrittenOnCancel(MemoryStore):
    """apply() writes key by key with an await between them, so a cancellation leaves a half-applied delta."""

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        delta = validate_changes(changes)
        if len(delta) < 2:
            return await super().apply(id, delta, expected_version=expected_version)
        session: Session | None = None
        for key, value in delta.items():
            if session is not None:
                await asyncio.sleep(0)  # one round trip per key: a cancellation lands here
            check = expected_version if session is None else None
            session = await super().apply(id, {key: value}, expected_version=check)
        assert session is not None
        return session


@broken("MG-5")
class AppendReplacesNonList(MemoryStore):
    """append() on a key holding null or any non-list replaces that value with a new list."""

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        session = await self.get(id)
        name = validate_key(key)
        if session is not None and name in session.state and not isinstance(session.state[name], list):
            await super().apply(id, {name: []})
            expected_version = None
        return await super().append(id, key, items, expected_version=expected_version)
