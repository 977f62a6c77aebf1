"""Lost updates: read-modify-write with a forced interleaving between the read and the write (CC-3, CC-7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sessionspec.conformance.contract import DELETE, Session, SessionInfo, SessionNotFound
from sessionspec.conformance.validation import validate_changes, validate_items, validate_key
from sessionspec.reference.memory import MemoryStore

from ._case import broken
from ._race import rendezvous


@broken("CC-3")
class ApplyReadModifyWrite(MemoryStore):
    """apply() is GET, merge in the client, SET: two concurrent applies each overwrite the other's keys."""

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        delta = validate_changes(changes)
        current = await self.get(id)
        if current is None:
            raise SessionNotFound(id)
        merged = dict(current.state)
        for key, value in delta.items():
            if value is DELETE:
                merged.pop(key, None)
            else:
                merged[key] = value
        await rendezvous(self).meet()
        return await self.save(id, merged, expected_version=expected_version)


@broken("CC-7")
class AppendReadModifyWrite(MemoryStore):
    """append() reads the list, extends it in the client and writes it back: concurrent appends lose items."""

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        name = validate_key(key)
        values = validate_items(name, items)
        current = await self.get(id)
        if current is None:
            raise SessionNotFound(id)
        existing = current.state.get(name, [])
        if not isinstance(existing, list):
            return await super().append(id, key, items, expected_version=expected_version)
        await rendezvous(self).meet()
        return (await self.apply(id, {name: existing + values}, expected_version=expected_version)).info()
